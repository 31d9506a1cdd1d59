//! A fake WhatsApp Graph API over real HTTP: records every request and answers with scripted
//! statuses and bodies (default: success with a fresh `wamid.FAKE<n>`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// Request path, e.g. `/v23.0/106540352242922/messages`.
    pub path: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// JSON body (`Value::Null` when none).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

impl GraphRequest {
    /// Whether this is a mark-read / typing call rather than a message send.
    pub fn is_mark_read(&self) -> bool {
        self.body["status"] == "read"
    }
}

#[derive(Debug, Default)]
struct FakeState {
    requests: Mutex<Vec<GraphRequest>>,
    script: Mutex<VecDeque<(u16, Value)>>,
    ids: AtomicU64,
    sends: AtomicU64,
    record: bool,
}

/// The running fake.
#[derive(Debug, Clone)]
pub struct FakeGraph {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    state: Arc<FakeState>,
}

impl FakeGraph {
    /// Starts the fake on port 0, recording requests.
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// Starts the fake; with `record = false` only counts sends (benchmarks).
    pub async fn start_with(record: bool) -> Self {
        let state = Arc::new(FakeState {
            record,
            ..FakeState::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, state }
    }

    /// The next message send answers `status` with `body` (queued in order).
    pub fn script(&self, status: u16, body: Value) {
        self.state.script.lock().unwrap().push_back((status, body));
    }

    /// The next message send succeeds with this wamid.
    pub fn script_wamid(&self, wamid: &str) {
        self.script(
            200,
            json!({"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": wamid}]}),
        );
    }

    /// Every recorded request.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Recorded message sends (not mark-read calls).
    pub fn sends(&self) -> Vec<GraphRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_mark_read())
            .collect()
    }

    /// Number of message sends answered with success.
    pub fn delivered(&self) -> u64 {
        self.state.sends.load(Ordering::Relaxed)
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mark_read = body["status"] == "read";
    if state.record {
        state.requests.lock().unwrap().push(GraphRequest {
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
            at,
        });
    }
    if mark_read {
        return axum::Json(json!({"success": true})).into_response();
    }
    let scripted = state.script.lock().unwrap().pop_front();
    let (status, reply) = scripted.unwrap_or_else(|| {
        let n = state.ids.fetch_add(1, Ordering::Relaxed);
        (
            200,
            json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}], "messages": [{"id": format!("wamid.FAKE{n}")}]}),
        )
    });
    if status == 200 {
        state.sends.fetch_add(1, Ordering::Relaxed);
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(reply),
    )
        .into_response()
}
