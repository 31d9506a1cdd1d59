//! Text analysis shared by indexing and querying, tuned for Indonesian customer chat.
//!
//! The pipeline, in order:
//! 1. Unicode NFKC normalization and lowercasing.
//! 2. Splitting into letter runs and number runs. Numbers, clock times and IDR prices survive as
//!    tokens: "Rp25.000", "Rp 25.000", "25rb", "25 ribu" and "25k" all become `25000`;
//!    "08.00" and "8:00" become `08.00`; "50%" becomes `50 persen`.
//! 3. Chat-slang normalization ("gak" → "tidak", "brp" → "berapa", "ongkir" → "ongkos kirim").
//! 4. Stopword removal (Indonesian, English and chat fillers such as "kak" and "dong").
//! 5. Indonesian stemming (Snowball Tala), guarded by a list of roots it would damage and
//!    corrected where it drops the initial k/t/m of a root ("pengiriman" → "kirim").
//! 6. A light English suffix stripper (-s, -ed, -ies, final -e) for words the Indonesian stemmer
//!    leaves alone ("accepted" → "accept", "beans" → "bean").
//!
//! [`analyze`] returns the indexed tokens. [`analyze_query`] returns the same tokens grouped per
//! query word, each with its alternatives (cross-language synonyms), which the index uses for
//! matching and for measuring how much of a question a chunk covers.

mod lexicon;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

/// Longest word (in characters) that is indexed; longer runs are noise such as base64 or URLs.
pub const MAX_TOKEN_CHARS: usize = 40;

/// Weight of a synonym relative to the word the customer actually wrote.
pub const SYNONYM_FACTOR: f32 = 0.8;

/// One informative word of a query, with every indexed term that counts as a match for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueryTerm {
    /// The word as the customer wrote it (normalized; after slang expansion).
    pub word: String,
    /// Indexed terms that match this word, each with a weight factor in `(0, 1]`: 1.0 for the
    /// word's own stems, [`SYNONYM_FACTOR`] for synonyms. The first entry is the main stem.
    pub alternatives: Vec<(String, f32)>,
}

impl QueryTerm {
    /// The main stem of the word.
    pub fn primary(&self) -> &str {
        self.alternatives.first().map_or("", |(t, _)| t.as_str())
    }
}

/// Analyzes text into index tokens: normalized, slang-expanded, stopword-free and stemmed.
pub fn analyze(text: &str) -> Vec<String> {
    analyze_groups(text)
        .into_iter()
        .flat_map(|g| g.stems)
        .collect()
}

/// The candidate stems of one standard word (no slang lookup, no number handling), used to check
/// spelling variants of an unknown query word against the index vocabulary.
pub fn word_stems(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    analyze_standard_word(word, &mut out);
    out.into_iter().flat_map(|g| g.stems).collect()
}

/// Analyzes a question into informative words with their alternatives (synonyms), in order and
/// without duplicates. An empty result means the question has no informative word at all.
pub fn analyze_query(text: &str) -> Vec<QueryTerm> {
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    for Analyzed { word, stems } in analyze_groups(text) {
        let Some(first) = stems.first() else { continue };
        if !seen.insert(first.clone()) {
            continue;
        }
        let mut alternatives: Vec<(String, f32)> = Vec::new();
        for token in &stems {
            if !alternatives.iter().any(|(t, _)| t == token) {
                alternatives.push((token.clone(), 1.0));
            }
        }
        for token in &stems {
            if let Some(synonyms) = SYNONYM_MAP.get(token) {
                for synonym in synonyms {
                    if !alternatives.iter().any(|(t, _)| t == synonym) {
                        alternatives.push((synonym.clone(), SYNONYM_FACTOR));
                    }
                }
            }
        }
        terms.push(QueryTerm { word, alternatives });
    }
    terms
}

/// The language of a text, guessed from function words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Bahasa Indonesia (including chat slang).
    Indonesian,
    /// English.
    English,
}

impl Language {
    /// ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Indonesian => "id",
            Self::English => "en",
        }
    }

    /// Parses an ISO 639-1 code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "id" => Some(Self::Indonesian),
            "en" => Some(Self::English),
            _ => None,
        }
    }
}

