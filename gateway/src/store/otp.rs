//! One-time code challenges and their outbox rows.
//!
//! A challenge holds only an HMAC of its code. The code travels sealed (AEAD under the server
//! key, bound to the challenge) in the `sealed_code` column of its outbox rows, and that column
//! is cleared as soon as a row's send is final. The row of the first channel is `pending` with
//! priority 1 (claimed before ordinary answers); the rows of fallback channels wait as `held`
//! until the first one fails.

use channels::ChannelKind;
use channels::model::OutboundMessage;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Dialect, Store, StoreError};

/// Challenge states that still accept a code.
const LIVE: &str = "('pending', 'sent', 'delivered', 'read', 'failed')";

/// One stored challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpChallenge {
    /// `otp_…` id, given to the tenant's backend.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Normalized recipient (`+62…`, `wa:<user id>`, `tg:<chat id>`).
    pub recipient: String,
    /// What the code is for (`login`, …).
    pub purpose: String,
    /// Language of the message.
    pub locale: String,
    /// The channel the code is (being) sent on.
    pub channel: String,
    /// Hex HMAC of the code.
    pub code_hmac: String,
    /// `pending | sent | delivered | read | failed | verified | locked | superseded`.
    pub status: String,
    /// Wrong codes so far.
    pub attempts: i64,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms; the code is refused from then on.
    pub expires_at_ms: i64,
    /// Unix ms, once verified.
    pub verified_at_ms: Option<i64>,
}

/// A challenge to create.
#[derive(Debug, Clone)]
pub struct NewOtpChallenge {
    /// The challenge (status `pending`, no attempts).
    pub challenge: OtpChallenge,
    /// The tenant's key that makes a retried request return the same challenge.
    pub idempotency_key: Option<String>,
    /// Its sends, first channel first; the others are fallbacks.
    pub sends: Vec<OtpSend>,
}

/// One channel a code can go out on.
#[derive(Debug, Clone)]
pub struct OtpSend {
    /// The tenant's channel account.
    pub channel_account_id: String,
    /// Its kind.
    pub channel_kind: ChannelKind,
    /// The message, with [`channels::model::CODE_PLACEHOLDER`] where the code goes.
    pub message: OutboundMessage,
    /// The code, sealed for this challenge.
    pub sealed_code: String,
}

/// The send limits checked when a challenge is created.
#[derive(Debug, Clone, Copy)]
pub struct OtpLimits {
    /// Refuse a new code for a recipient this soon after the last one (ms).
    pub cooldown_ms: i64,
    /// Codes per recipient per `recipient_window_ms`.
    pub max_per_recipient: i64,
    /// The window of `max_per_recipient` (ms).
    pub recipient_window_ms: i64,
    /// Codes per tenant per hour.
    pub max_per_tenant_per_hour: i64,
}

/// Why a new code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpRefusal {
    /// The last code to this recipient is younger than the cooldown.
    ResendTooSoon,
    /// The recipient got the most codes allowed in the window.
    RecipientLimit,
    /// The tenant sent the most codes allowed this hour.
    TenantLimit,
}

/// What creating a challenge did.
#[derive(Debug, Clone)]
pub enum OtpIssue {
    /// Created, and its first send queued.
    Created(OtpChallenge),
    /// The idempotency key names an existing challenge; nothing was sent.
    Existing(OtpChallenge),
    /// Refused by a limit; retry after this many ms.
    Refused(OtpRefusal, i64),
}

/// What a code check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpCheck {
    /// The right code: the challenge is verified (only one check ever gets this).
    Verified,
    /// A wrong code; `attempts` wrong so far, `locked` when that was the last allowed.
    Wrong {
        /// Wrong codes so far.
        attempts: i64,
        /// The challenge no longer accepts codes.
        locked: bool,
    },
    /// The challenge no longer accepts codes (verified, locked, expired or superseded):
    /// re-read it to say why.
    Closed,
}

