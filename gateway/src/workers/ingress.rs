//! Group commit for inbound messages: handlers hand items to one writer task, which stores
//! everything queued so far in one transaction and answers each handler when it committed.

use std::sync::Arc;
use std::time::Instant;

use channels::webchat::{EventBus, WebchatEvent, WebchatMessage};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::lanes::Lanes;
use crate::admission::Admission;
use crate::store::{Accepted, InboundItem, Refusal, Store, StoreError, StoredMessage};
use crate::telemetry;

/// Most items stored in one transaction.
const MAX_GROUP: usize = 512;
/// Items queued before handlers wait (backpressure).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Accepted, IngressError>>;
/// One handler's message, its answer channel and its `inbox.commit` span (the message's trace
/// continues from it in the conversation's lane).
type Queued = (InboundItem, Reply, tracing::Span);

/// Why an inbound message was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngressError {
    /// The database did not commit the group; the caller must answer with a retryable error.
    #[error("storage unavailable")]
    Unavailable,
    /// The server is shutting down; the caller must answer with a retryable error.
    #[error("shutting down")]
    ShuttingDown,
    /// The database refused this message for good (the rest of its group was stored);
    /// retrying the same message cannot succeed.
    #[error("the message cannot be stored: {0}")]
    Refused(Refusal),
}

/// Handle for submitting inbound messages.
#[derive(Debug, Clone)]
pub struct Ingress {
    tx: mpsc::Sender<Queued>,
    admission: Arc<Admission>,
}

impl Ingress {
    /// Starts the writer task on `tracker`; it stops after `token` is cancelled and the queue
    /// is drained. Every unanswered inbox row it commits is counted in `admission`.
    pub fn spawn(
        store: Store,
        lanes: Lanes,
        coord: Arc<dyn crate::coord::Coord>,
        admission: Arc<Admission>,
        tracker: &TaskTracker,
        token: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(store, lanes, coord, admission.clone(), rx, token));
        Self { tx, admission }
    }

    /// The admission state (`server.max_pending_messages`).
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The check callers run before handing over messages: the pending limit, and the length
    /// of the group commit's queue (see [`crate::admission`]).
    ///
    /// # Errors
    /// [`Overloaded`](crate::admission::Overloaded): answer 503 without storing anything.
    pub fn admit(&self) -> Result<(), crate::admission::Overloaded> {
        let queued = self.tx.max_capacity().saturating_sub(self.tx.capacity());
        self.admission.check_queued(queued)
    }

    /// Stores one message durably; returns only after commit.
    ///
    /// # Errors
    /// [`IngressError`] when nothing was stored (the caller answers 503 so the sender retries).
    pub async fn accept(&self, mut item: InboundItem) -> Result<Accepted, IngressError> {
        let span = tracing::info_span!("inbox.commit", channel = item.channel_kind.as_str());
        item.trace_id = telemetry::trace_id(&span);
        let (reply, answer) = oneshot::channel();
        async {
            self.tx
                .send((item, reply, tracing::Span::current()))
                .await
                .map_err(|_| IngressError::ShuttingDown)?;
            answer.await.map_err(|_| IngressError::ShuttingDown)?
        }
        .instrument(span)
        .await
    }
}

async fn run(
    store: Store,
    lanes: Lanes,
    coord: Arc<dyn crate::coord::Coord>,
    admission: Arc<Admission>,
    mut rx: mpsc::Receiver<Queued>,
    token: CancellationToken,
) {
    let mut group: Vec<Queued> = Vec::with_capacity(MAX_GROUP);
    loop {
        let first = tokio::select! {
            item = rx.recv() => item,
            () = token.cancelled() => {
                // Stop taking new work but store what handlers already handed over.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        commit_group(&store, &lanes, coord.as_ref(), &admission, &mut group).await;
    }
}

async fn commit_group(
    store: &Store,
    lanes: &Lanes,
    bus: &dyn EventBus,
    admission: &Admission,
    group: &mut Vec<Queued>,
) {
    let items: Vec<InboundItem> = group.iter().map(|(item, ..)| item.clone()).collect();
    let started = Instant::now();
    let result = store.accept_inbound(&items).await;
    metrics::histogram!(telemetry::INGRESS_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::histogram!(telemetry::INGRESS_BATCH_SIZE).record(items.len() as f64);
    match result {
        Ok(outcomes) => {
            for ((item, reply, span), outcome) in group.drain(..).zip(outcomes) {
                if let Accepted::New {
                    conversation_id,
                    message,
                } = &outcome
                {
                    metrics::counter!(telemetry::INBOUND_TOTAL, "channel" => item.channel_kind.as_str(), "outcome" => "new").increment(1);
                    if item.channel_kind.is_webchat() {
                        bus.publish(
                            conversation_id,
                            WebchatEvent::Message {
                                message: to_webchat(message),
                            },
                        );
                    }
                    if item.answer {
                        // Stored unanswered (`processed_at` empty): pending until answered.
                        admission.accepted(1);
                        telemetry::hand_over(telemetry::Handoff::Answer, conversation_id, &span);
                        lanes.wake(conversation_id, item.kind == flows::TurnKind::Text);
                    }
                } else if let Accepted::Refused { refusal, cause } = &outcome {
                    metrics::counter!(telemetry::INBOUND_TOTAL, "channel" => item.channel_kind.as_str(), "outcome" => "refused").increment(1);
                    tracing::error!(
                        channel = %item.channel_kind,
                        tenant = %item.tenant_id,
                        error = %cause,
                        "the database refused an inbound message; the rest of its group was stored"
                    );
                    let _ = reply.send(Err(IngressError::Refused(*refusal)));
                    continue;
                } else {
                    metrics::counter!(telemetry::INBOUND_TOTAL, "channel" => item.channel_kind.as_str(), "outcome" => "duplicate").increment(1);
                }
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(err) => {
            log_store_error(&err);
            for (item, reply, _) in group.drain(..) {
                metrics::counter!(telemetry::INBOUND_TOTAL, "channel" => item.channel_kind.as_str(), "outcome" => "error").increment(1);
                let _ = reply.send(Err(IngressError::Unavailable));
            }
        }
    }
}

fn log_store_error(err: &StoreError) {
    tracing::error!(error = %err.chain(), "inbound group commit failed; senders were told to retry");
}

/// Converts a stored message into its web chat form.
pub fn to_webchat(message: &StoredMessage) -> WebchatMessage {
    WebchatMessage {
        id: message.id,
        author: channels::model::Author::parse(&message.author),
        text: message.body.clone(),
        created_at: channels::webchat::rfc3339_millis(message.created_at_ms),
        client_message_id: (message.author == "customer")
            .then(|| message.external_id.clone())
            .flatten(),
        in_reply_to: message.in_reply_to.clone(),
        choices: message.choices.clone(),
        status: message.status.clone(),
        citations: message.citations.clone(),
    }
}