const ENGLISH_MARKERS: &[&str] = &[
    "the", "is", "are", "do", "does", "you", "your", "can", "i", "my", "we", "our", "what", "how",
    "where", "when", "there", "a", "an", "of", "to", "in", "for", "with", "and", "or", "please",
    "have", "has", "will", "at", "on", "it", "this", "that", "be", "only", "not", "any",
];
const INDONESIAN_MARKERS: &[&str] = &[
    "yang",
    "dan",
    "di",
    "ke",
    "dari",
    "apa",
    "apakah",
    "ada",
    "bisa",
    "untuk",
    "dengan",
    "saya",
    "kami",
    "tidak",
    "ini",
    "itu",
    "atau",
    "juga",
    "berapa",
    "bagaimana",
    "gimana",
    "kak",
    "ya",
    "gak",
    "nggak",
    "ga",
    "gk",
    "mau",
    "dong",
    "sih",
    "kalau",
    "kalo",
    "aja",
    "sudah",
    "udah",
    "belum",
    "yg",
    "brp",
    "bs",
    "utk",
    "pakai",
    "pake",
    "boleh",
    "buat",
    "nya",
    "dalam",
    "akan",
];

/// Guesses whether a text is Indonesian or English from its function words; None when it has
/// too few to tell ("minimum order delivery").
pub fn detect_language(text: &str) -> Option<Language> {
    let normalized = normalize(text);
    let (mut english, mut indonesian) = (0usize, 0usize);
    for word in normalized.split(|c: char| !c.is_alphanumeric()) {
        if ENGLISH_MARKERS.contains(&word) {
            english += 1;
        } else if INDONESIAN_MARKERS.contains(&word) {
            indonesian += 1;
        }
    }
    match english.cmp(&indonesian) {
        std::cmp::Ordering::Greater => Some(Language::English),
        std::cmp::Ordering::Less => Some(Language::Indonesian),
        std::cmp::Ordering::Equal => None,
    }
}

/// Normalizes text the way the analyzer sees it: NFKC, then lowercase.
pub fn normalize(text: &str) -> String {
    text.nfkc().collect::<String>().to_lowercase()
}

/// The candidate stems of one word (usually one; two where the stemmer cannot tell "mengirim"
/// from a root starting with a vowel).
#[derive(Debug)]
struct Analyzed {
    word: String,
    stems: Vec<String>,
}

impl Analyzed {
    fn single(word: &str, stem: String) -> Self {
        Self {
            word: word.to_owned(),
            stems: vec![stem],
        }
    }
}

/// Tokens grouped by source word.
fn analyze_groups(text: &str) -> Vec<Analyzed> {
    let normalized = normalize(text);
    let chars: Vec<char> = normalized.chars().collect();
    let pieces = scan(&chars);
    let mut out = Vec::new();
    let mut k = 0;
    while k < pieces.len() {
        let piece = &pieces[k];
        let next = pieces.get(k + 1);
        match &piece.kind {
            PieceKind::Word(word) => {
                if let Some(next) = next
                    && let PieceKind::Number(number) = &next.kind
                {
                    if (word == "rp" || word == "idr") && gap_is(&chars, piece.end, next.start, 2) {
                        if let Some(value) = parse_amount(number, 1.0) {
                            out.push(Analyzed::single(number, value));
                            k += 2;
                            continue;
                        }
                    } else if next.start == piece.end && number.chars().all(|c| c.is_ascii_digit())
                    {
                        // Product and certificate codes such as "v60" or "id0011…" stay whole.
                        let code = format!("{word}{number}");
                        out.push(Analyzed::single(&code, code.clone()));
                        k += 2;
                        continue;
                    }
                }
                analyze_word(word, &mut out);
                k += 1;
            }
            PieceKind::Number(number) => {
                if let Some(next) = next
                    && let PieceKind::Word(word) = &next.kind
                    && let Some(multiplier) = amount_multiplier(word)
                    && gap_is(&chars, piece.end, next.start, 1)
                    && let Some(value) = parse_amount(number, multiplier)
                {
                    out.push(Analyzed::single(number, value));
                    k += 2;
                    continue;
                }
                // Phone and account numbers: digit groups joined by hyphens ("0812-3456-7000").
                // Each group stays a token; the whole number is one more, and "nomor" marks the
                // chunk as holding a number ("nomor rekening", "nomor WhatsApp").
                let mut end = k + 1;
                while let (Some(previous), Some(next)) = (pieces.get(end - 1), pieces.get(end))
                    && let PieceKind::Number(part) = &next.kind
                    && part.chars().all(|c| c.is_ascii_digit())
                    && next.start == previous.end + 1
                    && chars[previous.end] == '-'
                {
                    end += 1;
                }
                let parts: Vec<&str> = pieces[k..end]
                    .iter()
                    .filter_map(|p| match &p.kind {
                        PieceKind::Number(n) => Some(n.as_str()),
                        _ => None,
                    })
                    .collect();
                for part in &parts {
                    out.push(Analyzed::single(part, normalize_number(part)));
                }
                let joined: String = parts.concat();
                if joined.chars().all(|c| c.is_ascii_digit())
                    && joined.len() >= 8
                    && (parts.len() >= 2 || joined.starts_with('0'))
                {
                    if parts.len() >= 2 {
                        out.push(Analyzed::single(&joined, joined.clone()));
                    }
                    out.push(Analyzed::single("nomor", "nomor".to_owned()));
                }
                k = end;
            }
            PieceKind::Percent => {
                out.push(Analyzed::single("%", "persen".to_owned()));
                k += 1;
            }
        }
    }
    out
}

