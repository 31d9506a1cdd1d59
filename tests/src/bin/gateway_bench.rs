//! Out-of-process benchmark against the reference gateway, in one run on one machine.
//!
//! Starts `../shared/bench`'s `bench-stubs` (fake Graph API, and the do-nothing reference
//! gateway with `--echo-listen`), then the real `sapa serve` binary with N WhatsApp numbers (one
//! tenant each, the demo knowledge base, debounce 0, no LLM, `messages_per_second = 1000`), and
//! runs `bench-loadgen` at the same open-loop rates against both. Prints one Markdown table per
//! rate with the reference's and Sapa's figures and their ratio.
//!
//! ```sh
//! cargo build --release -p gateway --bin sapa -p sapa-tests --bin gateway-bench
//! cargo build --release --manifest-path ../shared/bench/Cargo.toml --target-dir target/bench-kit
//! ./target/release/gateway-bench [--rates 500,1000,2000] [--duration 10] [--numbers 40]
//!     [--sapa target/release/sapa] [--kit target/bench-kit/release]
//!     [--database postgres://… --redis redis://… [--replicas N] [--qdrant http://…:6334]]
//!     [--llm-latency-ms 300]
//! ```
//!
//! With `--llm-latency-ms N` both gateways call the stubs' OpenAI-compatible chat endpoint,
//! which answers after N ms: the reference once per message before it replies
//! (`--echo-llm`), Sapa as its `[llm]` (JSON answers, `response_format = "json_object"`). The
//! stub's fixed answer is a valid structured reply (a clarifying question, which needs no
//! citation), so Sapa sends the model's words rather than a fallback; replies are then
//! correlated first-in first-out per customer (the answer carries no `ref:` tag).
//!
//! Distributed mode: with `--database` (a Postgres URL; the bench creates a fresh schema) and
//! `--redis`, Sapa runs as `--replicas` processes on that schema and Redis, each with its own
//! data dir (a copy of the seeded one: the embedded index is per replica), and the offered
//! rate is split evenly over them by one load generator per replica (a load balancer's job);
//! their figures are combined: throughput and losses summed, p50 averaged, p99 the worst, CPU
//! summed, RSS the largest. With `--qdrant` (Qdrant's gRPC URL) the knowledge base is a fresh
//! Qdrant collection shared by the replicas (`knowledge.backend = "qdrant"`), as in production.
//!
//! Ports: the stubs on 127.0.0.1:18480, the reference on 18490, Sapa on a free port; the
//! operator listener takes a free port too. Everything stays on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const STUBS: &str = "127.0.0.1:18480";
const REFERENCE: &str = "127.0.0.1:18490";
const SECRET: &str = "bench-app-secret";
const FIRST_NUMBER: u64 = 100_000_000_000_001;

struct Args {
    rates: Vec<u32>,
    duration: u32,
    numbers: u32,
    sapa: PathBuf,
    kit: PathBuf,
    database: Option<String>,
    redis: Option<String>,
    replicas: u32,
    qdrant: Option<String>,
    llm_latency_ms: Option<u32>,
}

/// What `--help` prints.
const USAGE: &str = "gateway-bench [--rates 500,1000,2000] [--duration SECONDS] [--numbers N] \
[--sapa PATH] [--kit DIR] [--llm-latency-ms MS] [--database URL --redis URL [--replicas N]] \
[--qdrant URL]\n\nRuns the same open-loop rates against the do-nothing reference gateway and \
`sapa serve`, and prints one table with the ratios (see the README's Benchmarks section).";

/// The stub model's fixed answer in LLM mode: Sapa's structured reply (see `flows::policy`).
const LLM_ANSWER: &str = r#"{"action":"clarify","reply":"Boleh dijelaskan sedikit lagi, Kak? Produk mana yang dimaksud?","citations":[]}"#;

