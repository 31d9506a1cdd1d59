//! Admission control for inbound customer messages (`server.max_pending_messages`).
//!
//! Past capacity, acknowledging every webhook only grows the backlog of unanswered messages in
//! the database and in memory. Instead, WhatsApp and Telegram webhooks and web chat posts are
//! refused with a fast 503 `overloaded` and `Retry-After` *before* anything is stored, while
//! the number of pending inbox rows (accepted, not yet answered) is at the limit. Providers
//! retry on their own schedule and web chat clients honour `Retry-After`; a request that was
//! acknowledged is stored and answered as before, so nothing acknowledged is lost.
//!
//! A second bound keeps acknowledgements fast while the backlog is still under the limit: when
//! more messages wait for the inbound group commit than [`MAX_QUEUED`] (about two commits'
//! worth), new requests are shed too, instead of queueing for seconds until the sender times
//! out. `max_pending_messages = 0` turns both off.
//!
//! The check is one atomic load. The count it reads is the database's inbox depth (refreshed by
//! the recovery poller every `conversation.poll_interval`) plus the messages this process
//! committed since that refresh. Answers lower it at the next refresh, so shedding stops within
//! one poll interval of the backlog draining. With several replicas on one database the depth
//! is global but the in-between increments are each replica's own: between two refreshes every
//! replica may admit up to the limit less the last depth, so the backlog can overshoot the
//! limit by that much per extra replica for one poll interval at most.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Messages waiting for the inbound group commit beyond which requests are shed: about two
/// group commits' worth, so an admitted message is acknowledged after a few commits at most.
pub const MAX_QUEUED: usize = 1024;

/// Shared admission state: the limit and the estimated number of pending inbox rows.
#[derive(Debug)]
pub struct Admission {
    /// Most pending rows before ingress sheds; 0: no limit.
    limit: i64,
    /// `Retry-After` given with a 503, in whole seconds.
    retry_after_secs: u64,
    /// Pending inbox rows: the last refreshed depth plus what was committed since.
    pending: AtomicI64,
}

/// The server is over `server.max_pending_messages`: answer 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// Seconds the sender should wait before retrying (at least 1).
    pub retry_after_secs: u64,
    /// Pending messages when the request was refused.
    pub pending: i64,
}

impl Admission {
    /// Admission with `limit` pending messages (0: unlimited); `refresh` is how often the
    /// count is corrected from the database, which is the `Retry-After` given (at least 1 s).
    pub fn new(limit: u64, refresh: Duration) -> Self {
        let retry_after_secs = (refresh.as_secs() + u64::from(refresh.subsec_nanos() > 0)).max(1);
        Self {
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            retry_after_secs,
            pending: AtomicI64::new(0),
        }
    }

    /// Whether one more inbound request may be stored now.
    ///
    /// # Errors
    /// [`Overloaded`] while the pending count is at or over the limit.
    pub fn check(&self) -> Result<(), Overloaded> {
        if self.limit == 0 {
            return Ok(());
        }
        let pending = self.pending.load(Ordering::Relaxed);
        if pending < self.limit {
            Ok(())
        } else {
            Err(Overloaded {
                retry_after_secs: self.retry_after_secs,
                pending,
            })
        }
    }

    /// [`Admission::check`], and also refuses while `queued` messages (handed to the group
    /// commit, not yet stored) are [`MAX_QUEUED`] or more.
    ///
    /// # Errors
    /// [`Overloaded`] over either bound.
    pub fn check_queued(&self, queued: usize) -> Result<(), Overloaded> {
        self.check()?;
        if self.limit != 0 && queued >= MAX_QUEUED {
            return Err(Overloaded {
                retry_after_secs: self.retry_after_secs,
                pending: self.pending(),
            });
        }
        Ok(())
    }

    /// Counts `n` inbox rows committed unanswered by this process.
    pub fn accepted(&self, n: i64) {
        self.pending.fetch_add(n, Ordering::Relaxed);
    }

    /// The current estimate of pending messages.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Starts a refresh: remember the estimate before asking the database for its depth.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.pending.load(Ordering::Relaxed))
    }

    /// Ends a refresh started with `before`: the estimate becomes the database's `depth` plus
    /// what this process committed while the query ran (which the depth may already count:
    /// the estimate errs high, towards shedding, until the next refresh). Increments are never
    /// lost: the correction is one atomic add.
    pub fn refresh(&self, before: Snapshot, depth: i64) {
        self.pending
            .fetch_add(depth.saturating_sub(before.0), Ordering::Relaxed);
    }
}

/// The estimate when a refresh began (see [`Admission::snapshot`]).
#[derive(Debug, Clone, Copy)]
pub struct Snapshot(i64);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn no_limit_admits_everything() {
        let admission = Admission::new(0, Duration::from_secs(1));
        admission.accepted(1_000_000);
        assert_eq!(admission.check(), Ok(()));
    }

    #[test]
    fn sheds_at_the_limit_and_admits_again_after_the_backlog_drains() {
        let admission = Admission::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert_eq!(admission.check(), Ok(()));
            admission.accepted(1);
        }
        assert_eq!(
            admission.check(),
            Err(Overloaded {
                retry_after_secs: 1,
                pending: 3
            })
        );
        // Two were answered: the next refresh reads a depth of 1.
        let before = admission.snapshot();
        admission.refresh(before, 1);
        assert_eq!(admission.pending(), 1);
        assert_eq!(admission.check(), Ok(()));
    }

    #[test]
    fn commits_during_a_refresh_are_not_lost() {
        let admission = Admission::new(10, Duration::from_secs(1));
        admission.accepted(5);
        let before = admission.snapshot();
        // Two commits land while the depth query runs; the depth read does not see them.
        admission.accepted(2);
        admission.refresh(before, 4);
        assert_eq!(admission.pending(), 6);
        // The next refresh, with nothing in flight, is exact.
        let before = admission.snapshot();
        admission.refresh(before, 6);
        assert_eq!(admission.pending(), 6);
    }

    #[test]
    fn a_long_commit_queue_sheds_even_under_the_pending_limit() {
        let admission = Admission::new(10_000, Duration::from_secs(1));
        assert_eq!(admission.check_queued(MAX_QUEUED - 1), Ok(()));
        assert_eq!(
            admission
                .check_queued(MAX_QUEUED)
                .unwrap_err()
                .retry_after_secs,
            1
        );
        // No limit: no shedding at all.
        let unlimited = Admission::new(0, Duration::from_secs(1));
        assert_eq!(unlimited.check_queued(MAX_QUEUED * 10), Ok(()));
    }

    #[test]
    fn retry_after_is_the_refresh_interval_rounded_up() {
        let admission = Admission::new(1, Duration::from_millis(2500));
        admission.accepted(1);
        assert_eq!(admission.check().unwrap_err().retry_after_secs, 3);
    }
}
