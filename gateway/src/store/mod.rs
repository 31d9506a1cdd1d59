//! The one place with SQL. SQLite (embedded) and Postgres (distributed) share every statement
//! through sqlx's `Any` driver; where the dialects differ, [`Dialect`] picks the variant.
//!
//! Invariants:
//! - Every query that reads tenant data filters on `tenant_id` or on an id that was itself
//!   resolved under a tenant (a session token, a conversation id from a tenant-scoped row).
//! - The inbox's unique `(channel_account_id, external_id)` is the dedupe: inserts use
//!   `ON CONFLICT DO NOTHING`, never check-then-insert.
//! - State, bot messages and outbox rows of one turn commit in one transaction.
//! - Writers to one conversation take its row lock first (`UPDATE conversations …`), so message
//!   ids within a conversation are assigned and committed in order, even on Postgres.

mod api_keys;
mod bot;
mod composer;
mod console;
mod contacts;
mod documents;
mod follow_ups;
mod inbound_batch;
mod ingress;
mod leases;
mod otp;
mod outbox;
mod owner;
mod script;
mod staff;
mod tenant_flows;
mod turn_batch;
mod turns;
mod usage;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use channels::ChannelKind;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use api_keys::{ApiKeyInfo, StoredApiKey};
pub use bot::BotVersion;
pub use composer::{ContactChannel, PastConversation, TypingTarget};
pub use console::{Claim as ConsoleClaim, Queue, QueueItem};
pub use contacts::{ContactIds, ContactIdsChange};
pub use documents::DocumentDates;
pub use follow_ups::{DueFollowUp, FollowUpOutcome, FollowUpRow, PlannedFollowUp};
pub use ingress::{Accepted, ContactRef, InboundItem, InboundTarget, StoredContent};
pub use otp::{NewOtpChallenge, OtpChallenge, OtpCheck, OtpIssue, OtpLimits, OtpRefusal, OtpSend};
pub use outbox::{
    AgentSend, Claim, ClaimedSend, InboundMediaRef, OtpPart, OutboxFailure, QueuedMessage,
    UndecodableSend,
};
pub use staff::{LoginAttempt, StaffMember, StaffSession};
pub use tenant_flows::StoredFlow;
pub use turns::{LlmUsage, MASKED_CODE, PendingTurn, Turn, TurnBatch, TurnOutcome, TurnReply};
pub use usage::{BudgetUsage, QuotaOverride, UsageDay};

