//! The console composer's per-tenant settings: canned replies (`[[tenants.<slug>.canned_replies]]`)
//! and the WhatsApp templates agents may send once the 24-hour window has closed
//! (`[[tenants.<slug>.agent_templates]]`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Longest canned reply text (a WhatsApp text message holds 4096 characters).
pub const MAX_CANNED_CHARS: usize = 4096;

/// `[[tenants.<slug>.canned_replies]]`: a reply an agent inserts by typing `/shortcut`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CannedReply {
    /// What the agent types after `/`: 1-32 of `a-z`, `0-9`, `_`, `-` (e.g. `harga`).
    pub shortcut: String,
    /// The reply's text.
    pub text: String,
}

/// `[[tenants.<slug>.agent_templates]]`: an approved WhatsApp template agents may send when the
/// customer last wrote more than 24 hours ago (free text is refused then).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTemplate {
    /// The template's name as approved by Meta (lowercase letters, digits, `_`).
    pub name: String,
    /// The approved translation's language code, e.g. `id` or `en_US`.
    pub language: String,
    /// The template's body as the agent should see it (a preview; Meta sends its own copy).
    pub body: String,
}

fn valid_shortcut(shortcut: &str) -> bool {
    (1..=32).contains(&shortcut.len())
        && shortcut
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_template_name(name: &str) -> bool {
    (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_language(language: &str) -> bool {
    (2..=16).contains(&language.len())
        && language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Adds a message naming the key for every problem in the tenant's composer settings.
pub(super) fn check(
    slug: &str,
    canned: &[CannedReply],
    templates: &[AgentTemplate],
    problems: &mut Vec<String>,
) {
    let mut shortcuts = HashSet::new();
    for (i, reply) in canned.iter().enumerate() {
        let key = format!("tenants.{slug}.canned_replies[{i}]");
        if !valid_shortcut(&reply.shortcut) {
            problems.push(format!(
                "{key}.shortcut must be 1-32 characters of a-z, 0-9, `_` or `-` (got \"{}\")",
                reply.shortcut
            ));
        } else if !shortcuts.insert(reply.shortcut.as_str()) {
            problems.push(format!(
                "{key}.shortcut \"{}\" is used twice; shortcuts must be unique",
                reply.shortcut
            ));
        }
        if reply.text.trim().is_empty() {
            problems.push(format!("{key}.text must not be empty"));
        } else if reply.text.chars().count() > MAX_CANNED_CHARS {
            problems.push(format!(
                "{key}.text must be at most {MAX_CANNED_CHARS} characters"
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, template) in templates.iter().enumerate() {
        let key = format!("tenants.{slug}.agent_templates[{i}]");
        if !valid_template_name(&template.name) {
            problems.push(format!(
                "{key}.name must be the approved template name: lowercase letters, digits and `_` (got \"{}\")",
                template.name
            ));
        }
        if !valid_language(&template.language) {
            problems.push(format!(
                "{key}.language must be a language code such as \"id\" or \"en_US\" (got \"{}\")",
                template.language
            ));
        }
        if template.body.trim().is_empty() {
            problems.push(format!(
                "{key}.body must not be empty (it is the preview agents see)"
            ));
        }
        if !names.insert((template.name.as_str(), template.language.as_str())) {
            problems.push(format!(
                "{key}: template \"{}\" ({}) is listed twice",
                template.name, template.language
            ));
        }
    }
}
