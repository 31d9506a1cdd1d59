//! The phone verification step: "verifikasi nomor saya" / "verify my number" sends a one-time
//! code to the customer's number (their own on WhatsApp; typed on web chat) over the tenant's
//! WhatsApp account, and the customer types the code back. Up to the challenge's attempts,
//! "kirim ulang" / "resend" for a new code, "batal" / "cancel" to stop.

use crate::action::{Action, BotReply};
use crate::engine::{Decision, Engine};
use crate::state::{Conversation, Verification};
use crate::texts;

/// Digits in a code.
const CODE_DIGITS: usize = 6;

/// What sending a code did ([`Action::SendOtp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeSent {
    /// On its way.
    Sent {
        /// The challenge.
        challenge_id: String,
    },
    /// The tenant cannot send codes (no WhatsApp number, or no authentication template).
    Unavailable,
    /// A code went to this number moments ago; a new one in this many seconds.
    TooSoon {
        /// Seconds to wait.
        seconds: u64,
    },
    /// Sending failed (storage, or the number's limit for the window).
    Failed,
}

/// What checking a code did ([`Action::VerifyOtp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeChecked {
    /// The right code.
    Verified,
    /// A wrong code.
    Wrong {
        /// Tries left.
        attempts_left: i64,
    },
    /// The code expired (or was replaced).
    Expired,
    /// Too many wrong codes.
    Locked,
    /// The check failed (storage).
    Failed,
}

impl Engine {
    /// The verification step for `text` in a bot-owned conversation, when the text starts,
    /// continues or cancels one; `None`: answer it as usual.
    pub(crate) fn verification_step(
        &self,
        conversation: &Conversation,
        text: &str,
    ) -> Option<Decision> {
        let locale = conversation.locale;
        let lower = text.trim().to_lowercase();
        let mut next = conversation.clone();
        let waiting = matches!(
            conversation.verification,
            Verification::AwaitingNumber | Verification::AwaitingCode { .. }
        );
        if waiting && is_cancel(&lower) {
            next.verification = Verification::None;
            return Some(reply(next, texts::verification_cancelled(locale)));
        }
        match &conversation.verification {
            Verification::AwaitingCode {
                challenge_id,
                phone,
            } => {
                if let Some(code) = typed_code(&lower) {
                    return Some(Decision {
                        conversation: next,
                        actions: vec![Action::VerifyOtp {
                            challenge_id: challenge_id.clone(),
                            code,
                        }],
                    });
                }
                if is_resend(&lower) || asks_to_verify(&lower) {
                    let phone = phone.clone();
                    return Some(send(next, phone));
                }
                None
            }
            Verification::AwaitingNumber => {
                if let Some(phone) = phone_number(&lower) {
                    return Some(send(next, phone));
                }
                let digits = lower.chars().filter(char::is_ascii_digit).count();
                if digits >= 6 || asks_to_verify(&lower) {
                    return Some(reply(next, texts::invalid_number(locale)));
                }
                None
            }
            Verification::None | Verification::Verified { .. } => {
                if !asks_to_verify(&lower) {
                    return None;
                }
                // A number in the same message, else the customer's own, else ask for it.
                match phone_number(&lower).or_else(|| conversation.own_phone.clone()) {
                    Some(phone) => Some(send(next, phone)),
                    None => {
                        next.verification = Verification::AwaitingNumber;
                        Some(reply(next, texts::ask_number(locale)))
                    }
                }
            }
        }
    }

    /// Turns the outcome of [`Action::SendOtp`] to `phone` into the reply.
    pub fn on_code_sent(
        &self,
        conversation: &Conversation,
        phone: &str,
        sent: CodeSent,
    ) -> Decision {
        let locale = conversation.locale;
        let mut next = conversation.clone();
        match sent {
            CodeSent::Sent { challenge_id } => {
                next.verification = Verification::AwaitingCode {
                    challenge_id,
                    phone: phone.to_owned(),
                };
                reply(next, &texts::code_sent(locale, &masked_phone(phone)))
            }
            CodeSent::TooSoon { seconds } => reply(next, &texts::code_too_soon(locale, seconds)),
            CodeSent::Unavailable => {
                next.verification = Verification::None;
                offer_human(next, texts::verification_unavailable(locale))
            }
            CodeSent::Failed => offer_human(next, texts::code_not_sent(locale)),
        }
    }

