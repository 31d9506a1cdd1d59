//! Graph API client: send messages, mark as read, fetch media. Classifies every failure by
//! WhatsApp error code (protocols §1.9).

pub use crate::channel::{MediaError, MediaFile};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::config::WhatsappAccount;
use super::types;
use crate::channel::{ChannelError, network_reason, short_reason};

/// Whether `address` is a business-scoped user id (`US.13491208655302741918`: a country code,
/// a dot, then letters and digits) rather than a phone number (digits only).
pub fn is_user_id(address: &str) -> bool {
    let address = address.trim();
    !address.is_empty()
        && !address
            .trim_start_matches('+')
            .bytes()
            .all(|b| b.is_ascii_digit())
}

/// A customer known only by a business-scoped user id (they adopted a WhatsApp username and
/// did not share their number) is addressed with `recipient` instead of `to`: the Cloud API
/// takes a phone number in `to` and a user id or parent user id in `recipient`, and `to` wins
/// when both are present (Meta's "Business-scoped user IDs" guide, Messages API changes; see
/// also docs.ycloud.com/reference/webhook-updates-bsuid and
/// dualhook.com/docs/contacts-bsuid-api-changes).
pub(crate) fn address_user_id(body: &mut serde_json::Map<String, Value>) {
    let user_id = match body.get("to") {
        Some(Value::String(to)) if is_user_id(to) => to.clone(),
        _ => return,
    };
    body.remove("to");
    body.insert("recipient".into(), Value::String(user_id));
}

/// Client for one business number.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    messages_url: String,
    base: String,
    token: String,
    phone_number_id: String,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("messages_url", &self.messages_url)
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client for `account` using `http` (share one `reqwest::Client` per process).
    pub fn new(http: reqwest::Client, account: &WhatsappAccount) -> Self {
        let base = format!(
            "{}/{}",
            account.api_base_url.trim_end_matches('/'),
            account.api_version.trim_matches('/')
        );
        Self {
            http,
            messages_url: format!("{base}/{}/messages", account.phone_number_id),
            base,
            token: account.access_token.clone(),
            phone_number_id: account.phone_number_id.clone(),
        }
    }

    /// Posts one message body (`messaging_product` is added); returns the new `wamid`.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn send(&self, mut body: Value) -> Result<String, ChannelError> {
        if let Value::Object(map) = &mut body {
            map.insert("messaging_product".into(), json!("whatsapp"));
            map.entry("recipient_type").or_insert(json!("individual"));
            address_user_id(map);
        }
        let response = self
            .http
            .post(&self.messages_url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(network_error)?;
        if status.is_success() {
            let parsed: types::SendResponse =
                serde_json::from_slice(&bytes).map_err(|_| ChannelError::Transient {
                    reason: format!("unreadable success body (HTTP {status})"),
                })?;
            return parsed
                .messages
                .into_iter()
                .next()
                .map(|m| m.id)
                .ok_or_else(|| ChannelError::Transient {
                    reason: "success body without a message id".to_owned(),
                });
        }
        let error = serde_json::from_slice::<types::ErrorBody>(&bytes)
            .ok()
            .map(|b| b.error);
        Err(classify(status, error.as_ref(), retry_after))
    }

    /// Marks an inbound message read; with `typing`, also shows the typing indicator (up to
    /// 25 s or until we answer).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn mark_read(&self, message_id: &str, typing: bool) -> Result<(), ChannelError> {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
        });
        if typing {
            body["typing_indicator"] = json!({ "type": "text" });
        }
        let response = self
            .http
            .post(&self.messages_url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = response
            .json::<types::ErrorBody>()
            .await
            .ok()
            .map(|b| b.error);
        Err(classify(status, error.as_ref(), None))
    }

    /// Downloads inbound media in two steps (metadata, then the file with the same bearer
    /// token; the lookaside URL is only valid for 5 minutes, so both steps run back to back)
    /// and checks the bytes against the SHA-256 the API reported and `expected_sha256` (the
    /// webhook's), when given. Files over `max_bytes` are refused without reading them whole.
    ///
    /// # Errors
    /// [`MediaError::Provider`] with the classified failure (an unknown or expired media id is
    /// [`ChannelError::Permanent`]), [`MediaError::Corrupt`] for a hash mismatch,
    /// [`MediaError::TooLarge`] over the limit.
    pub async fn download_media(
        &self,
        media_id: &str,
        expected_sha256: Option<&str>,
        max_bytes: u64,
    ) -> Result<MediaFile, MediaError> {
        let response = self
            .http
            .get(format!("{}/{media_id}", self.base))
            .query(&[("phone_number_id", self.phone_number_id.as_str())])
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(network_error)?;
        let status = response.status();
        if !status.is_success() {
            let error = response
                .json::<types::ErrorBody>()
                .await
                .ok()
                .map(|b| b.error);
            return Err(MediaError::Provider(classify(status, error.as_ref(), None)));
        }
        let info: types::MediaInfo =
            response.json().await.map_err(|_| ChannelError::Transient {
                reason: "unreadable media metadata".to_owned(),
            })?;
        if let Some(size) = info.size()
            && size > max_bytes
        {
            return Err(MediaError::TooLarge { limit: max_bytes });
        }
        let mut file = self
            .http
            .get(&info.url)
            .bearer_auth(&self.token)
            .header(reqwest::header::USER_AGENT, "sapa")
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(network_error)?;
        let status = file.status();
        if !status.is_success() {
            return Err(MediaError::Provider(classify(status, None, None)));
        }
        if file.content_length().is_some_and(|len| len > max_bytes) {
            return Err(MediaError::TooLarge { limit: max_bytes });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = file.chunk().await.map_err(network_error)? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(MediaError::TooLarge { limit: max_bytes });
            }
            bytes.extend_from_slice(&chunk);
        }
        let hashes = [info.sha256.as_deref(), expected_sha256];
        if hashes
            .into_iter()
            .flatten()
            .filter(|h| !h.trim().is_empty())
            .any(|h| !sha256_matches(&bytes, h))
        {
            return Err(MediaError::Corrupt);
        }
        Ok(MediaFile {
            mime_type: info.mime_type,
            bytes,
        })
    }
}

