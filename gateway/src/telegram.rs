//! Telegram bots: declared in `sapa.toml` or added with `sapa channel add telegram`, stored
//! encrypted on the channel account, loaded at start into the webhook routing table
//! (bot id → tenant account) and the dispatcher's channel registry. Updates arrive by webhook
//! (`routes::telegram`) or by a long-polling worker per bot; both go through
//! [`TelegramInbound::handle`] into the inbox (dedupe by account + message id).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use channels::model::MessageContent;
use channels::telegram::api::ApiFailure;
use channels::telegram::update::{BotIdentity, CustomerMessage, Event, Update};
use channels::telegram::{TelegramAccount, TelegramChannel, UpdateMode, format};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, TenantTelegram};
use crate::crypto::SecretBox;
use crate::store::{ContactRef, InboundItem, InboundTarget, Store, StoredContent, now_ms};
use crate::telemetry;
use crate::workers::ingress::Ingress;

/// One bot, resolved to its tenant and account.
#[derive(Debug)]
pub struct TelegramRoute {
    /// Owning tenant.
    pub tenant_id: String,
    /// Channel account id.
    pub account_id: String,
    /// Locale of new conversations when the customer's client language is unknown.
    pub locale: String,
    /// Settings and secrets.
    pub account: TelegramAccount,
    /// The adapter (shared with the dispatcher registry).
    pub channel: TelegramChannel,
    bot: RwLock<BotIdentity>,
}

