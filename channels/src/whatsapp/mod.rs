//! WhatsApp Cloud API channel.
//!
//! - [`webhook`]: signature check over the raw body, verification handshake, decoding of every
//!   message type into [`crate::provider::Event`]s (pure).
//! - [`api`]: the Graph API client (send, mark read + typing, media download).
//! - [`config`]: one number's settings and secrets.
//! - [`WhatsappChannel`]: the [`Channel`] the dispatcher sends through. It picks the message
//!   shape (text, reply buttons, list, numbered fallback), never sends free-form text outside
//!   the 24-hour customer service window, and switches to the configured re-engagement
//!   template when the window is closed (or the API says so with error 131047).

pub mod api;
pub mod config;
pub mod provider;
pub(crate) mod types;
pub mod webhook;

use std::time::Duration;

use serde_json::{Value, json};

pub use api::GraphClient;
pub use config::WhatsappAccount;

use crate::channel::{Channel, ChannelError, MediaError, MediaFile, NoPartLog, PartLog};
use crate::model::{
    ChannelKind, CodeDelivery, Delivery, MediaFileRef, MediaKind, OutboundMedia, OutboundMessage,
    Template,
};
use crate::pacing::PacingPolicy;
use crate::text::{CaptionRules, Measure, place_caption, split_text};

/// Longest text body.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Reply buttons per message.
pub const MAX_BUTTONS: usize = 3;
/// Longest reply button title.
pub const MAX_BUTTON_TITLE: usize = 20;
/// Longest body of a reply-button message.
pub const MAX_BUTTON_BODY: usize = 1024;
/// Longest media caption.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// Rows of a list message, across sections.
pub const MAX_LIST_ROWS: usize = 10;
/// Longest list row title.
pub const MAX_ROW_TITLE: usize = 24;
/// Meta's default throughput of a number (80 messages/s) and about one message per 6 s to
/// the same customer, with a burst of 3 (the defaults of [`WhatsappAccount`]'s
/// `messages_per_second`, `pair_interval` and `pair_burst`).
pub const PACING: PacingPolicy = PacingPolicy {
    per_account_per_sec: Some(config::DEFAULT_MESSAGES_PER_SECOND),
    per_recipient_interval: Duration::from_secs(6),
    per_recipient_burst: config::DEFAULT_PAIR_BURST,
};
/// The customer service window.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The WhatsApp channel of one business number.
#[derive(Debug, Clone)]
pub struct WhatsappChannel {
    client: GraphClient,
    reengagement: Option<Template>,
    codes: CodeDelivery,
    pacing: PacingPolicy,
}

impl WhatsappChannel {
    /// A channel for `account`, sending through `http`.
    pub fn new(http: reqwest::Client, account: &WhatsappAccount) -> Self {
        Self {
            client: GraphClient::new(http, account),
            reengagement: account
                .reengagement_template
                .as_ref()
                .filter(|name| !name.is_empty())
                .map(|name| Template {
                    name: name.clone(),
                    language: account.reengagement_language.clone(),
                    body_params: Vec::new(),
                    copy_code: None,
                }),
            codes: match account.otp_template.as_deref().map(str::trim) {
                Some(name) if !name.is_empty() => CodeDelivery::AuthTemplate {
                    name: name.to_owned(),
                    language: account.otp_template_language.clone(),
                },
                _ => CodeDelivery::TemplateMissing,
            },
            pacing: PacingPolicy {
                per_account_per_sec: Some(account.messages_per_second.max(1)),
                // The plugin validated the settings; a bad interval keeps the default.
                per_recipient_interval: account
                    .pair_interval()
                    .unwrap_or(PACING.per_recipient_interval),
                per_recipient_burst: account.pair_burst.max(1),
            },
        }
    }

    /// The Graph API client.
    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    /// Sends `bodies` in order, skipping those `log` says were sent; each part of a message
    /// in several parts is recorded as soon as Meta accepts it.
    async fn send_bodies(
        &self,
        bodies: Vec<Value>,
        log: &dyn PartLog,
    ) -> Result<Delivery, ChannelError> {
        let several = bodies.len() > 1;
        let mut ids: Vec<String> = log.sent().iter().take(bodies.len()).cloned().collect();
        for (index, body) in bodies.into_iter().enumerate().skip(ids.len()) {
            let id = self.client.send(body).await?;
            if several {
                log.record(index, &id).await?;
            }
            ids.push(id);
        }
        let last = ids.pop();
        Ok(Delivery {
            provider_message_id: last,
            extra_provider_message_ids: ids,
            ..Delivery::default()
        })
    }

