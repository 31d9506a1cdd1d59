//! Gateway: the `sapa` binary's library. HTTP server, configuration, storage, workers, CLI.
//!
//! # Layout
//! - `cli`: the `sapa` command line (`serve`, `migrate`, `check`, `kb …`, `tenant …`).
//! - `api_key`: tenant API keys (format, hashing, constant-time verification).
//! - `config`: defaults → `sapa.toml` → `SAPA_*` environment, validated with every problem
//!   listed at once.
//! - `startup`: `Application::build` turns config into running objects; `run_until_stopped`
//!   serves and drains on shutdown.
//! - `http`: the HTTP surface (web chat API + WebSocket, admin API, webhooks, health) on the
//!   public port, `/metrics` and health details on the operator listener (`server.admin_bind`);
//!   `http::server` is the connection loop (header-read timeout, connection cap, bounded
//!   shutdown).
//! - `store`: the only module with SQL (SQLite embedded, Postgres distributed).
//! - `workers`: inbound group commit, conversation lanes, answering, the outbox dispatcher,
//!   pacing and the recovery poller.
//! - `usage`: the owner's usage report and monthly quotas (from the store's day counters);
//!   `regression`: the golden-set check run before a bot version is published.
//! - `crypto`: AES-GCM for secrets at rest; `telemetry`: logs and metric names; `checks`:
//!   dependency checks; `demo`: the compiled-in demo tenant.
//!
//! # Invariants
//! - **Only this crate reads env vars and files, opens sockets, spawns long-lived tasks and owns
//!   the database.** Libraries receive typed config and handles.
//! - **Nothing is acknowledged before it is committed**: a web chat message gets `202` only
//!   after its inbox row is stored.
//! - **Messages of one conversation are handled one batch at a time, in arrival order**, by its
//!   lane; different conversations run concurrently.
//! - **State, bot messages and outbox rows of one turn commit in one transaction**; every
//!   outbound message goes through the outbox.
//! - **No message text, phone number or secret is logged at info level or above.**
//! - **Internals stay off the public port**: metrics and dependency details (URLs, errors) are
//!   served only by the operator listener.

/// mimalloc instead of the system allocator: the message path allocates per request on many
/// threads, where glibc malloc's arena locking and consolidation showed up in profiles. Every
/// binary that links the gateway (the `sapa` binary, tests, benchmarks) uses it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod accounts;
pub mod admission;
pub mod api_key;
pub mod bot;
pub mod checks;
pub mod cli;
pub mod config;
pub mod coord;
pub mod crypto;
pub mod demo;
pub mod handback;
pub mod http;
pub mod memory;
pub mod otp;
pub mod regression;
pub mod staff;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tenant_flows;
pub mod usage;
pub mod workers;
