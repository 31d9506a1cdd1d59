//! The bot's settings an owner edits in the console, versioned: every save is a draft,
//! publishing makes it the live version atomically (the next turn uses it, no restart), and
//! any version can be restored. `sapa.toml` seeds version 1; after that the console wins.
//!
//! [`LiveBots`] holds each tenant's live settings in memory for the answer path; it is
//! updated at publish and re-read from the store every few seconds, so other replicas follow.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::{BusinessHoursConfig, TenantConfig};
use crate::store::{Store, StoreError};

/// The author of versions that come from the configuration file.
pub const FILE_AUTHOR: &str = "sapa.toml";
/// Longest instructions, in characters.
const MAX_INSTRUCTIONS: usize = 4_000;
/// Longest greeting, in characters.
const MAX_GREETING: usize = 500;
/// Most handoff keywords.
const MAX_KEYWORDS: usize = 50;

/// What an owner edits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSettings {
    /// Tone, do's and don'ts, added to the system prompt.
    #[serde(default)]
    pub instructions: String,
    /// The first message; empty: the built-in one.
    #[serde(default)]
    pub greeting: String,
    /// When the team answers handed-off chats; `null`: around the clock.
    #[serde(default)]
    pub business_hours: Option<BusinessHours>,
    /// Words that hand a chat to a human.
    #[serde(default)]
    pub handoff_keywords: Vec<String>,
    /// `id` or `en`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// `short` or `normal`.
    #[serde(default = "default_style")]
    pub answer_style: String,
    /// Follow-ups after a bot answer; `null`: the tenant's `[tenants.<slug>.follow_up]` in
    /// `sapa.toml` (or the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpSettings>,
}

/// Follow-ups as the console edits them (the `[tenants.<slug>.follow_up]` keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpSettings {
    /// Quiet time after the answer, e.g. `"2h"`; `"0"` turns follow-ups off.
    pub after: String,
    /// Local hours without follow-ups (`"21:00-08:00"`), or `"off"`.
    #[serde(default = "default_quiet_hours")]
    pub quiet_hours: String,
    /// Follow-ups one contact gets at most in any 7 days.
    #[serde(default = "default_max_per_week")]
    pub max_per_week: u32,
    /// The message; empty: the built-in one in the conversation's language.
    #[serde(default)]
    pub text: String,
}

fn default_quiet_hours() -> String {
    crate::config::FollowUpConfig::default().quiet_hours
}

fn default_max_per_week() -> u32 {
    crate::config::FollowUpConfig::default().max_per_week
}

impl FollowUpSettings {
    /// The rules these settings give.
    ///
    /// # Errors
    /// Every problem, each naming its field.
    pub fn rules(&self) -> Result<crate::config::FollowUpConfig, Vec<String>> {
        let after = match self.after.trim() {
            "0" | "off" => Ok(std::time::Duration::ZERO),
            other => humantime::parse_duration(other).map_err(|_| {
                vec![format!(
                    "follow_up.after must be a duration such as \"2h\" or \"30m\", or \"0\" to turn follow-ups off (got \"{other}\")"
                )]
            }),
        }?;
        let rules = crate::config::FollowUpConfig {
            after,
            quiet_hours: self.quiet_hours.clone(),
            max_per_week: self.max_per_week,
            text: self.text.clone(),
        };
        let problems = rules.problems("follow_up");
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(problems)
        }
    }
}

// Not derived: the defaults must be valid settings (the demo tenant's version 1 is built
// from them, and an owner must be able to save back what the console shows).
impl Default for BotSettings {
    fn default() -> Self {
        Self {
            instructions: String::new(),
            greeting: String::new(),
            business_hours: None,
            handoff_keywords: Vec::new(),
            locale: default_locale(),
            answer_style: default_style(),
            follow_up: None,
        }
    }
}

fn default_locale() -> String {
    "id".to_owned()
}

fn default_style() -> String {
    "short".to_owned()
}

