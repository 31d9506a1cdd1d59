//! [`ScriptedLlm`]: a test double answering from a queue and recording requests.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use futures::StreamExt;
use futures::stream::BoxStream;

use super::{ChatDelta, ChatRequest, ChatResponse, LlmError, LlmProvider, Usage};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    /// Answer with this text (streamed in pieces of `chunk` characters).
    Text {
        /// The whole completion.
        content: String,
        /// Reported usage.
        usage: Usage,
    },
    /// Fail with this error.
    Fail(LlmError),
}

/// Answers requests from a queue; an empty queue fails with a protocol error.
#[derive(Debug, Default)]
pub struct ScriptedLlm {
    replies: Mutex<VecDeque<ScriptedReply>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedLlm {
    /// A double answering `replies` in order.
    pub fn new(replies: impl IntoIterator<Item = ScriptedReply>) -> Self {
        Self {
            replies: Mutex::new(replies.into_iter().collect()),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn next(&self, request: &ChatRequest) -> ScriptedReply {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.clone());
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_else(|| ScriptedReply::Fail(LlmError::Protocol("script exhausted".into())))
    }
}

#[async_trait::async_trait]
impl LlmProvider for ScriptedLlm {
    fn label(&self) -> &str {
        "scripted"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        match self.next(request) {
            ScriptedReply::Text { content, usage } => Ok(ChatResponse {
                content,
                usage: Some(usage),
            }),
            ScriptedReply::Fail(err) => Err(err),
        }
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatDelta, LlmError>>, LlmError> {
        match self.next(request) {
            ScriptedReply::Text { content, usage } => {
                let chars: Vec<char> = content.chars().collect();
                let mut items: Vec<Result<ChatDelta, LlmError>> = chars
                    .chunks(8)
                    .map(|c| Ok(ChatDelta::Text(c.iter().collect())))
                    .collect();
                items.push(Ok(ChatDelta::Usage(usage)));
                Ok(futures::stream::iter(items).boxed())
            }
            ScriptedReply::Fail(err) => Err(err),
        }
    }
}
