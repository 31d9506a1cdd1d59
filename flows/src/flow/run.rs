//! Running a flow: the state machine that walks a [`Flow`]'s steps, one customer event at a
//! time.
//!
//! Pure like the rest of the crate. [`start`] and [`step`] take what the gateway knows (the
//! customer's message, a button id, the result of an OTP check or of a webhook call, and the
//! context: locale, channel, the customer's phone and name, `now` in the tenant's zone) and
//! return an [`Outcome`]: the [`FlowRun`] to persist (or `None` when the flow was left) and
//! the [`FlowAction`]s to carry out, in order.
//!
//! Steps that do not wait (`say`, `if`, `tag`, `schedule_follow_up`) run at once; the run
//! stops at the next step that waits: an `ask` for the customer's answer, a `verify_otp` for a
//! code (after asking for a phone number when none is known), a `call_webhook` for its result.
//! While an answer is awaited, "batal"/"cancel"/"keluar"/"exit" leaves the flow, a question
//! that is not an answer is a digression (answered from the knowledge base, then the step is
//! asked again), and the third answer that does not fit hands the chat to a person.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use channels::ChannelKind;
use jiff::civil::DateTime;
use serde::{Deserialize, Serialize};

use super::slots::{parse_answer, parse_phone};
use super::{Ask, Flow, If, Localized, Step};
use crate::state::Locale;
use crate::{texts, verify};

/// Answers that do not fit (or wrong codes) before a person takes over.
pub const MAX_ATTEMPTS: u8 = 3;

/// Steps run in one turn before the runtime gives up on a loop of `if` jumps.
const MAX_HOPS: usize = 256;

/// The internal slot holding the number a one-time code goes to. Slot names in flow documents
/// start with a letter, so this never collides with one.
const OTP_PHONE: &str = "_otp_phone";

/// A flow in progress, as the gateway persists it between customer messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRun {
    /// The flow's name.
    pub flow: String,
    /// The index of the step being waited on.
    pub step: usize,
    /// Slot values so far, normalized ([`super::parse_answer`]), with the built-in slots
    /// (`channel`, `locale`, `customer_phone`, `customer_name`) refreshed each turn.
    pub slots: BTreeMap<String, String>,
    /// What the run waits for.
    pub awaiting: Awaiting,
    /// Answers that did not fit (or wrong codes) on the current step.
    pub attempts: u8,
}

/// What a [`FlowRun`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Awaiting {
    /// The customer's answer to an `ask` step.
    Answer,
    /// A phone number to send a one-time code to (`verify_otp` with no number known).
    Phone,
    /// The one-time code the customer types, then its check ([`FlowEvent::OtpResult`]).
    OtpCode,
    /// The result of a `call_webhook` step ([`FlowEvent::WebhookResult`]).
    Webhook,
}

/// What the gateway knows about this turn.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The language the bot speaks with this customer.
    pub locale: Locale,
    /// The channel the conversation is on.
    pub channel: ChannelKind,
    /// The customer's phone (E.164) when the channel knows it (WhatsApp).
    pub customer_phone: Option<String>,
    /// The customer's name when the channel knows it.
    pub customer_name: Option<String>,
    /// Now, in the tenant's time zone ("besok" is relative to it).
    pub now: DateTime,
}

/// Something that happened in the conversation while a flow runs.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowEvent {
    /// A text message from the customer.
    CustomerText(String),
    /// A button or list reply, by its id.
    Button(String),
    /// The gateway checked the code of a [`FlowAction::VerifyOtp`].
    OtpResult {
        /// Whether the code was right.
        verified: bool,
    },
    /// The result of a [`FlowAction::CallWebhook`] after its retries: the response's JSON, or
    /// why it failed.
    WebhookResult(Result<serde_json::Value, String>),
}

