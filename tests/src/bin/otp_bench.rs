//! One-time code verification benchmark: `RATE` verifications per second (open loop) for
//! `SECONDS` against the real server (embedded mode: SQLite), each the right code of its own
//! challenge, so every request is the full path (API key, one indexed read, the HMAC, one
//! conditional update). Reports the latency percentiles; exits 1 when p99 is over the 5 ms
//! budget.
//!
//! `cargo run --release -p sapa-tests --bin otp-bench -- [RATE] [SECONDS]` (defaults 500, 10).
//! The challenges are issued first (through `POST /v1/otp`, delivered to a fake Graph API
//! whose requests give the codes); only the verifications are timed.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::api_key::Scope;
use gateway::startup::Overrides;
use sapa_tests::fake_graph::FakeGraph;
use sapa_tests::percentile;
use sapa_tests::{spawn_app_with, whatsapp_config};
use serde_json::{Value, json};

/// The verification latency budget (DESIGN, issue 12).
const P99_BUDGET: Duration = Duration::from_millis(5);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let total = usize::try_from(rate * seconds).unwrap();

    let graph = FakeGraph::start().await;
    let config = format!(
        "{}[demo]\nenabled = false\n[otp]\nmax_sends_per_tenant_per_hour = 10000000\n",
        whatsapp_config(
            &graph.base_url,
            "otp_template = \"login_code\"\nmessages_per_second = 1000\n"
        )
    );
    let app = spawn_app_with(&config, Overrides::default(), None).await;
    let store = app.store().await;
    let key = gateway::api_key::generate();
    store
        .create_scoped_api_key("demo", &key.prefix, &key.hash, &[Scope::Otp])
        .await
        .unwrap();
    store.close().await;
    let key = Arc::new(key.key);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();

    // Issue one challenge per verification, 32 at a time.
    eprintln!("issuing {total} challenges…");
    let started = Instant::now();
    let mut ids: Vec<(String, String)> = Vec::with_capacity(total);
    for batch in (0..total).collect::<Vec<_>>().chunks(32) {
        let requests = batch.iter().map(|i| {
            let client = client.clone();
            let key = key.clone();
            let address = app.address.clone();
            let phone = format!("+62811{i:07}");
            async move {
                let response = client
                    .post(format!("{address}/v1/otp"))
                    .bearer_auth(key.as_str())
                    .json(&json!({ "to": phone }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                (
                    body["challenge_id"].as_str().unwrap().to_owned(),
                    phone.trim_start_matches('+').to_owned(),
                )
            }
        });
        ids.extend(futures::future::join_all(requests).await);
    }
    eprintln!(
        "issued in {:.1} s; waiting for delivery…",
        started.elapsed().as_secs_f64()
    );
    let codes: HashMap<String, String> = loop {
        let codes: HashMap<String, String> = graph
            .sends()
            .into_iter()
            .filter(|s| s.body["type"] == "template")
            .map(|s| {
                let to = s.body["to"].as_str().unwrap().to_owned();
                let code = s.body["template"]["components"][0]["parameters"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                (to, code)
            })
            .collect();
        if codes.len() >= total {
            break codes;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let work: Vec<(String, String)> = ids
        .into_iter()
        .map(|(id, to)| {
            let code = codes[&to].clone();
            (id, code)
        })
        .collect();

    eprintln!("verifying at {rate}/s for {seconds} s…");
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for (n, (id, code)) in work.into_iter().enumerate() {
        tokio::time::sleep_until(start + interval * u32::try_from(n).unwrap()).await;
        let client = client.clone();
        let key = key.clone();
        let address = app.address.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(format!("{address}/v1/otp/{id}/verify"))
                .bearer_auth(key.as_str())
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            (sent.elapsed(), status)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failures = 0;
    for task in tasks {
        let (latency, status) = task.await.unwrap();
        if status != 200 {
            failures += 1;
        }
        latencies.push(latency);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = percentile(&latencies, 0.99);
    println!(
        "verifications: {total} at {rate}/s offered, {:.0}/s achieved, {failures} not verified",
        total as f64 / elapsed
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (budget p99 {:.0})",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(p99),
        ms(*latencies.last().unwrap()),
        ms(P99_BUDGET)
    );
    app.stop().await;
    if failures > 0 || p99 > P99_BUDGET {
        std::process::exit(1);
    }
}
