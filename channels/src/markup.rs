//! The bot's Markdown-lite, rendered for each channel. Bot and model text may carry
//! `**bold**`, `# headings`, `- lists`, `> quotes` and Markdown table rows; customers must
//! never see pipes, dashes and asterisks as syntax:
//! - WhatsApp: `*bold*`, `• ` lists, `> ` quotes (WhatsApp renders them), table rows as
//!   `cell — cell`;
//! - Telegram: HTML (`<b>`, `<blockquote>`), everything else escaped;
//! - web chat: the widget renders the same Markdown-lite itself, as DOM text nodes.
//!
//! Pure and total: any input gives some output; text that is not markup passes unchanged
//! (escaped for HTML).

/// One line of Markdown-lite.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line<'a> {
    /// `# …`: shown bold.
    Heading(&'a str),
    /// `- …`, `* …`, `+ …`: a bullet.
    Item(&'a str),
    /// `> …`.
    Quote(&'a str),
    /// `| a | b |`, as its cells.
    Row(Vec<&'a str>),
    /// `|---|---|`: dropped.
    Separator,
    /// Anything else.
    Text(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    let t = line.trim();
    if t.starts_with('#') {
        let rest = t.trim_start_matches('#');
        if rest.starts_with(' ') && t.len() - rest.len() <= 6 {
            return Line::Heading(rest.trim());
        }
    }
    if t.starts_with('|') && t.len() > 1 {
        if t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
            return Line::Separator;
        }
        let cells = t
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        return Line::Row(cells);
    }
    if let Some(rest) = t.strip_prefix("> ").or_else(|| t.strip_prefix('>')) {
        return Line::Quote(rest.trim_start());
    }
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(marker) {
            return Line::Item(rest.trim());
        }
    }
    Line::Text(line)
}

/// `**x**` → `open x close`, only for a closed pair with text between; stray `**` stay.
fn bold(text: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("**") {
        let after = &rest[start + 2..];
        match after.find("**") {
            Some(end) if end > 0 && !after[..end].trim().is_empty() => {
                out.push_str(&rest[..start]);
                out.push_str(open);
                out.push_str(&after[..end]);
                out.push_str(close);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text for WhatsApp's own formatting.
pub fn to_whatsapp(text: &str) -> String {
    text.lines()
        .filter_map(|line| match classify(line) {
            Line::Heading(h) => Some(format!("*{}*", h.replace("**", ""))),
            Line::Item(item) => Some(format!("• {}", bold(item, "*", "*"))),
            Line::Quote(q) => Some(format!("> {}", bold(q, "*", "*"))),
            Line::Row(cells) => Some(bold(&cells.join(" — "), "*", "*")),
            Line::Separator => None,
            Line::Text(t) => Some(bold(t, "*", "*")),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text for Telegram's `parse_mode = HTML`: escaped, with `<b>` and `<blockquote>`.
pub fn to_telegram_html(text: &str) -> String {
    let esc = crate::telegram::format::escape_html;
    let mut out: Vec<String> = Vec::new();
    let mut quote: Vec<String> = Vec::new();
    let flush = |quote: &mut Vec<String>, out: &mut Vec<String>| {
        if !quote.is_empty() {
            out.push(format!("<blockquote>{}</blockquote>", quote.join("\n")));
            quote.clear();
        }
    };
    for line in text.lines() {
        let line = classify(line);
        if let Line::Quote(q) = line {
            quote.push(bold(&esc(q), "<b>", "</b>"));
            continue;
        }
        flush(&mut quote, &mut out);
        match line {
            Line::Heading(h) => out.push(format!("<b>{}</b>", esc(&h.replace("**", "")))),
            Line::Item(item) => out.push(format!("• {}", bold(&esc(item), "<b>", "</b>"))),
            Line::Row(cells) => out.push(bold(&esc(&cells.join(" — ")), "<b>", "</b>")),
            Line::Separator => {}
            Line::Text(t) => out.push(bold(&esc(t), "<b>", "</b>")),
            Line::Quote(_) => {}
        }
    }
    flush(&mut quote, &mut out);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "## Kopi\nBerikut **harga** kami:\n| menu | harga |\n|---|---|\n| Kopi Susu Gula Aren | Rp 22.000 |\n- Es Kopi Pandan\n> Harga sudah termasuk pajak.\n> Ukuran besar +Rp 5.000";

    #[test]
    fn whatsapp_gets_its_own_bold_bullets_and_rows_without_pipes() {
        assert_eq!(
            to_whatsapp(ANSWER),
            "*Kopi*\nBerikut *harga* kami:\nmenu — harga\nKopi Susu Gula Aren — Rp 22.000\n• Es Kopi Pandan\n> Harga sudah termasuk pajak.\n> Ukuran besar +Rp 5.000"
        );
    }

    #[test]
    fn telegram_gets_escaped_html_with_one_blockquote() {
        assert_eq!(
            to_telegram_html(ANSWER),
            "<b>Kopi</b>\nBerikut <b>harga</b> kami:\nmenu — harga\nKopi Susu Gula Aren — Rp 22.000\n• Es Kopi Pandan\n<blockquote>Harga sudah termasuk pajak.\nUkuran besar +Rp 5.000</blockquote>"
        );
        assert_eq!(
            to_telegram_html("a <b>x</b> & **y** **"),
            "a &lt;b&gt;x&lt;/b&gt; &amp; <b>y</b> **"
        );
    }

    #[test]
    fn plain_text_passes_unchanged() {
        let plain = "Halo kak, 2 * 3 = 6 dan harga Rp 10.000 - diskon.\n\nTerima kasih!";
        assert_eq!(to_whatsapp(plain), plain);
        assert_eq!(to_telegram_html(plain), plain);
    }
}
