//! [`Local`]: the in-process [`Coord`] of embedded mode.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use channels::webchat::{EventBus, Hub, SharedEvent, WebchatEvent};
use channels::{PacingPolicy, Throttled};
use tokio::sync::broadcast;

use super::limits::Limiters;
use super::{ConsoleEvent, Coord, Pacer, RateLimit};
use crate::config::WebchatConfig;

/// Leases, limiters, pacer and pub/sub of one process.
#[derive(Debug)]
pub struct Local {
    leases: Mutex<HashSet<String>>,
    limiters: Limiters,
    pacer: Mutex<Pacer>,
    hub: Hub,
    /// Console event channels by tenant; created by the first subscriber, dropped when a
    /// publish finds no subscriber left.
    console: Mutex<HashMap<String, broadcast::Sender<ConsoleEvent>>>,
}

/// How many console events a slow stream may lag behind before it is told to resync.
const CONSOLE_BUFFER: usize = 256;

impl Local {
    /// In-process coordination with the web chat limits of `config`.
    pub fn new(config: &WebchatConfig) -> Self {
        Self {
            leases: Mutex::new(HashSet::new()),
            limiters: Limiters::new(config),
            pacer: Mutex::new(Pacer::default()),
            hub: Hub::default(),
            console: Mutex::new(HashMap::new()),
        }
    }

    /// Adds the per-conversation limit of the other channels (`conversation.messages_per_minute`,
    /// [`RateLimit::Conversation`]; 0: none).
    #[must_use]
    pub fn with_conversation_rate(mut self, per_minute: u32) -> Self {
        self.limiters.set_conversation_rate(per_minute);
        self
    }
}

impl EventBus for Local {
    fn subscribe(&self, conversation_id: &str) -> broadcast::Receiver<SharedEvent> {
        self.hub.subscribe(conversation_id)
    }

    fn publish(&self, conversation_id: &str, event: WebchatEvent) {
        self.hub.publish(conversation_id, event);
    }

    fn leave(&self, conversation_id: &str) {
        self.hub.leave(conversation_id);
    }
}

#[async_trait::async_trait]
impl Coord for Local {
    async fn acquire_lease(&self, conversation_id: &str) -> bool {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conversation_id.to_owned())
    }

    async fn release_lease(&self, conversation_id: &str) {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(conversation_id);
    }

    async fn check_rate(&self, limit: RateLimit, key: &str) -> Result<(), Duration> {
        self.limiters.check(limit, key)
    }

    fn live_topics(&self) -> usize {
        self.hub.topic_count()
    }

    async fn reserve_send(
        &self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
    ) -> Result<(), Duration> {
        self.pacer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(policy, account, recipient)
    }

    async fn send_throttled(
        &self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
        what: Throttled,
    ) {
        self.pacer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .throttled(policy, account, recipient, what);
    }

    fn console_subscribe(&self, tenant_id: &str) -> broadcast::Receiver<ConsoleEvent> {
        self.console
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant_id.to_owned())
            .or_insert_with(|| broadcast::channel(CONSOLE_BUFFER).0)
            .subscribe()
    }

    fn console_publish(&self, tenant_id: &str, event: ConsoleEvent) {
        let mut channels = self.console.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(tenant_id)
            && sender.send(event).is_err()
        {
            // Nobody listens any more: forget the tenant's channel.
            channels.remove(tenant_id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn unlimited() -> WebchatConfig {
        WebchatConfig {
            max_message_chars: 10,
            messages_per_minute_per_session: 0,
            requests_per_minute_per_ip: 0,
            max_sockets_per_session: 5,
            max_sockets: 100,
            session_idle_timeout: Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_until_released() {
        let coord = Local::new(&unlimited());
        assert!(coord.acquire_lease("c1").await);
        assert!(!coord.acquire_lease("c1").await);
        assert!(coord.acquire_lease("c2").await);
        coord.release_lease("c1").await;
        assert!(coord.acquire_lease("c1").await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_throttle_reaches_the_shared_pacer() {
        let coord: std::sync::Arc<dyn Coord> = std::sync::Arc::new(Local::new(&unlimited()));
        let wa = channels::whatsapp::PACING;
        assert!(coord.reserve_send(wa, "n1", "628111").await.is_ok());
        coord
            .send_throttled(wa, "n1", "628111", Throttled::Recipient)
            .await;
        assert_eq!(
            coord.reserve_send(wa, "n1", "628111").await,
            Err(std::time::Duration::from_secs(6))
        );
    }

    #[tokio::test]
    async fn console_events_reach_only_the_tenants_subscribers() {
        let coord: std::sync::Arc<dyn Coord> = std::sync::Arc::new(Local::new(&unlimited()));
        let mut a = coord.console_subscribe("a");
        let mut b = coord.console_subscribe("b");
        let event = ConsoleEvent::Presence {
            staff_id: "s1".into(),
            status: "online".into(),
        };
        coord.console_publish("a", event.clone());
        assert_eq!(a.recv().await.unwrap(), event);
        assert!(matches!(
            b.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
        drop(b);
        // The last subscriber gone, publishing drops the tenant's channel.
        coord.console_publish("b", event.clone());
        let mut again = coord.console_subscribe("b");
        coord.console_publish("b", event.clone());
        assert_eq!(again.recv().await.unwrap(), event);
    }

    #[tokio::test]
    async fn events_reach_subscribers_through_the_bus() {
        let coord: std::sync::Arc<dyn Coord> = std::sync::Arc::new(Local::new(&unlimited()));
        let mut rx = coord.subscribe("c1");
        coord.publish("c1", WebchatEvent::Typing);
        assert!(matches!(*rx.recv().await.unwrap(), WebchatEvent::Typing));
    }
}