/// Something the gateway must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowAction {
    /// Send a message, with buttons (value, title) when `choices` is not empty.
    Say {
        /// The rendered text, in the turn's locale.
        text: String,
        /// The options of a `choice` slot: (value, title in the turn's locale).
        choices: Vec<(String, String)>,
    },
    /// Send a one-time code to `phone` (E.164).
    SendOtp {
        /// The number to verify.
        phone: String,
    },
    /// Check the code the customer typed; answer with [`FlowEvent::OtpResult`].
    VerifyOtp {
        /// The code, digits only.
        code: String,
    },
    /// Call a webhook (with its rules: allow-list, signature, timeout per attempt, retries);
    /// answer with [`FlowEvent::WebhookResult`].
    CallWebhook {
        /// `https://…` or [`super::DEMO_ORDERS_URL`].
        url: String,
        /// The JSON body, its templates rendered.
        body: serde_json::Value,
        /// Per attempt.
        timeout: Duration,
        /// Attempts after the first one failed.
        retries: u8,
    },
    /// Hand the conversation to a person. The runtime has already said why to the customer,
    /// so the gateway adds no sentence of its own.
    Handoff {
        /// Why, for agents.
        reason: String,
    },
    /// Tag the conversation.
    Tag(Vec<String>),
    /// Send `text` after `after`, unless the conversation moved on (the gateway's follow-up
    /// rules).
    ScheduleFollowUp {
        /// From now.
        after: Duration,
        /// The rendered text.
        text: String,
    },
    /// A digression: answer `question` from the knowledge base as usual, before the flow's
    /// next message (which asks the current step again).
    AnswerFromKnowledge {
        /// The customer's message.
        question: String,
    },
    /// The flow is over; the bot answers freely again.
    Left {
        /// Why.
        reason: LeaveReason,
    },
}

/// Why a flow was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It ran to `end` or past its last step.
    Finished,
    /// The customer typed a cancel word.
    Cancelled,
    /// A person took over (a `handoff` step, too many answers that did not fit, a failed
    /// webhook).
    HandedOff,
    /// The stored run no longer fits the flow (the owner edited or replaced it).
    FlowChanged,
}

/// The result of [`start`] or [`step`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The run to persist; `None` when the flow was left (the last action is
    /// [`FlowAction::Left`]).
    pub run: Option<FlowRun>,
    /// What to do, in order.
    pub actions: Vec<FlowAction>,
}

/// The flow a message starts, if any: a button id among a flow's trigger buttons, or a keyword
/// phrase all of whose analyzed tokens are among the message's. `analyze` is the knowledge
/// analyzer (stemming, slang); with several matches the longest phrase wins, then the first
/// flow.
pub fn triggered<'a>(
    flows: &'a [Flow],
    text: &str,
    button: Option<&str>,
    analyze: &dyn Fn(&str) -> Vec<String>,
) -> Option<&'a Flow> {
    if let Some(id) = button
        && let Some(flow) = flows
            .iter()
            .find(|f| f.triggers.buttons.iter().any(|b| b == id))
    {
        return Some(flow);
    }
    let tokens: BTreeSet<String> = analyze(text).into_iter().collect();
    if tokens.is_empty() {
        return None;
    }
    let mut best: Option<(&Flow, usize)> = None;
    for flow in flows {
        for phrase in &flow.triggers.keywords {
            let wanted = analyze(phrase);
            if !wanted.is_empty()
                && wanted.iter().all(|t| tokens.contains(t))
                && best.is_none_or(|(_, n)| wanted.len() > n)
            {
                best = Some((flow, wanted.len()));
            }
        }
    }
    best.map(|(flow, _)| flow)
}

/// Starts `flow`: runs its first steps up to the first one that waits.
pub fn start(flow: &Flow, ctx: &RunContext) -> Outcome {
    let mut run = FlowRun {
        flow: flow.name.clone(),
        step: 0,
        slots: BTreeMap::new(),
        awaiting: Awaiting::Answer,
        attempts: 0,
    };
    refresh_builtins(&mut run, ctx);
    let mut turn = Turn::new(ctx);
    let run = turn.advance(flow, run);
    turn.outcome(run)
}

