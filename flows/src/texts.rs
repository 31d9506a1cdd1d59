//! Every sentence the bot says to customers, in Indonesian and English. The ones owners most
//! often reword (clarify, no answer, handoff) are tera templates in `prompts/`, embedded at
//! compile time and checked at start by [`crate::Prompts::load`].

use std::sync::LazyLock;

use crate::flow::SlotError;
use crate::hours::{Opening, WaitOutlook};
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
            "Mohon maaf menunggu, tim kami masih melayani pelanggan lain. Anda tetap dalam antrean."
        }
        Locale::En => {
            "Sorry for the wait: our team is still helping other customers. You are still in the queue."
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

/// The sentence about the wait, added to the handoff notice and the SLA re-notify: about how
/// long, that nobody is online, or, outside business hours, when the team is back.
pub fn wait_sentence(locale: Locale, outlook: &WaitOutlook) -> String {
    match (locale, outlook) {
        (Locale::Id, WaitOutlook::Minutes(1)) => {
            "Perkiraan waktu tunggu sekitar 1 menit; tim kami akan membalas di sini.".to_owned()
        }
        (Locale::En, WaitOutlook::Minutes(1)) => {
            "The expected wait is about 1 minute; our team will reply here.".to_owned()
        }
        (Locale::Id, WaitOutlook::Minutes(n)) => {
            format!("Perkiraan waktu tunggu sekitar {n} menit; tim kami akan membalas di sini.")
        }
        (Locale::En, WaitOutlook::Minutes(n)) => {
            format!("The expected wait is about {n} minutes; our team will reply here.")
        }
        (Locale::Id, WaitOutlook::NobodyOnline) => "Saat ini belum ada tim kami yang online, jadi mungkin perlu waktu lebih lama; kami akan membalas di sini begitu ada yang tersedia.".to_owned(),
        (Locale::En, WaitOutlook::NobodyOnline) => "Nobody from our team is online right now, so it may take longer; we will reply here as soon as someone is available.".to_owned(),
        (Locale::Id, WaitOutlook::Closed(None)) => "Saat ini di luar jam operasional kami; tim kami akan membalas di sini begitu kembali.".to_owned(),
        (Locale::En, WaitOutlook::Closed(None)) => "We are outside our business hours right now; our team will reply here as soon as they are back.".to_owned(),
        (Locale::Id, WaitOutlook::Closed(Some(o))) => {
            let clock = format!("{:02}.{:02} {}", o.time.hour(), o.time.minute(), o.zone_label);
            let when = match o.days_ahead {
                0 => format!("hari ini pukul {clock}"),
                1 => format!("besok pukul {clock}"),
                _ => format!(
                    "hari {}, {} {}, pukul {clock}",
                    DAYS_ID[weekday_index(o)],
                    o.date.day(),
                    MONTHS_ID[month_index(o)]
                ),
            };
            format!("Saat ini di luar jam operasional kami. Tim kami akan membalas di sini mulai {when}.")
        }
        (Locale::En, WaitOutlook::Closed(Some(o))) => {
            let clock = format!("{:02}:{:02} {}", o.time.hour(), o.time.minute(), o.zone_label);
            let when = match o.days_ahead {
                0 => format!("today from {clock}"),
                1 => format!("tomorrow from {clock}"),
                _ => format!(
                    "on {}, {} {}, from {clock}",
                    DAYS_EN[weekday_index(o)],
                    o.date.day(),
                    MONTHS_EN[month_index(o)]
                ),
            };
            format!("We are outside our business hours right now. Our team will reply here {when}.")
        }
    }
}

/// The handoff notice with the wait: `lead` (the handoff sentence, or the apology of a
/// failed answer), then [`wait_sentence`].
pub fn wait_notice(locale: Locale, lead: &str, outlook: &WaitOutlook) -> String {
    format!("{} {}", lead.trim(), wait_sentence(locale, outlook))
}

const DAYS_ID: [&str; 7] = [
    "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu",
];
const DAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS_ID: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn weekday_index(o: &Opening) -> usize {
    usize::try_from(o.date.weekday().to_monday_zero_offset()).unwrap_or(0)
}

fn month_index(o: &Opening) -> usize {
    usize::try_from(o.date.month() - 1).unwrap_or(0)
}

// Flows: what the flow runtime (`crate::flow::run`) says itself.

/// A flow's answer did not fit its slot; said when the `ask` step has no `invalid` text.
pub fn flow_invalid_answer(locale: Locale, error: SlotError) -> &'static str {
    match (locale, error) {
        (Locale::Id, SlotError::Empty | SlotError::Pattern) => {
            "Maaf, jawabannya belum sesuai. Boleh dicoba lagi? Ketik \"batal\" untuk berhenti."
        }
        (Locale::En, SlotError::Empty | SlotError::Pattern) => {
            "Sorry, that answer does not fit. Could you try again? Type \"cancel\" to stop."
        }
        (Locale::Id, SlotError::Number) => "Mohon tulis angkanya saja, contohnya 4.",
        (Locale::En, SlotError::Number) => "Please type a number, for example 4.",
        (Locale::Id, SlotError::Phone) => {
            "Nomor teleponnya belum benar. Contohnya 0812 3456 7890 atau +62 812 3456 7890."
        }
        (Locale::En, SlotError::Phone) => {
            "That does not look like a phone number. For example +62 812 3456 7890."
        }
        (Locale::Id, SlotError::Email) => "Alamat emailnya belum benar. Contohnya nama@contoh.com.",
        (Locale::En, SlotError::Email) => {
            "That does not look like an e-mail address. For example name@example.com."
        }
        (Locale::Id, SlotError::Date) => {
            "Tanggalnya belum saya pahami. Contohnya \"besok\", \"Sabtu\" atau \"12/12\"."
        }
        (Locale::En, SlotError::Date) => {
            "I did not understand the date. For example \"tomorrow\", \"Saturday\" or \"Dec 12\"."
        }
        (Locale::Id, SlotError::Time) => {
            "Jamnya belum saya pahami. Contohnya \"jam 3 sore\" atau \"15.00\"."
        }
        (Locale::En, SlotError::Time) => {
            "I did not understand the time. For example \"3pm\" or \"15:00\"."
        }
        (Locale::Id, SlotError::Datetime) => {
            "Tanggal dan jamnya belum saya pahami. Contohnya \"besok jam 7 malam\"."
        }
        (Locale::En, SlotError::Datetime) => {
            "I did not understand the date and time. For example \"tomorrow at 7pm\"."
        }
        (Locale::Id, SlotError::Choice) => {
            "Silakan pilih salah satu pilihan di bawah, atau ketik nomornya."
        }
        (Locale::En, SlotError::Choice) => {
            "Please pick one of the options below, or type its number."
        }
    }
}

