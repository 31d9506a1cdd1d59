//! Test harness for Sapa's end-to-end tests: the real application on port 0 with its own temp
//! data dir, HTTP and WebSocket clients, and polling helpers with deadlines.
//!
//! # Layout
//! - `src/lib.rs`: `spawn_app` / `spawn_app_with` (in-process app), web chat client helpers,
//!   `eventually` (polling with a deadline).
//! - `src/fake_graph.rs`, `src/fake_telegram.rs`, `src/fake_openai.rs`: provider fakes over
//!   real HTTP on loopback.
//! - `src/bin/server.rs`: the `sapa` entry point built as `sapa-e2e-server`, so tests can run
//!   the real binary as a process and SIGKILL it.
//! - `e2e/`: the one e2e test binary, one module per area.
//!
//! # Invariants
//! - Every test owns its temp data dir and port; tests run in parallel.
//! - Nothing leaves loopback: providers and models are local fakes.
//! - No bare sleeps to wait for results: poll with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod fake_graph;
pub mod fake_openai;
pub mod fake_telegram;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gateway::config::Config;
use gateway::startup::{Application, Overrides, Runtime};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A running in-process application.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The operator listener (`/metrics`, health details), `http://127.0.0.1:PORT`; empty when
    /// the test disabled it (`admin_bind = ""`).
    pub admin_address: String,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The data dir (SQLite database, index); removed on drop.
    pub data_dir: Arc<tempfile::TempDir>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A web chat session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Bearer token.
    pub token: String,
    /// Conversation id.
    pub conversation_id: String,
}

/// Test configuration: no debounce, quiet logs, no web chat rate limits (tests poll and post
/// fast; `widget.rs` sets its own limits), the operator listener on a free port. `extra` is appended TOML.
pub fn test_config(extra: &str) -> Config {
    let base = "[server]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n[conversation]\ndebounce = \"0s\"\npoll_interval = \"200ms\"\n[dispatcher]\npoll_interval = \"50ms\"\n[webchat]\nmessages_per_minute_per_session = 0\nrequests_per_minute_per_ip = 0\n";
    Config::from_toml(&merge_toml(base, extra)).expect("test config")
}

/// Overlays `extra` on `base` (both TOML documents), one section deep.
fn merge_toml(base: &str, extra: &str) -> String {
    let mut base: toml::Table = base.parse().expect("base toml");
    let extra: toml::Table = extra.parse().expect("extra toml");
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => b.extend(e),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
    base.to_string()
}

/// Starts the application in this process.
pub async fn spawn_app(extra_config: &str) -> TestApp {
    spawn_app_with(extra_config, Overrides::default(), None).await
}

/// Starts the application with adapter overrides, optionally on an existing data dir.
pub async fn spawn_app_with(
    extra_config: &str,
    overrides: Overrides,
    data_dir: Option<Arc<tempfile::TempDir>>,
) -> TestApp {
    let data_dir = data_dir.unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("tempdir")));
    let config = test_config(extra_config);
    let runtime = Runtime {
        data_dir: data_dir.path().to_path_buf(),
        // A fixed key, as SAPA_SECRET_KEY would give; required for the Postgres runs.
        secret_key: Some("42".repeat(32)),
    };
    let app = Application::build_with(config, runtime, overrides)
        .await
        .expect("app builds");
    let address = format!("http://{}", app.address());
    let admin_address = app
        .operator_address()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        admin_address,
        client: reqwest::Client::new(),
        data_dir,
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    /// Graceful shutdown; waits until the app has drained.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
        self.data_dir.clone()
    }

    /// Creates a web chat session for `tenant`.
    pub async fn session(&self, tenant: &str) -> Session {
        create_session(&self.client, &self.address, tenant).await
    }

    /// Posts a customer message.
    pub async fn post(
        &self,
        session: &Session,
        client_message_id: &str,
        text: &str,
    ) -> reqwest::Response {
        post_message(
            &self.client,
            &self.address,
            session,
            client_message_id,
            text,
        )
        .await
    }

    /// All messages of the session's conversation.
    pub async fn messages(&self, session: &Session) -> Vec<Value> {
        list_messages(&self.client, &self.address, session)
            .await
            .expect("list messages")
    }

    /// `GET {address}{path}`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET")
    }

    /// `GET {admin_address}{path}` (the operator listener).
    pub async fn get_operator(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.admin_address))
            .send()
            .await
            .expect("GET operator")
    }

    /// The Prometheus text of `/metrics` (operator listener).
    pub async fn metrics(&self) -> String {
        self.get_operator("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// Waits until the app has answered and sent everything it accepted (see [`settled`]).
    pub async fn settled(&self) {
        settled(&self.client, &self.admin_address).await;
    }

    /// Waits (bounded) until the conversation has at least `n` bot messages; returns them all.
    pub async fn bot_messages(&self, session: &Session, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(20), || async {
            let messages = self.messages(session).await;
            let bots: Vec<Value> = messages
                .into_iter()
                .filter(|m| m["author"] == "bot")
                .collect();
            (bots.len() >= n).then_some(bots)
        })
        .await
    }
}

