//! The admin REST API for a tenant's knowledge base: upload, list, delete and search documents.
//!
//! Every request carries `Authorization: Bearer <api key>` (created with
//! `sapa tenant api-key create TENANT`); the key decides the tenant, so a key can only ever see and
//! change its own tenant's documents. Uploads are the raw file bytes with the document name in
//! `?name=`, limited by `admin.max_upload_bytes`; ingestion runs on the server's shared index
//! (the one writer of the index directory) in a blocking task, and the bot answers from a new
//! document as soon as the upload returns.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use knowledge::{IngestError, IngestOutcome};
use serde::Deserialize;
use serde_json::json;

use crate::api_key;
use crate::error::ApiError;
use crate::startup::AppState;

/// Most chunks `GET /v1/admin/knowledge/search` returns.
const MAX_SEARCH_LIMIT: usize = 50;
/// Longest document name, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// Admin routes. Their body limit is `admin.max_upload_bytes`, not the JSON APIs' limit.
pub fn router(max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/knowledge/documents",
            get(list_documents).post(upload_document),
        )
        .route(
            "/v1/admin/knowledge/documents/{id}",
            delete(delete_document),
        )
        .route("/v1/admin/knowledge/search", get(search))
        .layer(DefaultBodyLimit::max(max_upload_bytes))
}

/// Resolves the bearer API key to its tenant.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::unauthorized(
            "invalid_api_key",
            "send `Authorization: Bearer <api key>` with an active key from `sapa tenant api-key create TENANT`",
        )
    };
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(invalid)?;
    let prefix = api_key::prefix(key).ok_or_else(invalid)?;
    let stored = state
        .store
        .active_api_key(prefix)
        .await?
        .ok_or_else(invalid)?;
    if !api_key::verify(key, &stored.key_hash) {
        return Err(invalid());
    }
    Ok(stored.tenant_id)
}

/// Runs a blocking knowledge call off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|err| {
        tracing::error!(error = %err, "knowledge task failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })
}

fn index_error(err: &knowledge::KnowledgeError) -> ApiError {
    tracing::error!(error = %err, "knowledge index failure");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
    #[serde(default)]
    name: Option<String>,
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

fn payload_too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the document is larger than {max} bytes (admin.max_upload_bytes); split it or raise the limit"
        ),
    )
}

fn ingest_error(err: IngestError) -> ApiError {
    let unprocessable = |code: &'static str, err: &IngestError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, err.to_string())
    };
    match &err {
        IngestError::UnsupportedFormat { .. } => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            err.to_string(),
        ),
        IngestError::EmptyName => ApiError::bad_request("invalid_name", err.to_string()),
        IngestError::NotUtf8 { .. } => unprocessable("not_utf8", &err),
        IngestError::Empty { .. } => unprocessable("empty_document", &err),
        IngestError::Csv { .. } => unprocessable("invalid_csv", &err),
        IngestError::NoTextLayer { .. } => unprocessable("no_text_layer", &err),
        IngestError::Pdf { .. } => unprocessable("invalid_pdf", &err),
        IngestError::Read { .. } | IngestError::Index(_) => {
            tracing::error!(error = %err, "document ingestion failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

/// `POST /v1/admin/knowledge/documents?name=FILE.md` with the file's bytes as the body.
async fn upload_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<UploadParams>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    // Authenticate before reading (possibly megabytes of) body.
    let tenant = authenticate(&state, &headers).await?;
    let Query(params) = params.map_err(query_error)?;
    let name = params.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "pass the file name as `?name=FILE.md` (1-{MAX_NAME_BYTES} bytes, no `/` or `\\`); the extension picks the format: {}",
                knowledge::ingest::SUPPORTED
            ),
        ));
    }
    // An unsupported type is refused before its bytes are read.
    if knowledge::ingest::Format::from_name(name).is_none() {
        return Err(ingest_error(IngestError::UnsupportedFormat {
            name: name.to_owned(),
        }));
    }
    let max = state.config.admin.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(payload_too_large(max));
    }
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| payload_too_large(max))?;
    let knowledge = state.knowledge.clone();
    let name = name.to_owned();
    let (outcome, documents) = {
        let tenant = tenant.clone();
        let name = name.clone();
        // Parsing and index writes run on the blocking pool; with `[embeddings]` the chunks are
        // embedded too (an embedding failure still indexes the document for BM25).
        let outcome = knowledge
            .ingest(&tenant, &name, bytes.to_vec())
            .await
            .map_err(ingest_error)?;
        let documents = blocking(move || knowledge.list_documents(&tenant))
            .await?
            .map_err(|e| ingest_error(e.into()))?;
        (outcome, documents)
    };
    let id = knowledge::document_id(&tenant, &name);
    let document = documents.into_iter().find(|d| d.id == id);
    let (status, label) = match outcome {
        IngestOutcome::Indexed { .. } => (StatusCode::CREATED, "indexed"),
        IngestOutcome::Replaced { .. } => (StatusCode::OK, "replaced"),
        IngestOutcome::Unchanged => (StatusCode::OK, "unchanged"),
    };
    tracing::info!(
        tenant = %tenant,
        document = %id,
        outcome = label,
        chunks = document.as_ref().map_or(0, |d| d.chunks),
        "document uploaded"
    );
    Ok((
        status,
        axum::Json(json!({ "outcome": label, "document": document })),
    )
        .into_response())
}

