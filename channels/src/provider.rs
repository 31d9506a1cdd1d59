//! The inbound side of a channel: a [`Provider`] verifies and decodes the webhooks of one
//! provider (all of its accounts), and a [`ChannelPlugin`] builds a kind's providers and
//! per-account [`Channel`]s from stored account settings.
//!
//! The gateway drives every channel the same way: `POST /webhooks/{kind}[/{account}]` →
//! [`Provider::verify`] on the raw bytes → [`Provider::decode`] into [`AccountEvents`] keyed by
//! the provider's account key (WhatsApp `phone_number_id`, Telegram bot id) → the gateway maps
//! the key to a tenant account and stores the [`Event`]s. Providers that can be pulled
//! (Telegram long polling) also hand out [`Pull`] handles.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::{Channel, ChannelError};
use crate::model::{ChannelKind, InboundMessage, StatusUpdate};

/// One webhook request as the gateway received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    /// The path segment after `/webhooks/{kind}/`, when the route has one (Telegram: the bot id).
    pub account: Option<&'a str>,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The raw body, exactly as received (signatures are computed over these bytes).
    pub body: &'a [u8],
}

/// The outcome of [`Provider::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// These account keys' credentials authenticate the request; events of other accounts in
    /// the same body must be dropped.
    Accounts(Vec<String>),
    /// Not authentic: answer 401 and store nothing.
    Rejected {
        /// Machine-readable code for the 401 body (`invalid_signature`, `invalid_secret`).
        code: &'static str,
        /// What is wrong, for the 401 body (never echoes a secret).
        message: &'static str,
    },
}

/// Why an authentic body could not be read at all (acknowledged and counted; a retry cannot
/// fix it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// What one body reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Events grouped by the account they belong to, in payload order.
    pub accounts: Vec<AccountEvents>,
    /// Parts that could not be read and were skipped (the rest were kept).
    pub undecodable: usize,
    /// Errors the provider reported about itself (log-safe code and title).
    pub provider_errors: Vec<(i64, String)>,
    /// A pull cursor: the offset to ask for next (Telegram `update_id + 1`).
    pub next_offset: Option<i64>,
}

/// The events of one provider account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEvents {
    /// The provider's account key (WhatsApp `phone_number_id`, Telegram bot id).
    pub account: String,
    /// What happened, in payload order.
    pub events: Vec<Event>,
}

/// One normalized inbound event.
// Almost every event is a message; boxing it would add an allocation per message for no
// memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A customer wrote, tapped, reacted or shared something.
    Message(Inbound),
    /// The customer edited an earlier message: update the stored text, never answer again.
    Edited {
        /// The edited message's provider id, as first received.
        external_id: String,
        /// The new text (or caption).
        text: String,
    },
    /// The customer deleted an earlier message for everyone: mark the stored one deleted and
    /// never answer it.
    Revoked {
        /// The deleted message's provider id, as first received.
        external_id: String,
    },
    /// Delivery progress of a message we sent.
    Status {
        /// The report.
        update: StatusUpdate,
        /// The provider says the message failed because the customer's conversation window
        /// closed (WhatsApp 131047): the gateway sends the account's
        /// [`Channel::reengagement_template`] instead, once.
        window_closed: bool,
    },
    /// Whether the account can still write to a contact (blocked / unblocked, removed from a
    /// group).
    Reachability {
        /// The contact's provider address.
        contact: String,
        /// Whether sends can reach it now.
        reachable: bool,
    },
    /// A contact's provider address changed (Telegram group → supergroup).
    ContactMoved {
        /// The old address.
        from: String,
        /// The new address.
        to: String,
    },
    /// A customer's identifiers changed (WhatsApp: a new phone number, a new business-scoped
    /// user id). The contact keeps its conversations; only its addresses change.
    ContactChanged {
        /// An address the contact is known by now (its phone number or user id).
        from: String,
        /// The new phone number, if it changed.
        phone: Option<String>,
        /// The new business-scoped user id, if the provider sent one.
        user_id: Option<String>,
        /// The new parent business-scoped user id, if the provider sent one.
        parent_user_id: Option<String>,
    },
    /// Something the gateway does not act on (reactions in some providers, polls, …);
    /// acknowledged and counted.
    Ignored {
        /// The provider's name for it.
        kind: String,
    },
}