    /// Turns the outcome of [`Action::VerifyOtp`] into the reply.
    pub fn on_code_checked(&self, conversation: &Conversation, checked: CodeChecked) -> Decision {
        let locale = conversation.locale;
        let mut next = conversation.clone();
        let phone = match &conversation.verification {
            Verification::AwaitingCode { phone, .. } => phone.clone(),
            _ => String::new(),
        };
        match checked {
            CodeChecked::Verified => {
                next.verification = Verification::Verified {
                    phone: phone.clone(),
                };
                reply(next, &texts::number_verified(locale, &phone))
            }
            CodeChecked::Wrong { attempts_left } => {
                reply(next, &texts::wrong_code(locale, attempts_left))
            }
            CodeChecked::Expired => reply(next, texts::code_expired(locale)),
            CodeChecked::Locked => offer_human(next, texts::code_locked(locale)),
            CodeChecked::Failed => offer_human(next, texts::code_not_sent(locale)),
        }
    }
}

fn reply(conversation: Conversation, text: &str) -> Decision {
    Decision {
        conversation,
        actions: vec![Action::Reply(BotReply {
            text: text.to_owned(),
            choices: vec![],
            citations: vec![],
        })],
    }
}

fn offer_human(conversation: Conversation, text: &str) -> Decision {
    let choice = texts::human_choice(conversation.locale).to_owned();
    Decision {
        conversation,
        actions: vec![Action::Reply(BotReply {
            text: text.to_owned(),
            choices: vec![choice],
            citations: vec![],
        })],
    }
}

fn send(conversation: Conversation, phone: String) -> Decision {
    Decision {
        conversation,
        actions: vec![Action::SendOtp { phone }],
    }
}

/// "verifikasi nomor saya", "verify my number", "tolong verifikasi no hp", …
fn asks_to_verify(lower: &str) -> bool {
    let id = (lower.contains("verifikasi") || lower.contains("verif "))
        && [
            "nomor", "no hp", "no. hp", "no wa", "hp", "telepon", "whatsapp", "wa ",
        ]
        .iter()
        .any(|w| lower.contains(w));
    let en = (lower.contains("verify") || lower.contains("verification"))
        && ["number", "phone", "whatsapp"]
            .iter()
            .any(|w| lower.contains(w));
    id || en
}

