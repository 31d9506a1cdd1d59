//! A fake WhatsApp Graph API over real HTTP: records every request and answers with scripted
//! statuses and bodies (default: success with a fresh `wamid.FAKE<n>`). It also serves the
//! two-step media download: `GET /<version>/<media id>` → metadata with a URL on this server,
//! `GET /media-download/<media id>` → the bytes, both only with the test access token.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// `GET` (media download) or `POST`.
    pub method: String,
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
    base_url: String,
    media: Mutex<HashMap<String, FakeMedia>>,
}

/// A media file the fake serves.
#[derive(Debug, Clone)]
struct FakeMedia {
    bytes: Vec<u8>,
    mime_type: String,
    /// The hash the metadata announces (base64 SHA-256, as Meta sends it).
    sha256: String,
}

/// The base64 SHA-256 of `bytes`, as WhatsApp webhooks and the media API carry it.
pub fn media_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(FakeState {
            record,
            base_url: base_url.clone(),
            ..FakeState::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
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

    /// Serves `bytes` as media `id` (metadata announces their true SHA-256).
    pub fn add_media(&self, id: &str, mime_type: &str, bytes: &[u8]) {
        self.add_media_with_sha(id, mime_type, bytes, &media_sha256(bytes));
    }

    /// Serves `bytes` as media `id`, announcing `sha256` (to fake a corrupt download).
    pub fn add_media_with_sha(&self, id: &str, mime_type: &str, bytes: &[u8], sha256: &str) {
        self.state.media.lock().unwrap().insert(
            id.to_owned(),
            FakeMedia {
                bytes: bytes.to_vec(),
                mime_type: mime_type.to_owned(),
                sha256: sha256.to_owned(),
            },
        );
    }

    /// Every recorded request.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Recorded message sends (not mark-read calls, not media downloads).
    pub fn sends(&self) -> Vec<GraphRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_mark_read() && r.method == "POST")
            .collect()
    }

    /// Number of message sends answered with success.
    pub fn delivered(&self) -> u64 {
        self.state.sends.load(Ordering::Relaxed)
    }
}

/// The two media download steps; both need the test access token.
fn media_response(state: &FakeState, path: &str, headers: &HeaderMap) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {}", crate::WA_ACCESS_TOKEN).as_str());
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}})),
        )
            .into_response();
    }
    let media = state.media.lock().unwrap();
    if let Some(id) = path.strip_prefix("/media-download/") {
        return match media.get(id) {
            Some(m) => (
                [(header::CONTENT_TYPE, m.mime_type.clone())],
                m.bytes.clone(),
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let id = path.rsplit('/').next().unwrap_or_default();
    match media.get(id) {
        Some(m) => axum::Json(json!({
            "messaging_product": "whatsapp",
            "url": format!("{}/media-download/{id}", state.base_url),
            "mime_type": m.mime_type,
            "sha256": m.sha256,
            "file_size": m.bytes.len().to_string(),
            "id": id,
        }))
        .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": format!("Unsupported get request. Object with ID '{id}' does not exist"), "type": "GraphMethodException", "code": 100}})),
        )
            .into_response(),
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mark_read = body["status"] == "read";
    if state.record {
        state.requests.lock().unwrap().push(GraphRequest {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
            at,
        });
    }
    if method == Method::GET {
        return media_response(&state, uri.path(), &headers);
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
