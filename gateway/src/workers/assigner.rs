//! Handoff housekeeping, every few seconds, for each tenant with chats waiting for an agent:
//! - auto-assignment: waiting chats go to the tenant's online agents in round-robin order, up
//!   to `max_chats_per_agent` open chats each (with nobody online or all at their cap, a chat
//!   keeps waiting for a manual claim);
//! - SLA: a chat waiting `sla_renotify` is told once more that the team will reply; one waiting
//!   `sla_back_to_bot` goes back to the bot, with an apology.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, now_ms};

/// Open chats per agent when the tenant does not say.
pub const DEFAULT_MAX_CHATS_PER_AGENT: u32 = 5;
/// When a waiting customer is told again, when the tenant does not say.
pub const DEFAULT_SLA_RENOTIFY: Duration = Duration::from_secs(10 * 60);
/// When a waiting chat goes back to the bot, when the tenant does not say.
pub const DEFAULT_SLA_BACK_TO_BOT: Duration = Duration::from_secs(60 * 60);

/// The typical wait for a claim when a tenant has no history yet, in minutes.
pub const DEFAULT_TYPICAL_WAIT_MINUTES: u32 = 5;

/// A tenant's handoff settings.
#[derive(Debug, Clone, Copy)]
pub struct HandoffRules {
    /// `max_chats_per_agent`.
    pub max_chats_per_agent: u32,
    /// `sla_renotify`.
    pub renotify: Duration,
    /// `sla_back_to_bot`.
    pub back_to_bot: Duration,
}

impl Default for HandoffRules {
    fn default() -> Self {
        Self {
            max_chats_per_agent: DEFAULT_MAX_CHATS_PER_AGENT,
            renotify: DEFAULT_SLA_RENOTIFY,
            back_to_bot: DEFAULT_SLA_BACK_TO_BOT,
        }
    }
}

/// What the loop works with.
#[derive(Debug, Clone)]
pub struct Assigner {
    /// Storage.
    pub store: Store,
    /// The consoles hear of every chat a pass changed.
    pub coord: Arc<dyn crate::coord::Coord>,
    /// Handoff settings by tenant.
    pub rules: Arc<HashMap<String, HandoffRules>>,
    /// Live bot settings (business hours for the re-notify's wait).
    pub bots: Arc<crate::bot::LiveBots>,
    /// Wakes the dispatcher for notices.
    pub wake: Arc<Notify>,
}

impl Assigner {
    /// Starts the loop on `tracker`, a pass every `every`.
    pub fn spawn(self, every: Duration, tracker: &TaskTracker, token: CancellationToken) {
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
                let changed =
                    run_once(&self.store, &self.rules, &self.bots, &self.wake, now_ms()).await;
                for (tenant, conversation) in changed {
                    crate::coord::announce(
                        &self.store,
                        self.coord.as_ref(),
                        &tenant,
                        &conversation,
                    )
                    .await;
                }
            }
        });
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// What a customer of `tenant_id` handed to a human at `now` should expect: closed until
/// the next opening, nobody online, or about how many minutes (the tenant's median recent
/// wait, times the rounds of the other waiting chats shared among the agents online). When the load
/// cannot be read, the business hours alone decide.
pub async fn wait_outlook(
    store: &Store,
    hours: &flows::BusinessHours,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> flows::WaitOutlook {
    let load = match store.wait_load(tenant_id, conversation_id).await {
        Ok(load) => load,
        Err(err) => {
            tracing::warn!(error = %err.chain(), tenant = %tenant_id, "reading the queue load failed; the wait notice has no estimate");
            return match hours.availability(now) {
                flows::Availability::Closed(opening) => flows::WaitOutlook::Closed(opening),
                flows::Availability::Open => flows::WaitOutlook::NobodyOnline,
            };
        }
    };
    let typical = load.typical_minutes(DEFAULT_TYPICAL_WAIT_MINUTES);
    let minutes = flows::hours::expected_minutes(typical, load.waiting, load.agents_online);
    hours.outlook(now, load.agents_online, minutes)
}

/// One pass over every tenant with waiting chats, as of `now`. Returns the (tenant,
/// conversation) pairs it assigned or notified, for the consoles' live events.
pub async fn run_once(
    store: &Store,
    rules: &HashMap<String, HandoffRules>,
    bots: &crate::bot::LiveBots,
    wake: &Notify,
    now: i64,
) -> Vec<(String, String)> {
    let mut changed = Vec::new();
    let tenants = match store.tenants_waiting().await {
        Ok(tenants) => tenants,
        Err(err) => {
            tracing::warn!(error = %err.chain(), "listing waiting chats failed");
            return changed;
        }
    };
    for tenant in tenants {
        let rules = rules.get(&tenant).copied().unwrap_or_default();
        match store
            .auto_assign(&tenant, i64::from(rules.max_chats_per_agent), now)
            .await
        {
            Ok(assigned) if !assigned.is_empty() => {
                tracing::info!(tenant = %tenant, chats = assigned.len(), "waiting chats assigned to online agents");
                changed.extend(assigned.into_iter().map(|(id, _)| (tenant.clone(), id)));
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err.chain(), tenant = %tenant, "auto-assignment failed");
            }
        }
        let due = store
            .sla_due(
                &tenant,
                now - millis(rules.renotify),
                now - millis(rules.back_to_bot),
            )
            .await;
        let (renotify, back) = match due {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err.chain(), tenant = %tenant, "reading waiting chats failed");
                continue;
            }
        };
        let notices = renotify
            .into_iter()
            .map(|(id, locale)| (id, locale, false))
            .chain(back.into_iter().map(|(id, locale)| (id, locale, true)));
        for (id, locale, back_to_bot) in notices {
            let locale = flows::Locale::parse(&locale).unwrap_or_default();
            let text = if back_to_bot {
                flows::texts::back_to_bot(locale).to_owned()
            } else {
                let outlook =
                    wait_outlook(store, &bots.get(&tenant).hours, &tenant, &id, now).await;
                flows::texts::wait_notice(locale, flows::texts::still_waiting(locale), &outlook)
            };
            match store
                .sla_notice(&tenant, &id, &text, back_to_bot, now)
                .await
            {
                Ok(true) => {
                    wake.notify_one();
                    changed.push((tenant.clone(), id));
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err.chain(), tenant = %tenant, "SLA notice failed");
                }
            }
        }
    }
    changed
}
