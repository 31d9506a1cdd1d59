//! Webhook and `getUpdates` side: the secret-token check and decoding of one `Update` into a
//! normalized [`Update`]. Pure: no I/O, no tenant, no storage.

use subtle::ConstantTimeEq;

use super::format;
use super::types;
use crate::model::{ContactCard, InboundMessage, MediaKind, MediaRef, MessageContent};

/// The header carrying the `secret_token` registered with `setWebhook`.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The update kinds Sapa asks for (`allowed_updates`).
pub const ALLOWED_UPDATES: &[&str] = &[
    "message",
    "edited_message",
    "callback_query",
    "my_chat_member",
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

/// Decodes one update already parsed as JSON (`getUpdates` results).
///
/// # Errors
/// [`DecodeError::NotAnUpdate`] when `value` has no numeric `update_id`.
pub fn decode_value(value: serde_json::Value, bot: &BotIdentity) -> Result<Update, DecodeError> {
    let serde_json::Value::Object(mut map) = value else {
        return Err(DecodeError::NotAnUpdate("not a JSON object".to_owned()));
    };
    let update_id = map
        .remove("update_id")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| DecodeError::NotAnUpdate("missing update_id".to_owned()))?;
    let Some((kind, payload)) = map.into_iter().next() else {
        return Ok(Update {
            update_id,
            event: Event::Ignored {
                kind: "empty".to_owned(),
            },
        });
    };
    let event = decode_event(&kind, payload, bot).unwrap_or_else(|| {
        tracing::debug!(kind = %kind, "undecodable telegram update");
        Event::Ignored {
            kind: format!("{kind} (undecodable)"),
        }
    });
    Ok(Update { update_id, event })
}

fn decode_event(kind: &str, payload: serde_json::Value, bot: &BotIdentity) -> Option<Event> {
    let event = match kind {
        "message" => {
            let message: types::Message = serde_json::from_value(payload).ok()?;
            if let Some(to) = message.migrate_to_chat_id {
                return Some(Event::Migrated {
                    from_chat_id: message.chat.id.to_string(),
                    to_chat_id: to.to_string(),
                });
            }
            if message.from.as_ref().is_none_or(|u| u.is_bot) {
                return Some(Event::Ignored {
                    kind: "message from a bot or channel".to_owned(),
                });
            }
            Event::Message(customer_message(message, bot))
        }
        "edited_message" => {
            let message: types::Message = serde_json::from_value(payload).ok()?;
            let text = message.text.or(message.caption)?;
            Event::Edited {
                external_id: message_key(message.chat.id, message.message_id),
                chat_id: message.chat.id.to_string(),
                text,
            }
        }
        "callback_query" => {
            let query: types::CallbackQuery = serde_json::from_value(payload).ok()?;
            callback(query)
        }
        "my_chat_member" => {
            let update: types::ChatMemberUpdated = serde_json::from_value(payload).ok()?;
            let reachable = !matches!(update.new_chat_member.status.as_str(), "kicked" | "left");
            Event::MemberStatus {
                chat_id: update.chat.id.to_string(),
                reachable,
            }
        }
        other => Event::Ignored {
            kind: other.to_owned(),
        },
    };
    Some(event)
}

