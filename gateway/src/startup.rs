//! Building and running the application: the one place that turns config into objects.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use channels::webchat::WebchatChannel;

use crate::coord::Coord;
use channels::{Channel, ChannelKind, ChannelPlugin};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use knowledge::llm::{LlmProvider, LlmSettings, OpenAiCompatible, ResponseFormatKind};

use crate::config::{Config, DatabaseTarget};
use crate::crypto::SecretBox;
use crate::demo;
use crate::state::{AppState, Services};
use crate::store::Store;
use crate::telemetry;
use crate::workers::dispatcher::Dispatcher;
use crate::workers::ingress::Ingress;
use crate::workers::lanes::Lanes;
use crate::workers::{ChannelRegistry, TurnContext, poller};

/// Where a process keeps its files, and secrets that come from the environment.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The data dir (SQLite database, knowledge index, generated secret key).
    pub data_dir: PathBuf,
    /// Content of `SAPA_SECRET_KEY`, if set.
    pub secret_key: Option<String>,
}

/// Test seams: replacements for adapters. Production uses `Overrides::default()`.
#[derive(Debug, Default)]
pub struct Overrides {
    /// Channel adapters by kind, replacing the built-in ones.
    pub channels: Vec<(ChannelKind, Arc<dyn Channel>)>,
    /// Channel plugins added to (or replacing) the built-in ones.
    pub plugins: Vec<Arc<dyn ChannelPlugin>>,
    /// Channel accounts saved at start, as `(tenant, kind, settings)`, like the channel
    /// tables of `sapa.toml` (the tenant must exist).
    pub accounts: Vec<(String, ChannelKind, serde_json::Value)>,
}

/// The language model `[llm]` configures; `None` when `llm.base_url` is empty.
pub fn llm_provider(config: &Config) -> Option<Arc<dyn LlmProvider>> {
    let llm = &config.llm;
    if llm.base_url.is_empty() {
        return None;
    }
    let settings = LlmSettings {
        base_url: llm.base_url.clone(),
        model: llm.model.clone(),
        api_key: llm.api_key.expose().to_owned(),
        timeout: llm.timeout,
        max_retries: llm.max_retries,
        retry_base: llm.retry_base,
        retry_cap: llm.retry_cap,
        max_tokens: llm.max_tokens,
        temperature: llm.temperature as f32,
        response_format: ResponseFormatKind::parse(&llm.response_format)
            .unwrap_or(ResponseFormatKind::JsonObject),
    };
    Some(Arc::new(OpenAiCompatible::new(settings)))
}

/// A built application, bound to its port, ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// The operator listener (`server.admin_bind`), unless disabled.
    operator: Option<(TcpListener, SocketAddr)>,
    state: AppState,
    work: (TaskTracker, CancellationToken),
    delivery: (TaskTracker, CancellationToken),
    /// Cancelled when shutdown's grace is over: the dispatcher claims nothing more and only
    /// finishes (and records) the sends in flight, so nothing sent goes unrecorded.
    delivery_halt: CancellationToken,
}

/// Opens storage and applies migrations (used by `serve`, `migrate` and `check`).
///
/// # Errors
/// When the database cannot be reached or a migration fails.
pub async fn open_store(config: &Config, runtime: &Runtime) -> anyhow::Result<(Store, Vec<i64>)> {
    let target = config.database_target(&runtime.data_dir);
    if let DatabaseTarget::Sqlite(path) = &target {
        std::fs::create_dir_all(&runtime.data_dir)
            .with_context(|| format!("cannot create data dir {}", runtime.data_dir.display()))?;
        tracing::debug!(path = %path.display(), "using SQLite");
    }
    let store = Store::connect(&target, config.database.max_connections)
        .await
        .context("cannot connect to the database (check database.url)")?;
    let applied = store.migrate().await.context("database migration failed")?;
    Ok((store, applied))
}

/// The embedding model `[embeddings]` configures; `None` when `embeddings.base_url` is empty.
pub fn embedder(config: &Config) -> Option<Arc<dyn knowledge::embed::Embedder>> {
    let e = &config.embeddings;
    if e.base_url.is_empty() {
        return None;
    }
    Some(Arc::new(knowledge::embed::OpenAiEmbedder::new(
        knowledge::embed::EmbedderSettings {
            base_url: e.base_url.clone(),
            model: e.model.clone(),
            api_key: e.api_key.expose().to_owned(),
            timeout: e.timeout,
            batch_size: e.batch_size,
        },
    )))
}

