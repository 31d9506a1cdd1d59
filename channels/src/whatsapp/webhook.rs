//! Webhook side: signature check, verification handshake, and decoding deliveries into
//! [`Event`]s. Pure: no I/O, no tenant, no storage.
//!
//! Customers are identified by phone number (`wa_id`, `from`, `recipient_id`) and, since
//! WhatsApp usernames, by a business-scoped user id (`user_id`, `from_user_id`,
//! `recipient_user_id`); a customer who adopted a username may come with the user id only.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::api::REENGAGEMENT_CODE;
use super::types;
use crate::model::{
    ContactCard, DeliveryState, InboundMessage, MediaKind, MediaRef, MessageContent, OrderItem,
    ProviderError, StatusUpdate,
};
use crate::provider::{CustomerIds, Event, Inbound};

/// The header carrying the body's HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of the exact `body` bytes under
/// `app_secret`. Constant time in the digest comparison.
pub fn verify_signature(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_digest) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` for `body` under `app_secret` (what Meta sends; tests and benchmarks sign
/// with it).
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The verification handshake: returns the challenge to echo when `mode` is `subscribe` and
/// `token` equals `expected` (constant time).
pub fn verify_challenge<'a>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
    expected: &str,
) -> Option<&'a str> {
    if mode != Some("subscribe") || expected.is_empty() {
        return None;
    }
    let token = token?;
    let same: bool = token.as_bytes().ct_eq(expected.as_bytes()).into();
    if same { challenge } else { None }
}

/// Why a delivery could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the envelope shape.
    #[error("webhook body is not a WhatsApp Business Account envelope: {0}")]
    Envelope(String),
}

/// Everything one `changes[].value` of field `messages` reported, for one business number.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValueEvents {
    /// The business number the events belong to (routes to a tenant's account).
    pub phone_number_id: String,
    /// Messages, edits, identity changes and statuses, in payload order.
    pub events: Vec<Event>,
    /// Value-level errors Meta reported (`value.errors`).
    pub errors: Vec<ProviderError>,
    /// Messages or statuses that could not be decoded (skipped; the rest were kept).
    pub undecodable: usize,
}

/// A decoded delivery.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivery {
    /// One item per `messages` change.
    pub values: Vec<ValueEvents>,
    /// Changes of other fields (template status, account updates, …), ignored.
    pub ignored_changes: usize,
}

/// Decodes a webhook body. Fails only when the envelope itself is unreadable; a message or
/// status that cannot be read is counted in [`ValueEvents::undecodable`] and skipped.
///
/// # Errors
/// [`DecodeError::Envelope`] when the body is not a WhatsApp envelope.
pub fn decode(body: &[u8]) -> Result<Delivery, DecodeError> {
    let envelope: types::Envelope =
        serde_json::from_slice(body).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    if envelope.object != "whatsapp_business_account" {
        return Err(DecodeError::Envelope(format!(
            "unexpected object `{}`",
            envelope.object
        )));
    }
    let mut delivery = Delivery::default();
    for change in envelope.entry.into_iter().flat_map(|e| e.changes) {
        if change.field != "messages" {
            delivery.ignored_changes += 1;
            continue;
        }
        let value: types::Value = match serde_json::from_value(change.value) {
            Ok(value) => value,
            Err(err) => {
                tracing::debug!(error = %err, "undecodable whatsapp change value");
                delivery.values.push(ValueEvents {
                    undecodable: 1,
                    ..ValueEvents::default()
                });
                continue;
            }
        };
        delivery.values.push(decode_value(value));
    }
    Ok(delivery)
}

fn decode_value(value: types::Value) -> ValueEvents {
    let mut out = ValueEvents {
        phone_number_id: value.metadata.phone_number_id,
        errors: value.errors.iter().map(provider_error).collect(),
        ..ValueEvents::default()
    };
    for raw in value.messages {
        match serde_json::from_value::<types::Message>(raw) {
            Ok(message) => {
                let ids = customer_ids(&message, &value.contacts);
                let sender_name = contact_of(&value.contacts, &ids)
                    .and_then(|c| c.profile.as_ref())
                    .and_then(|p| p.name.clone());
                match decode_message(message, ids, sender_name) {
                    Some(events) => out.events.extend(events),
                    None => out.undecodable += 1,
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "undecodable whatsapp message");
                out.undecodable += 1;
            }
        }
    }
    for raw in value.statuses {
        match serde_json::from_value::<types::Status>(raw)
            .ok()
            .and_then(decode_status)
        {
            Some(status) => out.events.push(Event::Status {
                window_closed: status
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == REENGAGEMENT_CODE),
                update: status,
            }),
            None => out.undecodable += 1,
        }
    }
    out
}

/// A non-empty, trimmed identifier.
fn id(value: Option<&String>) -> Option<String> {
    value
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The `contacts[]` entry of the message's sender: the one with its phone number or user id,
/// else the only one.
fn contact_of<'a>(contacts: &'a [types::Contact], ids: &CustomerIds) -> Option<&'a types::Contact> {
    contacts
        .iter()
        .find(|c| {
            (ids.phone.is_some() && id(c.wa_id.as_ref()) == ids.phone)
                || (ids.user_id.is_some() && id(c.user_id.as_ref()) == ids.user_id)
        })
        .or(contacts.first().filter(|_| contacts.len() == 1))
}

/// The sender's identifiers from the message, completed from its `contacts[]` entry.
fn customer_ids(m: &types::Message, contacts: &[types::Contact]) -> CustomerIds {
    let mut ids = CustomerIds {
        phone: id(m.from.as_ref()),
        user_id: id(m.from_user_id.as_ref()),
        parent_user_id: id(m.from_parent_user_id.as_ref()),
        username: None,
    };
    if let Some(contact) = contact_of(contacts, &ids) {
        ids.phone = ids.phone.or_else(|| id(contact.wa_id.as_ref()));
        ids.user_id = ids.user_id.or_else(|| id(contact.user_id.as_ref()));
        ids.parent_user_id = ids
            .parent_user_id
            .or_else(|| id(contact.parent_user_id.as_ref()));
        ids.username = contact
            .profile
            .as_ref()
            .and_then(|p| id(p.username.as_ref()));
    }
    ids
}

fn provider_error(e: &types::WireError) -> ProviderError {
    ProviderError {
        code: e.code,
        title: e
            .title
            .clone()
            .or_else(|| e.message.clone())
            .unwrap_or_default(),
    }
}

/// A JSON number or decimal string as text (`"2"`, `2`, `12.50`), never rounded.
fn number_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// The events one message produces: usually one customer message; an edit or a revoke of an
/// earlier one; a number change (stored for agents, then the contact's addresses change).
/// `None` when it cannot be read.
fn decode_message(
    m: types::Message,
    ids: CustomerIds,
    sender_name: Option<String>,
) -> Option<Vec<Event>> {
    let timestamp_s = m.timestamp.parse::<i64>().ok()?;
    // The address we answer to: the phone number when shared, else the user id.
    let from = ids.phone.clone().or_else(|| ids.user_id.clone())?;
    let message = |content: MessageContent, reply_to: Option<String>| InboundMessage {
        external_id: m.id.clone(),
        from: from.clone(),
        sender_name: sender_name.clone(),
        timestamp_s,
        reply_to,
        content,
    };
    let inbound = |message: InboundMessage| {
        Event::Message(Inbound {
            ids: ids.clone(),
            ..Inbound::plain(message)
        })
    };
    let reply_to = m.context.as_ref().and_then(|c| c.id.clone());
    match m.kind.as_str() {
        "edit" => {
            let edit = m.edit?;
            let text = edit.message.and_then(|e| {
                e.text.map(|t| t.body).or_else(|| {
                    [e.image, e.video, e.document]
                        .into_iter()
                        .flatten()
                        .find_map(|m| m.caption)
                })
            });
            return Some(vec![match text {
                Some(text) => Event::Edited {
                    external_id: edit.original_message_id,
                    text,
                },
                None => Event::Ignored {
                    kind: "edit without text".to_owned(),
                },
            }]);
        }
        "revoke" => {
            return Some(vec![Event::Revoked {
                external_id: m.revoke?.original_message_id,
            }]);
        }
        "system" => {
            let system = m.system.as_ref()?;
            let kind = system.kind.as_deref().unwrap_or_default();
            let body = system.body.clone().unwrap_or_else(|| kind.to_owned());
            // Stored under the address the contact is known by now, then re-addressed.
            let mut events = vec![inbound(message(MessageContent::System { body }, None))];
            let new_phone = match kind {
                "user_changed_number" | "customer_changed_number" => {
                    id(system.wa_id.as_ref()).or_else(|| number_text(system.new_wa_id.as_ref()))
                }
                _ => None,
            };
            let new_user_id = id(system.user_id.as_ref());
            if matches!(
                kind,
                "user_changed_number" | "customer_changed_number" | "user_changed_user_id"
            ) && (new_phone.is_some() || new_user_id.is_some())
            {
                let known = ids
                    .phone
                    .clone()
                    .or_else(|| id(system.customer.as_ref()))
                    .or_else(|| id(system.previous_user_id.as_ref()))
                    .unwrap_or_else(|| from.clone());
                events.push(Event::ContactChanged {
                    from: known,
                    phone: new_phone,
                    user_id: new_user_id,
                    parent_user_id: id(system.parent_user_id.as_ref()),
                });
            }
            return Some(events);
        }
        _ => {}
    }
    let media = |kind: MediaKind, media: types::Media| MessageContent::Media {
        kind,
        caption: media.caption,
        media: MediaRef {
            id: media.id,
            mime_type: media.mime_type,
            sha256: media.sha256,
            filename: media.filename,
        },
    };
    let content = match m.kind.as_str() {
        "text" => MessageContent::Text { body: m.text?.body },
        "interactive" => {
            let interactive = m.interactive?;
            match interactive.kind.as_str() {
                "button_reply" | "list_reply" => {
                    let reply = if interactive.kind == "button_reply" {
                        interactive.button_reply?
                    } else {
                        interactive.list_reply?
                    };
                    MessageContent::Choice {
                        id: reply.id,
                        title: reply.title,
                        description: reply.description,
                    }
                }
                "nfm_reply" => {
                    let reply = interactive.nfm_reply?;
                    MessageContent::FlowReply {
                        name: reply.name,
                        body: reply.body,
                        response_json: reply.response_json.unwrap_or_default(),
                    }
                }
                other => MessageContent::Unknown {
                    kind: other.to_owned(),
                },
            }
        }
        "button" => {
            let button = m.button?;
            MessageContent::Choice {
                id: button.payload.unwrap_or_else(|| button.text.clone()),
                title: button.text,
                description: None,
            }
        }
        "image" => media(MediaKind::Image, m.image?),
        "video" => media(MediaKind::Video, m.video?),
        "audio" => {
            let audio = m.audio?;
            let kind = if audio.voice == Some(true) {
                MediaKind::Voice
            } else {
                MediaKind::Audio
            };
            media(kind, audio)
        }
        "voice" => media(MediaKind::Voice, m.audio?),
        "document" => media(MediaKind::Document, m.document?),
        "sticker" => media(MediaKind::Sticker, m.sticker?),
        "location" => {
            let l = m.location?;
            MessageContent::Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: l.name,
                address: l.address,
            }
        }
        "contacts" => MessageContent::Contacts {
            cards: m
                .contacts?
                .into_iter()
                .map(|c| ContactCard {
                    name: c
                        .name
                        .and_then(|n| n.formatted_name.or(n.first_name))
                        .unwrap_or_default(),
                    phones: c
                        .phones
                        .into_iter()
                        .filter_map(|p| p.phone.or(p.wa_id))
                        .collect(),
                })
                .collect(),
        },
        "reaction" => {
            let r = m.reaction?;
            MessageContent::Reaction {
                message_id: r.message_id,
                emoji: r.emoji.filter(|e| !e.is_empty()),
            }
        }
        "order" => {
            let order = m.order?;
            MessageContent::Order {
                catalog_id: order.catalog_id,
                note: order.text,
                items: order
                    .product_items
                    .into_iter()
                    .map(|item| OrderItem {
                        quantity: number_text(item.quantity.as_ref()).and_then(|q| q.parse().ok()),
                        unit_price: number_text(item.item_price.as_ref()),
                        currency: item.currency,
                        product_id: item.product_retailer_id,
                    })
                    .collect(),
            }
        }
        "request_welcome" => MessageContent::Welcome,
        "unsupported" => MessageContent::Unsupported {
            code: m.errors.first().map(|e| e.code),
        },
        other => MessageContent::Unknown {
            kind: other.to_owned(),
        },
    };
    // Unknown kinds carry no reply context we could trust.
    let reply_to = match content {
        MessageContent::Unknown { .. } => None,
        _ => reply_to,
    };
    Some(vec![inbound(message(content, reply_to))])
}

fn decode_status(s: types::Status) -> Option<StatusUpdate> {
    let state = match s.status.as_str() {
        "sent" => DeliveryState::Sent,
        "delivered" => DeliveryState::Delivered,
        "read" => DeliveryState::Read,
        "failed" => DeliveryState::Failed,
        _ => return None,
    };
    Some(StatusUpdate {
        provider_message_id: s.id,
        // Statuses of messages sent to a username-only customer carry only the user id.
        recipient: id(s.recipient_id.as_ref())
            .or_else(|| id(s.recipient_user_id.as_ref()))
            .unwrap_or_default(),
        state,
        timestamp_s: s.timestamp.parse().ok()?,
        error: s.errors.first().map(provider_error),
    })
}
