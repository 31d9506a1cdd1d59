//! Every sentence the bot says to customers, in Indonesian and English. The ones owners most
//! often reword (clarify, no answer, handoff) are tera templates in `prompts/`, embedded at
//! compile time and checked at start by [`crate::Prompts::load`].

use std::sync::LazyLock;

use crate::prompts::{PromptError, chain};
use crate::state::Locale;

/// The customer message templates, by file name in `prompts/` (`<name>.<locale>.tera`).
pub const MESSAGE_TEMPLATES: &[(&str, &str)] = &[
    (
        "clarify.id.tera",
        include_str!("../../prompts/clarify.id.tera"),
    ),
    (
        "clarify.en.tera",
        include_str!("../../prompts/clarify.en.tera"),
    ),
    (
        "no_answer.id.tera",
        include_str!("../../prompts/no_answer.id.tera"),
    ),
    (
        "no_answer.en.tera",
        include_str!("../../prompts/no_answer.en.tera"),
    ),
    (
        "handoff.id.tera",
        include_str!("../../prompts/handoff.id.tera"),
    ),
    (
        "handoff.en.tera",
        include_str!("../../prompts/handoff.en.tera"),
    ),
];

static MESSAGES: LazyLock<Result<tera::Tera, PromptError>> = LazyLock::new(|| {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    for (name, text) in MESSAGE_TEMPLATES {
        tera.add_raw_template(name, text).map_err(|e| PromptError {
            name: (*name).to_owned(),
            message: chain(&e),
        })?;
    }
    Ok(tera)
});

fn render(name: &str, locale: Locale) -> Result<String, PromptError> {
    let file = format!("{name}.{}.tera", locale.as_str());
    let tera = MESSAGES.as_ref().map_err(Clone::clone)?;
    tera.render(&file, &tera::Context::new())
        .map(|s| s.trim().to_owned())
        .map_err(|e| PromptError {
            name: file,
            message: chain(&e),
        })
}

/// Compiles and renders every customer message template once (start-up check).
///
/// # Errors
/// The first template that does not compile or render, or renders empty.
pub fn check() -> Result<(), PromptError> {
    for name in ["clarify", "no_answer", "handoff"] {
        for locale in [Locale::Id, Locale::En] {
            if render(name, locale)?.is_empty() {
                return Err(PromptError {
                    name: format!("{name}.{}.tera", locale.as_str()),
                    message: "renders empty".to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A customer message template rendered in `locale`. [`check`] ran at start, so this cannot
/// fail short of a bug; if it does, a neutral sentence is better than no reply.
fn message(name: &str, locale: Locale) -> String {
    render(name, locale).unwrap_or_else(|_| match locale {
        Locale::Id => "Mohon maaf, ada kendala. Ketik \"admin\" untuk dibantu tim kami.".to_owned(),
        Locale::En => "Sorry, something went wrong. Type \"agent\" to reach our team.".to_owned(),
    })
}

/// The greeting sent for `/start`.
pub fn greeting(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Halo! Saya asisten virtual kami. Silakan tanyakan apa saja tentang produk, harga, jam buka atau pesanan Anda. Ketik \"admin\" kapan saja untuk dibantu tim kami."
        }
        Locale::En => {
            "Hello! I am our virtual assistant. Ask me anything about our products, prices, opening hours or your order. Type \"agent\" at any time to talk to our team."
        }
    }
}

/// The acknowledgement of an order sent from the catalog (never a model answer: the team
/// confirms stock, total and delivery).
pub fn order_received(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Terima kasih, pesanan Anda sudah kami terima. Tim kami akan segera mengonfirmasi ketersediaan, total harga dan pengirimannya."
        }
        Locale::En => {
            "Thank you, we have received your order. Our team will confirm availability, the total and delivery shortly."
        }
    }
}

/// Opening line of an answer quoted from the knowledge base.
pub fn quote_intro(locale: Locale, title: &str) -> String {
    match locale {
        Locale::Id => format!("Berikut informasi dari \"{title}\":"),
        Locale::En => format!("Here is what our information \"{title}\" says:"),
    }
}

/// Closing line offering a human after a quoted answer.
pub fn quote_outro(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Kalau belum menjawab pertanyaan Anda, ketik \"admin\" untuk dibantu tim kami."
        }
        Locale::En => "If this does not answer your question, type \"agent\" to talk to our team.",
    }
}

