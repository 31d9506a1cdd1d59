//! Conversation turns: load a conversation's pending batch, commit its outcome atomically.

use channels::model::{Author, OutboundMessage};
use flows::{Conversation, ConversationState, Locale, TurnKind, Verification};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::outbox::queue_outbound;
use super::usage::{UsageBatch, UsageDays};
use super::{Dialect, Store, StoreError, now_ms};

/// One pending customer message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTurn {
    /// Inbox row id (arrival order).
    pub inbox_id: i64,
    /// Client or provider message id.
    pub external_id: String,
    /// How it was produced (typed, a button, a command).
    pub kind: TurnKind,
    /// Text.
    pub text: String,
    /// Arrival time, Unix milliseconds.
    pub received_at_ms: i64,
}

/// A conversation with its unanswered customer messages.
#[derive(Debug, Clone)]
pub struct TurnBatch {
    /// Tenant slug.
    pub tenant_id: String,
    /// Conversation id.
    pub conversation_id: String,
    /// Channel account id.
    pub channel_account_id: String,
    /// The channel it runs on.
    pub channel_kind: channels::ChannelKind,
    /// The customer's address on the channel.
    pub recipient: String,
    /// Who answers, in which language, and the abstain streak, as stored.
    pub conversation: Conversation,
    /// Pending messages, in arrival order.
    pub turns: Vec<PendingTurn>,
    /// The flow the conversation is in (a `flows::flow::FlowRun` as JSON).
    pub flow_run: Option<String>,
    /// The summary left for the bot at the last hand back, if any.
    pub handoff_summary: Option<String>,
    /// The tenant's display name (`None`: no tenant row; the prompt uses its slug).
    pub tenant_name: Option<String>,
    /// The owner's prompt instructions.
    pub instructions: String,
}

/// One bot message to store and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnReply {
    /// Text.
    pub text: String,
    /// Quick replies.
    pub choices: Vec<String>,
    /// Knowledge chunk ids the text rests on.
    pub citations: Vec<String>,
}

/// Tokens one language model completion used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmUsage {
    /// Model name.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
}

/// One turn from answer to commit: the batch it answers and everything it changes, committed
/// together. The lane builds it (`workers::answer::prepare`), the committer stores it.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The batch this answers.
    pub batch: TurnBatch,
    /// The conversation after this turn (state, locale, abstain streak).
    pub conversation: Conversation,
    /// Set when the conversation was handed to a human.
    pub handoff_reason: Option<String>,
    /// Bot messages, in order.
    pub replies: Vec<TurnReply>,
    /// Questions to record as unanswered.
    pub unanswered: Vec<String>,
    /// Language model usage of this turn.
    pub llm_usage: Vec<LlmUsage>,
    /// Commit even when newer customer messages arrived meanwhile (the lane's restart cap
    /// was reached); they stay pending for the next turn.
    pub accept_newer: bool,
    /// Inbox ids of the customer messages that were one-time codes: stored masked.
    pub masked_inbox_ids: Vec<i64>,
    /// The follow-up this turn schedules (replacing the pending one); `None` cancels the
    /// pending one, the customer having written.
    pub follow_up: Option<super::PlannedFollowUp>,
    /// The customer's follow-up command: `Some(true)` opted out, `Some(false)` opted in.
    pub opt_out: Option<bool>,
    /// The conversation's flow run after this turn, when it changed: `Some(None)` left the
    /// flow, `Some(Some(json))` is the run to resume.
    pub flow_run: Option<Option<String>>,
    /// Tags a flow put on the conversation.
    pub tags: Vec<String>,
    /// The OpenTelemetry trace id of the answer turn, stored on its bot messages.
    pub trace_id: Option<String>,
    /// Metric label: `passage`, `no_match`, `failed`, `handoff`, `silent`, or for model answers
    /// `llm_answer`, `llm_clarify`, `llm_handoff`, `llm_rejected`, `llm_unavailable`.
    pub kind: &'static str,
}

