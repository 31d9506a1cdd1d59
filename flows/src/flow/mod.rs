//! Declarative tenant flows: short scripted paths (order status, reservations, lead capture)
//! next to free-form answers, written as one YAML document per flow.
//!
//! This module is the flow *definition*: its types (which are also the JSON Schema shipped for
//! editor completion, `flows/flow.schema.json`), [`parse`] with errors that carry a line and a
//! column and a "did you mean", and the checks a document must pass before it is stored:
//! unique labels, jumps to labels that exist, slots that are asked or saved before templates
//! use them, templates that compile, patterns and durations that parse.
//!
//! It is also the flow *runtime*: [`parse_answer`] reads a customer's answer into a slot, and
//! [`start`] / [`step`] walk a flow one event at a time, returning the [`FlowRun`] to persist
//! and the [`FlowAction`]s the gateway carries out. [`triggered`] picks the flow a message
//! starts.
//!
//! ```yaml
//! name: cek-pesanan
//! description: The customer wants to know the status of an order.
//! triggers:
//!   keywords: [cek pesanan, status pesanan, order status]
//! steps:
//!   - ask:
//!       slot: order
//!       type: text
//!       pattern: '^KN-\d{4}$'
//!       prompt: { id: Nomor pesanannya berapa, Kak?, en: What is your order number? }
//!   - say:
//!       text: { id: "Pesanan {{ slots.order }} kami cek ya.", en: "Checking {{ slots.order }}." }
//!   - end
//! ```

mod check;
mod run;
mod slots;
mod suggest;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use check::{
    FlowError, MAX_CHOICES, MAX_FOLLOW_UP, MAX_STEPS, MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_TIMEOUT,
    parse,
};
pub use run::{
    Awaiting, FlowAction, FlowEvent, FlowRun, LeaveReason, MAX_ATTEMPTS, Outcome, RunContext,
    start, step, triggered,
};
pub use slots::{
    SlotError, parse_answer, parse_choice, parse_date, parse_datetime, parse_email, parse_number,
    parse_phone, parse_text, parse_time,
};

/// Slots every flow may read without asking for them.
pub const BUILTIN_SLOTS: &[&str] = &["channel", "customer_phone", "customer_name", "locale"];

/// The in-process demo order API ([`CallWebhook::url`]); the webhook rules do not apply to it.
pub const DEMO_ORDERS_URL: &str = "builtin:demo-orders";

/// One flow: when it starts and the steps it runs, in order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Sapa flow")]
pub struct Flow {
    /// The flow's name: lowercase letters, digits, `-` and `_`, at most 64 characters.
    pub name: String,
    /// What the flow is for, in one sentence. With a language model configured, the model
    /// picks a flow by its description.
    #[serde(default)]
    pub description: String,
    /// What starts the flow.
    #[serde(default)]
    pub triggers: Triggers,
    /// The steps, run in order; `if` jumps to a step's `label`. Each is a one-key map,
    /// `- say: {…}`, or the word `end`.
    #[serde(with = "yaml_serde::with::singleton_map_recursive")]
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Step>,
}

/// What starts a flow.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Words and phrases, Indonesian and English; matched through the knowledge analyzer, so
    /// slang, stems and small typos match too.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Ids of button or list replies that start the flow.
    #[serde(default)]
    pub buttons: Vec<String>,
}

/// A sentence in Indonesian and English: everything the bot says exists in both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Localized {
    /// Indonesian (the default language). A tera template: `{{ slots.order }}`.
    pub id: String,
    /// English. A tera template.
    pub en: String,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Send a message.
    Say(Say),
    /// Ask the customer for a slot and wait for a valid answer.
    Ask(Ask),
    /// Verify the customer's phone number with a one-time code they type in the chat.
    VerifyOtp(VerifyOtp),
    /// Call the tenant's HTTPS endpoint (signed body, timeout, retries); response fields go
    /// into slots. On failure after the retries, the chat is handed to a person, politely.
    CallWebhook(CallWebhook),
    /// Jump to a labelled step when a slot matches.
    If(If),
    /// Hand the chat to a person.
    Handoff(Handoff),
    /// Tag the conversation (agents and usage see the tags).
    Tag(Tag),
    /// Schedule a reminder.
    ScheduleFollowUp(ScheduleFollowUp),
    /// Leave the flow: the bot answers freely again.
    End,
}

/// `say`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Say {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// What to say.
    pub text: Localized,
}

