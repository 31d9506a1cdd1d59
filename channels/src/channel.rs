//! The trait every channel adapter implements.

use std::time::Duration;

use crate::model::{ChannelKind, Delivery, OutboundMessage};

/// One configured account on one messaging provider.
///
/// Implementations translate our model into the provider's wire format and deliver it;
/// they never call an LLM or touch conversation state.
#[async_trait::async_trait]
pub trait Channel: Send + Sync + std::fmt::Debug {
    /// Which provider this is.
    fn kind(&self) -> ChannelKind;

    /// Delivers one message through the provider API.
    ///
    /// # Errors
    /// [`ChannelError::is_transient`] tells the dispatcher whether a retry can succeed.
    async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError>;

    /// Shows `recipient` that an answer is being prepared, acknowledging the customer message
    /// `last_message_id` (WhatsApp: mark read + typing indicator). Best effort; the default
    /// does nothing.
    async fn typing(&self, _recipient: &str, _last_message_id: &str) {}
}

/// Why a send failed, classified so the dispatcher can decide to retry or give up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The provider asked us to slow down; retry after the given delay if known.
    #[error("rate limited by provider")]
    RateLimited {
        /// The provider's `retry_after`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// A network error, timeout or 5xx; a later retry can succeed.
    #[error("transient provider failure: {reason}")]
    Transient {
        /// Short, log-safe description (status code, error kind).
        reason: String,
    },
    /// The provider refused the message for good (bad recipient, blocked, invalid payload).
    #[error("provider rejected the message: {reason}")]
    Permanent {
        /// Provider error code, when it has one.
        code: Option<String>,
        /// Short, log-safe description shown to agents.
        reason: String,
    },
}

/// The [`ChannelError::Permanent`] code an adapter uses when the customer can no longer be
/// reached on this channel (blocked the bot, left, deleted the account). The gateway then
/// marks the contact unreachable: no further sends until the customer writes again.
pub const UNREACHABLE_CODE: &str = "recipient_unreachable";

impl ChannelError {
    /// Whether the provider said the recipient cannot be reached any more.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Permanent { code: Some(code), .. } if code == UNREACHABLE_CODE)
    }

    /// Whether retrying the same send later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transient { .. } => true,
            Self::Permanent { .. } => false,
        }
    }
}