/// A customer message with the context the gateway needs to store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The normalized message; `from` is the contact's provider address.
    pub message: InboundMessage,
    /// Whether it is a bot command (`/start`): answered at once, without debounce.
    pub command: bool,
    /// The customer's client language (`id`, `en`, `pt-br`, …), when the provider tells.
    pub language: Option<String>,
    /// The customer's own phone number, when they shared it.
    pub shared_phone: Option<String>,
    /// For a [`crate::model::MessageContent::Choice`] whose title the provider did not send:
    /// the index of the choice, among those of the message it replies to, whose title to use.
    pub choice_index: Option<usize>,
    /// A token to hand to [`Channel::acknowledge`] once the event is stored (Telegram's
    /// callback query id: stops the button's spinner).
    pub ack: Option<String>,
    /// The customer's other identifiers on the provider, beside `message.from`.
    pub ids: CustomerIds,
}

/// A customer's identifiers on a provider beside the address messages come from. On WhatsApp
/// a customer who adopted a username may have no phone number, only a business-scoped user
/// id (`US.13491208655302741918`); when both are known the gateway links them to one
/// contact. `message.from` is the phone number when known, else the user id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerIds {
    /// The phone number (WhatsApp `wa_id`), when the provider shared it.
    pub phone: Option<String>,
    /// The business-scoped user id.
    pub user_id: Option<String>,
    /// The parent business-scoped user id (shared by linked business portfolios).
    pub parent_user_id: Option<String>,
    /// The customer's username.
    pub username: Option<String>,
}

impl Inbound {
    /// A message with no extra context.
    pub fn plain(message: InboundMessage) -> Self {
        Self {
            message,
            command: false,
            language: None,
            shared_phone: None,
            choice_index: None,
            ack: None,
            ids: CustomerIds::default(),
        }
    }
}

