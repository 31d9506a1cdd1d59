//! Follow-up benchmark: `COUNT` follow-ups due at once (default 100,000) sent to web chat by
//! the real server (embedded mode: SQLite), while customers keep asking live questions.
//! Reports the follow-up rate (msg/s, from the start until every follow-up's outbox row is
//! sent) and the live answers' latency (post → answer sent) while it runs.
//!
//! `cargo run --release -p sapa-tests --bin followup-bench -- [COUNT] [LIVE_PER_SECOND]`
//! (defaults 100000, 20). The conversations and follow-ups are inserted in bulk while the
//! server is stopped, not yet due; the live questions run alone for 10 s (their baseline
//! latency), then every follow-up falls due at once and only the sending is timed.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gateway::startup::Overrides;
use sapa_tests::{list_messages, percentile, spawn_app_with};

/// Live questions alone before the follow-ups fall due.
const BASELINE: Duration = Duration::from_secs(10);

const CONFIG: &str = "[demo.follow_up]\nafter = \"1h\"\nquiet_hours = \"off\"\n";

async fn count(store: &gateway::store::Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let live_rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);

    // Arrange: start once for the schema and the demo tenant, stop, bulk insert.
    let app = spawn_app_with(CONFIG, Overrides::default(), None).await;
    let dir = app.stop().await;
    let store = gateway::store::Store::connect(
        &gateway::config::DatabaseTarget::Sqlite(dir.path().join("sapa.db")),
        2,
    )
    .await
    .unwrap();
    eprintln!("inserting {total} conversations with a due follow-up…");
    let account: String = sqlx::query_scalar(
        "SELECT id FROM channel_accounts WHERE tenant_id = 'demo' AND kind = 'webchat'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let generate = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) ";
    sqlx::query(&format!(
        "{generate} INSERT INTO contacts (id, tenant_id, channel_account_id, external_id, created_at) \
         SELECT 'bench-k' || i, 'demo', $2, 'bench-k' || i, 0 FROM n"
    ))
    .bind(total)
    .bind(&account)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(&format!(
        "{generate} INSERT INTO conversations (id, tenant_id, channel_account_id, contact_id, state, locale, created_at, updated_at) \
         SELECT 'bench-c' || i, 'demo', $2, 'bench-k' || i, 'bot', 'id', 0, 0 FROM n"
    ))
    .bind(total)
    .bind(&account)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO follow_ups (tenant_id, conversation_id, contact_id, kind, due_at, text, state, created_at, updated_at) \
         SELECT 'demo', id, contact_id, 'scheduled', 4000000000000000, 'Ada lagi yang bisa kami bantu?', 'pending', 0, 0 \
         FROM conversations WHERE id LIKE 'bench-c%'",
    )
    .execute(store.pool())
    .await
    .unwrap();

    // Act: restart; live questions alone for the baseline, then every follow-up falls due.
    let app = spawn_app_with(CONFIG, Overrides::default(), Some(dir)).await;
    let done = Arc::new(AtomicBool::new(false));
    let address = app.address.clone();
    let live = {
        let done = done.clone();
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut tasks = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / live_rate));
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                let (client, address) = (client.clone(), address.clone());
                tasks.push(tokio::spawn(async move {
                    let session = sapa_tests::create_session(&client, &address, "demo").await;
                    let asked = Instant::now();
                    let at = asked;
                    sapa_tests::post_message(
                        &client,
                        &address,
                        &session,
                        &format!("l{n}"),
                        "jam buka outlet Blok M hari Minggu?",
                    )
                    .await;
                    loop {
                        let messages = list_messages(&client, &address, &session)
                            .await
                            .unwrap_or_default();
                        if messages
                            .iter()
                            .any(|m| m["author"] == "bot" && m["status"] != "pending")
                        {
                            return (at, asked.elapsed());
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }));
            }
            for task in tasks {
                waits.push(task.await.unwrap());
            }
            waits
        })
    };
    tokio::time::sleep(BASELINE).await;
    sqlx::query("UPDATE follow_ups SET due_at = 0 WHERE conversation_id LIKE 'bench-c%'")
        .execute(store.pool())
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let pending = count(
            &store,
            "SELECT COUNT(*) FROM follow_ups WHERE state = 'pending' AND conversation_id LIKE 'bench-c%'",
        )
        .await;
        let unsent = count(
            &store,
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND priority = -1",
        )
        .await;
        if pending == 0 && unsent == 0 {
            break;
        }
        if std::env::var("BENCH_DEBUG").is_ok() {
            eprintln!("pending {pending}, unsent {unsent}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let asked = live.await.unwrap();
    let phase = |during: bool| {
        let mut waits: Vec<Duration> = asked
            .iter()
            .filter(|(at, _)| (*at >= started) == during)
            .map(|(_, wait)| *wait)
            .collect();
        waits.sort();
        waits
    };
    let (baseline, waits) = (phase(false), phase(true));
    let sent = count(
        &store,
        "SELECT COUNT(*) FROM outbox WHERE state = 'sent' AND priority = -1",
    )
    .await;
    assert_eq!(sent, total, "every follow-up sent once");
    println!(
        "live answers alone (first {} s): {} (p50 {:?}, p99 {:?})",
        BASELINE.as_secs(),
        baseline.len(),
        percentile(&baseline, 0.50),
        percentile(&baseline, 0.99),
    );
    println!(
        "follow-ups: {total} sent in {:.1} s = {:.0} msg/s; live answers during the run: {} (p50 {:?}, p99 {:?}, max {:?})",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        waits.len(),
        percentile(&waits, 0.50),
        percentile(&waits, 0.99),
        waits.last().copied().unwrap_or_default(),
    );
    store.close().await;
    app.stop().await;
}
