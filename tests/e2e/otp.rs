//! One-time codes end to end: `POST /v1/otp` → outbox → the fake Graph API (authentication
//! template) or the fake Bot API (text), then `POST /v1/otp/{id}/verify`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::api_key::Scope;
use gateway::startup::Overrides;
use sapa_tests::fake_graph::{FakeGraph, GraphRequest};
use sapa_tests::fake_telegram::{BOT_TOKEN, FakeTelegram};
use sapa_tests::{
    TG_WEBHOOK_SECRET, TestApp, WA_APP_SECRET, WA_NUMBER, eventually, spawn_app_with,
    whatsapp_config,
};
use serde_json::{Value, json};
use sqlx::Row;

const PHONE: &str = "+6281311112222";
const CHAT: i64 = 5_123_456_789;

async fn start(extra_whatsapp: &str, extra: &str) -> (TestApp, FakeGraph) {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}{extra}",
        whatsapp_config(&graph.base_url, extra_whatsapp)
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    (app, graph)
}

const TEMPLATE: &str = "otp_template = \"login_code\"\notp_template_language = \"en_US\"\n";

/// A key of `tenant` limited to `scopes`, as `sapa tenant api-key create T --scope …` makes.
async fn key(app: &TestApp, tenant: &str, scopes: &[Scope]) -> String {
    let store = app.store().await;
    let key = gateway::api_key::generate();
    store
        .create_scoped_api_key(tenant, &key.prefix, &key.hash, scopes)
        .await
        .unwrap();
    store.close().await;
    key.key
}

async fn send_code(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/otp", app.address))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn verify(app: &TestApp, key: &str, id: &str, code: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/v1/otp/{id}/verify", app.address))
        .bearer_auth(key)
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn status(app: &TestApp, key: &str, id: &str) -> Value {
    app.client
        .get(format!("{}/v1/otp/{id}", app.address))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn code_of(send: &GraphRequest) -> String {
    let components = send.body["template"]["components"].as_array().unwrap();
    let body = components.iter().find(|c| c["type"] == "body").unwrap();
    body["parameters"][0]["text"].as_str().unwrap().to_owned()
}

async fn template_sends(graph: &FakeGraph, n: usize) -> Vec<GraphRequest> {
    eventually(Duration::from_secs(20), || async {
        let sends: Vec<GraphRequest> = graph
            .sends()
            .into_iter()
            .filter(|s| s.body["type"] == "template")
            .collect();
        (sends.len() >= n).then_some(sends)
    })
    .await
}

fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn a_code_is_delivered_by_the_authentication_template_and_verified_once() {
    let (app, graph) = start(TEMPLATE, "").await;
    let key = key(&app, "demo", &[Scope::Otp]).await;
    graph.script_wamid("wamid.CODE1");
    let response = send_code(&app, &key, &json!({"to": PHONE, "purpose": "login"})).await;
    assert_eq!(response.status(), 201);
    let issued: Value = response.json().await.unwrap();
    let id = issued["challenge_id"].as_str().unwrap().to_owned();
    assert_eq!(issued["channel"], "whatsapp");
    assert!(issued["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(issued["resend_after"].is_string());
    assert!(!issued.to_string().contains("code\":"), "{issued}");

    let sends = template_sends(&graph, 1).await;
    let send = &sends[0];
    assert_eq!(send.body["to"], "6281311112222");
    assert_eq!(send.body["template"]["name"], "login_code");
    assert_eq!(send.body["template"]["language"]["code"], "en_US");
    let code = code_of(send);
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    // Meta requires the code twice: the body parameter and the copy-code (URL) button's.
    let button = send.body["template"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "button")
        .unwrap()
        .clone();
    assert_eq!(button["sub_type"], "url");
    assert_eq!(button["index"], "0");
    assert_eq!(button["parameters"][0]["text"], code.as_str());
    // Never as free-form text.
    assert!(graph.sends().iter().all(|s| s.body["type"] != "text"));

    let sent = eventually(Duration::from_secs(10), || async {
        let s = status(&app, &key, &id).await;
        (s["status"] == "sent").then_some(s)
    })
    .await;
    assert_eq!(sent["attempts_left"], 5);
    // WhatsApp's statuses move it forward: delivered, then read.
    for state in ["delivered", "read"] {
        let update = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": WA_NUMBER},
            "statuses": [{"id": "wamid.CODE1", "status": state, "timestamp": "1763791910", "recipient_id": "6281311112222"}]}}]}]});
        let response = app
            .whatsapp_post(&serde_json::to_vec(&update).unwrap(), WA_APP_SECRET)
            .await;
        assert_eq!(response.status(), 200);
        eventually(Duration::from_secs(10), || async {
            (status(&app, &key, &id).await["status"] == state).then_some(())
        })
        .await;
    }

    let (code_status, body) = verify(&app, &key, &id, &wrong(&code)).await;
    assert_eq!(code_status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code");
    assert_eq!(body["error"]["attempts_left"], 4);
    assert_eq!(verify(&app, &key, &id, &code).await.0, 200);
    let (again, body) = verify(&app, &key, &id, &code).await;
    assert_eq!(
        (again, body["error"]["code"].as_str()),
        (409, Some("already_verified"))
    );
    assert_eq!(status(&app, &key, &id).await["status"], "verified");
    app.stop().await;
}

