//! The outbox: claimed by the dispatcher, one in-flight row per conversation, in order.

use channels::ChannelKind;
use channels::model::{Author, Delivery, MediaSource, OutboundMedia, OutboundMessage};
use sqlx::Row;

use super::{Dialect, Store, StoreError, now_ms};

/// Where a customer's media file can be fetched (`Store::inbound_media`).
#[derive(Debug, Clone)]
pub struct InboundMediaRef {
    /// `messages.media`: JSON with `kind`, `id` (provider media id), `mime_type`, `sha256`,
    /// `filename` (or a location, which has no file).
    pub media: String,
    /// The channel account the message arrived through.
    pub channel_account_id: String,
    /// Its kind.
    pub channel_kind: ChannelKind,
}

/// An outbox row claimed for sending.
#[derive(Debug, Clone)]
pub struct ClaimedSend {
    /// Outbox row id.
    pub id: i64,
    /// Tenant slug.
    pub tenant_id: String,
    /// Channel account to send through.
    pub channel_account_id: String,
    /// The channel kind.
    pub channel_kind: ChannelKind,
    /// Attempts made before this one.
    pub attempts: i64,
    /// What to send.
    pub message: OutboundMessage,
    /// Provider ids of the parts already sent (a message in several parts whose earlier
    /// attempt or claim ended midway), in send order: they are not sent again.
    pub sent_parts: Vec<String>,
    /// A one-time code's send: the challenge, and the code sealed for it (the dispatcher
    /// opens it and puts it where the message has [`channels::model::CODE_PLACEHOLDER`]).
    pub otp: Option<OtpPart>,
}

/// The one-time code of a claimed send.
#[derive(Clone)]
pub struct OtpPart {
    /// The challenge id (the sealing's associated data).
    pub challenge_id: String,
    /// The code, sealed (base64); `None` when it was already scrubbed.
    pub sealed_code: Option<String>,
}

impl std::fmt::Debug for OtpPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpPart")
            .field("challenge_id", &self.challenge_id)
            .finish_non_exhaustive()
    }
}

/// What one claim took.
#[derive(Debug, Default)]
pub struct Claim {
    /// Rows to send, by id.
    pub sends: Vec<ClaimedSend>,
    /// Claimed rows whose payload could not be decoded: already dead-lettered (moved to
    /// `dead_letters`, message marked failed), each alone; the other rows are unaffected.
    pub dead: Vec<UndecodableSend>,
}

/// An outbox row that could not be decoded and was dead-lettered.
#[derive(Debug, Clone)]
pub struct UndecodableSend {
    /// Outbox row id.
    pub id: i64,
    /// Tenant slug.
    pub tenant_id: String,
    /// Why it could not be decoded.
    pub error: String,
}

