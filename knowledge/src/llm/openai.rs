//! [`OpenAiCompatible`]: chat completions over the OpenAI wire protocol via `async-openai`.
//!
//! async-openai's built-in retry layer (fixed 3 retries, no jitter) is replaced by a plain
//! transport plus a status guard, so retries follow `max_retries`, use full jitter, and stop
//! at the call's deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, ResponseFormat,
    ResponseFormatJsonSchema,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use rand::Rng;

use super::{
    ChatDelta, ChatRequest, ChatResponse, LlmError, LlmProvider, METRIC_REQUEST_SECONDS,
    METRIC_REQUESTS_TOTAL, METRIC_TOKENS_TOTAL, Role, Usage,
};

/// Longest error text kept from an endpoint's error body.
const MAX_ERROR_CHARS: usize = 300;

/// How to ask the endpoint for JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormatKind {
    /// `{"type":"json_schema", ...}` with the answer schema (OpenAI, vLLM, recent Ollama).
    JsonSchema,
    /// `{"type":"json_object"}` (widest support).
    JsonObject,
    /// No `response_format`; the prompt alone asks for JSON.
    None,
}

impl ResponseFormatKind {
    /// Parses `json_schema`, `json_object` or `none`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "json_schema" => Some(Self::JsonSchema),
            "json_object" => Some(Self::JsonObject),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// Everything [`OpenAiCompatible`] needs.
#[derive(Clone)]
pub struct LlmSettings {
    /// Base URL including the version prefix, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key (may be empty for local servers).
    pub api_key: String,
    /// Hard deadline of one call, retries and streaming included.
    pub timeout: Duration,
    /// Retries after the first attempt on 429/5xx/transport errors.
    pub max_retries: u32,
    /// First retry delay (full jitter up to `retry_base * 2^attempt`).
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_cap: Duration,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// How JSON output is requested.
    pub response_format: ResponseFormatKind,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// A chat model behind an OpenAI-compatible endpoint.
pub struct OpenAiCompatible {
    client: Client<OpenAIConfig>,
    settings: LlmSettings,
}

impl std::fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    /// A client for `settings`. Nothing is sent until the first call.
    pub fn new(settings: LlmSettings) -> Self {
        // Explicit base and key: `OpenAIConfig` would otherwise read OPENAI_* variables.
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(settings.api_key.trim());
        let client = Client::with_config(config).with_http_service(StatusGuard {
            inner: ReqwestService::default(),
        });
        Self { client, settings }
    }

