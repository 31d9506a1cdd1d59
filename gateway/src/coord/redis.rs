//! [`RedisCoord`]: the [`Coord`] of distributed mode, shared by every replica through Redis.
//!
//! - **Leases**: `SET <prefix>lease:<conversation> <token> NX PX 10000`, renewed every 3 s
//!   while held and deleted only by their holder (compare-and-delete). A replica that stalls
//!   past the TTL loses the lease; its stale answer is still refused at commit by the store's
//!   own check, so the lease is about not doing the work twice, the store about correctness.
//! - **Rate limits and pacing**: GCRA state in Redis, updated by Lua scripts that read the
//!   server's clock (`TIME`), so N replicas share one limit instead of N.
//! - **Pub/sub**: web chat and console events are published to `<prefix>wc:<conversation>`
//!   and `<prefix>console:<tenant>`; every replica pattern-subscribes and hands what it
//!   receives to its own sockets, so a browser on replica A sees what replica B sends.
//!
//! **Redis down**: every failed command counts a fallback in `sapa_coord_fallbacks_total{op}`
//! and sets `sapa_coord_degraded` to 1; the next command that succeeds clears it. Nothing
//! needs a restart: the connection manager reconnects and the subscriber loop re-subscribes.
//! Meanwhile:
//! - **Leases go to Postgres** when the database is Postgres (the store handle given to
//!   [`RedisCoord::start`]): a row in `conversation_leases` (see `store::leases`), shared by
//!   every replica on the database, with the same TTL, renewed by the same loop and deleted
//!   only by its holder — so the per-conversation order still holds across replicas. Each
//!   held lease remembers where it lives (Redis, Postgres or this process), so renewal and
//!   release go to the same place. Only when the database cannot be reached either does a
//!   lease fall back to this replica alone ([`Local`]), as the store's commit check still
//!   refuses a stale answer.
//! - **Limits and events** are per replica: limits from [`Local`], events to this replica's
//!   sockets only.
//!
//! **Handovers between the two lease stores.** *Redis going away*: a lease held in Redis
//! whose renewal fails is moved into Postgres under the same token at that renewal (within
//! 3 s), so a replica falling back to Postgres meets it there; a replica that falls back in
//! the seconds before the move can still win the row, and the holder then counts the lease as
//! lost (`sapa_coord_leases_lost_total`) — the store's commit check fences that window.
//! *Redis coming back* (or a replica that never lost it, in a partition): a lease taken in
//! Redis is kept only if Postgres has no live lease of another holder for the conversation —
//! one primary-key lookup per lease taken, made whenever a store is configured, because a
//! replica cannot know whether another one is degraded. Otherwise the Redis lease is given
//! back and the acquire refused, so a Postgres lease taken during the outage keeps its
//! conversation until its holder releases it or it expires. If the database cannot answer
//! that lookup the Redis lease stands (no one can take a Postgres lease then either). Not
//! caught: a replica that cannot reach Redis taking the row between another replica's `SET`
//! and its lookup — possible only while one replica reaches Redis and the other does not, and
//! fenced by the commit check like any lost lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use channels::webchat::{EventBus, SharedEvent, WebchatEvent};
use channels::{PacingPolicy, Throttled};
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{broadcast, mpsc};

use super::{ConsoleEvent, Coord, Local, RateLimit};
use crate::store::Store;
use crate::telemetry;

/// How long a lease lives without renewal (the issue's bound: at most 10 s).
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often held leases are renewed.
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How long a single Redis command may take before the replica falls back to local state.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause before the subscriber reconnects.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(500);
/// Events published in one pipeline at most.
const PUBLISH_BATCH: usize = 64;

/// Compare-and-delete: only the holder frees its lease.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
         return 0",
    )
});

/// Compare-and-extend: renews the lease only while the token still holds it.
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
         return 0",
    )
});

/// GCRA (the algorithm governor uses): `ARGV[1]` = emission interval in µs, `ARGV[2]` =
/// burst. Returns 0 when allowed (and counts it), else the wait in µs. Time is the server's,
/// so replicas with skewed clocks agree.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat + emission - emission * burst
if allow_at > now then return math.ceil(allow_at - now) end
local new_tat = tat + emission
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
",
    )
});

/// Outbound pacing (the shared form of `pacing::Pacer`): `KEYS[1]` the recipient's GCRA
/// state, `KEYS[2]` the account's hash (`tat`, `scale`, `at`). `ARGV`: recipient emission µs
/// (0: no recipient limit), recipient burst, account rate per second (0: none), lowest scale,
/// scale recovered per second. Returns 0 (reserved) or the wait in µs.
static PACE_RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r_em = tonumber(ARGV[1])
local r_burst = tonumber(ARGV[2])
local a_rate = tonumber(ARGV[3])
local r_tat = now
if r_em > 0 then
  r_tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
  local allow_at = r_tat + r_em - r_em * r_burst
  if allow_at > now then return math.ceil(allow_at - now) end
end
if a_rate > 0 then
  local h = redis.call('HMGET', KEYS[2], 'tat', 'scale', 'at')
  local scale = tonumber(h[2] or '1')
  local at = tonumber(h[3] or tostring(now))
  if scale < 1 then scale = math.min(1, scale + (now - at) / 1000000 * tonumber(ARGV[5])) end
  local rate = math.max(a_rate * scale, 0.000001)
  local em = 1000000 / rate
  local burst = math.max(rate, 1)
  local tat = math.max(tonumber(h[1] or '0'), now)
  local allow_at = tat + em - em * burst
  if allow_at > now then return math.ceil(allow_at - now) end
  redis.call('HSET', KEYS[2], 'tat', string.format('%.0f', tat + em), 'scale', tostring(scale), 'at', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[2], 600000)
