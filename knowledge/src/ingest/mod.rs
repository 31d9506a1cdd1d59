//! Turning uploaded bytes into chunks: format detection, parsing and splitting.

mod chunk;
mod csv;
mod html;
mod markdown;
#[cfg(feature = "pdf")]
mod pdf;
mod text;

use crate::error::IngestError;

/// Target chunk size, in whitespace-separated words. Sections up to this size stay whole.
pub const MAX_CHUNK_WORDS: usize = 400;
/// Words repeated at the start of the next chunk when a long section is split.
pub const OVERLAP_WORDS: usize = 60;

/// The formats we can ingest, chosen from the document name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.md`, `.markdown`: heading-aware sections.
    Markdown,
    /// `.txt`: paragraphs.
    Text,
    /// `.html`, `.htm`: tags stripped, h1–h6 used as headings.
    Html,
    /// `.csv`: a FAQ with a `question,answer` header, one chunk per row.
    Csv,
    /// `.pdf`: the text layer of each page (cargo feature `pdf`, on by default). Scans without
    /// a text layer are refused; OCR them first.
    #[cfg(feature = "pdf")]
    Pdf,
}

/// The extensions [`Format::from_name`] accepts, as told to uploaders.
#[cfg(feature = "pdf")]
pub const SUPPORTED: &str =
    ".md, .markdown, .txt, .html, .htm, .csv (question,answer) or .pdf (with a text layer)";
/// The extensions [`Format::from_name`] accepts, as told to uploaders.
#[cfg(not(feature = "pdf"))]
pub const SUPPORTED: &str = ".md, .markdown, .txt, .html, .htm or .csv (question,answer)";

impl Format {
    /// The format for a document name, or None when its extension is not supported.
    pub fn from_name(name: &str) -> Option<Self> {
        let (_, extension) = name.rsplit_once('.')?;
        match extension.to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Self::Markdown),
            "txt" | "text" => Some(Self::Text),
            "html" | "htm" => Some(Self::Html),
            "csv" => Some(Self::Csv),
            #[cfg(feature = "pdf")]
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }
}

/// A chunk before it gets ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftChunk {
    /// The headings above the chunk, outermost first.
    pub heading_path: Vec<String>,
    /// The chunk's text.
    pub text: String,
}

/// A parsed document.
#[derive(Debug)]
pub struct ParsedDocument {
    /// The document's title (its first heading, else its file name).
    pub title: String,
    /// Its chunks, in document order; never empty.
    pub chunks: Vec<DraftChunk>,
}

/// Parses a document's bytes into chunks, the format chosen by `name`'s extension.
///
/// # Errors
/// An unsupported extension, text that is not UTF-8, a CSV without its header, a PDF without a
/// text layer, or a document with nothing to index.
pub fn parse(name: &str, bytes: &[u8]) -> Result<ParsedDocument, IngestError> {
    let format = Format::from_name(name).ok_or_else(|| IngestError::UnsupportedFormat {
        name: name.to_owned(),
    })?;
    let fallback_title = title_from_name(name);
    let parsed = match format {
        Format::Markdown => markdown::parse(utf8(name, bytes)?, &fallback_title),
        Format::Text => text::parse(utf8(name, bytes)?, &fallback_title),
        Format::Html => html::parse(utf8(name, bytes)?, &fallback_title),
        Format::Csv => csv::parse(utf8(name, bytes)?, name, &fallback_title)?,
        #[cfg(feature = "pdf")]
        Format::Pdf => pdf::parse(bytes, name, &fallback_title)?,
    };
    if parsed.chunks.is_empty() {
        return Err(IngestError::Empty {
            name: name.to_owned(),
        });
    }
    Ok(parsed)
}

/// The bytes as text, without a UTF-8 byte order mark.
fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str, IngestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|_| IngestError::NotUtf8 {
        name: name.to_owned(),
    })
}

/// "faq-english.md" → "faq english".
fn title_from_name(name: &str) -> String {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    let title = stem.replace(['-', '_'], " ");
    let title = title.trim();
    if title.is_empty() {
        file.to_owned()
    } else {
        title.to_owned()
    }
}

/// True when the text has something to index.
fn has_content(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

#[cfg(test)]
mod tests;