pub(crate) fn is_resend(lower: &str) -> bool {
    [
        "kirim ulang",
        "kirim lagi",
        "kode baru",
        "resend",
        "send again",
        "new code",
        "send a new code",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

fn is_cancel(lower: &str) -> bool {
    matches!(
        lower.trim_matches(|c: char| !c.is_alphanumeric()),
        "batal" | "batalkan" | "cancel" | "stop" | "gak jadi" | "tidak jadi" | "nggak jadi"
    )
}

/// The code when the message is one: six digits in a short message ("123456", "482 913",
/// "kodenya 482913"), so a typed code never reaches the language model.
pub(crate) fn typed_code(lower: &str) -> Option<String> {
    let digits: String = lower.chars().filter(char::is_ascii_digit).collect();
    (digits.len() == CODE_DIGITS && lower.chars().count() <= 40).then_some(digits)
}

/// A phone number in the text, as E.164: `+62 812-3456-7890`, `0812 3456 7890` (Indonesian
/// national form) or `62812…`.
pub(crate) fn phone_number(lower: &str) -> Option<String> {
    let start = lower.find(|c: char| c == '+' || c.is_ascii_digit())?;
    let candidate: String = lower[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    let digits = if let Some(rest) = candidate.strip_prefix('+') {
        rest.to_owned()
    } else if let Some(rest) = candidate.strip_prefix('0') {
        format!("62{rest}")
    } else {
        candidate
    };
    let valid = (10..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    valid.then(|| format!("+{digits}"))
}

/// `+6281234567890` → `+62 812-****-7890`: enough for the customer to recognize it, not the
/// whole number in a chat transcript.
pub(crate) fn masked_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 8 {
        return phone.to_owned();
    }
    let tail: String = digits[digits.len() - 4..].iter().collect();
    let head: String = digits[..digits.len().min(5)].iter().collect();
    format!("+{head}…{tail}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::CustomerTurn;
    use crate::engine::TurnKind;
    use crate::state::Locale;

    fn text(t: &str) -> Vec<CustomerTurn> {
        vec![CustomerTurn {
            text: t.to_owned(),
            kind: TurnKind::Text,
        }]
    }

    fn replies(d: &Decision) -> Vec<String> {
        d.actions
            .iter()
            .filter_map(|a| match a {
                Action::Reply(r) => Some(r.text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn on_whatsapp_the_customers_own_number_gets_the_code() {
        let conversation = Conversation {
            own_phone: Some("+6281311112222".into()),
            ..Conversation::default()
        };
        let d = Engine.decide(&conversation, &text("verifikasi nomor saya"));
        assert_eq!(
            d.actions,
            vec![Action::SendOtp {
                phone: "+6281311112222".into()
            }]
        );
        let sent = Engine.on_code_sent(
            &d.conversation,
            "+6281311112222",
            CodeSent::Sent {
                challenge_id: "otp_1".into(),
            },
        );
        assert_eq!(
            sent.conversation.verification,
            Verification::AwaitingCode {
                challenge_id: "otp_1".into(),
                phone: "+6281311112222".into()
            }
        );
        assert!(
            replies(&sent)[0].contains("+62813…2222"),
            "{:?}",
            replies(&sent)
        );
        // The code typed back, with a space.
        let d = Engine.decide(&sent.conversation, &text("482 913"));
        assert_eq!(
            d.actions,
            vec![Action::VerifyOtp {
                challenge_id: "otp_1".into(),
                code: "482913".into()
            }]
        );
        let wrong =
            Engine.on_code_checked(&d.conversation, CodeChecked::Wrong { attempts_left: 4 });
        assert!(replies(&wrong)[0].contains("Sisa 4"));
        let done = Engine.on_code_checked(&wrong.conversation, CodeChecked::Verified);
        assert_eq!(
            done.conversation.verification,
            Verification::Verified {
                phone: "+6281311112222".into()
            }
        );
        assert!(replies(&done)[0].contains("+6281311112222"));
    }

    #[test]
    fn on_web_chat_the_customer_types_the_number_and_can_resend_or_cancel() {
        let conversation = Conversation {
            locale: Locale::En,
            ..Conversation::default()
        };
        let d = Engine.decide(&conversation, &text("verify my number please"));
        assert_eq!(d.conversation.verification, Verification::AwaitingNumber);
        assert_eq!(replies(&d), vec![texts::ask_number(Locale::En).to_owned()]);
        let bad = Engine.decide(&d.conversation, &text("123-456"));
        assert_eq!(
            replies(&bad),
            vec![texts::invalid_number(Locale::En).to_owned()]
        );
        let d = Engine.decide(&d.conversation, &text("0812 3456 7890"));
        assert_eq!(
            d.actions,
            vec![Action::SendOtp {
                phone: "+6281234567890".into()
            }]
        );
        let sent = Engine.on_code_sent(
            &d.conversation,
            "+6281234567890",
            CodeSent::Sent {
                challenge_id: "otp_2".into(),
            },
        );
        let again = Engine.decide(&sent.conversation, &text("resend"));
        assert_eq!(
            again.actions,
            vec![Action::SendOtp {
                phone: "+6281234567890".into()
            }]
        );
        // An ordinary question while waiting is answered as usual.
        let question = Engine.decide(&sent.conversation, &text("what are your opening hours?"));
        assert!(matches!(question.actions[0], Action::Answer { .. }));
        let cancelled = Engine.decide(&sent.conversation, &text("cancel"));
        assert_eq!(cancelled.conversation.verification, Verification::None);
    }

    #[test]
    fn without_whatsapp_verification_offers_a_human() {
        let conversation = Conversation {
            own_phone: Some("+6281311112222".into()),
            ..Conversation::default()
        };
        let d = Engine.on_code_sent(&conversation, "+6281311112222", CodeSent::Unavailable);
        let Action::Reply(reply) = &d.actions[0] else {
            panic!("{d:?}")
        };
        assert_eq!(reply.text, texts::verification_unavailable(Locale::Id));
        assert_eq!(
            reply.choices,
            vec![texts::human_choice(Locale::Id).to_owned()]
        );
    }

    #[test]
    fn phone_numbers_are_read_in_the_usual_forms() {
        for (typed, expected) in [
            ("0812 3456 7890", Some("+6281234567890")),
            ("+62 812-3456-7890", Some("+6281234567890")),
            ("nomor saya 6281234567890 ya", Some("+6281234567890")),
            ("(0812) 3456.7890", Some("+6281234567890")),
            ("12345", None),
            ("halo", None),
        ] {
            assert_eq!(phone_number(typed).as_deref(), expected, "{typed}");
        }
        assert_eq!(typed_code("123456"), Some("123456".into()));
        assert_eq!(typed_code("12345"), None);
        assert_eq!(typed_code("kodenya 123456 ya kak"), Some("123456".into()));
        assert_eq!(typed_code("jam 10 buka?"), None);
    }
}
