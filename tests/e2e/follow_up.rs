//! Follow-ups end to end: one nudge after the customer went quiet, on web chat, WhatsApp and
//! Telegram; deferred by quiet hours; stopped by opt-out, an agent, or the customer writing.

use std::time::{Duration, Instant};

use gateway::startup::Overrides;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::fake_telegram::FakeTelegram;
use sapa_tests::{
    TG_WEBHOOK_SECRET, TestApp, WA_APP_SECRET, eventually, spawn_app, spawn_app_with,
    telegram_config, wa_sends_to, wa_text, whatsapp_config,
};
use serde_json::{Value, json};

use crate::console::{add_member, add_staff, get, log_in, post, put};

/// The demo tenant's follow-up after 2 s, at any hour.
const FAST_DEMO: &str = "[demo.follow_up]\nafter = \"2s\"\nquiet_hours = \"off\"\n";
/// The same for a declared `[tenants.demo]` (WhatsApp, Telegram).
const FAST_TENANT: &str = "[tenants.demo.follow_up]\nafter = \"2s\"\nquiet_hours = \"off\"\n";
const QUESTION: &str = "jam buka outlet Blok M hari Minggu?";
const FOLLOW_UP_ID: &str = "Ada lagi yang bisa kami bantu?";

async fn follow_ups(app: &TestApp, conversation: &str) -> Vec<gateway::store::FollowUpRow> {
    let store = app.store().await;
    let rows = store.follow_ups_of("demo", conversation).await.unwrap();
    store.close().await;
    rows
}

/// Waits (bounded) until the conversation's follow-ups are exactly `expected` (state, reason).
async fn wait_follow_ups(app: &TestApp, conversation: &str, expected: &[(&str, Option<&str>)]) {
    let expected: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(s, r)| ((*s).to_owned(), r.map(str::to_owned)))
        .collect();
    eventually(Duration::from_secs(20), || async {
        let rows: Vec<(String, Option<String>)> = follow_ups(app, conversation)
            .await
            .into_iter()
            .map(|r| (r.state, r.reason))
            .collect();
        (rows == expected).then_some(())
    })
    .await;
}

fn texts(bots: &[Value]) -> Vec<String> {
    bots.iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn web_chat_follow_up_arrives_once_after_the_quiet_time() {
    let app = spawn_app(FAST_DEMO).await;
    let session = app.session("demo").await;
    let asked = Instant::now();
    app.post(&session, "q-1", QUESTION).await;
    app.bot_messages(&session, 1).await;
    let bots = app.bot_messages(&session, 2).await;
    assert!(asked.elapsed() >= Duration::from_secs(2), "not before 2 s");
    assert_eq!(bots[1]["text"], FOLLOW_UP_ID);
    // Exactly once: it is sent, nothing else is pending, and nothing more arrives.
    wait_follow_ups(&app, &session.conversation_id, &[("sent", None)]).await;
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn follow_up_due_in_quiet_hours_waits_for_the_end_of_the_window() {
    // Quiet hours from one hour ago to two hours from now, Jakarta time.
    let now_ms = gateway::store::now_ms();
    let minute_of_day = |ms: i64| ((ms / 60_000 + 7 * 60) % (24 * 60)) as u16;
    let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let start = minute_of_day(now_ms - 3_600_000);
    let end = minute_of_day(now_ms + 7_200_000);
    let window = format!("{}-{}", clock(start), clock(end));
    let app = spawn_app(&format!(
        "[demo.follow_up]\nafter = \"1s\"\nquiet_hours = \"{window}\"\n"
    ))
    .await;
    let session = app.session("demo").await;
    app.post(&session, "q-1", QUESTION).await;
    app.bot_messages(&session, 1).await;
    let rows = eventually(Duration::from_secs(10), || async {
        let rows = follow_ups(&app, &session.conversation_id).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].state.as_str()),
        ("quiet", "pending")
    );
    // Due when the window ends: within its last minute... two hours from now.
    let due_in = rows[0].due_at - gateway::store::now_ms();
    assert!(
        (7_000_000..=7_260_000).contains(&due_in),
        "due in {due_in} ms, window {window}"
    );
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn opt_out_stops_follow_ups_until_the_customer_says_mulai() {
    let app = spawn_app(FAST_DEMO).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, _) = log_in(&app, "demo", "budi@demo.local").await;
    let session = app.session("demo").await;
    let id = session.conversation_id.clone();

    app.post(&session, "s-1", "STOP").await;
    let bots = app.bot_messages(&session, 1).await;
    assert!(
        bots[0]["text"]
            .as_str()
            .unwrap()
            .contains("tidak akan mengirim pesan tindak lanjut")
    );
    // Neither an answer nor a handoff.
    let detail: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["conversation"]["state"], "bot", "{detail}");
    assert_eq!(detail["contact"]["follow_up_opt_out"], true, "{detail}");

    app.post(&session, "q-1", QUESTION).await;
    app.bot_messages(&session, 2).await;
    wait_follow_ups(&app, &id, &[("skipped", Some("opted_out"))]).await;
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 2).await.len(), 2);

    app.post(&session, "m-1", "mulai").await;
    let bots = app.bot_messages(&session, 3).await;
    assert!(bots[2]["text"].as_str().unwrap().contains("aktif kembali"));
    let detail: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["contact"]["follow_up_opt_out"], false, "{detail}");
    app.post(&session, "q-2", QUESTION).await;
    let bots = app.bot_messages(&session, 5).await;
    assert_eq!(bots[4]["text"], FOLLOW_UP_ID, "{:?}", texts(&bots));
    app.stop().await;
}

