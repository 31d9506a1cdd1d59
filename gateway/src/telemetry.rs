//! Logs, metrics and traces. Metric names live here as constants; labels are bounded sets
//! only. With `telemetry.otlp_endpoint`, spans go to an OpenTelemetry collector: one trace per
//! customer message, continued across the tasks that handle it by [`hand_over`] and
//! [`continued`].

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use metrics::{Label, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// One-time codes, by event (`issued`, `refused`, `verified`, `locked`). Never the code.
pub const OTP_TOTAL: &str = "sapa_otp_total";

/// Customer messages received, by channel and outcome (`new`, `duplicate`, `rejected`, `error`).
pub const INBOUND_TOTAL: &str = "sapa_inbound_messages_total";
/// Unanswered inbox rows (gauge, refreshed on scrape and by the poller).
pub const INBOX_DEPTH: &str = "sapa_inbox_depth";
/// Outbox rows waiting to be sent (gauge, refreshed on scrape).
pub const OUTBOX_PENDING: &str = "sapa_outbox_pending";
/// Open web chat WebSockets of this process (gauge, refreshed on scrape).
pub const WEBCHAT_SOCKETS: &str = "sapa_webchat_sockets";
/// Conversations with live web chat listeners in this process (gauge, refreshed on scrape).
pub const WEBCHAT_TOPICS: &str = "sapa_webchat_topics";
/// 1 while Redis is unreachable and leases, limits and events are per replica (distributed
/// mode only).
pub const COORD_DEGRADED: &str = "sapa_coord_degraded";
/// Coordination operations served by this replica's own state because Redis failed, by `op`.
pub const COORD_FALLBACKS_TOTAL: &str = "sapa_coord_fallbacks_total";
/// Conversation leases that expired while this replica still held them.
pub const COORD_LEASES_LOST_TOTAL: &str = "sapa_coord_leases_lost_total";
/// Inbound requests refused with 503 `overloaded` before anything was stored
/// (`server.max_pending_messages`), by `channel`.
pub const INGRESS_SHED_TOTAL: &str = "sapa_ingress_shed_total";
/// Seconds to commit one group of inbound messages.
pub const INGRESS_COMMIT_SECONDS: &str = "sapa_ingress_commit_seconds";
/// Inbound messages per group commit.
pub const INGRESS_BATCH_SIZE: &str = "sapa_ingress_batch_size";
/// Answers produced, by kind (`passage`, `no_match`, `failed`, `handoff`, `silent`).
pub const ANSWERS_TOTAL: &str = "sapa_answers_total";
/// Turns run inside a tenant flow, by flow name.
pub const FLOW_TURNS_TOTAL: &str = "sapa_flow_turns_total";
/// Seconds from the oldest message of a batch arriving to its answer being committed.
pub const ANSWER_LATENCY_SECONDS: &str = "sapa_answer_latency_seconds";
/// Seconds spent retrieving knowledge for one answer.
pub const RETRIEVAL_SECONDS: &str = "sapa_retrieval_seconds";
/// Knowledge searches that failed (the index or Qdrant unreachable, or failing).
pub const RETRIEVAL_FAILURES_TOTAL: &str = "sapa_retrieval_failures_total";
/// Answers discarded because newer customer messages arrived (supersede).
pub const SUPERSEDED_TOTAL: &str = "sapa_answers_superseded_total";
/// Turns answered without restarting because `llm.max_restarts` was reached.
pub const RESTARTS_CAPPED_TOTAL: &str = "sapa_answer_restarts_capped_total";
/// Turns deferred by `conversation.messages_per_minute`.
pub const CONVERSATION_THROTTLED_TOTAL: &str = "sapa_conversation_throttled_total";
/// Answers given extractively because the tenant's daily token budget was spent, by `tenant`.
pub const LLM_BUDGET_EXHAUSTED_TOTAL: &str = "sapa_llm_budget_exhausted_total";
/// Answers given without the model because the tenant's monthly quota is reached, by `tenant`.
pub const QUOTA_EXCEEDED_TOTAL: &str = "sapa_quota_exceeded_total";
/// Outbox send attempts, by channel and outcome (`sent`, `retry`, `failed`, `dead`, `deferred`).
pub const OUTBOX_SENDS_TOTAL: &str = "sapa_outbox_sends_total";
/// Retries scheduled.
pub const OUTBOX_RETRIES_TOTAL: &str = "sapa_outbox_retries_total";
/// Messages moved to the dead-letter table (alert on any increase).
pub const DEAD_LETTERS_TOTAL: &str = "sapa_dead_letters_total";
/// Seconds one provider send took.
pub const SEND_SECONDS: &str = "sapa_send_seconds";
/// Seconds from answer commit to the send being acknowledged by the provider.
pub const DELIVERY_LATENCY_SECONDS: &str = "sapa_delivery_latency_seconds";

/// Provider webhook requests, by `channel` and outcome (`accepted`, `bad_signature`,
/// `undecodable`, `unavailable`).
pub const WEBHOOKS_TOTAL: &str = "sapa_webhooks_total";
/// Parts of authentic webhooks not processed, by `channel` and reason (`unknown_account`,
/// `wrong_credentials`, `undecodable`, `provider_error`).
pub const WEBHOOK_DROPPED_TOTAL: &str = "sapa_webhook_dropped_total";
/// Inbound provider events (webhook or pulled), by `channel` and outcome (`accepted`,
/// `unavailable`, `ignored`, `edited`, `blocked`, `unblocked`, `migrated`).
pub const INBOUND_EVENTS_TOTAL: &str = "sapa_inbound_events_total";
/// Provider delivery statuses, by outcome (`applied`, `stale`).
pub const DELIVERY_STATUSES_TOTAL: &str = "sapa_delivery_statuses_total";

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global tracing subscriber. Call once, from `main`.
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let traces = otlp_tracer(&config.otlp_endpoint)
        .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    let result = match config.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    let _ = result;
}

