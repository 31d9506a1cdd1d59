//! Turning a batch into an answer: the engine decides, the knowledge base is consulted, the
//! engine phrases the reply. Everything here is side-effect free except reads and the typing
//! indicator; the lane commits the result.

use std::time::Instant;

use channels::webchat::WebchatEvent;
use flows::{
    Action, AnswerOutcome, CodeChecked, CodeSent, Conversation, CustomerTurn, Generation,
    GivenChunk, PromptChunk, PromptContext, PromptTurn,
};
use futures::StreamExt;
use knowledge::ScoredChunk;
use knowledge::llm::{ChatDelta, ChatMessage, ChatRequest, LlmError, LlmProvider, Role, Usage};
use tracing::Instrument as _;

use super::TurnContext;
use crate::otp::{ChannelChoice, IssueRequest, OtpError, Recipient};
use crate::store::{LlmUsage, OtpRefusal, Turn, TurnBatch, TurnReply, now_ms};
use crate::telemetry;

/// A model call in flight: what it will cost at least (its estimated prompt), so a lane that
/// drops the preparation (supersede) can still count it against the tenant's budget.
pub type InFlight = std::sync::Mutex<Option<LlmUsage>>;

/// Runs the engine over `batch`, consulting the knowledge base when it asks to; the result is
/// the [`Turn`] to commit. `in_flight` holds the estimated usage while the model is called.
pub async fn prepare(ctx: &TurnContext, batch: TurnBatch, in_flight: &InFlight) -> Turn {
    let conversation = batch.conversation.clone();
    let pending: Vec<CustomerTurn> = batch
        .turns
        .iter()
        .map(|t| CustomerTurn {
            text: t.text.clone(),
            kind: t.kind,
        })
        .collect();
    // A flood is answered once, from its newest messages; the rest are marked answered too.
    let (turns, omitted) = flows::latest_turns(
        &pending,
        ctx.limits.max_turn_messages,
        ctx.limits.max_turn_chars,
    );
    let mut turn = Turn::new(batch);
    // "berhenti"/"stop"/"mulai"/"start" as the newest message switches follow-ups and is
    // confirmed; it is neither a question for the knowledge base nor a handoff.
    let command = turn
        .batch
        .turns
        .last()
        .and_then(|t| flows::follow_up::OptCommand::parse(&t.text));
    if let Some(command) = command {
        turn.opt_out = Some(command == flows::follow_up::OptCommand::Stop);
        turn.kind = "follow_up_command";
        // While a human owns the chat the bot says nothing; the flag is still recorded.
        if !conversation.state.is_human_owned() {
            turn.replies.push(TurnReply {
                text: command.confirmation(conversation.locale).to_owned(),
                choices: vec![],
                citations: vec![],
            });
        }
        return turn;
    }
    let bot = ctx.bots.get(&turn.batch.tenant_id);
    if !conversation.state.is_human_owned()
        && super::flow::run(ctx, &mut turn, omitted, in_flight).await
    {
        finish_flow_turn(ctx, &mut turn, &bot).await;
        return turn;
    }
    let greeting = bot.greeting.as_deref();
    let keywords = bot.handoff_keywords.as_slice();
    let decision = ctx
        .engine
        .decide_for_tenant(&conversation, &turns, greeting, keywords);
    turn.conversation = decision.conversation.clone();
    // The wait notice needs the queue's load; it is always a handoff's last action.
    let mut wait_lead = None;
    // A flow the model chose instead of answering.
    let mut picked_flow = None;
    for action in decision.actions {
        if let Action::SendOtp { phone } = action {
            let sent = send_code(ctx, &turn, &phone).await;
            let decided = ctx.engine.on_code_sent(&turn.conversation, &phone, sent);
            turn.conversation = decided.conversation;
            for action in decided.actions {
                apply(&mut turn, action, &mut wait_lead);
            }
        } else if let Action::VerifyOtp { challenge_id, code } = action {
            mask_code(&mut turn, &code);
            let checked = check_code(ctx, &turn.batch.tenant_id, &challenge_id, &code).await;
            let decided = ctx.engine.on_code_checked(&turn.conversation, checked);
            turn.conversation = decided.conversation;
            for action in decided.actions {
                apply(&mut turn, action, &mut wait_lead);
            }
        } else if let Action::Answer { query } = action {
            let asked = Asked {
                query: &query,
                omitted,
                in_flight,
                offer_flows: true,
            };
            picked_flow = answer_question(
                ctx,
                &decision.conversation,
                asked,
                &mut turn,
                &mut wait_lead,
            )
            .await;
        } else {
            apply(&mut turn, action, &mut wait_lead);
        }
    }
    if let Some(lead) = wait_lead {
        let text = wait_notice(ctx, &turn, &lead).await;
        turn.replies.push(TurnReply {
            text,
            choices: vec![],
            citations: vec![],
        });
    }
    if let Some(name) = picked_flow
        && super::flow::start_named(ctx, &mut turn, &name, omitted, in_flight).await
    {
        finish_flow_turn(ctx, &mut turn, &bot).await;
        return turn;
    }
    // The model was not asked (no passage to answer from): the router may still pick a flow.
    if turn.kind == "no_match"
        && turn.handoff_reason.is_none()
        && super::flow::start_by_intent(ctx, &mut turn, omitted, in_flight).await
    {
        finish_flow_turn(ctx, &mut turn, &bot).await;
        return turn;
    }
    plan_follow_up(ctx, &mut turn, &bot, now_ms());
    turn
}

