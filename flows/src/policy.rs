//! The answer policy for model output: parse and validate the structured answer
//! (`{"reply", "action", "citations"}`), and read the `reply` field out of a partial stream.
//!
//! A rejected output counts as an abstain and is never sent.

use std::collections::BTreeSet;

/// What the model wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelAction {
    /// Answer from the cited passages.
    Answer,
    /// Ask one clarifying question.
    Clarify,
    /// Hand the conversation to a person.
    Handoff,
}

/// A validated model answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelReply {
    /// What to do.
    pub action: ModelAction,
    /// Text for the customer.
    pub reply: String,
    /// Ids of the passages the reply rests on (all among those given).
    pub citations: Vec<String>,
}

/// A passage the model was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenChunk<'a> {
    /// Chunk id.
    pub id: &'a str,
    /// Passage text.
    pub text: &'a str,
}

/// Why model output was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a JSON object.
    #[error("output is not a JSON object")]
    NotJson,
    /// `reply` missing or empty.
    #[error("reply is missing or empty")]
    EmptyReply,
    /// `action` missing or unknown.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// `citations` is not a list of strings.
    #[error("citations must be a list of chunk ids")]
    BadCitations,
    /// A citation names a passage the model was not given.
    #[error("cites a passage it was not given: {0}")]
    UnknownCitation(String),
    /// An answer that cites nothing.
    #[error("an answer must cite at least one passage")]
    Uncited,
    /// A price or number that no cited passage states.
    #[error("states {0} which no cited passage states")]
    UnsupportedNumber(String),
}

/// Parses and validates `raw` against the passages the model was given.
///
/// # Errors
/// The first [`Rejection`] found.
pub fn validate(raw: &str, given: &[GivenChunk<'_>]) -> Result<ModelReply, Rejection> {
    let value: serde_json::Value =
        serde_json::from_str(strip_fences(raw)).map_err(|_| Rejection::NotJson)?;
    let object = value.as_object().ok_or(Rejection::NotJson)?;
    let reply = object
        .get("reply")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or(Rejection::EmptyReply)?
        .to_owned();
    let action = match object.get("action").and_then(|v| v.as_str()) {
        Some("answer") => ModelAction::Answer,
        Some("clarify") => ModelAction::Clarify,
        Some("handoff") => ModelAction::Handoff,
        other => return Err(Rejection::UnknownAction(other.unwrap_or("").to_owned())),
    };
    let mut citations: Vec<String> = Vec::new();
    match object.get("citations") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                let id = item.as_str().ok_or(Rejection::BadCitations)?.trim();
                if !given.iter().any(|c| c.id == id) {
                    return Err(Rejection::UnknownCitation(id.to_owned()));
                }
                if !citations.iter().any(|c| c == id) {
                    citations.push(id.to_owned());
                }
            }
        }
        Some(_) => return Err(Rejection::BadCitations),
    }
    if action == ModelAction::Answer && citations.is_empty() {
        return Err(Rejection::Uncited);
    }
    // Numbers must come from what the reply cites; an uncited clarifying question may only
    // repeat numbers of the passages it was given.
    let sources: Vec<&str> = if citations.is_empty() {
        given.iter().map(|c| c.text).collect()
    } else {
        given
            .iter()
            .filter(|c| citations.iter().any(|id| id == c.id))
            .map(|c| c.text)
            .collect()
    };
    let known: BTreeSet<String> = sources
        .iter()
        .flat_map(|text| numbers(text))
        .map(|n| n.canonical)
        .collect();
    for number in numbers(&reply) {
        if number.checked && !known.contains(&number.canonical) {
            return Err(Rejection::UnsupportedNumber(number.raw));
        }
    }
    Ok(ModelReply {
        action,
        reply,
        citations,
    })
}

/// Removes a Markdown code fence some models wrap JSON in.
fn strip_fences(raw: &str) -> &str {
    let trimmed = raw.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// A number found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number {
    /// As written.
    raw: String,
    /// Comparable form: rupiah amount for prices, digits and dots otherwise.
    canonical: String,
    /// Whether it must be backed by a passage (prices and numbers of three or more digits;
    /// small counts like "2 outlet" are not checked).
    checked: bool,
}

