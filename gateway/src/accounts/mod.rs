//! Channel accounts: every provider account of every tenant (WhatsApp numbers, Telegram bots,
//! and any kind a [`ChannelPlugin`] adds), whatever its kind.
//!
//! An account is stored as one `channel_accounts` row whose credentials are an
//! [`AccountConfig`] (`{"kind": "whatsapp", …settings}`) sealed with the server key. Accounts
//! come from `[tenants.<slug>.<kind>]` in `sapa.toml` ([`seed`]) or `sapa channel add <kind>`
//! ([`save`]). At start [`load`] decrypts them, lets each kind's plugin build its
//! [`Provider`] and [`Channel`]s, and returns the routing table the webhook router and the
//! dispatcher use.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use channels::provider::{AccountSpec, Provider};
use channels::{Channel, ChannelKind, ChannelPlugin};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::crypto::{Sealing, SecretBox};
use crate::store::Store;

/// One account's stored settings, tagged with its kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountConfig {
    /// Which plugin reads the settings.
    pub kind: ChannelKind,
    /// The plugin's settings and secrets.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// The channel plugins this server knows: the built-in ones plus any registered by the
/// embedding program (tests register their own through `startup::Overrides`).
#[derive(Debug, Clone)]
pub struct Plugins(Vec<Arc<dyn ChannelPlugin>>);

impl Default for Plugins {
    fn default() -> Self {
        Self(channels::provider::built_in())
    }
}

impl Plugins {
    /// Adds (or replaces) the plugin of its kind.
    pub fn register(&mut self, plugin: Arc<dyn ChannelPlugin>) {
        self.0.retain(|p| p.kind() != plugin.kind());
        self.0.push(plugin);
    }

    /// The plugin of `kind`.
    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn ChannelPlugin>> {
        self.0.iter().find(|p| p.kind() == kind)
    }

    /// Every plugin.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ChannelPlugin>> {
        self.0.iter()
    }
}

/// One provider account, resolved to its tenant.
#[derive(Debug)]
pub struct Route {
    /// Owning tenant.
    pub tenant_id: String,
    /// Channel account id.
    pub account_id: String,
    /// The channel kind.
    pub kind: ChannelKind,
    /// The provider's key for the account (phone_number_id, bot id).
    pub key: String,
    /// The tenant's locale, for new conversations.
    pub locale: String,
    /// The account's outbound adapter.
    pub channel: Arc<dyn Channel>,
}

/// Every loaded account: providers by kind, and routes by provider key and by account id.
#[derive(Debug, Default)]
pub struct Accounts {
    providers: HashMap<ChannelKind, Arc<dyn Provider>>,
    by_key: HashMap<(ChannelKind, String), Arc<Route>>,
    by_id: HashMap<String, Arc<Route>>,
}

impl Accounts {
    /// The provider whose webhook path segment is `name` (`whatsapp`, `telegram`, …).
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        let kind: ChannelKind = name.parse().ok()?;
        self.providers.get(&kind)
    }

    /// Every provider.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.values()
    }

    /// The account of `kind` with provider key `key`.
    pub fn route(&self, kind: ChannelKind, key: &str) -> Option<&Arc<Route>> {
        self.by_key.get(&(kind, key.to_owned()))
    }

    /// The account with id `account_id`.
    pub fn by_account_id(&self, account_id: &str) -> Option<&Arc<Route>> {
        self.by_id.get(account_id)
    }

    /// Every account.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_id.values()
    }
}

/// Validates `settings` with the plugin of `kind`, then creates or updates the tenant's
/// account, sealed with `secrets`. Returns the account id and its provider key.
///
/// # Errors
/// Invalid settings (naming the setting to fix), an unknown kind, storage failures, or the
/// provider account belonging to another tenant.
pub async fn save(
    store: &Store,
    secrets: &SecretBox,
    plugins: &Plugins,
    tenant_id: &str,
    kind: ChannelKind,
    settings: serde_json::Value,
) -> anyhow::Result<(String, String)> {
    let plugin = plugins
        .get(kind)
        .with_context(|| format!("no channel plugin for `{kind}`"))?;
    let key = plugin
        .account_key(&settings)
        .map_err(|why| anyhow::anyhow!("{kind} account of tenant {tenant_id}: {why}"))?;
    let serde_json::Value::Object(settings) = settings else {
        anyhow::bail!("{kind} account settings must be a table");
    };
    let sealed = secrets.seal_for(
        &serde_json::to_vec(&AccountConfig { kind, settings })?,
        &sealing_owner(tenant_id, kind, &key),
    );
    let id = store
        .ensure_channel_account(
            tenant_id,
            kind,
            &key,
            display_name(kind),
            Some(sealed.clone()),
        )
        .await
        .with_context(|| format!("cannot save {kind} account {key} for tenant {tenant_id}"))?;
    store
        .set_channel_credentials(tenant_id, &id, &sealed)
        .await?;
    Ok((id, key))
}

/// The associated data credentials are sealed with: the row's tenant, kind and provider key
/// (unique per row), so sealed credentials copied into another row do not open.
pub fn sealing_owner(tenant_id: &str, kind: ChannelKind, key: &str) -> Vec<u8> {
    format!("channel_account\0{tenant_id}\0{}\0{key}", kind.as_str()).into_bytes()
}

fn display_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Whatsapp => "WhatsApp",
        ChannelKind::Telegram => "Telegram",
        ChannelKind::Webchat => "Web chat",
        ChannelKind::Custom(name) => name,
    }
}

