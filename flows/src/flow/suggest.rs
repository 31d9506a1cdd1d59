//! "Did you mean": the closest known word to a misspelt one.

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (c, strsim::levenshtein(&word, &c.to_lowercase())))
        .filter(|(c, distance)| {
            let longest = word.chars().count().max(c.chars().count());
            *distance > 0 && *distance <= (longest / 3).max(1)
        })
        .min_by_key(|(_, distance)| *distance)
        .map(|(c, _)| c)
}

/// `" (did you mean `x`?)"`, or nothing.
pub(crate) fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Adds a "did you mean" to serde's "unknown field `x`, expected one of `a`, `b`" and
/// "unknown variant `x`, expected one of …" messages.
pub(crate) fn enrich_serde_message(message: &str) -> String {
    for lead in ["unknown field `", "unknown variant `"] {
        let Some(start) = message.find(lead) else {
            continue;
        };
        let rest = &message[start + lead.len()..];
        let Some(end) = rest.find('`') else {
            continue;
        };
        let word = &rest[..end];
        let expected: Vec<&str> = rest[end..].split('`').skip(2).step_by(2).collect();
        let hint = hint(word, expected.iter().copied());
        if !hint.is_empty() {
            return format!("{message}{hint}");
        }
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("promt", ["prompt", "slot", "type"]), Some("prompt"));
        assert_eq!(closest("sey", ["say", "ask", "end"]), Some("say"));
        assert_eq!(closest("Slot", ["slot"]), None, "the same word is no typo");
        assert_eq!(closest("weather", ["say", "ask", "end"]), None);
    }

    #[test]
    fn serde_messages_get_a_hint() {
        assert_eq!(
            enrich_serde_message(
                "unknown field `promt`, expected one of `label`, `slot`, `prompt`"
            ),
            "unknown field `promt`, expected one of `label`, `slot`, `prompt` (did you mean `prompt`?)"
        );
        assert_eq!(
            enrich_serde_message("unknown variant `sey`, expected one of `say`, `ask`"),
            "unknown variant `sey`, expected one of `say`, `ask` (did you mean `say`?)"
        );
        assert_eq!(
            enrich_serde_message("missing field `name`"),
            "missing field `name`"
        );
    }
}
