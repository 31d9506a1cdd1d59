//! Outbound pacing: a per-account rate and a per-recipient token bucket, so a burst of answers
//! never trips a provider's throughput or per-customer limits (DESIGN §4). When the provider
//! still says "too fast", the account's rate is halved and then creeps back (AIMD), and a
//! throttled recipient waits a full interval.

use std::collections::HashMap;
use std::time::Duration;

use channels::{PacingPolicy, Throttled};
use tokio::time::Instant;

/// Lowest share of its configured rate a throttled account is slowed to.
pub(super) const MIN_SCALE: f64 = 1.0 / 16.0;
/// Share of the configured rate an account regains per second without being throttled.
pub(super) const RECOVERY_PER_SEC: f64 = 0.05;
/// Recipient buckets kept before idle ones are dropped.
const MAX_RECIPIENTS: usize = 100_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(size: f64, now: Instant) -> Self {
        Self {
            tokens: size,
            refilled: now,
        }
    }

    /// Refills at `per_sec` up to `size`.
    fn refill(&mut self, per_sec: f64, size: f64, now: Instant) {
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(size);
        self.refilled = now;
    }

    /// Time until one token is there at `per_sec`.
    fn wait(&self, per_sec: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / per_sec).max(0.001))
    }
}

#[derive(Debug)]
struct Account {
    bucket: Bucket,
    /// Share of the configured rate currently allowed (1 unless the provider throttled).
    scale: f64,
    /// Last time `scale` was lowered or recovered.
    scaled: Instant,
}

impl Account {
    /// The rate now, after recovery since the last throttle.
    fn rate(&mut self, configured: f64, now: Instant) -> f64 {
        if self.scale < 1.0 {
            let elapsed = now.duration_since(self.scaled).as_secs_f64();
            self.scale = (self.scale + elapsed * RECOVERY_PER_SEC).min(1.0);
            self.scaled = now;
        }
        (configured * self.scale).max(f64::MIN_POSITIVE)
    }
}

/// Decides whether a send may go now or when it may.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    accounts: HashMap<String, Account>,
    recipients: HashMap<(String, String), Bucket>,
}

impl Pacer {
    /// Reserves a slot for (`account`, `recipient`) under `policy`: `Ok(())` to send now, or
    /// `Err(wait)` to try again after `wait`.
    ///
    /// # Errors
    /// The wait until a slot frees up.
    pub(super) fn reserve(
        &mut self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let key = (account.to_owned(), recipient.to_owned());
        let pair = recipient_pace(policy);
        if let Some((per_sec, size)) = pair
            && let Some(bucket) = self.recipients.get_mut(&key)
        {
            bucket.refill(per_sec, size, now);
            if bucket.tokens < 1.0 {
                return Err(bucket.wait(per_sec));
            }
        }
        if let Some(configured) = policy.per_account_per_sec {
            let configured = f64::from(configured.max(1));
            let state = self.account(account, configured, now);
            let rate = state.rate(configured, now);
            // The bucket holds at most one second of the current rate (at least one send).
            state.bucket.refill(rate, rate.max(1.0), now);
            if state.bucket.tokens < 1.0 {
                return Err(state.bucket.wait(rate));
            }
            state.bucket.tokens -= 1.0;
        }
        if let Some((per_sec, size)) = pair {
            let bucket = self
                .recipients
                .entry(key)
                .or_insert_with(|| Bucket::full(size, now));
            bucket.tokens -= 1.0;
            if self.recipients.len() > MAX_RECIPIENTS {
                // A bucket that would be full again holds no information.
                self.recipients.retain(|_, b| {
                    b.tokens + now.duration_since(b.refilled).as_secs_f64() * per_sec < size
                });
            }
        }
        Ok(())
    }

    /// The pacing state of `account`, created full at its `configured` rate.
    fn account(&mut self, account: &str, configured: f64, now: Instant) -> &mut Account {
        self.accounts
            .entry(account.to_owned())
            .or_insert_with(|| Account {
                bucket: Bucket::full(configured, now),
                scale: 1.0,
                scaled: now,
            })
    }

    /// The provider refused a send as too fast: halve the account's rate (down to
    /// [`MIN_SCALE`] of the configured one; it recovers by [`RECOVERY_PER_SEC`] a second), or
    /// make the recipient wait a full interval.
    pub(super) fn throttled(
        &mut self,
        policy: PacingPolicy,
        account: &str,
        recipient: &str,
        what: Throttled,
    ) {
        let now = Instant::now();
        match what {
            Throttled::Account => {
                let Some(configured) = policy.per_account_per_sec else {
                    return;
                };
                let configured = f64::from(configured.max(1));
                let state = self.account(account, configured, now);
                state.rate(configured, now);
                state.scale = (state.scale / 2.0).max(MIN_SCALE);
                state.scaled = now;
                state.bucket.tokens = state.bucket.tokens.min(0.0);
                state.bucket.refilled = now;
                tracing::warn!(
                    account,
                    messages_per_second = configured * state.scale,
                    "provider throttled the account; sending slower"
                );
            }
            Throttled::Recipient => {
                if recipient_pace(policy).is_some() {
                    // Empty: the next token comes one interval from now.
                    self.recipients.insert(
                        (account.to_owned(), recipient.to_owned()),
                        Bucket {
                            tokens: 0.0,
                            refilled: now,
                        },
                    );
                }
            }
        }
    }
}

