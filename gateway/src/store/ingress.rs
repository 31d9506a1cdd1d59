//! Inbound messages: inbox insert (the dedupe) plus the customer's message, many per transaction.
//! Provider channels (WhatsApp) do not know the conversation up front: their items name the
//! contact, and the contact and its open conversation are resolved inside the same transaction.

use sqlx::Row;

use super::usage::{UsageBatch, UsageDays, UsageDelta};
use super::{Refusal, Store, StoreError, StoredMessage, storable};

/// The customer on a provider channel, to resolve into a contact and open conversation.
#[derive(Debug, Clone)]
pub struct ContactRef {
    /// The customer's provider address (WhatsApp `wa_id`), unique per channel account.
    pub external_id: String,
    /// Profile name, if the provider sent one.
    pub display_name: Option<String>,
    /// Locale of a newly created conversation.
    pub locale: String,
    /// The customer's business-scoped user id (WhatsApp usernames), when sent: links the
    /// contact known by phone number and the one known by user id.
    pub user_id: Option<String>,
    /// The parent business-scoped user id, when sent.
    pub parent_user_id: Option<String>,
    /// The customer's username, when sent.
    pub username: Option<String>,
}

/// Where an inbound message belongs.
#[derive(Debug, Clone)]
pub enum InboundTarget {
    /// A known conversation (web chat sessions).
    Conversation(String),
    /// Find or create the contact and its open conversation (provider channels).
    Contact(ContactRef),
}

impl InboundTarget {
    fn lock_key(&self) -> &str {
        match self {
            Self::Conversation(id) => id,
            Self::Contact(contact) => &contact.external_id,
        }
    }
}

/// One customer message to accept.
#[derive(Debug, Clone)]
pub struct InboundItem {
    /// Tenant slug.
    pub tenant_id: String,
    /// Channel account it arrived on.
    pub channel_account_id: String,
    /// Conversation it belongs to, or the contact to resolve it from.
    pub target: InboundTarget,
    /// Provider or client id; unique per channel account.
    pub external_id: String,
    /// Text (for non-text content, a one-line description for agents).
    pub text: String,
    /// How it was produced (typed, a button, a command).
    pub kind: flows::TurnKind,
    /// Whether the bot should answer it; `false` stores it (deduped, visible to agents)
    /// without waking a lane (reactions, locations, media without caption).
    pub answer: bool,
    /// Content kind (`text`, `image`, `location`, …) when it is not plain text.
    pub content_kind: Option<&'static str>,
    /// Media metadata as JSON (provider media id, MIME type, hash, file name).
    pub media: Option<String>,
    /// Unix milliseconds.
    pub received_at_ms: i64,
    /// Channel kind.
    pub channel_kind: channels::ChannelKind,
    /// The OpenTelemetry trace id of the request that brought it (set by the ingress writer).
    pub trace_id: Option<String>,
}

/// How a provider message's content is stored: what the bot reads, whether it answers, and the
/// content kind and media metadata agents see.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContent {
    /// Text (for non-text content without a caption, a one-line description for agents).
    pub text: String,
    /// Typed text or a choice (a tapped button or list row).
    pub kind: flows::TurnKind,
    /// Whether the bot answers it (false: reactions, locations, media without caption).
    pub answer: bool,
    /// Content kind when it is not plain text.
    pub content_kind: Option<&'static str>,
    /// Media or location metadata as JSON.
    pub media: Option<String>,
}

