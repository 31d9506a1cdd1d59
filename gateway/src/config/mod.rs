//! Configuration: compiled-in defaults → `sapa.toml` → `SAPA_SECTION__KEY` environment.
//!
//! Loading checks the merged tree against `config/default.toml` (which lists every key) before
//! deserializing, so an operator sees *every* unknown key, wrong type or malformed duration at
//! once, each named by its dotted path, instead of fixing them one restart at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::{Table, Value};

pub use crate::store::DatabaseTarget;

pub mod console;
pub mod origin;

/// Compiled-in defaults; every operator-settable key appears here.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");
/// The keys of one `[tenants.<slug>]` table.
pub const TENANT_TEMPLATE: &str = include_str!("../../config/tenant.toml");
/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "SAPA_";

/// The validated configuration of one Sapa process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// Relational storage.
    pub database: DatabaseConfig,
    /// Optional Redis for distributed mode.
    pub redis: RedisConfig,
    /// Logs.
    pub telemetry: TelemetryConfig,
    /// Conversation workers.
    pub conversation: ConversationConfig,
    /// Outbox dispatcher.
    pub dispatcher: DispatcherConfig,
    /// Retrieval.
    pub knowledge: KnowledgeConfig,
    /// The Qdrant knowledge backend (`knowledge.backend = "qdrant"`).
    pub qdrant: QdrantConfig,
    /// Optional OpenAI-compatible LLM.
    pub llm: LlmConfig,
    /// Optional OpenAI-compatible embeddings (hybrid retrieval).
    pub embeddings: EmbeddingsConfig,
    /// Web chat channel.
    pub webchat: WebchatConfig,
    /// Demo tenant seeding.
    pub demo: DemoConfig,
    /// Admin REST API.
    pub admin: AdminConfig,
    /// One-time codes.
    pub otp: OtpConfig,
    /// Flow webhooks.
    pub flows: FlowsConfig,
    /// Tenants declared in the file, by slug; applied idempotently at start.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub bind: SocketAddr,
    /// Public base URL; empty means `http://<bind>`.
    pub public_url: String,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Drain deadline at shutdown (open connections, then conversations, then sends).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Longest a client may take to send a request's headers.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest one request may take, body upload included (then 503 `request_timeout`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most connections served at once on the public port; more wait to be accepted.
    pub max_connections: usize,
    /// Most pending (accepted, not yet answered) customer messages before webhooks and web
    /// chat posts get 503 `overloaded` with `Retry-After`; 0: no limit. See
    /// [`crate::admission`].
    pub max_pending_messages: u64,
    /// Operator listener (`/metrics`, detailed `/health/ready`): `HOST:PORT`, port 0 for a
    /// free port, empty to disable it.
    pub admin_bind: String,
}

impl ServerConfig {
    /// The operator listener's address; `None` when `admin_bind` is empty (or invalid, which
    /// validation refuses).
    pub fn admin_address(&self) -> Option<SocketAddr> {
        let raw = self.admin_bind.trim();
        if raw.is_empty() {
            return None;
        }
        raw.parse().ok()
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty (SQLite in the data dir), `sqlite://…` or `postgres://…`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Empty (embedded mode), or `redis://host:port`: leases, limits, pacing and live events
    /// shared by every replica.
    pub url: String,
    /// Start of every key and channel name, so deployments can share one Redis.
    #[serde(default = "default_redis_prefix")]
    pub prefix: String,
}

fn default_redis_prefix() -> String {
    "sapa:".to_owned()
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Output format.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub filter: String,
    /// OTLP/HTTP collector base URL (`/v1/traces` is appended); empty: no traces exported.
    pub otlp_endpoint: String,
}

/// `[conversation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationConfig {
    /// Quiet time before answering; zero disables debouncing.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Longest total wait while fragments keep coming.
    #[serde(with = "humantime_serde")]
    pub debounce_max: Duration,
    /// Conversations answered concurrently.
    pub max_concurrent: usize,
    /// Re-scan interval for pending inbox rows.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Newest pending customer messages one turn answers.
    pub max_turn_messages: usize,
    /// Newest characters of those messages one turn answers.
    pub max_turn_chars: usize,
    /// Customer messages per minute per conversation answered without delay on WhatsApp,
    /// Telegram and plugins (web chat has `webchat.messages_per_minute_per_session`); 0: no
    /// limit.
    pub messages_per_minute: u32,
}

/// `[dispatcher]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// Re-scan interval for due outbox rows.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Rows claimed per round.
    pub batch_size: u32,
}

/// `[knowledge]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// Where chunks are indexed: `embedded` (the data dir) or `qdrant` (`[qdrant]`).
    pub backend: String,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// Answer threshold; negative means the built-in default.
    pub min_relevance: f64,
}

/// `[qdrant]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// gRPC URL.
    pub url: String,
    /// API key; empty for none.
    pub api_key: Secret,
    /// The collection every tenant's chunks share.
    pub collection: String,
    /// Limit of one call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl KnowledgeConfig {
    /// Whether chunks live in Qdrant.
    pub fn uses_qdrant(&self) -> bool {
        self.backend == "qdrant"
    }
}

/// `[llm]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL; empty means no LLM.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key.
    pub api_key: Secret,
    /// Hard limit for one answer, retries included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries on 429/5xx/connection errors.
    pub max_retries: u32,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Token limit of one answer.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// `json_object`, `json_schema` or `none`.
    pub response_format: String,
    /// Stream answers to web chat.
    pub stream: bool,
    /// Earlier conversation messages given to the model as context.
    pub history_messages: usize,
    /// Estimated prompt tokens of one request (history and passages are trimmed to fit).
    pub max_prompt_tokens: usize,
    /// Times a turn is restarted for newer messages before the latest batch is answered.
    pub max_restarts: u32,
    /// Tokens one tenant may use per day (its usage day: midnight in its business-hours time
    /// zone, UTC without one); then extractive answers. 0: no limit.
    pub daily_tokens_per_tenant: u64,
    /// Price of 1,000 prompt tokens, for the estimated cost on the usage page.
    pub price_per_1k_prompt_tokens: f64,
    /// Price of 1,000 completion tokens.
    pub price_per_1k_completion_tokens: f64,
}

/// `[embeddings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// Base URL; empty means BM25 retrieval alone.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key.
    pub api_key: Secret,
    /// Limit for one request, retries included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most texts per request.
    pub batch_size: usize,
    /// Cosine from which a vector match alone counts as relevant.
    pub min_similarity: f64,
    /// Weight of the vector ranking in the fusion (BM25 has 1).
    pub dense_weight: f64,
}

/// `[webchat]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebchatConfig {
    /// Longest customer message, in characters.
    pub max_message_chars: usize,
    /// Messages one session may post per minute; 0: no limit.
    pub messages_per_minute_per_session: u32,
    /// Requests to `/v1/webchat/*` one IP address may make per minute; 0: no limit.
    pub requests_per_minute_per_ip: u32,
    /// WebSockets one session may hold open at once.
    pub max_sockets_per_session: usize,
    /// WebSockets this process holds open at once, all sessions together.
    pub max_sockets: usize,
    /// A session unused this long is expired: its token gets 401 `session_expired`.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
}

/// `[otp]`: one-time codes (`/v1/otp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpConfig {
    /// How long a code is valid (at most 10 minutes: NIST SP 800-63B, OWASP ASVS 6.5.5).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// A new code for the same recipient is refused this long after the previous one.
    #[serde(with = "humantime_serde")]
    pub resend_cooldown: Duration,
    /// Codes one recipient may be sent per `recipient_window`.
    pub max_sends_per_recipient: u32,
    /// The window of `max_sends_per_recipient`.
    #[serde(with = "humantime_serde")]
    pub recipient_window: Duration,
    /// Codes one tenant may send per hour, all recipients together.
    pub max_sends_per_tenant_per_hour: u32,
    /// Wrong codes after which a challenge is locked.
    pub max_attempts: u32,
}

/// `[flows]`: the rules of flows' `call_webhook` steps, for every tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    /// Let webhooks reach private, loopback and link-local addresses, and plain `http://`
    /// (tests and development only; a tenant could otherwise probe the server's network).
    pub allow_private_webhooks: bool,
    /// Largest webhook response read, in bytes; a bigger one fails the call.
    pub max_webhook_response_bytes: usize,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Largest document upload to `/v1/admin/knowledge/documents`, in bytes.
    pub max_upload_bytes: usize,
}

/// `[demo]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Seed the `demo` tenant and its knowledge base.
    pub enabled: bool,
    /// Widget accent colour of the demo tenant.
    pub color: String,
    /// Widget greeting of the demo tenant.
    pub greeting: String,
    /// Websites that may embed the demo tenant's widget.
    pub allowed_origins: Vec<String>,
    /// The demo tenant's follow-ups.
    pub follow_up: FollowUpConfig,
}

