//! The console's JSON API for staff: login (password, then a one-time code when the member has
//! a channel), set-password links, the current member, logout. Sessions are an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` except on plain-http loopback); every state-changing
//! request carries the session's `X-CSRF-Token`. `GET /v1/console/events` streams the
//! tenant's queue changes (server-sent events) so open consoles update live.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::coord::{ConsoleEvent, announce};
use crate::http::error::{ApiError, ApiJson};
use crate::http::otp::error_response as otp_error;
use crate::staff::{LoginStep, NewSession, StaffError, normalize_email};
use crate::state::AppState;
use crate::store::{ConsoleClaim, Queue, QueueItem, StaffMember, StaffSession, now_ms, rfc3339};

/// The session cookie's name.
pub const COOKIE: &str = "sapa_console";

/// The console pages (one page; the script picks the view by path).
const CONSOLE_HTML: &str = include_str!("../../ui/console.html");
/// The console script (plain JavaScript, no build step).
const CONSOLE_JS: &str = include_str!("../../ui/console.js");
/// The console styles.
const CONSOLE_CSS: &str = include_str!("../../ui/console.css");
/// The owner pages (Bot, Knowledge, Unanswered, Flows, Usage, API keys): loaded by the same page,
/// drawn only for owners.
const OWNER_JS: &str = include_str!("../../ui/owner.js");
/// The owner pages' styles.
const OWNER_CSS: &str = include_str!("../../ui/owner.css");
/// The owner pages' paths (one page each; the console script draws them).
pub const OWNER_PAGES: [&str; 6] = ["bot", "knowledge", "unanswered", "flows", "usage", "keys"];

static JS_ETAG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::http::widget::etag(CONSOLE_JS));
static CSS_ETAG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::http::widget::etag(CONSOLE_CSS));
static OWNER_JS_ETAG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::http::widget::etag(OWNER_JS));
static OWNER_CSS_ETAG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::http::widget::etag(OWNER_CSS));

