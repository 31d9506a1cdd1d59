//! The follow-up worker: every half second it claims due follow-ups with a lease and decides
//! each in one transaction (`Store::deliver_follow_up`), which queues the message in the
//! outbox below live answers. Several replicas may run it: claims skip each other's rows and
//! a row leaves `pending` once, so each follow-up is sent at most once, and a claim left by a
//! crash is taken again after its lease, so none is lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use channels::ChannelKind;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ChannelRegistry;
use crate::config::FollowUpConfig;
use crate::store::{FollowUpOutcome, Store, now_ms};

/// Rows claimed per pass.
const BATCH: i64 = 500;
/// How long a claim holds before another worker may take the row.
const LEASE_MS: i64 = 60_000;

/// What the loop works with.
#[derive(Debug, Clone)]
pub struct FollowUps {
    /// Storage.
    pub store: Store,
    /// Follow-up settings by tenant (defaults for others).
    pub rules: Arc<HashMap<String, FollowUpConfig>>,
    /// Channel adapters: WhatsApp numbers' re-engagement templates.
    pub channels: Arc<ChannelRegistry>,
    /// Wakes the dispatcher when something was queued.
    pub wake: Arc<Notify>,
}

impl FollowUps {
    /// Starts the loop on `tracker`, a pass every `every` (at once again after a full batch).
    pub fn spawn(self, every: Duration, tracker: &TaskTracker, token: CancellationToken) {
        tracker.spawn(async move {
            if self.store.dialect() == crate::store::Dialect::Sqlite {
                // Embedded mode has one worker: claims left by a crashed run are stale.
                if let Err(err) = self.store.release_follow_up_claims().await {
                    tracing::warn!(error = %err.chain(), "could not release stale follow-up claims");
                }
            }
            loop {
                let full = self.run_once(now_ms()).await;
                if full {
                    if token.is_cancelled() {
                        break;
                    }
                    continue;
                }
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
    }

    /// One pass at `now`; `true` when it claimed a full batch (more may be due).
    pub async fn run_once(&self, now: i64) -> bool {
        let due = match self.store.claim_follow_ups(now, BATCH, LEASE_MS).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err.chain(), "claiming due follow-ups failed");
                return false;
            }
        };
        let full = due.len() as i64 >= BATCH;
        let mut queued = 0_u64;
        for follow_up in &due {
            let max_per_week = self
                .rules
                .get(&follow_up.tenant_id)
                .map_or(2, |r| r.max_per_week);
            let template = match follow_up.channel_kind {
                ChannelKind::Whatsapp => self
                    .channels
                    .resolve(&follow_up.channel_account_id, follow_up.channel_kind)
                    .and_then(|channel| channel.reengagement_template()),
                _ => None,
            };
            match self
                .store
                .deliver_follow_up(follow_up, max_per_week, template.as_ref(), now_ms())
                .await
            {
                Ok(FollowUpOutcome::Sent { template }) => {
                    queued += 1;
                    metrics::counter!("sapa_follow_ups_total", "outcome" => "sent").increment(1);
                    tracing::debug!(tenant = %follow_up.tenant_id, conversation_id = %follow_up.conversation_id, template, "follow-up queued");
                }
                Ok(FollowUpOutcome::Cancelled(reason) | FollowUpOutcome::Skipped(reason)) => {
                    metrics::counter!("sapa_follow_ups_total", "outcome" => reason).increment(1);
                    tracing::info!(tenant = %follow_up.tenant_id, conversation_id = %follow_up.conversation_id, reason, "follow-up not sent");
                }
                Ok(FollowUpOutcome::Gone) => {}
                Err(err) => {
                    tracing::warn!(error = %err.chain(), tenant = %follow_up.tenant_id, "follow-up failed; retried after its lease");
                }
            }
        }
        if queued > 0 {
            self.wake.notify_one();
        }
        full
    }
}
