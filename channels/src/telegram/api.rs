//! A thin Bot API client: `POST <base>/bot<token>/<method>` with a JSON body built from
//! teloxide-core's payload types, answers `{"ok": …, "result": …}` read into teloxide-core's
//! types and errors. Classifies every failure (protocols §2.4).
//!
//! The HTTP exchange itself is hand-written on the shared `reqwest` client instead of
//! teloxide-core's `Bot` requester, because that requester
//! - sleeps 10 s inside every call answered with a 5xx (`DELAY_ON_SERVER_ERROR` in its
//!   `net/request.rs`) before returning, which would stall the dispatcher outside our own
//!   retry policy;
//! - drops the answer's `error_code`, which Sapa classifies by (403: unreachable, 5xx:
//!   transient, other 4xx: permanent);
//! - reports network failures as a `reqwest::Error` whose text includes the request URL, and
//!   so the bot token.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use teloxide_core::payloads::{
    AnswerCallbackQuery, DeleteWebhook, GetMe, GetUpdates, SendChatAction, SetWebhook,
};
use teloxide_core::requests::Payload;
use teloxide_core::types::{
    CallbackQueryId, ChatAction, ChatId, MessageId, Recipient, ResponseParameters, User,
};
use teloxide_core::{ApiError, RequestError};

use super::config::TelegramAccount;
use super::update::{self, BotIdentity, Update};
use crate::channel::{ChannelError, UNREACHABLE_CODE, network_reason, short_reason};

/// A failed Bot API call.
#[derive(Debug, Clone)]
pub enum ApiFailure {
    /// Telegram refused the call (`ok: false`, or a non-2xx status without a readable answer).
    Api {
        /// Telegram's `error_code` (the HTTP status).
        code: u16,
        /// teloxide's reading of the answer: [`RequestError::RetryAfter`] (flood control),
        /// [`RequestError::MigrateToChatId`] (the group became a supergroup), or
        /// [`RequestError::Api`] with the [`ApiError`] its description names (log-safe; never
        /// contains message text).
        error: RequestError,
    },
    /// Network error, timeout, or an unreadable answer: a retry can succeed.
    Network(String),
    /// The request could not be built (a webhook URL that does not parse).
    Invalid(String),
}

impl ApiFailure {
    /// The classified channel error.
    pub fn into_channel_error(self) -> ChannelError {
        match self {
            Self::Api {
                error: RequestError::RetryAfter(after),
                ..
            } => ChannelError::RateLimited {
                retry_after: Some(after.duration()),
            },
            Self::Api { code: 429, .. } => ChannelError::RateLimited { retry_after: None },
            Self::Api { code, error } if code == 403 || unreachable(&error) => {
                ChannelError::Permanent {
                    code: Some(UNREACHABLE_CODE.to_owned()),
                    reason: format!("telegram {code}: {}", describe(&error)),
                }
            }
            Self::Api { code, error } if code >= 500 => ChannelError::Transient {
                reason: format!("telegram {code}: {}", describe(&error)),
            },
            Self::Api { code, error } => ChannelError::Permanent {
                code: Some(code.to_string()),
                reason: format!("telegram {code}: {}", describe(&error)),
            },
            Self::Network(reason) => ChannelError::Transient { reason },
            Self::Invalid(reason) => ChannelError::Permanent { code: None, reason },
        }
    }
}

/// Whether teloxide recognised the error as "this chat cannot be written to any more".
fn unreachable(error: &RequestError) -> bool {
    matches!(
        error,
        RequestError::Api(
            ApiError::BotBlocked
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup
                | ApiError::BotKickedFromChannel
                | ApiError::UserDeactivated
                | ApiError::CantInitiateConversation
                | ApiError::CantTalkWithBots
        )
    )
}

/// A short description: Telegram's own text for errors teloxide does not name.
fn describe(error: &RequestError) -> String {
    let text = match error {
        RequestError::Api(ApiError::Unknown(description)) => description.clone(),
        RequestError::Api(known) => known.to_string(),
        other => other.to_string(),
    };
    short_reason(&text)
}

/// The Bot API answer envelope. Hand-written: teloxide-core's (`TelegramResponse`) is private
/// to it and has no `error_code`.
#[derive(Debug, serde::Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    /// Read leniently: parameters teloxide cannot read must not hide the error itself.
    #[serde(default)]
    parameters: Option<Value>,
}

/// What Sapa reads of the `Message` a send returns. Not teloxide's `Message`: a message
/// Telegram accepted must never read as failed (and be sent again by a retry) because the
/// echo carries a field teloxide cannot parse.
#[derive(Debug, serde::Deserialize)]
struct SentMessage {
    #[serde(flatten)]
    id: MessageId,
    #[serde(default)]
    chat: Option<SentChat>,
}

