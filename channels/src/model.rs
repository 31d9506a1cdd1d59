//! Provider-independent message types shared by every adapter.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which messaging provider a channel account talks to.
///
/// The one place where channel kinds meet their strings (storage, routes, logs, metrics). The
/// built-in kinds are variants; a channel added outside this crate (a test provider, a plugin)
/// names itself with [`ChannelKind::custom`], which registers the name so that it parses back
/// from storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// The embeddable browser widget and hosted chat page.
    Webchat,
    /// WhatsApp Cloud API.
    Whatsapp,
    /// Telegram Bot API.
    Telegram,
    /// A channel registered through [`ChannelKind::custom`].
    Custom(&'static str),
}

/// Names registered by [`ChannelKind::custom`]. A handful per process; never shrinks.
static CUSTOM_KINDS: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

impl ChannelKind {
    /// The built-in kinds.
    pub const BUILT_IN: [ChannelKind; 3] = [Self::Webchat, Self::Whatsapp, Self::Telegram];

    /// The stable lowercase name used in storage, routes, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webchat => "webchat",
            Self::Whatsapp => "whatsapp",
            Self::Telegram => "telegram",
            Self::Custom(name) => name,
        }
    }

    /// A kind defined outside this crate, registered so that [`str::parse`] knows it.
    ///
    /// # Errors
    /// When `name` is a built-in kind's name or not 1-32 characters of `a-z 0-9 _`.
    pub fn custom(name: &'static str) -> Result<Self, UnknownChannelKind> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || Self::BUILT_IN.iter().any(|k| k.as_str() == name) {
            return Err(UnknownChannelKind(name.to_owned()));
        }
        let mut kinds = CUSTOM_KINDS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !kinds.contains(&name) {
            kinds.push(name);
        }
        Ok(Self::Custom(name))
    }

    /// Whether messages of this kind go to a browser session (web chat) rather than to a
    /// provider address: no contact, no pacing, no provider typing indicator.
    pub fn is_webchat(self) -> bool {
        self == Self::Webchat
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no known channel kind.
#[derive(Debug, thiserror::Error)]
#[error("unknown channel kind `{0}` (expected webchat, whatsapp or telegram)")]
pub struct UnknownChannelKind(String);

impl FromStr for ChannelKind {
    type Err = UnknownChannelKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(kind) = Self::BUILT_IN.into_iter().find(|k| k.as_str() == s) {
            return Ok(kind);
        }
        CUSTOM_KINDS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|name| **name == s)
            .map(|name| Self::Custom(name))
            .ok_or_else(|| UnknownChannelKind(s.to_owned()))
    }
}

impl Serialize for ChannelKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChannelKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Who wrote a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// The end customer.
    Customer,
    /// Sapa's automatic assistant.
    Bot,
    /// A human agent of the business.
    Agent,
}

impl Author {
    /// The stable lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Bot => "bot",
            Self::Agent => "agent",
        }
    }

    /// Parses the stored name; unknown names are treated as the bot's.
    pub fn parse(s: &str) -> Self {
        match s {
            "customer" => Self::Customer,
            "agent" => Self::Agent,
            _ => Self::Bot,
        }
    }
}

/// One message the gateway asks a channel to deliver, already stored in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// The stored message's id (monotonic within the gateway).
    pub message_id: i64,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// The provider-side address of the customer (chat id, phone number, web session).
    pub recipient: String,
    /// Who wrote it.
    pub author: Author,
    /// Plain text; adapters escape it for their markup.
    pub text: String,
    /// Quick replies the customer can tap, if any.
    pub choices: Vec<String>,
    /// Customer messages this message answers (their client or provider ids).
    pub in_reply_to: Vec<String>,
    /// When the message was created, Unix milliseconds.
    pub created_at_ms: i64,
    /// Unique per logical send; lets receivers drop a re-send after a crash.
    pub idempotency_key: String,
    /// When the customer last wrote (Unix ms), for channels with a reply window (WhatsApp's
    /// 24-hour customer service window). `None`: unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_last_seen_ms: Option<i64>,
    /// Send this pre-approved template instead of `text` (WhatsApp business-initiated
    /// messages). Channels without templates send `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// A photo, file, … to send with (or instead of) `text`. Adapters that support captions
    /// use `text` as the caption when the media has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<OutboundMedia>,
}

