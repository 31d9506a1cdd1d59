//! The embedded index: tantivy BM25 over analyzed text, with per-tenant statistics kept in memory,
//! plus the exact dense-vector index ([`crate::dense`]) when chunks have been embedded; the two
//! ranked lists are fused by reciprocal rank.
//!
//! - `schema`: the tantivy schema, its fields and reading chunks back from stored records.
//! - `stats`: the per-tenant statistics in memory and the per-tenant BM25 statistics provider.
//! - `ingest`: preparing and writing documents, listing and deleting them.
//! - `backfill`: chunk vectors and embedding documents that have none.
//! - `search`: lexical search re-ranked by coverage, and its fusion with the dense index.

mod backfill;
mod ingest;
mod schema;
mod search;
mod stats;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use tantivy::directory::MmapDirectory;
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy};

use crate::dense::DenseStore;
use crate::document::{Chunk, DocumentInfo, IngestOutcome, ScoredChunk};
use crate::embed::Embedder;
use crate::error::{IngestError, KnowledgeError};
use crate::retriever::{KnowledgeBase, QueryVector, Retriever, SearchQuery};
use schema::{Fields, TOKENIZER, schema};
use stats::load_tenants;

pub use backfill::ChunkVectors;
pub(crate) use backfill::embedding_text;
pub use ingest::PreparedDocument;
pub(crate) use ingest::prepare;
pub use search::RRF_K;
pub(crate) use search::{MIN_CANDIDATES, semantic_relevance};
pub(crate) use stats::TenantState;

/// Memory budget of the single indexing thread.
const WRITER_MEMORY_BYTES: usize = 20_000_000;
/// Default cosine similarity from which a chunk counts as relevant on its vector alone, see
/// [`Knowledge::with_embedder`].
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.75;

/// The knowledge base: ingest documents per tenant and search them.
///
/// Cheap to clone; clones share one index. All methods are blocking (the gateway calls them
/// from `spawn_blocking`) and safe to call from several threads: writes are serialized, searches
/// run in parallel with each other and with writes.
#[derive(Clone)]
pub struct Knowledge {
    inner: Arc<Inner>,
    embedder: Option<Arc<dyn Embedder>>,
    min_similarity: f32,
    dense_weight: f32,
}

struct Inner {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    tenants: RwLock<HashMap<String, TenantState>>,
    dense: DenseStore,
    location: Option<PathBuf>,
}

impl fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenants = self.inner.tenants_read().len();
        f.debug_struct("Knowledge")
            .field("location", &self.inner.location)
            .field("tenants", &tenants)
            .field(
                "embedder",
                &self.embedder.as_ref().map(|e| e.model().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn tenants_read(&self) -> RwLockReadGuard<'_, HashMap<String, TenantState>> {
        // The state is only mutated after a successful commit and never left half-updated, so a
        // poisoned lock still guards consistent data.
        self.tenants.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the tenant's document `id` is indexed with content `sha256`.
    fn is_unchanged(&self, tenant: &str, id: &str, sha256: &str) -> bool {
        self.tenants_read()
            .get(tenant)
            .and_then(|t| t.documents.get(id))
            .is_some_and(|d| d.sha256 == sha256)
    }

    fn tenants_write(&self) -> RwLockWriteGuard<'_, HashMap<String, TenantState>> {
        self.tenants.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the writer. After a panic in another writer the uncommitted operations are rolled
    /// back, so a half-applied update is never committed later.
    fn lock_writer(&self) -> Result<MutexGuard<'_, IndexWriter>, KnowledgeError> {
        match self.writer.lock() {
            Ok(guard) => Ok(guard),
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.rollback()?;
                self.writer.clear_poison();
                Ok(guard)
            }
        }
    }
}

pub(crate) fn check_tenant(tenant: &str) -> Result<(), KnowledgeError> {
    if tenant.trim().is_empty() {
        return Err(KnowledgeError::EmptyTenant);
    }
    Ok(())
}