    async fn reengage(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        match &self.reengagement {
            Some(template) => {
                let wamid = self
                    .client
                    .send(template_body(&msg.recipient, template))
                    .await?;
                Ok(Delivery {
                    provider_message_id: Some(wamid),
                    ..Delivery::default()
                })
            }
            None => Err(ChannelError::Permanent {
                code: Some(api::REENGAGEMENT_CODE.to_string()),
                reason: "24-hour customer service window closed and no re-engagement template is configured (whatsapp.reengagement_template)".to_owned(),
            }),
        }
    }
}

/// Whether a free-form message may still be sent at `now_ms`.
pub fn window_open(customer_last_seen_ms: Option<i64>, now_ms: i64) -> bool {
    let window = i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
    customer_last_seen_ms.is_none_or(|seen| now_ms.saturating_sub(seen) < window)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Channel for WhatsappChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Whatsapp
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        self.send_resuming(msg, &NoPartLog).await
    }

    async fn send_resuming(
        &self,
        msg: &OutboundMessage,
        log: &dyn PartLog,
    ) -> Result<Delivery, ChannelError> {
        if let Some(template) = &msg.template {
            let wamid = self
                .client
                .send(template_body(&msg.recipient, template))
                .await?;
            return Ok(Delivery {
                provider_message_id: Some(wamid),
                ..Delivery::default()
            });
        }
        if !window_open(msg.customer_last_seen_ms, now_ms()) {
            return self.reengage(msg).await;
        }
        match self.send_bodies(message_bodies(msg)?, log).await {
            Err(ChannelError::Permanent {
                code: Some(code), ..
            }) if code == api::REENGAGEMENT_CODE.to_string() => self.reengage(msg).await,
            other => other,
        }
    }

    async fn typing(&self, _recipient: &str, last_message_id: &str) {
        if let Err(err) = self.client.mark_read(last_message_id, true).await {
            tracing::debug!(error = %err, "whatsapp typing indicator failed");
        }
    }

    fn pacing(&self) -> PacingPolicy {
        self.pacing
    }

    fn reengagement_template(&self) -> Option<Template> {
        self.reengagement.clone()
    }

    fn one_time_codes(&self) -> CodeDelivery {
        self.codes.clone()
    }

    async fn download_media(
        &self,
        media_id: &str,
        sha256: Option<&str>,
        max_bytes: u64,
    ) -> Result<MediaFile, MediaError> {
        self.client
            .download_media(media_id, sha256, max_bytes)
            .await
    }
}

/// The Graph API bodies for one outbound message, in send order.
///
/// Without media: one message unless the text exceeds 4,096 characters. Choices become reply
/// buttons (≤3, titles ≤20), else a list (≤10 rows, titles ≤24), else a numbered list in the
/// text.
///
/// With media: the media message first (`{"id": …}` or `{"link": "https://…"}`). The text
/// becomes its caption when the kind has captions (image, video, document), the media has no
/// caption of its own, the text fits in 1,024 characters and there are no choices; otherwise
/// the text (with its choices) follows as its own message. A caption over 1,024 characters is
/// sent as a text message after the media.
///
/// # Errors
/// [`ChannelError::Permanent`] for a media link that is not an `http(s)` URL or an empty
/// media id.
pub fn message_bodies(msg: &OutboundMessage) -> Result<Vec<Value>, ChannelError> {
    let context = msg.in_reply_to.last().filter(|id| id.starts_with("wamid."));
    let text = crate::markup::to_whatsapp(&msg.text);
    let Some(media) = &msg.media else {
        return Ok(text_bodies(msg, &text, context));
    };
    let caption = media.caption.as_deref().map(crate::markup::to_whatsapp);
    let placed = place_caption(
        caption.as_deref(),
        &text,
        CaptionRules {
            supported: caption_supported(media.kind),
            max: MAX_CAPTION_CHARS,
            measure: Measure::Chars,
            // Choices need an interactive message, which cannot carry media.
            text_allowed: msg.choices.is_empty(),
        },
    );
    let mut body = json!({
        "to": msg.recipient,
        "type": wire_kind(media.kind),
    });
    body[wire_kind(media.kind)] = media_object(media, placed.caption)?;
    if let Some(id) = context {
        body["context"] = json!({ "message_id": id });
    }
    let mut bodies = vec![body];
    if !placed.follow_up.is_empty() || !msg.choices.is_empty() {
        bodies.extend(text_bodies(msg, &placed.follow_up, None));
    }
    Ok(bodies)
}

