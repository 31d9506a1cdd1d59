//! Every sentence the bot says to customers, in Indonesian and English.

use crate::state::Locale;

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

/// Asked once when nothing in the knowledge base matches.
pub fn clarify(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, saya belum menemukan jawabannya. Bisa dijelaskan sedikit lebih detail? Misalnya nama outlet, menu atau layanan yang dimaksud."
        }
        Locale::En => {
            "Sorry, I could not find that yet. Could you tell me a bit more, for example which outlet, menu item or service you mean?"
        }
    }
}

/// Said when the bot still cannot answer after clarifying: offers a human.
pub fn offer_human(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Maaf, saya belum bisa menjawab pertanyaan itu. Mau saya sambungkan dengan admin kami? Ketik \"admin\"."
        }
        Locale::En => {
            "Sorry, I cannot answer that. Shall I connect you with our team? Type \"agent\"."
        }
    }
}

/// The quick reply that asks for a human.
pub fn human_choice(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Hubungi admin",
        Locale::En => "Talk to an agent",
    }
}

/// Said when the conversation is handed to a human.
pub fn handoff_notice(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => {
            "Baik, percakapan ini saya teruskan ke admin kami. Mohon tunggu, tim kami akan segera membalas di sini."
        }
        Locale::En => {
            "Sure, I am passing this conversation to our team. Please wait, someone will reply here shortly."
        }
    }
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
