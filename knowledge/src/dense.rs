//! The exact dense-vector index: per tenant, per document, the unit vectors of its chunks;
//! cosine similarity by dot product over every vector of the tenant (brute force: 20,000
//! chunks × 384 dimensions is a few milliseconds).
//!
//! Files: `{index dir}/dense/{hex(tenant)}/{document_id}.vec`, one per document, replaced
//! atomically (temporary file, fsync, rename). A tenant's vectors live in its own directory and
//! its own map, so a search only ever sees that tenant's chunks. Each file records the SHA-256
//! of the document bytes it was computed from; at open, files that do not match the text index
//! are ignored (a crash between the two writes), and the document counts as not embedded.
//!
//! File layout: `SAPAVEC1`, a little-endian u32 header length, the JSON [`Header`], then
//! `chunk_ids.len() × dim` little-endian f32.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"SAPAVEC1";
const EXTENSION: &str = "vec";

/// The vectors of one document's chunks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DocVectors {
    /// SHA-256 of the document bytes the chunks came from.
    pub(crate) sha256: String,
    /// Embedding model.
    pub(crate) model: String,
    /// Dimension of every vector.
    pub(crate) dim: usize,
    /// Chunk ids, in the order of `data`.
    pub(crate) chunk_ids: Vec<String>,
    /// `chunk_ids.len() × dim` values, unit vectors one after the other.
    pub(crate) data: Vec<f32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    tenant: String,
    document_id: String,
    sha256: String,
    model: String,
    dim: usize,
    chunk_ids: Vec<String>,
}

type TenantVectors = HashMap<String, DocVectors>;

/// Every tenant's document vectors, in memory and (unless in RAM) on disk.
#[derive(Debug)]
pub(crate) struct DenseStore {
    dir: Option<PathBuf>,
    tenants: RwLock<HashMap<String, TenantVectors>>,
}

impl DenseStore {
    /// Loads every vector file under `dir` (created if missing); `None` keeps vectors in RAM.
    /// Unreadable files are skipped with a warning: their documents are searched by BM25 only.
    pub(crate) fn open(dir: Option<PathBuf>) -> io::Result<Self> {
        let mut tenants: HashMap<String, TenantVectors> = HashMap::new();
        if let Some(dir) = &dir {
            fs::create_dir_all(dir)?;
            for tenant_dir in fs::read_dir(dir)? {
                let tenant_dir = tenant_dir?.path();
                if !tenant_dir.is_dir() {
                    continue;
                }
                for file in fs::read_dir(&tenant_dir)? {
                    let path = file?.path();
                    if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                        // Leftover temporary files of an interrupted write.
                        if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                            let _ = fs::remove_file(&path);
                        }
                        continue;
                    }
                    match read_file(&path) {
                        Ok((header, vectors))
                            if tenant_dir_name(&header.tenant).as_os_str()
                                == tenant_dir.file_name().unwrap_or_default() =>
                        {
                            tenants
                                .entry(header.tenant)
                                .or_default()
                                .insert(header.document_id, vectors);
                        }
                        Ok(_) => {
                            tracing::warn!(path = %path.display(), "vector file in another tenant's directory; ignored");
                        }
                        Err(error) => {
                            tracing::warn!(path = %path.display(), %error, "unreadable vector file; ignored");
                        }
                    }
                }
            }
        }
        Ok(Self {
            dir,
            tenants: RwLock::new(tenants),
        })
    }

    fn path(&self, tenant: &str, document_id: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| {
            dir.join(tenant_dir_name(tenant))
                .join(format!("{document_id}.{EXTENSION}"))
        })
    }

    /// Stores (replacing) a document's vectors: file first, then memory.
    pub(crate) fn put(
        &self,
        tenant: &str,
        document_id: &str,
        vectors: DocVectors,
    ) -> io::Result<()> {
        if let Some(path) = self.path(tenant, document_id) {
            let header = Header {
                tenant: tenant.to_owned(),
                document_id: document_id.to_owned(),
                sha256: vectors.sha256.clone(),
                model: vectors.model.clone(),
                dim: vectors.dim,
                chunk_ids: vectors.chunk_ids.clone(),
            };
            write_file(&path, &header, &vectors.data)?;
        }
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_owned())
            .or_default()
            .insert(document_id.to_owned(), vectors);
        Ok(())
    }

    /// Forgets a document's vectors (no-op when it has none).
    pub(crate) fn remove(&self, tenant: &str, document_id: &str) -> io::Result<()> {
        {
            let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(docs) = tenants.get_mut(tenant) {
                docs.remove(document_id);
                if docs.is_empty() {
                    tenants.remove(tenant);
                }
            }
        }
        if let Some(path) = self.path(tenant, document_id) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Keeps only the documents for which `keep(tenant, document_id, sha256)` holds; removes
    /// the others' files. Used at open to drop vectors that do not match the text index.
    pub(crate) fn retain(&self, keep: impl Fn(&str, &str, &str) -> bool) {
        let mut stale = Vec::new();
        {
            let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
            for (tenant, docs) in tenants.iter_mut() {
                docs.retain(|id, v| {
                    let ok = keep(tenant, id, &v.sha256);
                    if !ok {
                        stale.push((tenant.clone(), id.clone()));
                    }
                    ok
                });
            }
            tenants.retain(|_, docs| !docs.is_empty());
        }
        for (tenant, id) in stale {
            tracing::warn!(document_id = %id, "vectors do not match the indexed document; dropped");
            if let Some(path) = self.path(&tenant, &id) {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// Whether the tenant's document has vectors of `model` for the content `sha256`.
    pub(crate) fn has(&self, tenant: &str, document_id: &str, sha256: &str, model: &str) -> bool {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .and_then(|docs| docs.get(document_id))
            .is_some_and(|v| v.sha256 == sha256 && v.model == model)
    }

    /// The tenant's `n` chunks most similar to `query` (a unit vector of `model`), best first:
    /// `(chunk id, cosine)`. Vectors of another model or dimension are skipped.
    pub(crate) fn search(
        &self,
        tenant: &str,
        model: &str,
        query: &[f32],
        n: usize,
    ) -> Vec<(String, f32)> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        let Some(docs) = tenants.get(tenant) else {
            return Vec::new();
        };
        let dim = query.len();
        let mut scored: Vec<(f32, &str)> = Vec::new();
        for doc in docs.values() {
            if doc.model != model || doc.dim != dim || dim == 0 {
                continue;
            }
            for (id, v) in doc.chunk_ids.iter().zip(doc.data.chunks_exact(dim)) {
                let cosine: f32 = v.iter().zip(query).map(|(a, b)| a * b).sum();
                scored.push((cosine, id));
            }
        }
        let order =
            |a: &(f32, &str), b: &(f32, &str)| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1));
        if n == 0 {
            return Vec::new();
        }
        if scored.len() > n {
            scored.select_nth_unstable_by(n - 1, order);
            scored.truncate(n);
        }
        scored.sort_by(order);
        scored
            .into_iter()
            .map(|(c, id)| (id.to_owned(), c))
            .collect()
    }

    /// Number of vectors the tenant has (for tests and logs).
    pub(crate) fn count(&self, tenant: &str) -> usize {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .map_or(0, |docs| docs.values().map(|d| d.chunk_ids.len()).sum())
    }
}

