//! A turn inside a tenant flow: the newest customer message starts a flow (a trigger) or is fed
//! to the one in progress, and the runtime's actions are carried out here: messages, one-time
//! codes through the OTP service, webhook calls under their rules, digressions answered from the
//! knowledge base, tags, reminders and handoffs. The run to resume is committed with the turn,
//! so a crash replays the turn from the run as it was.

use std::collections::VecDeque;

use flows::flow::{self, Flow, FlowAction, FlowEvent, FlowRun, Outcome, RunContext};
use flows::{CodeChecked, CodeSent, ConversationState, TurnKind};

use super::TurnContext;
use super::answer::{Asked, InFlight, answer_question, check_code, mask_code, send_code};
use crate::store::{PlannedFollowUp, Turn, TurnReply, now_ms};

/// The run's slot holding the challenge of the code sent (slot names in documents start with a
/// letter, so this never collides with one).
const OTP_CHALLENGE: &str = "_otp_challenge";

/// Runtime steps (code checks, webhook results) one turn feeds back at most.
const MAX_FEEDBACK: usize = 16;

/// Runs the turn in a flow when the conversation is in one or its newest message starts one;
/// `false` leaves the turn to the usual answer path (nothing changed).
pub async fn run(ctx: &TurnContext, turn: &mut Turn, omitted: usize, in_flight: &InFlight) -> bool {
    let tenant_flows = ctx.flows.get(&turn.batch.tenant_id);
    let stored = turn.batch.flow_run.as_deref().and_then(|json| {
        serde_json::from_str::<FlowRun>(json)
            .inspect_err(|err| tracing::warn!(error = %err, "an unreadable flow run is dropped"))
            .ok()
    });
    if stored.is_none() && tenant_flows.is_empty() {
        if turn.batch.flow_run.is_some() {
            turn.flow_run = Some(None);
        }
        return false;
    }
    let Some(newest) = turn.batch.turns.last() else {
        return false;
    };
    let text = newest.text.clone();
    let button = (newest.kind == TurnKind::Choice).then_some(text.as_str());
    let hours = ctx.bots.get(&turn.batch.tenant_id).hours.clone();
    let run_ctx = RunContext {
        locale: turn.conversation.locale,
        channel: turn.batch.channel_kind,
        customer_phone: turn.conversation.own_phone.clone(),
        customer_name: None,
        now: hours.local_datetime(now_ms()),
    };
    let (current, outcome) = match stored {
        Some(run) => match tenant_flows.iter().find(|f| f.name == run.flow) {
            Some(current) => {
                let event = match button {
                    Some(id) => FlowEvent::Button(id.to_owned()),
                    None => FlowEvent::CustomerText(text.clone()),
                };
                (current, flow::step(current, run, event, &run_ctx))
            }
            None => {
                // The flow was deleted: the message is answered as usual.
                turn.flow_run = Some(None);
                return false;
            }
        },
        None => {
            let analyze = |t: &str| knowledge::analyzer::analyze(t);
            match flow::triggered(&tenant_flows, &text, button, &analyze) {
                Some(started) => (started, flow::start(started, &run_ctx)),
                None => return false,
            }
        }
    };
    metrics::counter!(crate::telemetry::FLOW_TURNS_TOTAL, "flow" => current.name.clone())
        .increment(1);
    turn.kind = "flow";
    let mut carry = Carry {
        ctx,
        flow: current,
        run_ctx: &run_ctx,
        omitted,
        in_flight,
    };
    let run = carry.carry_out(turn, outcome).await;
    let json = run.map(|r| serde_json::to_string(&r).unwrap_or_default());
    turn.flow_run = Some(json.filter(|j| !j.is_empty()));
    true
}

/// What carrying out one turn's actions needs.
struct Carry<'a> {
    ctx: &'a TurnContext,
    flow: &'a Flow,
    run_ctx: &'a RunContext,
    omitted: usize,
    in_flight: &'a InFlight,
}

