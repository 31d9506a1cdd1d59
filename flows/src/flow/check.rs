//! Parsing a flow document and the checks it must pass, each error with a line and a column.

use std::collections::BTreeSet;
use std::time::Duration;

use super::suggest::{enrich_serde_message, hint};
use super::{BUILTIN_SLOTS, DEMO_ORDERS_URL, Flow, Localized, SlotType, Step};

/// Most steps in one flow.
pub const MAX_STEPS: usize = 100;
/// Most choices of one `choice` slot (a WhatsApp list's limit).
pub const MAX_CHOICES: usize = 10;
/// Longest webhook timeout.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most webhook retries.
pub const MAX_WEBHOOK_RETRIES: u8 = 5;
/// Longest `schedule_follow_up` delay.
pub const MAX_FOLLOW_UP: Duration = Duration::from_secs(7 * 24 * 3600);

/// One thing wrong with a flow document, where it is (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct FlowError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Parses and checks one flow document; every error found, in document order.
///
/// # Errors
/// The YAML does not parse or match the flow's shape (one error), or the flow fails its checks
/// (every failure).
pub fn parse(source: &str) -> Result<Flow, Vec<FlowError>> {
    let flow: Flow = yaml_serde::from_str(source).map_err(|e| vec![yaml_error(source, &e)])?;
    let mut checker = Checker::new(source);
    checker.flow(&flow);
    let mut errors = checker.errors;
    if errors.is_empty() {
        return Ok(flow);
    }
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    Err(errors)
}

fn yaml_error(source: &str, error: &yaml_serde::Error) -> FlowError {
    let text = error.to_string();
    // The location is reported on its own; drop serde's " at line N column M".
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let (line, column) = error.location().map_or_else(
        || (source.lines().count().max(1), 1),
        |l| (l.line(), l.column()),
    );
    FlowError {
        line,
        column,
        message: enrich_serde_message(message),
    }
}

struct Checker<'a> {
    source: &'a str,
    /// Byte range of each step in the source (block-style `steps:` lists).
    steps: Vec<(usize, usize)>,
    errors: Vec<FlowError>,
}

impl<'a> Checker<'a> {
    fn new(source: &'a str) -> Self {
        Self {
            source,
            steps: step_ranges(source),
            errors: Vec::new(),
        }
    }

    fn flow(&mut self, flow: &Flow) {
        let whole = (0, self.source.len());
        if !is_name(&flow.name, 64, true) {
            self.error(
                whole,
                "name:",
                format!(
                    "name `{}`: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
                    flow.name
                ),
            );
        }
        if flow.steps.is_empty() {
            self.error(
                whole,
                "steps:",
                "steps: a flow needs at least one step".to_owned(),
            );
        }
        if flow.steps.len() > MAX_STEPS {
            self.error(
                whole,
                "steps:",
                format!(
                    "steps: at most {MAX_STEPS} steps (this flow has {}); split it",
                    flow.steps.len()
                ),
            );
        }
        let triggers = &flow.triggers;
        if triggers.keywords.is_empty()
            && triggers.buttons.is_empty()
            && flow.description.trim().is_empty()
        {
            self.error(
                whole,
                "name:",
                "nothing starts this flow: add `triggers.keywords`, `triggers.buttons`, or a `description` the model routes by".to_owned(),
            );
        }
        for (i, keyword) in triggers.keywords.iter().enumerate() {
            if keyword.trim().is_empty() || keyword.chars().count() > 100 {
                self.error(
                    whole,
                    "keywords",
                    format!("triggers.keywords[{i}]: a keyword is 1 to 100 characters"),
                );
            }
        }
        for (i, button) in triggers.buttons.iter().enumerate() {
            if button.trim().is_empty() || button.len() > 256 {
                self.error(
                    whole,
                    "buttons",
                    format!("triggers.buttons[{i}]: a button id is 1 to 256 bytes"),
                );
            }
        }

        // Labels: unique, well formed.
        let mut labels = BTreeSet::new();
        for (i, step) in flow.steps.iter().enumerate() {
            if let Some(label) = step.label() {
                let at = self.step(i);
                if !is_name(label, 32, false) {
                    self.error(
                        at,
                        &format!("label: {label}"),
                        format!("steps[{i}].{}.label `{label}`: use lowercase letters, digits and `_`, starting with a letter", step.kind()),
                    );
                }
                if !labels.insert(label) {
                    self.error(
                        at,
                        &format!("label: {label}"),
                        format!(
                            "steps[{i}].{}.label `{label}` is already used by an earlier step",
                            step.kind()
                        ),
                    );
                }
            }
        }

        // Slots: what the flow asks for or saves, plus the built-in ones.
        let mut slots: BTreeSet<&str> = BUILTIN_SLOTS.iter().copied().collect();
        for step in &flow.steps {
            match step {
                Step::Ask(ask) => {
                    slots.insert(&ask.slot);
                }
                Step::CallWebhook(call) => slots.extend(call.save.keys().map(String::as_str)),
                _ => {}
            }
        }

        for (i, step) in flow.steps.iter().enumerate() {
            self.step_checks(i, step, &labels, &slots);
        }
    }

