//! A fake OpenAI-compatible chat-completions server: an axum app on port 0 that answers from a
//! queue of scripted replies (JSON or SSE stream, status codes, delays) and logs every request
//! body, so tests exercise the real client over real HTTP.
//!
//! It also serves `POST /v1/embeddings` with deterministic vectors: a hashed bag of analyzed
//! tokens ([`knowledge::embed::HashEmbedder`]) whose synonym table makes chosen paraphrases
//! point the same way as the passages they paraphrase.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use knowledge::embed::HashEmbedder;
use serde_json::{Value, json};

type ContentFn = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// One scripted answer to one request.
#[derive(Clone)]
pub struct Reply {
    status: u16,
    retry_after: Option<u64>,
    content: ContentFn,
    delay: Duration,
    chunk_delay: Duration,
    usage: (u32, u32),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl Reply {
    /// A 200 completion with this content (JSON or streamed, as the request asks).
    pub fn content(content: impl Into<String>) -> Self {
        let content = content.into();
        Self::computed(move |_| content.clone())
    }

    /// A 200 completion whose content is computed from the request body.
    pub fn computed(f: impl Fn(&Value) -> String + Send + Sync + 'static) -> Self {
        Self {
            status: 200,
            retry_after: None,
            content: Arc::new(f),
            delay: Duration::ZERO,
            chunk_delay: Duration::from_millis(5),
            usage: (321, 45),
        }
    }

    /// An error status with an OpenAI-style error body.
    pub fn status(status: u16) -> Self {
        let mut reply = Self::content("");
        reply.status = status;
        reply
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Waits this long before answering.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Waits this long between streamed chunks.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Reported token usage.
    pub fn usage(mut self, prompt: u32, completion: u32) -> Self {
        self.usage = (prompt, completion);
        self
    }
}

struct FakeState {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    embedder: Mutex<HashEmbedder>,
    embedding_inputs: Mutex<Vec<String>>,
    embeddings_down: std::sync::atomic::AtomicBool,
    /// While true, chat completions wait (after their request is logged) instead of answering.
    held: tokio::sync::watch::Sender<bool>,
}

/// The running fake server.
pub struct FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`, for `llm.base_url`.
    pub base_url: String,
    state: Arc<FakeState>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpenAi")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOpenAi {
    /// Starts a server answering `script` in order (then 500 "script exhausted").
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let state = Arc::new(FakeState {
            script: Mutex::new(script.into_iter().collect()),
            requests: Mutex::new(Vec::new()),
            embedder: Mutex::new(HashEmbedder::new(256)),
            embedding_inputs: Mutex::new(Vec::new()),
            embeddings_down: std::sync::atomic::AtomicBool::new(false),
            held: tokio::sync::watch::channel(false).0,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/embeddings", post(embeddings))
            .route(
                "/v1/models",
                axum::routing::get(|| async {
                    axum::Json(json!({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}))
                }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            state,
            server,
        }
    }

    /// `[llm]` TOML pointing at this server, with short timeouts; `extra` lines are appended
    /// to the section.
    pub fn config(&self, extra: &str) -> String {
        let mut llm: toml::Table = format!(
            "base_url = \"{}\"\nmodel = \"fake-model\"\napi_key = \"sk-test\"\ntimeout = \"5s\"\nmax_retries = 2\nretry_base = \"20ms\"\nretry_cap = \"100ms\"\n",
            self.base_url
        )
        .parse()
        .unwrap();
        llm.extend(extra.parse::<toml::Table>().unwrap());
        let mut root = toml::Table::new();
        root.insert("llm".to_owned(), toml::Value::Table(llm));
        root.to_string()
    }

    /// While `held`, chat completion requests are logged but not answered (the answer path
    /// stalls); releasing answers every waiting request from the script.
    pub fn hold(&self, held: bool) {
        self.state.held.send_replace(held);
    }

    /// Request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    /// `[embeddings]` TOML pointing at this server (model `fake-embed`).
    pub fn embeddings_config(&self) -> String {
        format!(
            "[embeddings]\nbase_url = \"{}\"\nmodel = \"fake-embed\"\napi_key = \"sk-test\"\ntimeout = \"5s\"\nbatch_size = 4\n",
            self.base_url
        )
    }

    /// Replaces the embedding function (e.g. one with a synonym table).
    pub fn embed_with(&self, embedder: HashEmbedder) {
        *self.state.embedder.lock().unwrap() = embedder;
    }

    /// While set, `/v1/embeddings` answers 503.
    pub fn set_embeddings_down(&self, down: bool) {
        self.state
            .embeddings_down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every text embedded so far (all inputs of all `/v1/embeddings` requests, in order).
    pub fn embedded_texts(&self) -> Vec<String> {
        self.state.embedding_inputs.lock().unwrap().clone()
    }
}

async fn embeddings(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if state
        .embeddings_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        let body = json!({"error": {"message": "scripted 503", "type": "server_error", "param": null, "code": null}});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if inputs.is_empty() {
        let body = json!({"error": {"message": "input must be a string or an array of strings", "type": "invalid_request_error", "param": "input", "code": null}});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    state
        .embedding_inputs
        .lock()
        .unwrap()
        .extend(inputs.iter().cloned());
    let embedder = state.embedder.lock().unwrap().clone();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": embedder.vector(text)})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// The knowledge passages of a prompt built from `prompts/answer.*.tera`: `(id, text)`.
pub fn prompt_chunks(request: &Value) -> Vec<(String, String)> {
    let user = request["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let mut chunks: Vec<(String, String)> = Vec::new();
    for line in user.lines() {
        if let Some(rest) = line.strip_prefix("[id: ") {
            let id = rest.split(']').next().unwrap_or_default().to_owned();
            chunks.push((id, String::new()));
        } else if let Some(last) = chunks.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    chunks
}

/// The id of the first passage of `request` containing `needle`.
pub fn chunk_containing(request: &Value, needle: &str) -> Option<String> {
    prompt_chunks(request)
        .into_iter()
        .find(|(_, text)| text.contains(needle))
        .map(|(id, _)| id)
}

async fn completions(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(request.clone());
    let _ = state.held.subscribe().wait_for(|held| !*held).await;
    let reply = state.script.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if reply.status != 200 {
        let status = StatusCode::from_u16(reply.status).unwrap();
        let body = json!({"error": {"message": format!("scripted {}", reply.status), "type": "rate_limit_exceeded", "param": null, "code": null}});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = reply.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.to_string().parse().unwrap());
        }
        return response;
    }
    let content = (reply.content)(&request);
    let (prompt, completion) = reply.usage;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if request["stream"] != true {
        return axum::Json(json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events: Vec<String> = Vec::new();
    let chars: Vec<char> = content.chars().collect();
    for piece in chars.chunks(6) {
        let text: String = piece.iter().collect();
        events.push(chunk(json!({"content": text}), Value::Null).to_string());
    }
    events.push(chunk(json!({}), json!("stop")).to_string());
    events.push(
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "fake-model", "choices": [], "usage": usage})
            .to_string(),
    );
    events.push("[DONE]".to_owned());
    let pause = reply.chunk_delay;
    let stream = futures::stream::iter(events).then(move |event| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, Infallible>(Bytes::from(format!("data: {event}\n\n")))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
