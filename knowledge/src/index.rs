//! The embedded index: tantivy BM25 over analyzed text, with per-tenant statistics kept in memory,
//! plus the exact dense-vector index ([`crate::dense`]) when chunks have been embedded; the two
//! ranked lists are fused by reciprocal rank.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur,
    Query, TermQuery,
};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    Value,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::analyzer;
use crate::dense::{DenseStore, DocVectors};
use crate::document::{
    Chunk, DocumentInfo, IngestOutcome, IngestReport, ScoredChunk, content_sha256, document_id,
};
use crate::embed::{self, Embedder, METRIC_EMBED_FALLBACKS_TOTAL};
use crate::error::{IngestError, KnowledgeError};
use crate::ingest;
use crate::relevance::{self, Fuzzy};
use crate::retriever::{QueryVector, Retriever, SearchQuery};

/// Name under which the whitespace tokenizer for pre-analyzed text is registered.
const TOKENIZER: &str = "sapa_analyzed";
/// Memory budget of the single indexing thread.
const WRITER_MEMORY_BYTES: usize = 20_000_000;
/// Candidates fetched from BM25 before re-ranking by coverage (and from the dense index).
const MIN_CANDIDATES: usize = 20;
/// The `k` of reciprocal rank fusion: `score = Σ 1 / (RRF_K + rank)`.
pub const RRF_K: f32 = 60.0;
/// Default cosine similarity from which a chunk counts as relevant on its vector alone, see
/// [`Knowledge::with_embedder`].
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.75;

const KIND_CHUNK: &str = "chunk";
const KIND_DOCUMENT: &str = "document";

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

#[derive(Debug, Clone, Copy)]
struct Fields {
    kind: Field,
    tenant: Field,
    document_id: Field,
    chunk_id: Field,
    ordinal: Field,
    name: Field,
    title: Field,
    heading_path: Field,
    text: Field,
    body: Field,
    sha256: Field,
    chunk_count: Field,
    lang: Field,
    title_tokens: Field,
}

/// A chunk's analyzed tokens; the first `title_len` come from the document title.
#[derive(Debug)]
struct IndexedTokens {
    tokens: String,
    title_len: u64,
}

fn schema() -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field("kind", STRING | STORED);
    builder.add_text_field("tenant", STRING | STORED);
    builder.add_text_field("document_id", STRING | STORED);
    builder.add_text_field("chunk_id", STRING | STORED);
    builder.add_u64_field("ordinal", INDEXED | STORED);
    builder.add_text_field("name", STORED);
    builder.add_text_field("title", STORED);
    builder.add_text_field("heading_path", STORED);
    builder.add_text_field("text", STORED);
    let body = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    builder.add_text_field("body", body);
    builder.add_text_field("sha256", STORED);
    builder.add_u64_field("chunk_count", STORED);
    builder.add_text_field("lang", STRING | STORED);
    builder.add_u64_field("title_tokens", STORED);
    builder.build()
}

impl Fields {
    fn new(schema: &Schema) -> Result<Self, KnowledgeError> {
        let get = |name: &str| schema.get_field(name).map_err(KnowledgeError::from);
        Ok(Self {
            kind: get("kind")?,
            tenant: get("tenant")?,
            document_id: get("document_id")?,
            chunk_id: get("chunk_id")?,
            ordinal: get("ordinal")?,
            name: get("name")?,
            title: get("title")?,
            heading_path: get("heading_path")?,
            text: get("text")?,
            body: get("body")?,
            sha256: get("sha256")?,
            chunk_count: get("chunk_count")?,
            lang: get("lang")?,
            title_tokens: get("title_tokens")?,
        })
    }
}

/// What the index knows about one tenant, kept in memory: its documents and the statistics BM25,
/// coverage and typo tolerance need. Rebuilt from the stored records at open.
#[derive(Debug, Default)]
pub(crate) struct TenantState {
    documents: BTreeMap<String, DocumentInfo>,
    /// Number of chunks containing each term.
    pub(crate) doc_freq: HashMap<String, u32>,
    /// Number of chunks.
    pub(crate) chunks: u64,
    /// Number of tokens over all chunks.
    pub(crate) tokens: u64,
}

impl TenantState {
    fn add_chunk(&mut self, tokens: &str) {
        self.chunks += 1;
        let mut seen = HashSet::new();
        for token in tokens.split_whitespace() {
            self.tokens += 1;
            if seen.insert(token) {
                *self.doc_freq.entry(token.to_owned()).or_default() += 1;
            }
        }
    }

    fn remove_chunk(&mut self, tokens: &str) {
        self.chunks = self.chunks.saturating_sub(1);
        let mut seen = HashSet::new();
        for token in tokens.split_whitespace() {
            self.tokens = self.tokens.saturating_sub(1);
            if seen.insert(token)
                && let Some(count) = self.doc_freq.get_mut(token)
            {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.doc_freq.remove(token);
                }
            }
        }
    }
}

