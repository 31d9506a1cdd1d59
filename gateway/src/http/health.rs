//! `/health/live`, `/health/ready` and `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::checks;
use crate::state::AppState;
use crate::telemetry;

/// Health and metrics routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
}

async fn live() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let report = checks::run(&state.config, Some(&state.store), &state.http).await;
    let status = if report.iter().all(|c| c.ok) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let checks: serde_json::Map<String, serde_json::Value> = report
        .iter()
        .map(|c| (c.name.to_owned(), json!({ "ok": c.ok, "detail": c.detail })))
        .collect();
    (
        status,
        axum::Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "checks": checks,
        })),
    )
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(depth) = state.store.inbox_depth().await {
        metrics::gauge!(telemetry::INBOX_DEPTH).set(depth as f64);
    }
    if let Ok(pending) = state.store.outbox_pending().await {
        metrics::gauge!(telemetry::OUTBOX_PENDING).set(pending as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
