//! Language model answers through a fake OpenAI-compatible server speaking the real wire
//! protocol (JSON and SSE), configured through `llm.base_url`.

use std::time::Duration;

use futures::StreamExt;
use gateway::config::DatabaseTarget;
use gateway::store::Store;
use sapa_tests::fake_openai::{FakeOpenAi, Reply, chunk_containing};
use sapa_tests::{Session, TestApp, eventually, spawn_app};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const HOURS_QUESTION: &str = "jam buka outlet Blok M hari Minggu?";
const HOURS: &str = "08.00–23.00";

/// A model answer citing the passage that states the Sunday hours.
fn hours_answer(reply: &'static str) -> Reply {
    Reply::computed(move |request| {
        let id = chunk_containing(request, HOURS).unwrap_or_else(|| "missing".into());
        json!({"reply": reply, "action": "answer", "citations": [id]}).to_string()
    })
}

async fn store_of(app: &TestApp) -> Store {
    Store::connect(
        &DatabaseTarget::Sqlite(app.data_dir.path().join("sapa.db")),
        1,
    )
    .await
    .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    app.client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn ask(app: &TestApp, id: &str, text: &str) -> (Session, Vec<Value>) {
    let session = app.session("demo").await;
    assert_eq!(app.post(&session, id, text).await.status(), 202);
    let bots = app.bot_messages(&session, 1).await;
    (session, bots)
}

#[tokio::test]
async fn the_prompt_contains_retrieved_chunks_and_the_answer_cites_them() {
    let fake = FakeOpenAi::start([hours_answer(
        "Outlet Blok M buka hari Minggu pukul 08.00–23.00, Kak.",
    )])
    .await;
    let config = fake.config("stream = false")
        + "[tenants.demo]\nname = \"Kopi Nusantara\"\nlocale = \"id\"\ninstructions = \"Panggil pelanggan dengan sebutan Kak.\"\n";
    let app = spawn_app(&config).await;
    let (_, bots) = ask(&app, "p-1", HOURS_QUESTION).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["model"], "fake-model");
    assert_eq!(request["response_format"]["type"], "json_object");
    let system = request["messages"][0]["content"].as_str().unwrap();
    assert_eq!(request["messages"][0]["role"], "system");
    assert!(system.contains("Kopi Nusantara"), "{system}");
    assert!(
        system.contains("Panggil pelanggan dengan sebutan Kak."),
        "owner instructions missing: {system}"
    );
    let user = request["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains(HOURS), "retrieved chunk missing: {user}");
    assert!(user.contains(HOURS_QUESTION), "{user}");
    let cited = chunk_containing(request, HOURS).unwrap();
    assert_eq!(
        bots[0]["text"],
        "Outlet Blok M buka hari Minggu pukul 08.00–23.00, Kak."
    );
    assert_eq!(bots[0]["citations"], json!([cited]));
    assert_eq!(bots[0]["in_reply_to"], json!(["p-1"]));
    app.stop().await;
}

#[tokio::test]
async fn streamed_deltas_reach_the_websocket_before_the_final_message() {
    let reply = "Hari Minggu outlet Blok M buka pukul 08.00–23.00. Sampai jumpa, Kak!";
    let fake =
        FakeOpenAi::start([hours_answer(reply).chunk_delay(Duration::from_millis(20))]).await;
    let app = spawn_app(&fake.config("")).await;
    let session = app.session("demo").await;
    let ws_url = format!(
        "{}/v1/webchat/ws?token={}",
        app.address.replacen("http", "ws", 1),
        session.token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    app.post(&session, "s-1", HOURS_QUESTION).await;
    let mut streamed = String::new();
    let mut deltas = 0;
    let final_message = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let event: Value = serde_json::from_str(&text).unwrap();
        match event["type"].as_str().unwrap() {
            "delta" => {
                deltas += 1;
                streamed.push_str(event["text"].as_str().unwrap());
            }
            "stream_discarded" => panic!("a valid answer was discarded"),
            "message" if event["message"]["author"] == "bot" => break event["message"].clone(),
            _ => {}
        }
    };
    assert!(deltas >= 3, "expected several deltas, got {deltas}");
    assert_eq!(streamed, reply, "the deltas spell the reply, not the JSON");
    assert_eq!(final_message["text"], reply);
    assert_eq!(fake.requests()[0]["stream"], true);
    app.stop().await;
}

#[tokio::test]
async fn token_usage_is_recorded_per_tenant_and_conversation() {
    let fake = FakeOpenAi::start([
        hours_answer("Buka 08.00–23.00, Kak.").usage(1234, 56),
        hours_answer("Hari Minggu buka 08.00–23.00.").usage(1000, 40),
    ])
    .await;
    let app = spawn_app(&fake.config("")).await;
    let (first, _) = ask(&app, "u-1", HOURS_QUESTION).await;
    let (second, _) = ask(&app, "u-2", HOURS_QUESTION).await;
    let store = store_of(&app).await;
    let usage = store.llm_usage("demo").await.unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    let of = |conversation: &str| {
        usage
            .iter()
            .find(|u| u.conversation_id == conversation)
            .unwrap()
            .clone()
    };
    let a = of(&first.conversation_id);
    assert_eq!(
        (a.model.as_str(), a.prompt_tokens, a.completion_tokens),
        ("fake-model", 1234, 56)
    );
    let b = of(&second.conversation_id);
    assert_eq!((b.prompt_tokens, b.completion_tokens), (1000, 40));
    assert!(store.llm_usage("other-tenant").await.unwrap().is_empty());
    let text = metrics(&app).await;
    assert!(
        text.lines().any(|l| l.starts_with("sapa_llm_tokens_total")
            && l.contains("kind=\"prompt\"")
            && !l.ends_with(" 0")),
        "{text}"
    );
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_and_then_answered() {
    let fake = FakeOpenAi::start([
        Reply::status(429),
        Reply::status(503),
        hours_answer("Minggu buka 08.00–23.00, Kak."),
    ])
    .await;
    let app = spawn_app(&fake.config("")).await;
    let (_, bots) = ask(&app, "r-1", HOURS_QUESTION).await;
    assert_eq!(bots[0]["text"], "Minggu buka 08.00–23.00, Kak.");
    assert_eq!(fake.requests().len(), 3);
    let text = metrics(&app).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("sapa_llm_requests_total")
                && l.contains("outcome=\"retry\"")
                && !l.ends_with(" 0")),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_timeout_produces_the_polite_fallback() {
    let fake = FakeOpenAi::start([
        hours_answer("Buka 08.00–23.00 (terlambat)").delayed(Duration::from_secs(3))
    ])
    .await;
    let app = spawn_app(&fake.config("timeout = \"400ms\"")).await;
    let started = tokio::time::Instant::now();
    let (session, bots) = ask(&app, "t-1", HOURS_QUESTION).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not a hard timeout"
    );
    assert!(
        bots[0]["text"]
            .as_str()
            .unwrap()
            .starts_with(flows::texts::llm_unavailable(flows::Locale::Id))
    );
    assert!(!bots[0]["text"].as_str().unwrap().contains("terlambat"));
    // The conversation went to a human.
    let store = store_of(&app).await;
    let state = store
        .conversation_state("demo", &session.conversation_id)
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("waiting_human"));
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn malformed_model_output_is_never_sent() {
    let fake = FakeOpenAi::start([
        Reply::content("Tentu! Es kopi susu cuma Rp 9.000 hari ini"),
        Reply::content("{\"reply\": \"Kami buka 24 jam\", \"action\": \"answer\", \"citations\": [\"made-up:0\"]}"),
    ])
    .await;
    let app = spawn_app(&fake.config("")).await;
    let session = app.session("demo").await;
    let ws_url = format!(
        "{}/v1/webchat/ws?token={}",
        app.address.replacen("http", "ws", 1),
        session.token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    app.post(&session, "m-1", HOURS_QUESTION).await;
    let bots = app.bot_messages(&session, 1).await;
    // The passages answer the question: the rejected output is replaced by their quote.
    let quoted = bots[0]["text"].as_str().unwrap();
    assert!(quoted.contains(HOURS), "{quoted}");
    // The streamed (invalid) output was withdrawn from the browser.
    let mut discarded = false;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_secs(5), socket.next()).await
    {
        let Message::Text(text) = frame else { continue };
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["type"] == "stream_discarded" {
            discarded = true;
        }
        if event["type"] == "message" && event["message"]["author"] == "bot" {
            break;
        }
    }
    assert!(discarded, "no stream_discarded event");
    app.post(&session, "m-2", HOURS_QUESTION).await;
    let bots = app.bot_messages(&session, 2).await;
    // A made-up citation is rejected too, and answered from the passages again.
    assert!(
        bots[1]["text"].as_str().unwrap().contains(HOURS),
        "{}",
        bots[1]
    );
    for message in app.messages(&session).await {
        let text = message["text"].as_str().unwrap();
        assert!(
            !text.contains("9.000") && !text.contains("24 jam"),
            "{text}"
        );
    }
    // Answered from the passages, so not listed as unanswered.
    let store = store_of(&app).await;
    assert!(
        store
            .unanswered_questions("demo", 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn an_invented_price_is_rejected_and_the_passage_answers_instead() {
    let fake = FakeOpenAi::start([Reply::computed(|request| {
        let id = chunk_containing(request, "Kopi Susu Gula Aren").unwrap_or_default();
        json!({"reply": "Kopi Susu Gula Aren harganya Rp 12.500 saja, Kak.", "action": "answer", "citations": [id]}).to_string()
    })])
    .await;
    let app = spawn_app(&fake.config("stream = false")).await;
    let (session, bots) = ask(&app, "i-1", "berapa harga kopi susu gula aren?").await;
    let prompt = fake.requests()[0]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.contains("Kopi Susu Gula Aren"), "{prompt}");
    assert!(
        !prompt.contains("12.500"),
        "the test price must not be in the menu"
    );
    // Not a clarifying question: the price is in the knowledge base, so its row is quoted.
    let text = bots[0]["text"].as_str().unwrap();
    assert!(text.contains("> Kopi Susu Gula Aren — Rp 22.000"), "{text}");
    assert!(!text.contains('|'), "no table syntax: {text}");
    let all = app.messages(&session).await;
    assert!(
        all.iter()
            .all(|m| !m["text"].as_str().unwrap().contains("12.500")),
        "{all:#?}"
    );
    let _ = eventually(Duration::from_secs(5), || async {
        metrics(&app)
            .await
            .lines()
            .any(|l| {
                l.starts_with("sapa_answers_total")
                    && l.contains("kind=\"llm_rejected\"")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_follow_up_question_reaches_the_model_with_the_conversation_so_far() {
    let fake = FakeOpenAi::start([
        hours_answer("Outlet Blok M buka hari Minggu pukul 08.00–23.00, Kak."),
        hours_answer("Hari Senin outlet Blok M buka pukul 07.00–22.00, Kak."),
    ])
    .await;
    let app = spawn_app(&fake.config("stream = false")).await;
    let session = app.session("demo").await;
    assert_eq!(
        app.post(&session, "h-1", HOURS_QUESTION).await.status(),
        202
    );
    app.bot_messages(&session, 1).await;
    let follow_up = "kalau hari Senin jam buka outlet Blok M?";
    assert_eq!(app.post(&session, "h-2", follow_up).await.status(), 202);
    let bots = app.bot_messages(&session, 2).await;
    assert_eq!(
        bots[1]["text"],
        "Hari Senin outlet Blok M buka pukul 07.00–22.00, Kak."
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let first = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(!first.contains("Percakapan sebelumnya"), "{first}");
    let second = requests[1]["messages"][1]["content"].as_str().unwrap();
    assert!(second.contains("Percakapan sebelumnya"), "{second}");
    assert!(
        second.contains(&format!("Pelanggan: {HOURS_QUESTION}")),
        "{second}"
    );
    assert!(
        second.contains("Asisten: Outlet Blok M buka hari Minggu pukul 08.00–23.00, Kak."),
        "{second}"
    );
    // The current question is the question, not history.
    assert!(
        !second.contains(&format!("Pelanggan: {follow_up}")),
        "{second}"
    );
    app.stop().await;
}

/// Collects the web chat events of `socket` until the bot's message arrives.
async fn events_until_bot_message(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let event: Value = serde_json::from_str(&text).unwrap();
        let done = event["type"] == "message" && event["message"]["author"] == "bot";
        events.push(event);
        if done {
            return events;
        }
    }
}

fn deltas(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "delta")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_widget_never_receives_an_unvalidated_price_or_link() {
    let fake = FakeOpenAi::start([
        Reply::computed(|request| {
            let id = chunk_containing(request, "Kopi Susu Gula Aren").unwrap_or_default();
            json!({"reply": "Kopi Susu Gula Aren harganya Rp 12.500 saja, diskon 50% di https://promo.example/kopi ya Kak.", "action": "answer", "citations": [id]}).to_string()
        })
        .chunk_delay(Duration::from_millis(10)),
        Reply::computed(|request| {
            let id = chunk_containing(request, "Kopi Susu Gula Aren").unwrap_or_default();
            json!({"reply": "Kopi Susu Gula Aren harganya Rp 22.000 ya Kak, selamat menikmati.", "action": "answer", "citations": [id]}).to_string()
        })
        .chunk_delay(Duration::from_millis(10)),
    ])
    .await;
    let app = spawn_app(&fake.config("")).await;
    let session = app.session("demo").await;
    let ws_url = format!(
        "{}/v1/webchat/ws?token={}",
        app.address.replacen("http", "ws", 1),
        session.token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    app.post(&session, "v-1", "berapa harga kopi susu gula aren?")
        .await;
    let events = events_until_bot_message(&mut socket).await;
    let shown = deltas(&events).concat();
    assert_eq!(shown, "Kopi Susu Gula Aren harganya ", "{events:#?}");
    assert!(
        events.iter().any(|e| e["type"] == "stream_discarded"),
        "{events:#?}"
    );
    // A valid answer: the safe words stream, the price follows once validated.
    app.post(&session, "v-2", "berapa harga kopi susu gula aren?")
        .await;
    let events = events_until_bot_message(&mut socket).await;
    let parts = deltas(&events);
    let reply = "Kopi Susu Gula Aren harganya Rp 22.000 ya Kak, selamat menikmati.";
    assert_eq!(parts.concat(), reply, "{events:#?}");
    assert!(parts.len() >= 2, "{parts:?}");
    let first_with_price = parts.iter().position(|p| p.contains("22.000")).unwrap();
    assert_eq!(
        first_with_price,
        parts.len() - 1,
        "the price comes last, validated"
    );
    assert!(!events.iter().any(|e| e["type"] == "stream_discarded"));
    app.stop().await;
}

#[tokio::test]
async fn a_spent_daily_budget_answers_extractively_without_the_model() {
    let fake = FakeOpenAi::start([hours_answer("Buka 08.00–23.00, Kak.").usage(300, 50)]).await;
    let app = spawn_app(&fake.config("stream = false\ndaily_tokens_per_tenant = 200")).await;
    let (_, bots) = ask(&app, "b-1", HOURS_QUESTION).await;
    assert_eq!(bots[0]["text"], "Buka 08.00–23.00, Kak.");
    let (_, bots) = ask(&app, "b-2", HOURS_QUESTION).await;
    let text = bots[0]["text"].as_str().unwrap();
    assert!(text.starts_with("Berikut informasi dari"), "{text}");
    assert!(text.contains(HOURS), "{text}");
    assert_eq!(fake.requests().len(), 1, "the model was not called again");
    let _ = eventually(Duration::from_secs(5), || async {
        metrics(&app)
            .await
            .lines()
            .any(|l| {
                l.starts_with("sapa_llm_budget_exhausted_total")
                    && l.contains("tenant=\"demo\"")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_flood_is_answered_from_its_latest_messages_within_the_prompt_limit() {
    let fake = FakeOpenAi::start([hours_answer("Buka 08.00–23.00, Kak.")]).await;
    let config = fake.config("stream = false\nmax_prompt_tokens = 600\nhistory_messages = 0")
        + "[conversation]\ndebounce = \"1500ms\"\ndebounce_max = \"5s\"\nmax_turn_messages = 3\nmax_turn_chars = 200\n";
    let app = spawn_app(&config).await;
    let session = app.session("demo").await;
    for i in 0..6 {
        let text = if i == 5 {
            HOURS_QUESTION.to_owned()
        } else {
            format!("pesan nomor {i} {}", "bla ".repeat(60))
        };
        assert_eq!(
            app.post(&session, &format!("f-{i}"), &text).await.status(),
            202
        );
    }
    let bots = app.bot_messages(&session, 1).await;
    assert_eq!(bots.len(), 1, "one answer for the whole flood");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let user = requests[0]["messages"][1]["content"].as_str().unwrap();
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(user.contains(HOURS_QUESTION), "{user}");
    assert!(
        !user.contains("pesan nomor 0") && !user.contains("pesan nomor 2"),
        "{user}"
    );
    assert!(user.contains("pesan pelanggan yang lebih lama"), "{user}");
    let estimated = (user.chars().count() + system.chars().count()).div_ceil(4);
    assert!(estimated <= 600, "prompt of ~{estimated} tokens");
    // Every flood message is answered by the one reply.
    assert_eq!(bots[0]["in_reply_to"].as_array().unwrap().len(), 6);
    app.stop().await;
}

/// The "customer writes every 3 s" case at a tenth of the scale (real time: the store's pool
/// timeouts do not survive paused time): a message every 300 ms, a 200 ms debounce and
/// 1 s per model call, so every answer is overtaken by the next message.
#[tokio::test]
async fn a_customer_writing_every_few_seconds_gets_answers_after_bounded_restarts() {
    let replies = (0..60).map(|_| {
        hours_answer("Hari Minggu buka 08.00–23.00, Kak.").delayed(Duration::from_millis(1000))
    });
    let fake = FakeOpenAi::start(replies).await;
    let config = fake.config("stream = false\nmax_restarts = 2")
        + "[conversation]\ndebounce = \"200ms\"\ndebounce_max = \"2s\"\n"
        // Every batch goes to the model, however the questions pile up.
        + "[knowledge]\nmin_relevance = 0.0\n";
    let app = spawn_app(&config).await;
    let session = app.session("demo").await;
    let started = std::time::Instant::now();
    let mut first_answer_after = None;
    for i in 0..30 {
        let sent = std::time::Instant::now();
        assert_eq!(
            app.post(
                &session,
                &format!("c-{i}"),
                &format!("{HOURS_QUESTION} ({i})")
            )
            .await
            .status(),
            202
        );
        if first_answer_after.is_none()
            && app
                .messages(&session)
                .await
                .iter()
                .any(|m| m["author"] == "bot")
        {
            first_answer_after = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(300).saturating_sub(sent.elapsed())).await;
    }
    let first = first_answer_after.expect("answered while the customer kept writing");
    let answers = app
        .messages(&session)
        .await
        .iter()
        .filter(|m| m["author"] == "bot")
        .count();
    let calls = fake.requests().len();
    // At most 3 calls (2 restarts) of ~1.2 s each, with slack for a loaded machine.
    assert!(
        first <= Duration::from_secs(8),
        "first answer after {first:?}"
    );
    // Each answer cost at most max_restarts + 1 calls (+ one answer in flight).
    assert!(
        calls <= (answers + 1) * 3,
        "{calls} model calls for {answers} answers"
    );
    // Superseded calls were paid for too: they count against the tenant's budget (all but
    // the call still in flight).
    let store = store_of(&app).await;
    let recorded = store.llm_usage("demo").await.unwrap().len();
    assert!(
        recorded + 1 >= calls,
        "{recorded} usage rows for {calls} model calls"
    );
    store.close().await;
    app.stop().await;
}
