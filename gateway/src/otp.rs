//! One-time codes: issue a code to a customer over WhatsApp (authentication template) or
//! Telegram (a text from the tenant's bot), and check it.
//!
//! The rules (NIST SP 800-63B, OWASP ASVS 6.5, the OWASP MFA cheat sheet):
//! - 6 digits from the thread-local CSPRNG (ChaCha, seeded from the OS);
//! - stored only as an HMAC-SHA256 under a key derived from the server key, bound to the tenant
//!   and the challenge, compared in constant time;
//! - valid `otp.ttl` (5 minutes by default, never more than 10);
//! - single use: of concurrent checks with the right code exactly one succeeds;
//! - locked after `otp.max_attempts` (5) wrong codes;
//! - a new code for the same recipient and purpose invalidates the older one;
//! - at most `otp.max_sends_per_recipient` (3) codes per `otp.recipient_window` (10 minutes),
//!   none within `otp.resend_cooldown` (60 s) of the previous one, and at most
//!   `otp.max_sends_per_tenant_per_hour` per tenant;
//! - never written to a log, a metric, the messages table or an API response: the outbox row
//!   holds it sealed (AES-GCM, bound to the challenge) until its send is final, and the
//!   dispatcher opens it only to build the provider request.
//!
//! Codes go through the outbox (pacing, retries), ahead of ordinary answers. With channel
//! `auto`, a failed WhatsApp send (an error, or a `failed` status) falls back to Telegram when
//! the customer is known there.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use channels::ChannelKind;
use channels::model::{Author, CODE_PLACEHOLDER, CodeDelivery, OutboundMessage, Template};
use flows::Locale;
use rand::Rng;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::accounts::{Accounts, Route};
use crate::config::OtpConfig;
use crate::crypto::SecretBox;
use crate::store::{
    NewOtpChallenge, OtpChallenge, OtpCheck, OtpIssue, OtpLimits, OtpRefusal, OtpSend, Store,
    StoreError, now_ms,
};

/// Digits in a code.
pub const CODE_DIGITS: usize = 6;

/// Who receives a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A phone number in E.164 (`+6281234567890`).
    Phone(String),
    /// A WhatsApp business-scoped user id (a customer known by username only).
    WhatsappUser(String),
    /// A Telegram chat that has written to the tenant's bot.
    TelegramChat(i64),
}

impl Recipient {
    /// A phone number, checked: `+` then 8–15 digits (E.164), spaces and dashes ignored.
    ///
    /// # Errors
    /// What to fix.
    pub fn phone(text: &str) -> Result<Self, OtpError> {
        let compact: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or_else(|| {
            OtpError::Invalid(
                "`to` must be a phone number in international format with its `+` and country code, e.g. +6281234567890".to_owned(),
            )
        })?;
        if !(8..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(OtpError::Invalid(
                "`to` must be `+` then 8-15 digits starting with the country code, e.g. +6281234567890".to_owned(),
            ));
        }
        Ok(Self::Phone(format!("+{digits}")))
    }

    /// The key limits and supersession are counted by.
    pub fn key(&self) -> String {
        match self {
            Self::Phone(phone) => phone.clone(),
            Self::WhatsappUser(id) => format!("wa:{id}"),
            Self::TelegramChat(chat) => format!("tg:{chat}"),
        }
    }
}

/// Which channel to send on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelChoice {
    /// WhatsApp only.
    Whatsapp,
    /// Telegram only.
    Telegram,
    /// WhatsApp, then Telegram when the customer is known there.
    #[default]
    Auto,
}

impl ChannelChoice {
    /// `whatsapp`, `telegram` or `auto`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "whatsapp" => Some(Self::Whatsapp),
            "telegram" => Some(Self::Telegram),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// A request for a code.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// Who gets it.
    pub to: Recipient,
    /// On which channel.
    pub channel: ChannelChoice,
    /// What it is for (`login` by default); a new code supersedes older ones of the same
    /// purpose.
    pub purpose: String,
    /// The message's language; the tenant's by default.
    pub locale: Option<Locale>,
    /// The same key returns the same challenge instead of sending again.
    pub idempotency_key: Option<String>,
}

