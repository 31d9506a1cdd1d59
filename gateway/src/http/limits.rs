//! Limits of the HTTP surface: the request timeout (`server.request_timeout`, 503
//! `request_timeout`), and the rate limits of the public web chat API: messages per session and
//! requests per client IP (`webchat.messages_per_minute_per_session`,
//! `webchat.requests_per_minute_per_ip`), counted through the [`Coord`] seam so replicas share
//! them. Over a rate limit: 429 `rate_limited` with `Retry-After`. Over
//! `server.max_pending_messages`: 503 `overloaded` with `Retry-After` ([`shed`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use channels::ChannelKind;

use crate::admission::Overloaded;
use crate::coord::{Coord, RateLimit};
use crate::http::error::ApiError;
use crate::telemetry;
use crate::workers::ingress::Ingress;

/// 429 `rate_limited` with `Retry-After` (whole seconds, at least 1).
pub fn rate_limited(wait: Duration, what: &str) -> Response {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    (
        [(header::RETRY_AFTER, seconds.to_string())],
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{what}; retry in {seconds} s"),
        ),
    )
        .into_response()
}

/// Admission control for an inbound request of `channel`: `None` to go on, or the fast 503
/// `overloaded` (with `Retry-After`) to answer before anything is read or stored, counted in
/// `sapa_ingress_shed_total`. See [`crate::admission`].
pub fn shed(ingress: &Ingress, channel: ChannelKind) -> Option<Response> {
    Some(overloaded(ingress.admit().err()?, channel))
}

/// The 503 `overloaded` response for `over`, counted.
fn overloaded(over: Overloaded, channel: ChannelKind) -> Response {
    metrics::counter!(telemetry::INGRESS_SHED_TOTAL, "channel" => channel.as_str()).increment(1);
    tracing::debug!(%channel, pending = over.pending, "inbound request shed: overloaded");
    let seconds = over.retry_after_secs;
    (
        [(header::RETRY_AFTER, seconds.to_string())],
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "too many messages are waiting to be stored or answered (server.max_pending_messages); nothing was stored, retry in {seconds} s"
            ),
        ),
    )
        .into_response()
}

/// Middleware: a request (body upload included) that takes longer than `limit` is abandoned
/// with 503 `request_timeout`. A WebSocket is not limited once upgraded: the upgrade response
/// returns at once.
pub async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request did not complete within {} (server.request_timeout); send the body promptly and retry",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}

/// Middleware: the per-IP limit (requests without a peer address, e.g. in-memory router
/// tests, are not counted).
pub async fn per_ip(State(coord): State<Arc<dyn Coord>>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(ip) = peer
        && let Err(wait) = coord.check_rate(RateLimit::ClientIp, &ip.to_string()).await
    {
        return rate_limited(wait, "too many requests from your address");
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_429_says_when_to_retry() {
        let response = rate_limited(Duration::from_millis(2500), "slow down");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn over_the_pending_limit_is_a_503_that_says_when_to_retry() {
        let admission = crate::admission::Admission::new(2, Duration::from_millis(200));
        admission.accepted(2);
        let over = admission.check().unwrap_err();
        let response = overloaded(over, ChannelKind::Webchat);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
