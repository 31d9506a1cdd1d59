//! Splitting a section's text into chunks of at most `MAX_CHUNK_WORDS` words with overlap.

use super::{MAX_CHUNK_WORDS, OVERLAP_WORDS};

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Splits `text` into line units no longer than half a chunk; very long lines (a paragraph
/// without line breaks) are cut into word windows.
fn units(text: &str) -> Vec<String> {
    let max_unit = MAX_CHUNK_WORDS / 2;
    let mut units = Vec::new();
    for line in text.lines() {
        let count = words(line);
        if count <= max_unit {
            units.push(line.to_owned());
            continue;
        }
        let all: Vec<&str> = line.split_whitespace().collect();
        for window in all.chunks(max_unit) {
            units.push(window.join(" "));
        }
    }
    units
}

/// Splits a section into chunks. A section of at most `MAX_CHUNK_WORDS` words stays one chunk;
/// longer ones are packed line by line, each new chunk repeating up to `OVERLAP_WORDS` words of
/// the previous one so that a fact on the boundary is whole in at least one chunk.
pub(super) fn split_section(text: &str) -> Vec<String> {
    let text = text.trim_matches(['\n', '\r']);
    if words(text) <= MAX_CHUNK_WORDS {
        return vec![text.trim_end().to_owned()];
    }
    pack(&units(text), MAX_CHUNK_WORDS, OVERLAP_WORDS)
}

/// Packs paragraphs into chunks of about `soft_target` words (never over `MAX_CHUNK_WORDS`),
/// without overlap: paragraph boundaries are natural cuts.
pub(super) fn pack_paragraphs(paragraphs: &[String], soft_target: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut current_words = 0;
    for paragraph in paragraphs {
        let count = words(paragraph);
        if count > MAX_CHUNK_WORDS {
            if !current.is_empty() {
                chunks.push(current.join("\n\n"));
                current.clear();
                current_words = 0;
            }
            chunks.extend(split_section(paragraph));
            continue;
        }
        if !current.is_empty()
            && (current_words >= soft_target || current_words + count > MAX_CHUNK_WORDS)
        {
            chunks.push(current.join("\n\n"));
            current.clear();
            current_words = 0;
        }
        current.push(paragraph.clone());
        current_words += count;
    }
    if !current.is_empty() {
        chunks.push(current.join("\n\n"));
    }
    chunks
}

fn pack(units: &[String], max: usize, overlap: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut current_words = 0;
    let mut fresh = 0; // words added since the last cut, so overlap alone never makes a chunk
    for unit in units {
        let count = words(unit);
        if current_words + count > max && fresh > 0 {
            chunks.push(join_lines(&current));
            let mut kept: Vec<&str> = Vec::new();
            let mut kept_words = 0;
            for line in current.iter().rev() {
                let w = words(line);
                if kept_words + w > overlap {
                    break;
                }
                kept.push(line);
                kept_words += w;
            }
            kept.reverse();
            current = kept;
            current_words = kept_words;
            fresh = 0;
        }
        current.push(unit);
        current_words += count;
        fresh += count;
    }
    if fresh > 0 {
        chunks.push(join_lines(&current));
    }
    chunks
}

fn join_lines(lines: &[&str]) -> String {
    lines
        .join("\n")
        .trim_matches(['\n', '\r'])
        .trim_end()
        .to_owned()
}
