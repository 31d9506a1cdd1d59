//! The admin knowledge API (`/v1/admin/knowledge/...`) with tenant API keys, against the real
//! application, and the `sapa tenant` CLI against a real server process.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use gateway::config::DatabaseTarget;
use gateway::store::Store;
use sapa_tests::{Session, TestApp, spawn_app};
use serde_json::Value;

use crate::process::{ServerProcess, command};

const SHOES: &str = "# Toko Sepatu Kencana\n\n\
## Garansi\n\
Semua sepatu lari Kencana bergaransi 6 bulan untuk lem dan jahitan. Klaim garansi cukup bawa nota ke toko.\n\n\
## Ukuran\n\
Kami menyediakan sepatu ukuran 38 sampai 45.\n";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../knowledge/tests/data")
            .join(name),
    )
    .unwrap()
}

fn tenants_toml(slugs: &[&str]) -> String {
    slugs
        .iter()
        .map(|s| format!("[tenants.{s}]\nname = \"Toko {s}\"\nlocale = \"id\"\n"))
        .collect()
}

/// Creates an API key for `tenant` directly in the app's (embedded) database, as
/// `sapa tenant api-key create` does.
async fn api_key(app: &TestApp, tenant: &str) -> String {
    let store = Store::connect(
        &DatabaseTarget::Sqlite(app.data_dir.path().join("sapa.db")),
        1,
    )
    .await
    .unwrap();
    let key = gateway::api_key::generate();
    store
        .create_api_key(tenant, &key.prefix, &key.hash)
        .await
        .unwrap();
    store.close().await;
    key.key
}

