//! The owner pages' knowledge and API key endpoints end to end: owner-only (agents 403),
//! tenant-scoped (another tenant's owner 404), CSRF-guarded (403 without the token).

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
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("cookie", cookie)
        .body(body);
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
    for page in ["bot", "knowledge", "unanswered", "usage", "keys"] {
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
