//! Writing documents: parse and analyze ([`Knowledge::prepare_document`]), write all chunks or
//! none ([`Knowledge::write_document`]), the embedding ingest ([`Knowledge::ingest`]), listing
//! and deleting.

use std::path::{Path, PathBuf};

use tantivy::collector::DocSetCollector;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{IndexWriter, TantivyDocument, Term};

use super::backfill::{ChunkVectors, doc_vectors, embedding_text};
use super::schema::{KIND_CHUNK, KIND_DOCUMENT, chunk_from_doc, stored_str};
use super::{Knowledge, blocking, check_tenant};
use crate::analyzer;
use crate::document::{
    Chunk, DocumentInfo, IngestOutcome, IngestReport, content_sha256, document_id,
};
use crate::embed::{self, METRIC_EMBED_FALLBACKS_TOTAL};
use crate::error::{IngestError, KnowledgeError};
use crate::ingest;

/// A chunk's analyzed tokens; the first `title_len` come from the document title.
#[derive(Debug)]
pub(crate) struct IndexedTokens {
    pub(crate) tokens: String,
    pub(crate) title_len: u64,
}

impl Knowledge {
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
        if self.inner.is_unchanged(tenant, &id, &content_sha256(bytes)) {
            return Ok(None);
        }
        prepare(tenant, name, bytes).map(Some)
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

    /// The chunks of one of the tenant's documents in document order, or `None` when the tenant
    /// has no document with this id (another tenant's id included).
    ///
    /// # Errors
    /// An empty tenant id or an index failure.
    pub fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Option<Vec<Chunk>>, KnowledgeError> {
        check_tenant(tenant)?;
        let owned = self
            .inner
            .tenants_read()
            .get(tenant)
            .is_some_and(|t| t.documents.contains_key(document_id));
        if !owned {
            return Ok(None);
        }
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
                chunks.push(chunk_from_doc(&doc, &fields)?);
            }
        }
        // Chunk ids end in their position (`{document_id}:{n}`): sort by it, not as text.
        let position = |c: &Chunk| {
            c.id.rsplit_once(':')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        };
        chunks.sort_by_key(position);
        Ok(Some(chunks))
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

/// Parses and analyzes a document into chunks with their index tokens, whatever the backend.
///
/// # Errors
/// As [`Knowledge::ingest_document`].
pub(crate) fn prepare(
    tenant: &str,
    name: &str,
    bytes: &[u8],
) -> Result<PreparedDocument, IngestError> {
    check_tenant(tenant)?;
    if name.trim().is_empty() {
        return Err(IngestError::EmptyName);
    }
    let id = document_id(tenant, name);
    let sha256 = content_sha256(bytes);
    let parsed = ingest::parse(name, bytes)?;
    let chunks: Vec<(Chunk, IndexedTokens)> = parsed
        .chunks
        .into_iter()
        .enumerate()
        .map(|(n, draft)| {
            let tokens = analyze_chunk(&parsed.title, &draft.heading_path, &draft.text);
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
    Ok(PreparedDocument {
        tenant: tenant.to_owned(),
        info,
        chunks,
    })
}

/// A chunk's index tokens. Headings are indexed with the text so that they are searchable.
/// The document title comes first and is counted, so that coverage can discount it: it names
/// the whole document, not this passage.
fn analyze_chunk(title: &str, heading_path: &[String], text: &str) -> IndexedTokens {
    let (title_tokens, headings) = match heading_path.split_first() {
        Some((first, rest)) if !rest.is_empty() && *first == title => {
            (analyzer::analyze(first), rest)
        }
        _ => (Vec::new(), heading_path),
    };
    let mut indexed = headings.join("\n");
    indexed.push('\n');
    indexed.push_str(text);
    let title_len = title_tokens.len() as u64;
    let mut tokens = title_tokens;
    tokens.extend(analyzer::analyze(&indexed));
    IndexedTokens {
        tokens: tokens.join(" "),
        title_len,
    }
}

/// A parsed, analyzed document ready for [`Knowledge::write_document`].
#[derive(Debug)]
pub struct PreparedDocument {
    pub(crate) tenant: String,
    pub(crate) info: DocumentInfo,
    pub(crate) chunks: Vec<(Chunk, IndexedTokens)>,
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

    /// A document read back from an index (its listing and its chunks in order), analyzed
    /// again for writing into another index: how `sapa kb reindex` moves a tenant between
    /// backends without the original files.
    pub fn from_chunks(tenant: &str, info: DocumentInfo, chunks: Vec<Chunk>) -> Self {
        let chunks = chunks
            .into_iter()
            .map(|chunk| {
                let tokens = analyze_chunk(&chunk.title, &chunk.heading_path, &chunk.text);
                (chunk, tokens)
            })
            .collect();
        Self {
            tenant: tenant.to_owned(),
            info,
            chunks,
        }
    }

    /// The tenant the document belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The text to embed for each chunk, in order: its headings, then its text.
    pub fn embedding_texts(&self) -> Vec<String> {
        self.chunks().map(embedding_text).collect()
    }
}