impl StoredContent {
    /// The stored form of `content`.
    pub fn of(content: &channels::model::MessageContent) -> Self {
        use channels::model::{MessageContent, TurnHint};
        let answer = content.answer_text();
        let hint = content.reply_hint();
        let (text, kind) = match (answer, hint) {
            (Some((text, TurnHint::Choice)), _) => (text.to_owned(), flows::TurnKind::Choice),
            (Some((text, _)), _) => (text.to_owned(), flows::TurnKind::Text),
            // Orders and chat openings are stored readable for agents; the engine answers
            // them by kind (an acknowledgement, a greeting), never from their text.
            (None, Some(TurnHint::Order)) => (content.display_text(), flows::TurnKind::Order),
            (None, Some(TurnHint::Welcome)) => (content.display_text(), flows::TurnKind::Welcome),
            (None, _) => (content.display_text(), flows::TurnKind::Text),
        };
        let media = match content {
            MessageContent::Media { kind, media, .. } => {
                serde_json::to_string(&serde_json::json!({
                    "kind": kind.as_str(),
                    "id": media.id,
                    "mime_type": media.mime_type,
                    "sha256": media.sha256,
                    "filename": media.filename,
                }))
                .ok()
            }
            MessageContent::Location {
                latitude,
                longitude,
                name,
                address,
            } => serde_json::to_string(&serde_json::json!({
                "kind": "location", "latitude": latitude, "longitude": longitude,
                "name": name, "address": address,
            }))
            .ok(),
            // Product ids, quantities and prices, for agents and order tooling.
            MessageContent::Order {
                catalog_id,
                note,
                items,
            } => serde_json::to_string(&serde_json::json!({
                "kind": "order", "catalog_id": catalog_id, "note": note, "items": items,
            }))
            .ok(),
            // The flow's answers, kept whole for the flow engine (as JSON when they parse).
            MessageContent::FlowReply {
                name,
                body,
                response_json,
            } => serde_json::to_string(&serde_json::json!({
                "kind": "nfm_reply", "name": name, "body": body,
                "response_json": serde_json::from_str::<serde_json::Value>(response_json)
                    .unwrap_or_else(|_| serde_json::Value::String(response_json.clone())),
            }))
            .ok(),
            _ => None,
        };
        let content_kind = match content {
            MessageContent::Text { .. } => None,
            other => Some(other.kind_name()),
        };
        Self {
            text,
            kind,
            answer: hint.is_some(),
            content_kind,
            media,
        }
    }
}

/// What happened to one [`InboundItem`].
// A short-lived per-request value, almost always `New`: boxing would add an allocation per
// inbound message for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored for the first time.
    New {
        /// The conversation it was stored in.
        conversation_id: String,
        /// The stored customer message.
        message: StoredMessage,
    },
    /// Already stored earlier (a provider or client retry); nothing changed.
    Duplicate,
    /// Not stored: the database refused this item for good (retrying it cannot succeed); the
    /// other items of its group were stored.
    Refused {
        /// What the sender can change.
        refusal: Refusal,
        /// The database's error with its causes, for the log.
        cause: String,
    },
}

impl Store {
    /// Stores a group of inbound messages in one transaction (group commit) and reports, in
    /// input order, which were new. An item the database refuses for good (see
    /// [`Store::refusal`]) is reported [`Accepted::Refused`] and the others are stored: the
    /// group is stored again with a savepoint around each item. Otherwise nothing is stored
    /// if it fails.
    ///
    /// Web chat items (those naming their conversation) are deduplicated within their
    /// conversation: two sessions may use the same client message id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]: the caller must not acknowledge any of the items.
    pub async fn accept_inbound(&self, items: &[InboundItem]) -> Result<Vec<Accepted>, StoreError> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        // Lock conversations in one global order so concurrent group commits cannot deadlock;
        // a stable sort keeps one customer's messages in arrival order.
        order.sort_by(|a, b| items[*a].target.lock_key().cmp(items[*b].target.lock_key()));
        match self.accept_group(items, &order, false).await {
            // The fast path has no savepoints (two more statements per item); they are only
            // paid for when an item needs isolating.
            Err(err) if self.refusal(&err).is_some() => {
                self.accept_group(items, &order, true).await
            }
            other => other,
        }
    }

    async fn accept_group(
        &self,
        items: &[InboundItem],
        order: &[usize],
        isolate: bool,
    ) -> Result<Vec<Accepted>, StoreError> {
        let mut usage = UsageBatch::default();
        let mut tx = self.write.begin().await?;
        let results = if !isolate && super::inbound_batch::batchable(items) {
            // A fixed handful of statements for the whole group (see `inbound_batch`).
            super::inbound_batch::accept_batched(&mut tx, items, order, (&self.days, &mut usage))
                .await?
        } else {
            self.accept_rows(&mut tx, items, order, isolate, &mut usage)
                .await?
        };
        usage.flush(&mut tx).await?;
        tx.commit().await?;
        Ok(results)
    }

    /// Stores `items` one by one inside `tx`; with `isolate`, each in a savepoint, so an item
    /// the database refuses for good is reported and the others are stored.
    async fn accept_rows(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        items: &[InboundItem],
        order: &[usize],
        isolate: bool,
        usage: &mut UsageBatch,
    ) -> Result<Vec<Accepted>, StoreError> {
        let mut results = vec![Accepted::Duplicate; items.len()];
        for &index in order {
            let item = &items[index];
            if !isolate {
                results[index] = accept_one(tx, item, &self.days, usage).await?;
                continue;
            }
            let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
            let mut counted = UsageBatch::default();
            match accept_one(&mut savepoint, item, &self.days, &mut counted).await {
                Ok(outcome) => {
                    savepoint.commit().await?;
                    usage.merge(counted);
                    results[index] = outcome;
                }
                Err(err) => {
                    let Some(refusal) = self.refusal(&err) else {
                        return Err(err);
                    };
                    savepoint.rollback().await?;
                    results[index] = Accepted::Refused {
                        refusal,
                        cause: err.chain().to_string(),
                    };
                }
            }
        }
        Ok(results)
    }
}