/// Asked once when nothing in the knowledge base matches (`prompts/clarify.*.tera`).
pub fn clarify(locale: Locale) -> String {
    message("clarify", locale)
}

/// Said when the bot still cannot answer after clarifying: offers a human
/// (`prompts/no_answer.*.tera`).
pub fn offer_human(locale: Locale) -> String {
    message("no_answer", locale)
}

/// The quick reply that asks for a human.
pub fn human_choice(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Hubungi admin",
        Locale::En => "Talk to an agent",
    }
}

/// Said when the conversation is handed to a human (`prompts/handoff.*.tera`).
pub fn handoff_notice(locale: Locale) -> String {
    message("handoff", locale)
}

/// Said when answering failed for a technical reason.
pub fn answer_failed(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, sistem kami sedang mengalami gangguan. Pertanyaan Anda sudah kami teruskan ke admin, mohon tunggu balasannya."
        }
        Locale::En => {
            "Sorry, we are having a technical problem. Your question has been passed to our team; please wait for their reply."
        }
    }
}

/// Said when the language model is too slow or unavailable: a polite fallback, then a human.
pub fn llm_unavailable(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Mohon maaf, jawaban kami sedang lebih lama dari biasanya. Pertanyaan Anda sudah kami teruskan ke admin, mohon tunggu sebentar ya."
        }
        Locale::En => {
            "Sorry, our answer is taking longer than usual. Your question has been passed to our team; they will reply here shortly."
        }
    }
}

/// The text that carries a one-time code on channels without authentication templates
/// (Telegram). `code` is what the dispatcher replaces with the code just before sending.
pub fn one_time_code(locale: Locale, code: &str, minutes: u64) -> String {
    match locale {
        Locale::Id => format!(
            "{code} adalah kode verifikasi Anda. Berlaku {minutes} menit. Demi keamanan, jangan berikan kode ini kepada siapa pun, termasuk tim kami."
        ),
        Locale::En => format!(
            "{code} is your verification code. It expires in {minutes} minutes. For your security, do not share it with anyone, including our team."
        ),
    }
}

/// Phone verification: asks for the number to verify (web chat).
pub fn ask_number(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Silakan ketik nomor WhatsApp yang ingin diverifikasi, contoh: 0812 3456 7890. Kami akan mengirim kode 6 digit ke nomor itu."
        }
        Locale::En => {
            "Please type the WhatsApp number you want to verify, e.g. +62 812 3456 7890. We will send a 6-digit code to it."
        }
    }
}

/// Phone verification: the typed number is not one.
pub fn invalid_number(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Nomor itu sepertinya belum benar. Ketik nomor WhatsApp Anda lengkap, contoh: 0812 3456 7890 atau +62 812 3456 7890, atau ketik \"batal\"."
        }
        Locale::En => {
            "That does not look like a phone number. Type your full WhatsApp number, e.g. +62 812 3456 7890, or type \"cancel\"."
        }
    }
}

/// Phone verification: the code is on its way to `phone`.
pub fn code_sent(locale: Locale, phone: &str) -> String {
    match locale {
        Locale::Id => format!(
            "Kode verifikasi 6 digit sudah kami kirim lewat WhatsApp ke {phone}. Ketik kodenya di sini. Belum menerima? Ketik \"kirim ulang\"."
        ),
        Locale::En => format!(
            "We sent a 6-digit verification code over WhatsApp to {phone}. Type it here. Did not get it? Type \"resend\"."
        ),
    }
}

