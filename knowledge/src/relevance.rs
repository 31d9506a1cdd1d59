//! Query planning (term weights, typo tolerance) and the relevance measure used to abstain.
//!
//! Relevance is *coverage*: the share of the question's informative words, weighted by their
//! IDF in the tenant's documents, that a chunk contains. A word the tenant's documents never use
//! weighs as much as the rarest word there is, so "harga saham BBCA" against a coffee shop covers
//! only "harga", a common word, and scores low; "jam buka Blok M hari Minggu" against the right
//! outlet section covers nearly everything. Matching through a synonym or a typo correction
//! counts at a discount.

use std::collections::HashMap;

use crate::analyzer::{self, QueryTerm};
use crate::index::TenantState;

/// Weight of a typo correction relative to an exact match.
pub(crate) const FUZZY_FACTOR: f32 = 0.7;
/// Weight of a word found only in the document title of a chunk that has its own headings: the
/// title names the whole document, so it tells little about which passage answers.
pub(crate) const TITLE_FACTOR: f32 = 0.6;
/// Most typo corrections tried per word.
const MAX_CORRECTIONS: usize = 3;

/// BM25 inverse document frequency, as tantivy computes it.
pub(crate) fn idf(doc_freq: u64, docs: u64) -> f32 {
    let docs = docs.max(doc_freq) as f32;
    let df = doc_freq as f32;
    (1.0 + (docs - df + 0.5) / (df + 0.5)).ln()
}

/// Final ranking score from BM25 (normalized by the best candidate's), coverage, and whether the
/// chunk is in the question's language. Coverage leads: a chunk that answers the whole question
/// beats one that repeats one of its words. BM25 separates chunks of similar coverage, and the
/// language match breaks ties between translated FAQs.
pub(crate) fn rank_score(bm25_normalized: f32, coverage: f32, same_language: bool) -> f32 {
    let language = if same_language { 1.05 } else { 1.0 };
    coverage * (0.85 + 0.15 * bm25_normalized) * language
}

/// Typo tolerance settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fuzzy {
    /// Words shorter than this are never corrected (too many false friends).
    min_chars: usize,
    /// Words at least this long may be two edits away.
    two_edit_chars: usize,
}

impl Default for Fuzzy {
    fn default() -> Self {
        Self {
            min_chars: 5,
            two_edit_chars: 8,
        }
    }
}

/// One indexed term that counts for a query word.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) term: String,
    pub(crate) factor: f32,
}

/// A query word: its matching terms and its weight.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) members: Vec<Member>,
    pub(crate) weight: f32,
}

/// A query resolved against one tenant's vocabulary.
#[derive(Debug)]
pub(crate) struct QueryPlan {
    pub(crate) groups: Vec<Group>,
    /// Tenant document frequency of every member term the tenant has.
    pub(crate) doc_freq: HashMap<String, u64>,
    pub(crate) chunks: u64,
    pub(crate) tokens: u64,
    /// Member term → (group index, factor).
    members: HashMap<String, Vec<(usize, f32)>>,
    total_weight: f32,
}