/// Finds numbers and IDR prices: `Rp 25.000`, `Rp25,000`, `25.000`, `25rb`, `25 ribu`, `25k`,
/// `1,5jt`, `08.00`, `150`.
fn numbers(text: &str) -> Vec<Number> {
    let chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = text.to_lowercase().chars().collect();
    // Lowercasing can change the length for some scripts; fall back to the original then.
    let lower = if lower.len() == chars.len() {
        lower
    } else {
        chars.clone()
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let glued_to_word = i > 0 && chars[i - 1].is_alphanumeric() && {
            // "Rp15000" is a price; "A3" or "v60" are names.
            let before: String = lower[i.saturating_sub(3)..i].iter().collect();
            !(before.ends_with("rp") || before.ends_with("idr"))
        };
        if !chars[i].is_ascii_digit() || glued_to_word {
            i += 1;
            continue;
        }
        let start = i;
        let mut groups: Vec<String> = vec![String::new()];
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_digit() {
                if let Some(last) = groups.last_mut() {
                    last.push(c);
                }
                i += 1;
            } else if (c == '.' || c == ',') && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()
            {
                groups.push(String::new());
                i += 1;
            } else {
                break;
            }
        }
        let raw: String = chars[start..i].iter().collect();
        // Rupiah marker before (`Rp`, `Rp.`, `IDR`), multiplier after (`rb`, `ribu`, `k`, `jt`).
        let before: String = lower[start.saturating_sub(5)..start].iter().collect();
        let before = before.trim_end().trim_end_matches('.');
        let rupiah = before.ends_with("rp") || before.ends_with("idr");
        let mut j = i;
        while j < lower.len() && lower[j] == ' ' {
            j += 1;
        }
        let after: String = lower[j..(j + 4).min(lower.len())].iter().collect();
        let word_end = |len: usize| lower.get(j + len).is_none_or(|c| !c.is_alphanumeric());
        let multiplier: Option<u64> = if after.starts_with("ribu") && word_end(4) {
            Some(1_000)
        } else if after.starts_with("juta") && word_end(4) {
            Some(1_000_000)
        } else if after.starts_with("rb") && word_end(2) {
            Some(1_000)
        } else if after.starts_with("jt") && word_end(2) {
            Some(1_000_000)
        } else if after.starts_with('k') && word_end(1) {
            Some(1_000)
        } else {
            None
        };
        let thousands = groups.len() > 1 && groups[1..].iter().all(|g| g.len() == 3);
        let canonical;
        let checked;
        if let Some(mult) = multiplier {
            // "1,5jt" = 1.5 million; "25rb" = 25 000.
            let whole: u64 = groups[0].parse().unwrap_or(0);
            let fraction = groups.get(1).map(String::as_str).unwrap_or("");
            let mut amount = whole.saturating_mul(mult);
            if !fraction.is_empty() && groups.len() == 2 {
                let digits = fraction.len().min(6) as u32;
                let frac: u64 = fraction[..digits as usize].parse().unwrap_or(0);
                amount = amount.saturating_add(frac.saturating_mul(mult) / 10u64.pow(digits));
            }
            canonical = amount.to_string();
            checked = true;
        } else if thousands || (rupiah && groups.len() == 1) {
            let digits: String = groups.concat();
            canonical = digits.trim_start_matches('0').to_owned();
            checked = true;
        } else if rupiah {
            // "Rp 25.000,00": thousands then cents.
            let digits: String = groups[..groups.len() - 1].concat();
            canonical = digits.trim_start_matches('0').to_owned();
            checked = true;
        } else {
            let joined = groups.join(".");
            checked = groups.len() > 1 || groups[0].len() >= 3;
            canonical = if groups.len() == 1 && groups[0].len() >= 4 {
                // A plain amount like 25000.
                groups[0].trim_start_matches('0').to_owned()
            } else {
                joined
            };
        }
        found.push(Number {
            raw,
            canonical,
            checked,
        });
    }
    found
}

