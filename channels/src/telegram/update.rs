//! Webhook and `getUpdates` side: the secret-token check and decoding of one Bot API update
//! (read with teloxide-core's types) into a normalized [`Update`]. Pure: no I/O, no tenant,
//! no storage.

use serde::Deserialize;
use subtle::ConstantTimeEq;
use teloxide_core::types::{
    self as tg, AllowedUpdate, CallbackQuery, ChatId, InlineKeyboardButtonKind,
    MediaKind as TgMedia, Message, MessageEntity, MessageEntityKind, MessageKind, UpdateKind, User,
};

use super::format;
use crate::model::{ContactCard, InboundMessage, MediaKind, MediaRef, MessageContent};

/// The header carrying the `secret_token` registered with `setWebhook`.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The update kinds Sapa asks for (`allowed_updates`).
pub const ALLOWED_UPDATES: [AllowedUpdate; 4] = [
    AllowedUpdate::Message,
    AllowedUpdate::EditedMessage,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::MyChatMember,
];

/// Whether the webhook's secret header equals `expected` (constant time). An empty expected
/// secret never matches.
pub fn verify_secret(expected: &str, header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    if expected.is_empty() {
        return false;
    }
    header.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Who the bot is: needed to tell whether a group message addresses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotIdentity {
    /// The bot's user id.
    pub id: i64,
    /// The bot's username without `@` (may be empty when unknown).
    pub username: String,
}

/// One decoded update.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Telegram's `update_id` (increasing; the `getUpdates` offset).
    pub update_id: i64,
    /// What happened.
    pub event: Event,
}

/// What an update reports, normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A customer message (text, command, media, contact, location).
    Message(CustomerMessage),
    /// The customer edited an earlier message: update its stored text, do not answer again.
    Edited {
        /// The edited message's id (`<chat id>:<message id>`), as first received.
        external_id: String,
        /// The chat.
        chat_id: String,
        /// The new text (or caption).
        text: String,
    },
    /// A tapped inline keyboard button. Always answer `query_id` with `answerCallbackQuery`.
    Callback {
        /// The callback query id.
        query_id: String,
        /// The tap as a [`MessageContent::Choice`] message. Its title is empty when the
        /// button's text could not be recovered from the update: `id` then references a
        /// choice kept server-side (see [`format::choice_reference`]).
        message: CustomerMessage,
    },
    /// The customer blocked (`reachable: false`) or unblocked the bot, or the bot was removed
    /// from / added to a group.
    MemberStatus {
        /// The chat.
        chat_id: String,
        /// Whether the bot can write to the chat now.
        reachable: bool,
    },
    /// A group became a supergroup with a new chat id.
    Migrated {
        /// The old chat id.
        from_chat_id: String,
        /// The new chat id.
        to_chat_id: String,
    },
    /// An update kind Sapa does not handle (reactions, channel posts, polls, …) or a message
    /// it could not read; acknowledged and dropped.
    Ignored {
        /// The update's kind (its JSON key).
        kind: String,
    },
}

/// A customer message with the Telegram context the gateway needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerMessage {
    /// The chat id (a private chat's id is the customer's user id; groups are negative).
    pub chat_id: String,
    /// Whether the chat is a group or supergroup.
    pub group: bool,
    /// Whether the message is for the bot: always in private chats; in groups only when the
    /// bot is mentioned, replied to, or commanded.
    pub addressed: bool,
    /// Whether the text is a bot command (`/start`); the text is then `/command args`.
    pub command: bool,
    /// The sender's Telegram client language (`id`, `en`, `pt-br`, …).
    pub language: Option<String>,
    /// The customer's own phone number, when they shared their contact.
    pub shared_phone: Option<String>,
    /// The normalized message (`external_id` = `<chat id>:<message id>`, `from` = chat id).
    pub message: InboundMessage,
}

/// Why an update could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or no `update_id`.
    #[error("body is not a Telegram update: {0}")]
    NotAnUpdate(String),
}

/// Decodes one webhook body.
///
/// # Errors
/// [`DecodeError::NotAnUpdate`] when the body is not a JSON object with an `update_id`.
pub fn decode(body: &[u8], bot: &BotIdentity) -> Result<Update, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::NotAnUpdate(e.to_string()))?;
    decode_value(value, bot)
}

/// The update kinds Sapa decodes: one of these that teloxide cannot read is "undecodable".
const HANDLED: &[&str] = &[
    "message",
    "edited_message",
    "callback_query",
    "my_chat_member",
];

