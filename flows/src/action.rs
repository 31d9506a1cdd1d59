//! The closed set of things the bot can do.

/// A message the bot sends, already in the customer's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotReply {
    /// Plain text (adapters escape it for their markup).
    pub text: String,
    /// Quick replies offered with it.
    pub choices: Vec<String>,
    /// Knowledge chunk ids the text rests on (model answers only).
    pub citations: Vec<String>,
}

/// Why a conversation goes to a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffReason {
    /// The customer asked for a person.
    CustomerAsked,
    /// The bot could not answer several times in a row.
    RepeatedNoAnswer,
    /// Answering failed (knowledge or LLM error).
    AnswerFailed,
    /// The language model chose to hand off (complaint, anger, a request for a person).
    ModelAsked,
    /// The message contains one of the tenant's handoff keywords.
    TenantKeyword,
}

impl HandoffReason {
    /// Stable name for storage, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerAsked => "customer_asked",
            Self::RepeatedNoAnswer => "repeated_no_answer",
            Self::AnswerFailed => "answer_failed",
            Self::ModelAsked => "model_asked",
            Self::TenantKeyword => "tenant_keyword",
        }
    }
}

/// Everything the bot can do; the gateway executes these in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look the question up in the knowledge base and call [`crate::Engine::on_answer`].
    Answer {
        /// The customer's question (the whole debounced batch).
        query: String,
    },
    /// Send a message to the customer.
    Reply(BotReply),
    /// Put the conversation in the human queue.
    Handoff {
        /// Why.
        reason: HandoffReason,
    },
    /// Tell the customer handed to a human how long the wait is: `lead` (already in their
    /// language), then [`crate::texts::wait_sentence`] for the outlook the gateway works out
    /// from the tenant's business hours and the agents online
    /// ([`crate::BusinessHours::outlook`]). Sent once, on entering the queue.
    WaitNotice {
        /// The handoff sentence, or the apology of a failed answer.
        lead: String,
    },
    /// Record a question the knowledge base could not answer, for the owner.
    RecordUnanswered {
        /// The customer's question.
        query: String,
    },
    /// Send a one-time code to `phone` over the tenant's WhatsApp number, then call
    /// [`crate::Engine::on_code_sent`]. Never decided by the language model.
    SendOtp {
        /// The number (E.164).
        phone: String,
    },
    /// Check the code the customer typed, then call [`crate::Engine::on_code_checked`].
    VerifyOtp {
        /// The challenge.
        challenge_id: String,
        /// What the customer typed (digits only). The gateway stores the message masked.
        code: String,
    },
}
