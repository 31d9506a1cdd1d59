//! PDF: the text layer of each page (no OCR), packed into chunks like plain text.
//!
//! Text is read from the page content streams: `Tj`, `TJ`, `'` and `"` show text in the current
//! font's encoding (standard encodings and ToUnicode maps, via `lopdf`); a move to another line
//! (`Td`/`TD` with a vertical offset, `T*`, `Tm`, `ET`) ends a line; a page ends a paragraph. A
//! PDF whose pages show no text (a scan, images only) is refused with a message saying to OCR it.

use std::collections::BTreeMap;

use lopdf::content::Content;
use lopdf::{Document, Encoding, Object};

use super::{ParsedDocument, has_content, text};
use crate::error::IngestError;

/// Largest decompressed content (per page, and per font) we are willing to inflate: a small
/// compressed stream must not expand without bound.
const MAX_DECOMPRESSED_BYTES: usize = 32 * 1024 * 1024;

/// Parses a PDF's text layer. The title is the document's `/Title` metadata when it has one.
pub(super) fn parse(
    bytes: &[u8],
    name: &str,
    fallback_title: &str,
) -> Result<ParsedDocument, IngestError> {
    let invalid = |reason: String| IngestError::Pdf {
        name: name.to_owned(),
        reason,
    };
    let document = Document::load_mem(bytes).map_err(|e| {
        invalid(format!(
            "cannot be read as a PDF ({e}); export or print it to PDF again and upload the new file"
        ))
    })?;
    if document.trailer.has(b"Encrypt") && document.encryption_state.is_none() {
        return Err(invalid(
            "is password-protected; remove the password (print to a new PDF) and upload it again"
                .to_owned(),
        ));
    }
    let mut pages = Vec::new();
    for (number, page_id) in document.get_pages() {
        let page = page_text(&document, page_id)
            .map_err(|e| invalid(format!("page {number} cannot be read ({e})")))?;
        if has_content(&page) {
            pages.push(page);
        }
    }
    if pages.is_empty() {
        return Err(IngestError::NoTextLayer {
            name: name.to_owned(),
        });
    }
    let title = metadata_title(&document).unwrap_or_else(|| fallback_title.to_owned());
    let parsed = text::parse(&pages.join("\n\n"), &title);
    Ok(parsed)
}

/// The `/Title` of the document information dictionary, when present and not blank.
fn metadata_title(document: &Document) -> Option<String> {
    let info = document.trailer.get_deref(b"Info", document).ok()?;
    let title = info.as_dict().ok()?.get_deref(b"Title", document).ok()?;
    let title = lopdf::decode_text_string(title).ok()?;
    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then_some(title)
}

/// The text shown on one page, one line per text line.
fn page_text(document: &Document, page_id: lopdf::ObjectId) -> Result<String, lopdf::Error> {
    let fonts = document.get_page_fonts(page_id)?;
    let encodings: BTreeMap<Vec<u8>, Encoding<'_>> = fonts
        .into_iter()
        .filter_map(|(name, font)| {
            font.get_font_encoding_with_limit(document, MAX_DECOMPRESSED_BYTES)
                .ok()
                .map(|encoding| (name, encoding))
        })
        .collect();
    let content = document.get_page_content_with_limit(page_id, MAX_DECOMPRESSED_BYTES)?;
    let content = Content::decode(&content)?;
    let mut out = String::new();
    let mut encoding: Option<&Encoding<'_>> = None;
    for operation in &content.operations {
        let operands = &operation.operands;
        match operation.operator.as_str() {
            "Tf" => {
                encoding = operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .and_then(|font| encodings.get(font));
            }
            "Tj" | "TJ" => show(&mut out, encoding, operands),
            "'" => {
                new_line(&mut out);
                show(&mut out, encoding, operands);
            }
            "\"" => {
                new_line(&mut out);
                show(&mut out, encoding, operands.get(2..).unwrap_or_default());
            }
            "Td" | "TD" => {
                let dy = operands
                    .get(1)
                    .and_then(|o| o.as_float().ok())
                    .unwrap_or(0.0);
                if dy.abs() > f32::EPSILON {
                    new_line(&mut out);
                } else {
                    space(&mut out);
                }
            }
            "T*" | "Tm" | "ET" => new_line(&mut out),
            _ => {}
        }
    }
    Ok(out)
}

/// Appends the strings of a text-showing operator. In a `TJ` array, a large negative offset is
/// a word gap.
fn show(out: &mut String, encoding: Option<&Encoding<'_>>, operands: &[Object]) {
    let Some(encoding) = encoding else {
        return;
    };
    for operand in operands {
        match operand {
            Object::String(bytes, _) => {
                let mut decoded = String::new();
                if encoding.write_to_string(bytes, &mut decoded).is_ok() {
                    out.push_str(&decoded.replace('\0', ""));
                }
            }
            Object::Array(items) => show(out, Some(encoding), items),
            Object::Integer(_) | Object::Real(_)
                if operand.as_float().is_ok_and(|gap| gap < -200.0) =>
            {
                space(out);
            }
            _ => {}
        }
    }
}

fn new_line(out: &mut String) {
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

fn space(out: &mut String) {
    if !out.is_empty() && !out.ends_with([' ', '\n']) {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn the_text_layer_of_every_page_is_extracted_with_lines_and_title() {
        let parsed = parse(&fixture("paket-catering.pdf"), "paket-catering.pdf", "x").unwrap();
        assert_eq!(parsed.title, "Paket Catering 2026");
        let all: String = parsed
            .chunks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        // Page 1 is a plain content stream, page 2 a FlateDecode one.
        assert!(
            all.contains("Harga Paket Rapat Rp 45.000 per orang, minimal pesan 20 orang."),
            "{all}"
        );
        assert!(
            all.contains("Harga Paket Ulang Tahun Rp 65.000 per orang"),
            "{all}"
        );
        // Parentheses escaped in the PDF string come back as written.
        assert!(all.contains("(kue lapis legit)"), "{all}");
        // Lines moved with Td are separate lines, not glued words.
        assert!(all.contains("Nusantara\nPaket Rapat"), "{all}");
    }

    #[test]
    fn a_pdf_without_a_text_layer_says_to_ocr_it() {
        let error = parse(&fixture("scan.pdf"), "scan.pdf", "scan").unwrap_err();
        assert!(
            matches!(error, IngestError::NoTextLayer { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("no text layer; OCR the file first"),
            "{error}"
        );
    }

    #[test]
    fn bytes_that_are_not_a_pdf_are_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"%PDF-1.4\n",
            b"hello, this is text",
            &fixture("paket-catering.pdf")[..600],
        ] {
            let error = parse(bytes, "broken.pdf", "broken").unwrap_err();
            assert!(
                matches!(
                    error,
                    IngestError::Pdf { .. } | IngestError::NoTextLayer { .. }
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn tj_arrays_with_word_gaps_and_quote_operators_are_read() {
        let mut out = String::new();
        let encoding = Encoding::SimpleEncoding(b"WinAnsiEncoding");
        show(
            &mut out,
            Some(&encoding),
            &[Object::Array(vec![
                Object::string_literal("Kopi"),
                Object::Integer(-250),
                Object::string_literal("Su"),
                Object::Integer(-20),
                Object::string_literal("su"),
            ])],
        );
        assert_eq!(out, "Kopi Susu");
    }
}