/// The inbound side of one provider: every account of one channel kind.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// The channel kind; its name is the webhook path segment (`/webhooks/{kind}`).
    fn kind(&self) -> ChannelKind;

    /// Largest webhook body accepted.
    fn max_body_bytes(&self) -> usize;

    /// Answers a `GET` verification handshake (WhatsApp `hub.challenge`); `None` refuses it.
    /// The default has no handshake.
    fn handshake(&self, _query: &[(String, String)]) -> Option<String> {
        None
    }

    /// Checks the request's signature or secret on the raw bytes, in constant time.
    fn verify(&self, request: &WebhookRequest<'_>) -> Verified;

    /// Decodes an authentic body. One unreadable part never drops the others.
    ///
    /// # Errors
    /// [`DecodeError`] when the body as a whole is unreadable.
    fn decode(&self, request: &WebhookRequest<'_>) -> Result<Decoded, DecodeError>;

    /// Work at server start (Telegram: `getMe`, `setWebhook` to `{public_url}/webhooks/…`).
    /// Best effort; the default does nothing.
    async fn start(&self, _public_url: &str) {}

    /// The accounts that receive by pulling (Telegram long polling); the gateway runs one
    /// worker per handle. The default has none.
    fn pulls(&self) -> Vec<Arc<dyn Pull>> {
        Vec::new()
    }
}

/// One account that receives by pulling.
#[async_trait::async_trait]
pub trait Pull: Send + Sync + fmt::Debug {
    /// The account key.
    fn account(&self) -> &str;

    /// Called once before the first pull (Telegram: `deleteWebhook`, `getMe`).
    async fn prepare(&self) {}

    /// Waits up to the account's long-poll timeout for events after `offset`. Each decoded
    /// part carries its [`Decoded::next_offset`]; the gateway stores the offset only after
    /// the part's events are committed.
    ///
    /// # Errors
    /// A provider or network failure; the gateway backs off and retries.
    async fn pull(&self, offset: i64) -> Result<Vec<Decoded>, ChannelError>;

    /// How long a pull may take at most (for the HTTP timeout).
    fn timeout(&self) -> Duration;
}

/// One stored account of a plugin's kind.
#[derive(Debug, Clone)]
pub struct AccountSpec {
    /// The account's provider key (see [`ChannelPlugin::account_key`]).
    pub key: String,
    /// Its settings and secrets, as [`ChannelPlugin::account_key`] accepted them.
    pub settings: serde_json::Value,
}

/// The adapters a plugin built for its stored accounts.
#[derive(Debug)]
pub struct Plugged {
    /// The inbound side for all the accounts.
    pub provider: Arc<dyn Provider>,
    /// The outbound side, one per account key.
    pub channels: Vec<(String, Arc<dyn Channel>)>,
}

/// A channel kind: validates account settings and builds adapters. Registering one is all the
/// gateway needs to serve a new channel.
pub trait ChannelPlugin: Send + Sync + fmt::Debug {
    /// The kind this plugin serves.
    fn kind(&self) -> ChannelKind;

    /// The settings one account takes, in the order `sapa channel add <kind> --help` lists
    /// them. The gateway builds the account's settings object from them (flags, environment
    /// variables for secrets, `[[tenants.<slug>.channels]]` tables); [`Self::account_key`]
    /// validates the result.
    fn settings(&self) -> &'static [Setting];

    /// Validates one account's settings and returns the key its webhooks carry
    /// (WhatsApp `phone_number_id`, Telegram bot id). Missing optional settings take their
    /// defaults.
    ///
    /// # Errors
    /// What is wrong, naming the setting and the fix.
    fn account_key(&self, settings: &serde_json::Value) -> Result<String, String>;

    /// Builds the adapters of every stored account of this kind; outbound calls go through
    /// `http`.
    ///
    /// # Errors
    /// Settings that no longer validate.
    fn build(&self, accounts: Vec<AccountSpec>, http: &reqwest::Client) -> Result<Plugged, String>;
}

/// One setting of a channel account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Key in the account's settings object (`phone_number_id`).
    pub key: &'static str,
    /// Command-line flag, without `--` (`phone-number-id`).
    pub flag: &'static str,
    /// One line of help, with the default when there is one.
    pub help: &'static str,
    /// A secret: when its flag is absent it is read from `SAPA_<KIND>_<KEY>`
    /// (`SAPA_WHATSAPP_APP_SECRET`), so it stays out of shell history; never printed.
    pub secret: bool,
    /// A whole number (stored as a JSON number, not text).
    pub integer: bool,
}

impl Setting {
    /// A text setting.
    pub const fn text(key: &'static str, flag: &'static str, help: &'static str) -> Self {
        Self {
            key,
            flag,
            help,
            secret: false,
            integer: false,
        }
    }

    /// A secret text setting.
    pub const fn secret(key: &'static str, flag: &'static str, help: &'static str) -> Self {
        Self {
            secret: true,
            ..Self::text(key, flag, help)
        }
    }

    /// A whole-number setting.
    pub const fn integer(key: &'static str, flag: &'static str, help: &'static str) -> Self {
        Self {
            integer: true,
            ..Self::text(key, flag, help)
        }
    }
}

/// The plugins this crate provides, one per built-in provider channel (web chat has no
/// provider: the gateway serves it itself).
pub fn built_in() -> Vec<Arc<dyn ChannelPlugin>> {
    vec![
        #[cfg(feature = "whatsapp")]
        Arc::new(crate::whatsapp::provider::WhatsappPlugin),
        #[cfg(feature = "telegram")]
        Arc::new(crate::telegram::provider::TelegramPlugin),
    ]
}
