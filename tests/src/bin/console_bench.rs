//! Console queue benchmark: `GET /v1/console/conversations?queue=open` against the real server
//! (embedded mode: SQLite) with `CONVERSATIONS` open conversations (waiting for an agent or
//! assigned), `REQUESTS` sequential requests by a logged-in agent after a warm-up. Reports the
//! latency percentiles; exits 1 when p99 is over the 50 ms budget.
//!
//! `cargo run --release -p sapa-tests --bin console-bench -- [CONVERSATIONS] [REQUESTS]`
//! (defaults 10000, 500).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::time::{Duration, Instant};

use gateway::store::StaffMember;
use sapa_tests::percentile;
use sapa_tests::spawn_app;
use serde_json::{Value, json};

const P99_BUDGET: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let conversations: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let requests: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(500);
    let app = spawn_app("").await;
    let store = app.store().await;
    let agent = StaffMember {
        id: "stf_bench".into(),
        tenant_id: "demo".into(),
        email: "agent@demo.local".into(),
        role: "agent".into(),
        whatsapp: None,
        telegram_chat_id: None,
        disabled_at_ms: None,
        locked_until_ms: None,
        has_password: true,
    };
    let hash = gateway::staff::hash_password("bench-password-1").unwrap();
    store.add_staff(&agent, Some(&hash), 0).await.unwrap();
    eprintln!("creating {conversations} open conversations…");
    let started = Instant::now();
    let account: String = sqlx::query_scalar::<_, String>(
        "SELECT id FROM channel_accounts WHERE tenant_id = 'demo' AND kind = 'webchat'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    for n in 0..conversations {
        let conversation = store
            .create_webchat_session("demo", &account, &format!("bench-{n}"), "id")
            .await
            .unwrap();
        // Half wait for an agent, half are assigned to ours; each has a last message.
        let (state, assignee) = if n % 2 == 0 {
            ("waiting_human", None)
        } else {
            ("human", Some("stf_bench"))
        };
        sqlx::query(
            "UPDATE conversations SET state = $1, assignee = $2, waiting_since = $3 WHERE id = $4",
        )
        .bind(state)
        .bind(assignee)
        .bind(i64::try_from(n).unwrap())
        .bind(&conversation)
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO messages (tenant_id, conversation_id, author, body, created_at) \
             VALUES ('demo', $1, 'customer', $2, 0)",
        )
        .bind(&conversation)
        .bind(format!("pertanyaan nomor {n}: mau bicara dengan admin"))
        .execute(store.pool())
        .await
        .unwrap();
    }
    store.close().await;
    eprintln!("created in {:.1} s", started.elapsed().as_secs_f64());

    let client = reqwest::Client::new();
    let login = client
        .post(format!("{}/v1/console/login", app.address))
        .json(
            &json!({"tenant": "demo", "email": "agent@demo.local", "password": "bench-password-1"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("{}/v1/console/conversations?queue=open", app.address);
    let get = || async {
        let sent = Instant::now();
        let response = client
            .get(&url)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["conversations"].as_array().unwrap().len(),
            200.min(conversations)
        );
        sent.elapsed()
    };
    for _ in 0..20 {
        get().await;
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        latencies.push(get().await);
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = percentile(&latencies, 0.99);
    println!(
        "queue=open over {conversations} open conversations, {requests} requests (200 per page)"
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
    if p99 > P99_BUDGET {
        std::process::exit(1);
    }
}