/// `[tenants.<slug>.follow_up]` and `[demo.follow_up]`: one message when a customer goes quiet
/// after a bot answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpConfig {
    /// Quiet time after the answer; zero disables follow-ups.
    #[serde(default = "default_follow_up_after", with = "humantime_serde")]
    pub after: Duration,
    /// Local hours without follow-ups (`"21:00-08:00"`), or `"off"`.
    #[serde(default = "default_quiet_hours")]
    pub quiet_hours: String,
    /// Follow-ups one contact gets at most in any 7 days.
    #[serde(default = "default_max_per_week")]
    pub max_per_week: u32,
    /// The message; empty: the built-in one in the conversation's language.
    #[serde(default)]
    pub text: String,
}

impl Default for FollowUpConfig {
    fn default() -> Self {
        Self {
            after: default_follow_up_after(),
            quiet_hours: default_quiet_hours(),
            max_per_week: default_max_per_week(),
            text: String::new(),
        }
    }
}

fn default_follow_up_after() -> Duration {
    Duration::from_secs(2 * 3600)
}

fn default_quiet_hours() -> String {
    "21:00-08:00".to_owned()
}

fn default_max_per_week() -> u32 {
    2
}

/// Longest follow-up text, in characters.
const MAX_FOLLOW_UP_TEXT: usize = 1000;

impl FollowUpConfig {
    /// Problems with these settings, each naming its key under `prefix`
    /// (`tenants.shop.follow_up` or `demo.follow_up`).
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(err) =
            flows::follow_up::QuietHours::parse(&format!("{prefix}.quiet_hours"), &self.quiet_hours)
        {
            problems.push(err.to_string());
        }
        if self.max_per_week == 0 {
            problems.push(format!(
                "{prefix}.max_per_week must be at least 1 (set {prefix}.after = \"0\" to turn follow-ups off)"
            ));
        }
        if !self.text.is_empty() && self.text.trim().is_empty() {
            problems.push(format!(
                "{prefix}.text must not be blank (leave it empty for the built-in text)"
            ));
        }
        if self.text.chars().count() > MAX_FOLLOW_UP_TEXT {
            problems.push(format!(
                "{prefix}.text must be at most {MAX_FOLLOW_UP_TEXT} characters"
            ));
        }
        if self.after > Duration::from_secs(30 * 24 * 3600) {
            problems.push(format!(
                "{prefix}.after must be at most 30 days (got {})",
                humantime::format_duration(self.after)
            ));
        }
        problems
    }

    /// The quiet hours (`None`: off); validation already checked them.
    pub fn quiet(&self) -> Option<flows::follow_up::QuietHours> {
        flows::follow_up::QuietHours::parse("follow_up.quiet_hours", &self.quiet_hours)
            .ok()
            .flatten()
    }
}

/// `[tenants.<slug>.business_hours]`: each weekday's opening hours in the tenant's time zone
/// (`"08:00-17:00"`, several ranges separated by commas, or `"closed"`; a day left out is
/// closed) and holidays (`YYYY-MM-DD`, closed all day).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// IANA time zone; default `Asia/Jakarta` (WIB).
    #[serde(default)]
    pub timezone: String,
    /// Monday's hours.
    #[serde(default)]
    pub monday: String,
    /// Tuesday's hours.
    #[serde(default)]
    pub tuesday: String,
    /// Wednesday's hours.
    #[serde(default)]
    pub wednesday: String,
    /// Thursday's hours.
    #[serde(default)]
    pub thursday: String,
    /// Friday's hours.
    #[serde(default)]
    pub friday: String,
    /// Saturday's hours.
    #[serde(default)]
    pub saturday: String,
    /// Sunday's hours.
    #[serde(default)]
    pub sunday: String,
    /// Days off.
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl TenantConfig {
    /// The tenant's business hours (around the clock without `business_hours`).
    ///
    /// # Errors
    /// A message naming the setting to fix.
    pub fn business_hours(&self, slug: &str) -> Result<flows::BusinessHours, String> {
        let Some(hours) = &self.business_hours else {
            return Ok(flows::BusinessHours::always_open());
        };
        flows::BusinessHours::parse(
            &format!("tenants.{slug}.business_hours"),
            &hours.timezone,
            [
                &hours.monday,
                &hours.tuesday,
                &hours.wednesday,
                &hours.thursday,
                &hours.friday,
                &hours.saturday,
                &hours.sunday,
            ],
            &hours.holidays,
        )
        .map_err(|err| err.to_string())
    }
}

/// `[tenants.<slug>.quota]`: monthly limits (0: unlimited); the console's values win.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Customer, bot and agent messages per month.
    #[serde(default)]
    pub monthly_messages: u64,
    /// Language model tokens (prompt + completion) per month.
    #[serde(default)]
    pub monthly_llm_tokens: u64,
}

/// `[tenants.<slug>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Display name.
    pub name: String,
    /// Default bot language.
    pub locale: String,
    /// The owner's instructions for the language model.
    #[serde(default)]
    pub instructions: String,
    /// Widget accent colour (`#rgb` or `#rrggbb`).
    #[serde(default = "default_widget_color")]
    pub color: String,
    /// Widget greeting; empty: the built-in one.
    #[serde(default)]
    pub greeting: String,
    /// Origins whose pages may use the widget and the web chat API.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Hosts and URL prefixes the model may link to besides the cited passages' links.
    #[serde(default)]
    pub allowed_links: Vec<String>,
    /// Hosts flows' `call_webhook` steps may call (exact host names, e.g. `api.toko.example`).
    #[serde(default)]
    pub webhook_hosts: Vec<String>,
    /// The key flows' webhook bodies are signed with (HMAC-SHA256, `X-Sapa-Signature`).
    #[serde(default)]
    pub webhook_secret: Secret,
    /// Staff must log in to the console with a one-time code as a second factor (staff
    /// without a WhatsApp number or Telegram chat cannot log in then).
    #[serde(default)]
    pub require_2fa: bool,
    /// Words or phrases that hand a conversation to a human when a customer message contains
    /// one (whole words, any case), e.g. `["komplain", "refund"]`.
    #[serde(default)]
    pub handoff_keywords: Vec<String>,
    /// Open chats auto-assignment gives one online agent at most.
    #[serde(default = "default_max_chats_per_agent")]
    pub max_chats_per_agent: u32,
    /// A chat waiting this long for an agent gets one more notice (once).
    #[serde(default = "default_sla_renotify", with = "humantime_serde")]
    pub sla_renotify: Duration,
    /// A chat waiting this long goes back to the bot, with an apology.
    #[serde(default = "default_sla_back_to_bot", with = "humantime_serde")]
    pub sla_back_to_bot: Duration,
    /// When the team answers chats handed to a human; without it, around the clock.
    #[serde(default)]
    pub business_hours: Option<BusinessHoursConfig>,
    /// Monthly message and model-token quotas.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// Follow-ups after a bot answer.
    #[serde(default)]
    pub follow_up: FollowUpConfig,
    /// The tenant's WhatsApp Cloud API number, if any.
    #[serde(default)]
    pub whatsapp: Option<TenantWhatsapp>,
    /// The tenant's Telegram bot, if any.
    #[serde(default)]
    pub telegram: Option<TenantTelegram>,
    /// Accounts of any channel plugin: `[[tenants.<slug>.channels]]` tables.
    #[serde(default)]
    pub channels: Vec<ChannelTable>,
    /// Replies agents insert in the console by typing `/shortcut`.
    #[serde(default)]
    pub canned_replies: Vec<console::CannedReply>,
    /// WhatsApp templates agents may send after the 24-hour window has closed.
    #[serde(default)]
    pub agent_templates: Vec<console::AgentTemplate>,
}

