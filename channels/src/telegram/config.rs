//! One Telegram bot's settings and secrets.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bot API host used when none is configured.
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// Default long-polling timeout (seconds) of `getUpdates`.
pub const DEFAULT_POLL_TIMEOUT_S: u64 = 25;

/// How updates reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// Telegram POSTs updates to `/webhooks/telegram/{bot_id}` (needs a public HTTPS URL).
    Webhook,
    /// The gateway calls `getUpdates` in a loop (developer laptops, no public URL).
    Polling,
}

impl UpdateMode {
    /// Parses `webhook` or `polling`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Self::Webhook),
            "polling" => Some(Self::Polling),
            _ => None,
        }
    }

    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Polling => "polling",
        }
    }
}

/// Settings of one Telegram bot. Serialized (then encrypted by the gateway) as the channel
/// account's stored credentials; `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramAccount {
    /// The token BotFather gave (`<bot id>:<secret>`).
    pub bot_token: String,
    /// The `secret_token` registered with `setWebhook`; Telegram sends it back in
    /// `X-Telegram-Bot-Api-Secret-Token`.
    #[serde(default)]
    pub webhook_secret: String,
    /// Bot API base URL (tests point it at a local fake).
    #[serde(default = "default_base")]
    pub api_base_url: String,
    /// Webhook or long polling.
    #[serde(default = "default_mode")]
    pub mode: UpdateMode,
    /// `getUpdates` long-poll timeout, seconds.
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_s: u64,
    /// The bot's `@username` without `@` (group mentions); empty: asked with `getMe` at start.
    #[serde(default)]
    pub bot_username: String,
}

fn default_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_mode() -> UpdateMode {
    UpdateMode::Webhook
}

fn default_poll_timeout() -> u64 {
    DEFAULT_POLL_TIMEOUT_S
}

impl TelegramAccount {
    /// The bot's numeric id: the token's part before `:`. `None` when the token is malformed.
    pub fn bot_id(&self) -> Option<i64> {
        let (id, secret) = self.bot_token.split_once(':')?;
        if secret.is_empty() {
            return None;
        }
        id.parse::<i64>().ok().filter(|id| *id > 0)
    }
}

/// Whether `secret` is a valid `setWebhook` `secret_token`: 1–256 characters of
/// `A-Z a-z 0-9 _ -`.
pub fn valid_webhook_secret(secret: &str) -> bool {
    (1..=256).contains(&secret.len())
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Debug for TelegramAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramAccount")
            .field("bot_id", &self.bot_id())
            .field("bot_token", &"[redacted]")
            .field("webhook_secret", &"[redacted]")
            .field("api_base_url", &self.api_base_url)
            .field("mode", &self.mode)
            .field("poll_timeout_s", &self.poll_timeout_s)
            .field("bot_username", &self.bot_username)
            .finish()
    }
}
