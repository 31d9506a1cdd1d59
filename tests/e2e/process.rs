//! The `sapa` binary as a real process: start, find its port, SIGKILL, restart; CLI commands.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The server binary built for these tests (same entry point as `sapa`).
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sapa-e2e-server"))
}

/// A command for the binary with a clean environment: only what the test passes (and web chat
/// rate limits off).
pub fn command(data_dir: &Path, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SAPA_TELEMETRY__FILTER", "warn")
        // Load tests post and poll far faster than a customer.
        .env("SAPA_WEBCHAT__MESSAGES_PER_MINUTE_PER_SESSION", "0")
        .env("SAPA_WEBCHAT__REQUESTS_PER_MINUTE_PER_IP", "0")
        // Processes run side by side: the operator listener takes a free port.
        .env("SAPA_SERVER__ADMIN_BIND", "127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(data_dir)
        .kill_on_drop(true);
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// A running `sapa serve`.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The operator listener (`/metrics`), `http://127.0.0.1:PORT`; empty when disabled.
    pub admin_address: String,
}

impl ServerProcess {
    /// Starts `sapa serve --bind 127.0.0.1:0` and waits for its address.
    pub async fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Self {
        let mut child = command(data_dir, envs)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (address, admin_address) = tokio::time::timeout(Duration::from_secs(60), async {
            let mut address = None;
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(found) = line.strip_prefix("Sapa is listening on ") {
                    address = Some(found.trim().to_owned());
                }
                if let Some(found) = line.trim().strip_prefix("operator: ") {
                    let admin = found.split_whitespace().next().unwrap_or_default();
                    return (address.expect("address first"), admin.to_owned());
                }
                // No operator listener (admin_bind = ""): the next line comes without one.
                if line.trim().starts_with("web chat: ") {
                    return (address.expect("address first"), String::new());
                }
            }
            panic!("server exited before listening");
        })
        .await
        .expect("server listens within 60 s");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            address,
            admin_address,
        }
    }

    /// SIGKILL: no shutdown hooks, no flushing.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[tokio::test]
async fn invalid_configuration_is_reported_in_full_and_stops_the_start() {
    let (_dir, path) = temp();
    std::fs::write(
        path.join("bad.toml"),
        "[server]\nbnd = \"x\"\n[conversation]\ndebounce = \"soon\"\n[llm]\nbase_url = \"ftp://x\"\n",
    )
    .unwrap();
    let output = command(&path, &[("SAPA_DISPATCHER__MAX_ATTEMPTS", "many")])
        .args(["--config", "bad.toml", "serve"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "unknown key `server.bnd` (did you mean `bind`?)",
        "`conversation.debounce` must be a duration",
        "SAPA_DISPATCHER__MAX_ATTEMPTS: expected an integer",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    let missing = command(&path, &[])
        .args(["--config", "nope.toml", "check"])
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read config file nope.toml"));
}

#[tokio::test]
async fn migrate_and_check_use_the_data_dir_and_report_each_dependency() {
    let (_dir, path) = temp();
    let migrate = command(&path, &[]).arg("migrate").output().await.unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    // Every migration, from the first one, on a fresh database (later ones may follow).
    let stdout = String::from_utf8_lossy(&migrate.stdout);
    assert!(
        stdout.contains("applied migrations [1, 2, 3, 4, 5"),
        "{stdout}"
    );
    assert!(path.join("sapa.db").exists());
    let again = command(&path, &[]).arg("migrate").output().await.unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    let check = command(&path, &[("SAPA_REDIS__URL", "redis://127.0.0.1:9")])
        .arg("check")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success());
    assert!(stdout.contains("configuration: ok"), "{stdout}");
    assert!(stdout.contains("database: ok"), "{stdout}");
    assert!(stdout.contains("redis: FAILED"), "{stdout}");
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let (_dir, path) = temp();
    let server = ServerProcess::start(&path, &[]).await;
    let pid = server.child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = server.child;
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn flows_check_accepts_the_demo_flows_and_points_at_each_mistake() {
    let (_dir, path) = temp();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/flows");
    let ok = command(&path, &[])
        .args(["flows", "check"])
        .arg(demo.join("cek-pesanan.yaml"))
        .arg(demo.join("reservasi.yaml"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("flow `cek-pesanan` is valid"), "{stdout}");
    assert!(stdout.contains("flow `reservasi` is valid"), "{stdout}");

    std::fs::write(
        path.join("typo.yaml"),
        "name: x\ntriggers:\n  keywords: [halo]\nsteps:\n  - ask:\n      slot: nama\n      promt: { id: Nama?, en: Name? }\n",
    )
    .unwrap();
    std::fs::write(
        path.join("jump.yaml"),
        "name: y\ndescription: d\nsteps:\n  - ask:\n      label: nomor\n      slot: order\n      prompt: { id: A?, en: A? }\n  - if:\n      slot: order\n      present: true\n      then: nomr\n",
    )
    .unwrap();
    let bad = command(&path, &[])
        .args(["flows", "check", "typo.yaml", "jump.yaml"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("typo.yaml:7:7: steps[0].ask: unknown field `promt`")
            && stderr.contains("(did you mean `prompt`?)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("jump.yaml:11:13: steps[1].if.then: no step has the label `nomr` (did you mean `nomor`?)"),
        "{stderr}"
    );

    let schema = command(&path, &[])
        .args(["flows", "schema"])
        .output()
        .await
        .unwrap();
    assert!(schema.status.success());
    assert_eq!(
        String::from_utf8_lossy(&schema.stdout),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../flows/flow.schema.json")
        )
        .unwrap()
    );
}
