//! WhatsApp ingest benchmark: signed webhooks at a fixed rate (open loop) against the real
//! server, replies counted at a fake Graph API. Reports sustained msg/s, lost and duplicated
//! replies, and ack / end-to-end latency percentiles.
//!
//! `cargo run --release -p sapa-tests --bin whatsapp-bench -- [RATE] [SECONDS] [NUMBERS]`
//! (defaults 1000 msg/s, 10 s, 16 numbers). Each number is its own tenant (WhatsApp paces a
//! number at 80 msg/s, so higher rates need several numbers), each with the demo knowledge
//! base; every message comes from a distinct customer. Debounce is 0. The load starts
//! `BENCH_SETTLE_SECS` (default 3) after start-up, once the set-up ingest's index merges are
//! done; `BENCH_SLOW=1` prints every acknowledgement over 10 ms with its send time.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::startup::Overrides;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::percentile;
use sapa_tests::spawn_app_with;
use serde_json::json;
use tokio::sync::Mutex;

const QUESTIONS: &[&str] = &[
    "jam berapa tokonya buka hari Minggu?",
    "bisa bayar pake qris?",
    "berapa harga kopi susu gula aren?",
    "apakah bisa kirim ke Bekasi?",
    "ada menu vegan?",
];

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let numbers: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(16);

    let graph = FakeGraph::start().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    {
        let knowledge = knowledge::Knowledge::open(&data_dir.path().join("index")).unwrap();
        for n in 0..numbers {
            for (name, text) in gateway::demo::KNOWLEDGE_BASE {
                knowledge
                    .ingest_document(&format!("t{n}"), name, text.as_bytes())
                    .unwrap();
            }
        }
    }
    let mut config = String::from(
        "[demo]\nenabled = false\n[conversation]\nmax_concurrent = 256\n[dispatcher]\nbatch_size = 256\n",
    );
    for n in 0..numbers {
        config.push_str(&format!(
            "[tenants.t{n}]\nname = \"T{n}\"\nlocale = \"id\"\n[tenants.t{n}.whatsapp]\n\
             phone_number_id = \"{}\"\napp_secret = \"secret\"\naccess_token = \"token\"\n\
             verify_token = \"v\"\napi_base_url = \"{}\"\n",
            900_000_000 + n,
            graph.base_url
        ));
    }
    let app = spawn_app_with(&config, Overrides::default(), Some(data_dir)).await;
    // Measure the steady state: let the index merges started by the set-up ingest finish.
    let settle: u64 = std::env::var("BENCH_SETTLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let url = format!("{}/webhooks/whatsapp", app.address);
    let total = rate * seconds;
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let acks: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap();
        tokio::time::sleep_until(due.into()).await;
        let customer = format!("62811{i:08}");
        let number = 900_000_000 + (i as usize % numbers);
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "62800", "phone_number_id": number.to_string()},
                "contacts": [{"profile": {"name": "Bench"}, "wa_id": customer}],
                "messages": [{"from": customer, "id": format!("wamid.BENCH{i}"), "timestamp": "1763791200",
                    "type": "text", "text": {"body": QUESTIONS[i as usize % QUESTIONS.len()]}}]
            }}]}]
        }))
        .unwrap();
        let signature = channels::whatsapp::webhook::sign(b"secret", &body);
        let client = client.clone();
        let url = url.clone();
        let sent_at = sent_at.clone();
        let acks = acks.clone();
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            sent_at.lock().await.insert(customer, t0);
            let ok = client
                .post(&url)
                .header("x-hub-signature-256", signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                let ack = t0.elapsed();
                if std::env::var_os("BENCH_SLOW").is_some() && ack > Duration::from_millis(10) {
                    eprintln!("slow ack {:?} at {:.3}s", ack, (t0 - start).as_secs_f64());
                }
                acks.lock().await.push(ack);
            } else {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let offered = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Poll the fake's counter (cheap), not its request log (a copy of every request).
    while graph.delivered() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sends = graph.sends();
    let sent_at = sent_at.lock().await;
    let mut per_customer: HashMap<String, usize> = HashMap::new();
    let mut e2e = Vec::with_capacity(sends.len());
    let mut last = start;
    for send in &sends {
        let to = send.body["to"].as_str().unwrap_or_default().to_owned();
        if let Some(t0) = sent_at.get(&to) {
            e2e.push(send.at.saturating_duration_since(*t0));
        }
        last = last.max(send.at);
        *per_customer.entry(to).or_default() += 1;
    }
    let answered = per_customer.len() as u64;
    let duplicated: usize = per_customer.values().map(|n| n.saturating_sub(1)).sum();
    let mut acks = acks.lock().await.clone();
    acks.sort();
    e2e.sort();
    let elapsed = last.duration_since(start).as_secs_f64();
    println!(
        "offered {total} msgs at {rate}/s over {:.1}s across {numbers} numbers",
        offered.as_secs_f64()
    );
    println!(
        "answered {answered}, lost {}, duplicated {duplicated}, webhook failures {}",
        total - answered.min(total),
        failures.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "sustained end-to-end {:.0} msg/s (answers / time to last answer)",
        answered as f64 / elapsed
    );
    println!(
        "ack p50 {:?} p99 {:?} | end-to-end p50 {:?} p99 {:?} max {:?}",
        percentile(&acks, 0.5),
        percentile(&acks, 0.99),
        percentile(&e2e, 0.5),
        percentile(&e2e, 0.99),
        e2e.last().copied().unwrap_or_default()
    );
    app.stop().await;
}
