//! WhatsApp Cloud API channel end to end: signed webhooks in over HTTP, answers out to a fake
//! Graph API over HTTP.

use std::time::Duration;

use gateway::startup::Overrides;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::{
    TestApp, WA_ACCESS_TOKEN, WA_APP_SECRET, WA_NUMBER, WA_VERIFY_TOKEN, eventually,
    spawn_app_with, wa_fixture, wa_sends_to, wa_text, whatsapp_config,
};
use serde_json::{Value, json};

const CUSTOMER: &str = "6281311112222";

async fn start(extra_whatsapp: &str, extra: &str) -> (TestApp, FakeGraph) {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}{extra}",
        whatsapp_config(&graph.base_url, extra_whatsapp)
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    (app, graph)
}

async fn wait_sends(graph: &FakeGraph, n: usize) -> Vec<sapa_tests::fake_graph::GraphRequest> {
    eventually(Duration::from_secs(20), || async {
        let sends = graph.sends();
        (sends.len() >= n).then_some(sends)
    })
    .await
}

#[tokio::test]
async fn whatsapp_verification_handshake_echoes_the_challenge() {
    let (app, _graph) = start("", "").await;
    let url = |token: &str| {
        format!(
            "{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            app.address
        )
    };
    let ok = app.client.get(url(WA_VERIFY_TOKEN)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = app.client.get(url("wrong")).send().await.unwrap();
    assert_eq!(bad.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_text_is_answered_from_the_knowledge_base() {
    let (app, graph) = start("", "").await;
    let response = app
        .whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let sends = wait_sends(&graph, 1).await;
    let send = &sends[0];
    assert_eq!(send.path, format!("/v23.0/{WA_NUMBER}/messages"));
    assert_eq!(
        send.authorization.as_deref(),
        Some(format!("Bearer {WA_ACCESS_TOKEN}").as_str())
    );
    assert_eq!(send.body["to"], CUSTOMER);
    assert_eq!(send.body["messaging_product"], "whatsapp");
    assert_eq!(send.body["type"], "text");
    let text = send.body["text"]["body"].as_str().unwrap();
    // The demo knowledge base's opening hours answer the Sunday question.
    assert!(text.contains("Minggu"), "{text}");
    // Rendered for WhatsApp: the matching lines as a quote, no table syntax.
    assert!(!text.contains('|'), "{text}");
    let quoted = text.lines().filter(|l| l.starts_with("> ")).count();
    assert!((1..=3).contains(&quoted), "{text}");
    assert!(
        send.body["context"]["message_id"]
            .as_str()
            .unwrap()
            .starts_with("wamid.HBgN")
    );
    // Mark-read + typing indicator was sent for the customer's message.
    let reads: Vec<Value> = graph
        .requests()
        .into_iter()
        .filter(|r| r.is_mark_read())
        .map(|r| r.body)
        .collect();
    assert!(
        reads
            .iter()
            .any(|b| b["typing_indicator"]["type"] == "text"),
        "{reads:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_replayed_delivery_is_answered_once() {
    let (app, graph) = start("", "").await;
    let body = wa_fixture("text.json");
    // Meta's retries of one delivery, at 0 s, 1 s and 5 s scaled down by five.
    for gap in [0, 0, 200, 1000] {
        tokio::time::sleep(Duration::from_millis(gap)).await;
        let response = app.whatsapp_post(&body, WA_APP_SECRET).await;
        assert_eq!(response.status(), 200);
    }
    wait_sends(&graph, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(graph.sends().len(), 1, "{:?}", graph.sends());
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_bad_signatures_are_rejected_and_store_nothing() {
    let (app, graph) = start("", "").await;
    let body = wa_fixture("text.json");
    let wrong = app.whatsapp_post(&body, "not-the-app-secret").await;
    assert_eq!(wrong.status(), 401);
    let error: Value = wrong.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_signature");
    // Same JSON, re-serialized: other bytes, so the original signature does not match.
    let reserialized =
        serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    let response = app
        .client
        .post(format!("{}/webhooks/whatsapp", app.address))
        .header(
            "x-hub-signature-256",
            channels::whatsapp::webhook::sign(WA_APP_SECRET.as_bytes(), &body),
        )
        .body(reserialized)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let unsigned = app
        .client
        .post(format!("{}/webhooks/whatsapp", app.address))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(graph.sends().is_empty());
    // Nothing was stored: the genuine delivery is new and gets its answer.
    assert_eq!(app.whatsapp_post(&body, WA_APP_SECRET).await.status(), 200);
    wait_sends(&graph, 1).await;
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_fragments_within_the_debounce_window_get_one_answer() {
    let (app, graph) = start("", "[conversation]\ndebounce = \"800ms\"\n").await;
    for (i, fragment) in ["kak", "mau tanya", "bisa bayar pake qris gk?"]
        .iter()
        .enumerate()
    {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let body = wa_text(&format!("wamid.FRAG{i}"), CUSTOMER, fragment);
        assert_eq!(app.whatsapp_post(&body, WA_APP_SECRET).await.status(), 200);
    }
    let sends = wait_sends(&graph, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(graph.sends().len(), 1, "{:?}", graph.sends());
    let text = sends[0].body["text"]["body"].as_str().unwrap();
    assert!(text.contains("QRIS"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_a_status_arriving_before_the_send_is_recorded_is_applied_later() {
    let (app, graph) = start("", "").await;
    // Meta can report a message's progress before our send's bookkeeping committed: here the
    // `delivered` status comes first, for the id the next answer will get.
    graph.script_wamid("wamid.EARLY");
    let mut early: Value = serde_json::from_slice(&wa_fixture("status_delivered.json")).unwrap();
    early["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = json!("wamid.EARLY");
    let early = serde_json::to_vec(&early).unwrap();
    assert_eq!(app.whatsapp_post(&early, WA_APP_SECRET).await.status(), 200);
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    wait_sends(&graph, 1).await;
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        let delivery = store.message_delivery("demo", "wamid.EARLY").await.unwrap();
        delivery.filter(|(status, _, _)| status.as_deref() == Some("delivered"))
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_statuses_move_forward_only_and_never_trigger_the_bot() {
    let (app, graph) = start("", "").await;
    graph.script_wamid("wamid.OUT0007");
    assert_eq!(
        app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
            .await
            .status(),
        200
    );
    wait_sends(&graph, 1).await;
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        let d = store
            .message_delivery("demo", "wamid.OUT0007")
            .await
            .unwrap();
        (d.and_then(|d| d.0).as_deref() == Some("sent")).then_some(())
    })
    .await;
    let response = app
        .whatsapp_post(&wa_fixture("status_out_of_order.json"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let (status, code, at) = store
        .message_delivery("demo", "wamid.OUT0007")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.as_deref(), Some("read"));
    assert_eq!(code, None);
    assert_eq!(at, Some(1_763_791_805_000));
    // Replaying the older statuses changes nothing.
    app.whatsapp_post(&wa_fixture("status_out_of_order.json"), WA_APP_SECRET)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(graph.sends().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_failed_status_records_the_error_code() {
    let (app, graph) = start("", "").await;
    graph.script_wamid("wamid.OUT0009");
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    wait_sends(&graph, 1).await;
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        store
            .message_delivery("demo", "wamid.OUT0009")
            .await
            .unwrap()
            .and_then(|d| d.0)
            .filter(|s| s == "sent")
    })
    .await;
    let response = app
        .whatsapp_post(&wa_fixture("status_failed_131026.json"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let (status, code, _) = store
        .message_delivery("demo", "wamid.OUT0009")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.as_deref(), Some("failed"));
    assert_eq!(code.as_deref(), Some("131026"));
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_rate_limit_is_retried_and_delivered() {
    let (app, graph) = start("", "[dispatcher]\nretry_base = \"50ms\"\n").await;
    graph.script(
        429,
        json!({"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}}),
    );
    graph.script(500, json!({"error": {"message": "oops", "code": 1}}));
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 3).await;
    assert_eq!(sends[0].body, sends[2].body);
    assert_eq!(graph.delivered(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(graph.sends().len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_pair_rate_limit_holds_that_customer_for_a_full_interval() {
    // A burst of 3 lets the retry go at once unless the 131056 made the pacer hold the
    // customer for `pair_interval`.
    let (app, graph) = start(
        "pair_interval = \"1500ms\"\npair_burst = 3\nmessages_per_second = 20\n",
        "[dispatcher]\nretry_base = \"20ms\"\n",
    )
    .await;
    graph.script(
        400,
        json!({"error": {"message": "(#131056) (Business Account, Consumer Account) pair rate limit hit", "type": "OAuthException", "code": 131056}}),
    );
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(sends[0].body, sends[1].body);
    let gap = sends[1].at.duration_since(sends[0].at);
    assert!(gap >= Duration::from_millis(1400), "retried after {gap:?}");
    assert_eq!(graph.delivered(), 1);
    app.stop().await;
}

fn reengagement_error() -> Value {
    json!({"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047,
        "error_data": {"messaging_product": "whatsapp", "details": "more than 24 hours"}}})
}

#[tokio::test]
async fn whatsapp_closed_window_sends_the_reengagement_template() {
    let (app, graph) = start(
        "reengagement_template = \"follow_up_1\"\nreengagement_language = \"id\"\n",
        "",
    )
    .await;
    graph.script(400, reengagement_error());
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(sends[0].body["type"], "text");
    assert_eq!(sends[1].body["type"], "template");
    assert_eq!(sends[1].body["to"], CUSTOMER);
    assert_eq!(sends[1].body["template"]["name"], "follow_up_1");
    assert_eq!(sends[1].body["template"]["language"]["code"], "id");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_131047_in_a_status_sends_the_reengagement_template_once() {
    let (app, graph) = start(
        "reengagement_template = \"follow_up_1\"\nreengagement_language = \"id\"\n",
        "",
    )
    .await;
    // Meta accepts the answer, then reports 131047 for it in a status webhook.
    graph.script_wamid("wamid.OUT0008");
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    wait_sends(&graph, 1).await;
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        let delivery = store
            .message_delivery("demo", "wamid.OUT0008")
            .await
            .unwrap();
        delivery.filter(|(status, _, _)| status.as_deref() == Some("sent"))
    })
    .await;
    for _ in 0..2 {
        let response = app
            .whatsapp_post(&wa_fixture("status_failed_131047.json"), WA_APP_SECRET)
            .await;
        assert_eq!(response.status(), 200);
    }
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(sends[0].body["type"], "text");
    assert_eq!(sends[1].body["type"], "template");
    assert_eq!(sends[1].body["to"], CUSTOMER);
    assert_eq!(sends[1].body["template"]["name"], "follow_up_1");
    let (status, code, _) = store
        .message_delivery("demo", "wamid.OUT0008")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.as_deref(), Some("failed"));
    assert_eq!(code.as_deref(), Some("131047"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        graph.sends().len(),
        2,
        "the retried status webhook re-engages once"
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_closed_window_without_template_fails_visibly_without_retry() {
    let (app, graph) = start("", "").await;
    graph.script(400, reengagement_error());
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    wait_sends(&graph, 1).await;
    let store = app.store().await;
    let reason = eventually(Duration::from_secs(10), || async {
        let failed = store.failed_messages("demo", 10).await.unwrap();
        failed.into_iter().next()
    })
    .await;
    assert!(reason.contains("24-hour"), "{reason}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(graph.sends().len(), 1, "no retry of a permanent failure");
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_every_fixture_is_accepted_and_only_answerable_ones_are_answered() {
    let (app, graph) = start("", "").await;
    for name in [
        "interactive_button_reply.json",
        "interactive_list_reply.json",
        "template_button.json",
        "image.json",
        "audio_voice.json",
        "document.json",
        "location.json",
        "contacts.json",
        "reaction.json",
        "unsupported.json",
        "unknown_type.json",
        "multi_entry.json",
        "value_errors.json",
        "non_message_field.json",
        "other_number.json",
        "status_sent.json",
        "status_delivered.json",
        "status_read.json",
        "status_failed_131047.json",
    ] {
        let response = app.whatsapp_post(&wa_fixture(name), WA_APP_SECRET).await;
        assert_eq!(response.status(), 200, "{name}");
    }
    // Answerable: the unknown_type text, both multi_entry texts (two customers), and the
    // Rina conversation's choices/captions (one answer or several, as the batches fall: a
    // loaded machine may split them, so wait for the recipients, not for a count).
    let expected = ["6285600001111", "6287700002222", CUSTOMER];
    eventually(Duration::from_secs(20), || async {
        let recipients: std::collections::HashSet<String> = graph
            .sends()
            .iter()
            .map(|s| s.body["to"].as_str().unwrap().to_owned())
            .collect();
        expected
            .iter()
            .all(|r| recipients.contains(*r))
            .then_some(())
    })
    .await;
    // The unknown number's customer message is never answered by anyone.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.admin_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "sapa_webhook_dropped_total{channel=\"whatsapp\",reason=\"unknown_account\"}"
        ) && !l.ends_with(" 0")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_channel_add_stores_sealed_credentials() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sapa.toml"),
        "[tenants.shop]\nname = \"Shop\"\nlocale = \"id\"\n",
    )
    .unwrap();
    let key = "42".repeat(32);
    let output = crate::process::command(
        dir.path(),
        &[
            ("SAPA_SECRET_KEY", key.as_str()),
            ("SAPA_WHATSAPP_APP_SECRET", "cli-app-secret"),
            ("SAPA_WHATSAPP_ACCESS_TOKEN", "cli-access-token"),
            ("SAPA_WHATSAPP_VERIFY_TOKEN", "cli-verify-token"),
        ],
    )
    .args([
        "channel",
        "add",
        "whatsapp",
        "--tenant",
        "shop",
        "--phone-number-id",
        "123456789",
    ])
    .output()
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("123456789"), "{stdout}");
    assert!(!stdout.contains("cli-access-token"), "{stdout}");
    let store = gateway::store::Store::connect(
        &gateway::config::DatabaseTarget::Sqlite(dir.path().join("sapa.db")),
        1,
    )
    .await
    .unwrap();
    let accounts = store
        .channel_accounts_of_kind(channels::ChannelKind::Whatsapp)
        .await
        .unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].tenant_id, "shop");
    let sealed = accounts[0].credentials.clone().unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("cli-access-token"),
        "credentials are encrypted at rest"
    );
    let secrets = gateway::crypto::SecretBox::load(Some(&key), dir.path(), false).unwrap();
    // Sealed for its row: tenant, kind and phone number id.
    let owner =
        gateway::accounts::sealing_owner("shop", channels::ChannelKind::Whatsapp, "123456789");
    let account: channels::whatsapp::WhatsappAccount =
        serde_json::from_slice(&secrets.open_for(&sealed, &owner).unwrap().0).unwrap();
    assert_eq!(account.access_token, "cli-access-token");
    assert_eq!(account.phone_number_id, "123456789");
    // An unknown tenant is refused with a hint.
    let unknown = crate::process::command(dir.path(), &[("SAPA_SECRET_KEY", key.as_str())])
        .args([
            "channel",
            "add",
            "whatsapp",
            "--tenant",
            "nope",
            "--phone-number-id",
            "1",
            "--app-secret",
            "a",
            "--access-token",
            "b",
            "--verify-token",
            "c",
        ])
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no tenant `nope`"));
}

/// The conversation the fixture customer's text created, once the bot answered it.
async fn customer_conversation(app: &TestApp, graph: &FakeGraph) -> String {
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    wait_sends(graph, 1).await;
    let key = app.api_key("demo").await;
    let found: Value = app
        .client
        .get(format!(
            "{}/v1/admin/conversations?channel=whatsapp&customer={CUSTOMER}",
            app.address
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    found["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_owned()
}

#[tokio::test]
async fn whatsapp_admin_image_by_url_reaches_the_graph_api_with_the_text_as_caption() {
    let (app, graph) = start("", "").await;
    let conversation = customer_conversation(&app, &graph).await;
    let key = app.api_key("demo").await;
    let response = app
        .admin_send(
            &key,
            &conversation,
            &json!({"text": "Ini menu hari ini", "media": {"kind": "image", "url": "https://cdn.kopinusantara.test/menu.jpg"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["channel"], "whatsapp");
    let message_id = accepted["message_id"].as_i64().unwrap();
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(sends[1].path, format!("/v23.0/{WA_NUMBER}/messages"));
    assert_eq!(
        sends[1].body,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "image",
            "image": {"link": "https://cdn.kopinusantara.test/menu.jpg", "caption": "Ini menu hari ini"},
        })
    );
    // Stored as the agent's message and marked sent.
    let store = app.store().await;
    let stored = eventually(Duration::from_secs(10), || async {
        let messages = store
            .messages_after("demo", &conversation, 0, 50)
            .await
            .unwrap();
        messages
            .into_iter()
            .find(|m| m.id == message_id && m.status.as_deref() == Some("sent"))
    })
    .await;
    assert_eq!(stored.author, "agent");
    assert_eq!(
        stored.body,
        "Ini menu hari ini\n[image] https://cdn.kopinusantara.test/menu.jpg"
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_admin_messages_with_invalid_media_get_422_and_send_nothing() {
    let (app, graph) = start("", "").await;
    let conversation = customer_conversation(&app, &graph).await;
    let key = app.api_key("demo").await;
    let cases = [
        (
            json!({"media": {"kind": "image", "url": "ftp://cdn.kopinusantara.test/menu.jpg"}}),
            "invalid_media_url",
        ),
        (
            json!({"media": {"kind": "gif", "url": "https://cdn.kopinusantara.test/a.gif"}}),
            "invalid_media_kind",
        ),
        (
            json!({"media": {"kind": "image", "url": "https://a.test/a.jpg", "id": "123"}}),
            "invalid_media_source",
        ),
        (
            json!({"media": {"kind": "audio", "id": "123", "caption": "dengar"}}),
            "invalid_caption",
        ),
        (json!({"text": " "}), "empty_message"),
        (json!({"text": "halo", "colour": "red"}), "invalid_field"),
    ];
    for (body, code) in cases {
        let response = app.admin_send(&key, &conversation, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "{error}"
        );
    }
    // Conversation lookup: unknown customer, bad query.
    let lookup = |query: &'static str| {
        app.client
            .get(format!("{}/v1/admin/conversations?{query}", app.address))
            .bearer_auth(&key)
            .send()
    };
    assert_eq!(
        lookup("channel=whatsapp&customer=6280000000000")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        lookup("channel=fax&customer=1").await.unwrap().status(),
        400
    );
    // Unknown conversation, no key, another tenant's key.
    let missing = app
        .admin_send(&key, "no-such-conversation", &json!({"text": "halo"}))
        .await;
    assert_eq!(missing.status(), 404);
    let anonymous = app
        .client
        .post(format!(
            "{}/v1/admin/conversations/{conversation}/messages",
            app.address
        ))
        .json(&json!({"text": "halo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    app.store()
        .await
        .upsert_tenant("lain", "Toko Lain", "id")
        .await
        .unwrap();
    let other_key = app.api_key("lain").await;
    let foreign = app
        .admin_send(&other_key, &conversation, &json!({"text": "halo"}))
        .await;
    assert_eq!(foreign.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(graph.sends().len(), 1, "only the bot's answer was sent");
    app.stop().await;
}

/// The image fixture's media id.
const IMAGE_MEDIA_ID: &str = "1234567890123456";

/// A webhook body with one status for `wamid`.
fn status_body(wamid: &str, status: &str, timestamp: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": WA_NUMBER},
            "statuses": [{"id": wamid, "status": status, "timestamp": timestamp, "recipient_id": CUSTOMER}]
        }}]}]
    }))
    .unwrap()
}

/// The image fixture with its `sha256` replaced (the fixture's hash is of no real file).
fn image_body_with_sha(sha256: &str) -> Vec<u8> {
    let mut body: Value = serde_json::from_slice(&wa_fixture("image.json")).unwrap();
    body["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["sha256"] = json!(sha256);
    serde_json::to_vec(&body).unwrap()
}

/// The stored id of the customer's image message (`wamid.IMG01`).
async fn image_message_id(app: &TestApp) -> i64 {
    let key = app.api_key("demo").await;
    let found: Value = app
        .client
        .get(format!(
            "{}/v1/admin/conversations?channel=whatsapp&customer={CUSTOMER}",
            app.address
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = found["conversation_id"].as_str().expect("conversation");
    let store = app.store().await;
    let messages = store
        .messages_after("demo", conversation, 0, 50)
        .await
        .unwrap();
    messages
        .iter()
        .find(|m| m.external_id.as_deref() == Some("wamid.IMG01"))
        .expect("image message stored")
        .id
}

async fn get_media(app: &TestApp, key: Option<&str>, message_id: &str) -> reqwest::Response {
    let mut request = app.client.get(format!(
        "{}/v1/admin/messages/{message_id}/media",
        app.address
    ));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn error_code(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn whatsapp_image_caption_is_answered_as_text() {
    let (app, graph) = start("", "").await;
    let response = app
        .whatsapp_post(&wa_fixture("image.json"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let sends = wait_sends(&graph, 1).await;
    assert_eq!(sends[0].body["to"], CUSTOMER);
    assert_eq!(sends[0].body["context"]["message_id"], "wamid.IMG01");
    // The caption was the customer's words for the bot: the stored turn is the caption.
    let store = app.store().await;
    let id = image_message_id(&app).await;
    let conversation = store
        .latest_conversation_of("demo", channels::ChannelKind::Whatsapp, CUSTOMER)
        .await
        .unwrap()
        .unwrap();
    let messages = store
        .messages_after("demo", &conversation, 0, 50)
        .await
        .unwrap();
    let image = messages.iter().find(|m| m.id == id).unwrap();
    assert!(image.body.contains("ini struknya kak"), "{}", image.body);
    assert!(
        messages.iter().any(|m| m.author == "bot"),
        "the caption was answered: {messages:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_admin_downloads_customer_media_through_the_graph_api() {
    let (app, graph) = start("", "").await;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    graph.add_media(IMAGE_MEDIA_ID, "image/jpeg", &bytes);
    let sha = sapa_tests::fake_graph::media_sha256(&bytes);
    let response = app
        .whatsapp_post(&image_body_with_sha(&sha), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let id = image_message_id(&app).await;
    let key = app.api_key("demo").await;
    let response = get_media(&app, Some(&key), &id.to_string()).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(
        headers["content-disposition"],
        format!(
            "attachment; filename=\"image-{IMAGE_MEDIA_ID}.jpg\"; filename*=UTF-8''image-{IMAGE_MEDIA_ID}.jpg"
        )
    );
    assert_eq!(headers["cache-control"], "private");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(response.bytes().await.unwrap().to_vec(), bytes);
    // Both steps carried the number's access token; the metadata step named the number.
    let downloads: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    assert_eq!(downloads[0].path, format!("/v23.0/{IMAGE_MEDIA_ID}"));
    assert_eq!(
        downloads[1].path,
        format!("/media-download/{IMAGE_MEDIA_ID}")
    );
    for d in &downloads {
        assert_eq!(
            d.authorization.as_deref(),
            Some(format!("Bearer {WA_ACCESS_TOKEN}").as_str())
        );
    }
    // The fake refuses a download without the token, as Meta does.
    let anonymous = app
        .client
        .get(format!(
            "{}/media-download/{IMAGE_MEDIA_ID}",
            graph.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let reached = |graph: &FakeGraph| {
        graph
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .count()
    };
    let before = reached(&graph);
    // No key → 401; another tenant's key, unknown ids and messages without media → 404.
    assert_eq!(get_media(&app, None, &id.to_string()).await.status(), 401);
    app.store()
        .await
        .upsert_tenant("lain", "Toko Lain", "id")
        .await
        .unwrap();
    let other_key = app.api_key("lain").await;
    let (status, code, _) =
        error_code(get_media(&app, Some(&other_key), &id.to_string()).await).await;
    assert_eq!((status, code.as_str()), (404, "media_not_found"));
    for missing in ["999999", "abc", &(id + 1).to_string()] {
        let (status, code, _) = error_code(get_media(&app, Some(&key), missing).await).await;
        assert_eq!(
            (status, code.as_str()),
            (404, "media_not_found"),
            "{missing}"
        );
    }
    assert_eq!(
        reached(&graph),
        before,
        "refused requests never reach WhatsApp"
    );
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_admin_media_download_reports_expired_and_corrupt_files() {
    let (app, graph) = start("", "").await;
    // The fixture's sha256 belongs to no file the fake serves.
    let response = app
        .whatsapp_post(&wa_fixture("image.json"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let id = image_message_id(&app).await.to_string();
    let key = app.api_key("demo").await;
    // WhatsApp no longer knows the media id.
    let (status, code, message) = error_code(get_media(&app, Some(&key), &id).await).await;
    assert_eq!(
        (status, code.as_str()),
        (502, "media_unavailable"),
        "{message}"
    );
    assert!(message.contains("expired"), "{message}");
    // The file downloads, but its bytes do not match the webhook's hash.
    graph.add_media(IMAGE_MEDIA_ID, "image/jpeg", b"not the customer's photo");
    let (status, code, message) = error_code(get_media(&app, Some(&key), &id).await).await;
    assert_eq!((status, code.as_str()), (502, "media_corrupt"), "{message}");
    assert!(message.contains("SHA-256"), "{message}");
    // Nor when the metadata's own hash is wrong.
    let bytes = b"the real photo".to_vec();
    let sha = sapa_tests::fake_graph::media_sha256(&bytes);
    graph.add_media_with_sha(IMAGE_MEDIA_ID, "image/jpeg", &bytes, "AAAA");
    let other = app
        .whatsapp_post(
            &String::from_utf8(image_body_with_sha(&sha))
                .unwrap()
                .replace("wamid.IMG01", "wamid.IMG02")
                .into_bytes(),
            WA_APP_SECRET,
        )
        .await;
    assert_eq!(other.status(), 200);
    let store = app.store().await;
    let conversation = store
        .latest_conversation_of("demo", channels::ChannelKind::Whatsapp, CUSTOMER)
        .await
        .unwrap()
        .unwrap();
    let second = store
        .messages_after("demo", &conversation, 0, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.external_id.as_deref() == Some("wamid.IMG02"))
        .unwrap()
        .id;
    let (status, code, _) =
        error_code(get_media(&app, Some(&key), &second.to_string()).await).await;
    assert_eq!((status, code.as_str()), (502, "media_corrupt"));
    // With a consistent file it downloads.
    graph.add_media(IMAGE_MEDIA_ID, "image/jpeg", &bytes);
    let ok = get_media(&app, Some(&key), &second.to_string()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.bytes().await.unwrap().to_vec(), bytes);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_read_status_of_the_first_part_of_a_split_answer_marks_it_read() {
    let long_reply = "Outlet Blok M buka hari Minggu pukul 08.00–23.00, Kak. ".repeat(95);
    assert!(long_reply.chars().count() > 5_000);
    let reply = long_reply.clone();
    let llm =
        sapa_tests::fake_openai::FakeOpenAi::start([sapa_tests::fake_openai::Reply::computed(
            move |request| {
                let id = sapa_tests::fake_openai::chunk_containing(request, "08.00–23.00")
                    .unwrap_or_else(|| "missing".into());
                json!({"reply": reply, "action": "answer", "citations": [id]}).to_string()
            },
        )])
        .await;
    let (app, graph) = start("", &llm.config("stream = false")).await;
    graph.script_wamid("wamid.PART1");
    graph.script_wamid("wamid.PART2");
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(sends.len(), 2, "{sends:?}");
    let parts: Vec<&str> = sends
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap())
        .collect();
    assert!(parts.iter().all(|p| p.chars().count() <= 4096), "{parts:?}");
    assert_eq!(
        parts.join(" "),
        long_reply.trim(),
        "split at a word boundary"
    );
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        store
            .message_delivery("demo", "wamid.PART2")
            .await
            .unwrap()
            .and_then(|d| d.0)
            .filter(|s| s == "sent")
    })
    .await;
    // Only the first part is reported read: the message is read.
    let response = app
        .whatsapp_post(
            &status_body("wamid.PART1", "read", "1763791805"),
            WA_APP_SECRET,
        )
        .await;
    assert_eq!(response.status(), 200);
    for part in ["wamid.PART1", "wamid.PART2"] {
        let (status, _, at) = store.message_delivery("demo", part).await.unwrap().unwrap();
        assert_eq!(status.as_deref(), Some("read"), "{part}");
        assert_eq!(at, Some(1_763_791_805_000));
    }
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_a_retried_split_answer_does_not_resend_the_part_meta_accepted() {
    let long_reply = "Outlet Blok M buka hari Minggu pukul 08.00–23.00, Kak. ".repeat(95);
    let reply = long_reply.clone();
    let llm =
        sapa_tests::fake_openai::FakeOpenAi::start([sapa_tests::fake_openai::Reply::computed(
            move |request| {
                let id = sapa_tests::fake_openai::chunk_containing(request, "08.00–23.00")
                    .unwrap_or_else(|| "missing".into());
                json!({"reply": reply, "action": "answer", "citations": [id]}).to_string()
            },
        )])
        .await;
    let config = format!(
        "{}[dispatcher]\nretry_base = \"10ms\"\nretry_cap = \"40ms\"\npoll_interval = \"20ms\"\n",
        llm.config("stream = false")
    );
    let (app, graph) = start("", &config).await;
    // Meta accepts the first part, then fails the second once (a transient 500).
    graph.script_wamid("wamid.PART1");
    graph.script(500, json!({"error": {"message": "oops", "code": 1}}));
    graph.script_wamid("wamid.PART2");
    app.whatsapp_post(&wa_fixture("text.json"), WA_APP_SECRET)
        .await;
    let store = app.store().await;
    eventually(Duration::from_secs(20), || async {
        store
            .message_delivery("demo", "wamid.PART2")
            .await
            .unwrap()
            .and_then(|d| d.0)
            .filter(|s| s == "sent")
    })
    .await;
    let sends = graph.sends();
    let texts: Vec<&str> = sends
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap())
        .collect();
    // Part 1, part 2 (failed), part 2 again: the first part was not sent twice.
    assert_eq!(sends.len(), 3, "{texts:?}");
    assert_eq!(texts[1], texts[2]);
    assert_ne!(texts[0], texts[1]);
    assert_eq!(
        store.message_delivery("demo", "wamid.PART1").await.unwrap(),
        store.message_delivery("demo", "wamid.PART2").await.unwrap()
    );
    app.stop().await;
}

const USER_ID: &str = "ID.13491208655302741918";

/// The demo tenant's WhatsApp channel account id (idempotent lookup).
async fn wa_account(store: &gateway::store::Store) -> String {
    store
        .ensure_channel_account(
            "demo",
            channels::ChannelKind::Whatsapp,
            WA_NUMBER,
            "WhatsApp",
            None,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn whatsapp_username_only_customer_is_answered_at_its_user_id_and_statuses_apply() {
    let (app, graph) = start("", "").await;
    graph.script_wamid("wamid.OUT_BSUID");
    // Arrange/Act: a customer with a username and no phone number asks a question.
    let response = app
        .whatsapp_post(&wa_fixture("bsuid_text_username.json"), WA_APP_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    // Assert: the knowledge answer goes to the user id, in `recipient` (no `to`).
    let sends = wait_sends(&graph, 1).await;
    let send = &sends[0];
    assert_eq!(send.body["recipient"], USER_ID, "{}", send.body);
    assert!(send.body.get("to").is_none(), "{}", send.body);
    let text = send.body["text"]["body"].as_str().unwrap();
    assert!(text.contains("Minggu"), "{text}");
    // Statuses that name only the user id move the sent message forward.
    let store = app.store().await;
    eventually(Duration::from_secs(10), || async {
        let d = store
            .message_delivery("demo", "wamid.OUT_BSUID")
            .await
            .unwrap();
        (d.and_then(|d| d.0).as_deref() == Some("sent")).then_some(())
    })
    .await;
    for name in [
        "bsuid_status_delivered_username.json",
        "bsuid_status_read_username_parent.json",
    ] {
        let response = app.whatsapp_post(&wa_fixture(name), WA_APP_SECRET).await;
        assert_eq!(response.status(), 200, "{name}");
    }
    let (status, _, _) = store
        .message_delivery("demo", "wamid.OUT_BSUID")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.as_deref(), Some("read"));
    // The same customer writing with phone and user id stays in the same contact, and is
    // answered at the phone number from then on.
    app.whatsapp_post(&wa_fixture("bsuid_text_both_parent.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(sends[1].body["to"], "6281399998888", "{}", sends[1].body);
    let account = store
        .contact_ids("demo", &wa_account(&store).await, USER_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.external_id, "6281399998888");
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_a_message_the_database_refuses_does_not_fail_the_rest_of_the_webhook() {
    let (app, graph) = start("", "").await;
    let url = format!("sqlite://{}", app.data_dir.path().join("sapa.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN NEW.body LIKE '%poison pill%' \
         BEGIN SELECT RAISE(ABORT, 'poison pill refused'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let message = |id: &str, text: &str| json!({"from": CUSTOMER, "id": id, "timestamp": "1763791200", "type": "text", "text": {"body": text}});
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": WA_NUMBER},
            "contacts": [{"profile": {"name": "Rina"}, "wa_id": CUSTOMER}],
            "messages": [
                message("wamid.POISON", "ini poison pill"),
                message("wamid.GOOD", "jam buka outlet Blok M hari Minggu?"),
            ]
        }}]}]
    }))
    .unwrap();
    // Acknowledged: Meta cannot change what it sent, so a retry would be refused again.
    let response = app.whatsapp_post(&body, WA_APP_SECRET).await;
    assert_eq!(response.status(), 200);
    // The good message is stored and answered; the refused one left nothing behind.
    wait_sends(&graph, 1).await;
    let store = app.store().await;
    let account: String = {
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::Row::try_get(
            &sqlx::query("SELECT id FROM channel_accounts WHERE kind = 'whatsapp'")
                .fetch_one(&pool)
                .await
                .unwrap(),
            "id",
        )
        .unwrap()
    };
    assert!(
        store
            .inbound_text("demo", &account, "wamid.GOOD")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .inbound_text("demo", &account, "wamid.POISON")
            .await
            .unwrap(),
        None
    );
    assert!(app.metrics().await.contains("outcome=\"refused\""));
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_new_message_kinds_are_stored_and_answered_only_as_they_should() {
    let (app, graph) = start("", "").await;
    // Opening the chat: the built-in greeting in the tenant's language.
    app.whatsapp_post(&wa_fixture("request_welcome.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 1).await;
    assert_eq!(sends[0].body["to"], CUSTOMER);
    assert_eq!(
        sends[0].body["text"]["body"],
        flows::texts::greeting(flows::Locale::Id)
    );
    // An order: its lines are kept, and the fixed acknowledgement is sent (no model call).
    app.whatsapp_post(&wa_fixture("order.json"), WA_APP_SECRET)
        .await;
    let sends = wait_sends(&graph, 2).await;
    assert_eq!(
        sends[1].body["text"]["body"],
        flows::texts::order_received(flows::Locale::Id)
    );
    let store = app.store().await;
    let account = wa_account(&store).await;
    let order = store
        .inbound_text("demo", &account, "wamid.ORDER01")
        .await
        .unwrap()
        .unwrap();
    assert!(order.contains("2 x KOPI-SUSU-AREN @ 22000 IDR"), "{order}");
    assert!(order.contains("1 x CROISSANT @ 18500.50 IDR"), "{order}");
    // A flow response, an edit, a revoke and a number change are stored, never answered.
    for name in [
        "nfm_reply.json",
        "text.json",
        "edit.json",
        "revoke.json",
        "system_number_changed.json",
    ] {
        let response = app.whatsapp_post(&wa_fixture(name), WA_APP_SECRET).await;
        assert_eq!(response.status(), 200, "{name}");
    }
    // The text (revoked right after) may or may not have been answered before the revoke;
    // nothing else is.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(graph.sends().len() <= 3, "{:?}", graph.sends());
    let original = "wamid.HBgNNjI4MTMxMTExMjIyMhUCABIYFDNBMDFBQjQ1RjY1QjdCRDhGNUE0AA==";
    assert_eq!(
        store
            .inbound_text("demo", &account, original)
            .await
            .unwrap()
            .as_deref(),
        Some("[message deleted by the customer]")
    );
    let flow = store
        .inbound_text("demo", &account, "wamid.FLOW01")
        .await
        .unwrap()
        .unwrap();
    assert!(flow.starts_with("[flow reply: flow]"), "{flow}");
    // After the number change the customer's next message lands in the same conversation
    // and is answered at the new number.
    let before = graph.sends().len();
    app.whatsapp_post(
        &wa_text("wamid.NEWNUMBER1", "6281377776666", "jam buka hari Minggu?"),
        WA_APP_SECRET,
    )
    .await;
    let sends = wait_sends(&graph, before + 1).await;
    assert_eq!(sends[before].body["to"], "6281377776666");
    let ids = store
        .contact_ids("demo", &account, "6281377776666")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids.user_id.as_deref(), Some("ID.77712345678901234567"));
    app.stop().await;
}

/// The customer messages stored with this external id (the raw database, not the API).
async fn stored_with_external_id(app: &TestApp, external_id: &str) -> i64 {
    let url = format!("sqlite://{}", app.data_dir.path().join("sapa.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let row = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE external_id = $1")
        .bind(external_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    sqlx::Row::get::<i64, _>(&row, "n")
}

/// The value of one series in the Prometheus text, 0 when absent.
fn series(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn past_max_pending_messages_ingress_sheds_with_a_fast_503_and_loses_nothing_acknowledged() {
    use sapa_tests::fake_openai::{FakeOpenAi, Reply, chunk_containing};
    const QUESTION: &str = "jam buka outlet Blok M hari Minggu?";
    let answer = || {
        Reply::computed(|request| {
            let id = chunk_containing(request, "08.00–23.00").unwrap_or_else(|| "missing".into());
            json!({"reply": "Buka 08.00–23.00, Kak.", "action": "answer", "citations": [id]})
                .to_string()
        })
    };
    let llm = FakeOpenAi::start((0..12).map(|_| answer())).await;
    // The answer path stalls: every model call waits until released.
    llm.hold(true);
    let extra =
        llm.config("stream = false\ntimeout = \"60s\"") + "[server]\nmax_pending_messages = 3\n";
    let (app, graph) = start("", &extra).await;
    let session = app.session("demo").await;
    let customers = ["6281300000001", "6281300000002", "6281300000003"];
    for (i, from) in customers.iter().enumerate() {
        let response = app
            .whatsapp_post(
                &wa_text(&format!("wamid.OK{i}"), from, QUESTION),
                WA_APP_SECRET,
            )
            .await;
        assert_eq!(response.status(), 200, "under the limit: acknowledged");
    }
    // All three are stuck in the model call, so three messages are pending.
    eventually(Duration::from_secs(20), || async {
        (llm.requests().len() >= 3).then_some(())
    })
    .await;

    // A fourth WhatsApp message and a web chat message are refused at once, unread.
    let shed_body = wa_text("wamid.SHED", "6281300000004", QUESTION);
    let started = std::time::Instant::now();
    let shed = app.whatsapp_post(&shed_body, WA_APP_SECRET).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(shed.status(), 503);
    let retry_after: u64 = shed.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    let web = app.post(&session, "shed-1", QUESTION).await;
    assert_eq!(web.status(), 503);
    assert!(web.headers().contains_key("retry-after"));
    assert_eq!(
        web.json::<Value>().await.unwrap()["error"]["code"],
        "overloaded"
    );
    let metrics = app.metrics().await;
    assert_eq!(
        series(&metrics, "sapa_ingress_shed_total{channel=\"whatsapp\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "sapa_ingress_shed_total{channel=\"webchat\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(series(&metrics, "sapa_inbox_depth"), 3.0, "{metrics}");
    // Nothing refused was stored; everything acknowledged was.
    assert_eq!(stored_with_external_id(&app, "wamid.SHED").await, 0);
    let messages = app.messages(&session).await;
    assert!(
        messages.iter().all(|m| m["author"] != "customer"),
        "{messages:?}"
    );
    let bots_before = messages.iter().filter(|m| m["author"] == "bot").count();
    for i in 0..3 {
        assert_eq!(
            stored_with_external_id(&app, &format!("wamid.OK{i}")).await,
            1
        );
    }

    // The stall ends: every acknowledged message is answered and the backlog drains.
    llm.hold(false);
    for from in customers {
        wa_sends_to(&graph, from, 1).await;
    }
    let store = app.store().await;
    eventually(Duration::from_secs(20), || async {
        (store.inbox_depth().await.unwrap() == 0).then_some(())
    })
    .await;
    store.close().await;
    // Admission resumes: the providers' retries (the same bodies) are accepted and answered.
    eventually(Duration::from_secs(20), || async {
        let response = app.whatsapp_post(&shed_body, WA_APP_SECRET).await;
        (response.status() == 200).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), || async {
        let response = app.post(&session, "shed-1", QUESTION).await;
        (response.status() == 202).then_some(())
    })
    .await;
    wa_sends_to(&graph, "6281300000004", 1).await;
    app.bot_messages(&session, bots_before + 1).await;
    assert_eq!(stored_with_external_id(&app, "wamid.SHED").await, 1);
    app.stop().await;
}
