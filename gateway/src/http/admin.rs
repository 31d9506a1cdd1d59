//! The admin REST API of a tenant: its knowledge base (upload, list, delete and search
//! documents) and sending messages to customers as an agent (text and media).
//!
//! Every request carries `Authorization: Bearer <api key>` (created with
//! `sapa tenant api-key create TENANT`); the key decides the tenant, so a key can only ever see and
//! change its own tenant's documents. Uploads are the raw file bytes with the document name in
//! `?name=`, limited by `admin.max_upload_bytes`; ingestion runs on the server's shared index
//! (the one writer of the index directory) in a blocking task, and the bot answers from a new
//! document as soon as the upload returns.
//!
//! Media a customer sent on WhatsApp is stored as metadata only; `GET
//! /v1/admin/messages/{id}/media` fetches the file from the Graph API on demand.

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use channels::ChannelError;
use channels::model::{MediaKind, MediaSource, OutboundMedia, is_http_url};
use channels::{ChannelKind, MediaError};
use knowledge::{IngestError, IngestOutcome};
use serde::Deserialize;
use serde_json::json;

use crate::api_key::{self, Scope};
use crate::http::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::store::{StoredApiKey, now_ms, rfc3339};

/// Most chunks `GET /v1/admin/knowledge/search` returns.
const MAX_SEARCH_LIMIT: usize = 50;
/// Longest document name, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// Admin routes. Every request is authenticated (its API key resolved to its tenant) before its
/// body is read. Their body limit is `admin.max_upload_bytes`, not the JSON APIs' limit.
pub fn router(state: &AppState) -> Router<AppState> {
    let max_upload_bytes = state.config.admin.max_upload_bytes;
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
        .route("/v1/admin/conversations", get(find_conversation))
        .route(
            "/v1/admin/conversations/{conversation_id}/messages",
            post(send_message),
        )
        .route("/v1/admin/messages/{message_id}/media", get(message_media))
        .route("/v1/admin/flows", get(super::admin_flows::list))
        .route(
            "/v1/admin/flows/{name}",
            get(super::admin_flows::get_one)
                .put(super::admin_flows::put)
                .delete(super::admin_flows::delete),
        )
        .route_layer(from_fn_with_state(state.clone(), require_api_key))
        .layer(DefaultBodyLimit::max(max_upload_bytes))
}

/// The tenant the request's API key belongs to (set by [`require_api_key`]).
#[derive(Debug, Clone)]
pub(crate) struct AdminTenant(pub(crate) String);

/// The scope a tenant API route needs, by its path.
fn required_scope(path: &str) -> Scope {
    if path.starts_with("/v1/admin/knowledge") {
        Scope::Knowledge
    } else if path.starts_with("/v1/admin/flows") {
        Scope::Flows
    } else if path.starts_with("/v1/otp") {
        Scope::Otp
    } else {
        Scope::Messages
    }
}

