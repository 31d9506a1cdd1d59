//! The outbox dispatcher: claims due rows, paces, sends through the channel, records the
//! outcome. Transient failures retry with capped full-jitter backoff; after the last attempt
//! the message is dead-lettered and counted (alert on `sapa_dead_letters_total`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use channels::model::Delivery;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ChannelRegistry;
use crate::config::DispatcherConfig;
use crate::coord::Coord;
use crate::store::{ClaimedSend, Dialect, OutboxFailure, Store, now_ms};
use crate::telemetry;

/// Claimed batches being sent or recorded at once.
const MAX_BATCHES_IN_FLIGHT: usize = 4;

/// Successful sends recorded per transaction.
const SENT_PER_COMMIT: usize = 64;

/// A claimed row stays reserved this long; a crashed sender's rows become claimable after it.
const LEASE_MS: i64 = 30_000;

/// Everything the dispatcher needs.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    channels: Arc<ChannelRegistry>,
    config: DispatcherConfig,
    coord: Arc<dyn Coord>,
}

impl Dispatcher {
    /// A dispatcher over `store` sending through `channels`.
    pub fn new(
        store: Store,
        channels: Arc<ChannelRegistry>,
        coord: Arc<dyn Coord>,
        config: DispatcherConfig,
    ) -> Self {
        Self {
            store,
            channels,
            config,
            coord,
        }
    }

    /// Starts the loop on `tracker`. On cancellation it sends what is due once more, then stops.
    pub fn spawn(self, wake: Arc<Notify>, tracker: &TaskTracker, token: CancellationToken) {
        tracker.spawn(async move { self.run(wake, token).await });
    }

    async fn run(self, wake: Arc<Notify>, token: CancellationToken) {
        if self.store.dialect() == Dialect::Sqlite {
            // Embedded mode has one sender: claims left by a crashed run are stale.
            if let Err(err) = self.store.release_outbox_claims().await {
                tracing::warn!(error = %err, "could not release stale outbox claims");
            }
        }
        loop {
            let stopping = token.is_cancelled();
            self.drain().await;
            if stopping {
                break;
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
                () = token.cancelled() => {}
            }
        }
    }

