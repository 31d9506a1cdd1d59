//! Memory of idle web chat WebSockets, out of process: starts the real `sapa serve` binary
//! (embedded mode, the demo tenant, the per-IP limit off and the socket cap above the count),
//! creates N web chat sessions, reads the server's RSS, opens one idle WebSocket per session,
//! and reads the RSS again. Prints one Markdown table.
//!
//! ```sh
//! cargo build --release -p gateway --bin sapa -p sapa-tests --bin socket-bench
//! ./target/release/socket-bench [--sockets 10000] [--sapa target/release/sapa]
//! ```
//!
//! Everything stays on loopback; the server gets a free port and its own temp data dir.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use serde_json::{Value, json};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::main]
async fn main() {
    let mut sockets = 10_000usize;
    let mut sapa = PathBuf::from("target/release/sapa");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sockets" => sockets = value.parse().expect("--sockets: a count"),
            "--sapa" => sapa = PathBuf::from(value),
            other => panic!("unknown flag {other} (see the file's header)"),
        }
    }
    let sapa = std::fs::canonicalize(&sapa).expect("the sapa binary (build it first)");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Guard(
        Command::new(&sapa)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SAPA_TELEMETRY__FILTER", "warn")
            .env("SAPA_SERVER__ADMIN_BIND", "127.0.0.1:0")
            .env("SAPA_WEBCHAT__REQUESTS_PER_MINUTE_PER_IP", "0")
            .env("SAPA_WEBCHAT__MESSAGES_PER_MINUTE_PER_SESSION", "0")
            .env("SAPA_WEBCHAT__MAX_SOCKETS", (sockets + 1_000).to_string())
            .env(
                "SAPA_SERVER__MAX_CONNECTIONS",
                (sockets + 1_000).to_string(),
            )
            .arg("--data-dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .expect("sapa starts"),
    );
    let pid = server.0.id();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(Instant::now() < deadline, "sapa not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mb(pid);

    let started = Instant::now();
    let tokens: Vec<String> = stream::iter(0..sockets)
        .map(|_| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let body: Value = client
                    .post(format!("{base}/v1/webchat/sessions"))
                    .json(&json!({ "tenant": "demo" }))
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                body["session_token"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let sessions_took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_sessions = rss_mb(pid);

    let started = Instant::now();
    let ws_base = base.replacen("http://", "ws://", 1);
    let open: Vec<_> = stream::iter(tokens)
        .map(|token| {
            let url = format!("{ws_base}/v1/webchat/ws?token={token}");
            async move { tokio_tungstenite::connect_async(&url).await.unwrap().0 }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let sockets_took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_sockets = rss_mb(pid);
    assert_eq!(open.len(), sockets);

    println!(
        "\n{sockets} idle web chat WebSockets on one `sapa serve` (embedded mode, demo tenant)\n"
    );
    println!("| state | sapa RSS MB |");
    println!("|---|---|");
    println!("| idle, after start | {idle:.0} |");
    println!(
        "| {sockets} sessions created ({:.1} s) | {with_sessions:.0} |",
        sessions_took.as_secs_f64()
    );
    println!(
        "| {sockets} WebSockets open and idle ({:.1} s to open) | {with_sockets:.0} |",
        sockets_took.as_secs_f64()
    );
    println!(
        "| **added by the sockets** | **{:.0} MB ({:.1} KB per socket)** |",
        with_sockets - with_sessions,
        (with_sockets - with_sessions) * 1024.0 / sockets as f64
    );
    drop(open);
    drop(server);
}