/// A challenge as the API shows it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The challenge.
    pub challenge: OtpChallenge,
    /// When a new code for this recipient will be accepted (Unix ms).
    pub resend_after_ms: i64,
}

/// Why a code was not issued or not accepted. Messages say what to do; none holds a code.
#[derive(Debug, thiserror::Error)]
pub enum OtpError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// WhatsApp was asked for but the number has no authentication template.
    #[error(
        "the tenant's WhatsApp number has no authentication template for codes: set otp_template (and otp_template_language) in [tenants.<slug>.whatsapp] or `sapa channel add whatsapp --otp-template NAME`"
    )]
    TemplateMissing,
    /// The customer never wrote to the tenant's bot (or blocked it).
    #[error(
        "the customer is not known on this channel: a Telegram bot can only write to a chat that has messaged it (and shared its number, to be found by phone)"
    )]
    RecipientUnknown,
    /// The tenant has no channel that can deliver a code to this recipient.
    #[error("{0}")]
    NoChannel(String),
    /// A send limit; retry after the duration.
    #[error("{}", refusal_text(*.0))]
    Limited(OtpRefusal, Duration),
    /// No such challenge for this tenant.
    #[error("no such challenge")]
    NotFound,
    /// A wrong code.
    #[error("the code is not correct")]
    InvalidCode {
        /// Tries left before the challenge locks.
        attempts_left: i64,
    },
    /// The challenge expired (or a newer code replaced it).
    #[error("the code expired; request a new one")]
    Expired,
    /// Too many wrong codes: the challenge is dead.
    #[error("too many wrong codes; request a new one")]
    TooManyAttempts,
    /// Already used.
    #[error("the code was already used")]
    AlreadyVerified,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refusal_text(refusal: OtpRefusal) -> &'static str {
    match refusal {
        OtpRefusal::ResendTooSoon => {
            "a code was sent to this recipient moments ago; wait before sending another"
        }
        OtpRefusal::RecipientLimit => {
            "this recipient was sent the most codes allowed in the window; wait before sending another"
        }
        OtpRefusal::TenantLimit => {
            "the tenant sent the most codes allowed this hour (otp.max_sends_per_tenant_per_hour)"
        }
    }
}

/// Issues and checks codes.
#[derive(Debug, Clone)]
pub struct OtpService {
    store: Store,
    secrets: SecretBox,
    config: OtpConfig,
    accounts: Arc<Accounts>,
    wake: Arc<Notify>,
}

