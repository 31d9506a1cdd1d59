//! Outbound text shaping: HTML escaping, Telegram's text length limit (splitting itself is
//! [`crate::text::split_text`] with [`crate::text::Measure::Utf16`]), inline keyboard callback
//! data. Pure.

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