/// Directory name of a tenant: its id in hex, so any id is a safe, distinct file name.
fn tenant_dir_name(tenant: &str) -> PathBuf {
    PathBuf::from(hex::encode(tenant.as_bytes()))
}

fn write_file(path: &Path, header: &Header, data: &[f32]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let header = serde_json::to_vec(header).map_err(io::Error::other)?;
    let header_len = u32::try_from(header.len()).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(12 + header.len() + data.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(&header);
    for x in data {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // Make the rename itself durable (best effort: not every platform can open a directory).
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_file(path: &Path) -> io::Result<(Header, DocVectors)> {
    let bytes = fs::read(path)?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(invalid("not a Sapa vector file"));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[8..12]);
    let header_len = u32::from_le_bytes(len) as usize;
    let body = 12usize
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| invalid("truncated header"))?;
    let header: Header = serde_json::from_slice(&bytes[12..body]).map_err(io::Error::other)?;
    let values = &bytes[body..];
    if header.dim == 0 || values.len() != header.chunk_ids.len() * header.dim * 4 {
        return Err(invalid("vector data does not match the header"));
    }
    let data = values
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let vectors = DocVectors {
        sha256: header.sha256.clone(),
        model: header.model.clone(),
        dim: header.dim,
        chunk_ids: header.chunk_ids.clone(),
        data,
    };
    Ok((header, vectors))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn doc(ids: &[&str], data: Vec<f32>) -> DocVectors {
        DocVectors {
            sha256: "s".into(),
            model: "m".into(),
            dim: 2,
            chunk_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            data,
        }
    }

    #[test]
    fn vectors_survive_a_reopen_and_stay_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DenseStore::open(Some(dir.path().to_owned())).unwrap();
            store
                .put("a", "d1", doc(&["d1:0", "d1:1"], vec![1.0, 0.0, 0.0, 1.0]))
                .unwrap();
            store
                .put("b", "d2", doc(&["d2:0"], vec![1.0, 0.0]))
                .unwrap();
        }
        let store = DenseStore::open(Some(dir.path().to_owned())).unwrap();
        assert_eq!(store.count("a"), 2);
        assert_eq!(store.count("b"), 1);
        let hits = store.search("a", "m", &[1.0, 0.0], 10);
        assert_eq!(hits[0], ("d1:0".to_owned(), 1.0));
        assert!(hits.iter().all(|(id, _)| id.starts_with("d1")));
        // Another model's query vectors never match.
        assert!(store.search("a", "other", &[1.0, 0.0], 10).is_empty());
        store.remove("a", "d1").unwrap();
        assert_eq!(store.count("a"), 0);
        let store = DenseStore::open(Some(dir.path().to_owned())).unwrap();
        assert_eq!(store.count("a"), 0);
        assert_eq!(store.count("b"), 1);
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = DenseStore::open(Some(dir.path().to_owned())).unwrap();
        store
            .put("a", "d1", doc(&["d1:0"], vec![1.0, 0.0]))
            .unwrap();
        let path = store.path("a", "d1").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        fs::write(&path, bytes).unwrap();
        let store = DenseStore::open(Some(dir.path().to_owned())).unwrap();
        assert_eq!(store.count("a"), 0);
    }
}
