//! Follow-ups: scheduled by the turn commit that answered, claimed by the follow-up worker
//! with a lease, and decided (sent, cancelled or skipped) in one transaction that also queues
//! the outbox row, so a crash never sends one twice and never loses one.

use channels::ChannelKind;
use channels::model::{Author, Template};
use sqlx::Row;

use super::outbox::{AgentSend, FOLLOW_UP_PRIORITY, queue_send};
use super::{Dialect, Store, StoreError};

/// The rolling window of `max_per_week`, in ms.
const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
/// WhatsApp's customer service window, in ms.
const WHATSAPP_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A follow-up a turn schedules (replacing the conversation's pending one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFollowUp {
    /// When it goes out, Unix ms.
    pub due_at: i64,
    /// `scheduled`, or `quiet` when quiet hours deferred it.
    pub kind: &'static str,
    /// What is sent.
    pub text: String,
}

/// A due follow-up claimed by this worker until its lease ends.
#[derive(Debug, Clone)]
pub struct DueFollowUp {
    /// Row id.
    pub id: i64,
    /// Tenant slug.
    pub tenant_id: String,
    /// Conversation.
    pub conversation_id: String,
    /// The channel account of the conversation.
    pub channel_account_id: String,
    /// Its kind.
    pub channel_kind: ChannelKind,
}