end
if r_em > 0 then
  local new_tat = r_tat + r_em
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return 0
",
    )
});

/// The provider said "too fast". `ARGV[1]`: `account` or `recipient`; then as
/// [`PACE_RESERVE`]'s arguments. An account's rate is halved (down to the lowest scale) and
/// its next send waits one interval at the new rate; a recipient waits a full interval.
static PACE_THROTTLED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[1] == 'recipient' then
  local r_em = tonumber(ARGV[2])
  local r_burst = tonumber(ARGV[3])
  if r_em > 0 then
    local tat = now + r_em * r_burst
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  return 0
end
local a_rate = tonumber(ARGV[4])
if a_rate <= 0 then return 0 end
local h = redis.call('HMGET', KEYS[2], 'tat', 'scale', 'at')
local scale = tonumber(h[2] or '1')
local at = tonumber(h[3] or tostring(now))
if scale < 1 then scale = math.min(1, scale + (now - at) / 1000000 * tonumber(ARGV[6])) end
scale = math.max(scale / 2, tonumber(ARGV[5]))
local rate = a_rate * scale
local em = 1000000 / rate
local burst = math.max(rate, 1)
local tat = math.max(tonumber(h[1] or '0'), now + em * burst)
redis.call('HSET', KEYS[2], 'tat', string.format('%.0f', tat), 'scale', tostring(scale), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[2], 600000)
return 0
",
    )
});

/// One event on the shared bus: where it goes and what it is.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "bus", rename_all = "snake_case")]
enum BusEvent {
    /// A web chat event of one conversation.
    Webchat {
        /// Conversation id.
        topic: String,
        /// The event.
        event: WebchatEvent,
    },
    /// A console event of one tenant.
    Console {
        /// Tenant id.
        topic: String,
        /// The event.
        event: ConsoleEvent,
    },
}

/// Where a held lease lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// `<prefix>lease:<conversation>` in Redis.
    Redis,
    /// A `conversation_leases` row (Redis was unreachable).
    Postgres,
    /// This process only (Redis and the database were unreachable).
    Local,
}

/// A lease this replica holds: its token and where it lives.
#[derive(Debug, Clone)]
struct Held {
    token: String,
    backend: Backend,
}

/// Coordination through Redis, with Postgres as the fallback of leases, this replica's
/// [`Local`] state as the last fallback and as the last hop to its own sockets.
pub struct RedisCoord {
    local: Local,
    manager: ConnectionManager,
    /// The database, when it is Postgres: where leases go while Redis is unreachable.
    store: Option<Store>,
    prefix: String,
    /// Unique per process: the first part of every lease token.
    replica: String,
    next_token: AtomicU64,
    /// Leases this replica holds, by conversation.
    held: Mutex<HashMap<String, Held>>,
    /// How long a lease lives without renewal ([`LEASE_TTL`]; shorter in tests).
    lease_ttl: Duration,
    /// How often held leases are renewed ([`RENEW_EVERY`]; shorter in tests).
    renew_every: Duration,
    /// Per-minute amounts of the configured limits (0: off).
    quotas: Quotas,
    /// The subscriber listens: events go through Redis (else straight to local sockets).
    subscribed: Arc<AtomicBool>,
    degraded: AtomicBool,
    outgoing: mpsc::UnboundedSender<BusEvent>,
}

impl std::fmt::Debug for RedisCoord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoord")
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("degraded", &self.degraded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The configured limits, as GCRA parameters.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// `webchat.messages_per_minute_per_session`.
    pub webchat_session_per_minute: u32,
    /// `webchat.requests_per_minute_per_ip`.
    pub client_ip_per_minute: u32,
    /// `conversation.messages_per_minute`.
    pub conversation_per_minute: u32,
}

impl Quotas {
    /// (emission interval in µs, burst) of `limit`, `None` when off.
    fn gcra(self, limit: RateLimit) -> Option<(u64, u32)> {
        let per_minute = match limit {
            RateLimit::WebchatSession => self.webchat_session_per_minute,
            RateLimit::ClientIp => self.client_ip_per_minute,
            RateLimit::Conversation => self.conversation_per_minute,
            RateLimit::ConsoleTyping => {
                let every = super::limits::CONSOLE_TYPING_EVERY;
                return Some((u64::try_from(every.as_micros()).unwrap_or(u64::MAX), 1));
            }
        };
        (per_minute > 0).then(|| (60_000_000 / u64::from(per_minute), per_minute))
    }
}

impl RedisCoord {
    /// Connects lazily to `url` (a replica starts even while Redis is down, degraded) and
    /// starts the subscriber, publisher and lease-renewal tasks, which end with the returned
    /// value. Keys and channels start with `prefix`. `store` is the database when it is
    /// Postgres: leases go there while Redis is unreachable (`None`: to this replica alone).
    ///
    /// # Errors
    /// When `url` is not a Redis URL.
    pub fn start(
        url: &str,
        prefix: &str,
        local: Local,
        quotas: Quotas,
        store: Option<Store>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::start_with(url, prefix, local, quotas, store, (LEASE_TTL, RENEW_EVERY))
    }

