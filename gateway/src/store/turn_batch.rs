//! The answer group commit's fast path: the turns of several conversations in a fixed handful
//! of multi-row statements instead of about seven per turn.
//!
//! Every statement is a round trip (to the single SQLite writer's thread, or to Postgres), so a
//! turn's cost on the writer is its number of statements. Here the supersede check, the inbox
//! update, the conversation update, the bot messages, their outbox rows, unanswered questions,
//! model usage and follow-ups are each one statement for the whole group, with the same rows
//! and the same outcomes as turn by turn ([`super::turns`]). Rare parts (masked codes, opt-outs,
//! flow state and tags) stay per turn. A group naming one conversation twice takes the
//! turn-by-turn path.

use std::collections::{HashMap, HashSet};

use channels::model::{Author, OutboundMessage};
use sqlx::Row;

use super::script::Script;
use super::turns::{MASKED_CODE, Turn, TurnOutcome, turn_usage, verification_column};
use super::usage::{UsageBatch, UsageDays};
use super::{StoreError, bind_marks, dialect_of, rows, storable};

/// Rows per statement (the widest binds 9 parameters a row).
const ROWS_PER_STATEMENT: usize = 500;

type Tx<'t, 'c> = &'t mut sqlx::Transaction<'c, sqlx::Any>;

/// Whether [`commit_batched`] can take `commits`: one turn per conversation.
pub(super) fn batchable(commits: &[&Turn]) -> bool {
    let mut seen = HashSet::with_capacity(commits.len());
    commits
        .iter()
        .all(|commit| seen.insert(commit.batch.conversation_id.as_str()))
}

/// Commits `commits` (visited in `order`, by conversation id) inside `tx`; outcomes in input
/// order.
pub(super) async fn commit_batched<'q>(
    tx: Tx<'_, '_>,
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    order: &[usize],
    now: i64,
    (days, counters): (&UsageDays, &mut UsageBatch),
) -> Result<Vec<TurnOutcome>, StoreError> {
    let mut outcomes = vec![TurnOutcome::Stale; commits.len()];
    let candidates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| !commits[i].batch.turns.is_empty())
        .collect();
    if candidates.is_empty() {
        return Ok(outcomes);
    }
    // The conversations' row locks first (Postgres), as every writer takes them.
    let mut ids: Vec<&str> = candidates
        .iter()
        .map(|&i| commits[i].batch.conversation_id.as_str())
        .collect();
    super::lock_conversations(tx, &mut ids).await?;

    // Superseded (newer customer messages) or stale (another worker got here first): nothing
    // of that turn is written.
    let counts = pending_counts(tx, commits, &candidates).await?;
    let mut committed = Vec::with_capacity(candidates.len());
    for i in candidates {
        let commit = commits[i];
        let (newer, mine) = counts
            .get(commit.batch.conversation_id.as_str())
            .copied()
            .unwrap_or((0, 0));
        if newer > 0 && !commit.accept_newer {
            outcomes[i] = TurnOutcome::Superseded;
        } else if mine != commit.batch.turns.len() as i64 {
            outcomes[i] = TurnOutcome::Stale;
        } else {
            committed.push(i);
        }
    }
    if committed.is_empty() {
        return Ok(outcomes);
    }

    // Statements whose results are not read go to `script`, which the caller runs (one round
    // trip on SQLite) before it commits; the rest run here. Each touches other rows than the
    // others, so the order between the two does not change what is stored.
    mark_processed(script, commits, &committed, now)?;
    update_conversations(script, commits, &committed, now)?;
    for &i in &committed {
        mask_codes(tx, commits[i]).await?;
    }
    insert_replies(tx, script, commits, &committed, now).await?;
    insert_unanswered(script, commits, &committed, now)?;
    insert_llm_usage(script, commits, &committed, now)?;
    follow_ups(tx, script, commits, &committed, now).await?;
    for &i in &committed {
        let commit = commits[i];
        if commit.flow_run.is_some() || !commit.tags.is_empty() {
            super::tenant_flows::on_turn(
                tx,
                &commit.batch.tenant_id,
                &commit.batch.conversation_id,
                commit.flow_run.as_ref(),
                &commit.tags,
            )
            .await?;
        }
        let batch = &commit.batch;
        counters.add(
            &batch.tenant_id,
            days.day(&batch.tenant_id, now),
            batch.channel_kind.as_str(),
            &turn_usage(commit),
        );
        outcomes[i] = TurnOutcome::Committed {
            outbox_rows: commit.replies.len(),
        };
    }
    Ok(outcomes)
}

/// The newest inbox id a turn answers.
fn max_inbox_id(commit: &Turn) -> i64 {
    commit
        .batch
        .turns
        .iter()
        .map(|t| t.inbox_id)
        .max()
        .unwrap_or(0)
}

