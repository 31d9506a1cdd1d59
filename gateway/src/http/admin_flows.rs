//! `/v1/admin/flows`: a tenant's flow documents through the admin API (API key with the
//! `flows` scope). `PUT /v1/admin/flows/{name}` takes the YAML as the body, checks it like
//! `sapa flows check` (every error with its line and column; webhook hosts on the tenant's
//! allow-list) and makes it live at once; `GET` lists or returns one; `DELETE` removes one.
//!
//! The work is in the `pub(super)` functions here, shared with the owner's Flows page
//! (`crate::http::owner_pages`); only the authentication and the body's shape differ.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::admin::AdminTenant;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{now_ms, rfc3339};

/// Largest flow document, in bytes.
const MAX_FLOW_BYTES: usize = 256 * 1024;

/// The tenant's flows: `[{name, description, steps, triggers: {keywords, buttons},
/// updated_at, updated_by}]`, by name.
pub(super) async fn summaries(state: &AppState, tenant: &str) -> Result<Vec<Value>, ApiError> {
    let stored = state.store.flows_of(tenant).await?;
    Ok(stored
        .iter()
        .map(|f| {
            let parsed = flows::flow::parse(&f.source).ok();
            json!({
                "name": f.name,
                "description": parsed.as_ref().map(|p| p.description.clone()),
                "steps": parsed.as_ref().map(|p| p.steps.len()),
                "triggers": parsed.as_ref().map(|p| json!({
                    "keywords": p.triggers.keywords,
                    "buttons": p.triggers.buttons,
                })),
                "updated_at": rfc3339(f.updated_at),
                "updated_by": f.updated_by,
            })
        })
        .collect())
}

/// The YAML of the tenant's flow `name`, as stored; 404 `flow_not_found`.
pub(super) async fn source_of(
    state: &AppState,
    tenant: &str,
    name: &str,
) -> Result<String, ApiError> {
    let stored = state.store.flows_of(tenant).await?;
    stored
        .into_iter()
        .find(|f| f.name == name)
        .map(|f| f.source)
        .ok_or_else(|| no_flow(name))
}

/// Why a flow document was refused.
#[derive(Debug)]
pub(super) enum Refused {
    /// Too large, not UTF-8, a mismatched name, or the store failed.
    Api(ApiError),
    /// Its problems: 422 `invalid_flow` with every `{line, column, message}`.
    Invalid(Vec<flows::flow::FlowError>),
}

impl From<ApiError> for Refused {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let errors = match self {
            Self::Api(err) => return err.into_response(),
            Self::Invalid(errors) => errors,
        };
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        let list: Vec<_> = errors
            .iter()
            .map(|e| json!({"line": e.line, "column": e.column, "message": e.message}))
            .collect();
        let body = json!({"error": {
            "code": "invalid_flow",
            "message": format!("the flow has {} problem(s); the first: {first}", errors.len()),
            "errors": list,
        }});
        (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
    }
}

/// Checks a flow document for `tenant` (size, UTF-8, [`crate::tenant_flows::check`]).
pub(super) fn check_document(
    state: &AppState,
    tenant: &str,
    source: &[u8],
) -> Result<flows::flow::Flow, Refused> {
    if source.len() > MAX_FLOW_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "flow_too_large",
            format!("a flow document is at most {MAX_FLOW_BYTES} bytes"),
        )
        .into());
    }
    let Ok(source) = std::str::from_utf8(source) else {
        return Err(ApiError::bad_request(
            "invalid_flow",
            "the body must be the flow's YAML, in UTF-8",
        )
        .into());
    };
    let hosts = state
        .config
        .tenants
        .get(tenant)
        .map(|t| t.webhook_hosts.clone())
        .unwrap_or_default();
    crate::tenant_flows::check(source, tenant, &hosts).map_err(Refused::Invalid)
}

/// Checks `source` and stores it as the tenant's flow `name` (written by `author`), live at
/// once: 201 (new) or 200 (replaced) `{name, steps, replaced}`. `base` is the collection's
/// path, for the message when the document's `name` is another.
pub(super) async fn store_document(
    state: &AppState,
    tenant: &str,
    name: &str,
    source: &[u8],
    author: &str,
    base: &str,
) -> Result<Response, Refused> {
    let flow = check_document(state, tenant, source)?;
    if flow.name != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "flow_name_mismatch",
            format!(
                "the document is named `{}` but was sent to {base}/{name}; send it to {base}/{} or change its `name`",
                flow.name, flow.name
            ),
        )
        .into());
    }
    // `check_document` read it as UTF-8 already.
    let text = String::from_utf8_lossy(source);
    let stored = async {
        let replaced = state
            .store
            .put_flow(tenant, name, &text, author, now_ms())
            .await?;
        state.answers.flows.reload(&state.store).await?;
        Ok::<_, crate::store::StoreError>(replaced)
    }
    .await;
    let replaced = stored.map_err(ApiError::from)?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = json!({"name": name, "steps": flow.steps.len(), "replaced": replaced});
    Ok((status, axum::Json(body)).into_response())
}

/// Removes the tenant's flow `name`; conversations in it answer freely from their next
/// message. 404 `flow_not_found`.
pub(super) async fn remove(state: &AppState, tenant: &str, name: &str) -> Result<(), ApiError> {
    if !state.store.delete_flow(tenant, name).await? {
        return Err(no_flow(name));
    }
    state.answers.flows.reload(&state.store).await?;
    Ok(())
}

/// `GET /v1/admin/flows`: `{"flows": [{name, description, steps, triggers, updated_at,
/// updated_by}]}`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
) -> Result<Response, ApiError> {
    let flows = summaries(&state, &tenant).await?;
    Ok(axum::Json(json!({ "flows": flows })).into_response())
}

/// `GET /v1/admin/flows/{name}`: the YAML as stored.
pub(super) async fn get_one(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let source = source_of(&state, &tenant, &name).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        source,
    )
        .into_response())
}

/// `PUT /v1/admin/flows/{name}`: stores the body (YAML) as the tenant's flow `name`.
pub(super) async fn put(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    store_document(&state, &tenant, &name, &body, "api", "/v1/admin/flows")
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /v1/admin/flows/{name}`: conversations in it answer freely from their next message.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    remove(&state, &tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn no_flow(name: &str) -> ApiError {
    ApiError::not_found(
        "flow_not_found",
        format!("this tenant has no flow `{name}`"),
    )
}
