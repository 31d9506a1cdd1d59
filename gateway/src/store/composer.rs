//! What the console's composer reads besides the queue: where a typing indicator goes. Every
//! statement is scoped by tenant.

use sqlx::Row;

use super::{Store, StoreError};

/// Where a conversation's typing indicator goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingTarget {
    /// The channel account the conversation runs on.
    pub channel_account_id: String,
    /// Its channel kind.
    pub channel_kind: channels::ChannelKind,
    /// The customer's provider address.
    pub recipient: String,
    /// The provider id of the customer's latest message (WhatsApp marks it read with the
    /// indicator); `None` before the customer wrote.
    pub last_inbound_id: Option<String>,
}

impl Store {
    /// Where the typing indicator of the tenant's conversation `id` goes; `None` when the
    /// tenant has no such conversation.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn typing_target(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<TypingTarget>, StoreError> {
        let row = sqlx::query(
            "SELECT c.channel_account_id, a.kind, k.external_id AS recipient, \
             (SELECT i.external_id FROM inbox i WHERE i.tenant_id = c.tenant_id AND i.conversation_id = c.id \
              ORDER BY i.id DESC LIMIT 1) AS last_inbound \
             FROM conversations c \
             JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<_, StoreError> {
            Ok(TypingTarget {
                channel_account_id: r.try_get("channel_account_id")?,
                channel_kind: super::channel_kind_of(&r, "kind")?,
                recipient: r.try_get("recipient")?,
                last_inbound_id: r.try_get("last_inbound")?,
            })
        })
        .transpose()
    }
}