static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The OTLP/HTTP (JSON) exporter's tracer; `None` when `endpoint` is empty or unusable.
fn otlp_tracer(endpoint: &str) -> Option<SdkTracer> {
    if endpoint.is_empty() {
        return None;
    }
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .build();
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("telemetry.otlp_endpoint: no traces exported: {err}");
            return None;
        }
    };
    // Spans leave at least every second (the collector batches further).
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_secs(1))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
        )
        .with_resource(Resource::builder().with_service_name("sapa").build())
        .build();
    let tracer = provider.tracer("sapa");
    TRACER_PROVIDER.set(provider).ok()?;
    Some(tracer)
}

/// Sends the spans still buffered (call before the process exits).
pub fn shutdown() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// Where a customer message's trace continues in another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Handoff {
    /// From the inbox commit to the conversation's lane (the answer).
    Answer,
    /// From the committed answer to the dispatcher (the provider sends).
    Send,
}

/// Trace contexts waiting for the next task of a conversation, newest per conversation. Bounded:
/// a context nobody continues (the answer was skipped) is dropped with the rest at the cap.
static HANDOFFS: Mutex<BTreeMap<(Handoff, String), opentelemetry::Context>> =
    Mutex::new(BTreeMap::new());
const MAX_HANDOFFS: usize = 10_000;

/// Leaves `span`'s trace for the conversation's next `to` task (no-op without traces).
pub fn hand_over(to: Handoff, conversation_id: &str, span: &tracing::Span) {
    if TRACER_PROVIDER.get().is_none() || span.is_disabled() {
        return;
    }
    let context = span.context();
    let mut handoffs = HANDOFFS.lock().unwrap_or_else(PoisonError::into_inner);
    if handoffs.len() >= MAX_HANDOFFS {
        handoffs.clear();
    }
    handoffs.insert((to, conversation_id.to_owned()), context);
}

/// `span`, made a child of the trace handed over to the conversation's `from` task, if any.
/// An answer's context is taken (the next answer belongs to the next message); a send's stays
/// for the answer's other parts.
pub fn continued(from: Handoff, conversation_id: &str, span: tracing::Span) -> tracing::Span {
    if TRACER_PROVIDER.get().is_none() || span.is_disabled() {
        return span;
    }
    let key = (from, conversation_id.to_owned());
    let context = {
        let mut handoffs = HANDOFFS.lock().unwrap_or_else(PoisonError::into_inner);
        match from {
            Handoff::Answer => handoffs.remove(&key),
            Handoff::Send => handoffs.get(&key).cloned(),
        }
    };
    if let Some(context) = context {
        let _ = span.set_parent(context);
    }
    span
}

/// The OpenTelemetry trace id of `span` (32 hex digits); `None` without traces.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    if TRACER_PROVIDER.get().is_none() || span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The process-wide Prometheus recorder (installed on first use; shared by apps in one process).
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                register_all();
            }
            handle
        })
        .clone()
}

