//! The human handoff state machine: `bot → waiting_for_agent → assigned(agent) → resolved |
//! back_to_bot`. Pure: the store loads a conversation's state and assignee, asks [`step`]
//! what an event does, and writes the result only if the row is still as loaded.
//!
//! Triggers from customer messages (asking for a person, two abstains, a tenant keyword, the
//! model's `handoff`) are decided by [`crate::Engine`]; they arrive here as
//! [`Event::Trigger`] with the same outcome.

use crate::action::HandoffReason;
use crate::state::ConversationState;

/// Where a conversation is in the handoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handoff {
    /// The bot answers (also after a hand back: `back_to_bot`).
    Bot,
    /// In the queue; the bot is silent.
    Waiting,
    /// An agent (staff id) owns it; nothing bot-authored goes out.
    Assigned(String),
    /// Finished; the customer's next message reopens it with the bot.
    Resolved,
}

/// Something that happens to a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A customer message hands the chat to a human.
    Trigger(HandoffReason),
    /// An agent takes the chat from the console, from any state (proactively too).
    Claim {
        /// Staff id.
        agent: &'a str,
    },
    /// Round-robin gives a waiting chat to an online agent under their cap.
    AutoAssign {
        /// Staff id.
        agent: &'a str,
    },
    /// An agent gives their chat (or an unassigned one) to another member.
    Transfer {
        /// Who transfers.
        by: &'a str,
        /// Who receives it.
        to: &'a str,
    },
    /// An agent marks the chat done.
    Resolve {
        /// Staff id.
        by: &'a str,
    },
    /// An agent returns the chat to the bot.
    HandBack {
        /// Staff id.
        by: &'a str,
    },
    /// The chat has waited the tenant's `sla_renotify`.
    SlaRenotify,
    /// The chat has waited the tenant's `sla_back_to_bot`.
    SlaExpired,
    /// A customer message arrives.
    CustomerWrites,
}

/// What the gateway does besides storing the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Tell the customer the expected wait (on entering the queue).
    WaitNotice,
    /// Tell the still-waiting customer again, with the wait (the SLA re-notify).
    StillWaiting,
    /// Apologise: nobody replied in time, the bot helps again.
    BackToBotApology,
    /// Give the bot a short summary of the agent's part of the conversation.
    SummarizeForBot,
}

/// The outcome of an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The state after the event.
    pub to: Handoff,
    /// What to do besides storing it, in order.
    pub effects: Vec<Effect>,
}

/// Why an event does not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another agent owns the chat (their staff id).
    TakenBy(String),
    /// The event only applies to a waiting chat.
    NotWaiting,
}

impl Handoff {
    /// From the stored state and assignee. A `human` row without an assignee (never written
    /// by this machine) reads as waiting, so it can still be claimed.
    pub fn from_stored(state: ConversationState, assignee: Option<&str>) -> Self {
        match (state, assignee) {
            (ConversationState::Bot, _) => Self::Bot,
            (ConversationState::WaitingHuman, _) | (ConversationState::Human, None) => {
                Self::Waiting
            }
            (ConversationState::Human, Some(agent)) => Self::Assigned(agent.to_owned()),
            (ConversationState::Closed, _) => Self::Resolved,
        }
    }

    /// The stored state.
    pub fn state(&self) -> ConversationState {
        match self {
            Self::Bot => ConversationState::Bot,
            Self::Waiting => ConversationState::WaitingHuman,
            Self::Assigned(_) => ConversationState::Human,
            Self::Resolved => ConversationState::Closed,
        }
    }

    /// The stored assignee.
    pub fn assignee(&self) -> Option<&str> {
        match self {
            Self::Assigned(agent) => Some(agent),
            _ => None,
        }
    }
}

