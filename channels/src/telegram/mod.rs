//! Telegram Bot API channel.
//!
//! The Bot API's types, payloads and errors are teloxide-core's; Sapa keeps its own HTTP
//! exchange (see [`api`] for why).
//!
//! - [`update`]: the webhook secret check and decoding of every update kind (teloxide's
//!   `Update`) into a normalized [`update::Update`] (pure).
//! - [`api`]: a thin Bot API client (send, chat action, callback answers, webhook setup,
//!   `getUpdates`) posting teloxide payloads and classifying teloxide errors.
//! - [`format`]: HTML escaping, the text length limit, inline keyboard callback data.
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
pub mod update;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use teloxide_core::RequestError;
use teloxide_core::payloads::{
    SendAudio, SendDocument, SendMessage, SendPhoto, SendSticker, SendVideo, SendVoice,
};
use teloxide_core::types::{
    InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LinkPreviewOptions, MessageId,
    ParseMode, Recipient, ReplyMarkup, ReplyParameters,
};
use tokio::time::Instant;

pub use api::BotApi;
pub use config::{TelegramAccount, UpdateMode};

use crate::channel::{Channel, ChannelError, NoPartLog, PartLog};
use crate::model::{ChannelKind, Delivery, MediaFileRef, MediaKind, OutboundMessage};
use crate::pacing::PacingPolicy;
use crate::text::{CaptionRules, Measure, place_caption, split_text};
use api::{ApiFailure, recipient};

/// How often the typing action is repeated while an answer is produced (it lasts ≤ 5 s).
pub const TYPING_REFRESH: Duration = Duration::from_secs(4);
/// Longest the typing action is kept up without an answer being sent.
pub const TYPING_MAX: Duration = Duration::from_secs(60);