/// Decodes one update already parsed as JSON (`getUpdates` results) with teloxide's
/// [`tg::Update`].
///
/// # Errors
/// [`DecodeError::NotAnUpdate`] when `value` is not an object with a valid `update_id`.
pub fn decode_value(value: serde_json::Value, bot: &BotIdentity) -> Result<Update, DecodeError> {
    // The kind is the update's one key besides `update_id`, read here because teloxide turns
    // an update it cannot read (unknown kind, or a payload it cannot parse) into
    // `UpdateKind::Error` without the key, and the gateway reports the kind it ignored.
    let kind = value
        .as_object()
        .and_then(|map| map.keys().find(|k| *k != "update_id"))
        .map_or_else(|| "empty".to_owned(), Clone::clone);
    if !HANDLED.contains(&kind.as_str()) {
        // A kind Sapa does not handle is not given to teloxide at all: its readers of some
        // kinds panic on input they do not expect (fuzzing found `message_reaction` without
        // `user` or `actor_chat` unwrapping a `None`), and only the id is needed.
        let update_id = value
            .get("update_id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                DecodeError::NotAnUpdate(
                    "no valid `update_id` (an unsigned 32-bit integer)".to_owned(),
                )
            })?;
        return Ok(Update {
            update_id: i64::from(update_id),
            event: Event::Ignored { kind },
        });
    }
    // From `&Value`, not `Value`: teloxide's `UpdateKind` reads its key as a borrowed `&str`
    // first, which an owned `Value` cannot lend (the key would be lost). A panic inside
    // teloxide's readers is an undecodable update, not a crash of the webhook or the poller.
    let update = std::panic::catch_unwind(|| tg::Update::deserialize(&value))
        .map_err(|_| {
            DecodeError::NotAnUpdate(format!("teloxide could not read this `{kind}` update"))
        })?
        .map_err(|e| DecodeError::NotAnUpdate(e.to_string()))?;
    let update_id = i64::from(update.id.0);
    let event = match update.kind {
        UpdateKind::Message(message) => message_event(message, bot),
        UpdateKind::EditedMessage(message) => edited(&message).unwrap_or_else(|| Event::Ignored {
            kind: "edited_message (undecodable)".to_owned(),
        }),
        UpdateKind::CallbackQuery(query) => callback(query),
        UpdateKind::MyChatMember(update) => Event::MemberStatus {
            chat_id: update.chat.id.0.to_string(),
            reachable: !(update.new_chat_member.is_left() || update.new_chat_member.is_banned()),
        },
        UpdateKind::Error(_) if HANDLED.contains(&kind.as_str()) => {
            tracing::debug!(kind = %kind, "undecodable telegram update");
            Event::Ignored {
                kind: format!("{kind} (undecodable)"),
            }
        }
        _ => Event::Ignored { kind },
    };
    Ok(Update { update_id, event })
}

fn message_event(message: Message, bot: &BotIdentity) -> Event {
    if let Some(to) = message.migrate_to_chat_id() {
        return Event::Migrated {
            from_chat_id: message.chat.id.0.to_string(),
            to_chat_id: to.0.to_string(),
        };
    }
    if message.from.as_ref().is_none_or(|u| u.is_bot) {
        return Event::Ignored {
            kind: "message from a bot or channel".to_owned(),
        };
    }
    Event::Message(customer_message(&message, bot))
}

fn edited(message: &Message) -> Option<Event> {
    let text = message.text().or_else(|| message.caption())?;
    Some(Event::Edited {
        external_id: key_of(message),
        chat_id: message.chat.id.0.to_string(),
        text: text.to_owned(),
    })
}

