//! The follow-up worker: every half second it claims due follow-ups with a lease and decides
//! them a chunk per transaction (`Store::deliver_follow_ups`), which queues the message in the
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
/// Follow-ups decided per transaction (small: the single SQLite writer is held meanwhile, and
/// live answers wait for it).
const CHUNK: usize = 8;
/// Follow-ups queued per second at most: a burst (100,000 due at 09:00) leaves the writer and
/// the dispatcher room for live answers, whose latency is what customers notice.
const PER_SECOND: u64 = 1_200;
/// How long a claim holds before another worker may take the row.
const LEASE_MS: i64 = 60_000;

/// What the loop works with.
#[derive(Debug, Clone)]
pub struct FollowUps {
    /// Storage.
    pub store: Store,
    /// Follow-up settings by tenant from `sapa.toml` (defaults for others).
    pub rules: Arc<HashMap<String, FollowUpConfig>>,
    /// Each tenant's live bot settings: follow-up rules published in the console win.
    pub bots: Arc<crate::bot::LiveBots>,
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
        let templates: Vec<Option<channels::model::Template>> = due
            .iter()
            .map(|f| match f.channel_kind {
                ChannelKind::Whatsapp => self
                    .channels
                    .resolve(&f.channel_account_id, f.channel_kind)
                    .and_then(|channel| channel.reengagement_template()),
                _ => None,
            })
            .collect();
        let mut pace =
            tokio::time::interval(Duration::from_micros(1_000_000 * CHUNK as u64 / PER_SECOND));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for (chunk, chunk_templates) in due.chunks(CHUNK).zip(templates.chunks(CHUNK)) {
            pace.tick().await;
            let rules = |f: &crate::store::DueFollowUp| {
                let index = chunk.iter().position(|c| c.id == f.id).unwrap_or(0);
                let max_per_week = match &self.bots.get(&f.tenant_id).follow_up {
                    Some(published) => published.max_per_week,
                    None => self
                        .rules
                        .get(&f.tenant_id)
                        .map_or(FollowUpConfig::default().max_per_week, |r| r.max_per_week),
                };
                (max_per_week, chunk_templates[index].as_ref())
            };
            let outcomes = match self.store.deliver_follow_ups(chunk, rules, now_ms()).await {
                Ok(outcomes) => outcomes,
                Err(err) => {
                    tracing::warn!(error = %err.chain(), follow_ups = chunk.len(), "deciding follow-ups failed; retried after their lease");
                    continue;
                }
            };
            for (follow_up, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    FollowUpOutcome::Sent { template } => {
                        queued += 1;
                        metrics::counter!("sapa_follow_ups_total", "outcome" => "sent")
                            .increment(1);
                        tracing::debug!(tenant = %follow_up.tenant_id, conversation_id = %follow_up.conversation_id, template, "follow-up queued");
                    }
                    FollowUpOutcome::Cancelled(reason) | FollowUpOutcome::Skipped(reason) => {
                        metrics::counter!("sapa_follow_ups_total", "outcome" => reason)
                            .increment(1);
                        tracing::info!(tenant = %follow_up.tenant_id, conversation_id = %follow_up.conversation_id, reason, "follow-up not sent");
                    }
                    FollowUpOutcome::Gone => {}
                }
            }
            if queued > 0 {
                // The dispatcher starts on the first chunk while the next is decided.
                self.wake.notify_one();
            }
        }
        if queued > 0 {
            self.wake.notify_one();
        }
        full
    }
}
