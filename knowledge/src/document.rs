//! Documents, chunks and the results of ingesting and searching them.

use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::IngestError;

/// A retrievable passage of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    /// Stable id: `{document_id}:{n}`, n counting from 0 in document order.
    pub id: String,
    /// The tenant that owns the document.
    pub tenant: String,
    /// Id of the document, see [`document_id`].
    pub document_id: String,
    /// The document name given at ingest, usually the file name.
    pub document_name: String,
    /// The document title: its first H1, or its name when it has none.
    pub title: String,
    /// The headings above this passage, outermost first (starting with the H1, if any).
    pub heading_path: Vec<String>,
    /// The passage as written in the document, without its heading line.
    pub text: String,
}

/// A chunk returned by a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredChunk {
    /// The matching chunk.
    pub chunk: Chunk,
    /// Ranking score (BM25 with tenant statistics, weighted by `relevance`; in hybrid search
    /// the reciprocal-rank-fusion score of the BM25 and dense lists); only comparable within one
    /// result list.
    pub score: f32,
    /// How much of the question this chunk covers, in `[0, 1]`: the IDF-weighted share of the
    /// question's informative words found in the chunk (in hybrid search, at least the
    /// semantic relevance of its cosine, see [`crate::Knowledge::search_with`]). Compare with
    /// [`crate::DEFAULT_MIN_RELEVANCE`] to decide whether to answer.
    pub relevance: f32,
}

/// A document as listed for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentInfo {
    /// Stable id, see [`document_id`].
    pub id: String,
    /// The name given at ingest.
    pub name: String,
    /// The document title.
    pub title: String,
    /// Number of chunks indexed.
    pub chunks: usize,
    /// Hex SHA-256 of the ingested bytes.
    pub sha256: String,
}

/// What ingesting one document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum IngestOutcome {
    /// A new document was indexed.
    Indexed {
        /// Number of chunks indexed.
        chunks: usize,
    },
    /// A document with this name existed with other content; its chunks were replaced.
    Replaced {
        /// Number of chunks now indexed.
        chunks: usize,
    },
    /// The same bytes were already indexed under this name; nothing changed.
    Unchanged,
}

/// Per-file outcomes of [`crate::Knowledge::ingest_paths`].
#[derive(Debug, Default)]
pub struct IngestReport {
    /// One entry per path, in the order given.
    pub outcomes: Vec<(PathBuf, Result<IngestOutcome, IngestError>)>,
}

impl IngestReport {
    /// Number of files that failed.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// Number of files indexed, replaced or unchanged.
    pub fn succeeded(&self) -> usize {
        self.outcomes.len() - self.failed()
    }
}

/// The stable id of a tenant's document: the first 16 hex digits of SHA-256 over the tenant and
/// the name. The same name in two tenants gives two ids.
pub fn document_id(tenant: &str, name: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update([0u8]);
    hasher.update(name.as_bytes());
    let digest = hex::encode(hasher.finalize());
    digest[..16].to_owned()
}

/// Hex SHA-256 of a document's bytes.
pub(crate) fn content_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
