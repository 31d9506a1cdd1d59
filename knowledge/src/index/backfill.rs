//! Chunk vectors: packing them for the dense index, and the backfill that embeds documents
//! indexed without vectors of the embedder's model (embedding failed at ingest, or the
//! embedder is new).

use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{TantivyDocument, Term};

use super::schema::{KIND_CHUNK, chunk_from_doc, stored_str};
use super::{Knowledge, blocking};
use crate::dense::DocVectors;
use crate::document::{Chunk, document_id};
use crate::embed::{self, Embedder, METRIC_EMBED_FALLBACKS_TOTAL};
use crate::error::KnowledgeError;

/// One vector per chunk of a document, from one model.
#[derive(Debug, Clone)]
pub struct ChunkVectors {
    /// The embedding model.
    pub model: String,
    /// Unit vectors, one per chunk, in chunk order.
    pub vectors: Vec<Vec<f32>>,
}

impl Knowledge {
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
    pub(super) async fn backfill_vectors(
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
}

/// The text embedded for a chunk: its heading path (document title first), then its text.
pub(crate) fn embedding_text(chunk: &Chunk) -> String {
    let headings = if chunk.heading_path.is_empty() {
        chunk.title.clone()
    } else {
        chunk.heading_path.join(" > ")
    };
    format!("{headings}\n{}", chunk.text)
}

/// Packs per-chunk vectors; `None` when they are empty or not all of one dimension.
pub(super) fn doc_vectors(
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
