//! Staff accounts (owners and agents) and their console login: argon2id passwords, an optional
//! second factor by one-time code (the OTP service, to the member's WhatsApp or Telegram),
//! sessions with a CSRF token, lockout after repeated failures, and an audit log.
//!
//! Tokens (set-password links, sessions, CSRF) are 32 random bytes shown once; only their
//! SHA-256 is stored and compared in constant time.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::otp::{ChannelChoice, IssueRequest, OtpError, OtpService, Recipient};
use crate::store::{StaffMember, StaffSession, Store, StoreError, now_ms};

/// Failed logins after which an account locks.
pub const MAX_FAILED_LOGINS: i64 = 10;
/// How long a locked account stays locked.
pub const LOCK_DURATION: Duration = Duration::from_secs(15 * 60);
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// How long a set-password link is valid.
pub const LINK_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Why a staff operation failed. Login failures never say whether the email exists.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    /// Bad input: what to fix.
    #[error("{0}")]
    Invalid(String),
    /// Wrong email or password (or a disabled account).
    #[error("the email or password is not correct")]
    InvalidCredentials,
    /// Too many failures: locked for this long.
    #[error("too many failed logins; the account is locked for a while")]
    Locked(Duration),
    /// The set-password link is unknown, used or expired.
    #[error("this link is invalid or expired; ask for a new one (`sapa staff reset`)")]
    InvalidLink,
    /// The session is missing or expired.
    #[error("log in first")]
    NoSession,
    /// The CSRF token is missing or wrong.
    #[error("missing or wrong X-CSRF-Token header")]
    Csrf,
    /// The second factor failed.
    #[error(transparent)]
    Otp(#[from] OtpError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started session: the cookie's token and the CSRF token, both shown once.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session cookie's value.
    pub token: String,
    /// The token state-changing requests carry in `X-CSRF-Token`.
    pub csrf_token: String,
    /// Who logged in.
    pub member: StaffMember,
}

/// What a correct password leads to.
#[derive(Debug, Clone)]
pub enum LoginStep {
    /// Logged in.
    Session(NewSession),
    /// A code went to the member's channel; finish with [`StaffService::login_code`].
    CodeRequired {
        /// The OTP challenge.
        challenge_id: String,
    },
}

/// Staff accounts and logins.
#[derive(Debug, Clone)]
pub struct StaffService {
    store: Store,
    otp: OtpService,
    /// Tenants whose staff must use a second factor.
    require_2fa: std::collections::HashSet<String>,
}