/// Feeds one event to a run of `flow`. Events the run does not wait for (a stale webhook
/// result, a code check while an answer is awaited) change nothing.
pub fn step(flow: &Flow, mut run: FlowRun, event: FlowEvent, ctx: &RunContext) -> Outcome {
    refresh_builtins(&mut run, ctx);
    let mut turn = Turn::new(ctx);
    if !fits(flow, &run) {
        turn.leave(LeaveReason::FlowChanged);
        return turn.outcome(None);
    }
    if let FlowEvent::CustomerText(text) = &event
        && is_cancel(text)
    {
        turn.say(texts::flow_cancelled(ctx.locale));
        turn.leave(LeaveReason::Cancelled);
        return turn.outcome(None);
    }
    let next = match (run.awaiting, event) {
        (Awaiting::Answer, FlowEvent::CustomerText(text) | FlowEvent::Button(text)) => {
            turn.answer(flow, run, &text)
        }
        (Awaiting::Phone, FlowEvent::CustomerText(text) | FlowEvent::Button(text)) => {
            turn.phone(flow, run, &text)
        }
        (Awaiting::OtpCode, FlowEvent::CustomerText(text)) => turn.code(flow, run, &text),
        (Awaiting::OtpCode, FlowEvent::OtpResult { verified }) => {
            turn.code_checked(flow, run, verified)
        }
        (Awaiting::Webhook, FlowEvent::WebhookResult(result)) => {
            turn.webhook_result(flow, run, result)
        }
        (Awaiting::Webhook, FlowEvent::CustomerText(text)) => {
            // The lookup is under way; a question can still be answered meanwhile.
            if looks_like_question(&text) {
                turn.actions
                    .push(FlowAction::AnswerFromKnowledge { question: text });
            }
            Some(run)
        }
        (
            Awaiting::Answer | Awaiting::Phone | Awaiting::OtpCode | Awaiting::Webhook,
            FlowEvent::Button(_) | FlowEvent::OtpResult { .. } | FlowEvent::WebhookResult(_),
        ) => Some(run),
    };
    turn.outcome(next)
}

/// Whether the stored run still points at a step of the kind it waits on.
fn fits(flow: &Flow, run: &FlowRun) -> bool {
    if run.flow != flow.name {
        return false;
    }
    matches!(
        (run.awaiting, flow.steps.get(run.step)),
        (Awaiting::Answer, Some(Step::Ask(_)))
            | (
                Awaiting::Phone | Awaiting::OtpCode,
                Some(Step::VerifyOtp(_))
            )
            | (Awaiting::Webhook, Some(Step::CallWebhook(_)))
    )
}

fn refresh_builtins(run: &mut FlowRun, ctx: &RunContext) {
    let slots = &mut run.slots;
    slots.insert("channel".to_owned(), ctx.channel.as_str().to_owned());
    slots.insert("locale".to_owned(), ctx.locale.as_str().to_owned());
    for (name, value) in [
        ("customer_phone", &ctx.customer_phone),
        ("customer_name", &ctx.customer_name),
    ] {
        match value {
            Some(v) => slots.insert(name.to_owned(), v.clone()),
            None => slots.remove(name),
        };
    }
}

/// Lowercase, without punctuation around the words, single spaces.
fn normalized(text: &str) -> String {
    text.to_lowercase()
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The whole message is a cancel word.
fn is_cancel(text: &str) -> bool {
    matches!(
        normalized(text).as_str(),
        "batal" | "cancel" | "keluar" | "exit"
    )
}

/// Words a question starts with, Indonesian and English.
const QUESTION_WORDS: &[&str] = &[
    "apa",
    "apakah",
    "berapa",
    "bagaimana",
    "gimana",
    "kapan",
    "dimana",
    "kenapa",
    "mengapa",
    "siapa",
    "bisa",
    "bisakah",
    "ada",
    "adakah",
    "what",
    "how",
    "when",
    "where",
    "why",
    "who",
    "which",
    "can",
    "could",
    "do",
    "does",
    "is",
    "are",
];

/// A question rather than an answer: it ends with "?" or starts with a question word.
fn looks_like_question(text: &str) -> bool {
    if text.trim_end().ends_with('?') {
        return true;
    }
    let words = normalized(text);
    let mut words = words.split(' ');
    let first = words.next().unwrap_or_default();
    QUESTION_WORDS.contains(&first) || (first == "di" && words.next() == Some("mana"))
}

fn pick(text: &Localized, locale: Locale) -> &str {
    match locale {
        Locale::Id => &text.id,
        Locale::En => &text.en,
    }
}

/// Renders a template over the slots. The flow's checks compiled every template; a slot that
/// was never filled on this path (an `if` skipped its `ask`) renders as nothing rather than
/// failing the turn.
fn render(template: &str, slots: &BTreeMap<String, String>) -> String {
    let mut context = tera::Context::new();
    context.insert("slots", slots);
    match tera::Tera::one_off(template, &context, false) {
        Ok(text) => text,
        Err(_) => {
            static TAG: std::sync::LazyLock<Option<regex::Regex>> =
                std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{.*?\}\}").ok());
            match TAG.as_ref() {
                Some(tag) => tag.replace_all(template, "").into_owned(),
                None => template.to_owned(),
            }
        }
    }
}