    fn step_checks(
        &mut self,
        i: usize,
        step: &Step,
        labels: &BTreeSet<&str>,
        slots: &BTreeSet<&str>,
    ) {
        let at = self.step(i);
        let path = format!("steps[{i}].{}", step.kind());
        match step {
            Step::Say(say) => self.localized(at, &format!("{path}.text"), &say.text, slots),
            Step::Ask(ask) => {
                if !is_name(&ask.slot, 32, false) {
                    self.error(
                        at,
                        "slot:",
                        format!("{path}.slot `{}`: use lowercase letters, digits and `_`, starting with a letter", ask.slot),
                    );
                }
                if BUILTIN_SLOTS.contains(&ask.slot.as_str()) {
                    self.error(
                        at,
                        "slot:",
                        format!(
                            "{path}.slot `{}` is filled by Sapa; ask for another slot name",
                            ask.slot
                        ),
                    );
                }
                self.localized(at, &format!("{path}.prompt"), &ask.prompt, slots);
                if let Some(invalid) = &ask.invalid {
                    self.localized(at, &format!("{path}.invalid"), invalid, slots);
                }
                if ask.kind == SlotType::Choice {
                    if ask.choices.is_empty() || ask.choices.len() > MAX_CHOICES {
                        self.error(
                            at,
                            "choices",
                            format!(
                                "{path}.choices: a `choice` slot needs 1 to {MAX_CHOICES} choices"
                            ),
                        );
                    }
                    let mut values = BTreeSet::new();
                    for (c, choice) in ask.choices.iter().enumerate() {
                        if choice.value.trim().is_empty() || !values.insert(choice.value.as_str()) {
                            self.error(
                                at,
                                &format!("value: {}", choice.value),
                                format!("{path}.choices[{c}].value must be non-empty and unique"),
                            );
                        }
                        self.localized(
                            at,
                            &format!("{path}.choices[{c}].title"),
                            &choice.title,
                            slots,
                        );
                    }
                } else if !ask.choices.is_empty() {
                    self.error(
                        at,
                        "choices",
                        format!("{path}.choices: only `type: choice` takes choices"),
                    );
                }
                if let Some(pattern) = &ask.pattern {
                    if ask.kind != SlotType::Text {
                        self.error(
                            at,
                            "pattern",
                            format!("{path}.pattern: only `type: text` takes a pattern"),
                        );
                    } else if let Err(e) = regex::Regex::new(pattern) {
                        self.error(
                            at,
                            "pattern",
                            format!("{path}.pattern is not a valid regular expression: {e}"),
                        );
                    }
                }
            }
            Step::VerifyOtp(verify) => {
                if let Some(slot) = &verify.phone_slot {
                    self.slot_ref(at, &format!("{path}.phone_slot"), slot, slots);
                }
            }
            Step::CallWebhook(call) => {
                let url = call.url.trim();
                let web = url.starts_with("https://") || url.starts_with("http://");
                if !web && url != DEMO_ORDERS_URL {
                    self.error(
                        at,
                        "url:",
                        format!("{path}.url `{url}`: use an https:// URL on the tenant's allow-list, or `{DEMO_ORDERS_URL}`"),
                    );
                }
                for (field, template) in &call.body {
                    self.template(at, &format!("{path}.body.{field}"), template, slots);
                }
                for (slot, pointer) in &call.save {
                    if !is_name(slot, 32, false) || BUILTIN_SLOTS.contains(&slot.as_str()) {
                        self.error(
                            at,
                            &format!("{slot}:"),
                            format!("{path}.save `{slot}`: a slot name of lowercase letters, digits and `_`, not a built-in slot"),
                        );
                    }
                    if !pointer.is_empty() && !pointer.starts_with('/') {
                        self.error(
                            at,
                            &format!("{slot}:"),
                            format!("{path}.save.{slot} `{pointer}`: a JSON pointer starts with `/`, e.g. `/status`"),
                        );
                    }
                }
                match humantime::parse_duration(&call.timeout) {
                    Ok(t) if !t.is_zero() && t <= MAX_WEBHOOK_TIMEOUT => {}
                    _ => self.error(
                        at,
                        "timeout",
                        format!(
                            "{path}.timeout `{}`: a duration from 1ms to 30s, e.g. `5s`",
                            call.timeout
                        ),
                    ),
                }
                if call.retries > MAX_WEBHOOK_RETRIES {
                    self.error(
                        at,
                        "retries",
                        format!("{path}.retries: at most {MAX_WEBHOOK_RETRIES}"),
                    );
                }
            }
            Step::If(test) => {
                self.slot_ref(at, &format!("{path}.slot"), &test.slot, slots);
                let tests = usize::from(test.equals.is_some())
                    + usize::from(!test.one_of.is_empty())
                    + usize::from(test.present.is_some());
                if tests != 1 {
                    self.error(
                        at,
                        "if:",
                        format!("{path}: give exactly one of `equals`, `one_of` or `present`"),
                    );
                }
                self.label_ref(at, &format!("{path}.then"), &test.then, labels);
                if let Some(otherwise) = &test.otherwise {
                    self.label_ref(at, &format!("{path}.else"), otherwise, labels);
                }
            }
            Step::Handoff(handoff) => {
                if handoff.reason.trim().is_empty() {
                    self.error(
                        at,
                        "reason",
                        format!("{path}.reason: say why, for the agent"),
                    );
                }
            }
            Step::Tag(tag) => {
                if tag.tags.is_empty()
                    || tag
                        .tags
                        .iter()
                        .any(|t| t.trim().is_empty() || t.chars().count() > 50)
                {
                    self.error(
                        at,
                        "tags",
                        format!("{path}.tags: one or more tags of 1 to 50 characters"),
                    );
                }
            }
            Step::ScheduleFollowUp(follow) => {
                match humantime::parse_duration(&follow.after) {
                    Ok(d) if !d.is_zero() && d <= MAX_FOLLOW_UP => {}
                    _ => self.error(
                        at,
                        "after",
                        format!(
                            "{path}.after `{}`: a duration up to 7 days, e.g. `30m` or `1d`",
                            follow.after
                        ),
                    ),
                }
                self.localized(at, &format!("{path}.text"), &follow.text, slots);
            }
            Step::End => {}
        }
    }

