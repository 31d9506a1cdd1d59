//! The owner pages' JSON API under `/v1/console/…` (same login as the console; role
//! `owner`): unanswered questions grouped by similarity, "answer it" (the owner's answer goes
//! into the tenant's owner FAQ document and the golden set, and is answerable at once),
//! dismiss, CSV export, the golden question set in `sapa kb eval`'s JSONL format, the
//! bot settings' drafts, regression check, versions and publishing, usage per day and the
//! monthly quotas. Agents get 403 on every route here.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bot::BotSettings;
use crate::http::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::store::{StaffSession, now_ms, rfc3339};

/// The document the owner's answers are kept in (CSV `question,answer`); its title reads
/// "tanya jawab" in quoted answers.
pub const OWNER_FAQ_DOCUMENT: &str = "tanya-jawab.csv";
/// Unanswered questions read for grouping.
const UNANSWERED_ROWS: i64 = 2_000;
/// Longest owner answer, in characters.
const MAX_ANSWER_CHARS: usize = 2_000;

/// The owner routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/console/unanswered", get(unanswered))
        .route("/v1/console/unanswered/{id}/answer", post(answer))
        .route("/v1/console/unanswered/{id}/dismiss", post(dismiss))
        .route("/v1/console/golden", get(golden).post(add_golden))
        .route("/v1/console/bot/draft", get(draft).put(save_draft))
        .route("/v1/console/bot/draft/try", post(try_draft))
        .route("/v1/console/bot/draft/regression", post(regression))
        .route("/v1/console/bot/publish", post(publish))
        .route("/v1/console/bot/versions", get(versions))
        .route("/v1/console/bot/versions/{n}/restore", post(restore))
        .route("/v1/console/usage", get(usage))
        .route("/v1/console/quota", get(quota).put(put_quota))
}

/// The session of an owner; 401 without a session, 403 (CSRF, or not an owner) otherwise.
pub(crate) async fn owner(
    state: &AppState,
    headers: &HeaderMap,
    state_changing: bool,
) -> Result<StaffSession, Response> {
    let (_, session) = crate::http::console::session(state, headers, state_changing).await?;
    if session.member.role != "owner" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            "this page is for the tenant's owners; ask an owner to change your role",
        )
        .into_response());
    }
    Ok(session)
}

#[derive(Debug, Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