#[derive(Debug)]
enum PieceKind {
    Word(String),
    Number(String),
    Percent,
}

#[derive(Debug)]
struct Piece {
    kind: PieceKind,
    start: usize,
    end: usize,
}

/// Splits normalized text into letter runs, number runs (digits with inner `.`, `,` or `:`) and
/// percent signs; everything else separates.
fn scan(chars: &[char]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let c = chars[i];
        if c.is_alphabetic() {
            let start = i;
            while i < n && (chars[i].is_alphabetic() || is_combining_mark(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            pieces.push(Piece {
                kind: PieceKind::Word(word),
                start,
                end: i,
            });
        } else if c.is_ascii_digit() {
            let start = i;
            while i < n {
                let d = chars[i];
                let inner_separator = matches!(d, '.' | ',' | ':')
                    && i > start
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit);
                if d.is_ascii_digit() || inner_separator {
                    i += 1;
                } else {
                    break;
                }
            }
            let number: String = chars[start..i].iter().collect();
            pieces.push(Piece {
                kind: PieceKind::Number(number),
                start,
                end: i,
            });
        } else if c == '%' {
            pieces.push(Piece {
                kind: PieceKind::Percent,
                start: i,
                end: i + 1,
            });
            i += 1;
        } else {
            i += 1;
        }
    }
    pieces
}

fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F)
}

/// True when the characters between two pieces are at most `max` spaces or dots.
fn gap_is(chars: &[char], from: usize, to: usize, max: usize) -> bool {
    to >= from
        && to - from <= max
        && chars[from..to]
            .iter()
            .all(|c| c.is_whitespace() || *c == '.')
}

fn amount_multiplier(word: &str) -> Option<f64> {
    match word {
        "rb" | "ribu" | "rebu" | "k" | "rban" | "ribuan" => Some(1_000.0),
        "jt" | "juta" | "jutaan" => Some(1_000_000.0),
        _ => None,
    }
}

/// Parses an Indonesian amount ("25.000", "25", "2,5", "22.000,00") times `multiplier` into an
/// integer token.
fn parse_amount(number: &str, multiplier: f64) -> Option<String> {
    let value = if is_grouped_thousands(number) {
        number.replace(['.', ','], "").parse::<f64>().ok()?
    } else if let Some(integer) = strip_cents(number) {
        integer.replace(['.', ','], "").parse::<f64>().ok()?
    } else {
        number.replace(',', ".").parse::<f64>().ok()?
    };
    let amount = (value * multiplier).round();
    if !(0.0..1e15).contains(&amount) {
        return None;
    }
    Some(format!("{amount:.0}"))
}

/// "22.000,00" → "22.000"; None when the number has no two-digit decimal tail after thousands.
fn strip_cents(number: &str) -> Option<&str> {
    let (head, tail) = number.rsplit_once(',')?;
    (tail.len() == 2 && is_grouped_thousands(head)).then_some(head)
}

