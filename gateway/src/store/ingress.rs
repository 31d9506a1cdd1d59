//! Inbound messages: inbox insert (the dedupe) plus the customer's message, many per transaction.

use sqlx::Row;

use super::{Store, StoreError, StoredMessage};

/// One customer message to accept.
#[derive(Debug, Clone)]
pub struct InboundItem {
    /// Tenant slug.
    pub tenant_id: String,
    /// Channel account it arrived on.
    pub channel_account_id: String,
    /// Conversation it belongs to.
    pub conversation_id: String,
    /// Provider or client id; unique per channel account.
    pub external_id: String,
    /// Text.
    pub text: String,
    /// `text`, `choice` or `command`.
    pub kind: &'static str,
    /// Unix milliseconds.
    pub received_at_ms: i64,
    /// Channel kind, for metrics.
    pub channel_kind: &'static str,
}

/// What happened to one [`InboundItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored for the first time.
    New {
        /// The stored customer message.
        message: StoredMessage,
    },
    /// Already stored earlier (a provider or client retry); nothing changed.
    Duplicate,
}

impl Store {
    /// Stores a group of inbound messages in one transaction (group commit) and reports, in
    /// input order, which were new. Nothing is stored if it fails.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]: the caller must not acknowledge any of the items.
    pub async fn accept_inbound(&self, items: &[InboundItem]) -> Result<Vec<Accepted>, StoreError> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        // Lock conversations in one global order so concurrent group commits cannot deadlock.
        order.sort_by(|a, b| items[*a].conversation_id.cmp(&items[*b].conversation_id));
        let mut results = vec![Accepted::Duplicate; items.len()];
        let mut tx = self.write.begin().await?;
        for index in order {
            let item = &items[index];
            let inserted = sqlx::query(
                "INSERT INTO inbox (tenant_id, channel_account_id, external_id, conversation_id, kind, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel_account_id, external_id) DO NOTHING RETURNING id",
            )
            .bind(&item.tenant_id)
            .bind(&item.channel_account_id)
            .bind(&item.external_id)
            .bind(&item.conversation_id)
            .bind(item.kind)
            .bind(item.received_at_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = inserted else {
                continue;
            };
            let inbox_id: i64 = row.try_get("id")?;
            sqlx::query(
                "UPDATE conversations SET last_inbound_at = $1, updated_at = $1 WHERE id = $2 AND tenant_id = $3",
            )
            .bind(item.received_at_ms)
            .bind(&item.conversation_id)
            .bind(&item.tenant_id)
            .execute(&mut *tx)
            .await?;
            let message_id: i64 = sqlx::query(
                "INSERT INTO messages (tenant_id, conversation_id, author, body, external_id, inbox_id, created_at) \
                 VALUES ($1, $2, 'customer', $3, $4, $5, $6) RETURNING id",
            )
            .bind(&item.tenant_id)
            .bind(&item.conversation_id)
            .bind(&item.text)
            .bind(&item.external_id)
            .bind(inbox_id)
            .bind(item.received_at_ms)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
            results[index] = Accepted::New {
                message: StoredMessage {
                    id: message_id,
                    author: "customer".to_owned(),
                    body: item.text.clone(),
                    external_id: Some(item.external_id.clone()),
                    in_reply_to: Vec::new(),
                    choices: Vec::new(),
                    status: None,
                    citations: Vec::new(),
                    created_at_ms: item.received_at_ms,
                },
            };
        }
        tx.commit().await?;
        Ok(results)
    }
}
