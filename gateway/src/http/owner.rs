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
}

/// The session of an owner; 401 without a session, 403 (CSRF, or not an owner) otherwise.
async fn owner(
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
    let member = &session.member;
    if let Err(err) = state
        .store
        .audit(
            &member.tenant_id,
            Some(&member.id),
            action,
            Some(detail),
            now_ms(),
        )
        .await
    {
        tracing::warn!(error = %err, action, "audit log write failed");
    }
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