/// The stable id of a message: `<chat id>:<message id>` (message ids are per chat).
pub fn message_key(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

fn key_of(message: &Message) -> String {
    message_key(message.chat.id.0, i64::from(message.id.0))
}

fn full_name(first: &str, last: Option<&str>) -> String {
    match last {
        Some(last) if !last.is_empty() => format!("{first} {last}"),
        _ => first.to_owned(),
    }
}

fn display_name(user: &User) -> Option<String> {
    let name = full_name(&user.first_name, user.last_name.as_deref());
    let name = name.trim();
    if name.is_empty() {
        user.username.clone()
    } else {
        Some(name.to_owned())
    }
}

fn is_group(chat: &tg::Chat) -> bool {
    chat.is_group() || chat.is_supergroup()
}

fn is_bot(user: &User, bot: &BotIdentity) -> bool {
    u64::try_from(bot.id).is_ok_and(|id| user.id.0 == id)
}

fn media_ref(
    file: &tg::FileMeta,
    mime_type: Option<String>,
    filename: Option<&String>,
) -> MediaRef {
    MediaRef {
        id: file.id.0.clone(),
        mime_type,
        sha256: None,
        filename: filename.cloned(),
    }
}

/// The normalized content of a non-text message (`caption` already read).
fn media_content(
    m: &Message,
    caption: Option<String>,
    shared_phone: &mut Option<String>,
) -> MessageContent {
    let media = |kind: MediaKind, media: MediaRef| MessageContent::Media {
        kind,
        media,
        caption: caption.clone(),
    };
    let MessageKind::Common(common) = &m.kind else {
        return MessageContent::Unknown {
            kind: "unsupported".to_owned(),
        };
    };
    match &common.media_kind {
        TgMedia::Photo(p) => match p
            .photo
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
        {
            Some(photo) => media(MediaKind::Image, media_ref(&photo.file, None, None)),
            None => MessageContent::Unknown {
                kind: "unsupported".to_owned(),
            },
        },
        TgMedia::Voice(v) => media(
            MediaKind::Voice,
            media_ref(
                &v.voice.file,
                v.voice.mime_type.as_ref().map(ToString::to_string),
                None,
            ),
        ),
        TgMedia::Audio(a) => media(
            MediaKind::Audio,
            media_ref(
                &a.audio.file,
                a.audio.mime_type.as_ref().map(ToString::to_string),
                a.audio.file_name.as_ref(),
            ),
        ),
        TgMedia::Video(v) => media(
            MediaKind::Video,
            media_ref(
                &v.video.file,
                v.video.mime_type.as_ref().map(ToString::to_string),
                v.video.file_name.as_ref(),
            ),
        ),
        TgMedia::VideoNote(v) => media(MediaKind::Video, media_ref(&v.video_note.file, None, None)),
        TgMedia::Document(d) => media(
            MediaKind::Document,
            media_ref(
                &d.document.file,
                d.document.mime_type.as_ref().map(ToString::to_string),
                d.document.file_name.as_ref(),
            ),
        ),
        // Telegram sends a GIF as an animation that is also a document; Sapa keeps it a document.
        TgMedia::Animation(a) => media(
            MediaKind::Document,
            media_ref(
                &a.animation.file,
                a.animation.mime_type.as_ref().map(ToString::to_string),
                a.animation.file_name.as_ref(),
            ),
        ),
        TgMedia::Sticker(s) => media(MediaKind::Sticker, media_ref(&s.sticker.file, None, None)),
        TgMedia::Contact(c) => {
            let c = &c.contact;
            if c.user_id.is_some() && c.user_id == m.from.as_ref().map(|u| u.id) {
                *shared_phone = Some(c.phone_number.clone());
            }
            MessageContent::Contacts {
                cards: vec![ContactCard {
                    name: full_name(&c.first_name, c.last_name.as_deref()),
                    phones: vec![c.phone_number.clone()],
                }],
            }
        }
        TgMedia::Venue(v) => MessageContent::Location {
            latitude: v.venue.location.latitude,
            longitude: v.venue.location.longitude,
            name: Some(v.venue.title.clone()),
            address: Some(v.venue.address.clone()),
        },
        TgMedia::Location(l) => MessageContent::Location {
            latitude: l.location.latitude,
            longitude: l.location.longitude,
            name: None,
            address: None,
        },
        _ => MessageContent::Unknown {
            kind: "unsupported".to_owned(),
        },
    }
}

fn customer_message(m: &Message, bot: &BotIdentity) -> CustomerMessage {
    let chat_id = m.chat.id.0;
    let group = is_group(&m.chat);
    let sender = m.from.as_ref();
    let language = sender.and_then(|u| u.language_code.clone());
    let sender_name = sender.and_then(display_name);
    let replied = m.reply_to_message();
    let replied_to_bot = replied
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| is_bot(u, bot));
    let reply_to = replied.filter(|_| replied_to_bot).map(key_of);
    let mut addressed = !group || replied_to_bot;
    let mut command = false;
    let mut shared_phone = None;
    let content = if let Some(text) = m.text() {
        let read = read_text(text, m.entities().unwrap_or_default(), bot);
        addressed |= read.mentioned;
        if read.command {
            // A plain `/cmd` in a group is for every bot; `/cmd@other_bot` is not for us.
            addressed = match &read.command_target {
                Some(target) => !group || target.eq_ignore_ascii_case(&bot.username),
                None => true,
            };
        }
        command = read.command;
        MessageContent::Text { body: read.text }
    } else {
        let caption = m.caption().map(|c| {
            let read = read_text(c, m.caption_entities().unwrap_or_default(), bot);
            addressed |= read.mentioned;
            read.text
        });
        let caption = caption.filter(|c| !c.is_empty());
        media_content(m, caption, &mut shared_phone)
    };
    CustomerMessage {
        chat_id: chat_id.to_string(),
        group,
        addressed,
        command,
        language,
        shared_phone,
        message: InboundMessage {
            external_id: key_of(m),
            from: chat_id.to_string(),
            sender_name,
            timestamp_s: m.date.timestamp(),
            reply_to,
            content,
        },
    }
}