/// Phone verification: done.
pub fn number_verified(locale: Locale, phone: &str) -> String {
    match locale {
        Locale::Id => format!("Terima kasih, nomor {phone} berhasil diverifikasi."),
        Locale::En => format!("Thank you, the number {phone} is verified."),
    }
}

/// Phone verification: a wrong code, `left` tries left.
pub fn wrong_code(locale: Locale, left: i64) -> String {
    match locale {
        Locale::Id => format!(
            "Kodenya belum cocok. Sisa {left} kali percobaan. Ketik \"kirim ulang\" untuk kode baru."
        ),
        Locale::En => {
            format!("That code is not right. {left} tries left. Type \"resend\" for a new code.")
        }
    }
}

/// Phone verification: the code expired.
pub fn code_expired(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Kode itu sudah kedaluwarsa. Ketik \"kirim ulang\" untuk kode baru.",
        Locale::En => "That code has expired. Type \"resend\" for a new code.",
    }
}

/// Phone verification: too many wrong codes.
pub fn code_locked(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Terlalu banyak kode yang salah. Ketik \"kirim ulang\" untuk kode baru, atau pilih di bawah untuk dibantu tim kami."
        }
        Locale::En => {
            "Too many wrong codes. Type \"resend\" for a new code, or choose below to reach our team."
        }
    }
}

/// Phone verification: a new code cannot be sent for `seconds` more.
pub fn code_too_soon(locale: Locale, seconds: u64) -> String {
    match locale {
        Locale::Id => format!(
            "Kode baru bisa dikirim lagi dalam {seconds} detik. Kode sebelumnya masih berlaku."
        ),
        Locale::En => format!(
            "A new code can be sent in {seconds} seconds. The previous code is still valid."
        ),
    }
}

/// Phone verification: not available for this business (no WhatsApp number for codes).
pub fn verification_unavailable(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, verifikasi nomor belum tersedia di sini. Tim kami bisa membantu Anda langsung."
        }
        Locale::En => {
            "Sorry, number verification is not available here. Our team can help you directly."
        }
    }
}

/// Phone verification: the code could not be sent now.
pub fn code_not_sent(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, kode belum bisa dikirim saat ini. Coba lagi sebentar lagi, atau pilih di bawah untuk dibantu tim kami."
        }
        Locale::En => {
            "Sorry, the code cannot be sent right now. Try again in a moment, or choose below to reach our team."
        }
    }
}

/// Phone verification: cancelled by the customer.
pub fn verification_cancelled(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Baik, verifikasi nomor dibatalkan.",
        Locale::En => "All right, the number verification is cancelled.",
    }
}

/// Said once more to a customer still waiting for an agent (the SLA re-notify).
pub fn still_waiting(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Mohon maaf menunggu, tim kami masih melayani pelanggan lain. Anda tetap dalam antrean dan akan segera kami balas di sini."
        }
        Locale::En => {
            "Sorry for the wait: our team is still helping other customers. You are still in the queue and we will reply here soon."
        }
    }
}

/// Said when a chat waited too long for an agent and goes back to the bot.
pub fn back_to_bot(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Mohon maaf, tim kami belum bisa membalas saat ini. Sementara itu saya siap membantu lagi: silakan tulis pertanyaan Anda, atau ketik \"admin\" untuk mencoba lagi nanti."
        }
        Locale::En => {
            "Sorry, our team cannot reply right now. Meanwhile I can help again: write your question, or type \"agent\" to try again later."
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn customer_message_templates_render_in_both_languages() {
        check().unwrap();
        for render in [clarify, offer_human, handoff_notice] {
            let id = render(Locale::Id);
            let en = render(Locale::En);
            assert!(!id.is_empty() && !en.is_empty());
            assert_ne!(id, en);
            assert!(!id.contains("{#") && !id.contains("#}"), "{id}");
        }
        assert!(clarify(Locale::Id).starts_with("Maaf, saya belum menemukan"));
        assert!(offer_human(Locale::En).contains("\"agent\""));
    }
}