fn args() -> Args {
    let mut parsed = Args {
        rates: vec![500, 1000, 2000],
        duration: 10,
        numbers: 40,
        sapa: PathBuf::from("target/release/sapa"),
        kit: PathBuf::from("target/bench-kit/release"),
        database: None,
        redis: None,
        replicas: 1,
        qdrant: None,
        llm_latency_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rates" => {
                parsed.rates = value
                    .split(',')
                    .map(|r| r.trim().parse().expect("--rates: numbers, e.g. 500,1000"))
                    .collect();
            }
            "--duration" => parsed.duration = value.parse().expect("--duration: seconds"),
            "--numbers" => parsed.numbers = value.parse().expect("--numbers: a count"),
            "--sapa" => parsed.sapa = PathBuf::from(value),
            "--kit" => parsed.kit = PathBuf::from(value),
            "--database" => parsed.database = Some(value),
            "--redis" => parsed.redis = Some(value),
            "--replicas" => parsed.replicas = value.parse().expect("--replicas: a count"),
            "--qdrant" => parsed.qdrant = Some(value),
            "--llm-latency-ms" => {
                parsed.llm_latency_ms =
                    Some(value.parse().expect("--llm-latency-ms: milliseconds"));
            }
            other => panic!("unknown flag {other}\n\n{USAGE}"),
        }
    }
    // Children run in their own directories: relative paths would resolve there.
    for path in [&mut parsed.sapa, &mut parsed.kit] {
        if let Ok(absolute) = std::fs::canonicalize(&*path) {
            *path = absolute;
        }
    }
    assert!(
        parsed.replicas == 1 || (parsed.database.is_some() && parsed.redis.is_some()),
        "--replicas above 1 needs --database and --redis (distributed mode)"
    );
    for (what, path) in [
        ("sapa", parsed.sapa.clone()),
        ("bench-stubs", parsed.kit.join("bench-stubs")),
        ("bench-loadgen", parsed.kit.join("bench-loadgen")),
    ] {
        assert!(
            path.exists(),
            "no {what} at {} (build it, see the file's header)",
            path.display()
        );
    }
    parsed
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = probe::get_ok();
    while Instant::now() < deadline {
        if client(url) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} did not answer at {url} within 120 s");
}