/// Middleware of every tenant API route: 401 unless the bearer API key is valid, 403 unless
/// it has the route's scope, before any extractor reads the body.
pub(crate) async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = match authenticate(&state, request.headers()).await {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    let scope = required_scope(request.uri().path());
    if !key.scopes.contains(&scope) {
        let scope = scope.as_str();
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "this API key lacks the `{scope}` scope; create one with `sapa tenant api-key create {} --scope {scope}`",
                key.tenant_id
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(AdminTenant(key.tenant_id));
    next.run(request).await
}

/// Resolves the bearer API key to its stored record (tenant and scopes).
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<StoredApiKey, ApiError> {
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
    // Best effort, and at most once a minute per key (no write on most requests): a failed
    // "last used" write never refuses a valid key.
    let now = now_ms();
    if stored.last_use_is_stale(now)
        && let Err(err) = state.store.touch_api_key(prefix, now).await
    {
        tracing::warn!(error = %err, "cannot record the API key's last use");
    }
    Ok(stored)
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

/// The document name of an upload (`?name=`), checked: a plain file name whose extension is a
/// supported format.
///
/// # Errors
/// 400 `invalid_name`, 415 `unsupported_format`.
pub(crate) fn document_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.map(str::trim).unwrap_or_default();
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
    Ok(name.to_owned())
}

/// Reads an upload's body, at most `admin.max_upload_bytes`.
///
/// # Errors
/// 413 `payload_too_large`.
pub(crate) async fn upload_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, ApiError> {
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
    Ok(bytes.to_vec())
}

/// What storing an uploaded document did.
#[derive(Debug)]
pub(crate) struct Stored {
    /// 201 for a new document, 200 otherwise.
    pub(crate) status: StatusCode,
    /// `indexed`, `replaced` or `unchanged`.
    pub(crate) outcome: &'static str,
    /// The document as listed afterwards (with its dates).
    pub(crate) document: Option<serde_json::Value>,
}

/// Ingests `bytes` as the tenant's document `name` (replacing one of the same name) and
/// records its dates; the bot answers from it as soon as this returns.
///
/// # Errors
/// 415/422 for a document that cannot be read, 500 for an index failure.
pub(crate) async fn store_document(
    state: &AppState,
    tenant: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<Stored, ApiError> {
    // Parsing and index writes run on the blocking pool; with `[embeddings]` the chunks are
    // embedded too (an embedding failure still indexes the document for BM25).
    let outcome = state
        .knowledge
        .ingest(tenant, name, bytes)
        .await
        .map_err(ingest_error)?;
    let id = knowledge::document_id(tenant, name);
    let (status, label) = match outcome {
        IngestOutcome::Indexed { .. } => (StatusCode::CREATED, "indexed"),
        IngestOutcome::Replaced { .. } => (StatusCode::OK, "replaced"),
        IngestOutcome::Unchanged => (StatusCode::OK, "unchanged"),
    };
    if label != "unchanged" {
        state
            .store
            .record_document(tenant, &id, name, now_ms())
            .await?;
    }
    let document = documents(state, tenant)
        .await?
        .into_iter()
        .find(|d| d["id"] == id.as_str());
    tracing::info!(
        tenant = %tenant,
        document = %id,
        outcome = label,
        chunks = document.as_ref().map_or(0, |d| d["chunks"].as_u64().unwrap_or(0)),
        "document uploaded"
    );
    Ok(Stored {
        status,
        outcome: label,
        document,
    })
}

/// The tenant's documents, sorted by name: id, name, title, chunk count, SHA-256, and when
/// known `created_at` / `updated_at` (RFC 3339).
///
/// # Errors
/// 500 for an index or database failure.
pub(crate) async fn documents(
    state: &AppState,
    tenant: &str,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let knowledge = state.knowledge.clone();
    let owner = tenant.to_owned();
    let listed = blocking(move || knowledge.list_documents(&owner))
        .await?
        .map_err(|e| index_error(&e))?;
    let dates = state.store.document_dates(tenant).await?;
    Ok(listed
        .into_iter()
        .map(|d| {
            let when = dates.get(&d.id);
            json!({
                "id": d.id,
                "name": d.name,
                "title": d.title,
                "chunks": d.chunks,
                "sha256": d.sha256,
                "created_at": when.map(|w| rfc3339(w.created_at_ms)),
                "updated_at": when.map(|w| rfc3339(w.updated_at_ms)),
            })
        })
        .collect())
}

/// Deletes the tenant's document `id` with its chunks.
///
/// # Errors
/// 404 `document_not_found` when the tenant has no such document, 500 for an index failure.
pub(crate) async fn remove_document(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<(), ApiError> {
    let knowledge = state.knowledge.clone();
    let (owner, document) = (tenant.to_owned(), id.to_owned());
    let deleted = blocking(move || knowledge.delete_document(&owner, &document))
        .await?
        .map_err(|e| index_error(&e))?;
    if !deleted {
        return Err(ApiError::not_found(
            "document_not_found",
            format!("no document `{id}` in this tenant's knowledge base"),
        ));
    }
    state.store.forget_document(tenant, id).await?;
    tracing::info!(tenant = %tenant, document = %id, "document deleted");
    Ok(())
}

/// The chunks of the tenant's document `id`, in document order.
///
/// # Errors
/// 404 `document_not_found` when the tenant has no such document, 500 for an index failure.
pub(crate) async fn document_chunks(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<Vec<knowledge::Chunk>, ApiError> {
    let knowledge = state.knowledge.clone();
    let (owner, document) = (tenant.to_owned(), id.to_owned());
    blocking(move || knowledge.document_chunks(&owner, &document))
        .await?
        .map_err(|e| index_error(&e))?
        .ok_or_else(|| {
            ApiError::not_found(
                "document_not_found",
                format!("no document `{id}` in this tenant's knowledge base"),
            )
        })
}

/// `POST /v1/admin/knowledge/documents?name=FILE.md` with the file's bytes as the body.
async fn upload_document(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    headers: HeaderMap,
    params: Result<Query<UploadParams>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let name = document_name(params.name.as_deref())?;
    let bytes = upload_body(&state, &headers, body).await?;
    let stored = store_document(&state, &tenant, &name, bytes).await?;
    Ok((
        stored.status,
        axum::Json(json!({ "outcome": stored.outcome, "document": stored.document })),
    )
        .into_response())
}

/// `GET /v1/admin/knowledge/documents`.
async fn list_documents(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
) -> Result<Response, ApiError> {
    let documents = documents(&state, &tenant).await?;
    Ok(axum::Json(json!({ "documents": documents })).into_response())
}

/// `DELETE /v1/admin/knowledge/documents/{id}`.
async fn delete_document(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    remove_document(&state, &tenant, &id).await?;
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
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let found = search_knowledge(&state, &tenant, &params.q, params.limit).await?;
    Ok(axum::Json(found).into_response())
}

/// What the bot would retrieve for `q` in the tenant's knowledge: `{"min_relevance",
/// "results": [{chunk_id, document_id, document_name, title, heading_path, text, score,
/// relevance, answerable}]}`, best first.
///
/// # Errors
/// 400 `missing_query` / `invalid_limit`, 500 for an index failure.
pub(crate) async fn search_knowledge(
    state: &AppState,
    tenant: &str,
    q: &str,
    limit: Option<usize>,
) -> Result<serde_json::Value, ApiError> {
    let query = q.trim().to_owned();
    if query.is_empty() {
        return Err(ApiError::bad_request(
            "missing_query",
            "pass the question as `?q=...`",
        ));
    }
    let limit = limit.unwrap_or(state.config.knowledge.top_k);
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
    let tenant = tenant.to_owned();
    let hits = blocking(move || {
        knowledge.retrieve(
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
    Ok(json!({ "min_relevance": min_relevance, "results": results }))
}

/// Longest agent message text, in characters.
const MAX_TEXT_CHARS: usize = 4096;
/// Longest media caption, in characters (WhatsApp's and Telegram's limit).
const MAX_CAPTION_CHARS: usize = 1024;
/// Longest provider media id, in bytes.
const MAX_MEDIA_ID_BYTES: usize = 512;
/// Longest document file name, in characters.
const MAX_FILENAME_CHARS: usize = 240;

/// `POST /v1/admin/conversations/{id}/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessageBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    media: Option<MediaBody>,
}

/// The `media` object: `kind` and exactly one of `url` / `id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaBody {
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// Checks an agent message for a conversation on `channel_kind`; returns its text and media.
fn validate_message(
    body: SendMessageBody,
    channel_kind: ChannelKind,
) -> Result<(String, Option<OutboundMedia>), ApiError> {
    let text = body.text.as_deref().map(str::trim).unwrap_or_default();
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(unprocessable(
            "text_too_long",
            format!(
                "`text` is longer than {MAX_TEXT_CHARS} characters; split it into several messages"
            ),
        ));
    }
    let media = body
        .media
        .map(|m| validate_media(m, channel_kind))
        .transpose()?;
    if text.is_empty() && media.is_none() {
        return Err(unprocessable(
            "empty_message",
            "send a non-empty `text`, a `media` object, or both",
        ));
    }
    Ok((text.to_owned(), media))
}

fn validate_media(media: MediaBody, channel_kind: ChannelKind) -> Result<OutboundMedia, ApiError> {
    let kinds = MediaKind::ALL.map(MediaKind::as_str).join(", ");
    let kind = MediaKind::parse(media.kind.trim()).ok_or_else(|| {
        unprocessable(
            "invalid_media_kind",
            format!("`media.kind` must be one of {kinds}"),
        )
    })?;
    let source = match (media.url, media.id) {
        (Some(url), None) => {
            let url = url.trim().to_owned();
            if !is_http_url(&url) {
                return Err(unprocessable(
                    "invalid_media_url",
                    format!(
                        "`media.url` must be an absolute http:// or https:// URL (at most {} characters, no spaces) that the provider can download",
                        channels::model::MAX_MEDIA_URL_CHARS
                    ),
                ));
            }
            MediaSource::Url(url)
        }
        (None, Some(id)) => {
            let id = id.trim().to_owned();
            if id.is_empty()
                || id.len() > MAX_MEDIA_ID_BYTES
                || id.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(unprocessable(
                    "invalid_media_id",
                    format!(
                        "`media.id` must be a provider media id (WhatsApp media id or Telegram file_id) of 1-{MAX_MEDIA_ID_BYTES} bytes without spaces"
                    ),
                ));
            }
            if channel_kind.is_webchat() {
                return Err(unprocessable(
                    "unsupported_media_source",
                    "web chat conversations have no provider media ids; send `media.url` instead",
                ));
            }
            MediaSource::ProviderId(id)
        }
        _ => {
            return Err(unprocessable(
                "invalid_media_source",
                "give exactly one of `media.url` (an https URL) or `media.id` (a provider media id)",
            ));
        }
    };
    let caption = media
        .caption
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    if let Some(caption) = &caption {
        if !matches!(
            kind,
            MediaKind::Image | MediaKind::Video | MediaKind::Document
        ) {
            return Err(unprocessable(
                "invalid_caption",
                format!(
                    "{} messages have no caption; put the words in `text` (sent as its own message)",
                    kind.as_str()
                ),
            ));
        }
        if caption.chars().count() > MAX_CAPTION_CHARS {
            return Err(unprocessable(
                "invalid_caption",
                format!(
                    "`media.caption` is longer than {MAX_CAPTION_CHARS} characters; put longer text in `text`"
                ),
            ));
        }
    }
    let filename = media
        .filename
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty());
    if let Some(name) = &filename
        && (kind != MediaKind::Document
            || name.chars().count() > MAX_FILENAME_CHARS
            || name.contains(['/', '\\'])
            || name.chars().any(char::is_control))
    {
        return Err(unprocessable(
            "invalid_filename",
            format!(
                "`media.filename` is only for documents: a plain file name of at most {MAX_FILENAME_CHARS} characters, without `/` or `\\`"
            ),
        ));
    }
    Ok(OutboundMedia {
        kind,
        source,
        caption,
        filename,
    })
}

/// `POST /v1/admin/conversations/{conversation_id}/messages` with
/// `{"text": "...", "media": {"kind": "image", "url": "https://..."}}`: stores the message as
/// the agent's and queues it for the customer (202; the dispatcher sends it).
async fn send_message(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(conversation_id): Path<String>,
    body: Result<ApiJson<SendMessageBody>, ApiError>,
) -> Result<Response, ApiError> {
    let ApiJson(body) = body?;
    let not_found = || {
        ApiError::not_found(
            "conversation_not_found",
            format!("this tenant has no conversation `{conversation_id}`"),
        )
    };
    let channel_kind = state
        .store
        .conversation_channel_kind(&tenant, &conversation_id)
        .await?
        .ok_or_else(not_found)?;
    let (text, media) = validate_message(body, channel_kind)?;
    let queued = state
        .store
        .enqueue_agent_message(&tenant, &conversation_id, &text, media.as_ref())
        .await?
        .ok_or_else(not_found)?;
    state.dispatcher_wake.notify_one();
    crate::coord::announce(
        &state.store,
        state.coord.as_ref(),
        &tenant,
        &conversation_id,
    )
    .await;
    tracing::info!(
        tenant = %tenant,
        conversation = %conversation_id,
        message_id = queued.message_id,
        channel = %queued.channel_kind,
        media = media.as_ref().map_or("none", |m| m.kind.as_str()),
        "agent message queued"
    );
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "message_id": queued.message_id,
            "conversation_id": conversation_id,
            "channel": queued.channel_kind,
            "status": "pending",
        })),
    )
        .into_response())
}

