//! The index boundary, in two traits. [`Retriever`] is the read path, what answering a question
//! needs from a tenant-partitioned chunk index; [`KnowledgeBase`] adds the write path (ingest,
//! delete, embedding backfill, listing). [`crate::Knowledge`] is the embedded implementation
//! (tantivy BM25 plus the exact dense index in the data dir); a server-backed one (Qdrant: one
//! collection, tenant keyword filter, dense + sparse vectors fused by RRF) would be a second
//! implementation, and callers hold `Arc<dyn Retriever>` or `Arc<dyn KnowledgeBase>`.
//!
//! The index itself does not parse or embed: documents reach [`KnowledgeBase::write_document`]
//! as [`PreparedDocument`]s (from [`crate::Knowledge::prepare_document`]) with optional
//! [`ChunkVectors`], and queries reach [`Retriever::retrieve`] as [`SearchQuery`]s with an
//! optional [`QueryVector`]. [`Retriever::embed_query`] and [`KnowledgeBase::ingest`] are the
//! conveniences that do both with the implementation's configured embedder.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::document::{Chunk, DocumentInfo, IngestOutcome, ScoredChunk};
use crate::embed::Embedder;
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

/// The read path of a tenant-partitioned chunk index. Every method is scoped to one tenant: no
/// call returns another tenant's chunks. [`Retriever::retrieve`] blocks (async callers use
/// `spawn_blocking`); [`Retriever::embed_query`] is async.
#[async_trait]
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

    /// Embeds a question for a hybrid [`SearchQuery`]. `None` without an embedder, for a blank
    /// question, or when the call fails: the search then uses BM25 alone.
    async fn embed_query(&self, query: &str) -> Option<QueryVector>;

    /// The model that embeds this index's chunks and queries, if any.
    fn embedder(&self) -> Option<&Arc<dyn Embedder>>;

    /// Whether the index answers, with a short description of it (readiness checks). The
    /// embedded index is always there; a server-backed one asks its server.
    ///
    /// # Errors
    /// The server is unreachable or its schema is not Sapa's.
    async fn check(&self) -> Result<String, KnowledgeError> {
        Ok("embedded index".to_owned())
    }
}

/// The write path of a tenant-partitioned chunk index, on top of its read path. Every method
/// is scoped to one tenant: no call changes or counts another tenant's chunks. The sync
/// methods block (async callers use `spawn_blocking`).
#[async_trait]
pub trait KnowledgeBase: Retriever {
    /// Ingests one document, the format chosen from `name`'s extension, and with an embedder
    /// also embeds its chunks; identical bytes under the same name are
    /// [`IngestOutcome::Unchanged`] (and get missing vectors), changed bytes replace the
    /// document. An embedding failure still indexes the document for BM25.
    ///
    /// # Errors
    /// An unsupported or malformed document, or an index failure; never because of the
    /// embedder.
    async fn ingest(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<IngestOutcome, IngestError>;

    /// Embeds every document of the tenant that has no vectors of the embedder's model;
    /// returns how many got vectors (0 without an embedder).
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    async fn embed_missing(&self, tenant: &str) -> Result<usize, KnowledgeError>;

    /// The tenant's documents, sorted by name.
    ///
    /// # Errors
    /// An empty tenant id.
    fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError>;

    /// The chunks of one of the tenant's documents in document order; `None` when the tenant
    /// has no such document.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Option<Vec<Chunk>>, KnowledgeError>;

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

/// What [`copy_tenant`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Documents written to the target (new or changed there).
    pub written: usize,
    /// Documents the target already had with the same content.
    pub unchanged: usize,
    /// Documents the target had that the source does not, deleted.
    pub deleted: usize,
    /// Chunks of the tenant now in the target.
    pub chunks: usize,
}

/// Makes `to` hold exactly the tenant's documents of `from` (how `sapa kb reindex` moves a
/// tenant between backends): every document is read back as chunks, analyzed again and
/// written (idempotent by document id), and documents only `to` has are deleted. Vectors are
/// not copied: a target with an embedder gets them from [`KnowledgeBase::embed_missing`].
/// Blocking.
///
/// # Errors
/// An empty tenant id, or either index failing.
pub fn copy_tenant(
    from: &dyn KnowledgeBase,
    to: &dyn KnowledgeBase,
    tenant: &str,
) -> Result<CopyReport, KnowledgeError> {
    let mut report = CopyReport::default();
    let documents = from.list_documents(tenant)?;
    for info in &documents {
        let Some(chunks) = from.document_chunks(tenant, &info.id)? else {
            continue;
        };
        report.chunks += chunks.len();
        let document = PreparedDocument::from_chunks(tenant, info.clone(), chunks);
        match to.write_document(document, None) {
            Ok(IngestOutcome::Unchanged) => report.unchanged += 1,
            Ok(_) => report.written += 1,
            Err(IngestError::Index(error)) => return Err(error),
            Err(other) => {
                return Err(KnowledgeError::Backend {
                    backend: "reindex",
                    message: format!("{}: {other}", info.name),
                });
            }
        }
    }
    for stale in to.list_documents(tenant)? {
        if !documents.iter().any(|d| d.id == stale.id) && to.delete_document(tenant, &stale.id)? {
            report.deleted += 1;
        }
    }
    Ok(report)
}
