//! HTML: tags stripped, scripts and styles dropped, h1–h6 turned into Markdown headings, then
//! chunked like Markdown.

use super::{ParsedDocument, markdown};

/// Elements whose content is never text for readers.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "head", "iframe", "object",
];

/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "ul",
    "ol",
    "table",
    "tr",
    "blockquote",
    "pre",
    "dl",
    "dt",
    "dd",
    "form",
    "hr",
    "figure",
    "figcaption",
    "address",
    "body",
    "html",
    "details",
    "summary",
    "caption",
    "thead",
    "tbody",
    "tfoot",
];

/// Decodes the common named entities and numeric character references.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "ndash" => Some('–'),
                "mdash" => Some('—'),
                "hellip" => Some('…'),
                "lsquo" | "rsquo" => Some('\''),
                "ldquo" | "rdquo" => Some('"'),
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Converts HTML to Markdown-like text. Returns the `<title>` too.
fn to_markdown(html: &str) -> (Option<String>, String) {
    let mut out = String::with_capacity(html.len() / 2);
    let mut title: Option<String> = None;
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let mut in_heading = false;
    let mut in_pre = false;
    while i < html.len() {
        let Some(offset) = html[i..].find('<') else {
            push_text(&mut out, &html[i..], in_heading, in_pre);
            break;
        };
        push_text(&mut out, &html[i..i + offset], in_heading, in_pre);
        i += offset;
        if lower[i..].starts_with("<!--") {
            i = lower[i..].find("-->").map_or(html.len(), |e| i + e + 3);
            continue;
        }
        let Some(close) = html[i..].find('>') else {
            break;
        };
        let tag = &lower[i + 1..i + close];
        i += close + 1;
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if name == "title" && !closing {
            let end = lower[i..].find("</title").map_or(html.len(), |e| i + e);
            let text = decode_entities(&html[i..end]);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if title.is_none() && !text.is_empty() {
                title = Some(text);
            }
            i = end;
            continue;
        }
        if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
            let end_tag = format!("</{name}");
            i = lower[i..].find(&end_tag).map_or(html.len(), |e| {
                let after = i + e;
                lower[after..]
                    .find('>')
                    .map_or(html.len(), |g| after + g + 1)
            });
            continue;
        }
        let heading_level = match name.as_str() {
            "h1" => Some(1),
            "h2" => Some(2),
            "h3" => Some(3),
            "h4" => Some(4),
            "h5" => Some(5),
            "h6" => Some(6),
            _ => None,
        };
        if let Some(level) = heading_level {
            if closing {
                in_heading = false;
                out.push_str("\n\n");
            } else {
                in_heading = true;
                out.push_str("\n\n");
                out.push_str(&"#".repeat(level));
                out.push(' ');
            }
        } else if name == "li" && !closing {
            out.push_str("\n- ");
        } else if name == "td" || name == "th" {
            out.push(' ');
        } else if BLOCKS.contains(&name.as_str()) {
            if name == "pre" {
                in_pre = !closing;
            }
            out.push('\n');
        }
    }
    let mut text = String::with_capacity(out.len());
    let mut blank_run = 0;
    for line in out.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        text.push_str(&line);
        text.push('\n');
    }
    (title, text)
}

fn push_text(out: &mut String, raw: &str, in_heading: bool, in_pre: bool) {
    let text = decode_entities(raw);
    if in_pre && !in_heading {
        out.push_str(&text);
        return;
    }
    for c in text.chars() {
        out.push(if c.is_whitespace() { ' ' } else { c });
    }
}

/// Parses HTML into heading-aware chunks. The title is the first h1, else `<title>`, else
/// `fallback_title`.
pub(super) fn parse(html: &str, fallback_title: &str) -> ParsedDocument {
    let (title, text) = to_markdown(html);
    let fallback = title.as_deref().unwrap_or(fallback_title);
    markdown::parse(&text, fallback)
}
