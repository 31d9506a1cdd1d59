//! `/v1/admin/flows`: a tenant's flow documents through the admin API (API key with the
//! `flows` scope). `PUT /v1/admin/flows/{name}` takes the YAML as the body, checks it like
//! `sapa flows check` (every error with its line and column; webhook hosts on the tenant's
//! allow-list) and makes it live at once; `GET` lists or returns one; `DELETE` removes one.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin::AdminTenant;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{now_ms, rfc3339};

/// Largest flow document, in bytes.
const MAX_FLOW_BYTES: usize = 256 * 1024;

/// `GET /v1/admin/flows`: `{"flows": [{name, description, steps, updated_at, updated_by}]}`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
) -> Result<Response, ApiError> {
    let stored = state.store.flows_of(&tenant).await?;
    let flows: Vec<_> = stored
        .iter()
        .map(|f| {
            let parsed = flows::flow::parse(&f.source).ok();
            json!({
                "name": f.name,
                "description": parsed.as_ref().map(|p| p.description.clone()),
                "steps": parsed.as_ref().map(|p| p.steps.len()),
                "updated_at": rfc3339(f.updated_at),
                "updated_by": f.updated_by,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "flows": flows })).into_response())
}

/// `GET /v1/admin/flows/{name}`: the YAML as stored.
pub(super) async fn get_one(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let stored = state.store.flows_of(&tenant).await?;
    let Some(flow) = stored.into_iter().find(|f| f.name == name) else {
        return Err(no_flow(&name));
    };
    Ok((
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        flow.source,
    )
        .into_response())
}

/// `PUT /v1/admin/flows/{name}`: stores the body (YAML) as the tenant's flow `name`.
pub(super) async fn put(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_FLOW_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "flow_too_large",
            format!("a flow document is at most {MAX_FLOW_BYTES} bytes"),
        ));
    }
    let Ok(source) = std::str::from_utf8(&body) else {
        return Err(ApiError::bad_request(
            "invalid_flow",
            "the body must be the flow's YAML, in UTF-8",
        ));
    };
    let hosts = state
        .config
        .tenants
        .get(&tenant)
        .map(|t| t.webhook_hosts.clone())
        .unwrap_or_default();
    let flow = match crate::tenant_flows::check(source, &tenant, &hosts) {
        Ok(flow) => flow,
        Err(errors) => {
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
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response());
        }
    };
    if flow.name != name {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "flow_name_mismatch",
            format!(
                "the document is named `{}` but was sent to /v1/admin/flows/{name}; send it to /v1/admin/flows/{} or change its `name`",
                flow.name, flow.name
            ),
        ));
    }
    let replaced = state
        .store
        .put_flow(&tenant, &name, source, "api", now_ms())
        .await?;
    state.answers.flows.reload(&state.store).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = json!({"name": name, "steps": flow.steps.len(), "replaced": replaced});
    Ok((status, axum::Json(body)).into_response())
}

/// `DELETE /v1/admin/flows/{name}`: conversations in it answer freely from their next message.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if !state.store.delete_flow(&tenant, &name).await? {
        return Err(no_flow(&name));
    }
    state.answers.flows.reload(&state.store).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn no_flow(name: &str) -> ApiError {
    ApiError::not_found(
        "flow_not_found",
        format!("this tenant has no flow `{name}`; GET /v1/admin/flows lists them"),
    )
}