    fn build_request(&self, request: &ChatRequest, stream: bool) -> CreateChatCompletionRequest {
        let messages = request
            .messages
            .iter()
            .map(|m| match m.role {
                Role::System => ChatCompletionRequestMessage::System(
                    ChatCompletionRequestSystemMessage::from(m.content.as_str()),
                ),
                Role::User => ChatCompletionRequestMessage::User(
                    ChatCompletionRequestUserMessage::from(m.content.as_str()),
                ),
                Role::Assistant => ChatCompletionRequestMessage::Assistant(
                    ChatCompletionRequestAssistantMessage::from(m.content.as_str()),
                ),
            })
            .collect();
        let response_format = if request.json {
            match self.settings.response_format {
                ResponseFormatKind::JsonSchema => Some(ResponseFormat::JsonSchema {
                    json_schema: ResponseFormatJsonSchema {
                        description: Some("A grounded customer-service answer".to_owned()),
                        name: "sapa_answer".to_owned(),
                        schema: answer_schema(),
                        strict: Some(true),
                    },
                }),
                ResponseFormatKind::JsonObject => Some(ResponseFormat::JsonObject),
                ResponseFormatKind::None => None,
            }
        } else {
            None
        };
        CreateChatCompletionRequest {
            model: self.settings.model.clone(),
            messages,
            max_completion_tokens: Some(self.settings.max_tokens),
            temperature: Some(self.settings.temperature),
            response_format,
            stream: stream.then_some(true),
            stream_options: stream.then(|| ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Runs `attempt` until it succeeds, fails permanently, retries run out, or `deadline`.
    async fn with_retries<T, F, Fut>(
        &self,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let timeout = self.settings.timeout;
        let mut tries = 0u32;
        loop {
            let result = tokio::time::timeout_at(deadline.into(), attempt()).await;
            let err = match result {
                Err(_) => {
                    metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => "timeout").increment(1);
                    return Err(LlmError::Timeout(timeout));
                }
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => err,
            };
            if !err.is_transient() || tries >= self.settings.max_retries {
                metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => "error").increment(1);
                return Err(err);
            }
            let ceiling = self
                .settings
                .retry_base
                .saturating_mul(2u32.saturating_pow(tries))
                .min(self.settings.retry_cap);
            let jittered = rand::rng().random_range(Duration::ZERO..=ceiling);
            // A server's Retry-After wins when it is longer, still capped.
            let delay = match &err {
                LlmError::Status {
                    retry_after: Some(after),
                    ..
                } => (*after).min(self.settings.retry_cap).max(jittered),
                _ => jittered,
            };
            tries += 1;
            metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => "retry").increment(1);
            tracing::warn!(attempt = tries, delay_ms = delay.as_millis() as u64, error = %err, "language model call failed; retrying");
            if Instant::now() + delay >= deadline {
                tokio::time::sleep_until(deadline.into()).await;
                metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => "timeout").increment(1);
                return Err(LlmError::Timeout(timeout));
            }
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait::async_trait]
impl LlmProvider for OpenAiCompatible {
    fn label(&self) -> &str {
        &self.settings.model
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let body = self.build_request(request, false);
        let result = self
            .with_retries(deadline, || {
                let body = body.clone();
                async move { self.client.chat().create(body).await.map_err(map_error) }
            })
            .await;
        metrics::histogram!(METRIC_REQUEST_SECONDS).record(started.elapsed().as_secs_f64());
        let response = result?;
        metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => "ok").increment(1);
        let content = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        let usage = response.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        });
        if let Some(usage) = usage {
            count_tokens(usage);
        }
        Ok(ChatResponse { content, usage })
    }

    async fn chat_stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<ChatDelta, LlmError>>, LlmError> {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let body = self.build_request(request, true);
        let opened = self
            .with_retries(deadline, || {
                let body = body.clone();
                async move {
                    self.client
                        .chat()
                        .create_stream(body)
                        .await
                        .map_err(map_error)
                }
            })
            .await;
        let inner = match opened {
            Ok(inner) => inner,
            Err(err) => {
                metrics::histogram!(METRIC_REQUEST_SECONDS).record(started.elapsed().as_secs_f64());
                return Err(err);
            }
        };
        let timeout = self.settings.timeout;
        let state = StreamState {
            inner,
            pending: Vec::new(),
            done: false,
            started,
            deadline,
            timeout,
        };
        Ok(futures::stream::unfold(state, next_delta).boxed())
    }
}

struct StreamState {
    inner: async_openai::types::chat::ChatCompletionResponseStream,
    pending: Vec<ChatDelta>,
    done: bool,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
}

/// Yields the next delta, enforcing the call's deadline on every read.
async fn next_delta(mut state: StreamState) -> Option<(Result<ChatDelta, LlmError>, StreamState)> {
    loop {
        if let Some(delta) = state.pending.pop() {
            return Some((Ok(delta), state));
        }
        if state.done {
            return None;
        }
        let read = tokio::time::timeout_at(state.deadline.into(), state.inner.next()).await;
        let item = match read {
            Err(_) => {
                state.done = true;
                finish(&state, "timeout");
                return Some((Err(LlmError::Timeout(state.timeout)), state));
            }
            Ok(None) => {
                state.done = true;
                finish(&state, "ok");
                return None;
            }
            Ok(Some(item)) => item,
        };
        match item {
            Ok(chunk) => {
                // Collected in reverse because `pending` pops from the end.
                if let Some(u) = chunk.usage {
                    let usage = Usage {
                        prompt_tokens: u.prompt_tokens,
                        completion_tokens: u.completion_tokens,
                    };
                    count_tokens(usage);
                    state.pending.push(ChatDelta::Usage(usage));
                }
                for choice in chunk.choices.into_iter().rev() {
                    if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                        state.pending.push(ChatDelta::Text(text));
                    }
                }
            }
            Err(err) => {
                state.done = true;
                finish(&state, "error");
                return Some((Err(map_error(err)), state));
            }
        }
    }
}

