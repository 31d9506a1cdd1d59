//! Telegram Bot API channel.
//!
//! - [`update`]: the webhook secret check and decoding of every update kind into a
//!   normalized [`update::Update`] (pure).
//! - [`api`]: a thin Bot API client (send, chat action, callback answers, webhook setup,
//!   `getUpdates`). Built on `reqwest` directly rather than teloxide-core: the gateway needs a
//!   handful of methods, exact control over 429/403/migration classification, and no 10 s
//!   sleep on 5xx answers.
//! - [`format`]: HTML escaping, splitting at 4,096 UTF-16 units, inline keyboard payloads.
//! - [`config`]: one bot's settings and secrets.
//! - [`TelegramChannel`]: the [`Channel`] the dispatcher sends through. HTML parse mode with
//!   escaped text, long answers split on paragraph/sentence boundaries (a retry resumes after
//!   the parts already delivered), choices as an inline keyboard, a bot-wide flood wait after
//!   a 429, chat migration followed transparently, typing refreshed every 4 s until the
//!   answer is sent.

pub mod api;
pub mod config;
pub mod format;
pub(crate) mod types;
pub mod update;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

pub use api::BotApi;
pub use config::{TelegramAccount, UpdateMode};

use crate::channel::{Channel, ChannelError};
use crate::model::{ChannelKind, Delivery, OutboundMessage};
use api::ApiFailure;

/// How often the typing action is repeated while an answer is produced (it lasts ≤ 5 s).
pub const TYPING_REFRESH: Duration = Duration::from_secs(4);
/// Longest the typing action is kept up without an answer being sent.
pub const TYPING_MAX: Duration = Duration::from_secs(60);

/// The Telegram channel of one bot.
#[derive(Debug, Clone)]
pub struct TelegramChannel {
    api: BotApi,
    state: Arc<SendState>,
}

#[derive(Debug, Default)]
struct SendState {
    /// No call until then (a 429's `retry_after` blocks the whole bot).
    flood_until: Mutex<Option<Instant>>,
    /// Parts of a split message already delivered, by outbox message id: a retry resumes.
    progress: Mutex<HashMap<i64, usize>>,
    /// Chats that became supergroups: old id → new id.
    migrated: Mutex<HashMap<String, String>>,
    /// Chats with a running typing refresher, and that refresher's generation.
    typing: Mutex<HashMap<String, u64>>,
    typing_generation: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TelegramChannel {
    /// A channel for `account`, sending through `http`.
    pub fn new(http: reqwest::Client, account: &TelegramAccount) -> Self {
        Self {
            api: BotApi::new(http, account),
            state: Arc::new(SendState::default()),
        }
    }

    /// The Bot API client.
    pub fn api(&self) -> &BotApi {
        &self.api
    }

    /// Remembers that `from` became `to` (a `migrate_to_chat_id` update or answer).
    pub fn chat_migrated(&self, from: &str, to: &str) {
        lock(&self.state.migrated).insert(from.to_owned(), to.to_owned());
    }

    fn chat_of(&self, recipient: &str) -> String {
        lock(&self.state.migrated)
            .get(recipient)
            .cloned()
            .unwrap_or_else(|| recipient.to_owned())
    }

    fn flood_wait(&self) -> Option<Duration> {
        let until = (*lock(&self.state.flood_until))?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    fn stop_typing(&self, chat: &str) {
        lock(&self.state.typing).remove(chat);
    }

    /// Sends one prepared body, following a chat migration once.
    async fn send_body(&self, mut body: Value) -> Result<api::Sent, ChannelError> {
        if let Some(wait) = self.flood_wait() {
            return Err(ChannelError::RateLimited {
                retry_after: Some(wait),
            });
        }
        let mut migrated = false;
        loop {
            match self.api.send("sendMessage", &body).await {
                Ok(sent) => return Ok(sent),
                Err(ApiFailure::Api {
                    migrate_to_chat_id: Some(to),
                    ..
                }) if !migrated => {
                    let from = chat_id_string(&body["chat_id"]);
                    tracing::info!("telegram chat migrated to a supergroup; following it");
                    self.chat_migrated(&from, &to.to_string());
                    body["chat_id"] = json!(to);
                    migrated = true;
                }
                Err(failure) => {
                    if let ApiFailure::Api {
                        retry_after: Some(s),
                        ..
                    } = &failure
                    {
                        *lock(&self.state.flood_until) =
                            Some(Instant::now() + Duration::from_secs(*s));
                    }
                    return Err(failure.into_channel_error());
                }
            }
        }
    }
}

fn chat_id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The chat id as Telegram wants it: a number when it is one.
fn chat_id_value(chat: &str) -> Value {
    chat.parse::<i64>()
        .map_or_else(|_| json!(chat), |n| json!(n))
}

#[async_trait::async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        let chat = self.chat_of(&msg.recipient);
        self.stop_typing(&chat);
        let bodies = message_bodies(msg, &chat);
        let done = lock(&self.state.progress)
            .get(&msg.message_id)
            .copied()
            .unwrap_or(0);
        let mut last = None;
        for (i, body) in bodies.into_iter().enumerate().skip(done) {
            match self.send_body(body).await {
                Ok(sent) => {
                    lock(&self.state.progress).insert(msg.message_id, i + 1);
                    last = Some(update::message_key(sent.chat_id, sent.message_id));
                }
                Err(err) => {
                    if !err.is_transient() {
                        lock(&self.state.progress).remove(&msg.message_id);
                    }
                    return Err(err);
                }
            }
        }
        lock(&self.state.progress).remove(&msg.message_id);
        Ok(Delivery {
            provider_message_id: last,
        })
    }

