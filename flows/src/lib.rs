//! Conversation flow engine: turns a batch of customer messages into the bot's next state and
//! the actions the gateway must carry out.
//!
//! # Layout
//! - `engine`: [`Engine::decide`] (customer batch → decision) and [`Engine::on_answer`]
//!   (knowledge result → decision). Both are pure.
//! - `state`: [`ConversationState`], [`Conversation`], [`Locale`].
//! - `action`: [`Action`], the closed list of everything the bot can do.
//! - `texts`: every sentence the bot says to customers, in Indonesian (default) and English.
//! - `policy`: validation of the model's structured answer (citations, no invented prices,
//!   percentages or links, digits of any script), how much of a partial reply may stream,
//!   and reading its `reply` out of a partial stream.
//! - `prompts`: the model's tera prompts from `prompts/`, compiled at start.
//! - `follow_up`: quiet hours of follow-ups and the customer's opt-out words.
//! - `hours`: business hours (time zone, weekly ranges, holidays) and the wait outlook.
//! - `handoff`: the human handoff state machine (triggers, claims, SLA, hand back).
//! - `lang`: a cheap Indonesian/English detector for customer messages.
//! - `flow`: declarative tenant flows (YAML): their types, JSON Schema, parsing and checks,
//!   slot answer parsing (`flow::parse_answer`) and the pure runtime (`flow::start`,
//!   `flow::step`, `flow::triggered`) that walks a flow's steps.
//!
//! # Invariants
//! - **Model output is never sent unvalidated**: [`policy::validate`] decides, a rejection
//!   counts as an abstain.
//! - **No HTTP, no SQL, no provider, no clock, no randomness.** The gateway does I/O, passes
//!   in what it found, and executes the returned actions.
//! - **While a human owns a conversation the engine returns no bot reply.**
//! - Every customer-facing sentence exists in Indonesian and English.

mod action;
mod engine;
pub mod excerpt;
pub mod flow;
pub mod follow_up;
pub mod handoff;
pub mod hours;
pub mod lang;
pub mod policy;
pub mod prompts;
mod state;
pub mod texts;
pub mod unanswered;
mod verify;

pub use action::{Action, BotReply, HandoffReason};
pub use engine::{
    AnswerOutcome, CustomerTurn, Decision, Engine, Generation, TurnKind, latest_turns,
};
pub use excerpt::AnswerStyle;
pub use hours::{Availability, BusinessHours, Opening, WaitOutlook, utc_day_start_ms};
pub use policy::{GivenChunk, ModelAction, ModelReply, Rejection};
pub use prompts::{
    PromptChunk, PromptContext, PromptError, PromptFlow, PromptTurn, Prompts, RenderedPrompt,
};
pub use state::{Conversation, ConversationState, Locale, Verification};
pub use verify::{CodeChecked, CodeSent};
