//! The part of a passage that answers a question, for extractive answers: the table row,
//! list item or sentence sharing the most words with the question, never text the passage
//! does not contain. A price question gets the item's row ("Kopi Susu Gula Aren — Rp
//! 22.000"), not the whole price table. Pure.

/// Lines an extractive answer quotes at most, by answer style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerStyle {
    /// One to three lines.
    #[default]
    Short,
    /// Up to eight lines.
    Normal,
}

impl AnswerStyle {
    /// `short` or `normal`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "short" => Some(Self::Short),
            "normal" => Some(Self::Normal),
            _ => None,
        }
    }

    /// The longest excerpt, in lines.
    pub fn max_lines(self) -> usize {
        match self {
            Self::Short => 3,
            Self::Normal => 8,
        }
    }
}

/// Words that say nothing about what is asked (Indonesian and English).
const STOPWORDS: &[&str] = &[
    "a",
    "ada",
    "adakah",
    "aja",
    "aku",
    "an",
    "and",
    "apa",
    "apakah",
    "are",
    "at",
    "atau",
    "bagaimana",
    "be",
    "berapa",
    "bisa",
    "boleh",
    "can",
    "could",
    "dan",
    "dari",
    "dengan",
    "di",
    "do",
    "does",
    "dong",
    "for",
    "ga",
    "gak",
    "gimana",
    "how",
    "i",
    "in",
    "ini",
    "is",
    "it",
    "itu",
    "juga",
    "kah",
    "kak",
    "kakak",
    "kalau",
    "kami",
    "kamu",
    "kapan",
    "ke",
    "kok",
    "mana",
    "mau",
    "me",
    "min",
    "my",
    "nggak",
    "of",
    "on",
    "or",
    "please",
    "saya",
    "sih",
    "the",
    "tidak",
    "to",
    "tolong",
    "untuk",
    "what",
    "when",
    "where",
    "which",
    "ya",
    "yang",
    "you",
    "your",
];

/// One quotable piece of a passage.
#[derive(Debug)]
struct Unit {
    /// As quoted.
    text: String,
    /// Its own words.
    words: Vec<String>,
    /// Words of its heading and table header, which count less.
    context: Vec<String>,
}

/// Lowercased words of `text`, without stopwords; `-nya` is dropped from longer words.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| match w.strip_suffix("nya") {
            Some(stem) if stem.chars().count() >= 3 => stem.to_owned(),
            _ => w,
        })
        .collect()
}

