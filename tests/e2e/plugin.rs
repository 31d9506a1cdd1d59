//! A channel that is not WhatsApp, Telegram or web chat, registered through the public seam
//! (`ChannelPlugin` + `Overrides::plugins`): its webhook goes through the one webhook router,
//! and its customer gets a knowledge answer through the outbox and dispatcher.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use channels::model::{InboundMessage, MessageContent};
use channels::provider::{
    AccountEvents, AccountSpec, ChannelPlugin, DecodeError, Decoded, Event, Inbound, Plugged,
    Provider, Verified, WebhookRequest,
};
use channels::{Channel, ChannelError, ChannelKind, Delivery, OutboundMessage, PacingPolicy};
use gateway::startup::Overrides;
use sapa_tests::{eventually, spawn_app_with};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-1";

fn kind() -> ChannelKind {
    ChannelKind::custom("testchat").unwrap()
}

/// Sends recorded by the test channel.
type Sent = Arc<Mutex<Vec<OutboundMessage>>>;

/// The test plugin: accounts are `{"account": "...", "token": "..."}`.
#[derive(Debug)]
struct TestPlugin {
    sent: Sent,
}

impl ChannelPlugin for TestPlugin {
    fn kind(&self) -> ChannelKind {
        kind()
    }

    fn settings(&self) -> &'static [channels::Setting] {
        const SETTINGS: &[channels::Setting] = &[
            channels::Setting::text("account", "account", "account id"),
            channels::Setting::secret("token", "token", "webhook token"),
        ];
        SETTINGS
    }

    fn account_key(&self, settings: &Value) -> Result<String, String> {
        let token = settings["token"].as_str().unwrap_or_default();
        if token.is_empty() {
            return Err("token must not be empty".to_owned());
        }
        settings["account"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "account is required".to_owned())
    }

    fn build(
        &self,
        accounts: Vec<AccountSpec>,
        _http: &reqwest::Client,
    ) -> Result<Plugged, String> {
        let tokens = accounts
            .iter()
            .map(|a| {
                (
                    a.key.clone(),
                    a.settings["token"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let channels = accounts
            .iter()
            .map(|a| {
                (
                    a.key.clone(),
                    Arc::new(TestChannel {
                        sent: self.sent.clone(),
                    }) as Arc<dyn Channel>,
                )
            })
            .collect();
        Ok(Plugged {
            provider: Arc::new(TestProvider { tokens }),
            channels,
        })
    }
}

/// Webhook `POST /webhooks/testchat/{account}` with `x-test-token`, body
/// `{"messages": [{"id", "from", "text"}]}`.
#[derive(Debug)]
struct TestProvider {
    tokens: Vec<(String, String)>,
}

impl Provider for TestProvider {
    fn kind(&self) -> ChannelKind {
        kind()
    }

    fn max_body_bytes(&self) -> usize {
        64 * 1024
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Verified {
        let given = request
            .headers
            .get("x-test-token")
            .and_then(|v| v.to_str().ok());
        match self.tokens.iter().find(|(account, token)| {
            Some(account.as_str()) == request.account && Some(token.as_str()) == given
        }) {
            Some((account, _)) => Verified::Accounts(vec![account.clone()]),
            None => Verified::Rejected {
                code: "invalid_token",
                message: "x-test-token does not match",
            },
        }
    }

    fn decode(&self, request: &WebhookRequest<'_>) -> Result<Decoded, DecodeError> {
        let body: Value =
            serde_json::from_slice(request.body).map_err(|e| DecodeError(e.to_string()))?;
        let events = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                Event::Message(Inbound::plain(InboundMessage {
                    external_id: m["id"].as_str().unwrap_or_default().to_owned(),
                    from: m["from"].as_str().unwrap_or_default().to_owned(),
                    sender_name: None,
                    timestamp_s: 0,
                    reply_to: None,
                    content: MessageContent::Text {
                        body: m["text"].as_str().unwrap_or_default().to_owned(),
                    },
                }))
            })
            .collect();
        Ok(Decoded {
            accounts: vec![AccountEvents {
                account: request.account.unwrap_or_default().to_owned(),
                events,
            }],
            ..Decoded::default()
        })
    }
}

#[derive(Debug)]
struct TestChannel {
    sent: Sent,
}

#[async_trait::async_trait]
impl Channel for TestChannel {
    fn kind(&self) -> ChannelKind {
        kind()
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<Delivery, ChannelError> {
        let mut sent = self.sent.lock().unwrap();
        sent.push(msg.clone());
        Ok(Delivery {
            provider_message_id: Some(format!("out-{}", sent.len())),
            ..Delivery::default()
        })
    }

    fn pacing(&self) -> PacingPolicy {
        PacingPolicy::UNLIMITED
    }
}

#[tokio::test]
async fn a_channel_registered_through_the_plugin_seam_gets_knowledge_answers() {
    let sent = Sent::default();
    let overrides = Overrides {
        plugins: vec![Arc::new(TestPlugin { sent: sent.clone() })],
        accounts: vec![(
            "demo".to_owned(),
            kind(),
            json!({"account": "acc1", "token": TOKEN}),
        )],
        ..Overrides::default()
    };
    let app = spawn_app_with("", overrides, None).await;
    let url = format!("{}/webhooks/testchat/acc1", app.address);
    let body = json!({"messages": [{"id": "m1", "from": "user-7", "text": "Halo kak, jam berapa tokonya buka hari Minggu?"}]});

    // Wrong token: refused, nothing stored or answered.
    let refused = app
        .client
        .post(&url)
        .header("x-test-token", "wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Twice (a provider retry): stored once, answered once.
    for _ in 0..2 {
        let ok = app
            .client
            .post(&url)
            .header("x-test-token", TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    let answer = eventually(Duration::from_secs(20), || {
        let sent = sent.clone();
        async move { sent.lock().unwrap().first().cloned() }
    })
    .await;
    assert_eq!(answer.recipient, "user-7");
    assert!(answer.text.contains("Minggu"), "{}", answer.text);
    assert!(!answer.conversation_id.is_empty());
    // No second answer arrives for the replay.
    app.stop().await;
    assert_eq!(sent.lock().unwrap().len(), 1);
}