/// Business hours as the console edits them (the `[tenants.<slug>.business_hours]` keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// IANA time zone; empty: Asia/Jakarta.
    #[serde(default)]
    pub timezone: String,
    /// Monday first: `"08:00-17:00"`, ranges separated by commas, or `"closed"`.
    #[serde(default)]
    pub days: [String; 7],
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl BusinessHours {
    fn from_config(c: &BusinessHoursConfig) -> Self {
        Self {
            timezone: c.timezone.clone(),
            days: [
                c.monday.clone(),
                c.tuesday.clone(),
                c.wednesday.clone(),
                c.thursday.clone(),
                c.friday.clone(),
                c.saturday.clone(),
                c.sunday.clone(),
            ],
            holidays: c.holidays.clone(),
        }
    }

    fn parse(&self) -> Result<flows::BusinessHours, String> {
        let days: [&str; 7] = std::array::from_fn(|i| self.days[i].as_str());
        flows::BusinessHours::parse("business_hours", &self.timezone, days, &self.holidays)
            .map_err(|e| e.to_string())
    }
}

impl BotSettings {
    /// The settings `sapa.toml` declares for a tenant (version 1).
    pub fn from_config(tenant: &TenantConfig) -> Self {
        Self {
            instructions: tenant.instructions.clone(),
            greeting: tenant.greeting.clone(),
            business_hours: tenant
                .business_hours
                .as_ref()
                .map(BusinessHours::from_config),
            handoff_keywords: tenant.handoff_keywords.clone(),
            locale: tenant.locale.clone(),
            answer_style: default_style(),
            follow_up: None,
        }
    }

    /// Every problem, each naming the field and what to write instead.
    ///
    /// # Errors
    /// The problems found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.instructions.chars().count() > MAX_INSTRUCTIONS {
            problems.push(format!(
                "instructions must be at most {MAX_INSTRUCTIONS} characters"
            ));
        }
        if self.greeting.chars().count() > MAX_GREETING {
            problems.push(format!(
                "greeting must be at most {MAX_GREETING} characters"
            ));
        }
        if flows::Locale::parse(&self.locale).is_none() {
            problems.push(format!(
                "locale must be \"id\" or \"en\" (got \"{}\")",
                self.locale
            ));
        }
        if flows::AnswerStyle::parse(&self.answer_style).is_none() {
            problems.push(format!(
                "answer_style must be \"short\" or \"normal\" (got \"{}\")",
                self.answer_style
            ));
        }
        if self.handoff_keywords.len() > MAX_KEYWORDS
            || self
                .handoff_keywords
                .iter()
                .any(|k| k.trim().is_empty() || k.chars().count() > 40)
        {
            problems.push(format!(
                "handoff_keywords must be at most {MAX_KEYWORDS} words or phrases of 1 to 40 characters"
            ));
        }
        if let Some(hours) = &self.business_hours
            && let Err(problem) = hours.parse()
        {
            problems.push(problem);
        }
        if let Some(follow_up) = &self.follow_up
            && let Err(found) = follow_up.rules()
        {
            problems.extend(found);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// What the answer path needs, compiled. Settings that fail validation (never stored)
    /// fall back to defaults field by field.
    pub fn compile(&self) -> Live {
        Live {
            greeting: Some(self.greeting.trim())
                .filter(|g| !g.is_empty())
                .map(str::to_owned),
            handoff_keywords: self.handoff_keywords.clone(),
            hours: self
                .business_hours
                .as_ref()
                .and_then(|h| h.parse().ok())
                .unwrap_or_default(),
            style: flows::AnswerStyle::parse(&self.answer_style).unwrap_or_default(),
            instructions: self.instructions.clone(),
            follow_up: self.follow_up.as_ref().and_then(|f| f.rules().ok()),
        }
    }
}

/// A tenant's live settings, ready for the answer path.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The tenant's greeting; `None`: the built-in one.
    pub greeting: Option<String>,
    /// Handoff keywords.
    pub handoff_keywords: Vec<String>,
    /// Business hours.
    pub hours: flows::BusinessHours,
    /// Extractive answer length.
    pub style: flows::AnswerStyle,
    /// The owner's instructions.
    pub instructions: String,
    /// The follow-up rules published in the console; `None`: `sapa.toml`'s.
    pub follow_up: Option<crate::config::FollowUpConfig>,
}

/// Each tenant's live settings.
#[derive(Debug, Default)]
pub struct LiveBots {
    by_tenant: RwLock<HashMap<String, Arc<Live>>>,
}

