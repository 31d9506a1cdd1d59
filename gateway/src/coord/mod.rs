//! The coordination seam: what the replicas of one deployment must agree on — who answers a
//! conversation (leases), shared rate limits, outbound pacing state, web chat pub/sub, and the
//! agent console's live events per tenant.
//!
//! [`Local`] keeps all of it in this process (embedded mode: one replica); [`RedisCoord`]
//! shares it through Redis between replicas (distributed mode, `redis.url` set), with leases
//! kept in Postgres while Redis is unreachable. Callers —
//! lanes, the dispatcher's pacer, the HTTP limiters and the web chat sockets — only see the
//! [`Coord`] trait.

mod console;
mod limits;
mod local;
mod pacing;
mod redis;

use std::time::Duration;

use channels::webchat::EventBus;
use channels::{PacingPolicy, Throttled};
use tokio::sync::broadcast;

pub use console::{ConsoleEvent, announce};
pub use limits::RateLimit;
pub use local::Local;
use pacing::Pacer;
pub use redis::{LEASE_TTL, Quotas, RedisCoord};

/// Shared coordination state. Pub/sub of web chat events comes from the [`EventBus`]
/// supertrait, so the web chat channel can publish through the same object.
#[async_trait::async_trait]
pub trait Coord: EventBus {
    /// Takes the lease of `conversation_id`: while held, this replica is the only one
    /// preparing answers for it. `false` when another holder has it (try again later; the
    /// recovery poller brings the conversation back).
    async fn acquire_lease(&self, conversation_id: &str) -> bool;

    /// Gives the lease back (the lane stopped).
    async fn release_lease(&self, conversation_id: &str);

    /// Counts one event against `limit` for `key`: `Err(wait)` when over the limit.
    ///
    /// # Errors
    /// How long until `key` may try again.
    async fn check_rate(&self, limit: RateLimit, key: &str) -> Result<(), Duration>;

    /// Conversations with live web chat listeners in this process.
    fn live_topics(&self) -> usize;

    /// Reserves a send slot for (`account`, `recipient`) under the channel's `policy`:
    /// `Ok(())` to send now, `Err(wait)` to try again after `wait`.
    ///
    /// # Errors
    /// The wait until a slot frees up.
    async fn reserve_send(
        &self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
    ) -> Result<(), Duration>;

    /// The provider refused a send to (`account`, `recipient`) as too fast: slow the account
    /// down, or hold the recipient for a full interval (see [`Throttled`]).
    async fn send_throttled(
        &self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
        what: Throttled,
    );

    /// Subscribes to the agent console events of `tenant_id` (one stream per open console).
    /// A receiver that lags behind loses events and must refetch (`RecvError::Lagged`).
    fn console_subscribe(&self, tenant_id: &str) -> broadcast::Receiver<ConsoleEvent>;

    /// Publishes a console event to `tenant_id`'s subscribers, best effort: consoles also poll
    /// slowly, so a lost event delays an update but never hides it.
    fn console_publish(&self, tenant_id: &str, event: ConsoleEvent);
}