#[tokio::test]
async fn five_wrong_codes_lock_the_challenge() {
    let (app, graph) = start(TEMPLATE, "").await;
    let key = key(&app, "demo", &[]).await;
    let issued: Value = send_code(&app, &key, &json!({"to": PHONE}))
        .await
        .json()
        .await
        .unwrap();
    let id = issued["challenge_id"].as_str().unwrap();
    let code = code_of(&template_sends(&graph, 1).await[0]);
    for left in (1..=4).rev() {
        let (status, body) = verify(&app, &key, id, &wrong(&code)).await;
        assert_eq!(
            (status, body["error"]["attempts_left"].as_i64()),
            (422, Some(left))
        );
    }
    let (status_code, body) = verify(&app, &key, id, &wrong(&code)).await;
    assert_eq!(
        (status_code, body["error"]["code"].as_str()),
        (423, Some("too_many_attempts"))
    );
    // Dead: even the right code is refused now.
    assert_eq!(verify(&app, &key, id, &code).await.0, 423);
    assert_eq!(status(&app, &key, id).await["status"], "locked");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let (app, graph) = start(TEMPLATE, "").await;
    let key = key(&app, "demo", &[]).await;
    let issued: Value = send_code(&app, &key, &json!({"to": PHONE}))
        .await
        .json()
        .await
        .unwrap();
    let id = issued["challenge_id"].as_str().unwrap();
    let code = code_of(&template_sends(&graph, 1).await[0]);
    // Five minutes pass.
    let store = app.store().await;
    sqlx::query("UPDATE otp_challenges SET expires_at = expires_at - 300001 WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let (status_code, body) = verify(&app, &key, id, &code).await;
    assert_eq!(
        (status_code, body["error"]["code"].as_str()),
        (410, Some("expired"))
    );
    assert_eq!(status(&app, &key, id).await["status"], "expired");
    app.stop().await;
}

#[tokio::test]
async fn a_resend_within_the_cooldown_and_a_fourth_code_in_ten_minutes_are_refused() {
    let (app, graph) = start(TEMPLATE, "").await;
    let key = key(&app, "demo", &[Scope::Otp]).await;
    let first: Value = send_code(&app, &key, &json!({"to": PHONE}))
        .await
        .json()
        .await
        .unwrap();
    let refused = send_code(&app, &key, &json!({"to": PHONE})).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resend_too_soon");

    // The cooldown passes twice; the fourth code within ten minutes is refused.
    let store = app.store().await;
    for _ in 0..2 {
        sqlx::query("UPDATE otp_challenges SET created_at = created_at - 61000")
            .execute(store.pool())
            .await
            .unwrap();
        assert_eq!(
            send_code(&app, &key, &json!({"to": PHONE})).await.status(),
            201
        );
    }
    sqlx::query("UPDATE otp_challenges SET created_at = created_at - 61000")
        .execute(store.pool())
        .await
        .unwrap();
    let fourth = send_code(&app, &key, &json!({"to": PHONE})).await;
    assert_eq!(fourth.status(), 429);
    assert!(fourth.headers().contains_key("retry-after"));
    let body: Value = fourth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_codes");
    store.close().await;

    // A newer code replaced the first one: its code no longer verifies.
    let sends = template_sends(&graph, 3).await;
    let first_code = code_of(&sends[0]);
    let id = first["challenge_id"].as_str().unwrap();
    let (status_code, body) = verify(&app, &key, id, &first_code).await;
    assert_eq!(
        (status_code, body["error"]["code"].as_str()),
        (410, Some("expired"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_whatsapp_code_falls_back_to_telegram() {
    let graph = FakeGraph::start().await;
    let telegram = FakeTelegram::start().await;
    let config = format!(
        "{}[tenants.demo.telegram]\nbot_token = \"{BOT_TOKEN}\"\nwebhook_secret = \"{TG_WEBHOOK_SECRET}\"\napi_base_url = \"{}\"\n",
        whatsapp_config(&graph.base_url, TEMPLATE),
        telegram.base_url
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    // The customer wrote to the bot and shared their own number.
    let contact = json!({"update_id": 1, "message": {
        "message_id": 105, "date": 1_763_792_030,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Dewi"},
        "chat": {"id": CHAT, "first_name": "Dewi", "type": "private"},
        "contact": {"phone_number": "6281311112222", "first_name": "Dewi", "user_id": CHAT}}});
    let response = app
        .telegram_post(
            &serde_json::to_vec(&contact).unwrap(),
            Some(TG_WEBHOOK_SECRET),
        )
        .await;
    assert_eq!(response.status(), 200);
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        let row = sqlx::query("SELECT phone FROM contacts WHERE phone IS NOT NULL")
            .fetch_optional(store.pool())
            .await
            .unwrap();
        row.map(|_| ())
    })
    .await;

    let key = key(&app, "demo", &[Scope::Otp]).await;
    graph.script_wamid("wamid.OTP1");
    let issued: Value = send_code(
        &app,
        &key,
        &json!({"to": PHONE, "channel": "auto", "locale": "en"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = issued["challenge_id"].as_str().unwrap().to_owned();
    assert_eq!(issued["channel"], "whatsapp");
    let whatsapp_code = code_of(&template_sends(&graph, 1).await[0]);
    eventually(Duration::from_secs(10), || async {
        (status(&app, &key, &id).await["status"] == "sent").then_some(())
    })
    .await;
    // Nothing on Telegram while WhatsApp may still deliver.
    assert!(telegram.calls_of("sendMessage").iter().all(|c| {
        !c.body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("verification code")
    }));

    // WhatsApp reports the template undeliverable.
    let failed = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281234567000", "phone_number_id": WA_NUMBER},
        "statuses": [{"id": "wamid.OTP1", "status": "failed", "timestamp": "1763791910",
            "recipient_id": "6281311112222",
            "errors": [{"code": 131026, "title": "Message undeliverable"}]}]}}]}]});
    let response = app
        .whatsapp_post(&serde_json::to_vec(&failed).unwrap(), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let text = eventually(Duration::from_secs(20), || async {
        telegram.calls_of("sendMessage").into_iter().find_map(|c| {
            let text = c.body["text"].as_str()?.to_owned();
            (c.body["chat_id"].to_string().contains(&CHAT.to_string())
                && text.contains("verification code"))
            .then_some(text)
        })
    })
    .await;
    let code = text.split_whitespace().next().unwrap().to_owned();
    assert_eq!(code, whatsapp_code, "the same challenge, the same code");
    let shown = status(&app, &key, &id).await;
    assert_eq!(shown["channel"], "telegram", "{shown}");
    assert_eq!(verify(&app, &key, &id, &code).await.0, 200);
    store.close().await;
    app.stop().await;
}

/// Captures every log line of this process at debug level (nextest runs each test in its own
/// process, so the global subscriber is this test's).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_code_is_never_stored_in_clear_or_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("one test per process (cargo nextest)");
    let (app, graph) = start(TEMPLATE, "").await;
    let key = key(&app, "demo", &[Scope::Otp]).await;
    let issued: Value = send_code(&app, &key, &json!({"to": PHONE}))
        .await
        .json()
        .await
        .unwrap();
    let id = issued["challenge_id"].as_str().unwrap();
    let code = code_of(&template_sends(&graph, 1).await[0]);
    let (status_code, _) = verify(&app, &key, id, &wrong(&code)).await;
    assert_eq!(status_code, 422);
    assert_eq!(verify(&app, &key, id, &code).await.0, 200);
    let shown = status(&app, &key, id).await;
    assert!(!shown.to_string().contains(&code));
    app.settled().await;

    // Every text column of every table.
    let store = app.store().await;
    let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("name").unwrap())
        .collect();
    assert!(tables.contains(&"otp_challenges".to_owned()));
    let mut scanned = 0;
    for table in &tables {
        let columns: Vec<String> =
            sqlx::query(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get("name").unwrap())
                .collect();
        for column in columns {
            let hits: i64 = sqlx::query(&format!(
                "SELECT COUNT(*) AS n FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE $1"
            ))
            .bind(format!("%{code}%"))
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
            assert_eq!(hits, 0, "the code is in {table}.{column}");
            scanned += 1;
        }
    }
    assert!(scanned > 50, "{scanned} columns");
    // The sealed copy was scrubbed once the send was final.
    let sealed: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sealed_code IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(sealed, 0);
    store.close().await;
    app.stop().await;
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logs.contains("DEBUG"), "debug logs were captured");
    assert!(!logs.contains(&code), "the code is in the logs");
}

