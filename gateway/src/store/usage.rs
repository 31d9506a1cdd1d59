//! Usage counters: per tenant, local day and channel kind, bumped inside the transactions
//! that store the messages (so they are exact across restarts and never count a duplicate or
//! a superseded turn), and read back for the owner's usage page and the monthly quotas.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use sqlx::Row;

use super::{Store, StoreError};

/// Each tenant's business-hours time zone, which decides the day usage is counted on
/// (default `Asia/Jakarta`). Kept current by `crate::bot::LiveBots`.
#[derive(Debug, Default)]
pub(super) struct UsageDays {
    by_tenant: RwLock<HashMap<String, flows::BusinessHours>>,
}

impl UsageDays {
    /// The tenant's local date at `ms`, `YYYY-MM-DD`.
    pub(super) fn day(&self, tenant_id: &str, ms: i64) -> String {
        let zones = self
            .by_tenant
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match zones.get(tenant_id) {
            Some(hours) => hours.local_day(ms),
            None => flows::BusinessHours::always_open().local_day(ms),
        }
    }

    /// Sets the tenant's zone (from its live business hours).
    pub(super) fn set(&self, tenant_id: &str, hours: flows::BusinessHours) {
        self.by_tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant_id.to_owned(), hours);
    }
}

/// What one write adds to a day's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UsageDelta {
    pub(super) messages_in: i64,
    pub(super) messages_out: i64,
    pub(super) conversations: i64,
    pub(super) handoffs: i64,
    pub(super) answer_turns: i64,
    pub(super) answered: i64,
    pub(super) abstained: i64,
    pub(super) prompt_tokens: i64,
    pub(super) completion_tokens: i64,
}

impl UsageDelta {
    fn accumulate(&mut self, other: &Self) {
        self.messages_in += other.messages_in;
        self.messages_out += other.messages_out;
        self.conversations += other.conversations;
        self.handoffs += other.handoffs;
        self.answer_turns += other.answer_turns;
        self.answered += other.answered;
        self.abstained += other.abstained;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// The usage of a group transaction, by (tenant, day, channel), written at its end in key
/// order: every writer takes the counter rows' locks in one global order, after its
/// conversations' locks, so concurrent group commits (replicas on Postgres) cannot deadlock.
#[derive(Debug, Default)]
pub(super) struct UsageBatch {
    rows: BTreeMap<(String, String, String), UsageDelta>,
}

impl UsageBatch {
    /// Adds `delta` to the tenant's `day` and `channel`.
    pub(super) fn add(&mut self, tenant_id: &str, day: String, channel: &str, delta: &UsageDelta) {
        self.rows
            .entry((tenant_id.to_owned(), day, channel.to_owned()))
            .or_default()
            .accumulate(delta);
    }

    /// Adds everything `other` holds.
    pub(super) fn merge(&mut self, other: Self) {
        for (key, delta) in other.rows {
            self.rows.entry(key).or_default().accumulate(&delta);
        }
    }

    /// Writes the counters inside `tx`: one statement for all of them (each statement is a
    /// round trip to the database's worker thread, and the writer is the bottleneck), in key
    /// order.
    pub(super) async fn flush(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), StoreError> {
        let mut script = super::script::Script::new(super::dialect_of(tx));
        self.flush_into(&mut script)?;
        script.run(tx).await
    }

    /// Adds the counters' upsert to `script`, in key order (see [`UsageBatch::flush`]).
    pub(super) fn flush_into(
        self,
        script: &mut super::script::Script<'_>,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = self
            .rows
            .into_iter()
            .filter(|(_, delta)| *delta != UsageDelta::default())
            .collect();
        for part in rows.chunks(FLUSH_ROWS) {
            script.statement(&format!(
                "{UPSERT_HEAD} VALUES {} {UPSERT_TAIL}",
                super::rows(part.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            ));
            for ((tenant_id, day, channel), delta) in part {
                script
                    .bind(tenant_id.clone())?
                    .bind(day.clone())?
                    .bind(channel.clone())?
                    .bind(delta.messages_in)?
                    .bind(delta.messages_out)?
                    .bind(delta.conversations)?
                    .bind(delta.handoffs)?
                    .bind(delta.answer_turns)?
                    .bind(delta.answered)?
                    .bind(delta.abstained)?
                    .bind(delta.prompt_tokens)?
                    .bind(delta.completion_tokens)?;
            }
        }
        Ok(())
    }
}

/// Counter rows per statement (12 parameters each, well under SQLite's 32,766).
const FLUSH_ROWS: usize = 200;

const UPSERT_HEAD: &str = "INSERT INTO usage_daily (tenant_id, day, channel, messages_in, messages_out, conversations, \
     handoffs, answer_turns, answered, abstained, prompt_tokens, completion_tokens)";

const UPSERT_TAIL: &str = "ON CONFLICT (tenant_id, day, channel) DO UPDATE SET \
     messages_in = usage_daily.messages_in + excluded.messages_in, \
     messages_out = usage_daily.messages_out + excluded.messages_out, \
     conversations = usage_daily.conversations + excluded.conversations, \
     handoffs = usage_daily.handoffs + excluded.handoffs, \
     answer_turns = usage_daily.answer_turns + excluded.answer_turns, \
     answered = usage_daily.answered + excluded.answered, \
     abstained = usage_daily.abstained + excluded.abstained, \
     prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens";

/// Adds `delta` to the tenant's counters of `day` and `channel`, inside `tx`.
pub(super) async fn bump(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    day: &str,
    channel: &str,
    delta: &UsageDelta,
) -> Result<(), StoreError> {
    let mut batch = UsageBatch::default();
    batch.add(tenant_id, day.to_owned(), channel, delta);
    batch.flush(tx).await
}

/// Records the conversation's first response at `now` (an agent's message; a bot turn sets it
/// in the statement that writes the conversation), once, when a customer wrote first.
pub(super) async fn first_response(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE conversations SET first_response_at = $1 WHERE id = $2 AND tenant_id = $3 \
         AND first_response_at IS NULL AND first_inbound_at IS NOT NULL",
    )
    .bind(now)
    .bind(conversation_id)
    .bind(tenant_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One day and channel of a tenant's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageDay {
    /// `YYYY-MM-DD`, the tenant's local date.
    pub day: String,
    /// Channel kind (`whatsapp`, `telegram`, `webchat`).
    pub channel: String,
    /// Customer messages stored.
    pub messages_in: i64,
    /// Bot and agent messages queued.
    pub messages_out: i64,
    /// Conversations whose first customer message came that day.
    pub conversations: i64,
    /// Chats the bot handed to a human.
    pub handoffs: i64,
    /// Turns that consulted the knowledge base.
    pub answer_turns: i64,
    /// Of those, answered from a passage (extractive or model).
    pub answered: i64,
    /// Of those, abstained (recorded as unanswered).
    pub abstained: i64,
    /// Median first-response time of the day's new conversations, ms.
    pub first_response_p50_ms: Option<i64>,
    /// Model prompt tokens.
    pub prompt_tokens: i64,
    /// Model completion tokens.
    pub completion_tokens: i64,
}

/// A console quota override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaOverride {
    /// Messages (in + out) per month; 0: unlimited.
    pub monthly_messages: i64,
    /// Model tokens (prompt + completion) per month; 0: unlimited.
    pub monthly_llm_tokens: i64,
}

/// A tenant's usage against its quotas and daily budget (see [`Store::budget_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUsage {
    /// Messages in and out this month.
    pub month_messages: i64,
    /// Model tokens this month.
    pub month_tokens: i64,
    /// Model tokens today.
    pub day_tokens: i64,
    /// The console's quota override, if an owner set one.
    pub quota_override: Option<QuotaOverride>,
}

impl Store {
    /// The day usage of `tenant_id` is counted on at `ms`.
    pub fn usage_day(&self, tenant_id: &str, ms: i64) -> String {
        self.days.day(tenant_id, ms)
    }