/// Opens the knowledge base `knowledge.backend` selects, with the `[embeddings]` model if
/// configured (hybrid retrieval): the embedded index under the data dir, or the Qdrant
/// collection of `[qdrant]`.
///
/// # Errors
/// When the index cannot be opened, or Qdrant is unreachable or its collection has another
/// schema.
pub async fn open_knowledge(
    config: &Config,
    runtime: &Runtime,
) -> anyhow::Result<Arc<dyn knowledge::KnowledgeBase>> {
    if config.knowledge.uses_qdrant() {
        return open_qdrant(config).await;
    }
    open_embedded_knowledge(config, runtime)
}

/// Opens the embedded index under the data dir, whatever `knowledge.backend` says (the other
/// side of `sapa kb reindex`).
///
/// # Errors
/// When the index cannot be opened.
pub fn open_embedded_knowledge(
    config: &Config,
    runtime: &Runtime,
) -> anyhow::Result<Arc<dyn knowledge::KnowledgeBase>> {
    let dir = runtime.data_dir.join("index");
    let knowledge = knowledge::Knowledge::open(&dir)
        .with_context(|| format!("cannot open knowledge index at {}", dir.display()))?;
    Ok(Arc::new(match embedder(config) {
        Some(embedder) => {
            tracing::info!(
                model = embedder.model(),
                "embeddings enabled: hybrid retrieval"
            );
            knowledge
                .with_embedder(embedder, config.embeddings.min_similarity as f32)
                .with_dense_weight(config.embeddings.dense_weight as f32)
        }
        None => knowledge,
    }))
}

/// Connects to the Qdrant collection of `[qdrant]`, whatever `knowledge.backend` says.
///
/// # Errors
/// Qdrant is unreachable or its collection has another schema.
#[cfg(feature = "qdrant")]
pub async fn open_qdrant(config: &Config) -> anyhow::Result<Arc<dyn knowledge::KnowledgeBase>> {
    Ok(Arc::new(connect_qdrant(config).await?))
}

/// The Qdrant backend itself (for `sapa check`).
///
/// # Errors
/// As [`open_qdrant`].
#[cfg(feature = "qdrant")]
pub async fn connect_qdrant(config: &Config) -> anyhow::Result<knowledge::qdrant::QdrantKnowledge> {
    let q = &config.qdrant;
    let settings = knowledge::qdrant::QdrantSettings {
        url: q.url.clone(),
        api_key: q.api_key.expose().to_owned(),
        collection: q.collection.clone(),
        timeout: q.timeout,
    };
    let knowledge = knowledge::qdrant::QdrantKnowledge::connect(&settings, embedder(config))
        .await
        .with_context(|| {
            format!(
                "cannot use Qdrant at {} (check qdrant.url, qdrant.api_key and qdrant.collection)",
                q.url
            )
        })?
        .with_min_similarity(config.embeddings.min_similarity as f32)
        .with_dense_weight(config.embeddings.dense_weight as f32);
    tracing::info!(collection = q.collection, "knowledge in Qdrant");
    Ok(knowledge)
}

/// Without the `qdrant` feature, configuration validation already refuses the backend.
///
/// # Errors
/// Always.
#[cfg(not(feature = "qdrant"))]
pub async fn open_qdrant(_config: &Config) -> anyhow::Result<Arc<dyn knowledge::KnowledgeBase>> {
    anyhow::bail!("this sapa was built without the `qdrant` feature")
}

impl Application {
    /// Builds the application with production adapters.
    ///
    /// # Errors
    /// Any start-up failure, with context saying what to fix.
    pub async fn build(config: Config, runtime: Runtime) -> anyhow::Result<Self> {
        Self::build_with(config, runtime, Overrides::default()).await
    }

