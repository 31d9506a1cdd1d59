//! Auto-assignment: every few seconds, chats waiting for an agent go to the tenant's online
//! agents in round-robin order, up to `tenants.<slug>.max_chats_per_agent` open chats each.
//! With no agent online (or all at their cap) a chat keeps waiting for a manual claim.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, now_ms};

/// Open chats per agent when the tenant does not say.
pub const DEFAULT_MAX_CHATS_PER_AGENT: u32 = 5;

/// Starts the loop on `tracker`; `caps` are the tenants' `max_chats_per_agent`.
pub fn spawn(
    store: Store,
    caps: HashMap<String, u32>,
    every: Duration,
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
            assign_all(&store, &caps).await;
        }
    });
}

/// One pass over every tenant with waiting chats.
pub async fn assign_all(store: &Store, caps: &HashMap<String, u32>) {
    let tenants = match store.tenants_waiting().await {
        Ok(tenants) => tenants,
        Err(err) => {
            tracing::warn!(error = %err.chain(), "listing waiting chats failed");
            return;
        }
    };
    for tenant in tenants {
        let cap = caps
            .get(&tenant)
            .copied()
            .unwrap_or(DEFAULT_MAX_CHATS_PER_AGENT);
        match store.auto_assign(&tenant, i64::from(cap), now_ms()).await {
            Ok(assigned) if !assigned.is_empty() => {
                tracing::info!(tenant = %tenant, chats = assigned.len(), "waiting chats assigned to online agents");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err.chain(), tenant = %tenant, "auto-assignment failed")
            }
        }
    }
}