impl TelegramRoute {
    /// Who the bot is (id from the token; username from config or `getMe`).
    pub fn bot(&self) -> BotIdentity {
        self.bot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_username(&self, username: String) {
        self.bot
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .username = username;
    }
}

/// Webhook routing table: bot id (the path segment of `/webhooks/telegram/{bot_id}`) → route.
pub type TelegramAccounts = crate::routing::Routes<TelegramRoute>;

/// The account settings a tenant's `[telegram]` table declares.
pub fn account_from_config(tg: &TenantTelegram) -> TelegramAccount {
    TelegramAccount {
        bot_token: tg.bot_token.expose().to_owned(),
        webhook_secret: tg.webhook_secret.expose().to_owned(),
        api_base_url: tg.api_base_url.clone(),
        mode: UpdateMode::parse(&tg.mode).unwrap_or(UpdateMode::Webhook),
        poll_timeout_s: tg.poll_timeout.as_secs(),
        bot_username: tg.bot_username.trim_start_matches('@').to_owned(),
    }
}

/// Creates or updates the tenant's Telegram account with `account`'s settings, sealed with
/// `secrets`; returns the account id. The account's external id is the bot id.
///
/// # Errors
/// A malformed token, storage failures, or the bot belonging to another tenant.
pub async fn save_account(
    store: &Store,
    secrets: &SecretBox,
    tenant_id: &str,
    account: &TelegramAccount,
) -> anyhow::Result<String> {
    let bot_id = account
        .bot_id()
        .context("the Telegram bot token must look like `<bot id>:<secret>`")?
        .to_string();
    let sealed = secrets.seal(&serde_json::to_vec(account)?);
    let id = store
        .ensure_channel_account(
            tenant_id,
            "telegram",
            &bot_id,
            "Telegram",
            Some(sealed.clone()),
        )
        .await
        .with_context(|| format!("cannot save Telegram bot {bot_id} for tenant {tenant_id}"))?;
    store
        .set_channel_credentials(tenant_id, &id, &sealed)
        .await?;
    Ok(id)
}

/// Saves every `[tenants.<slug>.telegram]` of the configuration.
///
/// # Errors
/// Storage failures.
pub async fn seed(config: &Config, store: &Store, secrets: &SecretBox) -> anyhow::Result<()> {
    for (slug, tenant) in &config.tenants {
        if let Some(tg) = &tenant.telegram {
            save_account(store, secrets, slug, &account_from_config(tg)).await?;
        }
    }
    Ok(())
}

/// Loads and decrypts every stored Telegram bot; adapters send through `http`.
///
/// # Errors
/// Storage failures, or credentials sealed with another key (wrong `SAPA_SECRET_KEY`).
pub async fn load(
    store: &Store,
    secrets: &SecretBox,
    http: &reqwest::Client,
) -> anyhow::Result<TelegramAccounts> {
    let mut accounts = TelegramAccounts::default();
    for loaded in
        crate::routing::load_accounts::<TelegramAccount>(store, secrets, "telegram", "Telegram bot")
            .await?
    {
        let account = loaded.account;
        let bot = BotIdentity {
            id: account.bot_id().unwrap_or_default(),
            username: account.bot_username.clone(),
        };
        let route = TelegramRoute {
            locale: loaded.locale,
            tenant_id: loaded.tenant_id,
            account_id: loaded.account_id,
            channel: TelegramChannel::new(http.clone(), &account),
            account,
            bot: RwLock::new(bot),
        };
        accounts.insert(loaded.external_id, route);
    }
    Ok(accounts)
}

/// The update could not be stored; the sender must retry (webhook: 503; polling: the offset
/// does not advance).
#[derive(Debug, thiserror::Error)]
#[error("telegram update not stored; retry")]
pub struct Unavailable;

/// Turns decoded updates into inbox items and contact changes.
#[derive(Debug, Clone)]
pub struct TelegramInbound {
    /// Storage.
    pub store: Store,
    /// Inbound group commit.
    pub ingress: Ingress,
}

fn count(outcome: &'static str) {
    metrics::counter!(telemetry::TELEGRAM_UPDATES_TOTAL, "outcome" => outcome).increment(1);
}

/// The conversation locale for a Telegram client language, else the tenant's.
fn locale_for(language: Option<&str>, fallback: &str) -> String {
    match language.map(|l| l.to_ascii_lowercase()) {
        Some(l) if l.starts_with("en") => "en".to_owned(),
        Some(l) if l.starts_with("id") || l.starts_with("in") => "id".to_owned(),
        _ => fallback.to_owned(),
    }
}

impl TelegramInbound {
    /// Handles one update. Returns only after what must be stored is committed.
    ///
    /// # Errors
    /// [`Unavailable`] when storage failed; nothing was acknowledged.
    pub async fn handle(&self, route: &TelegramRoute, update: Update) -> Result<(), Unavailable> {
        let store_err = |err: crate::store::StoreError| {
            tracing::warn!(error = %err, "storing a telegram update failed");
            count("unavailable");
            Unavailable
        };
        match update.event {
            Event::Message(message) => {
                if !message.addressed {
                    count("not_addressed");
                    return Ok(());
                }
                let phone = message.shared_phone.clone();
                let chat = message.chat_id.clone();
                self.accept(route, message).await?;
                if let Some(phone) = phone {
                    self.store
                        .set_contact_phone(&route.tenant_id, &route.account_id, &chat, &phone)
                        .await
                        .map_err(store_err)?;
                }
            }
            Event::Edited {
                external_id, text, ..
            } => {
                let known = self
                    .store
                    .edit_inbound_text(&route.tenant_id, &route.account_id, &external_id, &text)
                    .await
                    .map_err(store_err)?;
                count("edited");
                if !known {
                    tracing::debug!("edit of a telegram message we never stored; ignored");
                }
            }
            Event::Callback {
                query_id,
                mut message,
            } => {
                // Stop the button's spinner whatever happens next.
                let channel = route.channel.clone();
                tokio::spawn(async move {
                    if let Err(err) = channel.api().answer_callback_query(&query_id).await {
                        tracing::debug!(error = ?err, "answerCallbackQuery failed");
                    }
                });
                if let MessageContent::Choice { id, title, .. } = &mut message.message.content
                    && title.is_empty()
                    && let (Some(index), Some(sent)) =
                        (format::choice_reference(id), &message.message.reply_to)
                    && let Some(choice) = self
                        .store
                        .sent_choice(&route.tenant_id, &route.account_id, sent, index)
                        .await
                        .map_err(store_err)?
                {
                    *title = choice;
                }
                self.accept(route, message).await?;
            }
            Event::MemberStatus { chat_id, reachable } => {
                self.store
                    .set_contact_reachable(&route.tenant_id, &route.account_id, &chat_id, reachable)
                    .await
                    .map_err(store_err)?;
                count(if reachable { "unblocked" } else { "blocked" });
            }
            Event::Migrated {
                from_chat_id,
                to_chat_id,
            } => {
                route.channel.chat_migrated(&from_chat_id, &to_chat_id);
                self.store
                    .move_contact(
                        &route.tenant_id,
                        &route.account_id,
                        &from_chat_id,
                        &to_chat_id,
                    )
                    .await
                    .map_err(store_err)?;
                count("migrated");
            }
            Event::Ignored { kind } => {
                tracing::debug!(kind = %kind, "telegram update ignored");
                count("ignored");
            }
        }
        Ok(())
    }