impl QueryPlan {
    /// Resolves query words against the tenant's statistics; words the tenant never uses are
    /// corrected to near spellings it does use, where there are any.
    pub(crate) fn new(terms: &[QueryTerm], state: &TenantState, fuzzy: &Fuzzy) -> Self {
        let docs = state.chunks;
        let known = |t: &str| state.doc_freq.get(t).copied().unwrap_or(0);
        let mut groups = Vec::with_capacity(terms.len());
        let mut doc_freq = HashMap::new();
        for term in terms {
            let mut members: Vec<Member> = term
                .alternatives
                .iter()
                .map(|(t, f)| Member {
                    term: t.clone(),
                    factor: *f,
                })
                .collect();
            let exact_known = term
                .alternatives
                .iter()
                .any(|(t, f)| *f >= 1.0 && known(t) > 0);
            if !exact_known {
                for correction in corrections(term, state, fuzzy) {
                    if !members.iter().any(|m| m.term == correction) {
                        members.push(Member {
                            term: correction,
                            factor: FUZZY_FACTOR,
                        });
                    }
                }
            }
            // The word's weight is the IDF of its own stems; synonyms only stand in when the
            // tenant never uses the word itself (so a rare synonym cannot inflate a common word).
            let mut exact: Option<f32> = None;
            let mut alternative: Option<f32> = None;
            for member in &members {
                let df = known(&member.term);
                if df > 0 {
                    doc_freq.insert(member.term.clone(), u64::from(df));
                    let w = idf(u64::from(df), docs);
                    let slot = if member.factor >= 1.0 {
                        &mut exact
                    } else {
                        &mut alternative
                    };
                    *slot = Some(slot.map_or(w, |current: f32| current.max(w)));
                }
            }
            // A word the tenant never uses is as informative as the rarest word possible.
            let weight = exact.or(alternative).unwrap_or_else(|| idf(0, docs));
            groups.push(Group { members, weight });
        }
        let mut index: HashMap<String, Vec<(usize, f32)>> = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            for member in &group.members {
                index
                    .entry(member.term.clone())
                    .or_default()
                    .push((g, member.factor));
            }
        }
        let total_weight = groups.iter().map(|g| g.weight).sum();
        Self {
            groups,
            doc_freq,
            chunks: docs,
            tokens: state.tokens,
            members: index,
            total_weight,
        }
    }

    /// BM25 of a chunk's analyzed tokens against the plan as the embedded index scores it: per
    /// query word the best of its terms (`factor × IDF × saturated TF`, `k1` = 1.2, `b` = 0.75,
    /// the tenant's average chunk length), summed over words. Server-backed indexes rescore
    /// their candidates with it, so both backends rank alike.
    pub(crate) fn bm25(&self, tokens: &str) -> f32 {
        const K1: f32 = 1.2;
        const B: f32 = 0.75;
        let mut frequencies: HashMap<&str, u32> = HashMap::new();
        let mut length = 0u32;
        for token in tokens.split_whitespace() {
            length += 1;
            if self.members.contains_key(token) {
                *frequencies.entry(token).or_default() += 1;
            }
        }
        let average = self.tokens as f32 / self.chunks.max(1) as f32;
        let norm = K1 * (1.0 - B + B * length as f32 / average.max(1.0));
        self.groups
            .iter()
            .map(|group| {
                group
                    .members
                    .iter()
                    .filter_map(|member| {
                        let tf = *frequencies.get(member.term.as_str())? as f32;
                        let df = *self.doc_freq.get(&member.term)?;
                        Some(member.factor * idf(df, self.chunks) * tf * (K1 + 1.0) / (tf + norm))
                    })
                    .fold(0.0f32, f32::max)
            })
            .sum()
    }

    /// True when at least one query word (or alternative) occurs in the tenant's documents.
    pub(crate) fn has_known_terms(&self) -> bool {
        !self.doc_freq.is_empty()
    }

    /// The IDF-weighted share of query words found in a chunk's analyzed tokens, in `[0, 1]`.
    /// The first `title_len` tokens come from the document title and count at a discount.
    pub(crate) fn coverage(&self, tokens: &str, title_len: usize) -> f32 {
        if self.total_weight <= 0.0 {
            return 0.0;
        }
        let mut best = vec![0.0f32; self.groups.len()];
        for (position, token) in tokens.split_whitespace().enumerate() {
            if let Some(hits) = self.members.get(token) {
                let place = if position < title_len {
                    TITLE_FACTOR
                } else {
                    1.0
                };
                for (g, factor) in hits {
                    let credit = factor * place;
                    if best[*g] < credit {
                        best[*g] = credit;
                    }
                }
            }
        }
        let covered: f32 = self
            .groups
            .iter()
            .zip(&best)
            .map(|(g, b)| g.weight * b)
            .sum();
        (covered / self.total_weight).clamp(0.0, 1.0)
    }
}

