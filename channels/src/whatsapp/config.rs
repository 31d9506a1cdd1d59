//! One WhatsApp business number's settings and secrets.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Graph API host used when none is configured.
pub const DEFAULT_API_BASE: &str = "https://graph.facebook.com";
/// Graph API version used when none is configured.
pub const DEFAULT_API_VERSION: &str = "v23.0";

/// Settings of one WhatsApp Cloud API number. Serialized (then encrypted by the gateway) as
/// the channel account's stored credentials; `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsappAccount {
    /// The number's id in the Graph API (`POST /<id>/messages`; `metadata.phone_number_id`).
    pub phone_number_id: String,
    /// App secret: the key of the webhook's `X-Hub-Signature-256`.
    pub app_secret: String,
    /// System-user access token for the Graph API.
    pub access_token: String,
    /// The string Meta echoes in the verification handshake.
    pub verify_token: String,
    /// Graph API base URL (tests point it at a local fake).
    #[serde(default = "default_base")]
    pub api_base_url: String,
    /// Graph API version, e.g. `v23.0`.
    #[serde(default = "default_version")]
    pub api_version: String,
    /// Template sent instead of free-form text when the 24-hour window is closed.
    #[serde(default)]
    pub reengagement_template: Option<String>,
    /// Language code of that template.
    #[serde(default = "default_language")]
    pub reengagement_language: String,
}

fn default_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_language() -> String {
    "id".to_owned()
}

impl fmt::Debug for WhatsappAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsappAccount")
            .field("phone_number_id", &self.phone_number_id)
            .field("app_secret", &"[redacted]")
            .field("access_token", &"[redacted]")
            .field("verify_token", &"[redacted]")
            .field("api_base_url", &self.api_base_url)
            .field("api_version", &self.api_version)
            .field("reengagement_template", &self.reengagement_template)
            .field("reengagement_language", &self.reengagement_language)
            .finish()
    }
}