async fn groups(
    state: &AppState,
    tenant_id: &str,
) -> Result<Vec<flows::unanswered::Group>, Response> {
    let asked = state
        .store
        .open_unanswered(tenant_id, UNANSWERED_ROWS)
        .await
        .map_err(|err| ApiError::from(err).into_response())?;
    Ok(flows::unanswered::group(&asked))
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_response(name: &str, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn unanswered(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> Response {
    let session = match owner(&state, &headers, false).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let groups = match groups(&state, &session.member.tenant_id).await {
        Ok(groups) => groups,
        Err(response) => return response,
    };
    if query.format.as_deref() == Some("csv") {
        let mut body = String::from("question,count,last_seen,conversation_ids\r\n");
        for g in &groups {
            body.push_str(&format!(
                "{},{},{},{}\r\n",
                csv_field(&g.question),
                g.count,
                rfc3339(g.last_seen_ms),
                csv_field(&g.conversation_ids.join(" "))
            ));
        }
        return csv_response("unanswered.csv", body);
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            json!({
                "id": g.id.to_string(),
                "question": g.question,
                "count": g.count,
                "last_seen": rfc3339(g.last_seen_ms),
                "conversation_ids": g.conversation_ids,
            })
        })
        .collect();
    axum::Json(json!({ "groups": groups })).into_response()
}

/// The open group `id` of the owner's tenant, or the response to give.
async fn open_group(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> Result<flows::unanswered::Group, Response> {
    let missing = || {
        ApiError::not_found(
            "question_not_found",
            "no open unanswered question has this id (answered or dismissed already?)",
        )
        .into_response()
    };
    let id: i64 = id.parse().map_err(|_| missing())?;
    groups(state, tenant_id)
        .await?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(missing)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    answer: String,
}

async fn answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AnswerBody>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let member = &session.member;
    let text = body.answer.trim();
    if text.is_empty() || text.chars().count() > MAX_ANSWER_CHARS {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_answer",
            format!("answer must be 1 to {MAX_ANSWER_CHARS} characters"),
        )
        .into_response();
    }
    let group = match open_group(&state, &member.tenant_id, &id).await {
        Ok(group) => group,
        Err(response) => return response,
    };
    let now = now_ms();
    let rows = match state
        .store
        .add_owner_answer(&member.tenant_id, &group.question, text, &member.id, now)
        .await
    {
        Ok(rows) => rows,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let mut csv = String::from("question,answer\r\n");
    for (question, answer) in &rows {
        csv.push_str(&format!(
            "{},{}\r\n",
            csv_field(question),
            csv_field(answer)
        ));
    }
    // Re-indexed before the reply: the next customer question is answered from it.
    if let Err(err) = state
        .knowledge
        .ingest(&member.tenant_id, OWNER_FAQ_DOCUMENT, csv.into_bytes())
        .await
    {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "answer_not_indexed",
            format!("the answer could not be added to {OWNER_FAQ_DOCUMENT}: {err}"),
        )
        .into_response();
    }
    let case = json!({
        "id": format!("u{}", group.id),
        "query": group.question,
        "lang": "id",
        "doc": OWNER_FAQ_DOCUMENT,
        "chunk_contains": text.chars().take(60).collect::<String>(),
    });
    let stored = state
        .store
        .put_golden(&member.tenant_id, &group.question, &case.to_string(), now)
        .await
        .and(
            state
                .store
                .resolve_unanswered(&member.tenant_id, &group.member_ids, "answered", now)
                .await,
        );
    if let Err(err) = stored {
        return ApiError::from(err).into_response();
    }
    audit(&state, &session, "answer_unanswered", &group.question).await;
    axum::Json(json!({
        "answered": group.count,
        "document": OWNER_FAQ_DOCUMENT,
        "golden": case,
    }))
    .into_response()
}

async fn dismiss(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let group = match open_group(&state, tenant, &id).await {
        Ok(group) => group,
        Err(response) => return response,
    };
    if let Err(err) = state
        .store
        .resolve_unanswered(tenant, &group.member_ids, "dismissed", now_ms())
        .await
    {
        return ApiError::from(err).into_response();
    }
    audit(&state, &session, "dismiss_unanswered", &group.question).await;
    axum::Json(json!({ "dismissed": group.count })).into_response()
}

async fn audit(state: &AppState, session: &StaffSession, action: &str, detail: &str) {
    crate::http::console::audit(state, &session.member, action, detail).await;
}

async fn golden(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FormatQuery>,
) -> Response {
    let session = match owner(&state, &headers, false).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let lines = match state.store.golden(&session.member.tenant_id).await {
        Ok(lines) => lines,
        Err(err) => return ApiError::from(err).into_response(),
    };
    if query.format.as_deref() == Some("jsonl") {
        let mut body = lines.join("\n");
        body.push('\n');
        let mut response = body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return response;
    }
    let cases: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    axum::Json(json!({ "cases": cases })).into_response()
}

/// One golden question, as a row of `sapa kb eval`'s format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenCase {
    #[serde(default)]
    id: Option<String>,
    query: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    doc: Option<String>,
    #[serde(default)]
    chunk_contains: Option<String>,
    #[serde(default)]
    abstain: bool,
}