/// One migration: version, name, SQLite script, Postgres script.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("migrations/0001_init.sqlite.sql"),
        include_str!("migrations/0001_init.postgres.sql"),
    ),
    (
        2,
        "llm_usage",
        include_str!("migrations/0002_llm_usage.sqlite.sql"),
        include_str!("migrations/0002_llm_usage.postgres.sql"),
    ),
    (
        3,
        "api_keys",
        include_str!("migrations/0003_api_keys.sqlite.sql"),
        include_str!("migrations/0003_api_keys.postgres.sql"),
    ),
    (
        4,
        "whatsapp",
        include_str!("migrations/0004_whatsapp.sqlite.sql"),
        include_str!("migrations/0004_whatsapp.postgres.sql"),
    ),
    (
        5,
        "telegram",
        include_str!("migrations/0005_telegram.sqlite.sql"),
        include_str!("migrations/0005_telegram.postgres.sql"),
    ),
    (
        6,
        "outbox_parts",
        include_str!("migrations/0006_outbox_parts.sqlite.sql"),
        include_str!("migrations/0006_outbox_parts.postgres.sql"),
    ),
    (
        7,
        "whatsapp_usernames",
        include_str!("migrations/0007_whatsapp_usernames.sqlite.sql"),
        include_str!("migrations/0007_whatsapp_usernames.postgres.sql"),
    ),
    (
        8,
        "outbox_part_progress",
        include_str!("migrations/0008_outbox_part_progress.sqlite.sql"),
        include_str!("migrations/0008_outbox_part_progress.postgres.sql"),
    ),
    (
        9,
        "webchat_session_seen",
        include_str!("migrations/0009_webchat_session_seen.sqlite.sql"),
        include_str!("migrations/0009_webchat_session_seen.postgres.sql"),
    ),
    (
        10,
        "otp",
        include_str!("migrations/0010_otp.sqlite.sql"),
        include_str!("migrations/0010_otp.postgres.sql"),
    ),
    (
        11,
        "conversation_verification",
        include_str!("migrations/0011_conversation_verification.sqlite.sql"),
        include_str!("migrations/0011_conversation_verification.postgres.sql"),
    ),
    (
        12,
        "staff",
        include_str!("migrations/0012_staff.sqlite.sql"),
        include_str!("migrations/0012_staff.postgres.sql"),
    ),
    (
        13,
        "handoff",
        include_str!("migrations/0013_handoff.sqlite.sql"),
        include_str!("migrations/0013_handoff.postgres.sql"),
    ),
    (
        14,
        "presence",
        include_str!("migrations/0014_presence.sqlite.sql"),
        include_str!("migrations/0014_presence.postgres.sql"),
    ),
    (
        15,
        "sla",
        include_str!("migrations/0015_sla.sqlite.sql"),
        include_str!("migrations/0015_sla.postgres.sql"),
    ),
    (
        16,
        "handoff_wait",
        include_str!("migrations/0016_handoff_wait.sqlite.sql"),
        include_str!("migrations/0016_handoff_wait.postgres.sql"),
    ),
    (
        17,
        "owner",
        include_str!("migrations/0017_owner.sqlite.sql"),
        include_str!("migrations/0017_owner.postgres.sql"),
    ),
    (
        18,
        "bot_versions",
        include_str!("migrations/0018_bot_versions.sqlite.sql"),
        include_str!("migrations/0018_bot_versions.postgres.sql"),
    ),
    (
        19,
        "usage",
        include_str!("migrations/0019_usage.sqlite.sql"),
        include_str!("migrations/0019_usage.postgres.sql"),
    ),
    (
        20,
        "owner_pages",
        include_str!("migrations/0020_owner_pages.sqlite.sql"),
        include_str!("migrations/0020_owner_pages.postgres.sql"),
    ),
    (
        21,
        "follow_ups",
        include_str!("migrations/0021_follow_ups.sqlite.sql"),
        include_str!("migrations/0021_follow_ups.postgres.sql"),
    ),
    (
        22,
        "follow_up_reschedules",
        include_str!("migrations/0022_follow_up_reschedules.sqlite.sql"),
        include_str!("migrations/0022_follow_up_reschedules.postgres.sql"),
    ),
    (
        23,
        "flows",
        include_str!("migrations/0023_flows.sqlite.sql"),
        include_str!("migrations/0023_flows.postgres.sql"),
    ),
    (
        24,
        "inbound_count",
        include_str!("migrations/0024_inbound_count.sqlite.sql"),
        include_str!("migrations/0024_inbound_count.postgres.sql"),
    ),
    (
        25,
        "conversation_leases",
        include_str!("migrations/0025_conversation_leases.sqlite.sql"),
        include_str!("migrations/0025_conversation_leases.postgres.sql"),
    ),
    (
        26,
        "message_trace_id",
        include_str!("migrations/0026_message_trace_id.sqlite.sql"),
        include_str!("migrations/0026_message_trace_id.postgres.sql"),
    ),
];

/// The outbox rows (`outbox_id`, `message_id`) sent through account `$2` of tenant `$1` whose
/// last part (`outbox.provider_message_id`) or an earlier part (`outbox_parts`) has provider id
/// `$3`. Two indexed lookups joined with `UNION ALL`, to use as a subquery.
pub(crate) const SENT_LOOKUP: &str = "SELECT o.id AS outbox_id, o.message_id FROM outbox o \
     WHERE o.tenant_id = $1 AND o.channel_account_id = $2 AND o.provider_message_id = $3 \
     UNION ALL SELECT o.id AS outbox_id, o.message_id FROM outbox_parts p JOIN outbox o ON o.id = p.outbox_id \
     WHERE p.tenant_id = $1 AND p.channel_account_id = $2 AND p.provider_message_id = $3";

/// Storage failures, classified for the HTTP edge and the workers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation; retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A migration script failed.
    #[error("migration {version} ({name}) failed")]
    Migration {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The database's schema is newer than this binary.
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew {
        /// Highest applied version.
        found: i64,
        /// Highest version this binary knows.
        supported: i64,
    },
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        Self::Unavailable(err)
    }
}

