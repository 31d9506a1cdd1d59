//! Health and metrics. The public port answers `/health/live` and a bare `/health/ready`
//! (`{"status": "ready" | "not_ready"}`, 200 or 503); the operator listener
//! (`server.admin_bind`) adds each dependency's state and error text to `/health/ready`, and
//! serves `/metrics`. Details name internal URLs and errors, so they never go public.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::checks;
use crate::state::AppState;
use crate::telemetry;

/// Public health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// Operator routes: health with details, and metrics.
pub fn operator_router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready_details))
        .route("/metrics", get(render_metrics))
}

async fn live() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready when every check passes; `degraded` (still 200: ingress keeps accepting into the
/// database) when only Redis or Qdrant is down: without Redis every replica coordinates on
/// its own, without Qdrant accepted messages wait for their answers (retried) while webhooks
/// keep being acknowledged.
fn status_of(report: &[checks::Check]) -> (StatusCode, &'static str) {
    let mut failed = report.iter().filter(|c| !c.ok).peekable();
    if failed.peek().is_none() {
        (StatusCode::OK, "ready")
    } else if failed.all(|c| c.name == "redis" || c.name == "qdrant") {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    }
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let report = checks::run(
        &state.config,
        Some(&state.store),
        Some(state.knowledge.as_ref()),
        &state.http,
    )
    .await;
    let (status, label) = status_of(&report);
    (status, axum::Json(json!({ "status": label })))
}

async fn ready_details(State(state): State<AppState>) -> impl IntoResponse {
    let report = checks::run(
        &state.config,
        Some(&state.store),
        Some(state.knowledge.as_ref()),
        &state.http,
    )
    .await;
    let (status, label) = status_of(&report);
    let checks: serde_json::Map<String, serde_json::Value> = report
        .iter()
        .map(|c| (c.name.to_owned(), json!({ "ok": c.ok, "detail": c.detail })))
        .collect();
    (
        status,
        axum::Json(json!({ "status": label, "checks": checks })),
    )
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(depth) = state.store.inbox_depth().await {
        metrics::gauge!(telemetry::INBOX_DEPTH).set(depth as f64);
    }
    if let Ok(pending) = state.store.outbox_pending().await {
        metrics::gauge!(telemetry::OUTBOX_PENDING).set(pending as f64);
    }
    metrics::gauge!(telemetry::WEBCHAT_SOCKETS).set(state.sockets.open() as f64);
    metrics::gauge!(telemetry::WEBCHAT_TOPICS).set(state.coord.live_topics() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
