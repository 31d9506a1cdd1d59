//! Conversation lanes: one task per conversation with pending messages, so a conversation's
//! messages are handled one batch at a time, in arrival order, while different conversations
//! run concurrently (bounded by a semaphore).
//!
//! A lane debounces (waits until the customer is quiet), prepares the answer, and commits it.
//! A new message arriving while the answer is being prepared supersedes it: the preparation is
//! dropped and the lane starts over with the larger batch. The commit itself re-checks for
//! newer messages, so nothing that arrived without a wake-up is skipped either.
//!
//! Cost bounds: after `llm.max_restarts` restarts the lane stops restarting and commits the
//! answer to the batch it has (newer messages get the next answer), and on channels other than
//! web chat a conversation over `conversation.messages_per_minute` has its answer deferred
//! until the rate allows (its messages are stored and acknowledged already).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use channels::webchat::WebchatEvent;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::TurnContext;
use super::answer;
use crate::store::{TurnOutcome, now_ms};
use crate::telemetry;

/// A wake-up for a lane: a customer message was stored.
#[derive(Debug, Clone, Copy)]
struct Nudge {
    /// Typed text debounces; buttons and commands are answered at once.
    debounce: bool,
}

/// Handle to the set of running lanes.
#[derive(Debug, Clone)]
pub struct Lanes {
    inner: Arc<LanesInner>,
}

#[derive(Debug)]
struct LanesInner {
    lanes: Mutex<HashMap<String, mpsc::UnboundedSender<Nudge>>>,
    ctx: Arc<TurnContext>,
    permits: Semaphore,
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Lanes {
    /// Lanes that answer at most `max_concurrent` conversations at a time.
    pub fn new(
        ctx: Arc<TurnContext>,
        max_concurrent: usize,
        tracker: TaskTracker,
        token: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(LanesInner {
                lanes: Mutex::new(HashMap::new()),
                ctx,
                permits: Semaphore::new(max_concurrent),
                tracker,
                token,
            }),
        }
    }

    /// A customer message for `conversation_id` was committed.
    pub fn wake(&self, conversation_id: &str, debounce: bool) {
        self.nudge(conversation_id, Some(Nudge { debounce }));
    }

    /// Makes sure a lane looks at `conversation_id` (recovery poller); does not disturb a
    /// running lane.
    pub fn ensure(&self, conversation_id: &str) {
        self.nudge(conversation_id, None);
    }