/// Answers `asked` from the knowledge base (the model when configured and within budget,
/// else extractively) as the engine phrases it, into `turn`. Returns the flow the model chose
/// to start instead (only when `asked.offer_flows`); `turn` is then left as the model found it.
pub(super) async fn answer_question(
    ctx: &TurnContext,
    conversation: &Conversation,
    asked: Asked<'_>,
    turn: &mut Turn,
    wait_lead: &mut Option<String>,
) -> Option<String> {
    show_typing(ctx, &turn.batch);
    let llm = match &ctx.llm {
        Some(llm) if budget_left(ctx, &turn.batch.tenant_id).await => Some(llm),
        _ => None,
    };
    let answered = match llm {
        Some(llm) => match generate(ctx, llm.as_ref(), conversation, asked, turn).await {
            Generated::Decided(decision) => decision,
            Generated::StartFlow(name) => return Some(name),
        },
        None => {
            let outcome = lookup(ctx, &turn.batch.tenant_id, asked.query).await;
            turn.kind = match &outcome {
                AnswerOutcome::Passage { .. } => "passage",
                AnswerOutcome::NoMatch => "no_match",
                AnswerOutcome::Failed => "failed",
            };
            ctx.engine.on_answer(conversation, asked.query, outcome)
        }
    };
    turn.conversation = answered.conversation;
    for action in answered.actions {
        apply(turn, action, wait_lead);
    }
    None
}

/// A flow's turn: the wait notice when it handed off, and a reminder scheduled while the flow
/// waits for the customer (unless a flow step scheduled one).
async fn finish_flow_turn(ctx: &TurnContext, turn: &mut Turn, bot: &crate::bot::Live) {
    if turn.handoff_reason.is_some() {
        // The flow said why; the honest wait goes with it.
        if let Some(last) = turn.replies.pop() {
            let text = wait_notice(ctx, turn, &last.text).await;
            turn.replies.push(TurnReply { text, ..last });
        }
        turn.follow_up = None;
        return;
    }
    let waiting = matches!(&turn.flow_run, Some(Some(_)));
    if turn.follow_up.is_some() || !waiting {
        return;
    }
    let defaults = crate::config::FollowUpConfig::default();
    let rules = follow_up_rules(ctx, &turn.batch.tenant_id, bot, &defaults);
    let hours = &bot.hours;
    if rules.after.is_zero() {
        return;
    }
    let now = now_ms();
    let after = i64::try_from(rules.after.as_millis()).unwrap_or(i64::MAX / 4);
    let (due_at, deferred) = flows::follow_up::defer(rules.quiet(), hours, now + after);
    turn.follow_up = Some(crate::store::PlannedFollowUp {
        due_at,
        kind: if deferred { "quiet" } else { "flow_reminder" },
        text: flows::texts::flow_reminder(turn.conversation.locale).to_owned(),
    });
}

/// The tenant's follow-up rules: published in the console, else `sapa.toml`'s, else defaults.
fn follow_up_rules<'a>(
    ctx: &'a TurnContext,
    tenant_id: &str,
    bot: &'a crate::bot::Live,
    defaults: &'a crate::config::FollowUpConfig,
) -> &'a crate::config::FollowUpConfig {
    bot.follow_up
        .as_ref()
        .or_else(|| ctx.follow_ups.get(tenant_id))
        .unwrap_or(defaults)
}

