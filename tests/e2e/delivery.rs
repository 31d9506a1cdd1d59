//! The dispatcher: transient failures are retried with backoff, hopeless ones dead-lettered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use channels::{Channel, ChannelError, ChannelKind, Delivery, OutboundMessage};
use gateway::startup::Overrides;
use sapa_tests::{eventually, spawn_app_with};
use serde_json::Value;

/// A web chat channel that fails the first `failures` sends (forever when `usize::MAX`).
#[derive(Debug)]
struct FlakyChannel {
    failures: usize,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Channel for FlakyChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Webchat
    }

    async fn send(&self, _msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            Err(ChannelError::Transient {
                reason: "503 from provider".into(),
            })
        } else {
            Ok(Delivery {
                provider_message_id: Some(format!("p-{call}")),
                ..Delivery::default()
            })
        }
    }
}

const FAST_RETRIES: &str = "[dispatcher]\nretry_base = \"10ms\"\nretry_cap = \"40ms\"\nmax_attempts = 4\npoll_interval = \"20ms\"\n";

fn flaky(failures: usize) -> (Arc<FlakyChannel>, Overrides) {
    let channel = Arc::new(FlakyChannel {
        failures,
        calls: AtomicUsize::new(0),
    });
    let overrides = Overrides {
        channels: vec![(ChannelKind::Webchat, channel.clone() as Arc<dyn Channel>)],
        ..Overrides::default()
    };
    (channel, overrides)
}

async fn status_of_first_bot_message(
    app: &sapa_tests::TestApp,
    session: &sapa_tests::Session,
    wanted: &str,
) -> Value {
    eventually(Duration::from_secs(10), || async {
        let messages = app.messages(session).await;
        let bot = messages.into_iter().find(|m| m["author"] == "bot")?;
        (bot["status"] == wanted).then_some(bot)
    })
    .await
}

#[tokio::test]
async fn a_transient_send_failure_is_retried_until_delivered() {
    let (channel, overrides) = flaky(2);
    let app = spawn_app_with(FAST_RETRIES, overrides, None).await;
    let session = app.session("demo").await;
    app.post(&session, "r-1", "apakah ada wifi?").await;
    status_of_first_bot_message(&app, &session, "sent").await;
    assert_eq!(
        channel.calls.load(Ordering::SeqCst),
        3,
        "two failures, then delivered"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sapa_outbox_retries_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_send_that_keeps_failing_is_dead_lettered_after_the_last_attempt() {
    let (channel, overrides) = flaky(usize::MAX);
    let app = spawn_app_with(FAST_RETRIES, overrides, None).await;
    let session = app.session("demo").await;
    app.post(&session, "d-1", "apakah ada wifi?").await;
    status_of_first_bot_message(&app, &session, "failed").await;
    assert_eq!(channel.calls.load(Ordering::SeqCst), 4, "max_attempts = 4");
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sapa_dead_letters_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    app.stop().await;
}