    /// Number of running lanes.
    pub fn active(&self) -> usize {
        self.inner
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn nudge(&self, conversation_id: &str, nudge: Option<Nudge>) {
        if self.inner.token.is_cancelled() {
            // Shutting down: the message is stored and the next start answers it.
            return;
        }
        let mut lanes = self
            .inner
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = lanes.get(conversation_id) {
            let Some(nudge) = nudge else { return };
            if sender.send(nudge).is_ok() {
                return;
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        lanes.insert(conversation_id.to_owned(), tx);
        let inner = self.inner.clone();
        let id = conversation_id.to_owned();
        let debounce = nudge.is_none_or(|n| n.debounce);
        self.inner.tracker.spawn(run_lane(inner, id, rx, debounce));
    }
}

/// Result of waiting for the customer to be quiet.
enum Quiet {
    /// Quiet (or the wait cap was reached): answer now.
    Ready,
    /// Shutting down before the wait ended: leave the messages for the next start.
    Cancelled,
}

/// A lane holds the conversation's lease (the coordination seam) while it runs, so one
/// worker in the deployment answers a conversation at a time.
async fn run_lane(
    inner: Arc<LanesInner>,
    conversation_id: String,
    rx: mpsc::UnboundedReceiver<Nudge>,
    debounce: bool,
) {
    let coord = inner.ctx.coord.clone();
    let mut backoff = Duration::from_millis(100);
    while !coord.acquire_lease(&conversation_id).await {
        // Another holder (a lane that is just stopping, or another replica) has it.
        if pause(&inner.token, &mut backoff).await {
            let mut lanes = inner.lanes.lock().unwrap_or_else(PoisonError::into_inner);
            lanes.remove(&conversation_id);
            return;
        }
    }
    answer_while_pending(&inner, &conversation_id, rx, debounce).await;
    coord.release_lease(&conversation_id).await;
}

/// Answers the conversation's batches until nothing is pending; leaves the lane map on exit.
async fn answer_while_pending(
    inner: &LanesInner,
    conversation_id: &str,
    mut rx: mpsc::UnboundedReceiver<Nudge>,
    mut debounce: bool,
) {
    let ctx = inner.ctx.clone();
    let mut backoff = Duration::from_millis(100);
    // Restarts of the current answer; reset when an answer is committed.
    let mut restarts = 0u32;
    // Newest inbox id counted against the conversation's rate limit.
    let mut counted_up_to = 0i64;
    loop {
        if inner.token.is_cancelled() {
            break;
        }
        if debounce && !ctx.debounce.is_zero() {
            match wait_quiet(&mut rx, ctx.debounce, ctx.debounce_max, &inner.token).await {
                Quiet::Ready => {}
                Quiet::Cancelled => break,
            }
        }
        debounce = false;
        // The permit comes before the load: under a backlog, thousands of lanes wait here
        // holding nothing but their id, instead of each holding its loaded batch (and all
        // loading at once) until a permit frees up. For the same reason the big futures
        // below (load, answer, commit) are boxed: a spawned task is allocated at the size of
        // its largest state, so unboxed they would make every waiting lane that large.
        let Ok(permit) = inner.permits.acquire().await else {
            break;
        };
        // Wake-ups sent so far are for messages the load below sees: they must not restart
        // the answer to them.
        while rx.try_recv().is_ok() {}
        let batch = match Box::pin(ctx.store.load_turn_batch(conversation_id)).await {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                drop(permit);
                if try_exit(inner, conversation_id, &mut rx) {
                    return;
                }
                continue;
            }
            Err(err) => {
                tracing::warn!(conversation_id = %conversation_id, error = %err.chain(), "loading pending messages failed; retrying");
                drop(permit);
                if pause(&inner.token, &mut backoff).await {
                    break;
                }
                continue;
            }
        };
        let on_webchat = batch.channel_kind.is_webchat();
        if !on_webchat
            && let Err(wait) = throttle(&ctx, conversation_id, &batch, &mut counted_up_to).await
        {
            metrics::counter!(telemetry::CONVERSATION_THROTTLED_TOTAL).increment(1);
            tracing::debug!(conversation_id = %conversation_id, ?wait, "conversation over its message rate; answer deferred");
            drop(permit);
            tokio::select! {
                () = tokio::time::sleep(wait) => continue,
                () = inner.token.cancelled() => break,
            }
        }
        let (tenant_id, conversation) = (batch.tenant_id.clone(), batch.conversation_id.clone());
        // The answer continues the trace of the message that woke the lane.
        let span = telemetry::continued(
            telemetry::Handoff::Answer,
            conversation_id,
            tracing::info_span!("answer", tenant = %tenant_id, conversation_id = %conversation_id),
        );
        let last_try = restarts >= ctx.max_restarts();
        let turn = if last_try {
            // Restarted often enough: answer this batch even if the customer adds more.
            metrics::counter!(telemetry::RESTARTS_CAPPED_TOTAL).increment(1);
            let mut turn = Box::pin(
                answer::prepare(&ctx, batch, &answer::InFlight::default()).instrument(span.clone()),
            )
            .await;
            turn.accept_newer = true;
            turn
        } else {
            let in_flight = answer::InFlight::default();
            tokio::select! {
                turn = Box::pin(answer::prepare(&ctx, batch, &in_flight).instrument(span.clone())) => turn,
                nudge = rx.recv() => {
                    // Supersede: the customer added something; answer everything together.
                    metrics::counter!(telemetry::SUPERSEDED_TOTAL).increment(1);
                    restarts += 1;
                    // A dropped model call is paid for its prompt at least.
                    let dropped = in_flight
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if let Some(usage) = dropped {
                        Box::pin(record_usage(&ctx, &tenant_id, &conversation, &[usage])).await;
                    }
                    if ctx.llm.is_some() && on_webchat {
                        // Drop any half-streamed answer from the browser.
                        ctx.coord.publish(conversation_id, WebchatEvent::StreamDiscarded);
                    }
                    debounce = nudge.is_some_and(|n| n.debounce);
                    continue;
                }
            }
        };
        let (kind, oldest_received_ms) = (turn.kind, turn.oldest_received_ms());
        let in_console = shown_in_console(&turn);
        let usage = turn.llm_usage.clone();
        let committed = Box::pin(
            ctx.committer
                .commit(turn)
                .instrument(tracing::info_span!(parent: &span, "commit")),
        )
        .await;
        match committed {
            Ok(TurnOutcome::Committed { outbox_rows }) => {
                telemetry::hand_over(telemetry::Handoff::Send, conversation_id, &span);
                backoff = Duration::from_millis(100);
                restarts = 0;
                if last_try {
                    // Messages that came meanwhile are pending: debounce them as usual.
                    while let Ok(nudge) = rx.try_recv() {
                        debounce |= nudge.debounce;
                    }
                }
                metrics::counter!(telemetry::ANSWERS_TOTAL, "kind" => kind).increment(1);
                if let Some(oldest) = oldest_received_ms {
                    let waited = (now_ms() - oldest).max(0) as f64 / 1000.0;
                    metrics::histogram!(telemetry::ANSWER_LATENCY_SECONDS).record(waited);
                }
                if outbox_rows > 0 {
                    ctx.dispatcher_wake.notify_one();
                }
                if in_console {
                    Box::pin(crate::coord::announce(
                        &ctx.store,
                        ctx.coord.as_ref(),
                        &tenant_id,
                        conversation_id,
                    ))
                    .await;
                }
                // Every message committed since the load nudged this lane, so with no nudge
                // queued nothing is pending: leave without reading the conversation again
                // (one read per answer less; a nudge racing the exit starts a new lane).
                if !last_try && !debounce && try_exit(inner, conversation_id, &mut rx) {
                    return;
                }
            }
            Ok(TurnOutcome::Superseded) => {
                metrics::counter!(telemetry::SUPERSEDED_TOTAL).increment(1);
                restarts += 1;
                // The model was paid for the discarded answer: it counts against the budget.
                Box::pin(record_usage(&ctx, &tenant_id, &conversation, &usage)).await;
            }
            Ok(TurnOutcome::Stale) => {}
            Err(err) => {
                tracing::warn!(conversation_id = %conversation_id, error = %err.chain(), "committing an answer failed; retrying");
                drop(permit);
                if pause(&inner.token, &mut backoff).await {
                    break;
                }
            }
        }
    }
    let mut lanes = inner.lanes.lock().unwrap_or_else(PoisonError::into_inner);
    lanes.remove(conversation_id);
}

/// Whether the agent consoles show this turn's conversation: it is waiting for or assigned to
/// an agent (a new customer message), or the turn hands it off or back.
fn shown_in_console(turn: &crate::store::Turn) -> bool {
    use flows::ConversationState::{Human, WaitingHuman};
    [turn.batch.conversation.state, turn.conversation.state]
        .iter()
        .any(|state| matches!(state, WaitingHuman | Human))
}

/// Stores the usage of a model answer that was not committed (superseded); best effort.
async fn record_usage(
    ctx: &TurnContext,
    tenant_id: &str,
    conversation_id: &str,
    usage: &[crate::store::LlmUsage],
) {
    if usage.is_empty() {
        return;
    }
    if let Err(err) = ctx
        .store
        .record_llm_usage(tenant_id, conversation_id, usage)
        .await
    {
        tracing::warn!(conversation_id = %conversation_id, error = %err, "recording LLM usage of a superseded answer failed");
    }
}

/// Counts the batch's messages not counted yet against the conversation's rate limit, one by
/// one; `Err(wait)` when one is over it (those counted stay counted).
async fn throttle(
    ctx: &TurnContext,
    conversation_id: &str,
    batch: &crate::store::TurnBatch,
    counted_up_to: &mut i64,
) -> Result<(), Duration> {
    for turn in &batch.turns {
        if turn.inbox_id <= *counted_up_to {
            continue;
        }
        ctx.coord
            .check_rate(crate::coord::RateLimit::Conversation, conversation_id)
            .await?;
        *counted_up_to = turn.inbox_id;
    }
    Ok(())
}

/// Leaves the lane map unless a nudge raced in; returns whether the lane may stop.
fn try_exit(
    inner: &LanesInner,
    conversation_id: &str,
    rx: &mut mpsc::UnboundedReceiver<Nudge>,
) -> bool {
    let mut lanes = inner.lanes.lock().unwrap_or_else(PoisonError::into_inner);
    // A nudge sent before we took the lock is in the queue; one sent after finds no lane
    // and starts a new one. Either way no committed message waits without a lane.
    if rx.try_recv().is_ok() {
        return false;
    }
    lanes.remove(conversation_id);
    true
}

/// Waits until no nudge came for `window`, or `cap` passed since the wait began. Adaptive: every
/// fragment restarts the quiet window, so a customer typing in bursts is answered once.
async fn wait_quiet(
    rx: &mut mpsc::UnboundedReceiver<Nudge>,
    window: Duration,
    cap: Duration,
    token: &CancellationToken,
) -> Quiet {
    let hard_deadline = Instant::now() + cap;
    let mut deadline = (Instant::now() + window).min(hard_deadline);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return Quiet::Ready,
            nudge = rx.recv() => match nudge {
                Some(Nudge { debounce: false }) | None => return Quiet::Ready,
                Some(Nudge { debounce: true }) => {
                    deadline = (Instant::now() + window).min(hard_deadline);
                }
            },
            () = token.cancelled() => return Quiet::Cancelled,
        }
    }
}

