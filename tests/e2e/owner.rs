//! The owner's regression check before publishing, usage per day and monthly quotas.

use std::time::Duration;

use sapa_tests::fake_openai::{FakeOpenAi, Reply, chunk_containing};
use sapa_tests::{TestApp, eventually, spawn_app};
use serde_json::{Value, json};

use crate::console::{add_member, add_staff, get, log_in, post, put};

const HOURS_QUESTION: &str = "jam buka outlet Blok M hari Minggu?";
const HOURS: &str = "08.00–23.00";
const PRICE_QUESTION: &str = "berapa harga kopi susu gula aren?";

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

async fn owner_of_demo(app: &TestApp) -> (String, String) {
    add_member(app, "demo", "pemilik@demo.local", "owner", None).await;
    log_in(app, "demo", "pemilik@demo.local").await
}

#[tokio::test]
async fn regression_check_holds_back_a_draft_that_breaks_a_golden_question_until_confirmed() {
    // Arrange: two golden questions the live version answers from the right documents.
    let app = spawn_app("").await;
    let (owner, csrf) = owner_of_demo(&app).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (agent, agent_csrf) = log_in(&app, "demo", "budi@demo.local").await;
    for (query, doc) in [
        (HOURS_QUESTION, "profil-dan-lokasi.md"),
        (PRICE_QUESTION, "menu-dan-harga.md"),
    ] {
        let added = post(
            &app,
            "/v1/console/golden",
            &json!({"query": query, "doc": doc}),
            Some(&owner),
            Some(&csrf),
        )
        .await;
        assert_eq!(added.status(), 201);
    }
    let check = |cookie: String, csrf: String| {
        let app = &app;
        async move {
            post(
                app,
                "/v1/console/bot/draft/regression",
                &json!({}),
                Some(&cookie),
                Some(&csrf),
            )
            .await
        }
    };
    assert_eq!(check(agent.clone(), agent_csrf).await.status(), 403);
    let clean = json_of(check(owner.clone(), csrf.clone()).await).await;
    assert_eq!(clean["live"], json!({"passed": 2, "failed": 0}), "{clean}");
    assert_eq!(clean["draft"], json!({"passed": 2, "failed": 0}), "{clean}");
    assert_eq!(clean["newly_failing"], json!([]));

    // Act: a draft whose handoff keyword catches the hours question.
    let mut draft = json_of(get(&app, "/v1/console/bot/draft", &owner).await).await;
    draft["handoff_keywords"] = json!(["outlet"]);
    let saved = put(&app, "/v1/console/bot/draft", &draft, &owner, &csrf).await;
    assert_eq!(
        saved.status(),
        200,
        "{draft} {}",
        saved.text().await.unwrap()
    );
    let report = json_of(check(owner.clone(), csrf.clone()).await).await;

    // Assert: reported, and publishing waits for a confirmation.
    assert_eq!(
        report["live"],
        json!({"passed": 2, "failed": 0}),
        "{report}"
    );
    assert_eq!(
        report["draft"],
        json!({"passed": 1, "failed": 1}),
        "{report}"
    );
    let failing = report["newly_failing"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{report}");
    assert_eq!(failing[0]["question"], HOURS_QUESTION);
    assert_eq!(failing[0]["expected"], "profil-dan-lokasi.md");
    assert!(
        failing[0]["got"].as_str().unwrap().contains("handed off"),
        "{report}"
    );
    let live_before = json_of(get(&app, "/v1/console/bot/versions", &owner).await).await;
    let refused = post(
        &app,
        "/v1/console/bot/publish",
        &json!({}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(refused.status(), 409);
    let refused = json_of(refused).await;
    assert_eq!(refused["error"]["code"], "regression_failures", "{refused}");
    assert_eq!(
        refused["regression"]["newly_failing"],
        report["newly_failing"]
    );
    let live_after = json_of(get(&app, "/v1/console/bot/versions", &owner).await).await;
    assert_eq!(live_before, live_after, "nothing was published");
    // Customers still get the live version: the hours question is answered, not handed off.
    let session = app.session("demo").await;
    app.post(&session, "r-1", HOURS_QUESTION).await;
    let bots = app.bot_messages(&session, 1).await;
    assert!(
        bots[0]["text"].as_str().unwrap().contains(HOURS),
        "{bots:?}"
    );

    // Confirmed: published, and the version carries the report.
    let published = post(
        &app,
        "/v1/console/bot/publish",
        &json!({"confirm": true}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(published.status(), 200);
    let published = json_of(published).await;
    let newest = live_before["versions"][0]["version"].as_i64().unwrap() + 1;
    assert_eq!(published["version"], newest);
    let versions = json_of(get(&app, "/v1/console/bot/versions", &owner).await).await;
    let live = &versions["versions"][0];
    assert_eq!(live["version"], newest);
    assert_eq!(live["regression"], report, "{live}");
    app.stop().await;
}

/// Sums the numeric `field` of every `webchat` row.
fn total(usage: &Value, field: &str) -> i64 {
    usage["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["channel"] == "webchat")
        .map(|d| d[field].as_i64().unwrap_or(0))
        .sum()
}

/// From yesterday to tomorrow, so a test that runs across midnight still sees every row.
async fn usage_range(app: &TestApp) -> String {
    let store = app.store().await;
    let now = gateway::store::now_ms();
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let range = format!(
        "from={}&to={}",
        store.usage_day("demo", now - DAY),
        store.usage_day("demo", now + DAY)
    );
    store.close().await;
    range
}

#[tokio::test]
async fn usage_counts_messages_conversations_handoffs_and_abstains_exactly() {
    // Arrange: three web chat customers.
    let app = spawn_app(
        "[tenants.demo]\nname = \"Kopi Nusantara\"\nlocale = \"id\"\nhandoff_keywords = [\"komplain\"]\n",
    )
    .await;
    let (owner, _) = owner_of_demo(&app).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (agent, _) = log_in(&app, "demo", "budi@demo.local").await;

    // Act: A asks two answerable questions (and its first message is delivered twice), B
    // asks what the knowledge base does not know, C wants to complain (handoff).
    let a = app.session("demo").await;
    app.post(&a, "a-1", HOURS_QUESTION).await;
    app.bot_messages(&a, 1).await;
    assert_eq!(app.post(&a, "a-1", HOURS_QUESTION).await.status(), 202);
    app.post(&a, "a-2", PRICE_QUESTION).await;
    app.bot_messages(&a, 2).await;
    let b = app.session("demo").await;
    app.post(&b, "b-1", "apakah ada layanan antar jemput bandara?")
        .await;
    app.bot_messages(&b, 1).await;
    let c = app.session("demo").await;
    app.post(&c, "c-1", "saya mau komplain, pesanan saya terlambat")
        .await;
    app.bot_messages(&c, 1).await;
    app.settled().await;
    let mut bot_messages = 0;
    for session in [&a, &b, &c] {
        bot_messages += app
            .messages(session)
            .await
            .iter()
            .filter(|m| m["author"] == "bot")
            .count();
    }

    // Assert
    let range = usage_range(&app).await;
    let path = format!("/v1/console/usage?{range}");
    assert_eq!(get(&app, &path, &agent).await.status(), 403);
    let usage = eventually(Duration::from_secs(20), || async {
        let usage = json_of(get(&app, &path, &owner).await).await;
        (total(&usage, "messages_out") == i64::try_from(bot_messages).unwrap()).then_some(usage)
    })
    .await;
    assert_eq!(total(&usage, "messages_in"), 4, "{usage}");
    assert_eq!(total(&usage, "conversations"), 3, "{usage}");
    assert_eq!(total(&usage, "handoffs"), 1, "{usage}");
    assert_eq!(total(&usage, "answer_turns"), 3, "{usage}");
    assert_eq!(total(&usage, "answered"), 2, "{usage}");
    assert_eq!(total(&usage, "abstained"), 1, "{usage}");
    assert_eq!(total(&usage, "prompt_tokens"), 0, "{usage}");
    assert_eq!(bot_messages, 4, "one reply per customer message");
    let days = usage["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{usage}");
    let day = &days[0];
    // Counted on the tenant's local date; the response names today's for the page's date axis.
    let today = usage["today"].as_str().unwrap();
    assert!(
        today.len() == 10 && day["date"].as_str().unwrap() <= today,
        "{usage}"
    );
    assert_eq!(day["answer_rate"], 0.6667);
    assert_eq!(day["abstain_rate"], 0.3333);
    assert!(day["first_response_p50_ms"].as_i64().unwrap() >= 0, "{day}");
    assert_eq!(day["cost"], 0.0);
    assert_eq!(usage["quota"]["messages_used"], 8, "{usage}");
    assert_eq!(usage["quota"]["messages_limit"], 0);
    assert_eq!(usage["quota"]["warning"], false);

    // The CSV has a header row and the same day.
    let csv = get(&app, &format!("{path}&format=csv"), &owner)
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "date,channel,messages_in,messages_out,conversations,handoffs,answer_rate,abstain_rate,first_response_p50_ms,prompt_tokens,completion_tokens,cost"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].contains(",webchat,4,4,3,1,0.6667,0.3333,"),
        "{csv}"
    );

    // Bad ranges name the parameter to fix.
    for (query, says) in [
        ("to=2026-12-01", "`from`"),
        ("from=2026-12-01&to=12/31/2026", "`to`"),
        ("from=2026-12-02&to=2026-12-01", "must not be after"),
        ("from=2025-01-01&to=2026-12-31", "at most 366 days"),
    ] {
        let response = get(&app, &format!("/v1/console/usage?{query}"), &owner).await;
        assert_eq!(response.status(), 422, "{query}");
        let body = response.text().await.unwrap();
        assert!(body.contains(says), "{query}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn over_the_monthly_token_quota_the_bot_answers_without_the_model() {
    // Arrange: the first answer uses 350 tokens, the owner's quota is 350.
    let fake = FakeOpenAi::start([Reply::computed(|request| {
        let id = chunk_containing(request, HOURS).unwrap_or_else(|| "missing".into());
        json!({"reply": "Buka 08.00–23.00, Kak.", "action": "answer", "citations": [id]})
            .to_string()
    })
    .usage(300, 50)])
    .await;
    let app = spawn_app(&fake.config("stream = false")).await;
    let (owner, csrf) = owner_of_demo(&app).await;
    let bad = put(
        &app,
        "/v1/console/quota",
        &json!({"monthly_messages": -1, "monthly_llm_tokens": 350}),
        &owner,
        &csrf,
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("monthly_messages must be")
    );
    let set = put(
        &app,
        "/v1/console/quota",
        &json!({"monthly_messages": 0, "monthly_llm_tokens": 350}),
        &owner,
        &csrf,
    )
    .await;
    assert_eq!(set.status(), 200);
    let set = json_of(set).await;
    assert_eq!(set["source"], "console");
    assert_eq!(set["monthly_llm_tokens"], 350);

    // Act + Assert: under the quota the model answers...
    let first = app.session("demo").await;
    app.post(&first, "q-1", HOURS_QUESTION).await;
    let bots = app.bot_messages(&first, 1).await;
    assert_eq!(bots[0]["text"], "Buka 08.00–23.00, Kak.");
    let range = usage_range(&app).await;
    let usage = eventually(Duration::from_secs(20), || async {
        let usage = json_of(get(&app, &format!("/v1/console/usage?{range}"), &owner).await).await;
        (usage["quota"]["tokens_used"] == 350).then_some(usage)
    })
    .await;
    assert_eq!(usage["quota"]["exceeded"], true, "{usage}");
    assert_eq!(usage["quota"]["warning"], true, "{usage}");
    assert_eq!(total(&usage, "prompt_tokens"), 300);
    assert_eq!(total(&usage, "completion_tokens"), 50);

    // ...after reaching it, the next answer quotes the passage and the model is not called.
    let second = app.session("demo").await;
    app.post(&second, "q-2", HOURS_QUESTION).await;
    let bots = app.bot_messages(&second, 1).await;
    let text = bots[0]["text"].as_str().unwrap();
    assert!(text.starts_with("Berikut informasi dari"), "{text}");
    assert!(text.contains(HOURS), "{text}");
    assert_eq!(fake.requests().len(), 1, "the model was not called again");
    let _ = eventually(Duration::from_secs(5), || async {
        app.metrics()
            .await
            .lines()
            .any(|l| {
                l.starts_with("sapa_quota_exceeded_total")
                    && l.contains("tenant=\"demo\"")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .await;

    // Owners get the notice once a month.
    let me = |cookie: String| {
        let app = &app;
        async move { json_of(get(app, "/v1/console/me", &cookie).await).await }
    };
    let notices = me(owner.clone()).await["notices"].clone();
    assert_eq!(notices[0]["kind"], "quota_exceeded", "{notices}");
    assert_eq!(me(owner.clone()).await["notices"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn at_80_percent_of_the_configured_message_quota_owners_are_warned_once() {
    // Arrange: 5 messages a month from sapa.toml.
    let app = spawn_app(
        "[tenants.shop]\nname = \"Toko Sepatu\"\nlocale = \"id\"\n[tenants.shop.quota]\nmonthly_messages = 5\n",
    )
    .await;
    add_member(&app, "shop", "pemilik@shop.local", "owner", None).await;
    add_staff(&app, "shop", "budi@shop.local", None).await;
    let (owner, _) = log_in(&app, "shop", "pemilik@shop.local").await;
    let (agent, _) = log_in(&app, "shop", "budi@shop.local").await;
    let quota = json_of(get(&app, "/v1/console/quota", &owner).await).await;
    assert_eq!(quota["source"], "config", "{quota}");
    assert_eq!(quota["monthly_messages"], 5);
    assert_eq!(quota["quota"]["warning"], false);

    // Act: two questions and their two answers are 4 of 5 messages.
    let session = app.session("shop").await;
    app.post(&session, "w-1", "ada sepatu lari ukuran 44?")
        .await;
    app.bot_messages(&session, 1).await;
    app.post(&session, "w-2", "kalau ukuran 45 ada?").await;
    app.bot_messages(&session, 2).await;

    // Assert
    let quota = eventually(Duration::from_secs(20), || async {
        let quota = json_of(get(&app, "/v1/console/quota", &owner).await).await;
        (quota["quota"]["messages_used"] == 4).then_some(quota)
    })
    .await;
    assert_eq!(quota["quota"]["warning"], true, "{quota}");
    assert_eq!(quota["quota"]["exceeded"], false, "{quota}");
    let me = |cookie: String| {
        let app = &app;
        async move { json_of(get(app, "/v1/console/me", &cookie).await).await }
    };
    assert_eq!(
        me(agent).await["notices"],
        json!([]),
        "agents get no notices"
    );
    let notices = me(owner.clone()).await["notices"].clone();
    assert_eq!(notices[0]["kind"], "quota_warning", "{notices}");
    assert_eq!(notices[0]["quota"]["messages_limit"], 5);
    assert_eq!(me(owner).await["notices"], json!([]), "once a month");
    app.stop().await;
}

#[tokio::test]
async fn with_a_model_the_regression_check_asks_it_with_each_versions_instructions() {
    // Arrange: the model clarifies instead of answering when told not to give the hours.
    const RULE: &str = "JANGAN sebutkan jam buka.";
    let model = || {
        Reply::computed(|request| {
            let system = request["messages"][0]["content"]
                .as_str()
                .unwrap_or_default();
            if system.contains(RULE) {
                json!({"reply": "Outlet yang mana, Kak?", "action": "clarify", "citations": []})
                    .to_string()
            } else {
                let id = chunk_containing(request, HOURS).unwrap_or_else(|| "missing".into());
                json!({"reply": "Buka 08.00–23.00, Kak.", "action": "answer", "citations": [id]})
                    .to_string()
            }
        })
    };
    let fake = FakeOpenAi::start([model(), model()]).await;
    let app = spawn_app(&fake.config("stream = false")).await;
    let (owner, csrf) = owner_of_demo(&app).await;
    let added = post(
        &app,
        "/v1/console/golden",
        &json!({"query": HOURS_QUESTION, "doc": "profil-dan-lokasi.md"}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(added.status(), 201);
    let mut draft = json_of(get(&app, "/v1/console/bot/draft", &owner).await).await;
    draft["instructions"] = json!(RULE);
    let saved = put(&app, "/v1/console/bot/draft", &draft, &owner, &csrf).await;
    assert_eq!(saved.status(), 200);

    // Act
    let report = json_of(
        post(
            &app,
            "/v1/console/bot/draft/regression",
            &json!({}),
            Some(&owner),
            Some(&csrf),
        )
        .await,
    )
    .await;

    // Assert: live answers citing the expected document; the draft's model call clarifies.
    assert_eq!(
        report["live"],
        json!({"passed": 1, "failed": 0}),
        "{report}"
    );
    assert_eq!(
        report["draft"],
        json!({"passed": 0, "failed": 1}),
        "{report}"
    );
    assert_eq!(report["newly_failing"][0]["question"], HOURS_QUESTION);
    assert!(
        report["newly_failing"][0]["got"]
            .as_str()
            .unwrap()
            .contains("llm_clarify"),
        "{report}"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "one model call per version");
    let with_rule = requests
        .iter()
        .filter(|r| {
            r["messages"][0]["content"]
                .as_str()
                .is_some_and(|s| s.contains(RULE))
        })
        .count();
    assert_eq!(
        with_rule, 1,
        "only the draft's call has the draft's instructions"
    );
    app.stop().await;
}