/// The stable id of a message: `<chat id>:<message id>` (message ids are per chat).
pub fn message_key(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

fn display_name(user: &types::User) -> Option<String> {
    let name = match &user.last_name {
        Some(last) if !last.is_empty() => format!("{} {last}", user.first_name),
        _ => user.first_name.clone(),
    };
    let name = name.trim().to_owned();
    if name.is_empty() {
        user.username.clone()
    } else {
        Some(name)
    }
}

fn is_group(chat: &types::Chat) -> bool {
    matches!(chat.kind.as_str(), "group" | "supergroup")
}

fn customer_message(m: types::Message, bot: &BotIdentity) -> CustomerMessage {
    let chat_id = m.chat.id;
    let group = is_group(&m.chat);
    let sender = m.from.as_ref();
    let language = sender.and_then(|u| u.language_code.clone());
    let sender_name = sender.and_then(display_name);
    let replied_to_bot = m
        .reply_to_message
        .as_ref()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| u.id == bot.id);
    let reply_to = m
        .reply_to_message
        .as_ref()
        .filter(|_| replied_to_bot)
        .map(|r| message_key(chat_id, r.message_id));
    let mut addressed = !group || replied_to_bot;
    let mut command = false;
    let mut shared_phone = None;
    let content = if let Some(text) = &m.text {
        let read = read_text(text, &m.entities, bot);
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
        let caption = m.caption.as_ref().map(|c| {
            let read = read_text(c, &m.caption_entities, bot);
            addressed |= read.mentioned;
            read.text
        });
        let caption = caption.filter(|c| !c.is_empty());
        let media =
            |kind: MediaKind, file: &types::File, caption: Option<String>| MessageContent::Media {
                kind,
                media: MediaRef {
                    id: file.file_id.clone(),
                    mime_type: file.mime_type.clone(),
                    sha256: None,
                    filename: file.file_name.clone(),
                },
                caption,
            };
        if let Some(photo) = m
            .photo
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
        {
            MessageContent::Media {
                kind: MediaKind::Image,
                media: MediaRef {
                    id: photo.file_id.clone(),
                    mime_type: None,
                    sha256: None,
                    filename: None,
                },
                caption,
            }
        } else if let Some(f) = &m.voice {
            media(MediaKind::Voice, f, caption)
        } else if let Some(f) = &m.audio {
            media(MediaKind::Audio, f, caption)
        } else if let Some(f) = m.video.as_ref().or(m.video_note.as_ref()) {
            media(MediaKind::Video, f, caption)
        } else if let Some(f) = &m.document {
            media(MediaKind::Document, f, caption)
        } else if let Some(f) = &m.sticker {
            media(MediaKind::Sticker, f, caption)
        } else if let Some(c) = &m.contact {
            if c.user_id.is_some() && c.user_id == sender.map(|u| u.id) {
                shared_phone = Some(c.phone_number.clone());
            }
            let name = match &c.last_name {
                Some(last) if !last.is_empty() => format!("{} {last}", c.first_name),
                _ => c.first_name.clone(),
            };
            MessageContent::Contacts {
                cards: vec![ContactCard {
                    name,
                    phones: vec![c.phone_number.clone()],
                }],
            }
        } else if let Some(v) = &m.venue {
            MessageContent::Location {
                latitude: v.location.latitude,
                longitude: v.location.longitude,
                name: v.title.clone(),
                address: v.address.clone(),
            }
        } else if let Some(l) = &m.location {
            MessageContent::Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: None,
                address: None,
            }
        } else {
            MessageContent::Unknown {
                kind: "unsupported".to_owned(),
            }
        }
    };
    CustomerMessage {
        chat_id: chat_id.to_string(),
        group,
        addressed,
        command,
        language,
        shared_phone,
        message: InboundMessage {
            external_id: message_key(chat_id, m.message_id),
            from: chat_id.to_string(),
            sender_name,
            timestamp_s: m.date,
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
fn read_text(text: &str, entities: &[types::Entity], bot: &BotIdentity) -> ReadText {
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
        match entity.kind.as_str() {
            "mention" => {
                let name = slice.trim_start_matches('@');
                if !bot.username.is_empty() && name.eq_ignore_ascii_case(&bot.username) {
                    mentioned = true;
                    cuts.push((range, String::new()));
                }
            }
            "text_mention" if entity.user.as_ref().is_some_and(|u| u.id == bot.id) => {
                mentioned = true;
            }
            "bot_command" if entity.offset == 0 => {
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

/// The byte range of `text` covering UTF-16 code units `offset..offset + length`.
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

fn callback(query: types::CallbackQuery) -> Event {
    let message = query
        .message
        .and_then(|v| serde_json::from_value::<types::Message>(v).ok());
    let data = query.data.unwrap_or_default();
    let chat_id = message.as_ref().map_or(query.from.id, |m| m.chat.id);
    let group = message.as_ref().is_some_and(|m| is_group(&m.chat));
    let title = match format::choice_inline(&data) {
        Some(title) => title.to_owned(),
        None => message
            .as_ref()
            .and_then(|m| m.reply_markup.as_ref())
            .and_then(|markup| {
                markup
                    .inline_keyboard
                    .iter()
                    .flatten()
                    .find(|b| b.callback_data.as_deref() == Some(data.as_str()))
                    .map(|b| b.text.clone())
            })
            .unwrap_or_default(),
    };
    let timestamp_s = message.as_ref().map_or(0, |m| m.date);
    Event::Callback {
        message: CustomerMessage {
            chat_id: chat_id.to_string(),
            group,
            addressed: true,
            command: false,
            language: query.from.language_code.clone(),
            shared_phone: None,
            message: InboundMessage {
                external_id: format!("cb:{}", query.id),
                from: chat_id.to_string(),
                sender_name: display_name(&query.from),
                timestamp_s,
                reply_to: message.as_ref().map(|m| message_key(chat_id, m.message_id)),
                content: MessageContent::Choice {
                    id: data,
                    title,
                    description: None,
                },
            },
        },
        query_id: query.id,
    }
}