/// Sleeps `backoff` (doubling it, up to 10 s); returns true when shutdown interrupted it.
async fn pause(token: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(10));
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = token.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn debounce_waits_for_quiet_and_extends_while_fragments_arrive() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let start = Instant::now();
        let sender = tokio::spawn(async move {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(800)).await;
                tx.send(Nudge { debounce: true }).unwrap();
            }
            tx
        });
        let quiet = wait_quiet(
            &mut rx,
            Duration::from_millis(1200),
            Duration::from_secs(4),
            &token,
        )
        .await;
        assert!(matches!(quiet, Quiet::Ready));
        // Fragments at 0.8 s and 1.6 s push the answer to 1.6 + 1.2 = 2.8 s.
        assert_eq!(start.elapsed(), Duration::from_millis(2800));
        drop(sender.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_is_capped_and_skipped_for_buttons() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let start = Instant::now();
        let chatty = tokio::spawn({
            let tx = tx.clone();
            async move {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if tx.send(Nudge { debounce: true }).is_err() {
                        break;
                    }
                }
            }
        });
        wait_quiet(
            &mut rx,
            Duration::from_millis(1200),
            Duration::from_secs(4),
            &token,
        )
        .await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        chatty.abort();

        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let start = Instant::now();
        tx2.send(Nudge { debounce: false }).unwrap();
        wait_quiet(
            &mut rx2,
            Duration::from_millis(1200),
            Duration::from_secs(4),
            &token,
        )
        .await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(tx);
    }
}
