//! Retrieval quality on the demo knowledge base, tenant isolation, re-ingest and persistence.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use knowledge::{DEFAULT_MIN_RELEVANCE, IngestOutcome, Knowledge, eval};

const TENANT: &str = "demo";

fn demo_kb_paths() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/kb");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
}

fn demo_kb() -> Knowledge {
    let k = Knowledge::in_memory().unwrap();
    let mut seen = 0;
    let report = k.ingest_paths(TENANT, &demo_kb_paths(), &mut |_| seen += 1);
    assert_eq!(report.failed(), 0, "{:?}", report.outcomes);
    assert_eq!(seen, report.outcomes.len());
    k
}

fn data(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn assert_thresholds(name: &str) {
    let k = demo_kb();
    let report = eval::run(&k, TENANT, &data(name)).unwrap();
    println!("{name}\n{report}");
    assert!(
        report.recall_at_5 >= 0.95,
        "{name}: recall@5 {:.3}\n{report}",
        report.recall_at_5
    );
    assert!(
        report.recall_at_1 >= 0.85,
        "{name}: recall@1 {:.3}\n{report}",
        report.recall_at_1
    );
    assert!(
        report.abstain_accuracy >= 0.8,
        "{name}: abstain accuracy {:.3}\n{report}",
        report.abstain_accuracy
    );
    assert!(
        report.false_abstain * 10 <= report.answerable,
        "{name}: {} answerable questions under the threshold\n{report}",
        report.false_abstain
    );
}

#[test]
fn shared_eval_set_meets_retrieval_thresholds() {
    assert_thresholds("retrieval.jsonl");
}

#[test]
fn reworded_questions_with_slang_and_typos_meet_retrieval_thresholds() {
    assert_thresholds("paraphrased.jsonl");
}

#[test]
fn sunday_hours_of_blok_m_come_first() {
    let k = demo_kb();
    let results = k
        .search(TENANT, "jam buka outlet Blok M hari Minggu?", 5)
        .unwrap();
    let top = &results[0];
    assert_eq!(top.chunk.document_name, "profil-dan-lokasi.md");
    assert!(
        top.chunk.text.contains("Sabtu–Minggu 08.00–23.00 WIB"),
        "{top:#?}"
    );
    assert_eq!(
        top.chunk.heading_path.last().map(String::as_str),
        Some("Outlet Blok M")
    );
    assert_eq!(top.chunk.title, "Profil dan Lokasi Kopi Nusantara");
    assert!(top.relevance >= DEFAULT_MIN_RELEVANCE);
    assert!(results.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(results.iter().all(|r| (0.0..=1.0).contains(&r.relevance)));
}

#[test]
fn questions_without_informative_words_return_nothing() {
    let k = demo_kb();
    assert!(
        k.search(TENANT, "halo kak, mau tanya dong", 5)
            .unwrap()
            .is_empty()
    );
    assert!(k.search(TENANT, "zzkx qwv", 5).unwrap().is_empty());
    assert!(k.search(TENANT, "harga", 0).unwrap().is_empty());
    assert!(
        k.search("unknown-tenant", "harga kopi", 5)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_tenant_never_sees_another_tenants_chunks() {
    let k = Knowledge::in_memory().unwrap();
    let a_text = "# Toko A\n\nKami menjual sepatu lari merek Kencana ukuran 38 sampai 45.\n";
    let b_text = "# Toko B\n\nPromo rahasia: kode diskon ZEBRA99 untuk martabak manis keju.\n";
    k.ingest_document("a", "a.md", a_text.as_bytes()).unwrap();
    k.ingest_document("b", "b.md", b_text.as_bytes()).unwrap();
    // Even the exact text of b's chunk finds nothing of b for tenant a.
    for query in [
        b_text,
        "kode diskon ZEBRA99 martabak manis keju",
        "toko",
        "promo",
    ] {
        for result in k.search("a", query, 10).unwrap() {
            assert_eq!(result.chunk.tenant, "a", "{query}: {result:?}");
        }
    }
    let b_hits = k.search("b", "martabak zebra99", 10).unwrap();
    assert_eq!(b_hits.len(), 1);
    assert_eq!(b_hits[0].chunk.tenant, "b");
    // Same document name, two tenants: two documents with different ids.
    k.ingest_document("b", "a.md", a_text.as_bytes()).unwrap();
    let a_docs = k.list_documents("a").unwrap();
    let b_docs = k.list_documents("b").unwrap();
    assert_eq!(a_docs.len(), 1);
    assert_eq!(b_docs.len(), 2);
    assert!(b_docs.iter().all(|d| d.id != a_docs[0].id));
    // Tenant a cannot delete b's documents.
    assert!(!k.delete_document("a", &b_docs[0].id).unwrap());
    assert_eq!(k.list_documents("b").unwrap().len(), 2);
    assert!(k.search("", "x", 1).is_err());
}

#[test]
fn reingesting_is_idempotent_and_changes_replace_old_chunks() {
    let k = Knowledge::in_memory().unwrap();
    let v1 = "# Jam\n\n## Senin\nBuka pukul 07.00 sampai 22.00.\n\n## Minggu\nTutup.\n";
    assert_eq!(
        k.ingest_document("t", "jam.md", v1.as_bytes()).unwrap(),
        IngestOutcome::Indexed { chunks: 2 }
    );
    assert_eq!(
        k.ingest_document("t", "jam.md", v1.as_bytes()).unwrap(),
        IngestOutcome::Unchanged
    );
    let docs = k.list_documents("t").unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].chunks, 2);
    assert_eq!(docs[0].title, "Jam");
    assert_eq!(docs[0].sha256.len(), 64);
    let hits = k.search("t", "buka senin", 10).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].chunk.id, format!("{}:0", docs[0].id));
    assert_eq!(hits[0].chunk.heading_path, ["Jam", "Senin"]);

    let v2 = "# Jam\n\n## Senin\nBuka pukul 09.00 sampai 17.00.\n";
    assert_eq!(
        k.ingest_document("t", "jam.md", v2.as_bytes()).unwrap(),
        IngestOutcome::Replaced { chunks: 1 }
    );
    let docs_after = k.list_documents("t").unwrap();
    assert_eq!(docs_after.len(), 1);
    assert_eq!(docs_after[0].id, docs[0].id);
    assert_eq!(docs_after[0].chunks, 1);
    assert!(
        k.search("t", "07.00", 10).unwrap().is_empty(),
        "old text still found"
    );
    assert!(
        k.search("t", "tutup", 10).unwrap().is_empty(),
        "old chunk still found"
    );
    let hits = k.search("t", "buka jam 09.00", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].chunk.text.contains("09.00"));
}