/// How long the file download (step 2) may take; large documents need more than the
/// client's default timeout.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether `expected` (hex or base64, as Meta has used both) is the SHA-256 of `bytes`.
fn sha256_matches(bytes: &[u8], expected: &str) -> bool {
    let digest = Sha256::digest(bytes);
    let expected = expected.trim();
    hex::decode(expected)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::STANDARD
                .decode(expected)
                .ok()
        })
        .is_some_and(|e| e.as_slice() == digest.as_slice())
}

fn network_error(err: reqwest::Error) -> ChannelError {
    ChannelError::Transient {
        reason: network_reason(&err).to_owned(),
    }
}

/// The Graph error code for a closed 24-hour window.
pub const REENGAGEMENT_CODE: i64 = 131_047;

/// Maps an HTTP status and Graph error to retry/give-up (protocols §1.9).
fn classify(
    status: StatusCode,
    error: Option<&types::GraphError>,
    retry_after: Option<Duration>,
) -> ChannelError {
    let code = error.map(|e| e.code);
    let title = error.map(|e| e.message.as_str()).unwrap_or_default();
    match code {
        // Throughput, app/WABA call limits.
        Some(130_429 | 4 | 80_007) => ChannelError::RateLimited { retry_after },
        // Pair rate limit: too many messages to this one customer.
        Some(131_056) => ChannelError::RecipientRateLimited { retry_after },
        // Maintenance, temporary service errors.
        Some(131_057 | 131_000 | 1 | 2) => ChannelError::Transient {
            reason: format!("graph error {} (HTTP {status})", code.unwrap_or_default()),
        },
        Some(code) if !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS => {
            ChannelError::Permanent {
                code: Some(code.to_string()),
                reason: permanent_reason(code, title),
            }
        }
        _ if status == StatusCode::TOO_MANY_REQUESTS => ChannelError::RateLimited { retry_after },
        _ if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT => {
            ChannelError::Transient {
                reason: format!("HTTP {status}"),
            }
        }
        _ => ChannelError::Permanent {
            code: None,
            reason: format!("HTTP {status}"),
        },
    }
}

fn permanent_reason(code: i64, title: &str) -> String {
    let known = match code {
        131_047 => "24-hour customer service window closed",
        131_026 => "message undeliverable (number not on WhatsApp or app too old)",
        131_049 => "not delivered to keep ecosystem engagement healthy",
        131_048 => "spam rate limit (number quality)",
        131_008 | 131_009 | 100 => "invalid or missing parameter",
        132_000 => "template parameter count mismatch",
        132_001 => "template or translation does not exist",
        190 | 0 => "access token invalid or expired",
        368 | 131_031 => "business account restricted",
        _ => "",
    };
    let title = short_reason(title);
    match (known.is_empty(), title.is_empty()) {
        (false, _) => format!("whatsapp {code}: {known}"),
        (true, false) => format!("whatsapp {code}: {title}"),
        (true, true) => format!("whatsapp {code}"),
    }
}