    /// Sets the tenant's time zone for usage days.
    pub fn set_usage_zone(&self, tenant_id: &str, hours: flows::BusinessHours) {
        self.days.set(tenant_id, hours);
    }

    /// The tenant's usage from `from` to `to` (`YYYY-MM-DD`, inclusive), by day then channel.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn usage(
        &self,
        tenant_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageDay>, StoreError> {
        let rows = sqlx::query(
            "SELECT day, channel, messages_in, messages_out, conversations, handoffs, answer_turns, \
             answered, abstained, prompt_tokens, completion_tokens FROM usage_daily \
             WHERE tenant_id = $1 AND day >= $2 AND day <= $3 ORDER BY day, channel",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await?;
        let mut days = BTreeMap::new();
        for r in &rows {
            let day = UsageDay {
                day: r.try_get("day")?,
                channel: r.try_get("channel")?,
                messages_in: r.try_get("messages_in")?,
                messages_out: r.try_get("messages_out")?,
                conversations: r.try_get("conversations")?,
                handoffs: r.try_get("handoffs")?,
                answer_turns: r.try_get("answer_turns")?,
                answered: r.try_get("answered")?,
                abstained: r.try_get("abstained")?,
                first_response_p50_ms: None,
                prompt_tokens: r.try_get("prompt_tokens")?,
                completion_tokens: r.try_get("completion_tokens")?,
            };
            days.insert((day.day.clone(), day.channel.clone()), day);
        }
        let responses = sqlx::query(
            "SELECT day, channel, ms FROM usage_first_responses \
             WHERE tenant_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(tenant_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await?;
        let mut times: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for r in &responses {
            times
                .entry((r.try_get("day")?, r.try_get("channel")?))
                .or_default()
                .push(r.try_get("ms")?);
        }
        // Since migration 24 the times are on the conversations, counted on the day of the
        // response in the tenant's zone: read a day around the range, keep the range's days.
        let (Some(start), Some(end)) = (flows::utc_day_start_ms(from), flows::utc_day_start_ms(to))
        else {
            return Err(StoreError::Corrupt(format!(
                "not a date range: {from}..{to}"
            )));
        };
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let conversations = sqlx::query(
            "SELECT a.kind AS channel, c.first_inbound_at, c.first_response_at FROM conversations c \
             JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.first_response_at >= $2 AND c.first_response_at < $3",
        )
        .bind(tenant_id)
        .bind(start - DAY_MS)
        .bind(end + 2 * DAY_MS)
        .fetch_all(&self.read)
        .await?;
        for r in &conversations {
            let first: Option<i64> = r.try_get("first_inbound_at")?;
            let responded: i64 = r.try_get("first_response_at")?;
            let Some(first) = first else { continue };
            let day = self.days.day(tenant_id, responded);
            if day.as_str() < from || day.as_str() > to {
                continue;
            }
            times
                .entry((day, r.try_get("channel")?))
                .or_default()
                .push((responded - first).max(0));
        }
        for (key, mut ms) in times {
            ms.sort_unstable();
            // The lower middle value for an even count: always a time that happened.
            let median = ms[(ms.len() - 1) / 2];
            let day = days.entry(key.clone()).or_insert_with(|| UsageDay {
                day: key.0,
                channel: key.1,
                ..UsageDay::default()
            });
            day.first_response_p50_ms = Some(median);
        }
        Ok(days.into_values().collect())
    }

    /// What the answer path checks before a model call, in one read: the month's messages and
    /// tokens, the day's tokens and the console's quota override, for the tenant's usage `day`
    /// (`YYYY-MM-DD`, local; its month is the quota's). Counter rows only (a few per day and
    /// channel), never the day's `llm_usage` rows: the read must not grow with the traffic.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn budget_usage(
        &self,
        tenant_id: &str,
        day: &str,
    ) -> Result<BudgetUsage, StoreError> {
        let month: String = day.chars().take(7).collect();
        // One scan of the month's counter rows (the day is one of them); an aggregate without
        // GROUP BY is always one row, so the override joins on it even when nothing was used.
        let row = sqlx::query(
            "SELECT u.month_messages, u.month_tokens, u.day_tokens, \
               q.monthly_messages, q.monthly_llm_tokens FROM ( \
               SELECT CAST(COALESCE(SUM(messages_in + messages_out), 0) AS BIGINT) AS month_messages, \
               CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) AS month_tokens, \
               CAST(COALESCE(SUM(CASE WHEN day = $4 THEN prompt_tokens + completion_tokens ELSE 0 END), 0) \
                 AS BIGINT) AS day_tokens \
               FROM usage_daily WHERE tenant_id = $1 AND day >= $2 AND day <= $3) AS u \
             LEFT JOIN tenant_quotas q ON q.tenant_id = $1",
        )
        .bind(tenant_id)
        .bind(format!("{month}-01"))
        .bind(format!("{month}-31"))
        .bind(day)
        .fetch_one(&self.read)
        .await?;
        let monthly_messages: Option<i64> = row.try_get("monthly_messages")?;
        let monthly_llm_tokens: Option<i64> = row.try_get("monthly_llm_tokens")?;
        Ok(BudgetUsage {
            month_messages: row.try_get("month_messages")?,
            month_tokens: row.try_get("month_tokens")?,
            day_tokens: row.try_get("day_tokens")?,
            quota_override: monthly_messages.zip(monthly_llm_tokens).map(
                |(monthly_messages, monthly_llm_tokens)| QuotaOverride {
                    monthly_messages,
                    monthly_llm_tokens,
                },
            ),
        })
    }

    /// The tenant's console quota override, if an owner set one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn quota_override(
        &self,
        tenant_id: &str,
    ) -> Result<Option<QuotaOverride>, StoreError> {
        let row = sqlx::query(
            "SELECT monthly_messages, monthly_llm_tokens FROM tenant_quotas WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<QuotaOverride, StoreError> {
            Ok(QuotaOverride {
                monthly_messages: r.try_get("monthly_messages")?,
                monthly_llm_tokens: r.try_get("monthly_llm_tokens")?,
            })
        })
        .transpose()
    }

    /// Sets the tenant's console quota override.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn put_quota_override(
        &self,
        tenant_id: &str,
        quota: QuotaOverride,
        author: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenant_quotas (tenant_id, monthly_messages, monthly_llm_tokens, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET \
             monthly_messages = excluded.monthly_messages, monthly_llm_tokens = excluded.monthly_llm_tokens, \
             updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(quota.monthly_messages)
        .bind(quota.monthly_llm_tokens)
        .bind(author)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records that staff member `staff_id` was shown the notice `kind` for `period`; `true`
    /// the first time (show it), `false` after.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn notice_once(
        &self,
        tenant_id: &str,
        staff_id: &str,
        kind: &str,
        period: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO owner_notices (tenant_id, staff_id, kind, period, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, staff_id, kind, period) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(staff_id)
        .bind(kind)
        .bind(period)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(inserted.rows_affected() > 0)
    }
}
