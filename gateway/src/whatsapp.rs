//! WhatsApp accounts: declared in `sapa.toml` or added with `sapa channel add whatsapp`,
//! stored encrypted on the channel account, loaded at start into the webhook routing table
//! (phone_number_id → tenant account) and the dispatcher's channel registry.

use anyhow::Context as _;
use channels::whatsapp::WhatsappAccount;

use crate::config::{Config, TenantWhatsapp};
use crate::crypto::SecretBox;
use crate::store::Store;

/// One number, resolved to its tenant and account.
#[derive(Debug)]
pub struct WhatsappRoute {
    /// Owning tenant.
    pub tenant_id: String,
    /// Channel account id.
    pub account_id: String,
    /// Locale of new conversations.
    pub locale: String,
    /// Settings and secrets.
    pub account: WhatsappAccount,
}

/// Webhook routing table: phone_number_id → route.
pub type WhatsappAccounts = crate::routing::Routes<WhatsappRoute>;

/// The account settings a tenant's `[whatsapp]` table declares.
pub fn account_from_config(wa: &TenantWhatsapp) -> WhatsappAccount {
    WhatsappAccount {
        phone_number_id: wa.phone_number_id.clone(),
        app_secret: wa.app_secret.expose().to_owned(),
        access_token: wa.access_token.expose().to_owned(),
        verify_token: wa.verify_token.expose().to_owned(),
        api_base_url: wa.api_base_url.clone(),
        api_version: wa.api_version.clone(),
        reengagement_template: Some(wa.reengagement_template.clone()).filter(|t| !t.is_empty()),
        reengagement_language: wa.reengagement_language.clone(),
    }
}

/// Creates or updates the tenant's WhatsApp account with `account`'s settings, sealed with
/// `secrets`; returns the account id.
///
/// # Errors
/// Storage failures, or the number belonging to another tenant.
pub async fn save_account(
    store: &Store,
    secrets: &SecretBox,
    tenant_id: &str,
    account: &WhatsappAccount,
) -> anyhow::Result<String> {
    let sealed = secrets.seal(&serde_json::to_vec(account)?);
    let id = store
        .ensure_channel_account(
            tenant_id,
            "whatsapp",
            &account.phone_number_id,
            "WhatsApp",
            Some(sealed.clone()),
        )
        .await
        .with_context(|| {
            format!(
                "cannot save WhatsApp number {} for tenant {tenant_id}",
                account.phone_number_id
            )
        })?;
    store
        .set_channel_credentials(tenant_id, &id, &sealed)
        .await?;
    Ok(id)
}

/// Saves every `[tenants.<slug>.whatsapp]` of the configuration.
///
/// # Errors
/// Storage failures.
pub async fn seed(config: &Config, store: &Store, secrets: &SecretBox) -> anyhow::Result<()> {
    for (slug, tenant) in &config.tenants {
        if let Some(wa) = &tenant.whatsapp {
            save_account(store, secrets, slug, &account_from_config(wa)).await?;
        }
    }
    Ok(())
}

/// Loads and decrypts every stored WhatsApp account.
///
/// # Errors
/// Storage failures, or credentials sealed with another key (wrong `SAPA_SECRET_KEY`).
pub async fn load(store: &Store, secrets: &SecretBox) -> anyhow::Result<WhatsappAccounts> {
    let mut accounts = WhatsappAccounts::default();
    for loaded in crate::routing::load_accounts::<WhatsappAccount>(
        store,
        secrets,
        "whatsapp",
        "WhatsApp number",
    )
    .await?
    {
        let route = WhatsappRoute {
            locale: loaded.locale,
            tenant_id: loaded.tenant_id,
            account_id: loaded.account_id,
            account: loaded.account,
        };
        accounts.insert(loaded.external_id, route);
    }
    Ok(accounts)
}