impl OutboundMessage {
    /// The message as one plain text, for channels and views without media: `text`, then a
    /// line describing the media (with its URL when it has one).
    pub fn display_text(&self) -> String {
        let Some(media) = &self.media else {
            return self.text.clone();
        };
        let line = media.display_line();
        if self.text.trim().is_empty() {
            line
        } else {
            format!("{}\n{line}", self.text)
        }
    }
}

/// Media the gateway sends to a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMedia {
    /// Which kind (decides the provider call: photo, document, …).
    pub kind: MediaKind,
    /// Where the provider gets the file.
    pub source: MediaSource,
    /// Caption shown with the media (image, video, document; Telegram also audio and voice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// File name shown for documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl OutboundMedia {
    /// One line for text-only views: `[document: menu.pdf] caption https://…`.
    pub fn display_line(&self) -> String {
        let mut line = match self.filename.as_deref().and_then(non_empty) {
            Some(name) => format!("[{}: {name}]", self.kind.as_str()),
            None => format!("[{}]", self.kind.as_str()),
        };
        if let Some(caption) = self.caption.as_deref().and_then(non_empty) {
            line.push(' ');
            line.push_str(caption);
        }
        if let MediaSource::Url(url) = &self.source {
            line.push(' ');
            line.push_str(url);
        }
        line
    }
}

/// Where a provider fetches outbound media from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaSource {
    /// A media id on the provider (WhatsApp media id, Telegram `file_id`): only valid on the
    /// channel account that issued it.
    ProviderId(String),
    /// A public `http(s)` URL the provider downloads.
    Url(String),
}

/// A [`MediaSource`] checked before it goes to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFileRef<'a> {
    /// The provider's media id, trimmed and non-empty.
    Id(&'a str),
    /// An absolute `http(s)` URL (see [`is_http_url`]).
    Url(&'a str),
}

impl MediaSource {
    /// The id or URL to hand the provider.
    ///
    /// # Errors
    /// [`crate::ChannelError::Permanent`] for an empty id or a URL that is not an absolute
    /// `http(s)` URL: no retry can fix either.
    pub fn checked(&self) -> Result<MediaFileRef<'_>, crate::ChannelError> {
        let refuse = |reason: &str| crate::ChannelError::Permanent {
            code: None,
            reason: reason.to_owned(),
        };
        match self {
            Self::ProviderId(id) if !id.trim().is_empty() => Ok(MediaFileRef::Id(id.trim())),
            Self::ProviderId(_) => Err(refuse("media id is empty")),
            Self::Url(url) if is_http_url(url) => Ok(MediaFileRef::Url(url)),
            Self::Url(_) => Err(refuse("media URL must be an absolute http(s) URL")),
        }
    }
}

/// Longest media URL accepted.
pub const MAX_MEDIA_URL_CHARS: usize = 2048;

/// Whether `url` is an absolute `http://` or `https://` URL with a host and no whitespace or
/// control characters (what providers accept as a media link).
pub fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    url.chars().count() <= MAX_MEDIA_URL_CHARS
        && !host.is_empty()
        && !host.starts_with(['@', ':'])
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A provider-approved message template with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Template name (case-sensitive).
    pub name: String,
    /// Language code of the approved translation, e.g. `id` or `en_US`.
    pub language: String,
    /// Values for the body placeholders `{{1}}`, `{{2}}`, … in order.
    #[serde(default)]
    pub body_params: Vec<String>,
    /// The one-time code of an authentication template's copy-code button (sent as the
    /// parameter of its button 0, as Meta requires next to the body parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_code: Option<String>,
}

/// Stands for a one-time code in a queued message: the dispatcher replaces it with the code,
/// unsealed just before the send, so the code itself is never stored in a message or payload.
pub const CODE_PLACEHOLDER: &str = "{{otp_code}}";

/// How a channel delivers one-time codes ([`crate::Channel::one_time_codes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeDelivery {
    /// By a provider-approved authentication template with a copy-code button (WhatsApp).
    AuthTemplate {
        /// Template name.
        name: String,
        /// Its language code.
        language: String,
    },
    /// The account could send codes by template, but none is configured.
    TemplateMissing,
    /// As a text from the bot (Telegram).
    Text,
    /// This channel does not deliver codes (web chat).
    Unsupported,
}

