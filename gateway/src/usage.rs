//! Usage and monthly quotas. The counters are the store's (`usage_daily`, bumped in the
//! transactions that store messages); this module turns them into the owner's report and
//! decides when a tenant is over its quota. A month is the calendar month in the tenant's
//! business-hours time zone, like the days.

use serde::Serialize;

use crate::config::QuotaConfig;
use crate::store::{QuotaOverride, Store, StoreError};

/// Share of a quota at which owners are warned, in percent.
pub const WARNING_PERCENT: i64 = 80;

/// A tenant's quota for the current month, as the usage page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// `YYYY-MM`, local.
    pub month: String,
    /// Messages in and out this month.
    pub messages_used: i64,
    /// Monthly messages; 0: unlimited.
    pub messages_limit: i64,
    /// Model tokens this month.
    pub tokens_used: i64,
    /// Monthly model tokens; 0: unlimited.
    pub tokens_limit: i64,
    /// A limit is 80% used or more.
    pub warning: bool,
    /// A limit is reached: the bot answers without the model.
    pub exceeded: bool,
}

/// `used` against `limit` (0: unlimited) as (warning, exceeded).
fn level(used: i64, limit: i64) -> (bool, bool) {
    if limit <= 0 {
        return (false, false);
    }
    (
        used.saturating_mul(100) >= limit.saturating_mul(WARNING_PERCENT),
        used >= limit,
    )
}

/// The tenant's quota at `now_ms`.
///
/// # Errors
/// [`StoreError::Unavailable`].
pub async fn quota(
    store: &Store,
    configured: Option<QuotaConfig>,
    tenant_id: &str,
    now_ms: i64,
) -> Result<Quota, StoreError> {
    Ok(budget(store, configured, tenant_id, now_ms).await?.quota)
}

/// What the answer path checks before a model call: the month's quota and today's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The monthly quota.
    pub quota: Quota,
    /// The tenant's usage day (`YYYY-MM-DD`, local).
    pub day: String,
    /// Model tokens used that day (against `llm.daily_tokens_per_tenant`).
    pub day_tokens: i64,
}

/// The tenant's monthly quota and today's tokens at `now_ms`, in one read. The limits are the
/// console's override, else `sapa.toml`'s.
///
/// # Errors
/// [`StoreError::Unavailable`].
pub async fn budget(
    store: &Store,
    configured: Option<QuotaConfig>,
    tenant_id: &str,
    now_ms: i64,
) -> Result<Budget, StoreError> {
    let day = store.usage_day(tenant_id, now_ms);
    let used = store.budget_usage(tenant_id, &day).await?;
    let limits = used.quota_override.unwrap_or_else(|| {
        let configured = configured.unwrap_or_default();
        QuotaOverride {
            monthly_messages: i64::try_from(configured.monthly_messages).unwrap_or(i64::MAX),
            monthly_llm_tokens: i64::try_from(configured.monthly_llm_tokens).unwrap_or(i64::MAX),
        }
    });
    let (messages_warning, messages_exceeded) = level(used.month_messages, limits.monthly_messages);
    let (tokens_warning, tokens_exceeded) = level(used.month_tokens, limits.monthly_llm_tokens);
    Ok(Budget {
        quota: Quota {
            month: day.chars().take(7).collect(),
            messages_used: used.month_messages,
            messages_limit: limits.monthly_messages,
            tokens_used: used.month_tokens,
            tokens_limit: limits.monthly_llm_tokens,
            warning: messages_warning || tokens_warning,
            exceeded: messages_exceeded || tokens_exceeded,
        },
        day,
        day_tokens: used.day_tokens,
    })
}

/// Estimated cost of `prompt` and `completion` tokens at the configured prices per 1,000.
pub fn cost(prompt: i64, completion: i64, per_1k_prompt: f64, per_1k_completion: f64) -> f64 {
    // Token counts stay far below 2^53: the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let (prompt, completion) = (prompt as f64, completion as f64);
    let cost = prompt / 1000.0 * per_1k_prompt + completion / 1000.0 * per_1k_completion;
    // Rounded to 6 decimals so the JSON and CSV do not show float noise.
    (cost * 1_000_000.0).round() / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_at_80_percent_and_exceeded_at_100() {
        assert_eq!(level(79, 100), (false, false));
        assert_eq!(level(80, 100), (true, false));
        assert_eq!(level(100, 100), (true, true));
        assert_eq!(level(1_000_000, 0), (false, false), "0 is unlimited");
        assert!((cost(1500, 500, 0.01, 0.03) - 0.03).abs() < 1e-9);
    }
}