/// A message an agent or integration queued for a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The stored message's id.
    pub message_id: i64,
    /// The channel kind.
    pub channel_kind: ChannelKind,
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
        Ok(self.claim_outbox_at(now_ms(), limit, lease_ms).await?.sends)
    }

    /// [`Store::claim_outbox`] as of `now` (Unix ms). A row whose payload cannot be decoded is
    /// dead-lettered at once, alone, and reported in [`Claim::dead`]; it never holds up the
    /// others.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn claim_outbox_at(
        &self,
        now: i64,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Claim, StoreError> {
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
               ORDER BY o.priority DESC, o.id LIMIT $3 {lock}) \
             RETURNING id, tenant_id, channel_account_id, channel_kind, attempts, payload, message_id, \
             otp_challenge_id, sealed_code"
        );
        let rows = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        let mut claim = Claim::default();
        let mut undecodable = Vec::new();
        for r in &rows {
            let id: i64 = r.try_get("id")?;
            let tenant_id: String = r.try_get("tenant_id")?;
            let payload: String = r.try_get("payload")?;
            let decoded = serde_json::from_str::<OutboundMessage>(&payload)
                .map_err(|e| format!("undecodable outbox payload: {e}"))
                .and_then(|message| {
                    super::channel_kind_of(r, "channel_kind")
                        .map(|kind| (message, kind))
                        .map_err(|e| format!("undecodable outbox row: {e}"))
                });
            match decoded {
                Ok((message, channel_kind)) => claim.sends.push(ClaimedSend {
                    id,
                    tenant_id,
                    channel_account_id: r.try_get("channel_account_id")?,
                    channel_kind,
                    attempts: r.try_get("attempts")?,
                    message,
                    sent_parts: Vec::new(),
                    otp: r
                        .try_get::<Option<String>, _>("otp_challenge_id")?
                        .map(|challenge_id| -> Result<OtpPart, StoreError> {
                            Ok(OtpPart {
                                challenge_id,
                                sealed_code: r.try_get("sealed_code")?,
                            })
                        })
                        .transpose()?,
                }),
                Err(error) => {
                    let message_id: i64 = r.try_get("message_id")?;
                    undecodable.push((
                        UndecodableSend {
                            id,
                            tenant_id,
                            error,
                        },
                        message_id,
                        payload,
                    ));
                }
            }
        }
        if !undecodable.is_empty() {
            self.dead_letter_undecodable(&undecodable, now).await?;
            claim.dead = undecodable.into_iter().map(|(dead, _, _)| dead).collect();
        }
        self.load_sent_parts(&mut claim.sends).await?;
        claim.sends.sort_by_key(|c| c.id);
        Ok(claim)
    }

    /// Moves undecodable claimed rows to `dead_letters` (with their raw payload, for an
    /// operator) and marks their messages failed.
    async fn dead_letter_undecodable(
        &self,
        rows: &[(UndecodableSend, i64, String)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        for (dead, message_id, payload) in rows {
            sqlx::query(
                "UPDATE outbox SET state = 'dead', last_error = $1, locked_until = NULL, sealed_code = NULL, updated_at = $2 WHERE id = $3",
            )
            .bind(&dead.error)
            .bind(now)
            .bind(dead.id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE messages SET status = 'failed', error = $1 WHERE id = $2 AND tenant_id = $3")
                .bind(&dead.error)
                .bind(message_id)
                .bind(&dead.tenant_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO dead_letters (tenant_id, source, ref_id, reason, payload, created_at) \
                 VALUES ($1, 'outbox', $2, $3, $4, $5)",
            )
            .bind(&dead.tenant_id)
            .bind(dead.id)
            .bind(&dead.error)
            .bind(super::storable(payload).into_owned())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Fills in the parts of each claimed send that were already sent (one query per claim).
    async fn load_sent_parts(&self, sends: &mut [ClaimedSend]) -> Result<(), StoreError> {
        if sends.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=sends.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT outbox_id, provider_message_id FROM outbox_parts \
             WHERE part_index IS NOT NULL AND outbox_id IN ({}) ORDER BY outbox_id, part_index",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for send in sends.iter() {
            query = query.bind(send.id);
        }
        // A reader is enough (and keeps the SQLite writer free for inbound commits): parts are
        // committed as they are sent, long before their row can be claimed again.
        for row in query.fetch_all(&self.read).await? {
            let outbox_id: i64 = row.try_get("outbox_id")?;
            if let Some(send) = sends.iter_mut().find(|s| s.id == outbox_id) {
                send.sent_parts.push(row.try_get("provider_message_id")?);
            }
        }
        Ok(())
    }

    /// Extends the claim on rows `ids` that are still claimed and pending to `until` (Unix ms):
    /// the sender's heartbeat while a send is in flight. Released or finished rows are left
    /// alone. Returns how many rows were extended.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn renew_outbox_claims(&self, ids: &[i64], until: i64) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let placeholders: Vec<String> = (2..=ids.len() + 1).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE outbox SET locked_until = $1 WHERE state = 'pending' AND locked_until IS NOT NULL \
             AND id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(until);
        for id in ids {
            query = query.bind(*id);
        }
        Ok(query.execute(&self.write).await?.rows_affected())
    }

    /// Records that part `index` of a message sent in several parts was accepted by the
    /// provider as `provider_message_id` (idempotent), before the next part is sent.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn record_sent_part(
        &self,
        send: &ClaimedSend,
        index: usize,
        provider_message_id: &str,
    ) -> Result<(), StoreError> {
        insert_part(&self.write, send, index, provider_message_id).await
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
        let delivery = Delivery {
            provider_message_id: provider_message_id.map(str::to_owned),
            ..Delivery::default()
        };
        self.mark_sent_many(&[(send, &delivery)]).await
    }

    /// Records several successful sends in one transaction (the dispatcher's batch). The
    /// last provider id goes on the outbox row; the ids of earlier parts (a long text sent as
    /// several messages) go to `outbox_parts`, so a status for any part finds the message.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; none was recorded.
    pub async fn mark_sent_many(
        &self,
        sent: &[(&ClaimedSend, &Delivery)],
    ) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        // Two statements for the whole batch, sent together (one round trip to the SQLite
        // writer): the outbox rows, then the messages' status. Parts, codes and moved chats
        // (rare) go one by one, on other rows.
        let mut script = super::script::Script::new(self.dialect);
        for part in sent.chunks(MARK_ROWS) {
            script.statement(&format!(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, provider_message_id = v.column2, \
                 locked_until = NULL, last_error = NULL, sealed_code = NULL, updated_at = v.column3 \
                 FROM (VALUES {}) AS v WHERE outbox.id = v.column1",
                super::rows(part.len(), "(?, ?, ?)")
            ));
            for (send, delivery) in part {
                script
                    .bind(send.id)?
                    .bind(delivery.provider_message_id.as_deref())?
                    .bind(now)?;
            }
            let messages: Vec<&ClaimedSend> = part
                .iter()
                .filter(|(send, _)| send.otp.is_none())
                .map(|(send, _)| *send)
                .collect();
            if !messages.is_empty() {
                script.statement(&format!(
                    "UPDATE messages SET status = 'sent' FROM (VALUES {}) AS v \
                     WHERE messages.id = v.column1 AND messages.tenant_id = v.column2",
                    super::rows(messages.len(), "(?, ?)")
                ));
                for send in messages {
                    script
                        .bind(send.message.message_id)?
                        .bind(send.tenant_id.as_str())?;
                }
            }
        }
        script.run(&mut tx).await?;
        for (send, delivery) in sent {
            for (index, part) in delivery.extra_provider_message_ids.iter().enumerate() {
                insert_part(&mut *tx, send, index, part).await?;
            }
            if let Some(otp) = &send.otp {
                super::otp::otp_send_final(
                    &mut tx,
                    &otp.challenge_id,
                    send.channel_kind,
                    false,
                    now,
                )
                .await?;
                continue;
            }
            if let Some(to) = &delivery.recipient_moved_to {
                // The customer's chat moved (a Telegram group became a supergroup): later
                // messages go to the new address, also after a restart.
                sqlx::query(
                    "UPDATE contacts SET external_id = $1 WHERE tenant_id = $2 AND channel_account_id = $3 \
                     AND external_id = $4 AND NOT EXISTS \
                     (SELECT 1 FROM contacts t WHERE t.channel_account_id = $3 AND t.external_id = $1)",
                )
                .bind(to)
                .bind(&send.tenant_id)
                .bind(&send.channel_account_id)
                .bind(&send.message.recipient)
                .execute(&mut *tx)
                .await?;
            }
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
                     locked_until = NULL, sealed_code = NULL, updated_at = $3 WHERE id = $4",
                )
                .bind(state)
                .bind(error)
                .bind(now)
                .bind(send.id)
                .execute(&mut *tx)
                .await?;
                if let Some(otp) = &send.otp {
                    super::otp::otp_send_final(
                        &mut tx,
                        &otp.challenge_id,
                        send.channel_kind,
                        true,
                        now,
                    )
                    .await?;
                } else {
                    sqlx::query("UPDATE messages SET status = 'failed', error = $1 WHERE id = $2 AND tenant_id = $3")
                        .bind(error)
                        .bind(send.message.message_id)
                        .bind(&send.tenant_id)
                        .execute(&mut *tx)
                        .await?;
                }
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
        let row = sqlx::query(&format!(
            "SELECT conversation_id, channel_kind, message_id, payload FROM outbox \
             WHERE tenant_id = $1 AND id = (SELECT u.outbox_id FROM ({}) u \
                 ORDER BY u.outbox_id DESC LIMIT 1)",
            super::SENT_LOOKUP
        ))
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
        let channel_kind = super::channel_kind_of(&row, "channel_kind")?;
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
            media: None,
            ..original
        };
        queue_outbound(
            &mut tx,
            tenant_id,
            channel_account_id,
            channel_kind,
            &outbound,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The channel kind (`webchat`, `whatsapp`, `telegram`) of a conversation of `tenant_id`;
    /// `None` when the tenant has no such conversation.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn conversation_channel_kind(
        &self,
        tenant_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ChannelKind>, StoreError> {
        let row = sqlx::query(
            "SELECT a.kind FROM conversations c JOIN channel_accounts a \
             ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.id = $2",
        )
        .bind(tenant_id)
        .bind(conversation_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| super::channel_kind_of(&r, "kind")).transpose()
    }

    /// The media a customer sent in message `message_id` of the tenant (the JSON stored in
    /// `messages.media`, with the channel account it arrived through); `None` when the tenant
    /// has no such message or the message carries no media file.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn inbound_media(
        &self,
        tenant_id: &str,
        message_id: i64,
    ) -> Result<Option<InboundMediaRef>, StoreError> {
        let row = sqlx::query(
            "SELECT m.media, c.channel_account_id, a.kind FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id AND c.tenant_id = m.tenant_id \
             JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             WHERE m.tenant_id = $1 AND m.id = $2 AND m.author = 'customer' AND m.media IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(message_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| -> Result<_, StoreError> {
            Ok(InboundMediaRef {
                media: r.try_get("media")?,
                channel_account_id: r.try_get("channel_account_id")?,
                channel_kind: super::channel_kind_of(&r, "kind")?,
            })
        })
        .transpose()
    }

    /// The tenant's most recent conversation with the customer `external_id` (phone number,
    /// chat id) on a `channel_kind` account (the admin API's conversation lookup).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn latest_conversation_of(
        &self,
        tenant_id: &str,
        channel_kind: ChannelKind,
        external_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id FROM conversations c \
             JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
             JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND a.kind = $2 AND k.external_id = $3 \
             ORDER BY c.created_at DESC, c.id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(channel_kind.as_str())
        .bind(external_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| r.try_get("id").map_err(StoreError::from))
            .transpose()
    }

    /// Stores a message written by an agent (or an integration) in a conversation of
    /// `tenant_id` and queues it for the customer, in one transaction: the dispatcher sends it
    /// like any other (in order after earlier messages, WhatsApp's 24-hour window applies, as
    /// of the customer's last message). The stored body is `text` plus a line describing the
    /// media, which is what agents and the web chat see. `None`: the tenant has no such
    /// conversation; nothing was stored.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing was stored.
    pub async fn enqueue_agent_message(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        text: &str,
        media: Option<&OutboundMedia>,
    ) -> Result<Option<QueuedMessage>, StoreError> {
        let send = AgentSend {
            text,
            media,
            ..AgentSend::default()
        };
        self.enqueue_agent_send(tenant_id, conversation_id, &send)
            .await
    }

    /// [`Store::enqueue_agent_message`] with quick replies and templates (the console's
    /// composer).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; nothing was stored.
    pub async fn enqueue_agent_send(
        &self,
        tenant_id: &str,
        conversation_id: &str,
        send: &AgentSend<'_>,
    ) -> Result<Option<QueuedMessage>, StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        // The conversation's row lock first, as every writer to a conversation does.
        let locked = sqlx::query(
            "UPDATE conversations SET updated_at = $1 WHERE id = $2 AND tenant_id = $3",
        )
        .bind(now)
        .bind(conversation_id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if locked == 0 {
            return Ok(None);
        }
        let queued = queue_send(
            &mut tx,
            &self.days,
            tenant_id,
            conversation_id,
            Author::Agent,
            send,
            now,
            0,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(queued))
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

/// Queues `outbound` (its conversation, message id and idempotency key) for sending through
/// `channel_account_id`, inside the caller's transaction: the one way a row enters the outbox.
pub(super) async fn queue_outbound(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    channel_account_id: &str,
    channel_kind: ChannelKind,
    outbound: &OutboundMessage,
    now: i64,
) -> Result<(), StoreError> {
    queue_outbound_with_priority(
        tx,
        tenant_id,
        channel_account_id,
        channel_kind,
        outbound,
        now,
        0,
    )
    .await
}

/// Sends marked per statement (two parameters a row).
const MARK_ROWS: usize = 1000;

/// Outbox priority of follow-ups: claimed after live answers (0) and one-time codes (1).
pub(super) const FOLLOW_UP_PRIORITY: i64 = -1;

/// [`queue_outbound`] with an explicit claim priority (higher first).
async fn queue_outbound_with_priority(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    channel_account_id: &str,
    channel_kind: ChannelKind,
    outbound: &OutboundMessage,
    now: i64,
    priority: i64,
) -> Result<(), StoreError> {
    let payload =
        serde_json::to_string(outbound).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO outbox (tenant_id, conversation_id, channel_account_id, channel_kind, message_id, \
         idempotency_key, payload, state, next_attempt_at, created_at, updated_at, priority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $8, $9)",
    )
    .bind(tenant_id)
    .bind(&outbound.conversation_id)
    .bind(channel_account_id)
    .bind(channel_kind.as_str())
    .bind(outbound.message_id)
    .bind(&outbound.idempotency_key)
    .bind(&payload)
    .bind(now)
    .bind(priority)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records part `index` of `send` (a no-op when that part is already recorded).
async fn insert_part<'e, E>(
    executor: E,
    send: &ClaimedSend,
    index: usize,
    provider_message_id: &str,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO outbox_parts (tenant_id, channel_account_id, provider_message_id, outbox_id, part_index) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (outbox_id, part_index) DO NOTHING",
    )
    .bind(&send.tenant_id)
    .bind(&send.channel_account_id)
    .bind(provider_message_id)
    .bind(send.id)
    .bind(i64::try_from(index).unwrap_or(i64::MAX))
    .execute(executor)
    .await?;
    Ok(())
}