/// Schedules the tenant's follow-up after a bot answer (the knowledge base or the model
/// replied; not a greeting, a code step or a handoff) that leaves the bot in charge.
fn plan_follow_up(ctx: &TurnContext, turn: &mut Turn, bot: &crate::bot::Live, now: i64) {
    let answered = matches!(
        turn.kind,
        "passage" | "no_match" | "llm_answer" | "llm_clarify" | "llm_rejected"
    );
    if !answered
        || turn.replies.is_empty()
        || turn.handoff_reason.is_some()
        || turn.conversation.state != flows::ConversationState::Bot
    {
        return;
    }
    let defaults = crate::config::FollowUpConfig::default();
    let rules = follow_up_rules(ctx, &turn.batch.tenant_id, bot, &defaults);
    let hours = &bot.hours;
    if rules.after.is_zero() {
        return;
    }
    let after = i64::try_from(rules.after.as_millis()).unwrap_or(i64::MAX / 4);
    let (due_at, deferred) = flows::follow_up::defer(rules.quiet(), hours, now + after);
    let text = if rules.text.is_empty() {
        flows::follow_up::default_text(turn.conversation.locale).to_owned()
    } else {
        rules.text.clone()
    };
    turn.follow_up = Some(crate::store::PlannedFollowUp {
        due_at,
        kind: if deferred { "quiet" } else { "scheduled" },
        text,
    });
}

/// `lead` and the honest wait: the tenant's business hours, agents online and recent waits.
pub(super) async fn wait_notice(ctx: &TurnContext, turn: &Turn, lead: &str) -> String {
    let tenant_id = &turn.batch.tenant_id;
    let hours = ctx.bots.get(tenant_id).hours.clone();
    let outlook = super::assigner::wait_outlook(
        &ctx.store,
        &hours,
        tenant_id,
        &turn.batch.conversation_id,
        now_ms(),
    )
    .await;
    flows::texts::wait_notice(turn.conversation.locale, lead, &outlook)
}

fn set_in_flight(in_flight: &InFlight, usage: Option<LlmUsage>) {
    *in_flight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = usage;
}

/// Whether the tenant may still call the model: under its monthly quota and its daily token
/// budget (`llm.daily_tokens_per_tenant`, the tenant's usage day: midnight to midnight in its
/// business-hours time zone, UTC without one). Spent: a warning, a metric, and the caller
/// answers extractively. When usage cannot be read the model is used (the limits bound cost;
/// they must not take answers down).
pub(super) async fn budget_left(ctx: &TurnContext, tenant_id: &str) -> bool {
    let configured = ctx.quotas.get(tenant_id).copied();
    let budget = match crate::usage::budget(&ctx.store, configured, tenant_id, now_ms()).await {
        Ok(budget) => budget,
        Err(err) => {
            tracing::warn!(tenant_id = %tenant_id, error = %err, "reading usage failed; quota and daily budget not checked");
            return true;
        }
    };
    quota_left(&budget.quota, tenant_id) && daily_budget_left(ctx, &budget, tenant_id)
}

/// Whether the tenant is under its monthly quotas (messages and model tokens). Reached: a
/// warning, a metric, and the caller answers extractively (or offers a human) — never
/// silence.
fn quota_left(quota: &crate::usage::Quota, tenant_id: &str) -> bool {
    if !quota.exceeded {
        return true;
    }
    tracing::warn!(
        tenant_id = %tenant_id,
        month = %quota.month,
        messages_used = quota.messages_used,
        messages_limit = quota.messages_limit,
        tokens_used = quota.tokens_used,
        tokens_limit = quota.tokens_limit,
        "monthly quota reached; answering without the language model"
    );
    metrics::counter!(telemetry::QUOTA_EXCEEDED_TOTAL, "tenant" => tenant_id.to_owned())
        .increment(1);
    false
}

/// See [`budget_left`]: the daily token budget.
fn daily_budget_left(ctx: &TurnContext, budget: &crate::usage::Budget, tenant_id: &str) -> bool {
    let limit = ctx.limits.daily_tokens_per_tenant;
    let used = budget.day_tokens;
    if limit == 0 || u64::try_from(used).unwrap_or(0) < limit {
        return true;
    }
    tracing::warn!(tenant_id = %tenant_id, day = %budget.day, used, budget = limit, "daily LLM token budget spent; answering extractively until the tenant's midnight");
    metrics::counter!(telemetry::LLM_BUDGET_EXHAUSTED_TOTAL, "tenant" => tenant_id.to_owned())
        .increment(1);
    false
}

/// The question of one turn, and how many older pending messages it leaves out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked<'a> {
    pub(super) query: &'a str,
    pub(super) omitted: usize,
    pub(super) in_flight: &'a InFlight,
    /// Offer the model the tenant's described flows (not while one runs).
    pub(super) offer_flows: bool,
}

/// What a model call came to.
enum Generated {
    /// The engine's answer.
    Decided(flows::Decision),
    /// The model chose to start this (offered) flow instead of answering.
    StartFlow(String),
}

