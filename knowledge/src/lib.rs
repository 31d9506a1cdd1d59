//! Knowledge: documents, chunks, the Indonesian/English analyzer and the embedded index.
//!
//! A tenant's documents (Markdown, plain text, HTML, CSV FAQ, PDF text layer) are split into
//! heading-aware chunks, analyzed (slang, stopwords, Indonesian stemming, prices) and indexed with BM25.
//! With an [`embed::Embedder`] configured, chunks are also embedded into an exact dense index and
//! searches fuse both lists by reciprocal rank ([`Knowledge::search_with`]).
//! [`Knowledge::search`] returns the best chunks with a `relevance` in `[0, 1]`; callers abstain
//! when no chunk reaches [`DEFAULT_MIN_RELEVANCE`].
//!
//! # Layout
//! - `analyzer`: the text analysis shared by indexing and querying, and its word lists.
//! - `ingest`: format detection and parsing into chunks (`markdown`, `html`, `text`, `csv`, `pdf`,
//!   `chunk` for splitting long sections with overlap).
//! - `index`: [`Knowledge`], the tantivy index (`schema`), per-tenant statistics in memory
//!   (`stats`), ingest, embedding backfill and hybrid search with fusion (`search`).
//! - `dense`: the exact per-tenant dense-vector index and its files.
//! - `embed`: [`embed::Embedder`], the OpenAI-compatible embeddings client and a hashed test double.
//! - `retriever`: [`Retriever`] (read path) and [`KnowledgeBase`] (write path), the index
//!   boundary a second backend (Qdrant) would implement.
//! - `qdrant` (feature `qdrant`): [`qdrant::QdrantKnowledge`], the same traits over a Qdrant
//!   collection shared by replicas.
//! - `relevance`: query planning (IDF weights, typo corrections) and the coverage measure.
//! - `document`, `error`: the public data types and error enums.
//! - `llm`: [`llm::LlmProvider`], the OpenAI-compatible chat client and a scripted double.
//! - `eval`: recall@k / MRR / abstain accuracy over a JSONL question file.
//!
//! # Invariants
//! - Every query carries the tenant filter, and BM25 statistics are per tenant: one tenant's
//!   documents never appear in, nor change the ranking of, another tenant's results. Dense
//!   vectors are stored and searched per tenant (one map and one directory per tenant).
//! - A chunk's vector is stored with the chunk id and the document's content hash; replacing or
//!   deleting a document removes its vectors first.
//! - Indexing and querying use the same analyzer; changing it requires re-ingesting.
//! - A chunk id is `{document_id}:{n}` and a document id depends only on (tenant, name), so
//!   re-ingesting a document keeps its ids.
//! - An ingest either commits all of a document's chunks or none of them.
//! - `knowledge` knows nothing about conversations or channels.

pub mod analyzer;
mod dense;
mod document;
pub mod embed;
mod error;
pub mod eval;
mod index;
pub mod ingest;
pub mod llm;
#[cfg(feature = "qdrant")]
pub mod qdrant;
mod relevance;
mod retriever;

pub use document::{Chunk, DocumentInfo, IngestOutcome, IngestReport, ScoredChunk, document_id};
pub use error::{EvalError, IngestError, KnowledgeError};
pub use eval::EvalReport;
pub use index::{ChunkVectors, DEFAULT_MIN_SIMILARITY, Knowledge, PreparedDocument, RRF_K};
pub use retriever::{CopyReport, KnowledgeBase, QueryVector, Retriever, SearchQuery, copy_tenant};

/// Relevance under which the caller should not answer from the knowledge base (clarify or hand
/// off instead). See [`ScoredChunk::relevance`].
pub const DEFAULT_MIN_RELEVANCE: f32 = 0.5;
