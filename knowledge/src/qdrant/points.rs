//! What Sapa stores in the Qdrant collection: point ids, payloads, the lexical sparse vectors
//! and the filters every call carries.
//!
//! Three kinds of point share the collection, told apart by the `kind` payload field:
//! - `chunk`: one per chunk, with the `lexical` sparse vector (BM25 term-frequency part of
//!   each analyzed term) and, when embedded, the `dense` vector; its payload is the chunk
//!   itself plus its analyzed tokens (coverage is computed from them, as in the embedded
//!   index).
//! - `document`: one per document, without vectors: what `list_documents` shows.
//! - `manifest`: one per tenant, without vectors: a revision that every write changes, so a
//!   replica knows when its cached term statistics of the tenant are stale.

use std::collections::HashMap;

use qdrant_client::Payload;
use qdrant_client::qdrant::{Condition, Filter, PointId, Value as QdrantValue, Vector};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::document::{Chunk, DocumentInfo};
use crate::error::KnowledgeError;

/// The sparse vector of analyzed terms.
pub(super) const LEXICAL: &str = "lexical";
/// The dense vector of the embedding model.
pub(super) const DENSE: &str = "dense";
/// The payload field every point carries and every call filters on (`is_tenant` index).
pub(super) const TENANT: &str = "tenant";
/// The payload field with the point's kind.
pub(super) const KIND: &str = "kind";
/// The payload field with the document id (chunk and document points).
pub(super) const DOCUMENT_ID: &str = "document_id";
/// The payload field with the document's content hash (chunk and document points).
pub(super) const SHA256: &str = "sha256";

pub(super) const KIND_CHUNK: &str = "chunk";
pub(super) const KIND_DOCUMENT: &str = "document";
pub(super) const KIND_MANIFEST: &str = "manifest";

/// BM25's `k1` and `b`, as tantivy (the embedded index) uses them.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// A deterministic point id (a UUID built from SHA-256 over the parts), so writing the same
/// chunk, document or manifest again overwrites it: ingest is idempotent by document id.
pub(super) fn point_id(parts: &[&str]) -> PointId {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Version 8 (custom) and the RFC 4122 variant, so it is a well-formed UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    PointId::from(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

pub(super) fn chunk_point(tenant: &str, chunk_id: &str) -> PointId {
    point_id(&[KIND_CHUNK, tenant, chunk_id])
}

pub(super) fn document_point(tenant: &str, document_id: &str) -> PointId {
    point_id(&[KIND_DOCUMENT, tenant, document_id])
}

pub(super) fn manifest_point(tenant: &str) -> PointId {
    point_id(&[KIND_MANIFEST, tenant])
}

/// A term's dimension in the sparse vector: FNV-1a over its bytes. Stable across processes and
/// versions (the vectors are stored); a collision only adds one term's weight to another's.
pub(super) fn term_index(term: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in term.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The BM25 term-frequency part of each of a chunk's terms, as a sparse vector: with the
/// tenant's IDF in the query vector, the dot product is the chunk's BM25 score. IDF stays
/// per tenant because it is only ever in the query, never in the stored vectors.
pub(super) fn lexical_vector(tokens: &str, average_tokens: f32) -> Vector {
    let mut frequencies: HashMap<u32, u32> = HashMap::new();
    let mut length = 0u32;
    for token in tokens.split_whitespace() {
        length += 1;
        *frequencies.entry(term_index(token)).or_default() += 1;
    }
    let norm = K1 * (1.0 - B + B * length as f32 / average_tokens.max(1.0));
    let mut entries: Vec<(u32, f32)> = frequencies
        .into_iter()
        .map(|(index, tf)| {
            let tf = tf as f32;
            (index, tf * (K1 + 1.0) / (tf + norm))
        })
        .collect();
    entries.sort_unstable_by_key(|(index, _)| *index);
    let (indices, values): (Vec<u32>, Vec<f32>) = entries.into_iter().unzip();
    Vector::new_sparse(indices, values)
}

/// A query's weights per sparse dimension (each kept term's weight summed), sorted.
pub(super) fn query_vector(
    weights: impl IntoIterator<Item = (String, f32)>,
) -> (Vec<u32>, Vec<f32>) {
    let mut merged: HashMap<u32, f32> = HashMap::new();
    for (term, weight) in weights {
        if weight > 0.0 {
            *merged.entry(term_index(&term)).or_default() += weight;
        }
    }
    let mut entries: Vec<(u32, f32)> = merged.into_iter().collect();
    entries.sort_unstable_by_key(|(index, _)| *index);
    entries.into_iter().unzip()
}

/// The payload of a chunk point.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ChunkPayload {
    pub(super) tenant: String,
    pub(super) kind: String,
    pub(super) document_id: String,
    pub(super) chunk_id: String,
    /// Position in the document, from 0.
    pub(super) n: u64,
    pub(super) document_name: String,
    pub(super) title: String,
    pub(super) heading_path: Vec<String>,
    pub(super) text: String,
    /// The analyzed tokens, space separated; the first `title_len` come from the title.
    pub(super) tokens: String,
    pub(super) title_len: u64,
    /// The chunk's language code when detected.
    #[serde(default)]
    pub(super) lang: Option<String>,
    pub(super) sha256: String,
}

impl ChunkPayload {
    pub(super) fn into_chunk(self) -> Chunk {
        Chunk {
            id: self.chunk_id,
            tenant: self.tenant,
            document_id: self.document_id,
            document_name: self.document_name,
            title: self.title,
            heading_path: self.heading_path,
            text: self.text,
        }
    }
}

/// The payload of a document point.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct DocumentPayload {
    pub(super) tenant: String,
    pub(super) kind: String,
    pub(super) document_id: String,
    pub(super) name: String,
    pub(super) title: String,
    pub(super) chunks: u64,
    pub(super) sha256: String,
    /// The embedding model of its chunks' dense vectors; `None` when they have none.
    #[serde(default)]
    pub(super) model: Option<String>,
}

impl DocumentPayload {
    pub(super) fn info(&self) -> DocumentInfo {
        DocumentInfo {
            id: self.document_id.clone(),
            name: self.name.clone(),
            title: self.title.clone(),
            chunks: usize::try_from(self.chunks).unwrap_or(usize::MAX),
            sha256: self.sha256.clone(),
        }
    }
}

/// The payload of a tenant's manifest point.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ManifestPayload {
    pub(super) tenant: String,
    pub(super) kind: String,
    pub(super) revision: String,
}

