//! The trait every channel adapter implements.

use std::time::Duration;

use crate::model::{ChannelKind, CodeDelivery, Delivery, OutboundMessage, Template};
use crate::pacing::PacingPolicy;

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

    /// Delivers one message like [`Channel::send`], resuming after the parts `log` says the
    /// provider already accepted (an earlier attempt, or a sender whose claim expired) and
    /// recording each part in `log` as soon as it is accepted, so no part is ever sent twice.
    /// The default, for channels that send one provider message per message, is `send`.
    ///
    /// # Errors
    /// As [`Channel::send`]; a part that could not be recorded stops the send (transient).
    async fn send_resuming(
        &self,
        msg: &OutboundMessage,
        log: &dyn PartLog,
    ) -> Result<Delivery, ChannelError> {
        let _ = log;
        self.send(msg).await
    }

    /// Shows `recipient` that an answer is being prepared, acknowledging the customer message
    /// `last_message_id` (WhatsApp: mark read + typing indicator). Best effort; the default
    /// does nothing.
    async fn typing(&self, _recipient: &str, _last_message_id: &str) {}

    /// How fast this account may send (the provider's limits, from the account's settings).
    /// The default is unlimited.
    fn pacing(&self) -> PacingPolicy {
        PacingPolicy::UNLIMITED
    }

    /// Acknowledges an inbound event once it is stored, with the token the provider decoded
    /// ([`crate::provider::Inbound::ack`]; Telegram: `answerCallbackQuery`). Best effort; the
    /// default does nothing.
    async fn acknowledge(&self, _token: &str) {}

    /// Follows a contact whose provider address changed (see
    /// [`crate::provider::Event::ContactMoved`]). The default keeps no per-contact state.
    fn contact_moved(&self, _from: &str, _to: &str) {}

    /// The template to send instead when a provider reports that the conversation window
    /// closed while a message was on its way (WhatsApp 131047). The default has none.
    fn reengagement_template(&self) -> Option<Template> {
        None
    }

    /// How this account delivers one-time codes. The default: it does not.
    fn one_time_codes(&self) -> CodeDelivery {
        CodeDelivery::Unsupported
    }

    /// Downloads a customer's media by the provider's media id, checking `sha256` when given
    /// and refusing files over `max_bytes`.
    ///
    /// # Errors
    /// [`MediaError::Unsupported`] by default; otherwise why the file could not be fetched.
    async fn download_media(
        &self,
        _media_id: &str,
        _sha256: Option<&str>,
        _max_bytes: u64,
    ) -> Result<MediaFile, MediaError> {
        Err(MediaError::Unsupported)
    }
}

/// The progress of one message sent as several provider messages, kept by the gateway.
#[async_trait::async_trait]
pub trait PartLog: Send + Sync {
    /// Provider ids of the parts already accepted, in send order.
    fn sent(&self) -> &[String];

    /// Records that part `index` (0-based, in send order) was accepted as
    /// `provider_message_id`; called before the next part is sent.
    ///
    /// # Errors
    /// [`ChannelError::Transient`] when it could not be recorded.
    async fn record(&self, index: usize, provider_message_id: &str) -> Result<(), ChannelError>;
}

/// A [`PartLog`] that remembers nothing: every part is sent (plain [`Channel::send`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPartLog;

#[async_trait::async_trait]
impl PartLog for NoPartLog {
    fn sent(&self) -> &[String] {
        &[]
    }

    async fn record(&self, _index: usize, _provider_message_id: &str) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// A downloaded media file.
#[derive(Debug, Clone)]
pub struct MediaFile {
    /// MIME type reported by the provider.
    pub mime_type: Option<String>,
    /// The bytes (SHA-256 verified when the provider reported a hash).
    pub bytes: Vec<u8>,
}

/// Why inbound media could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// This channel cannot download customer media.
    #[error("media download is not supported by this channel")]
    Unsupported,
    /// The provider API or the media host refused or failed.
    #[error("{0}")]
    Provider(#[from] ChannelError),
    /// The bytes do not match the announced SHA-256.
    #[error("media sha256 mismatch")]
    Corrupt,
    /// The file is larger than the caller accepts.
    #[error("media larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
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
    /// The provider refused because too many messages went to this one recipient (WhatsApp
    /// pair rate limit, 131056); retry after the given delay if known.
    #[error("too many messages to this recipient")]
    RecipientRateLimited {
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

/// What a provider's "too fast" was about ([`ChannelError::throttled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// The account's throughput (WhatsApp 130429, Telegram 429).
    Account,
    /// Messages to one recipient (WhatsApp 131056).
    Recipient,
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

    /// The provider's own wait, when it said "too fast" and gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::RecipientRateLimited { retry_after } => {
                *retry_after
            }
            Self::Transient { .. } | Self::Permanent { .. } => None,
        }
    }

    /// Whether the provider said "too fast", and for whom: the pacer slows down the account
    /// or the one recipient accordingly.
    pub fn throttled(&self) -> Option<Throttled> {
        match self {
            Self::RateLimited { .. } => Some(Throttled::Account),
            Self::RecipientRateLimited { .. } => Some(Throttled::Recipient),
            Self::Transient { .. } | Self::Permanent { .. } => None,
        }
    }

    /// Whether retrying the same send later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::RecipientRateLimited { .. }
            | Self::Transient { .. } => true,
            Self::Permanent { .. } => false,
        }
    }
}

/// A log-safe description of a `reqwest` failure: only its kind. A reqwest error prints the
/// URL, which can contain a token (Telegram puts the bot token in the path).
pub(crate) fn network_reason(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "network error"
    }
}

/// Longest provider error text kept in a failure reason (logs, agent-facing reasons).
pub(crate) const MAX_REASON_CHARS: usize = 120;

/// A provider's error text cut to [`MAX_REASON_CHARS`] characters.
pub(crate) fn short_reason(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}