    /// Builds the application; `overrides` replace adapters (tests).
    ///
    /// # Errors
    /// Any start-up failure, with context saying what to fix.
    pub async fn build_with(
        config: Config,
        runtime: Runtime,
        overrides: Overrides,
    ) -> anyhow::Result<Self> {
        // The recorder first, so that what startup does (migrations, seeding) is counted.
        let metrics = telemetry::prometheus();
        let (store, applied) = open_store(&config, &runtime).await?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "database migrated");
        }
        let embedded = matches!(
            config.database_target(&runtime.data_dir),
            DatabaseTarget::Sqlite(_)
        );
        // A broken prompt template fails the start, not a conversation.
        let prompts = Arc::new(flows::Prompts::load().context("prompt templates")?);
        let llm = llm_provider(&config);
        match &llm {
            Some(llm) => tracing::info!(model = llm.label(), "language model answers enabled"),
            None => tracing::info!("no language model configured: extractive answers"),
        }
        let secrets = SecretBox::load(runtime.secret_key.as_deref(), &runtime.data_dir, embedded)?;
        let knowledge = open_knowledge(&config, &runtime).await?;
        seed(&config, &store, knowledge.as_ref()).await?;
        let mut plugins = crate::accounts::Plugins::default();
        for plugin in overrides.plugins {
            plugins.register(plugin);
        }
        crate::accounts::seed(&config, &store, &secrets, &plugins).await?;
        for (tenant, kind, settings) in overrides.accounts {
            crate::accounts::save(&store, &secrets, &plugins, &tenant, kind, settings).await?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        let accounts = Arc::new(crate::accounts::load(&store, &secrets, &plugins, &http).await?);

        let local = crate::coord::Local::new(&config.webchat)
            .with_conversation_rate(config.conversation.messages_per_minute);
        let coord: Arc<dyn Coord> = if config.redis.url.is_empty() {
            Arc::new(local)
        } else {
            let quotas = crate::coord::Quotas {
                webchat_session_per_minute: config.webchat.messages_per_minute_per_session,
                client_ip_per_minute: config.webchat.requests_per_minute_per_ip,
                conversation_per_minute: config.conversation.messages_per_minute,
            };
            // Leases fall back to the database while Redis is away, when replicas share it.
            let lease_store =
                (store.dialect() == crate::store::Dialect::Postgres).then(|| store.clone());
            crate::coord::RedisCoord::start(
                &config.redis.url,
                &config.redis.prefix,
                local,
                quotas,
                lease_store,
            )?
        };
        let dispatcher_wake = Arc::new(Notify::new());
        let work = (TaskTracker::new(), CancellationToken::new());
        let delivery = (TaskTracker::new(), CancellationToken::new());
        let delivery_halt = CancellationToken::new();
        let min_relevance = if config.knowledge.min_relevance < 0.0 {
            knowledge::DEFAULT_MIN_RELEVANCE
        } else {
            config.knowledge.min_relevance as f32
        };
        let mut registry = ChannelRegistry::default();
        registry.insert_kind(
            ChannelKind::Webchat,
            Arc::new(WebchatChannel::new(coord.clone())),
        );
        for route in accounts.routes() {
            registry.insert_account(&route.account_id, route.channel.clone());
        }
        for (kind, channel) in overrides.channels {
            registry.insert_kind(kind, channel);
        }
        let registry = Arc::new(registry);
        let otp = crate::otp::OtpService::new(
            store.clone(),
            secrets.clone(),
            config.otp.clone(),
            accounts.clone(),
            dispatcher_wake.clone(),
        );
        let handoff = Arc::new(handoff_rules(&config));
        let bots = Arc::new(crate::bot::LiveBots::default());
        crate::bot::seed_and_load(&store, &declared_bots(&config), &bots).await?;
        crate::bot::spawn_reload(store.clone(), bots.clone(), &work.0, work.1.clone());
        let follow_ups = Arc::new(follow_up_rules(&config));
        let webhook_hosts = config
            .tenants
            .iter()
            .map(|(slug, tenant)| (slug.clone(), tenant.webhook_hosts.clone()))
            .collect();
        let flow_dir = runtime.data_dir.join("flows");
        let loaded = crate::tenant_flows::load_data_dir(&store, &flow_dir, &webhook_hosts).await?;
        if loaded > 0 {
            tracing::info!(flows = loaded, dir = %flow_dir.display(), "flow documents loaded");
        }
        let tenant_flows = Arc::new(crate::tenant_flows::FlowRegistry::default());
        tenant_flows.reload(&store).await?;
        spawn_flow_reload(store.clone(), tenant_flows.clone(), &work.0, work.1.clone());
        let webhooks = crate::tenant_flows::WebhookCaller::new(
            &config.flows,
            config
                .tenants
                .iter()
                .map(|(slug, tenant)| {
                    let rules = crate::tenant_flows::TenantWebhooks {
                        hosts: tenant.webhook_hosts.clone(),
                        secret: tenant.webhook_secret.clone(),
                    };
                    (slug.clone(), rules)
                })
                .collect(),
        )
        .context("cannot build the webhook client")?;
        let ctx = Arc::new(TurnContext {
            flows: tenant_flows.clone(),
            webhooks,
            bots: bots.clone(),
            otp: otp.clone(),
            committer: crate::workers::committer::Committer::spawn(store.clone(), &work.0),
            channels: registry.clone(),
            store: store.clone(),
            knowledge: knowledge.clone(),
            searches: (!config.knowledge.uses_qdrant()).then(|| {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                Arc::new(tokio::sync::Semaphore::new(cores))
            }),
            engine: flows::Engine,
            coord: coord.clone(),
            dispatcher_wake: dispatcher_wake.clone(),
            debounce: config.conversation.debounce,
            debounce_max: config.conversation.debounce_max,
            top_k: config.knowledge.top_k,
            min_relevance,
            llm: llm.clone(),
            prompts,
            stream_webchat: config.llm.stream,
            history_messages: config.llm.history_messages,
            limits: crate::workers::AnswerLimits {
                max_turn_messages: config.conversation.max_turn_messages,
                max_turn_chars: config.conversation.max_turn_chars,
                max_prompt_tokens: config.llm.max_prompt_tokens,
                max_restarts: config.llm.max_restarts,
                daily_tokens_per_tenant: config.llm.daily_tokens_per_tenant,
            },
            allowed_links: config
                .tenants
                .iter()
                .map(|(slug, tenant)| (slug.clone(), tenant.allowed_links.clone()))
                .collect(),
            quotas: config
                .tenants
                .iter()
                .map(|(slug, tenant)| (slug.clone(), tenant.quota))
                .collect(),
            follow_ups: follow_ups.clone(),
        });
        let answers = ctx.clone();
        let lanes = Lanes::new(
            ctx,
            config.conversation.max_concurrent,
            work.0.clone(),
            work.1.clone(),
        );
        let admission = Arc::new(crate::admission::Admission::new(
            config.server.max_pending_messages,
            config.conversation.poll_interval,
        ));
        let ingress = Ingress::spawn(
            store.clone(),
            lanes.clone(),
            coord.clone(),
            admission.clone(),
            &work.0,
            work.1.clone(),
        );
        let inbound = crate::workers::inbound::InboundEvents {
            store: store.clone(),
            ingress: ingress.clone(),
            dispatcher_wake: dispatcher_wake.clone(),
        };
        crate::workers::pull::spawn(&accounts, &inbound, &work.0, &work.1);
        for provider in accounts.providers() {
            let (provider, public_url) = (provider.clone(), config.server.public_url.clone());
            tokio::spawn(async move { provider.start(&public_url).await });
        }
        poller::spawn(
            store.clone(),
            lanes,
            admission,
            config.conversation.poll_interval,
            &work.0,
            work.1.clone(),
        );

        poller::spawn_checkpointer(store.clone(), &delivery.0, delivery.1.clone());
        crate::workers::assigner::Assigner {
            store: store.clone(),
            coord: coord.clone(),
            rules: handoff,
            bots: bots.clone(),
            wake: dispatcher_wake.clone(),
        }
        .spawn(ASSIGN_EVERY, &work.0, work.1.clone());
        crate::workers::follow_ups::FollowUps {
            store: store.clone(),
            rules: follow_ups,
            bots: bots.clone(),
            channels: registry.clone(),
            wake: dispatcher_wake.clone(),
        }
        .spawn(FOLLOW_UP_EVERY, &work.0, work.1.clone());
        let channels = registry.clone();
        Dispatcher::new(
            store.clone(),
            registry,
            coord.clone(),
            config.dispatcher.clone(),
        )
        .with_secrets(secrets.clone())
        .with_halt(delivery_halt.clone())
        .spawn(dispatcher_wake.clone(), &delivery.0, delivery.1.clone());

        let listener = crate::http::server::bind(config.server.bind, "--bind").await?;
        let address = listener.local_addr()?;
        let operator = match config.server.admin_address() {
            Some(bind) => {
                let listener = crate::http::server::bind(bind, "server.admin_bind").await?;
                let address = listener.local_addr()?;
                tracing::info!(%address, "operator endpoints (/metrics, /health/ready details)");
                Some((listener, address))
            }
            None => None,
        };
        let sockets = Arc::new(crate::http::webchat::SocketSlots::new(&config.webchat));
        // Every metric exists from the first scrape, tenants' series included.
        for tenant in store.tenants().await.unwrap_or_default() {
            telemetry::register_tenant(&tenant.id);
        }
        let staff = crate::staff::StaffService::new(
            store.clone(),
            otp.clone(),
            config
                .tenants
                .iter()
                .filter(|(_, tenant)| tenant.require_2fa)
                .map(|(slug, _)| slug.clone()),
        );
        let state = AppState(Arc::new(Services {
            staff,
            console_streams: Arc::default(),
            channels,
            otp,
            sockets,
            config,
            store,
            knowledge,
            coord,
            ingress,
            http,
            metrics,
            secrets,
            accounts,
            inbound,
            shutdown: CancellationToken::new(),
            dispatcher_wake,
            llm,
            bots,
            answers,
        }));
        Ok(Self {
            listener,
            address,
            operator,
            state,
            work,
            delivery,
            delivery_halt,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The operator listener's bound address (`/metrics`, health details); `None` when
    /// `server.admin_bind` is empty.
    pub fn operator_address(&self) -> Option<SocketAddr> {
        self.operator.as_ref().map(|(_, address)| *address)
    }

    /// At the first start of the demo tenant: creates its owner (`owner@demo.local`) and
    /// returns their one-time set-password token; `None` when demo seeding is off or the owner
    /// exists.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn demo_owner(&self) -> anyhow::Result<Option<String>> {
        let config = &self.state.config;
        if !config.demo.enabled || config.tenants.contains_key(demo::TENANT) {
            return Ok(None);
        }
        if self
            .state
            .store
            .staff_login(demo::TENANT, demo::OWNER_EMAIL)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let member = crate::store::StaffMember {
            id: format!("stf_{}", uuid::Uuid::new_v4().simple()),
            tenant_id: demo::TENANT.to_owned(),
            email: demo::OWNER_EMAIL.to_owned(),
            role: "owner".to_owned(),
            whatsapp: None,
            telegram_chat_id: None,
            disabled_at_ms: None,
            locked_until_ms: None,
            has_password: false,
        };
        let (_, link) = self.state.staff.add(member, None).await?;
        Ok(link)
    }

    /// A token that starts a graceful shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: stop accepting, finish
    /// in-flight requests and conversations, send what is due, close storage.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let grace = self.state.config.server.shutdown_grace;
        let shutdown = self.state.shutdown.clone();
        let store = self.state.store.clone();
        let server = &self.state.config.server;
        let limits = crate::http::server::ServeLimits {
            header_read_timeout: server.header_read_timeout,
            max_connections: server.max_connections,
            shutdown_grace: grace,
        };
        let operator = self.operator.map(|(listener, _)| {
            let router = crate::http::operator_router(self.state.clone());
            // Few clients (scrapers, probes): a small cap keeps it from starving the process.
            let limits = crate::http::server::ServeLimits {
                max_connections: 64,
                ..limits
            };
            tokio::spawn(crate::http::server::serve(
                listener,
                router,
                limits,
                shutdown.clone(),
            ))
        });
        let router = crate::http::router(self.state);
        crate::http::server::serve(self.listener, router, limits, shutdown.clone()).await;
        if let Some(operator) = operator {
            operator.await.context("operator listener failed")?;
        }
        tracing::info!("stopped accepting requests; finishing in-flight conversations");
        let (work_tracker, work_token) = self.work;
        work_token.cancel();
        work_tracker.close();
        if tokio::time::timeout(grace, work_tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "conversations still running at the shutdown deadline; they resume on next start"
            );
        }
        let (delivery_tracker, delivery_token) = self.delivery;
        delivery_token.cancel();
        delivery_tracker.close();
        if tokio::time::timeout(grace, delivery_tracker.wait())
            .await
            .is_err()
        {
            // A backlog: claim nothing more, but let the sends in flight finish and be
            // recorded (closing storage under them would leave sent messages unrecorded, to be
            // sent again on the next start). A send is bounded by the provider timeout.
            tracing::warn!(
                ?grace,
                "sends still due at the shutdown deadline; finishing those in flight, the rest resume on next start"
            );
            self.delivery_halt.cancel();
            if tokio::time::timeout(IN_FLIGHT_SEND_LIMIT, delivery_tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    "sends in flight did not finish; their outcome is re-checked on next start"
                );
            }
        }
        store.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// How often waiting chats are offered to online agents.
