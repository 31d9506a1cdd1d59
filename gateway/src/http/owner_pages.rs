//! The owner's knowledge and API key pages' JSON API under `/v1/console/…` (console login,
//! role `owner`, `X-CSRF-Token` on every change): the knowledge documents (list with chunk
//! counts and dates, upload, chunk preview, replace, delete), the search playground (what the
//! bot would retrieve for a question, with relevance and the answer threshold), and the
//! tenant's API keys (list without secrets, create with the secret shown once, revoke), and the
//! tenant's flows (list, read, check, save, delete; the Flows page's editor).
//!
//! The work is the admin API's (`crate::http::admin`'s and `crate::http::admin_flows`' shared
//! functions); only the authentication differs: the tenant is the owner's, never a parameter.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_key::{self, Scope};
use crate::http::error::{ApiError, ApiJson};
use crate::http::owner::owner;
use crate::http::{admin, admin_flows};
use crate::state::AppState;
use crate::store::{StaffSession, rfc3339};

/// Most API keys a tenant may have active at once.
const MAX_ACTIVE_KEYS: usize = 20;

/// The knowledge and API key routes of the owner pages. Uploads may be as large as
/// `admin.max_upload_bytes`.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/console/knowledge/documents",
            get(list_documents).post(upload_document),
        )
        .route(
            "/v1/console/knowledge/documents/{id}",
            delete(delete_document).put(replace_document),
        )
        .route(
            "/v1/console/knowledge/documents/{id}/chunks",
            get(document_chunks),
        )
        .route("/v1/console/knowledge/search", get(search))
        .route("/v1/console/api-keys", get(api_keys).post(create_api_key))
        .route("/v1/console/api-keys/{prefix}/revoke", post(revoke_api_key))
        .route("/v1/console/flows", get(list_flows))
        // `POST /v1/console/flows/check` is this route too, so a flow named `check` can still
        // be read, saved and deleted.
        .route(
            "/v1/console/flows/{name}",
            get(flow_source)
                .put(save_flow)
                .delete(delete_flow)
                .post(check_flow),
        )
        .layer(DefaultBodyLimit::max(state.config.admin.max_upload_bytes))
}

fn query_error(rejection: &QueryRejection) -> Response {
    ApiError::bad_request("invalid_query", rejection.body_text()).into_response()
}

async fn audit(state: &AppState, session: &StaffSession, action: &str, detail: &str) {
    crate::http::console::audit(state, &session.member, action, detail).await;
}

/// Unwraps a handler step: the value, or the response to give.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => return IntoResponse::into_response(err),
        }
    };
}

