//! Telegram Bot API channel end to end: updates in over the webhook (or long polling), answers
//! out to a fake Bot API over HTTP.

use std::time::Duration;

use gateway::startup::Overrides;
use sapa_tests::fake_openai::{FakeOpenAi, Reply, chunk_containing};
use sapa_tests::fake_telegram::{BOT_ID, BOT_TOKEN, FakeTelegram, TelegramCall};
use sapa_tests::{
    TG_WEBHOOK_SECRET, TestApp, eventually, spawn_app_with, telegram_config, tg_fixture,
};
use serde_json::{Value, json};

const CHAT: i64 = 5_123_456_789;
const HOURS_QUESTION: &str = "jam buka outlet Blok M hari Minggu?";
const HOURS: &str = "08.00–23.00";

async fn start(extra_telegram: &str, extra: &str) -> (TestApp, FakeTelegram) {
    let fake = FakeTelegram::start().await;
    let config = format!("{}{extra}", telegram_config(&fake.base_url, extra_telegram));
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    (app, fake)
}

async fn wait_calls(fake: &FakeTelegram, method: &str, n: usize) -> Vec<TelegramCall> {
    eventually(Duration::from_secs(20), || async {
        let calls = fake.calls_of(method);
        (calls.len() >= n).then_some(calls)
    })
    .await
}

/// A private-chat text update.
fn text_update(update_id: i64, chat: i64, message_id: i64, text: &str, lang: &str) -> Vec<u8> {
    serde_json::to_vec(&text_update_json(update_id, chat, message_id, text, lang)).unwrap()
}

fn text_update_json(update_id: i64, chat: i64, message_id: i64, text: &str, lang: &str) -> Value {
    let mut update = json!({"update_id": update_id, "message": {
        "message_id": message_id, "date": 1_763_792_000, "text": text,
        "from": {"id": chat, "is_bot": false, "first_name": "Dewi", "language_code": lang},
        "chat": {"id": chat, "first_name": "Dewi", "type": "private"}}});
    if text.starts_with('/') {
        let length = text
            .split_whitespace()
            .next()
            .unwrap_or(text)
            .encode_utf16()
            .count();
        update["message"]["entities"] =
            json!([{"offset": 0, "length": length, "type": "bot_command"}]);
    }
    update
}

async fn post_ok(app: &TestApp, body: &[u8]) {
    let response = app.telegram_post(body, Some(TG_WEBHOOK_SECRET)).await;
    assert_eq!(response.status(), 200);
}

async fn account_id(app: &TestApp) -> String {
    let store = app.store().await;
    let accounts = store
        .channel_accounts_of_kind(channels::ChannelKind::Telegram)
        .await
        .unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].external_id, BOT_ID.to_string());
    accounts[0].id.clone()
}

/// A model answer citing the passage with the Sunday hours.
fn hours_answer(reply: String) -> Reply {
    Reply::computed(move |request| {
        let id = chunk_containing(request, HOURS).unwrap_or_else(|| "missing".into());
        json!({"reply": reply, "action": "answer", "citations": [id]}).to_string()
    })
}