/// A flow was left because the customer typed "batal"/"cancel".
pub fn flow_cancelled(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Baik, sudah saya batalkan. Ada lagi yang bisa saya bantu?",
        Locale::En => "Okay, I have cancelled that. Is there anything else I can help with?",
    }
}

/// Three answers in a row did not fit: a person takes over.
pub fn flow_too_many_invalid(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, sepertinya saya belum bisa memahami jawabannya. Percakapan ini saya teruskan ke tim kami supaya dibantu langsung, mohon ditunggu ya."
        }
        Locale::En => {
            "Sorry, I could not understand the answer. I am passing this chat to our team so they can help you directly, please wait a moment."
        }
    }
}

/// A flow's webhook failed after its retries: a person takes over.
pub fn flow_webhook_failed(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, datanya belum bisa kami cek saat ini. Percakapan ini saya teruskan ke tim kami supaya dibantu langsung, mohon ditunggu ya."
        }
        Locale::En => {
            "Sorry, we cannot look that up right now. I am passing this chat to our team so they can help you directly, please wait a moment."
        }
    }
}

/// A flow's `handoff` step.
pub fn flow_handoff(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Baik, percakapan ini saya teruskan ke tim kami. Mohon ditunggu ya.",
        Locale::En => "Okay, I am passing this chat to our team. Please wait a moment.",
    }
}

/// A flow awaits a one-time code and the message is not one.
pub fn flow_type_the_code(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Silakan ketik 6 angka kode verifikasi yang kami kirim. Ketik \"kirim ulang\" untuk kode baru, atau \"batal\" untuk berhenti."
        }
        Locale::En => {
            "Please type the 6-digit verification code we sent. Type \"resend\" for a new code, or \"cancel\" to stop."
        }
    }
}

/// The customer went quiet in the middle of a flow: one reminder.
pub fn flow_reminder(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Kak, kita belum selesai tadi. Balas pesan ini untuk melanjutkan, atau ketik \"batal\" kalau tidak jadi."
        }
        Locale::En => {
            "We did not finish earlier. Reply to this message to continue, or type \"cancel\" if you changed your mind."
        }
    }
}

/// A flow needs a one-time code but none can be sent (no OTP template or channel): a person
/// takes over.
pub fn flow_code_unavailable(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, kode verifikasi belum bisa kami kirim saat ini. Percakapan ini saya teruskan ke tim kami supaya dibantu langsung, mohon ditunggu ya."
        }
        Locale::En => {
            "Sorry, we cannot send a verification code right now. I am passing this chat to our team so they can help you directly, please wait a moment."
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

    #[test]
    fn wait_sentences_exist_in_both_languages_and_say_when() {
        use jiff::civil::{date, time};
        let monday = Opening {
            at_ms: 0,
            date: date(2026, 12, 14),
            time: time(9, 0, 0, 0),
            days_ahead: 2,
            zone_label: "WIB".to_owned(),
        };
        let tomorrow = Opening {
            days_ahead: 1,
            ..monday.clone()
        };
        let cases = [
            (
                WaitOutlook::Minutes(1),
                "sekitar 1 menit",
                "about 1 minute;",
            ),
            (
                WaitOutlook::Minutes(15),
                "sekitar 15 menit",
                "about 15 minutes",
            ),
            (
                WaitOutlook::NobodyOnline,
                "belum ada tim kami yang online",
                "Nobody from our team is online",
            ),
            (
                WaitOutlook::Closed(None),
                "di luar jam operasional",
                "outside our business hours",
            ),
            (
                WaitOutlook::Closed(Some(tomorrow)),
                "besok pukul 09.00 WIB",
                "tomorrow from 09:00 WIB",
            ),
            (
                WaitOutlook::Closed(Some(monday)),
                "mulai hari Senin, 14 Desember, pukul 09.00 WIB",
                "on Monday, 14 December, from 09:00 WIB",
            ),
        ];
        for (outlook, id, en) in cases {
            let got_id = wait_sentence(Locale::Id, &outlook);
            let got_en = wait_sentence(Locale::En, &outlook);
            assert!(got_id.contains(id), "{got_id}");
            assert!(got_en.contains(en), "{got_en}");
        }
        let notice = wait_notice(
            Locale::Id,
            &handoff_notice(Locale::Id),
            &WaitOutlook::Minutes(5),
        );
        assert!(
            notice.starts_with("Baik, percakapan ini saya teruskan"),
            "{notice}"
        );
        assert!(
            notice.ends_with("tim kami akan membalas di sini."),
            "{notice}"
        );
    }
}
