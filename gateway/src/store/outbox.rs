//! The outbox: claimed by the dispatcher, one in-flight row per conversation, in order.

use channels::model::OutboundMessage;
use sqlx::Row;

use super::{Dialect, Store, StoreError, now_ms};

/// An outbox row claimed for sending.
#[derive(Debug, Clone)]
pub struct ClaimedSend {
    /// Outbox row id.
    pub id: i64,
    /// Tenant slug.
    pub tenant_id: String,
    /// Channel account to send through.
    pub channel_account_id: String,
    /// `webchat`, `whatsapp` or `telegram`.
    pub channel_kind: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// What to send.
    pub message: OutboundMessage,
}

/// How a send attempt failed.
#[derive(Debug, Clone)]
pub enum OutboxFailure {
    /// Transient: try again at `next_attempt_at` (Unix ms).
    Retry {
        /// When to try again.
        next_attempt_at: i64,
        /// Log-safe reason.
        error: String,
    },
    /// The provider refused for good; the message is marked failed for agents to see.
    Permanent {
        /// Log-safe reason.
        error: String,
    },
    /// Out of attempts: moved to `dead_letters`.
    Dead {
        /// Log-safe reason.
        error: String,
    },
}

impl Store {
    /// Claims up to `limit` due rows for `lease_ms`, at most one per conversation and only the
    /// oldest pending one, so a conversation's messages leave in order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn claim_outbox(
        &self,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedSend>, StoreError> {
        let now = now_ms();
        let lock = match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE outbox SET locked_until = $1 WHERE id IN ( \
               SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= $2 \
               AND (o.locked_until IS NULL OR o.locked_until < $2) \
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.conversation_id = o.conversation_id \
                               AND p.state = 'pending' AND p.id < o.id) \
               ORDER BY o.id LIMIT $3 {lock}) \
             RETURNING id, tenant_id, channel_account_id, channel_kind, attempts, payload"
        );
        let rows = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(ClaimedSend {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    channel_account_id: r.try_get("channel_account_id")?,
                    channel_kind: r.try_get("channel_kind")?,
                    attempts: r.try_get("attempts")?,
                    message: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(format!("outbox payload: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Releases every claim (embedded mode start-up: this process is the only sender, so a
    /// claim left by a crashed run is stale).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn release_outbox_claims(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("UPDATE outbox SET locked_until = NULL WHERE state = 'pending' AND locked_until IS NOT NULL")
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// Records a successful send.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn mark_sent(
        &self,
        send: &ClaimedSend,
        provider_message_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.mark_sent_many(&[(send, provider_message_id)]).await
    }

    /// Records several successful sends in one transaction (the dispatcher's batch).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; none was recorded.
    pub async fn mark_sent_many(
        &self,
        sent: &[(&ClaimedSend, Option<&str>)],
    ) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        for (send, provider_message_id) in sent {
            sqlx::query(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, provider_message_id = $1, \
                 locked_until = NULL, last_error = NULL, updated_at = $2 WHERE id = $3",
            )
            .bind(*provider_message_id)
            .bind(now)
            .bind(send.id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE messages SET status = 'sent' WHERE id = $1 AND tenant_id = $2")
                .bind(send.message.message_id)
                .bind(&send.tenant_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Postpones a claimed row without counting an attempt (pacing).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn defer_send(
        &self,
        send: &ClaimedSend,
        not_before_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET next_attempt_at = $1, locked_until = NULL WHERE id = $2")
            .bind(not_before_ms)
            .bind(send.id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records a failed attempt.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn record_send_failure(
        &self,
        send: &ClaimedSend,
        failure: &OutboxFailure,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        match failure {
            OutboxFailure::Retry {
                next_attempt_at,
                error,
            } => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, \
                     locked_until = NULL, updated_at = $3 WHERE id = $4",
                )
                .bind(*next_attempt_at)
                .bind(error)
                .bind(now)
                .bind(send.id)
                .execute(&mut *tx)
                .await?;
            }
            OutboxFailure::Permanent { error } | OutboxFailure::Dead { error } => {
                let state = if matches!(failure, OutboxFailure::Dead { .. }) {
                    "dead"
                } else {
                    "failed"
                };
                sqlx::query(
                    "UPDATE outbox SET state = $1, attempts = attempts + 1, last_error = $2, \
                     locked_until = NULL, updated_at = $3 WHERE id = $4",
                )
                .bind(state)
                .bind(error)
                .bind(now)
                .bind(send.id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE messages SET status = 'failed', error = $1 WHERE id = $2 AND tenant_id = $3")
                    .bind(error)
                    .bind(send.message.message_id)
                    .bind(&send.tenant_id)
                    .execute(&mut *tx)
                    .await?;
                if state == "dead" {
                    let payload = serde_json::to_string(&send.message)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    sqlx::query(
                        "INSERT INTO dead_letters (tenant_id, source, ref_id, reason, payload, created_at) \
                         VALUES ($1, 'outbox', $2, $3, $4, $5)",
                    )
                    .bind(&send.tenant_id)
                    .bind(send.id)
                    .bind(error)
                    .bind(payload)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues the re-engagement `template` to the customer of the message we sent as
    /// `provider_message_id`, after WhatsApp reported it failed because the 24-hour window was
    /// closed (error 131047 arriving as a status). Returns `false`, changing nothing, when the
    /// message is unknown, was itself a template, or was already re-engaged (the status
    /// webhook is retried by Meta).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn enqueue_reengagement(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        provider_message_id: &str,
        template: &channels::model::Template,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "SELECT conversation_id, channel_kind, message_id, payload FROM outbox \
             WHERE tenant_id = $1 AND channel_account_id = $2 AND provider_message_id = $3 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(provider_message_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let payload: String = row.try_get("payload")?;
        let original: OutboundMessage =
            serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if original.template.is_some() {
            return Ok(false);
        }
        let conversation_id: String = row.try_get("conversation_id")?;
        let channel_kind: String = row.try_get("channel_kind")?;
        let original_id: i64 = row.try_get("message_id")?;
        let key = format!("reengage-{original_id}");
        let exists = sqlx::query("SELECT 1 AS one FROM outbox WHERE idempotency_key = $1")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Ok(false);
        }
        let body = format!("[template {}]", template.name);
        let message_id: i64 = sqlx::query(
            "INSERT INTO messages (tenant_id, conversation_id, author, body, status, created_at) \
             VALUES ($1, $2, 'bot', $3, 'pending', $4) RETURNING id",
        )
        .bind(tenant_id)
        .bind(&conversation_id)
        .bind(&body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let outbound = OutboundMessage {
            message_id,
            text: body,
            choices: Vec::new(),
            in_reply_to: Vec::new(),
            created_at_ms: now,
            idempotency_key: key,
            template: Some(template.clone()),
            ..original
        };
        let payload =
            serde_json::to_string(&outbound).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO outbox (tenant_id, conversation_id, channel_account_id, channel_kind, message_id, \
             idempotency_key, payload, state, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $8)",
        )
        .bind(tenant_id)
        .bind(&conversation_id)
        .bind(channel_account_id)
        .bind(&channel_kind)
        .bind(message_id)
        .bind(&outbound.idempotency_key)
        .bind(&payload)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Number of dead-lettered sends (for metrics and tests).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn dead_letter_count(&self, tenant_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM dead_letters WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_one(&self.read)
                .await?
                .try_get("n")?,
        )
    }
}