/// Near spellings of an unknown query word that the tenant's documents use, closest and most
/// frequent first. Two strategies: the stem within one edit (two for long words) of a known
/// term with the same first letter, else one edit of the written word whose stem is known
/// ("pengirman" → "pengiriman" → "kirim").
fn corrections(term: &QueryTerm, state: &TenantState, fuzzy: &Fuzzy) -> Vec<String> {
    let primary = term.primary();
    let word = term.word.as_str();
    if !word.chars().all(|c| c.is_ascii_lowercase()) {
        return Vec::new();
    }
    let mut found: Vec<(usize, u32, String)> = Vec::new();
    let length = primary.chars().count();
    // Compare stems only when stemming left the word alone: a stem cut from a misspelled
    // affixed word ("pesawat" → "sawat") is too short to correct reliably.
    if primary == word && length >= fuzzy.min_chars {
        let max_distance = if length >= fuzzy.two_edit_chars { 2 } else { 1 };
        let first = primary.chars().next();
        let query: Vec<char> = primary.chars().collect();
        for (candidate, df) in &state.doc_freq {
            if candidate.chars().next() != first {
                continue;
            }
            let candidate_length = candidate.chars().count();
            if candidate_length.abs_diff(length) > max_distance
                || candidate_length + 1 < fuzzy.min_chars
            {
                continue;
            }
            let other: Vec<char> = candidate.chars().collect();
            if let Some(distance) = bounded_distance(&query, &other, max_distance) {
                found.push((distance, *df, candidate.clone()));
            }
        }
    }
    // Otherwise correct the written word and stem the result ("pengirman" → "pengiriman" →
    // "kirim"), accepting only stems long enough not to be a coincidence.
    if found.is_empty() && primary != word && word.chars().count() > fuzzy.min_chars {
        for variant in single_edits(word) {
            for stem in analyzer::word_stems(&variant) {
                if stem.chars().count() >= fuzzy.min_chars
                    && let Some(df) = state.doc_freq.get(&stem)
                    && !found.iter().any(|(_, _, t)| *t == stem)
                {
                    found.push((1, *df, stem));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    found.truncate(MAX_CORRECTIONS);
    found.into_iter().map(|(_, _, t)| t).collect()
}

/// Every string one deletion, transposition, substitution or insertion (a–z) away.
fn single_edits(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let n = chars.len();
    let mut out = Vec::with_capacity(54 * (n + 1));
    for i in 0..n {
        let mut v = chars.clone();
        v.remove(i);
        out.push(v.into_iter().collect());
    }
    for i in 0..n.saturating_sub(1) {
        let mut v = chars.clone();
        v.swap(i, i + 1);
        out.push(v.into_iter().collect());
    }
    for i in 0..n {
        for c in 'a'..='z' {
            if chars[i] != c {
                let mut v = chars.clone();
                v[i] = c;
                out.push(v.into_iter().collect());
            }
        }
    }
    for i in 0..=n {
        for c in 'a'..='z' {
            let mut v = chars.clone();
            v.insert(i, c);
            out.push(v.into_iter().collect());
        }
    }
    out
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions), or None when it
/// exceeds `max`.
fn bounded_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > max {
        return None;
    }
    let mut previous2 = vec![0usize; m + 1];
    let mut previous: Vec<usize> = (0..=m).collect();
    let mut current = vec![0usize; m + 1];
    for i in 1..=n {
        current[0] = i;
        let mut row_min = current[0];
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut value = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(previous2[j - 2] + 1);
            }
            current[j] = value;
            row_min = row_min.min(value);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut previous2, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[m];
    (distance <= max).then_some(distance)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn distance(a: &str, b: &str) -> Option<usize> {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        bounded_distance(&a, &b, 2)
    }

    #[test]
    fn edit_distance_counts_typos_customers_make() {
        assert_eq!(distance("kirim", "kirim"), Some(0));
        assert_eq!(distance("kirm", "kirim"), Some(1));
        assert_eq!(distance("kriim", "kirim"), Some(1));
        assert_eq!(distance("capucino", "cappuccino"), Some(2));
        assert_eq!(distance("laptop", "lapar"), None);
    }

    #[test]
    fn single_edits_include_the_missing_letter() {
        assert!(single_edits("pengirman").contains(&"pengiriman".to_owned()));
    }

    #[test]
    fn idf_is_highest_for_unknown_words() {
        assert!(idf(0, 50) > idf(1, 50));
        assert!(idf(1, 50) > idf(10, 50));
    }
}