/// What became of a due follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUpOutcome {
    /// Queued in the outbox (as the re-engagement template when `template`).
    Sent {
        /// Sent as the WhatsApp re-engagement template.
        template: bool,
    },
    /// Not sent, for good: the customer wrote meanwhile.
    Cancelled(&'static str),
    /// Not sent, for good: a rule forbids it (`handed_off`, `opted_out`, `weekly_limit`,
    /// `whatsapp_window_closed`, `closed`).
    Skipped(&'static str),
    /// Already decided elsewhere (another replica, or it was rescheduled).
    Gone,
}

impl Store {
    /// Claims up to `limit` pending follow-ups due at `now` for `lease_ms` (Unix ms), oldest
    /// due first. On Postgres concurrent claimers skip each other's rows; a claim whose
    /// worker died is taken again after its lease.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn claim_follow_ups(
        &self,
        now: i64,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<DueFollowUp>, StoreError> {
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE follow_ups SET locked_until = $1 WHERE id IN ( \
               SELECT f.id FROM follow_ups f WHERE f.state = 'pending' AND f.due_at <= $2 \
               AND (f.locked_until IS NULL OR f.locked_until < $2) \
               ORDER BY f.due_at LIMIT $3 {lock}) \
             RETURNING id, tenant_id, conversation_id"
        );
        let rows = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let tenant_id: String = row.try_get("tenant_id")?;
            let conversation_id: String = row.try_get("conversation_id")?;
            let account = sqlx::query(
                "SELECT c.channel_account_id, a.kind FROM conversations c \
                 JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
                 WHERE c.id = $1 AND c.tenant_id = $2",
            )
            .bind(&conversation_id)
            .bind(&tenant_id)
            .fetch_optional(&self.read)
            .await?;
            let Some(account) = account else {
                return Err(StoreError::Corrupt(format!(
                    "follow-up {id} has no conversation {conversation_id}"
                )));
            };
            due.push(DueFollowUp {
                id,
                tenant_id,
                conversation_id,
                channel_account_id: account.try_get("channel_account_id")?,
                channel_kind: super::channel_kind_of(&account, "kind")?,
            });
        }
        due.sort_by_key(|d| d.id);
        Ok(due)
    }

    /// Decides one claimed follow-up at `now` and, when every rule allows it, queues it in the
    /// outbox (below live answers) in the same transaction that marks it sent. Rules: not
    /// while a human owns the conversation or after it closed; cancelled when the customer
    /// wrote after it was scheduled; not to a contact who opted out; at most `max_per_week`
    /// sent to one contact in any 7 days; on WhatsApp outside the 24-hour window only as
    /// `template` (or not at all).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing changed and the row is retried after its lease.
    pub async fn deliver_follow_up(
        &self,
        due: &DueFollowUp,
        max_per_week: u32,
        template: Option<&Template>,
        now: i64,
    ) -> Result<FollowUpOutcome, StoreError> {
        let mut tx = self.write.begin().await?;
        let outcome = self
            .decide_follow_up(&mut tx, due, max_per_week, template, now)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Decides several claimed follow-ups as [`Store::deliver_follow_up`] does, in one
    /// transaction (the single SQLite writer pays one commit for the lot); `rules` gives each
    /// one's weekly limit and re-engagement template. Outcomes in input order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing changed and every row is retried after its lease.
    pub async fn deliver_follow_ups<'t>(
        &self,
        due: &[DueFollowUp],
        rules: impl Fn(&DueFollowUp) -> (u32, Option<&'t Template>),
        now: i64,
    ) -> Result<Vec<FollowUpOutcome>, StoreError> {
        let mut order: Vec<usize> = (0..due.len()).collect();
        // Conversation locks in one global order, as every group writer takes them.
        order.sort_by(|a, b| due[*a].conversation_id.cmp(&due[*b].conversation_id));
        let mut outcomes = vec![FollowUpOutcome::Gone; due.len()];
        let mut tx = self.write.begin().await?;
        for index in order {
            let (max_per_week, template) = rules(&due[index]);
            outcomes[index] = self
                .decide_follow_up(&mut tx, &due[index], max_per_week, template, now)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn decide_follow_up(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        due: &DueFollowUp,
        max_per_week: u32,
        template: Option<&Template>,
        now: i64,
    ) -> Result<FollowUpOutcome, StoreError> {
        // Writers to a conversation take its row lock first (see the module invariants).
        sqlx::query(
            "UPDATE conversations SET updated_at = updated_at WHERE id = $1 AND tenant_id = $2",
        )
        .bind(&due.conversation_id)
        .bind(&due.tenant_id)
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(
            "SELECT f.state AS follow_up_state, f.text, f.due_at, f.created_at, \
             c.state AS conversation_state, c.last_inbound_at, k.follow_up_opt_out, \
             (SELECT COUNT(*) FROM follow_ups s WHERE s.tenant_id = f.tenant_id \
                 AND s.contact_id = f.contact_id AND s.state = 'sent' AND s.updated_at > $3) AS sent_this_week \
             FROM follow_ups f \
             JOIN conversations c ON c.id = f.conversation_id AND c.tenant_id = f.tenant_id \
             JOIN contacts k ON k.id = f.contact_id AND k.tenant_id = f.tenant_id \
             WHERE f.id = $1 AND f.tenant_id = $2",
        )
        .bind(due.id)
        .bind(&due.tenant_id)
        .bind(now - WEEK_MS)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(FollowUpOutcome::Gone);
        };
        let state: String = row.try_get("follow_up_state")?;
        let due_at: i64 = row.try_get("due_at")?;
        if state != "pending" || due_at > now {
            // Decided elsewhere, or a turn moved it later after this worker claimed it (the
            // turn dropped the claim, so it is claimed again when due).
            return Ok(FollowUpOutcome::Gone);
        }
        let text: String = row.try_get("text")?;
        let created_at: i64 = row.try_get("created_at")?;
        let conversation_state: String = row.try_get("conversation_state")?;
        let last_inbound: Option<i64> = row.try_get("last_inbound_at")?;
        let opted_out: i64 = row.try_get("follow_up_opt_out")?;
        let sent_this_week: i64 = row.try_get("sent_this_week")?;
        let window_closed = due.channel_kind == ChannelKind::Whatsapp
            && last_inbound.is_some_and(|seen| now - seen >= WHATSAPP_WINDOW_MS);
        let outcome = if matches!(conversation_state.as_str(), "waiting_human" | "human") {
            FollowUpOutcome::Skipped("handed_off")
        } else if conversation_state == "closed" {
            FollowUpOutcome::Skipped("closed")
        } else if last_inbound.is_some_and(|seen| seen > created_at) {
            FollowUpOutcome::Cancelled("customer_wrote")
        } else if opted_out != 0 {
            FollowUpOutcome::Skipped("opted_out")
        } else if sent_this_week >= i64::from(max_per_week) {
            FollowUpOutcome::Skipped("weekly_limit")
        } else if window_closed && template.is_none() {
            FollowUpOutcome::Skipped("whatsapp_window_closed")
        } else {
            FollowUpOutcome::Sent {
                template: window_closed,
            }
        };
        let (new_state, reason) = match outcome {
            FollowUpOutcome::Sent { template: true } => ("sent", Some("reengagement_template")),
            FollowUpOutcome::Sent { template: false } => ("sent", None),
            FollowUpOutcome::Cancelled(reason) => ("cancelled", Some(reason)),
            FollowUpOutcome::Skipped(reason) => ("skipped", Some(reason)),
            FollowUpOutcome::Gone => return Ok(FollowUpOutcome::Gone),
        };
        // Conditional on `pending`: a replica whose lease ran out and another that took the row
        // over cannot both get here with one row changed.
        let changed = sqlx::query(
            "UPDATE follow_ups SET state = $1, reason = $2, locked_until = NULL, updated_at = $3 \
             WHERE id = $4 AND tenant_id = $5 AND state = 'pending'",
        )
        .bind(new_state)
        .bind(reason)
        .bind(now)
        .bind(due.id)
        .bind(&due.tenant_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(FollowUpOutcome::Gone);
        }
        if let FollowUpOutcome::Sent { template: closed } = outcome {
            let body = match template {
                Some(template) if closed => format!("[template {}]", template.name),
                _ => text,
            };
            let send = AgentSend {
                text: &body,
                template: template.filter(|_| closed),
                ..AgentSend::default()
            };
            let queued = queue_send(
                tx,
                &self.days,
                &due.tenant_id,
                &due.conversation_id,
                Author::Bot,
                &send,
                now,
                FOLLOW_UP_PRIORITY,
            )
            .await?;
            sqlx::query("UPDATE follow_ups SET message_id = $1 WHERE id = $2 AND tenant_id = $3")
                .bind(queued.message_id)
                .bind(due.id)
                .bind(&due.tenant_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(outcome)
    }

    /// Releases every follow-up claim (embedded mode start-up: this process is the only
    /// worker, so a claim left by a crashed run is stale).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn release_follow_up_claims(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE follow_ups SET locked_until = NULL WHERE state = 'pending' AND locked_until IS NOT NULL",
        )
        .execute(&self.write)
        .await?
        .rows_affected())
    }

    /// Whether the customer of a conversation opted out of follow-ups (console).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_follow_up_opt_out(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT k.follow_up_opt_out FROM conversations c \
             JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.id = $2",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("follow_up_opt_out")? != 0,
            None => false,
        })
    }

    /// A conversation's follow-ups, oldest first (tests and operators).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn follow_ups_of(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<FollowUpRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, state, reason, due_at, reschedules FROM follow_ups \
             WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY id",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FollowUpRow {
                    kind: r.try_get("kind")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    due_at: r.try_get("due_at")?,
                    reschedules: r.try_get("reschedules")?,
                })
            })
            .collect()
    }
}