/// A customer message as the provider reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// The provider id of the message (WhatsApp `wamid.…`); the dedupe key.
    pub external_id: String,
    /// The customer's address on the provider (WhatsApp `wa_id`).
    pub from: String,
    /// The customer's profile name, when the provider sent one.
    pub sender_name: Option<String>,
    /// Provider timestamp, Unix seconds.
    pub timestamp_s: i64,
    /// The provider id of our message this one replies to (tapped button, quoted message).
    pub reply_to: Option<String>,
    /// What the customer sent.
    pub content: MessageContent,
}

/// The content of an inbound message, one variant per kind we understand.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    /// Typed text.
    Text {
        /// The text.
        body: String,
    },
    /// A tapped reply button, list row or template quick-reply button.
    Choice {
        /// The id or payload we attached to the option.
        id: String,
        /// The option's visible title.
        title: String,
        /// List rows' description.
        description: Option<String>,
    },
    /// An image, video, audio, voice note, document or sticker.
    Media {
        /// Which kind.
        kind: MediaKind,
        /// Where to fetch it.
        media: MediaRef,
        /// Caption typed with the media (image, video, document).
        caption: Option<String>,
    },
    /// A shared location pin.
    Location {
        /// Latitude in degrees.
        latitude: f64,
        /// Longitude in degrees.
        longitude: f64,
        /// Place name.
        name: Option<String>,
        /// Street address.
        address: Option<String>,
    },
    /// Shared contact cards.
    Contacts {
        /// One entry per card.
        cards: Vec<ContactCard>,
    },
    /// A reaction to one of our messages; `emoji: None` means the reaction was removed.
    Reaction {
        /// The reacted-to message.
        message_id: String,
        /// The emoji.
        emoji: Option<String>,
    },
    /// The provider could not show us this message (e.g. WhatsApp error 131051).
    Unsupported {
        /// The provider's error code, if any.
        code: Option<i64>,
    },
    /// A cart sent from the business's catalog (WhatsApp `order`): acknowledged, kept for
    /// agents.
    Order {
        /// The catalog the products belong to.
        catalog_id: Option<String>,
        /// The note the customer typed with the cart.
        note: Option<String>,
        /// The cart lines.
        items: Vec<OrderItem>,
    },
    /// The customer opened the chat without writing (WhatsApp `request_welcome`): greeted.
    Welcome,
    /// A response to a form-like flow (WhatsApp Flows `nfm_reply`): stored for the flow
    /// engine, never answered by the bot.
    FlowReply {
        /// The flow's name.
        name: Option<String>,
        /// The text the customer's app showed for the submission.
        body: Option<String>,
        /// The submitted answers, a JSON document as the provider sent it.
        response_json: String,
    },
    /// A provider notice about the customer (WhatsApp `system`: number changed): visible to
    /// agents, never answered.
    System {
        /// The provider's text (`User A changed from … to …`).
        body: String,
    },
    /// A message type this version does not know yet.
    Unknown {
        /// The provider's type name.
        kind: String,
    },
}

/// One line of an [`MessageContent::Order`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// The business's product id (WhatsApp `product_retailer_id`).
    pub product_id: String,
    /// How many.
    pub quantity: Option<u64>,
    /// Unit price as the provider sent it (decimal text, never rounded).
    pub unit_price: Option<String>,
    /// ISO 4217 currency of the price.
    pub currency: Option<String>,
}

/// Kinds of media a customer can send or receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A photo.
    Image,
    /// A video.
    Video,
    /// An audio file.
    Audio,
    /// A recorded voice note.
    Voice,
    /// A file.
    Document,
    /// A sticker.
    Sticker,
}

impl MediaKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 6] = [
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Voice,
        Self::Document,
        Self::Sticker,
    ];

    /// Parses the stable lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Voice => "voice",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

/// A provider-hosted media object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// Provider media id (fetch it through the provider API).
    pub id: String,
    /// MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// SHA-256 of the file as the provider reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// File name (documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// One shared contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactCard {
    /// Formatted name.
    pub name: String,
    /// Phone numbers.
    pub phones: Vec<String>,
}

