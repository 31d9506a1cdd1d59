//! The index boundary: [`Retriever`] is what the rest of Sapa needs from a tenant-partitioned
//! chunk index. [`crate::Knowledge`] is the embedded implementation (tantivy BM25 plus the exact
//! dense index in the data dir); a server-backed one (Qdrant: one collection, tenant keyword
//! filter, dense + sparse vectors fused by RRF) would be a second implementation.
//!
//! Parsing and embedding are not the index's business: documents arrive as
//! [`PreparedDocument`]s (from [`crate::Knowledge::prepare_document`]) with optional
//! [`ChunkVectors`], and queries as [`SearchQuery`]s with an optional [`QueryVector`].

use std::fmt;

use crate::document::{DocumentInfo, IngestOutcome, ScoredChunk};
use crate::error::{IngestError, KnowledgeError};
use crate::index::{ChunkVectors, PreparedDocument};

/// A question embedded by the tenant's embedding model.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryVector {
    /// The embedding model; only vectors of the same model are compared.
    pub model: String,
    /// The unit vector.
    pub values: Vec<f32>,
}

/// What to search for.
#[derive(Debug, Clone, Copy)]
pub struct SearchQuery<'a> {
    /// The question as written.
    pub text: &'a str,
    /// Its embedding, for hybrid (BM25 + dense) retrieval; `None` searches by BM25 alone.
    pub vector: Option<&'a QueryVector>,
}

impl<'a> SearchQuery<'a> {
    /// A lexical-only query.
    pub fn text(text: &'a str) -> Self {
        Self { text, vector: None }
    }

    /// A hybrid query when `vector` is given, lexical otherwise.
    pub fn hybrid(text: &'a str, vector: Option<&'a QueryVector>) -> Self {
        Self { text, vector }
    }
}

/// A tenant-partitioned chunk index. Every method is scoped to one tenant: no call returns,
/// changes or counts another tenant's chunks. Methods block; async callers use
/// `spawn_blocking`.
pub trait Retriever: Send + Sync + fmt::Debug {
    /// Best chunks first, at most `limit`, each with a `relevance` in `[0, 1]` comparable with
    /// [`crate::DEFAULT_MIN_RELEVANCE`].
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    fn retrieve(
        &self,
        tenant: &str,
        query: &SearchQuery<'_>,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError>;

    /// The tenant's documents, sorted by name.
    ///
    /// # Errors
    /// An empty tenant id.
    fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError>;

    /// Deletes one of the tenant's documents with its chunks and vectors; false when the tenant
    /// has no such document.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    fn delete_document(&self, tenant: &str, document_id: &str) -> Result<bool, KnowledgeError>;

    /// Writes a prepared document (replacing an earlier version) with its chunk vectors, if any.
    ///
    /// # Errors
    /// An index failure.
    fn write_document(
        &self,
        document: PreparedDocument,
        vectors: Option<ChunkVectors>,
    ) -> Result<IngestOutcome, IngestError>;
}