impl Store {
    /// Creates a challenge and queues its first send, in one transaction, after checking the
    /// limits; older live challenges of the recipient for the same purpose are superseded
    /// (their codes no longer verify, their unsent rows are cancelled and scrubbed).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing was stored.
    pub async fn issue_otp(
        &self,
        new: &NewOtpChallenge,
        limits: OtpLimits,
    ) -> Result<OtpIssue, StoreError> {
        let c = &new.challenge;
        let now = c.created_at_ms;
        let mut tx = self.write.begin().await?;
        if self.dialect == Dialect::Postgres {
            // Concurrent requests for one recipient take turns, so the limits hold.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("otp:{}:{}", c.tenant_id, c.recipient))
                .execute(&mut *tx)
                .await?;
        }
        if let Some(key) = &new.idempotency_key {
            let existing = sqlx::query(&format!(
                "{SELECT_CHALLENGE} WHERE tenant_id = $1 AND idempotency_key = $2"
            ))
            .bind(&c.tenant_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                return Ok(OtpIssue::Existing(challenge_of(&row)?));
            }
        }
        let since = now - limits.recipient_window_ms.max(limits.cooldown_ms);
        let recent: Vec<i64> = sqlx::query(
            "SELECT created_at FROM otp_challenges WHERE tenant_id = $1 AND recipient = $2 \
             AND created_at > $3 ORDER BY created_at",
        )
        .bind(&c.tenant_id)
        .bind(&c.recipient)
        .bind(since)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("created_at"))
        .collect::<Result<_, _>>()?;
        if let Some(last) = recent.last()
            && now - last < limits.cooldown_ms
        {
            return Ok(OtpIssue::Refused(
                OtpRefusal::ResendTooSoon,
                last + limits.cooldown_ms - now,
            ));
        }
        let in_window: Vec<i64> = recent
            .iter()
            .copied()
            .filter(|t| now - t < limits.recipient_window_ms)
            .collect();
        if i64::try_from(in_window.len()).unwrap_or(i64::MAX) >= limits.max_per_recipient {
            let oldest = in_window
                .len()
                .checked_sub(usize::try_from(limits.max_per_recipient).unwrap_or(0))
                .and_then(|i| in_window.get(i))
                .copied()
                .unwrap_or(now);
            return Ok(OtpIssue::Refused(
                OtpRefusal::RecipientLimit,
                (oldest + limits.recipient_window_ms - now).max(1),
            ));
        }
        const HOUR_MS: i64 = 3_600_000;
        let tenant_row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM otp_challenges \
             WHERE tenant_id = $1 AND created_at > $2",
        )
        .bind(&c.tenant_id)
        .bind(now - HOUR_MS)
        .fetch_one(&mut *tx)
        .await?;
        let sent_this_hour: i64 = tenant_row.try_get("n")?;
        if sent_this_hour >= limits.max_per_tenant_per_hour {
            let oldest: Option<i64> = tenant_row.try_get("oldest")?;
            return Ok(OtpIssue::Refused(
                OtpRefusal::TenantLimit,
                (oldest.unwrap_or(now) + HOUR_MS - now).max(1),
            ));
        }
        // A new code invalidates the older ones.
        sqlx::query(&format!(
            "UPDATE outbox SET state = 'cancelled', sealed_code = NULL, locked_until = NULL, updated_at = $1 \
             WHERE state IN ('pending', 'held') AND otp_challenge_id IN (SELECT id FROM otp_challenges \
             WHERE tenant_id = $2 AND recipient = $3 AND purpose = $4 AND status IN {LIVE})"
        ))
        .bind(now)
        .bind(&c.tenant_id)
        .bind(&c.recipient)
        .bind(&c.purpose)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE otp_challenges SET status = 'superseded', updated_at = $1 \
             WHERE tenant_id = $2 AND recipient = $3 AND purpose = $4 AND status IN {LIVE}"
        ))
        .bind(now)
        .bind(&c.tenant_id)
        .bind(&c.recipient)
        .bind(&c.purpose)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO otp_challenges (id, tenant_id, recipient, purpose, locale, channel, code_hmac, \
             status, attempts, idempotency_key, created_at, expires_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9, $10, $9)",
        )
        .bind(&c.id)
        .bind(&c.tenant_id)
        .bind(&c.recipient)
        .bind(&c.purpose)
        .bind(&c.locale)
        .bind(&c.channel)
        .bind(&c.code_hmac)
        .bind(new.idempotency_key.as_deref())
        .bind(now)
        .bind(c.expires_at_ms)
        .execute(&mut *tx)
        .await?;
        for (index, send) in new.sends.iter().enumerate() {
            let payload = serde_json::to_string(&send.message)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO outbox (tenant_id, conversation_id, channel_account_id, channel_kind, message_id, \
                 idempotency_key, payload, state, attempts, next_attempt_at, created_at, updated_at, \
                 priority, sealed_code, otp_challenge_id) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6, $7, 0, $8, $8, $8, 1, $9, $10)",
            )
            .bind(&c.tenant_id)
            .bind(&send.message.conversation_id)
            .bind(&send.channel_account_id)
            .bind(send.channel_kind.as_str())
            .bind(&send.message.idempotency_key)
            .bind(payload)
            .bind(if index == 0 { "pending" } else { "held" })
            .bind(now)
            .bind(&send.sealed_code)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(OtpIssue::Created(c.clone()))
    }

    /// The tenant's challenge `id`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn otp_challenge(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<OtpChallenge>, StoreError> {
        sqlx::query(&format!(
            "{SELECT_CHALLENGE} WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.write)
        .await?
        .map(|row| challenge_of(&row))
        .transpose()
    }

    /// Records a code check of the tenant's challenge `id` at `now`: `right` (the caller
    /// compared the HMACs) verifies it once, atomically, so of two concurrent checks with the
    /// right code exactly one succeeds; a wrong code counts an attempt and locks the challenge
    /// at `max_attempts`. Either way its unsent rows are cancelled once it is closed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn check_otp(
        &self,
        tenant_id: &str,
        id: &str,
        right: bool,
        max_attempts: i64,
        now: i64,
    ) -> Result<OtpCheck, StoreError> {
        let mut tx = self.write.begin().await?;
        let outcome = if right {
            let changed = sqlx::query(&format!(
                "UPDATE otp_challenges SET status = 'verified', verified_at = $1, updated_at = $1 \
                 WHERE tenant_id = $2 AND id = $3 AND status IN {LIVE} AND expires_at > $1 AND attempts < $4"
            ))
            .bind(now)
            .bind(tenant_id)
            .bind(id)
            .bind(max_attempts)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                OtpCheck::Verified
            } else {
                OtpCheck::Closed
            }
        } else {
            let row = sqlx::query(&format!(
                "UPDATE otp_challenges SET attempts = attempts + 1, updated_at = $1, \
                 status = CASE WHEN attempts + 1 >= $4 THEN 'locked' ELSE status END \
                 WHERE tenant_id = $2 AND id = $3 AND status IN {LIVE} AND expires_at > $1 \
                 RETURNING attempts, status"
            ))
            .bind(now)
            .bind(tenant_id)
            .bind(id)
            .bind(max_attempts)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(row) => OtpCheck::Wrong {
                    attempts: row.try_get("attempts")?,
                    locked: row.try_get::<String, _>("status")? == "locked",
                },
                None => OtpCheck::Closed,
            }
        };
        if matches!(
            outcome,
            OtpCheck::Verified | OtpCheck::Wrong { locked: true, .. }
        ) {
            cancel_unsent(&mut tx, id, now).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Cancels and scrubs the fallback rows of challenges that expired before `now`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn sweep_expired_otp(&self, now: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE outbox SET state = 'cancelled', sealed_code = NULL, updated_at = $1 \
             WHERE state IN ('held', 'pending') AND otp_challenge_id IN \
             (SELECT id FROM otp_challenges WHERE expires_at <= $1)",
        )
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected())
    }
}

