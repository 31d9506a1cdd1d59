//! The Telegram plugin: one [`TelegramProvider`] for every bot (each bot has its own webhook
//! URL, `/webhooks/telegram/{bot_id}`, with its own secret token), a [`TelegramChannel`] per
//! bot, and a [`Pull`] handle per bot in long-polling mode.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::update::{self, BotIdentity, CustomerMessage, Update};
use super::{TelegramAccount, TelegramChannel, UpdateMode, format};
use crate::channel::{Channel, ChannelError};
use crate::model::{ChannelKind, MessageContent, is_http_url};
use crate::provider::{
    AccountEvents, AccountSpec, ChannelPlugin, DecodeError, Decoded, Event, Inbound, Plugged,
    Provider, Pull, Setting, Verified, WebhookRequest,
};

/// Largest update body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Validates and builds Telegram bots.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelegramPlugin;

/// One bot's settings ([`super::config::TelegramAccount`]).
const SETTINGS: &[Setting] = &[
    Setting::secret(
        "bot_token",
        "bot-token",
        "the token from @BotFather, `<bot id>:<secret>` (required)",
    ),
    Setting::text(
        "mode",
        "mode",
        "`webhook` (Telegram POSTs to /webhooks/telegram/<bot id>) or `polling` (default webhook)",
    ),
    Setting::secret(
        "webhook_secret",
        "webhook-secret",
        "the webhook's secret token, 1-256 of A-Z a-z 0-9 _ - (required in webhook mode)",
    ),
    Setting::text(
        "api_base_url",
        "api-base-url",
        "Bot API base URL (default https://api.telegram.org)",
    ),
    Setting::integer(
        "poll_timeout_s",
        "poll-timeout",
        "getUpdates long-poll timeout in seconds (default 25)",
    ),
    Setting::text(
        "bot_username",
        "bot-username",
        "the bot's username without @ (default: asked with getMe at start)",
    ),
];

impl ChannelPlugin for TelegramPlugin {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn account_key(&self, settings: &serde_json::Value) -> Result<String, String> {
        let (account, bot_id) = parse(settings)?;
        drop(account);
        Ok(bot_id.to_string())
    }

    fn build(&self, accounts: Vec<AccountSpec>, http: &reqwest::Client) -> Result<Plugged, String> {
        let mut bots = HashMap::new();
        let mut channels: Vec<(String, Arc<dyn Channel>)> = Vec::new();
        for spec in accounts {
            let (account, bot_id) = parse(&spec.settings)?;
            let channel = TelegramChannel::new(http.clone(), &account);
            channels.push((spec.key.clone(), Arc::new(channel.clone())));
            let identity = BotIdentity {
                id: bot_id,
                username: account.bot_username.clone(),
            };
            bots.insert(
                spec.key.clone(),
                Arc::new(Bot {
                    key: spec.key,
                    account,
                    channel,
                    identity: RwLock::new(identity),
                }),
            );
        }
        Ok(Plugged {
            provider: Arc::new(TelegramProvider { bots }),
            channels,
        })
    }
}

/// Parses and checks one bot's settings; returns them with the bot id.
fn parse(settings: &serde_json::Value) -> Result<(TelegramAccount, i64), String> {
    let mut account: TelegramAccount = serde_json::from_value(settings.clone())
        .map_err(|e| format!("invalid Telegram settings: {e}"))?;
    let bot_id = account
        .bot_id()
        .ok_or("bot_token must be the BotFather token `<bot id>:<secret>`")?;
    if account.mode == UpdateMode::Webhook
        && !super::config::valid_webhook_secret(&account.webhook_secret)
    {
        return Err(
            "webhook_secret must be 1-256 characters of A-Z a-z 0-9 _ - in webhook mode".to_owned(),
        );
    }
    if !is_http_url(&account.api_base_url) {
        return Err("api_base_url must be an http:// or https:// URL".to_owned());
    }
    if account.poll_timeout_s > 50 {
        return Err("poll_timeout_s must be at most 50 (seconds)".to_owned());
    }
    account.bot_username = account.bot_username.trim_start_matches('@').to_owned();
    Ok((account, bot_id))
}

/// One bot: settings, adapter and identity (the username may be learned with `getMe`).
#[derive(Debug)]
struct Bot {
    key: String,
    account: TelegramAccount,
    channel: TelegramChannel,
    identity: RwLock<BotIdentity>,
}

