//! The outbox dispatcher: claims due rows, paces, sends through the channel, records the
//! outcome. Transient failures retry with capped full-jitter backoff; after the last attempt
//! the message is dead-lettered and counted (alert on `sapa_dead_letters_total`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use channels::model::Delivery;
use channels::{ChannelError, OutboundMessage, PartLog};
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::ChannelRegistry;
use crate::config::DispatcherConfig;
use crate::coord::Coord;
use crate::crypto::SecretBox;
use crate::store::{ClaimedSend, Dialect, OutboxFailure, Store, now_ms};
use crate::telemetry;

/// Claimed batches being sent or recorded at once.
const MAX_BATCHES_IN_FLIGHT: usize = 4;

/// Successful sends recorded per transaction.
const SENT_PER_COMMIT: usize = 64;

/// A claimed row stays reserved this long; a crashed sender's rows become claimable after it.
/// A live sender renews its claims every third of it while its sends are in flight (a send to
/// a slow provider, in several parts, can take longer than one lease).
const LEASE: Duration = Duration::from_secs(30);

/// The current time in Unix ms, as claims are stamped.
#[derive(Clone)]
struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Everything the dispatcher needs.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    channels: Arc<ChannelRegistry>,
    config: DispatcherConfig,
    coord: Arc<dyn Coord>,
    lease: Duration,
    clock: Clock,
    /// Opens one-time codes sealed in their outbox rows.
    secrets: Option<SecretBox>,
    /// When expired codes' fallback rows were last scrubbed.
    swept_at: Arc<std::sync::atomic::AtomicI64>,
    /// Once cancelled, nothing more is claimed: only the batches in flight finish.
    halt: CancellationToken,
}

/// Records the parts of a claimed send in the outbox as the channel sends them.
struct OutboxPartLog<'a> {
    store: &'a Store,
    send: &'a ClaimedSend,
}

