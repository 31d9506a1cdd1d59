//! The agent console's live events: what changed in a tenant's queues, pushed to its open
//! consoles (`GET /v1/console/events`). Events carry ids and states only, never message text:
//! the console refetches what it shows through the tenant-scoped JSON API.

use serde::{Deserialize, Serialize};

use super::Coord;
use crate::store::Store;

/// One console event; the SSE `event:` name is [`ConsoleEvent::name`], the data its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConsoleEvent {
    /// A conversation changed state or assignee, or got a new customer, agent or note message
    /// while handed off.
    Conversation {
        /// Conversation id.
        id: String,
        /// `bot`, `waiting_human`, `human` or `closed` (as in the queue JSON).
        state: String,
        /// Staff id of the agent who owns it.
        assignee: Option<String>,
    },
    /// A staff member went online or away.
    Presence {
        /// Staff id.
        staff_id: String,
        /// `online` or `away`.
        status: String,
    },
}

impl ConsoleEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Conversation { .. } => "conversation",
            Self::Presence { .. } => "presence",
        }
    }
}

/// Publishes the current state of the tenant's conversation `id` to its consoles (read back from
/// storage, so the event reflects what a refetch returns). Best effort: a failed read is logged.
pub async fn announce(store: &Store, coord: &dyn Coord, tenant_id: &str, id: &str) {
    match store.console_conversation(tenant_id, id).await {
        Ok(Some(item)) => coord.console_publish(
            tenant_id,
            ConsoleEvent::Conversation {
                id: item.id,
                state: item.state,
                assignee: item.assignee,
            },
        ),
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(error = %err.chain(), conversation_id = %id, "reading a conversation for the console event failed");
        }
    }
}