/// Shows the customer that an answer is coming: a typing event on web chat, otherwise the
/// channel's mark-read + typing (best effort; never delays the answer).
fn show_typing(ctx: &TurnContext, batch: &TurnBatch) {
    if batch.channel_kind.is_webchat() {
        ctx.coord
            .publish(&batch.conversation_id, WebchatEvent::Typing);
    } else if let (Some(channel), Some(last)) = (
        ctx.channels
            .resolve(&batch.channel_account_id, batch.channel_kind),
        batch.turns.last(),
    ) {
        let recipient = batch.recipient.clone();
        let last = last.external_id.clone();
        tokio::spawn(async move { channel.typing(&recipient, &last).await });
    }
}

pub(super) fn apply(turn: &mut Turn, action: Action, wait_lead: &mut Option<String>) {
    match action {
        Action::WaitNotice { lead } => *wait_lead = Some(lead),
        Action::Reply(reply) => turn.replies.push(TurnReply {
            text: reply.text,
            choices: reply.choices,
            citations: reply.citations,
        }),
        Action::Handoff { reason } => {
            turn.handoff_reason = Some(reason.as_str().to_owned());
            if turn.kind == "silent" {
                turn.kind = "handoff";
            }
        }
        Action::RecordUnanswered { query } => turn.unanswered.push(query),
        // The engine never asks for a second lookup from `on_answer`, nor for codes from
        // `on_code_*`.
        Action::Answer { .. } | Action::SendOtp { .. } | Action::VerifyOtp { .. } => {}
    }
}

/// Sends a verification code to `phone` over the tenant's WhatsApp number.
pub(super) async fn send_code(ctx: &TurnContext, turn: &Turn, phone: &str) -> CodeSent {
    let Ok(to) = Recipient::phone(phone) else {
        return CodeSent::Failed;
    };
    let request = IssueRequest {
        to,
        channel: ChannelChoice::Whatsapp,
        purpose: "verify_phone".to_owned(),
        locale: Some(turn.conversation.locale),
        idempotency_key: None,
    };
    match ctx.otp.issue(&turn.batch.tenant_id, request).await {
        Ok(issued) => CodeSent::Sent {
            challenge_id: issued.challenge.id,
        },
        Err(OtpError::TemplateMissing | OtpError::NoChannel(_) | OtpError::RecipientUnknown) => {
            CodeSent::Unavailable
        }
        Err(OtpError::Limited(OtpRefusal::ResendTooSoon, wait)) => CodeSent::TooSoon {
            seconds: wait.as_secs().max(1),
        },
        Err(err) => {
            tracing::warn!(error = %err, "a verification code could not be sent");
            CodeSent::Failed
        }
    }
}

/// Checks the code the customer typed.
pub(super) async fn check_code(
    ctx: &TurnContext,
    tenant_id: &str,
    challenge_id: &str,
    code: &str,
) -> CodeChecked {
    match ctx.otp.verify(tenant_id, challenge_id, code).await {
        // Already verified: this turn ran again after its first try was superseded.
        Ok(()) | Err(OtpError::AlreadyVerified) => CodeChecked::Verified,
        Err(OtpError::InvalidCode { attempts_left }) => CodeChecked::Wrong { attempts_left },
        Err(OtpError::Expired | OtpError::NotFound) => CodeChecked::Expired,
        Err(OtpError::TooManyAttempts) => CodeChecked::Locked,
        Err(err) => {
            tracing::warn!(error = %err, "a verification code could not be checked");
            CodeChecked::Failed
        }
    }
}

/// Marks the batch's messages that were the code to be stored masked.
pub(super) fn mask_code(turn: &mut Turn, code: &str) {
    for pending in &turn.batch.turns {
        let digits: String = pending.text.chars().filter(char::is_ascii_digit).collect();
        if digits == code {
            turn.masked_inbox_ids.push(pending.inbox_id);
        }
    }
}

/// Retrieves the tenant's best chunks for `query`; `None` when the search failed. With
/// `[embeddings]` the question is embedded first (hybrid search); when that fails the search
/// uses BM25 alone.
async fn retrieve(ctx: &TurnContext, tenant_id: &str, query: &str) -> Option<Vec<ScoredChunk>> {
    retrieve_chunks(ctx, tenant_id, query)
        .instrument(tracing::info_span!("retrieval"))
        .await
}

