//! The pure decision core: no I/O, no clock, table-tested.

use crate::action::{Action, BotReply, HandoffReason};
use crate::lang;
use crate::policy::{ModelAction, ModelReply};
use crate::state::{Conversation, ConversationState, Locale};
use crate::texts;

/// Words that, alone or in a short phrase, mean "let me talk to a person".
const HUMAN_WORDS: &[&str] = &[
    "admin",
    "agen",
    "agent",
    "manusia",
    "human",
    "operator",
    "cs",
    "person",
    "representative",
    "staff",
    "petugas",
];

/// The longest line (in characters) the extractive answer copies from a chunk.
const MAX_QUOTE_CHARS: usize = 900;

/// How a customer message was produced; buttons and commands skip the debounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    /// Typed text.
    Text,
    /// A tapped quick reply or button.
    Choice,
    /// A slash command such as `/start`.
    Command,
    /// A catalog order: acknowledged with a fixed text, never a model answer.
    Order,
    /// The customer opened the chat without writing (WhatsApp `request_welcome`): greeted.
    Welcome,
}

impl TurnKind {
    /// The stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Choice => "choice",
            Self::Command => "command",
            Self::Order => "order",
            Self::Welcome => "welcome",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "choice" => Some(Self::Choice),
            "command" => Some(Self::Command),
            "order" => Some(Self::Order),
            "welcome" => Some(Self::Welcome),
            _ => None,
        }
    }
}

/// One customer message in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerTurn {
    /// The text (caption for media).
    pub text: String,
    /// How it was produced.
    pub kind: TurnKind,
}

/// The part of a pending batch one turn answers: the latest `max_messages` messages and, of
/// those, the newest `max_chars` characters (the oldest kept message keeps its end). Returns
/// the kept messages, in order, and how many older ones were left out. The left-out ones are
/// still marked answered by the turn: a flood is answered once, not message by message.
pub fn latest_turns(
    turns: &[CustomerTurn],
    max_messages: usize,
    max_chars: usize,
) -> (Vec<CustomerTurn>, usize) {
    let max_messages = max_messages.max(1);
    let mut kept: Vec<CustomerTurn> = Vec::new();
    let mut chars = 0usize;
    for turn in turns.iter().rev().take(max_messages) {
        let len = turn.text.chars().count();
        if chars + len <= max_chars {
            chars += len;
            kept.push(turn.clone());
            continue;
        }
        let room = max_chars.saturating_sub(chars);
        if room > 0 || kept.is_empty() {
            // The newest words of the message that crosses the limit (always something).
            let room = room.max(1);
            kept.push(CustomerTurn {
                text: turn.text.chars().skip(len - room.min(len)).collect(),
                kind: turn.kind,
            });
        }
        break;
    }
    kept.reverse();
    let omitted = turns.len() - kept.len();
    (kept, omitted)
}

/// What the knowledge lookup for an [`Action::Answer`] produced.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerOutcome {
    /// The best-matching passage (extractive answer, no LLM).
    Passage {
        /// Title of the document it comes from.
        title: String,
        /// The passage text.
        text: String,
        /// Chunk id, for citations.
        chunk_id: String,
        /// How much of it to quote.
        style: crate::excerpt::AnswerStyle,
    },
    /// Nothing in the knowledge base is relevant enough.
    NoMatch,
    /// The lookup failed (index or model error).
    Failed,
}

/// What the language model produced for an [`Action::Answer`] with retrieved passages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generation {
    /// Output that passed [`crate::policy::validate`].
    Valid(ModelReply),
    /// Output that failed validation: counts as an abstain, never sent.
    Rejected,
    /// The model timed out or failed after retries.
    Unavailable,
}

/// The engine's verdict: the next state and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The conversation after this step.
    pub conversation: Conversation,
    /// What the gateway must do, in order.
    pub actions: Vec<Action>,
}

/// The conversation engine. Stateless: every input arrives as an argument.
#[derive(Debug, Clone, Default)]
pub struct Engine;

