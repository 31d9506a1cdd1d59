//! Hybrid retrieval: dense vectors next to BM25, fused by reciprocal rank; tenant isolation on
//! the dense path; vectors following replace/delete/restart; BM25 fallback when embedding fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use knowledge::embed::{EmbedError, Embedder, HashEmbedder};
use knowledge::{DEFAULT_MIN_RELEVANCE, IngestOutcome, Knowledge, SearchQuery, eval};

const DIM: usize = 256;

/// Words the lexical index cannot connect to the document; the embedder knows they mean the
/// same thing.
fn embedder() -> HashEmbedder {
    HashEmbedder::new(DIM)
        .with_synonym("doggy", "anjing")
        .with_synonym("allowed", "masuk")
        .with_synonym("patio", "teras")
}

const PETS: &str = "# Anjing\n\nAnjing boleh masuk teras.\n";
const OTHER: &str = "# Parkir\n\nParkir motor gratis di basement gedung.\n";

async fn pets_kb(min_similarity: f32) -> Knowledge {
    let k = Knowledge::in_memory()
        .unwrap()
        .with_embedder(Arc::new(embedder()), min_similarity);
    k.ingest("t", "pets.md", PETS.as_bytes().to_vec())
        .await
        .unwrap();
    k.ingest("t", "parkir.md", OTHER.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!(k.vector_count("t"), 2);
    k
}

#[tokio::test]
async fn a_paraphrase_bm25_misses_is_answered_through_the_vectors() {
    let k = pets_kb(knowledge::DEFAULT_MIN_SIMILARITY).await;
    let question = "doggy allowed patio?";
    // BM25 alone finds nothing relevant.
    let lexical = k.search("t", question, 5).unwrap();
    assert!(
        lexical.iter().all(|h| h.relevance < DEFAULT_MIN_RELEVANCE),
        "{lexical:?}"
    );
    let vector = k.embed_query(question).await.unwrap();
    let hits = k
        .search_with("t", &SearchQuery::hybrid(question, Some(&vector)), 5)
        .unwrap();
    assert_eq!(hits[0].chunk.document_name, "pets.md", "{hits:?}");
    assert!(hits[0].relevance >= DEFAULT_MIN_RELEVANCE, "{hits:?}");
    // The unrelated chunk may be listed but is never relevant.
    assert!(
        hits.iter()
            .filter(|h| h.chunk.document_name != "pets.md")
            .all(|h| h.relevance < DEFAULT_MIN_RELEVANCE)
    );
}

#[tokio::test]
async fn a_vector_match_under_min_similarity_never_makes_a_question_answerable() {
    // Same data, but the operator requires a near-identical vector to answer on it alone.
    let k = pets_kb(0.99).await;
    let question = "doggy allowed patio?";
    let vector = k.embed_query(question).await.unwrap();
    let hits = k
        .search_with("t", &SearchQuery::hybrid(question, Some(&vector)), 5)
        .unwrap();
    assert_eq!(hits[0].chunk.document_name, "pets.md", "{hits:?}");
    assert!(
        hits.iter().all(|h| h.relevance < DEFAULT_MIN_RELEVANCE),
        "{hits:?}"
    );
    // A question without informative words returns nothing, vector or not.
    let vector = k.embed_query("halo kak").await;
    assert!(
        k.search_with("t", &SearchQuery::hybrid("?", vector.as_ref()), 5)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_dense_path_never_returns_another_tenants_chunks() {
    let k = Knowledge::in_memory()
        .unwrap()
        .with_embedder(Arc::new(embedder()), 0.5);
    let a_text = "# Toko A\n\nKami menjual sepatu lari merek Kencana ukuran 38 sampai 45.\n";
    let b_text = "# Toko B\n\nPromo rahasia: kode diskon ZEBRA99 untuk martabak manis keju.\n";
    k.ingest("a", "a.md", a_text.as_bytes().to_vec())
        .await
        .unwrap();
    k.ingest("b", "b.md", b_text.as_bytes().to_vec())
        .await
        .unwrap();
    // A query vector identical to b's chunk: tenant a still only gets its own chunks.
    for question in [
        "Toko B\nPromo rahasia: kode diskon ZEBRA99 untuk martabak manis keju.",
        "martabak zebra99",
        "doggy",
    ] {
        let vector = k.embed_query(question).await.unwrap();
        let hits = k
            .search_with("a", &SearchQuery::hybrid(question, Some(&vector)), 10)
            .unwrap();
        assert!(hits.iter().all(|h| h.chunk.tenant == "a"), "{hits:?}");
        // A tenant without documents gets nothing at all.
        assert!(
            k.search_with("c", &SearchQuery::hybrid(question, Some(&vector)), 10)
                .unwrap()
                .is_empty()
        );
    }
    let question = "Toko B\nPromo rahasia: kode diskon ZEBRA99 untuk martabak manis keju.";
    let vector = k.embed_query(question).await.unwrap();
    let b_hits = k
        .search_with("b", &SearchQuery::hybrid(question, Some(&vector)), 10)
        .unwrap();
    assert_eq!(b_hits.len(), 1);
    assert_eq!(b_hits[0].chunk.tenant, "b");
    // The same document name in two tenants: deleting a's never touches b's vectors.
    k.ingest("b", "a.md", a_text.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!(k.vector_count("b"), 2);
    let a_doc = &k.list_documents("a").unwrap()[0];
    assert!(k.delete_document("a", &a_doc.id).unwrap());
    assert_eq!(k.vector_count("a"), 0);
    assert_eq!(k.vector_count("b"), 2);
}

#[tokio::test]
async fn vectors_follow_replace_and_delete_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Knowledge::open(dir.path())
            .unwrap()
            .with_embedder(Arc::new(embedder()), 0.5)
    };
    let v1 = "# Jam\n\n## Senin\nBuka pukul 07.00 sampai 22.00.\n\n## Minggu\nTutup.\n";
    let v2 = "# Jam\n\n## Senin\nBuka pukul 09.00 sampai 17.00.\n";
    {
        let k = open();
        assert_eq!(
            k.ingest("t", "jam.md", v1.as_bytes().to_vec())
                .await
                .unwrap(),
            IngestOutcome::Indexed { chunks: 2 }
        );
        assert_eq!(k.vector_count("t"), 2);
        assert_eq!(
            k.ingest("t", "jam.md", v2.as_bytes().to_vec())
                .await
                .unwrap(),
            IngestOutcome::Replaced { chunks: 1 }
        );
        assert_eq!(k.vector_count("t"), 1);
        // The old "Minggu: Tutup" chunk is gone from the dense side too.
        let vector = k.embed_query("Minggu tutup").await.unwrap();
        for hit in k
            .search_with("t", &SearchQuery::hybrid("Minggu tutup", Some(&vector)), 5)
            .unwrap()
        {
            assert!(!hit.chunk.text.contains("Tutup"), "{hit:?}");
        }
        k.ingest("t", "lain.md", PETS.as_bytes().to_vec())
            .await
            .unwrap();
        assert_eq!(k.vector_count("t"), 2);
    }
    let k = open();
    assert_eq!(k.vector_count("t"), 2);
    let vector = k.embed_query("doggy allowed patio").await.unwrap();
    let hits = k
        .search_with(
            "t",
            &SearchQuery::hybrid("doggy allowed patio", Some(&vector)),
            5,
        )
        .unwrap();
    assert_eq!(hits[0].chunk.document_name, "lain.md");
    assert!(hits[0].relevance >= DEFAULT_MIN_RELEVANCE);
    let lain = k
        .list_documents("t")
        .unwrap()
        .into_iter()
        .find(|d| d.name == "lain.md")
        .unwrap();
    assert!(k.delete_document("t", &lain.id).unwrap());
    drop(k);
    assert_eq!(open().vector_count("t"), 1);
    // A lexical-only re-ingest of changed bytes removes the document's stale vectors.
    let k = open();
    k.ingest_document("t", "jam.md", v1.as_bytes()).unwrap();
    assert_eq!(k.vector_count("t"), 0);
}

/// Fails while `down` is set.
#[derive(Debug)]
struct Flaky {
    inner: HashEmbedder,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Embedder for Flaky {
    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(EmbedError::Endpoint("HTTP 503: down".into()));
        }
        self.inner.embed(texts).await
    }
}

#[tokio::test]
async fn an_embedder_failure_keeps_bm25_working_and_a_reingest_adds_the_vectors() {
    let flaky = Arc::new(Flaky {
        inner: embedder(),
        down: AtomicBool::new(true),
    });
    let k = Knowledge::in_memory()
        .unwrap()
        .with_embedder(flaky.clone(), 0.75);
    let outcome = k
        .ingest("t", "pets.md", PETS.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!(outcome, IngestOutcome::Indexed { chunks: 1 });
    assert_eq!(k.vector_count("t"), 0);
    assert!(k.embed_query("anjing boleh masuk").await.is_none());
    let hits = k
        .search_with("t", &SearchQuery::hybrid("anjing boleh masuk", None), 5)
        .unwrap();
    assert_eq!(hits[0].chunk.document_name, "pets.md");

    flaky.down.store(false, Ordering::SeqCst);
    let outcome = k
        .ingest("t", "pets.md", PETS.as_bytes().to_vec())
        .await
        .unwrap();
    assert_eq!(outcome, IngestOutcome::Unchanged);
    assert_eq!(k.vector_count("t"), 1);
}

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

/// The hashed embedder is not semantic (it re-counts the same words), so fusing it mostly adds
/// noise to the order: recall@1 is not asserted (it drops from 1.000 to 0.875 on the shared
/// set). What must hold whatever the embedder: answers stay in the top five, and the relevance
/// rule keeps every unanswerable question unanswered.
#[tokio::test]
async fn hybrid_retrieval_keeps_recall_at_5_and_abstentions_on_the_demo_kb() {
    let embedder = Arc::new(HashEmbedder::new(DIM));
    let k = Knowledge::in_memory()
        .unwrap()
        .with_embedder(embedder.clone(), knowledge::DEFAULT_MIN_SIMILARITY);
    for path in demo_kb_paths() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        k.ingest("demo", &name, std::fs::read(&path).unwrap())
            .await
            .unwrap();
    }
    assert!(k.vector_count("demo") > 0);
    for file in ["retrieval.jsonl", "paraphrased.jsonl"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(file),
        )
        .unwrap();
        let model = embedder.model().to_owned();
        let report = eval::run_hybrid(&k, "demo", &text, DEFAULT_MIN_RELEVANCE, &|q| {
            Some(knowledge::QueryVector {
                model: model.clone(),
                values: embedder.vector(q),
            })
        })
        .unwrap();
        println!("{file} (hybrid, hashed embedder)\n{report}");
        assert!(report.recall_at_5 >= 0.95, "{file}\n{report}");
        assert!(report.abstain_accuracy >= 0.8, "{file}\n{report}");
        assert!(
            report.false_abstain * 10 <= report.answerable,
            "{file}\n{report}"
        );
    }
}