/// Whether two words are the same word, allowing one to extend the other (`harga`,
/// `harganya`; `kirim`, `pengiriman` does not count) once both have four letters.
fn same_word(a: &str, b: &str) -> bool {
    a == b || (a.len() >= 4 && b.len() >= 4 && (a.starts_with(b) || b.starts_with(a)))
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

fn is_separator(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

fn list_item(line: &str) -> Option<&str> {
    let t = line.trim_start();
    for marker in ["- ", "* ", "+ ", "• "] {
        if let Some(rest) = t.strip_prefix(marker) {
            return Some(rest.trim());
        }
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        let rest = &t[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(rest.trim());
        }
    }
    None
}

/// Sentences of a paragraph line, each with its end mark.
fn sentences(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_some_and(|n| n.is_whitespace()) {
            out.push(current.trim().to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// The passage as quotable units, in order; `title` words are every unit's context.
fn units(title: &str, passage: &str) -> Vec<Unit> {
    let mut units = Vec::new();
    let title = words(title);
    let mut heading: Vec<String> = title.clone();
    let mut header: Vec<String> = Vec::new();
    let lines: Vec<&str> = passage.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            header.clear();
            continue;
        }
        if t.starts_with('#') {
            heading = title
                .iter()
                .cloned()
                .chain(words(t.trim_start_matches('#')))
                .collect();
            header.clear();
            continue;
        }
        if t.starts_with('|') {
            if is_separator(t) {
                continue;
            }
            let row = cells(t);
            // A row followed by a separator is the table's header.
            if lines.get(i + 1).is_some_and(|next| is_separator(next)) {
                header = row.iter().flat_map(|c| words(c)).collect();
                continue;
            }
            let text = row
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" — ");
            units.push(Unit {
                words: words(&text),
                context: heading.iter().chain(&header).cloned().collect(),
                text,
            });
            continue;
        }
        header.clear();
        if let Some(item) = list_item(t) {
            units.push(Unit {
                words: words(item),
                context: heading.clone(),
                text: item.to_owned(),
            });
            continue;
        }
        for sentence in sentences(t) {
            units.push(Unit {
                words: words(&sentence),
                context: heading.clone(),
                text: sentence,
            });
        }
    }
    units
}

/// A question word the unit contains counts 1, unless its title or heading names it too
/// (then it tells the units under it apart no better than the heading does): 0.3, as a
/// word only the context contains.
fn score(unit: &Unit, asked: &[String]) -> f32 {
    asked
        .iter()
        .map(|q| {
            let in_context = unit.context.iter().any(|w| same_word(w, q));
            if unit.words.iter().any(|w| same_word(w, q)) && !in_context {
                1.0
            } else if in_context {
                0.3
            } else {
                0.0
            }
        })
        .sum()
}

/// The lines of `passage` (titled `title`) that answer `query`: the best-matching units (ties in passage
/// order), at most `style`'s lines; the passage's first lines when no word matches. A FAQ
/// passage (`Q: …` / `A: …`) gives its answer.
pub fn excerpt(query: &str, title: &str, passage: &str, style: AnswerStyle) -> Vec<String> {
    let max = style.max_lines();
    if let Some(rest) = passage.trim_start().strip_prefix("Q:")
        && let Some((_, answer)) = rest.split_once("\nA:")
    {
        return answer
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(max)
            .map(str::to_owned)
            .collect();
    }
    let units = units(title, passage);
    let asked = words(query);
    let scores: Vec<f32> = units.iter().map(|u| score(u, &asked)).collect();
    let best = scores.iter().copied().fold(0.0_f32, f32::max);
    if best <= 0.0 {
        return units.into_iter().take(max).map(|u| u.text).collect();
    }
    units
        .into_iter()
        .zip(scores)
        .filter(|(_, s)| *s >= best - f32::EPSILON)
        .take(max)
        .map(|(u, _)| u.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MENU: &str = "## Kopi\n| menu | harga reguler |\n|---|---|\n| Espresso | Rp 18.000 |\n| Americano | Rp 22.000 |\n| Kopi Susu Gula Aren | Rp 22.000 |\n| Caffe Latte | Rp 28.000 |\n| Es Kopi Pandan | Rp 25.000 |\n";

    #[test]
    fn a_price_question_gets_the_items_row() {
        assert_eq!(
            excerpt(
                "berapa harga kopi susu gula aren?",
                "Menu dan Harga — Kopi",
                MENU,
                AnswerStyle::Short
            ),
            ["Kopi Susu Gula Aren — Rp 22.000"]
        );
        assert_eq!(
            excerpt("harga latte berapa kak", "", MENU, AnswerStyle::Short),
            ["Caffe Latte — Rp 28.000"]
        );
    }

    #[test]
    fn the_best_sentence_or_list_item_is_quoted() {
        let text = "Kami buka setiap hari. Pengiriman ke Bekasi memakai kurir instan, ongkir mulai Rp 15.000. Pesanan di atas Rp 200.000 gratis ongkir.\n\n- Pembayaran: QRIS, kartu debit, tunai.\n- Tidak menerima cek.";
        assert_eq!(
            excerpt("bisa kirim ke bekasi?", "", text, AnswerStyle::Short),
            ["Pengiriman ke Bekasi memakai kurir instan, ongkir mulai Rp 15.000."]
        );
        assert_eq!(
            excerpt("bisa bayar pakai qris?", "", text, AnswerStyle::Short),
            ["Pembayaran: QRIS, kartu debit, tunai."]
        );
    }

    #[test]
    fn without_a_matching_word_the_passage_opening_is_quoted_and_nothing_invented() {
        let lines = excerpt("zzz", "", MENU, AnswerStyle::Short);
        assert_eq!(lines.len(), 3);
        for line in &lines {
            let cells: Vec<&str> = line.split(" — ").collect();
            assert!(cells.iter().all(|c| MENU.contains(c)), "{line}");
        }
    }

    #[test]
    fn ties_are_kept_in_order_up_to_the_style_limit() {
        // Every row is under "Kopi": the first three.
        let lines = excerpt("kopi", "", MENU, AnswerStyle::Short);
        assert_eq!(
            lines,
            [
                "Espresso — Rp 18.000",
                "Americano — Rp 22.000",
                "Kopi Susu Gula Aren — Rp 22.000"
            ]
        );
        let lines = excerpt("es kopi", "", MENU, AnswerStyle::Short);
        assert_eq!(lines, ["Es Kopi Pandan — Rp 25.000"]);
        let many = "- a kopi\n- b kopi\n- c kopi\n- d kopi\n- e kopi\n";
        assert_eq!(excerpt("kopi", "", many, AnswerStyle::Short).len(), 3);
        assert_eq!(excerpt("kopi", "", many, AnswerStyle::Normal).len(), 5);
    }

    #[test]
    fn words_the_title_shares_with_the_question_do_not_pick_the_line() {
        let passage = "Jam buka: Senin–Jumat 07.00–22.00 WIB, Sabtu–Minggu 08.00–23.00 WIB.\nParkir motor tersedia di depan outlet; parkir mobil di gedung Blok M Square.";
        assert_eq!(
            excerpt(
                "jam buka outlet Blok M hari Minggu?",
                "Profil — Outlet Blok M",
                passage,
                AnswerStyle::Short
            ),
            ["Jam buka: Senin–Jumat 07.00–22.00 WIB, Sabtu–Minggu 08.00–23.00 WIB."]
        );
    }

    #[test]
    fn a_faq_passage_gives_its_answer() {
        assert_eq!(
            excerpt(
                "ada wifi?",
                "faq",
                "Q: Apakah ada wifi?\nA: Ada, wifi gratis di semua outlet.",
                AnswerStyle::Short
            ),
            ["Ada, wifi gratis di semua outlet."]
        );
    }
}