/// Bot API limits: 30 messages/s per bot and 1 message/s per chat.
pub const PACING: PacingPolicy = PacingPolicy {
    per_account_per_sec: Some(30),
    per_recipient_interval: Duration::from_secs(1),
    per_recipient_burst: 1,
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
                    error: RequestError::MigrateToChatId(to),
                    ..
                }) if !migrated => {
                    let from = chat_id_string(&body["chat_id"]);
                    tracing::info!("telegram chat migrated to a supergroup; following it");
                    self.chat_migrated(&from, &to.0.to_string());
                    body["chat_id"] = json!(to.0);
                    migrated = true;
                }
                Err(failure) => {
                    if let ApiFailure::Api {
                        error: RequestError::RetryAfter(after),
                        ..
                    } = &failure
                    {
                        *lock(&self.state.flood_until) = Some(Instant::now() + after.duration());
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

#[async_trait::async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        self.send_resuming(msg, &NoPartLog).await
    }

    async fn send_resuming(
        &self,
        msg: &OutboundMessage,
        log: &dyn PartLog,
    ) -> Result<Delivery, ChannelError> {
        let chat = self.chat_of(&msg.recipient);
        self.stop_typing(&chat);
        let bodies = outbound_calls(msg, &chat)?;
        let several = bodies.len() > 1;
        // Parts recorded in the log (any sender, any earlier claim) are not sent again; the
        // in-memory progress covers a send without a log.
        let mut ids: Vec<String> = log.sent().iter().take(bodies.len()).cloned().collect();
        let done = lock(&self.state.progress)
            .get(&msg.message_id)
            .copied()
            .unwrap_or(0)
            .max(ids.len());
        for (i, body) in bodies.into_iter().enumerate().skip(done) {
            match self.send_body(body).await {
                Ok(sent) => {
                    lock(&self.state.progress).insert(msg.message_id, i + 1);
                    let id = update::message_key(sent.chat_id, sent.message_id);
                    if several {
                        log.record(i, &id).await?;
                    }
                    ids.push(id);
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

/// A teloxide payload as the JSON body it is posted as. These payloads are plain structs
/// whose file ids and URLs serialize as strings, so serializing cannot fail; were it ever to,
/// the body is `null`, which Telegram refuses as a bad request (a permanent failure, never a
/// silent wrong send).
fn body_of(payload: &impl Serialize) -> Value {
    serde_json::to_value(payload).unwrap_or(Value::Null)
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
    let parts = split_text(&text, format::MAX_TEXT_UNITS, Measure::Utf16);
    let count = parts.len();
    let mut reply_to = group_reply_to(msg, chat);
    let mut markup = keyboard(&msg.choices);
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut payload =
                SendMessage::new(recipient(chat), crate::markup::to_telegram_html(&part));
            payload.parse_mode = Some(ParseMode::Html);
            payload.link_preview_options = Some(LinkPreviewOptions {
                is_disabled: true,
                url: None,
                prefer_small_media: false,
                prefer_large_media: false,
                show_above_text: false,
            });
            payload.reply_parameters = reply_to.take();
            if i + 1 == count {
                payload.reply_markup = markup.take();
            }
            body_of(&payload)
        })
        .collect()
}

/// One Bot API call: the method and its JSON body (a serialized teloxide payload).
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

/// The media send of `kind` (`sendPhoto`, …) with its file, HTML caption, reply and keyboard.
fn media_call(
    kind: MediaKind,
    chat: Recipient,
    file: InputFile,
    caption: Option<String>,
    reply: Option<ReplyParameters>,
    markup: Option<ReplyMarkup>,
) -> ApiCall {
    macro_rules! captioned {
        ($payload:ident, $method:literal) => {{
            let mut payload = $payload::new(chat, file);
            if let Some(caption) = caption {
                payload.caption = Some(caption);
                payload.parse_mode = Some(ParseMode::Html);
            }
            payload.reply_parameters = reply;
            payload.reply_markup = markup;
            ApiCall {
                method: $method,
                body: body_of(&payload),
            }
        }};
    }
    match kind {
        MediaKind::Image => captioned!(SendPhoto, "sendPhoto"),
        MediaKind::Video => captioned!(SendVideo, "sendVideo"),
        MediaKind::Audio => captioned!(SendAudio, "sendAudio"),
        MediaKind::Voice => captioned!(SendVoice, "sendVoice"),
        MediaKind::Document => captioned!(SendDocument, "sendDocument"),
        // Stickers have no caption (see `caption_supported`).
        MediaKind::Sticker => {
            let mut payload = SendSticker::new(chat, file);
            payload.reply_parameters = reply;
            payload.reply_markup = markup;
            ApiCall {
                method: "sendSticker",
                body: body_of(&payload),
            }
        }
    }
}

/// The Bot API calls for one outbound message, in send order.
///
/// Without media: the [`message_bodies`] as `sendMessage` calls. With media: first
/// `sendPhoto`/`sendVideo`/`sendAudio`/`sendVoice`/`sendDocument`/`sendSticker` with the
/// `file_id` or URL (Telegram fetches URLs itself); the media's caption, or else the text, is
/// its caption (HTML-escaped) when the kind has captions and it fits in 1,024 UTF-16 units.
/// Text that did not become the caption (and a caption that was too long) follows as
/// `sendMessage`. Choices go, as an inline keyboard, on the last call.
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
    let file = match media.source.checked()? {
        MediaFileRef::Id(id) => InputFile::file_id(id.to_owned().into()),
        MediaFileRef::Url(url) => {
            InputFile::url(url.parse().map_err(|_| ChannelError::Permanent {
                code: None,
                reason: "media URL must be an absolute http(s) URL".to_owned(),
            })?)
        }
    };
    let placed = place_caption(
        media.caption.as_deref(),
        &msg.text,
        CaptionRules {
            supported: caption_supported(media.kind),
            max: MAX_CAPTION_UNITS,
            measure: Measure::Utf16,
            text_allowed: true,
        },
    );
    let markup = if placed.follow_up.is_empty() {
        keyboard(&msg.choices)
    } else {
        None
    };
    let mut calls = vec![media_call(
        media.kind,
        recipient(chat),
        file,
        placed.caption.map(crate::markup::to_telegram_html),
        group_reply_to(msg, chat),
        markup,
    )];
    if !placed.follow_up.is_empty() {
        let rest = OutboundMessage {
            text: placed.follow_up,
            in_reply_to: Vec::new(),
            media: None,
            ..msg.clone()
        };
        calls.extend(text_calls(&rest));
    }
    Ok(calls)
}

/// In groups, the customer message (`chat:message_id`) an answer replies to.
fn group_reply_to(msg: &OutboundMessage, chat: &str) -> Option<ReplyParameters> {
    msg.in_reply_to
        .last()
        .and_then(|id| id.split_once(':'))
        .filter(|(c, _)| *c == chat && c.starts_with('-'))
        .and_then(|(_, m)| m.parse::<i32>().ok())
        .map(|id| ReplyParameters::new(MessageId(id)).allow_sending_without_reply())
}

/// The inline keyboard for `choices` (one button per row), if any.
fn keyboard(choices: &[String]) -> Option<ReplyMarkup> {
    if choices.is_empty() {
        return None;
    }
    let rows = choices.iter().enumerate().map(|(n, choice)| {
        [InlineKeyboardButton::callback(
            choice.clone(),
            format::callback_data(n, choice),
        )]
    });
    Some(ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows)))
}

#[cfg(test)]
mod tests;