/// Built-in channel kinds, the `channel` label of most series.
const CHANNELS: &[&str] = &["webchat", "whatsapp", "telegram"];
/// Channels with provider webhooks.
const PROVIDERS: &[&str] = &["whatsapp", "telegram"];

/// A metric's name, help text and the label values it starts with (every combination).
type Spec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);

const COUNTERS: &[Spec] = &[
    (
        RETRIEVAL_FAILURES_TOTAL,
        "Knowledge searches that failed (the index or Qdrant unreachable or failing).",
        &[],
    ),
    (
        OTP_TOTAL,
        "One-time codes, by event.",
        &[("event", &["issued", "refused", "verified", "locked"])],
    ),
    (
        INBOUND_TOTAL,
        "Customer messages received, by channel and outcome.",
        &[
            ("channel", CHANNELS),
            ("outcome", &["new", "duplicate", "refused", "error"]),
        ],
    ),
    (
        ANSWERS_TOTAL,
        "Answers produced, by kind.",
        &[(
            "kind",
            &[
                "passage",
                "no_match",
                "failed",
                "handoff",
                "silent",
                "flow",
                "flow_handoff",
                "llm_answer",
                "llm_clarify",
                "llm_handoff",
                "llm_rejected",
                "llm_unavailable",
            ],
        )],
    ),
    (
        SUPERSEDED_TOTAL,
        "Answers discarded because newer customer messages arrived.",
        &[],
    ),
    (
        RESTARTS_CAPPED_TOTAL,
        "Turns answered without restarting because llm.max_restarts was reached.",
        &[],
    ),
    (
        CONVERSATION_THROTTLED_TOTAL,
        "Turns deferred by conversation.messages_per_minute.",
        &[],
    ),
    (
        OUTBOX_SENDS_TOTAL,
        "Outbox send attempts, by channel and outcome.",
        &[
            ("channel", CHANNELS),
            ("outcome", &["sent", "retry", "failed", "dead", "deferred"]),
        ],
    ),
    (
        OUTBOX_RETRIES_TOTAL,
        "Retries scheduled, by channel.",
        &[("channel", CHANNELS)],
    ),
    (
        DEAD_LETTERS_TOTAL,
        "Messages moved to the dead-letter table, by channel.",
        &[("channel", CHANNELS)],
    ),
    (
        WEBHOOKS_TOTAL,
        "Provider webhook requests, by channel and outcome.",
        &[
            ("channel", PROVIDERS),
            (
                "outcome",
                &["accepted", "bad_signature", "undecodable", "unavailable"],
            ),
        ],
    ),
    (
        INGRESS_SHED_TOTAL,
        "Inbound requests refused with 503 overloaded before anything was stored, by channel.",
        &[("channel", CHANNELS)],
    ),
    (
        WEBHOOK_DROPPED_TOTAL,
        "Parts of authentic webhooks not processed, by channel and reason.",
        &[
            ("channel", PROVIDERS),
            (
                "reason",
                &[
                    "unknown_account",
                    "wrong_credentials",
                    "undecodable",
                    "provider_error",
                ],
            ),
        ],
    ),
    (
        INBOUND_EVENTS_TOTAL,
        "Inbound provider events, by channel and outcome.",
        &[
            ("channel", PROVIDERS),
            (
                "outcome",
                &[
                    "accepted",
                    "unavailable",
                    "ignored",
                    "edited",
                    "blocked",
                    "unblocked",
                    "migrated",
                ],
            ),
        ],
    ),
    (
        DELIVERY_STATUSES_TOTAL,
        "Provider delivery statuses, by outcome.",
        &[("outcome", &["applied", "stale", "unknown"])],
    ),
    (
        COORD_LEASES_LOST_TOTAL,
        "Conversation leases lost while their lane still held them.",
        &[],
    ),
    (
        knowledge::llm::METRIC_REQUESTS_TOTAL,
        "LLM requests, by outcome.",
        &[("outcome", &["ok", "retry", "timeout", "error"])],
    ),
    (
        knowledge::llm::METRIC_TOKENS_TOTAL,
        "LLM tokens used, by kind.",
        &[("kind", &["prompt", "completion"])],
    ),
    (
        knowledge::embed::METRIC_EMBED_REQUESTS_TOTAL,
        "Embedding calls, by outcome.",
        &[("outcome", &["ok", "error", "timeout"])],
    ),
    (
        knowledge::embed::METRIC_EMBED_FALLBACKS_TOTAL,
        "Retrievals that fell back to BM25 alone, by stage.",
        &[("stage", &["ingest", "query"])],
    ),
];

