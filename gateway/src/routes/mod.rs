//! The HTTP surface: one module per area, all returning [`crate::error::ApiError`] on failure.

pub mod admin;
pub mod health;
pub mod telegram;
pub mod webchat;
pub mod whatsapp;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::startup::AppState;

/// The whole router. Layers, outermost first: tracing (method + path only; no bodies), panic →
/// 500, body limit (→ 413 in our JSON shape via `ApiJson`). The admin routes set their own,
/// larger body limit (`admin.max_upload_bytes`), which wins over the default one.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    let max_upload = state.config.admin.max_upload_bytes;
    Router::new()
        .merge(health::router())
        .merge(webchat::router())
        .merge(admin::router(max_upload))
        .merge(whatsapp::router())
        .merge(telegram::router())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
