//! [`QdrantKnowledge`]: the knowledge base in a Qdrant collection shared by every replica
//! (`knowledge.backend = "qdrant"`), the second implementation of [`Retriever`] and
//! [`KnowledgeBase`].
//!
//! - **Multitenancy** as Qdrant documents it: one collection per deployment, a `tenant`
//!   keyword payload index with `is_tenant`, and the tenant filter on every call.
//! - **Lexical retrieval without an embedder**: each chunk has a `lexical` sparse vector of
//!   its analyzed terms (the same Indonesian/English analyzer as the embedded index: stems,
//!   slang, prices) holding BM25's term-frequency part; the query vector holds the tenant's
//!   IDF of the question's terms (typo corrections included, from the tenant's vocabulary), so
//!   the dot product is BM25 with per-tenant statistics. Qdrant's own `idf` modifier is
//!   collection-wide and would let one tenant's documents shift another's scores, so it is not
//!   used. The candidates are re-ranked by coverage exactly as in the embedded index.
//! - **Per-tenant statistics** (document frequencies, chunk and token counts) are rebuilt from
//!   the tenant's chunk points and cached per replica; a manifest point per tenant carries a
//!   revision that every write changes, and each search reads it first (one small call), so a
//!   document written through another replica is searched with fresh statistics at once.
//! - **Hybrid**: with `[embeddings]`, chunks also get a `dense` vector and a question with a
//!   vector is answered by one Query API batch: the sparse list, the dense list, and their
//!   reciprocal rank fusion (`rrf`, k = 60, weights 1 and `dense_weight`) computed by Qdrant,
//!   which gives the order; the two lists give coverage and cosine for the relevance rule of
//!   [`crate::Knowledge::search_with`].
//! - **Idempotent writes by document id**: point ids are derived from (tenant, chunk id), so
//!   writing a document again overwrites its chunks; leftovers of an earlier version (another
//!   content hash) are deleted by filter afterwards, then the document point and the manifest.
//!   Writes of one process are serialized; two replicas writing the same document at the same
//!   moment can leave it half replaced until the next upload of it.

mod bridge;
mod points;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, GetPointsBuilder, KeywordIndexParamsBuilder, PayloadSchemaType,
    PointStruct, PointVectors, PrefetchQuery, PrefetchQueryBuilder, Query, QueryBatchPointsBuilder,
    QueryPoints, QueryPointsBuilder, Rrf, ScoredPoint, ScrollPointsBuilder,
    SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpdatePointVectorsBuilder,
    UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
    vectors_config,
};

use self::bridge::Bridge;
use self::points::{
    ChunkPayload, DENSE, DOCUMENT_ID, DocumentPayload, KIND, KIND_CHUNK, KIND_DOCUMENT,
    KIND_MANIFEST, LEXICAL, ManifestPayload, SHA256, TENANT, backend, document_filter,
    from_payload, kind_filter, to_payload,
};
use crate::analyzer;
use crate::document::{
    Chunk, DocumentInfo, IngestOutcome, ScoredChunk, content_sha256, document_id,
};
use crate::embed::{self, Embedder, METRIC_EMBED_FALLBACKS_TOTAL};
use crate::error::{IngestError, KnowledgeError};
use crate::index::{
    ChunkVectors, DEFAULT_MIN_SIMILARITY, MIN_CANDIDATES, PreparedDocument, RRF_K, TenantState,
    check_tenant, embedding_text, prepare, semantic_relevance,
};
use crate::relevance::{self, Fuzzy, QueryPlan};
use crate::retriever::{KnowledgeBase, QueryVector, Retriever, SearchQuery};

/// The `backend` of errors about a collection that is not Sapa's (a configuration mistake,
/// unlike an unreachable server).
const SCHEMA: &str = "qdrant collection";
/// Points written per upsert call.
const UPSERT_BATCH: usize = 256;
/// Sparse candidates fetched per candidate kept: the stored term weights use the average
/// chunk length at write time, so the exact rescoring may reorder the tail.
const OVERFETCH: usize = 3;
/// Points read per scroll call.
const SCROLL_PAGE: u32 = 1024;

/// Where the collection is.
#[derive(Clone)]
pub struct QdrantSettings {
    /// gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    /// API key; empty for none.
    pub api_key: String,
    /// Collection name.
    pub collection: String,
    /// Limit of one call.
    pub timeout: Duration,
}

impl fmt::Debug for QdrantSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantSettings")
            .field("url", &self.url)
            .field("api_key", &if self.api_key.is_empty() { "" } else { "***" })
            .field("collection", &self.collection)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What `sapa check` reports about the collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionReport {
    /// The collection name.
    pub collection: String,
    /// Points in it (all tenants).
    pub points: u64,
    /// The size of its dense vectors, when it has them.
    pub dense_size: Option<u64>,
}

/// The knowledge base in Qdrant. Cheap to clone; clones share one client and cache.
#[derive(Clone)]
pub struct QdrantKnowledge {
    inner: Arc<Inner>,
    embedder: Option<Arc<dyn Embedder>>,
    min_similarity: f32,
    dense_weight: f32,
}

