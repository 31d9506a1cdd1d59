//! The console's staff login end to end: passwords, the one-time code second factor through
//! the fake Graph API, sessions with CSRF, lockout, set-password links from the CLI.

use std::time::Duration;

use gateway::startup::Overrides;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::{TestApp, eventually, spawn_app_with, whatsapp_config};
use serde_json::{Value, json};

const PASSWORD: &str = "kopi-susu-gula-aren";

async fn start() -> (TestApp, FakeGraph) {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}[tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n",
        whatsapp_config(&graph.base_url, "otp_template = \"login_code\"\n")
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    (app, graph)
}

pub(crate) async fn add_staff(app: &TestApp, tenant: &str, email: &str, whatsapp: Option<&str>) {
    add_member(app, tenant, email, "agent", whatsapp).await;
}

pub(crate) async fn add_member(
    app: &TestApp,
    tenant: &str,
    email: &str,
    role: &str,
    whatsapp: Option<&str>,
) {
    let store = app.store().await;
    let member = gateway::store::StaffMember {
        id: format!("stf_{}", uuid::Uuid::new_v4().simple()),
        tenant_id: tenant.into(),
        email: email.into(),
        role: role.into(),
        whatsapp: whatsapp.map(str::to_owned),
        telegram_chat_id: None,
        disabled_at_ms: None,
        locked_until_ms: None,
        has_password: true,
    };
    let hash = gateway::staff::hash_password(PASSWORD).unwrap();
    assert!(store.add_staff(&member, Some(&hash), 0).await.unwrap());
    store.close().await;
}

pub(crate) async fn post(
    app: &TestApp,
    path: &str,
    body: &Value,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.post(format!("{}{path}", app.address)).json(body);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    request.send().await.unwrap()
}

async fn me(app: &TestApp, cookie: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/v1/console/me", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

fn session_cookie(response: &reqwest::Response) -> (String, String) {
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, set)
}