/// How a message reaches the conversation engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnHint {
    /// Typed text: debounced, answered.
    Text,
    /// A tapped option: answered at once.
    Choice,
    /// A catalog order: acknowledged with a fixed text, never a model answer.
    Order,
    /// The customer opened the chat: greeted.
    Welcome,
}

impl MessageContent {
    /// Stable name of the content kind (storage, metrics).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Text { .. } => "text",
            Self::Choice { .. } => "choice",
            Self::Media { kind, .. } => kind.as_str(),
            Self::Location { .. } => "location",
            Self::Contacts { .. } => "contacts",
            Self::Reaction { .. } => "reaction",
            Self::Unsupported { .. } => "unsupported",
            Self::Order { .. } => "order",
            Self::Welcome => "request_welcome",
            Self::FlowReply { .. } => "nfm_reply",
            Self::System { .. } => "system",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// How the bot reacts to this message, if at all: [`Self::answer_text`]'s hint for text,
    /// choices and captions; [`TurnHint::Order`] for an order (acknowledged);
    /// [`TurnHint::Welcome`] when the customer opened the chat (greeted).
    pub fn reply_hint(&self) -> Option<TurnHint> {
        match self {
            Self::Order { .. } => Some(TurnHint::Order),
            Self::Welcome => Some(TurnHint::Welcome),
            other => other.answer_text().map(|(_, hint)| hint),
        }
    }

    /// The text the bot should answer, if this message asks for an answer: typed text, the
    /// title of a tapped option, or a media caption. Reactions, locations, contact cards and
    /// media without caption are stored for agents but not answered.
    pub fn answer_text(&self) -> Option<(&str, TurnHint)> {
        let text = match self {
            Self::Text { body } => return non_empty(body).map(|t| (t, TurnHint::Text)),
            Self::Choice { title, .. } => return non_empty(title).map(|t| (t, TurnHint::Choice)),
            Self::Media { caption, .. } => caption.as_deref(),
            _ => None,
        };
        text.and_then(non_empty).map(|t| (t, TurnHint::Text))
    }

