//! CSV FAQ files: a `question,answer` header, one chunk per row (RFC 4180 quoting).

use super::{DraftChunk, ParsedDocument};
use crate::error::IngestError;

/// One parsed record with the line it starts on.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Splits CSV text into records. Quoted fields may contain the delimiter, newlines and doubled
/// quotes. Returns the line of an unterminated quote as the error.
fn records(text: &str, delimiter: char) -> Result<Vec<Record>, usize> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut quote_line = 0;
    let mut line = 1;
    let mut record_line = 1;
    let mut field_started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                '\r' => {}
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started || field.trim().is_empty() => {
                field.clear();
                in_quotes = true;
                field_started = true;
                quote_line = line;
            }
            c if c == delimiter => {
                fields.push(std::mem::take(&mut field));
                field_started = false;
            }
            '\r' => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                field_started = false;
                records.push(Record {
                    line: record_line,
                    fields: std::mem::take(&mut fields),
                });
                line += 1;
                record_line = line;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err(quote_line);
    }
    if field_started || !fields.is_empty() || !field.is_empty() {
        fields.push(field);
        records.push(Record {
            line: record_line,
            fields,
        });
    }
    records.retain(|r| r.fields.iter().any(|f| !f.trim().is_empty()));
    Ok(records)
}

fn column(header: &[String], names: &[&str]) -> Option<usize> {
    header
        .iter()
        .position(|h| names.contains(&h.trim().to_lowercase().as_str()))
}

/// Parses a FAQ CSV. The delimiter is `,`, or `;` when the header has no comma (spreadsheets in
/// Indonesian locale export that way).
pub(super) fn parse(
    text: &str,
    name: &str,
    fallback_title: &str,
) -> Result<ParsedDocument, IngestError> {
    let error = |line: usize, reason: &str| IngestError::Csv {
        name: name.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let first_line = text.lines().next().unwrap_or_default();
    let delimiter = if !first_line.contains(',') && first_line.contains(';') {
        ';'
    } else {
        ','
    };
    let records = records(text, delimiter).map_err(|line| {
        error(
            line,
            "a quoted field is never closed; check for a missing \"",
        )
    })?;
    let Some((header, rows)) = records.split_first() else {
        return Ok(ParsedDocument {
            title: fallback_title.to_owned(),
            chunks: Vec::new(),
        });
    };
    let question = column(&header.fields, &["question", "pertanyaan", "q", "tanya"]);
    let answer = column(&header.fields, &["answer", "jawaban", "a", "jawab"]);
    let (Some(question), Some(answer)) = (question, answer) else {
        return Err(error(
            header.line,
            "the first row must be the header `question,answer`",
        ));
    };
    let mut chunks = Vec::new();
    for row in rows {
        let get = |i: usize| row.fields.get(i).map(|f| f.trim()).unwrap_or_default();
        let (q, a) = (get(question), get(answer));
        if q.is_empty() && a.is_empty() {
            continue;
        }
        if q.is_empty() || a.is_empty() {
            return Err(error(
                row.line,
                "each row needs both a question and an answer; quote fields that contain commas",
            ));
        }
        chunks.push(DraftChunk {
            heading_path: Vec::new(),
            text: format!("Q: {q}\nA: {a}"),
        });
    }
    Ok(ParsedDocument {
        title: fallback_title.to_owned(),
        chunks,
    })
}
