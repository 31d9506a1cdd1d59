//! Error types of the knowledge crate.

use std::path::PathBuf;

/// Errors of the index itself: opening, reading and writing it.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// The tenant id was empty; every chunk and every query belongs to a tenant.
    #[error("tenant id must not be empty")]
    EmptyTenant,
    /// The index directory could not be created.
    #[error("cannot create index directory {path}")]
    CreateDir {
        /// The directory passed to `Knowledge::open`.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// The index directory exists but could not be opened.
    #[error("cannot open index directory {path}")]
    OpenDir {
        /// The directory passed to `Knowledge::open`.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: tantivy::directory::error::OpenDirectoryError,
    },
    /// The search engine failed (IO, corruption, a schema from another version, a lock held by
    /// another process).
    #[error("search index error")]
    Index(#[from] tantivy::TantivyError),
    /// A stored record lacks a field this version writes; the index was written by something
    /// else.
    #[error("stored record is missing field {0}")]
    Corrupt(&'static str),
    /// A server-backed index (Qdrant) failed or is unreachable; the message says which call
    /// and why.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend, e.g. `qdrant`.
        backend: &'static str,
        /// What failed.
        message: String,
    },
}

/// Why one document could not be ingested. Messages tell the uploader what to fix.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The document name was empty.
    #[error("document name must not be empty")]
    EmptyName,
    /// The file extension is not one we can read.
    #[error("unsupported file type for {name:?}; upload {supported}", supported = crate::ingest::SUPPORTED)]
    UnsupportedFormat {
        /// The document name as given.
        name: String,
    },
    /// The bytes are not UTF-8 text.
    #[error("{name:?} is not UTF-8 text; save it as UTF-8 and upload it again")]
    NotUtf8 {
        /// The document name as given.
        name: String,
    },
    /// Nothing indexable was found.
    #[error("{name:?} contains no text to index; check that the file is not empty")]
    Empty {
        /// The document name as given.
        name: String,
    },
    /// A PDF has no text to extract: a scan or pages of images.
    #[error("{name:?} has no text layer; OCR the file first (or upload its text as .txt or .md)")]
    NoTextLayer {
        /// The document name as given.
        name: String,
    },
    /// A PDF cannot be read: damaged, not a PDF, or password-protected.
    #[error("{name:?} {reason}")]
    Pdf {
        /// The document name as given.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A CSV FAQ file is malformed.
    #[error("{name:?} line {line}: {reason}")]
    Csv {
        /// The document name as given.
        name: String,
        /// 1-based line where the problem starts.
        line: usize,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file given to `ingest_paths` could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path that failed.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// The document was parsed but the index could not be updated.
    #[error("index update failed")]
    Index(#[from] KnowledgeError),
}

/// Errors of [`crate::eval::run`].
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A line is not a valid evaluation case.
    #[error("line {line}: invalid evaluation case")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An answerable case lacks `doc` or `chunk_contains`.
    #[error("line {line}: a case without `abstain: true` needs `doc` and `chunk_contains`")]
    Incomplete {
        /// 1-based line number.
        line: usize,
    },
    /// A search failed.
    #[error("search failed")]
    Search(#[from] KnowledgeError),
}