const ASSIGN_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How often due follow-ups are looked for.
const FOLLOW_UP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// How long shutdown waits, after its grace, for the sends already in flight to finish and be
/// recorded (provider calls time out well before it).
const IN_FLIGHT_SEND_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The bot settings `sapa.toml` declares, by tenant (version 1 of each; the demo tenant's
/// greeting from `[demo]` unless `[tenants.demo]` exists).
fn declared_bots(config: &Config) -> Vec<(String, crate::bot::BotSettings)> {
    let mut declared: Vec<(String, crate::bot::BotSettings)> = config
        .tenants
        .iter()
        .map(|(slug, t)| (slug.clone(), crate::bot::BotSettings::from_config(t)))
        .collect();
    if config.demo.enabled && !config.tenants.contains_key(demo::TENANT) {
        declared.push((
            demo::TENANT.to_owned(),
            crate::bot::BotSettings {
                greeting: config.demo.greeting.clone(),
                ..crate::bot::BotSettings::default()
            },
        ));
    }
    declared
}

/// Applies tenants declared in the config, and the demo tenant with its knowledge base.
/// Re-reads every tenant's flows every [`crate::bot::RELOAD_EVERY`] until `token` is cancelled
/// (another replica, or `sapa flows load`, may have changed them).
fn spawn_flow_reload(
    store: Store,
    live: Arc<crate::tenant_flows::FlowRegistry>,
    tracker: &TaskTracker,
    token: CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(crate::bot::RELOAD_EVERY) => {}
            }
            if let Err(err) = live.reload(&store).await {
                tracing::warn!(error = %err.chain(), "re-reading the flows failed");
            }
        }
    });
}