impl Engine {
    /// Decides what to do with a debounced batch of customer messages, greeting with the
    /// built-in greeting.
    pub fn decide(&self, conversation: &Conversation, batch: &[CustomerTurn]) -> Decision {
        self.decide_with_greeting(conversation, batch, None)
    }

    /// Decides what to do with a debounced batch of customer messages; `greeting` is the
    /// tenant's own greeting for customers who open the chat (`None` or blank: the built-in
    /// one in the conversation's language).
    pub fn decide_with_greeting(
        &self,
        conversation: &Conversation,
        batch: &[CustomerTurn],
        greeting: Option<&str>,
    ) -> Decision {
        self.decide_for_tenant(conversation, batch, greeting, &[])
    }

    /// [`Engine::decide_with_greeting`] with the tenant's own handoff keywords: a message
    /// containing one (a word or phrase, any case) goes to a human.
    pub fn decide_for_tenant(
        &self,
        conversation: &Conversation,
        batch: &[CustomerTurn],
        greeting: Option<&str>,
        handoff_keywords: &[String],
    ) -> Decision {
        let mut next = conversation.clone();
        // Slash commands: `/start` and `/help` greet; any other command reads as its words.
        // Opening the chat greets; an order is acknowledged. Neither is a question.
        let mut greet = false;
        let mut welcome = false;
        let mut order = false;
        let text = batch
            .iter()
            .filter_map(|turn| match turn.kind {
                TurnKind::Welcome => {
                    welcome = true;
                    None
                }
                TurnKind::Order => {
                    order = true;
                    None
                }
                TurnKind::Command => {
                    let (command, args) = split_command(&turn.text);
                    if matches!(command.as_str(), "start" | "help") {
                        greet = true;
                        None
                    } else {
                        Some(format!("{command} {args}").trim().to_owned())
                    }
                }
                TurnKind::Text | TurnKind::Choice => Some(turn.text.trim().to_owned()),
            })
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(locale) = lang::detect(&text) {
            next.locale = locale;
        }
        match conversation.state {
            // A human owns the conversation: the bot stays silent.
            ConversationState::WaitingHuman | ConversationState::Human => Decision {
                conversation: next,
                actions: vec![],
            },
            ConversationState::Bot | ConversationState::Closed => {
                next.state = ConversationState::Bot;
                let mut actions: Vec<Action> = Vec::new();
                if greet || welcome {
                    // The tenant's own greeting welcomes a customer who opened the chat;
                    // `/start` keeps the built-in one, which explains the commands.
                    let text = greeting
                        .map(str::trim)
                        .filter(|g| welcome && !g.is_empty())
                        .map_or_else(|| texts::greeting(next.locale).to_owned(), str::to_owned);
                    actions.push(Action::Reply(BotReply {
                        text,
                        choices: vec![],
                        citations: vec![],
                    }));
                }
                if order {
                    actions.push(Action::Reply(BotReply {
                        text: texts::order_received(next.locale).to_owned(),
                        choices: vec![],
                        citations: vec![],
                    }));
                }
                if text.is_empty() {
                    return Decision {
                        conversation: next,
                        actions,
                    };
                }
                if asks_for_human(&text) {
                    return handoff(next, HandoffReason::CustomerAsked);
                }
                if has_keyword(&text, handoff_keywords) {
                    return handoff(next, HandoffReason::TenantKeyword);
                }
                if let Some(step) = self.verification_step(&next, &text) {
                    actions.extend(step.actions);
                    return Decision {
                        conversation: step.conversation,
                        actions,
                    };
                }
                actions.push(Action::Answer { query: text });
                Decision {
                    conversation: next,
                    actions,
                }
            }
        }
    }