/// A random token and its stored hash.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An argon2id PHC string for `password`.
///
/// # Errors
/// A password the hasher refuses (none in practice).
pub fn hash_password(password: &str) -> Result<String, StaffError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| StaffError::Invalid(format!("cannot hash the password: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StaffError::Invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Checks a new password's length.
///
/// # Errors
/// [`StaffError::Invalid`] saying what is required.
pub fn check_password(password: &str) -> Result<(), StaffError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > 1024 {
        return Err(StaffError::Invalid(format!(
            "a password must be {MIN_PASSWORD_CHARS} to 1024 characters"
        )));
    }
    Ok(())
}

/// A lowercase email, checked loosely (something@something.tld).
///
/// # Errors
/// [`StaffError::Invalid`].
pub fn normalize_email(email: &str) -> Result<String, StaffError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(StaffError::Invalid(format!(
            "`{email}` is not an email address"
        )))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

impl StaffService {
    /// The service; `require_2fa` lists the tenants that require a second factor.
    pub fn new(
        store: Store,
        otp: OtpService,
        require_2fa: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            store,
            otp,
            require_2fa: require_2fa.into_iter().collect(),
        }
    }

    /// Adds a member. With `password` they can log in at once; otherwise the returned link
    /// token (valid 24 h) lets them set one.
    ///
    /// # Errors
    /// Bad input, an email the tenant already has, or storage.
    pub async fn add(
        &self,
        member: StaffMember,
        password: Option<&str>,
    ) -> Result<(StaffMember, Option<String>), StaffError> {
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p)?)
            }
            None => None,
        };
        let now = now_ms();
        if !self.store.add_staff(&member, hash.as_deref(), now).await? {
            return Err(StaffError::Invalid(format!(
                "tenant `{}` already has staff member {}",
                member.tenant_id, member.email
            )));
        }
        let link = match hash {
            Some(_) => None,
            None => Some(self.link(&member.id).await?),
        };
        self.store
            .audit(
                &member.tenant_id,
                Some(&member.id),
                "staff_added",
                Some(&member.role),
                now,
            )
            .await?;
        Ok((member, link))
    }

    /// A new set-password link token for the member.
    ///
    /// # Errors
    /// Storage.
    pub async fn link(&self, staff_id: &str) -> Result<String, StaffError> {
        let (token, hash) = new_token();
        self.store
            .add_staff_link(staff_id, &hash, now_ms() + millis(LINK_VALIDITY))
            .await?;
        Ok(token)
    }

    /// Sets a password with a link token (once).
    ///
    /// # Errors
    /// [`StaffError::InvalidLink`], a password too short, or storage.
    pub async fn set_password(
        &self,
        link: &str,
        password: &str,
    ) -> Result<StaffMember, StaffError> {
        check_password(password)?;
        let hash = hash_password(password)?;
        let now = now_ms();
        let member = self
            .store
            .use_staff_link(&token_hash(link), &hash, now)
            .await?
            .ok_or(StaffError::InvalidLink)?;
        self.store
            .audit(
                &member.tenant_id,
                Some(&member.id),
                "password_set",
                None,
                now,
            )
            .await?;
        Ok(member)
    }

    /// Checks the password; then either a session, or a code to the member's channel when
    /// they have one (always with one, when the tenant requires a second factor).
    ///
    /// # Errors
    /// [`StaffError::InvalidCredentials`] (the same for an unknown email, a wrong password and
    /// a disabled account), [`StaffError::Locked`], or a failure to send the code.
    pub async fn login(
        &self,
        tenant_id: &str,
        email: &str,
        password: &str,
    ) -> Result<LoginStep, StaffError> {
        let email = email.trim().to_lowercase();
        let now = now_ms();
        let attempt = self.store.staff_login(tenant_id, &email).await?;
        let Some(attempt) = attempt else {
            // Same work as a real check, so timing does not tell whether the email exists.
            let _ = verify_password(password, DUMMY_HASH);
            return Err(StaffError::InvalidCredentials);
        };
        let member = attempt.member;
        if let Some(until) = member.locked_until_ms.filter(|until| *until > now) {
            return Err(StaffError::Locked(Duration::from_millis(
                u64::try_from(until - now).unwrap_or(1),
            )));
        }
        let right = attempt
            .password_hash
            .as_deref()
            .is_some_and(|hash| verify_password(password, hash));
        if !right || member.disabled_at_ms.is_some() {
            let locked = self
                .store
                .staff_login_failed(&member.id, MAX_FAILED_LOGINS, now + millis(LOCK_DURATION))
                .await?;
            self.store
                .audit(tenant_id, Some(&member.id), "login_failed", None, now)
                .await?;
            if locked {
                self.store
                    .audit(tenant_id, Some(&member.id), "locked", None, now)
                    .await?;
                return Err(StaffError::Locked(LOCK_DURATION));
            }
            return Err(StaffError::InvalidCredentials);
        }
        self.store.staff_login_succeeded(&member.id).await?;
        let channel = match (&member.whatsapp, member.telegram_chat_id) {
            (Some(phone), _) => Some((Recipient::phone(phone)?, ChannelChoice::Whatsapp)),
            (None, Some(chat)) => Some((Recipient::TelegramChat(chat), ChannelChoice::Telegram)),
            (None, None) => None,
        };
        match channel {
            Some((to, channel)) => {
                let issued = self
                    .otp
                    .issue(
                        tenant_id,
                        IssueRequest {
                            to,
                            channel,
                            purpose: "staff_login".to_owned(),
                            locale: None,
                            idempotency_key: None,
                        },
                    )
                    .await?;
                self.store
                    .add_login_challenge(&issued.challenge.id, &member.id, tenant_id, now)
                    .await?;
                Ok(LoginStep::CodeRequired {
                    challenge_id: issued.challenge.id,
                })
            }
            None if self.require_2fa.contains(tenant_id) => Err(StaffError::Invalid(
                "this tenant requires a second factor: ask an owner to add your WhatsApp number or Telegram chat (`sapa staff add … --whatsapp +62…`)".to_owned(),
            )),
            None => self.start_session(member, now).await.map(LoginStep::Session),
        }
    }

    /// Finishes a login with the code sent to the member.
    ///
    /// # Errors
    /// The OTP errors (wrong code with attempts left, expired, locked), or an unknown
    /// challenge ([`StaffError::InvalidCredentials`]).
    pub async fn login_code(
        &self,
        challenge_id: &str,
        code: &str,
    ) -> Result<NewSession, StaffError> {
        let member = self
            .store
            .login_challenge(challenge_id)
            .await?
            .ok_or(StaffError::InvalidCredentials)?;
        if member.disabled_at_ms.is_some() {
            return Err(StaffError::InvalidCredentials);
        }
        self.otp
            .verify(&member.tenant_id, challenge_id, code)
            .await?;
        self.start_session(member, now_ms()).await
    }

    async fn start_session(&self, member: StaffMember, now: i64) -> Result<NewSession, StaffError> {
        let (token, hash) = new_token();
        let (csrf_token, csrf_hash) = new_token();
        self.store
            .add_staff_session(&member, &hash, &csrf_hash, now)
            .await?;
        self.store
            .audit(&member.tenant_id, Some(&member.id), "login", None, now)
            .await?;
        Ok(NewSession {
            token,
            csrf_token,
            member,
        })
    }

    /// The session of a cookie token; for a state-changing request, `csrf` must be its CSRF
    /// token.
    ///
    /// # Errors
    /// [`StaffError::NoSession`], [`StaffError::Csrf`] or storage.
    pub async fn session(
        &self,
        token: &str,
        csrf: Option<Option<&str>>,
    ) -> Result<StaffSession, StaffError> {
        let now = now_ms();
        let session = self
            .store
            .staff_session(&token_hash(token), now - millis(SESSION_IDLE), now)
            .await?
            .ok_or(StaffError::NoSession)?;
        if let Some(given) = csrf {
            let given = given.ok_or(StaffError::Csrf)?;
            let matches: bool = token_hash(given)
                .as_bytes()
                .ct_eq(session.csrf_hash.as_bytes())
                .into();
            if !matches {
                return Err(StaffError::Csrf);
            }
        }
        Ok(session)
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Storage.
    pub async fn logout(&self, token: &str, member: &StaffMember) -> Result<(), StaffError> {
        self.store.end_staff_session(&token_hash(token)).await?;
        self.store
            .audit(
                &member.tenant_id,
                Some(&member.id),
                "logout",
                None,
                now_ms(),
            )
            .await?;
        Ok(())
    }

    /// Whether the tenant requires a second factor.
    pub fn requires_2fa(&self, tenant_id: &str) -> bool {
        self.require_2fa.contains(tenant_id)
    }
}

/// A valid argon2id hash of a random password, checked against when the email is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FwYWR1bW15c2FsdA$1n1GfOkmUQ2+7sGfmQkYdOaW6dXx6d3s8m9X2h1Vv3A";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("kopi-susu-2026").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("kopi-susu-2026", &hash));
        assert!(!verify_password("kopi-susu-2027", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(check_password("short").is_err());
    }

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            normalize_email(" Owner@Demo.Local ").unwrap(),
            "owner@demo.local"
        );
        for bad in ["", "owner", "@demo.local", "a@b", "a b@c.d"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
