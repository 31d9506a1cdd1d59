//! Turning a batch into an answer: the engine decides, the knowledge base is consulted, the
//! engine phrases the reply. Everything here is side-effect free except reads and the typing
//! indicator; the lane commits the result.

use std::time::Instant;

use channels::webchat::WebchatEvent;
use flows::{
    Action, AnswerOutcome, Conversation, ConversationState, CustomerTurn, Locale, TurnKind,
};

use super::TurnContext;
use crate::store::{TurnBatch, TurnReply};
use crate::telemetry;

/// The answer to a batch, ready to commit.
#[derive(Debug)]
pub struct Prepared {
    /// The conversation after this turn.
    pub conversation: Conversation,
    /// Set when the turn handed the conversation to a human.
    pub handoff_reason: Option<&'static str>,
    /// Bot messages.
    pub replies: Vec<TurnReply>,
    /// Questions to record as unanswered.
    pub unanswered: Vec<String>,
    /// Metric label: `passage`, `no_match`, `failed`, `handoff` or `silent`.
    pub kind: &'static str,
    /// Arrival time of the oldest message answered (Unix ms), for latency metrics.
    pub oldest_received_ms: Option<i64>,
}

/// Runs the engine over `batch`, consulting the knowledge base when it asks to.
pub async fn prepare(ctx: &TurnContext, batch: &TurnBatch) -> Prepared {
    let conversation = Conversation {
        state: ConversationState::parse(&batch.state).unwrap_or(ConversationState::Bot),
        locale: Locale::parse(&batch.locale).unwrap_or_default(),
        abstain_streak: u32::try_from(batch.abstain_streak).unwrap_or(0),
    };
    let turns: Vec<CustomerTurn> = batch
        .turns
        .iter()
        .map(|t| CustomerTurn {
            text: t.text.clone(),
            kind: match t.kind.as_str() {
                "choice" => TurnKind::Choice,
                "command" => TurnKind::Command,
                _ => TurnKind::Text,
            },
        })
        .collect();
    let mut prepared = Prepared {
        conversation: conversation.clone(),
        handoff_reason: None,
        replies: Vec::new(),
        unanswered: Vec::new(),
        kind: "silent",
        oldest_received_ms: batch.turns.first().map(|t| t.received_at_ms),
    };
    let decision = ctx.engine.decide(&conversation, &turns);
    prepared.conversation = decision.conversation.clone();
    for action in decision.actions {
        if let Action::Answer { query } = action {
            if batch.channel_kind == "webchat" {
                ctx.hub
                    .publish(&batch.conversation_id, WebchatEvent::Typing);
            } else if let (Some(channel), Some(last)) = (
                ctx.channels
                    .resolve(&batch.channel_account_id, &batch.channel_kind),
                batch.turns.last(),
            ) {
                // Best effort (mark read + typing); never delays the answer.
                let recipient = batch.recipient.clone();
                let last = last.external_id.clone();
                tokio::spawn(async move { channel.typing(&recipient, &last).await });
            }
            let outcome = lookup(ctx, &batch.tenant_id, &query).await;
            prepared.kind = match &outcome {
                AnswerOutcome::Passage { .. } => "passage",
                AnswerOutcome::NoMatch => "no_match",
                AnswerOutcome::Failed => "failed",
            };
            let answered = ctx
                .engine
                .on_answer(&decision.conversation, &query, outcome);
            prepared.conversation = answered.conversation;
            for action in answered.actions {
                apply(&mut prepared, action);
            }
        } else {
            apply(&mut prepared, action);
        }
    }
    prepared
}

fn apply(prepared: &mut Prepared, action: Action) {
    match action {
        Action::Reply(reply) => prepared.replies.push(TurnReply {
            text: reply.text,
            choices: reply.choices,
        }),
        Action::Handoff { reason } => {
            prepared.handoff_reason = Some(reason.as_str());
            if prepared.kind == "silent" {
                prepared.kind = "handoff";
            }
        }
        Action::RecordUnanswered { query } => prepared.unanswered.push(query),
        // The engine never asks for a second lookup from `on_answer`.
        Action::Answer { .. } => {}
    }
}

/// Retrieves the best passage for `query` in the tenant's knowledge base.
async fn lookup(ctx: &TurnContext, tenant_id: &str, query: &str) -> AnswerOutcome {
    let knowledge = ctx.knowledge.clone();
    let tenant = tenant_id.to_owned();
    let question = query.to_owned();
    let top_k = ctx.top_k;
    let started = Instant::now();
    let result =
        tokio::task::spawn_blocking(move || knowledge.search(&tenant, &question, top_k)).await;
    metrics::histogram!(telemetry::RETRIEVAL_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(hits)) => match hits.into_iter().next() {
            Some(best) if best.relevance >= ctx.min_relevance => {
                let chunk = best.chunk;
                let title = match chunk.heading_path.last() {
                    Some(heading) if *heading != chunk.title => {
                        format!("{} — {heading}", chunk.title)
                    }
                    _ => chunk.title.clone(),
                };
                AnswerOutcome::Passage {
                    title,
                    text: chunk.text,
                    chunk_id: chunk.id,
                }
            }
            _ => AnswerOutcome::NoMatch,
        },
        Ok(Err(err)) => {
            tracing::warn!(tenant_id = %tenant_id, error = %err, "knowledge search failed");
            AnswerOutcome::Failed
        }
        Err(err) => {
            tracing::error!(tenant_id = %tenant_id, error = %err, "knowledge search panicked");
            AnswerOutcome::Failed
        }
    }
}