async fn add_golden(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(case): ApiJson<GoldenCase>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let query = case.query.trim();
    let invalid = |message: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_case",
            message.to_owned(),
        )
        .into_response()
    };
    if query.is_empty() || query.chars().count() > 500 {
        return invalid("query must be 1 to 500 characters");
    }
    let doc = case.doc.as_deref().map(str::trim).filter(|d| !d.is_empty());
    match (doc, case.abstain) {
        (None, false) => {
            return invalid(
                "give the expected document (`doc`, e.g. \"menu-dan-harga.md\") or `\"abstain\": true` for a question the bot must not answer",
            );
        }
        (Some(_), true) => {
            return invalid("a question either expects a document or `abstain`, not both");
        }
        _ => {}
    }
    let mut row = json!({
        "id": case.id.unwrap_or_else(|| format!("g{}", now_ms())),
        "query": query,
        // The question's language when not given (Indonesian when unsure).
        "lang": case.lang.unwrap_or_else(|| {
            match flows::lang::detect(query) {
                Some(flows::Locale::En) => "en",
                _ => "id",
            }
            .to_owned()
        }),
    });
    if let Some(doc) = doc {
        row["doc"] = json!(doc);
        if let Some(needle) = case.chunk_contains.filter(|c| !c.trim().is_empty()) {
            row["chunk_contains"] = json!(needle);
        }
    } else {
        row["abstain"] = json!(true);
    }
    if let Err(err) = state
        .store
        .put_golden(&session.member.tenant_id, query, &row.to_string(), now_ms())
        .await
    {
        return ApiError::from(err).into_response();
    }
    (StatusCode::CREATED, axum::Json(row)).into_response()
}

/// The tenant's draft, else its live settings, else the defaults.
async fn current_draft(state: &AppState, tenant_id: &str) -> Result<BotSettings, Response> {
    let stored = match state.store.bot_draft(tenant_id).await {
        Ok(Some(draft)) => Some(draft),
        Ok(None) => match state.store.live_bot(tenant_id).await {
            Ok(live) => live.map(|v| v.settings),
            Err(err) => return Err(ApiError::from(err).into_response()),
        },
        Err(err) => return Err(ApiError::from(err).into_response()),
    };
    Ok(stored
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default())
}

async fn draft(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match owner(&state, &headers, false).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    match current_draft(&state, &session.member.tenant_id).await {
        Ok(settings) => axum::Json(settings).into_response(),
        Err(response) => response,
    }
}

fn invalid_settings(problems: &[String]) -> Response {
    let mut response = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_settings",
        problems.join("; "),
    )
    .into_response();
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    response
}

async fn save_draft(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(settings): ApiJson<BotSettings>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    if let Err(problems) = settings.validate() {
        return invalid_settings(&problems);
    }
    let json = serde_json::to_string(&settings).unwrap_or_default();
    let member = &session.member;
    if let Err(err) = state
        .store
        .put_bot_draft(&member.tenant_id, &json, &member.email)
        .await
    {
        return ApiError::from(err).into_response();
    }
    audit(&state, &session, "save_draft", "bot settings").await;
    axum::Json(settings).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TryBody {
    text: String,
}

async fn try_draft(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TryBody>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > state.config.webchat.max_message_chars {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_text",
            format!(
                "text must be 1 to {} characters",
                state.config.webchat.max_message_chars
            ),
        )
        .into_response();
    }
    let tenant = &session.member.tenant_id;
    let settings = match current_draft(&state, tenant).await {
        Ok(settings) => settings,
        Err(response) => return response,
    };
    let locale = flows::Locale::parse(&settings.locale).unwrap_or_default();
    let tried = crate::workers::answer::try_answer(
        &state.answers,
        tenant,
        &settings.compile(),
        locale,
        text,
    )
    .await;
    let citations: Vec<Value> = tried
        .citations
        .iter()
        .map(|(id, title, text)| json!({"id": id, "title": title, "text": text}))
        .collect();
    axum::Json(json!({
        "reply": tried.reply,
        "kind": tried.kind,
        "citations": citations,
        "cited_docs": tried.cited_docs,
        "retrieved_docs": tried.retrieved_docs,
    }))
    .into_response()
}

async fn publish_settings(
    state: &AppState,
    session: &StaffSession,
    settings: &BotSettings,
    note: Option<&str>,
    report: Option<&crate::regression::Report>,
) -> Response {
    let member = &session.member;
    let json = serde_json::to_string(settings).unwrap_or_default();
    let report_json = report.and_then(|r| serde_json::to_string(r).ok());
    let version = match state
        .store
        .publish_bot(
            &member.tenant_id,
            &json,
            &settings.instructions,
            &settings.locale,
            &member.email,
            note,
            report_json.as_deref(),
        )
        .await
    {
        Ok(version) => version,
        Err(err) => return ApiError::from(err).into_response(),
    };
    // Live at once in this process; other replicas re-read within a few seconds.
    state.bots.set(&member.tenant_id, settings);
    state.store.set_usage_zone(
        &member.tenant_id,
        state.bots.get(&member.tenant_id).hours.clone(),
    );
    audit(state, session, "publish", &format!("version {version}")).await;
    axum::Json(json!({"version": version, "settings": settings, "regression": report}))
        .into_response()
}