/// BM25 statistics of one tenant, so that another tenant's documents never change the ranking.
struct TenantStatistics<'a> {
    searcher: &'a Searcher,
    body: Field,
    chunks: u64,
    tokens: u64,
    doc_freq: &'a HashMap<String, u64>,
}

impl Bm25StatisticsProvider for TenantStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        if field == self.body {
            Ok(self.tokens.max(1))
        } else {
            self.searcher.total_num_tokens(field)
        }
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.chunks.max(1))
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let total = self.chunks.max(1);
        if term.field() != self.body {
            // Only the tenant filter reaches here, and it does not score.
            return Ok(0);
        }
        let count = term
            .value()
            .as_str()
            .and_then(|t| self.doc_freq.get(t))
            .copied()
            .unwrap_or(0);
        Ok(count.min(total))
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

fn check_tenant(tenant: &str) -> Result<(), KnowledgeError> {
    if tenant.trim().is_empty() {
        return Err(KnowledgeError::EmptyTenant);
    }
    Ok(())
}

fn stored_str(doc: &TantivyDocument, field: Field) -> Option<&str> {
    doc.get_first(field).and_then(|v| v.as_str())
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

    /// Ingests one document; the format is chosen from `name`'s extension (.md/.markdown, .txt,
    /// .html/.htm, .csv as question,answer FAQ, .pdf text layer). Re-ingesting identical bytes
    /// under the same name is a no-op ([`IngestOutcome::Unchanged`]); changed bytes replace that
    /// document's chunks ([`IngestOutcome::Replaced`]).
    ///
    /// Blocking and lexical only: the document gets no vectors (any old ones are removed). With
    /// an embedder, use [`Knowledge::ingest`].
    ///
    /// # Errors
    /// An unsupported extension, bytes that are not UTF-8, a document without text, a malformed
    /// CSV, or an index failure; the message says what to fix.
    pub fn ingest_document(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<IngestOutcome, IngestError> {
        match self.prepare_document(tenant, name, bytes)? {
            None => Ok(IngestOutcome::Unchanged),
            Some(document) => self.write_document(document, None),
        }
    }

    /// Ingests one document like [`Knowledge::ingest_document`], and with an embedder also
    /// embeds its chunks (in batches) into the dense index. When embedding fails the document
    /// is still indexed for BM25 (logged and counted in `sapa_embedding_fallbacks_total`);
    /// ingesting the same bytes again adds the missing vectors. Parsing and index writes run
    /// on the blocking thread pool.
    ///
    /// # Errors
    /// As [`Knowledge::ingest_document`]; never because of the embedder.
    pub async fn ingest(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<IngestOutcome, IngestError> {
        let Some(embedder) = self.embedder.clone() else {
            let (k, tenant, name) = (self.clone(), tenant.to_owned(), name.to_owned());
            return blocking(move || k.ingest_document(&tenant, &name, &bytes)).await;
        };
        let prepared = {
            let (k, t, n) = (self.clone(), tenant.to_owned(), name.to_owned());
            blocking(move || k.prepare_document(&t, &n, &bytes)).await?
        };
        let Some(document) = prepared else {
            self.backfill_vectors(embedder.as_ref(), tenant, name)
                .await?;
            return Ok(IngestOutcome::Unchanged);
        };
        let texts = document.embedding_texts();
        let vectors = match embed::embed_batched(embedder.as_ref(), &texts).await {
            Ok(vectors) => Some(ChunkVectors {
                model: embedder.model().to_owned(),
                vectors,
            }),
            Err(error) => {
                metrics::counter!(METRIC_EMBED_FALLBACKS_TOTAL, "stage" => "ingest").increment(1);
                tracing::warn!(%error, document = name, "embedding failed; document indexed for BM25 only");
                None
            }
        };
        let k = self.clone();
        blocking(move || k.write_document(document, vectors)).await
    }

    /// Embeds every document of the tenant that has no vectors of the embedder's model
    /// (embedding failed at ingest, or the embedder is new). Returns how many documents got
    /// vectors; 0 without an embedder. Embedding failures are logged and counted, not returned.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub async fn embed_missing(&self, tenant: &str) -> Result<usize, KnowledgeError> {
        let Some(embedder) = self.embedder.clone() else {
            return Ok(0);
        };
        let mut embedded = 0;
        for document in self.list_documents(tenant)? {
            if self
                .backfill_vectors(embedder.as_ref(), tenant, &document.name)
                .await?
            {
                embedded += 1;
            }
        }
        Ok(embedded)
    }

    /// Embeds the chunks of an indexed document that has no vectors of the embedder's model;
    /// true when vectors were added.
    async fn backfill_vectors(
        &self,
        embedder: &dyn Embedder,
        tenant: &str,
        name: &str,
    ) -> Result<bool, KnowledgeError> {
        let model = embedder.model().to_owned();
        let missing = {
            let (k, t, n, m) = (
                self.clone(),
                tenant.to_owned(),
                name.to_owned(),
                model.clone(),
            );
            blocking(move || k.missing_vectors(&t, &n, &m)).await?
        };
        let Some((id, sha256, chunks)) = missing else {
            return Ok(false);
        };
        let texts: Vec<String> = chunks.iter().map(embedding_text).collect();
        match embed::embed_batched(embedder, &texts).await {
            Ok(vectors) => {
                let k = self.clone();
                let tenant = tenant.to_owned();
                let ids = chunks.into_iter().map(|c| c.id).collect();
                blocking(move || k.store_vectors(&tenant, &id, &sha256, &model, ids, vectors)).await
            }
            Err(error) => {
                metrics::counter!(METRIC_EMBED_FALLBACKS_TOTAL, "stage" => "ingest").increment(1);
                tracing::warn!(%error, document = name, "embedding failed; document stays BM25 only");
                Ok(false)
            }
        }
    }

    /// An indexed document of `name` without vectors of `model`: its id, content hash and
    /// chunks in order. `None` when it is not indexed or already embedded.
    fn missing_vectors(
        &self,
        tenant: &str,
        name: &str,
        model: &str,
    ) -> Result<Option<(String, String, Vec<Chunk>)>, KnowledgeError> {
        let id = document_id(tenant, name);
        let Some(sha256) = self
            .inner
            .tenants_read()
            .get(tenant)
            .and_then(|t| t.documents.get(&id))
            .map(|d| d.sha256.clone())
        else {
            return Ok(None);
        };
        if self.inner.dense.has(tenant, &id, &sha256, model) {
            return Ok(None);
        }
        let chunks = self.stored_chunks(&id)?;
        if chunks.is_empty() {
            return Ok(None);
        }
        Ok(Some((id, sha256, chunks)))
    }

    /// Stores vectors for an indexed document if its content is still `sha256`; true when
    /// stored.
    fn store_vectors(
        &self,
        tenant: &str,
        id: &str,
        sha256: &str,
        model: &str,
        chunk_ids: Vec<String>,
        vectors: Vec<Vec<f32>>,
    ) -> Result<bool, KnowledgeError> {
        let _writer = self.inner.lock_writer()?;
        if !self.inner.is_unchanged(tenant, id, sha256) {
            return Ok(false);
        }
        let Some(v) = doc_vectors(sha256, model, chunk_ids, vectors) else {
            tracing::warn!(
                document_id = id,
                "vectors do not match the chunks; document stays BM25 only"
            );
            return Ok(false);
        };
        match self.inner.dense.put(tenant, id, v) {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::warn!(%error, document_id = id, "cannot write vectors; document stays BM25 only");
                Ok(false)
            }
        }
    }

    /// Parses and analyzes a document for [`Knowledge::write_document`]; `None` when the same
    /// bytes are already indexed under this name.
    ///
    /// # Errors
    /// As [`Knowledge::ingest_document`].
    pub fn prepare_document(
        &self,
        tenant: &str,
        name: &str,
        bytes: &[u8],
    ) -> Result<Option<PreparedDocument>, IngestError> {
        check_tenant(tenant)?;
        if name.trim().is_empty() {
            return Err(IngestError::EmptyName);
        }
        let id = document_id(tenant, name);
        let sha256 = content_sha256(bytes);
        if self.inner.is_unchanged(tenant, &id, &sha256) {
            return Ok(None);
        }
        let parsed = ingest::parse(name, bytes)?;
        let chunks: Vec<(Chunk, IndexedTokens)> = parsed
            .chunks
            .into_iter()
            .enumerate()
            .map(|(n, draft)| {
                // Headings are indexed with the text so that they are searchable. The document
                // title comes first and is counted, so that coverage can discount it: it names
                // the whole document, not this passage.
                let (title_tokens, headings) = match draft.heading_path.split_first() {
                    Some((first, rest)) if !rest.is_empty() && *first == parsed.title => {
                        (analyzer::analyze(first), rest)
                    }
                    _ => (Vec::new(), draft.heading_path.as_slice()),
                };
                let mut indexed = headings.join("\n");
                indexed.push('\n');
                indexed.push_str(&draft.text);
                let title_len = title_tokens.len() as u64;
                let mut tokens = title_tokens;
                tokens.extend(analyzer::analyze(&indexed));
                let tokens = IndexedTokens {
                    tokens: tokens.join(" "),
                    title_len,
                };
                let chunk = Chunk {
                    id: format!("{id}:{n}"),
                    tenant: tenant.to_owned(),
                    document_id: id.clone(),
                    document_name: name.to_owned(),
                    title: parsed.title.clone(),
                    heading_path: draft.heading_path,
                    text: draft.text,
                };
                (chunk, tokens)
            })
            .collect();
        let info = DocumentInfo {
            id,
            name: name.to_owned(),
            title: parsed.title.clone(),
            chunks: chunks.len(),
            sha256,
        };
        Ok(Some(PreparedDocument {
            tenant: tenant.to_owned(),
            info,
            chunks,
        }))
    }

    /// Writes a prepared document (all its chunks or none), replacing an earlier version, and
    /// its chunk vectors when given (one per chunk, in order); without vectors, or with the
    /// wrong number, the document has none and is found by BM25 only.
    ///
    /// # Errors
    /// An index failure.
    pub fn write_document(
        &self,
        document: PreparedDocument,
        vectors: Option<ChunkVectors>,
    ) -> Result<IngestOutcome, IngestError> {
        let PreparedDocument {
            tenant,
            info,
            chunks,
        } = document;
        let tenant = tenant.as_str();
        let id = info.id.clone();
        let name = info.name.as_str();
        let inner = &self.inner;
        let mut writer = inner.lock_writer()?;
        // Another thread may have ingested the same bytes while we parsed.
        if inner.is_unchanged(tenant, &id, &info.sha256) {
            return Ok(IngestOutcome::Unchanged);
        }
        let existed = inner
            .tenants_read()
            .get(tenant)
            .is_some_and(|t| t.documents.contains_key(&id));
        let old_tokens = if existed {
            self.stored_chunk_tokens(&id)?
        } else {
            Vec::new()
        };
        // Old vectors go first: a search must never pair a new chunk with an old vector.
        if let Err(error) = inner.dense.remove(tenant, &id) {
            tracing::warn!(%error, document_id = %id, "cannot remove old vectors");
        }
        let write = |writer: &mut IndexWriter| -> Result<(), KnowledgeError> {
            let f = &inner.fields;
            writer.delete_term(Term::from_field_text(f.document_id, &id));
            for (n, (chunk, tokens)) in chunks.iter().enumerate() {
                let mut doc = TantivyDocument::default();
                doc.add_text(f.kind, KIND_CHUNK);
                doc.add_text(f.tenant, tenant);
                doc.add_text(f.document_id, &id);
                doc.add_text(f.chunk_id, &chunk.id);
                doc.add_u64(f.ordinal, n as u64);
                doc.add_text(f.name, name);
                doc.add_text(f.title, &chunk.title);
                doc.add_text(
                    f.heading_path,
                    serde_json::to_string(&chunk.heading_path).unwrap_or_default(),
                );
                doc.add_text(f.text, &chunk.text);
                doc.add_text(f.body, &tokens.tokens);
                doc.add_u64(f.title_tokens, tokens.title_len);
                if let Some(lang) = analyzer::detect_language(&chunk.text) {
                    doc.add_text(f.lang, lang.code());
                }
                writer.add_document(doc)?;
            }
            let mut doc = TantivyDocument::default();
            doc.add_text(f.kind, KIND_DOCUMENT);
            doc.add_text(f.tenant, tenant);
            doc.add_text(f.document_id, &id);
            doc.add_text(f.name, name);
            doc.add_text(f.title, &info.title);
            doc.add_text(f.sha256, &info.sha256);
            doc.add_u64(f.chunk_count, info.chunks as u64);
            writer.add_document(doc)?;
            writer.commit()?;
            Ok(())
        };
        if let Err(error) = write(&mut writer) {
            // Drop the half-written update so the next commit does not publish it.
            if let Err(rollback) = writer.rollback() {
                tracing::error!(error = %rollback, "index rollback failed");
            }
            return Err(error.into());
        }
        inner.reader.reload().map_err(KnowledgeError::from)?;
        {
            let mut tenants = inner.tenants_write();
            let state = tenants.entry(tenant.to_owned()).or_default();
            for tokens in &old_tokens {
                state.remove_chunk(tokens);
            }
            for (_, tokens) in &chunks {
                state.add_chunk(&tokens.tokens);
            }
            state.documents.insert(id.clone(), info.clone());
        }
        if let Some(ChunkVectors { model, vectors }) = vectors {
            let ids = chunks.iter().map(|(c, _)| c.id.clone()).collect();
            match doc_vectors(&info.sha256, &model, ids, vectors) {
                Some(v) => {
                    if let Err(error) = inner.dense.put(tenant, &id, v) {
                        tracing::warn!(%error, document_id = %id, "cannot write vectors; document stays BM25 only");
                    }
                }
                None => {
                    tracing::warn!(document_id = %id, "vectors do not match the chunks; document stays BM25 only");
                }
            }
        }
        drop(writer);
        tracing::debug!(chunks = info.chunks, replaced = existed, "document indexed");
        Ok(if existed {
            IngestOutcome::Replaced {
                chunks: info.chunks,
            }
        } else {
            IngestOutcome::Indexed {
                chunks: info.chunks,
            }
        })
    }

    /// Ingests many files; one bad file never fails the batch. Each document is named by its
    /// file name. `on_file` is called after each file (for a progress bar).
    pub fn ingest_paths(
        &self,
        tenant: &str,
        paths: &[PathBuf],
        on_file: &mut dyn FnMut(&Path),
    ) -> IngestReport {
        let mut report = IngestReport::default();
        for path in paths {
            let name = path.file_name().map_or_else(
                || path.to_string_lossy().into_owned(),
                |n| n.to_string_lossy().into_owned(),
            );
            let outcome = std::fs::read(path)
                .map_err(|source| IngestError::Read {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| self.ingest_document(tenant, &name, &bytes));
            if let Err(error) = &outcome {
                tracing::warn!(path = %path.display(), error = %error, "document not ingested");
            }
            report.outcomes.push((path.clone(), outcome));
            on_file(path);
        }
        report
    }

    /// The tenant's documents, sorted by name.
    ///
    /// # Errors
    /// An empty tenant id.
    pub fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError> {
        check_tenant(tenant)?;
        let tenants = self.inner.tenants_read();
        let mut documents: Vec<DocumentInfo> = tenants
            .get(tenant)
            .map(|t| t.documents.values().cloned().collect())
            .unwrap_or_default();
        documents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(documents)
    }

    /// Deletes one of the tenant's documents and its chunks. Returns false when the tenant has no
    /// document with this id (another tenant's id included).
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub fn delete_document(&self, tenant: &str, document_id: &str) -> Result<bool, KnowledgeError> {
        check_tenant(tenant)?;
        let inner = &self.inner;
        let mut writer = inner.lock_writer()?;
        let owned = inner
            .tenants_read()
            .get(tenant)
            .is_some_and(|t| t.documents.contains_key(document_id));
        if !owned {
            return Ok(false);
        }
        let old_tokens = self.stored_chunk_tokens(document_id)?;
        writer.delete_term(Term::from_field_text(inner.fields.document_id, document_id));
        if let Err(error) = writer.commit() {
            if let Err(rollback) = writer.rollback() {
                tracing::error!(error = %rollback, "index rollback failed");
            }
            return Err(error.into());
        }
        inner.reader.reload()?;
        if let Err(error) = inner.dense.remove(tenant, document_id) {
            tracing::warn!(%error, document_id, "cannot remove vector file");
        }
        let mut tenants = inner.tenants_write();
        if let Some(state) = tenants.get_mut(tenant) {
            for tokens in &old_tokens {
                state.remove_chunk(tokens);
            }
            state.documents.remove(document_id);
            if state.documents.is_empty() {
                tenants.remove(tenant);
            }
        }
        Ok(true)
    }

    /// Best chunks first, at most `limit`, only from `tenant`, by BM25 alone. Every query
    /// carries the tenant filter. A question without informative words, or none of whose
    /// words the tenant's documents contain, returns no chunks.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub fn search(
        &self,
        tenant: &str,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        self.search_with(tenant, &SearchQuery::text(query), limit)
    }

    /// Embeds a question for [`Knowledge::search_with`]. `None` without an embedder, for a
    /// blank question, or when the call fails (logged and counted in
    /// `sapa_embedding_fallbacks_total`): the search then uses BM25 alone.
    pub async fn embed_query(&self, query: &str) -> Option<QueryVector> {
        let embedder = self.embedder.as_ref()?;
        if query.trim().is_empty() {
            return None;
        }
        match embedder.embed(&[query.to_owned()]).await {
            Ok(mut vectors) if vectors.len() == 1 => Some(QueryVector {
                model: embedder.model().to_owned(),
                values: vectors.swap_remove(0),
            }),
            Ok(_) => None,
            Err(error) => {
                metrics::counter!(METRIC_EMBED_FALLBACKS_TOTAL, "stage" => "query").increment(1);
                tracing::warn!(%error, "question embedding failed; searching with BM25 alone");
                None
            }
        }
    }

    /// Best chunks first, at most `limit`, only from `tenant`.
    ///
    /// Without a query vector this is BM25 re-ranked by coverage ([`Knowledge::search`]).
    /// With one, the BM25 candidates and the tenant's most similar chunk vectors (cosine, exact)
    /// are fused by reciprocal rank (`score = Σ 1/(60 + rank)` over the lists a chunk is in).
    ///
    /// Relevance rule (what decides answering): a chunk's `relevance` is the larger of its
    /// lexical coverage and its *semantic relevance*, a piecewise-linear map of its cosine that
    /// reaches [`crate::DEFAULT_MIN_RELEVANCE`] exactly at the configured `min_similarity`
    /// (0 → 0, `min_similarity` → 0.5, 1 → 1). So a chunk found only by its vector makes a
    /// question answerable only when its cosine is at least `min_similarity`; below it, dense
    /// retrieval changes the order but never turns an abstention into an answer. A question
    /// without informative words still returns nothing.
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub fn search_with(
        &self,
        tenant: &str,
        query: &SearchQuery<'_>,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        check_tenant(tenant)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let terms = analyzer::analyze_query(query.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let candidates = limit.max(MIN_CANDIDATES);
        let (plan, mut lexical) = self.lexical(tenant, query.text, &terms, candidates)?;
        let dense = match query.vector {
            Some(vector) => {
                self.inner
                    .dense
                    .search(tenant, &vector.model, &vector.values, candidates)
            }
            None => Vec::new(),
        };
        let dense: Vec<(String, f32)> = dense.into_iter().filter(|(_, c)| *c > 0.0).collect();
        if dense.is_empty() {
            lexical.truncate(limit);
            return Ok(lexical);
        }

        // Reciprocal rank fusion over the two lists.
        let rrf = |rank: usize| 1.0 / (RRF_K + rank as f32 + 1.0);
        let mut fused: HashMap<String, ScoredChunk> = HashMap::new();
        for (rank, mut hit) in lexical.into_iter().enumerate() {
            hit.score = rrf(rank);
            fused.insert(hit.chunk.id.clone(), hit);
        }
        let searcher = self.inner.reader.searcher();
        for (rank, (chunk_id, cosine)) in dense.into_iter().enumerate() {
            let semantic = semantic_relevance(cosine, self.min_similarity);
            let dense_score = self.dense_weight * rrf(rank);
            if let Some(hit) = fused.get_mut(&chunk_id) {
                hit.score += dense_score;
                hit.relevance = hit.relevance.max(semantic);
                continue;
            }
            let Some((chunk, coverage)) =
                self.chunk_by_id(&searcher, tenant, &chunk_id, plan.as_ref())?
            else {
                continue;
            };
            fused.insert(
                chunk_id,
                ScoredChunk {
                    chunk,
                    score: dense_score,
                    relevance: coverage.max(semantic),
                },
            );
        }
        let mut results: Vec<ScoredChunk> = fused.into_values().collect();
        results.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.relevance.total_cmp(&a.relevance))
                .then_with(|| a.chunk.id.cmp(&b.chunk.id))
        });
        results.truncate(limit);
        Ok(results)
    }

    /// One of the tenant's chunks by id, with its coverage of `plan`; `None` when it is gone
    /// or belongs to another tenant.
    fn chunk_by_id(
        &self,
        searcher: &Searcher,
        tenant: &str,
        chunk_id: &str,
        plan: Option<&relevance::QueryPlan>,
    ) -> Result<Option<(Chunk, f32)>, KnowledgeError> {
        let fields = self.inner.fields;
        let query = TermQuery::new(
            Term::from_field_text(fields.chunk_id, chunk_id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&query, &TopDocs::with_limit(1))?;
        let Some((_, address)) = top.into_iter().next() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(address)?;
        if stored_str(&doc, fields.tenant) != Some(tenant) {
            return Ok(None);
        }
        let coverage = plan.map_or(0.0, |plan| {
            let tokens = stored_str(&doc, fields.body).unwrap_or_default();
            let title_len = doc
                .get_first(fields.title_tokens)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            plan.coverage(tokens, title_len as usize)
        });
        Ok(Some((chunk_from_doc(&doc, &fields)?, coverage)))
    }

    /// The BM25 candidates re-ranked by coverage, best first (not truncated), and the query
    /// plan when the tenant has documents.
    fn lexical(
        &self,
        tenant: &str,
        query: &str,
        terms: &[analyzer::QueryTerm],
        candidates: usize,
    ) -> Result<(Option<relevance::QueryPlan>, Vec<ScoredChunk>), KnowledgeError> {
        let query_language = analyzer::detect_language(query);
        let inner = &self.inner;
        let fields = inner.fields;
        let searcher = inner.reader.searcher();
        let plan = {
            let tenants = inner.tenants_read();
            let Some(state) = tenants.get(tenant) else {
                return Ok((None, Vec::new()));
            };
            if state.chunks == 0 {
                return Ok((None, Vec::new()));
            }
            relevance::QueryPlan::new(terms, state, &Fuzzy::default())
        };
        if !plan.has_known_terms() {
            return Ok((Some(plan), Vec::new()));
        }

        let mut groups: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for group in &plan.groups {
            let disjuncts: Vec<Box<dyn Query>> = group
                .members
                .iter()
                .filter(|m| plan.doc_freq.contains_key(&m.term))
                .map(|m| {
                    let term = TermQuery::new(
                        Term::from_field_text(fields.body, &m.term),
                        IndexRecordOption::WithFreqs,
                    );
                    Box::new(BoostQuery::new(Box::new(term), m.factor)) as Box<dyn Query>
                })
                .collect();
            if !disjuncts.is_empty() {
                groups.push((Occur::Should, Box::new(DisjunctionMaxQuery::new(disjuncts))));
            }
        }
        let tenant_filter = TermQuery::new(
            Term::from_field_text(fields.tenant, tenant),
            IndexRecordOption::Basic,
        );
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(tenant_filter), 0.0)),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(groups))),
        ]);
        let statistics = TenantStatistics {
            searcher: &searcher,
            body: fields.body,
            chunks: plan.chunks,
            tokens: plan.tokens,
            doc_freq: &plan.doc_freq,
        };
        let top = searcher.search_with_statistics_provider(
            &query,
            &TopDocs::with_limit(candidates),
            &statistics,
        )?;

        let best_bm25 = top.iter().map(|(score, _)| *score).fold(0.0f32, f32::max);
        let mut results = Vec::with_capacity(top.len());
        for (bm25, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            // Defense in depth: the filter above already guarantees this.
            if stored_str(&doc, fields.tenant) != Some(tenant) {
                continue;
            }
            let tokens = stored_str(&doc, fields.body).unwrap_or_default();
            let title_len = doc
                .get_first(fields.title_tokens)
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let relevance = plan.coverage(tokens, title_len as usize);
            let same_language = query_language.is_some()
                && stored_str(&doc, fields.lang).and_then(analyzer::Language::from_code)
                    == query_language;
            let chunk = chunk_from_doc(&doc, &fields)?;
            let score =
                relevance::rank_score(bm25 / best_bm25.max(f32::EPSILON), relevance, same_language);
            results.push(ScoredChunk {
                chunk,
                score,
                relevance,
            });
        }
        results.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.chunk.id.cmp(&b.chunk.id))
        });
        Ok((Some(plan), results))
    }

    /// A document's stored chunks in document order.
    fn stored_chunks(&self, document_id: &str) -> Result<Vec<Chunk>, KnowledgeError> {
        let fields = self.inner.fields;
        let searcher = self.inner.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(fields.document_id, document_id),
            IndexRecordOption::Basic,
        );
        let mut chunks = Vec::new();
        for address in searcher.search(&query, &DocSetCollector)? {
            let doc: TantivyDocument = searcher.doc(address)?;
            if stored_str(&doc, fields.kind) == Some(KIND_CHUNK) {
                let ordinal = doc
                    .get_first(fields.ordinal)
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                chunks.push((ordinal, chunk_from_doc(&doc, &fields)?));
            }
        }
        chunks.sort_by_key(|(ordinal, _)| *ordinal);
        Ok(chunks.into_iter().map(|(_, c)| c).collect())
    }

    /// Number of chunk vectors the tenant has in the dense index.
    pub fn vector_count(&self, tenant: &str) -> usize {
        self.inner.dense.count(tenant)
    }

    /// The analyzed token strings of a document's stored chunks (to subtract their statistics).
    fn stored_chunk_tokens(&self, document_id: &str) -> Result<Vec<String>, KnowledgeError> {
        let fields = self.inner.fields;
        let searcher = self.inner.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(fields.document_id, document_id),
            IndexRecordOption::Basic,
        );
        let addresses = searcher.search(&query, &DocSetCollector)?;
        let mut tokens = Vec::new();
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            if stored_str(&doc, fields.kind) == Some(KIND_CHUNK) {
                tokens.push(stored_str(&doc, fields.body).unwrap_or_default().to_owned());
            }
        }
        Ok(tokens)
    }
}