async fn seed(
    config: &Config,
    store: &Store,
    knowledge: &dyn knowledge::KnowledgeBase,
) -> anyhow::Result<()> {
    for (slug, tenant) in &config.tenants {
        let name = if tenant.name.is_empty() {
            slug
        } else {
            &tenant.name
        };
        store.upsert_tenant(slug, name, &tenant.locale).await?;
        store
            .set_tenant_instructions(slug, &tenant.instructions)
            .await?;
        store
            .ensure_channel_account(slug, ChannelKind::Webchat, slug, "Web chat", None)
            .await?;
    }
    if config.demo.enabled {
        store.upsert_tenant(demo::TENANT, demo::NAME, "id").await?;
        crate::tenant_flows::seed_demo(store, demo::TENANT).await?;
        store
            .ensure_channel_account(
                demo::TENANT,
                ChannelKind::Webchat,
                demo::TENANT,
                "Web chat",
                None,
            )
            .await?;
        // Ingested once; with embeddings, documents still without vectors get them here.
        let mut ingested = 0;
        if knowledge.list_documents(demo::TENANT)?.is_empty() {
            for (name, text) in demo::KNOWLEDGE_BASE {
                knowledge
                    .ingest(demo::TENANT, name, text.as_bytes().to_vec())
                    .await
                    .with_context(|| format!("demo document {name}"))?;
            }
            ingested = demo::KNOWLEDGE_BASE.len();
        } else {
            knowledge.embed_missing(demo::TENANT).await?;
        }
        if ingested > 0 {
            tracing::info!(documents = ingested, "demo knowledge base ingested");
        }
    }
    Ok(())
}

