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
pub mod provider;
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
use crate::model::{
    ChannelKind, Delivery, MediaKind, MediaSource, OutboundMedia, OutboundMessage, is_http_url,
};
use crate::pacing::PacingPolicy;
use api::ApiFailure;

/// How often the typing action is repeated while an answer is produced (it lasts ≤ 5 s).
pub const TYPING_REFRESH: Duration = Duration::from_secs(4);
/// Longest the typing action is kept up without an answer being sent.
pub const TYPING_MAX: Duration = Duration::from_secs(60);

/// Bot API limits: 30 messages/s per bot and 1 message/s per chat.
pub const PACING: PacingPolicy = PacingPolicy {
    per_account_per_sec: Some(30),
    per_recipient_gap: Duration::from_secs(1),
};

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

    /// Makes one prepared call, following a chat migration once.
    async fn send_body(&self, call: ApiCall) -> Result<api::Sent, ChannelError> {
        let ApiCall { method, mut body } = call;
        if let Some(wait) = self.flood_wait() {
            return Err(ChannelError::RateLimited {
                retry_after: Some(wait),
            });
        }
        let mut migrated = false;
        loop {
            match self.api.send(method, &body).await {
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
        let bodies = outbound_calls(msg, &chat)?;
        let done = lock(&self.state.progress)
            .get(&msg.message_id)
            .copied()
            .unwrap_or(0);
        let mut ids = Vec::new();
        for (i, body) in bodies.into_iter().enumerate().skip(done) {
            match self.send_body(body).await {
                Ok(sent) => {
                    lock(&self.state.progress).insert(msg.message_id, i + 1);
                    ids.push(update::message_key(sent.chat_id, sent.message_id));
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
        let last = ids.pop();
        let now = self.chat_of(&msg.recipient);
        Ok(Delivery {
            provider_message_id: last,
            extra_provider_message_ids: ids,
            recipient_moved_to: (now != msg.recipient).then_some(now),
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
    fn pacing(&self) -> PacingPolicy {
        PACING
    }

    async fn acknowledge(&self, callback_query_id: &str) {
        if let Err(err) = self.api.answer_callback_query(callback_query_id).await {
            tracing::debug!(error = ?err, "answerCallbackQuery failed");
        }
    }

    fn contact_moved(&self, from: &str, to: &str) {
        self.chat_migrated(from, to);
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
    let reply_to = group_reply_to(msg, chat);
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
            if i + 1 == count
                && let Some(keyboard) = keyboard(&msg.choices)
            {
                body["reply_markup"] = keyboard;
            }
            body
        })
        .collect()
}

/// One Bot API call: the method and its JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// `sendMessage`, `sendPhoto`, …
    pub method: &'static str,
    /// The JSON body.
    pub body: Value,
}

/// Longest media caption, in UTF-16 code units after entity parsing.
pub const MAX_CAPTION_UNITS: usize = 1024;

/// Whether Telegram shows a caption with this kind of media (all but stickers).
pub fn caption_supported(kind: MediaKind) -> bool {
    kind != MediaKind::Sticker
}

/// The send method and its file field for a media kind.
pub fn media_method(kind: MediaKind) -> (&'static str, &'static str) {
    match kind {
        MediaKind::Image => ("sendPhoto", "photo"),
        MediaKind::Video => ("sendVideo", "video"),
        MediaKind::Audio => ("sendAudio", "audio"),
        MediaKind::Voice => ("sendVoice", "voice"),
        MediaKind::Document => ("sendDocument", "document"),
        MediaKind::Sticker => ("sendSticker", "sticker"),
    }
}

/// The body of a media send: the `file_id` or URL in the kind's field (Telegram fetches
/// URLs itself), the caption HTML-escaped.
pub fn media_body(chat: &Value, kind: MediaKind, file: &str, caption: Option<&str>) -> Value {
    let (_, field) = media_method(kind);
    let mut body = json!({ "chat_id": chat, field: file });
    if let Some(caption) = caption.filter(|c| !c.is_empty()) {
        body["caption"] = json!(format::escape_html(caption));
        body["parse_mode"] = json!("HTML");
    }
    body
}

fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The Bot API calls for one outbound message, in send order.
///
/// Without media: the [`message_bodies`] as `sendMessage` calls. With media: first
/// `sendPhoto`/`sendVideo`/`sendAudio`/`sendVoice`/`sendDocument`/`sendSticker` with the
/// `file_id` or URL; the media's caption, or else the text, is its caption when the kind has
/// captions and it fits in 1,024 UTF-16 units. Text that did not become the caption (and a
/// caption that was too long) follows as `sendMessage`. Choices go, as an inline keyboard, on
/// the last call.
///
/// # Errors
/// [`ChannelError::Permanent`] for a media URL that is not `http(s)` or an empty file id.
pub fn outbound_calls(msg: &OutboundMessage, chat: &str) -> Result<Vec<ApiCall>, ChannelError> {
    let text_calls = |msg: &OutboundMessage| {
        message_bodies(msg, chat)
            .into_iter()
            .map(|body| ApiCall {
                method: "sendMessage",
                body,
            })
            .collect::<Vec<_>>()
    };
    let Some(media) = &msg.media else {
        return Ok(text_calls(msg));
    };
    let file = media_file(media)?;
    let captioned = caption_supported(media.kind);
    let fits = |c: &str| units(c) <= MAX_CAPTION_UNITS;
    let own_caption = media
        .caption
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let text = msg.text.trim();
    let mut follow_up = Vec::new();
    let caption = match own_caption {
        Some(c) if captioned && fits(c) => Some(c),
        Some(c) => {
            follow_up.push(c);
            None
        }
        None if captioned && !text.is_empty() && fits(text) => Some(text),
        None => None,
    };
    if caption != Some(text) && !text.is_empty() {
        follow_up.push(text);
    }
    let (method, _) = media_method(media.kind);
    let mut body = media_body(&chat_id_value(chat), media.kind, file, caption);
    if let Some(message_id) = group_reply_to(msg, chat) {
        body["reply_parameters"] =
            json!({"message_id": message_id, "allow_sending_without_reply": true});
    }
    if follow_up.is_empty() {
        if let Some(keyboard) = keyboard(&msg.choices) {
            body["reply_markup"] = keyboard;
        }
        return Ok(vec![ApiCall { method, body }]);
    }
    let rest = OutboundMessage {
        text: follow_up.join("\n\n"),
        in_reply_to: Vec::new(),
        media: None,
        ..msg.clone()
    };
    let mut calls = vec![ApiCall { method, body }];
    calls.extend(text_calls(&rest));
    Ok(calls)
}

fn media_file(media: &OutboundMedia) -> Result<&str, ChannelError> {
    match &media.source {
        MediaSource::ProviderId(id) if !id.trim().is_empty() => Ok(id.trim()),
        MediaSource::ProviderId(_) => Err(ChannelError::Permanent {
            code: None,
            reason: "media file_id is empty".to_owned(),
        }),
        MediaSource::Url(url) if is_http_url(url) => Ok(url),
        MediaSource::Url(_) => Err(ChannelError::Permanent {
            code: None,
            reason: "media URL must be an absolute http(s) URL".to_owned(),
        }),
    }
}

/// In groups, the customer message (`chat:message_id`) an answer replies to.
fn group_reply_to(msg: &OutboundMessage, chat: &str) -> Option<i64> {
    msg.in_reply_to
        .last()
        .and_then(|id| id.split_once(':'))
        .filter(|(c, _)| *c == chat && c.starts_with('-'))
        .and_then(|(_, m)| m.parse::<i64>().ok())
}

/// The inline keyboard for `choices` (one button per row), if any.
fn keyboard(choices: &[String]) -> Option<Value> {
    if choices.is_empty() {
        return None;
    }
    let rows: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(n, choice)| json!([{"text": choice, "callback_data": format::callback_data(n, choice)}]))
        .collect();
    Some(json!({ "inline_keyboard": rows }))
}

#[cfg(test)]
mod tests;
