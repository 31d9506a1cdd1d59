//! The one-time code API of a tenant's backend (API key scope `otp`):
//! `POST /v1/otp`, `GET /v1/otp/{challenge_id}`, `POST /v1/otp/{challenge_id}/verify`.
//! No response ever contains a code.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::admin::{AdminTenant, require_api_key};
use crate::http::error::{ApiError, ApiJson};
use crate::otp::{ChannelChoice, IssueRequest, OtpError, Recipient, public_status};
use crate::state::AppState;
use crate::store::{OtpChallenge, OtpRefusal, now_ms, rfc3339};

/// The OTP routes, behind the API key middleware (scope `otp`).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/otp", post(issue))
        .route("/v1/otp/{challenge_id}", get(status))
        .route("/v1/otp/{challenge_id}/verify", post(verify))
        .route_layer(from_fn_with_state(state.clone(), require_api_key))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    to: Value,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    code: String,
}

/// `to`: a phone number, `{"whatsapp_user_id": "…"}` or `{"telegram_chat_id": 123}`.
fn recipient(to: &Value) -> Result<Recipient, OtpError> {
    let shape = || {
        OtpError::Invalid(
            "`to` must be a phone number like \"+6281234567890\", {\"whatsapp_user_id\": \"…\"} or {\"telegram_chat_id\": 123}".to_owned(),
        )
    };
    match to {
        Value::String(phone) => Recipient::phone(phone),
        Value::Object(map) if map.len() == 1 => {
            if let Some(id) = map.get("whatsapp_user_id") {
                let id = id.as_str().map(str::trim).unwrap_or_default();
                if id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace) {
                    return Err(OtpError::Invalid(
                        "`whatsapp_user_id` must be the user id WhatsApp sent (e.g. \"US.13491208655302741918\")".to_owned(),
                    ));
                }
                return Ok(Recipient::WhatsappUser(id.to_owned()));
            }
            if let Some(chat) = map.get("telegram_chat_id") {
                return chat.as_i64().map(Recipient::TelegramChat).ok_or_else(|| {
                    OtpError::Invalid("`telegram_chat_id` must be an integer chat id".to_owned())
                });
            }
            Err(shape())
        }
        _ => Err(shape()),
    }
}

fn request(body: IssueBody) -> Result<IssueRequest, OtpError> {
    let to = recipient(&body.to)?;
    let channel = match body.channel.as_deref() {
        None => ChannelChoice::Auto,
        Some(name) => ChannelChoice::parse(name).ok_or_else(|| {
            OtpError::Invalid("`channel` must be \"whatsapp\", \"telegram\" or \"auto\"".to_owned())
        })?,
    };
    let locale = body
        .locale
        .as_deref()
        .map(|l| {
            flows::Locale::parse(l)
                .ok_or_else(|| OtpError::Invalid("`locale` must be \"id\" or \"en\"".to_owned()))
        })
        .transpose()?;
    Ok(IssueRequest {
        to,
        channel,
        purpose: body.purpose.unwrap_or_else(|| "login".to_owned()),
        locale,
        idempotency_key: body.idempotency_key,
    })
}

async fn issue(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    ApiJson(body): ApiJson<IssueBody>,
) -> Response {
    let issued = match request(body) {
        Ok(request) => state.otp.issue(&tenant, request).await,
        Err(err) => Err(err),
    };
    match issued {
        Ok(issued) => (
            StatusCode::CREATED,
            Json(json!({
                "challenge_id": issued.challenge.id,
                "channel": issued.challenge.channel,
                "status": public_status(&issued.challenge, now_ms()),
                "expires_at": rfc3339(issued.challenge.expires_at_ms),
                "resend_after": rfc3339(issued.resend_after_ms),
            })),
        )
            .into_response(),
        Err(err) => error_response(err),
    }
}

async fn status(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(challenge_id): Path<String>,
) -> Response {
    match state.otp.status(&tenant, &challenge_id).await {
        Ok((challenge, status)) => {
            Json(view(&challenge, status, state.otp.max_attempts())).into_response()
        }
        Err(err) => error_response(err),
    }
}

async fn verify(
    State(state): State<AppState>,
    Extension(AdminTenant(tenant)): Extension<AdminTenant>,
    Path(challenge_id): Path<String>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Response {
    match state.otp.verify(&tenant, &challenge_id, &body.code).await {
        Ok(()) => Json(json!({ "verified": true })).into_response(),
        Err(err) => error_response(err),
    }
}

fn view(challenge: &OtpChallenge, status: &str, max_attempts: i64) -> Value {
    json!({
        "challenge_id": challenge.id,
        "status": status,
        "channel": challenge.channel,
        "purpose": challenge.purpose,
        "created_at": rfc3339(challenge.created_at_ms),
        "expires_at": rfc3339(challenge.expires_at_ms),
        "verified_at": challenge.verified_at_ms.map(rfc3339),
        "attempts_left": (max_attempts - challenge.attempts).max(0),
    })
}

/// The response of an [`OtpError`]: a stable code, a message saying what to do, and
/// `Retry-After` on 429.
pub fn error_response(err: OtpError) -> Response {
    let message = err.to_string();
    let (status, code) = match &err {
        OtpError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        OtpError::TemplateMissing => (StatusCode::CONFLICT, "otp_template_missing"),
        OtpError::RecipientUnknown => (StatusCode::CONFLICT, "recipient_unknown"),
        OtpError::NoChannel(_) => (StatusCode::CONFLICT, "channel_unavailable"),
        OtpError::Limited(refusal, _) => (
            StatusCode::TOO_MANY_REQUESTS,
            match refusal {
                OtpRefusal::ResendTooSoon => "resend_too_soon",
                OtpRefusal::RecipientLimit => "too_many_codes",
                OtpRefusal::TenantLimit => "tenant_otp_limit",
            },
        ),
        OtpError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        OtpError::InvalidCode { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_code"),
        OtpError::Expired => (StatusCode::GONE, "expired"),
        OtpError::TooManyAttempts => (StatusCode::LOCKED, "too_many_attempts"),
        OtpError::AlreadyVerified => (StatusCode::CONFLICT, "already_verified"),
        OtpError::Store(_) => {
            let OtpError::Store(store) = err else {
                unreachable!("matched above")
            };
            return ApiError::from(store).into_response();
        }
    };
    let mut body = json!({ "error": { "code": code, "message": message } });
    if let OtpError::InvalidCode { attempts_left } = &err {
        body["error"]["attempts_left"] = json!(attempts_left);
    }
    let mut response = (status, Json(body)).into_response();
    if let OtpError::Limited(_, wait) = &err {
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}