/// The page's Content-Security-Policy: only its own script, styles and API.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn page() -> Response {
    let mut response = axum::response::Html(CONSOLE_HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn console_js(headers: HeaderMap) -> Response {
    crate::http::widget::asset(
        &headers,
        CONSOLE_JS,
        "text/javascript; charset=utf-8",
        &JS_ETAG,
    )
}

async fn console_css(headers: HeaderMap) -> Response {
    crate::http::widget::asset(&headers, CONSOLE_CSS, "text/css; charset=utf-8", &CSS_ETAG)
}

async fn owner_js(headers: HeaderMap) -> Response {
    crate::http::widget::asset(
        &headers,
        OWNER_JS,
        "text/javascript; charset=utf-8",
        &OWNER_JS_ETAG,
    )
}

async fn owner_css(headers: HeaderMap) -> Response {
    crate::http::widget::asset(
        &headers,
        OWNER_CSS,
        "text/css; charset=utf-8",
        &OWNER_CSS_ETAG,
    )
}

/// The console API routes and pages.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for name in OWNER_PAGES {
        router = router.route(&format!("/console/{name}"), get(page));
    }
    router
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/login", get(page))
        .route("/console/set-password", get(page))
        .route("/console/console.js", get(console_js))
        .route("/console/console.css", get(console_css))
        .route("/console/owner.js", get(owner_js))
        .route("/console/owner.css", get(owner_css))
        .route("/v1/console/login", post(login))
        .route("/v1/console/login/otp", post(login_otp))
        .route("/v1/console/password", post(set_password))
        .route("/v1/console/me", get(me))
        .route("/v1/console/logout", post(logout))
        .route("/v1/console/presence", post(presence))
        .route("/v1/console/events", get(events))
        .route("/v1/console/canned", get(canned))
        .route("/v1/console/conversations/{id}/typing", post(typing))
        .route(
            "/v1/console/conversations/{id}/media/{message_id}",
            get(media),
        )
        .route("/v1/console/conversations", get(queue))
        .route("/v1/console/conversations/{id}", get(conversation))
        .route("/v1/console/conversations/{id}/claim", post(claim))
        .route("/v1/console/conversations/{id}/messages", post(reply))
        .route("/v1/console/conversations/{id}/handback", post(handback))
        .route("/v1/console/conversations/{id}/resolve", post(resolve))
        .route("/v1/console/conversations/{id}/transfer", post(transfer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    tenant: String,
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginCodeBody {
    challenge_id: String,
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    token: String,
    password: String,
}

fn staff_json(member: &StaffMember) -> Value {
    json!({
        "id": member.id,
        "tenant": member.tenant_id,
        "email": member.email,
        "role": member.role,
        "second_factor": member.whatsapp.is_some() || member.telegram_chat_id.is_some(),
    })
}

/// The response of a staff error, with `Retry-After` on a locked account.
fn error_response(err: StaffError) -> Response {
    let message = err.to_string();
    let (status, code) = match err {
        StaffError::Otp(otp) => return otp_error(otp),
        StaffError::Store(store) => return ApiError::from(store).into_response(),
        StaffError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        StaffError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
        StaffError::InvalidLink => (StatusCode::GONE, "invalid_link"),
        StaffError::NoSession => (StatusCode::UNAUTHORIZED, "not_logged_in"),
        StaffError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
        StaffError::Locked(wait) => {
            let mut response =
                ApiError::new(StatusCode::LOCKED, "account_locked", message).into_response();
            let seconds = wait.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    };
    ApiError::new(status, code, message).into_response()
}

/// Whether the request came over plain http to a loopback host (the only case the cookie is
/// not `Secure`, so local development works).
fn plain_loopback(headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    !forwarded_https && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

fn session_response(headers: &HeaderMap, session: &NewSession) -> Response {
    let secure = if plain_loopback(headers) {
        ""
    } else {
        "; Secure"
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session.token,
        crate::staff::SESSION_IDLE.as_secs()
    );
    let mut response = axum::Json(json!({
        "csrf_token": session.csrf_token,
        "staff": staff_json(&session.member),
    }))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session cookie's token.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The request's session; with `state_changing`, its `X-CSRF-Token` must match.
///
/// # Errors
/// 401 `not_logged_in`, 403 `csrf`.
pub async fn session(
    state: &AppState,
    headers: &HeaderMap,
    state_changing: bool,
) -> Result<(String, StaffSession), Response> {
    let token = cookie_token(headers).ok_or_else(|| error_response(StaffError::NoSession))?;
    let csrf = state_changing.then(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    state
        .staff
        .session(&token, csrf)
        .await
        .map(|s| (token, s))
        .map_err(error_response)
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Response {
    let email = match normalize_email(&body.email) {
        Ok(email) => email,
        Err(err) => return error_response(err),
    };
    match state
        .staff
        .login(body.tenant.trim(), &email, &body.password)
        .await
    {
        Ok(LoginStep::Session(session)) => session_response(&headers, &session),
        Ok(LoginStep::CodeRequired { challenge_id }) => axum::Json(json!({
            "otp_required": true,
            "challenge_id": challenge_id,
        }))
        .into_response(),
        Err(err) => error_response(err),
    }
}

async fn login_otp(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginCodeBody>,
) -> Response {
    match state.staff.login_code(&body.challenge_id, &body.code).await {
        Ok(session) => session_response(&headers, &session),
        Err(err) => error_response(err),
    }
}

async fn set_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Response {
    match state.staff.set_password(&body.token, &body.password).await {
        Ok(member) => axum::Json(json!({ "staff": staff_json(&member) })).into_response(),
        Err(err) => error_response(err),
    }
}

async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session(&state, &headers, false).await {
        Ok((_, session)) => {
            let member = &session.member;
            let advise_2fa = member.whatsapp.is_none() && member.telegram_chat_id.is_none();
            let presence = match state.store.presence(&member.tenant_id, &member.id).await {
                Ok(presence) => presence,
                Err(err) => return ApiError::from(err).into_response(),
            };
            let notices = crate::http::owner::notices(&state, &session).await;
            axum::Json(json!({
                "presence": presence,
                "staff": staff_json(member),
                "advise_2fa": advise_2fa,
                "require_2fa": state.staff.requires_2fa(&member.tenant_id),
                "notices": notices,
            }))
            .into_response()
        }
        Err(response) => response,
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (token, session) = match session(&state, &headers, true).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match state.staff.logout(&token, &session.member).await {
        Ok(()) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
            if let Ok(value) = HeaderValue::from_str(&expired) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(err) => error_response(err),
    }
}

/// Most conversations one queue request returns.
const QUEUE_LIMIT: i64 = 200;
/// Most messages the conversation view returns.
const HISTORY_LIMIT: i64 = 500;
/// Most earlier conversations of the customer the conversation view lists.
const PREVIOUS_LIMIT: i64 = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueParams {
    #[serde(default)]
    queue: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    #[serde(default)]
    text: String,
    #[serde(default)]
    note: bool,
    /// Quick replies sent as buttons.
    #[serde(default)]
    choices: Vec<String>,
    /// A file by URL.
    #[serde(default)]
    attachment: Option<AttachmentBody>,
    /// A WhatsApp template instead of free text.
    #[serde(default)]
    template: Option<TemplateBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentBody {
    url: String,
    kind: String,
    #[serde(default)]
    filename: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    name: String,
    language: String,
}

/// Most quick replies on one agent message (WhatsApp shows at most three reply buttons).
const MAX_CHOICES: usize = 3;
/// Longest quick reply (WhatsApp's reply button title limit).
const MAX_CHOICE_CHARS: usize = 20;
/// WhatsApp's customer service window: free text only this long after the customer last wrote.
const WHATSAPP_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    email: String,
}

fn item_json(item: &QueueItem) -> Value {
    json!({
        "id": item.id,
        "channel": item.channel,
        "state": item.state,
        "customer": item.customer,
        "last_message": item.last_message,
        "waiting_since": item.waiting_since_ms.map(rfc3339),
        "assignee": item.assignee,
        "handoff_reason": item.handoff_reason,
        "last_customer_message_at": item.last_inbound_ms.map(rfc3339),
        "window_expires_at": window_expires_ms(item).map(rfc3339),
    })
}

/// When WhatsApp's 24-hour customer service window of a WhatsApp conversation closes (closed
/// already when the customer never wrote); `None` on other channels.
fn window_expires_ms(item: &QueueItem) -> Option<i64> {
    (item.channel == "whatsapp")
        .then(|| item.last_inbound_ms.map_or(0, |at| at + WHATSAPP_WINDOW_MS))
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> Response {
    invalid(code, message).into_response()
}

/// The tenant's composer settings.
fn tenant_config<'a>(
    state: &'a AppState,
    tenant_id: &str,
) -> Option<&'a crate::config::TenantConfig> {
    state.config.tenants.get(tenant_id)
}

/// `text` with a canned reply in place of an exact `/shortcut` of the tenant's.
fn expand_canned(state: &AppState, tenant_id: &str, text: &str) -> String {
    let expanded = text.strip_prefix('/').and_then(|shortcut| {
        tenant_config(state, tenant_id)?
            .canned_replies
            .iter()
            .find(|reply| reply.shortcut == shortcut)
    });
    expanded.map_or_else(|| text.to_owned(), |reply| reply.text.trim().to_owned())
}

/// Checks quick replies: at most three, each 1-20 characters.
fn validate_choices(choices: &[String]) -> Result<Vec<String>, ApiError> {
    let trimmed: Vec<String> = choices.iter().map(|c| c.trim().to_owned()).collect();
    if trimmed.len() > MAX_CHOICES
        || trimmed
            .iter()
            .any(|c| c.is_empty() || c.chars().count() > MAX_CHOICE_CHARS)
    {
        return Err(invalid(
            "invalid_choices",
            format!(
                "`choices` takes at most {MAX_CHOICES} quick replies of 1-{MAX_CHOICE_CHARS} characters each"
            ),
        ));
    }
    Ok(trimmed)
}

/// Checks an attachment: an https URL, `image` or `document`, a plain file name for documents.
fn validate_attachment(
    attachment: AttachmentBody,
) -> Result<channels::model::OutboundMedia, ApiError> {
    use channels::model::{MediaKind, MediaSource, OutboundMedia};
    let kind = match attachment.kind.trim() {
        "image" => MediaKind::Image,
        "document" => MediaKind::Document,
        _ => {
            return Err(invalid(
                "invalid_attachment",
                "`attachment.kind` must be \"image\" or \"document\"",
            ));
        }
    };
    let url = attachment.url.trim().to_owned();
    let https = url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"));
    if !https || !channels::model::is_http_url(&url) {
        return Err(invalid(
            "invalid_attachment",
            format!(
                "`attachment.url` must be an https:// URL of at most {} characters, without spaces, that the provider can download",
                channels::model::MAX_MEDIA_URL_CHARS
            ),
        ));
    }
    let filename = attachment
        .filename
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    if let Some(name) = &filename
        && (kind != MediaKind::Document
            || name.chars().count() > 240
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control))
    {
        return Err(invalid(
            "invalid_attachment",
            "`attachment.filename` is only for documents: a plain file name of at most 240 characters, without `/` or `\\`",
        ));
    }
    Ok(OutboundMedia {
        kind,
        source: MediaSource::Url(url),
        caption: None,
        filename,
    })
}

/// `GET /v1/console/canned`: the tenant's canned replies and agent templates.
async fn canned(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (_, session) = match session(&state, &headers, false).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let (replies, templates) = tenant_config(&state, &session.member.tenant_id)
        .map(|t| (t.canned_replies.clone(), t.agent_templates.clone()))
        .unwrap_or_default();
    axum::Json(json!({ "canned_replies": replies, "agent_templates": templates })).into_response()
}

/// `POST /v1/console/conversations/{id}/typing`: shows the customer that the agent is typing
/// (web chat: a typing event; WhatsApp and Telegram: the provider's indicator). At most one
/// per 5 s per conversation (`429 typing_rate_limited`); only for the conversation's assignee
/// (`409 not_assigned`), as replies are.
async fn typing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match acting(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let target = match state.store.typing_target(tenant, &id).await {
        Ok(Some(target)) => target,
        Ok(None) => return not_found(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    if target.assignee.as_deref() != Some(session.member.id.as_str()) {
        return not_assigned();
    }
    if let Err(wait) = state
        .coord
        .check_rate(crate::coord::RateLimit::ConsoleTyping, &id)
        .await
    {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "typing_rate_limited",
            "one typing indicator per 5 seconds per conversation",
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if target.channel_kind.is_webchat() {
        state
            .coord
            .publish(&id, channels::webchat::WebchatEvent::Typing);
    } else if let Some(channel) = state
        .channels
        .resolve(&target.channel_account_id, target.channel_kind)
    {
        let last = target.last_inbound_id.unwrap_or_default();
        // Best effort, off the request: a slow provider never holds the agent's browser.
        tokio::spawn(async move { channel.typing(&target.recipient, &last).await });
    }
    StatusCode::ACCEPTED.into_response()
}

/// 409 for an agent acting on a conversation someone else (or nobody) has.
fn not_assigned() -> Response {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_assigned",
        "claim the conversation before replying (POST …/claim)",
    )
    .into_response()
}

fn not_found() -> Response {
    ApiError::not_found(
        "conversation_not_found",
        "this tenant has no such conversation",
    )
    .into_response()
}

async fn queue(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<QueueParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (_, session) = match session(&state, &headers, false).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Ok(Query(params)) = params else {
        return ApiError::bad_request("invalid_query", "the only parameter is `queue`")
            .into_response();
    };
    let Some(queue) = Queue::parse(params.queue.as_deref().unwrap_or("waiting")) else {
        return ApiError::bad_request(
            "invalid_queue",
            "`queue` must be waiting, mine, open or resolved",
        )
        .into_response();
    };
    let member = &session.member;
    match state
        .store
        .console_queue(&member.tenant_id, queue, &member.id, QUEUE_LIMIT)
        .await
    {
        Ok(items) => axum::Json(json!({
            "conversations": items.iter().map(item_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn conversation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, session) = match session(&state, &headers, false).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let item = match state.store.console_conversation(tenant, &id).await {
        Ok(Some(item)) => item,
        Ok(None) => return not_found(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let store = &state.store;
    let (messages, media, channels, previous) = match tokio::try_join!(
        store.console_messages(tenant, &id, 0, HISTORY_LIMIT),
        store.conversation_media(tenant, &id),
        store.contact_channels(tenant, &id),
        store.contact_history(tenant, &id, PREVIOUS_LIMIT),
    ) {
        Ok(found) => found,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let media: std::collections::HashMap<i64, Value> = media
        .into_iter()
        .filter_map(|(message_id, raw)| {
            let media: Value = serde_json::from_str(&raw).ok()?;
            let kind = media["kind"].as_str().unwrap_or("media").to_owned();
            // Only files the provider still holds can be shown (a location has none).
            let url = media["id"]
                .as_str()
                .filter(|i| !i.trim().is_empty())
                .map(|_| format!("/v1/console/conversations/{id}/media/{message_id}"));
            Some((message_id, json!({ "kind": kind, "url": url })))
        })
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "author": m.author,
                "text": m.body,
                "status": m.status,
                "created_at": rfc3339(m.created_at_ms),
                "media": media.get(&m.id),
                "trace_id": m.trace_id,
            })
        })
        .collect();
    let channels: Vec<Value> = channels
        .iter()
        .map(|c| {
            json!({ "channel": c.channel, "address": c.address, "name": c.name, "username": c.username })
        })
        .collect();
    let previous: Vec<Value> = previous
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "channel": p.channel,
                "state": p.state,
                "handoff_reason": p.handoff_reason,
                "last_message": p.last_message,
                "created_at": rfc3339(p.created_at_ms),
                "updated_at": rfc3339(p.updated_at_ms),
            })
        })
        .collect();
    // What the bot was told at the last hand back (best effort).
    let summary = store.handoff_summary(tenant, &id).await.unwrap_or_default();
    // The customer wrote "berhenti"/"stop": the bot sends them no follow-ups (best effort).
    let opt_out = store
        .conversation_follow_up_opt_out(tenant, &id)
        .await
        .unwrap_or_default();
    // The flow the customer is in and the tags flows set (best effort).
    let (flow_run, tags) = store
        .conversation_flow(tenant, &id)
        .await
        .unwrap_or_default();
    let flow = flow_run
        .and_then(|json| serde_json::from_str::<flows::flow::FlowRun>(&json).ok())
        .map(|run| json!({"name": run.flow, "step": run.step}));
    axum::Json(json!({
        "conversation": item_json(&item),
        "messages": messages,
        "contact": { "channels": channels, "follow_up_opt_out": opt_out },
        "previous_conversations": previous,
        "handoff_summary": summary,
        "flow": flow,
        "tags": tags,
    }))
    .into_response()
}

/// `GET /v1/console/conversations/{id}/media/{message_id}`: the file a customer sent in the
/// tenant's conversation, fetched from the provider now; images inline (the console shows
/// them), other files as attachments. `404 media_not_found` for anything else.
async fn media(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, message_id)): Path<(String, String)>,
) -> Response {
    let (_, session) = match session(&state, &headers, false).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let missing = || {
        ApiError::not_found(
            "media_not_found",
            "this conversation has no customer message with that id and a media file",
        )
        .into_response()
    };
    let Ok(message_id) = message_id.trim().parse::<i64>() else {
        return missing();
    };
    // The message must belong to this conversation of this tenant, not just to the tenant.
    match state.store.conversation_media(tenant, &id).await {
        Ok(media) if media.iter().any(|(m, _)| *m == message_id) => {}
        Ok(_) => return missing(),
        Err(err) => return ApiError::from(err).into_response(),
    }
    let stored = match state.store.inbound_media(tenant, message_id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return missing(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    match crate::http::admin::customer_media(&state, tenant, message_id, &stored, true).await {
        Ok(Some(response)) => response,
        Ok(None) => missing(),
        Err(err) => err.into_response(),
    }
}

/// The session of a state-changing request and the conversation it acts on, audited.
async fn acting(state: &AppState, headers: &HeaderMap) -> Result<StaffSession, Response> {
    session(state, headers, true).await.map(|(_, s)| s)
}

/// Records a staff action in the tenant's audit log (a failure is logged, never fatal).
pub(crate) async fn audit(state: &AppState, member: &StaffMember, action: &str, id: &str) {
    if let Err(err) = state
        .store
        .audit(
            &member.tenant_id,
            Some(&member.id),
            action,
            Some(id),
            now_ms(),
        )
        .await
    {
        tracing::warn!(error = %err, action, "audit log write failed");
    }
}

async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match acting(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let member = &session.member;
    match state
        .store
        .claim_conversation(&member.tenant_id, &id, &member.id, now_ms())
        .await
    {
        Ok(ConsoleClaim::Claimed) => {
            audit(&state, member, "claim", &id).await;
            announce(&state.store, state.coord.as_ref(), &member.tenant_id, &id).await;
            axum::Json(json!({ "claimed": true, "assignee": member.id })).into_response()
        }
        Ok(ConsoleClaim::TakenBy(other)) => ApiError::new(
            StatusCode::CONFLICT,
            "assigned_to_other",
            format!("another agent ({other}) has this conversation; ask them to transfer it"),
        )
        .into_response(),
        Ok(ConsoleClaim::NotFound) => not_found(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn reply(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplyBody>,
) -> Response {
    let session = match acting(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let member = &session.member;
    let tenant = member.tenant_id.as_str();
    if body.note {
        if body.template.is_some() || body.attachment.is_some() || !body.choices.is_empty() {
            return unprocessable(
                "invalid_note",
                "a note is text only: no `choices`, `attachment` or `template`",
            );
        }
        let text = expand_canned(&state, tenant, body.text.trim());
        if text.is_empty() || text.chars().count() > 4096 {
            return ApiError::bad_request("invalid_text", "`text` must be 1-4096 characters")
                .into_response();
        }
        // A note needs no claim: any agent of the tenant may leave one.
        return match state.store.add_note(tenant, &id, &text, now_ms()).await {
            Ok(Some(message_id)) => {
                audit(&state, member, "note", &id).await;
                announce(&state.store, state.coord.as_ref(), tenant, &id).await;
                (
                    StatusCode::CREATED,
                    axum::Json(json!({ "message_id": message_id, "note": true })),
                )
                    .into_response()
            }
            Ok(None) => not_found(),
            Err(err) => ApiError::from(err).into_response(),
        };
    }
    let item = match state.store.console_conversation(tenant, &id).await {
        Ok(Some(item)) if item.assignee.as_deref() == Some(member.id.as_str()) => item,
        Ok(Some(_)) => return not_assigned(),
        Ok(None) => return not_found(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let templates = tenant_config(&state, tenant).map_or(&[][..], |t| &t.agent_templates[..]);
    let (text, media, choices, template) = if let Some(wanted) = body.template {
        if item.channel != "whatsapp" {
            return unprocessable(
                "template_unsupported",
                "templates are for WhatsApp conversations; send `text` instead",
            );
        }
        if !body.text.trim().is_empty() || body.attachment.is_some() || !body.choices.is_empty() {
            return unprocessable(
                "invalid_template_message",
                "a template is sent on its own: no `text`, `choices` or `attachment`",
            );
        }
        let Some(found) = templates
            .iter()
            .find(|t| t.name == wanted.name && t.language == wanted.language)
        else {
            return unprocessable(
                "unknown_template",
                format!(
                    "this tenant has no agent template `{}` ({}); configure it under [[tenants.{tenant}.agent_templates]]",
                    wanted.name, wanted.language
                ),
            );
        };
        let template = channels::model::Template {
            name: found.name.clone(),
            language: found.language.clone(),
            body_params: Vec::new(),
            copy_code: None,
        };
        (
            found.body.trim().to_owned(),
            None,
            Vec::new(),
            Some(template),
        )
    } else {
        let text = expand_canned(&state, tenant, body.text.trim());
        let media = match body.attachment.map(validate_attachment).transpose() {
            Ok(media) => media,
            Err(err) => return err.into_response(),
        };
        if (text.is_empty() && media.is_none()) || text.chars().count() > 4096 {
            return ApiError::bad_request(
                "invalid_text",
                "`text` must be 1-4096 characters (it may be empty with an `attachment`)",
            )
            .into_response();
        }
        let choices = match validate_choices(&body.choices) {
            Ok(choices) => choices,
            Err(err) => return err.into_response(),
        };
        if !choices.is_empty() && (media.is_some() || text.is_empty()) {
            return unprocessable(
                "invalid_choices",
                "quick replies go with a text message without an attachment",
            );
        }
        if let Some(expires) = window_expires_ms(&item)
            && expires <= now_ms()
        {
            let names: Vec<Value> = templates
                .iter()
                .map(|t| json!({ "name": t.name, "language": t.language, "body": t.body }))
                .collect();
            return (
                StatusCode::CONFLICT,
                axum::Json(json!({ "error": {
                    "code": "outside_window",
                    "message": "the customer last wrote more than 24 hours ago: WhatsApp allows only an approved template now (send `template`)",
                    "window_expires_at": rfc3339(expires),
                    "templates": names,
                }})),
            )
                .into_response();
        }
        (text, media, choices, None)
    };
    let send = crate::store::AgentSend {
        text: &text,
        media: media.as_ref(),
        choices: &choices,
        template: template.as_ref(),
    };
    match state.store.enqueue_agent_send(tenant, &id, &send).await {
        Ok(Some(queued)) => {
            state.dispatcher_wake.notify_one();
            audit(&state, member, "reply", &id).await;
            announce(&state.store, state.coord.as_ref(), tenant, &id).await;
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "message_id": queued.message_id,
                    "channel": queued.channel_kind.as_str(),
                    "text": text,
                })),
            )
                .into_response()
        }
        Ok(None) => not_found(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn release(state: AppState, headers: HeaderMap, id: String, hand_back: bool) -> Response {
    let action = if hand_back { "handback" } else { "resolve" };
    let session = match acting(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let member = &session.member;
    match state
        .store
        .release_conversation(&member.tenant_id, &id, &member.id, hand_back, now_ms())
        .await
    {
        Ok(Some(step)) => {
            audit(&state, member, action, &id).await;
            if step
                .effects
                .contains(&flows::handoff::Effect::SummarizeForBot)
            {
                crate::handback::summarize(&state, &member.tenant_id, &id).await;
            }
            announce(&state.store, state.coord.as_ref(), &member.tenant_id, &id).await;
            axum::Json(json!({ "state": step.to.state().as_str() })).into_response()
        }
        Ok(None) => taken_or_missing(&state, &member.tenant_id, &id).await,
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// Why a change to a conversation did not apply: another agent has it, or it does not exist.
async fn taken_or_missing(state: &AppState, tenant_id: &str, id: &str) -> Response {
    match state.store.console_conversation(tenant_id, id).await {
        Ok(Some(_)) => ApiError::new(
            StatusCode::CONFLICT,
            "assigned_to_other",
            "another agent has this conversation",
        )
        .into_response(),
        Ok(None) => not_found(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn handback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    release(state, headers, id, true).await
}

async fn resolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    release(state, headers, id, false).await
}

async fn transfer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Response {
    let session = match acting(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let member = &session.member;
    let target = match normalize_email(&body.email) {
        Ok(email) => state.store.staff_login(&member.tenant_id, &email).await,
        Err(err) => return error_response(err),
    };
    let target = match target {
        Ok(Some(t)) if t.member.disabled_at_ms.is_none() => t.member,
        Ok(_) => {
            return ApiError::not_found(
                "staff_not_found",
                "this tenant has no active staff member with that email",
            )
            .into_response();
        }
        Err(err) => return ApiError::from(err).into_response(),
    };
    match state
        .store
        .transfer_conversation(&member.tenant_id, &id, &member.id, &target.id, now_ms())
        .await
    {
        Ok(true) => {
            audit(&state, member, "transfer", &id).await;
            announce(&state.store, state.coord.as_ref(), &member.tenant_id, &id).await;
            axum::Json(json!({ "assignee": target.id })).into_response()
        }
        Ok(false) => taken_or_missing(&state, &member.tenant_id, &id).await,
        Err(err) => ApiError::from(err).into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    status: String,
}

async fn presence(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PresenceBody>,
) -> Response {
    let session = match acting(&state, &headers).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let status = body.status.trim();
    if !matches!(status, "online" | "away") {
        return ApiError::bad_request("invalid_status", "`status` must be \"online\" or \"away\"")
            .into_response();
    }
    let member = &session.member;
    match state
        .store
        .set_presence(&member.tenant_id, &member.id, status)
        .await
    {
        Ok(()) => {
            audit(&state, member, status, &member.id).await;
            state.coord.console_publish(
                &member.tenant_id,
                ConsoleEvent::Presence {
                    staff_id: member.id.clone(),
                    status: status.to_owned(),
                },
            );
            axum::Json(json!({ "status": status })).into_response()
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// Most event streams one staff member may hold open (tabs and devices) in this process.
pub const MAX_STREAMS_PER_STAFF: usize = 5;
/// How often an open event stream checks that its session still exists (a logout, an idle
/// expiry or a disabled account ends the stream within this time).
const STREAM_SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Open console event streams per staff member.
#[derive(Debug, Default)]
pub struct StreamSlots {
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open stream; frees its slot when dropped (the client went away or the server stops).
#[derive(Debug)]
struct StreamSlot {
    slots: std::sync::Arc<StreamSlots>,
    staff_id: String,
}

impl StreamSlots {
    fn take(self: &std::sync::Arc<Self>, staff_id: &str) -> Option<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(staff_id.to_owned()).or_default();
        if *count >= MAX_STREAMS_PER_STAFF {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            slots: self.clone(),
            staff_id: staff_id.to_owned(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.staff_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.staff_id);
            }
        }
    }
}

/// What the event stream sends next.
enum Next {
    Event(ConsoleEvent),
    Resync,
    End,
}

/// `GET /v1/console/events`: the tenant's console events as server-sent events. `conversation`
/// and `presence` carry JSON; `resync` (this stream missed events) tells the console to refetch.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;

    let (token, session) = match session(&state, &headers, false).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let member = session.member;
    let Some(slot) = state.console_streams.take(&member.id) else {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "at most {MAX_STREAMS_PER_STAFF} console event streams per staff member; close another console tab"
            ),
        )
        .into_response();
    };
    let receiver = state.coord.console_subscribe(&member.tenant_id);
    let start = tokio::time::Instant::now() + STREAM_SESSION_CHECK;
    let check = tokio::time::interval_at(start, STREAM_SESSION_CHECK);
    let stream = futures::stream::unfold(
        (receiver, state, token, check, slot),
        |(mut receiver, state, token, mut check, slot)| async move {
            let next = loop {
                tokio::select! {
                    () = state.shutdown.cancelled() => break Next::End,
                    _ = check.tick() => {
                        // Only a session that is gone ends the stream; a storage hiccup does not.
                        if matches!(
                            state.staff.session(&token, None).await,
                            Err(StaffError::NoSession)
                        ) {
                            break Next::End;
                        }
                    }
                    received = receiver.recv() => break match received {
                        Ok(event) => Next::Event(event),
                        Err(RecvError::Lagged(_)) => Next::Resync,
                        Err(RecvError::Closed) => Next::End,
                    },
                }
            };
            let event = match next {
                Next::End => return None,
                Next::Resync => Event::default().event("resync").data("{}"),
                Next::Event(event) => {
                    let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
                    Event::default().event(event.name()).data(data)
                }
            };
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (receiver, state, token, check, slot),
            ))
        },
    );
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies such as nginx must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
