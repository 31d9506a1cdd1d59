//! What the console reads besides the queue: where a typing indicator goes, the customer's
//! other channels and conversations, the media of a conversation. Every
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
    /// The staff member the conversation is assigned to, if any.
    pub assignee: Option<String>,
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
            "SELECT c.channel_account_id, a.kind, k.external_id AS recipient, c.assignee, \
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
                assignee: r.try_get("assignee")?,
            })
        })
        .transpose()
    }
}

/// Another address of the customer: the conversation's own contact, or a contact of the tenant
/// with the same phone number on another channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactChannel {
    /// Channel kind.
    pub channel: String,
    /// The provider address (phone number, chat id, web session).
    pub address: String,
    /// The name the provider gave.
    pub name: Option<String>,
    /// The username (Telegram, WhatsApp usernames).
    pub username: Option<String>,
}

/// Another conversation with the same customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastConversation {
    /// Conversation id.
    pub id: String,
    /// Channel kind.
    pub channel: String,
    /// `bot`, `waiting_human`, `human` or `closed`.
    pub state: String,
    /// Why it was handed off, if it was.
    pub handoff_reason: Option<String>,
    /// The latest message's text (notes excluded).
    pub last_message: Option<String>,
    /// When it started (Unix ms).
    pub created_at_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_at_ms: i64,
}

/// Contacts `k2` that are the same customer as contact `k`: itself, or one with the same phone
/// number (a shared Telegram contact card, a WhatsApp number), `+` ignored.
const SAME_CUSTOMER: &str = "k2.tenant_id = k.tenant_id AND (k2.id = k.id \
     OR (k.phone IS NOT NULL AND (REPLACE(k2.phone, '+', '') = REPLACE(k.phone, '+', '') \
         OR k2.external_id = REPLACE(k.phone, '+', ''))) \
     OR (k2.phone IS NOT NULL AND REPLACE(k2.phone, '+', '') = k.external_id))";

impl Store {
    /// The channels the customer of the tenant's conversation `id` is known on.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn contact_channels(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Vec<ContactChannel>, StoreError> {
        let sql = format!(
            "SELECT a.kind, k2.external_id, k2.display_name, k2.username FROM conversations c \
             JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             JOIN contacts k2 ON {SAME_CUSTOMER} \
             JOIN channel_accounts a ON a.id = k2.channel_account_id AND a.tenant_id = k2.tenant_id \
             WHERE c.tenant_id = $1 AND c.id = $2 ORDER BY k2.created_at, k2.id LIMIT 20"
        );
        sqlx::query(&sql)
            .bind(tenant_id)
            .bind(id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                Ok(ContactChannel {
                    channel: r.try_get("kind")?,
                    address: r.try_get("external_id")?,
                    name: r.try_get("display_name")?,
                    username: r.try_get("username")?,
                })
            })
            .collect()
    }

    /// The customer's other conversations with the tenant (any of their channels), most
    /// recent first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn contact_history(
        &self,
        tenant_id: &str,
        id: &str,
        limit: i64,
    ) -> Result<Vec<PastConversation>, StoreError> {
        let sql = format!(
            "SELECT c2.id, a.kind, c2.state, c2.handoff_reason, c2.created_at, c2.updated_at, \
             (SELECT m.body FROM messages m WHERE m.tenant_id = c2.tenant_id AND m.conversation_id = c2.id \
              AND m.author <> 'note' ORDER BY m.id DESC LIMIT 1) AS last_message \
             FROM conversations c \
             JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             JOIN contacts k2 ON {SAME_CUSTOMER} \
             JOIN conversations c2 ON c2.contact_id = k2.id AND c2.tenant_id = k2.tenant_id \
             JOIN channel_accounts a ON a.id = c2.channel_account_id AND a.tenant_id = c2.tenant_id \
             WHERE c.tenant_id = $1 AND c.id = $2 AND c2.id <> c.id \
             ORDER BY c2.updated_at DESC, c2.id LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(tenant_id)
            .bind(id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                Ok(PastConversation {
                    id: r.try_get("id")?,
                    channel: r.try_get("kind")?,
                    state: r.try_get("state")?,
                    handoff_reason: r.try_get("handoff_reason")?,
                    last_message: r.try_get("last_message")?,
                    created_at_ms: r.try_get("created_at")?,
                    updated_at_ms: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// The customer messages of the tenant's conversation `id` that carry a media file:
    /// `(message id, media JSON)`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_media(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        sqlx::query(
            "SELECT id, media FROM messages WHERE tenant_id = $1 AND conversation_id = $2 \
             AND author = 'customer' AND media IS NOT NULL ORDER BY id LIMIT 500",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("media")?)))
        .collect()
    }
}
