//! The recovery poller: finds conversations with unanswered inbox rows (after a crash, a
//! restart, or a lost wake-up) and makes sure a lane handles each. It also refreshes the inbox
//! depth: the `sapa_inbox_depth` gauge and the count admission control sheds by.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::lanes::Lanes;
use crate::admission::Admission;
use crate::store::Store;
use crate::telemetry;

/// Conversations looked at per scan.
const SCAN_LIMIT: i64 = 2000;

/// Starts the poller: one scan at start, then every `interval`.
pub fn spawn(
    store: Store,
    lanes: Lanes,
    admission: Arc<Admission>,
    interval: Duration,
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            match store.pending_conversations(SCAN_LIMIT).await {
                Ok(conversations) => {
                    for conversation_id in &conversations {
                        lanes.ensure(conversation_id);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err.chain(), "scanning pending conversations failed")
                }
            }
            let before = admission.snapshot();
            match store.inbox_depth().await {
                Ok(depth) => {
                    admission.refresh(before, depth);
                    metrics::gauge!(telemetry::INBOX_DEPTH).set(depth as f64);
                }
                Err(err) => {
                    tracing::warn!(error = %err.chain(), "reading the inbox depth failed")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = token.cancelled() => break,
            }
        }
    });
}

/// How often the embedded database's write-ahead log is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Starts the checkpointer (embedded mode): keeps SQLite's write-ahead log short from a reader
/// connection, so the writer never pays for the checkpoint's fsync (see
/// [`Store::checkpoint`]).
pub fn spawn_checkpointer(store: Store, tracker: &TaskTracker, token: CancellationToken) {
    if store.dialect() != crate::store::Dialect::Sqlite {
        return;
    }
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
                () = token.cancelled() => break,
            }
            if let Err(err) = store.checkpoint().await {
                tracing::warn!(error = %err.chain(), "checkpointing the database log failed");
            }
        }
    });
}
