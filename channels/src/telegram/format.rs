//! Outbound text shaping: HTML escaping, splitting at Telegram's length limit, inline
//! keyboard callback data. Pure.

/// Longest message text, in UTF-16 code units after entity parsing.
pub const MAX_TEXT_UNITS: usize = 4096;
/// Longest `callback_data`, in bytes.
pub const MAX_CALLBACK_BYTES: usize = 64;

/// Escapes text for `parse_mode = HTML`: only `<`, `>` and `&` need it outside tags. Model
/// output is always sent this way, never as MarkdownV2 (whose 18 reserved characters make
/// arbitrary text fail with "can't parse entities").
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

fn units(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Splits `text` into parts of at most `max` UTF-16 code units (what Telegram counts),
/// preferring paragraph, then sentence, then line, then word boundaries. Text that fits is
/// returned whole; parts keep their order.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while units(rest) > max {
        // The longest prefix within `max` units.
        let mut used = 0usize;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            if used + c.len_utf16() > max {
                cut = i;
                break;
            }
            used += c.len_utf16();
        }
        let window = &rest[..cut];
        let min_keep = window.len() / 2;
        let paragraph = window.rfind("\n\n").filter(|&i| i >= min_keep);
        let sentence = || {
            window
                .rmatch_indices(['.', '!', '?', '…'])
                .map(|(i, m)| i + m.len())
                .find(|&end| {
                    end >= min_keep
                        && window[end..]
                            .chars()
                            .next()
                            .is_some_and(char::is_whitespace)
                })
        };
        let line = || window.rfind('\n').filter(|&i| i >= min_keep);
        let word = || window.rfind(' ').filter(|&i| i >= min_keep);
        let at = paragraph
            .or_else(sentence)
            .or_else(line)
            .or_else(word)
            .unwrap_or(cut)
            .max(1);
        let at = if rest.is_char_boundary(at) { at } else { cut };
        let (head, tail) = rest.split_at(at);
        parts.push(head.trim_end().to_owned());
        rest = tail.trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

const INLINE_PREFIX: &str = "t:";
const REFERENCE_PREFIX: &str = "i:";

/// The `callback_data` of the button for choice `index` (text `choice`): the choice itself
/// (`t:<choice>`) when it fits in 64 bytes, otherwise a reference `i:<index>` to the choice
/// kept server-side (the bot message's stored choices).
pub fn callback_data(index: usize, choice: &str) -> String {
    let inline = format!("{INLINE_PREFIX}{choice}");
    if inline.len() <= MAX_CALLBACK_BYTES {
        inline
    } else {
        format!("{REFERENCE_PREFIX}{index}")
    }
}

/// The choice carried inline by `data`, if it is a `t:` payload.
pub fn choice_inline(data: &str) -> Option<&str> {
    data.strip_prefix(INLINE_PREFIX)
}

/// The index of the server-side choice `data` references, if it is an `i:` payload.
pub fn choice_reference(data: &str) -> Option<usize> {
    data.strip_prefix(REFERENCE_PREFIX)?.parse().ok()
}
