//! The web chat API: sessions, posting and listing messages, and the live WebSocket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use channels::ChannelKind;
use channels::webchat::{WebchatEvent, WebchatMessage};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument as _;

use crate::config::{WebchatConfig, valid_slug};
use crate::coord::RateLimit;
use crate::http::error::{ApiError, ApiJson};
use crate::http::limits::rate_limited;
use crate::http::origin;
use crate::state::AppState;
use crate::store::{Accepted, InboundItem, InboundTarget, StoreError, WebchatSession, now_ms};
use crate::workers::ingress::{IngressError, to_webchat};

/// Messages returned per page by `GET /v1/webchat/messages`.
const PAGE: i64 = 200;
/// WebSocket keep-alive ping interval.
const PING_EVERY: Duration = Duration::from_secs(25);
/// Largest WebSocket message (and frame) a browser may send; larger ones close the socket
/// (the widget sends nothing but pongs over it).
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// Counts the open WebSockets of this process, per session and in total
/// (`webchat.max_sockets_per_session`, `webchat.max_sockets`).
#[derive(Debug)]
pub struct SocketSlots {
    per_session: usize,
    total: usize,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// One open WebSocket's place in [`SocketSlots`], given back on drop.
#[derive(Debug)]
pub struct SocketSlot {
    slots: Arc<SocketSlots>,
    conversation_id: String,
}

impl SocketSlots {
    /// Slots with the limits of `config`.
    pub fn new(config: &WebchatConfig) -> Self {
        Self {
            per_session: config.max_sockets_per_session,
            total: config.max_sockets,
            open: Mutex::new((0, HashMap::new())),
        }
    }

    /// Takes a slot for a socket of `conversation_id`: 429 when the session holds its limit,
    /// 503 when the process does.
    ///
    /// # Errors
    /// The response for a socket over a limit.
    pub fn take(self: &Arc<Self>, conversation_id: &str) -> Result<SocketSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, sessions) = &mut *open;
        if *total >= self.total {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_sockets",
                "the server holds its maximum of live connections; fall back to polling GET /v1/webchat/messages and retry later",
            ));
        }
        let count = sessions.entry(conversation_id.to_owned()).or_default();
        if *count >= self.per_session {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sockets",
                format!(
                    "this session already has {} live connections (webchat.max_sockets_per_session); close one first",
                    self.per_session
                ),
            ));
        }
        *count += 1;
        *total += 1;
        Ok(SocketSlot {
            slots: self.clone(),
            conversation_id: conversation_id.to_owned(),
        })
    }

    /// Open sockets in total.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (total, sessions) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(count) = sessions.get_mut(&self.conversation_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sessions.remove(&self.conversation_id);
            }
        }
    }
}

/// Web chat routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webchat/sessions", post(create_session))
        .route(
            "/v1/webchat/messages",
            post(post_message).get(list_messages),
        )
        .route("/v1/webchat/ws", get(stream_messages))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    tenant: String,
    #[serde(default)]
    locale: Option<String>,
}

async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    if !valid_slug(&body.tenant) {
        return Err(ApiError::not_found(
            "tenant_not_found",
            "no tenant with that id (tenant ids are lowercase letters, digits and `-`)",
        ));
    }
    let Some(tenant) = state.store.tenant(&body.tenant).await? else {
        return Err(ApiError::not_found(
            "tenant_not_found",
            format!("no tenant `{}`", body.tenant),
        ));
    };
    origin::enforce(&headers, &state.config, &tenant.id)?;
    let locale = match body.locale.as_deref() {
        None => flows::Locale::parse(&tenant.locale).unwrap_or_default(),
        Some(raw) => flows::Locale::parse(raw).ok_or_else(|| {
            ApiError::bad_request("invalid_locale", "locale must be \"id\" or \"en\"")
        })?,
    };
    let account = state
        .store
        .ensure_channel_account(
            &tenant.id,
            ChannelKind::Webchat,
            &tenant.id,
            "Web chat",
            None,
        )
        .await?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let conversation_id = state
        .store
        .create_webchat_session(&tenant.id, &account, &token_hash(&token), locale.as_str())
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "session_token": token,
            "conversation_id": conversation_id,
            "tenant": { "id": tenant.id, "name": tenant.name },
            "locale": locale.as_str(),
        })),
    )
        .into_response())
}

