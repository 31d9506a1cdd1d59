//! Tenant flows end to end: the demo shop's "cek pesanan" and "reservasi" over web chat,
//! WhatsApp (with the one-time code) and Telegram; digressions and cancel; flows through the
//! admin API; webhook retries then a polite handoff; the loopback rule; a run surviving
//! SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use gateway::startup::Overrides;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::fake_telegram::FakeTelegram;
use sapa_tests::{
    Session, TG_WEBHOOK_SECRET, TestApp, WA_APP_SECRET, create_session, eventually, list_messages,
    post_message, spawn_app, spawn_app_with, telegram_config, wa_sends_to, wa_text,
    whatsapp_config,
};
use serde_json::{Value, json};

use crate::process::ServerProcess;

const ASK_ORDER_ID: &str = "Boleh minta nomor pesanannya, Kak? Contohnya KN-1003.";
const WEBHOOK_SECRET: &str = "flow-webhook-secret-0123";

fn texts(bots: &[Value]) -> Vec<String> {
    bots.iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Posts `text` and waits for the bot's messages to reach `n`; returns the new ones.
async fn say(app: &TestApp, session: &Session, id: &str, text: &str, n: usize) -> Vec<String> {
    let before = app.bot_messages(session, 0).await.len();
    assert_eq!(app.post(session, id, text).await.status(), 202);
    let bots = app.bot_messages(session, n).await;
    texts(&bots[before..])
}

#[tokio::test]
async fn web_chat_order_status_flow_answers_from_the_demo_order_api() {
    let app = spawn_app("").await;
    let session = app.session("demo").await;
    let new = say(&app, &session, "o-1", "mau cek pesanan dong", 1).await;
    assert_eq!(new, vec![ASK_ORDER_ID]);
    // Not an order number: the flow's own message, then a valid one.
    let new = say(&app, &session, "o-2", "nomornya lupa", 2).await;
    assert!(new[0].contains("diawali KN"), "{new:?}");
    let new = say(&app, &session, "o-3", "KN-1003", 3).await;
    assert_eq!(new, vec!["KN-1003: sedang dikirim"]);
    // The flow ended: the next question is answered from the knowledge base.
    let new = say(
        &app,
        &session,
        "o-4",
        "jam buka outlet Blok M hari Minggu?",
        4,
    )
    .await;
    assert!(new[0].contains("Blok M"), "{new:?}");
    let store = app.store().await;
    let (run, _) = store
        .conversation_flow("demo", &session.conversation_id)
        .await
        .unwrap();
    assert_eq!(run, None);
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn web_chat_reservation_answers_a_digression_then_books_and_cancel_leaves() {
    let app = spawn_app("").await;
    let session = app.session("demo").await;
    say(&app, &session, "r-1", "reservasi", 1).await;
    let bots = app.bot_messages(&session, 1).await;
    assert_eq!(bots[0]["text"], "Mau reservasi di outlet mana, Kak?");
    assert_eq!(
        bots[0]["choices"],
        json!(["Blok M", "Kemang", "Bandung Dago"]),
        "{bots:?}"
    );
    // A knowledge question mid-flow: answered, then the step is asked again.
    let new = say(&app, &session, "r-2", "apakah ada wifi?", 3).await;
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new[0].to_lowercase().contains("wifi"), "{new:?}");
    assert_eq!(new[1], "Mau reservasi di outlet mana, Kak?");
    let new = say(&app, &session, "r-3", "Kemang", 4).await;
    assert!(new[0].starts_with("Untuk kapan?"), "{new:?}");
    let new = say(&app, &session, "r-4", "besok jam 7 malam", 5).await;
    assert_eq!(new, vec!["Untuk berapa orang?"]);
    let new = say(&app, &session, "r-5", "4 orang", 6).await;
    assert!(
        new[0].starts_with("Reservasi di kemang untuk 4 orang, ") && new[0].contains("19:00"),
        "{new:?}"
    );
    let new = say(&app, &session, "r-6", "Ya, benar", 7).await;
    assert!(
        new[0].starts_with("Siap, reservasi RSV-") && new[0].ends_with("tercatat. Sampai jumpa!"),
        "{new:?}"
    );

    // Another one, left with "batal".
    say(&app, &session, "r-7", "mau booking meja", 8).await;
    let new = say(&app, &session, "r-8", "batal", 9).await;
    assert_eq!(
        new,
        vec!["Baik, sudah saya batalkan. Ada lagi yang bisa saya bantu?"]
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_order_status_verifies_the_number_by_one_time_code_first() {
    let graph = FakeGraph::start().await;
    let config = whatsapp_config(&graph.base_url, "otp_template = \"login_code\"\n");
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let from = "6281311119001";
    let mut wamid = 0;
    let mut send = |text: &str| {
        wamid += 1;
        wa_text(&format!("wamid.FLOW{wamid}"), from, text)
    };
    app.whatsapp_post(&send("cek pesanan"), WA_APP_SECRET).await;
    let sends = wa_sends_to(&graph, from, 1).await;
    assert_eq!(sends[0]["text"]["body"], ASK_ORDER_ID);
    app.whatsapp_post(&send("kn-1002"), WA_APP_SECRET).await;
    // The code goes out as the authentication template, with a message saying so.
    let sends = wa_sends_to(&graph, from, 3).await;
    let template = sends
        .iter()
        .find(|s| s["type"] == "template")
        .expect("code");
    let code = template["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        sends.iter().any(|s| s["text"]["body"]
            .as_str()
            .is_some_and(|t| t.starts_with("Kode verifikasi 6 digit"))),
        "{sends:?}"
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    app.whatsapp_post(&send(wrong), WA_APP_SECRET).await;
    let sends = wa_sends_to(&graph, from, 4).await;
    let refused = sends[3]["text"]["body"].as_str().unwrap();
    assert!(refused.starts_with("Kodenya belum cocok."), "{refused}");
    app.whatsapp_post(&send(&code), WA_APP_SECRET).await;
    let sends = wa_sends_to(&graph, from, 6).await;
    let bodies: Vec<&str> = sends[4..]
        .iter()
        .map(|s| s["text"]["body"].as_str().unwrap_or_default())
        .collect();
    assert!(bodies[0].contains("berhasil diverifikasi"), "{bodies:?}");
    assert_eq!(bodies[1], "KN-1002: sedang dikemas");
    // The typed codes are stored masked.
    let store = app.store().await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM messages WHERE tenant_id = 'demo' AND author = 'customer' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(!stored.iter().any(|b| b.contains(&code)), "{stored:?}");
    store.close().await;
    app.stop().await;
}

/// A WhatsApp webhook body: `from` tapped the reply button `id` (`title`) the bot sent.
fn wa_button(wamid: &str, from: &str, id: &str, title: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": sapa_tests::WA_NUMBER},
            "contacts": [{"profile": {"name": "Rina"}, "wa_id": from}],
            "messages": [{"from": from, "id": wamid, "timestamp": "1763791200", "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": id, "title": title}}}]
        }}]}]
    }))
    .unwrap()
}