    /// [`Self::start`] with the lease TTL and renewal period given (tests shorten them).
    fn start_with(
        url: &str,
        prefix: &str,
        local: Local,
        quotas: Quotas,
        store: Option<Store>,
        (lease_ttl, renew_every): (Duration, Duration),
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("redis.url is not a Redis URL: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        let (outgoing, queue) = mpsc::unbounded_channel();
        let coord = Arc::new(Self {
            local,
            manager,
            store,
            prefix: prefix.to_owned(),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            next_token: AtomicU64::new(1),
            held: Mutex::new(HashMap::new()),
            lease_ttl,
            renew_every,
            quotas,
            subscribed: Arc::new(AtomicBool::new(false)),
            degraded: AtomicBool::new(false),
            outgoing,
        });
        tokio::spawn(subscribe_loop(Arc::downgrade(&coord), client));
        tokio::spawn(publish_loop(Arc::downgrade(&coord), queue));
        tokio::spawn(renew_loop(Arc::downgrade(&coord)));
        Ok(coord)
    }

    /// Whether the last Redis command failed (limits and leases are per replica meanwhile).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// Records a command's outcome: the degraded flag and gauge, and the fallback counter.
    fn outcome<T>(&self, op: &'static str, result: Result<T, redis::RedisError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis is back: leases, limits and events are shared again");
                    metrics::gauge!(telemetry::COORD_DEGRADED).set(0.0);
                }
                Some(value)
            }
            Err(err) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, op, "Redis unreachable: leases, limits and events are per replica until it is back");
                    metrics::gauge!(telemetry::COORD_DEGRADED).set(1.0);
                }
                metrics::counter!(telemetry::COORD_FALLBACKS_TOTAL, "op" => op).increment(1);
                None
            }
        }
    }

    /// Delivers an event to this replica's own subscribers.
    fn deliver(&self, event: BusEvent) {
        match event {
            BusEvent::Webchat { topic, event } => self.local.publish(&topic, event),
            BusEvent::Console { topic, event } => self.local.console_publish(&topic, event),
        }
    }

    /// Sends an event through Redis while the subscriber listens, else straight to local
    /// subscribers.
    fn send(&self, event: BusEvent) {
        if self.subscribed.load(Ordering::Acquire) {
            if let Err(mpsc::error::SendError(event)) = self.outgoing.send(event) {
                self.deliver(event);
            }
        } else {
            self.deliver(event);
        }
    }
}

/// Pattern-subscribes to every web chat and console channel of the deployment and hands each
/// event to this replica's sockets; reconnects after a failure.
async fn subscribe_loop(coord: Weak<RedisCoord>, client: redis::Client) {
    loop {
        let Some(prefix) = coord.upgrade().map(|c| c.prefix.clone()) else {
            return;
        };
        let subscribed = match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.psubscribe(format!("{prefix}bus:*")).await {
                Ok(()) => Some(pubsub),
                Err(err) => {
                    tracing::debug!(error = %err, "subscribing to the event bus failed");
                    None
                }
            },
            Err(err) => {
                tracing::debug!(error = %err, "connecting the event bus failed");
                None
            }
        };
        if let Some(mut pubsub) = subscribed {
            let flag = match coord.upgrade() {
                Some(c) => c.subscribed.clone(),
                None => return,
            };
            flag.store(true, Ordering::Release);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(coord) = coord.upgrade() else {
                    return;
                };
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                match serde_json::from_slice::<BusEvent>(&payload) {
                    Ok(event) => coord.deliver(event),
                    Err(err) => {
                        tracing::warn!(error = %err, "an event on the bus could not be read")
                    }
                }
            }
            flag.store(false, Ordering::Release);
            tracing::warn!(
                "the event bus connection closed; events go to local sockets until it is back"
            );
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

/// Publishes queued events in order, pipelined; what Redis refuses goes to local sockets.
async fn publish_loop(coord: Weak<RedisCoord>, mut queue: mpsc::UnboundedReceiver<BusEvent>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let Some(coord) = coord.upgrade() else {
            return;
        };
        let mut pipe = redis::pipe();
        for event in &batch {
            let channel = match event {
                BusEvent::Webchat { topic, .. } => coord.key("bus:wc", topic),
                BusEvent::Console { topic, .. } => coord.key("bus:console", topic),
            };
            match serde_json::to_vec(event) {
                Ok(payload) => {
                    pipe.publish(channel, payload).ignore();
                }
                Err(err) => tracing::warn!(error = %err, "an event could not be encoded"),
            }
        }
        let mut manager = coord.manager.clone();
        let sent: Result<(), _> = pipe.query_async(&mut manager).await;
        if coord.outcome("publish", sent).is_none() {
            for event in batch.drain(..) {
                coord.deliver(event);
            }
        }
        batch.clear();
    }
}

/// Renews every lease this replica holds, every [`RENEW_EVERY`], where it lives. A Redis
/// lease whose renewal fails moves into Postgres (same token) when a store is configured.
async fn renew_loop(coord: Weak<RedisCoord>) {
    let Some(every) = coord.upgrade().map(|c| c.renew_every) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(coord) = coord.upgrade() else {
            return;
        };
        let held: Vec<(String, Held)> = coord
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (conversation_id, lease) in held {
            if !coord.renew(&conversation_id, &lease).await {
                tracing::warn!(conversation_id = %conversation_id, "a lease expired while held; the store's commit check refuses a stale answer");
                metrics::counter!(telemetry::COORD_LEASES_LOST_TOTAL).increment(1);
            }
        }
    }
}

impl RedisCoord {
    /// A fresh lease token: this replica, then a counter.
    fn new_token(&self) -> String {
        format!(
            "{}:{}",
            self.replica,
            self.next_token.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.lease_ttl.as_millis()).unwrap_or(10_000)
    }

