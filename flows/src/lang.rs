//! A small Indonesian/English detector, good enough to pick the reply language.

use crate::state::Locale;

const ENGLISH: &[&str] = &[
    "the", "is", "are", "do", "does", "you", "your", "what", "when", "where", "how", "can", "i",
    "my", "to", "of", "and", "have", "open", "price", "please", "hello", "hi", "thanks", "with",
    "for", "it", "there", "which", "much", "many", "time", "hours", "delivery", "accept", "pay",
];
const INDONESIAN: &[&str] = &[
    "yang",
    "dan",
    "di",
    "ke",
    "apa",
    "apakah",
    "berapa",
    "bisa",
    "ada",
    "tidak",
    "gak",
    "nggak",
    "ga",
    "saya",
    "aku",
    "kak",
    "min",
    "mau",
    "buka",
    "jam",
    "harga",
    "dong",
    "ya",
    "kah",
    "untuk",
    "dengan",
    "kalau",
    "kalo",
    "gimana",
    "bagaimana",
    "kapan",
    "dimana",
    "mana",
    "sudah",
    "udah",
    "belum",
    "hari",
    "pesan",
    "kirim",
    "terima",
    "kasih",
    "halo",
    "selamat",
    "tolong",
    "brp",
    "yg",
];

/// Guesses the language of `text`; `None` when there is too little evidence.
pub fn detect(text: &str) -> Option<Locale> {
    let (mut en, mut id) = (0u32, 0u32);
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if ENGLISH.contains(&word.as_str()) {
            en += 1;
        }
        if INDONESIAN.contains(&word.as_str()) {
            id += 1;
        }
    }
    match en.cmp(&id) {
        std::cmp::Ordering::Greater if en >= 2 => Some(Locale::En),
        std::cmp::Ordering::Less if id >= 1 => Some(Locale::Id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_common_customer_questions() {
        assert_eq!(
            detect("jam buka outlet Blok M hari Minggu?"),
            Some(Locale::Id)
        );
        assert_eq!(detect("brp harga kopi susu?"), Some(Locale::Id));
        assert_eq!(
            detect("What are your opening hours on Sunday?"),
            Some(Locale::En)
        );
        assert_eq!(detect("do you accept credit cards"), Some(Locale::En));
        assert_eq!(detect("ok"), None);
    }
}