#[derive(Debug, serde::Deserialize)]
struct SentChat {
    id: ChatId,
}

/// One message Telegram accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The chat it went to.
    pub chat_id: i64,
    /// Its id in that chat.
    pub message_id: i64,
}

/// The chat as a teloxide [`Recipient`]: a number when it is one, else a `@channel` name.
pub fn recipient(chat: &str) -> Recipient {
    chat.parse::<i64>().map_or_else(
        |_| Recipient::ChannelUsername(chat.to_owned()),
        |id| Recipient::Id(ChatId(id)),
    )
}

/// The Bot API method of a teloxide payload: its name with a lowercase first letter
/// (`SendMessage` → `sendMessage`), as Telegram documents it.
fn method_of<P: Payload>() -> String {
    let mut chars = P::NAME.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// Reads a Bot API answer: `result` as `T`, or the failure as teloxide's [`RequestError`]
/// with Telegram's `error_code`.
fn read_answer<T: DeserializeOwned>(
    method: &str,
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<T, ApiFailure> {
    let parsed: Envelope<T> = serde_json::from_slice(bytes).map_err(|_| {
        if status.is_success() {
            ApiFailure::Network(format!("{method}: unreadable answer (HTTP {status})"))
        } else {
            ApiFailure::Api {
                code: status.as_u16(),
                error: RequestError::Api(ApiError::Unknown(format!("HTTP {status}"))),
            }
        }
    })?;
    if parsed.ok
        && let Some(result) = parsed.result
    {
        return Ok(result);
    }
    let parameters = parsed
        .parameters
        .and_then(|p| serde_json::from_value::<ResponseParameters>(p).ok());
    let error = match parameters {
        Some(ResponseParameters::RetryAfter(after)) => RequestError::RetryAfter(after),
        Some(ResponseParameters::MigrateToChatId(to)) => RequestError::MigrateToChatId(to),
        // teloxide names the error from its description (`BotBlocked`, …, or `Unknown`).
        None => RequestError::Api(
            serde_json::from_value::<ApiError>(Value::String(
                parsed.description.unwrap_or_default(),
            ))
            .unwrap_or_else(|e| ApiError::Unknown(e.to_string())),
        ),
    };
    Err(ApiFailure::Api {
        code: parsed.error_code.unwrap_or_else(|| status.as_u16()),
        error,
    })
}

/// Client for one bot.
#[derive(Clone)]
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    bot_id: i64,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("bot_id", &self.bot_id)
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl BotApi {
    /// A client for `account` using `http` (share one `reqwest::Client` per process).
    pub fn new(http: reqwest::Client, account: &TelegramAccount) -> Self {
        Self {
            http,
            base: format!(
                "{}/bot{}",
                account.api_base_url.trim_end_matches('/'),
                account.bot_token
            ),
            bot_id: account.bot_id().unwrap_or_default(),
        }
    }

    /// The bot's id (from its token).
    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    /// Posts `body` to `method` and reads the answer's `result` as `T`; `timeout` overrides
    /// the client's (long polling).
    async fn post<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<T, ApiFailure> {
        let mut request = self.http.post(format!("{}/{method}", self.base)).json(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiFailure::Network(format!("{method}: {}", network_reason(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| ApiFailure::Network(format!("{method}: body read failed")))?;
        read_answer(method, status, &bytes)
    }

    /// Calls the method of a teloxide payload and reads its declared result.
    async fn call<P>(&self, payload: &P) -> Result<P::Output, ApiFailure>
    where
        P: Payload + Serialize,
        P::Output: DeserializeOwned,
    {
        self.post(&method_of::<P>(), payload, None).await
    }

    /// `sendMessage`, `sendPhoto`, … with a body prepared by [`super::outbound_calls`].
    ///
    /// # Errors
    /// The classified failure.
    pub async fn send(&self, method: &str, body: &Value) -> Result<Sent, ApiFailure> {
        let sent: SentMessage = self.post(method, body, None).await?;
        Ok(Sent {
            chat_id: sent
                .chat
                .map(|c| c.id.0)
                .or_else(|| body["chat_id"].as_i64())
                .unwrap_or_default(),
            message_id: i64::from(sent.id.0),
        })
    }

    /// `sendChatAction typing` (shown ≤ 5 s or until the next message).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn send_typing(&self, chat_id: &str) -> Result<(), ApiFailure> {
        self.call(&SendChatAction::new(recipient(chat_id), ChatAction::Typing))
            .await?;
        Ok(())
    }

    /// `answerCallbackQuery` without text: stops the button's progress spinner.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn answer_callback_query(&self, query_id: &str) -> Result<(), ApiFailure> {
        self.call(&AnswerCallbackQuery::new(CallbackQueryId(
            query_id.to_owned(),
        )))
        .await?;
        Ok(())
    }

    /// `setWebhook` with the secret token and the update kinds Sapa handles.
    ///
    /// # Errors
    /// The classified failure; [`ApiFailure::Invalid`] for a URL that does not parse.
    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), ApiFailure> {
        let url = url
            .parse()
            .map_err(|e| ApiFailure::Invalid(format!("webhook URL: {e}")))?;
        let mut payload = SetWebhook::new(url);
        payload.secret_token = Some(secret.to_owned());
        payload.allowed_updates = Some(update::ALLOWED_UPDATES.to_vec());
        self.call(&payload).await?;
        Ok(())
    }

    /// `deleteWebhook` (required before `getUpdates` works).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn delete_webhook(&self) -> Result<(), ApiFailure> {
        let mut payload = DeleteWebhook::new();
        payload.drop_pending_updates = Some(false);
        self.call(&payload).await?;
        Ok(())
    }

    /// `getMe`: the bot's id and username.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn get_me(&self) -> Result<BotIdentity, ApiFailure> {
        // Read as a `User` (what `Me` flattens): the rest of `Me` is not needed.
        let me: User = self
            .post(&method_of::<GetMe>(), &GetMe::new(), None)
            .await?;
        Ok(BotIdentity {
            id: i64::try_from(me.id.0).unwrap_or_default(),
            username: me.username.unwrap_or_default(),
        })
    }

    /// `getUpdates` from `offset`, long-polling up to `timeout_s`; decoded. Updates whose
    /// kind is unknown come back as ignored events, so the offset still advances past them.
    ///
    /// # Errors
    /// The classified failure; [`ApiFailure::Invalid`] for an offset beyond the Bot API's
    /// 32-bit range.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout_s: u64,
        bot: &BotIdentity,
    ) -> Result<Vec<Update>, ApiFailure> {
        let mut payload = GetUpdates::new();
        payload.offset = Some(
            i32::try_from(offset)
                .map_err(|_| ApiFailure::Invalid(format!("getUpdates offset {offset}")))?,
        );
        payload.timeout = Some(u32::try_from(timeout_s).unwrap_or(u32::MAX));
        payload.allowed_updates = Some(update::ALLOWED_UPDATES.to_vec());
        // Each update is decoded on its own so one that cannot be read is skipped alone.
        let raw: Vec<Value> = self
            .post(
                &method_of::<GetUpdates>(),
                &payload,
                Some(Duration::from_secs(timeout_s + 10)),
            )
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|v| update::decode_value(v, bot).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use reqwest::StatusCode;
    use serde_json::json;

    use super::*;

    fn failure(status: u16, body: &Value) -> ChannelError {
        let status = StatusCode::from_u16(status).unwrap();
        match read_answer::<SentMessage>("sendMessage", status, body.to_string().as_bytes()) {
            Err(failure) => failure.into_channel_error(),
            Ok(sent) => panic!("{sent:?}"),
        }
    }

    #[test]
    fn answers_are_classified_from_teloxide_errors_and_the_code() {
        let flood = json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7}});
        assert!(matches!(
            failure(429, &flood),
            ChannelError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)
        ));
        let blocked = json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"});
        let err = failure(403, &blocked);
        assert!(err.is_unreachable(), "{err:?}");
        assert!(err.to_string().contains("bot was blocked"), "{err}");
        let bad = json!({"ok": false, "error_code": 400, "description": "Bad Request: message text is empty"});
        assert!(matches!(
            failure(400, &bad),
            ChannelError::Permanent { code: Some(c), reason } if c == "400" && reason.contains("text is empty")
        ));
        // A 5xx is transient at once: no sleep.
        assert!(failure(502, &json!("bad gateway")).is_transient());
        let migrated = json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1_005_555_i64}});
        let status = StatusCode::BAD_REQUEST;
        assert!(matches!(
            read_answer::<SentMessage>("sendMessage", status, migrated.to_string().as_bytes()),
            Err(ApiFailure::Api {
                error: RequestError::MigrateToChatId(ChatId(-1_005_555)),
                ..
            })
        ));
    }

    #[test]
    fn a_sent_message_needs_only_its_id_and_chat() {
        let ok = json!({"ok": true, "result": {"message_id": 9, "chat": {"id": -5, "type": "weird_new_type"},
            "entities": [{"type": "brand_new_entity", "offset": 0, "length": 1}]}});
        let sent: SentMessage =
            read_answer("sendMessage", StatusCode::OK, ok.to_string().as_bytes()).unwrap();
        assert_eq!((sent.id.0, sent.chat.map(|c| c.id.0)), (9, Some(-5)));
        assert_eq!(method_of::<SendChatAction>(), "sendChatAction");
    }
}