/// Per conversation: unprocessed customer messages newer than its turn, and those it answers.
async fn pending_counts(
    tx: Tx<'_, '_>,
    commits: &[&Turn],
    which: &[usize],
) -> Result<HashMap<String, (i64, i64)>, StoreError> {
    let mut counts = HashMap::with_capacity(which.len());
    for part in which.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "SELECT v.column1 AS conversation_id, \
             COALESCE(SUM(CASE WHEN i.id > v.column2 THEN 1 ELSE 0 END), 0) AS newer, \
             COALESCE(SUM(CASE WHEN i.id <= v.column2 THEN 1 ELSE 0 END), 0) AS mine \
             FROM (VALUES {}) AS v JOIN inbox i ON i.conversation_id = v.column1 \
             AND i.processed_at IS NULL GROUP BY v.column1",
                rows(part.len(), "(?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for &i in part {
            query = query
                .bind(&commits[i].batch.conversation_id)
                .bind(max_inbox_id(commits[i]));
        }
        for row in query.fetch_all(&mut **tx).await? {
            counts.insert(
                row.try_get("conversation_id")?,
                (row.try_get("newer")?, row.try_get("mine")?),
            );
        }
    }
    Ok(counts)
}

/// Marks the answered customer messages processed.
fn mark_processed<'q>(
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    which: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    for part in which.chunks(ROWS_PER_STATEMENT) {
        script.statement(&format!(
            "UPDATE inbox SET processed_at = v.column3 FROM (VALUES {}) AS v \
             WHERE inbox.conversation_id = v.column1 AND inbox.processed_at IS NULL \
             AND inbox.id <= v.column2",
            rows(part.len(), "(?, ?, ?)")
        ));
        for &i in part {
            script
                .bind(commits[i].batch.conversation_id.as_str())?
                .bind(max_inbox_id(commits[i]))?
                .bind(now)?;
        }
    }
    Ok(())
}

