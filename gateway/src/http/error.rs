//! The one error type every handler returns: `{"error":{"code","message"}}`.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An HTTP error with a stable `code` (listed in the README) and a message safe to show.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a message that says what to fix.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message =
            // 502 and 503 messages say what failed upstream and are written for the caller;
            // other server errors may carry internals.
            if self.status.is_server_error()
                && !matches!(
                    self.status,
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY
                )
            {
                "internal error".to_owned()
            } else {
                self.message
            };
        (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": message } })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %err.chain(), "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is temporarily unavailable; retry later (nothing was stored)",
                )
            }
            StoreError::Migration { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::Corrupt(_) => {
                tracing::error!(error = %err.chain(), "storage failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "payload_too_large", "request body is too large");
        }
        let code = match &rejection {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            JsonRejection::JsonDataError(_) => "invalid_field",
            _ => "invalid_json",
        };
        Self::new(status, code, rejection.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s, so malformed bodies get the same JSON shape.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);