/// Whether WhatsApp shows a caption with this kind of media.
pub fn caption_supported(kind: MediaKind) -> bool {
    matches!(
        kind,
        MediaKind::Image | MediaKind::Video | MediaKind::Document
    )
}

/// The Graph API message type of a media kind (voice notes are audio messages).
fn wire_kind(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Video => "video",
        MediaKind::Audio | MediaKind::Voice => "audio",
        MediaKind::Document => "document",
        MediaKind::Sticker => "sticker",
    }
}

/// The `image`/`document`/… object: `id` or `link`, caption and file name where allowed.
fn media_object(media: &OutboundMedia, caption: Option<&str>) -> Result<Value, ChannelError> {
    let mut object = match media.source.checked()? {
        MediaFileRef::Id(id) => json!({ "id": id }),
        MediaFileRef::Url(url) => json!({ "link": url }),
    };
    if let Some(caption) = caption {
        object["caption"] = json!(caption);
    }
    if media.kind == MediaKind::Document
        && let Some(name) = media.filename.as_deref().map(str::trim)
        && !name.is_empty()
    {
        object["filename"] = json!(name);
    }
    Ok(object)
}

/// Text bodies of `text` with the message's choices; `context` quotes a customer message on
/// the first one.
fn text_bodies(msg: &OutboundMessage, text: &str, context: Option<&String>) -> Vec<Value> {
    let to = msg.recipient.as_str();
    let with_context = |mut body: Value| {
        if let Some(id) = context {
            body["context"] = json!({ "message_id": id });
        }
        body
    };
    let choices = &msg.choices;
    let body_chars = text.chars().count();
    let fits = |max: usize| choices.iter().all(|c| c.chars().count() <= max);
    let unique = {
        let mut seen = std::collections::HashSet::new();
        choices.iter().all(|c| seen.insert(c.as_str()))
    };
    if !choices.is_empty() && unique && body_chars > 0 {
        if choices.len() <= MAX_BUTTONS && fits(MAX_BUTTON_TITLE) && body_chars <= MAX_BUTTON_BODY {
            let buttons: Vec<Value> = choices
                .iter()
                .enumerate()
                .map(|(i, title)| {
                    json!({"type": "reply", "reply": {"id": format!("choice:{i}"), "title": title}})
                })
                .collect();
            return vec![with_context(json!({
                "to": to,
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": text},
                    "action": {"buttons": buttons},
                },
            }))];
        }
        if choices.len() <= MAX_LIST_ROWS && fits(MAX_ROW_TITLE) && body_chars <= MAX_TEXT_CHARS {
            let rows: Vec<Value> = choices
                .iter()
                .enumerate()
                .map(|(i, title)| json!({"id": format!("choice:{i}"), "title": title}))
                .collect();
            return vec![with_context(json!({
                "to": to,
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "body": {"text": text},
                    "action": {"button": "Pilih", "sections": [{"title": "Pilihan", "rows": rows}]},
                },
            }))];
        }
    }
    let mut text = text.to_owned();
    if !choices.is_empty() {
        for (i, choice) in choices.iter().enumerate() {
            text.push_str(&format!("\n{}. {choice}", i + 1));
        }
    }
    split_text(&text, MAX_TEXT_CHARS, Measure::Chars)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let body = json!({
                "to": to,
                "type": "text",
                "text": {"body": part, "preview_url": false},
            });
            if i == 0 { with_context(body) } else { body }
        })
        .collect()
}

/// A template message body.
pub fn template_body(to: &str, template: &Template) -> Value {
    let mut tpl = json!({
        "name": template.name,
        "language": {"code": template.language},
    });
    let mut components = Vec::new();
    if !template.body_params.is_empty() {
        let params: Vec<Value> = template
            .body_params
            .iter()
            .map(|p| json!({"type": "text", "text": p}))
            .collect();
        components.push(json!({"type": "body", "parameters": params}));
    }
    if let Some(code) = &template.copy_code {
        // Authentication templates: the copy-code button reads back as a URL button whose
        // one parameter is the code (Meta: the code appears in the body and here).
        components.push(json!({
            "type": "button", "sub_type": "url", "index": "0",
            "parameters": [{"type": "text", "text": code}],
        }));
    }
    if !components.is_empty() {
        tpl["components"] = Value::Array(components);
    }
    json!({"to": to, "type": "template", "template": tpl})
}

#[cfg(test)]
mod tests;
