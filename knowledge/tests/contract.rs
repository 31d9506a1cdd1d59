//! The retrieval contract, run on every backend: the embedded index and, with the `qdrant`
//! feature, a Qdrant collection (`SAPA_TEST_QDRANT_URL`, the gRPC URL; under `CI` a missing
//! server fails the tests instead of skipping them). Each Qdrant test has its own collection.
//!
//! What every backend must do: the shared eval thresholds, tenant isolation (results, listing,
//! deletion, and scores that another tenant's documents do not move), idempotent ingest and
//! replace by document id, deletion, abstaining on questions without informative words, and
//! hybrid retrieval through an embedder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use knowledge::embed::HashEmbedder;
use knowledge::{
    DEFAULT_MIN_RELEVANCE, IngestOutcome, Knowledge, KnowledgeBase, ScoredChunk, SearchQuery, eval,
};

const TENANT: &str = "demo";
const DIM: usize = 256;

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

fn data(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn embedder() -> Arc<HashEmbedder> {
    Arc::new(
        HashEmbedder::new(DIM)
            .with_synonym("doggy", "anjing")
            .with_synonym("allowed", "masuk")
            .with_synonym("patio", "teras"),
    )
}

/// The backends under test, each empty.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Embedded,
    #[cfg(feature = "qdrant")]
    Qdrant,
}

fn backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut all = vec![Backend::Embedded];
    #[cfg(feature = "qdrant")]
    if qdrant::url().is_some() {
        all.push(Backend::Qdrant);
    }
    all
}

impl Backend {
    async fn open(self, hybrid: bool) -> Arc<dyn KnowledgeBase> {
        match self {
            Backend::Embedded => {
                let k = Knowledge::in_memory().unwrap();
                if hybrid {
                    Arc::new(k.with_embedder(embedder(), knowledge::DEFAULT_MIN_SIMILARITY))
                } else {
                    Arc::new(k)
                }
            }
            #[cfg(feature = "qdrant")]
            Backend::Qdrant => Arc::new(qdrant::open(&qdrant::fresh_collection(), hybrid).await),
        }
    }
}

#[cfg(feature = "qdrant")]
mod qdrant {
    use std::sync::Arc;
    use std::time::Duration;

    use knowledge::qdrant::{QdrantKnowledge, QdrantSettings};

    /// The test server's gRPC URL; under `CI` it must be set.
    pub(super) fn url() -> Option<String> {
        match std::env::var("SAPA_TEST_QDRANT_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but SAPA_TEST_QDRANT_URL is not: start ../shared/qdrant/start.sh and export it"
                );
                eprintln!("SAPA_TEST_QDRANT_URL is not set: Qdrant contract tests skipped");
                None
            }
        }
    }

    pub(super) fn fresh_collection() -> String {
        format!("sapa_test_{}", rand_suffix())
    }

    fn rand_suffix() -> String {
        use std::time::{SystemTime, UNIX_EPOCH};
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{}_{nanos}", std::process::id())
    }

    pub(super) async fn open(collection: &str, hybrid: bool) -> QdrantKnowledge {
        let settings = QdrantSettings {
            url: url().unwrap(),
            api_key: String::new(),
            collection: collection.to_owned(),
            timeout: Duration::from_secs(10),
        };
        let embedder = hybrid.then(|| super::embedder() as Arc<dyn knowledge::embed::Embedder>);
        QdrantKnowledge::connect(&settings, embedder).await.unwrap()
    }
}