#[tokio::test]
async fn scopes_and_tenants_are_enforced() {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}[tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n",
        whatsapp_config(&graph.base_url, TEMPLATE)
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let knowledge_only = key(&app, "demo", &[Scope::Knowledge]).await;
    let response = send_code(&app, &knowledge_only, &json!({"to": PHONE})).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--scope otp")
    );
    let otp_only = key(&app, "demo", &[Scope::Otp]).await;
    let documents = app
        .client
        .get(format!("{}/v1/admin/knowledge/documents", app.address))
        .bearer_auth(&otp_only)
        .send()
        .await
        .unwrap();
    assert_eq!(documents.status(), 403);

    let issued: Value = send_code(&app, &otp_only, &json!({"to": PHONE}))
        .await
        .json()
        .await
        .unwrap();
    let id = issued["challenge_id"].as_str().unwrap();
    let code = code_of(&template_sends(&graph, 1).await[0]);
    let other = key(&app, "other", &[Scope::Otp]).await;
    let (status_code, body) = verify(&app, &other, id, &code).await;
    assert_eq!(
        (status_code, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let shown = app
        .client
        .get(format!("{}/v1/otp/{id}", app.address))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 404);
    // The other tenant has no channel at all.
    let response = send_code(&app, &other, &json!({"to": PHONE})).await;
    assert_eq!(response.status(), 409);
    // The owner still verifies.
    assert_eq!(verify(&app, &otp_only, id, &code).await.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_and_missing_setup_say_what_to_fix() {
    let (app, _graph) = start("", "").await;
    let key = key(&app, "demo", &[Scope::Otp]).await;
    let response = send_code(&app, &key, &json!({"to": PHONE})).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "otp_template_missing");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("otp_template")
    );
    for (request, code) in [
        (json!({"to": "081311112222"}), "invalid_request"),
        (json!({"to": PHONE, "channel": "sms"}), "invalid_request"),
        (json!({"to": PHONE, "locale": "fr"}), "invalid_request"),
        (json!({"to": {"email": "a@b.c"}}), "invalid_request"),
        (
            json!({"to": PHONE, "purpose": "log in!"}),
            "invalid_request",
        ),
        (json!({"to": PHONE, "code": "123456"}), "invalid_field"),
        (
            json!({"to": {"telegram_chat_id": CHAT}}),
            "channel_unavailable",
        ),
    ] {
        let response = send_code(&app, &key, &request).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{request}: {status} {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_telegram_chat_is_refused() {
    let telegram = FakeTelegram::start().await;
    let config = sapa_tests::telegram_config(&telegram.base_url, "");
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let key = key(&app, "demo", &[Scope::Otp]).await;
    let response = send_code(
        &app,
        &key,
        &json!({"to": {"telegram_chat_id": 42}, "channel": "telegram"}),
    )
    .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "recipient_unknown");
    app.stop().await;
}

async fn sapa(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = crate::process::command(data_dir, &[])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_sends_and_verifies_a_code_and_scopes_keys() {
    let graph = FakeGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::write(
        path.join("sapa.toml"),
        whatsapp_config(&graph.base_url, TEMPLATE),
    )
    .unwrap();
    let server = crate::process::ServerProcess::start(&path, &[]).await;

    let (ok, stdout, stderr) = sapa(
        &path,
        &["tenant", "api-key", "create", "demo", "--scope", "otp"],
    )
    .await;
    assert!(ok, "{stderr}");
    let key = stdout.trim().to_owned();
    let (ok, stdout, _) = sapa(&path, &["tenant", "api-key", "list", "demo"]).await;
    assert!(ok && stdout.contains("scopes otp"), "{stdout}");
    let (ok, _, stderr) = sapa(
        &path,
        &["tenant", "api-key", "create", "demo", "--scope", "admin"],
    )
    .await;
    assert!(
        !ok && stderr.contains("knowledge, messages, otp"),
        "{stderr}"
    );

    let (ok, stdout, stderr) =
        sapa(&path, &["otp", "send", "--tenant", "demo", "--to", PHONE]).await;
    assert!(ok, "{stderr}");
    let id = stdout.trim().to_owned();
    assert!(id.starts_with("otp_"), "{stdout}");
    assert!(stderr.contains("queued on whatsapp"), "{stderr}");
    // The running server delivers it.
    let code = code_of(&template_sends(&graph, 1).await[0]);
    assert!(!stdout.contains(&code) && !stderr.contains(&code));

    let (ok, _, stderr) = sapa(
        &path,
        &["otp", "verify", "--tenant", "demo", &id, &wrong(&code)],
    )
    .await;
    assert!(!ok && stderr.contains("4 attempts left"), "{stderr}");
    let (ok, stdout, stderr) =
        sapa(&path, &["otp", "verify", "--tenant", "demo", &id, &code]).await;
    assert!(ok && stdout.trim() == "verified", "{stdout} {stderr}");
    // The server sees the same challenge through the API.
    let shown: Value = reqwest::Client::new()
        .get(format!("{}/v1/otp/{id}", server.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "verified");
    let (ok, _, stderr) = sapa(&path, &["otp", "send", "--tenant", "demo", "--to", "0813"]).await;
    assert!(!ok && stderr.contains("international format"), "{stderr}");
    server.kill().await;
}

/// The last bot message's text once there are `n`.
async fn bot_text(app: &TestApp, session: &sapa_tests::Session, n: usize) -> Value {
    app.bot_messages(session, n).await[n - 1].clone()
}

#[tokio::test]
async fn the_demo_verification_step_works_over_web_chat() {
    let (app, graph) = start(TEMPLATE, "").await;
    let session = app.session("demo").await;
    assert_eq!(
        app.post(&session, "v1", "verifikasi nomor saya")
            .await
            .status(),
        202
    );
    let asked = bot_text(&app, &session, 1).await;
    assert!(
        asked["text"]
            .as_str()
            .unwrap()
            .contains("ketik nomor WhatsApp"),
        "{asked}"
    );
    assert_eq!(
        app.post(&session, "v2", "0813 1111 2222").await.status(),
        202
    );
    let sent = bot_text(&app, &session, 2).await;
    assert!(
        sent["text"].as_str().unwrap().contains("+62813…2222"),
        "{sent}"
    );
    let send = &template_sends(&graph, 1).await[0];
    assert_eq!(send.body["to"], "6281311112222");
    let code = code_of(send);

    assert_eq!(app.post(&session, "v3", &wrong(&code)).await.status(), 202);
    let wrong_reply = bot_text(&app, &session, 3).await;
    assert!(
        wrong_reply["text"].as_str().unwrap().contains("Sisa 4"),
        "{wrong_reply}"
    );
    assert_eq!(
        app.post(&session, "v4", &format!("kodenya {code}"))
            .await
            .status(),
        202
    );
    let done = bot_text(&app, &session, 4).await;
    assert!(
        done["text"]
            .as_str()
            .unwrap()
            .contains("+6281311112222 berhasil diverifikasi"),
        "{done}"
    );
    app.settled().await;
    // What the customer typed is kept masked; the code is nowhere in the messages.
    let messages = app.messages(&session).await;
    let customer: Vec<&str> = messages
        .iter()
        .filter(|m| m["author"] == "customer")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        customer,
        vec![
            "verifikasi nomor saya",
            "0813 1111 2222",
            "••••••",
            "••••••"
        ]
    );
    let store = app.store().await;
    let leaked: i64 = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE body LIKE $1")
        .bind(format!("%{code}%"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(leaked, 0);
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn on_whatsapp_the_customers_own_number_is_verified() {
    let (app, graph) = start(TEMPLATE, "").await;
    let text = |wamid: &str, body: &str| {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": WA_NUMBER},
            "contacts": [{"profile": {"name": "Rina"}, "wa_id": "6281311112222"}],
            "messages": [{"from": "6281311112222", "id": wamid, "timestamp": "1763791200", "type": "text", "text": {"body": body}}]}}]}]}))
        .unwrap()
    };
    let response = app
        .whatsapp_post(&text("wamid.V1", "verify my number"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let send = &template_sends(&graph, 1).await[0];
    assert_eq!(send.body["to"], "6281311112222");
    let code = code_of(send);
    app.whatsapp_post(&text("wamid.V2", &code), WA_APP_SECRET)
        .await;
    let confirmed = eventually(Duration::from_secs(20), || async {
        graph.sends().into_iter().find_map(|s| {
            let body = s.body["text"]["body"].as_str()?.to_owned();
            body.contains("berhasil diverifikasi").then_some(body)
        })
    })
    .await;
    assert!(confirmed.contains("+6281311112222"), "{confirmed}");
    app.stop().await;
}

#[tokio::test]
async fn without_whatsapp_verification_is_not_available_and_a_human_is_offered() {
    let app = sapa_tests::spawn_app("").await;
    let session = app.session("demo").await;
    app.post(&session, "v1", "verifikasi nomor saya").await;
    bot_text(&app, &session, 1).await;
    app.post(&session, "v2", "+62 813 1111 2222").await;
    let reply = bot_text(&app, &session, 2).await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("verifikasi nomor belum tersedia"),
        "{reply}"
    );
    assert_eq!(reply["choices"], json!(["Hubungi admin"]));
    app.stop().await;
}