    fn localized(
        &mut self,
        at: (usize, usize),
        path: &str,
        text: &Localized,
        slots: &BTreeSet<&str>,
    ) {
        for (language, template) in [("id", &text.id), ("en", &text.en)] {
            if template.trim().is_empty() {
                self.error(
                    at,
                    &format!("{language}:"),
                    format!("{path}.{language}: write the sentence in this language too"),
                );
            } else {
                self.template(at, &format!("{path}.{language}"), template, slots);
            }
        }
    }

    fn template(&mut self, at: (usize, usize), path: &str, template: &str, slots: &BTreeSet<&str>) {
        let mut tera = tera::Tera::default();
        if let Err(e) = tera.add_raw_template("flow", template) {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            let cause = cause.lines().last().unwrap_or_default().trim().to_owned();
            self.error(
                at,
                template,
                format!("{path} is not a valid template: {cause}"),
            );
            return;
        }
        for used in slot_uses(template) {
            self.slot_ref(at, path, used, slots);
        }
    }

    fn slot_ref(&mut self, at: (usize, usize), path: &str, slot: &str, slots: &BTreeSet<&str>) {
        if !slots.contains(slot) {
            self.error(
                at,
                slot,
                format!(
                    "{path}: unknown slot `{slot}`; ask for it or save it from a webhook first{}",
                    hint(slot, slots.iter().copied())
                ),
            );
        }
    }

