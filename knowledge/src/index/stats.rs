//! Per-tenant statistics kept in memory: each tenant's documents, chunk and token counts and
//! document frequencies, rebuilt from the stored records at open, and the BM25 statistics
//! provider that scores a tenant's chunks against its own collection only.

use std::collections::{BTreeMap, HashMap, HashSet};

use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::{Field, Value};
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use super::schema::{Fields, KIND_CHUNK, KIND_DOCUMENT, stored_str};
use crate::document::DocumentInfo;
use crate::error::KnowledgeError;

/// What the index knows about one tenant, kept in memory: its documents and the statistics BM25,
/// coverage and typo tolerance need. Rebuilt from the stored records at open.
#[derive(Debug, Default)]
pub(crate) struct TenantState {
    pub(crate) documents: BTreeMap<String, DocumentInfo>,
    /// Number of chunks containing each term.
    pub(crate) doc_freq: HashMap<String, u32>,
    /// Number of chunks.
    pub(crate) chunks: u64,
    /// Number of tokens over all chunks.
    pub(crate) tokens: u64,
}

impl TenantState {
    pub(crate) fn add_chunk(&mut self, tokens: &str) {
        self.chunks += 1;
        let mut seen = HashSet::new();
        for token in tokens.split_whitespace() {
            self.tokens += 1;
            if seen.insert(token) {
                *self.doc_freq.entry(token.to_owned()).or_default() += 1;
            }
        }
    }

    pub(super) fn remove_chunk(&mut self, tokens: &str) {
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
pub(super) struct TenantStatistics<'a> {
    pub(super) searcher: &'a Searcher,
    pub(super) body: Field,
    pub(super) chunks: u64,
    pub(super) tokens: u64,
    pub(super) doc_freq: &'a HashMap<String, u64>,
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

/// Rebuilds the per-tenant state from every stored record.
pub(super) fn load_tenants(
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