    /// Sends everything due now; returns how many rows were handled.
    pub async fn drain(&self) -> usize {
        let mut handled = 0;
        // Batches in flight: while one waits for its sends or for the writer to record them,
        // the next is claimed. Safe for ordering: a conversation's next row is claimable only
        // after the previous one is recorded as sent.
        let mut inflight = tokio::task::JoinSet::new();
        loop {
            while inflight.len() >= MAX_BATCHES_IN_FLIGHT {
                let _ = inflight.join_next().await;
            }
            let claimed = match self
                .store
                .claim_outbox(i64::from(self.config.batch_size), LEASE_MS)
                .await
            {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming outbox rows failed");
                    while inflight.join_next().await.is_some() {}
                    return handled;
                }
            };
            if claimed.is_empty() {
                // A batch still in flight may free its conversations' next rows.
                if inflight.join_next().await.is_none() {
                    return handled;
                }
                continue;
            }
            handled += claimed.len();
            let this = self.clone();
            inflight.spawn(async move { this.deliver_batch(claimed).await });
        }
    }

    /// Sends one claimed batch and records what was sent.
    async fn deliver_batch(&self, claimed: Vec<ClaimedSend>) {
        // Customers who blocked the bot or left get nothing (one query per batch).
        let provider: Vec<&str> = claimed
            .iter()
            .filter(|c| !c.channel_kind.is_webchat())
            .map(|c| c.message.conversation_id.as_str())
            .collect();
        let unreachable = match self.store.unreachable_conversations(&provider).await {
            Ok(set) => set,
            Err(err) => {
                tracing::warn!(error = %err, "checking recipients' reachability failed; sending anyway");
                std::collections::HashSet::new()
            }
        };
        let sent: Vec<(ClaimedSend, Delivery)> =
            futures::future::join_all(claimed.into_iter().map(|send| {
                let reachable = !unreachable.contains(&send.message.conversation_id);
                self.send_one(send, reachable)
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        self.record_sent(&sent).await;
    }

    /// Records the batch's successful sends, a few dozen per transaction (short enough that
    /// an inbound commit never waits long for the writer).
    async fn record_sent(&self, sent: &[(ClaimedSend, Delivery)]) {
        for part in sent.chunks(SENT_PER_COMMIT) {
            self.record_sent_part(part).await;
        }
    }

    async fn record_sent_part(&self, sent: &[(ClaimedSend, Delivery)]) {
        let rows: Vec<(&ClaimedSend, &Delivery)> = sent.iter().map(|(s, d)| (s, d)).collect();
        if let Err(err) = self.store.mark_sent_many(&rows).await {
            // The provider has them; a retry after the lease may re-send once (bounded
            // duplicate window, documented in README).
            tracing::error!(error = %err, count = rows.len(), "recording delivered sends failed");
            return;
        }
        for (send, _) in sent {
            let kind_label = send.channel_kind.as_str();
            metrics::counter!(telemetry::OUTBOX_SENDS_TOTAL, "channel" => kind_label, "outcome" => "sent").increment(1);
            let latency = (now_ms() - send.message.created_at_ms).max(0) as f64 / 1000.0;
            metrics::histogram!(telemetry::DELIVERY_LATENCY_SECONDS, "channel" => kind_label)
                .record(latency);
        }
    }

    /// Sends one claimed row; a success is returned for [`Self::record_sent`], anything else
    /// is recorded here.
    async fn send_one(
        &self,
        send: ClaimedSend,
        reachable: bool,
    ) -> Option<(ClaimedSend, Delivery)> {
        let kind = send.channel_kind;
        let kind_label = kind.as_str();
        let Some(channel) = self.channels.resolve(&send.channel_account_id, kind) else {
            self.fail(
                &send,
                OutboxFailure::Permanent {
                    error: format!("no {kind} channel is configured for this account"),
                },
                kind_label,
            )
            .await;
            return None;
        };
        let paced = self
            .coord
            .reserve_send(
                channel.pacing(),
                &send.channel_account_id,
                &send.message.recipient,
            )
            .await;
        if let Err(wait) = paced {
            metrics::counter!(telemetry::OUTBOX_SENDS_TOTAL, "channel" => kind_label, "outcome" => "deferred").increment(1);
            let not_before = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            if let Err(err) = self.store.defer_send(&send, not_before).await {
                tracing::warn!(error = %err, "deferring a paced send failed");
            }
            return None;
        }
        if !reachable {
            self.fail(
                &send,
                OutboxFailure::Permanent {
                    error: "not sent: the customer blocked the bot or left the chat".to_owned(),
                },
                kind_label,
            )
            .await;
            return None;
        }
        let started = Instant::now();
        let result = channel.send(&send.message).await;
        metrics::histogram!(telemetry::SEND_SECONDS, "channel" => kind_label)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(delivery) => Some((send, delivery)),
            Err(err) => {
                if err.is_unreachable()
                    && let Err(store_err) = self
                        .store
                        .mark_conversation_unreachable(
                            &send.tenant_id,
                            &send.message.conversation_id,
                        )
                        .await
                {
                    tracing::warn!(error = %store_err, "marking the recipient unreachable failed");
                }
                let attempt = u32::try_from(send.attempts)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1);
                let failure = if !err.is_transient() {
                    OutboxFailure::Permanent {
                        error: err.to_string(),
                    }
                } else if attempt >= self.config.max_attempts {
                    OutboxFailure::Dead {
                        error: format!("gave up after {attempt} attempts: {err}"),
                    }
                } else {
                    if let Some(what) = err.throttled() {
                        self.coord
                            .send_throttled(
                                channel.pacing(),
                                &send.channel_account_id,
                                &send.message.recipient,
                                what,
                            )
                            .await;
                    }
                    let delay = err.retry_after().unwrap_or_else(|| {
                        full_jitter(self.config.retry_base, self.config.retry_cap, attempt)
                    });
                    OutboxFailure::Retry {
                        next_attempt_at: now_ms()
                            + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2),
                        error: err.to_string(),
                    }
                };
                tracing::warn!(outbox_id = send.id, channel_kind = %kind, attempt, error = %err, "send failed");
                self.fail(&send, failure, kind_label).await;
                None
            }
        }
    }

    async fn fail(&self, send: &ClaimedSend, failure: OutboxFailure, kind_label: &'static str) {
        let outcome = match &failure {
            OutboxFailure::Retry { .. } => {
                metrics::counter!(telemetry::OUTBOX_RETRIES_TOTAL, "channel" => kind_label)
                    .increment(1);
                "retry"
            }
            OutboxFailure::Permanent { .. } => "failed",
            OutboxFailure::Dead { .. } => {
                metrics::counter!(telemetry::DEAD_LETTERS_TOTAL, "channel" => kind_label)
                    .increment(1);
                tracing::error!(
                    outbox_id = send.id,
                    "message dead-lettered after its last attempt"
                );
                "dead"
            }
        };
        metrics::counter!(telemetry::OUTBOX_SENDS_TOTAL, "channel" => kind_label, "outcome" => outcome).increment(1);
        if let Err(err) = self.store.record_send_failure(send, &failure).await {
            tracing::warn!(error = %err, outbox_id = send.id, "recording a failed send failed");
        }
    }
}

/// Capped exponential backoff with full jitter: a uniform delay in `[0, min(cap, base·2^n))`.
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
    let ceiling = exp.min(cap);
    if ceiling.is_zero() {
        return Duration::ZERO;
    }
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::rng().random_range(0..millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_capped_exponential() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for attempt in 1..=10u32 {
            let ceiling = (base * 2u32.pow(attempt - 1)).min(cap);
            let samples: Vec<Duration> =
                (0..200).map(|_| full_jitter(base, cap, attempt)).collect();
            assert!(samples.iter().all(|d| *d < ceiling), "attempt {attempt}");
            // Jitter actually spreads retries out instead of synchronising them.
            let distinct: std::collections::HashSet<_> = samples.iter().collect();
            assert!(distinct.len() > 50, "attempt {attempt}: {}", distinct.len());
        }
    }
}