/// The body of `POST /v1/webchat/messages`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    client_message_id: String,
    text: String,
}

/// A web chat message body that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidMessage {
    /// The client's id for the message, trimmed: 1–100 of `[A-Za-z0-9-_.:]`.
    pub client_message_id: String,
    /// The text, trimmed, not empty, at most the configured number of characters.
    pub text: String,
}

impl PostMessage {
    /// Checks the fields: the client's id and the text's length.
    ///
    /// # Errors
    /// `invalid_client_message_id`, `empty_message` or `message_too_long`, each saying what to
    /// fix.
    pub fn validate(self, max_chars: usize) -> Result<ValidMessage, ApiError> {
        let client_id = self.client_message_id.trim();
        if client_id.is_empty()
            || client_id.len() > 100
            || !client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(ApiError::bad_request(
                "invalid_client_message_id",
                "client_message_id must be 1-100 characters of letters, digits, `-`, `_`, `.` or `:` (a UUID is ideal)",
            ));
        }
        let text = self.text.trim();
        if text.is_empty() {
            return Err(ApiError::bad_request(
                "empty_message",
                "text must not be empty",
            ));
        }
        let length = text.chars().count();
        if length > max_chars {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "message_too_long",
                format!("text is {length} characters; the limit is {max_chars}"),
            ));
        }
        Ok(ValidMessage {
            client_message_id: client_id.to_owned(),
            text: text.to_owned(),
        })
    }
}

/// Decodes and validates a message body as `POST /v1/webchat/messages` does (the fuzz target
/// and the property tests drive this).
///
/// # Errors
/// `invalid_json` / `invalid_field` for a body that is not the expected JSON object, else what
/// [`PostMessage::validate`] refuses.
pub fn decode_message(body: &[u8], max_chars: usize) -> Result<ValidMessage, ApiError> {
    let axum::Json(message) = axum::Json::<PostMessage>::from_bytes(body)?;
    message.validate(max_chars)
}

async fn post_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PostMessage>,
) -> Result<Response, ApiError> {
    // Over `server.max_pending_messages`: refuse before anything is stored; the widget
    // retries after `Retry-After` with the same client_message_id.
    if let Some(overloaded) = crate::http::limits::shed(&state.ingress, ChannelKind::Webchat) {
        return Ok(overloaded);
    }
    let session = authenticate(&state, bearer(&headers)?).await?;
    origin::enforce(&headers, &state.config, &session.tenant_id)?;
    let body = body.validate(state.config.webchat.max_message_chars)?;
    if let Err(wait) = state
        .coord
        .check_rate(RateLimit::WebchatSession, &session.conversation_id)
        .await
    {
        return Ok(rate_limited(wait, "too many messages in this conversation"));
    }
    let item = InboundItem {
        trace_id: None,
        tenant_id: session.tenant_id.clone(),
        channel_account_id: session.channel_account_id.clone(),
        target: InboundTarget::Conversation(session.conversation_id.clone()),
        external_id: body.client_message_id,
        text: body.text,
        kind: flows::TurnKind::Text,
        answer: true,
        content_kind: None,
        media: None,
        received_at_ms: now_ms(),
        channel_kind: channels::ChannelKind::Webchat,
    };
    let span = tracing::info_span!("webchat.message", tenant = %session.tenant_id);
    match state.ingress.accept(item).instrument(span).await {
        Ok(Accepted::New { message, .. }) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "duplicate": false, "message": to_webchat(&message) })),
        )
            .into_response()),
        Ok(Accepted::Duplicate) => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "duplicate": true })),
        )
            .into_response()),
        Ok(Accepted::Refused { refusal, .. }) | Err(IngressError::Refused(refusal)) => {
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "message_refused",
                format!(
                    "the message was not stored: {refusal}, then send it with a new client_message_id"
                ),
            ))
        }
        Err(IngressError::Unavailable | IngressError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the message was not stored; retry with the same client_message_id",
        )),
    }
}

