//! WhatsApp Cloud API webhook: `GET /webhooks/whatsapp` (verification handshake) and
//! `POST /webhooks/whatsapp` (events). The POST is acknowledged only after its messages are
//! committed (so Meta's retry covers a crash), and replays are harmless (inbox dedupe by wamid,
//! statuses only move forward).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use channels::model::{InboundEvent, InboundMessage, StatusUpdate, Template};
use channels::whatsapp::webhook;

use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{ContactRef, DeliveryStatus, InboundItem, InboundTarget, StoredContent, now_ms};
use crate::telemetry;
use crate::whatsapp::WhatsappRoute;

/// Largest webhook body Meta sends (~3 MB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// WhatsApp routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/whatsapp", get(verify).post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn verify(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mode = params.get("hub.mode").map(String::as_str);
    let token = params.get("hub.verify_token").map(String::as_str);
    let challenge = params.get("hub.challenge").map(String::as_str);
    // Check every number (no early exit) so timing does not reveal which token matched.
    let mut answer = None;
    for route in state.whatsapp.routes() {
        if let Some(c) =
            webhook::verify_challenge(mode, token, challenge, &route.account.verify_token)
        {
            answer = Some(c.to_owned());
        }
    }
    match answer {
        Some(challenge) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response(),
        None => (StatusCode::FORBIDDEN, "forbidden").into_response(),
    }
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signature = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    // Numbers whose app secret signed this exact body. Numbers of one Meta app share a secret,
    // so each distinct secret is checked once.
    let mut checked: HashMap<&str, bool> = HashMap::new();
    for route in state.whatsapp.routes() {
        let secret = route.account.app_secret.as_str();
        if !checked.contains_key(secret) {
            let ok = webhook::verify_signature(secret.as_bytes(), &body, signature);
            checked.insert(secret, ok);
        }
    }
    if !checked.values().any(|ok| *ok) {
        metrics::counter!(telemetry::WHATSAPP_WEBHOOKS_TOTAL, "outcome" => "bad_signature")
            .increment(1);
        tracing::warn!("whatsapp webhook with a missing or invalid signature rejected");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "X-Hub-Signature-256 does not match the body",
        ));
    }
    let delivery = match webhook::decode(&body) {
        Ok(delivery) => delivery,
        Err(err) => {
            // Signed but unreadable: a retry cannot fix it, so acknowledge and count it.
            metrics::counter!(telemetry::WHATSAPP_WEBHOOKS_TOTAL, "outcome" => "undecodable")
                .increment(1);
            tracing::warn!(error = %err, "signed whatsapp webhook could not be decoded");
            return Ok(StatusCode::OK.into_response());
        }
    };
    let received_at_ms = now_ms();
    let mut items = Vec::new();
    let mut statuses = Vec::new();
    for value in delivery.values {
        let Some(route) = state.whatsapp.get(&value.phone_number_id) else {
            metrics::counter!(telemetry::WHATSAPP_DROPPED_TOTAL, "reason" => "unknown_number")
                .increment(1);
            tracing::warn!(phone_number_id = %value.phone_number_id, "whatsapp webhook for a number no tenant owns; dropped");
            continue;
        };
        if !checked
            .get(route.account.app_secret.as_str())
            .copied()
            .unwrap_or(false)
        {
            metrics::counter!(telemetry::WHATSAPP_DROPPED_TOTAL, "reason" => "wrong_app_secret")
                .increment(1);
            tracing::warn!(phone_number_id = %value.phone_number_id, "whatsapp events signed with another app's secret; dropped");
            continue;
        }
        if value.undecodable > 0 {
            metrics::counter!(telemetry::WHATSAPP_DROPPED_TOTAL, "reason" => "undecodable")
                .increment(value.undecodable as u64);
            tracing::warn!(
                count = value.undecodable,
                "undecodable whatsapp messages or statuses skipped"
            );
        }
        for error in &value.errors {
            metrics::counter!(telemetry::WHATSAPP_DROPPED_TOTAL, "reason" => "provider_error")
                .increment(1);
            tracing::warn!(code = error.code, title = %error.title, "whatsapp reported an error");
        }
        for event in value.events {
            match event {
                InboundEvent::Message(message) => {
                    items.push(inbound_item(route, message, received_at_ms));
                }
                InboundEvent::Status(status) => statuses.push((route.clone(), status)),
            }
        }
    }
    let results =
        futures::future::join_all(items.into_iter().map(|item| state.ingress.accept(item))).await;
    if results.iter().any(Result::is_err) {
        metrics::counter!(telemetry::WHATSAPP_WEBHOOKS_TOTAL, "outcome" => "unavailable")
            .increment(1);
        // Meta retries; what was stored is deduplicated on the retry.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "not stored; retry",
        ));
    }
    for (route, status) in statuses {
        apply_status(&state, &route, &status).await?;
    }
    metrics::counter!(telemetry::WHATSAPP_WEBHOOKS_TOTAL, "outcome" => "accepted").increment(1);
    Ok(StatusCode::OK.into_response())
}