/// `POST /v1/console/bot/publish`'s optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// Publish even though golden questions newly fail.
    #[serde(default)]
    confirm: bool,
}

async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let body: PublishBody = if body.iter().all(u8::is_ascii_whitespace) {
        PublishBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(err) => {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("the body must be empty or {{\"confirm\": true}} ({err})"),
                )
                .into_response();
            }
        }
    };
    let tenant = &session.member.tenant_id;
    let draft = match state.store.bot_draft(tenant).await {
        Ok(Some(draft)) => draft,
        Ok(None) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "no_draft",
                "there is no draft to publish; save one with PUT /v1/console/bot/draft first",
            )
            .into_response();
        }
        Err(err) => return ApiError::from(err).into_response(),
    };
    let settings: BotSettings = match serde_json::from_str(&draft) {
        Ok(settings) => settings,
        Err(err) => return invalid_settings(&[err.to_string()]),
    };
    if let Err(problems) = settings.validate() {
        return invalid_settings(&problems);
    }
    let report = match check(&state, tenant, &settings).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    if !report.newly_failing.is_empty() && !body.confirm {
        let message = format!(
            "{} golden question(s) pass on the live version but fail on the draft; fix the draft, or publish anyway with {{\"confirm\": true}}",
            report.newly_failing.len()
        );
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": {"code": "regression_failures", "message": message},
                "regression": report,
            })),
        )
            .into_response();
    }
    publish_settings(&state, &session, &settings, None, Some(&report)).await
}

/// The tenant's live settings (the defaults before any version).
async fn live_settings(state: &AppState, tenant_id: &str) -> Result<BotSettings, Response> {
    match state.store.live_bot(tenant_id).await {
        Ok(live) => Ok(live
            .and_then(|v| serde_json::from_str(&v.settings).ok())
            .unwrap_or_default()),
        Err(err) => Err(ApiError::from(err).into_response()),
    }
}

/// Runs the tenant's golden set against `draft` and the live version.
async fn check(
    state: &AppState,
    tenant_id: &str,
    draft: &BotSettings,
) -> Result<crate::regression::Report, Response> {
    let live = live_settings(state, tenant_id).await?;
    let cases = state
        .store
        .golden(tenant_id)
        .await
        .map_err(|err| ApiError::from(err).into_response())?;
    Ok(crate::regression::run(&state.answers, tenant_id, draft, &live, &cases).await)
}

async fn regression(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let draft = match current_draft(&state, tenant).await {
        Ok(settings) => settings,
        Err(response) => return response,
    };
    match check(&state, tenant, &draft).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(response) => response,
    }
}

/// The fields that differ between two versions, as `{"field", "before", "after"}`.
fn diff(before: &Value, after: &Value) -> Vec<Value> {
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| b.get(*f) != a.get(*f))
        .map(|f| json!({"field": f, "before": b.get(f), "after": a.get(f)}))
        .collect()
}

async fn versions(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match owner(&state, &headers, false).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let versions = match state.store.bot_versions(&session.member.tenant_id).await {
        Ok(versions) => versions,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let parsed: Vec<Value> = versions
        .iter()
        .map(|v| serde_json::from_str(&v.settings).unwrap_or(Value::Null))
        .collect();
    let list: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // Newest first: the one before is the next in the list.
            let before = parsed.get(i + 1).cloned().unwrap_or(Value::Null);
            json!({
                "version": v.version,
                "live": i == 0,
                "author": v.author,
                "note": v.note,
                "created_at": rfc3339(v.created_at_ms),
                "settings": parsed[i],
                "diff": diff(&before, &parsed[i]),
                "regression": v
                    .regression
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok()),
            })
        })
        .collect();
    axum::Json(json!({ "versions": list })).into_response()
}

