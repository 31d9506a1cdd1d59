//! How fast a channel account may send: each adapter states its provider's limits as a
//! [`PacingPolicy`] (from the account's settings); the gateway's dispatcher enforces them and
//! slows an account down when the provider still says "too fast".

use std::time::Duration;

/// Send limits of one channel account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingPolicy {
    /// Messages per second per account; `None` means unlimited.
    pub per_account_per_sec: Option<u32>,
    /// One more message to the same recipient is allowed every `per_recipient_interval`
    /// (a token bucket refilled at that pace); zero means no per-recipient limit.
    pub per_recipient_interval: Duration,
    /// Messages to one recipient that may go back to back before the interval applies
    /// (the bucket's size, at least 1).
    pub per_recipient_burst: u32,
}

impl PacingPolicy {
    /// No limits (web chat: the server pushes to its own sockets).
    pub const UNLIMITED: Self = Self {
        per_account_per_sec: None,
        per_recipient_interval: Duration::ZERO,
        per_recipient_burst: 1,
    };
}
