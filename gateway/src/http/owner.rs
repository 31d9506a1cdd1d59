//! The owner pages' JSON API under `/v1/console/…` (same login as the console; role
//! `owner`): unanswered questions grouped by similarity, "answer it" (the owner's answer goes
//! into the tenant's owner FAQ document and the golden set, and is answerable at once),
//! dismiss, CSV export, and the golden question set in `sapa kb eval`'s JSONL format.
//! Agents get 403 on every route here.

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
        .route("/v1/console/bot/publish", post(publish))
        .route("/v1/console/bot/versions", get(versions))
        .route("/v1/console/bot/versions/{n}/restore", post(restore))
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
        "lang": case.lang.unwrap_or_else(|| "id".to_owned()),
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
    axum::Json(json!({"reply": tried.reply, "kind": tried.kind, "citations": citations}))
        .into_response()
}

async fn publish_settings(
    state: &AppState,
    session: &StaffSession,
    settings: &BotSettings,
    note: Option<&str>,
) -> Response {
    let member = &session.member;
    let json = serde_json::to_string(settings).unwrap_or_default();
    let version = match state
        .store
        .publish_bot(
            &member.tenant_id,
            &json,
            &settings.instructions,
            &settings.locale,
            &member.email,
            note,
        )
        .await
    {
        Ok(version) => version,
        Err(err) => return ApiError::from(err).into_response(),
    };
    // Live at once in this process; other replicas re-read within a few seconds.
    state.bots.set(&member.tenant_id, settings);
    audit(state, session, "publish", &format!("version {version}")).await;
    axum::Json(json!({"version": version, "settings": settings})).into_response()
}

async fn publish(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match owner(&state, &headers, true).await {
        Ok(s) => s,
        Err(response) => return response,
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
    publish_settings(&state, &session, &settings, None).await
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
    let note = format!("restored from version {n}");
    publish_settings(&state, &session, &settings, Some(&note)).await
}