#[tokio::test]
async fn an_agent_taking_over_cancels_the_follow_up() {
    let app = spawn_app(FAST_DEMO).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let session = app.session("demo").await;
    let id = session.conversation_id.clone();
    app.post(&session, "q-1", QUESTION).await;
    app.bot_messages(&session, 1).await;
    let claimed = post(
        &app,
        &format!("/v1/console/conversations/{id}/claim"),
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(claimed.status(), 200);
    wait_follow_ups(&app, &id, &[("skipped", Some("handed_off"))]).await;
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_customer_writing_again_reschedules_the_follow_up() {
    let app = spawn_app("[demo.follow_up]\nafter = \"3s\"\nquiet_hours = \"off\"\n").await;
    let session = app.session("demo").await;
    let id = session.conversation_id.clone();
    app.post(&session, "q-1", QUESTION).await;
    app.bot_messages(&session, 1).await;
    app.post(&session, "q-2", "berapa harga kopi susu gula aren?")
        .await;
    app.bot_messages(&session, 2).await;
    let bots = app.bot_messages(&session, 3).await;
    assert_eq!(bots[2]["text"], FOLLOW_UP_ID, "{:?}", texts(&bots));
    wait_follow_ups(&app, &id, &[("sent", None)]).await;
    // One row, moved by the second answer (not one per answer).
    assert_eq!(follow_ups(&app, &id).await[0].reschedules, 1);
    app.settled().await;
    assert_eq!(app.bot_messages(&session, 3).await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_follow_up_is_free_text_inside_the_window_and_a_template_outside() {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}[tenants.demo.follow_up]\nafter = \"3s\"\nquiet_hours = \"off\"\n",
        whatsapp_config(&graph.base_url, "reengagement_template = \"kabar_baru\"\n")
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;

    // Inside the 24-hour window: the text.
    let open = "6281311110001";
    app.whatsapp_post(&wa_text("wamid.F1", open, QUESTION), WA_APP_SECRET)
        .await;
    let sends = wa_sends_to(&graph, open, 2).await;
    assert_eq!(sends[1]["type"], "text", "{sends:?}");
    assert_eq!(sends[1]["text"]["body"], FOLLOW_UP_ID);

    // The customer last wrote 25 hours ago: the re-engagement template.
    let closed = "6281311110002";
    app.whatsapp_post(&wa_text("wamid.F2", closed, QUESTION), WA_APP_SECRET)
        .await;
    wa_sends_to(&graph, closed, 1).await;
    let store = app.store().await;
    sqlx::query("UPDATE conversations SET last_inbound_at = last_inbound_at - 90000000 WHERE id IN (SELECT c.id FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.external_id = $1)")
        .bind(closed)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let sends = wa_sends_to(&graph, closed, 2).await;
    assert_eq!(sends[1]["type"], "template", "{sends:?}");
    assert_eq!(sends[1]["template"]["name"], "kabar_baru");
    app.settled().await;
    assert_eq!(wa_sends_to(&graph, open, 2).await.len(), 2);
    assert_eq!(wa_sends_to(&graph, closed, 2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_follow_up_outside_the_window_without_a_template_is_skipped() {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}[tenants.demo.follow_up]\nafter = \"3s\"\nquiet_hours = \"off\"\n",
        whatsapp_config(&graph.base_url, "")
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let closed = "6281311110003";
    app.whatsapp_post(&wa_text("wamid.F3", closed, QUESTION), WA_APP_SECRET)
        .await;
    wa_sends_to(&graph, closed, 1).await;
    let store = app.store().await;
    let conversation: String = sqlx::query_scalar("SELECT c.id FROM conversations c JOIN contacts k ON k.id = c.contact_id WHERE k.external_id = $1")
        .bind(closed)
        .fetch_one(store.pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE conversations SET last_inbound_at = last_inbound_at - 90000000 WHERE id = $1",
    )
    .bind(&conversation)
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    wait_follow_ups(
        &app,
        &conversation,
        &[("skipped", Some("whatsapp_window_closed"))],
    )
    .await;
    app.settled().await;
    assert_eq!(wa_sends_to(&graph, closed, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn telegram_follow_up_arrives_once() {
    let fake = FakeTelegram::start().await;
    let config = format!("{}{FAST_TENANT}", telegram_config(&fake.base_url, ""));
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let update = json!({"update_id": 1, "message": {
        "message_id": 1, "date": 1_763_792_000, "text": QUESTION,
        "from": {"id": 777, "is_bot": false, "first_name": "Dewi", "language_code": "id"},
        "chat": {"id": 777, "first_name": "Dewi", "type": "private"}}});
    let response = app
        .telegram_post(
            &serde_json::to_vec(&update).unwrap(),
            Some(TG_WEBHOOK_SECRET),
        )
        .await;
    assert_eq!(response.status(), 200);
    let sends = eventually(Duration::from_secs(20), || async {
        let calls = fake.calls_of("sendMessage");
        (calls.len() >= 2).then_some(calls)
    })
    .await;
    assert_eq!(sends[1].body["text"], FOLLOW_UP_ID);
    assert_eq!(sends[1].body["chat_id"], 777);
    app.settled().await;
    assert_eq!(fake.calls_of("sendMessage").len(), 2);
    app.stop().await;
}

const CRASH_FOLLOW_UPS: usize = 500;

async fn count(store: &gateway::store::Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap_or(0)
}

async fn open_store(dir: &std::path::Path) -> gateway::store::Store {
    gateway::store::Store::connect(
        &gateway::config::DatabaseTarget::Sqlite(dir.join("sapa.db")),
        2,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_due_follow_ups_are_each_sent_exactly_once_across_sigkills() {
    use crate::process::ServerProcess;
    // Arrange: 500 web chat conversations, each with a follow-up due now.
    let dir = tempfile::tempdir().unwrap();
    let envs = [("SAPA_DEMO__FOLLOW_UP__QUIET_HOURS", "off")];
    let server = ServerProcess::start(dir.path(), &envs).await;
    let client = reqwest::Client::new();
    for _ in 0..CRASH_FOLLOW_UPS {
        sapa_tests::create_session(&client, &server.address, "demo").await;
    }
    server.kill().await;
    let store = open_store(dir.path()).await;
    sqlx::query(
        "INSERT INTO follow_ups (tenant_id, conversation_id, contact_id, kind, due_at, text, state, created_at, updated_at) \
         SELECT tenant_id, id, contact_id, 'scheduled', 0, $1, 'pending', 0, 0 FROM conversations WHERE tenant_id = 'demo'",
    )
    .bind(FOLLOW_UP_ID)
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM follow_ups WHERE state = 'pending'"
        )
        .await,
        CRASH_FOLLOW_UPS as i64
    );

    // Act: SIGKILL as soon as follow-ups are being sent, and again while the dispatcher
    // delivers them; restart on the same data dir each time.
    let mut server = ServerProcess::start(dir.path(), &envs).await;
    for probe in [
        "SELECT COUNT(*) FROM follow_ups WHERE state <> 'pending'",
        "SELECT COUNT(*) FROM outbox WHERE state = 'sent'",
    ] {
        eventually(Duration::from_secs(60), || async {
            (count(&store, probe).await > 0).then_some(())
        })
        .await;
        server.kill().await;
        let decided = count(
            &store,
            "SELECT COUNT(*) FROM follow_ups WHERE state <> 'pending'",
        )
        .await;
        let delivered = count(&store, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'").await;
        eprintln!("SIGKILL with {decided} follow-ups decided, {delivered} delivered");
        server = ServerProcess::start(dir.path(), &envs).await;
    }

    // Assert: every follow-up sent, each conversation got exactly one bot message and one
    // delivered outbox row.
    eventually(Duration::from_secs(120), || async {
        let pending = count(
            &store,
            "SELECT COUNT(*) FROM follow_ups WHERE state = 'pending'",
        )
        .await;
        let unsent = count(
            &store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
        )
        .await;
        (pending == 0 && unsent == 0).then_some(())
    })
    .await;
    sapa_tests::settled(&client, &server.admin_address).await;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM follow_ups WHERE state = 'sent'"
        )
        .await,
        CRASH_FOLLOW_UPS as i64
    );
    let per_conversation: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.id, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.author = 'bot') \
         FROM conversations c WHERE c.tenant_id = 'demo'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(per_conversation.len(), CRASH_FOLLOW_UPS);
    for (conversation, bots) in &per_conversation {
        assert_eq!(
            *bots, 1,
            "conversation {conversation}: one follow-up message"
        );
    }
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND priority = -1"
        )
        .await,
        CRASH_FOLLOW_UPS as i64
    );
    eprintln!("crash test: {CRASH_FOLLOW_UPS} follow-ups, 2 SIGKILLs, each sent exactly once");
    store.close().await;
    server.kill().await;
}

#[tokio::test]
async fn follow_up_rules_published_in_the_console_replace_the_config_file_s() {
    // sapa.toml says 2 h; the owner publishes 2 s with a text of their own.
    let app = spawn_app("").await;
    add_member(&app, "demo", "pemilik@demo.local", "owner", None).await;
    let (owner, csrf) = log_in(&app, "demo", "pemilik@demo.local").await;
    let mut draft: Value = get(&app, "/v1/console/bot/draft", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(draft["follow_up"], Value::Null, "{draft}");
    draft["follow_up"] =
        json!({"after": "soon", "quiet_hours": "off", "max_per_week": 2, "text": ""});
    let bad = put(&app, "/v1/console/bot/draft", &draft, &owner, &csrf).await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("follow_up.after"));
    draft["follow_up"] = json!({"after": "2s", "quiet_hours": "off", "max_per_week": 2,
        "text": "Kak, masih ada yang ingin ditanyakan?"});
    assert_eq!(
        put(&app, "/v1/console/bot/draft", &draft, &owner, &csrf)
            .await
            .status(),
        200
    );
    let published = post(
        &app,
        "/v1/console/bot/publish",
        &json!({}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(published.status(), 200);
    let session = app.session("demo").await;
    app.post(&session, "q-1", QUESTION).await;
    let bots = app.bot_messages(&session, 2).await;
    assert_eq!(bots[1]["text"], "Kak, masih ada yang ingin ditanyakan?");
    wait_follow_ups(&app, &session.conversation_id, &[("sent", None)]).await;
    app.stop().await;
}
