//! Telegram webhook: `POST /webhooks/telegram/{bot_id}`. The secret header is compared in
//! constant time (401 otherwise, nothing stored); the update is acknowledged only after it is
//! committed, so Telegram's retry covers a crash, and a replay is harmless (inbox dedupe).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use channels::telegram::update;

use crate::error::ApiError;
use crate::startup::AppState;
use crate::telegram::TelegramInbound;
use crate::telemetry;

/// Largest update body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Telegram routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/telegram/{bot_id}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn receive(
    State(state): State<AppState>,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let secret = headers
        .get(update::SECRET_HEADER)
        .and_then(|v| v.to_str().ok());
    let route = state.telegram.get(&bot_id);
    // An unknown bot and a wrong secret look the same to the caller.
    let Some(route) = route.filter(|r| update::verify_secret(&r.account.webhook_secret, secret))
    else {
        metrics::counter!(telemetry::TELEGRAM_UPDATES_TOTAL, "outcome" => "bad_secret")
            .increment(1);
        tracing::warn!("telegram webhook with a missing or wrong secret token rejected");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_secret",
            "X-Telegram-Bot-Api-Secret-Token does not match this bot's webhook secret",
        ));
    };
    let decoded = match update::decode(&body, &route.bot()) {
        Ok(decoded) => decoded,
        Err(err) => {
            // Authentic but unreadable: a retry cannot fix it, so acknowledge and count it.
            metrics::counter!(telemetry::TELEGRAM_UPDATES_TOTAL, "outcome" => "undecodable")
                .increment(1);
            tracing::warn!(error = %err, "telegram update could not be decoded");
            return Ok(StatusCode::OK.into_response());
        }
    };
    let inbound = TelegramInbound {
        store: state.store.clone(),
        ingress: state.ingress.clone(),
    };
    if inbound.handle(route, decoded).await.is_err() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "not stored; retry",
        ));
    }
    Ok(StatusCode::OK.into_response())
}