#[tokio::test]
async fn telegram_text_gets_a_knowledge_answer_as_escaped_html() {
    let llm = FakeOpenAi::start([hours_answer(format!(
        "Outlet Blok M buka hari Minggu {HOURS} & <b>ramai</b> -> datang pagi ya"
    ))])
    .await;
    let (app, fake) = start("", &llm.config("")).await;
    post_ok(&app, &text_update(1, CHAT, 10, HOURS_QUESTION, "id")).await;
    let sends = wait_calls(&fake, "sendMessage", 1).await;
    let send = &sends[0];
    assert_eq!(send.token, BOT_TOKEN);
    assert_eq!(send.body["chat_id"], CHAT);
    assert_eq!(send.body["parse_mode"], "HTML");
    assert_eq!(
        send.body["text"],
        format!(
            "Outlet Blok M buka hari Minggu {HOURS} &amp; &lt;b&gt;ramai&lt;/b&gt; -&gt; datang pagi ya"
        )
    );
    // The retrieved passage reached the model: the answer is knowledge-based.
    assert!(chunk_containing(&llm.requests()[0], HOURS).is_some());
    // Typing was shown while the answer was produced.
    let typing = fake.calls_of("sendChatAction");
    assert!(
        typing
            .iter()
            .any(|c| c.body["action"] == "typing" && c.body["chat_id"] == CHAT),
        "{typing:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_extractive_answer_is_html_with_a_blockquote_and_no_table_syntax() {
    let (app, fake) = start("", "").await;
    post_ok(
        &app,
        &text_update(1, CHAT, 10, "berapa harga kopi susu gula aren?", "id"),
    )
    .await;
    let sends = wait_calls(&fake, "sendMessage", 1).await;
    let text = sends[0].body["text"].as_str().unwrap();
    assert_eq!(sends[0].body["parse_mode"], "HTML");
    assert!(
        text.contains("<blockquote>Kopi Susu Gula Aren — Rp 22.000</blockquote>"),
        "{text}"
    );
    assert!(!text.contains('|') && !text.contains("&gt; "), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn telegram_start_greets_in_the_customers_language() {
    let (app, fake) = start("", "").await;
    post_ok(&app, &tg_fixture("message_start.json")).await;
    let english = 77_001;
    post_ok(&app, &text_update(2, english, 1, "/start", "en")).await;
    let sends = wait_calls(&fake, "sendMessage", 2).await;
    let text_to = |chat: i64| {
        sends
            .iter()
            .find(|c| c.body["chat_id"] == chat)
            .map(|c| c.body["text"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(text_to(CHAT), flows::texts::greeting(flows::Locale::Id));
    assert_eq!(text_to(english), flows::texts::greeting(flows::Locale::En));
    app.stop().await;
}

#[tokio::test]
async fn telegram_same_update_twice_is_answered_once() {
    let (app, fake) = start("", "").await;
    let body = tg_fixture("message_text.json");
    post_ok(&app, &body).await;
    post_ok(&app, &body).await;
    wait_calls(&fake, "sendMessage", 1).await;
    app.settled().await;
    post_ok(&app, &body).await;
    app.settled().await;
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn telegram_wrong_secret_is_refused_and_stores_nothing() {
    let (app, fake) = start("", "").await;
    let body = tg_fixture("message_text.json");
    let wrong = app.telegram_post(&body, Some("not-the-secret")).await;
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_secret");
    assert_eq!(app.telegram_post(&body, None).await.status(), 401);
    // An unknown bot id is refused the same way.
    let other = app
        .client
        .post(format!("{}/webhooks/telegram/123", app.address))
        .header("x-telegram-bot-api-secret-token", TG_WEBHOOK_SECRET)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    app.settled().await;
    let account = account_id(&app).await;
    let store = app.store().await;
    assert_eq!(
        store
            .inbound_text("demo", &account, "5123456789:101")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .contact_unreachable("demo", &account, "5123456789")
            .await
            .unwrap(),
        None
    );
    assert!(fake.calls_of("sendMessage").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn telegram_long_answer_arrives_as_two_messages_in_order() {
    let first = "Outlet Blok M buka hari Minggu. "
        .repeat(94)
        .trim()
        .to_owned();
    let second = "Datang pagi supaya tidak antre. "
        .repeat(63)
        .trim()
        .to_owned();
    let answer = format!("{first}\n\n{second}");
    assert!(answer.chars().count() >= 5000, "{}", answer.chars().count());
    let llm = FakeOpenAi::start([hours_answer(answer.clone())]).await;
    let (app, fake) = start("", &llm.config("")).await;
    post_ok(&app, &text_update(3, CHAT, 11, HOURS_QUESTION, "id")).await;
    wait_calls(&fake, "sendMessage", 2).await;
    app.settled().await;
    let sends: Vec<TelegramCall> = fake.calls_of("sendMessage");
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].body["text"], first);
    assert_eq!(sends[1].body["text"], second);
    assert!(sends[0].at <= sends[1].at);
    app.stop().await;
}

#[tokio::test]
async fn telegram_callback_query_is_answered_and_runs_the_flow() {
    let (app, fake) = start("", "").await;
    // Two questions the knowledge base cannot answer: clarify, then offer a human with a button.
    post_ok(&app, &text_update(4, CHAT, 20, "xqzv blorp wug", "id")).await;
    wait_calls(&fake, "sendMessage", 1).await;
    post_ok(&app, &text_update(5, CHAT, 21, "zzgrp vlox", "id")).await;
    let sends = wait_calls(&fake, "sendMessage", 2).await;
    let offer = &sends[1];
    let button = &offer.body["reply_markup"]["inline_keyboard"][0][0];
    assert_eq!(button["text"], "Hubungi admin");
    let data = button["callback_data"].as_str().unwrap().to_owned();
    assert!(data.len() <= 64);
    // The customer taps it.
    let callback = json!({"update_id": 6, "callback_query": {
        "id": "cbq-1", "chat_instance": "1", "data": data,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Dewi", "language_code": "id"},
        "message": {"message_id": 501, "date": 1, "text": offer.body["text"],
                    "chat": {"id": CHAT, "type": "private"},
                    "from": {"id": BOT_ID, "is_bot": true, "first_name": "Kopi"}}}});
    post_ok(&app, &serde_json::to_vec(&callback).unwrap()).await;
    let answered = wait_calls(&fake, "answerCallbackQuery", 1).await;
    assert_eq!(answered[0].body["callback_query_id"], "cbq-1");
    let sends = wait_calls(&fake, "sendMessage", 3).await;
    // The handoff sentence, then the honest wait: nobody of the tenant is online.
    let notice = sends[2].body["text"].as_str().unwrap();
    assert!(notice.starts_with(&flows::texts::handoff_notice(flows::Locale::Id)));
    assert!(
        notice.contains("belum ada tim kami yang online"),
        "{notice}"
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_flood_control_waits_retry_after_then_delivers() {
    let (app, fake) = start("", "").await;
    fake.script_flood(1);
    post_ok(&app, &tg_fixture("message_text.json")).await;
    let sends = wait_calls(&fake, "sendMessage", 2).await;
    let waited = sends[1].at.duration_since(sends[0].at);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    app.settled().await;
    assert_eq!(fake.calls_of("sendMessage").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn telegram_blocked_customer_gets_no_further_sends() {
    // A debounce so the block arrives while the answer is still pending.
    let (app, fake) = start(
        "",
        "[conversation]\ndebounce = \"1500ms\"\ndebounce_max = \"4s\"\n",
    )
    .await;
    post_ok(&app, &tg_fixture("message_text.json")).await;
    post_ok(&app, &tg_fixture("my_chat_member_blocked.json")).await;
    let account = account_id(&app).await;
    let store = app.store().await;
    assert_eq!(
        store
            .contact_unreachable("demo", &account, "5123456789")
            .await
            .unwrap(),
        Some(true)
    );
    app.settled().await;
    assert!(fake.calls_of("sendMessage").is_empty());
    let failed = store.failed_messages("demo", 5).await.unwrap();
    assert!(failed[0].contains("blocked"), "{failed:?}");
    app.stop().await;
}

#[tokio::test]
async fn telegram_403_blocked_marks_the_contact_unreachable_until_they_write_again() {
    let (app, fake) = start("", "").await;
    fake.script_blocked();
    post_ok(&app, &text_update(8, CHAT, 29, HOURS_QUESTION, "id")).await;
    wait_calls(&fake, "sendMessage", 1).await;
    app.settled().await;
    let account = account_id(&app).await;
    let store = app.store().await;
    assert_eq!(
        store
            .contact_unreachable("demo", &account, "5123456789")
            .await
            .unwrap(),
        Some(true)
    );
    // Not retried.
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    // The customer unblocks and writes again: reachable, answered.
    post_ok(&app, &text_update(7, CHAT, 30, HOURS_QUESTION, "id")).await;
    wait_calls(&fake, "sendMessage", 2).await;
    assert_eq!(
        store
            .contact_unreachable("demo", &account, "5123456789")
            .await
            .unwrap(),
        Some(false)
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_chat_migration_learned_while_sending_moves_the_contact() {
    let (app, fake) = start("", "").await;
    let supergroup: i64 = -100_777_000_111;
    fake.script(
        "sendMessage",
        400,
        json!({"ok": false, "error_code": 400,
               "description": "Bad Request: group chat was upgraded to a supergroup chat",
               "parameters": {"migrate_to_chat_id": supergroup}}),
    );
    post_ok(&app, &text_update(9, CHAT, 31, HOURS_QUESTION, "id")).await;
    let sends = wait_calls(&fake, "sendMessage", 2).await;
    assert_eq!(
        sends[1].body["chat_id"], supergroup,
        "the answer followed the chat"
    );
    app.settled().await;
    let account = account_id(&app).await;
    let store = app.store().await;
    // Stored: later sends (also after a restart) go to the supergroup.
    assert_eq!(
        store
            .contact_unreachable("demo", &account, &supergroup.to_string())
            .await
            .unwrap(),
        Some(false)
    );
    assert_eq!(
        store
            .contact_unreachable("demo", &account, &CHAT.to_string())
            .await
            .unwrap(),
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_edit_updates_the_stored_text_without_a_second_answer() {
    let (app, fake) = start("", "").await;
    post_ok(&app, &tg_fixture("message_text.json")).await;
    wait_calls(&fake, "sendMessage", 1).await;
    post_ok(&app, &tg_fixture("edited_message.json")).await;
    app.settled().await;
    let account = account_id(&app).await;
    let store = app.store().await;
    assert_eq!(
        store
            .inbound_text("demo", &account, "5123456789:101")
            .await
            .unwrap()
            .as_deref(),
        Some("Halo, apakah bisa pesan untuk catering 60 orang?")
    );
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn telegram_group_is_answered_only_when_the_bot_is_addressed() {
    let (app, fake) = start("bot_username = \"kopinusantara_bot\"", "").await;
    let chatter = json!({"update_id": 912_345_020, "message": {
        "message_id": 202, "date": 1_763_792_095, "text": "halo semua, ada yang mau titip kopi?",
        "from": {"id": 42, "is_bot": false, "first_name": "Budi"},
        "chat": {"id": -1_001_234_567_890_i64, "title": "Reseller", "type": "supergroup"}}});
    post_ok(&app, &serde_json::to_vec(&chatter).unwrap()).await;
    post_ok(&app, &tg_fixture("group_message.json")).await;
    let sends = wait_calls(&fake, "sendMessage", 1).await;
    app.settled().await;
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    assert_eq!(sends[0].body["chat_id"], -1_001_234_567_890_i64);
    assert_eq!(sends[0].body["reply_parameters"]["message_id"], 201);
    let account = account_id(&app).await;
    let store = app.store().await;
    assert_eq!(
        store
            .inbound_text("demo", &account, "-1001234567890:201")
            .await
            .unwrap()
            .as_deref(),
        Some("stok biji arabika gayo masih ada?")
    );
    assert_eq!(
        store
            .inbound_text("demo", &account, "-1001234567890:202")
            .await
            .unwrap(),
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_media_contact_and_location_are_stored_and_the_phone_kept() {
    let (app, fake) = start("", "").await;
    for name in [
        "message_contact.json",
        "message_location.json",
        "message_voice.json",
        "message_reaction.json",
    ] {
        post_ok(&app, &tg_fixture(name)).await;
    }
    post_ok(&app, &tg_fixture("message_photo.json")).await;
    app.settled().await;
    let account = account_id(&app).await;
    let store = app.store().await;
    assert_eq!(
        store
            .contact_phone("demo", &account, "5123456789")
            .await
            .unwrap()
            .as_deref(),
        Some("6281311112222")
    );
    assert_eq!(
        store
            .inbound_text("demo", &account, "5123456789:104")
            .await
            .unwrap()
            .as_deref(),
        Some("[voice]")
    );
    assert!(
        store
            .inbound_text("demo", &account, "5123456789:106")
            .await
            .unwrap()
            .unwrap()
            .starts_with("[location -6.2, 106.81")
    );
    // Only the photo's caption asks for an answer.
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn telegram_webhook_is_registered_with_the_secret_when_a_public_url_is_set() {
    let (app, fake) = start("", "[server]\npublic_url = \"https://sapa.example.com\"\n").await;
    let calls = wait_calls(&fake, "setWebhook", 1).await;
    let body = &calls[0].body;
    assert_eq!(
        body["url"],
        format!("https://sapa.example.com/webhooks/telegram/{BOT_ID}")
    );
    assert_eq!(body["secret_token"], TG_WEBHOOK_SECRET);
    let allowed: Vec<&str> = body["allowed_updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(allowed.contains(&"callback_query") && allowed.contains(&"my_chat_member"));
    // No username configured: the bot asked who it is.
    assert!(!fake.calls_of("getMe").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn telegram_long_polling_answers_and_resumes_after_the_stored_offset() {
    let fake = FakeTelegram::start().await;
    let config = telegram_config(&fake.base_url, "mode = \"polling\"\npoll_timeout = \"1s\"");
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    fake.push_update(serde_json::from_slice(&tg_fixture("message_text.json")).unwrap());
    let sends = wait_calls(&fake, "sendMessage", 1).await;
    assert_eq!(sends[0].body["chat_id"], CHAT);
    assert!(!fake.calls_of("deleteWebhook").is_empty());
    let account = account_id(&app).await;
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        (store.poll_offset(&account).await.unwrap() == 912_345_002).then_some(())
    })
    .await;
    app.settled().await;
    let data_dir = app.stop().await;
    // A restart polls from the stored offset: the old update is not fetched again.
    let polls_before = fake.calls_of("getUpdates").len();
    let app = spawn_app_with(&config, Overrides::default(), Some(data_dir)).await;
    let polls = wait_calls(&fake, "getUpdates", polls_before + 1).await;
    assert_eq!(polls[polls_before].body["offset"], 912_345_002);
    app.settled().await;
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn telegram_channel_add_stores_sealed_credentials_and_the_bot_serves() {
    let fake = FakeTelegram::start().await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let tenant = "[tenants.shop]\nname = \"Shop\"\nlocale = \"id\"\n";
    std::fs::write(dir.path().join("sapa.toml"), tenant).unwrap();
    let key = "42".repeat(32);
    let add = |envs: Vec<(&'static str, String)>, args: Vec<String>| {
        let dir = dir.clone();
        async move {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            crate::process::command(dir.path(), &envs)
                .args(["channel", "add", "telegram"])
                .args(args)
                .output()
                .await
                .unwrap()
        }
    };
    let args = |extra: &[&str]| -> Vec<String> {
        ["--tenant", "shop", "--api-base-url", fake.base_url.as_str()]
            .iter()
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    // Webhook mode needs a valid secret.
    let refused = add(
        vec![
            ("SAPA_SECRET_KEY", key.clone()),
            ("SAPA_TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ],
        args(&[]),
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--webhook-secret"));
    let output = add(
        vec![
            ("SAPA_SECRET_KEY", key.clone()),
            ("SAPA_TELEGRAM_BOT_TOKEN", BOT_TOKEN.to_owned()),
        ],
        args(&["--mode", "polling", "--poll-timeout", "1"]),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&BOT_ID.to_string()) && stdout.contains("polling"),
        "{stdout}"
    );
    assert!(!stdout.contains("AAtest-token"), "{stdout}");
    {
        let store = gateway::store::Store::connect(
            &gateway::config::DatabaseTarget::Sqlite(dir.path().join("sapa.db")),
            1,
        )
        .await
        .unwrap();
        let accounts = store
            .channel_accounts_of_kind(channels::ChannelKind::Telegram)
            .await
            .unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].tenant_id, "shop");
        let sealed = accounts[0].credentials.clone().unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("AAtest-token"));
        let secrets = gateway::crypto::SecretBox::load(Some(&key), dir.path(), false).unwrap();
        // Sealed for its row: tenant, kind and bot id.
        let owner = gateway::accounts::sealing_owner(
            "shop",
            channels::ChannelKind::Telegram,
            &accounts[0].external_id,
        );
        let account: channels::telegram::TelegramAccount =
            serde_json::from_slice(&secrets.open_for(&sealed, &owner).unwrap().0).unwrap();
        assert_eq!(account.bot_token, BOT_TOKEN);
        assert_eq!(account.mode, channels::telegram::UpdateMode::Polling);
        store.close().await;
    }
    // The server picks the bot up at start and answers through long polling.
    let app = spawn_app_with(tenant, Overrides::default(), Some(dir)).await;
    fake.push_update(text_update_json(900, 4242, 1, "halo", "id"));
    let sends = wait_calls(&fake, "sendMessage", 1).await;
    assert_eq!(sends[0].body["chat_id"], 4242);
    app.stop().await;
}

#[tokio::test]
async fn telegram_typing_is_refreshed_while_a_slow_answer_is_produced() {
    let llm = FakeOpenAi::start([
        hours_answer(format!("Outlet Blok M buka hari Minggu {HOURS}."))
            .delayed(Duration::from_millis(4500)),
    ])
    .await;
    let (app, fake) = start("", &llm.config("")).await;
    post_ok(&app, &text_update(9, CHAT, 40, HOURS_QUESTION, "id")).await;
    let sends = wait_calls(&fake, "sendMessage", 1).await;
    let typing: Vec<TelegramCall> = fake
        .calls_of("sendChatAction")
        .into_iter()
        .filter(|c| c.at < sends[0].at)
        .collect();
    // Shown at once and repeated 4 s later (one action lasts at most 5 s).
    assert!(typing.len() >= 2, "{typing:?}");
    let gap = typing[1].at.duration_since(typing[0].at);
    assert!(
        gap >= Duration::from_millis(3900) && gap < Duration::from_secs(5),
        "{gap:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_callback_referencing_a_stored_choice_is_resolved_server_side() {
    let (app, fake) = start("", "").await;
    post_ok(&app, &text_update(4, CHAT, 20, "xqzv blorp wug", "id")).await;
    wait_calls(&fake, "sendMessage", 1).await;
    post_ok(&app, &text_update(5, CHAT, 21, "zzgrp vlox", "id")).await;
    let sends = wait_calls(&fake, "sendMessage", 2).await;
    let offer_id = sends[1].sent_message_id.unwrap();
    app.settled().await;
    // `i:0` names choice 0 of our message; the update carries no keyboard to read it from.
    let callback = json!({"update_id": 6, "callback_query": {
        "id": "cbq-2", "chat_instance": "1", "data": "i:0",
        "from": {"id": CHAT, "is_bot": false, "first_name": "Dewi", "language_code": "id"},
        "message": {"message_id": offer_id, "date": 0, "chat": {"id": CHAT, "type": "private"}}}});
    post_ok(&app, &serde_json::to_vec(&callback).unwrap()).await;
    wait_calls(&fake, "answerCallbackQuery", 1).await;
    let sends = wait_calls(&fake, "sendMessage", 3).await;
    // The handoff sentence, then the honest wait: nobody of the tenant is online.
    let notice = sends[2].body["text"].as_str().unwrap();
    assert!(notice.starts_with(&flows::texts::handoff_notice(flows::Locale::Id)));
    assert!(
        notice.contains("belum ada tim kami yang online"),
        "{notice}"
    );
    app.stop().await;
}

#[tokio::test]
async fn telegram_admin_document_by_file_id_is_sent_as_send_document_with_caption() {
    let (app, fake) = start("", "").await;
    post_ok(&app, &text_update(1, CHAT, 1, "/start", "id")).await;
    wait_calls(&fake, "sendMessage", 1).await;
    let conversation = app
        .store()
        .await
        .latest_conversation_of("demo", channels::ChannelKind::Telegram, &CHAT.to_string())
        .await
        .unwrap()
        .expect("conversation");
    let key = app.api_key("demo").await;
    let response = app
        .admin_send(
            &key,
            &conversation,
            &json!({"text": "Daftar harga <terbaru> & promo",
                    "media": {"kind": "document", "id": "BQACAgIAAxkBAAIBZ2VkZXQ", "filename": "harga.pdf"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["channel"], "telegram");
    let message_id = accepted["message_id"].as_i64().unwrap();
    let calls = wait_calls(&fake, "sendDocument", 1).await;
    assert_eq!(calls[0].token, BOT_TOKEN);
    assert_eq!(
        calls[0].body,
        json!({
            "chat_id": CHAT,
            "document": "BQACAgIAAxkBAAIBZ2VkZXQ",
            "caption": "Daftar harga &lt;terbaru&gt; &amp; promo",
            "parse_mode": "HTML",
        })
    );
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        let messages = store
            .messages_after("demo", &conversation, 0, 50)
            .await
            .unwrap();
        messages
            .into_iter()
            .find(|m| m.id == message_id && m.status.as_deref() == Some("sent"))
    })
    .await;
    // The caption went with the document: no extra text message.
    assert_eq!(fake.calls_of("sendMessage").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn telegram_conversation_over_its_rate_is_stored_and_acknowledged_but_answered_later() {
    let (app, fake) = start("", "[conversation]\nmessages_per_minute = 2\n").await;
    post_ok(&app, &text_update(1, CHAT, 10, HOURS_QUESTION, "id")).await;
    wait_calls(&fake, "sendMessage", 1).await;
    post_ok(&app, &text_update(2, CHAT, 11, "ada wifi?", "id")).await;
    wait_calls(&fake, "sendMessage", 2).await;
    // The third message in a minute: acknowledged (200) and stored, the answer deferred.
    post_ok(&app, &text_update(3, CHAT, 12, "parkir ada?", "id")).await;
    let store = app.store().await;
    let pending = eventually(Duration::from_secs(5), || async {
        let pending = store.pending_conversations(10).await.unwrap();
        (!pending.is_empty()).then_some(pending)
    })
    .await;
    assert_eq!(pending.len(), 1);
    let _ = eventually(Duration::from_secs(5), || async {
        app.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("sapa_conversation_throttled_total") && !l.ends_with(" 0"))
            .then_some(())
    })
    .await;
    // Still unanswered a while later (the limit frees a slot after 30 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(fake.calls_of("sendMessage").len(), 2);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.pending_conversations(10).await.unwrap(), pending);
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn past_max_pending_messages_a_webhook_gets_503_and_its_retry_is_answered_later() {
    let llm = FakeOpenAi::start((0..4).map(|_| hours_answer("Buka 08.00–23.00.".to_owned()))).await;
    // The model call stalls, so the first message stays pending.
    llm.hold(true);
    let extra =
        llm.config("stream = false\ntimeout = \"60s\"") + "[server]\nmax_pending_messages = 1\n";
    let (app, fake) = start("", &extra).await;
    post_ok(&app, &text_update(1, CHAT, 10, HOURS_QUESTION, "id")).await;
    eventually(Duration::from_secs(20), || async {
        (!llm.requests().is_empty()).then_some(())
    })
    .await;
    let second = text_update(2, CHAT + 1, 20, HOURS_QUESTION, "id");
    let shed = app.telegram_post(&second, Some(TG_WEBHOOK_SECRET)).await;
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    assert_eq!(
        shed.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    assert!(
        app.metrics()
            .await
            .lines()
            .any(|l| l == "sapa_ingress_shed_total{channel=\"telegram\"} 1"),
        "the 503 is counted"
    );
    // Released: the acknowledged message is answered; the refused one was never stored.
    llm.hold(false);
    wait_calls(&fake, "sendMessage", 1).await;
    let url = format!("sqlite://{}", app.data_dir.path().join("sapa.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let inbox = |pool: sqlx::AnyPool| async move {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM inbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        sqlx::Row::get::<i64, _>(&row, "n")
    };
    assert_eq!(inbox(pool.clone()).await, 1);
    // Telegram's redelivery is accepted once the backlog has drained, and answered.
    eventually(Duration::from_secs(20), || async {
        let response = app.telegram_post(&second, Some(TG_WEBHOOK_SECRET)).await;
        (response.status() == 200).then_some(())
    })
    .await;
    wait_calls(&fake, "sendMessage", 2).await;
    assert_eq!(inbox(pool.clone()).await, 2);
    pool.close().await;
    app.stop().await;
}