/// The inbox's dedupe key of `item`: the provider's message id for provider channels (unique
/// per channel account), and `<conversation id>:<client message id>` for web chat, whose
/// client ids are only unique within one session's conversation.
pub(super) fn inbox_key(item: &InboundItem) -> String {
    let external = storable(&item.external_id);
    match &item.target {
        InboundTarget::Conversation(conversation) => format!("{conversation}:{external}"),
        InboundTarget::Contact(_) => external.into_owned(),
    }
}

/// Stores one item inside the group's transaction.
async fn accept_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item: &InboundItem,
    days: &UsageDays,
    usage: &mut UsageBatch,
) -> Result<Accepted, StoreError> {
    let key = inbox_key(item);
    let conversation_id = match &item.target {
        InboundTarget::Conversation(id) => id.clone(),
        InboundTarget::Contact(contact) => {
            let seen = sqlx::query(
                "SELECT id FROM inbox WHERE channel_account_id = $1 AND external_id = $2",
            )
            .bind(&item.channel_account_id)
            .bind(&key)
            .fetch_optional(&mut **tx)
            .await?;
            if seen.is_some() {
                return Ok(Accepted::Duplicate);
            }
            resolve_conversation(tx, item, contact).await?
        }
    };
    let inserted = sqlx::query(
        "INSERT INTO inbox (tenant_id, channel_account_id, external_id, conversation_id, kind, received_at, processed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel_account_id, external_id) DO NOTHING RETURNING id",
    )
    .bind(&item.tenant_id)
    .bind(&item.channel_account_id)
    .bind(&key)
    .bind(&conversation_id)
    .bind(item.kind.as_str())
    .bind(item.received_at_ms)
    .bind((!item.answer).then_some(item.received_at_ms))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = inserted else {
        return Ok(Accepted::Duplicate);
    };
    let inbox_id: i64 = row.try_get("id")?;
    // One statement (each is a round trip to the writer's thread) stamps the conversation and
    // says whether this is its first customer message: a conversation counts on that day.
    let inbound_count: i64 = sqlx::query(
        "UPDATE conversations SET last_inbound_at = $1, updated_at = $1, inbound_count = inbound_count + 1, \
         first_inbound_at = COALESCE(first_inbound_at, $1) \
         WHERE id = $2 AND tenant_id = $3 RETURNING inbound_count",
    )
    .bind(item.received_at_ms)
    .bind(&conversation_id)
    .bind(&item.tenant_id)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.try_get("inbound_count"))
    .transpose()?
    .unwrap_or(0);
    usage.add(
        &item.tenant_id,
        days.day(&item.tenant_id, item.received_at_ms),
        item.channel_kind.as_str(),
        &UsageDelta {
            messages_in: 1,
            conversations: i64::from(inbound_count == 1),
            ..UsageDelta::default()
        },
    );
    let text = storable(&item.text).into_owned();
    let external_id = storable(&item.external_id).into_owned();
    let message_id: i64 = sqlx::query(
        "INSERT INTO messages (tenant_id, conversation_id, author, body, external_id, inbox_id, content_kind, media, created_at, trace_id) \
         VALUES ($1, $2, 'customer', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&item.tenant_id)
    .bind(&conversation_id)
    .bind(&text)
    .bind(&external_id)
    .bind(inbox_id)
    .bind(item.content_kind)
    .bind(item.media.as_deref().map(|m| storable(m).into_owned()))
    .bind(item.received_at_ms)
    .bind(item.trace_id.as_deref())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok(Accepted::New {
        conversation_id,
        message: StoredMessage::customer(item, message_id),
    })
}