/// Stores a message of `author` in the conversation and queues it, inside `tx`, which holds
/// the conversation's row lock (every writer to a conversation takes it first, so messages are
/// sent in order).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn queue_message(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    days: &super::usage::UsageDays,
    tenant_id: &str,
    conversation_id: &str,
    author: Author,
    text: &str,
    media: Option<&OutboundMedia>,
    now: i64,
) -> Result<QueuedMessage, StoreError> {
    let send = AgentSend {
        text,
        media,
        ..AgentSend::default()
    };
    queue_send(tx, days, tenant_id, conversation_id, author, &send, now, 0).await
}

/// What an agent sends: text, optionally with media, quick replies, or as a template.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentSend<'a> {
    /// The text (a template's preview when `template` is set).
    pub text: &'a str,
    /// A file to send with the text.
    pub media: Option<&'a OutboundMedia>,
    /// Quick replies offered as buttons.
    pub choices: &'a [String],
    /// Send this WhatsApp template instead of free text.
    pub template: Option<&'a channels::model::Template>,
}

/// [`queue_message`] with quick replies, a template and a claim priority.
#[allow(clippy::too_many_arguments)]
pub(super) async fn queue_send(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    days: &super::usage::UsageDays,
    tenant_id: &str,
    conversation_id: &str,
    author: Author,
    send: &AgentSend<'_>,
    now: i64,
    priority: i64,
) -> Result<QueuedMessage, StoreError> {
    let (text, media) = (send.text, send.media);
    let row = sqlx::query(
        "SELECT c.channel_account_id, a.kind AS channel_kind, k.external_id AS recipient, \
         c.last_inbound_at FROM conversations c \
         JOIN channel_accounts a ON a.id = c.channel_account_id AND a.tenant_id = c.tenant_id \
         JOIN contacts k ON k.id = c.contact_id AND k.tenant_id = c.tenant_id \
         WHERE c.id = $1 AND c.tenant_id = $2",
    )
    .bind(conversation_id)
    .bind(tenant_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::Corrupt(format!(
            "conversation {conversation_id} has no channel account or contact"
        )));
    };
    let channel_account_id: String = row.try_get("channel_account_id")?;
    let channel_kind = super::channel_kind_of(&row, "channel_kind")?;
    let mut outbound = OutboundMessage {
        message_id: 0,
        conversation_id: conversation_id.to_owned(),
        recipient: row.try_get("recipient")?,
        author,
        text: super::storable(text).into_owned(),
        choices: send.choices.to_vec(),
        in_reply_to: Vec::new(),
        created_at_ms: now,
        idempotency_key: String::new(),
        customer_last_seen_ms: row.try_get("last_inbound_at")?,
        template: send.template.cloned(),
        media: media.cloned(),
    };
    let choices_json = if send.choices.is_empty() {
        None
    } else {
        Some(serde_json::to_string(send.choices).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    };
    let media_json = media
        .map(|m| {
            let mut value = serde_json::json!({
                "kind": m.kind.as_str(),
                "caption": m.caption,
                "filename": m.filename,
            });
            match &m.source {
                MediaSource::ProviderId(id) => value["id"] = serde_json::json!(id),
                MediaSource::Url(url) => value["url"] = serde_json::json!(url),
            }
            serde_json::to_string(&value)
        })
        .transpose()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let message_id: i64 = sqlx::query(
        "INSERT INTO messages (tenant_id, conversation_id, author, body, content_kind, media, choices, status, created_at) \
         VALUES ($1, $2, $7, $3, $4, $5, $8, 'pending', $6) RETURNING id",
    )
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(outbound.display_text())
    .bind(media.map(|m| m.kind.as_str()))
    .bind(media_json)
    .bind(now)
    .bind(author.as_str())
    .bind(choices_json)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    outbound.message_id = message_id;
    outbound.idempotency_key = format!("msg-{message_id}");
    queue_outbound_with_priority(
        tx,
        tenant_id,
        &channel_account_id,
        channel_kind,
        &outbound,
        now,
        priority,
    )
    .await?;
    let usage = super::usage::UsageDelta {
        messages_out: 1,
        ..Default::default()
    };
    let channel = channel_kind.as_str();
    super::usage::bump(tx, tenant_id, &days.day(tenant_id, now), channel, &usage).await?;
    // A follow-up (below live answers) comes after an answer: never the first response.
    if priority >= 0 {
        super::usage::first_response(tx, tenant_id, conversation_id, now).await?;
    }
    Ok(QueuedMessage {
        message_id,
        channel_kind,
    })
}