#[test]
fn deleting_a_document_removes_its_chunks() {
    let k = demo_kb();
    let docs = k.list_documents(TENANT).unwrap();
    assert_eq!(docs.len(), 10);
    let menu = docs.iter().find(|d| d.name == "menu-dan-harga.md").unwrap();
    assert!(k.delete_document(TENANT, &menu.id).unwrap());
    assert!(!k.delete_document(TENANT, &menu.id).unwrap());
    assert_eq!(k.list_documents(TENANT).unwrap().len(), 9);
    for hit in k.search(TENANT, "harga cappuccino croissant", 10).unwrap() {
        assert_ne!(hit.chunk.document_name, "menu-dan-harga.md");
    }
}

#[test]
fn bad_files_do_not_fail_the_batch_and_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    let bad_type = dir.path().join("slides.pptx");
    let bad_csv = dir.path().join("faq.csv");
    let missing = dir.path().join("missing.md");
    std::fs::write(&good, "Kami buka setiap hari.").unwrap();
    std::fs::write(&bad_type, "x").unwrap();
    std::fs::write(&bad_csv, "judul,isi\na,b\n").unwrap();
    let k = Knowledge::in_memory().unwrap();
    let paths = vec![good, bad_type, bad_csv, missing];
    let report = k.ingest_paths("t", &paths, &mut |_| {});
    assert_eq!(report.succeeded(), 1);
    assert_eq!(report.failed(), 3);
    let messages: Vec<String> = report
        .outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        messages[0].contains("unsupported file type"),
        "{messages:?}"
    );
    assert!(messages[1].contains("question,answer"), "{messages:?}");
    assert!(messages[2].contains("cannot read"), "{messages:?}");
}

#[test]
fn the_index_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let k = Knowledge::open(dir.path()).unwrap();
        k.ingest_paths(TENANT, &demo_kb_paths(), &mut |_| {});
    }
    let k = Knowledge::open(dir.path()).unwrap();
    assert_eq!(k.list_documents(TENANT).unwrap().len(), 10);
    let results = k
        .search(TENANT, "jam buka outlet blok m hari minggu", 1)
        .unwrap();
    assert!(results[0].chunk.text.contains("08.00–23.00"));
    let faq = demo_kb_paths()
        .into_iter()
        .find(|p| p.ends_with("faq.csv"))
        .unwrap();
    let outcome = k
        .ingest_document(TENANT, "faq.csv", &std::fs::read(faq).unwrap())
        .unwrap();
    assert_eq!(outcome, IngestOutcome::Unchanged);
}

#[test]
fn searches_and_ingests_run_from_many_threads() {
    let k = demo_kb();
    std::thread::scope(|scope| {
        for i in 0..4 {
            let k = k.clone();
            scope.spawn(move || {
                for j in 0..20 {
                    if i == 0 {
                        let doc = format!("# Catatan {j}\n\nPromo spesial nomor {j}.\n");
                        k.ingest_document("other", &format!("n{j}.md"), doc.as_bytes())
                            .unwrap();
                    } else {
                        let hits = k.search(TENANT, "ongkir ke jakarta pusat", 3).unwrap();
                        assert_eq!(hits[0].chunk.document_name, "pemesanan-dan-pengiriman.md");
                    }
                }
            });
        }
    });
    assert_eq!(k.list_documents("other").unwrap().len(), 20);
}

#[cfg(feature = "pdf")]
#[test]
fn a_pdf_text_layer_is_searchable_and_a_scan_is_refused() {
    let read = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(name),
        )
        .unwrap()
    };
    let k = Knowledge::in_memory().unwrap();
    let outcome = k
        .ingest_document("t", "paket-catering.pdf", &read("paket-catering.pdf"))
        .unwrap();
    assert!(
        matches!(outcome, IngestOutcome::Indexed { .. }),
        "{outcome:?}"
    );
    let hits = k.search("t", "harga paket ulang tahun brp?", 3).unwrap();
    assert!(hits[0].chunk.text.contains("Rp 65.000"), "{hits:#?}");
    assert_eq!(hits[0].chunk.title, "Paket Catering 2026");
    assert!(hits[0].relevance >= DEFAULT_MIN_RELEVANCE);

    let error = k
        .ingest_document("t", "scan.pdf", &read("scan.pdf"))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no text layer; OCR the file first"),
        "{error}"
    );
    assert_eq!(k.list_documents("t").unwrap().len(), 1);
}