async fn upload(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    name: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(format!("{base}/v1/admin/knowledge/documents"))
        .query(&[("name", name)])
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(client: &reqwest::Client, url: String, key: &str) -> reqwest::Response {
    client.get(url).bearer_auth(key).send().await.unwrap()
}

async fn documents(app: &TestApp, key: &str) -> Vec<Value> {
    let response = get(
        &app.client,
        format!("{}/v1/admin/knowledge/documents", app.address),
        key,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["documents"].as_array().unwrap().clone()
}

async fn search(app: &TestApp, key: &str, q: &str) -> Vec<Value> {
    let response = app
        .client
        .get(format!("{}/v1/admin/knowledge/search", app.address))
        .query(&[("q", q)])
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["results"].as_array().unwrap().clone()
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
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

/// Asks `question` in the session and returns the bot's `n`-th answer (1-based).
async fn ask(app: &TestApp, session: &Session, id: &str, question: &str, n: usize) -> String {
    assert_eq!(app.post(session, id, question).await.status(), 202);
    let bots = app.bot_messages(session, n).await;
    bots[n - 1]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_uploaded_document_is_listed_searchable_and_answered_from() {
    let app = spawn_app(&tenants_toml(&["sepatu"])).await;
    let key = api_key(&app, "sepatu").await;
    let base = app.address.clone();

    let response = upload(&app.client, &base, &key, "sepatu.md", SHOES.into()).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "indexed");
    assert_eq!(body["document"]["name"], "sepatu.md");
    assert_eq!(body["document"]["title"], "Toko Sepatu Kencana");
    assert_eq!(body["document"]["chunks"], 2);
    let id = body["document"]["id"].as_str().unwrap().to_owned();

    // The same bytes again change nothing.
    let again = upload(&app.client, &base, &key, "sepatu.md", SHOES.into()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["outcome"], "unchanged");

    // A PDF (text layer), and a document larger than the JSON APIs' 64 KiB body limit: the
    // admin routes have their own limit.
    let pdf = upload(
        &app.client,
        &base,
        &key,
        "paket-catering.pdf",
        fixture("paket-catering.pdf"),
    )
    .await;
    assert_eq!(pdf.status(), 201);
    let mut big = String::from("# Katalog\n\n");
    while big.len() < 100_000 {
        big.push_str(&format!(
            "## Model {n}\nSepatu model {n} tersedia warna hitam.\n\n",
            n = big.len()
        ));
    }
    let big = upload(&app.client, &base, &key, "katalog.md", big.into()).await;
    assert_eq!(big.status(), 201, "{:?}", big.text().await);

    let listed = documents(&app, &key).await;
    let names: Vec<&str> = listed.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["katalog.md", "paket-catering.pdf", "sepatu.md"]);
    assert!(listed.iter().any(|d| d["id"] == id.as_str()));

    let hits = search(&app, &key, "garansi sepatu lari berapa lama?").await;
    assert_eq!(hits[0]["document_id"], id.as_str());
    assert!(hits[0]["text"].as_str().unwrap().contains("6 bulan"));
    assert_eq!(hits[0]["answerable"], true);

    // The bot answers from the new documents at once.
    let session = app.session("sepatu").await;
    let answer = ask(&app, &session, "q-1", "berapa lama garansi sepatu lari?", 1).await;
    assert!(answer.contains("6 bulan"), "{answer}");
    let answer = ask(&app, &session, "q-2", "harga paket ulang tahun brp?", 2).await;
    assert!(answer.contains("Rp 65.000"), "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_api_key_cannot_touch_another_tenants_documents() {
    let app = spawn_app(&tenants_toml(&["toko-a", "toko-b"])).await;
    let key_a = api_key(&app, "toko-a").await;
    let key_b = api_key(&app, "toko-b").await;
    let base = app.address.clone();
    let response = upload(&app.client, &base, &key_a, "sepatu.md", SHOES.into()).await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["document"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert!(documents(&app, &key_b).await.is_empty());
    assert!(search(&app, &key_b, "garansi sepatu lari").await.is_empty());
    let delete = app
        .client
        .delete(format!("{base}/v1/admin/knowledge/documents/{id}"))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(delete).await;
    assert_eq!((status, code.as_str()), (404, "document_not_found"));
    assert_eq!(documents(&app, &key_a).await.len(), 1);
    // b's customers are not answered from a's documents.
    let session = app.session("toko-b").await;
    let answer = ask(&app, &session, "b-1", "berapa lama garansi sepatu lari?", 1).await;
    assert!(!answer.contains("6 bulan"), "{answer}");

    // Missing, malformed, unknown and tampered keys are all refused the same way.
    let mut tampered = key_a.clone();
    tampered.pop();
    tampered.push(if key_a.ends_with('A') { 'B' } else { 'A' });
    let unknown = gateway::api_key::generate().key;
    for key in [
        None,
        Some("not-a-key"),
        Some(tampered.as_str()),
        Some(unknown.as_str()),
    ] {
        let mut request = app
            .client
            .get(format!("{base}/v1/admin/knowledge/documents"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let (status, code, _) = error_of(request.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (401, "invalid_api_key"), "{key:?}");
    }
    // An unauthenticated upload is refused without being ingested.
    let (status, code, _) = error_of(
        upload(
            &app.client,
            &base,
            &tampered,
            "x.md",
            b"# X\n\nisi".to_vec(),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert_eq!(documents(&app, &key_a).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn uploads_over_the_limit_or_in_unknown_formats_get_clear_errors() {
    let config = format!(
        "{}[admin]\nmax_upload_bytes = 4096\n",
        tenants_toml(&["toko"])
    );
    let app = spawn_app(&config).await;
    let key = api_key(&app, "toko").await;
    let base = app.address.clone();
    let client = &app.client;

    let (status, code, message) =
        error_of(upload(client, &base, &key, "besar.md", vec![b'a'; 5000]).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    assert!(message.contains("admin.max_upload_bytes"), "{message}");
    let (status, code, message) =
        error_of(upload(client, &base, &key, "slides.pptx", b"x".to_vec()).await).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_format"));
    assert!(
        message.contains(".md") && message.contains(".csv") && message.contains(".pdf"),
        "{message}"
    );
    let (status, code, message) =
        error_of(upload(client, &base, &key, "scan.pdf", fixture("scan.pdf")).await).await;
    assert_eq!((status, code.as_str()), (422, "no_text_layer"));
    assert!(
        message.contains("no text layer; OCR the file first"),
        "{message}"
    );
    let (status, code, _) =
        error_of(upload(client, &base, &key, "rusak.pdf", b"%PDF-1.4 rusak".to_vec()).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_pdf"));
    let (status, code, message) =
        error_of(upload(client, &base, &key, "faq.csv", b"judul,isi\na,b\n".to_vec()).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_csv"));
    assert!(message.contains("question,answer"), "{message}");
    let (status, code, _) =
        error_of(upload(client, &base, &key, "latin1.txt", vec![b'c', 0xE9, 0xFF]).await).await;
    assert_eq!((status, code.as_str()), (422, "not_utf8"));
    let (status, code, _) =
        error_of(upload(client, &base, &key, "kosong.md", b"  \n\n".to_vec()).await).await;
    assert_eq!((status, code.as_str()), (422, "empty_document"));
    let no_name = client
        .post(format!("{base}/v1/admin/knowledge/documents"))
        .bearer_auth(&key)
        .body("# A\n\nisi")
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(no_name).await;
    assert_eq!((status, code.as_str()), (400, "invalid_name"));
    assert!(message.contains("?name="), "{message}");
    let (status, code, _) =
        error_of(upload(client, &base, &key, "../etc/x.md", b"# A\n\nisi".to_vec()).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_name"));
    let (status, code, _) =
        error_of(get(client, format!("{base}/v1/admin/knowledge/search?q="), &key).await).await;
    assert_eq!((status, code.as_str()), (400, "missing_query"));

    // Nothing of the above was stored; a valid small upload still works.
    assert!(documents(&app, &key).await.is_empty());
    assert_eq!(
        upload(client, &base, &key, "ok.md", SHOES.into())
            .await
            .status(),
        201
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_a_document_stops_answers_from_it() {
    let app = spawn_app(&tenants_toml(&["toko"])).await;
    let key = api_key(&app, "toko").await;
    let base = app.address.clone();
    let response = upload(&app.client, &base, &key, "sepatu.md", SHOES.into()).await;
    let id = response.json::<Value>().await.unwrap()["document"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = app.session("toko").await;
    let answer = ask(
        &app,
        &session,
        "d-1",
        "garansi sepatu lari berapa bulan?",
        1,
    )
    .await;
    assert!(answer.contains("6 bulan"), "{answer}");

    let url = format!("{base}/v1/admin/knowledge/documents/{id}");
    let deleted = app
        .client
        .delete(&url)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, code, _) = error_of(
        app.client
            .delete(&url)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "document_not_found"));
    assert!(documents(&app, &key).await.is_empty());
    assert!(search(&app, &key, "garansi sepatu lari").await.is_empty());

    let answer = ask(
        &app,
        &session,
        "d-2",
        "garansi sepatu lari brp bulan ya?",
        2,
    )
    .await;
    assert!(!answer.contains("6 bulan"), "{answer}");
    app.stop().await;
}

async fn sapa(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = command(data_dir, &[])
        .args(args)
        .stdin(Stdio::null())
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
async fn cli_tenant_and_api_key_commands_work_with_the_http_api() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();

    let (ok, stdout, stderr) = sapa(
        &path,
        &[
            "tenant", "create", "toko-cli", "--name", "Toko CLI", "--locale", "en",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("created tenant toko-cli"), "{stdout}");
    let (ok, _, stderr) = sapa(&path, &["tenant", "create", "toko-cli", "--name", "X"]).await;
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    let (ok, _, stderr) = sapa(&path, &["tenant", "create", "Toko CLI", "--name", "X"]).await;
    assert!(!ok && stderr.contains("invalid tenant slug"), "{stderr}");
    let (ok, stdout, _) = sapa(&path, &["tenant", "list"]).await;
    assert!(ok && stdout.contains("toko-cli\ten\tToko CLI"), "{stdout}");

    let (ok, stdout, stderr) = sapa(&path, &["tenant", "api-key", "create", "toko-cli"]).await;
    assert!(ok, "{stderr}");
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("sapa_"), "{stdout}");
    assert!(stderr.contains("shown only now"), "{stderr}");
    let prefix = gateway::api_key::prefix(&key).unwrap().to_owned();
    // Only the hash is stored: the key's secret is nowhere in the database file.
    let mut database = std::fs::read(path.join("sapa.db")).unwrap();
    database.extend(std::fs::read(path.join("sapa.db-wal")).unwrap_or_default());
    // The secret is everything after `sapa_<prefix>_` (it may itself contain `_`).
    let secret = &key.as_bytes()[format!("sapa_{prefix}_").len()..];
    assert!(secret.len() >= 32, "{key}");
    assert!(!database.windows(secret.len()).any(|w| w == secret));
    let (ok, _, stderr) = sapa(&path, &["tenant", "api-key", "create", "nobody"]).await;
    assert!(!ok && stderr.contains("no tenant `nobody`"), "{stderr}");

    // `sapa kb ingest` (with its progress bar on a terminal) reports each file.
    let kb = path.join("kb");
    std::fs::create_dir(&kb).unwrap();
    std::fs::write(kb.join("sepatu.md"), SHOES).unwrap();
    std::fs::write(kb.join("paket-catering.pdf"), fixture("paket-catering.pdf")).unwrap();
    std::fs::write(kb.join("scan.pdf"), fixture("scan.pdf")).unwrap();
    let (ok, stdout, _) = sapa(
        &path,
        &["kb", "ingest", "--tenant", "toko-cli", kb.to_str().unwrap()],
    )
    .await;
    assert!(!ok, "a failed file fails the command");
    assert!(stdout.contains("sepatu.md: Indexed"), "{stdout}");
    assert!(stdout.contains("paket-catering.pdf: Indexed"), "{stdout}");
    assert!(
        stdout.contains("scan.pdf: FAILED") && stdout.contains("OCR the file first"),
        "{stdout}"
    );
    assert!(stdout.contains("3 files, 1 failed"), "{stdout}");

    let server = ServerProcess::start(&path, &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/admin/knowledge/documents", server.address);
    let response = client.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["documents"].as_array().unwrap().len(), 2);
    let response = client
        .post(&url)
        .query(&[("name", "jam.md")])
        .bearer_auth(&key)
        .body("# Jam\n\nBuka setiap hari pukul 10.00 sampai 21.00.\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let (ok, stdout, _) = sapa(&path, &["tenant", "api-key", "list", "toko-cli"]).await;
    assert!(
        ok && stdout.contains(&format!("{prefix}\tactive")),
        "{stdout}"
    );
    let (ok, stdout, stderr) =
        sapa(&path, &["tenant", "api-key", "revoke", "toko-cli", &prefix]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("revoked"), "{stdout}");
    // The running server refuses the revoked key at once.
    let response = client.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let (ok, _, stderr) = sapa(&path, &["tenant", "api-key", "revoke", "toko-cli", &prefix]).await;
    assert!(!ok && stderr.contains("no active API key"), "{stderr}");
    server.kill().await;
}

#[tokio::test]
async fn admin_agent_message_with_media_reaches_the_web_chat_as_a_text_line() {
    let app = spawn_app(&tenants_toml(&["toko"])).await;
    let key = api_key(&app, "toko").await;
    let session = app.session("toko").await;
    let response = app
        .admin_send(
            &key,
            &session.conversation_id,
            &serde_json::json!({"text": "Ini katalog kami",
                                "media": {"kind": "document", "url": "https://toko.test/katalog.pdf", "filename": "katalog.pdf"}}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let text = sapa_tests::eventually(std::time::Duration::from_secs(10), || async {
        app.messages(&session).await.into_iter().find_map(|m| {
            (m["author"] == "agent" && m["status"] == "sent")
                .then(|| m["text"].as_str().unwrap_or_default().to_owned())
        })
    })
    .await;
    assert_eq!(
        text,
        "Ini katalog kami\n[document: katalog.pdf] https://toko.test/katalog.pdf"
    );
    // Web chat has no provider media ids.
    let by_id = app
        .admin_send(
            &key,
            &session.conversation_id,
            &serde_json::json!({"media": {"kind": "image", "id": "123"}}),
        )
        .await;
    let (status, code, _) = error_of(by_id).await;
    assert_eq!((status, code.as_str()), (422, "unsupported_media_source"));
    app.stop().await;
}