impl Knowledge {
    /// Opens (creating if missing) the embedded index persisted under `dir`.
    ///
    /// # Errors
    /// The directory cannot be created or opened, the index in it was written with another
    /// schema, or another process holds its writer lock.
    pub fn open(dir: &Path) -> Result<Self, KnowledgeError> {
        std::fs::create_dir_all(dir).map_err(|source| KnowledgeError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let directory = MmapDirectory::open(dir).map_err(|source| KnowledgeError::OpenDir {
            path: dir.to_owned(),
            source,
        })?;
        let index = Index::open_or_create(directory, schema())?;
        Self::from_index(index, Some(dir.to_owned()))
    }

    /// Adds an embedder: ingest through [`Knowledge::ingest`] then also embeds chunks into the
    /// dense index, and [`Knowledge::embed_query`] yields query vectors for hybrid search.
    ///
    /// `min_similarity` is the cosine from which a chunk counts as relevant on its vector
    /// alone (its `relevance` reaches [`crate::DEFAULT_MIN_RELEVANCE`]); it depends on the
    /// model, so it is configurable. See [`Knowledge::search_with`].
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>, min_similarity: f32) -> Self {
        self.embedder = Some(embedder);
        self.min_similarity = min_similarity.clamp(0.01, 0.999);
        self
    }

    /// Weight of the dense list in the fusion (the BM25 list has weight 1): each chunk scores
    /// `1/(k + rank)` from BM25 plus `weight/(k + rank)` from its vector. 1 is plain RRF; lower
    /// lets the analyzer's ranking lead and vectors break ties and add paraphrases.
    pub fn with_dense_weight(mut self, weight: f32) -> Self {
        self.dense_weight = weight.clamp(0.0, 1.0);
        self
    }

    /// The configured embedder, if any.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// An index in RAM, for tests and benchmarks.
    ///
    /// # Errors
    /// Only if tantivy cannot start its writer.
    pub fn in_memory() -> Result<Self, KnowledgeError> {
        Self::from_index(Index::create_in_ram(schema()), None)
    }

    fn from_index(index: Index, location: Option<PathBuf>) -> Result<Self, KnowledgeError> {
        index.tokenizers().register(
            TOKENIZER,
            TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
        );
        let fields = Fields::new(&index.schema())?;
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let tenants = load_tenants(&reader.searcher(), &fields)?;
        let dense_dir = location.as_ref().map(|dir| dir.join("dense"));
        let dense =
            DenseStore::open(dense_dir.clone()).map_err(|source| KnowledgeError::CreateDir {
                path: dense_dir.unwrap_or_default(),
                source,
            })?;
        // Vectors written for content the text index does not hold (a crash between the two
        // writes) are dropped: those documents count as not embedded.
        dense.retain(|tenant, id, sha256| {
            tenants
                .get(tenant)
                .and_then(|t| t.documents.get(id))
                .is_some_and(|d| d.sha256 == sha256)
        });
        Ok(Self {
            inner: Arc::new(Inner {
                reader,
                writer: Mutex::new(writer),
                fields,
                tenants: RwLock::new(tenants),
                dense,
                location,
            }),
            embedder: None,
            min_similarity: DEFAULT_MIN_SIMILARITY,
            dense_weight: 1.0,
        })
    }
}

/// Runs blocking index work on the blocking thread pool; a panic there resumes here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

#[async_trait]
impl Retriever for Knowledge {
    fn retrieve(
        &self,
        tenant: &str,
        query: &SearchQuery<'_>,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        self.search_with(tenant, query, limit)
    }

    async fn embed_query(&self, query: &str) -> Option<QueryVector> {
        Knowledge::embed_query(self, query).await
    }

    fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        Knowledge::embedder(self)
    }
}

#[async_trait]
impl KnowledgeBase for Knowledge {
    async fn ingest(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<IngestOutcome, IngestError> {
        Knowledge::ingest(self, tenant, name, bytes).await
    }

    async fn embed_missing(&self, tenant: &str) -> Result<usize, KnowledgeError> {
        Knowledge::embed_missing(self, tenant).await
    }

    fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError> {
        Knowledge::list_documents(self, tenant)
    }

    fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Option<Vec<Chunk>>, KnowledgeError> {
        Knowledge::document_chunks(self, tenant, document_id)
    }

    fn delete_document(&self, tenant: &str, document_id: &str) -> Result<bool, KnowledgeError> {
        Knowledge::delete_document(self, tenant, document_id)
    }

    fn write_document(
        &self,
        document: PreparedDocument,
        vectors: Option<ChunkVectors>,
    ) -> Result<IngestOutcome, IngestError> {
        Knowledge::write_document(self, document, vectors)
    }
}
