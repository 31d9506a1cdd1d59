//! What the agent console reads and changes: the queues of handed-off conversations, claiming,
//! handing back and resolving. Every statement is scoped by tenant.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// A console queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Waiting for an agent.
    Waiting,
    /// Assigned to the asking agent.
    Mine,
    /// Waiting or assigned.
    Open,
    /// Resolved (closed).
    Resolved,
}

impl Queue {
    /// `waiting`, `mine`, `open` or `resolved`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "waiting" => Some(Self::Waiting),
            "mine" => Some(Self::Mine),
            "open" => Some(Self::Open),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

/// One conversation in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    /// Conversation id (the one web chat and the admin API use).
    pub id: String,
    /// Channel kind.
    pub channel: String,
    /// `bot`, `waiting_human`, `human` or `closed`.
    pub state: String,
    /// Customer name, else their address.
    pub customer: String,
    /// The latest message's text.
    pub last_message: Option<String>,
    /// Unix ms since it waits for an agent.
    pub waiting_since_ms: Option<i64>,
    /// Staff id of the agent who owns it.
    pub assignee: Option<String>,
    /// Why it was handed off.
    pub handoff_reason: Option<String>,
    /// When the customer last wrote (the WhatsApp window runs from it).
    pub last_inbound_ms: Option<i64>,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Now the agent's (or already was).
    Claimed,
    /// Another agent owns it.
    TakenBy(String),
    /// The tenant has no such conversation.
    NotFound,
}

/// The outcome of a handoff event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handed {
    /// Applied.
    Done(flows::handoff::Step),
    /// The state machine refused it.
    Refused(flows::handoff::Refused),
    /// The tenant has no such conversation.
    NotFound,
}

/// The queue's load, for the wait notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitLoad {
    /// Agents online.
    pub agents_online: u32,
    /// Other chats waiting.
    pub waiting: u32,
    /// The tenant's recent waits before a claim, newest first.
    pub recent_waits_ms: Vec<i64>,
}