fn chunk_from_doc(doc: &TantivyDocument, fields: &Fields) -> Result<Chunk, KnowledgeError> {
    let get = |field: Field, name: &'static str| {
        stored_str(doc, field)
            .map(str::to_owned)
            .ok_or(KnowledgeError::Corrupt(name))
    };
    let heading_path: Vec<String> =
        serde_json::from_str(&get(fields.heading_path, "heading_path")?)
            .map_err(|_| KnowledgeError::Corrupt("heading_path"))?;
    Ok(Chunk {
        id: get(fields.chunk_id, "chunk_id")?,
        tenant: get(fields.tenant, "tenant")?,
        document_id: get(fields.document_id, "document_id")?,
        document_name: get(fields.name, "name")?,
        title: get(fields.title, "title")?,
        heading_path,
        text: get(fields.text, "text")?,
    })
}

/// Rebuilds the per-tenant state from every stored record.
fn load_tenants(
    searcher: &Searcher,
    fields: &Fields,
) -> Result<HashMap<String, TenantState>, KnowledgeError> {
    let mut tenants: HashMap<String, TenantState> = HashMap::new();
    for (segment_ord, segment) in searcher.segment_readers().iter().enumerate() {
        for doc_id in segment.doc_ids_alive() {
            let doc: TantivyDocument = searcher.doc(DocAddress::new(segment_ord as u32, doc_id))?;
            let tenant =
                stored_str(&doc, fields.tenant).ok_or(KnowledgeError::Corrupt("tenant"))?;
            let state = tenants.entry(tenant.to_owned()).or_default();
            match stored_str(&doc, fields.kind) {
                Some(KIND_CHUNK) => {
                    state.add_chunk(stored_str(&doc, fields.body).unwrap_or_default())
                }
                Some(KIND_DOCUMENT) => {
                    let get = |field: Field, name: &'static str| {
                        stored_str(&doc, field)
                            .map(str::to_owned)
                            .ok_or(KnowledgeError::Corrupt(name))
                    };
                    let info = DocumentInfo {
                        id: get(fields.document_id, "document_id")?,
                        name: get(fields.name, "name")?,
                        title: get(fields.title, "title")?,
                        chunks: doc
                            .get_first(fields.chunk_count)
                            .and_then(|v| v.as_u64())
                            .unwrap_or(0) as usize,
                        sha256: get(fields.sha256, "sha256")?,
                    };
                    state.documents.insert(info.id.clone(), info);
                }
                _ => return Err(KnowledgeError::Corrupt("kind")),
            }
        }
    }
    Ok(tenants)
}