/// What a text says once the bot's own mention is removed.
struct ReadText {
    text: String,
    mentioned: bool,
    command: bool,
    /// `bot` of `/cmd@bot`.
    command_target: Option<String>,
}

/// Removes mentions of the bot and normalizes a leading command (`/start@bot x` → `/start x`).
/// Entity offsets are UTF-16 code units.
fn read_text(text: &str, entities: &[MessageEntity], bot: &BotIdentity) -> ReadText {
    let mut mentioned = false;
    let mut command = false;
    let mut command_target = None;
    // Byte ranges to remove, and a replacement for the command entity.
    let mut cuts: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for entity in entities {
        let Some(range) = utf16_range(text, entity.offset, entity.length) else {
            continue;
        };
        let slice = &text[range.clone()];
        match &entity.kind {
            MessageEntityKind::Mention => {
                let name = slice.trim_start_matches('@');
                if !bot.username.is_empty() && name.eq_ignore_ascii_case(&bot.username) {
                    mentioned = true;
                    cuts.push((range, String::new()));
                }
            }
            MessageEntityKind::TextMention { user } if is_bot(user, bot) => {
                mentioned = true;
            }
            MessageEntityKind::BotCommand if entity.offset == 0 => {
                command = true;
                if let Some((cmd, target)) = slice.split_once('@') {
                    command_target = Some(target.to_owned());
                    cuts.push((range, cmd.to_owned()));
                }
            }
            _ => {}
        }
    }
    cuts.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_owned();
    for (range, replacement) in cuts {
        out.replace_range(range, &replacement);
    }
    let text = out.split_whitespace().collect::<Vec<_>>().join(" ");
    ReadText {
        text: if text.is_empty() { String::new() } else { text },
        mentioned,
        command,
        command_target,
    }
}

/// The byte range of `text` covering UTF-16 code units `offset..offset + length`; `None` when
/// the offsets do not fall on character boundaries or past the end. Hand-written rather than
/// teloxide's `MessageEntityRef::parse`, which panics on such offsets: entities arrive from
/// the network.
fn utf16_range(text: &str, offset: usize, length: usize) -> Option<std::ops::Range<usize>> {
    let mut units = 0usize;
    let mut start = None;
    let end_units = offset.checked_add(length)?;
    for (byte, ch) in text.char_indices() {
        if units == offset {
            start = Some(byte);
        }
        if units == end_units {
            return start.map(|s| s..byte);
        }
        units += ch.len_utf16();
    }
    if units == offset {
        start = Some(text.len());
    }
    (units == end_units).then_some(start?..text.len())
}

fn callback(query: CallbackQuery) -> Event {
    let chat = query.message.as_ref().map(|m| m.chat());
    let message = query.regular_message();
    let data = query.data.clone().unwrap_or_default();
    let chat_id = chat.map_or_else(|| ChatId::from(query.from.id).0, |c| c.id.0);
    let group = chat.is_some_and(is_group);
    let title = match format::choice_inline(&data) {
        Some(title) => title.to_owned(),
        None => message
            .and_then(Message::reply_markup)
            .and_then(|markup| {
                markup
                    .inline_keyboard
                    .iter()
                    .flatten()
                    .find(|b| {
                        matches!(&b.kind, InlineKeyboardButtonKind::CallbackData(d) if *d == data)
                    })
                    .map(|b| b.text.clone())
            })
            .unwrap_or_default(),
    };
    let timestamp_s = message.map_or(0, |m| m.date.timestamp());
    let reply_to = query
        .message
        .as_ref()
        .map(|m| message_key(chat_id, i64::from(m.id().0)));
    Event::Callback {
        message: CustomerMessage {
            chat_id: chat_id.to_string(),
            group,
            addressed: true,
            command: false,
            language: query.from.language_code.clone(),
            shared_phone: None,
            message: InboundMessage {
                external_id: format!("cb:{}", query.id.0),
                from: chat_id.to_string(),
                sender_name: display_name(&query.from),
                timestamp_s,
                reply_to,
                content: MessageContent::Choice {
                    id: data,
                    title,
                    description: None,
                },
            },
        },
        query_id: query.id.0,
    }
}