/// Serializes a payload struct.
pub(super) fn to_payload(value: &impl Serialize) -> Result<Payload, KnowledgeError> {
    let json = serde_json::to_value(value).map_err(|e| backend(format!("payload: {e}")))?;
    Payload::try_from(json).map_err(|e| backend(format!("payload: {e}")))
}

/// Reads a payload struct back.
pub(super) fn from_payload<T: DeserializeOwned>(
    payload: HashMap<String, QdrantValue>,
) -> Result<T, KnowledgeError> {
    Payload::from(payload)
        .deserialize()
        .map_err(|e| backend(format!("a stored point has an unexpected payload: {e}")))
}

/// Every point of the tenant of one kind.
pub(super) fn kind_filter(tenant: &str, kind: &str) -> Filter {
    Filter::must([
        Condition::matches(TENANT, tenant.to_owned()),
        Condition::matches(KIND, kind.to_owned()),
    ])
}

/// Every point (chunks and the document's own) of one of the tenant's documents.
pub(super) fn document_filter(tenant: &str, document_id: &str) -> Filter {
    Filter::must([
        Condition::matches(TENANT, tenant.to_owned()),
        Condition::matches(DOCUMENT_ID, document_id.to_owned()),
    ])
}

/// A backend error with a message.
pub(super) fn backend(message: String) -> KnowledgeError {
    KnowledgeError::Backend {
        backend: "qdrant",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_and_distinct_per_tenant_and_kind() {
        assert_eq!(chunk_point("a", "d:0"), chunk_point("a", "d:0"));
        assert_ne!(chunk_point("a", "d:0"), chunk_point("b", "d:0"));
        assert_ne!(document_point("a", "d"), chunk_point("a", "d"));
    }

    #[test]
    fn the_lexical_vector_is_sorted_and_saturates_with_repetition() {
        let Some(qdrant_client::qdrant::vector::Vector::Sparse(sparse)) =
            lexical_vector("kopi kopi kopi susu", 4.0).vector
        else {
            panic!("not sparse");
        };
        assert!(sparse.indices.windows(2).all(|w| w[0] < w[1]));
        let kopi = sparse
            .indices
            .iter()
            .position(|i| *i == term_index("kopi"))
            .map(|p| sparse.values[p]);
        let susu = sparse
            .indices
            .iter()
            .position(|i| *i == term_index("susu"))
            .map(|p| sparse.values[p]);
        let (Some(kopi), Some(susu)) = (kopi, susu) else {
            panic!("terms missing");
        };
        assert!(kopi > susu && kopi < K1 + 1.0);
    }

    #[test]
    fn query_weights_of_one_term_add_up() {
        let (indices, values) = query_vector([
            ("kopi".to_owned(), 1.0),
            ("kopi".to_owned(), 0.5),
            ("teh".to_owned(), 0.0),
        ]);
        assert_eq!(indices, vec![term_index("kopi")]);
        assert_eq!(values, vec![1.5]);
    }
}