/// Upserts the contact (keeping its latest profile name) and returns its open conversation,
/// creating one in `bot` state when it has none. The contact upsert takes the contact's row
/// lock, so concurrent writers for one customer never create two open conversations.
async fn resolve_conversation(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item: &InboundItem,
    contact: &ContactRef,
) -> Result<String, StoreError> {
    let contact_id = resolve_contact(tx, item, contact).await?;
    let open = sqlx::query(
        "SELECT id FROM conversations WHERE tenant_id = $1 AND contact_id = $2 AND state <> 'closed' \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(&item.tenant_id)
    .bind(&contact_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = open {
        return Ok(row.try_get("id")?);
    }
    let conversation_id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, channel_account_id, contact_id, state, locale, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'bot', $5, $6, $6)",
    )
    .bind(&conversation_id)
    .bind(&item.tenant_id)
    .bind(&item.channel_account_id)
    .bind(&contact_id)
    .bind(&contact.locale)
    .bind(item.received_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(conversation_id)
}

/// The contact of `contact`: found by its address or by its business-scoped user id, else
/// created. When the address and the user id name two different contacts (the customer wrote
/// once by phone and once by username only), they are linked: the user id's contact's
/// conversations move to the address's contact, which takes over the user id. A contact
/// known by user id only takes the phone number as its address once it is known.
async fn resolve_contact(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item: &InboundItem,
    contact: &ContactRef,
) -> Result<String, StoreError> {
    let account = &item.channel_account_id;
    if contact.user_id.is_none() {
        // Phone only (nearly every customer): no user id to link, so one upsert by address
        // (the single writer's group commit runs this for every inbound message).
        return insert_contact(tx, item, contact).await;
    }
    let by_address: Option<String> = sqlx::query(
        "SELECT id FROM contacts WHERE tenant_id = $1 AND channel_account_id = $2 AND external_id = $3",
    )
    .bind(&item.tenant_id)
    .bind(account)
    .bind(&contact.external_id)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| r.try_get("id"))
    .transpose()?;
    let by_user_id: Option<String> = match &contact.user_id {
        Some(user_id) => sqlx::query(
            "SELECT id FROM contacts WHERE tenant_id = $1 AND channel_account_id = $2 \
             AND (user_id = $3 OR external_id = $3) \
             ORDER BY CASE WHEN user_id = $3 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(&item.tenant_id)
        .bind(account)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?,
        None => None,
    };
    let found = match (by_address, by_user_id) {
        (Some(address), Some(user)) if address != user => {
            sqlx::query(
                "UPDATE conversations SET contact_id = $1 WHERE tenant_id = $2 AND contact_id = $3",
            )
            .bind(&address)
            .bind(&item.tenant_id)
            .bind(&user)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM contacts WHERE tenant_id = $1 AND id = $2")
                .bind(&item.tenant_id)
                .bind(&user)
                .execute(&mut **tx)
                .await?;
            Some(address)
        }
        (Some(address), _) => Some(address),
        (None, Some(user)) => {
            // Known by user id only so far: the phone number, when this message has one,
            // becomes the address we send to. A username-only message keeps a known number.
            if contact.user_id.as_deref() != Some(contact.external_id.as_str()) {
                sqlx::query(
                    "UPDATE contacts SET external_id = $1 WHERE tenant_id = $2 AND id = $3",
                )
                .bind(&contact.external_id)
                .bind(&item.tenant_id)
                .bind(&user)
                .execute(&mut **tx)
                .await?;
            }
            Some(user)
        }
        (None, None) => None,
    };
    if let Some(id) = found {
        sqlx::query(
            "UPDATE contacts SET display_name = COALESCE($1, display_name), unreachable = 0, \
             user_id = COALESCE($2, user_id), parent_user_id = COALESCE($3, parent_user_id), \
             username = COALESCE($4, username) WHERE tenant_id = $5 AND id = $6",
        )
        .bind(
            contact
                .display_name
                .as_deref()
                .map(|n| storable(n).into_owned()),
        )
        .bind(contact.user_id.as_deref())
        .bind(contact.parent_user_id.as_deref())
        .bind(
            contact
                .username
                .as_deref()
                .map(|n| storable(n).into_owned()),
        )
        .bind(&item.tenant_id)
        .bind(&id)
        .execute(&mut **tx)
        .await?;
        return Ok(id);
    }
    insert_contact(tx, item, contact).await
}

/// Creates the contact of `contact`, or refreshes the one with its address.
async fn insert_contact(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    item: &InboundItem,
    contact: &ContactRef,
) -> Result<String, StoreError> {
    let account = &item.channel_account_id;
    Ok(sqlx::query(
        "INSERT INTO contacts (id, tenant_id, channel_account_id, external_id, display_name, user_id, parent_user_id, username, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (channel_account_id, external_id) \
         DO UPDATE SET display_name = COALESCE(excluded.display_name, contacts.display_name), unreachable = 0 \
         RETURNING id",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(&item.tenant_id)
    .bind(account)
    .bind(&contact.external_id)
    .bind(contact.display_name.as_deref().map(|n| storable(n).into_owned()))
    .bind(contact.user_id.as_deref())
    .bind(contact.parent_user_id.as_deref())
    .bind(contact.username.as_deref().map(|n| storable(n).into_owned()))
    .bind(item.received_at_ms)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?)
}
