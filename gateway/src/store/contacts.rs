//! Provider contacts: reachability (a customer who blocked the bot gets no sends), shared
//! phone numbers, chat migrations, edited messages, stored choices, and the Telegram
//! long-polling offset of a channel account.

use sqlx::Row;

use super::{Store, StoreError};

/// New identifiers of a contact (see [`Store::change_contact_ids`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ContactIdsChange<'a> {
    /// The new phone number.
    pub phone: Option<&'a str>,
    /// The new business-scoped user id.
    pub user_id: Option<&'a str>,
    /// The new parent business-scoped user id.
    pub parent_user_id: Option<&'a str>,
}

/// A contact's stored identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactIds {
    /// The address messages are sent to (phone number, else user id).
    pub external_id: String,
    /// Business-scoped user id.
    pub user_id: Option<String>,
    /// Parent business-scoped user id.
    pub parent_user_id: Option<String>,
    /// Username.
    pub username: Option<String>,
}

impl Store {
    /// Marks the contact `(channel_account_id, external_id)` reachable or not; returns whether
    /// a contact was found. A customer's next message marks them reachable again.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_contact_reachable(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
        reachable: bool,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE contacts SET unreachable = $1 WHERE tenant_id = $2 AND channel_account_id = $3 AND external_id = $4",
        )
        .bind(i64::from(!reachable))
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Marks the contact of a conversation unreachable (the provider said so when sending).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn mark_conversation_unreachable(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE contacts SET unreachable = 1 WHERE tenant_id = $1 AND id = \
             (SELECT contact_id FROM conversations WHERE tenant_id = $1 AND id = $2)",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Whether the customer of a conversation is marked unreachable.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_unreachable(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT k.unreachable FROM conversations c JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.id = $2",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("unreachable")? != 0,
            None => false,
        })
    }

    /// Which of `conversation_ids` belong to a customer marked unreachable (the dispatcher's
    /// check for a whole claimed batch, in one query).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn unreachable_conversations(
        &self,
        conversation_ids: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if conversation_ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let placeholders: Vec<String> = (1..=conversation_ids.len())
            .map(|i| format!("${i}"))
            .collect();
        let sql = format!(
            "SELECT c.id FROM conversations c JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             WHERE k.unreachable <> 0 AND c.id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in conversation_ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
            .collect()
    }

    /// Stores the phone number the customer shared (their own contact card).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_contact_phone(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
        phone: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE contacts SET phone = $1 WHERE tenant_id = $2 AND channel_account_id = $3 AND external_id = $4",
        )
        .bind(phone)
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The phone number a contact shared, if any (identity, OTP).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn contact_phone(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT phone FROM contacts WHERE tenant_id = $1 AND channel_account_id = $2 AND external_id = $3",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => r.try_get("phone")?,
            None => None,
        })
    }

    /// Whether the contact is marked unreachable (`None`: no such contact).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn contact_unreachable(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
    ) -> Result<Option<bool>, StoreError> {
        let row = sqlx::query(
            "SELECT unreachable FROM contacts WHERE tenant_id = $1 AND channel_account_id = $2 AND external_id = $3",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| Ok(r.try_get::<i64, _>("unreachable")? != 0))
            .transpose()
    }

    /// Moves a contact to a new provider address (a Telegram group that became a supergroup).
    /// Nothing happens when the new address already has a contact.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn move_contact(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        from_external_id: &str,
        to_external_id: &str,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "SELECT id FROM contacts WHERE channel_account_id = $1 AND external_id = $2",
        )
        .bind(channel_account_id)
        .bind(to_external_id)
        .fetch_optional(&self.write)
        .await?;
        if taken.is_some() {
            return Ok(false);
        }
        let changed = sqlx::query(
            "UPDATE contacts SET external_id = $1 WHERE tenant_id = $2 AND channel_account_id = $3 AND external_id = $4",
        )
        .bind(to_external_id)
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(from_external_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Replaces the stored text of a customer message the customer edited; the message is not
    /// answered again (an unanswered one is answered with the new text). Returns whether the
    /// message was known.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn edit_inbound_text(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
        text: &str,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE messages SET body = $1 WHERE tenant_id = $2 AND author = 'customer' AND inbox_id = \
             (SELECT id FROM inbox WHERE tenant_id = $2 AND channel_account_id = $3 AND external_id = $4)",
        )
        .bind(super::storable(text).into_owned())
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    /// Marks customer message `external_id` deleted by the customer: its text is replaced by
    /// a marker agents see, and it is never answered (a still pending one is settled). Returns
    /// whether the message was known.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn revoke_inbound(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let changed = sqlx::query(
            "UPDATE messages SET body = '[message deleted by the customer]', content_kind = 'revoked', media = NULL \
             WHERE tenant_id = $1 AND author = 'customer' AND inbox_id = \
             (SELECT id FROM inbox WHERE tenant_id = $1 AND channel_account_id = $2 AND external_id = $3)",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE inbox SET processed_at = $1 WHERE tenant_id = $2 AND channel_account_id = $3 \
             AND external_id = $4 AND processed_at IS NULL",
        )
        .bind(at_ms)
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(changed > 0)
    }

    /// Changes the addresses of the contact known by `known_as` (its phone number or
    /// business-scoped user id): a new phone number becomes its address, a new user id
    /// replaces the old one. The contact keeps its conversations. A new phone number that
    /// already belongs to another contact is not taken (that contact stays as it is). Returns
    /// whether a contact was found.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn change_contact_ids(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        known_as: &str,
        ids: &ContactIdsChange<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "SELECT id, external_id, user_id FROM contacts WHERE tenant_id = $1 AND channel_account_id = $2 \
             AND (external_id = $3 OR user_id = $3) \
             ORDER BY CASE WHEN external_id = $3 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(known_as)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let id: String = row.try_get("id")?;
        let external_id: String = row.try_get("external_id")?;
        let old_user_id: Option<String> = row.try_get("user_id")?;
        // The address we send to: the new phone number, else (for a contact addressed by its
        // user id) the new user id.
        let address = match (ids.phone, ids.user_id) {
            (Some(phone), _) => Some(phone),
            (None, Some(user_id)) if old_user_id.as_deref() == Some(external_id.as_str()) => {
                Some(user_id)
            }
            _ => None,
        };
        let taken = match address {
            Some(address) => sqlx::query(
                "SELECT id FROM contacts WHERE channel_account_id = $1 AND external_id = $2 AND id <> $3",
            )
            .bind(channel_account_id)
            .bind(address)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some(),
            None => true,
        };
        if let (Some(address), false) = (address, taken) {
            sqlx::query("UPDATE contacts SET external_id = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(address)
                .bind(tenant_id)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(user_id) = ids.user_id {
            let owner = sqlx::query(
                "SELECT id FROM contacts WHERE channel_account_id = $1 AND user_id = $2 AND id <> $3",
            )
            .bind(channel_account_id)
            .bind(user_id)
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
            if owner.is_none() {
                sqlx::query(
                    "UPDATE contacts SET user_id = $1, parent_user_id = COALESCE($2, parent_user_id) \
                     WHERE tenant_id = $3 AND id = $4",
                )
                .bind(user_id)
                .bind(ids.parent_user_id)
                .bind(tenant_id)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A contact's identifiers as `(external_id, user_id, parent_user_id, username)`, found
    /// by its address or user id (tests, console).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn contact_ids(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        known_as: &str,
    ) -> Result<Option<ContactIds>, StoreError> {
        let row = sqlx::query(
            "SELECT external_id, user_id, parent_user_id, username FROM contacts \
             WHERE tenant_id = $1 AND channel_account_id = $2 AND (external_id = $3 OR user_id = $3) LIMIT 1",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(known_as)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(ContactIds {
                external_id: r.try_get("external_id")?,
                user_id: r.try_get("user_id")?,
                parent_user_id: r.try_get("parent_user_id")?,
                username: r.try_get("username")?,
            })
        })
        .transpose()
    }

    /// The text of customer message `external_id` (tests, console).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn inbound_text(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT m.body FROM messages m JOIN inbox i ON i.id = m.inbox_id \
             WHERE m.tenant_id = $1 AND i.channel_account_id = $2 AND i.external_id = $3",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(external_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| r.try_get("body").map_err(StoreError::from))
            .transpose()
    }

    /// Choice `index` of the bot message sent as `provider_message_id` through the account
    /// (inline keyboard buttons whose text did not fit in `callback_data`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn sent_choice(
        &self,
        tenant_id: &str,
        channel_account_id: &str,
        provider_message_id: &str,
        index: usize,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT m.choices FROM messages m JOIN outbox o ON o.message_id = m.id AND o.tenant_id = m.tenant_id \
             WHERE o.tenant_id = $1 AND o.channel_account_id = $2 AND o.provider_message_id = $3 \
             ORDER BY o.id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(channel_account_id)
        .bind(provider_message_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let choices: Option<String> = row.try_get("choices")?;
        Ok(choices
            .and_then(|c| serde_json::from_str::<Vec<String>>(&c).ok())
            .and_then(|c| c.into_iter().nth(index)))
    }

    /// The next `getUpdates` offset of a channel account (0 when never polled).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn poll_offset(&self, channel_account_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT poll_offset FROM channel_accounts WHERE id = $1")
            .bind(channel_account_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>, _>("poll_offset")?.unwrap_or(0),
            None => 0,
        })
    }

    /// Stores the next `getUpdates` offset (only ever moves forward).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn set_poll_offset(
        &self,
        channel_account_id: &str,
        offset: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE channel_accounts SET poll_offset = $1 WHERE id = $2 AND (poll_offset IS NULL OR poll_offset < $1)",
        )
        .bind(offset)
        .bind(channel_account_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