/// "25.000", "1.250.000", "22,000": groups of three digits after a one-to-three digit head, all
/// with the same separator.
fn is_grouped_thousands(number: &str) -> bool {
    for separator in ['.', ','] {
        let mut parts = number.split(separator);
        let Some(head) = parts.next() else { continue };
        let rest: Vec<&str> = parts.collect();
        if !rest.is_empty()
            && (1..=3).contains(&head.len())
            && head.chars().all(|c| c.is_ascii_digit())
            && rest
                .iter()
                .all(|p| p.len() == 3 && p.chars().all(|c| c.is_ascii_digit()))
        {
            return true;
        }
    }
    false
}

/// Canonical form of a number token: thousands separators dropped, clock times as `HH.MM`,
/// decimal commas as dots.
fn normalize_number(number: &str) -> String {
    if is_grouped_thousands(number) {
        return number.replace(['.', ','], "");
    }
    if let Some(integer) = strip_cents(number) {
        return integer.replace(['.', ','], "");
    }
    let bytes = number.as_bytes();
    let time_separator = bytes.iter().position(|b| *b == b'.' || *b == b':');
    if let Some(pos) = time_separator
        && (1..=2).contains(&pos)
        && number.len() - pos - 1 == 2
        && number.chars().filter(|c| !c.is_ascii_digit()).count() == 1
    {
        let (hours, minutes) = (&number[..pos], &number[pos + 1..]);
        if let (Ok(h), Ok(m)) = (hours.parse::<u32>(), minutes.parse::<u32>())
            && h <= 24
            && m < 60
        {
            return format!("{h:02}.{m:02}");
        }
    }
    number.replace([',', ':'], ".")
}

static STOPWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| lexicon::STOPWORDS.iter().copied().collect());
static SLANG: LazyLock<HashMap<&'static str, &'static str>> =
    LazyLock::new(|| lexicon::SLANG.iter().copied().collect());
static PROTECTED: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| lexicon::PROTECTED_ROOTS.iter().copied().collect());
static OVERRIDES: LazyLock<HashMap<&'static str, &'static str>> =
    LazyLock::new(|| lexicon::STEM_OVERRIDES.iter().copied().collect());
static NOT_IN_SUFFIX: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| lexicon::NOT_IN_SUFFIX.iter().copied().collect());

/// Analyzed synonym table: stem → stems of the other members of its synonym sets.
static SYNONYM_MAP: LazyLock<HashMap<String, Vec<String>>> = LazyLock::new(|| {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for set in lexicon::SYNONYMS {
        let members: Vec<Vec<String>> = set.iter().map(|m| analyze(m)).collect();
        for (i, member) in members.iter().enumerate() {
            for token in member {
                let entry = map.entry(token.clone()).or_default();
                for (j, other) in members.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    for alternative in other {
                        if alternative != token && !entry.contains(alternative) {
                            entry.push(alternative.clone());
                        }
                    }
                }
            }
        }
    }
    map
});

/// Analyzes one letter run, expanding slang.
fn analyze_word(word: &str, out: &mut Vec<Analyzed>) {
    if word.chars().count() > MAX_TOKEN_CHARS {
        return;
    }
    match SLANG.get(word) {
        Some(expansion) => {
            for part in expansion.split_whitespace() {
                analyze_standard_word(part, out);
            }
        }
        None => analyze_standard_word(word, out),
    }
}

/// Analyzes a word that is not slang itself (it may become slang after its suffix is removed:
/// "ongkirnya" → "ongkir").
fn analyze_standard_word(word: &str, out: &mut Vec<Analyzed>) {
    if STOPWORDS.contains(word) {
        return;
    }
    let mut push = |w: &str| {
        out.push(Analyzed {
            word: w.to_owned(),
            stems: stem_candidates(w),
        })
    };
    if OVERRIDES.contains_key(word) || PROTECTED.contains(word) {
        push(word);
        return;
    }
    let base = strip_particle(word);
    let base = strip_informal_in(base);
    if base != word {
        if STOPWORDS.contains(base) {
            return;
        }
        if let Some(expansion) = SLANG.get(base) {
            for part in expansion.split_whitespace() {
                if !STOPWORDS.contains(part) {
                    push(part);
                }
            }
            return;
        }
    }
    push(base);
}

