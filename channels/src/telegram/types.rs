//! Telegram Bot API wire structs. They never leave the `telegram` module.
//!
//! Lenient: every field a payload may omit is optional or defaulted. An update is first read
//! as a JSON object so an update kind we do not know is recognised (and ignored) by its key.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct User {
    pub(crate) id: i64,
    #[serde(default)]
    pub(crate) is_bot: bool,
    #[serde(default)]
    pub(crate) first_name: String,
    #[serde(default)]
    pub(crate) last_name: Option<String>,
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default)]
    pub(crate) language_code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Chat {
    pub(crate) id: i64,
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Entity {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) offset: usize,
    pub(crate) length: usize,
    #[serde(default)]
    pub(crate) user: Option<User>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PhotoSize {
    pub(crate) file_id: String,
    #[serde(default)]
    pub(crate) width: u32,
    #[serde(default)]
    pub(crate) height: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct File {
    pub(crate) file_id: String,
    #[serde(default)]
    pub(crate) mime_type: Option<String>,
    #[serde(default)]
    pub(crate) file_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Contact {
    pub(crate) phone_number: String,
    #[serde(default)]
    pub(crate) first_name: String,
    #[serde(default)]
    pub(crate) last_name: Option<String>,
    #[serde(default)]
    pub(crate) user_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Location {
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Venue {
    pub(crate) location: Location,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Button {
    #[serde(default)]
    pub(crate) text: String,
    #[serde(default)]
    pub(crate) callback_data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Markup {
    #[serde(default)]
    pub(crate) inline_keyboard: Vec<Vec<Button>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) message_id: i64,
    #[serde(default)]
    pub(crate) from: Option<User>,
    pub(crate) chat: Chat,
    #[serde(default)]
    pub(crate) date: i64,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) entities: Vec<Entity>,
    #[serde(default)]
    pub(crate) caption: Option<String>,
    #[serde(default)]
    pub(crate) caption_entities: Vec<Entity>,
    #[serde(default)]
    pub(crate) photo: Vec<PhotoSize>,
    #[serde(default)]
    pub(crate) voice: Option<File>,
    #[serde(default)]
    pub(crate) audio: Option<File>,
    #[serde(default)]
    pub(crate) video: Option<File>,
    #[serde(default)]
    pub(crate) video_note: Option<File>,
    #[serde(default)]
    pub(crate) document: Option<File>,
    #[serde(default)]
    pub(crate) sticker: Option<File>,
    #[serde(default)]
    pub(crate) contact: Option<Contact>,
    #[serde(default)]
    pub(crate) location: Option<Location>,
    #[serde(default)]
    pub(crate) venue: Option<Venue>,
    #[serde(default)]
    pub(crate) reply_to_message: Option<Box<Message>>,
    #[serde(default)]
    pub(crate) reply_markup: Option<Markup>,
    #[serde(default)]
    pub(crate) migrate_to_chat_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CallbackQuery {
    pub(crate) id: String,
    pub(crate) from: User,
    /// Absent, or an "inaccessible message" (`date` 0, no text) for old messages.
    #[serde(default)]
    pub(crate) message: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) data: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatMember {
    #[serde(default)]
    pub(crate) status: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChatMemberUpdated {
    pub(crate) chat: Chat,
    pub(crate) new_chat_member: ChatMember,
}

/// The Bot API response envelope.
#[derive(Debug, Deserialize)]
pub(crate) struct Response<T> {
    pub(crate) ok: bool,
    pub(crate) result: Option<T>,
    #[serde(default)]
    pub(crate) error_code: Option<i64>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseParameters {
    #[serde(default)]
    pub(crate) migrate_to_chat_id: Option<i64>,
    #[serde(default)]
    pub(crate) retry_after: Option<u64>,
}

/// `result` of sendMessage / sendPhoto / ….
#[derive(Debug, Deserialize)]
pub(crate) struct SentMessage {
    pub(crate) message_id: i64,
    #[serde(default)]
    pub(crate) chat: Option<Chat>,
}