/// `GET /v1/admin/knowledge/documents`.
async fn list_documents(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let knowledge = state.knowledge.clone();
    let documents = blocking(move || knowledge.list_documents(&tenant))
        .await?
        .map_err(|e| index_error(&e))?;
    Ok(axum::Json(json!({ "documents": documents })).into_response())
}

/// `DELETE /v1/admin/knowledge/documents/{id}`.
async fn delete_document(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let knowledge = state.knowledge.clone();
    let log_tenant = tenant.clone();
    let document = id.clone();
    let deleted = blocking(move || knowledge.delete_document(&tenant, &document))
        .await?
        .map_err(|e| index_error(&e))?;
    if !deleted {
        return Err(ApiError::not_found(
            "document_not_found",
            format!(
                "no document `{id}` in this tenant's knowledge base (see GET /v1/admin/knowledge/documents)"
            ),
        ));
    }
    tracing::info!(tenant = %log_tenant, document = %id, "document deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/admin/knowledge/search?q=...&limit=5`: the ranked chunks the bot would see.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let Query(params) = params.map_err(query_error)?;
    let query = params.q.trim().to_owned();
    if query.is_empty() {
        return Err(ApiError::bad_request(
            "missing_query",
            "pass the question as `?q=...`",
        ));
    }
    let limit = params.limit.unwrap_or(state.config.knowledge.top_k);
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_SEARCH_LIMIT}"),
        ));
    }
    let min_relevance = if state.config.knowledge.min_relevance < 0.0 {
        f64::from(knowledge::DEFAULT_MIN_RELEVANCE)
    } else {
        state.config.knowledge.min_relevance
    };
    let knowledge = state.knowledge.clone();
    let vector = knowledge.embed_query(&query).await;
    let hits = blocking(move || {
        knowledge.search_with(
            &tenant,
            &knowledge::SearchQuery::hybrid(&query, vector.as_ref()),
            limit,
        )
    })
    .await?
    .map_err(|e| index_error(&e))?;
    let results: Vec<serde_json::Value> = hits
        .into_iter()
        .map(|hit| {
            json!({
                "chunk_id": hit.chunk.id,
                "document_id": hit.chunk.document_id,
                "document_name": hit.chunk.document_name,
                "title": hit.chunk.title,
                "heading_path": hit.chunk.heading_path,
                "text": hit.chunk.text,
                "score": hit.score,
                "relevance": hit.relevance,
                "answerable": f64::from(hit.relevance) >= min_relevance,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "min_relevance": min_relevance, "results": results })).into_response())
}
