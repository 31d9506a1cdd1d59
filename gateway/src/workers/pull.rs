//! Pull workers: one per provider account that receives by pulling (Telegram long polling).
//! Each pulls from the stored offset, applies the events, then stores the next offset; a
//! restart resumes after the last applied part, and the inbox dedupe covers a replay.

use std::sync::Arc;
use std::time::Duration;

use channels::ChannelError;
use channels::provider::Pull;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::inbound::InboundEvents;
use crate::accounts::Accounts;

/// Starts a pull worker for every pulled account of `accounts` on `tracker`.
pub fn spawn(
    accounts: &Accounts,
    inbound: &InboundEvents,
    tracker: &TaskTracker,
    token: &CancellationToken,
) {
    for provider in accounts.providers() {
        let kind = provider.kind();
        for pull in provider.pulls() {
            let Some(route) = accounts.route(kind, pull.account()).cloned() else {
                continue;
            };
            tracker.spawn(run(pull, route, inbound.clone(), token.clone()));
        }
    }
}

async fn run(
    pull: Arc<dyn Pull>,
    route: Arc<crate::accounts::Route>,
    inbound: InboundEvents,
    token: CancellationToken,
) {
    tokio::select! {
        () = pull.prepare() => {}
        () = token.cancelled() => return,
    }
    let mut offset = loop {
        match inbound.store.poll_offset(&route.account_id).await {
            Ok(offset) => break offset,
            Err(err) => {
                tracing::warn!(error = %err.chain(), "reading the poll offset failed; retrying");
                if sleep_or_stop(&token, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    let mut backoff = Duration::from_millis(500);
    tracing::info!(channel = %route.kind, account = %route.key, "pulling started");
    loop {
        // Over `server.max_pending_messages`: pull nothing until the backlog shrinks (the
        // provider keeps the updates; the offset does not move).
        if let Err(over) = inbound.ingress.admit() {
            tracing::debug!(channel = %route.kind, pending = over.pending, "pulling paused: too many pending messages");
            if sleep_or_stop(&token, Duration::from_secs(over.retry_after_secs)).await {
                break;
            }
            continue;
        }
        let result = tokio::select! {
            r = pull.pull(offset) => r,
            () = token.cancelled() => break,
        };
        match result {
            Ok(parts) => {
                backoff = Duration::from_millis(500);
                let before = offset;
                let mut failed = false;
                for part in parts {
                    let next = part.next_offset.unwrap_or(offset);
                    if next <= offset {
                        continue;
                    }
                    let events = part
                        .accounts
                        .into_iter()
                        .filter(|a| a.account == route.key)
                        .flat_map(|a| a.events)
                        .collect();
                    if inbound.apply(&route, events).await.is_err() {
                        failed = true;
                        break;
                    }
                    offset = next;
                }
                if offset != before
                    && let Err(err) = inbound
                        .store
                        .set_poll_offset(&route.account_id, offset)
                        .await
                {
                    tracing::warn!(error = %err.chain(), "storing the poll offset failed");
                }
                if failed && sleep_or_stop(&token, Duration::from_secs(1)).await {
                    break;
                }
            }
            Err(err) => {
                let wait = match &err {
                    ChannelError::RateLimited {
                        retry_after: Some(wait),
                    } => *wait,
                    _ => {
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                tracing::warn!(channel = %route.kind, error = %err, ?wait, "pulling failed; retrying");
                if sleep_or_stop(&token, wait).await {
                    break;
                }
            }
        }
    }
    tracing::info!(channel = %route.kind, account = %route.key, "pulling stopped");
}

/// Sleeps `wait`; returns true when `token` was cancelled first.
async fn sleep_or_stop(token: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = token.cancelled() => true,
    }
}