impl StoreError {
    /// The error with its whole cause chain (`database unavailable: error returned from
    /// database: …`), for logs: the top-level message alone does not say what went wrong.
    pub fn chain(&self) -> ErrorChain<'_> {
        ErrorChain(self)
    }
}

/// Displays an error followed by each of its sources, separated by `: `.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// `count` copies of `row`, comma-separated: a multi-row `VALUES` list. Group commits write
/// with multi-row statements because every statement is a round trip to the writer.
pub(crate) fn rows(count: usize, row: &str) -> String {
    vec![row; count].join(", ")
}

/// `sql`, whose parameters are written `?` in bind order, as `dialect` takes them. SQLite keeps
/// `?`: an anonymous parameter costs O(1) to parse and bind, while numbered or named ones
/// (`$1`) are looked up in a list, which is quadratic in a multi-row statement's parameters
/// (`strncmp` and `sqlite3_bind_parameter_name` took 6 % of the loaded server's samples).
/// Postgres numbers them `$1, $2, …` (no `?` appears in these statements' literals).
pub(crate) fn bind_marks(dialect: Dialect, sql: &str) -> String {
    match dialect {
        Dialect::Sqlite => sql.to_owned(),
        Dialect::Postgres => {
            let mut out = String::with_capacity(sql.len() + sql.len() / 2);
            let mut next = 1;
            for c in sql.chars() {
                if c == '?' {
                    out.push('$');
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// The dialect of a connection (or of a transaction, through `&**tx`).
pub(crate) fn dialect_of(conn: &sqlx::AnyConnection) -> Dialect {
    if conn.backend_name() == "PostgreSQL" {
        Dialect::Postgres
    } else {
        Dialect::Sqlite
    }
}

/// Conversations locked per statement.
const LOCK_ROWS: usize = 500;

/// Takes the row locks of the conversations `ids` on Postgres, in one global order (by id) as
/// every writer to conversations takes them, so concurrent group commits of several replicas
/// cannot deadlock. SQLite has one writer: its transaction is already exclusive.
pub(crate) async fn lock_conversations(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: &mut [&str],
) -> Result<(), StoreError> {
    if dialect_of(tx) != Dialect::Postgres {
        return Ok(());
    }
    ids.sort_unstable();
    for part in ids.chunks(LOCK_ROWS) {
        let sql = bind_marks(
            Dialect::Postgres,
            &format!(
                "SELECT id FROM conversations WHERE id IN ({}) ORDER BY id FOR UPDATE",
                rows(part.len(), "?")
            ),
        );
        let mut query = sqlx::query(&sql);
        for id in part.iter() {
            query = query.bind(*id);
        }
        query.fetch_all(&mut **tx).await?;
    }
    Ok(())
}

/// `text` as the database can store it: without NUL characters, which Postgres `TEXT` cannot
/// hold (SQLite would keep them but cut the text short in some functions). Every free text a
/// customer, agent or model wrote goes through this before it is bound, on both backends, so
/// both store the same thing.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Why the database refused one item for good (retrying the same data cannot succeed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A value it cannot store (invalid characters, out of range).
    Value,
    /// The item breaks a storage rule (a constraint).
    Rule,
    /// A value is too large to store.
    TooLarge,
}

impl Refusal {
    /// What the sender can change, in a sentence.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Value => {
                "it contains a value the database cannot store (invalid characters or a number out of range); change the content"
            }
            Self::Rule => {
                "it breaks a storage rule (a constraint of the database); change the content"
            }
            Self::TooLarge => "a value in it is too large to store; shorten it",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Reads a channel kind column.
pub(crate) fn channel_kind_of(row: &AnyRow, column: &str) -> Result<ChannelKind, StoreError> {
    let name: String = row.try_get(column)?;
    name.parse()
        .map_err(|e: channels::model::UnknownChannelKind| StoreError::Corrupt(e.to_string()))
}

/// Which database backend a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// SQLite at this file path.
    Sqlite(std::path::PathBuf),
    /// Postgres at this URL.
    Postgres(String),
}

/// SQL dialect of the connected database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (embedded mode).
    Sqlite,
    /// PostgreSQL (distributed mode).
    Postgres,
}

/// Handle to the database. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    /// Writes. On SQLite a single connection, so write transactions never fight for the lock.
    write: AnyPool,
    /// Reads. On Postgres the same pool as `write`.
    read: AnyPool,
    dialect: Dialect,
    /// Each tenant's time zone, for the day usage is counted on.
    days: std::sync::Arc<usage::UsageDays>,
}

/// A tenant row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Slug, e.g. `demo`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Default bot language (`id` or `en`).
    pub locale: String,
}

