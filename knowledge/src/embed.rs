//! Text embeddings behind one object-safe trait: [`Embedder`].
//!
//! [`OpenAiEmbedder`] calls any OpenAI-compatible `POST /embeddings` endpoint (OpenAI, Ollama,
//! vLLM, LM Studio, text-embeddings-inference) through `async-openai`. [`HashEmbedder`] is a
//! deterministic, offline embedder (hashed bag of analyzed tokens) for tests.
//!
//! Every vector an embedder returns is L2-normalized, so cosine similarity is a dot product.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};

use crate::analyzer;

/// Embedding calls, by outcome (`ok`, `error`, `timeout`).
pub const METRIC_EMBED_REQUESTS_TOTAL: &str = "sapa_embedding_requests_total";
/// Seconds one embedding call took.
pub const METRIC_EMBED_SECONDS: &str = "sapa_embedding_request_seconds";
/// Times retrieval fell back to BM25 alone because embedding failed, by stage (`ingest`,
/// `query`).
pub const METRIC_EMBED_FALLBACKS_TOTAL: &str = "sapa_embedding_fallbacks_total";

/// Why an embedding call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// The call did not finish within the configured timeout (retries included).
    #[error("the embedding endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with an error, or could not be reached.
    #[error("embedding endpoint error: {0}")]
    Endpoint(String),
    /// The endpoint answered, but not with one usable vector per input.
    #[error("unexpected answer from the embedding endpoint: {0}")]
    Protocol(String),
}

/// A text embedding model. Object-safe: held as `Arc<dyn Embedder>`.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync + fmt::Debug {
    /// Model name. Vectors of different models are never compared: it is stored with every
    /// vector and checked at search time.
    fn model(&self) -> &str;

    /// Most texts sent in one request; [`embed_batched`] splits larger inputs.
    fn batch_size(&self) -> usize {
        64
    }

    /// One L2-normalized vector per text, in order.
    ///
    /// # Errors
    /// [`EmbedError`] when the endpoint fails, times out, or answers with the wrong number of
    /// vectors.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Embeds `texts` in requests of at most [`Embedder::batch_size`] texts.
///
/// # Errors
/// The first failing batch's error.
pub async fn embed_batched(
    embedder: &dyn Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(embedder.batch_size().max(1)) {
        out.extend(embedder.embed(batch).await?);
    }
    Ok(out)
}

/// Scales `v` to unit length. Returns false (leaving it unchanged) when it has no direction or
/// is not finite.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm <= f32::EPSILON {
        return false;
    }
    for x in v.iter_mut() {
        *x /= norm;
    }
    true
}

/// Everything [`OpenAiEmbedder`] needs.
#[derive(Clone)]
pub struct EmbedderSettings {
    /// Base URL including the version prefix, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model name, e.g. `text-embedding-3-small`.
    pub model: String,
    /// API key (may be empty for local servers).
    pub api_key: String,
    /// Deadline of one request, retries included.
    pub timeout: Duration,
    /// Most texts per request.
    pub batch_size: usize,
}

impl fmt::Debug for EmbedderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbedderSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

/// An embedding model behind an OpenAI-compatible endpoint. async-openai retries 429, 5xx
/// and connection errors (3 times, exponential backoff); the timeout covers all attempts.
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    settings: EmbedderSettings,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// A client for `settings`. Nothing is sent until the first call.
    pub fn new(settings: EmbedderSettings) -> Self {
        // Explicit base and key: `OpenAIConfig` would otherwise read OPENAI_* variables.
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(settings.api_key.trim());
        Self {
            client: Client::with_config(config),
            settings,
        }
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.settings.model
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size.max(1)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let request = CreateEmbeddingRequest {
            model: self.settings.model.clone(),
            input: EmbeddingInput::StringArray(texts.to_vec()),
            ..Default::default()
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.settings.timeout,
            self.client.embeddings().create(request),
        )
        .await;
        metrics::histogram!(METRIC_EMBED_SECONDS).record(started.elapsed().as_secs_f64());
        let response = match result {
            Err(_) => {
                metrics::counter!(METRIC_EMBED_REQUESTS_TOTAL, "outcome" => "timeout").increment(1);
                return Err(EmbedError::Timeout(self.settings.timeout));
            }
            Ok(Err(err)) => {
                metrics::counter!(METRIC_EMBED_REQUESTS_TOTAL, "outcome" => "error").increment(1);
                return Err(map_error(err));
            }
            Ok(Ok(response)) => response,
        };
        let mut data = response.data;
        data.sort_by_key(|e| e.index);
        let vectors = check_vectors(data.into_iter().map(|e| e.embedding).collect(), texts.len());
        let outcome = if vectors.is_ok() { "ok" } else { "error" };
        metrics::counter!(METRIC_EMBED_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
        vectors
    }
}