    /// Turns the knowledge lookup requested by [`Action::Answer`] into the reply.
    ///
    /// `conversation` is the one returned by [`Engine::decide`].
    pub fn on_answer(
        &self,
        conversation: &Conversation,
        query: &str,
        outcome: AnswerOutcome,
    ) -> Decision {
        let mut next = conversation.clone();
        let locale = next.locale;
        match outcome {
            AnswerOutcome::Passage {
                title,
                text,
                chunk_id,
                style,
            } => {
                next.abstain_streak = 0;
                Decision {
                    conversation: next,
                    actions: vec![Action::Reply(BotReply {
                        text: quoted_answer(locale, &title, query, &text, style),
                        choices: vec![],
                        citations: vec![chunk_id],
                    })],
                }
            }
            AnswerOutcome::NoMatch => abstain(next, query, None),
            AnswerOutcome::Failed => failed(next, texts::answer_failed(locale)),
        }
    }

    /// Turns the language model's output for [`Action::Answer`] into the reply. Only a valid
    /// answer is sent as written; everything else takes the abstain or failure path.
    ///
    /// `conversation` is the one returned by [`Engine::decide`].
    pub fn on_generated(
        &self,
        conversation: &Conversation,
        query: &str,
        generation: Generation,
    ) -> Decision {
        let mut next = conversation.clone();
        let locale = next.locale;
        match generation {
            Generation::Valid(ModelReply {
                action: ModelAction::Answer,
                reply,
                citations,
                ..
            }) => {
                next.abstain_streak = 0;
                Decision {
                    conversation: next,
                    actions: vec![Action::Reply(BotReply {
                        text: reply,
                        choices: vec![],
                        citations,
                    })],
                }
            }
            Generation::Valid(ModelReply {
                action: ModelAction::Clarify,
                reply,
                ..
            }) => abstain(next, query, Some(reply)),
            Generation::Valid(ModelReply {
                action: ModelAction::Handoff,
                ..
            }) => handoff(next, HandoffReason::ModelAsked),
            // The gateway starts the flow it offered; one it did not offer is an abstain.
            Generation::Valid(ModelReply {
                action: ModelAction::Flow,
                ..
            }) => abstain(next, query, None),
            Generation::Rejected => abstain(next, query, None),
            Generation::Unavailable => failed(next, texts::llm_unavailable(locale)),
        }
    }
}

/// Nothing answerable: record the question, clarify once (with the model's question when it
/// asked one), then offer a human.
fn abstain(mut next: Conversation, query: &str, question: Option<String>) -> Decision {
    let locale = next.locale;
    next.abstain_streak = next.abstain_streak.saturating_add(1);
    let record = Action::RecordUnanswered {
        query: query.to_owned(),
    };
    let reply = if next.abstain_streak == 1 {
        BotReply {
            text: question.unwrap_or_else(|| texts::clarify(locale)),
            choices: vec![],
            citations: vec![],
        }
    } else {
        BotReply {
            text: texts::offer_human(locale),
            choices: vec![texts::human_choice(locale).to_owned()],
            citations: vec![],
        }
    };
    Decision {
        conversation: next,
        actions: vec![record, Action::Reply(reply)],
    }
}

/// A technical failure: apologise with `text` and hand off.
fn failed(next: Conversation, text: &str) -> Decision {
    let mut decision = handoff(next, HandoffReason::AnswerFailed);
    decision.actions[1] = Action::WaitNotice {
        lead: text.to_owned(),
    };
    decision
}

fn handoff(mut next: Conversation, reason: HandoffReason) -> Decision {
    next.state = ConversationState::WaitingHuman;
    next.abstain_streak = 0;
    let locale = next.locale;
    Decision {
        conversation: next,
        actions: vec![
            Action::Handoff { reason },
            Action::WaitNotice {
                lead: texts::handoff_notice(locale),
            },
        ],
    }
}