/// A parsed, analyzed document ready for [`Knowledge::write_document`].
#[derive(Debug)]
pub struct PreparedDocument {
    tenant: String,
    info: DocumentInfo,
    chunks: Vec<(Chunk, IndexedTokens)>,
}

impl PreparedDocument {
    /// The document as it will be listed.
    pub fn info(&self) -> &DocumentInfo {
        &self.info
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter().map(|(c, _)| c)
    }

    /// The text to embed for each chunk, in order: its headings, then its text.
    pub fn embedding_texts(&self) -> Vec<String> {
        self.chunks().map(embedding_text).collect()
    }
}

/// The text embedded for a chunk: its heading path (document title first), then its text.
fn embedding_text(chunk: &Chunk) -> String {
    let headings = if chunk.heading_path.is_empty() {
        chunk.title.clone()
    } else {
        chunk.heading_path.join(" > ")
    };
    format!("{headings}\n{}", chunk.text)
}

/// One vector per chunk of a document, from one model.
#[derive(Debug, Clone)]
pub struct ChunkVectors {
    /// The embedding model.
    pub model: String,
    /// Unit vectors, one per chunk, in chunk order.
    pub vectors: Vec<Vec<f32>>,
}

/// Packs per-chunk vectors; `None` when they are empty or not all of one dimension.
fn doc_vectors(
    sha256: &str,
    model: &str,
    chunk_ids: Vec<String>,
    vectors: Vec<Vec<f32>>,
) -> Option<DocVectors> {
    let dim = vectors.first().map_or(0, Vec::len);
    if dim == 0 || vectors.len() != chunk_ids.len() || vectors.iter().any(|v| v.len() != dim) {
        return None;
    }
    let mut data = Vec::with_capacity(dim * vectors.len());
    for mut v in vectors {
        if !embed::normalize(&mut v) {
            return None;
        }
        data.extend(v);
    }
    Some(DocVectors {
        sha256: sha256.to_owned(),
        model: model.to_owned(),
        dim,
        chunk_ids,
        data,
    })
}