/// Waits (bounded) until the server whose operator listener is `base` has nothing left to do: no unanswered inbox row
/// and no unsent outbox row. After this, no further answer can appear for what was accepted.
pub async fn settled(client: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(30), || async {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let gauge = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        (gauge("sapa_inbox_depth")? == 0.0 && gauge("sapa_outbox_pending")? == 0.0).then_some(())
    })
    .await;
}

/// `POST /v1/webchat/sessions`.
pub async fn create_session(client: &reqwest::Client, base: &str, tenant: &str) -> Session {
    let response = client
        .post(format!("{base}/v1/webchat/sessions"))
        .json(&json!({ "tenant": tenant }))
        .send()
        .await
        .expect("create session");
    assert_eq!(response.status(), 201, "create session");
    let body: Value = response.json().await.expect("session json");
    Session {
        token: body["session_token"].as_str().expect("token").to_owned(),
        conversation_id: body["conversation_id"]
            .as_str()
            .expect("conversation")
            .to_owned(),
    }
}

/// `POST /v1/webchat/messages`.
pub async fn post_message(
    client: &reqwest::Client,
    base: &str,
    session: &Session,
    client_message_id: &str,
    text: &str,
) -> reqwest::Response {
    try_post_message(client, base, session, client_message_id, text)
        .await
        .expect("post message")
}

/// `POST /v1/webchat/messages`, returning transport errors.
pub async fn try_post_message(
    client: &reqwest::Client,
    base: &str,
    session: &Session,
    client_message_id: &str,
    text: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base}/v1/webchat/messages"))
        .bearer_auth(&session.token)
        .json(&json!({ "client_message_id": client_message_id, "text": text }))
        .send()
        .await
}

/// `GET /v1/webchat/messages` (all pages).
pub async fn list_messages(
    client: &reqwest::Client,
    base: &str,
    session: &Session,
) -> reqwest::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let body: Value = client
            .get(format!("{base}/v1/webchat/messages?after={after}"))
            .bearer_auth(&session.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let page = body["messages"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return Ok(all);
        }
        after = page.last().and_then(|m| m["id"].as_i64()).unwrap_or(after);
        all.extend(page);
    }
}

/// The URL of a service CI must provide (`SAPA_TEST_DATABASE_URL`, `SAPA_TEST_REDIS_URL`):
/// `None` (skip) only outside CI.
pub fn required_service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(std::env::var("CI").is_err(), "CI is set but {var} is not");
            eprintln!("{var} not set: test skipped outside CI");
            None
        }
    }
}

