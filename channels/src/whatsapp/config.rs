//! One WhatsApp business number's settings and secrets.

use std::fmt;
use std::time::Duration;

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
    /// The approved *authentication* template (copy-code button) one-time codes are sent
    /// with; none: this number sends no codes.
    #[serde(default)]
    pub otp_template: Option<String>,
    /// Language code of that template.
    #[serde(default = "default_language")]
    pub otp_template_language: String,
    /// The number's throughput (Meta: 80/s by default, up to 1,000/s after an upgrade, 20/s
    /// for coexistence numbers).
    #[serde(default = "default_messages_per_second")]
    pub messages_per_second: u32,
    /// One more message to the same customer per `pair_interval` (Meta's pair rate limit is
    /// about one message per 6 s, with short bursts tolerated), written like `6s` or `500ms`.
    #[serde(default = "default_pair_interval")]
    pub pair_interval: String,
    /// Messages to one customer that may go back to back before `pair_interval` applies.
    #[serde(default = "default_pair_burst")]
    pub pair_burst: u32,
}

/// Default throughput of a number, messages per second.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 80;
/// Highest throughput Meta grants a number, messages per second.
pub const MAX_MESSAGES_PER_SECOND: u32 = 1000;
/// Default pair interval.
pub const DEFAULT_PAIR_INTERVAL: &str = "6s";
/// Default pair burst.
pub const DEFAULT_PAIR_BURST: u32 = 3;

fn default_messages_per_second() -> u32 {
    DEFAULT_MESSAGES_PER_SECOND
}

fn default_pair_interval() -> String {
    DEFAULT_PAIR_INTERVAL.to_owned()
}

fn default_pair_burst() -> u32 {
    DEFAULT_PAIR_BURST
}

impl WhatsappAccount {
    /// `pair_interval` as a duration.
    ///
    /// # Errors
    /// What is wrong with the text (not a duration like `6s`, or outside 100 ms–1 h).
    pub fn pair_interval(&self) -> Result<Duration, String> {
        let interval = humantime::parse_duration(self.pair_interval.trim()).map_err(|e| {
            format!(
                "pair_interval `{}` is not a duration like `6s` or `500ms`: {e}",
                self.pair_interval
            )
        })?;
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
            return Err(format!(
                "pair_interval must be between 100ms and 1h, not `{}`",
                self.pair_interval
            ));
        }
        Ok(interval)
    }

    /// Checks the pacing settings: throughput within 1–1,000 messages/s, burst within 1–100,
    /// and a valid pair interval.
    ///
    /// # Errors
    /// What to fix, naming the setting.
    pub fn check_pacing(&self) -> Result<(), String> {
        if !(1..=MAX_MESSAGES_PER_SECOND).contains(&self.messages_per_second) {
            return Err(format!(
                "messages_per_second must be between 1 and {MAX_MESSAGES_PER_SECOND} (Meta's highest tier), not {}",
                self.messages_per_second
            ));
        }
        if !(1..=100).contains(&self.pair_burst) {
            return Err(format!(
                "pair_burst must be between 1 and 100, not {}",
                self.pair_burst
            ));
        }
        self.pair_interval().map(|_| ())
    }
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
            .field("otp_template", &self.otp_template)
            .field("otp_template_language", &self.otp_template_language)
            .field("messages_per_second", &self.messages_per_second)
            .field("pair_interval", &self.pair_interval)
            .field("pair_burst", &self.pair_burst)
            .finish()
    }
}