/// A tiny blocking GET for readiness checks (std only: the bench needs no runtime).
mod probe {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    pub fn get_ok() -> impl Fn(&str) -> bool {
        |url: &str| {
            let Some(rest) = url.strip_prefix("http://") else {
                return false;
            };
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let Ok(mut stream) = TcpStream::connect(host) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request =
                format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_err() {
                return false;
            }
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sapa_config(dir: &Path, args: &Args, schema_url: Option<&str>) -> PathBuf {
    let numbers = args.numbers;
    let mut config = String::from("[conversation]\ndebounce = \"0s\"\n");
    if let Some(latency) = args.llm_latency_ms {
        // Conversations wait on the model this long each: to answer 1,000/s at 300 ms, about
        // 300 must be in flight at once (the default, 64, suits a rate-limited provider key).
        let in_flight = (u64::from(latency) * 4).max(64);
        // The load generator's generic questions mostly score under the demo knowledge base's
        // answer threshold, and a question with no passage over it is answered without the
        // model. Threshold 0 sends every question with any matching passage to the model, so
        // the run measures the model path (the table's "model calls" line counts them).
        config.push_str(&format!(
            "max_concurrent = {in_flight}\n[knowledge]\nmin_relevance = 0.0\n\
             [llm]\nbase_url = \"http://{STUBS}/v1\"\nmodel = \"stub\"\n"
        ));
    } else if schema_url.is_some() {
        // On Postgres each answer waits on several network round trips (batch load, history,
        // commit) and a Qdrant search: with the default 64 in flight a replica answered
        // 381-422/s at 1,000/s offered, with 256 it answered 810/s (README, distributed mode).
        config.push_str("max_concurrent = 256\n");
    }
    config.push_str("[demo]\nenabled = false\n");
    if let Some(url) = schema_url {
        config.push_str(&format!("[database]\nurl = \"{url}\"\n"));
    }
    if let Some(url) = &args.redis {
        let prefix = format!("sapa-bench:{}:", std::process::id());
        config.push_str(&format!(
            "[redis]\nurl = \"{url}\"\nprefix = \"{prefix}\"\n"
        ));
    }
    if let Some(url) = &args.qdrant {
        config.push_str(&format!(
            "[knowledge]\nbackend = \"qdrant\"\n[qdrant]\nurl = \"{url}\"\ncollection = \"sapa_bench_{}\"\n",
            std::process::id()
        ));
    }
    for i in 0..numbers {
        let number = FIRST_NUMBER + u64::from(i);
        config.push_str(&format!(
            "[tenants.t{i}]\nname = \"Toko {i}\"\nlocale = \"id\"\n\
             [tenants.t{i}.whatsapp]\nphone_number_id = \"{number}\"\napp_secret = \"{SECRET}\"\n\
             access_token = \"bench\"\nverify_token = \"bench\"\napi_base_url = \"http://{STUBS}\"\n\
             messages_per_second = 1000\n"
        ));
    }
    let path = dir.join("sapa.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn sapa(args: &Args, dir: &Path, config: &Path) -> Command {
    let mut command = Command::new(&args.sapa);
    command
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("SAPA_TELEMETRY__FILTER", "warn")
        .env("SAPA_SERVER__ADMIN_BIND", "127.0.0.1:0")
        // Replicas on one database open each other's sealed credentials.
        .env(
            "SAPA_SECRET_KEY",
            "6262626262626262626262626262626262626262626262626262626262626262",
        )
        .current_dir(dir);
    command
}

/// One loadgen run; its JSON result line.
fn load(args: &Args, target: &str, rate: u32, first_customer: u64, watch: Option<u32>) -> Value {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(args.kit.join("bench-loadgen"));
    command
        .args(["--target", target])
        .args(["--stub", &format!("http://{STUBS}")])
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .args(["--warmup", "2", "--drain", "20"])
        .args(["--numbers", &args.numbers.to_string()])
        .args(["--customers", "40000"])
        .args(["--customer-base", &first_customer.to_string()])
        .args(["--app-secret", SECRET])
        .arg("--quiet")
        .arg("--json-out")
        .arg(out.path())
        .stdout(Stdio::null());
    if let Some(pid) = watch {
        command.args(["--watch", &format!("sapa={pid}")]);
    }
    let status = command.status().expect("bench-loadgen runs");
    assert!(status.success(), "bench-loadgen failed against {target}");
    let text = std::fs::read_to_string(out.path()).unwrap();
    serde_json::from_str(text.lines().last().expect("a result line")).unwrap()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "–".to_owned()
    }
}

fn row(name: &str, v: &Value) -> String {
    let watch = &v["watch"]["sapa"];
    let cpu = watch["cpu_cores_avg"]
        .as_f64()
        .map_or("–".to_owned(), |c| format!("{c:.2}"));
    let rss = watch["peak_rss_mb"]
        .as_f64()
        .map_or("–".to_owned(), |r| format!("{r:.0}"));
    // Acknowledged but not answered when the drain ended (the backlog), and the fast 503s of
    // overload shedding (`server.max_pending_messages`), which the provider would retry.
    let unanswered = v["lost"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(v["lost_unacked"].as_u64().unwrap_or(0));
    let shed = v["ack_status"]["503"].as_u64().unwrap_or(0);
    format!(
        "| {name} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} | {} / {} | {unanswered} | {} ({shed}) | {cpu} | {rss} |",
        num(v, "ack_p50_ms"),
        num(v, "ack_p99_ms"),
        num(v, "e2e_p50_ms"),
        num(v, "e2e_p99_ms"),
        num(v, "throughput_rps"),
        v["lost"],
        v["duplicates"],
        v["ack_failed"],
    )
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let mut stubs = Command::new(args.kit.join("bench-stubs"));
    stubs
        .args(["--listen", STUBS, "--echo-listen", REFERENCE])
        .args(["--echo-app-secret", SECRET]);
    if let Some(latency) = args.llm_latency_ms {
        stubs
            .args(["--llm-latency-ms", &latency.to_string()])
            .args(["--llm-answer", LLM_ANSWER, "--no-ref-echo", "--echo-llm"]);
    }
    let _stubs = Guard(
        stubs
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bench-stubs starts"),
    );
    wait_for(&format!("http://{STUBS}/stats"), "bench-stubs");

    // Seed the tenants (one start), give each the demo knowledge base, then serve.
    let schema_url = args.database.as_deref().map(fresh_schema);
    let config = sapa_config(dir.path(), &args, schema_url.as_deref());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    {
        let _seed = Guard(
            sapa(&args, dir.path(), &config)
                .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(&format!("{base}/health/live"), "sapa (seeding)");
    }
    let kb = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/kb");
    for i in 0..args.numbers {
        let status = sapa(&args, dir.path(), &config)
            .args(["kb", "ingest", "--tenant", &format!("t{i}")])
            .arg(&kb)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "kb ingest for t{i}");
    }
    // Replicas: each its own copy of the seeded data dir (the embedded index), same config.
    let mut replica_dirs = vec![dir.path().to_path_buf()];
    for r in 1..args.replicas {
        let copy = dir.path().join(format!("replica-{r}"));
        std::fs::create_dir_all(&copy).unwrap();
        if !dir.path().join("data").exists() {
            // Postgres and Qdrant hold everything: nothing to copy.
            replica_dirs.push(copy);
            continue;
        }
        let status = Command::new("cp")
            .arg("-r")
            .arg(dir.path().join("data"))
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success(), "copying the data dir");
        replica_dirs.push(copy);
    }
    let mut servers = Vec::new();
    for (r, replica_dir) in replica_dirs.iter().enumerate() {
        let port = if r == 0 { port } else { free_port() };
        let log = std::fs::File::create(replica_dir.join("sapa.log")).unwrap();
        let server = Guard(
            sapa(&args, replica_dir, &config)
                .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{base}/health/ready"), "sapa");
        servers.push((server, base));
    }
    std::thread::sleep(Duration::from_secs(3));
    let mode = match args.database {
        Some(_) => format!(
            "distributed: {} replica(s) on Postgres + Redis",
            args.replicas
        ),
        None => "embedded (SQLite)".to_owned(),
    };
    let mode = match args.llm_latency_ms {
        Some(ms) => format!("{mode}, LLM stub answering in {ms} ms (both gateways call it)"),
        None => format!("{mode}, no LLM"),
    };
    println!("\nsapa {mode}");
    println!(
        "\n{} WhatsApp numbers, {} s per rate (+2 s warm-up), open loop, 40,000 customers\n",
        args.numbers, args.duration
    );
    println!(
        "| offered/s | gateway | ack p50 / p99 ms | end-to-end p50 / p99 ms | sustained/s | no reply / dup | acked, unanswered | ack failed (503) | CPU cores | RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (n, &rate) in args.rates.iter().enumerate() {
        let first = 6_281_000_000_000 + (n as u64) * 1_000_000;
        let reference = load(
            &args,
            &format!("http://{REFERENCE}/webhook"),
            rate,
            first,
            None,
        );
        let gateway = load_replicas(&args, &servers, rate, first + 500_000);
        println!("{}", row(&format!("{rate} | reference"), &reference));
        println!("{}", row(&format!("{rate} | sapa"), &gateway));
        if args.llm_latency_ms.is_some() {
            println!(
                "| {rate} | model calls | reference {} | sapa {} | | | | | | |",
                reference["stub_llm_calls"], gateway["stub_llm_calls"]
            );
        }
        println!(
            "| {rate} | **sapa / reference** | {} (p99) | {} (p99) | **{}** | | | | | |",
            ratio(num(&gateway, "ack_p99_ms"), num(&reference, "ack_p99_ms")),
            ratio(num(&gateway, "e2e_p99_ms"), num(&reference, "e2e_p99_ms")),
            ratio(
                num(&gateway, "throughput_rps"),
                num(&reference, "throughput_rps")
            ),
        );
    }
    drop(servers);
}

/// A fresh schema on the Postgres at `url` (with psql); the URL that uses it.
fn fresh_schema(url: &str) -> String {
    let schema = format!("bench_{}", std::process::id());
    let status = Command::new("psql")
        .args([
            url,
            "-qc",
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        ])
        .status()
        .expect("psql runs");
    assert!(status.success(), "cannot create schema {schema}");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={schema}")
}

/// Offers `rate` split evenly over the replicas (one load generator each, in parallel, with
/// their own customers) and combines their results into one.
fn load_replicas(args: &Args, servers: &[(Guard, String)], rate: u32, first: u64) -> Value {
    let n = u32::try_from(servers.len()).unwrap_or(1).max(1);
    let results: Vec<Value> = std::thread::scope(|scope| {
        let runs: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(r, (server, base))| {
                let pid = server.0.id();
                let target = format!("{base}/webhooks/whatsapp");
                let share = rate / n + u32::from(u32::try_from(r).unwrap_or(0) < rate % n);
                let customers = first + (r as u64) * 100_000;
                scope.spawn(move || load(args, &target, share, customers, Some(pid)))
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    if results.len() == 1 {
        return results.into_iter().next().unwrap_or(Value::Null);
    }
    let sum = |key: &str| results.iter().map(|v| num(v, key)).sum::<f64>();
    let max = |key: &str| results.iter().map(|v| num(v, key)).fold(f64::NAN, f64::max);
    let mean = |key: &str| sum(key) / results.len() as f64;
    let int_sum = |key: &str| {
        results
            .iter()
            .map(|v| v[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let watch = |key: &'static str| -> Vec<f64> {
        results
            .iter()
            .filter_map(|v| v["watch"]["sapa"][key].as_f64())
            .collect()
    };
    serde_json::json!({
        "ack_p50_ms": mean("ack_p50_ms"),
        "ack_p99_ms": max("ack_p99_ms"),
        "e2e_p50_ms": mean("e2e_p50_ms"),
        "e2e_p99_ms": max("e2e_p99_ms"),
        "throughput_rps": sum("throughput_rps"),
        "lost": int_sum("lost"),
        "lost_unacked": int_sum("lost_unacked"),
        "ack_status": {"503": results
            .iter()
            .map(|v| v["ack_status"]["503"].as_u64().unwrap_or(0))
            .sum::<u64>()},
        "duplicates": int_sum("duplicates"),
        "ack_failed": int_sum("ack_failed"),
        "stub_llm_calls": int_sum("stub_llm_calls"),
        "watch": {"sapa": {
            "cpu_cores_avg": watch("cpu_cores_avg").iter().sum::<f64>(),
            "peak_rss_mb": watch("peak_rss_mb").into_iter().fold(0.0, f64::max),
        }},
    })
}
