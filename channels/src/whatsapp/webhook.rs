//! Webhook side: signature check, verification handshake, and decoding deliveries into
//! [`InboundEvent`]s. Pure: no I/O, no tenant, no storage.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::types;
use crate::model::{
    ContactCard, DeliveryState, InboundEvent, InboundMessage, MediaKind, MediaRef, MessageContent,
    ProviderError, StatusUpdate,
};

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
    /// Messages and statuses, in payload order.
    pub events: Vec<InboundEvent>,
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
                let sender_name = value
                    .contacts
                    .iter()
                    .find(|c| c.wa_id == message.from)
                    .or(value.contacts.first().filter(|_| value.contacts.len() == 1))
                    .and_then(|c| c.profile.as_ref())
                    .and_then(|p| p.name.clone());
                match decode_message(message, sender_name) {
                    Some(m) => out.events.push(InboundEvent::Message(m)),
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
            Some(status) => out.events.push(InboundEvent::Status(status)),
            None => out.undecodable += 1,
        }
    }
    out
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

fn decode_message(m: types::Message, sender_name: Option<String>) -> Option<InboundMessage> {
    let timestamp_s = m.timestamp.parse::<i64>().ok()?;
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
            let reply = match interactive.kind.as_str() {
                "button_reply" => interactive.button_reply?,
                "list_reply" => interactive.list_reply?,
                other => {
                    return Some(unknown(&m.id, &m.from, timestamp_s, sender_name, other));
                }
            };
            MessageContent::Choice {
                id: reply.id,
                title: reply.title,
                description: reply.description,
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
        "unsupported" => MessageContent::Unsupported {
            code: m.errors.first().map(|e| e.code),
        },
        other => {
            return Some(unknown(&m.id, &m.from, timestamp_s, sender_name, other));
        }
    };
    Some(InboundMessage {
        external_id: m.id,
        from: m.from,
        sender_name,
        timestamp_s,
        reply_to: m.context.and_then(|c| c.id),
        content,
    })
}

fn unknown(
    id: &str,
    from: &str,
    timestamp_s: i64,
    sender_name: Option<String>,
    kind: &str,
) -> InboundMessage {
    InboundMessage {
        external_id: id.to_owned(),
        from: from.to_owned(),
        sender_name,
        timestamp_s,
        reply_to: None,
        content: MessageContent::Unknown {
            kind: kind.to_owned(),
        },
    }
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
        recipient: s.recipient_id,
        state,
        timestamp_s: s.timestamp.parse().ok()?,
        error: s.errors.first().map(provider_error),
    })
}