struct Inner {
    client: Qdrant,
    collection: String,
    /// Set once the collection is known to exist with Sapa's schema: the size of its dense
    /// vectors, `None` when it has none.
    layout: tokio::sync::OnceCell<Option<u64>>,
    /// The embedder that sizes a new collection's dense vector.
    probe: Option<Arc<dyn Embedder>>,
    bridge: Bridge,
    /// Per tenant: the manifest revision the statistics were built at, and the statistics.
    tenants: Mutex<HashMap<String, Arc<Cached>>>,
    /// Serializes this process's writes.
    writes: tokio::sync::Mutex<()>,
}

struct Cached {
    revision: String,
    state: TenantState,
}

impl fmt::Debug for QdrantKnowledge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantKnowledge")
            .field("collection", &self.inner.collection)
            .field("dense_size", &self.inner.layout.get())
            .field(
                "embedder",
                &self.embedder.as_ref().map(|e| e.model().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

fn call_error(call: &'static str) -> impl FnOnce(qdrant_client::QdrantError) -> KnowledgeError {
    move |error| backend(format!("{call} failed: {error}"))
}

impl QdrantKnowledge {
    /// Connects to Qdrant and makes sure the collection exists with Sapa's schema, creating it
    /// (and its payload indexes) when missing. With an embedder, a new collection gets a dense
    /// vector of the model's size (asked by embedding one probe text).
    ///
    /// # Errors
    /// Qdrant is unreachable, the collection exists with another schema (the message says
    /// what differs), or the embedder cannot tell its vector size for a new collection.
    pub async fn connect(
        settings: &QdrantSettings,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, KnowledgeError> {
        let bridge = Bridge::start().map_err(|e| backend(format!("cannot start: {e}")))?;
        let mut builder = Qdrant::from_url(&settings.url)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .skip_compatibility_check();
        if !settings.api_key.is_empty() {
            builder = builder.api_key(settings.api_key.clone());
        }
        let client = builder
            .build()
            .map_err(|e| backend(format!("qdrant.url {:?}: {e}", settings.url)))?;
        let inner = Arc::new(Inner {
            client,
            collection: settings.collection.clone(),
            layout: tokio::sync::OnceCell::new(),
            probe: embedder.clone(),
            bridge,
            tenants: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
        });
        let started = inner.clone();
        match inner
            .bridge
            .run(async move { started.dense_size().await })
            .await
        {
            Ok(None) if embedder.is_some() => tracing::warn!(
                collection = settings.collection,
                "the Qdrant collection has no dense vector: retrieval stays lexical; reindex into a new collection to use [embeddings]"
            ),
            Ok(_) => {}
            // A collection that is not Sapa's is a configuration mistake: refuse to start.
            Err(
                error @ KnowledgeError::Backend {
                    backend: SCHEMA, ..
                },
            ) => return Err(error),
            // Unreachable: start anyway (ingress keeps accepting); every knowledge call tries
            // again, and fails, until Qdrant answers.
            Err(error) => tracing::warn!(
                %error,
                "Qdrant is unreachable at start: knowledge calls fail until it answers"
            ),
        }
        Ok(Self {
            inner,
            embedder,
            min_similarity: DEFAULT_MIN_SIMILARITY,
            dense_weight: 1.0,
        })
    }

    /// The cosine from which a chunk counts as relevant on its vector alone, as
    /// [`crate::Knowledge::with_embedder`].
    pub fn with_min_similarity(mut self, min_similarity: f32) -> Self {
        self.min_similarity = min_similarity.clamp(0.01, 0.999);
        self
    }

    /// Weight of the dense list in Qdrant's fusion (the sparse list has 1), as
    /// [`crate::Knowledge::with_dense_weight`].
    pub fn with_dense_weight(mut self, weight: f32) -> Self {
        self.dense_weight = weight.clamp(0.0, 1.0);
        self
    }

    /// Checks that Qdrant answers and the collection has Sapa's schema.
    ///
    /// # Errors
    /// As [`QdrantKnowledge::connect`].
    pub async fn check(&self) -> Result<CollectionReport, KnowledgeError> {
        let inner = self.inner.clone();
        self.inner
            .bridge
            .run(async move {
                inner.dense_size().await?;
                let info = inner
                    .client
                    .collection_info(&inner.collection)
                    .await
                    .map_err(call_error("collection info"))?;
                let result = info
                    .result
                    .ok_or_else(|| backend("collection info is empty".to_owned()))?;
                let dense_size = check_schema(&inner.collection, &result)?;
                Ok(CollectionReport {
                    collection: inner.collection.clone(),
                    points: result.points_count.unwrap_or(0),
                    dense_size,
                })
            })
            .await
    }
}

/// Creates the collection when missing, then checks its schema; returns its dense size.
async fn ensure_collection(
    client: &Qdrant,
    collection: &str,
    embedder: Option<Arc<dyn Embedder>>,
) -> Result<Option<u64>, KnowledgeError> {
    let exists = client
        .collection_exists(collection)
        .await
        .map_err(call_error("collection check"))?;
    if !exists {
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(LEXICAL, SparseVectorParamsBuilder::default());
        let mut create = CreateCollectionBuilder::new(collection).sparse_vectors_config(sparse);
        if let Some(embedder) = embedder {
            let probe = embedder
                .embed(&["ukuran vektor / vector size".to_owned()])
                .await
                .map_err(|e| {
                    backend(format!(
                        "creating collection {collection:?} needs the embedding size, and the embeddings endpoint failed: {e}"
                    ))
                })?;
            let size = probe.first().map_or(0, Vec::len) as u64;
            let mut dense = VectorsConfigBuilder::default();
            dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(size, Distance::Cosine));
            create = create.vectors_config(dense);
        }
        if let Err(error) = client.create_collection(create).await {
            // Another replica may have created it at the same moment.
            if !client
                .collection_exists(collection)
                .await
                .map_err(call_error("collection check"))?
            {
                return Err(backend(format!(
                    "cannot create collection {collection:?}: {error}"
                )));
            }
        } else {
            tracing::info!(collection, "Qdrant collection created");
        }
    }
    // Idempotent: creating an index that exists is accepted.
    for (field, is_tenant) in [
        (TENANT, true),
        (KIND, false),
        (DOCUMENT_ID, false),
        (SHA256, false),
    ] {
        client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(collection, field, FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(is_tenant))
                    .wait(true),
            )
            .await
            .map_err(call_error("payload index"))?;
    }
    let info = client
        .collection_info(collection)
        .await
        .map_err(call_error("collection info"))?
        .result
        .ok_or_else(|| backend("collection info is empty".to_owned()))?;
    check_schema(collection, &info)
}

/// The collection must have the `lexical` sparse vector, the tenant index, and a cosine
/// `dense` vector if any; returns the dense size.
fn check_schema(
    collection: &str,
    info: &qdrant_client::qdrant::CollectionInfo,
) -> Result<Option<u64>, KnowledgeError> {
    let params = info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .ok_or_else(|| schema_error(format!("collection {collection:?} has no parameters")))?;
    let has_lexical = params
        .sparse_vectors_config
        .as_ref()
        .is_some_and(|s| s.map.contains_key(LEXICAL));
    if !has_lexical {
        return Err(schema_error(format!(
            "collection {collection:?} has no sparse vector {LEXICAL:?}: it was not created by Sapa; set qdrant.collection to a new name"
        )));
    }
    let tenant_indexed = info
        .payload_schema
        .get(TENANT)
        .is_some_and(|schema| schema.data_type == PayloadSchemaType::Keyword as i32);
    if !tenant_indexed {
        return Err(schema_error(format!(
            "collection {collection:?} has no keyword index on {TENANT:?}"
        )));
    }
    let dense = match params
        .vectors_config
        .as_ref()
        .and_then(|v| v.config.as_ref())
    {
        Some(vectors_config::Config::ParamsMap(map)) => map.map.get(DENSE).cloned(),
        Some(vectors_config::Config::Params(_)) => {
            return Err(schema_error(format!(
                "collection {collection:?} has an unnamed vector: it was not created by Sapa; set qdrant.collection to a new name"
            )));
        }
        None => None,
    };
    match dense {
        Some(params) if params.distance != Distance::Cosine as i32 => Err(schema_error(format!(
            "collection {collection:?}: vector {DENSE:?} must use cosine distance"
        ))),
        Some(params) => Ok(Some(params.size)),
        None => Ok(None),
    }
}

fn schema_error(message: String) -> KnowledgeError {
    KnowledgeError::Backend {
        backend: SCHEMA,
        message,
    }
}

impl Inner {
    /// Makes sure the collection exists with Sapa's schema (once per process; retried after
    /// a failure) and returns its dense size.
    async fn dense_size(&self) -> Result<Option<u64>, KnowledgeError> {
        self.layout
            .get_or_try_init(|| {
                ensure_collection(&self.client, &self.collection, self.probe.clone())
            })
            .await
            .copied()
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Cached>> {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    fn forget(&self, tenant: &str) {
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    /// The tenant's manifest revision; empty when it has never been written.
    async fn revision(&self, tenant: &str) -> Result<String, KnowledgeError> {
        self.dense_size().await?;
        let response = self
            .client
            .get_points(
                GetPointsBuilder::new(&self.collection, vec![points::manifest_point(tenant)])
                    .with_payload(true),
            )
            .await
            .map_err(call_error("manifest read"))?;
        match response.result.into_iter().next() {
            Some(point) => Ok(from_payload::<ManifestPayload>(point.payload)?.revision),
            None => Ok(String::new()),
        }
    }

    /// The tenant's term statistics, rebuilt from its chunk points when the manifest changed.
    async fn state(&self, tenant: &str) -> Result<Arc<Cached>, KnowledgeError> {
        let revision = self.revision(tenant).await?;
        if let Some(cached) = self.cached(tenant)
            && cached.revision == revision
        {
            return Ok(cached);
        }
        let mut state = TenantState::default();
        if !revision.is_empty() {
            self.scroll(
                kind_filter(tenant, KIND_CHUNK),
                Some(&["tokens"]),
                |point| {
                    let tokens = point
                        .payload
                        .get("tokens")
                        .and_then(|v| v.as_str())
                        .map(String::as_str)
                        .unwrap_or_default();
                    state.add_chunk(tokens);
                    Ok(())
                },
            )
            .await?;
        }
        let cached = Arc::new(Cached { revision, state });
        self.tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_owned(), cached.clone());
        Ok(cached)
    }

    /// Visits every point matching `filter`, with the payload `fields` (all when `None`).
    async fn scroll(
        &self,
        filter: Filter,
        fields: Option<&[&str]>,
        mut visit: impl FnMut(qdrant_client::qdrant::RetrievedPoint) -> Result<(), KnowledgeError>,
    ) -> Result<(), KnowledgeError> {
        self.dense_size().await?;
        let mut offset = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .filter(filter.clone())
                .limit(SCROLL_PAGE)
                .with_vectors(false);
            request = match fields {
                Some(fields) => {
                    request.with_payload(qdrant_client::qdrant::PayloadIncludeSelector::new(
                        fields.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>(),
                    ))
                }
                None => request.with_payload(true),
            };
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let page = self
                .client
                .scroll(request)
                .await
                .map_err(call_error("scroll"))?;
            for point in page.result {
                visit(point)?;
            }
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn document(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Option<DocumentPayload>, KnowledgeError> {
        self.dense_size().await?;
        let response = self
            .client
            .get_points(
                GetPointsBuilder::new(
                    &self.collection,
                    vec![points::document_point(tenant, document_id)],
                )
                .with_payload(true),
            )
            .await
            .map_err(call_error("document read"))?;
        response
            .result
            .into_iter()
            .next()
            .map(|point| from_payload::<DocumentPayload>(point.payload))
            .transpose()
    }

    /// Marks the tenant changed for every replica.
    async fn bump(&self, tenant: &str) -> Result<(), KnowledgeError> {
        let manifest = ManifestPayload {
            tenant: tenant.to_owned(),
            kind: KIND_MANIFEST.to_owned(),
            revision: random_revision(),
        };
        self.client
            .upsert_points(
                UpsertPointsBuilder::new(
                    &self.collection,
                    vec![PointStruct::new(
                        points::manifest_point(tenant),
                        HashMap::<String, Vector>::new(),
                        to_payload(&manifest)?,
                    )],
                )
                .wait(true),
            )
            .await
            .map_err(call_error("manifest write"))?;
        self.forget(tenant);
        Ok(())
    }

    async fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError> {
        let mut documents = Vec::new();
        self.scroll(kind_filter(tenant, KIND_DOCUMENT), None, |point| {
            documents.push(from_payload::<DocumentPayload>(point.payload)?.info());
            Ok(())
        })
        .await?;
        documents.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(documents)
    }

    async fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Option<Vec<Chunk>>, KnowledgeError> {
        if self.document(tenant, document_id).await?.is_none() {
            return Ok(None);
        }
        let mut chunks: Vec<(u64, Chunk)> = Vec::new();
        let mut filter = document_filter(tenant, document_id);
        filter
            .must
            .push(Condition::matches(KIND, KIND_CHUNK.to_owned()));
        self.scroll(filter, None, |point| {
            let payload = from_payload::<ChunkPayload>(point.payload)?;
            chunks.push((payload.n, payload.into_chunk()));
            Ok(())
        })
        .await?;
        chunks.sort_by_key(|(n, _)| *n);
        Ok(Some(chunks.into_iter().map(|(_, c)| c).collect()))
    }

    async fn delete_document(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<bool, KnowledgeError> {
        let _write = self.writes.lock().await;
        let existed = self.document(tenant, document_id).await?.is_some();
        if !existed {
            return Ok(false);
        }
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(document_filter(tenant, document_id))
                    .wait(true),
            )
            .await
            .map_err(call_error("delete"))?;
        self.bump(tenant).await?;
        Ok(true)
    }

    /// Writes a prepared document: its chunk points, then the removal of an earlier
    /// version's leftovers, the document point and the manifest.
    async fn write_document(
        &self,
        document: PreparedDocument,
        vectors: Option<ChunkVectors>,
    ) -> Result<IngestOutcome, KnowledgeError> {
        let _write = self.writes.lock().await;
        let dense_size = self.dense_size().await?;
        let PreparedDocument {
            tenant,
            info,
            chunks,
        } = document;
        let vectors = vectors.filter(|v| {
            let fits = v.vectors.len() == chunks.len()
                && dense_size.is_some_and(|size| {
                    v.vectors.iter().all(|vector| vector.len() as u64 == size)
                });
            if !fits {
                tracing::warn!(document_id = %info.id, "vectors do not match the chunks or the collection; document stays lexical only");
            }
            fits
        });
        let model = vectors.as_ref().map(|v| v.model.clone());
        let existing = self.document(&tenant, &info.id).await?;
        if let Some(existing) = &existing
            && existing.sha256 == info.sha256
            && (model.is_none() || existing.model == model)
        {
            return Ok(IngestOutcome::Unchanged);
        }
        let average_tokens = {
            let cached = self.state(&tenant).await?;
            let (tokens, count) = if cached.state.chunks > 0 {
                (cached.state.tokens, cached.state.chunks)
            } else {
                let tokens: usize = chunks
                    .iter()
                    .map(|(_, t)| t.tokens.split_whitespace().count())
                    .sum();
                (tokens as u64, chunks.len().max(1) as u64)
            };
            tokens as f32 / count as f32
        };
        let mut dense = vectors.map(|v| v.vectors.into_iter());
        let mut batch = Vec::with_capacity(UPSERT_BATCH.min(chunks.len()));
        let count = chunks.len();
        for (n, (chunk, tokens)) in chunks.into_iter().enumerate() {
            let mut named = HashMap::from([(
                LEXICAL.to_owned(),
                points::lexical_vector(&tokens.tokens, average_tokens),
            )]);
            if let Some(vector) = dense.as_mut().and_then(Iterator::next) {
                named.insert(DENSE.to_owned(), Vector::new_dense(vector));
            }
            let lang = analyzer::detect_language(&chunk.text).map(|l| l.code().to_owned());
            let payload = ChunkPayload {
                tenant: tenant.clone(),
                kind: KIND_CHUNK.to_owned(),
                document_id: chunk.document_id,
                n: n as u64,
                document_name: chunk.document_name,
                title: chunk.title,
                heading_path: chunk.heading_path,
                text: chunk.text,
                tokens: tokens.tokens,
                title_len: tokens.title_len,
                lang,
                sha256: info.sha256.clone(),
                chunk_id: chunk.id,
            };
            batch.push(PointStruct::new(
                points::chunk_point(&tenant, &payload.chunk_id),
                named,
                to_payload(&payload)?,
            ));
            if batch.len() == UPSERT_BATCH {
                self.upsert(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            self.upsert(batch).await?;
        }
        // An earlier version's chunks past this one's count, or of other content.
        let mut stale = document_filter(&tenant, &info.id);
        stale
            .must
            .push(Condition::matches(KIND, KIND_CHUNK.to_owned()));
        stale
            .must_not
            .push(Condition::matches(SHA256, info.sha256.clone()));
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(stale)
                    .wait(true),
            )
            .await
            .map_err(call_error("delete"))?;
        let document = DocumentPayload {
            tenant: tenant.clone(),
            kind: KIND_DOCUMENT.to_owned(),
            document_id: info.id.clone(),
            name: info.name.clone(),
            title: info.title.clone(),
            chunks: count as u64,
            sha256: info.sha256.clone(),
            model,
        };
        self.upsert(vec![PointStruct::new(
            points::document_point(&tenant, &info.id),
            HashMap::<String, Vector>::new(),
            to_payload(&document)?,
        )])
        .await?;
        self.bump(&tenant).await?;
        tracing::debug!(
            chunks = count,
            replaced = existing.is_some(),
            "document indexed in Qdrant"
        );
        Ok(match existing {
            Some(_) => IngestOutcome::Replaced { chunks: count },
            None => IngestOutcome::Indexed { chunks: count },
        })
    }

    async fn upsert(&self, points: Vec<PointStruct>) -> Result<(), KnowledgeError> {
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, points).wait(true))
            .await
            .map_err(call_error("upsert"))?;
        Ok(())
    }

    /// Adds `model`'s vectors to a document's chunks.
    async fn store_vectors(
        &self,
        tenant: &str,
        document: DocumentPayload,
        chunks: &[Chunk],
        model: &str,
        vectors: Vec<Vec<f32>>,
    ) -> Result<bool, KnowledgeError> {
        let _write = self.writes.lock().await;
        let fits = vectors.len() == chunks.len()
            && self
                .dense_size()
                .await?
                .is_some_and(|size| vectors.iter().all(|v| v.len() as u64 == size));
        if !fits {
            return Ok(false);
        }
        let updates: Vec<PointVectors> = chunks
            .iter()
            .zip(vectors)
            .map(|(chunk, vector)| PointVectors {
                id: Some(points::chunk_point(tenant, &chunk.id)),
                vectors: Some(
                    HashMap::from([(DENSE.to_owned(), Vector::new_dense(vector))]).into(),
                ),
            })
            .collect();
        self.client
            .update_vectors(UpdatePointVectorsBuilder::new(&self.collection, updates).wait(true))
            .await
            .map_err(call_error("vector update"))?;
        let document = DocumentPayload {
            model: Some(model.to_owned()),
            ..document
        };
        self.upsert(vec![PointStruct::new(
            points::document_point(tenant, &document.document_id),
            HashMap::<String, Vector>::new(),
            to_payload(&document)?,
        )])
        .await?;
        Ok(true)
    }

    /// Best chunks first, at most `limit`: see the module documentation.
    async fn search(
        &self,
        tenant: String,
        text: String,
        vector: Option<QueryVector>,
        limit: usize,
        min_similarity: f32,
        dense_weight: f32,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        let terms = analyzer::analyze_query(&text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let cached = self.state(&tenant).await?;
        if cached.state.chunks == 0 {
            return Ok(Vec::new());
        }
        let plan = QueryPlan::new(&terms, &cached.state, &Fuzzy::default());
        let lexical_candidates = limit.max(MIN_CANDIDATES);
        let candidates = (lexical_candidates * OVERFETCH) as u64;
        let (indices, values) = points::query_vector(plan.groups.iter().flat_map(|group| {
            group.members.iter().filter_map(|member| {
                let df = *plan.doc_freq.get(&member.term)?;
                Some((
                    member.term.clone(),
                    relevance::idf(df, plan.chunks) * member.factor,
                ))
            })
        }));
        let filter = kind_filter(&tenant, KIND_CHUNK);
        let sparse_input = (!indices.is_empty()).then_some((indices, values));
        let sparse_query = |(indices, values): (Vec<u32>, Vec<f32>)| {
            QueryPointsBuilder::new(&self.collection)
                .query(Query::new_nearest(VectorInput::new_sparse(indices, values)))
                .using(LEXICAL)
                .filter(filter.clone())
                .limit(candidates)
                .with_payload(true)
                .build()
        };
        let query_language = analyzer::detect_language(&text);
        // Qdrant's sparse scores pick the candidates; each is rescored exactly as the
        // embedded index scores it (BM25 with the tenant's statistics now, best term per
        // word), the best `lexical_candidates` kept and re-ranked by coverage.
        let lexical = |points: Vec<ScoredPoint>| -> Result<HashMap<String, (ChunkPayload, f32)>, KnowledgeError> {
            let mut scored = Vec::with_capacity(points.len());
            for point in points {
                let payload = from_payload::<ChunkPayload>(point.payload)?;
                let bm25 = plan.bm25(&payload.tokens);
                scored.push((payload, bm25));
            }
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.chunk_id.cmp(&b.0.chunk_id)));
            scored.truncate(lexical_candidates);
            let best = scored.iter().map(|(_, bm25)| *bm25).fold(0.0f32, f32::max);
            let mut by_id = HashMap::with_capacity(scored.len());
            for (payload, bm25) in scored {
                let coverage = plan.coverage(&payload.tokens, payload.title_len as usize);
                let same_language = query_language.is_some()
                    && payload
                        .lang
                        .as_deref()
                        .and_then(analyzer::Language::from_code)
                        == query_language;
                let score =
                    relevance::rank_score(bm25 / best.max(f32::EPSILON), coverage, same_language);
                by_id.insert(payload.chunk_id.clone(), (payload, score));
            }
            Ok(by_id)
        };
        let dense_size = self.dense_size().await?;
        let vector =
            vector.filter(|v| dense_size.is_some_and(|size| v.values.len() as u64 == size));
        let Some(vector) = vector else {
            let Some(sparse) = sparse_input else {
                return Ok(Vec::new());
            };
            let found = self
                .client
                .query(sparse_query(sparse))
                .await
                .map_err(call_error("query"))?;
            let mut results: Vec<ScoredChunk> = lexical(found.result)?
                .into_values()
                .map(|(payload, score)| {
                    let relevance = plan.coverage(&payload.tokens, payload.title_len as usize);
                    ScoredChunk {
                        chunk: payload.into_chunk(),
                        score,
                        relevance,
                    }
                })
                .collect();
            results.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then_with(|| a.chunk.id.cmp(&b.chunk.id))
            });
            results.truncate(limit);
            return Ok(results);
        };

        // Hybrid: the dense list, the sparse list, and Qdrant's weighted RRF of the two.
        let dense_query = |values: Vec<f32>| {
            PrefetchQueryBuilder::default()
                .query(Query::new_nearest(VectorInput::new_dense(values)))
                .using(DENSE)
                .filter(filter.clone())
                .limit(candidates)
        };
        let mut prefetch: Vec<PrefetchQuery> = vec![dense_query(vector.values.clone()).into()];
        let mut weights = vec![dense_weight];
        let mut batch: Vec<QueryPoints> = vec![
            QueryPointsBuilder::new(&self.collection)
                .query(Query::new_nearest(VectorInput::new_dense(vector.values)))
                .using(DENSE)
                .filter(filter.clone())
                .limit(candidates)
                .with_payload(true)
                .build(),
        ];
        if let Some(sparse) = sparse_input {
            prefetch.push(
                PrefetchQueryBuilder::default()
                    .query(Query::new_nearest(VectorInput::new_sparse(
                        sparse.0.clone(),
                        sparse.1.clone(),
                    )))
                    .using(LEXICAL)
                    .filter(filter.clone())
                    .limit(candidates)
                    .into(),
            );
            weights.push(1.0);
            batch.push(sparse_query(sparse));
        }
        batch.push(
            QueryPointsBuilder::new(&self.collection)
                .prefetch(prefetch)
                .query(Query::new_rrf(Rrf {
                    k: Some(RRF_K as u32),
                    weights,
                }))
                .filter(filter.clone())
                .limit(candidates)
                .with_payload(false)
                .build(),
        );
        let mut responses = self
            .client
            .query_batch(QueryBatchPointsBuilder::new(&self.collection, batch))
            .await
            .map_err(call_error("query"))?
            .result
            .into_iter();
        let dense_points = responses.next().map(|r| r.result).unwrap_or_default();
        let fused_points = responses.next_back().map(|r| r.result).unwrap_or_default();
        let mut lexical_hits = match responses.next() {
            Some(sparse) => lexical(sparse.result)?,
            None => HashMap::new(),
        };
        let mut dense_hits: HashMap<String, (ChunkPayload, f32)> = HashMap::new();
        for point in dense_points {
            if point.score <= 0.0 {
                continue;
            }
            let payload = from_payload::<ChunkPayload>(point.payload)?;
            dense_hits.insert(payload.chunk_id.clone(), (payload, point.score));
        }
        let mut results = Vec::with_capacity(fused_points.len());
        for point in fused_points {
            let Some(id) = point.id.as_ref() else {
                continue;
            };
            // The fused list names points; find the chunk in either list.
            let Some(chunk_id) = lexical_hits
                .keys()
                .chain(dense_hits.keys())
                .find(|chunk_id| points::chunk_point(&tenant, chunk_id) == *id)
                .cloned()
            else {
                continue;
            };
            let cosine = dense_hits.get(&chunk_id).map(|(_, c)| *c);
            let (payload, coverage) = match lexical_hits.remove(&chunk_id) {
                Some((payload, _)) => {
                    let coverage = plan.coverage(&payload.tokens, payload.title_len as usize);
                    dense_hits.remove(&chunk_id);
                    (payload, coverage)
                }
                None => match dense_hits.remove(&chunk_id) {
                    Some((payload, _)) => {
                        let coverage = plan.coverage(&payload.tokens, payload.title_len as usize);
                        (payload, coverage)
                    }
                    None => continue,
                },
            };
            let semantic = cosine.map_or(0.0, |c| semantic_relevance(c, min_similarity));
            results.push(ScoredChunk {
                chunk: payload.into_chunk(),
                score: point.score,
                relevance: coverage.max(semantic),
            });
        }
        results.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.relevance.total_cmp(&a.relevance))
                .then_with(|| a.chunk.id.cmp(&b.chunk.id))
        });
        results.truncate(limit);
        Ok(results)
    }
}