/// Stores each conversation's new state, locale, streak, verification and first response.
fn update_conversations<'q>(
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    which: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    for part in which.chunks(ROWS_PER_STATEMENT) {
        // An agent may have claimed (or handed back) the conversation while the turn was
        // prepared: the state the turn started from (column8) must still be the stored one to
        // change it. column1 id, column2 tenant, column3 new state, column4 locale, column5
        // abstain streak, column6 handoff reason, column7 verification, column8 state the turn
        // started from, column9 whether the turn replies (first-response time), column10 now.
        script.statement(&format!(
                "UPDATE conversations SET \
             waiting_since = CASE WHEN state = v.column8 THEN (CASE WHEN v.column3 = 'waiting_human' AND state <> 'waiting_human' THEN v.column10 \
                 WHEN v.column3 IN ('bot', 'closed') THEN NULL ELSE waiting_since END) ELSE waiting_since END, \
             renotified_at = CASE WHEN state = v.column8 AND v.column3 = 'waiting_human' AND state <> 'waiting_human' THEN NULL \
                 ELSE renotified_at END, \
             state = CASE WHEN state = v.column8 THEN v.column3 ELSE state END, locale = v.column4, \
             abstain_streak = v.column5, handoff_reason = COALESCE(v.column6, handoff_reason), updated_at = v.column10, \
             verification = v.column7, \
             first_response_at = CASE WHEN first_response_at IS NULL AND first_inbound_at IS NOT NULL AND v.column9 = 1 \
                 THEN v.column10 ELSE first_response_at END \
             FROM (VALUES {}) AS v WHERE conversations.id = v.column1 AND conversations.tenant_id = v.column2",
                rows(part.len(), "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            ));
        for &i in part {
            let commit = commits[i];
            script
                .bind(commit.batch.conversation_id.as_str())?
                .bind(commit.batch.tenant_id.as_str())?
                .bind(commit.conversation.state.as_str())?
                .bind(commit.conversation.locale.as_str())?
                .bind(i64::from(commit.conversation.abstain_streak))?
                .bind(commit.handoff_reason.as_deref())?
                .bind(verification_column(&commit.conversation.verification)?)?
                .bind(commit.batch.conversation.state.as_str())?
                .bind(i64::from(!commit.replies.is_empty()))?
                .bind(now)?;
        }
    }
    Ok(())
}

/// Keeps one-time codes the customer typed masked.
async fn mask_codes(tx: Tx<'_, '_>, commit: &Turn) -> Result<(), StoreError> {
    if commit.masked_inbox_ids.is_empty() {
        return Ok(());
    }
    let sql = bind_marks(
        dialect_of(tx),
        &format!(
            "UPDATE messages SET body = ? WHERE tenant_id = ? AND conversation_id = ? \
             AND inbox_id IN ({})",
            rows(commit.masked_inbox_ids.len(), "?")
        ),
    );
    let mut query = sqlx::query(&sql)
        .bind(MASKED_CODE)
        .bind(&commit.batch.tenant_id)
        .bind(&commit.batch.conversation_id);
    for id in &commit.masked_inbox_ids {
        query = query.bind(*id);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// JSON of a list, `None` when empty.
fn json_list(list: &[String]) -> Result<Option<String>, StoreError> {
    if list.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(list)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One bot message to store and queue.
struct Reply<'a> {
    commit: &'a Turn,
    text: String,
    choices: &'a [String],
    citations: Option<String>,
}

/// Stores the turns' bot messages (ids in reply order within each conversation) and queues
/// each for sending.
async fn insert_replies<'q>(
    tx: Tx<'_, '_>,
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    which: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    let mut replies: Vec<Reply<'q>> = Vec::new();
    let mut in_reply: HashMap<&str, (Vec<String>, String)> = HashMap::new();
    for &i in which {
        let commit = commits[i];
        if commit.replies.is_empty() {
            continue;
        }
        let ids: Vec<String> = commit
            .batch
            .turns
            .iter()
            .map(|t| t.external_id.clone())
            .collect();
        let json = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        in_reply.insert(commit.batch.conversation_id.as_str(), (ids, json));
        for reply in &commit.replies {
            replies.push(Reply {
                commit,
                // What is stored is what is sent: a model can emit NUL characters too.
                text: storable(&reply.text).into_owned(),
                choices: &reply.choices,
                citations: json_list(&reply.citations)?,
            });
        }
    }
    if replies.is_empty() {
        return Ok(());
    }

    // Message ids by conversation, ascending: rows are inserted in statement order, so a
    // conversation's ascending ids are its replies in order.
    let mut ids: HashMap<String, Vec<i64>> = HashMap::new();
    for part in replies.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "INSERT INTO messages (tenant_id, conversation_id, author, body, in_reply_to, choices, citations, status, created_at, trace_id) \
             VALUES {} RETURNING id, conversation_id",
                rows(part.len(), "(?, ?, 'bot', ?, ?, ?, ?, 'pending', ?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for reply in part {
            let batch = &reply.commit.batch;
            query = query
                .bind(&batch.tenant_id)
                .bind(&batch.conversation_id)
                .bind(&reply.text)
                .bind(&in_reply[batch.conversation_id.as_str()].1)
                .bind(json_list(reply.choices)?)
                .bind(reply.citations.as_deref())
                .bind(now)
                .bind(reply.commit.trace_id.as_deref());
        }
        for row in query.fetch_all(&mut **tx).await? {
            ids.entry(row.try_get("conversation_id")?)
                .or_default()
                .push(row.try_get("id")?);
        }
    }
    for list in ids.values_mut() {
        list.sort_unstable();
        list.reverse(); // popped from the end: smallest first
    }

    let mut queued: Vec<(&'q Turn, i64, String)> = Vec::with_capacity(replies.len());
    for reply in &replies {
        let batch = &reply.commit.batch;
        let message_id = ids
            .get_mut(&batch.conversation_id)
            .and_then(Vec::pop)
            .ok_or_else(|| StoreError::Corrupt("a bot message insert returned no id".into()))?;
        let outbound = OutboundMessage {
            message_id,
            conversation_id: batch.conversation_id.clone(),
            recipient: batch.recipient.clone(),
            author: Author::Bot,
            text: reply.text.clone(),
            choices: reply.choices.to_vec(),
            in_reply_to: in_reply[batch.conversation_id.as_str()].0.clone(),
            created_at_ms: now,
            idempotency_key: format!("msg-{message_id}"),
            customer_last_seen_ms: batch.turns.iter().map(|t| t.received_at_ms).max(),
            template: None,
            media: None,
        };
        let payload =
            serde_json::to_string(&outbound).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        queued.push((reply.commit, message_id, payload));
    }
    for part in queued.chunks(ROWS_PER_STATEMENT) {
        script.statement(&format!(
            "INSERT INTO outbox (tenant_id, conversation_id, channel_account_id, channel_kind, message_id, \
             idempotency_key, payload, state, next_attempt_at, created_at, updated_at, priority) VALUES {}",
            rows(part.len(), "(?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, 0)")
        ));
        for (commit, message_id, payload) in part {
            let batch = &commit.batch;
            script
                .bind(batch.tenant_id.as_str())?
                .bind(batch.conversation_id.as_str())?
                .bind(batch.channel_account_id.as_str())?
                .bind(batch.channel_kind.as_str())?
                .bind(*message_id)?
                .bind(format!("msg-{message_id}"))?
                .bind(payload.clone())?
                .bind(now)?
                .bind(now)?
                .bind(now)?;
        }
    }
    Ok(())
}

/// Records the questions the knowledge base could not answer.
fn insert_unanswered<'q>(
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    which: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    let questions: Vec<(&'q Turn, String)> = which
        .iter()
        .flat_map(|&i| {
            commits[i]
                .unanswered
                .iter()
                .map(move |q| (commits[i], storable(q).into_owned()))
        })
        .collect();
    for part in questions.chunks(ROWS_PER_STATEMENT) {
        script.statement(&format!(
            "INSERT INTO unanswered_questions (tenant_id, conversation_id, query, created_at) VALUES {}",
            rows(part.len(), "(?, ?, ?, ?)")
        ));
        for (commit, question) in part {
            script
                .bind(commit.batch.tenant_id.as_str())?
                .bind(commit.batch.conversation_id.as_str())?
                .bind(question.clone())?
                .bind(now)?;
        }
    }
    Ok(())
}

/// Records the language model's token usage of the turns.
fn insert_llm_usage<'q>(
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    which: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    let usages: Vec<(&'q Turn, &'q super::turns::LlmUsage)> = which
        .iter()
        .flat_map(|&i| commits[i].llm_usage.iter().map(move |u| (commits[i], u)))
        .collect();
    for part in usages.chunks(ROWS_PER_STATEMENT) {
        script.statement(&format!(
            "INSERT INTO llm_usage (tenant_id, conversation_id, model, prompt_tokens, completion_tokens, created_at) \
             VALUES {}",
            rows(part.len(), "(?, ?, ?, ?, ?, ?)")
        ));
        for (commit, usage) in part {
            script
                .bind(commit.batch.tenant_id.as_str())?
                .bind(commit.batch.conversation_id.as_str())?
                .bind(usage.model.as_str())?
                .bind(usage.prompt_tokens)?
                .bind(usage.completion_tokens)?
                .bind(now)?;
        }
    }
    Ok(())
}

/// Follow-ups after the turns: an opt-out or opt-in is stored (rare: one by one); a turn that
/// plans a follow-up sets the conversation's pending one (inserted, or moved); the others cancel
/// it (the customer wrote).
async fn follow_ups<'q>(
    tx: Tx<'_, '_>,
    script: &mut Script<'q>,
    commits: &[&'q Turn],
    which: &[usize],
    now: i64,
) -> Result<(), StoreError> {
    for &i in which {
        let commit = commits[i];
        if let Some(opt_out) = commit.opt_out {
            super::follow_ups::set_opt_out(
                tx,
                &commit.batch.tenant_id,
                &commit.batch.conversation_id,
                opt_out,
            )
            .await?;
        }
    }
    let (planned, cancelled): (Vec<usize>, Vec<usize>) = which
        .iter()
        .copied()
        .partition(|&i| commits[i].follow_up.is_some());
    for part in cancelled.chunks(ROWS_PER_STATEMENT) {
        script.statement(&format!(
            "UPDATE follow_ups SET state = 'cancelled', reason = 'customer_wrote', locked_until = NULL, \
             updated_at = v.column3 FROM (VALUES {}) AS v WHERE follow_ups.conversation_id = v.column1 \
             AND follow_ups.tenant_id = v.column2 AND follow_ups.state = 'pending'",
            rows(part.len(), "(?, ?, ?)")
        ));
        for &i in part {
            script
                .bind(commits[i].batch.conversation_id.as_str())?
                .bind(commits[i].batch.tenant_id.as_str())?
                .bind(now)?;
        }
    }
    for part in planned.chunks(ROWS_PER_STATEMENT) {
        // A conversation's pending row is unique: a new one is inserted, an existing one moved.
        script.statement(&format!(
                "INSERT INTO follow_ups (tenant_id, conversation_id, contact_id, kind, due_at, text, \
             state, created_at, updated_at) \
             SELECT c.tenant_id, c.id, c.contact_id, v.column3, v.column4, v.column5, 'pending', v.column6, v.column6 \
             FROM (VALUES {}) AS v JOIN conversations c ON c.id = v.column1 AND c.tenant_id = v.column2 \
             WHERE true \
             ON CONFLICT (conversation_id) WHERE state = 'pending' DO UPDATE SET \
             kind = excluded.kind, due_at = excluded.due_at, text = excluded.text, \
             created_at = excluded.created_at, updated_at = excluded.updated_at, locked_until = NULL, \
             reschedules = follow_ups.reschedules + 1",
                rows(part.len(), "(?, ?, ?, ?, ?, ?)")
            ));
        for &i in part {
            let commit = commits[i];
            let Some(plan) = &commit.follow_up else {
                continue;
            };
            script
                .bind(commit.batch.conversation_id.as_str())?
                .bind(commit.batch.tenant_id.as_str())?
                .bind(plan.kind)?
                .bind(plan.due_at)?
                .bind(storable(&plan.text).into_owned())?
                .bind(now)?;
        }
    }
    Ok(())
}