async fn retrieve_chunks(
    ctx: &TurnContext,
    tenant_id: &str,
    query: &str,
) -> Option<Vec<ScoredChunk>> {
    let knowledge = ctx.knowledge.clone();
    let tenant = tenant_id.to_owned();
    let question = query.to_owned();
    let top_k = ctx.top_k;
    let started = Instant::now();
    let vector = knowledge.embed_query(query).await;
    // Embedded searches are CPU work: at most one per core at a time (see `TurnContext`).
    let _slot = match &ctx.searches {
        Some(slots) => slots.acquire().await.ok(),
        None => None,
    };
    let result = tokio::task::spawn_blocking(move || {
        knowledge.retrieve(
            &tenant,
            &knowledge::SearchQuery::hybrid(&question, vector.as_ref()),
            top_k,
        )
    })
    .await;
    metrics::histogram!(telemetry::RETRIEVAL_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(hits)) => Some(hits),
        Ok(Err(err)) => {
            metrics::counter!(telemetry::RETRIEVAL_FAILURES_TOTAL).increment(1);
            tracing::warn!(tenant_id = %tenant_id, error = %err, "knowledge search failed");
            None
        }
        Err(err) => {
            metrics::counter!(telemetry::RETRIEVAL_FAILURES_TOTAL).increment(1);
            tracing::error!(tenant_id = %tenant_id, error = %err, "knowledge search panicked");
            None
        }
    }
}

/// The model's answer: retrieve, abstain below the threshold, otherwise prompt with the
/// passages above it, validate the structured output, and let the engine decide.
async fn generate(
    ctx: &TurnContext,
    llm: &dyn LlmProvider,
    conversation: &Conversation,
    asked: Asked<'_>,
    turn: &mut Turn,
) -> Generated {
    let query = asked.query;
    let batch = &turn.batch;
    let (tenant_id, conversation_id) = (batch.tenant_id.clone(), batch.conversation_id.clone());
    let stream_to = ctx.stream_webchat && batch.channel_kind.is_webchat();
    // Only passages at or above the threshold reach the model: nothing there, no model call.
    let Some(chunks) = retrieve_relevant(ctx, &tenant_id, query).await else {
        turn.kind = "failed";
        return Generated::Decided(ctx.engine.on_answer(
            conversation,
            query,
            AnswerOutcome::Failed,
        ));
    };
    if chunks.is_empty() {
        turn.kind = "no_match";
        return Generated::Decided(ctx.engine.on_answer(
            conversation,
            query,
            AnswerOutcome::NoMatch,
        ));
    }
    let history = if ctx.history_messages > 0 {
        history(ctx, batch, ctx.history_messages).await
    } else {
        Vec::new()
    };
    let mut prompt_ctx = PromptContext {
        tenant_name: batch
            .tenant_name
            .clone()
            .unwrap_or_else(|| tenant_id.clone()),
        instructions: batch.instructions.clone(),
        question: query.to_owned(),
        chunks: prompt_chunks(&chunks),
        abstain_streak: conversation.abstain_streak,
        history: history
            .into_iter()
            .map(|(author, text)| PromptTurn {
                role: if author == "customer" {
                    "customer"
                } else {
                    "assistant"
                },
                text: text.chars().take(HISTORY_MESSAGE_CHARS).collect(),
            })
            .collect(),
        omitted_messages: asked.omitted,
        handoff_summary: batch.handoff_summary.clone().unwrap_or_default(),
        flows: if asked.offer_flows {
            super::flow::offered(ctx, &tenant_id)
        } else {
            Vec::new()
        },
    };
    let rendered = match ctx.prompts.render_within(
        conversation.locale,
        &mut prompt_ctx,
        ctx.limits.max_prompt_tokens,
    ) {
        Ok(rendered) => rendered,
        Err(err) => {
            tracing::error!(error = %err, "rendering the prompt failed");
            turn.kind = "failed";
            return Generated::Decided(ctx.engine.on_answer(
                conversation,
                query,
                AnswerOutcome::Failed,
            ));
        }
    };
    let rendered_tokens = rendered.estimated_tokens();
    let request = model_request(rendered);
    let estimate = LlmUsage {
        model: llm.label().to_owned(),
        prompt_tokens: i64::try_from(rendered_tokens).unwrap_or(i64::MAX),
        completion_tokens: 0,
    };
    set_in_flight(asked.in_flight, Some(estimate));
    let stream_to = stream_to.then_some(conversation_id.as_str());
    let mut published = 0usize;
    let result = async {
        match stream_to {
            Some(conversation_id) => {
                stream_completion(ctx, llm, &request, conversation_id, &mut published).await
            }
            None => llm.chat(&request).await.map(|r| (r.content, r.usage)),
        }
    }
    .instrument(tracing::info_span!("llm", model = llm.label()))
    .await;
    // Finished: the turn carries the real usage from here on.
    set_in_flight(asked.in_flight, None);
    let allowed_links = ctx
        .allowed_links
        .get(&tenant_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let generation = match result {
        Ok((content, usage)) => {
            if let Some(usage) = usage {
                turn.llm_usage.push(LlmUsage {
                    model: llm.label().to_owned(),
                    prompt_tokens: i64::from(usage.prompt_tokens),
                    completion_tokens: i64::from(usage.completion_tokens),
                });
            }
            let given: Vec<GivenChunk<'_>> = prompt_ctx
                .chunks
                .iter()
                .map(|c| GivenChunk {
                    id: &c.id,
                    text: &c.text,
                })
                .collect();
            match flows::policy::validate(&content, &given, allowed_links) {
                Ok(reply) => {
                    // Validated: release what the stream held back.
                    if let (Some(conversation_id), Some(streamed)) =
                        (stream_to, flows::policy::partial_reply(&content))
                        && reply.action == flows::ModelAction::Answer
                        && streamed.len() > published
                        && streamed.is_char_boundary(published)
                    {
                        ctx.coord.publish(
                            conversation_id,
                            WebchatEvent::Delta {
                                text: streamed[published..].to_owned(),
                            },
                        );
                    }
                    Generation::Valid(reply)
                }
                Err(rejection) => {
                    tracing::warn!(tenant_id = %tenant_id, conversation_id = %conversation_id, %rejection, "model output rejected; abstaining");
                    Generation::Rejected
                }
            }
        }
        Err(err) => {
            tracing::warn!(tenant_id = %tenant_id, conversation_id = %conversation_id, error = %err, "language model unavailable");
            Generation::Unavailable
        }
    };
    // A flow must be one the model was offered.
    let generation = match generation {
        Generation::Valid(r)
            if r.action == flows::ModelAction::Flow
                && !prompt_ctx
                    .flows
                    .iter()
                    .any(|f| Some(f.name.as_str()) == r.flow.as_deref()) =>
        {
            tracing::warn!(tenant_id = %tenant_id, flow = ?r.flow, "the model chose a flow it was not offered; abstaining");
            Generation::Rejected
        }
        other => other,
    };
    turn.kind = match &generation {
        Generation::Valid(r) => model_kind(r.action),
        Generation::Rejected => "llm_rejected",
        Generation::Unavailable => "llm_unavailable",
    };
    // Only a valid answer is sent as streamed; anything else replaces the streamed text.
    let keeps_stream =
        matches!(&generation, Generation::Valid(r) if r.action == flows::ModelAction::Answer);
    if let (false, Some(conversation_id)) = (keeps_stream, stream_to) {
        ctx.coord
            .publish(conversation_id, WebchatEvent::StreamDiscarded);
    }
    // A rejected answer (an invented price, a foreign link) to a question the passages do
    // answer: the customer gets the extractive answer from the best one, not a clarifying
    // question.
    if let (Generation::Rejected, Some(best)) = (&generation, chunks.first()) {
        return Generated::Decided(ctx.engine.on_answer(
            conversation,
            query,
            AnswerOutcome::Passage {
                title: chunk_title(&best.chunk),
                text: best.chunk.text.clone(),
                chunk_id: best.chunk.id.clone(),
                style: ctx.bots.get(&tenant_id).style,
            },
        ));
    }
    if let Generation::Valid(flows::ModelReply {
        action: flows::ModelAction::Flow,
        flow: Some(name),
        ..
    }) = generation
    {
        return Generated::StartFlow(name);
    }
    Generated::Decided(ctx.engine.on_generated(conversation, query, generation))
}

/// The metric label of a valid model reply.
fn model_kind(action: flows::ModelAction) -> &'static str {
    match action {
        flows::ModelAction::Answer => "llm_answer",
        flows::ModelAction::Clarify => "llm_clarify",
        flows::ModelAction::Handoff => "llm_handoff",
        flows::ModelAction::Flow => "llm_flow",
    }
}