impl WaitLoad {
    /// The median recent wait in whole minutes (rounded up); `default` without history.
    pub fn typical_minutes(&self, default: u32) -> u32 {
        if self.recent_waits_ms.is_empty() {
            return default;
        }
        let mut waits = self.recent_waits_ms.clone();
        waits.sort_unstable();
        let median = waits[waits.len() / 2].max(0);
        u32::try_from((median + 59_999) / 60_000)
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

const ITEM: &str = "SELECT c.id, a.kind AS channel, c.state, COALESCE(k.display_name, k.external_id) AS customer, \
     c.waiting_since, c.assignee, c.handoff_reason, c.last_inbound_at, \
     (SELECT m.body FROM messages m WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id \
      AND m.author <> 'note' ORDER BY m.id DESC LIMIT 1) AS last_message \
     FROM conversations c \
     JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
     JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id";

fn item_of(row: &AnyRow) -> Result<QueueItem, StoreError> {
    Ok(QueueItem {
        id: row.try_get("id")?,
        channel: row.try_get("channel")?,
        state: row.try_get("state")?,
        customer: row.try_get("customer")?,
        last_message: row.try_get("last_message")?,
        waiting_since_ms: row.try_get("waiting_since")?,
        assignee: row.try_get("assignee")?,
        handoff_reason: row.try_get("handoff_reason")?,
        last_inbound_ms: row.try_get("last_inbound_at")?,
    })
}

impl Store {
    /// The tenant's conversations in `queue` (`staff_id` is the asking agent), longest waiting
    /// first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn console_queue(
        &self,
        tenant_id: &str,
        queue: Queue,
        staff_id: &str,
        limit: i64,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let filter = match queue {
            Queue::Waiting => "c.state = 'waiting_human'",
            Queue::Mine => "c.state = 'human' AND c.assignee = $2",
            Queue::Open => "c.state IN ('waiting_human', 'human')",
            Queue::Resolved => "c.state = 'closed'",
        };
        let order = match queue {
            Queue::Resolved => "c.updated_at DESC",
            _ => "COALESCE(c.waiting_since, c.updated_at), c.id",
        };
        let sql = format!(
            "{ITEM} WHERE c.tenant_id = $1 AND ($2 = $2) AND {filter} ORDER BY {order} LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(tenant_id)
            .bind(staff_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(item_of)
            .collect()
    }

    /// The tenant's conversation `id` as a queue item.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn console_conversation(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<QueueItem>, StoreError> {
        sqlx::query(&format!("{ITEM} WHERE c.tenant_id = $1 AND c.id = $2"))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.write)
            .await?
            .map(|r| item_of(&r))
            .transpose()
    }

    /// Applies a handoff `event` to the conversation through the pure state machine
    /// ([`flows::handoff::step`]): loads its state and assignee, asks the machine, and writes
    /// the new state only if the row is still as loaded (retried when a concurrent change
    /// won). Bookkeeping follows the state: `waiting_since` is set on entering the queue and
    /// cleared on leaving it (the wait is kept in `last_wait_ms` when an agent takes it), and
    /// the abstain streak restarts with the bot.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn handoff_event(
        &self,
        tenant_id: &str,
        id: &str,
        event: flows::handoff::Event<'_>,
        now: i64,
    ) -> Result<Handed, StoreError> {
        for _ in 0..5 {
            let Some(row) = sqlx::query(
                "SELECT state, assignee FROM conversations WHERE tenant_id = $1 AND id = $2",
            )
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&self.write)
            .await?
            else {
                return Ok(Handed::NotFound);
            };
            let stored: String = row.try_get("state")?;
            let assignee: Option<String> = row.try_get("assignee")?;
            let state = flows::ConversationState::parse(&stored).ok_or_else(|| {
                StoreError::Corrupt(format!("conversation state `{stored}` is not known"))
            })?;
            let from = flows::handoff::Handoff::from_stored(state, assignee.as_deref());
            let step = match flows::handoff::step(&from, event) {
                Ok(step) => step,
                Err(refused) => return Ok(Handed::Refused(refused)),
            };
            let to = step.to.state().as_str();
            let changed = sqlx::query(
                "UPDATE conversations SET state = $1, assignee = $2, updated_at = $3, \
                 last_wait_ms = CASE WHEN $1 = 'human' AND waiting_since IS NOT NULL THEN $3 - waiting_since ELSE last_wait_ms END, \
                 waiting_since = CASE WHEN $1 = 'waiting_human' THEN COALESCE(waiting_since, $3) ELSE NULL END, \
                 renotified_at = CASE WHEN $1 = 'waiting_human' THEN renotified_at ELSE NULL END, \
                 abstain_streak = CASE WHEN $1 = 'bot' THEN 0 ELSE abstain_streak END \
                 WHERE tenant_id = $4 AND id = $5 AND state = $6 AND COALESCE(assignee, '') = $7",
            )
            .bind(to)
            .bind(step.to.assignee())
            .bind(now)
            .bind(tenant_id)
            .bind(id)
            .bind(&stored)
            .bind(assignee.as_deref().unwrap_or(""))
            .execute(&self.write)
            .await?
            .rows_affected();
            if changed == 1 {
                return Ok(Handed::Done(step));
            }
        }
        // Five lost races in a row: report whoever owns it now.
        Ok(Handed::Refused(flows::handoff::Refused::NotWaiting))
    }

    /// Gives the conversation to `staff_id` (from any state: agents may also take a chat
    /// proactively). Idempotent for its current assignee; the bot stays silent from now on.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn claim_conversation(
        &self,
        tenant_id: &str,
        id: &str,
        staff_id: &str,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let event = flows::handoff::Event::Claim { agent: staff_id };
        Ok(match self.handoff_event(tenant_id, id, event, now).await? {
            Handed::Done(_) => Claim::Claimed,
            Handed::Refused(flows::handoff::Refused::TakenBy(owner)) => Claim::TakenBy(owner),
            Handed::Refused(flows::handoff::Refused::NotWaiting) => Claim::TakenBy(String::new()),
            Handed::NotFound => Claim::NotFound,
        })
    }

    /// Hands the conversation back to the bot (`handback`) or resolves it, when it is
    /// unassigned or `staff_id`'s. Returns the step taken, `None` when refused or missing.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn release_conversation(
        &self,
        tenant_id: &str,
        id: &str,
        staff_id: &str,
        hand_back: bool,
        now: i64,
    ) -> Result<Option<flows::handoff::Step>, StoreError> {
        let event = if hand_back {
            flows::handoff::Event::HandBack { by: staff_id }
        } else {
            flows::handoff::Event::Resolve { by: staff_id }
        };
        Ok(match self.handoff_event(tenant_id, id, event, now).await? {
            Handed::Done(step) => Some(step),
            Handed::Refused(_) | Handed::NotFound => None,
        })
    }

    /// Gives the agent's conversation to another active member of the tenant. Returns
    /// whether it changed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn transfer_conversation(
        &self,
        tenant_id: &str,
        id: &str,
        from_staff: &str,
        to_staff: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let active = sqlx::query(
            "SELECT 1 AS one FROM staff WHERE tenant_id = $1 AND id = $2 AND disabled_at IS NULL",
        )
        .bind(tenant_id)
        .bind(to_staff)
        .fetch_optional(&self.write)
        .await?
        .is_some();
        if !active {
            return Ok(false);
        }
        let event = flows::handoff::Event::Transfer {
            by: from_staff,
            to: to_staff,
        };
        Ok(matches!(
            self.handoff_event(tenant_id, id, event, now).await?,
            Handed::Done(_)
        ))
    }

    /// Keeps what the agent's part of the conversation was about, for the bot.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_handoff_summary(
        &self,
        tenant_id: &str,
        id: &str,
        summary: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE conversations SET handoff_summary = $1 WHERE tenant_id = $2 AND id = $3",
        )
        .bind(summary)
        .bind(tenant_id)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The summary left for the bot at the last hand back, if any.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn handoff_summary(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT handoff_summary FROM conversations WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => r.try_get("handoff_summary")?,
            None => None,
        })
    }

    /// The customer's and the agent's messages since the chat was last handed to a human,
    /// oldest first, at most `limit` (for the hand-back summary).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn handoff_transcript(
        &self,
        tenant_id: &str,
        id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT author, body FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
             AND author IN ('customer', 'agent') ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut transcript = rows
            .iter()
            .map(|r| Ok((r.try_get("author")?, r.try_get("body")?)))
            .collect::<Result<Vec<(String, String)>, StoreError>>()?;
        transcript.reverse();
        Ok(transcript)
    }

    /// What a customer handed to a human is told to expect: agents online, other chats
    /// waiting than `conversation_id`, and the tenant's recent waits (ms, newest first).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn wait_load(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<WaitLoad, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM staff WHERE tenant_id = $1 AND presence = 'online' AND disabled_at IS NULL) AS online, \
             (SELECT COUNT(*) FROM conversations WHERE tenant_id = $1 AND state = 'waiting_human' AND id <> $2) AS waiting",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_one(&self.read)
        .await?;
        let recent = sqlx::query(
            "SELECT last_wait_ms FROM conversations WHERE tenant_id = $1 AND last_wait_ms IS NOT NULL \
             ORDER BY updated_at DESC LIMIT 25",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| r.try_get("last_wait_ms"))
        .collect::<Result<Vec<i64>, _>>()?;
        let online: i64 = row.try_get("online")?;
        let waiting: i64 = row.try_get("waiting")?;
        Ok(WaitLoad {
            agents_online: u32::try_from(online).unwrap_or(u32::MAX),
            waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
            recent_waits_ms: recent,
        })
    }

    /// Stores an agent's internal note on the conversation: never sent, never shown to the
    /// customer or the model. `None` when the tenant has no such conversation.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn add_note(
        &self,
        tenant_id: &str,
        id: &str,
        text: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "INSERT INTO messages (tenant_id, conversation_id, author, body, created_at) \
             SELECT c.tenant_id, c.id, 'note', $1, $2 FROM conversations c WHERE c.tenant_id = $3 AND c.id = $4 \
             RETURNING id",
        )
        .bind(super::storable(text).into_owned())
        .bind(now)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| r.try_get("id").map_err(StoreError::from))
            .transpose()
    }

    /// Sets an agent's presence (`online` or `away`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_presence(
        &self,
        tenant_id: &str,
        staff_id: &str,
        presence: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE staff SET presence = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(presence)
            .bind(tenant_id)
            .bind(staff_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Tenants with conversations waiting for an agent.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn tenants_waiting(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT DISTINCT tenant_id FROM conversations WHERE state = 'waiting_human'")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| r.try_get("tenant_id").map_err(StoreError::from))
            .collect()
    }

    /// Gives the tenant's waiting conversations, longest waiting first, to its online agents
    /// in round-robin order (the agent given one longest ago first), never more than
    /// `max_open` open chats per agent. Returns `(conversation, agent)` pairs.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn auto_assign(
        &self,
        tenant_id: &str,
        max_open: i64,
        now: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut tx = self.write.begin().await?;
        if self.dialect == super::Dialect::Postgres {
            // Replicas take turns per tenant.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("assign:{tenant_id}"))
                .execute(&mut *tx)
                .await?;
        }
        let waiting: Vec<String> = sqlx::query(
            "SELECT id FROM conversations WHERE tenant_id = $1 AND state = 'waiting_human' \
             AND assignee IS NULL ORDER BY waiting_since, id LIMIT 100",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let mut agents: Vec<(String, i64, i64)> = sqlx::query(
            "SELECT s.id, COALESCE(s.last_assigned_at, 0) AS last, \
             (SELECT COUNT(*) FROM conversations c WHERE c.tenant_id = s.tenant_id AND c.assignee = s.id \
              AND c.state = 'human') AS open \
             FROM staff s WHERE s.tenant_id = $1 AND s.presence = 'online' AND s.disabled_at IS NULL",
        )
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("last")?, r.try_get("open")?)))
        .collect::<Result<_, StoreError>>()?;
        let mut assigned = Vec::new();
        let mut stamp = now;
        for conversation in waiting {
            agents.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            let Some(agent) = agents.iter_mut().find(|a| a.2 < max_open) else {
                break;
            };
            let changed = sqlx::query(
                "UPDATE conversations SET state = 'human', assignee = $1, last_wait_ms = $2 - waiting_since, \
                 waiting_since = NULL, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND state = 'waiting_human' AND assignee IS NULL",
            )
            .bind(&agent.0)
            .bind(now)
            .bind(tenant_id)
            .bind(&conversation)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            // Strictly increasing stamps keep the round-robin order within one pass.
            stamp += 1;
            sqlx::query("UPDATE staff SET last_assigned_at = $1 WHERE id = $2")
                .bind(stamp)
                .bind(&agent.0)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO audit_log (tenant_id, staff_id, action, detail, created_at) VALUES ($1, $2, 'auto_assign', $3, $4)",
            )
            .bind(tenant_id)
            .bind(&agent.0)
            .bind(&conversation)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            agent.1 = stamp;
            agent.2 += 1;
            assigned.push((conversation, agent.0.clone()));
        }
        tx.commit().await?;
        Ok(assigned)
    }

    /// An agent's presence (`online` or `away`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn presence(&self, tenant_id: &str, staff_id: &str) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT presence FROM staff WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(staff_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("presence")?,
            None => "away".to_owned(),
        })
    }

    /// The tenant's chats waiting since before `renotify_before` and not re-notified yet, and
    /// those waiting since before `back_before` (to return to the bot).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn sla_due(
        &self,
        tenant_id: &str,
        renotify_before: i64,
        back_before: i64,
    ) -> Result<(Vec<(String, String)>, Vec<(String, String)>), StoreError> {
        let rows = sqlx::query(
            "SELECT id, locale, waiting_since, renotified_at FROM conversations WHERE tenant_id = $1 \
             AND state = 'waiting_human' AND waiting_since < $2 ORDER BY waiting_since LIMIT 200",
        )
        .bind(tenant_id)
        .bind(renotify_before.max(back_before))
        .fetch_all(&self.read)
        .await?;
        let mut renotify = Vec::new();
        let mut back = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let locale: String = row.try_get("locale")?;
            let since: i64 = row.try_get("waiting_since")?;
            let renotified: Option<i64> = row.try_get("renotified_at")?;
            if since < back_before {
                back.push((id, locale));
            } else if since < renotify_before && renotified.is_none() {
                renotify.push((id, locale));
            }
        }
        Ok((renotify, back))
    }

    /// Tells a still-waiting customer again that the team will reply (once), or, with
    /// `back_to_bot`, returns the chat to the bot with `text` (an apology). Returns whether it
    /// did (false: an agent took it meanwhile, or it was already re-notified).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn sla_notice(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        text: &str,
        back_to_bot: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let sql = if back_to_bot {
            "UPDATE conversations SET state = 'bot', waiting_since = NULL, assignee = NULL, \
             abstain_streak = 0, updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND state = 'waiting_human'"
        } else {
            "UPDATE conversations SET renotified_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3 \
             AND state = 'waiting_human' AND renotified_at IS NULL"
        };
        let changed = sqlx::query(sql)
            .bind(now)
            .bind(tenant_id)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        super::outbox::queue_message(
            &mut tx,
            &self.days,
            tenant_id,
            conversation_id,
            channels::model::Author::Bot,
            text,
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