impl LiveBots {
    /// The tenant's live settings (defaults for an unknown tenant).
    pub fn get(&self, tenant_id: &str) -> Arc<Live> {
        self.by_tenant
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes `settings` the tenant's live settings in this process.
    pub fn set(&self, tenant_id: &str, settings: &BotSettings) {
        self.by_tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant_id.to_owned(), Arc::new(settings.compile()));
    }

    /// Re-reads every tenant's live version from the store.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        for (tenant, json) in store.live_bot_settings().await? {
            match serde_json::from_str::<BotSettings>(&json) {
                Ok(settings) => {
                    self.set(&tenant, &settings);
                    // Usage is counted on the tenant's local day.
                    store.set_usage_zone(&tenant, self.get(&tenant).hours.clone());
                }
                Err(err) => {
                    tracing::warn!(tenant = %tenant, error = %err, "a stored bot version does not parse; keeping the previous one");
                }
            }
        }
        Ok(())
    }
}

/// How often every replica re-reads the live versions (another replica may have published).
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Re-reads the live versions every [`RELOAD_EVERY`] until `token` is cancelled.
pub fn spawn_reload(
    store: Store,
    live: Arc<LiveBots>,
    tracker: &tokio_util::task::TaskTracker,
    token: tokio_util::sync::CancellationToken,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            if let Err(err) = live.reload(&store).await {
                tracing::warn!(error = %err.chain(), "re-reading the live bot settings failed");
            }
        }
    });
}

/// Seeds version 1 of every configured tenant from `sapa.toml` (once: a tenant with versions
/// keeps its console-published settings, which are re-applied over the file's), then loads
/// every tenant's live version.
///
/// # Errors
/// [`StoreError::Unavailable`].
pub async fn seed_and_load(
    store: &Store,
    declared: &[(String, BotSettings)],
    live: &LiveBots,
) -> Result<(), StoreError> {
    for (tenant, settings) in declared {
        let json = serde_json::to_string(settings).unwrap_or_default();
        match store.live_bot(tenant).await? {
            None => {
                store
                    .publish_bot(
                        tenant,
                        &json,
                        &settings.instructions,
                        &settings.locale,
                        FILE_AUTHOR,
                        Some("seeded from sapa.toml"),
                        None,
                    )
                    .await?;
                tracing::info!(tenant = %tenant, "bot settings version 1 seeded from sapa.toml");
            }
            // Never edited in the console: a changed file is the next version.
            Some(version) if version.author == FILE_AUTHOR && version.settings != json => {
                store
                    .publish_bot(
                        tenant,
                        &json,
                        &settings.instructions,
                        &settings.locale,
                        FILE_AUTHOR,
                        Some("changed in sapa.toml"),
                        None,
                    )
                    .await?;
            }
            Some(version) => {
                let published: BotSettings =
                    serde_json::from_str(&version.settings).unwrap_or_else(|_| settings.clone());
                if version.settings != json {
                    tracing::info!(tenant = %tenant, version = version.version, "the console's published bot settings are live; sapa.toml's settings for this tenant are ignored");
                }
                store
                    .reapply_bot(tenant, &published.instructions, &published.locale)
                    .await?;
            }
        }
    }
    live.reload(store).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validation_names_every_field_to_fix() {
        let bad = BotSettings {
            locale: "fr".into(),
            answer_style: "long".into(),
            handoff_keywords: vec![" ".into()],
            business_hours: Some(BusinessHours {
                timezone: "Mars/Base".into(),
                ..BusinessHours::default()
            }),
            ..BotSettings::default()
        };
        let problems = bad.validate().unwrap_err().join("\n");
        for needle in [
            "locale must be",
            "answer_style must be",
            "handoff_keywords must be",
            "business_hours.timezone",
        ] {
            assert!(problems.contains(needle), "{needle}: {problems}");
        }
        let good: BotSettings = serde_json::from_str(r#"{"instructions": "Ramah."}"#).unwrap();
        assert!(good.validate().is_ok());
        assert_eq!(BotSettings::default().validate(), Ok(()));
        assert_eq!(good.compile().style, flows::AnswerStyle::Short);
    }
}