impl OtpService {
    /// A service over the server's store, key and accounts; `wake` wakes the dispatcher.
    pub fn new(
        store: Store,
        secrets: SecretBox,
        config: OtpConfig,
        accounts: Arc<Accounts>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            secrets,
            config,
            accounts,
            wake,
        }
    }

    /// Sends a new code to `request.to` for `tenant_id` (the internal API staff login uses
    /// too). Returns the challenge, without the code.
    ///
    /// # Errors
    /// [`OtpError`]: a malformed request, no channel that can deliver it, or a send limit.
    pub async fn issue(&self, tenant_id: &str, request: IssueRequest) -> Result<Issued, OtpError> {
        let purpose = request.purpose.trim();
        if purpose.is_empty()
            || purpose.len() > 40
            || !purpose
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(OtpError::Invalid(
                "`purpose` must be 1-40 letters, digits, `_`, `-` or `.` (e.g. `login`)".to_owned(),
            ));
        }
        if let Some(key) = &request.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(OtpError::Invalid(
                "`idempotency_key` must be 1-200 characters".to_owned(),
            ));
        }
        let locale = match request.locale {
            Some(locale) => locale,
            None => self
                .store
                .tenant(tenant_id)
                .await?
                .and_then(|t| Locale::parse(&t.locale))
                .unwrap_or(Locale::Id),
        };
        let plan = self.plan(tenant_id, &request.to, request.channel).await?;
        let now = now_ms();
        let id = format!("otp_{}", uuid::Uuid::new_v4().simple());
        let code = new_code();
        let sealed = base64::engine::general_purpose::STANDARD
            .encode(self.secrets.seal_for(code.as_bytes(), &sealing_owner(&id)));
        let minutes = self.config.ttl.as_secs().div_ceil(60);
        let sends = plan
            .into_iter()
            .map(|(route, address, delivery)| OtpSend {
                channel_account_id: route.account_id.clone(),
                channel_kind: route.kind,
                message: code_message(&id, route.kind, address, delivery, locale, minutes, now),
                sealed_code: sealed.clone(),
            })
            .collect::<Vec<_>>();
        let Some(first) = sends.first() else {
            return Err(OtpError::NoChannel(
                "no channel can deliver this code".to_owned(),
            ));
        };
        let challenge = OtpChallenge {
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            recipient: request.to.key(),
            purpose: purpose.to_owned(),
            locale: locale.as_str().to_owned(),
            channel: first.channel_kind.as_str().to_owned(),
            code_hmac: self.code_mac(tenant_id, &id, &code),
            status: "pending".to_owned(),
            attempts: 0,
            created_at_ms: now,
            expires_at_ms: now + millis(self.config.ttl),
            verified_at_ms: None,
        };
        let new = NewOtpChallenge {
            challenge,
            idempotency_key: request.idempotency_key,
            sends,
        };
        let issued = self.store.issue_otp(&new, self.limits()).await?;
        let challenge = match issued {
            OtpIssue::Created(challenge) => {
                self.wake.notify_one();
                metrics::counter!(crate::telemetry::OTP_TOTAL, "event" => "issued").increment(1);
                challenge
            }
            OtpIssue::Existing(challenge) => challenge,
            OtpIssue::Refused(refusal, retry_ms) => {
                metrics::counter!(crate::telemetry::OTP_TOTAL, "event" => "refused").increment(1);
                return Err(OtpError::Limited(
                    refusal,
                    Duration::from_millis(u64::try_from(retry_ms).unwrap_or(1).max(1)),
                ));
            }
        };
        Ok(Issued {
            resend_after_ms: challenge.created_at_ms + millis(self.config.resend_cooldown),
            challenge,
        })
    }

    /// Checks `code` against the tenant's challenge `id` (the internal API staff login uses
    /// too).
    ///
    /// # Errors
    /// [`OtpError::InvalidCode`], [`OtpError::Expired`], [`OtpError::TooManyAttempts`],
    /// [`OtpError::AlreadyVerified`], [`OtpError::NotFound`] or a storage failure.
    pub async fn verify(&self, tenant_id: &str, id: &str, code: &str) -> Result<(), OtpError> {
        let challenge = self
            .store
            .otp_challenge(tenant_id, id)
            .await?
            .ok_or(OtpError::NotFound)?;
        let now = now_ms();
        closed(&challenge, now)?;
        let expected = self.code_mac(tenant_id, id, code.trim());
        let right: bool = expected
            .as_bytes()
            .ct_eq(challenge.code_hmac.as_bytes())
            .into();
        let max = i64::from(self.config.max_attempts);
        match self.store.check_otp(tenant_id, id, right, max, now).await? {
            OtpCheck::Verified => {
                metrics::counter!(crate::telemetry::OTP_TOTAL, "event" => "verified").increment(1);
                Ok(())
            }
            OtpCheck::Wrong { locked: true, .. } => {
                metrics::counter!(crate::telemetry::OTP_TOTAL, "event" => "locked").increment(1);
                Err(OtpError::TooManyAttempts)
            }
            OtpCheck::Wrong { attempts, .. } => Err(OtpError::InvalidCode {
                attempts_left: (max - attempts).max(0),
            }),
            OtpCheck::Closed => {
                let again = self
                    .store
                    .otp_challenge(tenant_id, id)
                    .await?
                    .ok_or(OtpError::NotFound)?;
                closed(&again, now_ms())?;
                Err(OtpError::Expired)
            }
        }
    }

    /// The tenant's challenge `id` and its status as the API shows it.
    ///
    /// # Errors
    /// [`OtpError::NotFound`] or a storage failure.
    pub async fn status(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<(OtpChallenge, &'static str), OtpError> {
        let challenge = self
            .store
            .otp_challenge(tenant_id, id)
            .await?
            .ok_or(OtpError::NotFound)?;
        let status = public_status(&challenge, now_ms());
        Ok((challenge, status))
    }

    /// Wrong codes a challenge takes before it locks.
    pub fn max_attempts(&self) -> i64 {
        i64::from(self.config.max_attempts)
    }

    fn limits(&self) -> OtpLimits {
        OtpLimits {
            cooldown_ms: millis(self.config.resend_cooldown),
            max_per_recipient: i64::from(self.config.max_sends_per_recipient),
            recipient_window_ms: millis(self.config.recipient_window),
            max_per_tenant_per_hour: i64::from(self.config.max_sends_per_tenant_per_hour),
        }
    }

    fn code_mac(&self, tenant_id: &str, id: &str, code: &str) -> String {
        self.secrets
            .mac(&[b"otp", tenant_id.as_bytes(), id.as_bytes(), code.as_bytes()])
    }

    /// The tenant's first account of `kind` (by id, so the choice is stable).
    fn account(&self, tenant_id: &str, kind: ChannelKind) -> Option<Arc<Route>> {
        let mut routes: Vec<&Arc<Route>> = self
            .accounts
            .routes()
            .filter(|r| r.tenant_id == tenant_id && r.kind == kind)
            .collect();
        routes.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        routes.first().map(|r| Arc::clone(r))
    }

    /// The channels to try, in order: (account, address, how it delivers codes).
    async fn plan(
        &self,
        tenant_id: &str,
        to: &Recipient,
        choice: ChannelChoice,
    ) -> Result<Vec<(Arc<Route>, String, CodeDelivery)>, OtpError> {
        let mut plan = Vec::new();
        let mut problem: Option<OtpError> = None;
        // With `auto`, an address of one provider only tries that provider.
        let choice = match (choice, to) {
            (ChannelChoice::Auto, Recipient::TelegramChat(_)) => ChannelChoice::Telegram,
            (ChannelChoice::Auto, Recipient::WhatsappUser(_)) => ChannelChoice::Whatsapp,
            (choice, _) => choice,
        };
        if matches!(choice, ChannelChoice::Whatsapp | ChannelChoice::Auto) {
            match self.whatsapp(tenant_id, to) {
                Ok(step) => plan.push(step),
                Err(err) => problem = Some(err),
            }
        }
        if matches!(choice, ChannelChoice::Telegram | ChannelChoice::Auto) {
            match self.telegram(tenant_id, to).await {
                Ok(step) => plan.push(step),
                Err(err) => {
                    // With `auto`, WhatsApp's reason matters more when it was the one asked
                    // for first.
                    if choice == ChannelChoice::Telegram || problem.is_none() {
                        problem = Some(err);
                    } else if let (Some(OtpError::NoChannel(_)), OtpError::RecipientUnknown) =
                        (&problem, &err)
                    {
                        problem = Some(err);
                    }
                }
            }
        }
        if plan.is_empty() {
            return Err(problem.unwrap_or_else(|| {
                OtpError::NoChannel("no channel can deliver this code".to_owned())
            }));
        }
        Ok(plan)
    }

    fn whatsapp(
        &self,
        tenant_id: &str,
        to: &Recipient,
    ) -> Result<(Arc<Route>, String, CodeDelivery), OtpError> {
        let address = match to {
            Recipient::Phone(phone) => phone.trim_start_matches('+').to_owned(),
            Recipient::WhatsappUser(id) => id.clone(),
            Recipient::TelegramChat(_) => {
                return Err(OtpError::Invalid(
                    "a `telegram_chat_id` recipient can only get a code on telegram".to_owned(),
                ));
            }
        };
        let route = self.account(tenant_id, ChannelKind::Whatsapp).ok_or_else(|| {
            OtpError::NoChannel(
                "the tenant has no WhatsApp number; connect one with `sapa channel add whatsapp` (or use a Telegram bot)".to_owned(),
            )
        })?;
        match route.channel.one_time_codes() {
            delivery @ CodeDelivery::AuthTemplate { .. } => Ok((route, address, delivery)),
            CodeDelivery::TemplateMissing => Err(OtpError::TemplateMissing),
            _ => Err(OtpError::NoChannel(
                "this WhatsApp account cannot send codes".to_owned(),
            )),
        }
    }

    async fn telegram(
        &self,
        tenant_id: &str,
        to: &Recipient,
    ) -> Result<(Arc<Route>, String, CodeDelivery), OtpError> {
        let route = self
            .account(tenant_id, ChannelKind::Telegram)
            .ok_or_else(|| {
                OtpError::NoChannel(
                    "the tenant has no Telegram bot; connect one with `sapa channel add telegram`"
                        .to_owned(),
                )
            })?;
        let chat = match to {
            Recipient::TelegramChat(chat) => {
                let chat = chat.to_string();
                let unreachable = self
                    .store
                    .contact_unreachable(tenant_id, &route.account_id, &chat)
                    .await?;
                (unreachable == Some(false)).then_some(chat)
            }
            Recipient::Phone(phone) => {
                self.store
                    .chat_by_phone(tenant_id, &route.account_id, phone.trim_start_matches('+'))
                    .await?
            }
            Recipient::WhatsappUser(_) => {
                return Err(OtpError::Invalid(
                    "a `whatsapp_user_id` recipient can only get a code on whatsapp".to_owned(),
                ));
            }
        };
        let chat = chat.ok_or(OtpError::RecipientUnknown)?;
        Ok((route, chat, CodeDelivery::Text))
    }
}