/// The actions of one turn, built up as steps run.
struct Turn<'c> {
    ctx: &'c RunContext,
    actions: Vec<FlowAction>,
}

impl<'c> Turn<'c> {
    fn new(ctx: &'c RunContext) -> Self {
        Self {
            ctx,
            actions: Vec::new(),
        }
    }

    fn outcome(self, run: Option<FlowRun>) -> Outcome {
        Outcome {
            run,
            actions: self.actions,
        }
    }

    fn say(&mut self, text: impl Into<String>) {
        self.actions.push(FlowAction::Say {
            text: text.into(),
            choices: Vec::new(),
        });
    }

    fn leave(&mut self, reason: LeaveReason) {
        self.actions.push(FlowAction::Left { reason });
    }

    /// Says `sentence`, hands the chat to a person and leaves the flow.
    fn hand_off(&mut self, flow: &Flow, sentence: &str, why: &str) -> Option<FlowRun> {
        self.say(sentence);
        self.actions.push(FlowAction::Handoff {
            reason: format!("flow {}: {why}", flow.name),
        });
        self.leave(LeaveReason::HandedOff);
        None
    }

    fn prompt(&mut self, ask: &Ask, slots: &BTreeMap<String, String>) {
        let text = render(pick(&ask.prompt, self.ctx.locale), slots);
        self.say_with_choices(ask, text, slots);
    }

    fn say_with_choices(&mut self, ask: &Ask, text: String, slots: &BTreeMap<String, String>) {
        let choices = ask
            .choices
            .iter()
            .map(|c| {
                (
                    c.value.clone(),
                    render(pick(&c.title, self.ctx.locale), slots),
                )
            })
            .collect();
        self.actions.push(FlowAction::Say { text, choices });
    }