/// Largest inbound media file the admin API downloads (WhatsApp's limit, for documents).
const MAX_INBOUND_MEDIA_BYTES: u64 = 100 * 1024 * 1024;

/// The media metadata stored with a customer message (`messages.media`).
#[derive(Debug, Deserialize)]
struct StoredMedia {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    filename: Option<String>,
}

/// `GET /v1/admin/messages/{message_id}/media`: the file a customer sent in message
/// `message_id` (the `message_id` of the stored message), downloaded from the provider now
/// (WhatsApp: media URL, then the bearer download, SHA-256 checked). Always an attachment
/// with `nosniff`, so a customer's file never renders as a page of this origin.
async fn message_media(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(message_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "media_not_found",
            format!("this tenant has no customer message `{message_id}` with a media file"),
        )
    };
    let id: i64 = message_id.trim().parse().map_err(|_| not_found())?;
    let stored = state
        .store
        .inbound_media(&tenant, id)
        .await?
        .ok_or_else(not_found)?;
    customer_media(&state, &tenant, id, &stored, false)
        .await?
        .ok_or_else(not_found)
}

/// Downloads the file of the tenant's customer message `id` (`stored`) from its provider now;
/// `None` when the message has no provider file. With `inline_images`, an image is served for
/// display (`inline`, under a CSP that allows nothing else); everything else is an attachment.
///
/// # Errors
/// 502/501 when the provider cannot give the file.
pub(crate) async fn customer_media(
    state: &AppState,
    tenant: &str,
    id: i64,
    stored: &crate::store::InboundMediaRef,
    inline_images: bool,
) -> Result<Option<Response>, ApiError> {
    let Ok(media) = serde_json::from_str::<StoredMedia>(&stored.media) else {
        return Ok(None);
    };
    let Some(media_id) = media
        .id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
    else {
        return Ok(None);
    };
    let unavailable =
        |message: String| ApiError::new(StatusCode::BAD_GATEWAY, "media_unavailable", message);
    if !is_safe_media_id(media_id) {
        return Err(unavailable(
            "the stored media id is malformed; the file cannot be fetched".to_owned(),
        ));
    }
    let kind = stored.channel_kind;
    let route = state
        .accounts
        .by_account_id(&stored.channel_account_id)
        .filter(|r| r.tenant_id == *tenant)
        .ok_or_else(|| {
            unavailable(format!(
                "the {kind} account this message arrived on is no longer configured, so its media cannot be fetched"
            ))
        })?;
    let file = route.channel
        .download_media(media_id, media.sha256.as_deref(), MAX_INBOUND_MEDIA_BYTES)
        .await
        .map_err(|err| {
            tracing::warn!(tenant = %tenant, message_id = id, error = %err, "inbound media download failed");
            match err {
                MediaError::Unsupported => ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "media_download_unsupported",
                    format!("downloading customer media is not supported for {kind} messages"),
                ),
                MediaError::Corrupt => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "media_corrupt",
                    "the file WhatsApp returned does not match the SHA-256 it announced; retry later",
                ),
                MediaError::TooLarge { limit } => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "media_too_large",
                    format!("the file is larger than {} MB, the most this API downloads", limit / (1024 * 1024)),
                ),
                MediaError::Provider(ChannelError::Permanent { reason, .. }) => unavailable(format!(
                    "WhatsApp refused to give the file ({reason}); the media id may have expired (WhatsApp keeps customer media only for a limited time) or the access token lacks permission"
                )),
                MediaError::Provider(other) => unavailable(format!(
                    "WhatsApp could not be reached or failed ({other}); retry later"
                )),
            }
        })?;
    let mime = file
        .mime_type
        .as_deref()
        .or(media.mime_type.as_deref())
        .and_then(safe_mime)
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let kind = media.kind.as_deref().unwrap_or("media");
    let filename = media
        .filename
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map_or_else(
            || format!("{kind}-{media_id}.{}", extension_of(&mime)),
            str::to_owned,
        );
    // Only raster images render inline (never SVG, which can carry script); the CSP keeps even
    // a mislabelled file inert.
    let inline = inline_images
        && matches!(
            mime.as_str(),
            "image/jpeg" | "image/png" | "image/gif" | "image/webp"
        );
    let disposition = if inline {
        "inline".to_owned()
    } else {
        content_disposition(&filename)
    };
    Ok(Some(
        (
            [
                (header::CONTENT_TYPE, mime),
                (header::CONTENT_DISPOSITION, disposition),
                (header::CACHE_CONTROL, "private".to_owned()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; sandbox".to_owned(),
                ),
            ],
            file.bytes,
        )
            .into_response(),
    ))
}

