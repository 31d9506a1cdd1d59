//! The owner pages' knowledge, API key and flow endpoints end to end: owner-only (agents 403),
//! tenant-scoped (another tenant's owner 404), CSRF-guarded (403 without the token); a flow
//! saved on the Flows page is live at once.

use serde_json::{Value, json};

use crate::console::{add_member, add_staff, get, log_in, post};
use sapa_tests::TestApp;

const PARKING: &str = "# Parkir bus\n\nParkir bus pariwisata tersedia di basement B2 outlet Kemang, gratis untuk rombongan di atas dua puluh orang.\n";

async fn start() -> TestApp {
    let app = sapa_tests::spawn_app(
        "[admin]\nmax_upload_bytes = 4096\n[tenants.other]\nname = \"Toko Lain\"\nlocale = \"en\"\n",
    )
    .await;
    add_member(&app, "demo", "pemilik@demo.local", "owner", None).await;
    add_staff(&app, "demo", "budi@demo.local", None).await;
    add_member(&app, "other", "boss@other.local", "owner", None).await;
    app
}

/// Sends `body` with `method` to `path` as the session `cookie` (with `csrf` when given).
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
    cookie: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    send_as(app, method, path, body, None, cookie, csrf).await
}

/// [`send`] with a `content-type` when given.
async fn send_as(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
    cookie: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("cookie", cookie)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    request.send().await.unwrap()
}

