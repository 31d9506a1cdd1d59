//! The WhatsApp plugin: one [`WhatsappProvider`] for every number (Meta posts all numbers of
//! an app to one URL, `/webhooks/whatsapp`, and each change names its `phone_number_id`), and a
//! [`WhatsappChannel`] per number.

use std::collections::HashMap;
use std::sync::Arc;

use super::{WhatsappAccount, WhatsappChannel, webhook};
use crate::channel::{Channel, short_reason};
use crate::model::{ChannelKind, is_http_url};
use crate::provider::{
    AccountEvents, AccountSpec, ChannelPlugin, DecodeError, Decoded, Plugged, Provider, Setting,
    Verified, WebhookRequest,
};

/// Largest webhook body Meta sends (~3 MB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Validates and builds WhatsApp numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhatsappPlugin;

/// One WhatsApp number's settings ([`super::config::WhatsappAccount`]).
const SETTINGS: &[Setting] = &[
    Setting::text(
        "phone_number_id",
        "phone-number-id",
        "Graph API phone number id (required)",
    ),
    Setting::secret(
        "app_secret",
        "app-secret",
        "app secret: the webhook signature key (required)",
    ),
    Setting::secret(
        "access_token",
        "access-token",
        "access token used to send (required)",
    ),
    Setting::secret(
        "verify_token",
        "verify-token",
        "webhook verify token (required)",
    ),
    Setting::text(
        "api_base_url",
        "api-base-url",
        "Graph API base URL (default https://graph.facebook.com)",
    ),
    Setting::text(
        "api_version",
        "api-version",
        "Graph API version (default v23.0)",
    ),
    Setting::text(
        "reengagement_template",
        "reengagement-template",
        "template sent when the 24-hour window is closed (default: none)",
    ),
    Setting::text(
        "reengagement_language",
        "reengagement-language",
        "language code of the re-engagement template (default id)",
    ),
    Setting::text(
        "otp_template",
        "otp-template",
        "approved authentication template (copy-code button) for one-time codes (default: none)",
    ),
    Setting::text(
        "otp_template_language",
        "otp-template-language",
        "language code of the one-time code template (default id)",
    ),
    Setting::integer(
        "messages_per_second",
        "messages-per-second",
        "the number's throughput, 1-1000 (default 80; coexistence numbers: 20)",
    ),
    Setting::text(
        "pair_interval",
        "pair-interval",
        "one more message to the same customer per this interval (default 6s)",
    ),
    Setting::integer(
        "pair_burst",
        "pair-burst",
        "messages to one customer that may go back to back (default 3)",
    ),
];

impl ChannelPlugin for WhatsappPlugin {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Whatsapp
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn account_key(&self, settings: &serde_json::Value) -> Result<String, String> {
        let account = parse(settings)?;
        Ok(account.phone_number_id)
    }

    fn build(&self, accounts: Vec<AccountSpec>, http: &reqwest::Client) -> Result<Plugged, String> {
        let mut numbers = HashMap::new();
        let mut channels: Vec<(String, Arc<dyn Channel>)> = Vec::new();
        for spec in accounts {
            let account = parse(&spec.settings)?;
            channels.push((
                spec.key.clone(),
                Arc::new(WhatsappChannel::new(http.clone(), &account)),
            ));
            numbers.insert(spec.key, account);
        }
        Ok(Plugged {
            provider: Arc::new(WhatsappProvider { numbers }),
            channels,
        })
    }
}

/// Parses and checks one number's settings.
fn parse(settings: &serde_json::Value) -> Result<WhatsappAccount, String> {
    let account: WhatsappAccount = serde_json::from_value(settings.clone())
        .map_err(|e| format!("invalid WhatsApp settings: {e}"))?;
    if account.phone_number_id.is_empty()
        || !account.phone_number_id.chars().all(|c| c.is_ascii_digit())
    {
        return Err("phone_number_id must be the numeric Graph API phone number id".to_owned());
    }
    for (name, value) in [
        ("app_secret", &account.app_secret),
        ("access_token", &account.access_token),
        ("verify_token", &account.verify_token),
    ] {
        if value.trim().is_empty() {
            return Err(format!("{name} must not be empty"));
        }
    }
    if !is_http_url(&account.api_base_url) {
        return Err("api_base_url must be an http:// or https:// URL".to_owned());
    }
    account.check_pacing()?;
    Ok(account)
}

/// The inbound side of every configured WhatsApp number.
#[derive(Debug)]
pub struct WhatsappProvider {
    numbers: HashMap<String, WhatsappAccount>,
}

impl Provider for WhatsappProvider {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Whatsapp
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }

    fn handshake(&self, query: &[(String, String)]) -> Option<String> {
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (mode, token, challenge) = (
            param("hub.mode"),
            param("hub.verify_token"),
            param("hub.challenge"),
        );
        // Check every number (no early exit) so timing does not reveal which token matched.
        let mut answer = None;
        for account in self.numbers.values() {
            if let Some(c) =
                webhook::verify_challenge(mode, token, challenge, &account.verify_token)
            {
                answer = Some(c.to_owned());
            }
        }
        answer
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Verified {
        let signature = request
            .headers
            .get(webhook::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        // Numbers of one Meta app share a secret, so each distinct secret is checked once.
        let mut checked: HashMap<&str, bool> = HashMap::new();
        for account in self.numbers.values() {
            let secret = account.app_secret.as_str();
            if !checked.contains_key(secret) {
                let ok = webhook::verify_signature(secret.as_bytes(), request.body, signature);
                checked.insert(secret, ok);
            }
        }
        let signed: Vec<String> = self
            .numbers
            .iter()
            .filter(|(_, a)| checked.get(a.app_secret.as_str()).copied().unwrap_or(false))
            .map(|(key, _)| key.clone())
            .collect();
        if signed.is_empty() {
            Verified::Rejected {
                code: "invalid_signature",
                message: "X-Hub-Signature-256 does not match the body",
            }
        } else {
            Verified::Accounts(signed)
        }
    }

    fn decode(&self, request: &WebhookRequest<'_>) -> Result<Decoded, DecodeError> {
        let delivery = webhook::decode(request.body).map_err(|e| DecodeError(e.to_string()))?;
        let mut decoded = Decoded::default();
        for value in delivery.values {
            decoded.undecodable += value.undecodable;
            decoded.provider_errors.extend(
                value
                    .errors
                    .into_iter()
                    .map(|e| (e.code, short_reason(&e.title))),
            );
            if value.phone_number_id.is_empty() {
                continue;
            }
            decoded.accounts.push(AccountEvents {
                account: value.phone_number_id,
                events: value.events,
            });
        }
        Ok(decoded)
    }
}