/// Semantic relevance of a cosine: piecewise linear, 0 → 0, `min_similarity` →
/// [`crate::DEFAULT_MIN_RELEVANCE`], 1 → 1.
pub(crate) fn semantic_relevance(cosine: f32, min_similarity: f32) -> f32 {
    let mid = crate::DEFAULT_MIN_RELEVANCE;
    let cosine = cosine.clamp(0.0, 1.0);
    if cosine >= min_similarity {
        mid + (1.0 - mid) * (cosine - min_similarity) / (1.0 - min_similarity)
    } else {
        mid * cosine / min_similarity
    }
}

/// Runs blocking index work on the blocking thread pool; a panic there resumes here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

impl Retriever for Knowledge {
    fn retrieve(
        &self,
        tenant: &str,
        query: &SearchQuery<'_>,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        self.search_with(tenant, query, limit)
    }

    fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError> {
        Knowledge::list_documents(self, tenant)
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

#[cfg(test)]
mod tests {
    use super::semantic_relevance;
    use crate::DEFAULT_MIN_RELEVANCE;

    #[test]
    fn semantic_relevance_reaches_the_answer_threshold_exactly_at_min_similarity() {
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(semantic_relevance(0.75, 0.75), DEFAULT_MIN_RELEVANCE));
        assert!(close(semantic_relevance(1.0, 0.75), 1.0));
        assert!(close(semantic_relevance(0.0, 0.75), 0.0));
        assert!(close(semantic_relevance(-0.3, 0.75), 0.0));
        assert!(semantic_relevance(0.749, 0.75) < DEFAULT_MIN_RELEVANCE);
        let mut last = -1.0;
        for step in 0..=100 {
            let r = semantic_relevance(step as f32 / 100.0, 0.6);
            assert!(r >= last, "not monotonic at {step}");
            last = r;
        }
    }
}