/// One recorded language model completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmUsageRow {
    /// Conversation it answered.
    pub conversation_id: String,
    /// Model name.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// What a web chat session token resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebchatSession {
    /// Tenant slug.
    pub tenant_id: String,
    /// Conversation of the session.
    pub conversation_id: String,
    /// The tenant's web chat channel account.
    pub channel_account_id: String,
    /// When the session was last used (Unix ms; its creation if never since).
    pub last_seen_ms: i64,
}

/// A channel account with its (encrypted) credentials.
#[derive(Debug, Clone)]
pub struct ChannelAccount {
    /// Account id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Provider-side id (WhatsApp phone_number_id).
    pub external_id: String,
    /// Sealed credentials.
    pub credentials: Option<Vec<u8>>,
}

/// A provider's delivery report, ready to apply.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryStatus<'a> {
    /// The provider's id of our message.
    pub provider_message_id: &'a str,
    /// `sent`, `delivered`, `read` or `failed`.
    pub state: &'a str,
    /// Progress rank of `state` (see `channels::model::DeliveryState::rank`).
    pub rank: i64,
    /// Provider time of the status, Unix ms.
    pub at_ms: i64,
    /// Provider error code of a failure.
    pub error_code: Option<&'a str>,
    /// Log-safe failure reason.
    pub error: Option<&'a str>,
}

/// A stored message as the APIs present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Monotonic id.
    pub id: i64,
    /// `customer`, `bot` or `agent`.
    pub author: String,
    /// Text.
    pub body: String,
    /// Client or provider id of a customer message.
    pub external_id: Option<String>,
    /// Customer message ids a bot or agent message answers.
    pub in_reply_to: Vec<String>,
    /// Quick replies offered.
    pub choices: Vec<String>,
    /// Delivery state of outbound messages.
    pub status: Option<String>,
    /// Knowledge chunk ids a bot answer rests on.
    pub citations: Vec<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// OpenTelemetry trace id (32 hex digits) of the request or answer turn that wrote it.
    pub trace_id: Option<String>,
}