/// The type of a slot's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    /// Any text.
    #[default]
    Text,
    /// A number ("3", "tiga", "3 orang").
    Number,
    /// A phone number, normalised to E.164 with Indonesian defaults ("0812…" → "+62812…").
    Phone,
    /// An e-mail address.
    Email,
    /// A date ("besok", "Sabtu", "12/12").
    Date,
    /// A time ("jam 3 sore", "15.00").
    Time,
    /// A date and a time ("besok jam 3 sore").
    Datetime,
    /// One of `choices`, offered as buttons.
    Choice,
}

/// `ask`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// The slot the answer is stored in: lowercase letters, digits and `_`.
    pub slot: String,
    /// The answer's type.
    #[serde(default, rename = "type")]
    pub kind: SlotType,
    /// The question.
    pub prompt: Localized,
    /// Said when the answer is not valid; a built-in sentence for the type when absent.
    #[serde(default)]
    pub invalid: Option<Localized>,
    /// For `type: choice`: the options (1 to 10; up to 3 show as buttons, more as a list).
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// For `type: text`: a regular expression the answer must match.
    #[serde(default)]
    pub pattern: Option<String>,
}

/// One option of a `choice` slot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The value stored in the slot.
    pub value: String,
    /// The button's title.
    pub title: Localized,
}

/// `verify_otp`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyOtp {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// The slot holding the number to verify (a `phone` slot); the customer's own WhatsApp
    /// number when absent.
    #[serde(default)]
    pub phone_slot: Option<String>,
}

/// `call_webhook`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallWebhook {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// `https://…` on the tenant's allow-list, or `builtin:demo-orders`.
    pub url: String,
    /// The JSON body's fields: tera templates over the slots.
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    /// Slots to fill from the response: slot name → JSON pointer (`/status`).
    #[serde(default)]
    pub save: BTreeMap<String, String>,
    /// Per attempt, e.g. `5s` (at most `30s`).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Attempts after the first one failed (at most 5).
    #[serde(default = "default_retries")]
    pub retries: u8,
}

fn default_timeout() -> String {
    "5s".to_owned()
}

fn default_retries() -> u8 {
    2
}

/// `if`: jump to `then` when the slot matches, else to `else` (or the next step).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct If {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// The slot to test.
    pub slot: String,
    /// Matches when the slot equals this value.
    #[serde(default)]
    pub equals: Option<String>,
    /// Matches when the slot equals one of these values.
    #[serde(default)]
    pub one_of: Vec<String>,
    /// Matches when the slot has (`true`) or lacks (`false`) a value.
    #[serde(default)]
    pub present: Option<bool>,
    /// The label to jump to on a match.
    pub then: String,
    /// The label to jump to otherwise; the next step when absent.
    #[serde(default, rename = "else")]
    pub otherwise: Option<String>,
}

/// `handoff`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// Why, shown to agents.
    pub reason: String,
}

/// `tag`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// Tags to add.
    pub tags: Vec<String>,
}

/// `schedule_follow_up`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFollowUp {
    /// The step's label, for `if` jumps.
    #[serde(default)]
    pub label: Option<String>,
    /// When, from now: `30m`, `1d` (at most 7 days).
    pub after: String,
    /// What to send.
    pub text: Localized,
}

impl Step {
    /// The step's label, if it has one.
    #[must_use]
    pub fn label(&self) -> Option<&str> {
        match self {
            Step::Say(s) => s.label.as_deref(),
            Step::Ask(s) => s.label.as_deref(),
            Step::VerifyOtp(s) => s.label.as_deref(),
            Step::CallWebhook(s) => s.label.as_deref(),
            Step::If(s) => s.label.as_deref(),
            Step::Handoff(s) => s.label.as_deref(),
            Step::Tag(s) => s.label.as_deref(),
            Step::ScheduleFollowUp(s) => s.label.as_deref(),
            Step::End => None,
        }
    }

    /// The step's YAML key.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Say(_) => "say",
            Step::Ask(_) => "ask",
            Step::VerifyOtp(_) => "verify_otp",
            Step::CallWebhook(_) => "call_webhook",
            Step::If(_) => "if",
            Step::Handoff(_) => "handoff",
            Step::Tag(_) => "tag",
            Step::ScheduleFollowUp(_) => "schedule_follow_up",
            Step::End => "end",
        }
    }
}

/// The JSON Schema of a flow document, as shipped in `flows/flow.schema.json`.
#[must_use]
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Flow);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod tests;