impl Bot {
    fn identity(&self) -> BotIdentity {
        self.identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks `getMe` for the bot's username when the settings did not give it.
    async fn identify(&self) {
        if !self.identity().username.is_empty() {
            return;
        }
        match self.channel.api().get_me().await {
            Ok(me) => {
                self.identity
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .username = me.username;
            }
            Err(err) => {
                tracing::warn!(error = ?err, "getMe failed; group mentions of the bot will not be recognised");
            }
        }
    }

    fn decoded(&self, updates: Vec<Update>) -> Vec<Decoded> {
        updates
            .into_iter()
            .map(|update| Decoded {
                next_offset: Some(update.update_id + 1),
                accounts: vec![AccountEvents {
                    account: self.key.clone(),
                    events: events(update),
                }],
                ..Decoded::default()
            })
            .collect()
    }
}

/// The inbound side of every configured bot.
#[derive(Debug)]
pub struct TelegramProvider {
    bots: HashMap<String, Arc<Bot>>,
}

#[async_trait::async_trait]
impl Provider for TelegramProvider {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Verified {
        let secret = request
            .headers
            .get(update::SECRET_HEADER)
            .and_then(|v| v.to_str().ok());
        // An unknown bot and a wrong secret look the same to the caller.
        match request.account.and_then(|key| self.bots.get(key)) {
            Some(bot) if update::verify_secret(&bot.account.webhook_secret, secret) => {
                Verified::Accounts(vec![bot.key.clone()])
            }
            _ => Verified::Rejected {
                code: "invalid_secret",
                message: "X-Telegram-Bot-Api-Secret-Token does not match this bot's webhook secret",
            },
        }
    }

    fn decode(&self, request: &WebhookRequest<'_>) -> Result<Decoded, DecodeError> {
        let bot = request
            .account
            .and_then(|key| self.bots.get(key))
            .ok_or_else(|| DecodeError("no such bot".to_owned()))?;
        let update = update::decode(request.body, &bot.identity())
            .map_err(|e| DecodeError(e.to_string()))?;
        Ok(bot.decoded(vec![update]).pop().unwrap_or_default())
    }

    async fn start(&self, public_url: &str) {
        for bot in self.bots.values() {
            if bot.account.mode != UpdateMode::Webhook {
                continue;
            }
            bot.identify().await;
            let bot_id = bot.identity().id;
            if public_url.is_empty() {
                tracing::info!(
                    bot_id,
                    "server.public_url is empty: register the Telegram webhook yourself (or use mode = \"polling\")"
                );
                continue;
            }
            let url = format!(
                "{}/webhooks/telegram/{}",
                public_url.trim_end_matches('/'),
                bot.key
            );
            match bot
                .channel
                .api()
                .set_webhook(&url, &bot.account.webhook_secret)
                .await
            {
                Ok(()) => tracing::info!(bot_id, %url, "Telegram webhook registered"),
                Err(err) => {
                    tracing::warn!(bot_id, error = ?err, "setWebhook failed; Telegram will not deliver updates until it succeeds");
                }
            }
        }
    }

    fn pulls(&self) -> Vec<Arc<dyn Pull>> {
        self.bots
            .values()
            .filter(|bot| bot.account.mode == UpdateMode::Polling)
            .map(|bot| Arc::new(Poller(bot.clone())) as Arc<dyn Pull>)
            .collect()
    }
}

/// Long polling of one bot with `getUpdates`.
#[derive(Debug)]
struct Poller(Arc<Bot>);

#[async_trait::async_trait]
impl Pull for Poller {
    fn account(&self) -> &str {
        &self.0.key
    }

    async fn prepare(&self) {
        self.0.identify().await;
        if let Err(err) = self.0.channel.api().delete_webhook().await {
            tracing::warn!(error = ?err, "deleteWebhook failed; getUpdates may be refused while a webhook is set");
        }
    }

    async fn pull(&self, offset: i64) -> Result<Vec<Decoded>, ChannelError> {
        let bot = &self.0;
        let updates = bot
            .channel
            .api()
            .get_updates(offset, bot.account.poll_timeout_s, &bot.identity())
            .await
            .map_err(super::api::ApiFailure::into_channel_error)?;
        Ok(bot.decoded(updates))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.0.account.poll_timeout_s + 10)
    }
}

/// The normalized events of one update.
fn events(update: Update) -> Vec<Event> {
    use update::Event as Tg;
    let event = match update.event {
        Tg::Message(message) => {
            if !message.addressed {
                Event::Ignored {
                    kind: "not_addressed".to_owned(),
                }
            } else {
                Event::Message(inbound(message, None))
            }
        }
        Tg::Edited {
            external_id, text, ..
        } => Event::Edited { external_id, text },
        Tg::Callback { query_id, message } => Event::Message(inbound(message, Some(query_id))),
        Tg::MemberStatus { chat_id, reachable } => Event::Reachability {
            contact: chat_id,
            reachable,
        },
        Tg::Migrated {
            from_chat_id,
            to_chat_id,
        } => Event::ContactMoved {
            from: from_chat_id,
            to: to_chat_id,
        },
        Tg::Ignored { kind } => Event::Ignored { kind },
    };
    vec![event]
}

fn inbound(cm: CustomerMessage, ack: Option<String>) -> Inbound {
    let mut message = cm.message;
    if cm.group {
        // In groups the sender is one member, not the conversation's customer.
        message.sender_name = None;
    }
    message.from = cm.chat_id;
    let choice_index = match &message.content {
        MessageContent::Choice { id, title, .. } if title.is_empty() => {
            format::choice_reference(id)
        }
        _ => None,
    };
    Inbound {
        message,
        command: cm.command,
        language: cm.language,
        shared_phone: cm.shared_phone,
        choice_index,
        ack,
        ids: crate::provider::CustomerIds::default(),
    }
}