/// `/start@bot deep-link` → (`start`, `deep-link`).
fn split_command(text: &str) -> (String, &str) {
    let text = text.trim().trim_start_matches('/');
    let (head, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let command = head.split('@').next().unwrap_or_default().to_lowercase();
    (command, args.trim())
}

/// A short message that names a person to talk to ("admin", "mau bicara dengan cs", "agent
/// please"). Long questions that merely mention "admin" are still answered by the bot.
/// Whether `text` contains one of the tenant's keywords as whole words (case-insensitive).
fn has_keyword(text: &str, keywords: &[String]) -> bool {
    if keywords.is_empty() {
        return false;
    }
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let text = words(text);
    keywords.iter().any(|keyword| {
        let keyword = words(keyword);
        !keyword.is_empty() && text.windows(keyword.len()).any(|w| w == keyword.as_slice())
    })
}

fn asks_for_human(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.len() <= 8
        && (words.iter().any(|w| HUMAN_WORDS.contains(&w.as_str())) || names_a_person(&words))
}

/// "orang" ("person") asks for one only in a phrase such as "bicara dengan orang", "mau ke
/// orang", "orang asli": after a number or a counting word it counts people ("meja untuk
/// lima orang", "berapa orang"), which is a question for the bot.
fn names_a_person(words: &[String]) -> bool {
    const BEFORE: &[&str] = &["dengan", "sama", "ke", "minta", "mau", "ama", "pakai"];
    const AFTER: &[&str] = &["asli", "beneran", "sungguhan", "langsung"];
    words.iter().enumerate().any(|(i, w)| {
        w == "orang"
            && ((i > 0 && BEFORE.contains(&words[i - 1].as_str()))
                || words
                    .get(i + 1)
                    .is_some_and(|n| AFTER.contains(&n.as_str())))
    })
}

fn quoted_answer(
    locale: Locale,
    title: &str,
    query: &str,
    passage: &str,
    style: crate::excerpt::AnswerStyle,
) -> String {
    let lines = crate::excerpt::excerpt(query, title, passage, style);
    let quoted = lines
        .iter()
        .map(|line| {
            let line = if line.chars().count() > MAX_QUOTE_CHARS {
                let cut: String = line.chars().take(MAX_QUOTE_CHARS).collect();
                format!("{}…", cut.trim_end())
            } else {
                line.clone()
            };
            format!("> {line}")
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{}\n{quoted}\n\n{}",
        texts::quote_intro(locale, title),
        texts::quote_outro(locale)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn start_command_greets_in_the_conversation_language() {
        let command = |text: &str| CustomerTurn {
            text: text.to_owned(),
            kind: TurnKind::Command,
        };
        for locale in [Locale::Id, Locale::En] {
            let conversation = Conversation {
                locale,
                ..Conversation::default()
            };
            let decision = Engine.decide(&conversation, &[command("/start")]);
            assert_eq!(
                decision.actions,
                vec![Action::Reply(BotReply {
                    text: texts::greeting(locale).to_owned(),
                    choices: vec![],
                    citations: vec![],
                })]
            );
        }
        // Another command is read as its words; `/start` with a question also answers it.
        let decision = Engine.decide(&Conversation::default(), &[command("/harga@kopi_bot kopi")]);
        assert_eq!(
            decision.actions,
            vec![Action::Answer {
                query: "harga kopi".into()
            }]
        );
        let decision = Engine.decide(
            &Conversation::default(),
            &[command("/start"), turn("jam buka hari Minggu?")],
        );
        assert_eq!(decision.actions.len(), 2);
        assert!(matches!(decision.actions[1], Action::Answer { .. }));
    }

    #[test]
    fn opening_the_chat_greets_with_the_tenant_greeting_and_orders_are_acknowledged() {
        let kind = |kind: TurnKind, text: &str| CustomerTurn {
            text: text.to_owned(),
            kind,
        };
        let reply = |text: &str| {
            Action::Reply(BotReply {
                text: text.to_owned(),
                choices: vec![],
                citations: vec![],
            })
        };
        let welcome = [kind(TurnKind::Welcome, "[opened the chat]")];
        for locale in [Locale::Id, Locale::En] {
            let conversation = Conversation {
                locale,
                ..Conversation::default()
            };
            // No tenant greeting: the built-in one in the conversation's language.
            let d = Engine.decide_with_greeting(&conversation, &welcome, None);
            assert_eq!(d.actions, vec![reply(texts::greeting(locale))]);
            let d = Engine.decide_with_greeting(&conversation, &welcome, Some("  "));
            assert_eq!(d.actions, vec![reply(texts::greeting(locale))]);
            // An order is acknowledged with the fixed text, never looked up or generated.
            let order = [kind(TurnKind::Order, "[order] 2 x KOPI @ 22000 IDR")];
            let d = Engine.decide(&conversation, &order);
            assert_eq!(d.actions, vec![reply(texts::order_received(locale))]);
        }
        let d = Engine.decide_with_greeting(
            &Conversation::default(),
            &welcome,
            Some("Halo dari Kopi Nusantara!"),
        );
        assert_eq!(d.actions, vec![reply("Halo dari Kopi Nusantara!")]);
        // `/start` keeps the built-in greeting; a human-owned conversation gets nothing.
        let d = Engine.decide_with_greeting(
            &Conversation::default(),
            &[kind(TurnKind::Command, "/start")],
            Some("Halo dari Kopi Nusantara!"),
        );
        assert_eq!(d.actions, vec![reply(texts::greeting(Locale::Id))]);
        let d = Engine.decide_with_greeting(&conv(ConversationState::Human), &welcome, None);
        assert!(d.actions.is_empty());
        assert_eq!(
            TurnKind::parse(TurnKind::Order.as_str()),
            Some(TurnKind::Order)
        );
        assert_eq!(
            TurnKind::parse(TurnKind::Welcome.as_str()),
            Some(TurnKind::Welcome)
        );
        assert_ne!(
            texts::order_received(Locale::Id),
            texts::order_received(Locale::En)
        );
    }

    fn turn(text: &str) -> CustomerTurn {
        CustomerTurn {
            text: text.to_owned(),
            kind: TurnKind::Text,
        }
    }

    fn conv(state: ConversationState) -> Conversation {
        Conversation {
            state,
            ..Conversation::default()
        }
    }

    #[test]
    fn a_flood_is_cut_to_the_latest_messages_and_characters() {
        let flood: Vec<CustomerTurn> = (0..50).map(|i| turn(&format!("pesan {i:02}"))).collect();
        let (kept, omitted) = latest_turns(&flood, 10, 10_000);
        assert_eq!((kept.len(), omitted), (10, 40));
        assert_eq!(kept[0].text, "pesan 40");
        assert_eq!(kept[9].text, "pesan 49");
        // 8 characters each: 20 characters keep two whole messages and the end of a third.
        let (kept, omitted) = latest_turns(&flood, 10, 20);
        assert_eq!(omitted, 47);
        assert_eq!(
            kept.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
            vec!["n 47", "pesan 48", "pesan 49"]
        );
        // One huge message keeps its newest characters.
        let (kept, omitted) = latest_turns(&[turn(&"x".repeat(5000))], 10, 100);
        assert_eq!((kept[0].text.len(), omitted), (100, 0));
        let (kept, _) = latest_turns(&flood[..3], 10, 10_000);
        assert_eq!(kept, flood[..3].to_vec());
    }

    #[test]
    fn a_question_in_bot_state_asks_for_an_answer_with_the_whole_batch() {
        let d = Engine.decide(
            &conv(ConversationState::Bot),
            &[turn("halo kak"), turn("jam buka blok m hari minggu?")],
        );
        assert_eq!(
            d.actions,
            vec![Action::Answer {
                query: "halo kak\njam buka blok m hari minggu?".into()
            }]
        );
        assert_eq!(d.conversation.state, ConversationState::Bot);
    }

    #[test]
    fn human_owned_conversations_get_no_bot_action() {
        for state in [ConversationState::WaitingHuman, ConversationState::Human] {
            let d = Engine.decide(&conv(state), &[turn("halo?")]);
            assert!(d.actions.is_empty(), "{state:?}");
            assert_eq!(d.conversation.state, state);
        }
    }

    #[test]
    fn a_closed_conversation_reopens_with_the_bot() {
        let d = Engine.decide(&conv(ConversationState::Closed), &[turn("menu apa saja")]);
        assert_eq!(d.conversation.state, ConversationState::Bot);
        assert!(matches!(d.actions[0], Action::Answer { .. }));
    }

    #[test]
    fn counting_people_is_not_asking_for_one() {
        for text in [
            "bisa siapkan tempat buat lima orang besok malam?",
            "meja untuk 4 orang",
            "berapa orang maksimal per meja?",
        ] {
            assert!(!asks_for_human(text), "{text}");
        }
        for text in [
            "mau bicara dengan orang",
            "minta orang asli dong",
            "sambungkan ke orang",
            "admin",
        ] {
            assert!(asks_for_human(text), "{text}");
        }
    }

    #[test]
    fn asking_for_a_human_hands_off_in_the_customers_language() {
        let d = Engine.decide(
            &conv(ConversationState::Bot),
            &[turn("mau bicara dengan admin")],
        );
        assert_eq!(d.conversation.state, ConversationState::WaitingHuman);
        assert_eq!(
            d.actions[0],
            Action::Handoff {
                reason: HandoffReason::CustomerAsked
            }
        );
        let d = Engine.decide(
            &conv(ConversationState::Bot),
            &[turn("can I talk to a human agent please")],
        );
        assert_eq!(d.conversation.locale, Locale::En);
        assert_eq!(
            d.actions[1],
            Action::WaitNotice {
                lead: texts::handoff_notice(Locale::En),
            }
        );
    }

    #[test]
    fn a_long_question_mentioning_admin_is_still_answered() {
        let d = Engine.decide(
            &conv(ConversationState::Bot),
            &[turn(
                "jam berapa admin whatsapp membalas pesan di hari minggu ya kak",
            )],
        );
        assert!(matches!(d.actions[0], Action::Answer { .. }));
    }

    #[test]
    fn a_passage_is_quoted_with_its_title_and_a_human_offer() {
        let d = Engine.on_answer(
            &conv(ConversationState::Bot),
            "jam buka",
            AnswerOutcome::Passage {
                title: "Profil".into(),
                text: "Jam buka: 08.00–23.00 WIB\nParkir ada".into(),
                chunk_id: "c1".into(),
                style: crate::excerpt::AnswerStyle::Short,
            },
        );
        let Action::Reply(reply) = &d.actions[0] else {
            panic!("expected a reply")
        };
        // Only the line that answers "jam buka" is quoted.
        assert!(reply.text.contains("> Jam buka: 08.00–23.00 WIB"));
        assert!(!reply.text.contains("Parkir"), "{}", reply.text);
        assert!(reply.text.contains("\"Profil\""));
        assert!(reply.text.contains("admin"));
    }

    #[test]
    fn no_match_clarifies_once_then_offers_a_human() {
        let c = conv(ConversationState::Bot);
        let first = Engine.on_answer(&c, "q", AnswerOutcome::NoMatch);
        assert_eq!(first.conversation.abstain_streak, 1);
        assert_eq!(
            first.actions[1],
            Action::Reply(BotReply {
                text: texts::clarify(Locale::Id),
                choices: vec![],
                citations: vec![]
            })
        );
        let second = Engine.on_answer(&first.conversation, "q", AnswerOutcome::NoMatch);
        assert_eq!(second.conversation.abstain_streak, 2);
        let Action::Reply(reply) = &second.actions[1] else {
            panic!("expected a reply")
        };
        assert_eq!(
            reply.choices,
            vec![texts::human_choice(Locale::Id).to_owned()]
        );
        assert!(matches!(second.actions[0], Action::RecordUnanswered { .. }));
    }

    fn model(action: ModelAction, reply: &str, citations: &[&str]) -> Generation {
        Generation::Valid(ModelReply {
            action,
            reply: reply.into(),
            citations: citations.iter().map(|c| (*c).to_owned()).collect(),
            flow: None,
        })
    }

    #[test]
    fn a_valid_model_answer_is_sent_with_its_citations() {
        let mut c = conv(ConversationState::Bot);
        c.abstain_streak = 1;
        let d = Engine.on_generated(&c, "q", model(ModelAction::Answer, "Buka 08.00", &["a:0"]));
        assert_eq!(d.conversation.abstain_streak, 0);
        assert_eq!(
            d.actions,
            vec![Action::Reply(BotReply {
                text: "Buka 08.00".into(),
                choices: vec![],
                citations: vec!["a:0".into()]
            })]
        );
    }

    #[test]
    fn rejected_output_and_model_clarifications_take_the_abstain_path() {
        let c = conv(ConversationState::Bot);
        let first = Engine.on_generated(&c, "q", Generation::Rejected);
        assert_eq!(first.conversation.abstain_streak, 1);
        assert_eq!(
            first.actions[1],
            Action::Reply(BotReply {
                text: texts::clarify(Locale::Id),
                choices: vec![],
                citations: vec![]
            })
        );
        let asked = Engine.on_generated(
            &c,
            "q",
            model(ModelAction::Clarify, "Outlet mana, kak?", &[]),
        );
        let Action::Reply(reply) = &asked.actions[1] else {
            panic!("expected a reply")
        };
        assert_eq!(reply.text, "Outlet mana, kak?");
        let second = Engine.on_generated(
            &first.conversation,
            "q",
            model(ModelAction::Clarify, "Yang mana?", &[]),
        );
        let Action::Reply(reply) = &second.actions[1] else {
            panic!("expected a reply")
        };
        assert_eq!(reply.text, texts::offer_human(Locale::Id));
        assert!(matches!(second.actions[0], Action::RecordUnanswered { .. }));
    }

    #[test]
    fn an_unavailable_model_gets_the_polite_fallback_and_a_human() {
        let d = Engine.on_generated(&conv(ConversationState::Bot), "q", Generation::Unavailable);
        assert_eq!(d.conversation.state, ConversationState::WaitingHuman);
        assert_eq!(
            d.actions[1],
            Action::WaitNotice {
                lead: texts::llm_unavailable(Locale::Id).into(),
            }
        );
        let d = Engine.on_generated(
            &conv(ConversationState::Bot),
            "q",
            model(ModelAction::Handoff, "x", &[]),
        );
        assert_eq!(
            d.actions[0],
            Action::Handoff {
                reason: HandoffReason::ModelAsked
            }
        );
    }

    #[test]
    fn a_failed_lookup_apologises_and_hands_off() {
        let d = Engine.on_answer(&conv(ConversationState::Bot), "q", AnswerOutcome::Failed);
        assert_eq!(d.conversation.state, ConversationState::WaitingHuman);
        assert_eq!(
            d.actions[1],
            Action::WaitNotice {
                lead: texts::answer_failed(Locale::Id).into(),
            }
        );
    }

    #[test]
    fn a_tenant_keyword_hands_the_conversation_to_a_human() {
        let keywords = vec!["komplain".to_owned(), "Refund Penuh".to_owned()];
        let turns = |t: &str| {
            vec![CustomerTurn {
                text: t.to_owned(),
                kind: TurnKind::Text,
            }]
        };
        for text in [
            "saya mau komplain soal pesanan kemarin yang datangnya terlambat sekali",
            "bisa minta refund penuh?",
        ] {
            let d =
                Engine.decide_for_tenant(&Conversation::default(), &turns(text), None, &keywords);
            assert_eq!(
                d.conversation.state,
                ConversationState::WaitingHuman,
                "{text}"
            );
            assert_eq!(
                d.actions[0],
                Action::Handoff {
                    reason: HandoffReason::TenantKeyword
                }
            );
        }
        // Whole words only; without keywords the bot answers.
        for (text, keywords) in [
            ("komplainnya sudah beres", &keywords),
            ("mau komplain", &vec![]),
        ] {
            let d =
                Engine.decide_for_tenant(&Conversation::default(), &turns(text), None, keywords);
            assert!(matches!(d.actions[0], Action::Answer { .. }), "{text}");
        }
    }
}
