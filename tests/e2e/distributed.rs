//! Distributed mode with real processes: three `sapa serve` replicas on one Postgres schema,
//! one Redis (a private key prefix) and one Qdrant collection (`knowledge.backend = "qdrant"`,
//! a private collection). Web chat clients post 1,000 messages to random replicas while one
//! of them is SIGKILLed and restarted twice; a WebSocket held on another replica sees every
//! answer of its conversation, wherever it was produced. A document uploaded through one
//! replica's admin API is answered on another at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use sapa_tests::{
    create_session, eventually, list_messages, post_message, postgres_schema, required_service,
    try_post_message,
};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::crash::check_transcript;
use crate::process::ServerProcess;

const REPLICAS: usize = 3;
/// Web chat sessions and WhatsApp customers, each sending [`PER_SESSION`] messages.
const SESSIONS: usize = 30;
const WA_CUSTOMERS: usize = 10;
const PER_SESSION: usize = 25;
/// The replica that is SIGKILLed, and how often.
const KILLED: usize = 1;
const KILLS: usize = 2;
/// Every replica must decrypt what another stored: one key for all (hex, 32 bytes).
const SECRET_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

const QUESTIONS: &[&str] = &[
    "jam buka outlet Blok M hari Minggu?",
    "apakah ada wifi?",
    "berapa harga kopi susu gula aren?",
    "bisa bayar pakai qris?",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_answer_every_message_once_in_order_and_fan_out_live_answers() {
    let (Some(database), Some(redis), Some(qdrant)) = (
        required_service("SAPA_TEST_DATABASE_URL"),
        required_service("SAPA_TEST_REDIS_URL"),
        required_service("SAPA_TEST_QDRANT_URL"),
    ) else {
        return;
    };
    // Every replica has the demo tenant on web chat and on one WhatsApp number (a fake Graph
    // API on loopback).
    let graph = sapa_tests::fake_graph::FakeGraph::start().await;
    let config = sapa_tests::whatsapp_config(&graph.base_url, "messages_per_second = 1000");
    let (envs, dirs, mut servers) = start_replicas(&database, &redis, &qdrant, &config, &[]).await;
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let addresses: Arc<RwLock<Vec<String>>> = Arc::new(RwLock::new(
        servers
            .iter()
            .map(|s| s.as_ref().unwrap().address.clone())
            .collect(),
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let base = addresses.read().await[s % REPLICAS].clone();
        sessions.push(create_session(&client, &base, "demo").await);
    }

    // A WebSocket on replica 0 (never killed) for the first conversation.
    let watched = sessions[0].clone();
    let ws_url = format!(
        "{}/v1/webchat/ws?token={}",
        addresses.read().await[0].replacen("http", "ws", 1),
        watched.token
    );
    let (socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let seen_live: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let listener = {
        let seen_live = seen_live.clone();
        tokio::spawn(async move {
            let (_, mut read) = socket.split();
            while let Some(Ok(frame)) = read.next().await {
                let Ok(text) = frame.to_text() else { continue };
                let Ok(event) = serde_json::from_str::<Value>(text) else {
                    continue;
                };
                if event["type"] == "message"
                    && event["message"]["author"] == "bot"
                    && let Some(id) = event["message"]["id"].as_i64()
                {
                    seen_live.lock().await.insert(id);
                }
            }
        })
    };

    // Clients: messages one after another, each to a random replica, retrying the same
    // client_message_id on another one until it is accepted (as a load balancer would).
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for (s, session) in sessions.iter().cloned().enumerate() {
        let (client, addresses, accepted) = (client.clone(), addresses.clone(), accepted.clone());
        clients.push(tokio::spawn(async move {
            for n in 0..PER_SESSION {
                let id = format!("s{s}-m{n}");
                let text = QUESTIONS[(s + n) % QUESTIONS.len()];
                loop {
                    let pick = rand::rng().random_range(0..REPLICAS);
                    let base = addresses.read().await[pick].clone();
                    match try_post_message(&client, &base, &session, &id, text).await {
                        Ok(r) if r.status() == 202 => break,
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // WhatsApp customers: signed webhooks, each to a random replica, retried on another one
    // until acknowledged (as Meta does).
    for c in 0..WA_CUSTOMERS {
        let s = SESSIONS + c;
        let (client, addresses, accepted) = (client.clone(), addresses.clone(), accepted.clone());
        clients.push(tokio::spawn(async move {
            let from = wa_customer(s);
            for n in 0..PER_SESSION {
                let body = sapa_tests::wa_text(
                    &format!("s{s}-m{n}"),
                    &from,
                    QUESTIONS[(s + n) % QUESTIONS.len()],
                );
                let signature =
                    channels::whatsapp::webhook::sign(sapa_tests::WA_APP_SECRET.as_bytes(), &body);
                loop {
                    let pick = rand::rng().random_range(0..REPLICAS);
                    let base = addresses.read().await[pick].clone();
                    let sent = client
                        .post(format!("{base}/webhooks/whatsapp"))
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => break,
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // Replica 1 is SIGKILLed twice, a third and two thirds of the way in, and restarted on
    // its data dir each time.
    let total = (SESSIONS + WA_CUSTOMERS) * PER_SESSION;
    for k in 1..=KILLS {
        let threshold = total * k / (KILLS + 1);
        eventually(Duration::from_secs(120), || async {
            (accepted.load(Ordering::SeqCst) >= threshold).then_some(())
        })
        .await;
        servers[KILLED].take().unwrap().kill().await;
        let restarted = ServerProcess::start(dirs[KILLED].path(), &envs).await;
        addresses.write().await[KILLED] = restarted.address.clone();
        servers[KILLED] = Some(restarted);
    }
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), total);

    // Every message answered exactly once, in order, whichever replica did it.
    let base = addresses.read().await[0].clone();
    eventually(Duration::from_secs(120), || async {
        for session in &sessions {
            let messages = list_messages(&client, &base, session).await.ok()?;
            let answered: usize = messages
                .iter()
                .filter(|m| m["author"] == "bot")
                .map(|m| m["in_reply_to"].as_array().map_or(0, Vec::len))
                .sum();
            if answered < PER_SESSION {
                return None;
            }
        }
        Some(())
    })
    .await;
    // WhatsApp customers, read from the shared database: each webhook stored once and
    // answered exactly once, in order; the fake Graph API got at least one send per answer
    // (sends are at-least-once across a SIGKILL).
    let pool = sqlx::AnyPool::connect(envs[0].1).await.unwrap();
    let wa_answers = eventually(Duration::from_secs(120), || async {
        let mut all = 0;
        for c in 0..WA_CUSTOMERS {
            let s = SESSIONS + c;
            let messages = wa_transcript(&pool, s).await;
            let answered: usize = messages
                .iter()
                .filter(|m| m["author"] == "bot")
                .map(|m| m["in_reply_to"].as_array().map_or(0, Vec::len))
                .sum();
            if answered < PER_SESSION {
                return None;
            }
            let sends = graph
                .sends()
                .iter()
                .filter(|r| r.body["to"] == wa_customer(s))
                .count();
            // Sends to one customer are paced (WhatsApp's per-recipient limit).
            if sends < messages.iter().filter(|m| m["author"] == "bot").count() {
                return None;
            }
            all += check_transcript(s, PER_SESSION, &fake_session(s), &messages);
        }
        Some(all)
    })
    .await;
    pool.close().await;
    let admin = servers[0].as_ref().unwrap().admin_address.clone();
    sapa_tests::settled(&client, &admin).await;
    let mut answers = wa_answers;
    let mut watched_answers = Vec::new();
    for (s, session) in sessions.iter().enumerate() {
        let messages = list_messages(&client, &base, session).await.unwrap();
        answers += check_transcript(s, PER_SESSION, session, &messages);
        if s == 0 {
            watched_answers = messages
                .iter()
                .filter(|m| m["author"] == "bot")
                .filter_map(|m| m["id"].as_i64())
                .collect();
        }
    }

    // The socket on replica 0 saw every answer of its conversation, live.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let live = loop {
        let seen = seen_live.lock().await.clone();
        let missing: Vec<&i64> = watched_answers
            .iter()
            .filter(|id| !seen.contains(id))
            .collect();
        if missing.is_empty() {
            break seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "answers {missing:?} of {watched_answers:?} never reached the socket on replica 0 \
             (it saw {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    listener.abort();
    eprintln!(
        "distributed: {total} messages over {REPLICAS} replicas, {KILLS} SIGKILLs, {answers} answers, \
         0 lost, 0 duplicated; {} answers seen live on replica 0's socket",
        live.len()
    );
    for server in servers.into_iter().flatten() {
        server.kill().await;
    }
}

/// The environment of every replica: one Postgres schema, one Redis prefix, one secret key.
type Envs = Vec<(&'static str, String)>;

/// Starts [`REPLICAS`] `sapa serve` processes, each with its own data dir, sharing a fresh
/// Postgres schema, Redis prefix and Qdrant collection; `extra` is added to their environment.
async fn start_replicas(
    database: &str,
    redis: &str,
    qdrant: &str,
    config: &str,
    extra: &[(&'static str, &str)],
) -> (Envs, Vec<tempfile::TempDir>, Vec<Option<ServerProcess>>) {
    let scoped = postgres_schema(database).await;
    let prefix = format!("sapa-e2e:{}:", uuid::Uuid::new_v4().simple());
    let mut envs: Envs = vec![
        ("SAPA_DATABASE__URL", scoped),
        ("SAPA_REDIS__URL", redis.to_owned()),
        ("SAPA_REDIS__PREFIX", prefix),
        ("SAPA_SECRET_KEY", SECRET_KEY.to_owned()),
        ("SAPA_CONVERSATION__DEBOUNCE", "0s".to_owned()),
        ("SAPA_CONVERSATION__POLL_INTERVAL", "200ms".to_owned()),
        ("SAPA_KNOWLEDGE__BACKEND", "qdrant".to_owned()),
        ("SAPA_QDRANT__URL", qdrant.to_owned()),
        (
            "SAPA_QDRANT__COLLECTION",
            format!("sapa_e2e_{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    envs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let dirs: Vec<tempfile::TempDir> = (0..REPLICAS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    // Each process reads `./sapa.toml` from its data dir (its working directory).
    for dir in &dirs {
        std::fs::write(dir.path().join("sapa.toml"), config).unwrap();
    }
    let borrowed: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The first one migrates the schema; the others find it done.
    let mut servers = Vec::new();
    for dir in &dirs {
        servers.push(Some(ServerProcess::start(dir.path(), &borrowed).await));
    }
    (envs, dirs, servers)
}

#[tokio::test]
async fn a_web_chat_limit_of_n_per_minute_is_n_in_total_over_three_replicas() {
    let (Some(database), Some(redis), Some(qdrant)) = (
        required_service("SAPA_TEST_DATABASE_URL"),
        required_service("SAPA_TEST_REDIS_URL"),
        required_service("SAPA_TEST_QDRANT_URL"),
    ) else {
        return;
    };
    let (_envs, _dirs, servers) = start_replicas(
        &database,
        &redis,
        &qdrant,
        "",
        &[("SAPA_WEBCHAT__MESSAGES_PER_MINUTE_PER_SESSION", "5")],
    )
    .await;
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| s.as_ref().unwrap().address.clone())
        .collect();
    let client = reqwest::Client::new();
    let session = create_session(&client, &addresses[0], "demo").await;
    let mut statuses = Vec::new();
    for n in 0..15 {
        let response = try_post_message(
            &client,
            &addresses[n % REPLICAS],
            &session,
            &format!("l-{n}"),
            "apakah ada wifi?",
        )
        .await
        .unwrap();
        statuses.push(response.status().as_u16());
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert_eq!(
        accepted, 5,
        "5 per minute in total, not 5 per replica: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    for server in servers.into_iter().flatten() {
        server.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_uploaded_through_one_replica_is_answered_on_another_at_once() {
    let (Some(database), Some(redis), Some(qdrant)) = (
        required_service("SAPA_TEST_DATABASE_URL"),
        required_service("SAPA_TEST_REDIS_URL"),
        required_service("SAPA_TEST_QDRANT_URL"),
    ) else {
        return;
    };
    let (envs, dirs, servers) = start_replicas(&database, &redis, &qdrant, "", &[]).await;
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| s.as_ref().unwrap().address.clone())
        .collect();
    let client = reqwest::Client::new();
    // Replica 3 answers from the shared collection before the upload: the demo tenant's
    // documents, seeded once for all replicas.
    let session = create_session(&client, &addresses[2], "demo").await;
    post_message(
        &client,
        &addresses[2],
        &session,
        "kb-1",
        "jam buka outlet Blok M hari Minggu?",
    )
    .await;
    bot_answer_containing(&client, &addresses[2], &session, "08.00").await;

    let created = crate::process::command(dirs[1].path(), &envs)
        .args(["tenant", "api-key", "create", "demo"])
        .output()
        .await
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let uploaded = client
        .post(format!("{}/v1/admin/knowledge/documents", addresses[1]))
        .query(&[("name", "promo-zebra.md")])
        .bearer_auth(&key)
        .body("# Promo Zebra\n\nPromo Zebra: beli dua minuman gratis satu croissant setiap hari Jumat di semua outlet.\n")
        .send()
        .await
        .unwrap();
    assert!(
        uploaded.status().is_success(),
        "{}",
        uploaded.text().await.unwrap()
    );
    // Asked on replica 3 right after the upload answered on replica 2.
    post_message(
        &client,
        &addresses[2],
        &session,
        "kb-2",
        "ada promo zebra hari jumat?",
    )
    .await;
    bot_answer_containing(&client, &addresses[2], &session, "gratis satu croissant").await;
    // Replica 1 lists it too.
    let listed: Value = client
        .get(format!("{}/v1/admin/knowledge/documents", addresses[0]))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.to_string().contains("promo-zebra.md"), "{listed}");
    for server in servers.into_iter().flatten() {
        server.kill().await;
    }
}

/// Waits for a bot message of the session that contains `needle`.
async fn bot_answer_containing(
    client: &reqwest::Client,
    base: &str,
    session: &sapa_tests::Session,
    needle: &str,
) {
    eventually(Duration::from_secs(30), || async {
        let messages = list_messages(client, base, session).await.ok()?;
        messages
            .iter()
            .any(|m| m["author"] == "bot" && m["text"].as_str().is_some_and(|t| t.contains(needle)))
            .then_some(())
    })
    .await;
}

/// The WhatsApp number of customer `s`.
fn wa_customer(s: usize) -> String {
    format!("6281200{s:05}")
}

/// A stand-in session for [`check_transcript`]'s messages (it only names the conversation).
fn fake_session(s: usize) -> sapa_tests::Session {
    sapa_tests::Session {
        token: String::new(),
        conversation_id: format!("whatsapp customer {}", wa_customer(s)),
    }
}

/// Customer `s`'s WhatsApp conversation as the web chat API would list it: author, text, the
/// customer message's id (its wamid) and the ids a bot message answers.
async fn wa_transcript(pool: &sqlx::AnyPool, s: usize) -> Vec<Value> {
    use sqlx::Row;
    let first = format!("s{s}-m0");
    let Some(conversation) =
        sqlx::query("SELECT conversation_id FROM messages WHERE external_id = $1")
            .bind(&first)
            .fetch_optional(pool)
            .await
            .unwrap()
    else {
        return Vec::new();
    };
    let conversation: String = conversation.get(0);
    sqlx::query(
        "SELECT author, body, external_id, in_reply_to FROM messages \
         WHERE conversation_id = $1 ORDER BY id",
    )
    .bind(&conversation)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| {
        let author: String = row.get(0);
        let external_id: Option<String> = row.get(2);
        let in_reply_to: Option<String> = row.get(3);
        serde_json::json!({
            "author": author,
            "text": row.get::<String, _>(1),
            "client_message_id": if author == "customer" { external_id } else { None },
            "in_reply_to": in_reply_to
                .and_then(|j| serde_json::from_str::<Value>(&j).ok())
                .unwrap_or(Value::Array(vec![])),
        })
    })
    .collect()
}

#[tokio::test]
async fn kb_reindex_moves_a_tenant_into_qdrant_with_the_same_eval_and_check_reports_it() {
    let Some(qdrant) = required_service("SAPA_TEST_QDRANT_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/kb");
    let questions = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../knowledge/tests/data/retrieval.jsonl"
    );
    let collection = format!("sapa_e2e_{}", uuid::Uuid::new_v4().simple());
    let in_qdrant = [
        ("SAPA_KNOWLEDGE__BACKEND", "qdrant"),
        ("SAPA_QDRANT__URL", qdrant.as_str()),
        ("SAPA_QDRANT__COLLECTION", collection.as_str()),
    ];
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut command = crate::process::command(dir.path(), envs);
        command.args(args);
        async move { command.output().await.unwrap() }
    };
    let stdout =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let ingested = run(&[], &["kb", "ingest", "--tenant", "demo", kb]).await;
    assert!(ingested.status.success(), "{}", stdout(&ingested));
    let embedded = run(
        &[],
        &["kb", "eval", "--tenant", "demo", questions, "--json"],
    )
    .await;
    let embedded: Value = serde_json::from_slice(&embedded.stdout).unwrap();

    let moved = run(&in_qdrant, &["kb", "reindex", "--tenant", "demo"]).await;
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(
        stdout(&moved).contains("demo: 10 documents written, 0 unchanged, 0 deleted"),
        "{}",
        stdout(&moved)
    );
    let again = run(&in_qdrant, &["kb", "reindex", "--tenant", "demo"]).await;
    assert!(
        stdout(&again).contains("0 documents written, 10 unchanged"),
        "{}",
        stdout(&again)
    );
    let remote = run(
        &in_qdrant,
        &["kb", "eval", "--tenant", "demo", questions, "--json"],
    )
    .await;
    let remote: Value = serde_json::from_slice(&remote.stdout).unwrap();
    for metric in ["recall_at_1", "recall_at_5", "abstain_accuracy"] {
        let (q, e) = (
            remote[metric].as_f64().unwrap(),
            embedded[metric].as_f64().unwrap(),
        );
        assert!(q >= e, "{metric}: qdrant {q} < embedded {e}");
    }

    let check = run(&in_qdrant, &["check"]).await;
    assert!(check.status.success(), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("qdrant: ok") && stdout(&check).contains(&collection),
        "{}",
        stdout(&check)
    );
    let down = [
        ("SAPA_KNOWLEDGE__BACKEND", "qdrant"),
        ("SAPA_QDRANT__URL", "http://127.0.0.1:9"),
    ];
    let check = run(&down, &["check"]).await;
    assert!(!check.status.success());
    assert!(
        stdout(&check).contains("qdrant: FAILED"),
        "{}",
        stdout(&check)
    );
}
