//! Outbound text shaping shared by the adapters: measuring text the way a provider counts it,
//! splitting a long answer into parts, and deciding which text becomes a media caption. Pure.
//! The limits themselves stay with each adapter (`whatsapp::MAX_TEXT_CHARS`,
//! `telegram::format::MAX_TEXT_UNITS`, …).

/// How a provider counts the length of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Unicode scalar values (WhatsApp).
    Chars,
    /// UTF-16 code units (Telegram): characters outside the BMP count two.
    Utf16,
}

impl Measure {
    /// The length of one character.
    pub fn of(self, c: char) -> usize {
        match self {
            Self::Chars => 1,
            Self::Utf16 => c.len_utf16(),
        }
    }

    /// The length of `s`.
    pub fn len(self, s: &str) -> usize {
        s.chars().map(|c| self.of(c)).sum()
    }
}

/// Splits `text` into parts of at most `max` (as `measure` counts), preferring paragraph, then
/// sentence, then line, then word boundaries in the second half of each part. Text that fits
/// is returned whole (trimmed); parts keep their order and are trimmed.
pub fn split_text(text: &str, max: usize, measure: Measure) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while measure.len(rest) > max {
        // The longest prefix within `max`.
        let mut used = 0usize;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            if used + measure.of(c) > max {
                cut = i;
                break;
            }
            used += measure.of(c);
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

/// A provider's caption rules for one media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptionRules {
    /// Whether the provider shows a caption with this kind of media.
    pub supported: bool,
    /// Longest caption.
    pub max: usize,
    /// How `max` is counted.
    pub measure: Measure,
    /// Whether the message text may become the caption when the media has none of its own.
    pub text_allowed: bool,
}

/// Where the text of a message with media goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionPlacement<'a> {
    /// The media's caption (trimmed, non-empty), if any.
    pub caption: Option<&'a str>,
    /// Text that did not become the caption, to send after the media as its own message
    /// (paragraphs joined by a blank line; empty when nothing follows).
    pub follow_up: String,
}

/// Places the media's own caption and the message text: the media's own caption is the
/// caption when the kind has captions and it fits, else it follows as text; without one, the
/// text is the caption when `rules` allow it and it fits. Text that did not become the
/// caption follows.
pub fn place_caption<'a>(
    own_caption: Option<&'a str>,
    text: &'a str,
    rules: CaptionRules,
) -> CaptionPlacement<'a> {
    let fits = |c: &str| rules.measure.len(c) <= rules.max;
    let own_caption = own_caption.map(str::trim).filter(|c| !c.is_empty());
    let text = text.trim();
    let mut follow_up = Vec::new();
    let caption = match own_caption {
        Some(c) if rules.supported && fits(c) => Some(c),
        Some(c) => {
            follow_up.push(c);
            None
        }
        None if rules.supported && rules.text_allowed && !text.is_empty() && fits(text) => {
            Some(text)
        }
        None => None,
    };
    if caption != Some(text) && !text.is_empty() {
        follow_up.push(text);
    }
    CaptionPlacement {
        caption,
        follow_up: follow_up.join("\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CaptionRules = CaptionRules {
        supported: true,
        max: 10,
        measure: Measure::Chars,
        text_allowed: true,
    };

    #[test]
    fn measures_count_chars_or_utf16_units() {
        assert_eq!(Measure::Chars.len("a😀"), 2);
        assert_eq!(Measure::Utf16.len("a😀"), 3);
    }

    #[test]
    fn captions_are_placed_by_the_rules() {
        let placed = place_caption(Some(" Harga "), "Mau pesan?", RULES);
        assert_eq!(placed.caption, Some("Harga"));
        assert_eq!(placed.follow_up, "Mau pesan?");
        let placed = place_caption(None, "Halo", RULES);
        assert_eq!(
            (placed.caption, placed.follow_up.as_str()),
            (Some("Halo"), "")
        );
        let too_long = place_caption(Some("sebelas kar"), "x", RULES);
        assert_eq!(too_long.caption, None);
        assert_eq!(too_long.follow_up, "sebelas kar\n\nx");
        let no_text = CaptionRules {
            text_allowed: false,
            ..RULES
        };
        assert_eq!(place_caption(None, "Halo", no_text).caption, None);
        let unsupported = CaptionRules {
            supported: false,
            ..RULES
        };
        assert_eq!(place_caption(None, "Halo", unsupported).follow_up, "Halo");
    }
}
