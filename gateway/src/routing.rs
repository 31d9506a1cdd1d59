//! Provider webhook routing: a provider's account key (WhatsApp phone_number_id, Telegram bot
//! id) to the tenant account it belongs to, built at start from the stored channel accounts.

use std::collections::HashMap;
use std::sync::Arc;

/// Routes of one provider, by the key its webhooks carry.
#[derive(Debug)]
pub struct Routes<R> {
    by_key: HashMap<String, Arc<R>>,
}

impl<R> Default for Routes<R> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
        }
    }
}

impl<R> Routes<R> {
    /// The route of `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<R>> {
        self.by_key.get(key)
    }

    /// All routes.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<R>> {
        self.by_key.values()
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds (or replaces) the route of `key`.
    pub(crate) fn insert(&mut self, key: String, route: R) {
        self.by_key.insert(key, Arc::new(route));
    }
}

/// One stored provider account, decrypted.
#[derive(Debug)]
pub struct LoadedAccount<A> {
    /// Owning tenant.
    pub tenant_id: String,
    /// Channel account id.
    pub account_id: String,
    /// The key its webhooks carry (phone_number_id, bot id).
    pub external_id: String,
    /// The tenant's locale (for new conversations).
    pub locale: String,
    /// Settings and secrets.
    pub account: A,
}

/// Loads and decrypts every stored account of `kind`; `what` names one in errors ("WhatsApp
/// number", "Telegram bot"). Accounts without credentials are skipped with a warning.
///
/// # Errors
/// Storage failures, or credentials sealed with another key (wrong `SAPA_SECRET_KEY`).
pub async fn load_accounts<A: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    secrets: &crate::crypto::SecretBox,
    kind: &str,
    what: &str,
) -> anyhow::Result<Vec<LoadedAccount<A>>> {
    use anyhow::Context as _;
    let locales: HashMap<String, String> = store
        .tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.locale))
        .collect();
    let mut loaded = Vec::new();
    for row in store.channel_accounts_of_kind(kind).await? {
        let Some(sealed) = row.credentials else {
            tracing::warn!(account_id = %row.id, "{what} account without credentials; skipped");
            continue;
        };
        let plain = secrets.open(&sealed).with_context(|| {
            format!(
                "cannot decrypt the credentials of {what} {} (is SAPA_SECRET_KEY the key they were stored with?)",
                row.external_id
            )
        })?;
        let account: A = serde_json::from_slice(&plain)
            .with_context(|| format!("corrupt credentials of {what} {}", row.external_id))?;
        loaded.push(LoadedAccount {
            locale: locales
                .get(&row.tenant_id)
                .cloned()
                .unwrap_or_else(|| "id".to_owned()),
            tenant_id: row.tenant_id,
            account_id: row.id,
            external_id: row.external_id,
            account,
        });
    }
    Ok(loaded)
}
