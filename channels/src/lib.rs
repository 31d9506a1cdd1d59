//! Channels: the normalized message model and the adapters that speak each provider's protocol.
//!
//! # Layout
//! - `model`: provider-independent inbound and outbound message types.
//! - `channel`: the [`Channel`] trait every adapter implements, and [`ChannelError`].
//! - `whatsapp`: WhatsApp Cloud API: webhook signature check and decoding, Graph API client,
//!   [`whatsapp::WhatsappChannel`].
//! - `telegram`: Telegram Bot API on teloxide-core's types and payloads: webhook secret check
//!   and update decoding, a thin Bot API client, HTML escaping and splitting, [`telegram::TelegramChannel`].
//! - `text`: text shaping shared by the adapters (measuring, splitting, caption placement).
//! - `webchat`: the browser channel; its "provider API" is the in-process [`webchat::Hub`]
//!   that pushes messages to connected WebSocket clients.
//!
//! # Invariants
//! - **`channels` knows no tenant, no LLM, no storage.** It translates between wire formats
//!   and [`model`] types and talks to provider APIs; nothing else.
//! - **Provider wire structs never leave their adapter module.**
//! - Adapters MUST verify signatures in constant time, MUST NOT log message bodies, and
//!   MUST classify every send failure as transient or permanent (see [`ChannelError`]).

pub mod channel;
pub mod markup;
pub mod model;
pub mod pacing;
pub mod provider;
#[cfg(feature = "telegram")]
pub mod telegram;
pub mod text;
#[cfg(feature = "webchat")]
pub mod webchat;
#[cfg(feature = "whatsapp")]
pub mod whatsapp;

pub use channel::{Channel, ChannelError, MediaError, MediaFile, NoPartLog, PartLog, Throttled};
pub use model::{ChannelKind, CodeDelivery, Delivery, OutboundMessage};
pub use pacing::PacingPolicy;
pub use provider::{ChannelPlugin, Provider, Setting};