#[tokio::test]
async fn staff_log_in_with_a_password_and_a_whatsapp_code_and_csrf_guards_changes() {
    let (app, graph) = start().await;
    add_staff(&app, "demo", "agent@demo.local", Some("+6281311112222")).await;
    let response = post(
        &app,
        "/v1/console/login",
        &json!({"tenant": "demo", "email": "Agent@Demo.Local", "password": PASSWORD}),
        None,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["otp_required"], true, "{body}");
    let challenge = body["challenge_id"].as_str().unwrap().to_owned();
    let send = eventually(Duration::from_secs(20), || async {
        graph
            .sends()
            .into_iter()
            .find(|s| s.body["type"] == "template")
    })
    .await;
    assert_eq!(send.body["to"], "6281311112222");
    let code = send.body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = post(
        &app,
        "/v1/console/login/otp",
        &json!({"challenge_id": challenge, "code": code}),
        None,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let (cookie, set_cookie) = session_cookie(&response);
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    // Plain http on loopback: not `Secure`, or the browser would drop it.
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(body["staff"]["email"], "agent@demo.local");
    assert_eq!(body["staff"]["second_factor"], true);

    let who: Value = me(&app, &cookie).await.json().await.unwrap();
    assert_eq!(who["staff"]["tenant"], "demo");
    assert_eq!(who["advise_2fa"], false);
    // A state-changing request without (or with a wrong) CSRF token is refused.
    let refused = post(&app, "/v1/console/logout", &json!({}), Some(&cookie), None).await;
    assert_eq!(refused.status(), 403);
    let refused = post(
        &app,
        "/v1/console/logout",
        &json!({}),
        Some(&cookie),
        Some("nope"),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let out = post(
        &app,
        "/v1/console/logout",
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(out.status(), 204);
    assert_eq!(me(&app, &cookie).await.status(), 401);
    // Behind https the cookie is `Secure`.
    add_staff(&app, "other", "owner@other.local", None).await;
    let response = app
        .client
        .post(format!("{}/v1/console/login", app.address))
        .header("x-forwarded-proto", "https")
        .json(&json!({"tenant": "other", "email": "owner@other.local", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(session_cookie(&response).1.contains("Secure"));
    app.stop().await;
}

#[tokio::test]
async fn ten_failed_logins_lock_the_account_and_unknown_emails_look_the_same() {
    let (app, _graph) = start().await;
    add_staff(&app, "demo", "agent@demo.local", None).await;
    let attempt = |email: &'static str, password: &'static str, tenant: &'static str| {
        let app = &app;
        async move {
            let response = post(
                app,
                "/v1/console/login",
                &json!({"tenant": tenant, "email": email, "password": password}),
                None,
                None,
            )
            .await;
            let status = response.status().as_u16();
            let retry = response.headers().get("retry-after").is_some();
            let body: Value = response.json().await.unwrap();
            (status, body, retry)
        }
    };
    let (status, unknown, _) = attempt("nobody@demo.local", "wrong-password", "demo").await;
    let (_, wrong, _) = attempt("agent@demo.local", "wrong-password", "demo").await;
    assert_eq!(status, 401);
    assert_eq!(
        unknown, wrong,
        "an unknown email and a wrong password answer alike"
    );
    // Another tenant's staff cannot log in here.
    let (status, _, _) = attempt("agent@demo.local", PASSWORD, "other").await;
    assert_eq!(status, 401);
    for _ in 0..8 {
        assert_eq!(
            attempt("agent@demo.local", "wrong-password", "demo")
                .await
                .0,
            401
        );
    }
    let (status, body, retry) = attempt("agent@demo.local", "wrong-password", "demo").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (423, Some("account_locked"))
    );
    assert!(retry);
    // Locked: even the right password waits.
    assert_eq!(attempt("agent@demo.local", PASSWORD, "demo").await.0, 423);
    let store = app.store().await;
    let log = store.audit_log("demo", 50).await.unwrap();
    assert!(log.iter().any(|(action, ..)| action == "locked"), "{log:?}");
    assert_eq!(
        log.iter()
            .filter(|(action, ..)| action == "login_failed")
            .count(),
        10
    );
    store.close().await;
    app.stop().await;
}

async fn sapa(
    data_dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = crate::process::command(data_dir, &[])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_staff_commands_and_a_set_password_link_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let server = crate::process::ServerProcess::start(&path, &[]).await;
    let (ok, stdout, stderr) = sapa(
        &path,
        &[
            "staff",
            "add",
            "--tenant",
            "demo",
            "--email",
            "Boss@Demo.Local",
            "--role",
            "owner",
        ],
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let token = stdout
        .split("#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (ok, _, stderr) = sapa(
        &path,
        &[
            "staff",
            "add",
            "--tenant",
            "demo",
            "--email",
            "owner@demo.local",
            "--role",
            "owner",
        ],
        None,
    )
    .await;
    assert!(!ok && stderr.contains("already has"), "{stderr}");
    let (ok, stdout, stderr) = sapa(
        &path,
        &[
            "staff",
            "add",
            "--tenant",
            "demo",
            "--email",
            "agent@demo.local",
            "--role",
            "agent",
            "--password-stdin",
        ],
        Some("agent-password-1\n"),
    )
    .await;
    assert!(ok && !stdout.contains("#token="), "{stdout} {stderr}");
    let (ok, stdout, _) = sapa(&path, &["staff", "list", "demo"], None).await;
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("boss@demo.local\towner\tinvited\tpassword only"),
        "{stdout}"
    );
    assert!(
        stdout.contains("agent@demo.local\tagent\tactive"),
        "{stdout}"
    );

    let client = reqwest::Client::new();
    let set = |password: &'static str| {
        let client = client.clone();
        let url = format!("{}/v1/console/password", server.address);
        let token = token.clone();
        async move {
            client
                .post(url)
                .json(&json!({"token": token, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(set("short").await, 400);
    assert_eq!(set("owner-password-1").await, 200);
    assert_eq!(set("owner-password-2").await, 410, "a link works once");
    let login = |email: &'static str, password: &'static str| {
        let client = client.clone();
        let url = format!("{}/v1/console/login", server.address);
        async move {
            client
                .post(url)
                .json(&json!({"tenant": "demo", "email": email, "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let response = login("boss@demo.local", "owner-password-1").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["csrf_token"].is_string(), "{body}");
    // The agent's password came from standard input, without its newline.
    assert_eq!(
        login("agent@demo.local", "agent-password-1").await.status(),
        200
    );

    let (ok, _, _) = sapa(
        &path,
        &["staff", "disable", "demo", "agent@demo.local"],
        None,
    )
    .await;
    assert!(ok);
    assert_eq!(
        login("agent@demo.local", "agent-password-1").await.status(),
        401
    );
    let (ok, stdout, _) = sapa(&path, &["staff", "reset", "demo", "boss@demo.local"], None).await;
    assert!(
        ok && stdout.contains("/console/set-password#token="),
        "{stdout}"
    );
    server.kill().await;
}

/// Logs `email` of `tenant` in (password only); returns the cookie and the CSRF token.
pub(crate) async fn log_in(app: &TestApp, tenant: &str, email: &str) -> (String, String) {
    let response = post(
        app,
        "/v1/console/login",
        &json!({"tenant": tenant, "email": email, "password": PASSWORD}),
        None,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let (cookie, _) = session_cookie(&response);
    let body: Value = response.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

pub(crate) async fn get(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_agent_takes_over_a_web_chat_and_hands_it_back_to_the_bot() {
    let app =
        sapa_tests::spawn_app("[tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n").await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    add_staff(&app, "demo", "sari@demo.local", None).await;
    add_staff(&app, "other", "eve@other.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let session = app.session("demo").await;
    let id = session.conversation_id.clone();

    app.post(&session, "c1", "mau bicara dengan admin").await;
    let notice = app.bot_messages(&session, 1).await;
    // Open around the clock, nobody online: the notice says so.
    let text = notice[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&flows::texts::handoff_notice(flows::Locale::Id)),
        "{text}"
    );
    assert!(text.contains("belum ada tim kami yang online"), "{text}");
    let waiting: Value = get(&app, "/v1/console/conversations?queue=waiting", &cookie)
        .await
        .json()
        .await
        .unwrap();
    let item = waiting["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{waiting}"));
    assert_eq!(item["state"], "waiting_human");
    assert_eq!(item["channel"], "webchat");
    assert!(item["last_message"].as_str().is_some());
    assert!(item["waiting_since"].is_string(), "{item}");
    assert_eq!(item["handoff_reason"], "customer_asked");

    // Another tenant's agent sees nothing of it.
    let (eve, eve_csrf) = log_in(&app, "other", "eve@other.local").await;
    assert_eq!(
        get(&app, &format!("/v1/console/conversations/{id}"), &eve)
            .await
            .status(),
        404
    );
    let stolen = post(
        &app,
        &format!("/v1/console/conversations/{id}/claim"),
        &json!({}),
        Some(&eve),
        Some(&eve_csrf),
    )
    .await;
    assert_eq!(stolen.status(), 404);
    let eve_queue: Value = get(&app, "/v1/console/conversations?queue=open", &eve)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(eve_queue["conversations"], json!([]));

    // Claiming needs the CSRF token, and is idempotent for its assignee.
    let claim = format!("/v1/console/conversations/{id}/claim");
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), None)
            .await
            .status(),
        403
    );
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        200
    );
    let (sari, sari_csrf) = log_in(&app, "demo", "sari@demo.local").await;
    let taken = post(&app, &claim, &json!({}), Some(&sari), Some(&sari_csrf)).await;
    assert_eq!(taken.status(), 409);
    let mine: Value = get(&app, "/v1/console/conversations?queue=mine", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["conversations"][0]["id"], id.as_str());
    let reply = format!("/v1/console/conversations/{id}/messages");
    assert_eq!(
        post(
            &app,
            &reply,
            &json!({"text": "x"}),
            Some(&sari),
            Some(&sari_csrf)
        )
        .await
        .status(),
        409,
        "only the assignee replies"
    );

    // The agent's replies reach the customer in order.
    for text in ["Halo kak, saya Budi.", "Ada yang bisa saya bantu?"] {
        let sent = post(
            &app,
            &reply,
            &json!({"text": text}),
            Some(&cookie),
            Some(&csrf),
        )
        .await;
        assert_eq!(sent.status(), 202);
    }
    let agent: Vec<String> = eventually(Duration::from_secs(20), || async {
        let texts: Vec<String> = app
            .messages(&session)
            .await
            .into_iter()
            .filter(|m| m["author"] == "agent")
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        (texts.len() == 2).then_some(texts)
    })
    .await;
    assert_eq!(
        agent,
        vec!["Halo kak, saya Budi.", "Ada yang bisa saya bantu?"]
    );
    // An internal note stays with the agents.
    let note = post(
        &app,
        &reply,
        &json!({"text": "Pelanggan VIP, cek pesanan #12", "note": true}),
        Some(&sari),
        Some(&sari_csrf),
    )
    .await;
    assert_eq!(note.status(), 201);

    // While the agent owns it, the bot says nothing.
    let bots_before = app.bot_messages(&session, 1).await.len();
    app.post(&session, "c2", "jam buka hari Minggu?").await;
    app.settled().await;
    let bots_after = app
        .messages(&session)
        .await
        .into_iter()
        .filter(|m| m["author"] == "bot")
        .count();
    assert_eq!(bots_after, bots_before);
    let view: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["conversation"]["state"], "human");
    assert!(view["messages"].as_array().unwrap().len() >= 5, "{view}");
    assert!(
        view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author"] == "note" && m["text"] == "Pelanggan VIP, cek pesanan #12")
    );
    assert!(
        app.messages(&session)
            .await
            .iter()
            .all(|m| m["author"] != "note"),
        "the customer never sees a note"
    );

    // Handed back, the bot answers again.
    let back = post(
        &app,
        &format!("/v1/console/conversations/{id}/handback"),
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(back.status(), 200);
    // The bot resumes with a summary of the agent's part (no model here: the last messages).
    let view: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    let summary = view["handoff_summary"]
        .as_str()
        .unwrap_or_else(|| panic!("{view}"));
    assert!(
        summary.contains("Agent: Ada yang bisa saya bantu?"),
        "{summary}"
    );
    assert!(
        summary.contains("Customer: jam buka hari Minggu?"),
        "{summary}"
    );
    assert!(
        !summary.contains("Pelanggan VIP"),
        "notes stay out: {summary}"
    );
    app.post(&session, "c3", "jam buka outlet Blok M hari Minggu?")
        .await;
    let answered = app.bot_messages(&session, bots_before + 1).await;
    assert!(answered.len() > bots_before);
    let store = app.store().await;
    let log = store.audit_log("demo", 50).await.unwrap();
    for action in ["claim", "reply", "handback"] {
        assert!(log.iter().any(|(a, ..)| a == action), "{action}: {log:?}");
    }
    store.close().await;
    app.stop().await;
}

#[tokio::test]
async fn an_agent_reply_reaches_a_whatsapp_customer() {
    let (app, graph) = start().await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281234567000", "phone_number_id": sapa_tests::WA_NUMBER},
        "contacts": [{"profile": {"name": "Rina"}, "wa_id": "6281311112222"}],
        "messages": [{"from": "6281311112222", "id": "wamid.H1", "timestamp": "1763791200", "type": "text", "text": {"body": "mau bicara dengan admin"}}]}}]}]}))
    .unwrap();
    assert_eq!(
        app.whatsapp_post(&body, sapa_tests::WA_APP_SECRET)
            .await
            .status(),
        200
    );
    let item = eventually(Duration::from_secs(20), || async {
        let queue: Value = get(&app, "/v1/console/conversations?queue=waiting", &cookie)
            .await
            .json()
            .await
            .unwrap();
        queue["conversations"]
            .as_array()
            .and_then(|c| c.first().cloned())
    })
    .await;
    assert_eq!(item["channel"], "whatsapp");
    assert_eq!(item["customer"], "Rina");
    assert!(item["last_customer_message_at"].is_string());
    let id = item["id"].as_str().unwrap();
    let claim = format!("/v1/console/conversations/{id}/claim");
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        200
    );
    let reply = format!("/v1/console/conversations/{id}/messages");
    let sent = post(
        &app,
        &reply,
        &json!({"text": "Halo Rina, saya Budi."}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(sent.status(), 202);
    let send = eventually(Duration::from_secs(20), || async {
        graph
            .sends()
            .into_iter()
            .find(|s| s.body["text"]["body"] == "Halo Rina, saya Budi.")
    })
    .await;
    assert_eq!(send.body["to"], "6281311112222");
    // A second reply arrives after the first.
    let sent = post(
        &app,
        &reply,
        &json!({"text": "Pesanan Rina sedang saya cek."}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(sent.status(), 202);
    let texts = eventually(Duration::from_secs(20), || async {
        let texts: Vec<String> = graph
            .sends()
            .into_iter()
            .filter_map(|s| s.body["text"]["body"].as_str().map(str::to_owned))
            .collect();
        texts
            .iter()
            .any(|t| t == "Pesanan Rina sedang saya cek.")
            .then_some(texts)
    })
    .await;
    let first = texts
        .iter()
        .position(|t| t == "Halo Rina, saya Budi.")
        .unwrap();
    let second = texts
        .iter()
        .position(|t| t == "Pesanan Rina sedang saya cek.")
        .unwrap();
    assert!(first < second, "{texts:?}");
    // While the agent has it, the customer's messages get no bot answer.
    let customer = |wamid: &str, text: &str| {
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "6281234567000", "phone_number_id": sapa_tests::WA_NUMBER},
            "contacts": [{"profile": {"name": "Rina"}, "wa_id": "6281311112222"}],
            "messages": [{"from": "6281311112222", "id": wamid, "timestamp": "1763791300", "type": "text", "text": {"body": text}}]}}]}]}))
        .unwrap()
    };
    let before = graph.sends().len();
    let posted = app
        .whatsapp_post(
            &customer("wamid.H2", "jam buka outlet Blok M hari Minggu?"),
            sapa_tests::WA_APP_SECRET,
        )
        .await;
    assert_eq!(posted.status(), 200);
    app.settled().await;
    assert_eq!(graph.sends().len(), before, "the bot stayed silent");
    // Handed back, the bot answers the next question.
    let back = post(
        &app,
        &format!("/v1/console/conversations/{id}/handback"),
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(back.status(), 200);
    let posted = app
        .whatsapp_post(
            &customer("wamid.H3", "jam buka outlet Blok M hari Minggu?"),
            sapa_tests::WA_APP_SECRET,
        )
        .await;
    assert_eq!(posted.status(), 200);
    eventually(Duration::from_secs(20), || async {
        graph.sends().into_iter().skip(before).find(|s| {
            s.body["text"]["body"]
                .as_str()
                .is_some_and(|t| t.contains("08.00–23.00"))
        })
    })
    .await;
    let resolved = post(
        &app,
        &format!("/v1/console/conversations/{id}/resolve"),
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(resolved.status(), 200);
    let done: Value = get(&app, "/v1/console/conversations?queue=resolved", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["conversations"][0]["id"], id);
    app.stop().await;
}

#[tokio::test]
async fn the_demo_owner_is_created_at_first_start_with_a_one_time_password_link() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = crate::process::command(dir.path(), &[])
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (address, token) = tokio::time::timeout(Duration::from_secs(60), async {
        let mut address = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(found) = line.strip_prefix("Sapa is listening on ") {
                address = Some(found.trim().to_owned());
            }
            if let Some((_, rest)) = line.split_once("/console/set-password#token=") {
                let token = rest.split_whitespace().next().unwrap().to_owned();
                return (address.unwrap(), token);
            }
        }
        panic!("no demo owner line");
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let set = client
        .post(format!("{address}/v1/console/password"))
        .json(&json!({"token": token, "password": "demo-owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let login = client
        .post(format!("{address}/v1/console/login"))
        .json(&json!({"tenant": "demo", "email": "owner@demo.local", "password": "demo-owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let body: Value = login.json().await.unwrap();
    assert_eq!(body["staff"]["role"], "owner");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_tenant_handoff_keyword_puts_the_chat_in_the_waiting_queue() {
    let app = sapa_tests::spawn_app(
        "[tenants.shop]\nname = \"Toko Sepatu\"\nlocale = \"id\"\nhandoff_keywords = [\"komplain\", \"refund\"]\n",
    )
    .await;
    add_staff(&app, "shop", "budi@shop.local", None).await;
    let (cookie, _) = log_in(&app, "shop", "budi@shop.local").await;
    let session = app.session("shop").await;
    app.post(
        &session,
        "k1",
        "saya mau komplain soal pesanan kemarin yang datangnya terlambat sekali",
    )
    .await;
    let item = eventually(Duration::from_secs(20), || async {
        let queue: Value = get(&app, "/v1/console/conversations?queue=waiting", &cookie)
            .await
            .json()
            .await
            .unwrap();
        queue["conversations"]
            .as_array()
            .and_then(|c| c.first().cloned())
    })
    .await;
    assert_eq!(item["id"], session.conversation_id.as_str());
    assert_eq!(item["handoff_reason"], "tenant_keyword");
    app.stop().await;
}

#[tokio::test]
async fn an_agent_reply_reaches_a_telegram_customer() {
    let telegram = sapa_tests::fake_telegram::FakeTelegram::start().await;
    let config = sapa_tests::telegram_config(&telegram.base_url, "");
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let chat = 5_123_456_789_i64;
    let update = json!({"update_id": 1, "message": {
        "message_id": 7, "date": 1_763_792_000, "text": "mau bicara dengan admin",
        "from": {"id": chat, "is_bot": false, "first_name": "Dewi", "language_code": "id"},
        "chat": {"id": chat, "first_name": "Dewi", "type": "private"}}});
    let response = app
        .telegram_post(
            &serde_json::to_vec(&update).unwrap(),
            Some(sapa_tests::TG_WEBHOOK_SECRET),
        )
        .await;
    assert_eq!(response.status(), 200);
    let item = eventually(Duration::from_secs(20), || async {
        let queue: Value = get(&app, "/v1/console/conversations?queue=waiting", &cookie)
            .await
            .json()
            .await
            .unwrap();
        queue["conversations"]
            .as_array()
            .and_then(|c| c.first().cloned())
    })
    .await;
    assert_eq!(item["channel"], "telegram");
    let id = item["id"].as_str().unwrap();
    let claim = format!("/v1/console/conversations/{id}/claim");
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        200
    );
    let reply = format!("/v1/console/conversations/{id}/messages");
    let sent = post(
        &app,
        &reply,
        &json!({"text": "Halo Dewi, saya Budi."}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(sent.status(), 202);
    let call = eventually(Duration::from_secs(20), || async {
        telegram
            .calls_of("sendMessage")
            .into_iter()
            .find(|c| c.body["text"] == "Halo Dewi, saya Budi.")
    })
    .await;
    assert_eq!(
        call.body["chat_id"].to_string().trim_matches('"'),
        chat.to_string()
    );
    // While the agent has it, the customer's messages get no bot answer.
    let customer = |update_id: i64, message_id: i64, text: &str| {
        serde_json::to_vec(&json!({"update_id": update_id, "message": {
            "message_id": message_id, "date": 1_763_792_100, "text": text,
            "from": {"id": chat, "is_bot": false, "first_name": "Dewi", "language_code": "id"},
            "chat": {"id": chat, "first_name": "Dewi", "type": "private"}}}))
        .unwrap()
    };
    let before = telegram.calls_of("sendMessage").len();
    let posted = app
        .telegram_post(
            &customer(2, 8, "jam buka outlet Blok M hari Minggu?"),
            Some(sapa_tests::TG_WEBHOOK_SECRET),
        )
        .await;
    assert_eq!(posted.status(), 200);
    app.settled().await;
    assert_eq!(
        telegram.calls_of("sendMessage").len(),
        before,
        "the bot stayed silent"
    );
    // Handed back, the bot answers the next question.
    let back = post(
        &app,
        &format!("/v1/console/conversations/{id}/handback"),
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(back.status(), 200);
    let posted = app
        .telegram_post(
            &customer(3, 9, "jam buka outlet Blok M hari Minggu?"),
            Some(sapa_tests::TG_WEBHOOK_SECRET),
        )
        .await;
    assert_eq!(posted.status(), 200);
    eventually(Duration::from_secs(20), || async {
        telegram
            .calls_of("sendMessage")
            .into_iter()
            .skip(before)
            .find(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("08.00–23.00"))
            })
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn waiting_chats_go_round_robin_to_online_agents_within_their_cap() {
    let app = sapa_tests::spawn_app(
        "[tenants.shop]\nname = \"Toko Sepatu\"\nlocale = \"id\"\nmax_chats_per_agent = 1\n",
    )
    .await;
    for email in ["budi@shop.local", "sari@shop.local", "away@shop.local"] {
        add_staff(&app, "shop", email, None).await;
    }
    let mut agents = Vec::new();
    for email in ["budi@shop.local", "sari@shop.local"] {
        let (cookie, csrf) = log_in(&app, "shop", email).await;
        let online = post(
            &app,
            "/v1/console/presence",
            &json!({"status": "online"}),
            Some(&cookie),
            Some(&csrf),
        )
        .await;
        assert_eq!(online.status(), 200);
        let me: Value = me(&app, &cookie).await.json().await.unwrap();
        assert_eq!(me["presence"], "online");
        agents.push((cookie, me["staff"]["id"].as_str().unwrap().to_owned()));
    }
    let mut sessions = Vec::new();
    for n in 0..3 {
        let session = app.session("shop").await;
        app.post(&session, &format!("h{n}"), "mau bicara dengan admin")
            .await;
        sessions.push(session);
    }
    // Two chats assigned, one to each online agent; the third keeps waiting (caps of 1).
    let assigned = eventually(Duration::from_secs(20), || async {
        let mut owners = Vec::new();
        for (cookie, id) in &agents {
            let mine: Value = get(&app, "/v1/console/conversations?queue=mine", cookie)
                .await
                .json()
                .await
                .unwrap();
            for c in mine["conversations"].as_array().unwrap() {
                owners.push((c["id"].as_str().unwrap().to_owned(), id.clone()));
            }
        }
        (owners.len() == 2).then_some(owners)
    })
    .await;
    let mut owners: Vec<&String> = assigned.iter().map(|(_, agent)| agent).collect();
    owners.sort();
    owners.dedup();
    assert_eq!(owners.len(), 2, "one each: {assigned:?}");
    let waiting: Value = get(
        &app,
        "/v1/console/conversations?queue=waiting",
        &agents[0].0,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(waiting["conversations"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_chat_waiting_too_long_is_renotified_once_then_returned_to_the_bot() {
    let app = sapa_tests::spawn_app("").await;
    let session = app.session("demo").await;
    app.post(&session, "s1", "mau bicara dengan admin").await;
    let notice = app.bot_messages(&session, 1).await;
    let store = app.store().await;
    let since: i64 = eventually(Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT waiting_since FROM conversations WHERE id = $1",
        )
        .bind(&session.conversation_id)
        .fetch_one(store.pool())
        .await
        .unwrap()
    })
    .await;
    let wake = tokio::sync::Notify::new();
    let rules = std::collections::HashMap::new();
    let live = gateway::bot::LiveBots::default();
    let minute = 60_000;
    // Ten minutes later: told once more, and only once (each pass names what it changed, for
    // the consoles' live events).
    let changed =
        gateway::workers::assigner::run_once(&store, &rules, &live, &wake, since + 11 * minute)
            .await;
    assert_eq!(
        changed,
        vec![("demo".to_owned(), session.conversation_id.clone())]
    );
    let changed =
        gateway::workers::assigner::run_once(&store, &rules, &live, &wake, since + 12 * minute)
            .await;
    assert!(changed.is_empty(), "{changed:?}");
    let bots = app.bot_messages(&session, notice.len() + 1).await;
    assert_eq!(bots.len(), notice.len() + 1);
    assert!(
        bots.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("tetap dalam antrean")
    );
    // An hour later: back to the bot, with an apology; the bot answers again.
    gateway::workers::assigner::run_once(&store, &rules, &live, &wake, since + 61 * minute).await;
    let bots = app.bot_messages(&session, notice.len() + 2).await;
    assert!(
        bots.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("belum bisa membalas")
    );
    let state: String = sqlx::query_scalar("SELECT state FROM conversations WHERE id = $1")
        .bind(&session.conversation_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(state, "bot");
    app.post(&session, "s2", "jam buka outlet Blok M hari Minggu?")
        .await;
    app.bot_messages(&session, notice.len() + 3).await;
    store.close().await;
    app.stop().await;
}

/// An open `GET /v1/console/events` stream, read event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(app: &TestApp, cookie: &str) -> Self {
        let response = get(app, "/v1/console/events", cookie).await;
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (`event:` name, parsed `data:`) other than keep-alive comments; panics
    /// when none arrives within `deadline`.
    async fn next(&mut self, deadline: Duration) -> (String, Value) {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            while let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if !data.is_empty() {
                    return (name, serde_json::from_str(&data).unwrap());
                }
            }
            let chunk = tokio::time::timeout_at(end, self.response.chunk())
                .await
                .expect("no console event within the deadline")
                .unwrap()
                .expect("the event stream ended");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads events until one matches `wanted`.
    async fn until(&mut self, deadline: Duration, wanted: impl Fn(&str, &Value) -> bool) -> Value {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let (name, data) = self.next(left).await;
            if wanted(&name, &data) {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn console_events_stream_a_waiting_chat_to_its_tenant_only() {
    // Arrange
    let app =
        sapa_tests::spawn_app("[tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n").await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    add_staff(&app, "other", "eve@other.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let (eve, eve_csrf) = log_in(&app, "other", "eve@other.local").await;
    let unauthenticated = app
        .client
        .get(format!("{}/v1/console/events", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let mut budi_events = EventStream::open(&app, &cookie).await;
    let mut eve_events = EventStream::open(&app, &eve).await;

    // Act: a web chat customer of `demo` asks for a person.
    let session = app.session("demo").await;
    app.post(&session, "c1", "saya mau bicara dengan admin")
        .await;

    // Assert: demo's console hears of it at once (no polling)...
    let id = session.conversation_id.as_str();
    let waiting = budi_events
        .until(Duration::from_secs(20), |name, data| {
            name == "conversation" && data["id"] == id
        })
        .await;
    assert_eq!(waiting["state"], "waiting_human", "{waiting}");
    assert_eq!(waiting["assignee"], Value::Null);
    // ...and its claim and reply too.
    let claim = format!("/v1/console/conversations/{id}/claim");
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        200
    );
    let claimed = budi_events
        .until(Duration::from_secs(20), |name, data| {
            name == "conversation" && data["id"] == id && data["state"] == "human"
        })
        .await;
    assert!(claimed["assignee"].as_str().unwrap().starts_with("stf_"));
    // A new customer message in the assigned chat is announced too.
    app.post(&session, "c2", "halo, masih di sana?").await;
    let again = budi_events
        .until(Duration::from_secs(20), |name, data| {
            name == "conversation" && data["id"] == id
        })
        .await;
    assert_eq!(again["state"], "human", "{again}");

    // The other tenant's stream carries none of it: the first event it gets is its own.
    let presence = post(
        &app,
        "/v1/console/presence",
        &json!({"status": "online"}),
        Some(&eve),
        Some(&eve_csrf),
    )
    .await;
    assert_eq!(presence.status(), 200);
    let (name, data) = eve_events.next(Duration::from_secs(20)).await;
    assert_eq!(name, "presence", "{data}");
    assert_eq!(data["status"], "online");

    // A staff member holds at most five streams at a time.
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(EventStream::open(&app, &cookie).await);
    }
    let refused = get(&app, "/v1/console/events", &cookie).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    drop(more);
    eventually(Duration::from_secs(20), || async {
        let response = get(&app, "/v1/console/events", &cookie).await;
        (response.status() == 200).then_some(())
    })
    .await;
    drop(budi_events);
    drop(eve_events);
    app.stop().await;
}

/// The demo tenant on WhatsApp with canned replies and an agent template.
async fn start_composer() -> (TestApp, FakeGraph) {
    let graph = FakeGraph::start().await;
    let config = format!(
        "{}[[tenants.demo.canned_replies]]\nshortcut = \"harga\"\n\
         text = \"Harga kopi susu mulai Rp25.000.\"\n\
         [[tenants.demo.agent_templates]]\nname = \"follow_up\"\nlanguage = \"id\"\n\
         body = \"Halo, kami ingin melanjutkan percakapan Anda.\"\n\
         [tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n",
        whatsapp_config(&graph.base_url, "")
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    (app, graph)
}

/// A WhatsApp customer asks for a person; the agent claims the chat. Returns its id.
async fn claimed_whatsapp_chat(app: &TestApp, cookie: &str, csrf: &str) -> String {
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281234567000", "phone_number_id": sapa_tests::WA_NUMBER},
        "contacts": [{"profile": {"name": "Rina"}, "wa_id": "6281311112222"}],
        "messages": [{"from": "6281311112222", "id": "wamid.C1", "timestamp": "1763791200", "type": "text", "text": {"body": "saya mau bicara dengan admin"}}]}}]}]}))
    .unwrap();
    assert_eq!(
        app.whatsapp_post(&body, sapa_tests::WA_APP_SECRET)
            .await
            .status(),
        200
    );
    let item = eventually(Duration::from_secs(20), || async {
        let queue: Value = get(app, "/v1/console/conversations?queue=waiting", cookie)
            .await
            .json()
            .await
            .unwrap();
        queue["conversations"]
            .as_array()
            .and_then(|c| c.first().cloned())
    })
    .await;
    let id = item["id"].as_str().unwrap().to_owned();
    let claim = format!("/v1/console/conversations/{id}/claim");
    assert_eq!(
        post(app, &claim, &json!({}), Some(cookie), Some(csrf))
            .await
            .status(),
        200
    );
    id
}

#[tokio::test]
async fn the_composer_expands_canned_replies_and_sends_quick_replies_and_attachments() {
    // Arrange
    let (app, graph) = start_composer().await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let canned: Value = get(&app, "/v1/console/canned", &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(canned["canned_replies"][0]["shortcut"], "harga");
    assert_eq!(canned["agent_templates"][0]["name"], "follow_up");
    let id = claimed_whatsapp_chat(&app, &cookie, &csrf).await;
    let view: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        view["conversation"]["window_expires_at"].is_string(),
        "{view}"
    );
    let reply = format!("/v1/console/conversations/{id}/messages");
    let send = |body: Value| {
        let (app, reply, cookie, csrf) = (&app, &reply, &cookie, &csrf);
        async move { post(app, reply, &body, Some(cookie), Some(csrf)).await }
    };

    // Act + Assert: `/harga` alone is the canned reply.
    let sent = send(json!({"text": "/harga"})).await;
    assert_eq!(sent.status(), 202);
    let body: Value = sent.json().await.unwrap();
    assert_eq!(body["text"], "Harga kopi susu mulai Rp25.000.");
    eventually(Duration::from_secs(20), || async {
        graph
            .sends()
            .into_iter()
            .find(|s| s.body["text"]["body"] == "Harga kopi susu mulai Rp25.000.")
    })
    .await;

    // Quick replies: at most three of at most 20 characters.
    for (choices, why) in [
        (json!(["a", "b", "c", "d"]), "four"),
        (json!(["a", "ini pilihan yang terlalu panjang"]), "too long"),
        (json!([" "]), "empty"),
    ] {
        let refused = send(json!({"text": "Pilih:", "choices": choices})).await;
        assert_eq!(refused.status(), 422, "{why}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_choices", "{why}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 3"),
            "{body}"
        );
    }
    assert_eq!(
        send(json!({"text": "Jadi pesan?", "choices": ["Ya", "Tidak"]}))
            .await
            .status(),
        202
    );
    let buttons = eventually(Duration::from_secs(20), || async {
        graph
            .sends()
            .into_iter()
            .find(|s| s.body["type"] == "interactive")
    })
    .await;
    assert_eq!(
        buttons.body["interactive"]["body"]["text"], "Jadi pesan?",
        "{}",
        buttons.body
    );

    // Attachments: https only, image or document.
    for (attachment, why) in [
        (
            json!({"url": "http://cdn.example/menu.jpg", "kind": "image"}),
            "plain http",
        ),
        (
            json!({"url": "https://cdn.example/a.mp4", "kind": "video"}),
            "a video",
        ),
        (
            json!({"url": "https://cdn.example/a.jpg", "kind": "image", "filename": "a.jpg"}),
            "a file name on an image",
        ),
    ] {
        let refused = send(json!({"attachment": attachment})).await;
        assert_eq!(refused.status(), 422, "{why}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_attachment", "{why}");
    }
    assert_eq!(
        send(json!({"text": "Menu kami", "attachment": {"url": "https://cdn.example/menu.pdf", "kind": "document", "filename": "menu.pdf"}}))
            .await
            .status(),
        202
    );
    let document = eventually(Duration::from_secs(20), || async {
        graph
            .sends()
            .into_iter()
            .find(|s| s.body["type"] == "document")
    })
    .await;
    assert_eq!(
        document.body["document"]["link"],
        "https://cdn.example/menu.pdf"
    );
    assert_eq!(document.body["document"]["filename"], "menu.pdf");

    // Typing: the provider's indicator, at most once per 5 seconds.
    let typing = format!("/v1/console/conversations/{id}/typing");
    assert_eq!(
        post(&app, &typing, &json!({}), Some(&cookie), None)
            .await
            .status(),
        403,
        "typing needs the CSRF token"
    );
    assert_eq!(
        post(&app, &typing, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        202
    );
    assert_eq!(
        post(&app, &typing, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        429
    );
    eventually(Duration::from_secs(20), || async {
        graph
            .requests()
            .into_iter()
            .find(|r| r.is_mark_read() && r.body["typing_indicator"].is_object())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn outside_the_whatsapp_window_only_an_agent_template_goes_out() {
    // Arrange: the customer last wrote 25 hours ago.
    let (app, graph) = start_composer().await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let id = claimed_whatsapp_chat(&app, &cookie, &csrf).await;
    let store = app.store().await;
    let long_ago = gateway::store::now_ms() - 25 * 3600 * 1000;
    sqlx::query("UPDATE conversations SET last_inbound_at = $1 WHERE id = $2")
        .bind(long_ago)
        .bind(&id)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let reply = format!("/v1/console/conversations/{id}/messages");

    // Act + Assert: free text is refused, naming the templates to use instead.
    let refused = post(
        &app,
        &reply,
        &json!({"text": "Halo kak, masih berminat?"}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "outside_window", "{body}");
    assert_eq!(body["error"]["templates"][0]["name"], "follow_up");
    let view: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    let expires = view["conversation"]["window_expires_at"].as_str().unwrap();
    let now = gateway::store::rfc3339(gateway::store::now_ms());
    assert!(expires < now.as_str(), "{expires} is past");
    let unknown = post(
        &app,
        &reply,
        &json!({"template": {"name": "promo", "language": "id"}}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(unknown.status(), 422);
    let sent = post(
        &app,
        &reply,
        &json!({"template": {"name": "follow_up", "language": "id"}}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(sent.status(), 202);
    let template = eventually(Duration::from_secs(20), || async {
        graph
            .sends()
            .into_iter()
            .find(|s| s.body["type"] == "template")
    })
    .await;
    assert_eq!(template.body["template"]["name"], "follow_up");
    assert_eq!(template.body["to"], "6281311112222");
    assert!(
        graph
            .sends()
            .iter()
            .all(|s| s.body["text"]["body"] != "Halo kak, masih berminat?")
    );
    app.stop().await;
}

#[tokio::test]
async fn the_conversation_view_shows_customer_images_channels_and_earlier_chats() {
    // Arrange: a WhatsApp customer asks for a person, then sends a photo.
    let (app, graph) = start_composer().await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    add_staff(&app, "other", "eve@other.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let id = claimed_whatsapp_chat(&app, &cookie, &csrf).await;
    let photo = b"\xff\xd8\xff\xe0 a tiny jpeg".to_vec();
    graph.add_media("1234567890123456", "image/jpeg", &photo);
    let mut image: Value = serde_json::from_slice(&sapa_tests::wa_fixture("image.json")).unwrap();
    image["entry"][0]["changes"][0]["value"]["messages"][0]["image"]["sha256"] =
        json!(sapa_tests::fake_graph::media_sha256(&photo));
    let response = app
        .whatsapp_post(
            &serde_json::to_vec(&image).unwrap(),
            sapa_tests::WA_APP_SECRET,
        )
        .await;
    assert_eq!(response.status(), 200);
    // An earlier, closed conversation with the same customer.
    let store = app.store().await;
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, channel_account_id, contact_id, state, locale, handoff_reason, created_at, updated_at) \
         SELECT 'conv-earlier', tenant_id, channel_account_id, contact_id, 'closed', locale, 'customer_asked', 1000, 2000 \
         FROM conversations WHERE id = $1",
    )
    .bind(&id)
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;

    // Act
    let view: Value = eventually(Duration::from_secs(20), || async {
        let view: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
            .await
            .json()
            .await
            .unwrap();
        view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["media"]["url"].is_string())
            .then_some(view)
    })
    .await;

    // Assert: the photo is served inline to this tenant's agents, from this conversation only.
    let message = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["media"]["url"].is_string())
        .unwrap()
        .clone();
    assert_eq!(message["media"]["kind"], "image");
    let url = message["media"]["url"].as_str().unwrap();
    let served = get(&app, url, &cookie).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.headers()["content-disposition"], "inline");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    assert_eq!(served.bytes().await.unwrap().to_vec(), photo);
    let (eve, _) = log_in(&app, "other", "eve@other.local").await;
    assert_eq!(get(&app, url, &eve).await.status(), 404);
    let message_id = message["id"].as_i64().unwrap();
    for path in [
        format!("/v1/console/conversations/conv-earlier/media/{message_id}"),
        format!(
            "/v1/console/conversations/{id}/media/{}",
            view["messages"][0]["id"]
        ),
        format!("/v1/console/conversations/{id}/media/x"),
    ] {
        assert_eq!(get(&app, &path, &cookie).await.status(), 404, "{path}");
    }
    assert_eq!(
        app.client
            .get(format!("{}{url}", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The details: the customer's channels, earlier conversations, the handoff reason.
    assert_eq!(view["contact"]["channels"][0]["channel"], "whatsapp");
    assert_eq!(view["contact"]["channels"][0]["address"], "6281311112222");
    assert_eq!(view["previous_conversations"][0]["id"], "conv-earlier");
    assert_eq!(view["previous_conversations"][0]["state"], "closed");
    assert_eq!(view["conversation"]["handoff_reason"], "customer_asked");
    app.stop().await;
}

#[tokio::test]
async fn agent_quick_replies_reach_a_web_chat_customer_as_choices() {
    let app = sapa_tests::spawn_app("").await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let session = app.session("demo").await;
    let id = session.conversation_id.clone();
    app.post(&session, "c1", "saya mau bicara dengan admin")
        .await;
    app.bot_messages(&session, 1).await;
    let claim = format!("/v1/console/conversations/{id}/claim");
    assert_eq!(
        post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        200
    );
    let sent = post(
        &app,
        &format!("/v1/console/conversations/{id}/messages"),
        &json!({"text": "Mau diantar atau ambil sendiri?", "choices": ["Diantar", "Ambil sendiri"]}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(sent.status(), 202);
    let agent = eventually(Duration::from_secs(20), || async {
        app.messages(&session)
            .await
            .into_iter()
            .find(|m| m["author"] == "agent")
    })
    .await;
    assert_eq!(agent["text"], "Mau diantar atau ambil sendiri?");
    assert_eq!(agent["choices"], json!(["Diantar", "Ambil sendiri"]));
    // Typing on web chat is a typing event for the customer's socket, once per 5 s.
    let typing = format!("/v1/console/conversations/{id}/typing");
    assert_eq!(
        post(&app, &typing, &json!({}), Some(&cookie), Some(&csrf))
            .await
            .status(),
        202
    );
    let again = post(&app, &typing, &json!({}), Some(&cookie), Some(&csrf)).await;
    assert_eq!(again.status(), 429);
    assert!(again.headers().contains_key("retry-after"));
    app.stop().await;
}

/// Today's weekday in Jakarta (UTC+7, no daylight saving), Monday first.
fn jakarta_weekday() -> usize {
    let days = (gateway::store::now_ms() + 7 * 3_600_000).div_euclid(86_400_000);
    // 1970-01-01 was a Thursday.
    usize::try_from((days + 3).rem_euclid(7)).unwrap()
}

#[tokio::test]
async fn outside_business_hours_the_wait_notice_says_when_the_team_is_back() {
    // Closed today (a holiday would do the same), open 09:00-17:00 every other day.
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let today = jakarta_weekday();
    let mut hours = String::from("[tenants.shop.business_hours]\ntimezone = \"Asia/Jakarta\"\n");
    for (i, day) in days.iter().enumerate() {
        let spec = if i == today { "closed" } else { "09:00-17:00" };
        hours.push_str(&format!("{day} = \"{spec}\"\n"));
    }
    let app = sapa_tests::spawn_app(&format!(
        "[tenants.shop]\nname = \"Toko Sepatu\"\nlocale = \"id\"\n{hours}"
    ))
    .await;
    let session = app.session("shop").await;
    app.post(&session, "o1", "mau bicara dengan admin").await;
    let notice = app.bot_messages(&session, 1).await;
    let text = notice[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&flows::texts::handoff_notice(flows::Locale::Id)),
        "{text}"
    );
    assert!(text.contains("di luar jam operasional"), "{text}");
    // Tomorrow at nine (or, if Jakarta's midnight just passed, today at nine).
    assert!(text.contains("pukul 09.00 WIB"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn with_an_agent_online_the_wait_notice_gives_minutes() {
    let app = sapa_tests::spawn_app(
        "[tenants.shop]\nname = \"Toko Sepatu\"\nlocale = \"en\"\nmax_chats_per_agent = 1\n",
    )
    .await;
    add_staff(&app, "shop", "budi@shop.local", None).await;
    let (cookie, csrf) = log_in(&app, "shop", "budi@shop.local").await;
    // Busy with one chat already (the cap), so the next customer waits.
    let first = app.session("shop").await;
    app.post(&first, "w0", "I want to talk to a human").await;
    app.bot_messages(&first, 1).await;
    let claim = post(
        &app,
        &format!("/v1/console/conversations/{}/claim", first.conversation_id),
        &json!({}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(claim.status(), 200);
    let online = post(
        &app,
        "/v1/console/presence",
        &json!({"status": "online"}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(online.status(), 200);
    let session = app.session("shop").await;
    app.post(&session, "w1", "I want to talk to a human").await;
    let notice = app.bot_messages(&session, 1).await;
    let text = notice[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(&flows::texts::handoff_notice(flows::Locale::En)),
        "{text}"
    );
    // The first chat was claimed within a minute: about 1 minute.
    assert!(text.contains("about 1 minute"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn with_a_model_the_bot_resumes_with_its_summary_of_the_agents_part() {
    use sapa_tests::fake_openai::{FakeOpenAi, Reply, chunk_containing};
    const SUMMARY: &str = "Pelanggan menanyakan pesanan #12; agen berjanji mengirim resi hari ini.";
    // The summary request and the next answer, told apart by their system prompt.
    let reply = || {
        Reply::computed(|request| {
            let system = request["messages"][0]["content"].as_str().unwrap_or("");
            if system.contains("You summarize") {
                SUMMARY.to_owned()
            } else {
                let id = chunk_containing(request, "08.00").unwrap_or_else(|| "missing".into());
                json!({"reply": "Buka pukul 08.00, Kak.", "action": "answer", "citations": [id]})
                    .to_string()
            }
        })
    };
    let fake = FakeOpenAi::start([reply(), reply()]).await;
    let app = sapa_tests::spawn_app(&fake.config("stream = false")).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    let (cookie, csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let session = app.session("demo").await;
    let id = session.conversation_id.clone();
    app.post(&session, "m1", "mau bicara dengan admin").await;
    app.bot_messages(&session, 1).await;
    let claim = format!("/v1/console/conversations/{id}/claim");
    let claimed = post(&app, &claim, &json!({}), Some(&cookie), Some(&csrf)).await;
    assert_eq!(claimed.status(), 200);
    let reply_path = format!("/v1/console/conversations/{id}/messages");
    let sent = post(
        &app,
        &reply_path,
        &json!({"text": "Resi pesanan #12 saya kirim hari ini ya."}),
        Some(&cookie),
        Some(&csrf),
    )
    .await;
    assert_eq!(sent.status(), 202);
    let back = format!("/v1/console/conversations/{id}/handback");
    let handed = post(&app, &back, &json!({}), Some(&cookie), Some(&csrf)).await;
    assert_eq!(handed.status(), 200);
    // The model's summary replaces the extract.
    eventually(Duration::from_secs(20), || async {
        let view: Value = get(&app, &format!("/v1/console/conversations/{id}"), &cookie)
            .await
            .json()
            .await
            .unwrap();
        (view["handoff_summary"] == SUMMARY).then_some(())
    })
    .await;
    let requests = fake.requests();
    let transcript = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        transcript.contains("Agent: Resi pesanan #12 saya kirim hari ini ya."),
        "{transcript}"
    );
    // The bot's next prompt carries it as context.
    app.post(&session, "m2", "jam buka outlet Blok M hari Minggu?")
        .await;
    app.bot_messages(&session, 2).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let user = requests[1]["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains(SUMMARY), "{user}");
    app.stop().await;
}

#[tokio::test]
async fn an_owner_answers_an_unanswered_question_and_it_and_a_paraphrase_are_answered_at_once() {
    let app =
        sapa_tests::spawn_app("[tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n").await;
    add_member(&app, "demo", "pemilik@demo.local", "owner", None).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    add_member(&app, "other", "boss@other.local", "owner", None).await;
    let (owner, csrf) = log_in(&app, "demo", "pemilik@demo.local").await;
    let (agent, _) = log_in(&app, "demo", "budi@demo.local").await;
    let (boss, boss_csrf) = log_in(&app, "other", "boss@other.local").await;
    const ANSWER: &str =
        "Kami belum melayani antar jemput bandara, Kak. Silakan pakai taksi daring.";

    // Asked twice in different words: one group of two.
    for (n, question) in [
        "apakah ada layanan antar jemput bandara?",
        "bisa antar jemput ke bandara?",
    ]
    .iter()
    .enumerate()
    {
        let session = app.session("demo").await;
        app.post(&session, &format!("u{n}"), question).await;
        let bots = app.bot_messages(&session, 1).await;
        assert!(
            !bots[0]["text"].as_str().unwrap().contains("bandara, Kak"),
            "{}",
            bots[0]
        );
    }
    assert_eq!(
        get(&app, "/v1/console/unanswered", &agent).await.status(),
        403
    );
    let groups: Value = eventually(Duration::from_secs(20), || async {
        let body: Value = get(&app, "/v1/console/unanswered", &owner)
            .await
            .json()
            .await
            .unwrap();
        (body["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["count"] == 2)))
        .then_some(body)
    })
    .await;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["count"] == 2)
        .unwrap()
        .clone();
    assert_eq!(group["conversation_ids"].as_array().unwrap().len(), 2);
    let id = group["id"].as_str().unwrap();
    let csv = get(&app, "/v1/console/unanswered?format=csv", &owner)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("question,count,last_seen,conversation_ids"),
        "{csv}"
    );
    assert!(csv.contains("bandara"), "{csv}");

    // Another tenant's owner sees none of it and cannot answer it.
    let theirs: Value = get(&app, "/v1/console/unanswered", &boss)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["groups"], json!([]));
    let path = format!("/v1/console/unanswered/{id}/answer");
    let stolen = post(
        &app,
        &path,
        &json!({"answer": "x"}),
        Some(&boss),
        Some(&boss_csrf),
    )
    .await;
    assert_eq!(stolen.status(), 404);
    // CSRF, then a clear error for an empty answer.
    assert_eq!(
        post(&app, &path, &json!({"answer": ANSWER}), Some(&owner), None)
            .await
            .status(),
        403
    );
    let empty = post(
        &app,
        &path,
        &json!({"answer": "  "}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(empty.status(), 422);
    let answered = post(
        &app,
        &path,
        &json!({"answer": ANSWER}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(answered.status(), 200);
    let answered: Value = answered.json().await.unwrap();
    assert_eq!(answered["answered"], 2);

    // Right away, the same question and a paraphrase are answered from the owner's text.
    for (n, question) in [
        "apakah ada layanan antar jemput bandara?",
        "antar jemput bandara ada?",
    ]
    .iter()
    .enumerate()
    {
        let session = app.session("demo").await;
        app.post(&session, &format!("a{n}"), question).await;
        let bots = app.bot_messages(&session, 1).await;
        let text = bots[0]["text"].as_str().unwrap();
        assert!(
            text.contains("belum melayani antar jemput bandara"),
            "{question}: {text}"
        );
    }
    let after: Value = get(&app, "/v1/console/unanswered", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        after["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| !g["question"].as_str().unwrap().contains("bandara")),
        "{after}"
    );
    // It joined the golden set, exportable as `sapa kb eval` JSONL.
    let golden: Value = get(&app, "/v1/console/golden", &owner)
        .await
        .json()
        .await
        .unwrap();
    let case = &golden["cases"][0];
    assert_eq!(case["doc"], "tanya-jawab.csv");
    let jsonl = get(&app, "/v1/console/golden?format=jsonl", &owner)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        jsonl
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{jsonl}"
    );

    // Dismissing, and adding a golden question by hand.
    let session = app.session("demo").await;
    app.post(&session, "d1", "qwerty zxcvb asdfg").await;
    app.bot_messages(&session, 1).await;
    let groups: Value = eventually(Duration::from_secs(20), || async {
        let body: Value = get(&app, "/v1/console/unanswered", &owner)
            .await
            .json()
            .await
            .unwrap();
        (!body["groups"].as_array().unwrap().is_empty()).then_some(body)
    })
    .await;
    let id = groups["groups"][0]["id"].as_str().unwrap().to_owned();
    let dismissed = post(
        &app,
        &format!("/v1/console/unanswered/{id}/dismiss"),
        &json!({}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(dismissed.status(), 200);
    let left: Value = get(&app, "/v1/console/unanswered", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(left["groups"], json!([]));
    let bad = post(
        &app,
        "/v1/console/golden",
        &json!({"query": "harga latte?"}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(bad.status(), 422);
    let good = post(
        &app,
        "/v1/console/golden",
        &json!({"query": "harga latte?", "doc": "menu-dan-harga.md", "chunk_contains": "Caffe Latte"}),
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(good.status(), 201);
    let log = app.store().await.audit_log("demo", 50).await.unwrap();
    assert!(
        log.iter().any(|(a, ..)| a == "answer_unanswered"),
        "{log:?}"
    );
    app.stop().await;
}

pub(crate) async fn put(
    app: &TestApp,
    path: &str,
    body: &Value,
    cookie: &str,
    csrf: &str,
) -> reqwest::Response {
    app.client
        .put(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_owner_drafts_tries_publishes_and_restores_bot_settings_without_a_restart() {
    let app = sapa_tests::spawn_app(
        "[tenants.shop]\nname = \"Toko Sepatu\"\nlocale = \"id\"\ninstructions = \"Sopan.\"\n",
    )
    .await;
    add_member(&app, "shop", "pemilik@shop.local", "owner", None).await;
    add_staff(&app, "shop", "budi@shop.local", None).await;
    let (owner, csrf) = log_in(&app, "shop", "pemilik@shop.local").await;
    let (agent, agent_csrf) = log_in(&app, "shop", "budi@shop.local").await;
    const ASK: &str = "saya mau klaim garansi sepatu yang sobek";

    // Version 1 is sapa.toml's.
    let versions: Value = get(&app, "/v1/console/bot/versions", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions["versions"][0]["version"], 1);
    assert_eq!(versions["versions"][0]["author"], "sapa.toml");
    let mut draft: Value = get(&app, "/v1/console/bot/draft", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(draft["instructions"], "Sopan.");
    assert_eq!(
        get(&app, "/v1/console/bot/draft", &agent).await.status(),
        403
    );
    assert_eq!(
        put(&app, "/v1/console/bot/draft", &draft, &agent, &agent_csrf)
            .await
            .status(),
        403
    );

    // A bad draft says what to fix; a good one is saved.
    draft["locale"] = json!("fr");
    let bad = put(&app, "/v1/console/bot/draft", &draft, &owner, &csrf).await;
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("locale must be"));
    draft["locale"] = json!("id");
    draft["handoff_keywords"] = json!(["garansi"]);
    draft["greeting"] = json!("Halo dari Toko Sepatu!");
    assert_eq!(
        put(&app, "/v1/console/bot/draft", &draft, &owner, &csrf)
            .await
            .status(),
        200
    );

    // "Try it" uses the draft...
    let tried: Value = post(
        &app,
        "/v1/console/bot/draft/try",
        &json!({"text": ASK}),
        Some(&owner),
        Some(&csrf),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tried["kind"], "handoff", "{tried}");
    // ...while customers still get the live version.
    let before = app.session("shop").await;
    app.post(&before, "g1", ASK).await;
    app.bot_messages(&before, 1).await;
    let state = |id: String| {
        let app = &app;
        async move {
            let store = app.store().await;
            let state: String = sqlx::query_scalar("SELECT state FROM conversations WHERE id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
            store.close().await;
            state
        }
    };
    assert_eq!(state(before.conversation_id.clone()).await, "bot");

    // Published: the next customer gets it, no restart.
    let published: Value = post(
        &app,
        "/v1/console/bot/publish",
        &json!({}),
        Some(&owner),
        Some(&csrf),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(published["version"], 2);
    let after = app.session("shop").await;
    app.post(&after, "g2", ASK).await;
    app.bot_messages(&after, 1).await;
    assert_eq!(state(after.conversation_id.clone()).await, "waiting_human");
    let config: Value = app
        .client
        .get(format!("{}/v1/webchat/config?tenant=shop", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["greeting"], "Halo dari Toko Sepatu!");
    let versions: Value = get(&app, "/v1/console/bot/versions", &owner)
        .await
        .json()
        .await
        .unwrap();
    let live = &versions["versions"][0];
    assert_eq!(live["live"], true);
    assert_eq!(live["author"], "pemilik@shop.local");
    let changed: Vec<&str> = live["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["greeting", "handoff_keywords"]);

    // Restoring version 1 makes it live again as version 3.
    let restored: Value = post(
        &app,
        "/v1/console/bot/versions/1/restore",
        &json!({}),
        Some(&owner),
        Some(&csrf),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(restored["version"], 3);
    let again = app.session("shop").await;
    app.post(&again, "g3", ASK).await;
    app.bot_messages(&again, 1).await;
    assert_eq!(state(again.conversation_id.clone()).await, "bot");
    assert_eq!(
        post(
            &app,
            "/v1/console/bot/versions/9/restore",
            &json!({}),
            Some(&owner),
            Some(&csrf)
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        post(
            &app,
            "/v1/console/bot/publish",
            &json!({}),
            Some(&owner),
            Some(&csrf)
        )
        .await
        .status(),
        409,
        "nothing to publish"
    );
    app.stop().await;
}
