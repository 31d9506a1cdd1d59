//! The answer policy for model output: parse and validate the structured answer
//! (`{"reply", "action", "citations"}`), read the `reply` field out of a partial stream, and
//! tell how much of a partial reply may be shown before validation ([`stream_safe_len`]).
//!
//! Grounding rules: every price, percentage and number of three or more digits, and every
//! link, must come from what the reply cites (links may also come from the tenant's allowed
//! list). Digits of any script (Arabic-Indic `٢٥`, fullwidth `２５`, …) are compared as ASCII.
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
    /// Start one of the tenant's flows (named in [`ModelReply::flow`]).
    Flow,
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
    /// The flow to start, for [`ModelAction::Flow`] (the caller checks it is one it offered).
    pub flow: Option<String>,
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
    /// Action `flow` without a flow name.
    #[error("action flow names no flow")]
    NoFlow,
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
    /// A link that is neither in a cited passage nor in the tenant's allowed links.
    #[error("links to {0} which no cited passage or allowed link names")]
    UnsupportedLink(String),
}

/// Parses and validates `raw` against the passages the model was given. `allowed_links` are
/// the tenant's own links (`tenants.<slug>.allowed_links`): a host (`kopi.example`, which
/// also allows its subdomains) or a URL prefix (`https://wa.me/62812`).
///
/// # Errors
/// The first [`Rejection`] found.
pub fn validate(
    raw: &str,
    given: &[GivenChunk<'_>],
    allowed_links: &[String],
) -> Result<ModelReply, Rejection> {
    let value: serde_json::Value =
        serde_json::from_str(strip_fences(raw)).map_err(|_| Rejection::NotJson)?;
    let object = value.as_object().ok_or(Rejection::NotJson)?;
    let action = match object.get("action").and_then(|v| v.as_str()) {
        Some("answer") => ModelAction::Answer,
        Some("clarify") => ModelAction::Clarify,
        Some("handoff") => ModelAction::Handoff,
        Some("flow") => ModelAction::Flow,
        other => return Err(Rejection::UnknownAction(other.unwrap_or("").to_owned())),
    };
    if action == ModelAction::Flow {
        // Nothing is said to the customer: the flow speaks for itself.
        let flow = object
            .get("flow")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .ok_or(Rejection::NoFlow)?;
        return Ok(ModelReply {
            action,
            reply: String::new(),
            citations: Vec::new(),
            flow: Some(flow.to_owned()),
        });
    }
    let reply = object
        .get("reply")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or(Rejection::EmptyReply)?
        .to_owned();
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
    // The sources are scanned only when the reply has something to check against them
    // (most replies quote no number and no link; the passages are long).
    // Digits inside a link (`wa.me/62812…`) are the link's business, checked below.
    let checked: Vec<Number> = numbers(&without_links(&reply))
        .into_iter()
        .filter(|n| n.checked)
        .collect();
    if !checked.is_empty() {
        let known: BTreeSet<String> = sources
            .iter()
            .flat_map(|text| numbers(text))
            .map(|n| n.canonical)
            .collect();
        if let Some(number) = checked.into_iter().find(|n| !known.contains(&n.canonical)) {
            return Err(Rejection::UnsupportedNumber(number.raw));
        }
    }
    let reply_links = links(&reply);
    if !reply_links.is_empty() {
        let known_links: BTreeSet<String> = sources.iter().flat_map(|text| links(text)).collect();
        for link in reply_links {
            if !known_links.contains(&link) && !allowed_links.iter().any(|a| link_allowed(&link, a))
            {
                return Err(Rejection::UnsupportedLink(link));
            }
        }
    }
    Ok(ModelReply {
        action,
        reply,
        citations,
        flow: None,
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
    /// As written (digits normalized to ASCII).
    raw: String,
    /// Comparable form: rupiah amount for prices, `fx:` amount for other currencies, `N%` for
    /// percentages, digits and dots otherwise.
    canonical: String,
    /// Whether it must be backed by a passage (prices, percentages and numbers of three or
    /// more digits; small counts like "2 outlet" are not checked).
    checked: bool,
}

/// Zero of every run of ten decimal digits in Unicode (category Nd) outside ASCII: a digit
/// `c` with `zero <= c <= zero + 9` has the value `c - zero`.
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// `c` as ASCII when it is a decimal digit of another script or a fullwidth ASCII form
/// (`２`, `％`, `＄`, `．`); otherwise `c`.
fn ascii_form(c: char) -> char {
    let code = u32::from(c);
    if c.is_ascii() {
        return c;
    }
    if (0xFF01..=0xFF5E).contains(&code) {
        return char::from_u32(code - 0xFEE0).unwrap_or(c);
    }
    if c.is_numeric() {
        for zero in DIGIT_ZEROS {
            if (*zero..=zero + 9).contains(&code) {
                return char::from_digit(code - zero, 10).unwrap_or(c);
            }
        }
    }
    match c {
        // Arabic decimal and thousands separators.
        '\u{066B}' => '.',
        '\u{066C}' => ',',
        _ => c,
    }
}

/// `text` with digits of every script and fullwidth forms written in ASCII, so an invented
/// price in `٢٥٬٠٠٠` or `２５．０００` is compared like `25.000`.
pub fn normalize_digits(text: &str) -> String {
    text.chars().map(ascii_form).collect()
}

/// Currency markers written before an amount (lowercase); `rp` and `idr` are rupiah.
const CURRENCY_BEFORE: &[&str] = &[
    "rp", "idr", "us$", "usd", "s$", "sgd", "rm", "myr", "eur", "gbp", "jpy", "$", "€", "£", "¥",
    "₹", "₩", "₱",
];

/// Finds numbers, prices and percentages: `Rp 25.000`, `Rp25,000`, `25.000`, `25rb`,
/// `25 ribu`, `25k`, `1,5jt`, `08.00`, `150`, `$5`, `USD 5`, `50%`, `50 persen`, in any
/// script's digits.
fn numbers(text: &str) -> Vec<Number> {
    let chars: Vec<char> = normalize_digits(text).chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                // Lowercasing to several characters would shift positions: keep it as is.
                _ => *c,
            }
        })
        .collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // Digits first: the look-behind below is only for where a number could start (it
        // was run for every letter, a tenth of the answer path's CPU with long passages).
        let glued_to_word = || {
            i > 0 && chars[i - 1].is_alphanumeric() && {
                // "Rp15000" or "USD5" is a price; "A3" or "v60" are names.
                let before: String = lower[i.saturating_sub(3)..i].iter().collect();
                !CURRENCY_BEFORE
                    .iter()
                    .any(|m| m.chars().all(char::is_alphabetic) && before.ends_with(m))
            }
        };
        if !chars[i].is_ascii_digit() || glued_to_word() {
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
        // Currency marker before (`Rp`, `Rp.`, `IDR`, `$`, `USD`), multiplier or unit after
        // (`rb`, `ribu`, `k`, `jt`, `%`, `persen`, `rupiah`, `dollar`).
        let before: String = lower[start.saturating_sub(5)..start].iter().collect();
        let before = before.trim_end().trim_end_matches('.');
        let rupiah_before = before.ends_with("rp") || before.ends_with("idr");
        // A lettered marker must be a word of its own: "form 2" is not RM 2.
        let marker = |m: &str| {
            before.strip_suffix(m).is_some_and(|rest| {
                !m.starts_with(char::is_alphabetic)
                    || rest.chars().last().is_none_or(|c| !c.is_alphanumeric())
            })
        };
        let foreign_before = !rupiah_before && CURRENCY_BEFORE.iter().any(|m| marker(m));
        let mut j = i;
        while j < lower.len() && lower[j] == ' ' {
            j += 1;
        }
        let after: String = lower[j..(j + 7).min(lower.len())].iter().collect();
        let word_end = |len: usize| lower.get(j + len).is_none_or(|c| !c.is_alphanumeric());
        let unit = |words: &[&str]| {
            words
                .iter()
                .any(|w| after.starts_with(w) && word_end(w.chars().count()))
        };
        let percent = after.starts_with('%') || unit(&["persen", "percent"]);
        let rupiah = rupiah_before || unit(&["rupiah"]);
        let foreign = foreign_before || unit(&["dollar", "dollars", "dolar", "usd", "euro"]);
        let multiplier: Option<u64> = if unit(&["ribu"]) {
            Some(1_000)
        } else if unit(&["juta"]) {
            Some(1_000_000)
        } else if unit(&["rb"]) {
            Some(1_000)
        } else if unit(&["jt"]) {
            Some(1_000_000)
        } else if unit(&["k"]) {
            Some(1_000)
        } else {
            None
        };
        let thousands = groups.len() > 1 && groups[1..].iter().all(|g| g.len() == 3);
        let canonical;
        let checked;
        if percent {
            // "12,5%" and "12.5 persen" are the same rate.
            canonical = format!("{}%", groups.join("."));
            checked = true;
        } else if let Some(mult) = multiplier {
            // "1,5jt" = 1.5 million; "25rb" = 25 000.
            let whole: u64 = groups[0].parse().unwrap_or(0);
            let fraction = groups.get(1).map(String::as_str).unwrap_or("");
            let mut amount = whole.saturating_mul(mult);
            if !fraction.is_empty() && groups.len() == 2 {
                let digits = fraction.len().min(6) as u32;
                let frac: u64 = fraction[..digits as usize].parse().unwrap_or(0);
                amount = amount.saturating_add(frac.saturating_mul(mult) / 10u64.pow(digits));
            }
            canonical = if foreign {
                format!("fx:{amount}")
            } else {
                amount.to_string()
            };
            checked = true;
        } else if foreign {
            // "$5", "$5.00", "USD 1,250.50": cents are the last group of two digits.
            let cents = groups.len() > 1 && groups.last().is_some_and(|g| g.len() == 2);
            let (whole, cents) = if cents {
                (
                    groups[..groups.len() - 1].concat(),
                    groups[groups.len() - 1].clone(),
                )
            } else if thousands {
                (groups.concat(), String::new())
            } else {
                (groups.join("."), String::new())
            };
            let whole = whole.trim_start_matches('0');
            let whole = if whole.is_empty() { "0" } else { whole };
            canonical = match cents.as_str() {
                "" | "00" => format!("fx:{whole}"),
                cents => format!("fx:{whole}.{cents}"),
            };
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

/// Top-level domains a bare host (`kopi.co.id/menu` without `https://`) is recognised by.
const BARE_TLDS: &[&str] = &[
    "com", "id", "net", "org", "io", "co", "me", "ly", "app", "shop", "store", "link", "info",
    "biz", "xyz", "site", "online", "gg", "sg", "my", "us", "uk", "au",
];

/// Characters that end a link when they close it ("(lihat https://x.id/menu).").
const LINK_TRAILERS: &[char] = &[
    '.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"', '>', '*', '_',
];

/// The links in `text`, each normalized by [`normalize_link`]: `https://…`, `http://…`,
/// `www.…`, and bare hosts with a common top-level domain (`kopi.id/menu`).
fn links(text: &str) -> Vec<String> {
    let text = normalize_digits(text);
    let mut found = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '(' | '[' | '"')) {
        // Markdown `[label](https://…)` leaves `label](https://…)` after the split.
        let word = word.rsplit("](").next().unwrap_or(word);
        let word = word.trim_end_matches(LINK_TRAILERS);
        let lower = word.to_lowercase();
        let is_link = if let Some(at) = lower.find("://") {
            at > 0 && lower[..at].chars().all(|c| c.is_ascii_alphabetic())
        } else if lower.starts_with("www.") {
            true
        } else {
            bare_host(&lower)
        };
        if is_link && let Some(link) = normalize_link(word) {
            found.push(link);
        }
    }
    found
}

/// `text` without the words that are links.
fn without_links(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| links(word).is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `word` (lowercase) looks like `host.tld[/path]` with a known top-level domain.
fn bare_host(word: &str) -> bool {
    if word.contains('@') {
        return false;
    }
    let host = word.split(['/', '?', '#']).next().unwrap_or(word);
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels.last().is_some_and(|tld| BARE_TLDS.contains(tld))
        && labels[..labels.len() - 1]
            .iter()
            .any(|l| l.chars().any(|c| c.is_ascii_alphabetic()))
}

/// A comparable form of a link: no scheme, no `www.`, host lowercased, no trailing `/`;
/// `None` when there is no host.
fn normalize_link(link: &str) -> Option<String> {
    let rest = match link.find("://") {
        Some(at) => &link[at + 3..],
        None => link,
    };
    let (host, path) = match rest.find(['/', '?', '#']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    // Userinfo (`user@host`) would let `https://kopi.id@evil.example` pass as kopi.id.
    let host = host.rsplit('@').next().unwrap_or(host).to_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    if host.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/');
    Some(format!("{host}{path}"))
}

/// Whether the normalized `link` is covered by one allowed entry: a host (the link's host or
/// a subdomain of it) or a URL prefix.
fn link_allowed(link: &str, allowed: &str) -> bool {
    let Some(allowed) = normalize_link(allowed.trim()) else {
        return false;
    };
    let host = link.split(['/', '?', '#']).next().unwrap_or(link);
    if !allowed.contains(['/', '?', '#']) {
        return host == allowed || host.ends_with(&format!(".{allowed}"));
    }
    link == allowed
        || link
            .strip_prefix(allowed.as_str())
            .is_some_and(|rest| rest.starts_with(['/', '?', '#']))
}

/// Whether an allowed-link entry of the tenant config is usable: a host name with a dot
/// (`kopi.example`) or an `http(s)://` URL with a host.
pub fn valid_allowed_link(entry: &str) -> bool {
    let entry = entry.trim();
    let lower = entry.to_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else if lower.contains("://") {
        return false;
    } else {
        &lower
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    !host.is_empty()
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == ':')
}

/// How many bytes at the start of a partial `reply` may be shown before validation: up to
/// the first word that could fail it (a digit of any script, a currency marker, `%`, or a
/// link), and never a word still being written (it may turn into one). Grows monotonically
/// as the reply grows.
pub fn stream_safe_len(reply: &str) -> usize {
    let mut safe = 0;
    let mut word_start = None;
    for (at, c) in reply.char_indices() {
        if c.is_whitespace() {
            if let Some(start) = word_start.take()
                && risky_word(&reply[start..at])
            {
                return safe;
            }
            safe = at + c.len_utf8();
        } else if word_start.is_none() {
            word_start = Some(at);
        }
    }
    // The last word may be unfinished ("R" of "Rp", "ht" of "https"): held back.
    safe
}

/// A word that validation might reject: it holds a digit, a currency marker, `%`, or looks
/// like a link or an address.
fn risky_word(word: &str) -> bool {
    let word = normalize_digits(word);
    let lower = word.to_lowercase();
    let bare = lower.trim_matches(|c: char| !c.is_alphanumeric() && !"$€£¥₹₩₱%".contains(c));
    word.chars().any(|c| c.is_numeric())
        || word.contains(['%', '$', '€', '£', '¥', '₹', '₩', '₱', '@'])
        || CURRENCY_BEFORE.contains(&bare)
        || [
            "rupiah", "persen", "percent", "dollar", "dolar", "ribu", "juta",
        ]
        .contains(&bare)
        || lower.contains("://")
        || lower.starts_with("www.")
        || lower.contains("www.")
        || !links(&word).is_empty()
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
        validate(raw, &[MENU, WIFI], &[]).unwrap()
    }

    fn err(raw: &str) -> Rejection {
        validate(raw, &[MENU, WIFI], &[]).unwrap_err()
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
            assert!(validate(&raw, &[MENU], &[]).is_ok(), "{same}");
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
                    validate(&raw, &[MENU, WIFI], &[]),
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
    fn a_flow_pick_names_its_flow_and_says_nothing() {
        let picked = ok(r#"{"reply":"","action":"flow","flow":" reservasi ","citations":[]}"#);
        assert_eq!(picked.action, ModelAction::Flow);
        assert_eq!(picked.flow.as_deref(), Some("reservasi"));
        assert!(picked.reply.is_empty() && picked.citations.is_empty());
        // Whatever text came with it is not sent: the flow speaks for itself.
        let chatty = ok(r#"{"reply":"Harganya Rp 99.000","action":"flow","flow":"cek-pesanan"}"#);
        assert!(chatty.reply.is_empty());
        for nameless in [
            r#"{"reply":"","action":"flow","citations":[]}"#,
            r#"{"reply":"","action":"flow","flow":null}"#,
            r#"{"reply":"","action":"flow","flow":"  "}"#,
        ] {
            assert_eq!(err(nameless), Rejection::NoFlow, "{nameless}");
        }
        // Other actions never carry a flow.
        let answer = ok(
            r#"{"reply":"Buka 08.00.","action":"answer","flow":"reservasi","citations":["menu:0"]}"#,
        );
        assert_eq!(answer.flow, None);
    }

    const PROMO: GivenChunk<'static> = GivenChunk {
        id: "promo:0",
        text: "Diskon 10% tiap Senin, ongkir $3. Pesan di https://kopi.example/order atau www.kopi.example/menu.",
    };

    fn answer(reply: &str, cites: &str) -> String {
        json!({"reply": reply, "action": "answer", "citations": [cites]}).to_string()
    }

    use serde_json::json;

    #[test]
    fn links_must_come_from_a_cited_passage_or_the_allowed_list() {
        let given = [MENU, PROMO];
        for fine in [
            "Pesan di https://kopi.example/order ya.",
            "Menu: www.kopi.example/menu.",
            "Lihat [menu](http://kopi.example/menu/)",
            "Pesan di kopi.example/order",
        ] {
            assert!(
                validate(&answer(fine, "promo:0"), &given, &[]).is_ok(),
                "{fine}"
            );
        }
        for invented in [
            "Promo di https://evil.example/promo ya.",
            "Pesan di https://kopi.example/free-coffee",
            "Cek bit.ly/kopi-gratis",
            "Masuk https://kopi.example@evil.example/order",
            "Lihat (www.promo-palsu.com)",
        ] {
            assert!(
                matches!(
                    validate(&answer(invented, "promo:0"), &given, &[]),
                    Err(Rejection::UnsupportedLink(_))
                ),
                "{invented}"
            );
        }
        // A link of a passage the reply does not cite is not backed.
        assert!(matches!(
            validate(
                &answer("Pesan di https://kopi.example/order", "menu:0"),
                &given,
                &[]
            ),
            Err(Rejection::UnsupportedLink(_))
        ));
        // The tenant's allowed list: hosts (and their subdomains) and URL prefixes.
        let allowed = ["kopi.example".to_owned(), "https://wa.me/62812".to_owned()];
        for fine in [
            "Pesan di https://kopi.example/apa-saja",
            "Lihat https://shop.kopi.example/x",
            "Chat https://wa.me/62812?text=halo",
        ] {
            assert!(
                validate(&answer(fine, "menu:0"), &given, &allowed).is_ok(),
                "{fine}"
            );
        }
        for invented in [
            "Chat https://wa.me/62899",
            "Lihat https://notkopi.example/x",
        ] {
            assert!(
                matches!(
                    validate(&answer(invented, "menu:0"), &given, &allowed),
                    Err(Rejection::UnsupportedLink(_))
                ),
                "{invented}"
            );
        }
        assert!(valid_allowed_link("kopi.example"));
        assert!(valid_allowed_link("https://wa.me/62812"));
        assert!(!valid_allowed_link("kopi"));
        assert!(!valid_allowed_link("ftp://kopi.example"));
        assert!(!valid_allowed_link(""));
    }

    #[test]
    fn small_amounts_next_to_a_currency_or_percent_sign_are_checked() {
        let given = [MENU, PROMO];
        for invented in [
            "Ada diskon 50% hari ini.",
            "Ada diskon 50 persen hari ini.",
            "Ongkir cuma $5.",
            "Ongkir USD 5 saja.",
            "Harganya 20 rupiah.",
            "Diskon 12,5% kak.",
        ] {
            assert!(
                matches!(
                    validate(&answer(invented, "promo:0"), &given, &[]),
                    Err(Rejection::UnsupportedNumber(_))
                ),
                "{invented}"
            );
        }
        for stated in [
            "Isi form 2 kali ya.",
            "Diskon 10% tiap Senin.",
            "Diskon 10 persen tiap Senin.",
            "Ongkir $3.",
            "Ongkir $3.00.",
            "Ongkir USD 3.",
        ] {
            assert!(
                validate(&answer(stated, "promo:0"), &given, &[]).is_ok(),
                "{stated}"
            );
        }
    }

    #[test]
    fn digits_of_other_scripts_are_compared_as_ascii() {
        for invented in [
            "Harganya Rp ٢٠.٠٠٠ kak.",
            "Harganya Rp ２０．０００ kak.",
            "Harganya ۲۰ ribu kak.",
            "Diskon ５０％!",
            "Harganya Rp ٢٠٬٠٠٠ kak.",
        ] {
            assert!(
                matches!(
                    validate(&answer(invented, "menu:0"), &[MENU], &[]),
                    Err(Rejection::UnsupportedNumber(_))
                ),
                "{invented}"
            );
        }
        for stated in ["Harganya Rp ٢٥.٠٠٠ kak.", "Harganya Rp ２５．０００ kak."] {
            assert!(
                validate(&answer(stated, "menu:0"), &[MENU], &[]).is_ok(),
                "{stated}"
            );
        }
        assert_eq!(normalize_digits("٠١٢ ０１２ ०१२"), "012 012 012");
    }

    #[test]
    fn the_stream_stops_before_anything_validation_could_reject() {
        fn safe(reply: &str) -> &str {
            &reply[..stream_safe_len(reply)]
        }
        assert_eq!(
            safe("Halo Kak, harganya Rp 25.000 ya"),
            "Halo Kak, harganya "
        );
        assert_eq!(safe("Halo Kak, harganya 25rb ya"), "Halo Kak, harganya ");
        assert_eq!(safe("Diskon 50% hari ini"), "Diskon ");
        assert_eq!(safe("Ongkir $5 saja"), "Ongkir ");
        assert_eq!(safe("Buka jam ٠٨.٠٠ kak"), "Buka jam ");
        assert_eq!(safe("Lihat https://x.example/a ya"), "Lihat ");
        assert_eq!(safe("Lihat kopi.id ya"), "Lihat ");
        // An unfinished word may still become a price or a link.
        assert_eq!(safe("Harganya R"), "Harganya ");
        assert_eq!(
            safe("Halo Kak, kami buka tiap hari"),
            "Halo Kak, kami buka tiap "
        );
        // Monotonic: a longer prefix never shows less.
        let full = "Kopi susu Rp 25.000, cek https://kopi.example ya";
        let mut last = 0;
        for end in 0..=full.len() {
            if full.is_char_boundary(end) {
                let now = stream_safe_len(&full[..end]);
                assert!(now >= last, "{end}");
                last = now;
            }
        }
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
