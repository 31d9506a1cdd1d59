//! Health, metrics and graceful shutdown.

use std::time::Duration;

use sapa_tests::{eventually, postgres_schema, required_service, spawn_app, spawn_app_with};
use serde_json::Value;

#[tokio::test]
async fn health_and_metrics_report_the_message_path() {
    let app = spawn_app("").await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    let ready = app.get_operator("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["ok"], true);

    let session = app.session("demo").await;
    app.post(&session, "m-1", "berapa harga kopi susu?").await;
    app.bot_messages(&session, 1).await;
    let metrics = eventually(Duration::from_secs(10), || async {
        let text = app.metrics().await;
        let sent = text.lines().any(|l| {
            l.starts_with("sapa_outbox_sends_total")
                && l.contains("outcome=\"sent\"")
                && !l.ends_with(" 0")
        });
        sent.then_some(text)
    })
    .await;
    for name in [
        "sapa_inbound_messages_total",
        "sapa_inbox_depth",
        "sapa_answers_total",
        "sapa_outbox_sends_total",
        "sapa_answer_latency_seconds",
        "sapa_ingress_commit_seconds",
    ] {
        assert!(metrics.contains(name), "missing {name} in /metrics");
    }
    // No message text in metrics.
    assert!(!metrics.contains("kopi susu"));
    app.stop().await;
}

#[tokio::test]
async fn readiness_says_degraded_and_names_a_configured_redis_that_is_down() {
    // Port 9 (discard) on loopback: nothing listens there.
    let app = spawn_app("[redis]\nurl = \"redis://127.0.0.1:9\"\n").await;
    let ready = app.get_operator("/health/ready").await;
    // Still serving: ingress goes on into the database, coordination is per replica.
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"]["ok"], false);
    assert!(
        body["checks"]["redis"]["detail"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    // And it answers meanwhile.
    let session = app.session("demo").await;
    app.post(&session, "r-1", "apakah ada wifi?").await;
    assert_eq!(app.bot_messages(&session, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn readiness_reaches_the_real_redis_when_ci_provides_one() {
    let Some(url) = required_service("SAPA_TEST_REDIS_URL") else {
        return;
    };
    let app = spawn_app(&format!("[redis]\nurl = \"{url}\"\n")).await;
    let ready = app.get_operator("/health/ready").await;
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["redis"]["ok"], true, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn the_app_runs_on_postgres_when_ci_provides_one() {
    let Some(url) = required_service("SAPA_TEST_DATABASE_URL") else {
        return;
    };
    // A private schema keeps this run apart from every other test.
    let scoped = postgres_schema(&url).await;
    let app = spawn_app(&format!("[database]\nurl = \"{scoped}\"\n")).await;
    let session = app.session("demo").await;
    app.post(&session, "pg-1", "jam buka outlet Blok M hari Minggu?")
        .await;
    app.post(&session, "pg-1", "jam buka outlet Blok M hari Minggu?")
        .await;
    let bots = app.bot_messages(&session, 1).await;
    assert!(bots[0]["text"].as_str().unwrap().contains("08.00–23.00"));
    assert_eq!(app.messages(&session).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn messages_accepted_before_a_graceful_stop_are_answered_after_restart() {
    // A long debounce keeps the message pending when the stop begins.
    let config = "[conversation]\ndebounce = \"30s\"\ndebounce_max = \"30s\"\n";
    let app = spawn_app(config).await;
    let session = app.session("demo").await;
    assert_eq!(
        app.post(&session, "g-1", "apakah ada wifi?").await.status(),
        202
    );
    let data_dir = app.stop().await;
    let app = spawn_app_with("", gateway::startup::Overrides::default(), Some(data_dir)).await;
    let bots = app.bot_messages(&session, 1).await;
    assert_eq!(bots[0]["in_reply_to"], serde_json::json!(["g-1"]));
    assert!(
        bots[0]["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("wifi")
    );
    app.stop().await;
}
