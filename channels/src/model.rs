//! Provider-independent message types shared by every adapter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which messaging provider a channel account talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The embeddable browser widget and hosted chat page.
    Webchat,
    /// WhatsApp Cloud API.
    Whatsapp,
    /// Telegram Bot API.
    Telegram,
}

impl ChannelKind {
    /// The stable lowercase name used in storage, routes, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webchat => "webchat",
            Self::Whatsapp => "whatsapp",
            Self::Telegram => "telegram",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no known channel kind.
#[derive(Debug, thiserror::Error)]
#[error("unknown channel kind `{0}` (expected webchat, whatsapp or telegram)")]
pub struct UnknownChannelKind(String);

impl FromStr for ChannelKind {
    type Err = UnknownChannelKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webchat" => Ok(Self::Webchat),
            "whatsapp" => Ok(Self::Whatsapp),
            "telegram" => Ok(Self::Telegram),
            other => Err(UnknownChannelKind(other.to_owned())),
        }
    }
}

/// Who wrote a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// The end customer.
    Customer,
    /// Sapa's automatic assistant.
    Bot,
    /// A human agent of the business.
    Agent,
}

impl Author {
    /// The stable lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Bot => "bot",
            Self::Agent => "agent",
        }
    }

    /// Parses the stored name; unknown names are treated as the bot's.
    pub fn parse(s: &str) -> Self {
        match s {
            "customer" => Self::Customer,
            "agent" => Self::Agent,
            _ => Self::Bot,
        }
    }
}

/// One message the gateway asks a channel to deliver, already stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The stored message's id (monotonic within the gateway).
    pub message_id: i64,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// The provider-side address of the customer (chat id, phone number, web session).
    pub recipient: String,
    /// Who wrote it.
    pub author: Author,
    /// Plain text; adapters escape it for their markup.
    pub text: String,
    /// Quick replies the customer can tap, if any.
    pub choices: Vec<String>,
    /// Customer messages this message answers (their client or provider ids).
    pub in_reply_to: Vec<String>,
    /// When the message was created, Unix milliseconds.
    pub created_at_ms: i64,
    /// Unique per logical send; lets receivers drop a re-send after a crash.
    pub idempotency_key: String,
}

/// What the provider said when it accepted a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's id for the sent message (wamid, Telegram message id), if it returns one.
    pub provider_message_id: Option<String>,
}