    /// Runs steps from `run.step` until one waits (the run is returned) or the flow is left.
    fn advance(&mut self, flow: &Flow, mut run: FlowRun) -> Option<FlowRun> {
        let locale = self.ctx.locale;
        for _ in 0..MAX_HOPS {
            let Some(current) = flow.steps.get(run.step) else {
                self.leave(LeaveReason::Finished);
                return None;
            };
            run.attempts = 0;
            match current {
                Step::Say(say) => {
                    self.say(render(pick(&say.text, locale), &run.slots));
                    run.step += 1;
                }
                Step::Ask(ask) => {
                    self.prompt(ask, &run.slots);
                    run.awaiting = Awaiting::Answer;
                    return Some(run);
                }
                Step::VerifyOtp(verify_otp) => {
                    let known = verify_otp
                        .phone_slot
                        .as_ref()
                        .and_then(|slot| run.slots.get(slot))
                        .or(self.ctx.customer_phone.as_ref())
                        .map(|p| parse_phone(p).unwrap_or_else(|_| p.clone()));
                    match known {
                        Some(phone) => self.send_code(&mut run, phone),
                        None => {
                            self.say(texts::ask_number(locale));
                            run.awaiting = Awaiting::Phone;
                        }
                    }
                    return Some(run);
                }
                Step::CallWebhook(call) => {
                    let body = call
                        .body
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(render(v, &run.slots))))
                        .collect::<serde_json::Map<_, _>>();
                    self.actions.push(FlowAction::CallWebhook {
                        url: call.url.clone(),
                        body: serde_json::Value::Object(body),
                        timeout: humantime::parse_duration(&call.timeout)
                            .unwrap_or(Duration::from_secs(5)),
                        retries: call.retries,
                    });
                    run.awaiting = Awaiting::Webhook;
                    return Some(run);
                }
                Step::If(test) => {
                    let target = if matches_if(test, &run.slots) {
                        Some(&test.then)
                    } else {
                        test.otherwise.as_ref()
                    };
                    match target {
                        None => run.step += 1,
                        Some(label) => {
                            match flow.steps.iter().position(|s| s.label() == Some(label)) {
                                Some(index) => run.step = index,
                                None => {
                                    self.leave(LeaveReason::FlowChanged);
                                    return None;
                                }
                            }
                        }
                    }
                }
                Step::Handoff(handoff) => {
                    return self.hand_off(flow, texts::flow_handoff(locale), &handoff.reason);
                }
                Step::Tag(tag) => {
                    self.actions.push(FlowAction::Tag(tag.tags.clone()));
                    run.step += 1;
                }
                Step::ScheduleFollowUp(follow) => {
                    // The checks parsed `after`; a value that no longer parses skips the step.
                    if let Ok(after) = humantime::parse_duration(&follow.after) {
                        let text = render(pick(&follow.text, locale), &run.slots);
                        self.actions
                            .push(FlowAction::ScheduleFollowUp { after, text });
                    }
                    run.step += 1;
                }
                Step::End => {
                    self.leave(LeaveReason::Finished);
                    return None;
                }
            }
        }
        // Only `if` steps jumping in a circle get here: a person is better than a spin.
        self.hand_off(
            flow,
            texts::flow_handoff(locale),
            "the steps loop without waiting",
        )
    }

    fn send_code(&mut self, run: &mut FlowRun, phone: String) {
        self.actions.push(FlowAction::SendOtp {
            phone: phone.clone(),
        });
        self.say(texts::code_sent(
            self.ctx.locale,
            &verify::masked_phone(&phone),
        ));
        run.slots.insert(OTP_PHONE.to_owned(), phone);
        run.awaiting = Awaiting::OtpCode;
        run.attempts = 0;
    }

    /// Counts an answer that did not fit; on the last one hands off and returns `None`.
    fn strike(&mut self, flow: &Flow, run: &mut FlowRun, what: &str) -> bool {
        run.attempts = run.attempts.saturating_add(1);
        if run.attempts >= MAX_ATTEMPTS {
            self.hand_off(flow, texts::flow_too_many_invalid(self.ctx.locale), what);
            return false;
        }
        true
    }

    /// The customer's answer to the current `ask`.
    fn answer(&mut self, flow: &Flow, mut run: FlowRun, text: &str) -> Option<FlowRun> {
        let Some(Step::Ask(ask)) = flow.steps.get(run.step) else {
            return Some(run);
        };
        match parse_answer(ask, text, self.ctx.now) {
            Ok(value) => {
                run.slots.insert(ask.slot.clone(), value);
                run.step += 1;
                self.advance(flow, run)
            }
            Err(_) if looks_like_question(text) => {
                self.actions.push(FlowAction::AnswerFromKnowledge {
                    question: text.trim().to_owned(),
                });
                self.prompt(ask, &run.slots);
                Some(run)
            }
            Err(error) => {
                let why = format!("{} answers to `{}` did not fit", MAX_ATTEMPTS, ask.slot);
                if !self.strike(flow, &mut run, &why) {
                    return None;
                }
                let text = match &ask.invalid {
                    Some(invalid) => render(pick(invalid, self.ctx.locale), &run.slots),
                    None => error.sentence(self.ctx.locale).to_owned(),
                };
                self.say_with_choices(ask, text, &run.slots);
                Some(run)
            }
        }
    }

    /// The number to send a code to, asked because none was known.
    fn phone(&mut self, flow: &Flow, mut run: FlowRun, text: &str) -> Option<FlowRun> {
        match parse_phone(text) {
            Ok(phone) => {
                self.send_code(&mut run, phone);
                Some(run)
            }
            Err(_) if looks_like_question(text) => {
                self.actions.push(FlowAction::AnswerFromKnowledge {
                    question: text.trim().to_owned(),
                });
                self.say(texts::ask_number(self.ctx.locale));
                Some(run)
            }
            Err(_) => {
                if !self.strike(flow, &mut run, "no valid phone number to verify") {
                    return None;
                }
                self.say(texts::invalid_number(self.ctx.locale));
                Some(run)
            }
        }
    }

    /// A message while a code is awaited: the code, a resend request, a question, or neither.
    fn code(&mut self, flow: &Flow, mut run: FlowRun, text: &str) -> Option<FlowRun> {
        let lower = text.to_lowercase();
        if verify::is_resend(&lower)
            && let Some(phone) = run.slots.get(OTP_PHONE).cloned()
        {
            let attempts = run.attempts;
            self.send_code(&mut run, phone);
            // A new code does not wipe out the wrong ones typed before it.
            run.attempts = attempts;
            return Some(run);
        }
        if let Some(code) = verify::typed_code(&lower) {
            self.actions.push(FlowAction::VerifyOtp { code });
            return Some(run);
        }
        if looks_like_question(text) {
            self.actions.push(FlowAction::AnswerFromKnowledge {
                question: text.trim().to_owned(),
            });
            self.say(texts::flow_type_the_code(self.ctx.locale));
            return Some(run);
        }
        if !self.strike(flow, &mut run, "no verification code typed") {
            return None;
        }
        self.say(texts::flow_type_the_code(self.ctx.locale));
        Some(run)
    }

    fn code_checked(&mut self, flow: &Flow, mut run: FlowRun, verified: bool) -> Option<FlowRun> {
        if verified {
            let phone = run.slots.get(OTP_PHONE).cloned().unwrap_or_default();
            self.say(texts::number_verified(
                self.ctx.locale,
                &verify::masked_phone(&phone),
            ));
            run.step += 1;
            return self.advance(flow, run);
        }
        if !self.strike(flow, &mut run, "wrong verification codes") {
            return None;
        }
        let left = i64::from(MAX_ATTEMPTS - run.attempts);
        self.say(texts::wrong_code(self.ctx.locale, left));
        Some(run)
    }

    fn webhook_result(
        &mut self,
        flow: &Flow,
        mut run: FlowRun,
        result: Result<serde_json::Value, String>,
    ) -> Option<FlowRun> {
        let Some(Step::CallWebhook(call)) = flow.steps.get(run.step) else {
            return Some(run);
        };
        let failed = |turn: &mut Self, why: String| {
            turn.hand_off(
                flow,
                texts::flow_webhook_failed(turn.ctx.locale),
                &format!("webhook {} failed: {why}", call.url),
            )
        };
        let json = match result {
            Ok(json) => json,
            Err(why) => return failed(self, why),
        };
        let mut saved = Vec::with_capacity(call.save.len());
        for (slot, pointer) in &call.save {
            match json.pointer(pointer).and_then(scalar) {
                Some(value) => saved.push((slot.clone(), value)),
                None => return failed(self, format!("no value at `{pointer}`")),
            }
        }
        run.slots.extend(saved);
        run.step += 1;
        self.advance(flow, run)
    }
}

/// A JSON value as slot text: strings as they are, numbers and booleans written out, arrays
/// and objects as compact JSON; `null` is no value.
fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::Array(_)
        | serde_json::Value::Object(_) => Some(value.to_string()),
    }
}

fn matches_if(test: &If, slots: &BTreeMap<String, String>) -> bool {
    let value = slots
        .get(&test.slot)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let equals = test
        .equals
        .as_deref()
        .is_some_and(|want| value.is_some_and(|v| v.eq_ignore_ascii_case(want.trim())));
    let one_of = test
        .one_of
        .iter()
        .any(|want| value.is_some_and(|v| v.eq_ignore_ascii_case(want.trim())));
    let present = test.present.is_some_and(|want| want == value.is_some());
    equals || one_of || present
}
