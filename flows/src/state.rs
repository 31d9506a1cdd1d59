//! Conversation state as the engine sees it (plain data, no storage).

use serde::{Deserialize, Serialize};

/// Who is answering the conversation right now (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// The bot answers.
    Bot,
    /// Handed off; waiting for an agent to take it. The bot stays silent.
    WaitingHuman,
    /// An agent owns it. The bot stays silent.
    Human,
    /// Finished; a new customer message reopens it with the bot.
    Closed,
}

impl ConversationState {
    /// The stable name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::WaitingHuman => "waiting_human",
            Self::Human => "human",
            Self::Closed => "closed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bot" => Some(Self::Bot),
            "waiting_human" => Some(Self::WaitingHuman),
            "human" => Some(Self::Human),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }

    /// Whether a human owns (or is about to own) the conversation.
    pub fn is_human_owned(self) -> bool {
        matches!(self, Self::WaitingHuman | Self::Human)
    }
}

/// The language the bot speaks with a customer. Indonesian is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Locale {
    /// Bahasa Indonesia.
    #[default]
    Id,
    /// English.
    En,
}

impl Locale {
    /// The BCP 47 code (`id` or `en`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::En => "en",
        }
    }

    /// Parses `id`, `en` or a tag starting with them (`en-US`); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let primary = lower.split(['-', '_']).next().unwrap_or_default();
        match primary {
            "id" | "in" => Some(Self::Id),
            "en" => Some(Self::En),
            _ => None,
        }
    }
}

/// What the engine needs to know about a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Who answers.
    pub state: ConversationState,
    /// The language the customer last wrote in (or chose).
    pub locale: Locale,
    /// How many answers in a row found nothing in the knowledge base.
    pub abstain_streak: u32,
    /// Where the customer is in verifying a phone number.
    pub verification: Verification,
    /// The customer's own phone number (E.164) when the channel knows it (WhatsApp); an input
    /// of the engine, not stored with the conversation.
    pub own_phone: Option<String>,
}

impl Default for Conversation {
    fn default() -> Self {
        Self {
            state: ConversationState::Bot,
            locale: Locale::Id,
            abstain_streak: 0,
            verification: Verification::None,
            own_phone: None,
        }
    }
}

/// The phone verification step of a conversation: the bot sends a one-time code to a number
/// and the customer types it back in the chat.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Verification {
    /// Nothing under way.
    #[default]
    None,
    /// Asked the customer for the number to verify (web chat).
    AwaitingNumber,
    /// A code went to `phone`; the customer types it here.
    AwaitingCode {
        /// The challenge the code belongs to.
        challenge_id: String,
        /// The number (E.164).
        phone: String,
    },
    /// The customer proved they hold `phone`.
    Verified {
        /// The number (E.164).
        phone: String,
    },
}