    /// A one-line text for the conversation history (what agents see).
    pub fn display_text(&self) -> String {
        match self {
            Self::Text { body } => body.clone(),
            Self::Choice { title, .. } => title.clone(),
            Self::Media {
                kind,
                caption,
                media,
            } => {
                let label = media.filename.as_deref().map_or_else(
                    || format!("[{}]", kind.as_str()),
                    |f| format!("[{}: {f}]", kind.as_str()),
                );
                match caption.as_deref().and_then(non_empty) {
                    Some(c) => format!("{label} {c}"),
                    None => label,
                }
            }
            Self::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let place = [name.as_deref(), address.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                if place.is_empty() {
                    format!("[location {latitude}, {longitude}]")
                } else {
                    format!("[location {latitude}, {longitude}] {place}")
                }
            }
            Self::Contacts { cards } => format!(
                "[contact: {}]",
                cards
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Reaction { emoji, .. } => match emoji {
                Some(e) => format!("[reaction {e}]"),
                None => "[reaction removed]".to_owned(),
            },
            Self::Unsupported { .. } => "[unsupported message]".to_owned(),
            Self::Order { note, items, .. } => {
                let lines = items
                    .iter()
                    .map(|item| {
                        let mut line = format!(
                            "{} x {}",
                            item.quantity
                                .map_or_else(|| "?".to_owned(), |q| q.to_string()),
                            item.product_id
                        );
                        if let Some(price) = &item.unit_price {
                            line.push_str(&format!(
                                " @ {price}{}",
                                item.currency
                                    .as_deref()
                                    .map(|c| format!(" {c}"))
                                    .unwrap_or_default()
                            ));
                        }
                        line
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                match note.as_deref().and_then(non_empty) {
                    Some(note) => format!("[order] {lines} ({note})"),
                    None => format!("[order] {lines}"),
                }
            }
            Self::Welcome => "[opened the chat]".to_owned(),
            Self::FlowReply { name, body, .. } => {
                let label = name.as_deref().and_then(non_empty).map_or_else(
                    || "[flow reply]".to_owned(),
                    |n| format!("[flow reply: {n}]"),
                );
                match body.as_deref().and_then(non_empty) {
                    Some(b) => format!("{label} {b}"),
                    None => label,
                }
            }
            Self::System { body } => format!("[system] {body}"),
            Self::Unknown { kind } => format!("[unsupported message type {kind}]"),
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

/// Delivery progress of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Accepted by the provider's servers.
    Sent,
    /// Reached the customer's device.
    Delivered,
    /// Opened by the customer.
    Read,
    /// Could not be delivered.
    Failed,
}

impl DeliveryState {
    /// The stable lowercase name (stored in `messages.status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// Progress rank: a status only ever replaces one of lower rank
    /// (`pending` 0 < sent < failed < delivered < read).
    pub fn rank(self) -> i64 {
        match self {
            Self::Sent => 1,
            Self::Failed => 2,
            Self::Delivered => 3,
            Self::Read => 4,
        }
    }
}

/// A provider's report on one of our messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The provider message id we recorded when sending.
    pub provider_message_id: String,
    /// The customer's address.
    pub recipient: String,
    /// New state.
    pub state: DeliveryState,
    /// Provider timestamp, Unix seconds.
    pub timestamp_s: i64,
    /// For `failed`: the provider's error code and title.
    pub error: Option<ProviderError>,
}

/// An error the provider reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// Numeric code (WhatsApp: 131047, 131026, …).
    pub code: i64,
    /// Short title, log-safe.
    pub title: String,
}

/// What the provider said when it accepted a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's id for the sent message (wamid, Telegram message id), if it returns one.
    /// When one outbound message went out as several provider messages (a long text split in
    /// parts, media followed by its text), this is the id of the last one.
    pub provider_message_id: Option<String>,
    /// The ids of the earlier provider messages of a message sent in several parts, in send
    /// order (empty for a single send). Status updates may refer to any of them.
    pub extra_provider_message_ids: Vec<String>,
    /// The recipient's new address when the provider said it moved while sending (a Telegram
    /// group upgraded to a supergroup: `migrate_to_chat_id`); the gateway updates the contact.
    pub recipient_moved_to: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_are_media_links() {
        for ok in [
            "https://cdn.example.com/menu.jpg",
            "HTTP://example.com",
            "https://example.com:8443/a?b=c#d",
        ] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "ftp://example.com/a.jpg",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://",
            "https:///path",
            "https://exa mple.com/a.jpg",
            "https://example.com/a\n.jpg",
            "example.com/a.jpg",
            "",
        ] {
            assert!(!is_http_url(bad), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_MEDIA_URL_CHARS));
        assert!(!is_http_url(&long));
    }

    #[test]
    fn display_text_describes_media_with_its_url() {
        let mut msg = OutboundMessage {
            message_id: 1,
            conversation_id: "c".into(),
            recipient: "r".into(),
            author: Author::Agent,
            text: "Ini menunya".into(),
            choices: vec![],
            in_reply_to: vec![],
            created_at_ms: 0,
            idempotency_key: "k".into(),
            customer_last_seen_ms: None,
            template: None,
            media: Some(OutboundMedia {
                kind: MediaKind::Document,
                source: MediaSource::Url("https://example.com/menu.pdf".into()),
                caption: None,
                filename: Some("menu.pdf".into()),
            }),
        };
        assert_eq!(
            msg.display_text(),
            "Ini menunya\n[document: menu.pdf] https://example.com/menu.pdf"
        );
        msg.text.clear();
        msg.media = Some(OutboundMedia {
            kind: MediaKind::Image,
            source: MediaSource::ProviderId("123".into()),
            caption: Some("Promo".into()),
            filename: None,
        });
        assert_eq!(msg.display_text(), "[image] Promo");
        assert_eq!(MediaKind::parse("sticker"), Some(MediaKind::Sticker));
        assert_eq!(MediaKind::parse("gif"), None);
    }

    #[test]
    fn stored_payloads_without_media_still_parse() {
        let old = r#"{"message_id":1,"conversation_id":"c","recipient":"r","author":"bot","text":"t","choices":[],"in_reply_to":[],"created_at_ms":0,"idempotency_key":"k"}"#;
        let msg: OutboundMessage = serde_json::from_str(old).unwrap();
        assert!(msg.media.is_none());
        assert!(!serde_json::to_string(&msg).unwrap().contains("media"));
    }
}
