//! One webhook router for every provider channel: `GET /webhooks/{kind}` (verification
//! handshake), `POST /webhooks/{kind}` and `POST /webhooks/{kind}/{account}` (events). Each
//! request goes through its provider's `verify` on the raw bytes, then `decode`, then
//! [`InboundEvents::apply`](crate::workers::inbound::InboundEvents::apply).
//!
//! A request is acknowledged only after its events are committed, so the provider's retry
//! covers a crash; replays are harmless (inbox dedupe, statuses only move forward). An
//! authentic body that cannot be read is acknowledged and counted: a retry cannot fix it.
//! Past `server.max_pending_messages` a request gets 503 `overloaded` before its body is
//! read (see [`crate::admission`]).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use channels::provider::{Provider, Verified, WebhookRequest};
use tracing::Instrument as _;

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::telemetry;

/// Webhook routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/{kind}", get(handshake).post(receive_unkeyed))
        .route("/webhooks/{kind}/{account}", post(receive_keyed))
        // Each provider states its own limit; the body is read against it below.
        .layer(DefaultBodyLimit::disable())
}

fn provider(state: &AppState, kind: &str) -> Result<Arc<dyn Provider>, ApiError> {
    state.accounts.provider(kind).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_channel",
            format!("no channel `{kind}` is configured on this server"),
        )
    })
}

async fn handshake(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let provider = provider(&state, &kind)?;
    Ok(match provider.handshake(&query) {
        Some(challenge) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response(),
        None => (StatusCode::FORBIDDEN, "forbidden").into_response(),
    })
}

async fn receive_unkeyed(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(state, kind, None, headers, body).await
}

async fn receive_keyed(
    State(state): State<AppState>,
    Path((kind, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    receive(state, kind, Some(account), headers, body).await
}

/// A webhook request is the root of the traces of the messages it carries.
async fn receive(
    state: AppState,
    kind: String,
    account: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let span = tracing::info_span!("webhook", channel = %kind);
    receive_in_span(state, kind, account, headers, body)
        .instrument(span)
        .await
}

async fn receive_in_span(
    state: AppState,
    kind: String,
    account: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let provider = provider(&state, &kind)?;
    let channel = provider.kind();
    // Over `server.max_pending_messages`: refuse before reading or storing anything; the
    // provider retries on its own schedule.
    if let Some(overloaded) = crate::http::limits::shed(&state.ingress, channel) {
        return Ok(overloaded);
    }
    let count = |outcome: &'static str| {
        metrics::counter!(telemetry::WEBHOOKS_TOTAL, "channel" => channel.as_str(), "outcome" => outcome)
            .increment(1);
    };
    let body: Bytes = axum::body::to_bytes(body, provider.max_body_bytes())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than {} bytes, the most a {channel} webhook may send",
                    provider.max_body_bytes()
                ),
            )
        })?;
    let request = WebhookRequest {
        account: account.as_deref(),
        headers: &headers,
        body: &body,
    };
    let verified = match provider.verify(&request) {
        Verified::Accounts(keys) => keys,
        Verified::Rejected { code, message } => {
            count("bad_signature");
            tracing::warn!(%channel, "webhook with a missing or invalid signature rejected");
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, code, message));
        }
    };
    let decoded = match provider.decode(&request) {
        Ok(decoded) => decoded,
        Err(err) => {
            count("undecodable");
            tracing::warn!(%channel, error = %err, "authentic webhook could not be decoded");
            return Ok(StatusCode::OK.into_response());
        }
    };
    let dropped = |reason: &'static str, n: usize| {
        metrics::counter!(telemetry::WEBHOOK_DROPPED_TOTAL, "channel" => channel.as_str(), "reason" => reason)
            .increment(n as u64);
    };
    if decoded.undecodable > 0 {
        dropped("undecodable", decoded.undecodable);
        tracing::warn!(%channel, count = decoded.undecodable, "undecodable webhook parts skipped");
    }
    for (code, title) in &decoded.provider_errors {
        dropped("provider_error", 1);
        tracing::warn!(%channel, code, title = %title, "provider reported an error");
    }
    let mut batches = Vec::new();
    for part in decoded.accounts {
        let Some(route) = state.accounts.route(channel, &part.account) else {
            dropped("unknown_account", 1);
            tracing::warn!(%channel, account = %part.account, "webhook events for an account no tenant owns; dropped");
            continue;
        };
        if !verified.contains(&part.account) {
            dropped("wrong_credentials", 1);
            tracing::warn!(%channel, account = %part.account, "webhook events signed with another account's credentials; dropped");
            continue;
        }
        batches.push(state.inbound.apply(route, part.events));
    }
    let stored = futures::future::join_all(batches).await;
    if stored.iter().any(Result::is_err) {
        count("unavailable");
        // The provider retries; what was stored is deduplicated on the retry.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "not stored; retry",
        ));
    }
    count("accepted");
    Ok(StatusCode::OK.into_response())
}
