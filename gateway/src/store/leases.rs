//! Conversation leases in the database: what distributed mode falls back to while Redis is
//! unreachable (see `coord::redis`), so the replicas on one database still agree on who
//! answers a conversation.
//!
//! A row per leased conversation (`conversation_leases`), not session advisory locks: a
//! session lock lives on one connection, so every held conversation would pin a pooled
//! connection for as long as its lane runs (and a lock taken on one connection cannot be
//! released from another). A row is taken and given back by single statements on any pooled
//! connection, expires by itself when its holder dies, and the upsert's row lock serialises
//! two replicas racing for the same conversation.
//!
//! Every statement is scoped by conversation id and holder token, and reads the time from the
//! database (`expires_at` is Unix ms on the database's clock), so replicas with skewed clocks
//! agree on when a lease ends.

use std::time::Duration;

use super::{Dialect, Store, StoreError};

impl Store {
    /// The database's current time in Unix ms, as an SQL expression (one value per statement).
    fn lease_now(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT",
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        }
    }

    /// Takes the lease of `conversation_id` for `holder` (a token unique per acquisition) for
    /// `ttl`: `true` when it is now `holder`'s — the conversation had no lease, its lease had
    /// expired, or `holder` already had it (then extended) — `false` while another holder's
    /// lease is live.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn try_conversation_lease(
        &self,
        conversation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.lease_now();
        let sql = format!(
            "INSERT INTO conversation_leases (conversation_id, holder, expires_at) \
             VALUES ($1, $2, {now} + $3) ON CONFLICT (conversation_id) DO UPDATE \
             SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE conversation_leases.expires_at <= {now} \
             OR conversation_leases.holder = excluded.holder"
        );
        let taken = sqlx::query(&sql)
            .bind(conversation_id)
            .bind(holder)
            .bind(ttl_ms(ttl))
            .execute(&self.write)
            .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Extends `holder`'s live lease of `conversation_id` to `ttl` from now: `false` when it
    /// is no longer `holder`'s or already expired (lost: another holder may have it now).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn renew_conversation_lease(
        &self,
        conversation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.lease_now();
        let sql = format!(
            "UPDATE conversation_leases SET expires_at = {now} + $3 \
             WHERE conversation_id = $1 AND holder = $2 AND expires_at > {now}"
        );
        let renewed = sqlx::query(&sql)
            .bind(conversation_id)
            .bind(holder)
            .bind(ttl_ms(ttl))
            .execute(&self.write)
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Gives `holder`'s lease of `conversation_id` back; another holder's lease is left alone.
    /// `false` when `holder` had none.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn release_conversation_lease(
        &self,
        conversation_id: &str,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let released = sqlx::query(
            "DELETE FROM conversation_leases WHERE conversation_id = $1 AND holder = $2",
        )
        .bind(conversation_id)
        .bind(holder)
        .execute(&self.write)
        .await?;
        Ok(released.rows_affected() == 1)
    }

    /// Whether a holder other than `holder` has a live lease of `conversation_id` here (one
    /// primary-key lookup).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_leased_by_other(
        &self,
        conversation_id: &str,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let now = self.lease_now();
        let sql = format!(
            "SELECT 1 AS live FROM conversation_leases \
             WHERE conversation_id = $1 AND holder <> $2 AND expires_at > {now}"
        );
        let row = sqlx::query(&sql)
            .bind(conversation_id)
            .bind(holder)
            .fetch_optional(&self.write)
            .await?;
        Ok(row.is_some())
    }
}

/// A lease duration in ms, as bound to the statements.
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}