async fn restore(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(n): Path<String>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let missing = || {
        ApiError::not_found("version_not_found", "this tenant has no such version").into_response()
    };
    let Ok(n) = n.parse::<i64>() else {
        return missing();
    };
    let version = match state.store.bot_version(&session.member.tenant_id, n).await {
        Ok(Some(version)) => version,
        Ok(None) => return missing(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let settings: BotSettings = match serde_json::from_str(&version.settings) {
        Ok(settings) => settings,
        Err(err) => return invalid_settings(&[err.to_string()]),
    };
    // A restore is a rollback to settings that were live before: no check holds it up.
    let note = format!("restored from version {n}");
    publish_settings(&state, &session, &settings, Some(&note), None).await
}

/// Longest usage range, in days.
const MAX_USAGE_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// `value` of the query parameter `name` as a date, or the 422 naming it.
fn query_date(name: &str, value: Option<&str>) -> Result<time::Date, ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_date",
            format!("`{name}` must be a date YYYY-MM-DD, e.g. {name}=2026-12-01"),
        )
    };
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    let format = time::format_description::parse_borrowed::<1>("[year]-[month]-[day]")
        .map_err(|_| invalid())?;
    value
        .filter(|v| v.len() == 10)
        .and_then(|v| time::Date::parse(v, &format).ok())
        .ok_or_else(invalid)
}

/// `part` of `whole`, 4 decimals; `None` without any.
// Counts stay far below 2^53: the conversions are exact.
#[allow(clippy::cast_precision_loss)]
fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0)
}

/// The tenant's quota now, with `sapa.toml`'s limits as the fallback.
async fn tenant_quota(state: &AppState, tenant_id: &str) -> Result<crate::usage::Quota, Response> {
    let configured = state.config.tenants.get(tenant_id).map(|t| t.quota);
    crate::usage::quota(&state.store, configured, tenant_id, now_ms())
        .await
        .map_err(|err| ApiError::from(err).into_response())
}

async fn usage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<UsageQuery>,
) -> Response {
    let session = match owner(&state, &headers, false).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let (from, to) = match (
        query_date("from", query.from.as_deref()),
        query_date("to", query.to.as_deref()),
    ) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(err), _) | (_, Err(err)) => return err.into_response(),
    };
    if from > to {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_range",
            "`from` must not be after `to`",
        )
        .into_response();
    }
    if (to - from).whole_days() + 1 > MAX_USAGE_DAYS {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_range",
            format!("the range from `from` to `to` must be at most {MAX_USAGE_DAYS} days"),
        )
        .into_response();
    }
    let days = match state
        .store
        .usage(tenant, &from.to_string(), &to.to_string())
        .await
    {
        Ok(days) => days,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let llm = &state.config.llm;
    let rows: Vec<Value> = days
        .iter()
        .map(|d| {
            json!({
                "date": d.day,
                "channel": d.channel,
                "messages_in": d.messages_in,
                "messages_out": d.messages_out,
                "conversations": d.conversations,
                "handoffs": d.handoffs,
                "answer_turns": d.answer_turns,
                "answered": d.answered,
                "abstained": d.abstained,
                "answer_rate": rate(d.answered, d.answer_turns),
                "abstain_rate": rate(d.abstained, d.answer_turns),
                "first_response_p50_ms": d.first_response_p50_ms,
                "prompt_tokens": d.prompt_tokens,
                "completion_tokens": d.completion_tokens,
                "cost": crate::usage::cost(
                    d.prompt_tokens,
                    d.completion_tokens,
                    llm.price_per_1k_prompt_tokens,
                    llm.price_per_1k_completion_tokens,
                ),
            })
        })
        .collect();
    if query.format.as_deref() == Some("csv") {
        const COLUMNS: [&str; 12] = [
            "date",
            "channel",
            "messages_in",
            "messages_out",
            "conversations",
            "handoffs",
            "answer_rate",
            "abstain_rate",
            "first_response_p50_ms",
            "prompt_tokens",
            "completion_tokens",
            "cost",
        ];
        let mut body = COLUMNS.join(",");
        body.push_str("\r\n");
        for row in &rows {
            let fields: Vec<String> = COLUMNS
                .iter()
                .map(|c| match &row[*c] {
                    Value::Null => String::new(),
                    Value::String(text) => csv_field(text),
                    other => other.to_string(),
                })
                .collect();
            body.push_str(&fields.join(","));
            body.push_str("\r\n");
        }
        return csv_response("usage.csv", body);
    }
    let quota = match tenant_quota(&state, tenant).await {
        Ok(quota) => quota,
        Err(response) => return response,
    };
    // The tenant's date now: days are the tenant's local dates, which a browser elsewhere
    // cannot know.
    let today = state.store.usage_day(tenant, now_ms());
    axum::Json(json!({"days": rows, "quota": quota, "today": today})).into_response()
}