/// Whether a stored media id is safe to put in a Graph API path (WhatsApp ids are digits).
fn is_safe_media_id(id: &str) -> bool {
    id.len() <= MAX_MEDIA_ID_BYTES
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `type/subtype[; params]` from the provider, or `None` when it is not a plausible MIME type.
fn safe_mime(mime: &str) -> Option<String> {
    let mime = mime.trim().to_ascii_lowercase();
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let (kind, sub) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    let printable = mime.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    (mime.len() <= 200 && token(kind) && token(sub) && printable && !mime.contains(['"', '\\']))
        .then_some(mime)
}

/// A file extension for a MIME type (`bin` when unknown).
fn extension_of(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or_default().trim() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "audio/mp4" => "m4a",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => "bin",
    }
}

/// `attachment` with an ASCII `filename` (anything else replaced by `_`) and the exact name
/// as RFC 5987 `filename*`; path separators, quotes and control characters never get through.
fn content_disposition(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if matches!(c, '/' | '\\' | '"') {
                '_'
            } else {
                c
            }
        })
        .take(MAX_FILENAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.');
    let cleaned = if cleaned.is_empty() { "media" } else { cleaned };
    let ascii: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in cleaned.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindConversationParams {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    customer: Option<String>,
}

/// `GET /v1/admin/conversations?channel=whatsapp&customer=6281311112222`: the tenant's most
/// recent conversation with that customer (WhatsApp `wa_id`, Telegram chat id).
async fn find_conversation(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    params: Result<Query<FindConversationParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(query_error)?;
    let channel = params.channel.as_deref().map(str::trim).unwrap_or_default();
    let customer = params
        .customer
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    let kind = channel
        .parse::<ChannelKind>()
        .ok()
        .filter(|kind| !kind.is_webchat() && state.accounts.provider(kind.as_str()).is_some());
    let (Some(kind), false) = (kind, customer.is_empty()) else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "pass `?channel=whatsapp|telegram&customer=<wa_id or chat id>`",
        ));
    };
    let conversation_id = state
        .store
        .latest_conversation_of(&tenant, kind, customer)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "conversation_not_found",
                format!("this tenant has no {channel} conversation with `{customer}`"),
            )
        })?;
    Ok(
        axum::Json(json!({ "conversation_id": conversation_id, "channel": channel }))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn body(value: serde_json::Value) -> SendMessageBody {
        serde_json::from_value(value).unwrap()
    }

    fn error_code(value: serde_json::Value, channel: ChannelKind) -> &'static str {
        let err = validate_message(body(value), channel).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        err.code()
    }

    #[test]
    fn valid_messages_become_text_and_media() {
        let (text, media) = validate_message(
            body(json!({"text": " Menu ", "media": {"kind": "image", "url": "https://cdn.example.com/m.jpg"}})),
            ChannelKind::Whatsapp,
        )
        .unwrap();
        assert_eq!(text, "Menu");
        let media = media.unwrap();
        assert_eq!(media.kind, MediaKind::Image);
        assert_eq!(
            media.source,
            MediaSource::Url("https://cdn.example.com/m.jpg".into())
        );
        let (text, media) = validate_message(
            body(json!({"media": {"kind": "document", "id": "BQACAgIAAxk", "caption": "Harga", "filename": "harga.pdf"}})),
            ChannelKind::Telegram,
        )
        .unwrap();
        assert!(text.is_empty());
        let media = media.unwrap();
        assert_eq!(media.source, MediaSource::ProviderId("BQACAgIAAxk".into()));
        assert_eq!(media.filename.as_deref(), Some("harga.pdf"));
    }

    #[test]
    fn invalid_messages_say_what_to_fix() {
        let cases = [
            (json!({}), "empty_message"),
            (json!({"text": "   "}), "empty_message"),
            (
                json!({"text": "x".repeat(MAX_TEXT_CHARS + 1)}),
                "text_too_long",
            ),
            (
                json!({"media": {"kind": "gif", "url": "https://a.b/c"}}),
                "invalid_media_kind",
            ),
            (json!({"media": {"kind": "image"}}), "invalid_media_source"),
            (
                json!({"media": {"kind": "image", "url": "https://a.b/c", "id": "1"}}),
                "invalid_media_source",
            ),
            (
                json!({"media": {"kind": "image", "url": "ftp://a.b/c"}}),
                "invalid_media_url",
            ),
            (
                json!({"media": {"kind": "image", "url": "javascript:alert(1)"}}),
                "invalid_media_url",
            ),
            (
                json!({"media": {"kind": "image", "id": "a b"}}),
                "invalid_media_id",
            ),
            (
                json!({"media": {"kind": "audio", "id": "1", "caption": "x"}}),
                "invalid_caption",
            ),
            (
                json!({"media": {"kind": "image", "id": "1", "caption": "x".repeat(1025)}}),
                "invalid_caption",
            ),
            (
                json!({"media": {"kind": "image", "id": "1", "filename": "a.jpg"}}),
                "invalid_filename",
            ),
            (
                json!({"media": {"kind": "document", "id": "1", "filename": "../a.pdf"}}),
                "invalid_filename",
            ),
        ];
        for (value, code) in cases {
            assert_eq!(
                error_code(value.clone(), ChannelKind::Whatsapp),
                code,
                "{value}"
            );
        }
        assert_eq!(
            error_code(
                json!({"media": {"kind": "image", "id": "1"}}),
                ChannelKind::Webchat
            ),
            "unsupported_media_source"
        );
    }

    #[test]
    fn media_headers_are_safe() {
        assert_eq!(
            content_disposition("struk \"bulan\"/../ini.pdf"),
            "attachment; filename=\"struk _bulan__.._ini.pdf\"; filename*=UTF-8''struk%20_bulan__.._ini.pdf"
        );
        assert_eq!(
            content_disposition("harga kopi ☕.pdf"),
            "attachment; filename=\"harga kopi _.pdf\"; filename*=UTF-8''harga%20kopi%20%E2%98%95.pdf"
        );
        assert_eq!(
            content_disposition("..\r\n"),
            "attachment; filename=\"media\"; filename*=UTF-8''media"
        );
        assert_eq!(safe_mime("image/JPEG").as_deref(), Some("image/jpeg"));
        assert_eq!(
            safe_mime("audio/ogg; codecs=opus").as_deref(),
            Some("audio/ogg; codecs=opus")
        );
        assert_eq!(safe_mime("text/html\r\nx: y"), None);
        assert_eq!(safe_mime("nonsense"), None);
        assert_eq!(extension_of("image/jpeg"), "jpg");
        assert!(is_safe_media_id("1234567890123456"));
        assert!(!is_safe_media_id("../me"));
        assert!(!is_safe_media_id("1?x=y"));
    }
}
