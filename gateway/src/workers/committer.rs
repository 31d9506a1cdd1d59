//! Group commit for answers: lanes hand their finished turns to one task, which commits
//! everything queued so far in one transaction and answers each lane with its own outcome.
//! Under load this turns hundreds of small transactions (and their WAL page writes) into a
//! few; with one lane it is a plain commit.

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::store::{Store, StoreError, Turn, TurnOutcome};

/// Most turns committed in one transaction: large enough to amortize the commit, small enough
/// that a webhook's inbox commit never waits long behind it for the single SQLite writer.
const MAX_GROUP: usize = 32;

type Reply = oneshot::Sender<Result<TurnOutcome, StoreError>>;

/// Handle for committing finished turns.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<(Turn, Reply)>,
}

impl Committer {
    /// Starts the committer task on `tracker`. It stops when every handle is dropped, after
    /// committing what was queued.
    pub fn spawn(store: Store, tracker: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::channel(MAX_GROUP * 4);
        tracker.spawn(run(store, rx));
        Self { tx }
    }

    /// Commits one turn (grouped with whatever other lanes finished meanwhile).
    ///
    /// # Errors
    /// [`StoreError`] when nothing was stored; the batch stays pending.
    pub async fn commit(&self, turn: Turn) -> Result<TurnOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((turn, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<(Turn, Reply)>) {
    let mut group: Vec<(Turn, Reply)> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        let commits: Vec<&Turn> = group.iter().map(|(t, _)| t).collect();
        let result = store.commit_turns(&commits).await;
        drop(commits);
        match result {
            Ok(outcomes) => {
                for ((_, reply), outcome) in group.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) if group.len() == 1 => {
                if let Some((_, reply)) = group.pop() {
                    let _ = reply.send(Err(err));
                }
            }
            Err(_) => {
                // Commit one by one so a single failing turn does not hold back the others.
                for (turn, reply) in group.drain(..) {
                    let _ = reply.send(store.commit_turn(&turn).await);
                }
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}