/// The per-recipient bucket's refill rate (tokens per second) and size, when limited.
fn recipient_pace(policy: PacingPolicy) -> Option<(f64, f64)> {
    if policy.per_recipient_interval.is_zero() {
        return None;
    }
    Some((
        1.0 / policy.per_recipient_interval.as_secs_f64(),
        f64::from(policy.per_recipient_burst.max(1)),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn whatsapp(per_sec: u32, interval_s: u64, burst: u32) -> PacingPolicy {
        PacingPolicy {
            per_account_per_sec: Some(per_sec),
            per_recipient_interval: Duration::from_secs(interval_s),
            per_recipient_burst: burst,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_customer_gets_a_burst_then_one_message_per_interval() {
        let mut pacer = Pacer::default();
        let wa = channels::whatsapp::PACING;
        // Default burst 3: a quick follow-up answer is not held for 6 s.
        for _ in 0..3 {
            assert!(pacer.reserve(wa, "n1", "628111").is_ok());
        }
        assert_eq!(
            pacer.reserve(wa, "n1", "628111"),
            Err(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        let wait = pacer.reserve(wa, "n1", "628111").unwrap_err();
        assert!(
            wait <= Duration::from_secs(3) && wait > Duration::from_millis(2900),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(pacer.reserve(wa, "n1", "628111").is_ok());
        assert!(pacer.reserve(wa, "n1", "628111").is_err());
        // Another customer of the same number is not affected.
        assert!(pacer.reserve(wa, "n1", "628222").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_account_rate_is_the_configured_one() {
        let mut pacer = Pacer::default();
        // A coexistence number: 20 messages/s.
        let slow = whatsapp(20, 6, 3);
        for i in 0..20 {
            assert!(pacer.reserve(slow, "n1", &format!("r{i}")).is_ok());
        }
        let wait = pacer.reserve(slow, "n1", "late").unwrap_err();
        assert!(
            wait > Duration::from_millis(40) && wait <= Duration::from_millis(50),
            "{wait:?}"
        );
        // An upgraded number: 1,000 messages/s.
        let fast = whatsapp(1000, 6, 3);
        for i in 0..1000 {
            assert!(pacer.reserve(fast, "n2", &format!("r{i}")).is_ok());
        }
        assert!(pacer.reserve(fast, "n2", "late").is_err());
        // Telegram: one message per second per chat, 30 per second per bot.
        let tg = channels::telegram::PACING;
        assert!(pacer.reserve(tg, "bot", "5123").is_ok());
        assert_eq!(
            pacer.reserve(tg, "bot", "5123"),
            Err(Duration::from_secs(1))
        );
        for i in 0..29 {
            assert!(pacer.reserve(tg, "bot", &format!("c{i}")).is_ok());
        }
        assert!(pacer.reserve(tg, "bot", "c-late").is_err());
        let web = PacingPolicy::UNLIMITED;
        for _ in 0..1000 {
            assert!(pacer.reserve(web, "w", "s").is_ok());
        }
    }

    /// Sends allowed in `secs` seconds when trying every 5 ms (200/s, over the rate).
    async fn sends_in(pacer: &mut Pacer, policy: PacingPolicy, secs: u64) -> usize {
        let mut sent = 0;
        for i in 0..secs * 200 {
            if pacer.reserve(policy, "n1", &format!("r{i}")).is_ok() {
                sent += 1;
            }
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_account_halves_its_rate_then_recovers() {
        let mut pacer = Pacer::default();
        let wa = whatsapp(80, 6, 3);
        // Drain the first second's burst so the steady rate is measured.
        sends_in(&mut pacer, wa, 1).await;
        let steady = sends_in(&mut pacer, wa, 1).await;
        assert!((79..=81).contains(&steady), "{steady}");
        pacer.throttled(wa, "n1", "r1", Throttled::Account);
        let halved = sends_in(&mut pacer, wa, 1).await;
        assert!((38..=44).contains(&halved), "{halved}");
        pacer.throttled(wa, "n1", "r1", Throttled::Account);
        pacer.throttled(wa, "n1", "r1", Throttled::Account);
        let slowed = sends_in(&mut pacer, wa, 1).await;
        assert!(slowed <= 16, "{slowed}");
        // Without further throttling it is back at the configured rate within ~20 s.
        sends_in(&mut pacer, wa, 20).await;
        let recovered = sends_in(&mut pacer, wa, 1).await;
        assert!((79..=81).contains(&recovered), "{recovered}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_recipient_waits_a_full_interval() {
        let mut pacer = Pacer::default();
        let wa = whatsapp(80, 6, 3);
        assert!(pacer.reserve(wa, "n1", "628111").is_ok());
        pacer.throttled(wa, "n1", "628111", Throttled::Recipient);
        assert_eq!(
            pacer.reserve(wa, "n1", "628111"),
            Err(Duration::from_secs(6))
        );
        assert!(pacer.reserve(wa, "n1", "628222").is_ok());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(pacer.reserve(wa, "n1", "628111").is_ok());
        assert!(pacer.reserve(wa, "n1", "628111").is_err());
    }
}