/// Creates a private schema on the Postgres at `url` and returns a URL whose connections use
/// it, so a test's tables are its own.
pub async fn postgres_schema(url: &str) -> String {
    let schema = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(url)
        .await
        .expect("Postgres reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={schema}")
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The test WhatsApp number (the fixtures' `phone_number_id`).
pub const WA_NUMBER: &str = "106540352242922";
/// The test app secret.
pub const WA_APP_SECRET: &str = "test-app-secret";
/// The test access token.
pub const WA_ACCESS_TOKEN: &str = "test-access-token";
/// The test verify token.
pub const WA_VERIFY_TOKEN: &str = "test-verify-token";

/// Config for the `demo` tenant with a WhatsApp number pointing at `graph_base`; `extra`
/// keys go into `[tenants.demo.whatsapp]`.
pub fn whatsapp_config(graph_base: &str, extra_whatsapp: &str) -> String {
    format!(
        "[tenants.demo]\nname = \"Kopi Nusantara\"\nlocale = \"id\"\n[tenants.demo.whatsapp]\n\
         phone_number_id = \"{WA_NUMBER}\"\napp_secret = \"{WA_APP_SECRET}\"\n\
         access_token = \"{WA_ACCESS_TOKEN}\"\nverify_token = \"{WA_VERIFY_TOKEN}\"\n\
         api_base_url = \"{graph_base}\"\napi_version = \"v23.0\"\n{extra_whatsapp}\n"
    )
}

/// A WhatsApp fixture's exact bytes.
pub fn wa_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../channels/src/whatsapp/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

impl TestApp {
    /// POSTs `body` to the WhatsApp webhook signed with `secret`.
    pub async fn whatsapp_post(&self, body: &[u8], secret: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/webhooks/whatsapp", self.address))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                channels::whatsapp::webhook::sign(secret.as_bytes(), body),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("webhook post")
    }

    /// Creates an API key for `tenant` directly in the app's database, as
    /// `sapa tenant api-key create` does.
    pub async fn api_key(&self, tenant: &str) -> String {
        let store = self.store().await;
        let key = gateway::api_key::generate();
        store
            .create_api_key(tenant, &key.prefix, &key.hash)
            .await
            .expect("create api key");
        store.close().await;
        key.key
    }

    /// `POST /v1/admin/conversations/{conversation_id}/messages` with `body`, authenticated
    /// with `key`.
    pub async fn admin_send(
        &self,
        key: &str,
        conversation_id: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client
            .post(format!(
                "{}/v1/admin/conversations/{conversation_id}/messages",
                self.address
            ))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("admin send")
    }

    /// Opens the app's SQLite store (read side of assertions).
    pub async fn store(&self) -> gateway::store::Store {
        gateway::store::Store::connect(
            &gateway::config::DatabaseTarget::Sqlite(self.data_dir.path().join("sapa.db")),
            2,
        )
        .await
        .expect("open store")
    }
}

/// The test Telegram webhook secret.
pub const TG_WEBHOOK_SECRET: &str = "test-webhook_secret";

/// Config for the `demo` tenant with a Telegram bot pointing at `api_base`; `extra_telegram`
/// keys go into `[tenants.demo.telegram]`.
pub fn telegram_config(api_base: &str, extra_telegram: &str) -> String {
    format!(
        "[tenants.demo]\nname = \"Kopi Nusantara\"\nlocale = \"id\"\n[tenants.demo.telegram]\n\
         bot_token = \"{}\"\nwebhook_secret = \"{TG_WEBHOOK_SECRET}\"\n\
         api_base_url = \"{api_base}\"\n{extra_telegram}\n",
        fake_telegram::BOT_TOKEN
    )
}

/// A Telegram fixture's exact bytes.
pub fn tg_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../channels/src/telegram/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

impl TestApp {
    /// POSTs `body` to the Telegram webhook of the test bot with `secret` (`None`: no header).
    pub async fn telegram_post(&self, body: &[u8], secret: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!(
                "{}/webhooks/telegram/{}",
                self.address,
                fake_telegram::BOT_ID
            ))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(secret) = secret {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        request.send().await.expect("webhook post")
    }
}

/// The `p` quantile (0..=1) of sorted durations, nearest rank; zero when empty (the benches).
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// A WhatsApp webhook body with one text message from `from` to the test number.
pub fn wa_text(wamid: &str, from: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": WA_NUMBER},
            "contacts": [{"profile": {"name": "Rina"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": "1763791200", "type": "text", "text": {"body": text}}]
        }}]}]
    }))
    .expect("JSON")
}

/// Waits (bounded) until the fake Graph API got at least `n` sends to `to`; their bodies.
pub async fn wa_sends_to(graph: &fake_graph::FakeGraph, to: &str, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(20), || async {
        let sends: Vec<Value> = graph
            .sends()
            .into_iter()
            .map(|r| r.body)
            .filter(|b| b["to"] == to)
            .collect();
        (sends.len() >= n).then_some(sends)
    })
    .await
}