#[async_trait::async_trait]
impl PartLog for OutboxPartLog<'_> {
    fn sent(&self) -> &[String] {
        &self.send.sent_parts
    }

    async fn record(&self, index: usize, provider_message_id: &str) -> Result<(), ChannelError> {
        self.store
            .record_sent_part(self.send, index, provider_message_id)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err.chain(), outbox_id = self.send.id, "recording a sent part failed");
                ChannelError::Transient {
                    reason: "a sent part could not be recorded; the rest is sent later".to_owned(),
                }
            })
    }
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
            lease: LEASE,
            clock: Clock(Arc::new(now_ms)),
            secrets: None,
            swept_at: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            halt: CancellationToken::new(),
        }
    }

    /// Stops claiming once `halt` is cancelled (the end of shutdown's grace): batches in flight
    /// still finish and are recorded.
    #[must_use]
    pub fn with_halt(mut self, halt: CancellationToken) -> Self {
        self.halt = halt;
        self
    }

    /// Lets the dispatcher open the one-time codes of OTP rows (without it they fail).
    #[must_use]
    pub fn with_secrets(mut self, secrets: SecretBox) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The message to send for `send`: as queued, or with its one-time code opened and put in.
    fn message_for(&self, send: &ClaimedSend) -> Result<OutboundMessage, String> {
        let Some(otp) = &send.otp else {
            return Ok(send.message.clone());
        };
        let sealed = otp
            .sealed_code
            .as_deref()
            .ok_or("the code was already scrubbed from this row")?;
        let secrets = self
            .secrets
            .as_ref()
            .ok_or("this dispatcher has no key to open codes")?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| "the sealed code is not base64")?;
        let (code, _) = secrets
            .open_for(&sealed, &crate::otp::sealing_owner(&otp.challenge_id))
            .map_err(|_| "the sealed code cannot be opened with this key")?;
        let code = String::from_utf8(code).map_err(|_| "the sealed code is not text")?;
        let mut message = crate::otp::fill_code(&send.message, &code);
        // Unique per row (adapters key their in-memory progress by message id).
        message.message_id = -send.id;
        Ok(message)
    }

    /// Scrubs the fallback rows of expired codes, at most every 10 s.
    async fn sweep_expired_codes(&self) {
        let now = (self.clock.0)();
        let last = self.swept_at.load(std::sync::atomic::Ordering::Relaxed);
        if now - last < 10_000 {
            return;
        }
        self.swept_at
            .store(now, std::sync::atomic::Ordering::Relaxed);
        if let Err(err) = self.store.sweep_expired_otp(now).await {
            tracing::warn!(error = %err.chain(), "scrubbing expired codes failed");
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Starts the loop on `tracker`. On cancellation it sends what is due once more, then stops.
    pub fn spawn(self, wake: Arc<Notify>, tracker: &TaskTracker, token: CancellationToken) {
        tracker.spawn(async move { self.run(wake, token).await });
    }

    async fn run(self, wake: Arc<Notify>, token: CancellationToken) {
        if self.store.dialect() == Dialect::Sqlite {
            // Embedded mode has one sender: claims left by a crashed run are stale.
            if let Err(err) = self.store.release_outbox_claims().await {
                tracing::warn!(error = %err.chain(), "could not release stale outbox claims");
            }
        }
        loop {
            let stopping = token.is_cancelled();
            self.drain().await;
            if stopping || self.halt.is_cancelled() {
                break;
            }
            self.sweep_expired_codes().await;
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
            if self.halt.is_cancelled() {
                while inflight.join_next().await.is_some() {}
                return handled;
            }
            let claim = match self
                .store
                .claim_outbox_at(
                    (self.clock.0)(),
                    i64::from(self.config.batch_size),
                    self.lease_ms(),
                )
                .await
            {
                Ok(claim) => claim,
                Err(err) => {
                    tracing::warn!(error = %err.chain(), "claiming outbox rows failed");
                    while inflight.join_next().await.is_some() {}
                    return handled;
                }
            };
            for dead in &claim.dead {
                metrics::counter!(telemetry::DEAD_LETTERS_TOTAL, "channel" => "unknown")
                    .increment(1);
                tracing::error!(
                    outbox_id = dead.id,
                    tenant = %dead.tenant_id,
                    error = %dead.error,
                    "outbox row could not be decoded; dead-lettered alone"
                );
            }
            handled += claim.dead.len();
            let claimed = claim.sends;
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

    /// Sends one claimed batch and records what was sent, renewing the batch's claims until
    /// everything is recorded.
    async fn deliver_batch(&self, claimed: Vec<ClaimedSend>) {
        let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        let done = CancellationToken::new();
        let work = async {
            self.send_batch(claimed).await;
            done.cancel();
        };
        tokio::join!(work, self.keep_claimed(&ids, &done));
    }

    /// Renews the claims on `ids` every third of a lease until `done` (never in the middle of
    /// a renewal, so a dropped query cannot leave a connection half-used).
    async fn keep_claimed(&self, ids: &[i64], done: &CancellationToken) {
        let every = self.lease / 3;
        loop {
            tokio::select! {
                () = done.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let until = (self.clock.0)() + self.lease_ms();
            if let Err(err) = self.store.renew_outbox_claims(ids, until).await {
                tracing::warn!(error = %err.chain(), "renewing outbox claims failed");
            }
        }
    }

    async fn send_batch(&self, claimed: Vec<ClaimedSend>) {
        // Customers who blocked the bot or left get nothing (one query per batch).
        let provider: Vec<&str> = claimed
            .iter()
            .filter(|c| !c.channel_kind.is_webchat())
            .map(|c| c.message.conversation_id.as_str())
            .collect();
        let unreachable = match self.store.unreachable_conversations(&provider).await {
            Ok(set) => set,
            Err(err) => {
                tracing::warn!(error = %err.chain(), "checking recipients' reachability failed; sending anyway");
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
            tracing::error!(error = %err.chain(), count = rows.len(), "recording delivered sends failed");
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
                tracing::warn!(error = %err.chain(), "deferring a paced send failed");
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
        let message = match self.message_for(&send) {
            Ok(message) => message,
            Err(error) => {
                self.fail(
                    &send,
                    OutboxFailure::Permanent {
                        error: error.to_owned(),
                    },
                    kind_label,
                )
                .await;
                return None;
            }
        };
        let started = Instant::now();
        let log = OutboxPartLog {
            store: &self.store,
            send: &send,
        };
        let span = telemetry::continued(
            telemetry::Handoff::Send,
            &send.message.conversation_id,
            tracing::info_span!("send", channel = kind_label),
        );
        let result = channel.send_resuming(&message, &log).instrument(span).await;
        drop(message);
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
                    tracing::warn!(error = %store_err.chain(), "marking the recipient unreachable failed");
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
            tracing::warn!(error = %err.chain(), outbox_id = send.id, "recording a failed send failed");
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};

    use channels::{Channel, ChannelKind, OutboundMessage};
    use tokio::sync::Semaphore;

    use sqlx::Row;

    use crate::config::{Config, DatabaseTarget};

    /// A web chat stand-in that sends each message as three parts ("<id>-0" … "<id>-2"),
    /// skipping the parts its log says were sent, and holds every part until the test lets
    /// it go (a slow provider).
    #[derive(Debug)]
    struct SlowParts {
        gate: Semaphore,
        entered: AtomicI64,
        sent: Mutex<Vec<String>>,
        resumed_from: Mutex<Vec<Vec<String>>>,
    }

    impl SlowParts {
        fn new(open: bool) -> Arc<Self> {
            Arc::new(Self {
                gate: Semaphore::new(if open { 1_000 } else { 0 }),
                entered: AtomicI64::new(0),
                sent: Mutex::new(Vec::new()),
                resumed_from: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait::async_trait]
    impl Channel for SlowParts {
        fn kind(&self) -> ChannelKind {
            ChannelKind::Webchat
        }

        async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
            self.send_resuming(msg, &channels::NoPartLog).await
        }

        async fn send_resuming(
            &self,
            msg: &OutboundMessage,
            log: &dyn PartLog,
        ) -> Result<Delivery, ChannelError> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            self.resumed_from.lock().unwrap().push(log.sent().to_vec());
            let mut ids = log.sent().to_vec();
            for index in ids.len()..3 {
                self.gate.acquire().await.unwrap().forget();
                let id = format!("{}-{index}", msg.message_id);
                self.sent.lock().unwrap().push(id.clone());
                log.record(index, &id).await?;
                ids.push(id);
            }
            let last = ids.pop();
            Ok(Delivery {
                provider_message_id: last,
                extra_provider_message_ids: ids,
                ..Delivery::default()
            })
        }
    }

    struct Setup {
        store: Store,
        now: Arc<AtomicI64>,
        conversation: String,
        _dir: tempfile::TempDir,
    }

    /// A store with one web chat conversation and one agent message queued for it.
    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseTarget::Sqlite(dir.path().join("t.db")), 2)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.upsert_tenant("shop", "Shop", "id").await.unwrap();
        let account = store
            .ensure_channel_account("shop", ChannelKind::Webchat, "shop", "Web chat", None)
            .await
            .unwrap();
        let conversation = store
            .create_webchat_session("shop", &account, "hash", "id")
            .await
            .unwrap();
        store
            .enqueue_agent_message("shop", &conversation, "halo", None)
            .await
            .unwrap()
            .unwrap();
        Setup {
            store,
            now: Arc::new(AtomicI64::new(now_ms())),
            conversation,
            _dir: dir,
        }
    }

    /// A dispatcher (one replica) on `setup`'s store and clock, with a 90 ms lease.
    fn dispatcher(setup: &Setup, channel: Arc<SlowParts>) -> Dispatcher {
        let config = Config::from_toml("").unwrap();
        let mut registry = ChannelRegistry::default();
        registry.insert_kind(ChannelKind::Webchat, channel);
        let mut dispatcher = Dispatcher::new(
            setup.store.clone(),
            Arc::new(registry),
            Arc::new(crate::coord::Local::new(&config.webchat)),
            config.dispatcher.clone(),
        );
        dispatcher.lease = Duration::from_millis(90);
        let now = setup.now.clone();
        dispatcher.clock = Clock(Arc::new(move || now.load(Ordering::SeqCst)));
        dispatcher
    }

    async fn locked_until(store: &Store) -> Option<i64> {
        sqlx::query("SELECT locked_until FROM outbox")
            .fetch_one(store.pool_for_tests())
            .await
            .unwrap()
            .try_get("locked_until")
            .unwrap()
    }

    async fn poll<T, F, Fut>(mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(Instant::now() < deadline, "condition not met in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_send_slower_than_the_lease_keeps_its_claim_and_is_sent_once() {
        // Arrange: replica A is stuck in a slow send.
        let setup = setup().await;
        let channel = SlowParts::new(false);
        let a = dispatcher(&setup, channel.clone());
        let b = dispatcher(&setup, channel.clone());
        let sending = tokio::spawn(async move { a.drain().await });
        poll(|| async { (channel.entered.load(Ordering::SeqCst) == 1).then_some(()) }).await;
        // Act: far more than one lease passes on the claims' clock; A's heartbeat renews.
        let later = setup.now.fetch_add(10_000, Ordering::SeqCst) + 10_000;
        poll(|| async { locked_until(&setup.store).await.filter(|t| *t > later) }).await;
        // Replica B finds nothing to claim.
        assert_eq!(b.drain().await, 0);
        channel.gate.add_permits(3);
        assert_eq!(sending.await.unwrap(), 1);
        // Assert: every part went out once, the row is sent and its claim released.
        assert_eq!(channel.entered.load(Ordering::SeqCst), 1);
        let sent = channel.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(locked_until(&setup.store).await, None);
        let messages = setup
            .store
            .messages_after("shop", &setup.conversation, 0, 10)
            .await
            .unwrap();
        assert_eq!(messages[0].status.as_deref(), Some("sent"));
    }

    #[tokio::test]
    async fn a_halted_dispatcher_records_the_sends_in_flight_and_claims_nothing_more() {
        // Arrange: a send is in flight when shutdown's grace ends (halt).
        let setup = setup().await;
        let channel = SlowParts::new(false);
        let halt = CancellationToken::new();
        let a = dispatcher(&setup, channel.clone()).with_halt(halt.clone());
        let sending = tokio::spawn({
            let a = a.clone();
            async move { a.drain().await }
        });
        poll(|| async { (channel.entered.load(Ordering::SeqCst) == 1).then_some(()) }).await;
        setup
            .store
            .enqueue_agent_message("shop", &setup.conversation, "next", None)
            .await
            .unwrap()
            .unwrap();
        // Act: halt, then the provider answers.
        halt.cancel();
        channel.gate.add_permits(3);
        // Assert: the send in flight finished and is recorded; nothing more was claimed.
        assert_eq!(sending.await.unwrap(), 1);
        assert_eq!(a.drain().await, 0);
        let messages = setup
            .store
            .messages_after("shop", &setup.conversation, 0, 10)
            .await
            .unwrap();
        let statuses: Vec<Option<&str>> = messages.iter().map(|m| m.status.as_deref()).collect();
        assert_eq!(statuses, vec![Some("sent"), Some("pending")]);
        assert_eq!(channel.entered.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_reclaimed_send_skips_the_parts_that_have_a_provider_id() {
        // Arrange: an earlier sender sent part 0, recorded it, and died; its claim expired.
        let setup = setup().await;
        let claimed = setup.store.claim_outbox(10, 30_000).await.unwrap();
        let first = &claimed[0];
        setup
            .store
            .record_sent_part(first, 0, &format!("{}-0", first.message.message_id))
            .await
            .unwrap();
        setup.now.fetch_add(60_000, Ordering::SeqCst);
        let channel = SlowParts::new(true);
        // Act.
        assert_eq!(dispatcher(&setup, channel.clone()).drain().await, 1);
        // Assert: only parts 1 and 2 were sent; all three reach the message.
        let id = first.message.message_id;
        assert_eq!(
            *channel.resumed_from.lock().unwrap(),
            vec![vec![format!("{id}-0")]]
        );
        assert_eq!(
            *channel.sent.lock().unwrap(),
            vec![format!("{id}-1"), format!("{id}-2")]
        );
        for part in 0..3 {
            let delivery = setup
                .store
                .message_delivery("shop", &format!("{id}-{part}"))
                .await
                .unwrap();
            assert_eq!(delivery.unwrap().0.as_deref(), Some("sent"), "part {part}");
        }
    }

    #[tokio::test]
    async fn an_undecodable_payload_is_dead_lettered_alone_and_the_others_are_sent() {
        // Arrange: two more conversations with a message each; the middle row is corrupt.
        let setup = setup().await;
        let account: String = sqlx::query("SELECT channel_account_id FROM outbox")
            .fetch_one(setup.store.pool_for_tests())
            .await
            .unwrap()
            .try_get("channel_account_id")
            .unwrap();
        for hash in ["h2", "h3"] {
            let conversation = setup
                .store
                .create_webchat_session("shop", &account, hash, "id")
                .await
                .unwrap();
            setup
                .store
                .enqueue_agent_message("shop", &conversation, "halo", None)
                .await
                .unwrap()
                .unwrap();
        }
        sqlx::query("UPDATE outbox SET payload = '{\"message_id\": tru' WHERE id = (SELECT MIN(id) + 1 FROM outbox)")
            .execute(setup.store.pool_for_tests())
            .await
            .unwrap();
        // The rows queued after `setup` are due on the claims' clock too.
        setup.now.store(now_ms() + 1_000, Ordering::SeqCst);
        let channel = SlowParts::new(true);
        // Act.
        assert_eq!(dispatcher(&setup, channel.clone()).drain().await, 3);
        // Assert: the two good rows went out; the bad one is dead with a clear reason.
        assert_eq!(channel.sent.lock().unwrap().len(), 6);
        let rows = sqlx::query("SELECT state, last_error FROM outbox ORDER BY id")
            .fetch_all(setup.store.pool_for_tests())
            .await
            .unwrap();
        let states: Vec<String> = rows.iter().map(|r| r.try_get("state").unwrap()).collect();
        assert_eq!(states, ["sent", "dead", "sent"]);
        let error: String = rows[1].try_get("last_error").unwrap();
        assert!(error.starts_with("undecodable outbox payload"), "{error}");
        assert_eq!(setup.store.dead_letter_count("shop").await.unwrap(), 1);
    }

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
