//! A fake Telegram Bot API over real HTTP (`POST /bot<token>/<method>`, answers
//! `{"ok": …, "result": …}`): records every call, answers sends with fresh message ids or
//! scripted errors, and serves queued updates to `getUpdates` (long polling).
//!
//! It never answers 5xx (the Bot API contract lets clients sleep on those).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The test bot's id.
pub const BOT_ID: i64 = 7_000_000_001;
/// The test bot's token.
pub const BOT_TOKEN: &str = "7000000001:AAtest-token";
/// The test bot's username.
pub const BOT_USERNAME: &str = "kopinusantara_bot";

/// One recorded call.
#[derive(Debug, Clone)]
pub struct TelegramCall {
    /// The token from the path.
    pub token: String,
    /// Method name, e.g. `sendMessage`.
    pub method: String,
    /// JSON body.
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
    /// The `message_id` the fake answered a successful send with.
    pub sent_message_id: Option<i64>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Mutex<Vec<TelegramCall>>,
    /// Scripted answers per method, used in order before the default answer.
    script: Mutex<HashMap<String, VecDeque<(u16, Value)>>>,
    updates: Mutex<Vec<Value>>,
    new_update: Notify,
    ids: AtomicI64,
}

/// The running fake.
#[derive(Debug, Clone)]
pub struct FakeTelegram {
    /// `http://127.0.0.1:PORT` (the Bot API base URL).
    pub base_url: String,
    state: Arc<FakeState>,
}

impl FakeTelegram {
    /// Starts the fake on port 0.
    pub async fn start() -> Self {
        let state = Arc::new(FakeState {
            ids: AtomicI64::new(500),
            ..FakeState::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, state }
    }

    /// The next call of `method` answers `status` with `body` (queued in order).
    pub fn script(&self, method: &str, status: u16, body: Value) {
        self.state
            .script
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .push_back((status, body));
    }

    /// The next `sendMessage` fails with Telegram's flood-control answer.
    pub fn script_flood(&self, retry_after: u64) {
        self.script(
            "sendMessage",
            429,
            json!({"ok": false, "error_code": 429,
                   "description": format!("Too Many Requests: retry after {retry_after}"),
                   "parameters": {"retry_after": retry_after}}),
        );
    }

    /// The next `sendMessage` fails because the user blocked the bot.
    pub fn script_blocked(&self) {
        self.script(
            "sendMessage",
            403,
            json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
        );
    }

    /// Queues an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.state.updates.lock().unwrap().push(update);
        self.state.new_update.notify_waiters();
    }

    /// Every recorded call.
    pub fn calls(&self) -> Vec<TelegramCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Recorded calls of `method`.
    pub fn calls_of(&self, method: &str) -> Vec<TelegramCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }
}

fn ok(result: Value) -> (u16, Value) {
    (200, json!({"ok": true, "result": result}))
}

async fn handle(State(state): State<Arc<FakeState>>, uri: Uri, body: Bytes) -> Response {
    let at = Instant::now();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().trim_start_matches('/');
    let (token, method) = path
        .strip_prefix("bot")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or(("", path));
    let (token, method) = (token.to_owned(), method.to_owned());
    let index = {
        let mut calls = state.calls.lock().unwrap();
        calls.push(TelegramCall {
            token: token.clone(),
            method: method.clone(),
            body: body.clone(),
            at,
            sent_message_id: None,
        });
        calls.len() - 1
    };
    if token != BOT_TOKEN {
        return reply(
            401,
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        );
    }
    let scripted = state
        .script
        .lock()
        .unwrap()
        .get_mut(&method)
        .and_then(VecDeque::pop_front);
    if let Some((status, answer)) = scripted {
        return reply(status, answer);
    }
    let (status, answer) = match method.as_str() {
        "getMe" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Kopi Nusantara",
                             "username": BOT_USERNAME}),
        ),
        "sendMessage" | "sendPhoto" | "sendDocument" | "sendVoice" | "sendVideo" | "sendAudio"
        | "sendSticker" => {
            let id = state.ids.fetch_add(1, Ordering::Relaxed);
            state.calls.lock().unwrap()[index].sent_message_id = Some(id);
            let chat = body["chat_id"].as_i64().unwrap_or_default();
            ok(json!({"message_id": id, "date": 1_763_792_000,
                      "chat": {"id": chat, "type": if chat < 0 { "supergroup" } else { "private" }},
                      "text": body["text"]}))
        }
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0))
                .min(Duration::from_secs(2));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let notified = state.new_update.notified();
                let ready: Vec<Value> = state
                    .updates
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                    .cloned()
                    .collect();
                if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                    break ok(Value::Array(ready));
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        }
        _ => ok(json!(true)),
    };
    reply(status, answer)
}

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}