fn random_revision() -> String {
    use rand::Rng;
    hex::encode(rand::rng().random::<[u8; 16]>())
}

#[async_trait]
impl Retriever for QdrantKnowledge {
    fn retrieve(
        &self,
        tenant: &str,
        query: &SearchQuery<'_>,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KnowledgeError> {
        check_tenant(tenant)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let (tenant, text, vector) = (
            tenant.to_owned(),
            query.text.to_owned(),
            query.vector.cloned(),
        );
        let (min_similarity, dense_weight) = (self.min_similarity, self.dense_weight);
        self.inner.bridge.block(async move {
            inner
                .search(tenant, text, vector, limit, min_similarity, dense_weight)
                .await
        })
    }

    async fn embed_query(&self, query: &str) -> Option<QueryVector> {
        let embedder = self.embedder.as_ref()?;
        if query.trim().is_empty() || self.inner.layout.get() == Some(&None) {
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
                tracing::warn!(%error, "question embedding failed; searching lexically");
                None
            }
        }
    }

    fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    async fn check(&self) -> Result<String, KnowledgeError> {
        let report = QdrantKnowledge::check(self).await?;
        Ok(match report.dense_size {
            Some(size) => format!(
                "collection {} ({} points, lexical + dense {size})",
                report.collection, report.points
            ),
            None => format!(
                "collection {} ({} points, lexical)",
                report.collection, report.points
            ),
        })
    }
}