/// Removes the particles -nya, -lah, -kah and -pun when at least four letters remain.
fn strip_particle(word: &str) -> &str {
    for suffix in ["nya", "lah", "kah", "pun"] {
        if let Some(base) = word.strip_suffix(suffix)
            && base.chars().count() >= 4
        {
            return base;
        }
    }
    word
}

/// Removes the Jakarta suffix "-in" ("kirimin" → "kirim", "batalin" → "batal").
fn strip_informal_in(word: &str) -> &str {
    if word.chars().count() >= 6
        && !NOT_IN_SUFFIX.contains(word)
        && let Some(base) = word.strip_suffix("in")
    {
        return base;
    }
    word
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Stems one standard word. Returns one stem, or two when the nasal prefix hides the root's first
/// letter: "mengirim" may be "kirim" or a vowel root, "menutup" may be "tutup", "pemilik" may be
/// "milik". Indexing both keeps the two spellings of a root matching each other.
fn stem_candidates(word: &str) -> Vec<String> {
    if let Some(root) = OVERRIDES.get(word) {
        return vec![(*root).to_owned()];
    }
    if PROTECTED.contains(word) || word.chars().count() <= 3 {
        return vec![word.to_owned()];
    }
    let stemmed = tantivy_stemmers::algorithms::indonesian_tala(word);
    if stemmed == word {
        return vec![english_light(word)];
    }
    let mut stem = stemmed.into_owned();
    if stem.is_empty() {
        return vec![word.to_owned()];
    }
    // Tala strips the suffix "-i" even after "a", where it is nearly always part of the root
    // ("pakai", "sangrai", "tunai").
    if word.ends_with("ai") && stem.ends_with('a') {
        stem.push('i');
    }
    let mut candidates = vec![stem.clone()];
    let starts_with_vowel = stem.chars().next().is_some_and(is_vowel);
    let after = |prefix_len: usize| word.chars().nth(prefix_len).is_some_and(is_vowel);
    if starts_with_vowel {
        if (word.starts_with("meng") || word.starts_with("peng")) && after(4) {
            candidates.push(format!("k{stem}"));
        } else if (word.starts_with("men") || word.starts_with("pen"))
            && !word.starts_with("meny")
            && !word.starts_with("peny")
            && after(3)
        {
            candidates.push(format!("t{stem}"));
        }
    } else if (word.starts_with("mem") || word.starts_with("pem"))
        && after(3)
        && let Some(rest) = stem.strip_prefix('p')
    {
        candidates.push(format!("m{rest}"));
    }
    candidates
}

fn is_english_consonant(c: char) -> bool {
    c.is_ascii_lowercase() && !is_vowel(c)
}

/// Strips common English inflections from a word the Indonesian stemmer left alone. Both sides
/// of a match go through it, so an imperfect stem ("pric") still matches.
fn english_light(word: &str) -> String {
    if !word.is_ascii() {
        return word.to_owned();
    }
    let mut w = word.to_owned();
    let len = w.len();
    let prev = |s: &str, back: usize| {
        s.as_bytes()
            .get(s.len().wrapping_sub(back))
            .map(|b| *b as char)
    };
    if len >= 6 && (w.ends_with("ies") || w.ends_with("ied")) {
        w.truncate(len - 3);
        w.push('y');
        return w;
    }
    // No "-ing" rule: too many Indonesian roots end in it ("rekening", "kucing", "kering").
    if len >= 6 && w.ends_with("ed") && prev(&w, 3).is_some_and(is_english_consonant) {
        w.truncate(len - 2);
        let bytes = w.as_bytes();
        let n = bytes.len();
        if n >= 3 && bytes[n - 1] == bytes[n - 2] && b"bdgmnprt".contains(&bytes[n - 1]) {
            w.truncate(n - 1);
        }
        return w;
    }
    if len >= 4 && w.ends_with('s') {
        let before = prev(&w, 2);
        let plural = before.is_some_and(|c| is_english_consonant(c) && c != 's')
            || (len >= 5 && before == Some('e'));
        if plural {
            w.truncate(len - 1);
        }
    }
    let len = w.len();
    if len >= 5 && w.ends_with('e') && prev(&w, 2).is_some_and(is_english_consonant) {
        w.truncate(len - 1);
    }
    w
}

#[cfg(test)]
mod tests;