/// `[[tenants.<slug>.channels]]`: one account of any channel plugin — `kind = "<kind>"` plus
/// the plugin's settings, named as the `sapa channel add <kind>` flags with `_` for `-`
/// (`kind = "whatsapp"`, `phone_number_id = "…"`, …). The plugin validates them at start.
#[derive(Clone, Deserialize)]
pub struct ChannelTable {
    /// The channel kind (`whatsapp`, `telegram`, or a registered plugin's kind).
    pub kind: String,
    /// The plugin's settings.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl std::fmt::Debug for ChannelTable {
    // Settings hold secrets: show their names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelTable")
            .field("kind", &self.kind)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TenantConfig {
    /// The tenant's channel accounts as `(kind, settings)`, in the shape the kind's
    /// [`channels::ChannelPlugin`] validates (see the `accounts` module).
    ///
    /// # Errors
    /// A `[[channels]]` table whose kind no plugin serves.
    pub fn channel_settings(
        &self,
    ) -> Result<Vec<(channels::ChannelKind, serde_json::Value)>, String> {
        let mut out = Vec::new();
        if let Some(wa) = &self.whatsapp {
            out.push((
                channels::ChannelKind::Whatsapp,
                serde_json::json!({
                    "phone_number_id": wa.phone_number_id,
                    "app_secret": wa.app_secret.expose(),
                    "access_token": wa.access_token.expose(),
                    "verify_token": wa.verify_token.expose(),
                    "api_base_url": wa.api_base_url,
                    "api_version": wa.api_version,
                    "reengagement_template": Some(&wa.reengagement_template).filter(|t| !t.is_empty()),
                    "reengagement_language": wa.reengagement_language,
                    "otp_template": Some(&wa.otp_template).filter(|t| !t.is_empty()),
                    "otp_template_language": wa.otp_template_language,
                    "messages_per_second": wa.messages_per_second,
                    "pair_interval": humantime::format_duration(wa.pair_interval).to_string(),
                    "pair_burst": wa.pair_burst,
                }),
            ));
        }
        if let Some(tg) = &self.telegram {
            out.push((
                channels::ChannelKind::Telegram,
                serde_json::json!({
                    "bot_token": tg.bot_token.expose(),
                    "webhook_secret": tg.webhook_secret.expose(),
                    "api_base_url": tg.api_base_url,
                    "mode": tg.mode,
                    "poll_timeout_s": tg.poll_timeout.as_secs(),
                    "bot_username": tg.bot_username.trim_start_matches('@'),
                }),
            ));
        }
        for (index, table) in self.channels.iter().enumerate() {
            let kind = table
                .kind
                .parse()
                .map_err(|e| format!("channels[{index}]: {e}"))?;
            let settings = serde_json::to_value(&table.settings)
                .map_err(|e| format!("channels[{index}]: {e}"))?;
            out.push((kind, settings));
        }
        Ok(out)
    }
}

/// `[tenants.<slug>.telegram]`: one Telegram bot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTelegram {
    /// BotFather token.
    pub bot_token: Secret,
    /// `webhook` or `polling`.
    #[serde(default = "default_telegram_mode")]
    pub mode: String,
    /// `secret_token` of the webhook.
    #[serde(default)]
    pub webhook_secret: Secret,
    /// Bot API base URL.
    #[serde(default = "default_telegram_base")]
    pub api_base_url: String,
    /// `getUpdates` long-poll timeout.
    #[serde(default = "default_poll_timeout", with = "humantime_serde")]
    pub poll_timeout: Duration,
    /// The bot's username (group mentions); empty: from getMe.
    #[serde(default)]
    pub bot_username: String,
}

fn default_telegram_mode() -> String {
    "webhook".to_owned()
}

fn default_telegram_base() -> String {
    "https://api.telegram.org".to_owned()
}

fn default_poll_timeout() -> Duration {
    Duration::from_secs(25)
}

/// `[tenants.<slug>.whatsapp]`: one WhatsApp Cloud API number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantWhatsapp {
    /// Graph API phone number id.
    pub phone_number_id: String,
    /// App secret (webhook signature key).
    pub app_secret: Secret,
    /// Graph API access token.
    pub access_token: Secret,
    /// Webhook verification token.
    pub verify_token: Secret,
    /// Graph API base URL.
    #[serde(default = "default_graph_base")]
    pub api_base_url: String,
    /// Graph API version.
    #[serde(default = "default_graph_version")]
    pub api_version: String,
    /// Template sent when the 24-hour window is closed; empty: none.
    #[serde(default)]
    pub reengagement_template: String,
    /// Language of that template.
    #[serde(default = "default_template_language")]
    pub reengagement_language: String,
    /// The approved authentication template (copy-code button) one-time codes are sent with;
    /// empty: none (`POST /v1/otp` answers 409 `otp_template_missing`).
    #[serde(default)]
    pub otp_template: String,
    /// Language of that template.
    #[serde(default = "default_template_language")]
    pub otp_template_language: String,
    /// The number's throughput, messages per second (Meta: 80 by default, up to 1,000 after
    /// an upgrade; coexistence numbers get 20).
    #[serde(default = "default_messages_per_second")]
    pub messages_per_second: u32,
    /// One more message to the same customer per this interval (Meta's pair rate limit).
    #[serde(default = "default_pair_interval", with = "humantime_serde")]
    pub pair_interval: Duration,
    /// Messages to one customer that may go back to back before `pair_interval` applies.
    #[serde(default = "default_pair_burst")]
    pub pair_burst: u32,
}

fn default_sla_renotify() -> Duration {
    crate::workers::assigner::DEFAULT_SLA_RENOTIFY
}

fn default_sla_back_to_bot() -> Duration {
    crate::workers::assigner::DEFAULT_SLA_BACK_TO_BOT
}

fn default_max_chats_per_agent() -> u32 {
    crate::workers::assigner::DEFAULT_MAX_CHATS_PER_AGENT
}

fn default_messages_per_second() -> u32 {
    channels::whatsapp::config::DEFAULT_MESSAGES_PER_SECOND
}

fn default_pair_interval() -> Duration {
    channels::whatsapp::PACING.per_recipient_interval
}

fn default_pair_burst() -> u32 {
    channels::whatsapp::config::DEFAULT_PAIR_BURST
}

/// The widget colour of tenants that set none.
pub const DEFAULT_WIDGET_COLOR: &str = "#0f766e";

fn default_widget_color() -> String {
    DEFAULT_WIDGET_COLOR.to_owned()
}

fn default_graph_base() -> String {
    "https://graph.facebook.com".to_owned()
}

fn default_graph_version() -> String {
    "v23.0".to_owned()
}

fn default_template_language() -> String {
    "id".to_owned()
}

/// A secret string whose `Debug` never prints the value.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("[redacted]")
        }
    }
}

/// Every problem found in the configuration, each naming its key.
#[derive(Debug)]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problems):",
            self.problems.len()
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