/// The API's status of a challenge: `superseded` shows as `expired`, and so does a live
/// challenge past its expiry.
pub fn public_status(challenge: &OtpChallenge, now: i64) -> &'static str {
    match challenge.status.as_str() {
        "verified" => "verified",
        "locked" => "locked",
        "superseded" => "expired",
        _ if now >= challenge.expires_at_ms => "expired",
        "sent" => "sent",
        "delivered" => "delivered",
        "read" => "read",
        "failed" => "failed",
        _ => "pending",
    }
}

/// The error for a challenge that no longer takes codes, or Ok.
fn closed(challenge: &OtpChallenge, now: i64) -> Result<(), OtpError> {
    match public_status(challenge, now) {
        "verified" => Err(OtpError::AlreadyVerified),
        "locked" => Err(OtpError::TooManyAttempts),
        "expired" => Err(OtpError::Expired),
        _ => Ok(()),
    }
}

/// A uniformly random 6-digit code.
fn new_code() -> String {
    let n: u32 = rand::rng().random_range(0..1_000_000);
    format!("{n:0CODE_DIGITS$}")
}

/// The associated data a challenge's sealed code is bound to.
pub fn sealing_owner(challenge_id: &str) -> Vec<u8> {
    format!("otp:{challenge_id}").into_bytes()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The queued message of a code: placeholders only, never the code.
fn code_message(
    id: &str,
    kind: ChannelKind,
    address: String,
    delivery: CodeDelivery,
    locale: Locale,
    minutes: u64,
    now: i64,
) -> OutboundMessage {
    let (text, template) = match delivery {
        CodeDelivery::AuthTemplate { name, language } => (
            String::new(),
            Some(Template {
                name,
                language,
                body_params: vec![CODE_PLACEHOLDER.to_owned()],
                copy_code: Some(CODE_PLACEHOLDER.to_owned()),
            }),
        ),
        _ => (
            flows::texts::one_time_code(locale, CODE_PLACEHOLDER, minutes),
            None,
        ),
    };
    OutboundMessage {
        message_id: 0,
        conversation_id: format!("otp:{id}"),
        recipient: address,
        author: Author::Bot,
        text,
        choices: Vec::new(),
        in_reply_to: Vec::new(),
        created_at_ms: now,
        idempotency_key: format!("otp:{id}:{}", kind.as_str()),
        customer_last_seen_ms: None,
        template,
        media: None,
    }
}

/// Puts `code` where `message` has the placeholder (the dispatcher, just before a send).
pub fn fill_code(message: &OutboundMessage, code: &str) -> OutboundMessage {
    let mut filled = message.clone();
    filled.text = filled.text.replace(CODE_PLACEHOLDER, code);
    if let Some(template) = &mut filled.template {
        for param in &mut template.body_params {
            *param = param.replace(CODE_PLACEHOLDER, code);
        }
        if let Some(copy) = &mut template.copy_code {
            *copy = copy.replace(CODE_PLACEHOLDER, code);
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: Vec<String> = (0..200).map(|_| new_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        let distinct: std::collections::HashSet<&String> = codes.iter().collect();
        assert!(distinct.len() > 190, "{} distinct of 200", distinct.len());
    }

    #[test]
    fn phone_numbers_are_checked_and_normalized() {
        assert_eq!(
            Recipient::phone(" +62 812-3456-7890 ").unwrap(),
            Recipient::Phone("+6281234567890".to_owned())
        );
        for bad in ["081234567890", "+0812345678", "+62abc4567890", "+6212", ""] {
            assert!(Recipient::phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_queued_message_holds_no_code_and_filling_puts_it_twice_in_the_template() {
        let message = code_message(
            "otp_1",
            ChannelKind::Whatsapp,
            "6281234567890".to_owned(),
            CodeDelivery::AuthTemplate {
                name: "login_code".to_owned(),
                language: "id".to_owned(),
            },
            Locale::Id,
            5,
            0,
        );
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.contains(CODE_PLACEHOLDER));
        let filled = fill_code(&message, "482913");
        let template = filled.template.unwrap();
        assert_eq!(template.body_params, vec!["482913".to_owned()]);
        assert_eq!(template.copy_code.as_deref(), Some("482913"));
        let text = code_message(
            "otp_1",
            ChannelKind::Telegram,
            "42".to_owned(),
            CodeDelivery::Text,
            Locale::En,
            5,
            0,
        );
        assert!(
            fill_code(&text, "482913")
                .text
                .starts_with("482913 is your verification code")
        );
    }

    #[test]
    fn superseded_and_past_expiry_show_as_expired() {
        let mut c = OtpChallenge {
            id: "otp_1".to_owned(),
            tenant_id: "t".to_owned(),
            recipient: "+62".to_owned(),
            purpose: "login".to_owned(),
            locale: "id".to_owned(),
            channel: "whatsapp".to_owned(),
            code_hmac: String::new(),
            status: "sent".to_owned(),
            attempts: 0,
            created_at_ms: 0,
            expires_at_ms: 1000,
            verified_at_ms: None,
        };
        assert_eq!(public_status(&c, 999), "sent");
        assert_eq!(public_status(&c, 1000), "expired");
        c.status = "superseded".to_owned();
        assert_eq!(public_status(&c, 0), "expired");
        c.status = "verified".to_owned();
        assert_eq!(public_status(&c, 5000), "verified");
    }
}