/// `GET /v1/console/knowledge/documents`: `{"documents": [{id, name, title, chunks, sha256,
/// created_at, updated_at}], "max_upload_bytes", "formats"}`.
async fn list_documents(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = step!(owner(&state, &headers, false).await);
    let documents = step!(admin::documents(&state, &session.member.tenant_id).await);
    axum::Json(json!({
        "documents": documents,
        "max_upload_bytes": state.config.admin.max_upload_bytes,
        "formats": knowledge::ingest::SUPPORTED,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/console/knowledge/documents?name=FILE.md` with the file's bytes as the body: one
/// file per request (the page sends several in a row, each with its own progress bar). A
/// document with the same name is replaced.
async fn upload_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<NameParams>, QueryRejection>,
    body: Body,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    let Query(params) = step!(params.map_err(|r| query_error(&r)));
    let name = step!(admin::document_name(params.name.as_deref()));
    let bytes = step!(admin::upload_body(&state, &headers, body).await);
    let tenant = &session.member.tenant_id;
    let stored = step!(admin::store_document(&state, tenant, &name, bytes).await);
    audit(&state, &session, "upload_document", &name).await;
    (
        stored.status,
        axum::Json(json!({ "outcome": stored.outcome, "document": stored.document })),
    )
        .into_response()
}

/// `PUT /v1/console/knowledge/documents/{id}?name=NEW.md`: replaces document `id` with the
/// body. Under the same name the document is re-indexed in place; under another name the new
/// one is indexed first and the old one deleted after, so the bot is never without both.
async fn replace_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<NameParams>, QueryRejection>,
    body: Body,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    let Query(params) = step!(params.map_err(|r| query_error(&r)));
    let tenant = &session.member.tenant_id;
    // The document must exist in this tenant before anything is read or written.
    step!(admin::document_chunks(&state, tenant, &id).await);
    let name = step!(admin::document_name(params.name.as_deref()));
    let bytes = step!(admin::upload_body(&state, &headers, body).await);
    let stored = step!(admin::store_document(&state, tenant, &name, bytes).await);
    if knowledge::document_id(tenant, &name) != id {
        step!(admin::remove_document(&state, tenant, &id).await);
    }
    audit(&state, &session, "replace_document", &name).await;
    axum::Json(json!({ "outcome": stored.outcome, "replaced": id, "document": stored.document }))
        .into_response()
}

/// `DELETE /v1/console/knowledge/documents/{id}`: 204.
async fn delete_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    step!(admin::remove_document(&state, &session.member.tenant_id, &id).await);
    audit(&state, &session, "delete_document", &id).await;
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /v1/console/knowledge/documents/{id}/chunks`: `{"document_id", "chunks": [{id, title,
/// heading_path, text}]}` in document order.
async fn document_chunks(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = step!(owner(&state, &headers, false).await);
    let chunks = step!(admin::document_chunks(&state, &session.member.tenant_id, &id).await);
    let chunks: Vec<Value> = chunks
        .into_iter()
        .map(|c| json!({"id": c.id, "title": c.title, "heading_path": c.heading_path, "text": c.text}))
        .collect();
    axum::Json(json!({ "document_id": id, "chunks": chunks })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/console/knowledge/search?q=…&limit=5`: the admin search, for the owner's tenant.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Response {
    let session = step!(owner(&state, &headers, false).await);
    let Query(params) = step!(params.map_err(|r| query_error(&r)));
    let found = step!(
        admin::search_knowledge(&state, &session.member.tenant_id, &params.q, params.limit).await
    );
    axum::Json(found).into_response()
}

/// `GET /v1/console/api-keys`: `{"keys": [{prefix, scopes, created_at, last_used_at,
/// revoked_at}]}`, never a secret or its hash.
async fn api_keys(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = step!(owner(&state, &headers, false).await);
    let keys = step!(
        state
            .store
            .api_keys(&session.member.tenant_id)
            .await
            .map_err(ApiError::from)
    );
    let keys: Vec<Value> = keys
        .iter()
        .rev()
        .map(|k| {
            json!({
                "prefix": k.prefix,
                "scopes": k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "created_at": rfc3339(k.created_at_ms),
                "last_used_at": k.last_used_at_ms.map(rfc3339),
                "revoked_at": k.revoked_at_ms.map(rfc3339),
            })
        })
        .collect();
    axum::Json(json!({ "keys": keys, "scopes": Scope::ALL.map(Scope::as_str) })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    scopes: Vec<String>,
}

/// `POST /v1/console/api-keys` `{"scopes": ["knowledge", "messages", "otp"]}`: 201 with the
/// key (`"key"`), shown this once; only its prefix and hash are stored.
async fn create_api_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<NewKeyBody>, ApiError>,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    let ApiJson(body) = step!(body);
    let all = Scope::ALL.map(Scope::as_str).join(", ");
    let mut scopes = Vec::new();
    for name in &body.scopes {
        let scope = step!(Scope::parse(name.trim()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_scope",
                format!("unknown scope `{name}`; choose from {all}"),
            )
        }));
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_scope",
            format!("choose at least one scope: {all}"),
        )
        .into_response();
    }
    let tenant = &session.member.tenant_id;
    let existing = step!(state.store.api_keys(tenant).await.map_err(ApiError::from));
    if existing
        .iter()
        .filter(|k| k.revoked_at_ms.is_none())
        .count()
        >= MAX_ACTIVE_KEYS
    {
        return ApiError::new(
            StatusCode::CONFLICT,
            "too_many_keys",
            format!("this tenant has {MAX_ACTIVE_KEYS} active API keys; revoke one you no longer use first"),
        )
        .into_response();
    }
    let key = api_key::generate();
    step!(
        state
            .store
            .create_scoped_api_key(tenant, &key.prefix, &key.hash, &scopes)
            .await
            .map_err(ApiError::from)
    );
    audit(&state, &session, "create_api_key", &key.prefix).await;
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "key": key.key,
            "prefix": key.prefix,
            "scopes": scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        })),
    )
        .into_response()
}

/// `POST /v1/console/api-keys/{prefix}/revoke`: the key stops working at once.
async fn revoke_api_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(prefix): Path<String>,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    let revoked = step!(
        state
            .store
            .revoke_api_key(&session.member.tenant_id, &prefix)
            .await
            .map_err(ApiError::from)
    );
    if !revoked {
        return ApiError::not_found(
            "api_key_not_found",
            format!("this tenant has no active API key `{prefix}`"),
        )
        .into_response();
    }
    audit(&state, &session, "revoke_api_key", &prefix).await;
    axum::Json(json!({ "revoked": prefix })).into_response()
}

/// `GET /v1/console/flows`: `{"flows": [{name, description, steps, triggers: {keywords,
/// buttons}, updated_at, updated_by}]}`.
async fn list_flows(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = step!(owner(&state, &headers, false).await);
    let flows = step!(admin_flows::summaries(&state, &session.member.tenant_id).await);
    axum::Json(json!({ "flows": flows })).into_response()
}

/// `GET /v1/console/flows/{name}`: `{"name", "source"}`, the YAML as stored.
async fn flow_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let session = step!(owner(&state, &headers, false).await);
    let source = step!(admin_flows::source_of(&state, &session.member.tenant_id, &name).await);
    axum::Json(json!({ "name": name, "source": source })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowBody {
    source: String,
}

/// `PUT /v1/console/flows/{name}` `{"source": YAML}`: checked like the admin API's (422
/// `invalid_flow` with every `{line, column, message}`), stored and live at once.
async fn save_flow(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<FlowBody>, ApiError>,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    let ApiJson(body) = step!(body);
    let member = &session.member;
    let saved = step!(
        admin_flows::store_document(
            &state,
            &member.tenant_id,
            &name,
            body.source.as_bytes(),
            &member.email,
            "/v1/console/flows",
        )
        .await
    );
    audit(&state, &session, "save_flow", &name).await;
    saved
}

/// `POST /v1/console/flows/check` `{"source": YAML}`: `{"ok": true, "name", "steps"}` or the
/// 422 `invalid_flow` errors; nothing is stored.
async fn check_flow(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<ApiJson<FlowBody>, ApiError>,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    if name != "check" {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let ApiJson(body) = step!(body);
    let flow = step!(admin_flows::check_document(
        &state,
        &session.member.tenant_id,
        body.source.as_bytes()
    ));
    axum::Json(json!({ "ok": true, "name": flow.name, "steps": flow.steps.len() })).into_response()
}

/// `DELETE /v1/console/flows/{name}`: 204; conversations in it answer freely from their next
/// message.
async fn delete_flow(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let session = step!(owner(&state, &headers, true).await);
    step!(admin_flows::remove(&state, &session.member.tenant_id, &name).await);
    audit(&state, &session, "delete_flow", &name).await;
    StatusCode::NO_CONTENT.into_response()
}