impl Carry<'_> {
    /// Carries out `outcome`'s actions in order, feeding code checks and webhook results back
    /// to the runtime; the run to persist.
    async fn carry_out(&mut self, turn: &mut Turn, outcome: Outcome) -> Option<FlowRun> {
        let mut run = outcome.run;
        let mut actions: VecDeque<FlowAction> = outcome.actions.into();
        let mut feedback = 0;
        while let Some(action) = actions.pop_front() {
            let event = match action {
                FlowAction::Say { text, choices } => {
                    turn.replies.push(TurnReply {
                        text,
                        choices: choices.into_iter().map(|(_, title)| title).collect(),
                        citations: vec![],
                    });
                    None
                }
                FlowAction::SendOtp { phone } => {
                    match send_code(self.ctx, turn, &phone).await {
                        CodeSent::Sent { challenge_id } => {
                            if let Some(run) = run.as_mut() {
                                run.slots.insert(OTP_CHALLENGE.to_owned(), challenge_id);
                            }
                        }
                        // The code sent moments ago is still valid.
                        CodeSent::TooSoon { .. } => {}
                        CodeSent::Unavailable | CodeSent::Failed => {
                            actions.clear();
                            let locale = turn.conversation.locale;
                            turn.replies.push(TurnReply {
                                text: flows::texts::flow_code_unavailable(locale).to_owned(),
                                choices: vec![],
                                citations: vec![],
                            });
                            self.hand_off(turn, "no verification code could be sent".to_owned());
                            return None;
                        }
                    }
                    None
                }
                FlowAction::VerifyOtp { code } => {
                    mask_code(turn, &code);
                    let challenge = run
                        .as_ref()
                        .and_then(|r| r.slots.get(OTP_CHALLENGE).cloned())
                        .unwrap_or_default();
                    let checked =
                        check_code(self.ctx, &turn.batch.tenant_id, &challenge, &code).await;
                    Some(FlowEvent::OtpResult {
                        verified: matches!(checked, CodeChecked::Verified),
                    })
                }
                FlowAction::CallWebhook {
                    url,
                    body,
                    timeout,
                    retries,
                } => {
                    let result = self
                        .ctx
                        .webhooks
                        .call(&turn.batch.tenant_id, &url, &body, timeout, retries)
                        .await;
                    if let Err(why) = &result {
                        tracing::warn!(flow = %self.flow.name, error = %why, "a flow webhook failed");
                    }
                    Some(FlowEvent::WebhookResult(result))
                }
                FlowAction::Handoff { reason } => {
                    // The runtime's reason names the flow already.
                    self.hand_off(turn, reason);
                    None
                }
                FlowAction::Tag(tags) => {
                    for tag in tags {
                        if !turn.tags.contains(&tag) {
                            turn.tags.push(tag);
                        }
                    }
                    None
                }
                FlowAction::ScheduleFollowUp { after, text } => {
                    let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 4);
                    turn.follow_up = Some(PlannedFollowUp {
                        due_at: now_ms().saturating_add(after),
                        kind: "flow",
                        text,
                    });
                    None
                }
                FlowAction::AnswerFromKnowledge { question } => {
                    let conversation = turn.conversation.clone();
                    let asked = Asked {
                        query: &question,
                        omitted: self.omitted,
                        in_flight: self.in_flight,
                    };
                    let mut wait_lead = None;
                    answer_question(self.ctx, &conversation, asked, turn, &mut wait_lead).await;
                    turn.kind = "flow";
                    if turn.conversation.state != ConversationState::Bot {
                        // The answer handed the chat to a person: the flow ends there (the
                        // turn's end adds the honest wait to the lead).
                        if let Some(lead) = wait_lead {
                            turn.replies.push(TurnReply {
                                text: lead,
                                choices: vec![],
                                citations: vec![],
                            });
                        }
                        return None;
                    }
                    None
                }
                FlowAction::Left { reason } => {
                    tracing::debug!(flow = %self.flow.name, ?reason, "flow left");
                    run = None;
                    None
                }
            };
            if let Some(event) = event {
                feedback += 1;
                let Some(current) = run.take() else { continue };
                if feedback > MAX_FEEDBACK {
                    self.hand_off(turn, "the flow did not settle in one turn".to_owned());
                    return None;
                }
                let next = flow::step(self.flow, current, event, self.run_ctx);
                run = next.run;
                // The new actions run before whatever was still queued.
                for action in next.actions.into_iter().rev() {
                    actions.push_front(action);
                }
            }
        }
        run
    }

    /// Hands the chat to a person; `reason` is for agents (prefixed with the flow's name
    /// unless it names it already).
    fn hand_off(&self, turn: &mut Turn, reason: String) {
        let prefix = format!("flow {}: ", self.flow.name);
        let reason = if reason.starts_with(&prefix) {
            reason
        } else {
            format!("{prefix}{reason}")
        };
        turn.conversation.state = ConversationState::WaitingHuman;
        turn.conversation.abstain_streak = 0;
        turn.handoff_reason = Some(reason.chars().take(200).collect());
        turn.kind = "flow_handoff";
    }
}