/// Reads the `reply` string out of a partial JSON object as it streams in.
///
/// Returns the decoded text received so far (growing monotonically as more input arrives),
/// or `None` until the `"reply": "` prefix has been seen.
pub fn partial_reply(partial: &str) -> Option<String> {
    let key = partial.find("\"reply\"")?;
    let rest = partial[key + "\"reply\"".len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let body = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => {
                let Some(escaped) = chars.next() else {
                    return Some(out);
                };
                match escaped {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' | 'f' => {}
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if hex.len() < 4 {
                            return Some(out);
                        }
                        // Half of a surrogate pair is skipped; the final message is exact.
                        if let Some(ch) =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            out.push(ch);
                        }
                    }
                    other => out.push(other),
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const MENU: GivenChunk<'static> = GivenChunk {
        id: "menu:0",
        text: "Es Kopi Susu Nusantara Rp 25.000. Americano Rp22.000. Buka 08.00–22.00.",
    };
    const WIFI: GivenChunk<'static> = GivenChunk {
        id: "profil:1",
        text: "Semua outlet punya wifi gratis dan 2 colokan per meja.",
    };

    fn ok(raw: &str) -> ModelReply {
        validate(raw, &[MENU, WIFI]).unwrap()
    }

    fn err(raw: &str) -> Rejection {
        validate(raw, &[MENU, WIFI]).unwrap_err()
    }

    #[test]
    fn a_cited_answer_with_its_prices_is_valid() {
        let r = ok(
            r#"{"reply":"Es Kopi Susu harganya Rp 25.000, kak.","action":"answer","citations":["menu:0"]}"#,
        );
        assert_eq!(r.action, ModelAction::Answer);
        assert_eq!(r.citations, vec!["menu:0".to_owned()]);
        for same in [
            "25rb",
            "25 ribu",
            "Rp25.000",
            "25k",
            "25.000",
            "Rp 25.000,00",
            "25000",
        ] {
            let raw = format!(
                r#"{{"reply":"Harganya {same} ya.","action":"answer","citations":["menu:0"]}}"#
            );
            assert!(validate(&raw, &[MENU]).is_ok(), "{same}");
        }
        ok(
            "```json\n{\"reply\":\"Buka jam 08.00 sampai 22.00.\",\"action\":\"answer\",\"citations\":[\"menu:0\"]}\n```",
        );
    }

    #[test]
    fn invented_prices_and_numbers_are_rejected() {
        for invented in ["Rp 20.000", "20rb", "30k", "1,5jt", "Rp15000", "125 gram"] {
            let raw = format!(
                r#"{{"reply":"Harganya {invented}.","action":"answer","citations":["menu:0"]}}"#
            );
            assert!(
                matches!(
                    validate(&raw, &[MENU, WIFI]),
                    Err(Rejection::UnsupportedNumber(_))
                ),
                "{invented}"
            );
        }
        // A price from a passage the reply does not cite is not backed either.
        assert!(matches!(
            err(
                r#"{"reply":"Wifi gratis, kopi Rp 25.000.","action":"answer","citations":["profil:1"]}"#
            ),
            Rejection::UnsupportedNumber(_)
        ));
        // Small counts are fine.
        ok(r#"{"reply":"Ada 2 colokan per meja.","action":"answer","citations":["profil:1"]}"#);
    }

    #[test]
    fn malformed_output_is_rejected() {
        assert_eq!(err("Harga kopi 25rb"), Rejection::NotJson);
        assert_eq!(err("[1,2]"), Rejection::NotJson);
        assert_eq!(
            err(r#"{"reply":"  ","action":"answer","citations":["menu:0"]}"#),
            Rejection::EmptyReply
        );
        assert_eq!(
            err(r#"{"reply":"hai","action":"sell","citations":[]}"#),
            Rejection::UnknownAction("sell".into())
        );
        assert_eq!(
            err(r#"{"reply":"hai","action":"answer","citations":["made-up:9"]}"#),
            Rejection::UnknownCitation("made-up:9".into())
        );
        assert_eq!(
            err(r#"{"reply":"hai","action":"answer","citations":[]}"#),
            Rejection::Uncited
        );
        assert_eq!(
            err(r#"{"reply":"hai","action":"answer","citations":"menu:0"}"#),
            Rejection::BadCitations
        );
        let clarify = ok(r#"{"reply":"Outlet yang mana, kak?","action":"clarify"}"#);
        assert_eq!(clarify.action, ModelAction::Clarify);
        assert!(clarify.citations.is_empty());
    }

    #[test]
    fn the_reply_is_read_from_a_partial_stream() {
        let full = r#"{"reply": "Halo \"kak\",\nharga Rp 25.000 \u00e9", "action": "answer"}"#;
        let mut seen = String::new();
        for end in 0..=full.len() {
            if !full.is_char_boundary(end) {
                continue;
            }
            if let Some(text) = partial_reply(&full[..end]) {
                assert!(text.starts_with(&seen), "{text:?} after {seen:?}");
                seen = text;
            }
        }
        assert_eq!(seen, "Halo \"kak\",\nharga Rp 25.000 é");
        assert_eq!(partial_reply(r#"{"action":"answer","re"#), None);
    }
}
