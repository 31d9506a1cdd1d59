//! WhatsApp Cloud API wire structs. They never leave the `whatsapp` module.
//!
//! Inbound structs are lenient: every field a future payload might omit is optional or
//! defaulted, and messages are decoded one by one from raw JSON so a single message we cannot
//! read never drops the rest of the delivery.

use serde::Deserialize;

/// The POST body.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub(crate) object: String,
    #[serde(default)]
    pub(crate) entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Entry {
    #[serde(default)]
    pub(crate) changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Change {
    #[serde(default)]
    pub(crate) field: String,
    #[serde(default)]
    pub(crate) value: serde_json::Value,
}

/// `changes[].value` of a `messages` change.
#[derive(Debug, Deserialize)]
pub(crate) struct Value {
    pub(crate) metadata: Metadata,
    #[serde(default)]
    pub(crate) contacts: Vec<Contact>,
    #[serde(default)]
    pub(crate) messages: Vec<serde_json::Value>,
    #[serde(default)]
    pub(crate) statuses: Vec<serde_json::Value>,
    #[serde(default)]
    pub(crate) errors: Vec<WireError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    pub(crate) phone_number_id: String,
}

/// One entry of `value.contacts`. A customer who adopted a username may have no `wa_id`
/// (phone number), only a business-scoped `user_id` (`US.13491208655302741918`).
#[derive(Debug, Deserialize)]
pub(crate) struct Contact {
    #[serde(default)]
    pub(crate) wa_id: Option<String>,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) parent_user_id: Option<String>,
    #[serde(default)]
    pub(crate) profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Profile {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) username: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireError {
    pub(crate) code: i64,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
}

/// One inbound message; the payload field matching `type` is set.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    /// The customer's phone number; absent for a username-only customer.
    #[serde(default)]
    pub(crate) from: Option<String>,
    /// The customer's business-scoped user id.
    #[serde(default)]
    pub(crate) from_user_id: Option<String>,
    #[serde(default)]
    pub(crate) from_parent_user_id: Option<String>,
    pub(crate) id: String,
    pub(crate) timestamp: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) context: Option<Context>,
    #[serde(default)]
    pub(crate) text: Option<Text>,
    #[serde(default)]
    pub(crate) interactive: Option<Interactive>,
    #[serde(default)]
    pub(crate) button: Option<Button>,
    #[serde(default)]
    pub(crate) image: Option<Media>,
    #[serde(default)]
    pub(crate) video: Option<Media>,
    #[serde(default)]
    pub(crate) audio: Option<Media>,
    #[serde(default)]
    pub(crate) document: Option<Media>,
    #[serde(default)]
    pub(crate) sticker: Option<Media>,
    #[serde(default)]
    pub(crate) location: Option<Location>,
    #[serde(default)]
    pub(crate) contacts: Option<Vec<SharedContact>>,
    #[serde(default)]
    pub(crate) reaction: Option<Reaction>,
    #[serde(default)]
    pub(crate) order: Option<Order>,
    #[serde(default)]
    pub(crate) edit: Option<Edit>,
    #[serde(default)]
    pub(crate) revoke: Option<Revoke>,
    #[serde(default)]
    pub(crate) system: Option<System>,
    #[serde(default)]
    pub(crate) errors: Vec<WireError>,
}

/// `type: "order"`: a cart sent from the catalog.
#[derive(Debug, Deserialize)]
pub(crate) struct Order {
    #[serde(default)]
    pub(crate) catalog_id: Option<String>,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) product_items: Vec<ProductItem>,
}

/// One cart line. Quantities and prices arrive as numbers or as decimal strings.
#[derive(Debug, Deserialize)]
pub(crate) struct ProductItem {
    pub(crate) product_retailer_id: String,
    #[serde(default)]
    pub(crate) quantity: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) item_price: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) currency: Option<String>,
}