#[async_trait]
impl KnowledgeBase for QdrantKnowledge {
    async fn ingest(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<IngestOutcome, IngestError> {
        check_tenant(tenant)?;
        if name.trim().is_empty() {
            return Err(IngestError::EmptyName);
        }
        let inner = self.inner.clone();
        let (t, id, sha256) = (
            tenant.to_owned(),
            document_id(tenant, name),
            content_sha256(&bytes),
        );
        let existing = inner
            .bridge
            .run({
                let inner = inner.clone();
                async move { inner.document(&t, &id).await }
            })
            .await?;
        let model = self.embedder.as_ref().map(|e| e.model().to_owned());
        if let Some(existing) = existing
            && existing.sha256 == sha256
        {
            if model.is_some() && existing.model != model {
                self.embed_document(tenant, existing).await?;
            }
            return Ok(IngestOutcome::Unchanged);
        }
        let document = {
            let (tenant, name) = (tenant.to_owned(), name.to_owned());
            match tokio::task::spawn_blocking(move || prepare(&tenant, &name, &bytes)).await {
                Ok(prepared) => prepared?,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        };
        let vectors = match &self.embedder {
            Some(embedder) => {
                let texts = document.embedding_texts();
                match embed::embed_batched(embedder.as_ref(), &texts).await {
                    Ok(vectors) => Some(ChunkVectors {
                        model: embedder.model().to_owned(),
                        vectors,
                    }),
                    Err(error) => {
                        metrics::counter!(METRIC_EMBED_FALLBACKS_TOTAL, "stage" => "ingest")
                            .increment(1);
                        tracing::warn!(%error, document = name, "embedding failed; document indexed lexically only");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(inner
            .bridge
            .run({
                let inner = inner.clone();
                async move { inner.write_document(document, vectors).await }
            })
            .await?)
    }

    async fn embed_missing(&self, tenant: &str) -> Result<usize, KnowledgeError> {
        check_tenant(tenant)?;
        let Some(embedder) = self.embedder.clone() else {
            return Ok(0);
        };
        let inner = self.inner.clone();
        let t = tenant.to_owned();
        let documents = inner
            .bridge
            .run({
                let inner = inner.clone();
                async move {
                    let mut documents = Vec::new();
                    inner
                        .scroll(kind_filter(&t, KIND_DOCUMENT), None, |point| {
                            documents.push(from_payload::<DocumentPayload>(point.payload)?);
                            Ok(())
                        })
                        .await?;
                    Ok(documents)
                }
            })
            .await?;
        let mut embedded = 0;
        for document in documents {
            if document.model.as_deref() != Some(embedder.model())
                && self.embed_document(tenant, document).await?
            {
                embedded += 1;
            }
        }
        Ok(embedded)
    }

    fn list_documents(&self, tenant: &str) -> Result<Vec<DocumentInfo>, KnowledgeError> {
        check_tenant(tenant)?;
        let (inner, tenant) = (self.inner.clone(), tenant.to_owned());
        self.inner
            .bridge
            .block(async move { inner.list_documents(&tenant).await })
    }

    fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Option<Vec<Chunk>>, KnowledgeError> {
        check_tenant(tenant)?;
        let (inner, tenant, id) = (
            self.inner.clone(),
            tenant.to_owned(),
            document_id.to_owned(),
        );
        self.inner
            .bridge
            .block(async move { inner.document_chunks(&tenant, &id).await })
    }

    fn delete_document(&self, tenant: &str, document_id: &str) -> Result<bool, KnowledgeError> {
        check_tenant(tenant)?;
        let (inner, tenant, id) = (
            self.inner.clone(),
            tenant.to_owned(),
            document_id.to_owned(),
        );
        self.inner
            .bridge
            .block(async move { inner.delete_document(&tenant, &id).await })
    }

    fn write_document(
        &self,
        document: PreparedDocument,
        vectors: Option<ChunkVectors>,
    ) -> Result<IngestOutcome, IngestError> {
        check_tenant(document.tenant())?;
        let inner = self.inner.clone();
        Ok(self
            .inner
            .bridge
            .block(async move { inner.write_document(document, vectors).await })?)
    }
}

impl QdrantKnowledge {
    /// Embeds a stored document's chunks with the embedder's model; true when vectors were
    /// added. Embedding failures are logged and counted, not returned.
    async fn embed_document(
        &self,
        tenant: &str,
        document: DocumentPayload,
    ) -> Result<bool, KnowledgeError> {
        let Some(embedder) = self.embedder.clone() else {
            return Ok(false);
        };
        let inner = self.inner.clone();
        let (t, id) = (tenant.to_owned(), document.document_id.clone());
        let chunks = inner
            .bridge
            .run({
                let inner = inner.clone();
                async move { inner.document_chunks(&t, &id).await }
            })
            .await?
            .unwrap_or_default();
        if chunks.is_empty() {
            return Ok(false);
        }
        let texts: Vec<String> = chunks.iter().map(embedding_text).collect();
        match embed::embed_batched(embedder.as_ref(), &texts).await {
            Ok(vectors) => {
                let (t, model) = (tenant.to_owned(), embedder.model().to_owned());
                inner
                    .bridge
                    .run({
                        let inner = inner.clone();
                        async move {
                            inner
                                .store_vectors(&t, document, &chunks, &model, vectors)
                                .await
                        }
                    })
                    .await
            }
            Err(error) => {
                metrics::counter!(METRIC_EMBED_FALLBACKS_TOTAL, "stage" => "ingest").increment(1);
                tracing::warn!(%error, document = document.name, "embedding failed; document stays lexical only");
                Ok(false)
            }
        }
    }
}