fn finish(state: &StreamState, outcome: &'static str) {
    metrics::counter!(METRIC_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    metrics::histogram!(METRIC_REQUEST_SECONDS).record(state.started.elapsed().as_secs_f64());
}

fn count_tokens(usage: Usage) {
    metrics::counter!(METRIC_TOKENS_TOTAL, "kind" => "prompt")
        .increment(u64::from(usage.prompt_tokens));
    metrics::counter!(METRIC_TOKENS_TOTAL, "kind" => "completion")
        .increment(u64::from(usage.completion_tokens));
}

/// JSON schema of the structured answer.
fn answer_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "reply": { "type": "string" },
            "action": { "type": "string", "enum": ["answer", "clarify", "handoff", "flow"] },
            "citations": { "type": "array", "items": { "type": "string" } },
            "flow": { "type": ["string", "null"] }
        },
        "required": ["reply", "action", "citations", "flow"],
        "additionalProperties": false
    })
}

fn truncate(text: &str) -> String {
    if text.chars().count() > MAX_ERROR_CHARS {
        let cut: String = text.chars().take(MAX_ERROR_CHARS).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

fn map_error(err: OpenAIError) -> LlmError {
    match err {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatus>() {
            Ok(status) => LlmError::Status {
                status: status.status,
                message: status.body,
                retry_after: status.retry_after,
            },
            Err(other) => LlmError::Transport(other.to_string()),
        },
        OpenAIError::ApiError(api) => LlmError::Status {
            status: api.status_code.as_u16(),
            message: truncate(&api.api_error.message),
            retry_after: None,
        },
        OpenAIError::Reqwest(e) => LlmError::Transport(e.to_string()),
        OpenAIError::StreamError(e) => LlmError::Transport(truncate(&e.to_string())),
        other => LlmError::Protocol(truncate(&other.to_string())),
    }
}

/// A 429 or 5xx answer, whatever its body looks like (async-openai only recognises OpenAI's
/// error shape for 4xx).
#[derive(Debug)]
struct HttpStatus {
    status: u16,
    body: String,
    retry_after: Option<Duration>,
}

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

impl std::error::Error for HttpStatus {}

type GuardResponse = <ReqwestService as tower::Service<HttpRequestFactory>>::Response;

/// Turns 429/5xx responses into [`HttpStatus`] errors carrying `Retry-After`.
#[derive(Debug, Clone)]
struct StatusGuard {
    inner: ReqwestService,
}

impl tower::Service<HttpRequestFactory> for StatusGuard {
    type Response = GuardResponse;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<GuardResponse, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let call = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            let response = call.await?;
            let status = response.status().as_u16();
            if status == 429 || status >= 500 {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response.text().await.unwrap_or_default();
                return Err(OpenAIError::Boxed(Box::new(HttpStatus {
                    status,
                    body: truncate(&body),
                    retry_after,
                })));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_rate_limits_server_errors_and_transport_failures_are_retried() {
        let status = |status| LlmError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(401).is_transient());
        assert!(LlmError::Transport("reset".into()).is_transient());
        assert!(!LlmError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!LlmError::Protocol("bad json".into()).is_transient());
    }

    #[test]
    fn json_output_is_requested_as_configured() {
        let settings = |kind| LlmSettings {
            base_url: "http://127.0.0.1:1/v1/".into(),
            model: "m".into(),
            api_key: String::new(),
            timeout: Duration::from_secs(1),
            max_retries: 0,
            retry_base: Duration::from_millis(1),
            retry_cap: Duration::from_millis(1),
            max_tokens: 100,
            temperature: 0.0,
            response_format: kind,
        };
        let req = ChatRequest {
            messages: vec![],
            json: true,
        };
        let body = OpenAiCompatible::new(settings(ResponseFormatKind::JsonObject))
            .build_request(&req, true);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["response_format"]["type"], "json_object");
        assert_eq!(json["stream"], true);
        assert_eq!(json["stream_options"]["include_usage"], true);
        let body = OpenAiCompatible::new(settings(ResponseFormatKind::JsonSchema))
            .build_request(&req, false);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["response_format"]["type"], "json_schema");
        // Strict schemas list every property as required; `flow` is null unless it starts one.
        let schema = &json["response_format"]["json_schema"]["schema"];
        assert_eq!(
            schema["required"],
            serde_json::json!(["reply", "action", "citations", "flow"])
        );
        assert_eq!(schema["properties"]["action"]["enum"][3], "flow");
        assert!(json.get("stream").is_none() || json["stream"].is_null());
    }
}