impl Config {
    /// Loads defaults, then the file (`path`, or `./sapa.toml` if it exists), then `SAPA_*`
    /// environment variables, and validates the result.
    ///
    /// # Errors
    /// Every problem found, each naming its key and what to change.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => Some(read_file(path)?),
            None => {
                let default = Path::new("sapa.toml");
                if default.exists() {
                    Some(read_file(default)?)
                } else {
                    None
                }
            }
        };
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Self::from_sources(file.as_ref().map(|(p, s)| (p.as_str(), s.as_str())), &env)
    }

    /// Defaults plus one TOML document, without the environment (tests use this).
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(Some(("<inline>", text)), &[])
    }

    /// Defaults, then `file` (origin name, contents), then `env` pairs, validated.
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let defaults: Table = DEFAULTS
            .parse()
            .map_err(|e| ConfigError::one(format!("built-in defaults do not parse: {e}")))?;
        let tenant_template: Table = TENANT_TEMPLATE
            .parse()
            .map_err(|e| ConfigError::one(format!("built-in tenant template: {e}")))?;
        let schema = Schema {
            defaults: &defaults,
            tenant: &tenant_template,
        };
        let mut problems = Vec::new();
        let mut merged = defaults.clone();
        if let Some((origin, text)) = file {
            match text.parse::<Table>() {
                Ok(table) => {
                    schema.check_table(&table, "", origin, &mut problems);
                    merge(&mut merged, table);
                }
                Err(e) => problems.push(format!("{origin}: not valid TOML: {e}")),
            }
        }
        let mut env: Vec<&(String, String)> = env.iter().collect();
        env.sort();
        for (name, raw) in env {
            schema.apply_env(name, raw, &mut merged, &mut problems);
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let config = Config::deserialize(Value::Table(merged))
            .map_err(|e| ConfigError::one(format!("configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Cross-field and semantic checks; returns all problems at once.
    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.conversation.debounce_max < self.conversation.debounce {
            problems.push(format!(
                "conversation.debounce_max ({:?}) must be at least conversation.debounce ({:?})",
                self.conversation.debounce_max, self.conversation.debounce
            ));
        }
        if self.conversation.max_concurrent == 0 {
            problems.push("conversation.max_concurrent must be at least 1".to_owned());
        }
        if self.dispatcher.max_attempts == 0 {
            problems.push("dispatcher.max_attempts must be at least 1".to_owned());
        }
        if self.dispatcher.batch_size == 0 {
            problems.push("dispatcher.batch_size must be at least 1".to_owned());
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections must be at least 1".to_owned());
        }
        match self.knowledge.backend.as_str() {
            "embedded" => {}
            "qdrant" => {
                if !cfg!(feature = "qdrant") {
                    problems.push(
                        "knowledge.backend = \"qdrant\" needs a sapa built with the `qdrant` feature (the default)"
                            .to_owned(),
                    );
                }
                if !(self.qdrant.url.starts_with("http://")
                    || self.qdrant.url.starts_with("https://"))
                {
                    problems.push(format!(
                        "qdrant.url must be the gRPC URL, e.g. http://127.0.0.1:6334 (got {:?})",
                        self.qdrant.url
                    ));
                }
                if self.qdrant.collection.trim().is_empty() {
                    problems.push("qdrant.collection must not be empty".to_owned());
                }
            }
            other => problems.push(format!(
                "knowledge.backend must be \"embedded\" or \"qdrant\" (got {other:?})"
            )),
        }
        if self.knowledge.top_k == 0 {
            problems.push("knowledge.top_k must be at least 1".to_owned());
        }
        if self.knowledge.min_relevance > 1.0 {
            problems.push(format!(
                "knowledge.min_relevance must be at most 1.0 (got {})",
                self.knowledge.min_relevance
            ));
        }
        for (key, value) in [
            ("server.shutdown_grace", self.server.shutdown_grace),
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.request_timeout", self.server.request_timeout),
            (
                "webchat.session_idle_timeout",
                self.webchat.session_idle_timeout,
            ),
        ] {
            if value.is_zero() {
                problems.push(format!("{key} must be more than 0s"));
            }
        }
        if self.server.max_connections == 0 {
            problems.push("server.max_connections must be at least 1".to_owned());
        }
        let admin_bind = self.server.admin_bind.trim();
        if !admin_bind.is_empty() {
            match admin_bind.parse::<SocketAddr>() {
                Err(_) => problems.push(format!(
                    "server.admin_bind must be HOST:PORT (e.g. `127.0.0.1:9091`; port 0 picks a free port) or empty to disable the operator listener (got `{admin_bind}`)"
                )),
                Ok(addr) if addr.port() != 0 && addr == self.server.bind => problems.push(format!(
                    "server.admin_bind ({addr}) must differ from server.bind: metrics and health details must not be public"
                )),
                Ok(_) => {}
            }
        }
        for (slug, tenant) in &self.tenants {
            if tenant.max_chats_per_agent == 0 {
                problems.push(format!(
                    "tenants.{slug}.max_chats_per_agent must be at least 1"
                ));
            }
            if tenant.sla_renotify.is_zero() || tenant.sla_back_to_bot <= tenant.sla_renotify {
                problems.push(format!(
                    "tenants.{slug}.sla_back_to_bot must be longer than tenants.{slug}.sla_renotify, and both more than 0s"
                ));
            }
            if let Err(problem) = tenant.business_hours(slug) {
                problems.push(problem);
            }
            problems.extend(
                tenant
                    .follow_up
                    .problems(&format!("tenants.{slug}.follow_up")),
            );
        }
        problems.extend(self.demo.follow_up.problems("demo.follow_up"));
        if self.otp.ttl < Duration::from_secs(30) || self.otp.ttl > Duration::from_secs(600) {
            problems.push(format!(
                "otp.ttl must be between 30s and 10m (NIST SP 800-63B), not {}",
                humantime::format_duration(self.otp.ttl)
            ));
        }
        if self.otp.max_sends_per_recipient == 0 || self.otp.max_sends_per_tenant_per_hour == 0 {
            problems.push(
                "otp.max_sends_per_recipient and otp.max_sends_per_tenant_per_hour must be at least 1"
                    .to_owned(),
            );
        }
        if !(1..=10).contains(&self.otp.max_attempts) {
            problems.push(format!(
                "otp.max_attempts must be between 1 and 10, not {}",
                self.otp.max_attempts
            ));
        }
        if self.webchat.max_sockets_per_session == 0 {
            problems.push("webchat.max_sockets_per_session must be at least 1".to_owned());
        }
        if self.webchat.max_sockets < self.webchat.max_sockets_per_session {
            problems.push(format!(
                "webchat.max_sockets ({}) must be at least webchat.max_sockets_per_session ({})",
                self.webchat.max_sockets, self.webchat.max_sockets_per_session
            ));
        }
        if self.server.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes must be at least 1024".to_owned());
        }
        if self.admin.max_upload_bytes < 1024 {
            problems.push("admin.max_upload_bytes must be at least 1024".to_owned());
        }
        if self.webchat.max_message_chars == 0 {
            problems.push("webchat.max_message_chars must be at least 1".to_owned());
        }
        if self.conversation.max_turn_messages == 0 {
            problems.push("conversation.max_turn_messages must be at least 1".to_owned());
        }
        if self.conversation.max_turn_chars < 100 {
            problems.push("conversation.max_turn_chars must be at least 100".to_owned());
        }
        if self.llm.max_prompt_tokens < 500 {
            problems.push(format!(
                "llm.max_prompt_tokens must be at least 500 (got {}): the instructions and one passage need room",
                self.llm.max_prompt_tokens
            ));
        }
        let db = &self.database.url;
        if !(db.is_empty()
            || db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            problems.push(format!(
                "database.url must be empty (SQLite in the data dir), `sqlite://PATH` or `postgres://…` (got `{}`)",
                redact_url(db)
            ));
        }
        if !self.redis.url.is_empty() && !self.redis.url.starts_with("redis://") {
            problems.push("redis.url must start with `redis://`".to_owned());
        }
        let otlp = &self.telemetry.otlp_endpoint;
        if !otlp.is_empty() && !channels::model::is_http_url(otlp) {
            problems.push(
                "telemetry.otlp_endpoint must be an http:// or https:// URL, e.g. \
                 \"http://otel-collector:4318\""
                    .to_owned(),
            );
        }
        if !self.llm.base_url.is_empty() {
            if !channels::model::is_http_url(&self.llm.base_url) {
                problems.push("llm.base_url must be an http:// or https:// URL".to_owned());
            }
            if self.llm.model.is_empty() {
                problems.push("llm.model must be set when llm.base_url is set".to_owned());
            }
        }
        let emb = &self.embeddings;
        if !emb.base_url.is_empty() {
            if !channels::model::is_http_url(&emb.base_url) {
                problems.push("embeddings.base_url must be an http:// or https:// URL".to_owned());
            }
            if emb.model.is_empty() {
                problems.push(
                    "embeddings.model must be set when embeddings.base_url is set".to_owned(),
                );
            }
        }
        if emb.timeout.is_zero() {
            problems.push("embeddings.timeout must be more than 0s".to_owned());
        }
        if !(1..=2048).contains(&emb.batch_size) {
            problems.push(format!(
                "embeddings.batch_size must be between 1 and 2048 (got {})",
                emb.batch_size
            ));
        }
        if !(0.0..=1.0).contains(&emb.dense_weight) {
            problems.push(format!(
                "embeddings.dense_weight must be between 0 and 1 (got {})",
                emb.dense_weight
            ));
        }
        if !(emb.min_similarity > 0.0 && emb.min_similarity < 1.0) {
            problems.push(format!(
                "embeddings.min_similarity must be between 0 and 1, exclusive (got {})",
                emb.min_similarity
            ));
        }
        if emb.api_key.expose().chars().any(char::is_control) {
            problems.push(
                "embeddings.api_key contains a control character (a trailing newline?)".to_owned(),
            );
        }
        if self.llm.timeout.is_zero() {
            problems.push("llm.timeout must be more than 0s".to_owned());
        }
        if self.llm.retry_cap < self.llm.retry_base {
            problems.push("llm.retry_cap must be at least llm.retry_base".to_owned());
        }
        if self.llm.max_tokens == 0 {
            problems.push("llm.max_tokens must be at least 1".to_owned());
        }
        for (key, price) in [
            (
                "price_per_1k_prompt_tokens",
                self.llm.price_per_1k_prompt_tokens,
            ),
            (
                "price_per_1k_completion_tokens",
                self.llm.price_per_1k_completion_tokens,
            ),
        ] {
            if !(price.is_finite() && price >= 0.0) {
                problems.push(format!(
                    "llm.{key} must be a price of 0 or more (got {price})"
                ));
            }
        }
        if !(0.0..=2.0).contains(&self.llm.temperature) {
            problems.push(format!(
                "llm.temperature must be between 0 and 2 (got {})",
                self.llm.temperature
            ));
        }
        if knowledge::llm::ResponseFormatKind::parse(&self.llm.response_format).is_none() {
            problems.push(format!(
                "llm.response_format must be \"json_object\", \"json_schema\" or \"none\" (got \"{}\")",
                self.llm.response_format
            ));
        }
        if self.llm.api_key.expose().chars().any(char::is_control) {
            problems
                .push("llm.api_key contains a control character (a trailing newline?)".to_owned());
        }
        for (slug, tenant) in &self.tenants {
            if !valid_slug(slug) {
                problems.push(format!(
                    "tenants.{slug}: a tenant slug uses lowercase letters, digits and `-` only (max 40)"
                ));
            }
            if let Some(wa) = &tenant.whatsapp {
                if wa.phone_number_id.is_empty()
                    || !wa.phone_number_id.chars().all(|c| c.is_ascii_digit())
                {
                    problems.push(format!(
                        "tenants.{slug}.whatsapp.phone_number_id must be the numeric Graph API phone number id"
                    ));
                }
                for (key, value) in [
                    ("app_secret", &wa.app_secret),
                    ("access_token", &wa.access_token),
                    ("verify_token", &wa.verify_token),
                ] {
                    if value.expose().is_empty() {
                        problems.push(format!(
                            "tenants.{slug}.whatsapp.{key} must be set (prefer the SAPA_TENANTS__{}__WHATSAPP__{} environment variable)",
                            slug.to_uppercase().replace('-', "_"),
                            key.to_uppercase()
                        ));
                    }
                }
                if !channels::model::is_http_url(&wa.api_base_url) {
                    problems.push(format!(
                        "tenants.{slug}.whatsapp.api_base_url must be an http:// or https:// URL"
                    ));
                }
                let max = channels::whatsapp::config::MAX_MESSAGES_PER_SECOND;
                if !(1..=max).contains(&wa.messages_per_second) {
                    problems.push(format!(
                        "tenants.{slug}.whatsapp.messages_per_second must be between 1 and {max} (Meta's highest tier), not {}",
                        wa.messages_per_second
                    ));
                }
                if wa.pair_interval < Duration::from_millis(100)
                    || wa.pair_interval > Duration::from_secs(3600)
                {
                    problems.push(format!(
                        "tenants.{slug}.whatsapp.pair_interval must be between 100ms and 1h, not {}",
                        humantime::format_duration(wa.pair_interval)
                    ));
                }
                if !(1..=100).contains(&wa.pair_burst) {
                    problems.push(format!(
                        "tenants.{slug}.whatsapp.pair_burst must be between 1 and 100, not {}",
                        wa.pair_burst
                    ));
                }
            }
            if let Some(tg) = &tenant.telegram {
                let env = |key: &str| {
                    format!(
                        "SAPA_TENANTS__{}__TELEGRAM__{}",
                        slug.to_uppercase().replace('-', "_"),
                        key.to_uppercase()
                    )
                };
                let token = tg.bot_token.expose();
                let token_ok = token.split_once(':').is_some_and(|(id, secret)| {
                    !secret.is_empty() && id.parse::<i64>().is_ok_and(|n| n > 0)
                });
                if !token_ok {
                    problems.push(format!(
                        "tenants.{slug}.telegram.bot_token must be the BotFather token `<bot id>:<secret>` (prefer the {} environment variable)",
                        env("bot_token")
                    ));
                }
                match channels::telegram::UpdateMode::parse(&tg.mode) {
                    Some(channels::telegram::UpdateMode::Webhook) => {
                        if !channels::telegram::config::valid_webhook_secret(
                            tg.webhook_secret.expose(),
                        ) {
                            problems.push(format!(
                                "tenants.{slug}.telegram.webhook_secret must be 1-256 characters of A-Z a-z 0-9 _ - in webhook mode (prefer the {} environment variable), or set mode = \"polling\"",
                                env("webhook_secret")
                            ));
                        }
                    }
                    Some(channels::telegram::UpdateMode::Polling) => {}
                    None => problems.push(format!(
                        "tenants.{slug}.telegram.mode must be \"webhook\" or \"polling\" (got \"{}\")",
                        tg.mode
                    )),
                }
                if !channels::model::is_http_url(&tg.api_base_url) {
                    problems.push(format!(
                        "tenants.{slug}.telegram.api_base_url must be an http:// or https:// URL"
                    ));
                }
                if tg.poll_timeout > Duration::from_secs(50) {
                    problems.push(format!(
                        "tenants.{slug}.telegram.poll_timeout must be at most 50s"
                    ));
                }
            }
            check_widget(
                &format!("tenants.{slug}"),
                &tenant.color,
                &tenant.greeting,
                &tenant.allowed_origins,
                &mut problems,
            );
            console::check(
                slug,
                &tenant.canned_replies,
                &tenant.agent_templates,
                &mut problems,
            );
            for link in &tenant.allowed_links {
                if !flows::policy::valid_allowed_link(link) {
                    problems.push(format!(
                        "tenants.{slug}.allowed_links: `{link}` is neither a host such as \"kopi.example\" nor an http(s) URL such as \"https://wa.me/62812\""
                    ));
                }
            }
            for host in &tenant.webhook_hosts {
                let valid = !host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                if !valid {
                    problems.push(format!(
                        "tenants.{slug}.webhook_hosts: `{host}` is not a host name such as \"api.toko.example\" (no scheme, port or path)"
                    ));
                }
            }
            if !tenant.webhook_hosts.is_empty() && tenant.webhook_secret.expose().len() < 16 {
                problems.push(format!(
                    "tenants.{slug}.webhook_secret must be at least 16 characters when webhook_hosts is set (the endpoint checks the signature with it)"
                ));
            }
            if flows::Locale::parse(&tenant.locale).is_none() {
                problems.push(format!(
                    "tenants.{slug}.locale must be \"id\" or \"en\" (got \"{}\")",
                    tenant.locale
                ));
            }
        }
        check_widget(
            "demo",
            &self.demo.color,
            &self.demo.greeting,
            &self.demo.allowed_origins,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The database this configuration selects, with `data_dir` for the embedded default.
    pub fn database_target(&self, data_dir: &Path) -> DatabaseTarget {
        let url = &self.database.url;
        if url.is_empty() {
            DatabaseTarget::Sqlite(data_dir.join("sapa.db"))
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            DatabaseTarget::Sqlite(PathBuf::from(path))
        } else {
            DatabaseTarget::Postgres(url.clone())
        }
    }

    /// The effective configuration as TOML, secrets redacted (for `sapa check` and debug logs).
    pub fn redacted_summary(&self) -> String {
        format!(
            "bind={} database={} redis={} knowledge={} llm={} debounce={:?} demo={}",
            self.server.bind,
            if self.database.url.is_empty() {
                "sqlite (data dir)".to_owned()
            } else {
                redact_url(&self.database.url)
            },
            if self.redis.url.is_empty() {
                "off".to_owned()
            } else {
                redact_url(&self.redis.url)
            },
            if self.knowledge.uses_qdrant() {
                format!(
                    "qdrant {} collection {}",
                    redact_url(&self.qdrant.url),
                    self.qdrant.collection
                )
            } else {
                "embedded".to_owned()
            },
            if self.llm.base_url.is_empty() {
                "off (extractive answers)".to_owned()
            } else {
                self.llm.base_url.clone()
            },
            self.conversation.debounce,
            self.demo.enabled
        )
    }
}

/// Checks one tenant's widget keys under `prefix` (`tenants.shop` or `demo`).
fn check_widget(
    prefix: &str,
    color: &str,
    greeting: &str,
    origins: &[String],
    problems: &mut Vec<String>,
) {
    if !valid_color(color) {
        problems.push(format!(
            "{prefix}.color must be a hex colour such as \"#0f766e\" or \"#07e\" (got \"{color}\")"
        ));
    }
    if greeting.chars().count() > 500 {
        problems.push(format!("{prefix}.greeting must be at most 500 characters"));
    }
    for origin in origins {
        if let Err(why) = origin::OriginPattern::parse(origin) {
            problems.push(format!("{prefix}.allowed_origins: {why}"));
        }
    }
}

/// Whether `color` is `#rgb` or `#rrggbb`.
pub fn valid_color(color: &str) -> bool {
    color
        .strip_prefix('#')
        .is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Replaces a URL's password with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Whether `slug` is a valid tenant slug.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 40
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| (path.display().to_string(), text))
        .map_err(|e| {
            ConfigError::one(format!(
                "cannot read config file {}: {e} (pass an existing file with --config, or omit it)",
                path.display()
            ))
        })
}

fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base_table)), Value::Table(overlay_table)) => {
                merge(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The shape every configuration must have: the defaults, plus the tenant template for each
/// `[tenants.<slug>]`.
struct Schema<'a> {
    defaults: &'a Table,
    tenant: &'a Table,
}

impl Schema<'_> {
    /// The expected value at a dotted path (`None`: unknown key).
    fn expected(&self, path: &[&str]) -> Option<Value> {
        match path {
            ["tenants"] => Some(Value::Table(Table::new())),
            ["tenants", _] => Some(Value::Table(self.tenant.clone())),
            ["tenants", _, rest @ ..] => lookup(self.tenant, rest),
            _ => lookup(self.defaults, path),
        }
    }

    fn check_table(&self, table: &Table, prefix: &str, origin: &str, problems: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let parts: Vec<&str> = path.split('.').collect();
            let Some(expected) = self.expected(&parts) else {
                problems.push(format!(
                    "{origin}: unknown key `{path}`{}",
                    self.suggestion(&parts)
                ));
                continue;
            };
            match (&expected, value) {
                (Value::Table(_), Value::Table(inner)) => {
                    self.check_table(inner, &path, origin, problems);
                }
                // `[[tenants.<slug>.channels]]`: plugin settings, validated by the plugin at
                // start; here only their shape.
                (Value::Array(_), Value::Array(items))
                    if matches!(parts.as_slice(), ["tenants", _, "channels"]) =>
                {
                    for (index, item) in items.iter().enumerate() {
                        if !item
                            .as_table()
                            .is_some_and(|t| t.get("kind").is_some_and(Value::is_str))
                        {
                            problems.push(format!(
                                "{origin}: `{path}[{index}]` must be a table with `kind = \"<channel kind>\"`"
                            ));
                        }
                    }
                }
                // Composer tables: their fields are checked by serde and `validate`.
                (Value::Array(_), Value::Array(items))
                    if matches!(
                        parts.as_slice(),
                        ["tenants", _, "canned_replies" | "agent_templates"]
                    ) =>
                {
                    for (index, item) in items.iter().enumerate() {
                        if !item.is_table() {
                            problems.push(format!(
                                "{origin}: `{path}[{index}]` must be a table ([[{path}]])"
                            ));
                        }
                    }
                }
                _ => {
                    if let Some(problem) = type_problem(&path, &expected, value) {
                        problems.push(format!("{origin}: `{path}` {problem}"));
                    }
                }
            }
        }
    }

    fn apply_env(&self, name: &str, raw: &str, merged: &mut Table, problems: &mut Vec<String>) {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            return;
        };
        // Variables without `__` (SAPA_SECRET_KEY, SAPA_CONFIG, SAPA_DATA_DIR) are not config keys.
        if !rest.contains("__") {
            return;
        }
        let lowered = rest.to_lowercase();
        let parts: Vec<&str> = lowered.split("__").collect();
        let Some(expected) = self.expected(&parts) else {
            problems.push(format!(
                "environment {name}: unknown key `{}`{}",
                parts.join("."),
                self.suggestion(&parts)
            ));
            return;
        };
        let value = match expected {
            Value::String(_) => Value::String(raw.to_owned()),
            Value::Integer(_) => match raw.trim().parse::<i64>() {
                Ok(n) => Value::Integer(n),
                Err(_) => {
                    problems.push(format!(
                        "environment {name}: expected an integer, got `{raw}`"
                    ));
                    return;
                }
            },
            Value::Float(_) => match raw.trim().parse::<f64>() {
                Ok(n) => Value::Float(n),
                Err(_) => {
                    problems.push(format!(
                        "environment {name}: expected a number, got `{raw}`"
                    ));
                    return;
                }
            },
            Value::Boolean(_) => match raw.trim() {
                "true" | "1" => Value::Boolean(true),
                "false" | "0" => Value::Boolean(false),
                _ => {
                    problems.push(format!(
                        "environment {name}: expected true or false, got `{raw}`"
                    ));
                    return;
                }
            },
            // Lists (allowed_origins) come as comma-separated values.
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            Value::Table(_) | Value::Datetime(_) => {
                problems.push(format!(
                    "environment {name}: `{}` is a section; set one of its keys instead",
                    parts.join(".")
                ));
                return;
            }
        };
        if let Some(problem) = type_problem(&parts.join("."), &expected, &value) {
            problems.push(format!("environment {name}: {problem}"));
            return;
        }
        let mut table = &mut *merged;
        let Some((last, parents)) = parts.split_last() else {
            return;
        };
        for part in parents {
            let entry = table
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(inner) = entry else { return };
            table = inner;
        }
        table.insert((*last).to_owned(), value);
    }

    /// "(did you mean `x`?)" for the first unknown component of `parts`.
    fn suggestion(&self, parts: &[&str]) -> String {
        let Some(unknown) = (0..parts.len()).find(|i| self.expected(&parts[..=*i]).is_none())
        else {
            return String::new();
        };
        let siblings = if unknown == 0 {
            Some(Value::Table(self.defaults.clone()))
        } else {
            self.expected(&parts[..unknown])
        };
        let Some(Value::Table(siblings)) = siblings else {
            return String::new();
        };
        siblings
            .keys()
            .map(|k| (edit_distance(k, parts[unknown]), k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default()
    }
}

fn lookup(table: &Table, path: &[&str]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(*first)?;
    if rest.is_empty() {
        Some(value.clone())
    } else if let Value::Table(inner) = value {
        lookup(inner, rest)
    } else {
        None
    }
}

/// Whether `actual` fits the type of the default `expected`; durations and socket addresses
/// are recognized from the default's own format.
fn type_problem(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::String(default), Value::String(s)) => {
            if !default.is_empty() && humantime::parse_duration(default).is_ok() {
                if humantime::parse_duration(s).is_err() {
                    return Some(format!(
                        "must be a duration such as \"500ms\", \"2s\" or \"5m\" (got \"{s}\")"
                    ));
                }
            } else if default.parse::<SocketAddr>().is_ok()
                && s.parse::<SocketAddr>().is_err()
                // An empty operator address disables that listener (`validate` explains the rest).
                && !(path == "server.admin_bind" && s.trim().is_empty())
            {
                return Some(format!(
                    "must be an address such as \"127.0.0.1:8080\" (got \"{s}\")"
                ));
            }
            None
        }
        (Value::Integer(_), Value::Integer(n)) => {
            (*n < 0).then(|| format!("must not be negative (got {n})"))
        }
        (Value::Float(_), Value::Float(_) | Value::Integer(_))
        | (Value::Boolean(_), Value::Boolean(_)) => None,
        (Value::Array(_), Value::Array(items)) => items
            .iter()
            .any(|item| !item.is_str())
            .then(|| "must be a list of strings".to_owned()),
        (expected, actual) => Some(format!(
            "must be {} (got {})",
            type_name(expected),
            type_name(actual)
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "a list",
        Value::Table(_) => "a section",
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    mod properties {
        //! Property tests over the config loader (run in CI): any text, and any table of
        //! known keys with values of any type, gives a config or a list of problems, never
        //! a panic.
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("\"\"".to_owned()),
                Just("0".to_owned()),
                Just("-1".to_owned()),
                Just("18446744073709551615".to_owned()),
                Just("true".to_owned()),
                Just("\"0s\"".to_owned()),
                Just("\"99999999999999h\"".to_owned()),
                Just("[]".to_owned()),
                Just("{}".to_owned()),
                "\"[ -~]{0,12}\"".prop_map(|s| s.replace('\\', "")),
                any::<i64>().prop_map(|n| n.to_string()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn any_text_never_panics(text in ".{0,200}") {
                let _ = Config::from_toml(&text);
            }

            #[test]
            fn any_value_of_a_known_key_never_panics(
                section in prop_oneof![
                    Just("server"), Just("conversation"), Just("llm"), Just("webchat"),
                    Just("dispatcher"), Just("tenants.shop"), Just("tenants.shop.whatsapp"),
                    Just("tenants.shop.telegram"),
                ],
                key in prop_oneof![
                    Just("bind"), Just("admin_bind"), Just("debounce"), Just("max_concurrent"),
                    Just("max_prompt_tokens"), Just("messages_per_second"), Just("pair_interval"),
                    Just("pair_burst"), Just("locale"), Just("name"), Just("bot_token"),
                    Just("mode"), Just("retry_base"), Just("max_sockets"), Just("no_such_key"),
                ],
                value in value(),
            ) {
                let _ = Config::from_toml(&format!("[{section}]\n{key} = {value}\n"));
                let _ = Config::from_sources(
                    None,
                    &[(format!("SAPA_{}__{}", section.to_uppercase().replace('.', "__"), key.to_uppercase()), value)],
                );
            }
        }
    }

    #[test]
    fn defaults_and_example_parse() {
        let config = Config::from_sources(None, &[]).unwrap();
        assert_eq!(config.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.conversation.debounce, Duration::from_millis(1200));
        let example = Config::from_toml(include_str!("../../config/example.toml")).unwrap();
        assert_eq!(example.tenants["kopi-nusantara"].name, "Kopi Nusantara");
        assert!(!example.demo.enabled);
    }

    #[test]
    fn otp_lifetime_defaults_to_five_minutes_and_never_exceeds_ten() {
        let config = Config::from_sources(None, &[]).unwrap();
        assert_eq!(config.otp.ttl, Duration::from_secs(300));
        assert_eq!(config.otp.max_attempts, 5);
        assert_eq!(config.otp.resend_cooldown, Duration::from_secs(60));
        assert_eq!(config.otp.max_sends_per_recipient, 3);
        assert_eq!(config.otp.recipient_window, Duration::from_secs(600));
        assert!(Config::from_toml("[otp]\nttl = \"10m\"\n").is_ok());
        for (bad, says) in [
            (
                "[otp]\nttl = \"11m\"\n",
                "otp.ttl must be between 30s and 10m",
            ),
            (
                "[otp]\nttl = \"5s\"\n",
                "otp.ttl must be between 30s and 10m",
            ),
            ("[otp]\nmax_attempts = 0\n", "otp.max_attempts"),
            (
                "[otp]\nmax_sends_per_recipient = 0\n",
                "otp.max_sends_per_recipient",
            ),
        ] {
            let err = Config::from_toml(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn every_example_key_is_documented_in_the_defaults() {
        let example: Table = include_str!("../../config/example.toml").parse().unwrap();
        let defaults: Table = DEFAULTS.parse().unwrap();
        let tenant: Table = TENANT_TEMPLATE.parse().unwrap();
        let schema = Schema {
            defaults: &defaults,
            tenant: &tenant,
        };
        let mut problems = vec![];
        schema.check_table(&example, "", "example", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn any_plugin_account_can_be_a_channels_table() {
        let config = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[[tenants.shop.channels]]\n\
             kind = \"telegram\"\nbot_token = \"123:abc\"\nmode = \"polling\"\npoll_timeout_s = 2\n",
        )
        .unwrap();
        let accounts = config.tenants["shop"].channel_settings().unwrap();
        assert_eq!(
            accounts,
            vec![(
                channels::ChannelKind::Telegram,
                serde_json::json!({"bot_token": "123:abc", "mode": "polling", "poll_timeout_s": 2})
            )]
        );
        assert!(!format!("{:?}", config.tenants["shop"].channels).contains("123:abc"));
        let unknown = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[[tenants.shop.channels]]\nkind = \"fax\"\n",
        )
        .unwrap();
        let why = unknown.tenants["shop"].channel_settings().unwrap_err();
        assert!(why.contains("channels[0]") && why.contains("fax"), "{why}");
    }

    #[test]
    fn whatsapp_pacing_is_configured_per_number() {
        let number = "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[tenants.shop.whatsapp]\n\
                      phone_number_id = \"1065\"\napp_secret = \"s\"\naccess_token = \"t\"\n\
                      verify_token = \"v\"\n";
        let defaults = Config::from_toml(number).unwrap();
        let wa = defaults.tenants["shop"].whatsapp.clone().unwrap();
        assert_eq!(
            (wa.messages_per_second, wa.pair_interval, wa.pair_burst),
            (80, Duration::from_secs(6), 3)
        );
        let coexistence = Config::from_toml(&format!(
            "{number}messages_per_second = 20\npair_interval = \"10s\"\npair_burst = 2\n"
        ))
        .unwrap();
        let settings = coexistence.tenants["shop"].channel_settings().unwrap();
        assert_eq!(settings[0].1["messages_per_second"], 20);
        assert_eq!(settings[0].1["pair_interval"], "10s");
        assert_eq!(settings[0].1["pair_burst"], 2);
        // The plugin turns the settings into the number's pacing policy.
        let account: channels::whatsapp::WhatsappAccount =
            serde_json::from_value(settings[0].1.clone()).unwrap();
        account.check_pacing().unwrap();
        assert_eq!(account.pair_interval().unwrap(), Duration::from_secs(10));
        let bad = Config::from_toml(&format!(
            "{number}messages_per_second = 5000\npair_interval = \"10ms\"\npair_burst = 0\n"
        ))
        .unwrap_err()
        .to_string();
        for key in ["messages_per_second", "pair_interval", "pair_burst"] {
            let needle = format!("tenants.shop.whatsapp.{key} must be between");
            assert!(bad.contains(&needle), "missing `{needle}` in:\n{bad}");
        }
    }

    #[test]
    fn telegram_bots_are_validated_with_fixes_named() {
        let ok = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[tenants.shop.telegram]\n\
             bot_token = \"123:abc\"\nmode = \"polling\"\npoll_timeout = \"2s\"\n",
        )
        .unwrap();
        let tg = ok.tenants["shop"].telegram.as_ref().unwrap();
        assert_eq!(tg.poll_timeout, Duration::from_secs(2));
        assert_eq!(tg.api_base_url, "https://api.telegram.org");
        let err = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[tenants.shop.telegram]\n\
             bot_token = \"nope\"\nwebhook_secret = \"has space\"\napi_base_url = \"ftp://x\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "tenants.shop.telegram.bot_token must be the BotFather token",
            "SAPA_TENANTS__SHOP__TELEGRAM__BOT_TOKEN",
            "tenants.shop.telegram.webhook_secret must be 1-256 characters",
            "tenants.shop.telegram.api_base_url must be an http:// or https:// URL",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
        let err = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[tenants.shop.telegram]\n\
             bot_token = \"1:a\"\nmode = \"push\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("telegram.mode must be \"webhook\" or \"polling\"")
        );
    }

    #[test]
    fn all_problems_are_reported_at_once_each_naming_its_key() {
        let file = r#"
            [server]
            bnd = "0.0.0.0:1"
            max_body_bytes = "big"
            [conversation]
            debounce = "soon"
            [unknown_section]
            x = 1
            [tenants.shop]
            name = "Shop"
            colour = "red"
        "#;
        let err = Config::from_sources(
            Some(("sapa.toml", file)),
            &env(&[
                ("SAPA_DISPATCHER__MAX_ATTEMPTS", "many"),
                ("SAPA_SERVR__BIND", "x"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "unknown key `server.bnd` (did you mean `bind`?)",
            "`server.max_body_bytes` must be an integer (got a string)",
            "`conversation.debounce` must be a duration",
            "unknown key `unknown_section`",
            "unknown key `tenants.shop.colour`",
            "SAPA_DISPATCHER__MAX_ATTEMPTS: expected an integer",
            "SAPA_SERVR__BIND: unknown key `servr.bind` (did you mean `server`?)",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
        assert_eq!(err.problems.len(), 7, "{text}");
    }

    #[test]
    fn environment_overrides_the_file_and_keeps_id_like_values_as_strings() {
        let config = Config::from_sources(
            Some(("f", "[database]\nurl = \"sqlite://a.db\"\n")),
            &env(&[
                ("SAPA_DATABASE__URL", "postgres://u:pw@localhost/test"),
                ("SAPA_LLM__MODEL", "12345"),
                ("SAPA_CONVERSATION__DEBOUNCE", "0s"),
                ("SAPA_SECRET_KEY", "ignored: not a config key"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.url, "postgres://u:pw@localhost/test");
        assert_eq!(config.llm.model, "12345");
        assert_eq!(config.conversation.debounce, Duration::ZERO);
        assert!(
            config
                .redacted_summary()
                .contains("postgres://u:***@localhost/test"),
            "{}",
            config.redacted_summary()
        );
    }

    #[test]
    fn follow_ups_are_configured_per_tenant_and_from_the_environment() {
        let config = Config::from_sources(
            Some(("f", "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n")),
            &env(&[
                ("SAPA_DEMO__FOLLOW_UP__AFTER", "3s"),
                ("SAPA_DEMO__FOLLOW_UP__QUIET_HOURS", "off"),
                ("SAPA_TENANTS__SHOP__FOLLOW_UP__AFTER", "0"),
                ("SAPA_TENANTS__SHOP__FOLLOW_UP__MAX_PER_WEEK", "5"),
                (
                    "SAPA_TENANTS__SHOP__FOLLOW_UP__TEXT",
                    "Masih ada pertanyaan?",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(config.demo.follow_up.after, Duration::from_secs(3));
        assert!(config.demo.follow_up.quiet().is_none());
        assert_eq!(config.demo.follow_up.max_per_week, 2);
        let shop = &config.tenants["shop"].follow_up;
        assert_eq!(shop.after, Duration::ZERO);
        assert_eq!(shop.max_per_week, 5);
        assert_eq!(shop.text, "Masih ada pertanyaan?");
        // Defaults without any setting.
        let plain = Config::from_toml("[tenants.two]\nname = \"T\"\nlocale = \"en\"\n").unwrap();
        let two = &plain.tenants["two"].follow_up;
        assert_eq!(two.after, Duration::from_secs(7200));
        assert!(two.quiet().is_some());
        assert_eq!(plain.demo.follow_up.after, Duration::from_secs(7200));

        let err = Config::from_sources(
            Some((
                "f",
                "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[tenants.shop.follow_up]\nquiet_hours = \"9pm\"\nmax_per_week = 0\n",
            )),
            &env(&[("SAPA_DEMO__FOLLOW_UP__AFTER", "soon")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SAPA_DEMO__FOLLOW_UP__AFTER"), "{err}");
        let err = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n[tenants.shop.follow_up]\nquiet_hours = \"9pm\"\nmax_per_week = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tenants.shop.follow_up.quiet_hours must be a local time range"),
            "{err}"
        );
        assert!(
            err.contains("tenants.shop.follow_up.max_per_week must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn semantic_problems_are_listed_together() {
        let err = Config::from_toml(
            "[conversation]\ndebounce = \"5s\"\ndebounce_max = \"1s\"\n[database]\nurl = \"mysql://x\"\n[tenants.Bad_Slug]\nname = \"x\"\nlocale = \"fr\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("conversation.debounce_max"), "{text}");
        assert!(text.contains("database.url must be"), "{text}");
        assert!(text.contains("tenants.Bad_Slug: a tenant slug"), "{text}");
        assert!(text.contains("tenants.Bad_Slug.locale must be"), "{text}");
    }

    #[test]
    fn business_hours_are_read_per_tenant_and_mistakes_named() {
        let config = Config::from_toml(
            "[tenants.shop]\nname = \"x\"\nlocale = \"id\"\n[tenants.shop.business_hours]\nmonday = \"08:00-17:00\"\nholidays = [\"2026-12-25\"]\n",
        )
        .unwrap();
        let hours = config.tenants["shop"].business_hours("shop").unwrap();
        assert_eq!(hours.zone_name(), "Asia/Jakarta");
        let err = Config::from_toml(
            "[tenants.shop]\nname = \"x\"\nlocale = \"id\"\n[tenants.shop.business_hours]\ntimezone = \"Mars/Olympus\"\n\n[tenants.two]\nname = \"y\"\nlocale = \"id\"\n[tenants.two.business_hours]\nfriday = \"9-5\"\nholidays = [\"25/12/2026\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tenants.shop.business_hours.timezone must be an IANA time zone"),
            "{err}"
        );
        assert!(
            err.contains("tenants.two.business_hours.friday must be ranges like `08:00-17:00`"),
            "{err}"
        );
        let err = Config::from_toml(
            "[tenants.two]\nname = \"y\"\nlocale = \"id\"\n[tenants.two.business_hours]\nholidays = [\"25/12/2026\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tenants.two.business_hours.holidays must hold dates as YYYY-MM-DD"),
            "{err}"
        );
    }

    #[test]
    fn http_limits_and_the_operator_listener_are_validated() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(
            config.server.admin_address(),
            Some("127.0.0.1:9091".parse().unwrap())
        );
        assert_eq!(config.webchat.max_sockets_per_session, 5);
        let off = Config::from_toml("[server]\nadmin_bind = \"\"\n").unwrap();
        assert_eq!(off.server.admin_address(), None);
        let err = Config::from_toml(
            "[server]\nbind = \"127.0.0.1:8080\"\nadmin_bind = \"127.0.0.1:8080\"\nheader_read_timeout = \"0s\"\nrequest_timeout = \"0s\"\nmax_connections = 0\n[webchat]\nmax_sockets_per_session = 10\nmax_sockets = 3\nsession_idle_timeout = \"0s\"\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "server.admin_bind (127.0.0.1:8080) must differ from server.bind",
            "server.header_read_timeout must be more than 0s",
            "server.request_timeout must be more than 0s",
            "server.max_connections must be at least 1",
            "webchat.max_sockets (3) must be at least webchat.max_sockets_per_session (10)",
            "webchat.session_idle_timeout must be more than 0s",
        ] {
            assert!(err.contains(needle), "missing `{needle}` in {err}");
        }
        let err = Config::from_toml("[server]\nadmin_bind = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.admin_bind"), "{err}");
    }

    #[test]
    fn canned_replies_and_agent_templates_are_checked() {
        let config = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n\
             [[tenants.shop.canned_replies]]\nshortcut = \"harga\"\ntext = \"Harga mulai 25rb.\"\n\
             [[tenants.shop.agent_templates]]\nname = \"follow_up\"\nlanguage = \"id\"\nbody = \"Halo, ada kabar baru.\"\n",
        )
        .unwrap();
        assert_eq!(config.tenants["shop"].canned_replies[0].shortcut, "harga");
        assert_eq!(config.tenants["shop"].agent_templates[0].name, "follow_up");
        let err = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\n\
             [[tenants.shop.canned_replies]]\nshortcut = \"Harga!\"\ntext = \"x\"\n\
             [[tenants.shop.canned_replies]]\nshortcut = \"ok\"\ntext = \" \"\n\
             [[tenants.shop.canned_replies]]\nshortcut = \"ok\"\ntext = \"y\"\n\
             [[tenants.shop.agent_templates]]\nname = \"Bad Name\"\nlanguage = \"\"\nbody = \"\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "tenants.shop.canned_replies[0].shortcut must be 1-32 characters",
            "tenants.shop.canned_replies[1].text must not be empty",
            "tenants.shop.canned_replies[2].shortcut \"ok\" is used twice",
            "tenants.shop.agent_templates[0].name must be",
            "tenants.shop.agent_templates[0].language must be",
            "tenants.shop.agent_templates[0].body must not be empty",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn cost_bounds_and_allowed_links_are_checked() {
        let config = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\nallowed_links = [\"kopi.example\", \"https://wa.me/62812\"]\n",
        )
        .unwrap();
        assert_eq!(config.tenants["shop"].allowed_links.len(), 2);
        assert_eq!(config.llm.max_restarts, 2);
        assert_eq!(config.conversation.messages_per_minute, 20);
        let err = Config::from_toml(
            "[conversation]\nmax_turn_messages = 0\nmax_turn_chars = 10\n[llm]\nmax_prompt_tokens = 100\n[tenants.shop]\nname = \"S\"\nlocale = \"id\"\nallowed_links = [\"kopi\"]\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "conversation.max_turn_messages must be at least 1",
            "conversation.max_turn_chars must be at least 100",
            "llm.max_prompt_tokens must be at least 500",
            "tenants.shop.allowed_links: `kopi` is neither a host",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn widget_keys_are_checked_and_lists_can_come_from_the_environment() {
        let config = Config::from_sources(
            Some((
                "f",
                "[tenants.shop]\nname = \"Shop\"\nlocale = \"id\"\ncolor = \"#abc\"\nallowed_origins = [\"https://shop.example\"]\n",
            )),
            &env(&[(
                "SAPA_DEMO__ALLOWED_ORIGINS",
                "https://a.example, http://localhost:3000",
            )]),
        )
        .unwrap();
        assert_eq!(config.tenants["shop"].color, "#abc");
        assert_eq!(config.tenants["shop"].greeting, "");
        assert_eq!(
            config.tenants["shop"].allowed_origins,
            vec!["https://shop.example"]
        );
        assert_eq!(
            config.demo.allowed_origins,
            vec!["https://a.example", "http://localhost:3000"]
        );
        assert_eq!(config.webchat.messages_per_minute_per_session, 20);

        let err = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\nallowed_origins = [3]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`tenants.shop.allowed_origins` must be a list of strings"),
            "{err}"
        );
        let err = Config::from_toml(
            "[tenants.shop]\nname = \"S\"\nlocale = \"id\"\ncolor = \"red\"\nallowed_origins = [\"shop.example\"]\n[demo]\nallowed_origins = [\"https://x.example/path\"]\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("tenants.shop.color must be a hex colour"),
            "{text}"
        );
        assert!(
            text.contains("tenants.shop.allowed_origins: `shop.example` is not an origin"),
            "{text}"
        );
        assert!(
            text.contains("demo.allowed_origins: `https://x.example/path` is not an origin"),
            "{text}"
        );
        assert_eq!(err.problems.len(), 3, "{text}");
    }

    #[test]
    fn embedding_settings_are_checked_and_the_key_redacted() {
        let err = Config::from_toml(
            "[embeddings]\nbase_url = \"localhost:11434\"\nbatch_size = 0\nmin_similarity = 1.5\ndense_weight = 2.0\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("embeddings.base_url must be an http"),
            "{text}"
        );
        assert!(text.contains("embeddings.model must be set"), "{text}");
        assert!(
            text.contains("embeddings.batch_size must be between"),
            "{text}"
        );
        assert!(
            text.contains("embeddings.min_similarity must be between"),
            "{text}"
        );
        assert!(
            text.contains("embeddings.dense_weight must be between 0 and 1"),
            "{text}"
        );
        let config = Config::from_sources(
            None,
            &env(&[
                ("SAPA_EMBEDDINGS__BASE_URL", "http://127.0.0.1:11434/v1"),
                ("SAPA_EMBEDDINGS__MODEL", "nomic-embed-text"),
                ("SAPA_EMBEDDINGS__API_KEY", "sk-embed-secret"),
            ]),
        )
        .unwrap();
        assert_eq!(config.embeddings.model, "nomic-embed-text");
        assert_eq!(config.embeddings.batch_size, 64);
        assert!(!format!("{config:?}").contains("sk-embed-secret"));
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config =
            Config::from_sources(None, &env(&[("SAPA_LLM__API_KEY", "sk-secret")])).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-secret"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn an_otlp_endpoint_must_be_an_http_url() {
        let ok =
            Config::from_toml("[telemetry]\notlp_endpoint = \"http://collector:4318\"\n").unwrap();
        assert_eq!(ok.telemetry.otlp_endpoint, "http://collector:4318");
        let defaults = Config::from_toml("").unwrap();
        assert!(defaults.telemetry.otlp_endpoint.is_empty());
        let err =
            Config::from_toml("[telemetry]\notlp_endpoint = \"collector:4317\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("telemetry.otlp_endpoint must be an http:// or https:// URL"),
            "{err}"
        );
    }
}
