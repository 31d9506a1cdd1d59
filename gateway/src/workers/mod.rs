//! Long-lived background work: inbound group commit, conversation lanes, the outbox
//! dispatcher and the recovery poller. Everything is spawned on one `TaskTracker` and stops
//! through one `CancellationToken`.

pub mod answer;
pub mod assigner;
pub mod committer;
pub mod dispatcher;
pub mod flow;
pub mod follow_ups;
pub mod inbound;
pub mod ingress;
pub mod lanes;
pub mod poller;
pub mod pull;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use channels::{Channel, ChannelKind};
use tokio::sync::Notify;

use crate::store::Store;

/// What conversation lanes need to produce and commit answers.
#[derive(Debug)]
pub struct TurnContext {
    /// Storage.
    pub store: Store,
    /// Retrieval.
    pub knowledge: Arc<dyn knowledge::Retriever>,
    /// Searches of the embedded index running at once (one per core); `None` for a server
    /// backend, whose searches wait on the network. Each search is a blocking task: under
    /// load, unbounded, dozens of them were runnable at once and took turns on the cores with
    /// the SQLite writer's thread and the runtime's workers, which delayed every commit and
    /// acknowledgement. At 2,000/s offered: 938–973/s sustained and 170 MB peak bounded,
    /// 922/s and 194 MB unbounded (`gateway-bench`, same session).
    pub searches: Option<Arc<tokio::sync::Semaphore>>,
    /// The pure decision core.
    pub engine: flows::Engine,
    /// Coordination: conversation leases and web chat pub/sub (typing, streaming).
    pub coord: Arc<dyn crate::coord::Coord>,
    /// Channel adapters (provider typing indicators).
    pub channels: Arc<ChannelRegistry>,
    /// Group commit of finished turns.
    pub committer: committer::Committer,
    /// Wakes the dispatcher after a commit.
    pub dispatcher_wake: Arc<Notify>,
    /// Quiet time before answering.
    pub debounce: Duration,
    /// Longest debounce wait.
    pub debounce_max: Duration,
    /// Chunks retrieved per question.
    pub top_k: usize,
    /// Answer threshold.
    pub min_relevance: f32,
    /// The language model; `None` means extractive answers.
    pub llm: Option<Arc<dyn knowledge::llm::LlmProvider>>,
    /// Compiled prompt templates.
    pub prompts: Arc<flows::Prompts>,
    /// Stream model answers to web chat sockets.
    pub stream_webchat: bool,
    /// Earlier conversation messages given to the model.
    pub history_messages: usize,
    /// Bounds on what one turn may cost.
    pub limits: AnswerLimits,
    /// `tenants.<slug>.allowed_links`, by tenant.
    pub allowed_links: HashMap<String, Vec<String>>,
    /// One-time codes (the phone verification step).
    pub otp: crate::otp::OtpService,
    /// Each tenant's live bot settings (greeting, handoff keywords, business hours, answer
    /// style), as published in the console or seeded from `sapa.toml`.
    pub bots: Arc<crate::bot::LiveBots>,
    /// `tenants.<slug>.quota`, by tenant (the console's values win; see `crate::usage`).
    pub quotas: HashMap<String, crate::config::QuotaConfig>,
    /// `tenants.<slug>.follow_up` (and `demo.follow_up`), by tenant; a tenant not listed
    /// gets the defaults.
    pub follow_ups: Arc<HashMap<String, crate::config::FollowUpConfig>>,
    /// Each tenant's live flows.
    pub flows: Arc<crate::tenant_flows::FlowRegistry>,
    /// Flows' webhook calls.
    pub webhooks: crate::tenant_flows::WebhookCaller,
}

/// Bounds on what one turn may cost (`conversation.max_turn_*`, `llm.max_prompt_tokens`,
/// `llm.max_restarts`, `llm.daily_tokens_per_tenant`).
#[derive(Debug, Clone, Copy)]
pub struct AnswerLimits {
    /// Newest pending messages one turn answers.
    pub max_turn_messages: usize,
    /// Newest characters of them.
    pub max_turn_chars: usize,
    /// Estimated prompt tokens of one model request.
    pub max_prompt_tokens: usize,
    /// Restarts for newer messages before the batch is answered as it is.
    pub max_restarts: u32,
    /// Tokens per tenant per usage day (its time zone); 0: unlimited.
    pub daily_tokens_per_tenant: u64,
}

impl TurnContext {
    /// Restarts allowed before an answer is committed as it is; without a model answers are
    /// cheap and quick, but the same bound keeps a chatty customer from starving.
    pub fn max_restarts(&self) -> u32 {
        self.limits.max_restarts
    }
}

/// Channel adapters by account id, with a default per channel kind.
#[derive(Debug, Default, Clone)]
pub struct ChannelRegistry {
    by_kind: HashMap<ChannelKind, Arc<dyn Channel>>,
    by_account: HashMap<String, Arc<dyn Channel>>,
}

impl ChannelRegistry {
    /// Registers the adapter used for every account of `kind` without its own.
    pub fn insert_kind(&mut self, kind: ChannelKind, channel: Arc<dyn Channel>) {
        self.by_kind.insert(kind, channel);
    }

    /// Registers the adapter of one channel account.
    pub fn insert_account(&mut self, account_id: &str, channel: Arc<dyn Channel>) {
        self.by_account.insert(account_id.to_owned(), channel);
    }

    /// The adapter for an account.
    pub fn resolve(&self, account_id: &str, kind: ChannelKind) -> Option<Arc<dyn Channel>> {
        self.by_account
            .get(account_id)
            .or_else(|| self.by_kind.get(&kind))
            .cloned()
    }
}