async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn an_owner_uploads_previews_searches_replaces_and_deletes_knowledge_and_the_bot_answers_from_it()
 {
    // Arrange
    let app = start().await;
    let (owner, csrf) = log_in(&app, "demo", "pemilik@demo.local").await;
    let (agent, agent_csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let (boss, boss_csrf) = log_in(&app, "other", "boss@other.local").await;
    let upload = "/v1/console/knowledge/documents?name=parkir-bus.md";

    // Agents have no knowledge page; a change needs the CSRF token.
    assert_eq!(
        code(get(&app, "/v1/console/knowledge/documents", &agent).await).await,
        (403, "owner_only".to_owned())
    );
    let post_method = reqwest::Method::POST;
    let refused = send(
        &app,
        post_method.clone(),
        upload,
        PARKING.into(),
        &agent,
        Some(&agent_csrf),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let refused = send(
        &app,
        post_method.clone(),
        upload,
        PARKING.into(),
        &owner,
        None,
    )
    .await;
    assert_eq!(refused.status(), 403);

    // Act: upload.
    let created = send(
        &app,
        post_method.clone(),
        upload,
        PARKING.into(),
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["outcome"], "indexed");
    let id = created["document"]["id"].as_str().unwrap().to_owned();
    assert!(
        created["document"]["chunks"].as_u64().unwrap() >= 1,
        "{created}"
    );
    assert!(created["document"]["created_at"].is_string(), "{created}");

    // Assert: listed with its dates, previewable, searchable, answered from.
    let listed: Value = get(&app, "/v1/console/knowledge/documents", &owner)
        .await
        .json()
        .await
        .unwrap();
    let document = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "parkir-bus.md")
        .unwrap()
        .clone();
    assert!(document["updated_at"].is_string(), "{document}");
    assert_eq!(listed["max_upload_bytes"], 4096);
    let chunks: Value = get(
        &app,
        &format!("/v1/console/knowledge/documents/{id}/chunks"),
        &owner,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        chunks["chunks"][0]["text"]
            .as_str()
            .unwrap()
            .contains("basement B2"),
        "{chunks}"
    );
    let found: Value = get(
        &app,
        "/v1/console/knowledge/search?q=parkir%20bus%20pariwisata",
        &owner,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        found["results"][0]["document_name"], "parkir-bus.md",
        "{found}"
    );
    assert_eq!(found["results"][0]["answerable"], true, "{found}");
    assert!(found["min_relevance"].as_f64().unwrap() > 0.0, "{found}");
    let session = app.session("demo").await;
    app.post(&session, "p1", "di mana parkir bus pariwisata?")
        .await;
    let bots = app.bot_messages(&session, 1).await;
    assert!(
        bots.iter()
            .any(|m| m["text"].as_str().unwrap_or("").contains("basement B2")),
        "{bots:?}"
    );

    // Another tenant's owner cannot see, replace or delete it.
    let chunks_path = format!("/v1/console/knowledge/documents/{id}/chunks");
    assert_eq!(get(&app, &chunks_path, &boss).await.status(), 404);
    let theirs: Value = get(&app, "/v1/console/knowledge/documents", &boss)
        .await
        .json()
        .await
        .unwrap();
    assert!(!theirs.to_string().contains("parkir-bus.md"), "{theirs}");
    let doc_path = format!("/v1/console/knowledge/documents/{id}");
    let replace_path = format!("{doc_path}?name=parkir.md");
    assert_eq!(
        code(
            send(
                &app,
                reqwest::Method::DELETE,
                &doc_path,
                vec![],
                &boss,
                Some(&boss_csrf)
            )
            .await
        )
        .await,
        (404, "document_not_found".to_owned())
    );
    assert_eq!(
        send(
            &app,
            reqwest::Method::PUT,
            &replace_path,
            PARKING.into(),
            &boss,
            Some(&boss_csrf)
        )
        .await
        .status(),
        404
    );

    // Clear errors: a format the index cannot read, an empty file, a file over the limit.
    let wrong = send(
        &app,
        post_method.clone(),
        "/v1/console/knowledge/documents?name=menu.exe",
        b"MZ".to_vec(),
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(code(wrong).await, (415, "unsupported_format".to_owned()));
    let empty = send(
        &app,
        post_method.clone(),
        "/v1/console/knowledge/documents?name=kosong.md",
        vec![],
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(code(empty).await.0, 422);
    let big = send(
        &app,
        post_method.clone(),
        "/v1/console/knowledge/documents?name=besar.md",
        vec![b'a'; 5000],
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(code(big).await, (413, "payload_too_large".to_owned()));

    // Replace under a new name: the new one is listed, the old one gone.
    let replaced = send(
        &app,
        reqwest::Method::PUT,
        &replace_path,
        PARKING.replace("B2", "B3").into_bytes(),
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(replaced.status(), 200);
    let listed = get(&app, "/v1/console/knowledge/documents", &owner)
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains("\"parkir.md\""), "{listed}");
    assert!(!listed.contains("parkir-bus.md"), "{listed}");

    // Delete.
    let replaced: Value = replaced.json().await.unwrap_or(Value::Null);
    let new_id = replaced["document"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let new_path = format!("/v1/console/knowledge/documents/{new_id}");
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &new_path,
            vec![],
            &owner,
            None
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        send(
            &app,
            reqwest::Method::DELETE,
            &new_path,
            vec![],
            &owner,
            Some(&csrf)
        )
        .await
        .status(),
        204
    );
    let listed = get(&app, "/v1/console/knowledge/documents", &owner)
        .await
        .text()
        .await
        .unwrap();
    assert!(!listed.contains("parkir"), "{listed}");
    app.stop().await;
}

#[tokio::test]
async fn an_owner_creates_lists_and_revokes_api_keys_and_sees_the_secret_only_once() {
    // Arrange
    let app = start().await;
    let (owner, csrf) = log_in(&app, "demo", "pemilik@demo.local").await;
    let (agent, agent_csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let (boss, boss_csrf) = log_in(&app, "other", "boss@other.local").await;
    let scopes = json!({"scopes": ["knowledge"]});

    assert_eq!(
        get(&app, "/v1/console/api-keys", &agent).await.status(),
        403
    );
    assert_eq!(
        post(
            &app,
            "/v1/console/api-keys",
            &scopes,
            Some(&agent),
            Some(&agent_csrf)
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        post(&app, "/v1/console/api-keys", &scopes, Some(&owner), None)
            .await
            .status(),
        403
    );
    assert_eq!(
        code(
            post(
                &app,
                "/v1/console/api-keys",
                &json!({"scopes": ["everything"]}),
                Some(&owner),
                Some(&csrf)
            )
            .await
        )
        .await,
        (422, "invalid_scope".to_owned())
    );

    // Act: create one.
    let created = post(
        &app,
        "/v1/console/api-keys",
        &scopes,
        Some(&owner),
        Some(&csrf),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("sapa_{prefix}_")), "{created}");

    // Assert: listed without the secret, unused so far; it works with its scope only.
    let listed = get(&app, "/v1/console/api-keys", &owner)
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains(&prefix), "{listed}");
    assert!(!listed.contains(&key), "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let mine = |listed: &Value| {
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["prefix"] == prefix.as_str())
            .unwrap()
            .clone()
    };
    assert_eq!(mine(&listed)["scopes"], json!(["knowledge"]));
    assert!(mine(&listed)["last_used_at"].is_null());
    let used = app
        .client
        .get(format!("{}/v1/admin/knowledge/documents", app.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), 200);
    let listed: Value = get(&app, "/v1/console/api-keys", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine(&listed)["last_used_at"].is_string(), "{listed}");

    // Another tenant's owner neither sees nor revokes it.
    let theirs = get(&app, "/v1/console/api-keys", &boss)
        .await
        .text()
        .await
        .unwrap();
    assert!(!theirs.contains(&prefix), "{theirs}");
    let revoke = format!("/v1/console/api-keys/{prefix}/revoke");
    assert_eq!(
        code(post(&app, &revoke, &json!({}), Some(&boss), Some(&boss_csrf)).await).await,
        (404, "api_key_not_found".to_owned())
    );

    // Revoked, the key stops working at once.
    assert_eq!(
        post(&app, &revoke, &json!({}), Some(&owner), Some(&csrf))
            .await
            .status(),
        200
    );
    let refused = app
        .client
        .get(format!("{}/v1/admin/knowledge/documents", app.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let listed: Value = get(&app, "/v1/console/api-keys", &owner)
        .await
        .json()
        .await
        .unwrap();
    assert!(mine(&listed)["revoked_at"].is_string(), "{listed}");
    app.stop().await;
}

#[tokio::test]
async fn the_owner_pages_are_served_under_the_console_csp_and_agents_get_no_owner_api() {
    let app = start().await;
    for page in ["bot", "knowledge", "unanswered", "flows", "usage", "keys"] {
        let response = app.get(&format!("/console/{page}")).await;
        assert_eq!(response.status(), 200, "{page}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(response.text().await.unwrap().contains("/console/owner.js"));
    }
    let script = app.get("/console/owner.js").await;
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(!script.text().await.unwrap().contains("innerHTML"));
    assert_eq!(app.get("/console/owner.css").await.status(), 200);
    let (agent, _) = log_in(&app, "demo", "budi@demo.local").await;
    for path in [
        "/v1/console/knowledge/search?q=kopi",
        "/v1/console/api-keys",
    ] {
        assert_eq!(get(&app, path, &agent).await.status(), 403, "{path}");
    }
    app.stop().await;
}

/// A flow the owner writes on the Flows page: a promotion, then a question, then a thank-you.
const PROMO_FLOW: &str = "name: promo\ndescription: The customer asks about this month's promotion.\n\
triggers:\n  keywords: [promo bulan ini]\nsteps:\n  - say:\n      text:\n        \
id: Promo bulan ini diskon 20% untuk kopi susu.\n        en: This month's promotion is 20% off lattes.\n  \
- ask:\n      slot: email\n      type: text\n      prompt:\n        id: Mau dikirimi kupon? Tulis email Kakak.\n        \
en: Want a coupon? Write your email.\n  - say:\n      text:\n        id: \"Kupon dikirim ke {{ slots.email }}.\"\n        \
en: \"The coupon goes to {{ slots.email }}.\"\n  - end\n";

/// Sends `{"source": source}` with `method` to `path` as the session `cookie`.
async fn send_flow(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    source: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let body = serde_json::to_vec(&json!({ "source": source })).unwrap();
    send_as(
        app,
        method,
        path,
        body,
        Some("application/json"),
        cookie,
        csrf,
    )
    .await
}

/// The names in `GET /v1/console/flows` for the session `cookie`.
async fn flow_names(app: &TestApp, cookie: &str) -> Vec<String> {
    let listed = get(app, "/v1/console/flows", cookie).await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    listed["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_owner_checks_saves_lists_reads_and_deletes_flows_and_a_saved_flow_is_live() {
    use reqwest::Method;
    // Arrange
    let app = start().await;
    let (owner, csrf) = log_in(&app, "demo", "pemilik@demo.local").await;
    let (agent, agent_csrf) = log_in(&app, "demo", "budi@demo.local").await;
    let (boss, boss_csrf) = log_in(&app, "other", "boss@other.local").await;
    let broken = "name: promo\nsteps:\n  - sya: {}\n";

    // Agents have no Flows page; a change needs the CSRF token.
    assert_eq!(
        code(get(&app, "/v1/console/flows", &agent).await).await,
        (403, "owner_only".to_owned())
    );
    assert_eq!(
        code(get(&app, "/v1/console/flows/cek-pesanan", &agent).await).await,
        (403, "owner_only".to_owned())
    );
    for (method, path) in [
        (Method::PUT, "/v1/console/flows/promo"),
        (Method::POST, "/v1/console/flows/check"),
        (Method::DELETE, "/v1/console/flows/cek-pesanan"),
    ] {
        let refused = send_flow(
            &app,
            method.clone(),
            path,
            PROMO_FLOW,
            &agent,
            Some(&agent_csrf),
        );
        assert_eq!(code(refused.await).await, (403, "owner_only".to_owned()));
        let refused = send_flow(&app, method, path, PROMO_FLOW, &owner, None).await;
        assert_eq!(refused.status(), 403, "{path} without the CSRF token");
    }

    // Act: check; errors with line and column, nothing stored either way.
    let checked = send_flow(
        &app,
        Method::POST,
        "/v1/console/flows/check",
        broken,
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(checked.status(), 422);
    let body: Value = checked.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_flow", "{body}");
    assert_eq!(body["error"]["errors"][0]["line"], 3, "{body}");
    assert!(
        body["error"]["errors"][0]["column"].as_u64().unwrap() >= 1,
        "{body}"
    );
    assert!(body["error"]["errors"][0]["message"].is_string(), "{body}");
    let checked = send_flow(
        &app,
        Method::POST,
        "/v1/console/flows/check",
        PROMO_FLOW,
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(checked.status(), 200);
    let body: Value = checked.json().await.unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert!(!flow_names(&app, &owner).await.contains(&"promo".to_owned()));

    // Act: save; invalid YAML and a mismatched name are refused, then the flow is created.
    let path = "/v1/console/flows/promo";
    let refused = send_flow(&app, Method::PUT, path, broken, &owner, Some(&csrf)).await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["errors"][0]["line"], 3, "{body}");
    let refused = send_flow(
        &app,
        Method::PUT,
        "/v1/console/flows/other-name",
        PROMO_FLOW,
        &owner,
        Some(&csrf),
    )
    .await;
    assert_eq!(code(refused).await, (422, "flow_name_mismatch".to_owned()));
    let created = send_flow(&app, Method::PUT, path, PROMO_FLOW, &owner, Some(&csrf)).await;
    assert_eq!(created.status(), 201);
    let replaced = send_flow(&app, Method::PUT, path, PROMO_FLOW, &owner, Some(&csrf)).await;
    assert_eq!(replaced.status(), 200);

    // Assert: listed with its description and trigger; read back as written.
    let listed: Value = get(&app, "/v1/console/flows", &owner)
        .await
        .json()
        .await
        .unwrap();
    let promo = listed["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "promo")
        .unwrap()
        .clone();
    assert_eq!(
        promo["description"],
        "The customer asks about this month's promotion."
    );
    assert_eq!(promo["triggers"]["keywords"][0], "promo bulan ini");
    assert_eq!(promo["updated_by"], "pemilik@demo.local");
    assert!(promo["updated_at"].is_string(), "{promo}");
    let read: Value = get(&app, path, &owner).await.json().await.unwrap();
    assert_eq!(read["source"], PROMO_FLOW);

    // Another tenant's owner sees none of it.
    assert!(!flow_names(&app, &boss).await.contains(&"promo".to_owned()));
    assert_eq!(
        code(get(&app, path, &boss).await).await,
        (404, "flow_not_found".to_owned())
    );
    let refused = send_flow(&app, Method::DELETE, path, "", &boss, Some(&boss_csrf)).await;
    assert_eq!(code(refused).await, (404, "flow_not_found".to_owned()));

    // Live at once: the keyword starts it in the owner's tenant, not in the other.
    let session = app.session("demo").await;
    assert_eq!(
        app.post(&session, "promo-1", "promo bulan ini apa?")
            .await
            .status(),
        202
    );
    let bots = app.bot_messages(&session, 2).await;
    assert_eq!(
        bots[0]["text"],
        "Promo bulan ini diskon 20% untuk kopi susu."
    );
    assert_eq!(bots[1]["text"], "Mau dikirimi kupon? Tulis email Kakak.");
    assert_eq!(
        app.post(&session, "promo-2", "kak@contoh.id")
            .await
            .status(),
        202
    );
    let bots = app.bot_messages(&session, 3).await;
    assert_eq!(bots[2]["text"], "Kupon dikirim ke kak@contoh.id.");
    let elsewhere = app.session("other").await;
    assert_eq!(
        app.post(&elsewhere, "promo-1", "promo bulan ini apa?")
            .await
            .status(),
        202
    );
    let bots = app.bot_messages(&elsewhere, 1).await;
    assert_ne!(bots[0]["text"], "This month's promotion is 20% off lattes.");

    // Delete: gone from the list and from the chat.
    let deleted = send_flow(&app, Method::DELETE, path, "", &owner, Some(&csrf)).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(get(&app, path, &owner).await.status(), 404);
    assert!(!flow_names(&app, &owner).await.contains(&"promo".to_owned()));
    let later = app.session("demo").await;
    assert_eq!(
        app.post(&later, "promo-1", "promo bulan ini apa?")
            .await
            .status(),
        202
    );
    let bots = app.bot_messages(&later, 1).await;
    assert_ne!(
        bots[0]["text"],
        "Promo bulan ini diskon 20% untuk kopi susu."
    );
    app.stop().await;
}