#[tokio::test]
async fn the_dense_weight_decides_how_much_vectors_count_in_the_fusion() {
    let question = "parkir doggy allowed patio";
    // What a chunk at keyword rank `i` scores from the keyword list alone.
    let keyword_only = |i: usize| 1.0 / (knowledge::RRF_K + i as f32 + 1.0);
    let fused = |k: &Knowledge, vector: &knowledge::QueryVector| {
        k.search_with("t", &SearchQuery::hybrid(question, Some(vector)), 5)
            .unwrap()
    };
    let plain = pets_kb(knowledge::DEFAULT_MIN_SIMILARITY).await;
    let lexical = plain.search("t", question, 5).unwrap();
    assert_eq!(lexical[0].chunk.document_name, "parkir.md", "{lexical:?}");
    let vector = plain.embed_query(question).await.unwrap();
    // Weight 0: the keyword order and scores stand; vectors only add candidates after them.
    let keyword_led = pets_kb(knowledge::DEFAULT_MIN_SIMILARITY)
        .await
        .with_dense_weight(0.0);
    let led = fused(&keyword_led, &vector);
    for (i, hit) in lexical.iter().enumerate() {
        assert_eq!(led[i].chunk.id, hit.chunk.id, "{led:?}");
        assert!((led[i].score - keyword_only(i)).abs() < 1e-9, "{led:?}");
    }
    // Weight 1 (plain RRF): the vector ranking adds to the keyword one.
    let both = fused(&plain, &vector);
    assert!(both[0].score > keyword_only(0) + 1e-6, "{both:?}");
    // In between, in proportion.
    let half = pets_kb(knowledge::DEFAULT_MIN_SIMILARITY)
        .await
        .with_dense_weight(0.5);
    let half = fused(&half, &vector);
    let extra = |hits: &[knowledge::ScoredChunk]| hits[0].score - keyword_only(0);
    assert!(
        (extra(&half) * 2.0 - extra(&both)).abs() < 1e-6,
        "{half:?} {both:?}"
    );
}