async fn list_messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let session = authenticate(&state, bearer(&headers)?).await?;
    origin::enforce(&headers, &state.config, &session.tenant_id)?;
    let after = parse_after(&params)?;
    let messages = state
        .store
        .messages_after(&session.tenant_id, &session.conversation_id, after, PAGE)
        .await?;
    let messages: Vec<WebchatMessage> = messages.iter().map(to_webchat).collect();
    Ok(axum::Json(json!({ "messages": messages })).into_response())
}

async fn stream_messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = params.get("token").ok_or_else(|| {
        ApiError::unauthorized("missing_token", "pass the session token as ?token=")
    })?;
    let session = authenticate(&state, token).await?;
    // Browsers do not apply CORS to WebSockets: the Origin check is the only guard.
    origin::enforce(&headers, &state.config, &session.tenant_id)?;
    let after = parse_after(&params)?;
    let slot = state.sockets.take(&session.conversation_id)?;
    Ok(ws
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        // The read buffer is allocated up front (128 KiB by default): most of an idle
        // socket's memory. Browsers send a few small frames; larger ones still arrive, read in
        // more steps (socket-bench: 10,000 idle sockets).
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            let conversation_id = session.conversation_id.clone();
            run_socket(socket, &state, session, after).await;
            // The receiver is gone: free the conversation's topic if this was its last listener.
            state.coord.leave(&conversation_id);
            drop(slot);
        }))
}

/// Read buffer of one web chat WebSocket.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Pushes the conversation to one browser: first what it missed, then live. Storage is the
/// source of truth: on every "new message" signal the socket re-reads after the last id it
/// sent, so messages go out in id order, exactly once per connection, even if signals race.
async fn run_socket(
    mut socket: WebSocket,
    state: &AppState,
    session: WebchatSession,
    mut last: i64,
) {
    let mut events = state.coord.subscribe(&session.conversation_id);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    if catch_up(&mut socket, state, &session, &mut last)
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => {
                let result = match event.as_deref() {
                    Ok(WebchatEvent::Message { .. }) | Err(RecvError::Lagged(_)) => {
                        catch_up(&mut socket, state, &session, &mut last).await
                    }
                    Ok(event @ (WebchatEvent::Typing | WebchatEvent::Delta { .. } | WebchatEvent::StreamDiscarded)) => {
                        send_event(&mut socket, event).await
                    }
                    Err(RecvError::Closed) => break,
                };
                if result.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_) | Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            () = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        }
    }
}

async fn catch_up(
    socket: &mut WebSocket,
    state: &AppState,
    session: &WebchatSession,
    last: &mut i64,
) -> Result<(), axum::Error> {
    loop {
        let page = match state
            .store
            .messages_after(&session.tenant_id, &session.conversation_id, *last, PAGE)
            .await
        {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, "web chat catch-up failed");
                return Ok(());
            }
        };
        let full = page.len() as i64 == PAGE;
        for message in &page {
            send_event(
                socket,
                &WebchatEvent::Message {
                    message: to_webchat(message),
                },
            )
            .await?;
            *last = message.id;
        }
        if !full {
            return Ok(());
        }
    }
}

async fn send_event(socket: &mut WebSocket, event: &WebchatEvent) -> Result<(), axum::Error> {
    let text = serde_json::to_string(event).unwrap_or_default();
    socket.send(Message::Text(text.into())).await
}

fn parse_after(params: &HashMap<String, String>) -> Result<i64, ApiError> {
    match params
        .get("after")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => Ok(0),
        Some(raw) => raw.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_after",
                "after must be a message id (a non-negative integer)",
            )
        }),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send `Authorization: Bearer <session_token>`",
            )
        })?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send `Authorization: Bearer <session_token>`",
            )
        })
}