/// One stored follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpRow {
    /// `scheduled` or `quiet`.
    pub kind: String,
    /// `pending`, `sent`, `cancelled` or `skipped`.
    pub state: String,
    /// Why it was cancelled or skipped (or `reengagement_template`).
    pub reason: Option<String>,
    /// When it is (was) due, Unix ms.
    pub due_at: i64,
    /// How many later answers moved it (the customer kept writing).
    pub reschedules: i64,
}

/// Inside a turn's commit: moves the conversation's pending follow-up to `plan` (in place, so
/// a chatty conversation keeps one row instead of one per answer), or cancels it when the turn
/// plans none (the customer wrote), and records the customer's opt-out command. A claim on the
/// row is dropped; a worker that claimed it for the old time finds it not yet due (see
/// [`Store::deliver_follow_up`]).
/// Stores whether the conversation's contact opted out of follow-ups.
pub(super) async fn set_opt_out(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    conversation_id: &str,
    opt_out: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE contacts SET follow_up_opt_out = $1 WHERE tenant_id = $2 AND id = \
         (SELECT contact_id FROM conversations WHERE id = $3 AND tenant_id = $2)",
    )
    .bind(i64::from(opt_out))
    .bind(tenant_id)
    .bind(conversation_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn on_turn(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    conversation_id: &str,
    plan: Option<&PlannedFollowUp>,
    opt_out: Option<bool>,
    now: i64,
) -> Result<(), StoreError> {
    if let Some(opt_out) = opt_out {
        set_opt_out(tx, tenant_id, conversation_id, opt_out).await?;
    }
    let Some(plan) = plan else {
        sqlx::query(
            "UPDATE follow_ups SET state = 'cancelled', reason = 'customer_wrote', locked_until = NULL, \
             updated_at = $1 WHERE conversation_id = $2 AND tenant_id = $3 AND state = 'pending'",
        )
        .bind(now)
        .bind(conversation_id)
        .bind(tenant_id)
        .execute(&mut **tx)
        .await?;
        return Ok(());
    };
    let text = super::storable(&plan.text).into_owned();
    // One statement (each is a round trip to the writer's thread): the conversation's pending
    // row is unique, so a new one is inserted and an existing one moved.
    sqlx::query(
        "INSERT INTO follow_ups (tenant_id, conversation_id, contact_id, kind, due_at, text, \
         state, created_at, updated_at) \
         SELECT tenant_id, id, contact_id, $1, $2, $3, 'pending', $4, $4 FROM conversations \
         WHERE id = $5 AND tenant_id = $6 \
         ON CONFLICT (conversation_id) WHERE state = 'pending' DO UPDATE SET \
         kind = excluded.kind, due_at = excluded.due_at, text = excluded.text, \
         created_at = excluded.created_at, updated_at = excluded.updated_at, locked_until = NULL, \
         reschedules = follow_ups.reschedules + 1",
    )
    .bind(plan.kind)
    .bind(plan.due_at)
    .bind(&text)
    .bind(now)
    .bind(conversation_id)
    .bind(tenant_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