#[tokio::test]
async fn whatsapp_reservation_is_booked_with_reply_buttons() {
    let graph = FakeGraph::start().await;
    let config = whatsapp_config(&graph.base_url, "");
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let from = "6281311119002";
    app.whatsapp_post(&wa_text("wamid.RSV1", from, "reservasi"), WA_APP_SECRET)
        .await;
    let sends = wa_sends_to(&graph, from, 1).await;
    // The outlets go out as reply buttons.
    assert_eq!(sends[0]["type"], "interactive", "{sends:?}");
    assert_eq!(
        sends[0]["interactive"]["body"]["text"],
        "Mau reservasi di outlet mana, Kak?"
    );
    let buttons = sends[0]["interactive"]["action"]["buttons"]
        .as_array()
        .unwrap();
    let kemang = buttons
        .iter()
        .find(|b| b["reply"]["title"] == "Kemang")
        .expect("a Kemang button");
    let id = kemang["reply"]["id"].as_str().unwrap();
    app.whatsapp_post(&wa_button("wamid.RSV2", from, id, "Kemang"), WA_APP_SECRET)
        .await;
    let sends = wa_sends_to(&graph, from, 2).await;
    let text = |send: &Value| {
        send["text"]["body"]
            .as_str()
            .or_else(|| send["interactive"]["body"]["text"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(text(&sends[1]).starts_with("Untuk kapan?"), "{sends:?}");
    app.whatsapp_post(
        &wa_text("wamid.RSV3", from, "besok jam 7 malam"),
        WA_APP_SECRET,
    )
    .await;
    let sends = wa_sends_to(&graph, from, 3).await;
    assert_eq!(text(&sends[2]), "Untuk berapa orang?");
    app.whatsapp_post(&wa_text("wamid.RSV4", from, "4 orang"), WA_APP_SECRET)
        .await;
    let sends = wa_sends_to(&graph, from, 4).await;
    let confirm = text(&sends[3]);
    assert!(
        confirm.starts_with("Reservasi di kemang untuk 4 orang, ") && confirm.contains("19:00"),
        "{sends:?}"
    );
    // Confirmed with its first button when it has buttons, else in words.
    let reply = match sends[3]["interactive"]["action"]["buttons"][0]["reply"].as_object() {
        Some(button) => wa_button(
            "wamid.RSV5",
            from,
            button["id"].as_str().unwrap(),
            button["title"].as_str().unwrap(),
        ),
        None => wa_text("wamid.RSV5", from, "Ya, benar"),
    };
    app.whatsapp_post(&reply, WA_APP_SECRET).await;
    let sends = wa_sends_to(&graph, from, 5).await;
    let booked = text(&sends[4]);
    assert!(
        booked.starts_with("Siap, reservasi RSV-") && booked.ends_with("tercatat. Sampai jumpa!"),
        "{sends:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_order_status_flow_needs_no_code() {
    let fake = FakeTelegram::start().await;
    let app = spawn_app_with(
        &telegram_config(&fake.base_url, ""),
        Overrides::default(),
        None,
    )
    .await;
    for (n, text) in ["status pesanan", "KN-1005"].into_iter().enumerate() {
        let update = json!({"update_id": n + 1, "message": {
            "message_id": n + 1, "date": 1_763_792_000, "text": text,
            "from": {"id": 778, "is_bot": false, "first_name": "Dewi", "language_code": "id"},
            "chat": {"id": 778, "first_name": "Dewi", "type": "private"}}});
        let response = app
            .telegram_post(
                &serde_json::to_vec(&update).unwrap(),
                Some(TG_WEBHOOK_SECRET),
            )
            .await;
        assert_eq!(response.status(), 200);
        eventually(Duration::from_secs(20), || async {
            (fake.calls_of("sendMessage").len() > n).then_some(())
        })
        .await;
    }
    let sends = fake.calls_of("sendMessage");
    assert_eq!(sends[0].body["text"], ASK_ORDER_ID);
    assert_eq!(sends[1].body["text"], "KN-1005: dibatalkan");
    app.stop().await;
}

#[tokio::test]
async fn telegram_reservation_is_booked_with_inline_buttons() {
    let fake = FakeTelegram::start().await;
    let app = spawn_app_with(
        &telegram_config(&fake.base_url, ""),
        Overrides::default(),
        None,
    )
    .await;
    let chat = json!({"id": 779, "first_name": "Sari", "type": "private"});
    let user = json!({"id": 779, "is_bot": false, "first_name": "Sari", "language_code": "id"});
    let mut update_id = 0;
    let mut post = async |update: Value, sends: usize| -> Vec<Value> {
        update_id += 1;
        let mut update = update;
        update["update_id"] = json!(update_id);
        let response = app
            .telegram_post(
                &serde_json::to_vec(&update).unwrap(),
                Some(TG_WEBHOOK_SECRET),
            )
            .await;
        assert_eq!(response.status(), 200);
        eventually(Duration::from_secs(20), || async {
            let calls = fake.calls_of("sendMessage");
            (calls.len() >= sends).then(|| calls.into_iter().map(|c| c.body).collect())
        })
        .await
    };
    let text = |n: i64, text: &str| {
        json!({"message": {"message_id": n, "date": 1_763_792_000, "text": text,
            "from": user, "chat": chat}})
    };
    let tapped = |send: &Value, title: &str| {
        let data = send["reply_markup"]["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .find(|b| b["text"] == title)
            .unwrap_or_else(|| panic!("no {title} button in {send}"))["callback_data"]
            .clone();
        json!({"callback_query": {"id": format!("q-{title}"), "from": user,
            "chat_instance": "x", "data": data}})
    };
    let sends = post(text(1, "reservasi"), 1).await;
    assert_eq!(sends[0]["text"], "Mau reservasi di outlet mana, Kak?");
    let sends = post(tapped(&sends[0], "Bandung Dago"), 2).await;
    assert!(
        sends[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("Untuk kapan?"),
        "{sends:?}"
    );
    let sends = post(text(3, "besok jam 3 sore"), 3).await;
    assert_eq!(sends[2]["text"], "Untuk berapa orang?");
    let sends = post(text(4, "2"), 4).await;
    let confirm = sends[3]["text"].as_str().unwrap();
    assert!(
        confirm.starts_with("Reservasi di bandung-dago untuk 2 orang, ")
            && confirm.contains("15:00"),
        "{sends:?}"
    );
    let sends = post(tapped(&sends[3], "Ya, benar"), 5).await;
    let booked = sends[4]["text"].as_str().unwrap();
    assert!(
        booked.starts_with("Siap, reservasi RSV-") && booked.ends_with("tercatat. Sampai jumpa!"),
        "{sends:?}"
    );
    app.stop().await;
}

/// A tenant's HTTPS endpoint, in the test: counts calls, checks the signature, and answers
/// with `status` (and `{"points": 120}` on 200).
#[derive(Clone)]
struct Endpoint {
    calls: Arc<AtomicUsize>,
    signed: Arc<AtomicUsize>,
    address: String,
}

async fn endpoint(status: StatusCode) -> Endpoint {
    let calls = Arc::new(AtomicUsize::new(0));
    let signed = Arc::new(AtomicUsize::new(0));
    let (c, s) = (calls.clone(), signed.clone());
    let app = axum::Router::new().route(
        "/points",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (c, s) = (c.clone(), s.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                let timestamp = headers["x-sapa-timestamp"].to_str().unwrap();
                let expected = gateway::tenant_flows::sign(WEBHOOK_SECRET, timestamp, &body);
                if headers["x-sapa-signature"].to_str().unwrap() == format!("sha256={expected}") {
                    s.fetch_add(1, Ordering::SeqCst);
                }
                (status, axum::Json(json!({"points": 120})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Endpoint {
        calls,
        signed,
        address,
    }
}

fn points_flow(url: &str) -> String {
    format!(
        "name: poin\ndescription: Loyalty points.\ntriggers:\n  keywords: [cek poin]\nsteps:\n  \
         - call_webhook:\n      url: {url}/points\n      body:\n        channel: \"{{{{ slots.channel }}}}\"\n      \
         save:\n        points: /points\n      timeout: 2s\n      retries: 2\n  \
         - say:\n      text:\n        id: \"Poin Kakak: {{{{ slots.points }}}}\"\n        en: \"Your points: {{{{ slots.points }}}}\"\n  \
         - end\n"
    )
}

fn shop_config(allow_private: bool) -> String {
    format!(
        "[flows]\nallow_private_webhooks = {allow_private}\n[tenants.shop]\nname = \"Toko\"\nlocale = \"id\"\n\
         webhook_hosts = [\"127.0.0.1\"]\nwebhook_secret = \"{WEBHOOK_SECRET}\"\n"
    )
}

async fn put_flow(app: &TestApp, key: &str, name: &str, yaml: &str) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("{}/v1/admin/flows/{name}", app.address))
        .bearer_auth(key)
        .body(yaml.to_owned())
        .send()
        .await
        .unwrap()
}

async fn api_key(app: &TestApp, tenant: &str, scopes: &[gateway::api_key::Scope]) -> String {
    let store = app.store().await;
    let key = gateway::api_key::generate();
    store
        .create_scoped_api_key(tenant, &key.prefix, &key.hash, scopes)
        .await
        .unwrap();
    store.close().await;
    key.key
}

async fn conversation_state(app: &TestApp, tenant: &str, conversation: &str) -> String {
    let store = app.store().await;
    let state: String =
        sqlx::query_scalar("SELECT state FROM conversations WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(conversation)
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.close().await;
    state
}

#[tokio::test]
async fn flows_are_put_through_the_admin_api_and_call_signed_webhooks() {
    use gateway::api_key::Scope;
    let ok = endpoint(StatusCode::OK).await;
    let app = spawn_app(&shop_config(true)).await;
    let key = api_key(&app, "shop", &[Scope::Flows]).await;
    let knowledge_only = api_key(&app, "shop", &[Scope::Knowledge]).await;

    // Scope, then checks with line and column, then the name.
    let response = put_flow(&app, &knowledge_only, "poin", &points_flow(&ok.address)).await;
    assert_eq!(response.status(), 403);
    let response = put_flow(&app, &key, "poin", "name: poin\nsteps:\n  - sya: {}\n").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_flow");
    assert_eq!(body["error"]["errors"][0]["line"], 3, "{body}");
    assert!(
        body["error"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("say"),
        "did you mean: {body}"
    );
    let elsewhere = points_flow("https://api.elsewhere.example");
    let response = put_flow(&app, &key, "poin", &elsewhere).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("webhook_hosts")
    );
    let response = put_flow(&app, &key, "other", &points_flow(&ok.address)).await;
    assert_eq!(response.status(), 422);
    let response = put_flow(&app, &key, "poin", &points_flow(&ok.address)).await;
    assert_eq!(response.status(), 201);
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/v1/admin/flows", app.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["flows"][0]["name"], "poin", "{listed}");

    // Live at once: the webhook is called once, signed, and its field said.
    let session = app.session("shop").await;
    let new = say(&app, &session, "p-1", "cek poin saya", 1).await;
    assert_eq!(new, vec!["Poin Kakak: 120"]);
    assert_eq!(ok.calls.load(Ordering::SeqCst), 1);
    assert_eq!(ok.signed.load(Ordering::SeqCst), 1);
    // Other tenants do not have it.
    let demo = app.session("demo").await;
    let new = say(&app, &demo, "p-1", "cek poin saya", 1).await;
    assert_ne!(new, vec!["Poin Kakak: 120"]);
    app.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_then_the_chat_is_handed_off_politely() {
    let failing = endpoint(StatusCode::SERVICE_UNAVAILABLE).await;
    let app = spawn_app(&shop_config(true)).await;
    let key = api_key(&app, "shop", &[gateway::api_key::Scope::Flows]).await;
    assert_eq!(
        put_flow(&app, &key, "poin", &points_flow(&failing.address))
            .await
            .status(),
        201
    );
    let session = app.session("shop").await;
    let new = say(&app, &session, "p-1", "cek poin", 1).await;
    assert!(
        new[0].starts_with("Maaf, datanya belum bisa kami cek saat ini."),
        "{new:?}"
    );
    // The first attempt and two retries.
    assert_eq!(failing.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        conversation_state(&app, "shop", &session.conversation_id).await,
        "waiting_human"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_to_a_loopback_host_is_refused_unless_the_operator_allows_it() {
    let endpoint = endpoint(StatusCode::OK).await;
    // Listed by the tenant, but loopback: refused (and plain http too).
    let app = spawn_app(&shop_config(false)).await;
    let key = api_key(&app, "shop", &[gateway::api_key::Scope::Flows]).await;
    let https = endpoint.address.replace("http://", "https://");
    assert_eq!(
        put_flow(&app, &key, "poin", &points_flow(&https))
            .await
            .status(),
        201
    );
    let session = app.session("shop").await;
    let new = say(&app, &session, "p-1", "cek poin", 1).await;
    assert!(new[0].starts_with("Maaf, datanya belum bisa"), "{new:?}");
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 0, "never reached");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_in_progress_survives_sigkill_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let envs = [("SAPA_CONVERSATION__DEBOUNCE", "0s")];
    let server = ServerProcess::start(dir.path(), &envs).await;
    let client = reqwest::Client::new();
    let session = create_session(&client, &server.address, "demo").await;
    let bots = |address: String| {
        let (client, session) = (client.clone(), session.clone());
        move |n: usize| {
            let (client, session, address) = (client.clone(), session.clone(), address.clone());
            async move {
                eventually(Duration::from_secs(20), || async {
                    let bots: Vec<Value> = list_messages(&client, &address, &session)
                        .await
                        .ok()?
                        .into_iter()
                        .filter(|m| m["author"] == "bot")
                        .collect();
                    (bots.len() >= n).then_some(texts(&bots))
                })
                .await
            }
        }
    };
    post_message(&client, &server.address, &session, "k-1", "reservasi").await;
    bots(server.address.clone())(1).await;
    post_message(&client, &server.address, &session, "k-2", "Blok M").await;
    let seen = bots(server.address.clone())(2).await;
    assert!(seen[1].starts_with("Untuk kapan?"), "{seen:?}");
    server.kill().await;

    let server = ServerProcess::start(dir.path(), &envs).await;
    post_message(
        &client,
        &server.address,
        &session,
        "k-3",
        "besok jam 3 sore",
    )
    .await;
    let seen = bots(server.address.clone())(3).await;
    assert_eq!(seen[2], "Untuk berapa orang?");
    post_message(&client, &server.address, &session, "k-4", "2").await;
    let seen = bots(server.address.clone())(4).await;
    assert!(
        seen[3].starts_with("Reservasi di blok-m untuk 2 orang, ") && seen[3].contains("15:00"),
        "the outlet chosen before the kill is kept: {seen:?}"
    );
    server.kill().await;
}

#[tokio::test]
async fn with_a_model_a_message_no_keyword_matches_can_start_a_flow_by_its_description() {
    use sapa_tests::fake_openai::{FakeOpenAi, Reply};
    const ROUTER: &str = "You route a customer's chat message";
    // The router picks the reservation flow; an answer request gets a clarifying question.
    let reply = || {
        Reply::computed(|request| {
            let system = request["messages"][0]["content"]
                .as_str()
                .unwrap_or_default();
            if system.contains(ROUTER) {
                assert!(system.contains("- reservasi: The customer wants to reserve a table"));
                json!({"flow": "reservasi"}).to_string()
            } else {
                json!({"reply": "Maksudnya bagaimana, Kak?", "action": "clarify", "citations": []})
                    .to_string()
            }
        })
    };
    let fake = FakeOpenAi::start((0..6).map(|_| reply())).await;
    let app = spawn_app(&fake.config("stream = false")).await;
    let session = app.session("demo").await;
    // No keyword of any flow ("pesan meja", "reservasi", …) is in it.
    let new = say(
        &app,
        &session,
        "i-1",
        "bisa siapkan tempat buat lima orang besok malam?",
        1,
    )
    .await;
    assert_eq!(
        new,
        vec!["Mau reservasi di outlet mana, Kak?"],
        "{:?}",
        fake.requests()
    );
    let routed = fake
        .requests()
        .iter()
        .filter(|r| {
            r["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .contains(ROUTER)
        })
        .count();
    assert_eq!(routed, 1);
    // The flow runs on from there.
    let new = say(&app, &session, "i-2", "Kemang", 2).await;
    assert!(new[0].starts_with("Untuk kapan?"), "{new:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_answering_model_can_start_a_flow_instead_of_answering_in_the_same_call() {
    use sapa_tests::fake_openai::{FakeOpenAi, Reply};
    // The answer request lists the flows; the model picks one. A mid-flow knowledge question
    // is not offered flows again.
    let reply = || {
        Reply::computed(|request| {
            let system = request["messages"][0]["content"]
                .as_str()
                .unwrap_or_default();
            if system.contains("  - reservasi: The customer wants to reserve a table") {
                assert!(system.contains("  - cek-pesanan: The customer wants to know the status"));
                json!({"reply": "", "action": "flow", "flow": "reservasi", "citations": [], })
                    .to_string()
            } else {
                json!({"reply": "Maksudnya bagaimana, Kak?", "action": "clarify", "citations": []})
                    .to_string()
            }
        })
    };
    let fake = FakeOpenAi::start((0..6).map(|_| reply())).await;
    let app = spawn_app(&fake.config("stream = false")).await;
    let session = app.session("demo").await;
    // A question the knowledge base has passages for (the meeting room), no flow keyword.
    let new = say(
        &app,
        &session,
        "m-1",
        "mau pakai ruang meeting di Tebet buat 10 orang besok, bisa?",
        1,
    )
    .await;
    assert_eq!(
        new,
        vec!["Mau reservasi di outlet mana, Kak?"],
        "{:?}",
        fake.requests()
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "one model call: no router after it"
    );
    // Mid-flow, a knowledge question goes to the model without the flow list.
    let new = say(&app, &session, "m-2", "bisa bayar pakai QRIS?", 2).await;
    assert!(!new.is_empty());
    let last = fake.requests().last().cloned().unwrap_or_default();
    let system = last["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(
        !system.contains("guided flows") && !system.contains("alur terpandu"),
        "{system}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_customer_who_goes_quiet_mid_flow_gets_one_reminder() {
    let app = spawn_app("[demo.follow_up]\nafter = \"2s\"\nquiet_hours = \"off\"\n").await;
    let session = app.session("demo").await;
    say(&app, &session, "q-1", "reservasi", 1).await;
    let bots = app.bot_messages(&session, 2).await;
    assert!(
        texts(&bots)[1].starts_with("Kak, kita belum selesai tadi."),
        "{:?}",
        texts(&bots)
    );
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 2).await.len(), 2, "once");
    // The run waited meanwhile: the answer goes on with the flow.
    let new = say(&app, &session, "q-2", "Kemang", 3).await;
    assert!(new[0].starts_with("Untuk kapan?"), "{new:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_schedule_follow_up_step_sends_its_own_text_later() {
    let app = spawn_app(&shop_config(true)).await;
    let key = api_key(&app, "shop", &[gateway::api_key::Scope::Flows]).await;
    let flow = "name: janji\ndescription: Remind me later.\ntriggers:\n  keywords: [ingatkan saya]\nsteps:\n  \
        - schedule_follow_up:\n      after: 2s\n      text:\n        id: Ini pengingatnya, Kak.\n        en: Here is your reminder.\n  \
        - say:\n      text:\n        id: Siap, nanti saya ingatkan.\n        en: Sure, I will remind you.\n  - end\n";
    assert_eq!(put_flow(&app, &key, "janji", flow).await.status(), 201);
    let session = app.session("shop").await;
    let new = say(&app, &session, "j-1", "tolong ingatkan saya", 1).await;
    assert_eq!(new, vec!["Siap, nanti saya ingatkan."]);
    let bots = app.bot_messages(&session, 2).await;
    assert_eq!(bots[1]["text"], "Ini pengingatnya, Kak.");
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 2).await.len(), 2, "once");
    app.stop().await;
}
