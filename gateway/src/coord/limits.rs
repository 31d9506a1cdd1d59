//! Keyed GCRA rate limiters (governor): bursts up to the per-minute amount, refilled evenly.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::WebchatConfig;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u32 = 4096;

/// The shared limits a request can be counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimit {
    /// Messages per web chat session (`webchat.messages_per_minute_per_session`), keyed by
    /// conversation id.
    WebchatSession,
    /// Requests per client IP (`webchat.requests_per_minute_per_ip`), keyed by address.
    ClientIp,
    /// Customer messages answered per conversation of the other channels
    /// (`conversation.messages_per_minute`), keyed by conversation id.
    Conversation,
    /// Typing indicators an agent sends from the console: one per 5 s, keyed by conversation
    /// id.
    ConsoleTyping,
}

impl RateLimit {
    /// A short name, for keys shared between replicas.
    pub fn label(self) -> &'static str {
        match self {
            Self::WebchatSession => "session",
            Self::ClientIp => "ip",
            Self::Conversation => "conversation",
            Self::ConsoleTyping => "typing",
        }
    }
}

/// How often the console may show a conversation's customer that an agent is typing.
pub(super) const CONSOLE_TYPING_EVERY: Duration = Duration::from_secs(5);

/// One limiter per [`RateLimit`]; `None` when its rate is 0 (disabled).
pub(super) struct Limiters {
    per_session: Option<Keyed>,
    per_ip: Option<Keyed>,
    per_conversation: Option<Keyed>,
    typing: Option<Keyed>,
    checks: AtomicU32,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("per_session", &self.per_session.is_some())
            .field("per_ip", &self.per_ip.is_some())
            .finish()
    }
}

impl Limiters {
    /// Limiters for the configured rates.
    pub(super) fn new(config: &WebchatConfig) -> Self {
        Self {
            per_session: keyed(config.messages_per_minute_per_session),
            per_ip: keyed(config.requests_per_minute_per_ip),
            per_conversation: None,
            typing: Quota::with_period(CONSOLE_TYPING_EVERY)
                .map(|quota| RateLimiter::keyed(quota.allow_burst(NonZeroU32::MIN))),
            checks: AtomicU32::new(0),
        }
    }

    /// Enables [`RateLimit::Conversation`] at `per_minute` (0: disabled).
    pub(super) fn set_conversation_rate(&mut self, per_minute: u32) {
        self.per_conversation = keyed(per_minute);
    }

    /// Counts one event of `key` against `limit`.
    pub(super) fn check(&self, limit: RateLimit, key: &str) -> Result<(), Duration> {
        self.sweep();
        let limiter = match limit {
            RateLimit::WebchatSession => &self.per_session,
            RateLimit::ClientIp => &self.per_ip,
            RateLimit::Conversation => &self.per_conversation,
            RateLimit::ConsoleTyping => &self.typing,
        };
        match limiter {
            Some(limiter) => limiter
                .check_key(&key.to_owned())
                .map_err(|not_until| not_until.wait_time_from(limiter.clock().now())),
            None => Ok(()),
        }
    }

    /// Forgets keys that are back to a full bucket, now and then, so memory stays bounded by
    /// the clients active in the last minute.
    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        for limiter in [
            &self.per_session,
            &self.per_ip,
            &self.per_conversation,
            &self.typing,
        ]
        .into_iter()
        .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn keyed(per_minute: u32) -> Option<Keyed> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
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
            max_sockets_per_session: 5,
            max_sockets: 100,
            session_idle_timeout: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_session_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limits = Limiters::new(&config(3, 0));
        for _ in 0..3 {
            limits.check(RateLimit::WebchatSession, "a").unwrap();
        }
        let wait = limits.check(RateLimit::WebchatSession, "a").unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        limits.check(RateLimit::WebchatSession, "b").unwrap();
        // The IP limit is disabled.
        for _ in 0..100 {
            limits.check(RateLimit::ClientIp, "127.0.0.1").unwrap();
        }
    }

    #[test]
    fn the_conversation_limit_is_separate_from_web_chat_sessions() {
        let mut limits = Limiters::new(&config(0, 0));
        for _ in 0..100 {
            limits.check(RateLimit::Conversation, "c").unwrap();
        }
        limits.set_conversation_rate(2);
        limits.check(RateLimit::Conversation, "c").unwrap();
        limits.check(RateLimit::Conversation, "c").unwrap();
        let wait = limits.check(RateLimit::Conversation, "c").unwrap_err();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        limits.check(RateLimit::WebchatSession, "c").unwrap();
    }

    #[test]
    fn console_typing_is_one_per_five_seconds_per_conversation() {
        let limits = Limiters::new(&config(0, 0));
        limits.check(RateLimit::ConsoleTyping, "c").unwrap();
        let wait = limits.check(RateLimit::ConsoleTyping, "c").unwrap_err();
        assert!(
            wait > Duration::from_secs(4) && wait <= CONSOLE_TYPING_EVERY,
            "{wait:?}"
        );
        limits.check(RateLimit::ConsoleTyping, "d").unwrap();
    }
}
