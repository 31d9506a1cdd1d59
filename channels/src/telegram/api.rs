//! A thin Bot API client over `reqwest`: `POST <base>/bot<token>/<method>` with a JSON body,
//! answers `{"ok": …, "result": …}`. Classifies every failure (protocols §2.4).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::config::TelegramAccount;
use super::types;
use super::update::{self, BotIdentity, Update};
use crate::channel::{ChannelError, UNREACHABLE_CODE};
use crate::model::MediaKind;

/// A failed Bot API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// `ok: false` with an error code.
    Api {
        /// Telegram's `error_code` (usually the HTTP status).
        code: i64,
        /// Telegram's `description` (log-safe; never contains message text).
        description: String,
        /// `parameters.retry_after` (flood control), seconds.
        retry_after: Option<u64>,
        /// `parameters.migrate_to_chat_id` (group became a supergroup).
        migrate_to_chat_id: Option<i64>,
    },
    /// Network error, timeout, or an unreadable answer: a retry can succeed.
    Network(String),
}

impl ApiFailure {
    /// The classified channel error.
    pub fn into_channel_error(self) -> ChannelError {
        match self {
            Self::Api {
                retry_after: Some(s),
                ..
            } => ChannelError::RateLimited {
                retry_after: Some(Duration::from_secs(s)),
            },
            Self::Api { code: 429, .. } => ChannelError::RateLimited { retry_after: None },
            Self::Api {
                code: 403,
                description,
                ..
            } => ChannelError::Permanent {
                code: Some(UNREACHABLE_CODE.to_owned()),
                reason: format!("telegram 403: {}", short(&description)),
            },
            Self::Api {
                code, description, ..
            } if code >= 500 => ChannelError::Transient {
                reason: format!("telegram {code}: {}", short(&description)),
            },
            Self::Api {
                code, description, ..
            } => ChannelError::Permanent {
                code: Some(code.to_string()),
                reason: format!("telegram {code}: {}", short(&description)),
            },
            Self::Network(reason) => ChannelError::Transient { reason },
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

/// One message Telegram accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The chat it went to.
    pub chat_id: i64,
    /// Its id in that chat.
    pub message_id: i64,
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

    /// Calls `method` with `body`; `timeout` overrides the client's (long polling).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<T, ApiFailure> {
        let mut request = self.http.post(format!("{}/{method}", self.base)).json(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|e| {
            // reqwest errors can print the URL, which contains the token: keep only the kind.
            ApiFailure::Network(if e.is_timeout() {
                format!("{method}: timeout")
            } else if e.is_connect() {
                format!("{method}: connection failed")
            } else {
                format!("{method}: network error")
            })
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| ApiFailure::Network(format!("{method}: body read failed")))?;
        let parsed: types::Response<T> = serde_json::from_slice(&bytes).map_err(|_| {
            if status.is_success() {
                ApiFailure::Network(format!("{method}: unreadable answer (HTTP {status})"))
            } else {
                ApiFailure::Api {
                    code: i64::from(status.as_u16()),
                    description: format!("HTTP {status}"),
                    retry_after: None,
                    migrate_to_chat_id: None,
                }
            }
        })?;
        if parsed.ok
            && let Some(result) = parsed.result
        {
            return Ok(result);
        }
        let parameters = parsed.parameters;
        Err(ApiFailure::Api {
            code: parsed
                .error_code
                .unwrap_or_else(|| i64::from(status.as_u16())),
            description: parsed.description.unwrap_or_default(),
            retry_after: parameters.as_ref().and_then(|p| p.retry_after),
            migrate_to_chat_id: parameters.and_then(|p| p.migrate_to_chat_id),
        })
    }

    /// `sendMessage` (or another send method) with a prepared body.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn send(&self, method: &str, body: &Value) -> Result<Sent, ApiFailure> {
        let sent: types::SentMessage = self.call(method, body, None).await?;
        Ok(Sent {
            chat_id: sent
                .chat
                .map(|c| c.id)
                .or_else(|| body["chat_id"].as_i64())
                .unwrap_or_default(),
            message_id: sent.message_id,
        })
    }

    /// Sends a photo, voice note, document, … by Telegram `file_id` or by URL (Telegram
    /// fetches it), with an optional caption (≤ 1,024 characters, HTML-escaped here).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn send_media(
        &self,
        chat_id: i64,
        kind: MediaKind,
        file_id_or_url: &str,
        caption: Option<&str>,
    ) -> Result<Sent, ApiFailure> {
        let (method, _) = super::media_method(kind);
        let caption = caption.map(|c| c.chars().take(1024).collect::<String>());
        let body = super::media_body(&json!(chat_id), kind, file_id_or_url, caption.as_deref());
        self.send(method, &body).await
    }

    /// `sendChatAction typing` (shown ≤ 5 s or until the next message).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn send_typing(&self, chat_id: &str) -> Result<(), ApiFailure> {
        let _: bool = self
            .call(
                "sendChatAction",
                &json!({"chat_id": chat_id.parse::<i64>().map_or_else(|_| json!(chat_id), |n| json!(n)), "action": "typing"}),
                None,
            )
            .await?;
        Ok(())
    }

    /// `answerCallbackQuery` without text: stops the button's progress spinner.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn answer_callback_query(&self, query_id: &str) -> Result<(), ApiFailure> {
        let _: bool = self
            .call(
                "answerCallbackQuery",
                &json!({"callback_query_id": query_id}),
                None,
            )
            .await?;
        Ok(())
    }

    /// `setWebhook` with the secret token and the update kinds Sapa handles.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn set_webhook(&self, url: &str, secret: &str) -> Result<(), ApiFailure> {
        let _: bool = self
            .call(
                "setWebhook",
                &json!({
                    "url": url,
                    "secret_token": secret,
                    "allowed_updates": update::ALLOWED_UPDATES,
                }),
                None,
            )
            .await?;
        Ok(())
    }

    /// `deleteWebhook` (required before `getUpdates` works).
    ///
    /// # Errors
    /// The classified failure.
    pub async fn delete_webhook(&self) -> Result<(), ApiFailure> {
        let _: bool = self
            .call(
                "deleteWebhook",
                &json!({"drop_pending_updates": false}),
                None,
            )
            .await?;
        Ok(())
    }

    /// `getMe`: the bot's id and username.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn get_me(&self) -> Result<BotIdentity, ApiFailure> {
        let me: types::User = self.call("getMe", &json!({}), None).await?;
        Ok(BotIdentity {
            id: me.id,
            username: me.username.unwrap_or_default(),
        })
    }

    /// `getUpdates` from `offset`, long-polling up to `timeout_s`; decoded. Updates whose
    /// kind is unknown come back as ignored events, so the offset still advances past them.
    ///
    /// # Errors
    /// The classified failure.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout_s: u64,
        bot: &BotIdentity,
    ) -> Result<Vec<Update>, ApiFailure> {
        let raw: Vec<Value> = self
            .call(
                "getUpdates",
                &json!({
                    "offset": offset,
                    "timeout": timeout_s,
                    "allowed_updates": update::ALLOWED_UPDATES,
                }),
                Some(Duration::from_secs(timeout_s + 10)),
            )
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|v| update::decode_value(v, bot).ok())
            .collect())
    }
}