const GAUGES: &[Spec] = &[
    (INBOX_DEPTH, "Unanswered inbox rows.", &[]),
    (OUTBOX_PENDING, "Outbox rows waiting to be sent.", &[]),
    (
        WEBCHAT_SOCKETS,
        "Open web chat WebSockets of this process.",
        &[],
    ),
    (
        WEBCHAT_TOPICS,
        "Conversations with live web chat listeners in this process.",
        &[],
    ),
    (
        COORD_DEGRADED,
        "1 while Redis is unreachable and coordination runs in-process.",
        &[],
    ),
];

const HISTOGRAMS: &[Spec] = &[
    (
        INGRESS_COMMIT_SECONDS,
        "Seconds to commit one group of inbound messages.",
        &[],
    ),
    (
        ANSWER_LATENCY_SECONDS,
        "Seconds from the oldest message of a batch arriving to its answer being committed.",
        &[],
    ),
    (
        RETRIEVAL_SECONDS,
        "Seconds spent retrieving knowledge for one answer.",
        &[],
    ),
    (
        SEND_SECONDS,
        "Seconds one provider send took, by channel.",
        &[("channel", CHANNELS)],
    ),
    (
        DELIVERY_LATENCY_SECONDS,
        "Seconds from answer commit to the send being acknowledged, by channel.",
        &[("channel", CHANNELS)],
    ),
    (
        knowledge::llm::METRIC_REQUEST_SECONDS,
        "Seconds one LLM call took, retries and streaming included.",
        &[],
    ),
    (
        knowledge::embed::METRIC_EMBED_SECONDS,
        "Seconds one embedding call took.",
        &[],
    ),
];

/// Every combination of the given label values (one empty set when there are no labels).
fn label_sets(labels: &[(&'static str, &'static [&'static str])]) -> Vec<Vec<Label>> {
    labels.iter().fold(vec![Vec::new()], |sets, (key, values)| {
        sets.iter()
            .flat_map(|set| {
                values.iter().map(move |value| {
                    let mut set = set.clone();
                    set.push(Label::new(*key, *value));
                    set
                })
            })
            .collect()
    })
}

/// Describes every metric and creates its series at zero, so a fresh process exports every
/// name the dashboard and alert rules in `deploy/` use, and `rate()`/`increase()` see the first
/// event. Labelled series start with their closed label sets; open ones (a flow's name, a
/// tenant, a coordination op) start when they first occur, see [`register_tenant`]. Called
/// once, when the recorder is installed.
pub fn register_all() {
    for &(name, help, labels) in COUNTERS {
        metrics::describe_counter!(name, help);
        for set in label_sets(labels) {
            metrics::counter!(name, set).increment(0);
        }
    }
    for &(name, help, labels) in GAUGES {
        metrics::describe_gauge!(name, help);
        for set in label_sets(labels) {
            metrics::gauge!(name, set).set(0.0);
        }
    }
    for &(name, help, labels) in HISTOGRAMS {
        metrics::describe_histogram!(name, Unit::Seconds, help);
        for set in label_sets(labels) {
            // Registering the handle is enough: the exporter renders empty buckets.
            drop(metrics::histogram!(name, set));
        }
    }
    metrics::describe_histogram!(INGRESS_BATCH_SIZE, "Inbound messages per group commit.");
    drop(metrics::histogram!(INGRESS_BATCH_SIZE));
    metrics::describe_counter!(
        LLM_BUDGET_EXHAUSTED_TOTAL,
        "Answers given extractively because the tenant's daily token budget was spent."
    );
    metrics::describe_counter!(
        QUOTA_EXCEEDED_TOTAL,
        "Answers given without the model because the tenant's monthly quota is reached."
    );
    metrics::describe_counter!(FLOW_TURNS_TOTAL, "Turns run inside a tenant flow, by flow.");
    metrics::describe_counter!(
        COORD_FALLBACKS_TOTAL,
        "Coordination operations answered in-process because Redis failed, by op."
    );
}

/// Creates a tenant's budget and quota series at zero (the dashboard's `tenant` variable
/// lists them).
pub fn register_tenant(tenant: &str) {
    for name in [LLM_BUDGET_EXHAUSTED_TOTAL, QUOTA_EXCEEDED_TOTAL] {
        metrics::counter!(name, "tenant" => tenant.to_owned()).increment(0);
    }
}
