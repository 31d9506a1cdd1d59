#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn markdown_sections_keep_title_and_heading_path() {
    let doc = parse(
        "profil.md",
        b"# Profil\n\nIntro text.\n\n## Outlet\n\n### Blok M\n- Jam buka: 08.00\n\n### Tebet\nAlamat Tebet.\n",
    )
    .unwrap();
    assert_eq!(doc.title, "Profil");
    let paths: Vec<Vec<String>> = doc.chunks.iter().map(|c| c.heading_path.clone()).collect();
    assert_eq!(
        paths,
        [
            vec!["Profil".to_owned()],
            vec![
                "Profil".to_owned(),
                "Outlet".to_owned(),
                "Blok M".to_owned()
            ],
            vec!["Profil".to_owned(), "Outlet".to_owned(), "Tebet".to_owned()],
        ]
    );
    assert_eq!(doc.chunks[1].text, "- Jam buka: 08.00");
}

#[test]
fn headings_inside_code_fences_are_text() {
    let doc = parse("a.md", b"# T\n```\n# not a heading\n```\n").unwrap();
    assert_eq!(doc.chunks.len(), 1);
    assert!(doc.chunks[0].text.contains("# not a heading"));
}

#[test]
fn long_sections_split_with_overlap() {
    let mut text = String::from("# Long\n\n");
    for i in 0..120 {
        text.push_str(&format!(
            "Kalimat nomor {i} berisi beberapa kata tambahan.\n"
        ));
    }
    let doc = parse("long.md", text.as_bytes()).unwrap();
    assert!(doc.chunks.len() >= 2, "{}", doc.chunks.len());
    for chunk in &doc.chunks {
        assert!(chunk.text.split_whitespace().count() <= MAX_CHUNK_WORDS);
    }
    let last_line_of_first = doc.chunks[0].text.lines().last().unwrap();
    assert!(
        doc.chunks[1].text.contains(last_line_of_first),
        "no overlap"
    );
}

#[test]
fn csv_faq_rows_become_question_answer_chunks() {
    let csv = "question,answer\r\nApakah ada wifi?,\"Ada, gratis.\"\r\n\"Kata \"\"halal\"\"?\",\"Ya,\nMUI.\"\r\n";
    let doc = parse("faq.csv", csv.as_bytes()).unwrap();
    let texts: Vec<&str> = doc.chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Q: Apakah ada wifi?\nA: Ada, gratis.",
            "Q: Kata \"halal\"?\nA: Ya,\nMUI."
        ]
    );
}

#[test]
fn csv_errors_say_what_to_fix() {
    let error = parse("faq.csv", b"pertanyaan;jawaban\nA;\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("line 2") && error.contains("both a question and an answer"),
        "{error}"
    );
    let error = parse("faq.csv", b"q,x\nA,B\n").unwrap_err().to_string();
    assert!(error.contains("header"), "{error}");
    let error = parse("faq.csv", b"question,answer\n\"open,never closed\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("never closed"), "{error}");
}

#[test]
fn html_is_stripped_and_headings_are_used() {
    let html = "<html><head><title>T</title><style>h1{}</style></head><body><h1>Menu</h1>\
        <script>var x = '<h2>no</h2>';</script><h2>Kopi &amp; Teh</h2><p>Kopi susu <b>Rp 22.000</b></p>\
        <ul><li>Teh</li></ul><!-- hidden --></body></html>";
    let doc = parse("menu.html", html.as_bytes()).unwrap();
    assert_eq!(doc.title, "Menu");
    assert_eq!(doc.chunks.len(), 1);
    assert_eq!(doc.chunks[0].heading_path, ["Menu", "Kopi & Teh"]);
    assert_eq!(doc.chunks[0].text, "Kopi susu Rp 22.000\n\n- Teh");
}

#[test]
fn plain_text_paragraphs_become_chunks() {
    let doc = parse("notes.txt", b"Satu paragraf.\n\nDua paragraf.\n").unwrap();
    assert_eq!(doc.title, "notes");
    assert_eq!(doc.chunks.len(), 1);
    assert_eq!(doc.chunks[0].text, "Satu paragraf.\n\nDua paragraf.");
}

#[test]
fn unsupported_or_undecodable_input_is_rejected_with_advice() {
    let error = parse("slides.pptx", b"x").unwrap_err().to_string();
    assert!(error.contains(".md"), "{error}");
    let error = parse("a.md", &[0xff, 0xfe, 0x00]).unwrap_err().to_string();
    assert!(error.contains("UTF-8"), "{error}");
    let error = parse("a.md", b"   \n\n").unwrap_err().to_string();
    assert!(error.contains("no text"), "{error}");
}