    /// Renews one held lease where it lives; `false` when it is lost (another holder may
    /// have it). A renewal that cannot reach its backend is not a loss: the lease may still
    /// be live, and expires by its TTL otherwise.
    async fn renew(&self, conversation_id: &str, lease: &Held) -> bool {
        match lease.backend {
            Backend::Local => true,
            Backend::Redis => {
                let mut manager = self.manager.clone();
                let renewed: Result<i64, _> = RENEW
                    .key(self.key("lease", conversation_id))
                    .arg(&lease.token)
                    .arg(self.ttl_ms())
                    .invoke_async(&mut manager)
                    .await;
                match self.outcome("lease_renew", renewed) {
                    Some(renewed) => renewed != 0,
                    None => self.move_to_postgres(conversation_id, lease).await,
                }
            }
            Backend::Postgres => {
                let Some(store) = &self.store else {
                    return true;
                };
                match store
                    .renew_conversation_lease(conversation_id, &lease.token, self.lease_ttl)
                    .await
                {
                    Ok(renewed) => renewed,
                    Err(err) => {
                        tracing::warn!(error = %err.chain(), "renewing a lease in the database failed; it expires unless a later renewal succeeds");
                        true
                    }
                }
            }
        }
    }

    /// Redis could not renew a lease held there: takes the same lease (same token) in
    /// Postgres, where replicas falling back look. `false` when another holder has it there.
    async fn move_to_postgres(&self, conversation_id: &str, lease: &Held) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        match store
            .try_conversation_lease(conversation_id, &lease.token, self.lease_ttl)
            .await
        {
            Ok(true) => {
                if let Some(held) = self
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(conversation_id)
                    .filter(|h| h.token == lease.token)
                {
                    held.backend = Backend::Postgres;
                }
                true
            }
            Ok(false) => false,
            Err(err) => {
                tracing::warn!(error = %err.chain(), "moving a lease to the database failed");
                true
            }
        }
    }

    /// Redis is unreachable: takes the lease in Postgres when a store is configured, else
    /// (or when the database is unreachable too) in this process.
    async fn acquire_fallback(&self, conversation_id: &str, token: String) -> bool {
        if let Some(store) = &self.store {
            match store
                .try_conversation_lease(conversation_id, &token, self.lease_ttl)
                .await
            {
                Ok(taken) => {
                    if taken {
                        self.hold(conversation_id, token, Backend::Postgres);
                    }
                    return taken;
                }
                Err(err) => {
                    tracing::warn!(error = %err.chain(), "Redis and the database are unreachable: this lease holds on this replica only");
                    metrics::counter!(telemetry::COORD_FALLBACKS_TOTAL, "op" => "lease_local")
                        .increment(1);
                }
            }
        }
        // This replica's own lease (the store's commit check still fences).
        match self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(conversation_id.to_owned())
        {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Held {
                    token,
                    backend: Backend::Local,
                });
                true
            }
        }
    }

    /// Records a lease taken.
    fn hold(&self, conversation_id: &str, token: String, backend: Backend) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(conversation_id.to_owned(), Held { token, backend });
    }

    /// Compare-and-delete of a Redis lease.
    async fn release_in_redis(&self, conversation_id: &str, token: &str) {
        let mut manager = self.manager.clone();
        let released: Result<i64, _> = RELEASE
            .key(self.key("lease", conversation_id))
            .arg(token)
            .invoke_async(&mut manager)
            .await;
        // A lease Redis could not free expires by its TTL.
        self.outcome("lease_release", released);
    }
}

impl EventBus for RedisCoord {
    fn subscribe(&self, conversation_id: &str) -> broadcast::Receiver<SharedEvent> {
        self.local.subscribe(conversation_id)
    }

    fn publish(&self, conversation_id: &str, event: WebchatEvent) {
        self.send(BusEvent::Webchat {
            topic: conversation_id.to_owned(),
            event,
        });
    }

    fn leave(&self, conversation_id: &str) {
        self.local.leave(conversation_id);
    }
}

/// Microseconds as a wait.
fn wait_of(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros.max(1)).unwrap_or(1))
}

/// A policy's GCRA parameters: recipient emission µs, recipient burst, account rate per second.
fn pace_args(policy: PacingPolicy) -> (u64, u32, u32) {
    let recipient = u64::try_from(policy.per_recipient_interval.as_micros()).unwrap_or(u64::MAX);
    (
        recipient,
        policy.per_recipient_burst.max(1),
        policy.per_account_per_sec.map_or(0, |r| r.max(1)),
    )
}