impl StoredMessage {
    /// The customer message `item`, stored as `id`.
    pub(crate) fn customer(item: &ingress::InboundItem, id: i64) -> Self {
        Self {
            id,
            author: "customer".to_owned(),
            body: storable(&item.text).into_owned(),
            external_id: Some(storable(&item.external_id).into_owned()),
            in_reply_to: Vec::new(),
            choices: Vec::new(),
            status: None,
            citations: Vec::new(),
            created_at_ms: item.received_at_ms,
            trace_id: item.trace_id.clone(),
        }
    }
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

impl Store {
    /// Connects to the database `target` selects (creating a SQLite file if missing).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn connect(
        target: &DatabaseTarget,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        match target {
            DatabaseTarget::Sqlite(path) => Self::connect_sqlite(path, max_connections).await,
            DatabaseTarget::Postgres(url) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    // No `SELECT 1` before every use: it was one round trip per statement
                    // batch (a third of the Postgres calls under load, ~1 ms each). A
                    // connection broken meanwhile fails its statement, which is a retryable
                    // error (nothing is acknowledged that is not stored), and is discarded.
                    .test_before_acquire(false)
                    .connect(url)
                    .await?;
                Ok(Self {
                    write: pool.clone(),
                    read: pool,
                    dialect: Dialect::Postgres,
                    days: std::sync::Arc::default(),
                })
            }
        }
    }

    async fn connect_sqlite(path: &Path, readers: u32) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = |max: u32, pragmas: &'static str| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30))
                // No ping before every use: with SQLite it is one more hop to the connection's
                // thread per transaction, and a local file connection does not go stale.
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        conn.execute(pragmas).await?;
                        Ok(())
                    })
                })
        };
        // WAL keeps readers off the writer's back; NORMAL sync is durable against process
        // crashes (only an OS crash can lose the last commits). The writer never checkpoints
        // (a checkpoint fsyncs the database file, which stalled inbound commits for ~100 ms
        // under load): `Store::checkpoint` does it from a reader connection instead, and
        // SQLite checkpoints when the last connection closes. A multi-row statement inside a
        // transaction keeps a statement journal (to undo just that statement); the writer keeps
        // it in memory instead of spilling it to a temporary file past 64 KiB.
        let write = pool(
            1,
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; \
             PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=0; PRAGMA temp_store=MEMORY;",
        )
        .connect(&url)
        .await?;
        let read = pool(
            readers.max(1),
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; \
             PRAGMA foreign_keys=ON;",
        )
        .connect(&url)
        .await?;
        Ok(Self {
            write,
            read,
            dialect: Dialect::Sqlite,
            days: std::sync::Arc::default(),
        })
    }

    /// Copies what the SQLite write-ahead log holds into the database file without blocking
    /// the writer or readers (a passive checkpoint, on a reader connection), so the log stays
    /// short. Embedded mode runs it periodically; nothing to do on Postgres. Returns the
    /// frames in the log and how many of them are now in the database file.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn checkpoint(&self) -> Result<(i64, i64), StoreError> {
        if self.dialect != Dialect::Sqlite {
            return Ok((0, 0));
        }
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.read)
            .await?;
        Ok((row.try_get(1)?, row.try_get(2)?))
    }

    /// The writer pool, for tests of other modules that arrange or inspect rows directly.
    #[cfg(test)]
    pub(crate) fn pool_for_tests(&self) -> &AnyPool {
        &self.write
    }

    /// The writer pool, for end-to-end tests and operator tools that inspect or arrange rows
    /// directly (scanning every table for a leaked code, moving a clock back). Not for the
    /// server's own code: every query belongs in this module.
    #[doc(hidden)]
    pub fn pool(&self) -> &AnyPool {
        &self.write
    }

    /// The connected dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Why the database refused a statement because of the data it was given, phrased for
    /// whoever sent that data; `None` for failures a retry can get past (connection, timeout,
    /// lock, serialization), which must be answered "unavailable, retry".
    pub(crate) fn refusal(&self, err: &StoreError) -> Option<Refusal> {
        let StoreError::Unavailable(sqlx::Error::Database(db)) = err else {
            return None;
        };
        let code = db.code()?;
        match self.dialect {
            // SQLSTATE classes: 22 data exception, 23 integrity constraint violation, 54
            // program limit exceeded (e.g. an index row too large).
            Dialect::Postgres => match code.get(..2)? {
                "22" => Some(Refusal::Value),
                "23" => Some(Refusal::Rule),
                "54" => Some(Refusal::TooLarge),
                _ => None,
            },
            // Primary result codes (the low byte of the extended code): 18 TOOBIG,
            // 19 CONSTRAINT, 20 MISMATCH.
            Dialect::Sqlite => match code.parse::<i32>().ok()? & 0xff {
                18 => Some(Refusal::TooLarge),
                19 => Some(Refusal::Rule),
                20 => Some(Refusal::Value),
                _ => None,
            },
        }
    }

    /// Applies pending migrations; returns the versions applied now.
    ///
    /// # Errors
    /// A failing script, or a schema newer than this binary.
    pub async fn migrate(&self) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.write.begin().await?;
        if self.dialect == Dialect::Postgres {
            // Replicas starting together must not run the same migration twice.
            sqlx::query("SELECT pg_advisory_xact_lock(72330001)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS sapa_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied_before: Vec<i64> = sqlx::query("SELECT version FROM sapa_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("version"))
            .collect::<Result<_, _>>()?;
        let supported = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
        if let Some(found) = applied_before.iter().copied().find(|v| *v > supported) {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        let mut applied = Vec::new();
        // Each migration is applied once, tracked by version (not by the highest version), so
        // migrations merged out of numeric order still run.
        for (version, name, sqlite, postgres) in MIGRATIONS {
            if applied_before.contains(version) {
                continue;
            }
            let script = match self.dialect {
                Dialect::Sqlite => sqlite,
                Dialect::Postgres => postgres,
            };
            sqlx::raw_sql(script)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migration {
                    version: *version,
                    name,
                    source,
                })?;
            sqlx::query(
                "INSERT INTO sapa_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            applied.push(*version);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// A trivial round trip, for readiness checks.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").fetch_one(&self.read).await?;
        Ok(())
    }

    /// Closes both pools (graceful shutdown).
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// Creates the tenant or updates its name and locale.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn upsert_tenant(
        &self,
        id: &str,
        name: &str,
        locale: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenants (id, name, locale, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, locale = excluded.locale",
        )
        .bind(id)
        .bind(name)
        .bind(locale)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Creates a tenant; returns false (and changes nothing) when the slug is taken.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn create_tenant(
        &self,
        id: &str,
        name: &str,
        locale: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO tenants (id, name, locale, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(locale)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Stores the owner's instructions for the tenant's prompts (empty clears them).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_tenant_instructions(
        &self,
        id: &str,
        instructions: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tenants SET instructions = $1 WHERE id = $2")
            .bind(instructions)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The tenant's display name and the owner's prompt instructions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn tenant_prompt_profile(
        &self,
        id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT name, instructions FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| -> Result<(String, String), StoreError> {
            let instructions: Option<String> = r.try_get("instructions")?;
            Ok((r.try_get("name")?, instructions.unwrap_or_default()))
        })
        .transpose()
    }

    /// Records token usage outside a committed turn (an answer that was superseded after the
    /// model was paid for it).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn record_llm_usage(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        usage: &[turns::LlmUsage],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        for usage in usage {
            sqlx::query(
                "INSERT INTO llm_usage (tenant_id, conversation_id, model, prompt_tokens, completion_tokens, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant_id)
            .bind(conversation_id)
            .bind(&usage.model)
            .bind(usage.prompt_tokens)
            .bind(usage.completion_tokens)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // The day's counters include what superseded answers cost, on the conversation's channel.
        let channel: Option<String> = sqlx::query(
            "SELECT a.kind FROM conversations c \
             JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             WHERE c.id = $1 AND c.tenant_id = $2",
        )
        .bind(conversation_id)
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("kind"))
        .transpose()?;
        let delta = usage::UsageDelta {
            prompt_tokens: usage.iter().map(|u| u.prompt_tokens).sum(),
            completion_tokens: usage.iter().map(|u| u.completion_tokens).sum(),
            ..Default::default()
        };
        usage::bump(
            &mut tx,
            tenant_id,
            &self.days.day(tenant_id, now),
            channel.as_deref().unwrap_or("unknown"),
            &delta,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Token usage recorded for a tenant, newest first (tenant-scoped).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn llm_usage(&self, tenant_id: &str) -> Result<Vec<LlmUsageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT conversation_id, model, prompt_tokens, completion_tokens, created_at FROM llm_usage \
             WHERE tenant_id = $1 ORDER BY id DESC",
        )
        .bind(tenant_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LlmUsageRow {
                    conversation_id: r.try_get("conversation_id")?,
                    model: r.try_get("model")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    created_at_ms: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Looks a tenant up by slug.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, locale FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(tenant_row).transpose()
    }

    /// All tenants, by slug.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, locale FROM tenants ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(tenant_row).collect()
    }

    /// Returns the id of the tenant's channel account `(kind, external_id)`, creating it if
    /// missing. `credentials` are stored as given (callers encrypt them first).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; also when the account exists under another tenant.
    pub async fn ensure_channel_account(
        &self,
        tenant_id: &str,
        kind: ChannelKind,
        external_id: &str,
        name: &str,
        credentials: Option<Vec<u8>>,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO channel_accounts (id, tenant_id, kind, external_id, name, credentials, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, external_id) DO NOTHING",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(kind.as_str())
        .bind(external_id)
        .bind(name)
        .bind(credentials)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        let row = sqlx::query(
            "SELECT id, tenant_id FROM channel_accounts WHERE kind = $1 AND external_id = $2",
        )
        .bind(kind.as_str())
        .bind(external_id)
        .fetch_one(&self.write)
        .await?;
        let owner: String = row.try_get("tenant_id")?;
        if owner != tenant_id {
            return Err(StoreError::Corrupt(format!(
                "{kind} account {external_id} belongs to another tenant"
            )));
        }
        Ok(row.try_get("id")?)
    }

    /// The stored (encrypted) credentials of a channel account, scoped by tenant.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn channel_credentials(
        &self,
        tenant_id: &str,
        account_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query(
            "SELECT credentials FROM channel_accounts WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(account_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<Vec<u8>>, _>("credentials")?,
            None => None,
        })
    }

    /// Replaces the stored (encrypted) credentials of a tenant's channel account.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_channel_credentials(
        &self,
        tenant_id: &str,
        account_id: &str,
        credentials: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE channel_accounts SET credentials = $1 WHERE tenant_id = $2 AND id = $3",
        )
        .bind(credentials)
        .bind(tenant_id)
        .bind(account_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Every account of channel `kind` across tenants, for wiring adapters at start-up (the
    /// one cross-tenant read: each row carries its tenant, and nothing else is read with it).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn channel_accounts_of_kind(
        &self,
        kind: ChannelKind,
    ) -> Result<Vec<ChannelAccount>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, external_id, credentials FROM channel_accounts WHERE kind = $1 ORDER BY id",
        )
        .bind(kind.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChannelAccount {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    external_id: r.try_get("external_id")?,
                    credentials: r.try_get("credentials")?,
                })
            })
            .collect()
    }

    /// Applies a provider delivery status to the message we sent as `provider_message_id`
    /// through `channel_account_id` (the id of any part of a message sent in several parts).
    /// Statuses only move forward (`sent` < `failed` < `delivered` < `read`), so out-of-order
    /// or replayed webhooks never move one back. A message sent in several parts is
    /// `delivered`/`read` as soon as one part is, and `failed` (for good) when any part
    /// failed. Returns whether the stored status changed (false: stale, duplicate or unknown
    /// id).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn apply_delivery_status(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        update: &DeliveryStatus<'_>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT u.outbox_id, u.message_id, (SELECT COUNT(*) FROM outbox_parts q WHERE q.outbox_id = u.outbox_id) AS parts \
             FROM ({SENT_LOOKUP}) u ORDER BY u.outbox_id DESC LIMIT 1"
        ))
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(update.provider_message_id)
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let message_id: i64 = row.try_get("message_id")?;
        if message_id == 0 {
            // Not a stored message: a one-time code's send.
            let outbox_id: i64 = row.try_get("outbox_id")?;
            let mut tx = self.write.begin().await?;
            otp::otp_status(&mut tx, outbox_id, update.state, now_ms()).await?;
            tx.commit().await?;
            // Known either way: a stale status of a code is not one to retry later.
            return Ok(true);
        }
        let parts: i64 = row.try_get("parts")?;
        let rank = "(CASE COALESCE(status, 'pending') WHEN 'sent' THEN 1 WHEN 'failed' THEN 2 \
                    WHEN 'delivered' THEN 3 WHEN 'read' THEN 4 ELSE 0 END)";
        let condition = match (parts > 0, update.state == "failed") {
            (false, _) => format!("{rank} < $7"),
            (true, true) => "COALESCE(status, 'pending') <> 'failed' AND $7 > 0".to_owned(),
            (true, false) => format!("COALESCE(status, 'pending') <> 'failed' AND {rank} < $7"),
        };
        let changed = sqlx::query(&format!(
            "UPDATE messages SET status = $1, status_at = $2, \
             error_code = COALESCE($3, error_code), error = COALESCE($4, error) \
             WHERE tenant_id = $5 AND id = $6 AND {condition}"
        ))
        .bind(update.state)
        .bind(update.at_ms)
        .bind(update.error_code)
        .bind(update.error)
        .bind(tenant_id)
        .bind(message_id)
        .bind(update.rank)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Status, error code and provider status time of the message we sent as
    /// `provider_message_id` (tests, console).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn message_delivery(
        &self,
        tenant_id: &str,
        provider_message_id: &str,
    ) -> Result<Option<(Option<String>, Option<String>, Option<i64>)>, StoreError> {
        let row = sqlx::query(
            "SELECT m.status, m.error_code, m.status_at FROM messages m JOIN outbox o \
             ON o.message_id = m.id AND o.tenant_id = m.tenant_id \
             WHERE m.tenant_id = $1 AND (o.provider_message_id = $2 OR o.id IN \
                 (SELECT p.outbox_id FROM outbox_parts p WHERE p.tenant_id = $1 AND p.provider_message_id = $2)) \
             ORDER BY o.id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(provider_message_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<_, StoreError> {
            Ok((
                r.try_get("status")?,
                r.try_get("error_code")?,
                r.try_get("status_at")?,
            ))
        })
        .transpose()
    }

    /// Why the tenant's most recent failed outbound messages failed, newest first (what agents
    /// see next to a failed message).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn failed_messages(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(error, '') AS error FROM messages WHERE tenant_id = $1 AND status = 'failed' \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| r.try_get("error").map_err(StoreError::from))
            .collect()
    }

    /// Creates a contact, a conversation in `bot` state and a session whose token hashes to
    /// `token_hash`; returns the conversation id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn create_webchat_session(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        token_hash: &str,
        locale: &str,
    ) -> Result<String, StoreError> {
        let now = now_ms();
        let contact_id = uuid::Uuid::now_v7().to_string();
        let conversation_id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO contacts (id, tenant_id, channel_account_id, external_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&contact_id)
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(&contact_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO conversations (id, tenant_id, channel_account_id, contact_id, state, locale, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'bot', $5, $6, $6)",
        )
        .bind(&conversation_id)
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(&contact_id)
        .bind(locale)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webchat_sessions (token_hash, tenant_id, conversation_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(tenant_id)
        .bind(&conversation_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(conversation_id)
    }

    /// Resolves a session token hash.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn webchat_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<WebchatSession>, StoreError> {
        let row = sqlx::query(
            "SELECT s.tenant_id, s.conversation_id, c.channel_account_id, \
             COALESCE(s.last_seen_at, s.created_at) AS last_seen_ms FROM webchat_sessions s \
             JOIN conversations c ON c.id = s.conversation_id AND c.tenant_id = s.tenant_id \
             WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<WebchatSession, StoreError> {
            Ok(WebchatSession {
                tenant_id: r.try_get("tenant_id")?,
                conversation_id: r.try_get("conversation_id")?,
                channel_account_id: r.try_get("channel_account_id")?,
                last_seen_ms: r.try_get("last_seen_ms")?,
            })
        })
        .transpose()
    }

    /// Records that the session whose token hashes to `token_hash` was used at `at_ms`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn touch_webchat_session(
        &self,
        token_hash: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE webchat_sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(at_ms)
            .bind(token_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The conversation's messages with id greater than `after`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn messages_after(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, author, body, external_id, in_reply_to, choices, status, citations, created_at, trace_id FROM messages \
             WHERE tenant_id = $1 AND conversation_id = $2 AND id > $3 AND author <> 'note' ORDER BY id LIMIT $4",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(stored_message).collect()
    }

    /// Like [`Store::messages_after`], with the agents' internal notes (the console's view;
    /// customers and the model never see notes).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn console_messages(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, author, body, external_id, in_reply_to, choices, status, citations, created_at, trace_id FROM messages \
             WHERE tenant_id = $1 AND conversation_id = $2 AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(stored_message).collect()
    }

    /// Conversation state as stored (`bot`, `waiting_human`, `human`, `closed`), tenant-scoped.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_state(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT state FROM conversations WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(conversation_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("state")?),
            None => None,
        })
    }

    /// Questions the knowledge base could not answer, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn unanswered_questions(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT query FROM unanswered_questions WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| r.try_get("query").map_err(StoreError::from))
            .collect()
    }

    /// Number of outbox rows waiting to be sent (a gauge for `/metrics`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn outbox_pending(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Number of inbox rows not yet answered (a gauge for `/metrics`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn inbox_depth(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM inbox WHERE processed_at IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("n")?)
    }
}

fn json_list(raw: Option<String>) -> Result<Vec<String>, StoreError> {
    match raw {
        None => Ok(Vec::new()),
        Some(s) if s.is_empty() => Ok(Vec::new()),
        Some(s) => serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())),
    }
}

fn tenant_row(r: &AnyRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        locale: r.try_get("locale")?,
    })
}

fn stored_message(r: &AnyRow) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        id: r.try_get("id")?,
        author: r.try_get("author")?,
        body: r.try_get("body")?,
        external_id: r.try_get("external_id")?,
        in_reply_to: json_list(r.try_get("in_reply_to")?)?,
        choices: json_list(r.try_get("choices")?)?,
        status: r.try_get("status")?,
        citations: json_list(r.try_get("citations")?)?,
        created_at_ms: r.try_get("created_at")?,
        trace_id: r.try_get("trace_id")?,
    })
}

#[cfg(test)]
mod tests;