/// What `event` does to a conversation in `from`.
///
/// # Errors
/// [`Refused`] when the event does not apply: another agent owns the chat, or an SLA or
/// auto-assignment event finds it no longer waiting.
pub fn step(from: &Handoff, event: Event<'_>) -> Result<Step, Refused> {
    use Handoff::{Assigned, Bot, Resolved, Waiting};
    let to = |to: Handoff, effects: Vec<Effect>| Ok(Step { to, effects });
    let taken = |owner: &str| Err(Refused::TakenBy(owner.to_owned()));
    match (from, event) {
        (Bot | Resolved, Event::Trigger(_)) => to(Waiting, vec![Effect::WaitNotice]),
        (Waiting | Assigned(_), Event::Trigger(_)) => to(from.clone(), vec![]),

        (Assigned(owner), Event::Claim { agent }) if owner != agent => taken(owner),
        (_, Event::Claim { agent }) => to(Assigned(agent.to_owned()), vec![]),

        (Waiting, Event::AutoAssign { agent }) => to(Assigned(agent.to_owned()), vec![]),
        (_, Event::AutoAssign { .. }) => Err(Refused::NotWaiting),

        (Assigned(owner), Event::Transfer { by, .. }) if owner != by => taken(owner),
        (_, Event::Transfer { to: agent, .. }) => to(Assigned(agent.to_owned()), vec![]),

        (Assigned(owner), Event::Resolve { by }) if owner != by => taken(owner),
        (_, Event::Resolve { .. }) => to(Resolved, vec![]),

        (Assigned(owner), Event::HandBack { by }) if owner != by => taken(owner),
        (Assigned(_) | Waiting, Event::HandBack { .. }) => to(Bot, vec![Effect::SummarizeForBot]),
        (Bot | Resolved, Event::HandBack { .. }) => to(Bot, vec![]),

        (Waiting, Event::SlaRenotify) => to(Waiting, vec![Effect::StillWaiting]),
        (Waiting, Event::SlaExpired) => to(Bot, vec![Effect::BackToBotApology]),
        (_, Event::SlaRenotify | Event::SlaExpired) => Err(Refused::NotWaiting),

        (Resolved, Event::CustomerWrites) => to(Bot, vec![]),
        (_, Event::CustomerWrites) => to(from.clone(), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Handoff::{Assigned, Bot, Resolved, Waiting};

    fn a(agent: &str) -> Handoff {
        Assigned(agent.to_owned())
    }

    #[test]
    fn every_transition_of_the_table() {
        let ask = Event::Trigger(HandoffReason::CustomerAsked);
        let ok = |to: Handoff, effects: &[Effect]| {
            Ok(Step {
                to,
                effects: effects.to_vec(),
            })
        };
        let taken = |by: &str| Err(Refused::TakenBy(by.to_owned()));
        let not_waiting = Err(Refused::NotWaiting);
        let table: Vec<(Handoff, Event<'_>, Result<Step, Refused>)> = vec![
            // Triggers: only the first one notifies.
            (Bot, ask, ok(Waiting, &[Effect::WaitNotice])),
            (Resolved, ask, ok(Waiting, &[Effect::WaitNotice])),
            (Waiting, ask, ok(Waiting, &[])),
            (a("ana"), ask, ok(a("ana"), &[])),
            // Claims: from any state, idempotent for the owner, refused for others.
            (Bot, Event::Claim { agent: "ana" }, ok(a("ana"), &[])),
            (Waiting, Event::Claim { agent: "ana" }, ok(a("ana"), &[])),
            (Resolved, Event::Claim { agent: "ana" }, ok(a("ana"), &[])),
            (a("ana"), Event::Claim { agent: "ana" }, ok(a("ana"), &[])),
            (a("budi"), Event::Claim { agent: "ana" }, taken("budi")),
            // Round-robin only takes waiting chats.
            (
                Waiting,
                Event::AutoAssign { agent: "ana" },
                ok(a("ana"), &[]),
            ),
            (Bot, Event::AutoAssign { agent: "ana" }, not_waiting.clone()),
            (
                a("budi"),
                Event::AutoAssign { agent: "ana" },
                not_waiting.clone(),
            ),
            // Transfers by the owner, or of an unowned chat.
            (
                a("ana"),
                Event::Transfer {
                    by: "ana",
                    to: "budi",
                },
                ok(a("budi"), &[]),
            ),
            (
                Waiting,
                Event::Transfer {
                    by: "ana",
                    to: "budi",
                },
                ok(a("budi"), &[]),
            ),
            (
                a("cici"),
                Event::Transfer {
                    by: "ana",
                    to: "budi",
                },
                taken("cici"),
            ),
            // Resolve and hand back.
            (a("ana"), Event::Resolve { by: "ana" }, ok(Resolved, &[])),
            (Waiting, Event::Resolve { by: "ana" }, ok(Resolved, &[])),
            (Resolved, Event::Resolve { by: "ana" }, ok(Resolved, &[])),
            (a("budi"), Event::Resolve { by: "ana" }, taken("budi")),
            (
                a("ana"),
                Event::HandBack { by: "ana" },
                ok(Bot, &[Effect::SummarizeForBot]),
            ),
            (
                Waiting,
                Event::HandBack { by: "ana" },
                ok(Bot, &[Effect::SummarizeForBot]),
            ),
            (Bot, Event::HandBack { by: "ana" }, ok(Bot, &[])),
            (Resolved, Event::HandBack { by: "ana" }, ok(Bot, &[])),
            (a("budi"), Event::HandBack { by: "ana" }, taken("budi")),
            // SLA: re-notify, then back to the bot with an apology; only while waiting.
            (
                Waiting,
                Event::SlaRenotify,
                ok(Waiting, &[Effect::StillWaiting]),
            ),
            (
                Waiting,
                Event::SlaExpired,
                ok(Bot, &[Effect::BackToBotApology]),
            ),
            (a("ana"), Event::SlaRenotify, not_waiting.clone()),
            (a("ana"), Event::SlaExpired, not_waiting.clone()),
            (Bot, Event::SlaExpired, not_waiting),
            // Customer messages reopen a resolved chat with the bot, change nothing else.
            (Resolved, Event::CustomerWrites, ok(Bot, &[])),
            (Waiting, Event::CustomerWrites, ok(Waiting, &[])),
            (a("ana"), Event::CustomerWrites, ok(a("ana"), &[])),
            (Bot, Event::CustomerWrites, ok(Bot, &[])),
        ];
        for (from, event, want) in table {
            assert_eq!(step(&from, event), want, "{from:?} + {event:?}");
        }
    }

    #[test]
    fn every_trigger_enters_the_queue_from_the_bot() {
        for reason in [
            HandoffReason::CustomerAsked,
            HandoffReason::RepeatedNoAnswer,
            HandoffReason::AnswerFailed,
            HandoffReason::ModelAsked,
            HandoffReason::TenantKeyword,
        ] {
            let got = step(&Bot, Event::Trigger(reason)).ok().map(|s| s.to);
            assert_eq!(got, Some(Waiting), "{reason:?}");
        }
    }

    #[test]
    fn stored_states_round_trip() {
        for h in [Bot, Waiting, a("ana"), Resolved] {
            assert_eq!(Handoff::from_stored(h.state(), h.assignee()), h);
        }
        assert_eq!(
            Handoff::from_stored(ConversationState::Human, None),
            Waiting
        );
    }
}