/// The columns of a challenge.
const SELECT_CHALLENGE: &str = "SELECT id, tenant_id, recipient, purpose, locale, channel, code_hmac, \
     status, attempts, created_at, expires_at, verified_at FROM otp_challenges";

fn challenge_of(row: &AnyRow) -> Result<OtpChallenge, StoreError> {
    Ok(OtpChallenge {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        recipient: row.try_get("recipient")?,
        purpose: row.try_get("purpose")?,
        locale: row.try_get("locale")?,
        channel: row.try_get("channel")?,
        code_hmac: row.try_get("code_hmac")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        created_at_ms: row.try_get("created_at")?,
        expires_at_ms: row.try_get("expires_at")?,
        verified_at_ms: row.try_get("verified_at")?,
    })
}

/// Cancels and scrubs the challenge's rows that were not sent yet.
async fn cancel_unsent(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    challenge_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbox SET state = 'cancelled', sealed_code = NULL, locked_until = NULL, updated_at = $1 \
         WHERE otp_challenge_id = $2 AND state IN ('pending', 'held')",
    )
    .bind(now)
    .bind(challenge_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A code's send is final: `sent` moves the challenge to `sent` on the row's channel; a
/// failure releases the next fallback row (the challenge goes back to `pending` on that
/// channel) or, with none left, marks the challenge `failed`. Returns whether a fallback was
/// released.
pub(crate) async fn otp_send_final(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    challenge_id: &str,
    channel_kind: ChannelKind,
    failed: bool,
    now: i64,
) -> Result<bool, StoreError> {
    if !failed {
        sqlx::query(
            "UPDATE otp_challenges SET status = 'sent', channel = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ('pending', 'failed')",
        )
        .bind(channel_kind.as_str())
        .bind(now)
        .bind(challenge_id)
        .execute(&mut **tx)
        .await?;
        return Ok(false);
    }
    let next = sqlx::query(
        "SELECT id, channel_kind FROM outbox WHERE otp_challenge_id = $1 AND state = 'held' \
         ORDER BY id LIMIT 1",
    )
    .bind(challenge_id)
    .fetch_optional(&mut **tx)
    .await?;
    let live = sqlx::query(&format!(
        "SELECT 1 AS live FROM otp_challenges WHERE id = $1 AND status IN {LIVE} AND expires_at > $2"
    ))
    .bind(challenge_id)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    match next {
        Some(row) if live => {
            let outbox_id: i64 = row.try_get("id")?;
            let kind: String = row.try_get("channel_kind")?;
            sqlx::query(
                "UPDATE outbox SET state = 'pending', next_attempt_at = $1, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(outbox_id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE otp_challenges SET status = 'pending', channel = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(kind)
            .bind(now)
            .bind(challenge_id)
            .execute(&mut **tx)
            .await?;
            Ok(true)
        }
        _ => {
            sqlx::query(&format!(
                "UPDATE otp_challenges SET status = 'failed', updated_at = $1 WHERE id = $2 AND status IN {LIVE}"
            ))
            .bind(now)
            .bind(challenge_id)
            .execute(&mut **tx)
            .await?;
            Ok(false)
        }
    }
}

/// A provider status for a code's message: `delivered`/`read` move the challenge forward and
/// cancel its fallbacks; `failed` falls back like a failed send.
pub(crate) async fn otp_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    outbox_id: i64,
    state: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT otp_challenge_id, channel_kind FROM outbox WHERE id = $1")
        .bind(outbox_id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(false) };
    let Some(challenge_id) = row.try_get::<Option<String>, _>("otp_challenge_id")? else {
        return Ok(false);
    };
    match state {
        "failed" => {
            let kind = super::channel_kind_of(&row, "channel_kind")?;
            otp_send_final(tx, &challenge_id, kind, true, now).await
        }
        "delivered" | "read" => {
            let rank = "(CASE status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 \
                        WHEN 'read' THEN 3 ELSE 9 END)";
            let new_rank = if state == "read" { 3 } else { 2 };
            let changed = sqlx::query(&format!(
                "UPDATE otp_challenges SET status = $1, updated_at = $2 WHERE id = $3 AND {rank} < $4"
            ))
            .bind(state)
            .bind(now)
            .bind(&challenge_id)
            .bind(new_rank)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE outbox SET state = 'cancelled', sealed_code = NULL, updated_at = $1 \
                 WHERE otp_challenge_id = $2 AND state = 'held'",
            )
            .bind(now)
            .bind(&challenge_id)
            .execute(&mut **tx)
            .await?;
            Ok(changed > 0)
        }
        _ => Ok(false),
    }
}

impl Store {
    /// The chat of the account's contact who shared phone number `digits` (any `+` ignored)
    /// and has not blocked the bot: where a Telegram code to that number can go.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn chat_by_phone(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        digits: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT external_id FROM contacts WHERE tenant_id = $1 AND channel_account_id = $2 \
             AND unreachable = 0 AND REPLACE(phone, '+', '') = $3 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(digits)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| r.try_get("external_id").map_err(StoreError::from))
            .transpose()
    }
}