/// Streams a completion, publishing the `reply` field to the conversation's web chat sockets
/// as it grows — only up to [`flows::policy::stream_safe_len`]: numbers, prices and links wait
/// for validation. `published` ends as the byte length of the reply shown so far. Returns the
/// whole output and its usage.
async fn stream_completion(
    ctx: &TurnContext,
    llm: &dyn LlmProvider,
    request: &ChatRequest,
    conversation_id: &str,
    published: &mut usize,
) -> Result<(String, Option<Usage>), LlmError> {
    let mut stream = llm.chat_stream(request).await?;
    let mut content = String::new();
    let mut usage = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(ChatDelta::Text(text)) => {
                content.push_str(&text);
                if let Some(reply) = flows::policy::partial_reply(&content) {
                    let safe = flows::policy::stream_safe_len(&reply);
                    if safe > *published && reply.is_char_boundary(*published) {
                        ctx.coord.publish(
                            conversation_id,
                            WebchatEvent::Delta {
                                text: reply[*published..safe].to_owned(),
                            },
                        );
                        *published = safe;
                    }
                }
            }
            Ok(ChatDelta::Usage(u)) => usage = Some(u),
            Err(err) => return Err(err),
        }
    }
    Ok((content, usage))
}

fn chunk_title(chunk: &knowledge::Chunk) -> String {
    match chunk.heading_path.last() {
        Some(heading) if *heading != chunk.title => format!("{} — {heading}", chunk.title),
        _ => chunk.title.clone(),
    }
}

