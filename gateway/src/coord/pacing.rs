//! Outbound pacing: a per-account rate and a minimum gap per recipient, so a burst of answers
//! never trips a provider's throughput or per-customer limits (DESIGN §4).

use std::collections::HashMap;
use std::time::Duration;

use channels::PacingPolicy;
use tokio::time::Instant;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Decides whether a send may go now or when it may.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    accounts: HashMap<String, Bucket>,
    recipients: HashMap<(String, String), Instant>,
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
        if !policy.per_recipient_gap.is_zero()
            && let Some(next) = self.recipients.get(&key)
            && *next > now
        {
            return Err(*next - now);
        }
        if let Some(rate) = policy.per_account_per_sec {
            let rate = f64::from(rate.max(1));
            let bucket = self.accounts.entry(account.to_owned()).or_insert(Bucket {
                tokens: rate,
                refilled: now,
            });
            let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
            bucket.refilled = now;
            if bucket.tokens < 1.0 {
                return Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate));
            }
            bucket.tokens -= 1.0;
        }
        if !policy.per_recipient_gap.is_zero() {
            self.recipients.insert(key, now + policy.per_recipient_gap);
            if self.recipients.len() > 100_000 {
                self.recipients.retain(|_, next| *next > now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn recipient_gap_and_account_rate_are_enforced() {
        let mut pacer = Pacer::default();
        let wa = channels::whatsapp::PACING;
        assert!(pacer.reserve(wa, "n1", "628111").is_ok());
        assert_eq!(
            pacer.reserve(wa, "n1", "628111"),
            Err(Duration::from_secs(6))
        );
        // 79 more recipients fit in the first second, the 81st message waits.
        for i in 0..79 {
            assert!(pacer.reserve(wa, "n1", &format!("r{i}")).is_ok());
        }
        let wait = pacer.reserve(wa, "n1", "late").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(13),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(pacer.reserve(wa, "n1", "628111").is_ok());
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
}
