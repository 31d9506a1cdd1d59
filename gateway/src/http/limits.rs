//! Rate limits of the public web chat API: messages per session and requests per client IP
//! (`webchat.messages_per_minute_per_session`, `webchat.requests_per_minute_per_ip`), each a
//! keyed GCRA limiter (bursts up to the per-minute amount, refilled evenly). Over the limit:
//! 429 `rate_limited` with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::WebchatConfig;
use crate::http::error::ApiError;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u32 = 4096;

/// The web chat rate limiters (shared by all requests of one server).
pub struct Limits {
    per_session: Option<Keyed<String>>,
    per_ip: Option<Keyed<IpAddr>>,
    checks: AtomicU32,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_session", &self.per_session.is_some())
            .field("per_ip", &self.per_ip.is_some())
            .finish()
    }
}

impl Limits {
    /// Limiters for the configured rates (0 disables one).
    pub fn new(config: &WebchatConfig) -> Self {
        Self {
            per_session: keyed(config.messages_per_minute_per_session),
            per_ip: keyed(config.requests_per_minute_per_ip),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts one message of the session (conversation id); `Err(wait)` when over the limit.
    ///
    /// # Errors
    /// How long until the session may post again.
    pub fn check_session(&self, conversation_id: &str) -> Result<(), Duration> {
        self.sweep();
        match &self.per_session {
            Some(limiter) => check(limiter, &conversation_id.to_owned()),
            None => Ok(()),
        }
    }

    /// Counts one request from `ip`; `Err(wait)` when over the limit.
    ///
    /// # Errors
    /// How long until the address may send again.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.sweep();
        match &self.per_ip {
            Some(limiter) => check(limiter, &ip),
            None => Ok(()),
        }
    }

    /// Forgets keys that are back to a full bucket, now and then, so memory stays bounded by
    /// the clients active in the last minute.
    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        if let Some(limiter) = &self.per_session {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn keyed<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<Keyed<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn check<K: std::hash::Hash + Eq + Clone>(limiter: &Keyed<K>, key: &K) -> Result<(), Duration> {
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
}

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

/// Middleware: the per-IP limit (requests without a peer address, e.g. in-memory router
/// tests, are not counted).
pub async fn per_ip(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(ip) = peer
        && let Err(wait) = limits.check_ip(ip)
    {
        return rate_limited(wait, "too many requests from your address");
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn config(session: u32, ip: u32) -> WebchatConfig {
        WebchatConfig {
            max_message_chars: 10,
            messages_per_minute_per_session: session,
            requests_per_minute_per_ip: ip,
        }
    }

    #[test]
    fn a_session_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limits = Limits::new(&config(3, 0));
        for _ in 0..3 {
            limits.check_session("a").unwrap();
        }
        let wait = limits.check_session("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        limits.check_session("b").unwrap();
        // The IP limit is disabled.
        for _ in 0..100 {
            limits.check_ip(IpAddr::from([127, 0, 0, 1])).unwrap();
        }
    }

    #[test]
    fn the_429_says_when_to_retry() {
        let response = rate_limited(Duration::from_millis(2500), "slow down");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