    async fn typing(&self, recipient: &str, _last_message_id: &str) {
        let chat = self.chat_of(recipient);
        if self.flood_wait().is_some() {
            return;
        }
        let generation = self.state.typing_generation.fetch_add(1, Ordering::Relaxed);
        lock(&self.state.typing).insert(chat.clone(), generation);
        if let Err(err) = self.api.send_typing(&chat).await {
            tracing::debug!(error = ?err, "telegram typing action failed");
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(TYPING_REFRESH).await;
                let current = lock(&this.state.typing).get(&chat).copied();
                if current != Some(generation) || started.elapsed() >= TYPING_MAX {
                    break;
                }
                if this.flood_wait().is_some() || this.api.send_typing(&chat).await.is_err() {
                    break;
                }
            }
            let mut typing = lock(&this.state.typing);
            if typing.get(&chat) == Some(&generation) {
                typing.remove(&chat);
            }
        });
    }
}

/// The `sendMessage` bodies for one outbound message, in send order: the text HTML-escaped
/// and split at 4,096 units; choices as an inline keyboard (one button per row) on the last
/// part; in groups the first part replies to the customer's message.
pub fn message_bodies(msg: &OutboundMessage, chat: &str) -> Vec<Value> {
    let text = if msg.text.trim().is_empty() {
        "…".to_owned()
    } else {
        msg.text.clone()
    };
    let parts = format::split_text(&text, format::MAX_TEXT_UNITS);
    let count = parts.len();
    let reply_to = msg
        .in_reply_to
        .last()
        .and_then(|id| id.split_once(':'))
        .filter(|(c, _)| *c == chat && c.starts_with('-'))
        .and_then(|(_, m)| m.parse::<i64>().ok());
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut body = json!({
                "chat_id": chat_id_value(chat),
                "text": format::escape_html(&part),
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true},
            });
            if i == 0
                && let Some(message_id) = reply_to
            {
                body["reply_parameters"] =
                    json!({"message_id": message_id, "allow_sending_without_reply": true});
            }
            if i + 1 == count && !msg.choices.is_empty() {
                let rows: Vec<Value> = msg
                    .choices
                    .iter()
                    .enumerate()
                    .map(|(n, choice)| {
                        json!([{"text": choice, "callback_data": format::callback_data(n, choice)}])
                    })
                    .collect();
                body["reply_markup"] = json!({ "inline_keyboard": rows });
            }
            body
        })
        .collect()
}

#[cfg(test)]
mod tests;