/// Retrieves the best passage for `query` in the tenant's knowledge base.
async fn lookup(ctx: &TurnContext, tenant_id: &str, query: &str) -> AnswerOutcome {
    match retrieve_relevant(ctx, tenant_id, query).await {
        Some(hits) => match hits.into_iter().next() {
            Some(best) => {
                let chunk = best.chunk;
                AnswerOutcome::Passage {
                    title: chunk_title(&chunk),
                    text: chunk.text,
                    chunk_id: chunk.id,
                    style: ctx.bots.get(tenant_id).style,
                }
            }
            None => AnswerOutcome::NoMatch,
        },
        None => AnswerOutcome::Failed,
    }
}

/// Longest earlier message given to the model, in characters.
const HISTORY_MESSAGE_CHARS: usize = 500;

/// The conversation's last `limit` messages before this batch, oldest first; empty when they
/// cannot be read (context is a help, not a requirement).
async fn history(ctx: &TurnContext, batch: &TurnBatch, limit: usize) -> Vec<(String, String)> {
    let Some(first) = batch.turns.first() else {
        return Vec::new();
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match ctx
        .store
        .conversation_history(
            &batch.tenant_id,
            &batch.conversation_id,
            first.inbox_id,
            limit,
        )
        .await
    {
        Ok(history) => history,
        Err(err) => {
            tracing::warn!(conversation_id = %batch.conversation_id, error = %err, "loading conversation history failed");
            Vec::new()
        }
    }
}

/// The passages at or above the answer threshold for `query`, best first; `None` when the
/// search failed.
async fn retrieve_relevant(
    ctx: &TurnContext,
    tenant_id: &str,
    query: &str,
) -> Option<Vec<ScoredChunk>> {
    let hits = retrieve(ctx, tenant_id, query).await?;
    Some(
        hits.into_iter()
            .filter(|h| h.relevance >= ctx.min_relevance)
            .collect(),
    )
}

/// The answer the owner's "try it" chat shows for a draft: what a new customer writing
/// `text` would get with `draft` live, and the passages it cites. Nothing is stored or sent;
/// the model (when configured) gets the draft's instructions.
#[derive(Debug, Clone)]
pub struct Tried {
    /// The reply text.
    pub reply: String,
    /// Cited passages: (chunk id, title, text).
    pub citations: Vec<(String, String, String)>,
    /// `passage`, `llm_answer`, `llm_clarify`, `llm_handoff`, `no_match`, `handoff`, …
    pub kind: &'static str,
    /// Document names of the passages at or above the answer threshold, best first.
    pub retrieved_docs: Vec<String>,
    /// Document names of the passages the reply cites.
    pub cited_docs: Vec<String>,
}

/// See [`Tried`].
pub async fn try_answer(
    ctx: &TurnContext,
    tenant_id: &str,
    draft: &crate::bot::Live,
    locale: flows::Locale,
    text: &str,
) -> Tried {
    let conversation = Conversation {
        locale,
        ..Conversation::default()
    };
    let turns = [CustomerTurn {
        text: text.to_owned(),
        kind: flows::TurnKind::Text,
    }];
    let decision = ctx.engine.decide_for_tenant(
        &conversation,
        &turns,
        draft.greeting.as_deref(),
        &draft.handoff_keywords,
    );
    let mut kind = "reply";
    let mut chunks = Vec::new();
    let mut replies = Vec::new();
    for action in decision.actions {
        match action {
            Action::Answer { query } => {
                let found = retrieve_relevant(ctx, tenant_id, &query).await;
                chunks = found.clone().unwrap_or_default();
                let answered = match (&ctx.llm, found) {
                    (Some(llm), Some(found)) if !found.is_empty() => {
                        kind = "llm_answer";
                        let generation = try_generate(
                            ctx,
                            llm.as_ref(),
                            tenant_id,
                            draft,
                            &query,
                            &found,
                            locale,
                        )
                        .await;
                        match (generation, found.first()) {
                            (Generation::Valid(reply), _) => {
                                kind = model_kind(reply.action);
                                ctx.engine.on_generated(
                                    &decision.conversation,
                                    &query,
                                    Generation::Valid(reply),
                                )
                            }
                            (_, Some(best)) => {
                                kind = "passage";
                                ctx.engine.on_answer(
                                    &decision.conversation,
                                    &query,
                                    passage_of(best, draft.style),
                                )
                            }
                            (other, None) => {
                                ctx.engine
                                    .on_generated(&decision.conversation, &query, other)
                            }
                        }
                    }
                    (_, Some(found)) => match found.first() {
                        Some(best) => {
                            kind = "passage";
                            ctx.engine.on_answer(
                                &decision.conversation,
                                &query,
                                passage_of(best, draft.style),
                            )
                        }
                        None => {
                            kind = "no_match";
                            ctx.engine.on_answer(
                                &decision.conversation,
                                &query,
                                AnswerOutcome::NoMatch,
                            )
                        }
                    },
                    (_, None) => {
                        kind = "failed";
                        ctx.engine
                            .on_answer(&decision.conversation, &query, AnswerOutcome::Failed)
                    }
                };
                for action in answered.actions {
                    shown(action, &mut replies, &mut kind);
                }
            }
            other => shown(other, &mut replies, &mut kind),
        }
    }
    let cited: Vec<String> = replies.iter().flat_map(|r| r.citations.clone()).collect();
    Tried {
        retrieved_docs: chunks
            .iter()
            .map(|c| c.chunk.document_name.clone())
            .collect(),
        cited_docs: chunks
            .iter()
            .filter(|c| cited.contains(&c.chunk.id))
            .map(|c| c.chunk.document_name.clone())
            .collect(),
        reply: replies
            .iter()
            .map(|r| r.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        citations: chunks
            .iter()
            .filter(|c| cited.contains(&c.chunk.id))
            .map(|c| {
                (
                    c.chunk.id.clone(),
                    chunk_title(&c.chunk),
                    c.chunk.text.clone(),
                )
            })
            .collect(),
        kind,
    }
}

/// What a "try it" answer shows of an action: its replies, the wait notice's lead, handoffs.
fn shown(action: Action, replies: &mut Vec<flows::BotReply>, kind: &mut &'static str) {
    match action {
        Action::Reply(reply) => replies.push(reply),
        Action::WaitNotice { lead } => replies.push(flows::BotReply {
            text: lead,
            choices: vec![],
            citations: vec![],
        }),
        Action::Handoff { .. } => *kind = "handoff",
        _ => {}
    }
}

fn passage_of(best: &ScoredChunk, style: flows::AnswerStyle) -> AnswerOutcome {
    AnswerOutcome::Passage {
        title: chunk_title(&best.chunk),
        text: best.chunk.text.clone(),
        chunk_id: best.chunk.id.clone(),
        style,
    }
}

/// One model call for "try it", with the draft's instructions.
async fn try_generate(
    ctx: &TurnContext,
    llm: &dyn LlmProvider,
    tenant_id: &str,
    draft: &crate::bot::Live,
    query: &str,
    chunks: &[ScoredChunk],
    locale: flows::Locale,
) -> Generation {
    let tenant_name = match ctx.store.tenant_prompt_profile(tenant_id).await {
        Ok(Some((name, _))) => name,
        _ => tenant_id.to_owned(),
    };
    let mut prompt_ctx = PromptContext {
        tenant_name,
        instructions: draft.instructions.clone(),
        question: query.to_owned(),
        chunks: prompt_chunks(chunks),
        abstain_streak: 0,
        history: vec![],
        omitted_messages: 0,
        handoff_summary: String::new(),
        // "Try it" shows the knowledge answer; flows are tried by their keywords.
        flows: Vec::new(),
    };
    let Ok(rendered) =
        ctx.prompts
            .render_within(locale, &mut prompt_ctx, ctx.limits.max_prompt_tokens)
    else {
        return Generation::Unavailable;
    };
    let request = model_request(rendered);
    let Ok(response) = llm.chat(&request).await else {
        return Generation::Unavailable;
    };
    let given: Vec<GivenChunk<'_>> = prompt_ctx
        .chunks
        .iter()
        .map(|c| GivenChunk {
            id: &c.id,
            text: &c.text,
        })
        .collect();
    let allowed = ctx
        .allowed_links
        .get(tenant_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match flows::policy::validate(&response.content, &given, allowed) {
        Ok(reply) => Generation::Valid(reply),
        Err(_) => Generation::Rejected,
    }
}

/// The passages as the prompt shows them.
fn prompt_chunks(chunks: &[ScoredChunk]) -> Vec<PromptChunk> {
    chunks
        .iter()
        .map(|h| PromptChunk {
            id: h.chunk.id.clone(),
            title: chunk_title(&h.chunk),
            text: h.chunk.text.clone(),
        })
        .collect()
}

/// The structured-answer request for a rendered prompt.
fn model_request(rendered: flows::RenderedPrompt) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage {
                role: Role::System,
                content: rendered.system,
            },
            ChatMessage {
                role: Role::User,
                content: rendered.user,
            },
        ],
        json: true,
    }
}
