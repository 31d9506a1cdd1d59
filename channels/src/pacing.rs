//! How fast a channel account may send: each adapter states its provider's limits as a
//! [`PacingPolicy`]; the gateway's dispatcher enforces them.

use std::time::Duration;

/// Send limits of one channel account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingPolicy {
    /// Messages per second per account; `None` means unlimited.
    pub per_account_per_sec: Option<u32>,
    /// Minimum time between two messages to the same recipient.
    pub per_recipient_gap: Duration,
}

impl PacingPolicy {
    /// No limits (web chat: the server pushes to its own sockets).
    pub const UNLIMITED: Self = Self {
        per_account_per_sec: None,
        per_recipient_gap: Duration::ZERO,
    };
}