/// Saves every channel table of the configuration's tenants.
///
/// # Errors
/// Invalid settings or storage failures.
pub async fn seed(
    config: &Config,
    store: &Store,
    secrets: &SecretBox,
    plugins: &Plugins,
) -> anyhow::Result<()> {
    for (slug, tenant) in &config.tenants {
        let accounts = tenant
            .channel_settings()
            .map_err(|why| anyhow::anyhow!("[tenants.{slug}] {why}"))?;
        for (kind, settings) in accounts {
            save(store, secrets, plugins, slug, kind, settings).await?;
        }
    }
    Ok(())
}

/// Loads and decrypts every stored account of every plugin's kind and builds the adapters;
/// outbound calls go through `http`. Accounts without credentials are skipped with a warning.
///
/// # Errors
/// Storage failures, credentials sealed with another key (wrong `SAPA_SECRET_KEY`), or stored
/// settings the plugin no longer accepts.
pub async fn load(
    store: &Store,
    secrets: &SecretBox,
    plugins: &Plugins,
    http: &reqwest::Client,
) -> anyhow::Result<Accounts> {
    let locales: HashMap<String, String> = store
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.locale))
        .collect();
    let mut accounts = Accounts::default();
    for plugin in plugins.iter() {
        let kind = plugin.kind();
        let mut specs = Vec::new();
        let mut rows = Vec::new();
        for row in store.channel_accounts_of_kind(kind).await? {
            let Some(sealed) = &row.credentials else {
                tracing::warn!(account_id = %row.id, %kind, "account without credentials; skipped");
                continue;
            };
            let owner = sealing_owner(&row.tenant_id, kind, &row.external_id);
            let (plain, sealing) = secrets.open_for(sealed, &owner).with_context(|| {
                format!(
                    "cannot decrypt the credentials of {kind} account {} (is SAPA_SECRET_KEY the key they were stored with, and were they stored for this account?)",
                    row.external_id
                )
            })?;
            if sealing == Sealing::Legacy {
                // Sealed before credentials were bound to their row: bind them now.
                store
                    .set_channel_credentials(
                        &row.tenant_id,
                        &row.id,
                        &secrets.seal_for(&plain, &owner),
                    )
                    .await?;
            }
            let mut settings: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&plain).with_context(|| {
                    format!("corrupt credentials of {kind} account {}", row.external_id)
                })?;
            // Rows saved before accounts were tagged carry no `kind`; the row's kind is the tag.
            settings.remove("kind");
            specs.push(AccountSpec {
                key: row.external_id.clone(),
                settings: serde_json::Value::Object(settings),
            });
            rows.push(row);
        }
        let plugged = plugin
            .build(specs, http)
            .map_err(|why| anyhow::anyhow!("stored {kind} account: {why}"))?;
        let mut channels: HashMap<String, Arc<dyn Channel>> =
            plugged.channels.into_iter().collect();
        for row in rows {
            let Some(channel) = channels.remove(&row.external_id) else {
                continue;
            };
            let route = Arc::new(Route {
                locale: locales
                    .get(&row.tenant_id)
                    .cloned()
                    .unwrap_or_else(|| "id".to_owned()),
                tenant_id: row.tenant_id,
                account_id: row.id,
                kind,
                key: row.external_id,
                channel,
            });
            accounts
                .by_key
                .insert((kind, route.key.clone()), route.clone());
            accounts.by_id.insert(route.account_id.clone(), route);
        }
        accounts.providers.insert(kind, plugged.provider);
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::DatabaseTarget;

    fn telegram(token: &str) -> serde_json::Value {
        serde_json::json!({ "bot_token": token, "mode": "polling" })
    }

    #[tokio::test]
    async fn credentials_copied_into_another_row_do_not_open_and_legacy_ones_are_resealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseTarget::Sqlite(dir.path().join("t.db")), 2)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let secrets = SecretBox::new(&[9u8; 32]);
        let plugins = Plugins::default();
        let http = reqwest::Client::new();
        for tenant in ["a", "b"] {
            store.upsert_tenant(tenant, tenant, "id").await.unwrap();
        }
        let (id_a, _) = save(
            &store,
            &secrets,
            &plugins,
            "a",
            ChannelKind::Telegram,
            telegram("1:aaa"),
        )
        .await
        .unwrap();
        let (id_b, _) = save(
            &store,
            &secrets,
            &plugins,
            "b",
            ChannelKind::Telegram,
            telegram("2:bbb"),
        )
        .await
        .unwrap();
        assert_eq!(
            load(&store, &secrets, &plugins, &http)
                .await
                .unwrap()
                .routes()
                .count(),
            2
        );

        // A v1 value (no associated data), as stored before: still opens, and is re-sealed.
        let legacy = secrets.seal(&serde_json::to_vec(&telegram("2:bbb")).unwrap());
        store
            .set_channel_credentials("b", &id_b, &legacy)
            .await
            .unwrap();
        assert_eq!(
            load(&store, &secrets, &plugins, &http)
                .await
                .unwrap()
                .routes()
                .count(),
            2
        );
        let resealed = store
            .channel_credentials("b", &id_b)
            .await
            .unwrap()
            .unwrap();
        assert!(resealed.starts_with(b"sapa:v2:"), "re-sealed as v2");

        // Tenant a's sealed credentials copied into tenant b's row fail to open.
        let stolen = store
            .channel_credentials("a", &id_a)
            .await
            .unwrap()
            .unwrap();
        store
            .set_channel_credentials("b", &id_b, &stolen)
            .await
            .unwrap();
        let err = load(&store, &secrets, &plugins, &http).await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot decrypt"), "{err:#}");
        store.close().await;
    }
}
