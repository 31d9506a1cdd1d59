//! OpenTelemetry traces: with `telemetry.otlp_endpoint`, one customer message is one trace,
//! from its request to the provider send, exported over OTLP/HTTP (JSON).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::fake_openai::{FakeOpenAi, Reply};
use sapa_tests::{WA_APP_SECRET, eventually, spawn_app, test_config, wa_text, whatsapp_config};
use serde_json::{Value, json};

type Spans = Arc<Mutex<Vec<Value>>>;

/// A collector's OTLP/HTTP JSON endpoint that keeps every span it receives.
async fn fake_collector() -> (String, Spans) {
    async fn traces(State(spans): State<Spans>, body: axum::body::Bytes) -> axum::Json<Value> {
        let request: Value = serde_json::from_slice(&body).expect("OTLP JSON");
        let received = request["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
            .flat_map(|s| s["spans"].as_array().into_iter().flatten())
            .cloned();
        spans.lock().unwrap().extend(received);
        axum::Json(json!({}))
    }
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), spans)
}

#[tokio::test]
async fn one_web_chat_message_is_one_trace_from_request_to_send() {
    // Arrange: traces to the fake collector (this test process's subscriber), a model.
    let (collector, spans) = fake_collector().await;
    let fake = FakeOpenAi::start([Reply::content(
        json!({"reply": "Kopi susu Rp18.000, Kak.", "action": "answer", "citations": []})
            .to_string(),
    )])
    .await;
    let extra =
        fake.config("stream = false") + &format!("[telemetry]\notlp_endpoint = \"{collector}\"\n");
    gateway::telemetry::init(&test_config(&extra).telemetry);
    let app = spawn_app(&extra).await;

    // Act
    let session = app.session("demo").await;
    assert_eq!(
        app.post(&session, "t-1", "berapa harga kopi susu?")
            .await
            .status(),
        202
    );
    app.bot_messages(&session, 1).await;

    // Assert: the request's span is the root; the rest of the path shares its trace.
    let trace_id = assert_one_trace(&spans, "webchat.message").await;

    // The trace id is stored on the customer's message and on the bot's answer, and the
    // console shows it: "why did the bot say this" leads to this trace.
    let store = app.store().await;
    let messages = store
        .console_messages("demo", &session.conversation_id, 0, 10)
        .await
        .unwrap();
    let authors: Vec<(&str, Option<&str>)> = messages
        .iter()
        .map(|m| (m.author.as_str(), m.trace_id.as_deref()))
        .collect();
    assert_eq!(
        authors,
        [
            ("customer", Some(trace_id.as_str())),
            ("bot", Some(trace_id.as_str()))
        ],
    );
    app.stop().await;
}

#[tokio::test]
async fn one_whatsapp_webhook_message_is_one_trace_from_webhook_to_send() {
    let (collector, spans) = fake_collector().await;
    let fake = FakeOpenAi::start([Reply::content(
        json!({"reply": "Kopi susu Rp18.000, Kak.", "action": "answer", "citations": []})
            .to_string(),
    )])
    .await;
    let graph = FakeGraph::start().await;
    let extra = format!(
        "{}{}[telemetry]\notlp_endpoint = \"{collector}\"\n",
        whatsapp_config(&graph.base_url, ""),
        fake.config("stream = false")
    );
    gateway::telemetry::init(&test_config(&extra).telemetry);
    let app = spawn_app(&extra).await;

    let body = wa_text("wamid.trace-1", "6281299990001", "berapa harga kopi susu?");
    assert_eq!(app.whatsapp_post(&body, WA_APP_SECRET).await.status(), 200);

    let trace_id = assert_one_trace(&spans, "webhook").await;
    let store = app.store().await;
    let conversation: String = eventually(Duration::from_secs(10), || async {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT conversation_id FROM messages WHERE author = 'bot' AND trace_id = $1",
        )
        .bind(&trace_id)
        .fetch_optional(store.pool())
        .await
        .unwrap();
        row.map(|(c,)| c)
    })
    .await;
    assert!(!conversation.is_empty());
    app.stop().await;
}

/// Waits for the trace rooted at the span named `root` to hold the whole path of one customer
/// message, checks every span's parent, and returns the trace id.
async fn assert_one_trace(spans: &Spans, root: &str) -> String {
    let path = [
        "inbox.commit",
        "answer",
        "retrieval",
        "llm",
        "commit",
        "send",
    ];
    let trace = eventually(Duration::from_secs(20), || async {
        let spans = spans.lock().unwrap().clone();
        let root = spans.iter().find(|s| s["name"] == root)?;
        let trace_id = root["traceId"].as_str()?.to_owned();
        let trace: Vec<Value> = spans
            .iter()
            .filter(|s| s["traceId"] == trace_id.as_str())
            .cloned()
            .collect();
        path.iter()
            .all(|name| trace.iter().any(|s| s["name"] == *name))
            .then_some(trace)
    })
    .await;
    let span_id = |name: &str| {
        trace
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["spanId"].as_str())
            .unwrap()
            .to_owned()
    };
    let parent = |name: &str| {
        trace
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["parentSpanId"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(parent("inbox.commit"), span_id(root));
    assert_eq!(parent("answer"), span_id("inbox.commit"));
    assert_eq!(parent("retrieval"), span_id("answer"));
    assert_eq!(parent("llm"), span_id("answer"));
    assert_eq!(parent("commit"), span_id("answer"));
    assert_eq!(parent("send"), span_id("answer"));
    trace[0]["traceId"].as_str().unwrap().to_owned()
}