    async fn accept(
        &self,
        route: &TelegramRoute,
        message: CustomerMessage,
    ) -> Result<(), Unavailable> {
        let item = inbound_item(route, message);
        match self.ingress.accept(item).await {
            Ok(_) => {
                count("accepted");
                Ok(())
            }
            Err(err) => {
                tracing::warn!(error = %err, "telegram message not stored");
                count("unavailable");
                Err(Unavailable)
            }
        }
    }
}

fn inbound_item(route: &TelegramRoute, cm: CustomerMessage) -> InboundItem {
    let message = cm.message;
    let content = StoredContent::of(&message.content);
    let kind = if cm.command && content.answer {
        "command"
    } else {
        content.kind
    };
    InboundItem {
        tenant_id: route.tenant_id.clone(),
        channel_account_id: route.account_id.clone(),
        target: InboundTarget::Contact(ContactRef {
            external_id: cm.chat_id,
            display_name: if cm.group { None } else { message.sender_name },
            locale: locale_for(cm.language.as_deref(), &route.locale),
        }),
        external_id: message.external_id,
        text: content.text,
        kind,
        answer: content.answer,
        content_kind: content.content_kind,
        media: content.media,
        received_at_ms: now_ms(),
        channel_kind: "telegram",
    }
}

/// Starts what each bot needs at start-up: `getMe` when the username is unknown, then
/// `setWebhook` (webhook mode, when `public_url` is set) or a long-polling worker.
pub fn start(
    accounts: &Arc<TelegramAccounts>,
    inbound: &TelegramInbound,
    public_url: &str,
    tracker: &TaskTracker,
    token: &CancellationToken,
) {
    for route in accounts.routes() {
        let route = route.clone();
        match route.account.mode {
            UpdateMode::Polling => {
                tracker.spawn(poll(route, inbound.clone(), token.clone()));
            }
            UpdateMode::Webhook => {
                let url = (!public_url.is_empty()).then(|| {
                    format!(
                        "{}/webhooks/telegram/{}",
                        public_url.trim_end_matches('/'),
                        route.bot().id
                    )
                });
                tokio::spawn(async move {
                    identify(&route).await;
                    let Some(url) = url else {
                        tracing::info!(
                            bot_id = route.bot().id,
                            "server.public_url is empty: register the Telegram webhook yourself (or use mode = \"polling\")"
                        );
                        return;
                    };
                    match route
                        .channel
                        .api()
                        .set_webhook(&url, &route.account.webhook_secret)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(bot_id = route.bot().id, %url, "Telegram webhook registered")
                        }
                        Err(err) => {
                            tracing::warn!(bot_id = route.bot().id, error = ?err, "setWebhook failed; Telegram will not deliver updates until it succeeds")
                        }
                    }
                });
            }
        }
    }
}

/// Asks `getMe` for the bot's username when the config did not give it.
async fn identify(route: &TelegramRoute) {
    if !route.bot().username.is_empty() {
        return;
    }
    match route.channel.api().get_me().await {
        Ok(me) => route.set_username(me.username),
        Err(err) => {
            tracing::warn!(error = ?err, "getMe failed; group mentions of the bot will not be recognised");
        }
    }
}

/// The long-polling worker of one bot: `getUpdates` from the stored offset, hand each update
/// to the inbox, then store the next offset. A restart resumes after the last handled update
/// (and the inbox dedupe covers a replay).
async fn poll(route: Arc<TelegramRoute>, inbound: TelegramInbound, token: CancellationToken) {
    identify(&route).await;
    let api = route.channel.api().clone();
    if let Err(err) = api.delete_webhook().await {
        tracing::warn!(error = ?err, "deleteWebhook failed; getUpdates may be refused while a webhook is set");
    }
    let mut offset = loop {
        match inbound.store.poll_offset(&route.account_id).await {
            Ok(offset) => break offset,
            Err(err) => {
                tracing::warn!(error = %err, "reading the Telegram poll offset failed; retrying");
                if sleep_or_stop(&token, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    let timeout_s = route.account.poll_timeout_s;
    let mut backoff = Duration::from_millis(500);
    tracing::info!(bot_id = route.bot().id, "Telegram long polling started");
    loop {
        let bot = route.bot();
        let result = tokio::select! {
            r = api.get_updates(offset, timeout_s, &bot) => r,
            () = token.cancelled() => break,
        };
        match result {
            Ok(updates) => {
                backoff = Duration::from_millis(500);
                let before = offset;
                let mut failed = false;
                for update in updates {
                    let next = update.update_id + 1;
                    if update.update_id < offset {
                        continue;
                    }
                    if inbound.handle(&route, update).await.is_err() {
                        failed = true;
                        break;
                    }
                    offset = next;
                }
                if offset != before
                    && let Err(err) = inbound
                        .store
                        .set_poll_offset(&route.account_id, offset)
                        .await
                {
                    tracing::warn!(error = %err, "storing the Telegram poll offset failed");
                }
                if failed && sleep_or_stop(&token, Duration::from_secs(1)).await {
                    break;
                }
            }
            Err(err) => {
                let wait = match &err {
                    ApiFailure::Api {
                        retry_after: Some(s),
                        ..
                    } => Duration::from_secs(*s),
                    _ => {
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                tracing::warn!(error = ?err, ?wait, "getUpdates failed; retrying");
                if sleep_or_stop(&token, wait).await {
                    break;
                }
            }
        }
    }
    tracing::info!(bot_id = route.bot().id, "Telegram long polling stopped");
}

/// Sleeps `wait`; returns true when `token` was cancelled first.
async fn sleep_or_stop(token: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = token.cancelled() => true,
    }
}
