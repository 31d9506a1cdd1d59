//! Inbound events of every provider channel, applied the same way: customer messages go to
//! the inbox through [`Ingress`] (dedupe, group commit), edits update the stored message,
//! delivery statuses move outbox messages forward, and contact events change the contact.
//! Webhooks (`http::webhooks`) and pull workers ([`super::pull`]) both end here.

use std::sync::Arc;
use std::time::Duration;

use channels::model::{MessageContent, StatusUpdate};
use channels::provider::{Event, Inbound};
use tokio::sync::Notify;

use super::ingress::{Ingress, IngressError};
use crate::accounts::Route;
use crate::store::{
    ContactIdsChange, ContactRef, DeliveryStatus, InboundItem, InboundTarget, Store, StoreError,
    StoredContent, now_ms,
};
use crate::telemetry;

/// The events could not be stored; the sender must retry (webhook: 503; pulling: the offset
/// does not advance).
#[derive(Debug, thiserror::Error)]
#[error("inbound events not stored; retry")]
pub struct Unavailable;

/// Applies decoded events to storage.
#[derive(Debug, Clone)]
pub struct InboundEvents {
    /// Storage.
    pub store: Store,
    /// Inbound group commit.
    pub ingress: Ingress,
    /// Wakes the dispatcher when a status queued a send (re-engagement).
    pub dispatcher_wake: Arc<Notify>,
}

fn count(route: &Route, outcome: &'static str) {
    metrics::counter!(telemetry::INBOUND_EVENTS_TOTAL, "channel" => route.kind.as_str(), "outcome" => outcome)
        .increment(1);
}

/// The conversation locale for a client language, else the tenant's.
fn locale_for(language: Option<&str>, fallback: &str) -> String {
    match language.map(|l| l.to_ascii_lowercase()) {
        Some(l) if l.starts_with("en") => "en".to_owned(),
        Some(l) if l.starts_with("id") || l.starts_with("in") => "id".to_owned(),
        _ => fallback.to_owned(),
    }
}

impl InboundEvents {
    /// Applies the events of one account, in order. Customer messages are stored concurrently
    /// (they share group commits); the call returns only after everything that must be stored
    /// is committed.
    ///
    /// # Errors
    /// [`Unavailable`] when storage failed; the caller must not acknowledge.
    pub async fn apply(&self, route: &Arc<Route>, events: Vec<Event>) -> Result<(), Unavailable> {
        let mut messages = Vec::new();
        let mut rest = Vec::new();
        for event in events {
            match event {
                Event::Message(inbound) => messages.push(inbound),
                other => rest.push(other),
            }
        }
        let results =
            futures::future::join_all(messages.into_iter().map(|m| self.message(route, m))).await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        for event in rest {
            self.event(route, event).await?;
        }
        Ok(())
    }

    async fn event(&self, route: &Arc<Route>, event: Event) -> Result<(), Unavailable> {
        let store_err = |err: StoreError| {
            tracing::warn!(error = %err.chain(), channel = %route.kind, "storing an inbound event failed");
            count(route, "unavailable");
            Unavailable
        };
        match event {
            Event::Message(inbound) => self.message(route, inbound).await?,
            Event::Edited { external_id, text } => {
                let known = self
                    .store
                    .edit_inbound_text(&route.tenant_id, &route.account_id, &external_id, &text)
                    .await
                    .map_err(store_err)?;
                count(route, "edited");
                if !known {
                    tracing::debug!(channel = %route.kind, "edit of a message we never stored; ignored");
                }
            }
            Event::Revoked { external_id } => {
                let known = self
                    .store
                    .revoke_inbound(&route.tenant_id, &route.account_id, &external_id, now_ms())
                    .await
                    .map_err(store_err)?;
                count(route, "revoked");
                if !known {
                    tracing::debug!(channel = %route.kind, "revoke of a message we never stored; ignored");
                }
            }
            Event::ContactChanged {
                from,
                phone,
                user_id,
                parent_user_id,
            } => {
                let found = self
                    .store
                    .change_contact_ids(
                        &route.tenant_id,
                        &route.account_id,
                        &from,
                        &ContactIdsChange {
                            phone: phone.as_deref(),
                            user_id: user_id.as_deref(),
                            parent_user_id: parent_user_id.as_deref(),
                        },
                    )
                    .await
                    .map_err(store_err)?;
                count(route, if found { "contact_changed" } else { "ignored" });
            }
            Event::Status {
                update,
                window_closed,
            } => self
                .status(route, &update, window_closed)
                .await
                .map_err(store_err)?,
            Event::Reachability { contact, reachable } => {
                self.store
                    .set_contact_reachable(&route.tenant_id, &route.account_id, &contact, reachable)
                    .await
                    .map_err(store_err)?;
                count(route, if reachable { "unblocked" } else { "blocked" });
            }
            Event::ContactMoved { from, to } => {
                route.channel.contact_moved(&from, &to);
                self.store
                    .move_contact(&route.tenant_id, &route.account_id, &from, &to)
                    .await
                    .map_err(store_err)?;
                count(route, "migrated");
            }
            Event::Ignored { kind } => {
                tracing::debug!(channel = %route.kind, kind = %kind, "inbound event ignored");
                count(route, "ignored");
            }
        }
        Ok(())
    }

