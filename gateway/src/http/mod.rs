//! The HTTP surface: one module per area, all returning [`crate::http::error::ApiError`] on failure.

pub mod admin;
mod admin_flows;
pub mod console;
pub mod error;
pub mod health;
pub mod limits;
pub mod origin;
pub mod otp;
pub mod owner;
pub mod owner_pages;
pub mod server;
pub mod webchat;
pub mod webhooks;
pub mod widget;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// The whole public router. Layers, outermost first: tracing (method + path only; no bodies),
/// panic → 500, request timeout (→ 503), body limit (→ 413 in our JSON shape via `ApiJson`). The admin routes set their own,
/// larger body limit (`admin.max_upload_bytes`), which wins over the default one. The web chat
/// API (`/v1/webchat/*`) also goes through CORS (origin allowlists) and the per-IP rate limit;
/// its handlers count the per-session limit through the coordination seam.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    let request_timeout = state.config.server.request_timeout;
    let webchat = webchat::router()
        .merge(widget::api_router())
        .layer(from_fn_with_state(state.coord.clone(), limits::per_ip))
        .layer(from_fn_with_state(state.clone(), crate::http::origin::cors));
    Router::new()
        .merge(health::router())
        .merge(webchat)
        .merge(widget::router())
        .merge(admin::router(&state))
        .merge(otp::router(&state))
        .merge(console::router())
        .merge(owner::router())
        .merge(owner_pages::router(&state))
        .merge(webhooks::router())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(request_timeout, limits::request_timeout))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The operator router (`server.admin_bind`): `/metrics` and the detailed `/health/ready`.
pub fn operator_router(state: AppState) -> Router {
    health::operator_router()
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