async fn ingest_demo(k: &dyn KnowledgeBase, tenant: &str) {
    for path in demo_kb_paths() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        k.ingest(tenant, &name, std::fs::read(&path).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn search(k: &dyn KnowledgeBase, tenant: &str, query: &str, limit: usize) -> Vec<ScoredChunk> {
    k.retrieve(tenant, &SearchQuery::text(query), limit)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_eval_sets_meet_the_thresholds_on_every_backend() {
    let mut embedded: Vec<eval::EvalReport> = Vec::new();
    for backend in backends() {
        let k = backend.open(false).await;
        ingest_demo(k.as_ref(), TENANT).await;
        for (n, name) in ["retrieval.jsonl", "paraphrased.jsonl"]
            .into_iter()
            .enumerate()
        {
            let report = eval::run(k.as_ref(), TENANT, &data(name)).unwrap();
            println!("{backend:?} {name}\n{report}");
            assert!(report.recall_at_5 >= 0.95, "{backend:?} {name}\n{report}");
            assert!(report.recall_at_1 >= 0.85, "{backend:?} {name}\n{report}");
            assert!(
                report.abstain_accuracy >= 0.8,
                "{backend:?} {name}\n{report}"
            );
            // Every other backend does at least as well as the embedded index.
            match embedded.get(n) {
                None => embedded.push(report),
                Some(base) => {
                    assert!(
                        report.recall_at_1 >= base.recall_at_1,
                        "{backend:?} {name}\n{report}"
                    );
                    assert!(
                        report.recall_at_5 >= base.recall_at_5,
                        "{backend:?} {name}\n{report}"
                    );
                    assert!(
                        report.abstain_accuracy >= base.abstain_accuracy,
                        "{backend:?} {name}\n{report}"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_best_passage_comes_first_and_uninformative_questions_get_nothing() {
    for backend in backends() {
        let k = backend.open(false).await;
        ingest_demo(k.as_ref(), TENANT).await;
        let results = search(k.as_ref(), TENANT, "jam buka outlet Blok M hari Minggu?", 5);
        let top = &results[0];
        assert_eq!(
            top.chunk.document_name, "profil-dan-lokasi.md",
            "{backend:?}"
        );
        assert!(
            top.chunk.text.contains("Sabtu–Minggu 08.00–23.00 WIB"),
            "{backend:?}"
        );
        assert_eq!(top.chunk.title, "Profil dan Lokasi Kopi Nusantara");
        assert!(top.relevance >= DEFAULT_MIN_RELEVANCE, "{backend:?}");
        assert!(results.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(results.iter().all(|r| (0.0..=1.0).contains(&r.relevance)));

        assert!(search(k.as_ref(), TENANT, "halo kak, mau tanya dong", 5).is_empty());
        assert!(search(k.as_ref(), TENANT, "zzkx qwv", 5).is_empty());
        assert!(search(k.as_ref(), TENANT, "harga", 0).is_empty());
        assert!(search(k.as_ref(), "unknown-tenant", "harga kopi", 5).is_empty());
        assert!(k.retrieve("", &SearchQuery::text("x"), 1).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_sees_nor_changes_another_tenants_chunks() {
    let a_text = "# Toko A\n\nKami menjual sepatu lari merek Kencana ukuran 38 sampai 45.\n";
    let b_text = "# Toko B\n\nPromo rahasia: kode diskon ZEBRA99 untuk martabak manis keju.\n";
    for backend in backends() {
        let k = backend.open(false).await;
        ingest_demo(k.as_ref(), "a").await;
        let questions = [
            "jam buka outlet Blok M hari Minggu?",
            "berapa harga kopi susu gula aren",
            "apakah bisa kirim ke luar kota",
        ];
        let before: Vec<Vec<ScoredChunk>> = questions
            .iter()
            .map(|q| search(k.as_ref(), "a", q, 5))
            .collect();
        // Tenant b's documents, some of them the same files: a's ranking and scores hold.
        k.ingest("b", "b.md", b_text.as_bytes().to_vec())
            .await
            .unwrap();
        ingest_demo(k.as_ref(), "b").await;
        k.ingest(
            "b",
            "more.md",
            "# Kopi\n\nKopi kopi kopi, harga kopi, jam buka kopi Blok M Minggu.\n"
                .as_bytes()
                .to_vec(),
        )
        .await
        .unwrap();
        for (question, before) in questions.iter().zip(&before) {
            let after = search(k.as_ref(), "a", question, 5);
            assert_eq!(after.len(), before.len(), "{backend:?} {question}");
            for (x, y) in after.iter().zip(before) {
                assert_eq!(x.chunk.id, y.chunk.id, "{backend:?} {question}");
                assert!(
                    (x.score - y.score).abs() < 1e-4,
                    "{backend:?} {question}: {} vs {}",
                    x.score,
                    y.score
                );
                assert!(
                    (x.relevance - y.relevance).abs() < 1e-4,
                    "{backend:?} {question}"
                );
            }
        }
        k.ingest("a", "a.md", a_text.as_bytes().to_vec())
            .await
            .unwrap();
        for query in [
            b_text,
            "kode diskon ZEBRA99 martabak manis keju",
            "toko",
            "promo",
        ] {
            for result in search(k.as_ref(), "a", query, 10) {
                assert_eq!(result.chunk.tenant, "a", "{backend:?} {query}: {result:?}");
            }
        }
        let b_hits = search(k.as_ref(), "b", "martabak zebra99", 10);
        assert_eq!(b_hits.len(), 1, "{backend:?}");
        assert_eq!(b_hits[0].chunk.tenant, "b");
        // Same document name in two tenants: two documents with different ids.
        k.ingest("b", "a.md", a_text.as_bytes().to_vec())
            .await
            .unwrap();
        let a_docs = k.list_documents("a").unwrap();
        let b_docs = k.list_documents("b").unwrap();
        let a_md = a_docs.iter().find(|d| d.name == "a.md").unwrap();
        let b_md = b_docs.iter().find(|d| d.name == "a.md").unwrap();
        assert_ne!(a_md.id, b_md.id);
        // Tenant a can neither delete nor read b's documents.
        let b_only = b_docs.iter().find(|d| d.name == "b.md").unwrap();
        assert!(!k.delete_document("a", &b_only.id).unwrap(), "{backend:?}");
        assert!(k.document_chunks("a", &b_only.id).unwrap().is_none());
        assert_eq!(k.list_documents("b").unwrap().len(), b_docs.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_idempotent_by_document_id_and_changes_replace_old_chunks() {
    let v1 = "# Jam\n\n## Senin\nBuka pukul 07.00 sampai 22.00.\n\n## Minggu\nTutup.\n";
    let v2 = "# Jam\n\n## Senin\nBuka pukul 09.00 sampai 17.00.\n";
    for backend in backends() {
        let k = backend.open(false).await;
        let ingest = |bytes: &str| k.ingest("t", "jam.md", bytes.as_bytes().to_vec());
        assert_eq!(
            ingest(v1).await.unwrap(),
            IngestOutcome::Indexed { chunks: 2 },
            "{backend:?}"
        );
        assert_eq!(
            ingest(v1).await.unwrap(),
            IngestOutcome::Unchanged,
            "{backend:?}"
        );
        let docs = k.list_documents("t").unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].chunks, 2);
        assert_eq!(docs[0].title, "Jam");
        assert_eq!(docs[0].sha256.len(), 64);
        let chunks = k.document_chunks("t", &docs[0].id).unwrap().unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].id, format!("{}:0", docs[0].id));
        assert_eq!(chunks[1].heading_path, ["Jam", "Minggu"]);
        let hits = search(k.as_ref(), "t", "buka senin", 10);
        assert_eq!(hits.len(), 1, "{backend:?} {hits:?}");
        assert_eq!(hits[0].chunk.heading_path, ["Jam", "Senin"]);

        assert_eq!(
            ingest(v2).await.unwrap(),
            IngestOutcome::Replaced { chunks: 1 },
            "{backend:?}"
        );
        let after = k.list_documents("t").unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].id, docs[0].id);
        assert_eq!(after[0].chunks, 1);
        assert_eq!(
            k.document_chunks("t", &docs[0].id).unwrap().unwrap().len(),
            1
        );
        assert!(
            search(k.as_ref(), "t", "07.00", 10).is_empty(),
            "{backend:?}: old text still found"
        );
        assert!(
            search(k.as_ref(), "t", "tutup", 10).is_empty(),
            "{backend:?}: old chunk still found"
        );
        let hits = search(k.as_ref(), "t", "buka jam 09.00", 10);
        assert_eq!(hits.len(), 1);
        assert!(hits[0].chunk.text.contains("09.00"));

        // Writing the same prepared document again (a reindex) is idempotent too.
        let prepared = knowledge::PreparedDocument::from_chunks(
            "t",
            after[0].clone(),
            k.document_chunks("t", &after[0].id).unwrap().unwrap(),
        );
        assert_eq!(
            k.write_document(prepared, None).unwrap(),
            IngestOutcome::Unchanged
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_document_removes_its_chunks() {
    for backend in backends() {
        let k = backend.open(false).await;
        ingest_demo(k.as_ref(), TENANT).await;
        let docs = k.list_documents(TENANT).unwrap();
        assert_eq!(docs.len(), 10, "{backend:?}");
        let menu = docs.iter().find(|d| d.name == "menu-dan-harga.md").unwrap();
        assert!(k.delete_document(TENANT, &menu.id).unwrap());
        assert!(!k.delete_document(TENANT, &menu.id).unwrap());
        assert!(k.document_chunks(TENANT, &menu.id).unwrap().is_none());
        assert_eq!(k.list_documents(TENANT).unwrap().len(), 9);
        for hit in search(k.as_ref(), TENANT, "harga cappuccino croissant", 10) {
            assert_ne!(hit.chunk.document_name, "menu-dan-harga.md", "{backend:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_retrieval_answers_a_paraphrase_only_the_vectors_connect() {
    let pets = "# Anjing\n\nAnjing boleh masuk teras.\n";
    let parking = "# Parkir\n\nParkir motor gratis di basement gedung.\n";
    for backend in backends() {
        let k = backend.open(true).await;
        k.ingest("t", "pets.md", pets.as_bytes().to_vec())
            .await
            .unwrap();
        k.ingest("t", "parkir.md", parking.as_bytes().to_vec())
            .await
            .unwrap();
        k.ingest("u", "pets.md", pets.as_bytes().to_vec())
            .await
            .unwrap();
        let question = "doggy allowed patio?";
        let lexical = search(k.as_ref(), "t", question, 5);
        assert!(
            lexical.iter().all(|h| h.relevance < DEFAULT_MIN_RELEVANCE),
            "{backend:?}"
        );
        let vector = k.embed_query(question).await.unwrap();
        let hits = k
            .retrieve("t", &SearchQuery::hybrid(question, Some(&vector)), 5)
            .unwrap();
        assert_eq!(
            hits[0].chunk.document_name, "pets.md",
            "{backend:?} {hits:?}"
        );
        assert!(
            hits[0].relevance >= DEFAULT_MIN_RELEVANCE,
            "{backend:?} {hits:?}"
        );
        assert!(
            hits.iter().all(|h| h.chunk.tenant == "t"),
            "{backend:?} {hits:?}"
        );
        assert!(
            hits.iter()
                .filter(|h| h.chunk.document_name != "pets.md")
                .all(|h| h.relevance < DEFAULT_MIN_RELEVANCE),
            "{backend:?}"
        );
        assert!(
            k.retrieve("c", &SearchQuery::hybrid(question, Some(&vector)), 5)
                .unwrap()
                .is_empty()
        );
        // Nothing is missing vectors.
        assert_eq!(k.embed_missing("t").await.unwrap(), 0, "{backend:?}");
    }
}

/// Qdrant only: what one replica writes, another replica (its own client and cache) searches
/// at once, with statistics that include it.
#[cfg(feature = "qdrant")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_written_through_one_replica_is_found_by_another_at_once() {
    if qdrant::url().is_none() {
        return;
    }
    let collection = qdrant::fresh_collection();
    let one = qdrant::open(&collection, false).await;
    let two = qdrant::open(&collection, false).await;
    ingest_demo(&one, TENANT).await;
    // Replica two caches the tenant's statistics.
    assert!(
        search(&two, TENANT, "promo ulang tahun gratis", 5)
            .iter()
            .all(|h| !h.chunk.text.contains("Zebra"))
    );
    one.ingest(
        TENANT,
        "zebra.md",
        "# Promo Zebra\n\nPromo zebra: beli dua gratis satu setiap Jumat.\n"
            .as_bytes()
            .to_vec(),
    )
    .await
    .unwrap();
    let hits = search(&two, TENANT, "promo zebra jumat", 3);
    assert!(hits[0].chunk.text.contains("zebra"), "{hits:?}");
    assert!(hits[0].relevance >= DEFAULT_MIN_RELEVANCE);
    let id = knowledge::document_id(TENANT, "zebra.md");
    assert!(two.delete_document(TENANT, &id).unwrap());
    assert!(
        search(&one, TENANT, "promo zebra jumat", 3)
            .iter()
            .all(|h| !h.chunk.text.contains("zebra"))
    );
    // `check` reports the collection.
    let report = one.check().await.unwrap();
    assert_eq!(report.collection, collection);
    assert!(report.points > 0);
}

/// Qdrant only: `copy_tenant` (what `sapa kb reindex` runs) moves a tenant from the embedded
/// index to Qdrant and back, with the same retrieval quality, mirroring deletions.
#[cfg(feature = "qdrant")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_moves_between_backends_with_the_same_results() {
    if qdrant::url().is_none() {
        return;
    }
    let embedded = Knowledge::in_memory().unwrap();
    ingest_demo(&embedded, TENANT).await;
    let remote = qdrant::open(&qdrant::fresh_collection(), false).await;
    remote
        .ingest(
            TENANT,
            "stale.md",
            b"# Lama\n\nDokumen lama yang harus hilang.\n".to_vec(),
        )
        .await
        .unwrap();
    let report = knowledge::copy_tenant(&embedded, &remote, TENANT).unwrap();
    assert_eq!(
        (report.written, report.unchanged, report.deleted),
        (10, 0, 1),
        "{report:?}"
    );
    let again = knowledge::copy_tenant(&embedded, &remote, TENANT).unwrap();
    assert_eq!(
        (again.written, again.unchanged, again.deleted),
        (0, 10, 0),
        "{again:?}"
    );
    assert_eq!(
        embedded.list_documents(TENANT).unwrap(),
        remote.list_documents(TENANT).unwrap()
    );
    let base = eval::run(&embedded, TENANT, &data("paraphrased.jsonl")).unwrap();
    let moved = eval::run(&remote, TENANT, &data("paraphrased.jsonl")).unwrap();
    assert!(
        moved.recall_at_1 >= base.recall_at_1 && moved.recall_at_5 >= base.recall_at_5,
        "{moved}"
    );
    // And back into an empty embedded index.
    let back = Knowledge::in_memory().unwrap();
    let report = knowledge::copy_tenant(&remote, &back, TENANT).unwrap();
    assert_eq!(report.written, 10);
    let returned = eval::run(&back, TENANT, &data("paraphrased.jsonl")).unwrap();
    assert_eq!(returned.recall_at_1, base.recall_at_1);
}

/// Qdrant only: an unreachable server does not stop the start (ingress keeps working); every
/// knowledge call fails with what is wrong until it answers.
#[cfg(feature = "qdrant")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_qdrant_fails_each_call_but_not_the_start() {
    use std::time::Duration;
    let settings = knowledge::qdrant::QdrantSettings {
        url: "http://127.0.0.1:9".to_owned(),
        api_key: String::new(),
        collection: "sapa".to_owned(),
        timeout: Duration::from_secs(2),
    };
    let k = knowledge::qdrant::QdrantKnowledge::connect(&settings, None)
        .await
        .unwrap();
    let error = knowledge::Retriever::retrieve(&k, "t", &SearchQuery::text("harga kopi"), 5)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("qdrant:"), "{error}");
    assert!(k.list_documents("t").is_err());
    assert!(
        k.ingest("t", "a.md", b"# A\n\nKopi.\n".to_vec())
            .await
            .is_err()
    );
    assert!(k.check().await.is_err());
}