async fn authenticate(state: &AppState, token: &str) -> Result<WebchatSession, ApiError> {
    // Only the hash is stored and compared, so a leaked database does not leak live tokens, and
    // the lookup by hash does not leak token bytes through timing.
    let hash = token_hash(token);
    match state.store.webchat_session(&hash).await {
        Ok(Some(session)) => {
            let now = now_ms();
            let idle = state.config.webchat.session_idle_timeout;
            let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
            let unused = now.saturating_sub(session.last_seen_ms);
            if unused > idle_ms {
                return Err(ApiError::unauthorized(
                    "session_expired",
                    format!(
                        "this chat session expired after {} without use (webchat.session_idle_timeout); create a new session",
                        humantime::format_duration(idle)
                    ),
                ));
            }
            // At most one write per session per minute (or per tenth of a short timeout).
            if unused >= (idle_ms / 10).min(60_000)
                && let Err(err) = state.store.touch_webchat_session(&hash, now).await
            {
                tracing::warn!(error = %err, "cannot record web chat session use");
            }
            Ok(session)
        }
        Ok(None) => Err(ApiError::unauthorized(
            "invalid_token",
            "unknown or expired session token; create a new session",
        )),
        Err(err @ StoreError::Unavailable(_)) => Err(err.into()),
        Err(err) => Err(err.into()),
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::decode_message;

    const MAX: usize = 50;

    fn valid_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 100
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    }

    #[test]
    fn a_valid_body_is_trimmed() {
        let message = decode_message(
            br#"{"client_message_id": " m-1 ", "text": "  halo kak \n"}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(message.client_message_id, "m-1");
        assert_eq!(message.text, "halo kak");
    }

    #[test]
    fn each_refusal_names_what_to_fix() {
        let code = |body: &[u8]| decode_message(body, MAX).unwrap_err().code();
        assert_eq!(code(b"not json"), "invalid_json");
        assert_eq!(code(br#"{"client_message_id": "1"}"#), "invalid_field");
        assert_eq!(
            code(br#"{"client_message_id": "1", "text": "x", "extra": 1}"#),
            "invalid_field"
        );
        assert_eq!(
            code(br#"{"client_message_id": "a b", "text": "x"}"#),
            "invalid_client_message_id"
        );
        assert_eq!(
            code(br#"{"client_message_id": "1", "text": " \n "}"#),
            "empty_message"
        );
        let long = format!(
            r#"{{"client_message_id": "1", "text": "{}"}}"#,
            "é".repeat(51)
        );
        assert_eq!(code(long.as_bytes()), "message_too_long");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_message(&bytes, MAX);
        }

        #[test]
        fn whatever_is_accepted_is_valid(
            id in prop_oneof![".{0,120}", "[a-zA-Z0-9._:-]{1,100}", " [0-9]{1,3} "],
            text in prop_oneof![".{0,80}", "\\PC{0,60}", "[ \t\n]{0,5}[a-z ]{0,60}[ \t\n]{0,5}"],
        ) {
            let body = serde_json::json!({ "client_message_id": id, "text": text });
            match decode_message(body.to_string().as_bytes(), MAX) {
                Ok(message) => {
                    prop_assert!(valid_id(&message.client_message_id));
                    prop_assert_eq!(message.client_message_id.as_str(), id.trim());
                    prop_assert!(!message.text.is_empty());
                    prop_assert_eq!(message.text.as_str(), text.trim());
                    prop_assert!(message.text.chars().count() <= MAX);
                }
                Err(err) => {
                    let trimmed = text.trim();
                    prop_assert!(
                        !valid_id(id.trim())
                            || trimmed.is_empty()
                            || trimmed.chars().count() > MAX,
                        "refused a valid body: {}", err.code()
                    );
                }
            }
        }
    }
}