/// Checks one vector per input, all of the same non-zero dimension, and normalizes them.
fn check_vectors(mut vectors: Vec<Vec<f32>>, expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    if vectors.len() != expected {
        return Err(EmbedError::Protocol(format!(
            "{} vectors for {expected} inputs",
            vectors.len()
        )));
    }
    let dim = vectors.first().map_or(0, Vec::len);
    if dim == 0 {
        return Err(EmbedError::Protocol("empty vector".to_owned()));
    }
    for v in &mut vectors {
        if v.len() != dim {
            return Err(EmbedError::Protocol(
                "vectors of different dimensions".to_owned(),
            ));
        }
        if !normalize(v) {
            return Err(EmbedError::Protocol(
                "a zero or non-finite vector".to_owned(),
            ));
        }
    }
    Ok(vectors)
}

fn map_error(err: OpenAIError) -> EmbedError {
    let text = match err {
        OpenAIError::ApiError(api) => {
            format!("HTTP {}: {}", api.status_code, api.api_error.message)
        }
        OpenAIError::JSONDeserialize(e, _) => {
            return EmbedError::Protocol(e.to_string());
        }
        other => other.to_string(),
    };
    EmbedError::Endpoint(text.chars().take(300).collect())
}

/// A deterministic offline embedder: each analyzed token (stemmed, slang-normalized, optionally
/// mapped through a synonym table) is hashed into one of `dim` signed buckets. Texts sharing
/// words point the same way; it captures no meaning beyond the synonym table. For tests.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    model: String,
    dim: usize,
    synonyms: HashMap<String, String>,
}

impl HashEmbedder {
    /// An embedder of `dim` dimensions (at least 8) named `hash-{dim}`.
    pub fn new(dim: usize) -> Self {
        let dim = dim.max(8);
        Self {
            model: format!("hash-{dim}"),
            dim,
            synonyms: HashMap::new(),
        }
    }

    /// Treats every analyzed token of `word` as `canonical` (e.g. a paraphrase the lexical index
    /// cannot know).
    pub fn with_synonym(mut self, word: &str, canonical: &str) -> Self {
        let canonical = analyzer::analyze(canonical).join(" ");
        for token in analyzer::analyze(word) {
            self.synonyms.insert(token, canonical.clone());
        }
        self
    }

    /// The vector of one text (zero vector when it has no informative words).
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        for token in analyzer::analyze(text) {
            let token = self.synonyms.get(&token).unwrap_or(&token);
            for part in token.split(' ') {
                let h = fnv1a(part.as_bytes());
                let bucket = (h % self.dim as u64) as usize;
                let sign = if (h >> 63) == 0 { 1.0 } else { -1.0 };
                v[bucket] += sign;
            }
        }
        normalize(&mut v);
        v
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[async_trait::async_trait]
impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hash_vectors_are_unit_length_and_deterministic() {
        let e = HashEmbedder::new(64);
        let a = e.vector("harga kopi susu gula aren");
        let b = e.vector("harga kopi susu gula aren");
        assert_eq!(a, b);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert!(dot(&a, &e.vector("jam buka outlet")) < 0.5);
    }

    #[test]
    fn synonyms_point_the_same_way() {
        let e = HashEmbedder::new(64).with_synonym("sepeda", "motor");
        let a = e.vector("sepeda");
        let b = e.vector("motor");
        assert!(dot(&a, &b) > 0.99, "{}", dot(&a, &b));
    }

    #[test]
    fn vectors_are_checked_and_normalized() {
        let ok = check_vectors(vec![vec![3.0, 4.0]], 1).unwrap();
        assert!((ok[0][0] - 0.6).abs() < 1e-6);
        assert!(check_vectors(vec![vec![1.0]], 2).is_err());
        assert!(check_vectors(vec![vec![1.0, 0.0], vec![1.0]], 2).is_err());
        assert!(check_vectors(vec![vec![0.0, 0.0]], 1).is_err());
    }
}
