//! Markdown: one section per heading, long sections split with overlap.

use super::{DraftChunk, ParsedDocument, chunk, has_content};

/// Parses an ATX heading ("## Title") into its level and cleaned text.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let trimmed = line
        .strip_prefix("   ")
        .or_else(|| line.strip_prefix("  "))
        .or_else(|| line.strip_prefix(' '))
        .unwrap_or(line);
    let level = trimmed.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim();
    Some((level, clean_heading(text)))
}

/// Removes inline Markdown from a heading: emphasis, code marks and link targets.
pub(super) fn clean_heading(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' | '_' | '`' => {}
            ']' if chars.peek() == Some(&'(') => {
                for d in chars.by_ref() {
                    if d == ')' {
                        break;
                    }
                }
            }
            '[' => {}
            _ => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A setext underline ("===" or "---") turns the previous line into a heading.
fn setext_level(line: &str) -> Option<usize> {
    let trimmed = line.trim();
    if trimmed.len() >= 3 && trimmed.chars().all(|c| c == '=') {
        Some(1)
    } else if trimmed.len() >= 3 && trimmed.chars().all(|c| c == '-') {
        Some(2)
    } else {
        None
    }
}

#[derive(Debug, Default)]
struct Builder {
    title: Option<String>,
    stack: Vec<(usize, String)>,
    lines: Vec<String>,
    chunks: Vec<DraftChunk>,
}

impl Builder {
    fn flush(&mut self) {
        let text = self.lines.join("\n");
        self.lines.clear();
        if !has_content(&text) {
            return;
        }
        let heading_path: Vec<String> = self.stack.iter().map(|(_, h)| h.clone()).collect();
        for piece in chunk::split_section(&text) {
            self.chunks.push(DraftChunk {
                heading_path: heading_path.clone(),
                text: piece,
            });
        }
    }

    fn heading(&mut self, level: usize, text: String) {
        self.flush();
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        if level == 1 && self.title.is_none() && !text.is_empty() {
            self.title = Some(text.clone());
        }
        if !text.is_empty() {
            self.stack.push((level, text));
        }
    }
}

/// Parses Markdown into heading-aware chunks. The title is the first H1, else `fallback_title`.
pub(super) fn parse(text: &str, fallback_title: &str) -> ParsedDocument {
    let mut builder = Builder::default();
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            builder.lines.push(line.to_owned());
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            builder.lines.push(line.to_owned());
            continue;
        }
        if let Some((level, heading)) = atx_heading(line) {
            builder.heading(level, heading);
            continue;
        }
        if let Some(level) = setext_level(line)
            && let Some(previous) = builder.lines.last()
            && !previous.trim().is_empty()
            && !previous.trim_start().starts_with(['|', '-', '*', '>'])
        {
            let heading = clean_heading(previous.trim());
            builder.lines.pop();
            builder.heading(level, heading);
            continue;
        }
        builder.lines.push(line.to_owned());
    }
    builder.flush();
    ParsedDocument {
        title: builder.title.unwrap_or_else(|| fallback_title.to_owned()),
        chunks: builder.chunks,
    }
}
