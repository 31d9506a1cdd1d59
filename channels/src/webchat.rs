//! Web chat: the browser is the provider, and [`Hub`] is its "send API".
//!
//! Each open WebSocket subscribes to its conversation; the dispatcher's [`WebchatChannel`]
//! publishes stored messages to the subscribers. A client that was disconnected catches up from
//! storage (`GET /v1/webchat/messages?after=`), so the hub may drop events nobody listens to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::channel::{Channel, ChannelError};
use crate::model::{Author, ChannelKind, Delivery, OutboundMessage};

/// How many events a slow subscriber may lag behind before it must resync from storage. It must
/// hold a streamed answer's burst of deltas arriving from another replica (pipelined by the
/// Redis bus), so it stays at 256. Each conversation with a listener allocates the slots up
/// front; events travel as [`SharedEvent`] so a slot is a pointer, not an event (10,000 idle
/// sockets: 651 MB with events in the slots, see the README's socket benchmark).
const SUBSCRIBER_BUFFER: usize = 256;

/// A [`WebchatEvent`] as subscribers receive it: shared, so the broadcast buffer's slots stay
/// pointer-sized and every subscriber reads the same allocation.
pub type SharedEvent = Arc<WebchatEvent>;

/// A message as the web chat API and WebSocket present it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebchatMessage {
    /// Monotonic message id; clients pass the last one they saw as `after`.
    pub id: i64,
    /// Who wrote it.
    pub author: Author,
    /// Plain text; the client renders it as text, never as HTML.
    pub text: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// For customer messages, the id the client chose when posting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
    /// For bot and agent messages, the `client_message_id`s of the customer messages answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_reply_to: Vec<String>,
    /// Quick replies offered with this message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Delivery state of bot and agent messages: `pending`, `sent`, `delivered`, `read` or
    /// `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Knowledge chunk ids a bot answer rests on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<String>,
}

/// One event pushed to a conversation's WebSocket subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WebchatEvent {
    /// A stored message (customer echo, bot answer or agent reply).
    Message {
        /// The message.
        message: WebchatMessage,
    },
    /// The assistant is preparing an answer.
    Typing,
    /// More text of the answer being generated (language model streaming). The stored answer
    /// follows as a `message` event and replaces the streamed text.
    Delta {
        /// Text to append to the answer in progress.
        text: String,
    },
    /// The answer being streamed was dropped (invalid output, a newer customer message, a
    /// failure): remove the streamed text. What the bot says instead arrives as a `message`.
    StreamDiscarded,
}

/// Publish/subscribe of [`WebchatEvent`]s per conversation: what the web chat channel needs
/// to reach the browsers. [`Hub`] is the in-process implementation; a distributed deployment
/// puts a shared bus behind the same trait (the gateway's `coord` seam), so a socket on one
/// replica sees what another replica sends.
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Subscribes to a conversation's events.
    fn subscribe(&self, conversation_id: &str) -> broadcast::Receiver<SharedEvent>;

    /// Publishes an event to the conversation's subscribers (best effort: a browser that
    /// misses it catches up from storage).
    fn publish(&self, conversation_id: &str, event: WebchatEvent);

    /// Called after a subscriber dropped its receiver: frees the conversation's topic when
    /// nobody listens any more.
    fn leave(&self, conversation_id: &str);
}

/// Per-conversation fan-out of [`WebchatEvent`]s to connected browsers.
#[derive(Debug, Default)]
pub struct Hub {
    topics: Mutex<HashMap<String, broadcast::Sender<SharedEvent>>>,
}