#[async_trait::async_trait]
impl Coord for RedisCoord {
    async fn acquire_lease(&self, conversation_id: &str) -> bool {
        let token = self.new_token();
        let mut manager = self.manager.clone();
        let taken: Result<Option<String>, _> = redis::cmd("SET")
            .arg(self.key("lease", conversation_id))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms())
            .query_async(&mut manager)
            .await;
        match self.outcome("lease", taken) {
            Some(Some(_)) => {
                // A Postgres lease taken while Redis was away (here or on a replica that
                // cannot reach it) keeps its conversation.
                if let Some(store) = &self.store {
                    match store
                        .conversation_leased_by_other(conversation_id, &token)
                        .await
                    {
                        Ok(true) => {
                            self.release_in_redis(conversation_id, &token).await;
                            return false;
                        }
                        Ok(false) => {}
                        Err(err) => {
                            tracing::debug!(error = %err.chain(), "checking the database for a fallback lease failed; the Redis lease stands");
                        }
                    }
                }
                self.hold(conversation_id, token, Backend::Redis);
                true
            }
            Some(None) => false,
            None => self.acquire_fallback(conversation_id, token).await,
        }
    }

    async fn release_lease(&self, conversation_id: &str) {
        let held = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(conversation_id);
        let Some(Held { token, backend }) = held else {
            return;
        };
        match backend {
            Backend::Redis => self.release_in_redis(conversation_id, &token).await,
            Backend::Postgres => {
                if let Some(store) = &self.store
                    && let Err(err) = store
                        .release_conversation_lease(conversation_id, &token)
                        .await
                {
                    // It expires by its TTL.
                    tracing::warn!(error = %err.chain(), "releasing a lease in the database failed");
                }
            }
            Backend::Local => {}
        }
    }

    async fn check_rate(&self, limit: RateLimit, key: &str) -> Result<(), Duration> {
        let Some((emission, burst)) = self.quotas.gcra(limit) else {
            return Ok(());
        };
        let mut manager = self.manager.clone();
        let checked: Result<i64, _> = GCRA
            .key(self.key(&format!("rate:{}", limit.label()), key))
            .arg(emission)
            .arg(burst)
            .invoke_async(&mut manager)
            .await;
        match self.outcome("rate", checked) {
            Some(0) => Ok(()),
            Some(wait) => Err(wait_of(wait)),
            None => self.local.check_rate(limit, key).await,
        }
    }

    fn live_topics(&self) -> usize {
        self.local.live_topics()
    }

    async fn reserve_send(
        &self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
    ) -> Result<(), Duration> {
        let (r_emission, r_burst, rate) = pace_args(policy);
        if r_emission == 0 && rate == 0 {
            return Ok(());
        }
        let mut manager = self.manager.clone();
        let reserved: Result<i64, _> = PACE_RESERVE
            .key(self.key("pace:r", &format!("{account}:{recipient}")))
            .key(self.key("pace:a", account))
            .arg(r_emission)
            .arg(r_burst)
            .arg(rate)
            .arg(super::pacing::MIN_SCALE)
            .arg(super::pacing::RECOVERY_PER_SEC)
            .invoke_async(&mut manager)
            .await;
        match self.outcome("pace", reserved) {
            Some(0) => Ok(()),
            Some(wait) => Err(wait_of(wait)),
            None => self.local.reserve_send(policy, account, recipient).await,
        }
    }

    async fn send_throttled(
        &self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
        what: Throttled,
    ) {
        let (r_emission, r_burst, rate) = pace_args(policy);
        let mut manager = self.manager.clone();
        let done: Result<i64, _> = PACE_THROTTLED
            .key(self.key("pace:r", &format!("{account}:{recipient}")))
            .key(self.key("pace:a", account))
            .arg(match what {
                Throttled::Account => "account",
                Throttled::Recipient => "recipient",
            })
            .arg(r_emission)
            .arg(r_burst)
            .arg(rate)
            .arg(super::pacing::MIN_SCALE)
            .arg(super::pacing::RECOVERY_PER_SEC)
            .invoke_async(&mut manager)
            .await;
        if self.outcome("pace", done).is_none() {
            self.local
                .send_throttled(policy, account, recipient, what)
                .await;
        } else if matches!(what, Throttled::Account) {
            tracing::warn!(
                account,
                "provider throttled the account; every replica sends slower"
            );
        }
    }

    fn console_subscribe(&self, tenant_id: &str) -> broadcast::Receiver<ConsoleEvent> {
        self.local.console_subscribe(tenant_id)
    }

    fn console_publish(&self, tenant_id: &str, event: ConsoleEvent) {
        self.send(BusEvent::Console {
            topic: tenant_id.to_owned(),
            event,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::WebchatConfig;
    use crate::store::DatabaseTarget;

    /// Redis from `SAPA_TEST_REDIS_URL`; `None` (skip) outside CI when unset. Each test gets
    /// its own key prefix.
    fn redis_url() -> Option<String> {
        match std::env::var("SAPA_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but SAPA_TEST_REDIS_URL is not: the Redis coordination tests must run in CI"
                );
                eprintln!("SAPA_TEST_REDIS_URL not set: Redis coordination test skipped");
                None
            }
        }
    }

    fn webchat(per_session: u32) -> WebchatConfig {
        WebchatConfig {
            max_message_chars: 10,
            messages_per_minute_per_session: per_session,
            requests_per_minute_per_ip: 0,
            max_sockets_per_session: 5,
            max_sockets: 100,
            session_idle_timeout: Duration::from_secs(3600),
        }
    }

    /// `n` replicas on one Redis and one fresh prefix.
    fn replicas(url: &str, n: usize, per_session: u32) -> Vec<Arc<RedisCoord>> {
        let prefix = format!("sapa-test:{}:", uuid::Uuid::new_v4().simple());
        (0..n)
            .map(|_| {
                RedisCoord::start(
                    url,
                    &prefix,
                    Local::new(&webchat(per_session)),
                    Quotas {
                        webchat_session_per_minute: per_session,
                        client_ip_per_minute: 0,
                        conversation_per_minute: 0,
                    },
                    None,
                )
                .unwrap()
            })
            .collect()
    }

    /// Waits until every replica's subscriber listens.
    async fn listening(replicas: &[Arc<RedisCoord>]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !replicas
            .iter()
            .all(|r| r.subscribed.load(Ordering::Acquire))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscribers never listened"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_across_replicas_until_its_holder_releases_it() {
        let Some(url) = redis_url() else { return };
        let r = replicas(&url, 2, 0);
        assert!(r[0].acquire_lease("c1").await);
        assert!(
            !r[1].acquire_lease("c1").await,
            "the other replica is refused"
        );
        assert!(
            !r[0].acquire_lease("c1").await,
            "held means held, even by itself"
        );
        // Only the holder frees it: a release by the other replica changes nothing.
        r[1].release_lease("c1").await;
        assert!(!r[1].acquire_lease("c1").await);
        r[0].release_lease("c1").await;
        assert!(r[1].acquire_lease("c1").await);
        assert!(!r[0].is_degraded() && !r[1].is_degraded());
        // The lease lives at most LEASE_TTL without renewal.
        let mut con = r[0].manager.clone();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(r[0].key("lease", "c1"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 10_000, "{ttl}");
    }

    #[tokio::test]
    async fn a_rate_limit_of_n_is_n_in_total_over_three_replicas() {
        let Some(url) = redis_url() else { return };
        let r = replicas(&url, 3, 5);
        let mut allowed = 0;
        let mut waits = Vec::new();
        for i in 0..30 {
            match r[i % 3]
                .check_rate(RateLimit::WebchatSession, "conv-a")
                .await
            {
                Ok(()) => allowed += 1,
                Err(wait) => waits.push(wait),
            }
        }
        assert_eq!(allowed, 5, "5 per minute in total, not 15");
        // The next one frees up in a fifth of a minute.
        assert!(
            waits
                .iter()
                .all(|w| *w > Duration::from_secs(10) && *w <= Duration::from_secs(12)),
            "{waits:?}"
        );
        // Another key has its own budget; a disabled limit never refuses.
        assert!(
            r[1].check_rate(RateLimit::WebchatSession, "conv-b")
                .await
                .is_ok()
        );
        for _ in 0..50 {
            assert!(
                r[2].check_rate(RateLimit::ClientIp, "10.0.0.1")
                    .await
                    .is_ok()
            );
        }
    }

    #[tokio::test]
    async fn pacing_is_shared_and_a_throttled_recipient_waits_a_full_interval_everywhere() {
        let Some(url) = redis_url() else { return };
        let r = replicas(&url, 2, 0);
        let policy = PacingPolicy {
            per_account_per_sec: Some(1000),
            per_recipient_interval: Duration::from_secs(6),
            per_recipient_burst: 2,
        };
        // Two back to back to one recipient, over two replicas; the third waits ~6 s.
        assert!(r[0].reserve_send(policy, "n1", "628111").await.is_ok());
        assert!(r[1].reserve_send(policy, "n1", "628111").await.is_ok());
        let wait = r[0].reserve_send(policy, "n1", "628111").await.unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        // A throttle reported on one replica holds the recipient on the other.
        assert!(r[0].reserve_send(policy, "n1", "628222").await.is_ok());
        r[0].send_throttled(policy, "n1", "628222", Throttled::Recipient)
            .await;
        let wait = r[1].reserve_send(policy, "n1", "628222").await.unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        // The account's rate is one pool: 2 per second over both replicas.
        let slow = PacingPolicy {
            per_account_per_sec: Some(2),
            per_recipient_interval: Duration::ZERO,
            per_recipient_burst: 1,
        };
        let mut sent = 0;
        for i in 0..10 {
            if r[i % 2]
                .reserve_send(slow, "n2", &format!("62{i}"))
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
        assert_eq!(sent, 2);
        // A throttled account halves the shared rate: the next send waits about a second.
        r[1].send_throttled(slow, "n3", "62x", Throttled::Account)
            .await;
        let wait = r[0].reserve_send(slow, "n3", "62y").await.unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1000),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn web_chat_and_console_events_reach_subscribers_on_other_replicas_in_order() {
        let Some(url) = redis_url() else { return };
        let r = replicas(&url, 3, 0);
        listening(&r).await;
        let mut on_a = r[0].subscribe("conv-1");
        let mut console_a = r[0].console_subscribe("tenant-1");
        let mut console_b_other = r[1].console_subscribe("tenant-2");
        for i in 0..20 {
            r[1 + i % 2].publish(
                "conv-1",
                WebchatEvent::Delta {
                    text: format!("{i}"),
                },
            );
        }
        for i in 0..20 {
            let event = tokio::time::timeout(Duration::from_secs(5), on_a.recv())
                .await
                .expect("an event from another replica")
                .unwrap();
            match &*event {
                WebchatEvent::Delta { text } => {
                    // Events of one publisher stay in order; two publishers interleave.
                    assert!(text.parse::<usize>().unwrap() < 20, "{i}: {text}");
                }
                other => panic!("{other:?}"),
            }
        }
        let event = ConsoleEvent::Presence {
            staff_id: "s1".into(),
            status: "online".into(),
        };
        r[2].console_publish("tenant-1", event.clone());
        let got = tokio::time::timeout(Duration::from_secs(5), console_a.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, event);
        let conversation = ConsoleEvent::Conversation {
            id: "c9".into(),
            state: "waiting_human".into(),
            assignee: None,
        };
        r[0].console_publish("tenant-1", conversation.clone());
        assert_eq!(console_a.recv().await.unwrap(), conversation);
        assert!(
            console_b_other.try_recv().is_err(),
            "another tenant sees nothing"
        );
    }

    #[tokio::test]
    async fn one_publisher_keeps_its_order_across_replicas() {
        let Some(url) = redis_url() else { return };
        let r = replicas(&url, 2, 0);
        listening(&r).await;
        let mut on_b = r[1].subscribe("conv-2");
        // Every kind of event crosses, a stored message with its optional fields left out too.
        let message = channels::webchat::WebchatMessage {
            id: 7,
            author: channels::model::Author::Bot,
            text: "Buka jam 08.00, Kak.".into(),
            created_at: "2026-12-07T05:00:00Z".into(),
            client_message_id: None,
            in_reply_to: vec![],
            choices: vec![],
            status: None,
            citations: vec![],
        };
        r[0].publish(
            "conv-2",
            WebchatEvent::Message {
                message: message.clone(),
            },
        );
        r[0].publish("conv-2", WebchatEvent::Typing);
        r[0].publish("conv-2", WebchatEvent::StreamDiscarded);
        match &*on_b.recv().await.unwrap() {
            WebchatEvent::Message { message: got } => assert_eq!(*got, message),
            other => panic!("{other:?}"),
        }
        assert!(matches!(*on_b.recv().await.unwrap(), WebchatEvent::Typing));
        assert!(matches!(
            *on_b.recv().await.unwrap(),
            WebchatEvent::StreamDiscarded
        ));
        for i in 0..200 {
            r[0].publish(
                "conv-2",
                WebchatEvent::Delta {
                    text: format!("{i}"),
                },
            );
        }
        for i in 0..200 {
            match &*on_b.recv().await.unwrap() {
                WebchatEvent::Delta { text } => assert_eq!(*text, format!("{i}")),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A private `redis-server` on a free port, killed on drop.
    struct PrivateRedis {
        child: std::process::Child,
        port: u16,
    }

    impl PrivateRedis {
        fn start(port: u16) -> Self {
            let child = std::process::Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server runs (CI installs it)");
            Self { child, port }
        }

        fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            self.stop();
        }
    }

    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn redis_going_away_and_coming_back_needs_no_restart() {
        if redis_url().is_none() {
            return;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = PrivateRedis::start(port);
        let url = format!("redis://127.0.0.1:{}", server.port);
        let r = replicas(&url, 2, 0);
        listening(&r).await;
        assert!(r[0].acquire_lease("c1").await);
        assert!(!r[1].acquire_lease("c1").await);

        server.stop();
        // Down: served by each replica's own state, and said so.
        eventually("replica 1 notices", async || {
            r[1].acquire_lease("c2").await && r[1].is_degraded()
        })
        .await;
        let mut local = r[0].subscribe("conv");
        r[0].publish("conv", WebchatEvent::Typing);
        let event = tokio::time::timeout(Duration::from_secs(5), local.recv()).await;
        assert!(
            matches!(
                event.as_ref().map(|e| e.as_ref().map(|e| &**e)),
                Ok(Ok(WebchatEvent::Typing))
            ),
            "{event:?}"
        );

        // Back: shared again without a restart.
        let _server = PrivateRedis::start(port);
        eventually("leases shared again", async || {
            r[0].acquire_lease("c3").await && !r[0].is_degraded()
        })
        .await;
        assert!(
            !r[1].acquire_lease("c3").await,
            "one holder across replicas again"
        );
        listening(&r).await;
        let mut on_b = r[1].subscribe("conv-back");
        r[0].publish("conv-back", WebchatEvent::StreamDiscarded);
        let event = tokio::time::timeout(Duration::from_secs(5), on_b.recv()).await;
        assert!(
            matches!(
                event.as_ref().map(|e| e.as_ref().map(|e| &**e)),
                Ok(Ok(WebchatEvent::StreamDiscarded))
            ),
            "{event:?}"
        );
    }

    #[tokio::test]
    async fn with_redis_unreachable_everything_falls_back_to_this_replica() {
        // A port nobody listens on.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let coord = RedisCoord::start(
            &format!("redis://127.0.0.1:{port}"),
            "sapa:",
            Local::new(&webchat(2)),
            Quotas {
                webchat_session_per_minute: 2,
                client_ip_per_minute: 0,
                conversation_per_minute: 0,
            },
            None,
        )
        .unwrap();
        assert!(coord.acquire_lease("c1").await);
        assert!(
            !coord.acquire_lease("c1").await,
            "still one holder per replica"
        );
        assert!(coord.is_degraded());
        coord.release_lease("c1").await;
        assert!(coord.acquire_lease("c1").await);
        // Limits hold per replica.
        assert!(
            coord
                .check_rate(RateLimit::WebchatSession, "s")
                .await
                .is_ok()
        );
        assert!(
            coord
                .check_rate(RateLimit::WebchatSession, "s")
                .await
                .is_ok()
        );
        assert!(
            coord
                .check_rate(RateLimit::WebchatSession, "s")
                .await
                .is_err()
        );
        // Events still reach this replica's sockets.
        let mut rx = coord.subscribe("conv");
        coord.publish("conv", WebchatEvent::Typing);
        let event = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(*event, WebchatEvent::Typing));
    }

    /// `n` stores on one fresh, migrated Postgres schema from `SAPA_TEST_DATABASE_URL` (one
    /// per replica); `None` (skip) outside CI when unset.
    async fn postgres_stores(n: usize) -> Option<Vec<Store>> {
        let url = match std::env::var("SAPA_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but SAPA_TEST_DATABASE_URL is not: the Postgres lease tests must run in CI"
                );
                eprintln!("SAPA_TEST_DATABASE_URL not set: Postgres lease test skipped");
                return None;
            }
        };
        sqlx::any::install_default_drivers();
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::AnyPool::connect(&url)
            .await
            .expect("SAPA_TEST_DATABASE_URL is set but Postgres is unreachable");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let sep = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{sep}options[search_path]={schema}");
        let mut stores = Vec::new();
        for _ in 0..n {
            stores.push(
                Store::connect(&DatabaseTarget::Postgres(scoped.clone()), 4)
                    .await
                    .unwrap(),
            );
        }
        stores[0].migrate().await.unwrap();
        Some(stores)
    }

    /// A Redis URL nobody listens on.
    fn unreachable_redis() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "redis://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        )
    }

    fn replica_on(url: &str, store: &Store, timing: (Duration, Duration)) -> Arc<RedisCoord> {
        RedisCoord::start_with(
            url,
            "sapa-lease-test:",
            Local::new(&webchat(0)),
            Quotas {
                webchat_session_per_minute: 0,
                client_ip_per_minute: 0,
                conversation_per_minute: 0,
            },
            Some(store.clone()),
            timing,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn with_redis_unreachable_a_lease_has_one_holder_across_replicas_through_postgres() {
        let Some(stores) = postgres_stores(2).await else {
            return;
        };
        let url = unreachable_redis();
        let a = replica_on(&url, &stores[0], (LEASE_TTL, RENEW_EVERY));
        let b = replica_on(&url, &stores[1], (LEASE_TTL, RENEW_EVERY));
        assert!(a.acquire_lease("x").await);
        assert!(a.is_degraded());
        assert!(
            !b.acquire_lease("x").await,
            "the other replica is refused: the lease is in Postgres, not per replica"
        );
        assert!(
            !a.acquire_lease("x").await,
            "held means held, even by itself"
        );
        // Only the holder frees it.
        b.release_lease("x").await;
        assert!(!b.acquire_lease("x").await);
        assert!(b.acquire_lease("y").await, "another conversation is free");
        a.release_lease("x").await;
        assert!(b.acquire_lease("x").await);
        assert!(!a.acquire_lease("x").await);
        assert!(b.is_degraded());
    }

    #[tokio::test]
    async fn a_postgres_lease_is_renewed_while_held_and_lapses_when_its_holder_stops() {
        let Some(stores) = postgres_stores(2).await else {
            return;
        };
        let url = unreachable_redis();
        let timing = (Duration::from_millis(800), Duration::from_millis(200));
        let a = replica_on(&url, &stores[0], timing);
        let b = replica_on(&url, &stores[1], timing);
        assert!(a.acquire_lease("x").await);
        // Renewed: still A's well past its TTL.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(!b.acquire_lease("x").await, "renewed in Postgres");
        // A stops (its process is gone): nothing renews, the lease lapses after the TTL.
        drop(a);
        assert!(!b.acquire_lease("x").await, "live until the TTL");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            b.acquire_lease("x").await,
            "lapsed: another replica takes it"
        );
    }

    #[tokio::test]
    async fn a_redis_lease_is_refused_while_a_postgres_lease_of_another_holder_is_live() {
        let Some(redis) = redis_url() else { return };
        let Some(stores) = postgres_stores(2).await else {
            return;
        };
        // A cannot reach Redis (down, or partitioned) and holds x in Postgres; B reaches it.
        let a = replica_on(&unreachable_redis(), &stores[0], (LEASE_TTL, RENEW_EVERY));
        let prefix = format!("sapa-test:{}:", uuid::Uuid::new_v4().simple());
        let b = RedisCoord::start(
            &redis,
            &prefix,
            Local::new(&webchat(0)),
            Quotas {
                webchat_session_per_minute: 0,
                client_ip_per_minute: 0,
                conversation_per_minute: 0,
            },
            Some(stores[1].clone()),
        )
        .unwrap();
        assert!(a.acquire_lease("x").await);
        assert!(!b.acquire_lease("x").await, "Postgres still has x");
        assert!(!b.is_degraded());
        // B gave its Redis lease back instead of keeping x from everyone.
        let mut con = b.manager.clone();
        let key: Option<String> = redis::cmd("GET")
            .arg(b.key("lease", "x"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(key, None);
        assert!(b.acquire_lease("y").await, "others go through Redis");
        a.release_lease("x").await;
        assert!(b.acquire_lease("x").await);
    }

    #[tokio::test]
    async fn a_redis_lease_moves_to_postgres_when_redis_goes_away() {
        if redis_url().is_none() {
            return;
        }
        let Some(stores) = postgres_stores(2).await else {
            return;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = PrivateRedis::start(port);
        let url = format!("redis://127.0.0.1:{}", server.port);
        let timing = (Duration::from_secs(3), Duration::from_millis(300));
        let a = replica_on(&url, &stores[0], timing);
        let b = replica_on(&url, &stores[1], timing);
        eventually("Redis is up", async || a.acquire_lease("x").await).await;
        assert!(!a.is_degraded());
        assert!(!b.acquire_lease("x").await);

        server.stop();
        // A's next renewal fails and takes the same lease in Postgres.
        eventually("the lease moved to Postgres", async || {
            stores[1]
                .conversation_leased_by_other("x", "nobody")
                .await
                .unwrap()
        })
        .await;
        assert!(
            !b.acquire_lease("x").await,
            "B falls back to Postgres and meets it"
        );
        assert!(b.is_degraded());
        // Renewed there, released there.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!b.acquire_lease("x").await);
        a.release_lease("x").await;
        assert!(b.acquire_lease("x").await);
    }
}