fn inbound_item(
    route: &WhatsappRoute,
    message: InboundMessage,
    received_at_ms: i64,
) -> InboundItem {
    let content = StoredContent::of(&message.content);
    InboundItem {
        tenant_id: route.tenant_id.clone(),
        channel_account_id: route.account_id.clone(),
        target: InboundTarget::Contact(ContactRef {
            external_id: message.from,
            display_name: message.sender_name,
            locale: route.locale.clone(),
        }),
        external_id: message.external_id,
        text: content.text,
        kind: content.kind,
        answer: content.answer,
        content_kind: content.content_kind,
        media: content.media,
        received_at_ms,
        channel_kind: "whatsapp",
    }
}

/// Delays after which a status for a message we have not recorded as sent yet is tried again
/// (Meta can report `sent` before our send's bookkeeping committed).
const LATE_STATUS_RETRIES: [std::time::Duration; 4] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(15),
    std::time::Duration::from_secs(60),
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

async fn apply_status(
    state: &AppState,
    route: &std::sync::Arc<WhatsappRoute>,
    status: &StatusUpdate,
) -> Result<(), ApiError> {
    if apply_status_once(state, route, status).await? == StatusOutcome::Unknown {
        // Possibly ours but not recorded yet: try again a little later, off the request.
        let (state, route, status) = (state.clone(), route.clone(), status.clone());
        tokio::spawn(async move {
            for delay in LATE_STATUS_RETRIES {
                tokio::time::sleep(delay).await;
                match apply_status_once(&state, &route, &status).await {
                    Ok(StatusOutcome::Unknown) => {}
                    Ok(_) => return,
                    Err(err) => {
                        tracing::debug!(error = ?err, "late whatsapp status not applied");
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

async fn apply_status_once(
    state: &AppState,
    route: &WhatsappRoute,
    status: &StatusUpdate,
) -> Result<StatusOutcome, ApiError> {
    let code = status.error.as_ref().map(|e| e.code.to_string());
    let reason = status.error.as_ref().map(|e| {
        format!(
            "whatsapp {}: {}",
            e.code,
            e.title.chars().take(120).collect::<String>()
        )
    });
    let applied = state
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
        && state
            .store
            .message_delivery(&route.tenant_id, &status.provider_message_id)
            .await?
            .is_none()
    {
        return Ok(StatusOutcome::Unknown);
    }
    let outcome = if applied { "applied" } else { "stale" };
    metrics::counter!(telemetry::DELIVERY_STATUSES_TOTAL, "outcome" => outcome).increment(1);
    // The 24-hour window closed while the message was on its way: Meta accepted the send but
    // reports 131047 in a status. Send the re-engagement template instead, once.
    let window_closed = status
        .error
        .as_ref()
        .is_some_and(|e| e.code == channels::whatsapp::api::REENGAGEMENT_CODE);
    if let (true, Some(name)) = (window_closed, route.account.reengagement_template.as_ref()) {
        let template = Template {
            name: name.clone(),
            language: route.account.reengagement_language.clone(),
            body_params: Vec::new(),
        };
        let queued = state
            .store
            .enqueue_reengagement(
                &route.tenant_id,
                &route.account_id,
                &status.provider_message_id,
                &template,
            )
            .await?;
        if queued {
            state.dispatcher_wake.notify_one();
        }
    }
    Ok(if applied {
        StatusOutcome::Applied
    } else {
        StatusOutcome::Stale
    })
}