impl Hub {
    /// Subscribes to a conversation's events.
    pub fn subscribe(&self, conversation_id: &str) -> broadcast::Receiver<SharedEvent> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics
            .entry(conversation_id.to_owned())
            .or_insert_with(|| broadcast::channel(SUBSCRIBER_BUFFER).0)
            .subscribe()
    }

    /// Publishes an event; returns how many subscribers received it.
    pub fn publish(&self, conversation_id: &str, event: WebchatEvent) -> usize {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(sender) = topics.get(conversation_id) else {
            return 0;
        };
        match sender.send(Arc::new(event)) {
            Ok(n) => n,
            Err(_) => {
                // Nobody listens any more: forget the topic so idle conversations cost nothing.
                topics.remove(conversation_id);
                0
            }
        }
    }

    /// Frees the conversation's topic when it has no subscriber left (call after dropping a
    /// receiver), so a conversation nobody watches costs nothing.
    pub fn leave(&self, conversation_id: &str) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if topics
            .get(conversation_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            topics.remove(conversation_id);
        }
    }

    /// Number of conversations with a live topic (for metrics and tests).
    pub fn topic_count(&self) -> usize {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl EventBus for Hub {
    fn subscribe(&self, conversation_id: &str) -> broadcast::Receiver<SharedEvent> {
        Hub::subscribe(self, conversation_id)
    }

    fn publish(&self, conversation_id: &str, event: WebchatEvent) {
        Hub::publish(self, conversation_id, event);
    }

    fn leave(&self, conversation_id: &str) {
        Hub::leave(self, conversation_id);
    }
}

/// The web chat channel: delivering a message means pushing it to the conversation's sockets.
#[derive(Debug, Clone)]
pub struct WebchatChannel {
    bus: Arc<dyn EventBus>,
}

impl WebchatChannel {
    /// A channel publishing into `bus`.
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Self { bus }
    }
}

#[async_trait::async_trait]
impl Channel for WebchatChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webchat
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        let message = WebchatMessage {
            id: msg.message_id,
            author: msg.author,
            // The browser shows text only: media becomes a line with its URL.
            text: msg.display_text(),
            created_at: rfc3339_millis(msg.created_at_ms),
            client_message_id: None,
            in_reply_to: msg.in_reply_to.clone(),
            choices: msg.choices.clone(),
            status: Some("sent".to_owned()),
            citations: Vec::new(),
        };
        self.bus
            .publish(&msg.conversation_id, WebchatEvent::Message { message });
        // Offline browsers fetch the stored message on reconnect, so "no subscriber" is success.
        Ok(Delivery {
            provider_message_id: Some(msg.idempotency_key.clone()),
            ..Delivery::default()
        })
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn formats_unix_millis_as_rfc3339() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_417_200_123),
            "2026-11-23T07:00:00.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[tokio::test]
    async fn hub_delivers_to_subscribers_and_forgets_idle_topics() {
        let hub = Arc::new(Hub::default());
        let mut rx = hub.subscribe("c1");
        let channel = WebchatChannel::new(hub.clone());
        let msg = OutboundMessage {
            message_id: 7,
            conversation_id: "c1".into(),
            recipient: "s".into(),
            author: Author::Bot,
            text: "halo".into(),
            choices: vec![],
            in_reply_to: vec!["m1".into()],
            created_at_ms: 0,
            idempotency_key: "k".into(),
            customer_last_seen_ms: None,
            template: None,
            media: None,
        };
        channel.send(&msg).await.unwrap();
        match &*rx.recv().await.unwrap() {
            WebchatEvent::Message { message } => {
                assert_eq!(message.id, 7);
                assert_eq!(message.in_reply_to, vec!["m1".to_owned()]);
            }
            other => panic!("unexpected event {other:?}"),
        }
        let with_media = OutboundMessage {
            media: Some(crate::model::OutboundMedia {
                kind: crate::model::MediaKind::Image,
                source: crate::model::MediaSource::Url("https://example.com/a.jpg".into()),
                caption: None,
                filename: None,
            }),
            ..msg
        };
        channel.send(&with_media).await.unwrap();
        match &*rx.recv().await.unwrap() {
            WebchatEvent::Message { message } => {
                assert_eq!(message.text, "halo\n[image] https://example.com/a.jpg");
            }
            other => panic!("unexpected event {other:?}"),
        }
        drop(rx);
        assert_eq!(hub.publish("c1", WebchatEvent::Typing), 0);
        assert_eq!(hub.topic_count(), 0);
    }

    #[test]
    fn a_topic_is_freed_when_its_last_listener_leaves() {
        let hub = Hub::default();
        let first = hub.subscribe("c1");
        let second = hub.subscribe("c1");
        drop(first);
        hub.leave("c1");
        assert_eq!(hub.topic_count(), 1, "one listener is left");
        drop(second);
        hub.leave("c1");
        assert_eq!(hub.topic_count(), 0, "no listener, no topic");
    }
}
