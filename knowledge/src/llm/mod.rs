//! Language models behind one object-safe trait: [`LlmProvider`].
//!
//! [`OpenAiCompatible`] talks to any OpenAI-compatible chat-completions endpoint (OpenAI, Groq,
//! OpenRouter, Ollama, vLLM, LM Studio) through `async-openai`, with its own retry policy
//! (429/5xx/transport errors, capped full-jitter backoff) and one hard deadline per call that
//! covers retries and the whole stream. [`ScriptedLlm`] is a test double.
//!
//! The provider knows nothing about prompts or answer policy: it moves text in and out.

mod openai;
#[cfg(any(test, feature = "test-utils"))]
mod scripted;

use std::time::Duration;

use futures::stream::BoxStream;

pub use openai::{LlmSettings, OpenAiCompatible, ResponseFormatKind};
#[cfg(any(test, feature = "test-utils"))]
pub use scripted::{ScriptedLlm, ScriptedReply};

/// Requests answered, by outcome (`ok`, `retry`, `timeout`, `error`).
pub const METRIC_REQUESTS_TOTAL: &str = "sapa_llm_requests_total";
/// Seconds one call took, retries and streaming included.
pub const METRIC_REQUEST_SECONDS: &str = "sapa_llm_request_seconds";
/// Tokens used, by kind (`prompt`, `completion`).
pub const METRIC_TOKENS_TOTAL: &str = "sapa_llm_tokens_total";

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The customer's side (question and context).
    User,
    /// The model's earlier output.
    Assistant,
}

/// One message of a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Text.
    pub content: String,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// The conversation so far, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Ask the endpoint for a JSON object (the structured answer).
    pub json: bool,
}

/// Tokens used by one completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
}

/// A finished completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    /// The model's text.
    pub content: String,
    /// Token usage, when the endpoint reported it.
    pub usage: Option<Usage>,
}

/// One piece of a streamed completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatDelta {
    /// More text.
    Text(String),
    /// Token usage of the whole completion (usually the last item).
    Usage(Usage),
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LlmError {
    /// The hard deadline passed (retries included).
    #[error("the language model did not answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with an error status.
    #[error("the language model endpoint answered HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error text (truncated).
        message: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// Connecting or reading failed.
    #[error("cannot reach the language model endpoint: {0}")]
    Transport(String),
    /// The endpoint answered something that is not a chat completion.
    #[error("unexpected answer from the language model endpoint: {0}")]
    Protocol(String),
}

impl LlmError {
    /// Whether retrying the same request may succeed (429, 5xx, transport errors).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Transport(_) => true,
            Self::Timeout(_) | Self::Protocol(_) => false,
        }
    }
}

/// A chat model. Object-safe: the gateway holds an `Arc<dyn LlmProvider>`.
#[async_trait::async_trait]
pub trait LlmProvider: Send + Sync + std::fmt::Debug {
    /// Model name, for usage records and logs.
    fn label(&self) -> &str;

    /// One completion.
    ///
    /// # Errors
    /// [`LlmError`] after retries are exhausted or the deadline passed.
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// One completion, streamed. Errors before the first byte are retried; errors after it
    /// (and the deadline) arrive as stream items.
    ///
    /// # Errors
    /// [`LlmError`] when the stream cannot be opened.
    async fn chat_stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatDelta, LlmError>>, LlmError>;
}
