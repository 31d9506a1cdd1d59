//! The web chat widget, the agent console and the owner pages in a real browser: runs
//! `tests/browser/{widget,console,owner}.test.mjs` (Debian's
//! Chromium driven by playwright-core) against the real server binary. Prerequisites: `node`,
//! `npm ci` in `tests/browser`, and `/usr/bin/chromium` (or `CHROMIUM`). Without them the test
//! is skipped locally and fails when `CI` is set.

use std::path::Path;
use std::time::Duration;

#[tokio::test]
async fn the_widget_works_in_a_real_browser() {
    run(
        "widget.test.mjs",
        &["widget-desktop.png", "widget-mobile.png", "chat-page.png"],
    )
    .await;
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    run(
        "console.test.mjs",
        &[
            "console-login.png",
            "console-code.png",
            "console-widget-agent-reply.png",
            "console-queue.png",
            "console-conversation.png",
            "console-conversation-en.png",
            "console-phone-queue.png",
            "console-phone.png",
            "console-phone-details.png",
        ],
    )
    .await;
}

#[tokio::test]
async fn the_owner_pages_work_in_a_real_browser() {
    run(
        "owner.test.mjs",
        &[
            "owner-bot.png",
            "owner-bot-phone.png",
            "owner-bot-follow-up.png",
            "owner-bot-en.png",
            "owner-bot-versions.png",
            "owner-bot-regression.png",
            "owner-knowledge.png",
            "owner-knowledge-phone.png",
            "owner-unanswered.png",
            "owner-unanswered-phone.png",
            "owner-usage.png",
            "owner-usage-phone.png",
            "owner-usage-quota.png",
            "owner-knowledge-widget.png",
            "owner-usage-charts.png",
            "owner-usage-charts-phone.png",
            "owner-keys.png",
            "owner-keys-phone.png",
            "owner-flows-error.png",
            "owner-flows.png",
            "owner-flows-phone.png",
        ],
    )
    .await;
}

/// Runs one node test script against the server binary; expects its screenshots.
async fn run(script: &str, shots: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let node = tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    let mut missing = Vec::new();
    if !node {
        missing.push("node (Node.js 20+)".to_owned());
    }
    if !dir.join("node_modules/playwright-core").exists() {
        missing.push(format!(
            "{}/node_modules (run `npm ci` there)",
            dir.display()
        ));
    }
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (apt-get install chromium)"));
    }
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").is_err(),
            "CI is set but the browser test cannot run; missing: {}",
            missing.join(", ")
        );
        eprintln!(
            "browser test skipped outside CI; missing: {}",
            missing.join(", ")
        );
        return;
    }
    let binary = crate::process::binary();
    // <target>/debug/sapa-e2e-server → <target>/browser-screenshots
    let screenshots = binary
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("browser-screenshots"))
        .unwrap_or_else(|| dir.join("screenshots"));
    let run = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .env("SAPA_BIN", binary)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the browser test finishes within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    for shot in shots {
        assert!(screenshots.join(shot).exists(), "no screenshot {shot}");
    }
    eprintln!("screenshots in {}", screenshots.display());
}
