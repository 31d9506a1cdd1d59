//! Plain text: paragraphs packed into chunks.

use super::{ParsedDocument, chunk, has_content};

/// Soft chunk size for plain text: paragraphs are gathered until about this many words.
const PARAGRAPH_TARGET_WORDS: usize = 120;

/// Parses plain text; blank lines separate paragraphs. The title is `fallback_title`.
pub(super) fn parse(text: &str, fallback_title: &str) -> ParsedDocument {
    let mut paragraphs = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line.trim_end());
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join("\n"));
    }
    paragraphs.retain(|p| has_content(p));
    let chunks = chunk::pack_paragraphs(&paragraphs, PARAGRAPH_TARGET_WORDS)
        .into_iter()
        .map(|text| super::DraftChunk {
            heading_path: Vec::new(),
            text,
        })
        .collect();
    ParsedDocument {
        title: fallback_title.to_owned(),
        chunks,
    }
}