async fn quota(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match owner(&state, &headers, false).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let tenant = &session.member.tenant_id;
    let source = match state.store.quota_override(tenant).await {
        Ok(Some(_)) => "console",
        Ok(None) => "config",
        Err(err) => return ApiError::from(err).into_response(),
    };
    match tenant_quota(&state, tenant).await {
        Ok(quota) => axum::Json(json!({
            "monthly_messages": quota.messages_limit,
            "monthly_llm_tokens": quota.tokens_limit,
            "source": source,
            "quota": quota,
        }))
        .into_response(),
        Err(response) => response,
    }
}

/// `PUT /v1/console/quota`: both limits, 0 for unlimited.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    monthly_messages: i64,
    monthly_llm_tokens: i64,
}

/// Largest quota accepted (a typo guard, far above any real month).
const MAX_QUOTA: i64 = 1_000_000_000_000;

async fn put_quota(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<QuotaBody>,
) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
    };
    let mut problems = Vec::new();
    for (field, value) in [
        ("monthly_messages", body.monthly_messages),
        ("monthly_llm_tokens", body.monthly_llm_tokens),
    ] {
        if !(0..=MAX_QUOTA).contains(&value) {
            problems.push(format!(
                "{field} must be 0 (unlimited) to {MAX_QUOTA} (got {value})"
            ));
        }
    }
    if !problems.is_empty() {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quota",
            problems.join("; "),
        )
        .into_response();
    }
    let member = &session.member;
    let set = crate::store::QuotaOverride {
        monthly_messages: body.monthly_messages,
        monthly_llm_tokens: body.monthly_llm_tokens,
    };
    if let Err(err) = state
        .store
        .put_quota_override(&member.tenant_id, set, &member.email, now_ms())
        .await
    {
        return ApiError::from(err).into_response();
    }
    audit(
        &state,
        &session,
        "set_quota",
        &format!(
            "monthly_messages {} monthly_llm_tokens {}",
            set.monthly_messages, set.monthly_llm_tokens
        ),
    )
    .await;
    quota(State(state), headers).await
}

/// Notices for an owner, each shown once to each owner per month (`GET /v1/console/me`'s
/// `notices`): the quota warning at 80% and the notice at 100%. Agents get none; a failure
/// to read usage shows none (the usage page still shows the banner).
pub async fn notices(state: &AppState, session: &StaffSession) -> Vec<Value> {
    let member = &session.member;
    if member.role != "owner" {
        return Vec::new();
    }
    let Ok(quota) = tenant_quota(state, &member.tenant_id).await else {
        return Vec::new();
    };
    let (kind, message) = if quota.exceeded {
        (
            "quota_exceeded",
            "The monthly quota is reached: the bot now quotes passages from the knowledge base or offers a human, without the language model, until next month or a higher quota.",
        )
    } else if quota.warning {
        (
            "quota_warning",
            "80% of the monthly quota is used. At 100% the bot answers without the language model.",
        )
    } else {
        return Vec::new();
    };
    match state
        .store
        .notice_once(&member.tenant_id, &member.id, kind, &quota.month, now_ms())
        .await
    {
        Ok(true) => {
            vec![json!({"kind": kind, "month": quota.month, "message": message, "quota": quota})]
        }
        Ok(false) => Vec::new(),
        Err(err) => {
            tracing::warn!(error = %err.chain(), "storing an owner notice failed");
            Vec::new()
        }
    }
}