/// Each tenant's follow-up settings, by tenant: the declared tenants, and the demo tenant's
/// `[demo.follow_up]` unless `[tenants.demo]` is declared.
fn follow_up_rules(
    config: &Config,
) -> std::collections::HashMap<String, crate::config::FollowUpConfig> {
    let mut rules: std::collections::HashMap<String, crate::config::FollowUpConfig> = config
        .tenants
        .iter()
        .map(|(slug, tenant)| (slug.clone(), tenant.follow_up.clone()))
        .collect();
    if config.demo.enabled && !config.tenants.contains_key(demo::TENANT) {
        rules.insert(demo::TENANT.to_owned(), config.demo.follow_up.clone());
    }
    rules
}

/// Each tenant's handoff settings, by tenant. Business hours were checked by validation;
/// a tenant whose hours cannot be read (never after validation) is open around the clock.
fn handoff_rules(
    config: &Config,
) -> std::collections::HashMap<String, crate::workers::assigner::HandoffRules> {
    config
        .tenants
        .iter()
        .map(|(slug, tenant)| {
            let rules = crate::workers::assigner::HandoffRules {
                max_chats_per_agent: tenant.max_chats_per_agent,
                renotify: tenant.sla_renotify,
                back_to_bot: tenant.sla_back_to_bot,
            };
            (slug.clone(), rules)
        })
        .collect()
}