/// `type: "edit"`: the customer edited `original_message_id`; `message` is the new content
/// (text, or media with a caption).
#[derive(Debug, Deserialize)]
pub(crate) struct Edit {
    pub(crate) original_message_id: String,
    #[serde(default)]
    pub(crate) message: Option<EditedMessage>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EditedMessage {
    #[serde(default)]
    pub(crate) text: Option<Text>,
    #[serde(default)]
    pub(crate) image: Option<Media>,
    #[serde(default)]
    pub(crate) video: Option<Media>,
    #[serde(default)]
    pub(crate) document: Option<Media>,
}

/// `type: "revoke"`: the customer deleted `original_message_id` for everyone.
#[derive(Debug, Deserialize)]
pub(crate) struct Revoke {
    pub(crate) original_message_id: String,
}

/// `type: "system"`: the customer's number or business-scoped user id changed. Older
/// payloads name the new number `new_wa_id` (`customer_changed_number`), newer ones `wa_id`
/// (`user_changed_number`); `user_changed_user_id` reports only the user id.
#[derive(Debug, Deserialize)]
pub(crate) struct System {
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) body: Option<String>,
    #[serde(default)]
    pub(crate) wa_id: Option<String>,
    #[serde(default)]
    pub(crate) new_wa_id: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) customer: Option<String>,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub(crate) parent_user_id: Option<String>,
    #[serde(default)]
    pub(crate) previous_user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Context {
    #[serde(default)]
    pub(crate) id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Text {
    pub(crate) body: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Interactive {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) button_reply: Option<Reply>,
    #[serde(default)]
    pub(crate) list_reply: Option<Reply>,
    #[serde(default)]
    pub(crate) nfm_reply: Option<NfmReply>,
}

/// A WhatsApp Flows response: `response_json` is the flow's answers as a JSON string.
#[derive(Debug, Deserialize)]
pub(crate) struct NfmReply {
    #[serde(default)]
    pub(crate) response_json: Option<String>,
    #[serde(default)]
    pub(crate) body: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reply {
    pub(crate) id: String,
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Button {
    #[serde(default)]
    pub(crate) payload: Option<String>,
    pub(crate) text: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Media {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) mime_type: Option<String>,
    #[serde(default)]
    pub(crate) sha256: Option<String>,
    #[serde(default)]
    pub(crate) caption: Option<String>,
    #[serde(default)]
    pub(crate) filename: Option<String>,
    #[serde(default)]
    pub(crate) voice: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Location {
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SharedContact {
    #[serde(default)]
    pub(crate) name: Option<ContactName>,
    #[serde(default)]
    pub(crate) phones: Vec<ContactPhone>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ContactName {
    #[serde(default)]
    pub(crate) formatted_name: Option<String>,
    #[serde(default)]
    pub(crate) first_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ContactPhone {
    #[serde(default)]
    pub(crate) phone: Option<String>,
    #[serde(default)]
    pub(crate) wa_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reaction {
    pub(crate) message_id: String,
    #[serde(default)]
    pub(crate) emoji: Option<String>,
}

/// One entry of `value.statuses`.
#[derive(Debug, Deserialize)]
pub(crate) struct Status {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) timestamp: String,
    #[serde(default)]
    pub(crate) recipient_id: Option<String>,
    /// The recipient's business-scoped user id (always sent since the username rollout).
    #[serde(default)]
    pub(crate) recipient_user_id: Option<String>,
    #[serde(default)]
    pub(crate) errors: Vec<WireError>,
}

/// Graph API success body of `POST /<phone_number_id>/messages`.
#[derive(Debug, Deserialize)]
pub(crate) struct SendResponse {
    #[serde(default)]
    pub(crate) messages: Vec<SentId>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SentId {
    pub(crate) id: String,
}

/// Graph API error body.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: GraphError,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GraphError {
    #[serde(default)]
    pub(crate) code: i64,
    #[serde(default)]
    pub(crate) message: String,
}

/// Graph API media metadata (`GET /<media_id>`).
#[derive(Debug, Deserialize)]
pub(crate) struct MediaInfo {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) mime_type: Option<String>,
    #[serde(default)]
    pub(crate) sha256: Option<String>,
    /// A decimal string (documented) or a number.
    #[serde(default)]
    pub(crate) file_size: Option<serde_json::Value>,
}

impl MediaInfo {
    /// The announced size in bytes, when readable.
    pub(crate) fn size(&self) -> Option<u64> {
        match self.file_size.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}