impl Turn {
    /// A turn that changes nothing yet: the batch's conversation as stored, no replies.
    pub fn new(batch: TurnBatch) -> Self {
        Self {
            conversation: batch.conversation.clone(),
            batch,
            handoff_reason: None,
            replies: Vec::new(),
            unanswered: Vec::new(),
            llm_usage: Vec::new(),
            masked_inbox_ids: Vec::new(),
            accept_newer: false,
            follow_up: None,
            opt_out: None,
            flow_run: None,
            tags: Vec::new(),
            kind: "silent",
            // Built inside the answer's span: its trace is the customer message's.
            trace_id: crate::telemetry::trace_id(&tracing::Span::current()),
        }
    }

    /// Arrival time of the oldest message answered (Unix ms), for latency metrics.
    pub fn oldest_received_ms(&self) -> Option<i64> {
        self.batch.turns.first().map(|t| t.received_at_ms)
    }
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOutcome {
    /// Stored; this many outbox rows were created.
    Committed {
        /// Outbox rows written.
        outbox_rows: usize,
    },
    /// New customer messages arrived meanwhile: nothing stored, re-run with them.
    Superseded,
    /// Another worker already processed (part of) the batch: nothing stored.
    Stale,
}

impl Store {
    /// Conversations that have unanswered inbox rows, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn pending_conversations(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, MIN(id) AS first FROM inbox WHERE processed_at IS NULL \
             GROUP BY conversation_id ORDER BY first LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| r.try_get("conversation_id").map_err(StoreError::from))
            .collect()
    }

    /// Loads a conversation and its pending messages; `None` when nothing is pending.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn load_turn_batch(
        &self,
        conversation_id: &str,
    ) -> Result<Option<TurnBatch>, StoreError> {
        // One read: the pending messages, each with its conversation's routing and state, and
        // what the prompt needs of the conversation and tenant (each a read of its own before
        // every model call otherwise). The message's own id (`m.external_id`) is what replies
        // refer to; the inbox key of a web chat message is scoped by its conversation.
        let pending = sqlx::query(
            "SELECT i.id, m.external_id, i.kind, i.received_at, m.body, \
             c.tenant_id, c.channel_account_id, a.kind AS channel_kind, k.external_id AS recipient, \
             c.state, c.locale, c.abstain_streak, c.verification, c.flow_run, c.handoff_summary, \
             t.name AS tenant_name, t.instructions FROM inbox i \
             JOIN messages m ON m.inbox_id = i.id AND m.conversation_id = i.conversation_id \
             JOIN conversations c ON c.id = i.conversation_id \
             JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             LEFT JOIN tenants t ON t.id = c.tenant_id \
             WHERE i.conversation_id = $1 AND i.processed_at IS NULL ORDER BY i.id",
        )
        .bind(conversation_id)
        .fetch_all(&self.read)
        .await?;
        let Some(row) = pending.first() else {
            return Ok(None);
        };
        let turns = pending
            .iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(PendingTurn {
                    inbox_id: r.try_get("id")?,
                    external_id: r.try_get("external_id")?,
                    kind: TurnKind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown inbox message kind {kind:?}"))
                    })?,
                    text: r.try_get("body")?,
                    received_at_ms: r.try_get("received_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let channel_kind = super::channel_kind_of(row, "channel_kind")?;
        let recipient: String = row.try_get("recipient")?;
        let mut conversation = conversation_of(row)?;
        // On WhatsApp the customer writes from their own number (unless known by username).
        if channel_kind == channels::ChannelKind::Whatsapp
            && !recipient.is_empty()
            && recipient.bytes().all(|b| b.is_ascii_digit())
        {
            conversation.own_phone = Some(format!("+{recipient}"));
        }
        Ok(Some(TurnBatch {
            tenant_id: row.try_get("tenant_id")?,
            conversation_id: conversation_id.to_owned(),
            channel_account_id: row.try_get("channel_account_id")?,
            channel_kind,
            recipient,
            conversation,
            turns,
            flow_run: row.try_get("flow_run")?,
            handoff_summary: row.try_get("handoff_summary")?,
            tenant_name: row.try_get("tenant_name")?,
            instructions: row
                .try_get::<Option<String>, _>("instructions")?
                .unwrap_or_default(),
        }))
    }

    /// Up to `limit` messages of the conversation written before the pending customer message
    /// `first_inbox_id`, oldest first, as `(author, body)`: the context a follow-up question
    /// needs.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_history(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        first_inbox_id: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT author, body FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
             AND author <> 'note' AND id < (SELECT MIN(p.id) FROM messages p WHERE p.tenant_id = $1 \
                 AND p.conversation_id = $2 AND p.inbox_id = $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(first_inbox_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut history = rows
            .iter()
            .map(|r| Ok((r.try_get("author")?, r.try_get("body")?)))
            .collect::<Result<Vec<(String, String)>, StoreError>>()?;
        history.reverse();
        Ok(history)
    }

    /// Commits a processed batch: marks its inbox rows answered, stores state, bot messages,
    /// outbox rows and unanswered questions — all or nothing.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing was stored and the batch stays pending.
    pub async fn commit_turn(&self, turn: &Turn) -> Result<TurnOutcome, StoreError> {
        let mut outcomes = self.commit_turns(&[turn]).await?;
        Ok(outcomes.pop().unwrap_or(TurnOutcome::Stale))
    }

    /// Commits the batches of several conversations in one transaction (group commit); each
    /// gets its own outcome, in input order: a superseded or stale batch stores nothing and
    /// does not affect the others.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing was stored and every batch stays pending.
    pub async fn commit_turns(&self, commits: &[&Turn]) -> Result<Vec<TurnOutcome>, StoreError> {
        let mut order: Vec<usize> = (0..commits.len()).collect();
        // Take conversation locks in one global order so concurrent group commits (several
        // replicas on Postgres) cannot deadlock.
        order.sort_by(|a, b| {
            commits[*a]
                .batch
                .conversation_id
                .cmp(&commits[*b].batch.conversation_id)
        });
        let now = now_ms();
        let mut outcomes = vec![TurnOutcome::Stale; commits.len()];
        let mut usage = UsageBatch::default();
        let mut tx = self.write.begin().await?;
        let mut script = super::script::Script::new(self.dialect);
        if super::turn_batch::batchable(commits) {
            // A fixed handful of statements for the whole group (see `turn_batch`).
            outcomes = super::turn_batch::commit_batched(
                &mut tx,
                &mut script,
                commits,
                &order,
                now,
                (&self.days, &mut usage),
            )
            .await?;
        } else {
            for index in order {
                outcomes[index] = commit_one(
                    &mut tx,
                    commits[index],
                    now,
                    self.dialect,
                    (&self.days, &mut usage),
                )
                .await?;
            }
        }
        usage.flush_into(&mut script)?;
        script.run(&mut tx).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// One batch's changes inside a group transaction. It decides superseded/stale before it
/// writes anything but the conversation's lock, so skipping it leaves nothing behind.
async fn commit_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    commit: &Turn,
    now: i64,
    dialect: Dialect,
    (days, counters): (&UsageDays, &mut UsageBatch),
) -> Result<TurnOutcome, StoreError> {
    let batch = &commit.batch;
    let Some(max_inbox_id) = batch.turns.iter().map(|t| t.inbox_id).max() else {
        return Ok(TurnOutcome::Stale);
    };
    if dialect == Dialect::Postgres {
        // Taking the conversation's row lock first serializes replicas writing to this
        // conversation. SQLite has one writer connection: the transaction is already exclusive.
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2 AND tenant_id = $3")
            .bind(now)
            .bind(&batch.conversation_id)
            .bind(&batch.tenant_id)
            .execute(&mut **tx)
            .await?;
    }
    let counts = sqlx::query(
        "SELECT COALESCE(SUM(CASE WHEN id > $2 THEN 1 ELSE 0 END), 0) AS newer, \
         COALESCE(SUM(CASE WHEN id <= $2 THEN 1 ELSE 0 END), 0) AS mine \
         FROM inbox WHERE conversation_id = $1 AND processed_at IS NULL",
    )
    .bind(&batch.conversation_id)
    .bind(max_inbox_id)
    .fetch_one(&mut **tx)
    .await?;
    let newer: i64 = counts.try_get("newer")?;
    let mine: i64 = counts.try_get("mine")?;
    if newer > 0 && !commit.accept_newer {
        return Ok(TurnOutcome::Superseded);
    }
    if mine != batch.turns.len() as i64 {
        // Another worker (another replica, or a lane that lost its lease) got here first.
        return Ok(TurnOutcome::Stale);
    }
    sqlx::query(
        "UPDATE inbox SET processed_at = $1 WHERE conversation_id = $2 AND processed_at IS NULL AND id <= $3",
    )
    .bind(now)
    .bind(&batch.conversation_id)
    .bind(max_inbox_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        // An agent may have claimed (or handed back) the conversation while this turn was
        // prepared: the state the turn started from must still be the stored one to change it.
        "UPDATE conversations SET \
         waiting_since = CASE WHEN state = $9 THEN (CASE WHEN $1 = 'waiting_human' AND state <> 'waiting_human' THEN $5 \
             WHEN $1 IN ('bot', 'closed') THEN NULL ELSE waiting_since END) ELSE waiting_since END, \
         renotified_at = CASE WHEN state = $9 AND $1 = 'waiting_human' AND state <> 'waiting_human' THEN NULL \
             ELSE renotified_at END, \
         state = CASE WHEN state = $9 THEN $1 ELSE state END, locale = $2, abstain_streak = $3, \
         handoff_reason = COALESCE($4, handoff_reason), updated_at = $5, verification = $8, \
         first_response_at = CASE WHEN first_response_at IS NULL AND first_inbound_at IS NOT NULL AND $10 = 1 \
             THEN $5 ELSE first_response_at END \
         WHERE id = $6 AND tenant_id = $7",
    )
    .bind(commit.conversation.state.as_str())
    .bind(commit.conversation.locale.as_str())
    .bind(i64::from(commit.conversation.abstain_streak))
    .bind(commit.handoff_reason.as_deref())
    .bind(now)
    .bind(&batch.conversation_id)
    .bind(&batch.tenant_id)
    .bind(verification_column(&commit.conversation.verification)?)
    .bind(batch.conversation.state.as_str())
    // The conversation's first response, when this turn replies (usage: first-response time).
    .bind(i64::from(!commit.replies.is_empty()))
    .execute(&mut **tx)
    .await?;
    if !commit.masked_inbox_ids.is_empty() {
        // One-time codes the customer typed are kept masked.
        let placeholders: Vec<String> = (0..commit.masked_inbox_ids.len())
            .map(|i| format!("${}", i + 4))
            .collect();
        let sql = format!(
            "UPDATE messages SET body = $1 WHERE tenant_id = $2 AND conversation_id = $3 \
             AND inbox_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(MASKED_CODE)
            .bind(&batch.tenant_id)
            .bind(&batch.conversation_id);
        for id in &commit.masked_inbox_ids {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    let in_reply_to: Vec<String> = batch.turns.iter().map(|t| t.external_id.clone()).collect();
    let last_seen = batch.turns.iter().map(|t| t.received_at_ms).max();
    let in_reply_json =
        serde_json::to_string(&in_reply_to).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for reply in &commit.replies {
        // What is stored is what is sent: a model can emit NUL characters too.
        let text = super::storable(&reply.text).into_owned();
        let choices_json = if reply.choices.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&reply.choices)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        };
        let citations_json = if reply.citations.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&reply.citations)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        };
        let message_id: i64 = sqlx::query(
            "INSERT INTO messages (tenant_id, conversation_id, author, body, in_reply_to, choices, citations, status, created_at, trace_id) \
             VALUES ($1, $2, 'bot', $3, $4, $5, $6, 'pending', $7, $8) RETURNING id",
        )
        .bind(&batch.tenant_id)
        .bind(&batch.conversation_id)
        .bind(&text)
        .bind(&in_reply_json)
        .bind(choices_json)
        .bind(citations_json)
        .bind(now)
        .bind(commit.trace_id.as_deref())
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        let outbound = OutboundMessage {
            message_id,
            conversation_id: batch.conversation_id.clone(),
            recipient: batch.recipient.clone(),
            author: Author::Bot,
            text,
            choices: reply.choices.clone(),
            in_reply_to: in_reply_to.clone(),
            created_at_ms: now,
            idempotency_key: format!("msg-{message_id}"),
            customer_last_seen_ms: last_seen,
            template: None,
            media: None,
        };
        queue_outbound(
            tx,
            &batch.tenant_id,
            &batch.channel_account_id,
            batch.channel_kind,
            &outbound,
            now,
        )
        .await?;
    }
    for query in &commit.unanswered {
        sqlx::query(
            "INSERT INTO unanswered_questions (tenant_id, conversation_id, query, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&batch.tenant_id)
        .bind(&batch.conversation_id)
        .bind(super::storable(query).into_owned())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    for usage in &commit.llm_usage {
        sqlx::query(
            "INSERT INTO llm_usage (tenant_id, conversation_id, model, prompt_tokens, completion_tokens, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&batch.tenant_id)
        .bind(&batch.conversation_id)
        .bind(&usage.model)
        .bind(usage.prompt_tokens)
        .bind(usage.completion_tokens)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    super::follow_ups::on_turn(
        tx,
        &batch.tenant_id,
        &batch.conversation_id,
        commit.follow_up.as_ref(),
        commit.opt_out,
        now,
    )
    .await?;
    if commit.flow_run.is_some() || !commit.tags.is_empty() {
        super::tenant_flows::on_turn(
            tx,
            &batch.tenant_id,
            &batch.conversation_id,
            commit.flow_run.as_ref(),
            &commit.tags,
        )
        .await?;
    }
    let channel = batch.channel_kind.as_str();
    counters.add(
        &batch.tenant_id,
        days.day(&batch.tenant_id, now),
        channel,
        &turn_usage(commit),
    );
    Ok(TurnOutcome::Committed {
        outbox_rows: commit.replies.len(),
    })
}

/// What a committed turn adds to the day's usage. A turn that consulted the knowledge base
/// (its `kind` says so) either abstained (it recorded an unanswered question) or, when it
/// replied from a passage (extractive, or the model's answer), answered.
pub(super) fn turn_usage(commit: &Turn) -> super::usage::UsageDelta {
    let answer_turn = matches!(
        commit.kind,
        "passage"
            | "no_match"
            | "failed"
            | "llm_answer"
            | "llm_clarify"
            | "llm_handoff"
            | "llm_rejected"
            | "llm_unavailable"
    );
    let abstained = answer_turn && !commit.unanswered.is_empty();
    let answered = !abstained && matches!(commit.kind, "passage" | "llm_answer" | "llm_rejected");
    super::usage::UsageDelta {
        messages_out: i64::try_from(commit.replies.len()).unwrap_or(i64::MAX),
        handoffs: i64::from(commit.handoff_reason.is_some()),
        answer_turns: i64::from(answer_turn),
        answered: i64::from(answered),
        abstained: i64::from(abstained),
        prompt_tokens: commit.llm_usage.iter().map(|u| u.prompt_tokens).sum(),
        completion_tokens: commit.llm_usage.iter().map(|u| u.completion_tokens).sum(),
        ..Default::default()
    }
}

/// What a one-time code the customer typed is stored as.
pub const MASKED_CODE: &str = "••••••";

/// The `verification` column: JSON, NULL when none is under way.
pub(super) fn verification_column(
    verification: &Verification,
) -> Result<Option<String>, StoreError> {
    if *verification == Verification::None {
        return Ok(None);
    }
    serde_json::to_string(verification)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The stored conversation (`state`, `locale`, `abstain_streak`, `verification` columns); an
/// unknown state or locale is corruption, not a default.
fn conversation_of(row: &AnyRow) -> Result<Conversation, StoreError> {
    let state: String = row.try_get("state")?;
    let locale: String = row.try_get("locale")?;
    let abstain_streak: i64 = row.try_get("abstain_streak")?;
    let verification: Option<String> = row.try_get("verification")?;
    let verification = match verification {
        None => Verification::None,
        Some(json) => serde_json::from_str(&json).map_err(|e| {
            StoreError::Corrupt(format!("unreadable conversation verification: {e}"))
        })?,
    };
    Ok(Conversation {
        verification,
        own_phone: None,
        state: ConversationState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown conversation state {state:?}")))?,
        locale: Locale::parse(&locale).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown conversation locale {locale:?}"))
        })?,
        abstain_streak: u32::try_from(abstain_streak).unwrap_or(0),
    })
}