    async fn message(&self, route: &Arc<Route>, mut inbound: Inbound) -> Result<(), Unavailable> {
        if let Some(token) = inbound.ack.take() {
            // Acknowledge at once (a button's spinner), whatever happens next.
            let channel = route.channel.clone();
            tokio::spawn(async move { channel.acknowledge(&token).await });
        }
        if let (Some(index), Some(sent)) = (inbound.choice_index, &inbound.message.reply_to)
            && let MessageContent::Choice { title, .. } = &inbound.message.content
            && title.is_empty()
        {
            let found = self
                .store
                .sent_choice(&route.tenant_id, &route.account_id, sent, index)
                .await
                .map_err(|err| {
                    tracing::warn!(error = %err, "looking up a tapped choice failed");
                    count(route, "unavailable");
                    Unavailable
                })?;
            if let (Some(choice), MessageContent::Choice { title, .. }) =
                (found, &mut inbound.message.content)
            {
                *title = choice;
            }
        }
        let phone = inbound.shared_phone.take();
        let contact = inbound.message.from.clone();
        let item = inbound_item(route, inbound);
        match self.ingress.accept(item).await {
            Ok(_) => count(route, "accepted"),
            // The provider cannot change what it sent: a retry would be refused again, so the
            // rest of the webhook is acknowledged (the refusal is logged with its cause).
            Err(IngressError::Refused(_)) => count(route, "refused"),
            Err(err) => {
                tracing::warn!(error = %err, channel = %route.kind, "inbound message not stored");
                count(route, "unavailable");
                return Err(Unavailable);
            }
        }
        if let Some(phone) = phone {
            self.store
                .set_contact_phone(&route.tenant_id, &route.account_id, &contact, &phone)
                .await
                .map_err(|err| {
                    tracing::warn!(error = %err, "storing a shared phone number failed");
                    Unavailable
                })?;
        }
        Ok(())
    }

    async fn status(
        &self,
        route: &Arc<Route>,
        status: &StatusUpdate,
        window_closed: bool,
    ) -> Result<(), StoreError> {
        if self.status_once(route, status, window_closed).await? == StatusOutcome::Unknown {
            // Possibly ours but not recorded yet: try again a little later, off the request.
            let (this, route, status) = (self.clone(), route.clone(), status.clone());
            tokio::spawn(async move {
                for delay in LATE_STATUS_RETRIES {
                    tokio::time::sleep(delay).await;
                    match this.status_once(&route, &status, window_closed).await {
                        Ok(StatusOutcome::Unknown) => {}
                        Ok(_) => return,
                        Err(err) => {
                            tracing::debug!(error = %err, "late delivery status not applied");
                            return;
                        }
                    }
                }
                metrics::counter!(telemetry::DELIVERY_STATUSES_TOTAL, "outcome" => "unknown")
                    .increment(1);
            });
        }
        Ok(())
    }

    async fn status_once(
        &self,
        route: &Route,
        status: &StatusUpdate,
        window_closed: bool,
    ) -> Result<StatusOutcome, StoreError> {
        let code = status.error.as_ref().map(|e| e.code.to_string());
        let reason = status.error.as_ref().map(|e| {
            format!(
                "{} {}: {}",
                route.kind,
                e.code,
                e.title.chars().take(120).collect::<String>()
            )
        });
        let applied = self
            .store
            .apply_delivery_status(
                &route.tenant_id,
                &route.account_id,
                &DeliveryStatus {
                    provider_message_id: &status.provider_message_id,
                    state: status.state.as_str(),
                    rank: status.state.rank(),
                    at_ms: status.timestamp_s.saturating_mul(1000),
                    error_code: code.as_deref(),
                    error: reason.as_deref(),
                },
            )
            .await?;
        if !applied
            && self
                .store
                .message_delivery(&route.tenant_id, &status.provider_message_id)
                .await?
                .is_none()
        {
            return Ok(StatusOutcome::Unknown);
        }
        let outcome = if applied { "applied" } else { "stale" };
        metrics::counter!(telemetry::DELIVERY_STATUSES_TOTAL, "outcome" => outcome).increment(1);
        // The window closed while the message was on its way: the provider accepted the send
        // but reports it in a status. Send the re-engagement template instead, once.
        if let (true, Some(template)) = (window_closed, route.channel.reengagement_template()) {
            let queued = self
                .store
                .enqueue_reengagement(
                    &route.tenant_id,
                    &route.account_id,
                    &status.provider_message_id,
                    &template,
                )
                .await?;
            if queued {
                self.dispatcher_wake.notify_one();
            }
        }
        Ok(if applied {
            StatusOutcome::Applied
        } else {
            StatusOutcome::Stale
        })
    }
}

/// Delays after which a status for a message we have not recorded as sent yet is tried again
/// (a provider can report `sent` before our send's bookkeeping committed).
const LATE_STATUS_RETRIES: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(15),
    Duration::from_secs(60),
];

/// What applying one status did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusOutcome {
    /// The message moved forward.
    Applied,
    /// The message is already at this state or further.
    Stale,
    /// No message of ours has this id (yet).
    Unknown,
}

fn inbound_item(route: &Route, inbound: Inbound) -> InboundItem {
    let message = inbound.message;
    let ids = inbound.ids;
    let content = StoredContent::of(&message.content);
    let kind = if inbound.command && content.answer {
        flows::TurnKind::Command
    } else {
        content.kind
    };
    InboundItem {
        trace_id: None,
        tenant_id: route.tenant_id.clone(),
        channel_account_id: route.account_id.clone(),
        target: InboundTarget::Contact(ContactRef {
            external_id: message.from,
            display_name: message.sender_name,
            locale: locale_for(inbound.language.as_deref(), &route.locale),
            user_id: ids.user_id,
            parent_user_id: ids.parent_user_id,
            username: ids.username,
        }),
        external_id: message.external_id,
        text: content.text,
        kind,
        answer: content.answer,
        content_kind: content.content_kind,
        media: content.media,
        received_at_ms: now_ms(),
        channel_kind: route.kind,
    }
}
