//! The shared handles HTTP handlers work with: [`AppState`], built once by
//! `startup::Application::build`.

use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::coord::Coord;
use crate::crypto::SecretBox;
use crate::store::Store;
use crate::workers::ingress::Ingress;

/// Shared handles for handlers. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState(pub(crate) Arc<Services>);

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What handlers use.
#[derive(Debug)]
pub struct Services {
    /// Effective configuration.
    pub config: Config,
    /// Storage.
    pub store: Store,
    /// Knowledge index: search, ingest, delete.
    pub knowledge: Arc<dyn knowledge::KnowledgeBase>,
    /// Coordination: leases, shared rate limits, pacing, web chat pub/sub.
    pub coord: Arc<dyn Coord>,
    /// Inbound group commit.
    pub ingress: Ingress,
    /// Outbound HTTP (health checks, providers).
    pub http: reqwest::Client,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Secrets at rest.
    pub secrets: SecretBox,
    /// Provider channel accounts: providers by kind, routes by provider key and account id.
    pub accounts: Arc<crate::accounts::Accounts>,
    /// Applies decoded provider events (webhooks).
    pub inbound: crate::workers::inbound::InboundEvents,
    /// Cancelled when the server begins shutting down (closes WebSockets).
    pub shutdown: CancellationToken,
    /// Wakes the outbox dispatcher when a handler queued a send.
    pub dispatcher_wake: Arc<Notify>,
    /// Open web chat WebSockets, per session and in total.
    pub sockets: Arc<crate::http::webchat::SocketSlots>,
    /// One-time codes.
    pub otp: crate::otp::OtpService,
    /// Staff accounts and console logins.
    pub staff: crate::staff::StaffService,
    /// The language model, when configured (hand-back summaries).
    pub llm: Option<Arc<dyn knowledge::llm::LlmProvider>>,
    /// Each tenant's live bot settings.
    pub bots: Arc<crate::bot::LiveBots>,
    /// What the answer path uses (the owner's "try it" answers with a draft).
    pub answers: Arc<crate::workers::TurnContext>,
    /// Open console event streams per staff member.
    pub console_streams: Arc<crate::http::console::StreamSlots>,
    /// Channel adapters by account (the console's typing indicator).
    pub channels: Arc<crate::workers::ChannelRegistry>,
}