    fn label_ref(&mut self, at: (usize, usize), path: &str, label: &str, labels: &BTreeSet<&str>) {
        if !labels.contains(label) {
            self.error(
                at,
                label,
                format!(
                    "{path}: no step has the label `{label}`{}",
                    hint(label, labels.iter().copied())
                ),
            );
        }
    }

    /// The byte range of step `i`, or the whole document when steps are not in block style.
    fn step(&self, i: usize) -> (usize, usize) {
        self.steps.get(i).copied().unwrap_or((0, self.source.len()))
    }

    /// Records an error at the first occurrence of `needle` within `range` (its start if absent).
    fn error(&mut self, range: (usize, usize), needle: &str, message: String) {
        let (start, end) = range;
        let region = &self.source[start..end];
        let offset = if needle.is_empty() {
            start
        } else {
            region.find(needle).map_or(start, |found| start + found)
        };
        let (line, column) = line_column(self.source, offset);
        self.errors.push(FlowError {
            line,
            column,
            message,
        });
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where each item of a block-style `steps:` list starts and ends.
fn step_ranges(source: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut in_steps = false;
    let mut item_indent = None;
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let blank = trimmed.trim().is_empty() || trimmed.starts_with('#');
        let top_level = !blank && indent == 0;
        if top_level {
            in_steps = trimmed.starts_with("steps:");
        }
        let new_item = in_steps
            && !blank
            && trimmed.starts_with('-')
            && item_indent.is_none_or(|i| indent <= i);
        // A step ends where the next one or the next top-level key starts.
        if (top_level || new_item)
            && let Some((_, end)) = ranges.last_mut()
            && *end == usize::MAX
        {
            *end = offset;
        }
        if new_item {
            item_indent = Some(indent);
            ranges.push((offset + indent, usize::MAX));
        }
        offset += line.len();
    }
    for (_, end) in &mut ranges {
        if *end == usize::MAX {
            *end = source.len();
        }
    }
    ranges
}

/// The slot names a template reads as `slots.NAME` or `slots["NAME"]`.
fn slot_uses(template: &str) -> Vec<&str> {
    let mut uses = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find("slots") {
        let after = &rest[at + "slots".len()..];
        let preceded_by_word = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let name = if let Some(dotted) = after.strip_prefix('.') {
            let end = dotted
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(dotted.len());
            Some(&dotted[..end])
        } else if let Some(quoted) = after
            .strip_prefix("[\"")
            .or_else(|| after.strip_prefix("['"))
        {
            quoted.find(['"', '\'']).map(|end| &quoted[..end])
        } else {
            None
        };
        if let Some(name) = name.filter(|n| !n.is_empty() && !preceded_by_word) {
            uses.push(name);
        }
        rest = after;
    }
    uses
}

/// A flow name (`allow_dash`) or a label/slot name: ASCII lowercase, digits, `_` (and `-`).
fn is_name(name: &str, max: usize, allow_dash: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || (allow_dash && c.is_ascii_digit()));
    first_ok
        && name.len() <= max
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (allow_dash && c == '-')
        })
}

#[cfg(test)]
mod unit {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn slot_uses_are_found_in_both_spellings() {
        assert_eq!(
            slot_uses("{{ slots.order }}: {{ slots[\"status\"] }} {{ myslots.x }}"),
            vec!["order", "status"]
        );
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn step_ranges_split_a_block_list() {
        let source = "name: x\nsteps:\n  - say:\n      text: a\n  - end\nother: 1\n";
        let ranges = step_ranges(source);
        assert_eq!(ranges.len(), 2);
        assert!(source[ranges[0].0..ranges[0].1].starts_with("- say:"));
        assert_eq!(&source[ranges[1].0..ranges[1].1], "- end\n");
    }
}
