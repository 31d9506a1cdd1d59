//! Follow-ups: when the bot may nudge a customer who went quiet after an answer, and the
//! customer's opt-out words. Pure: the caller passes times (Unix ms) and the tenant's zone.

use jiff::Timestamp;

use crate::hours::BusinessHours;
use crate::state::Locale;

/// Local hours during which no follow-up is sent, e.g. `21:00-08:00` (may wrap midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start, minutes since local midnight (inclusive).
    start: u16,
    /// End, minutes since local midnight (exclusive).
    end: u16,
}

/// Why quiet hours cannot be read; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuietHoursError(String);

impl QuietHours {
    /// Reads `"21:00-08:00"` (`None` for `"off"`). `field` names the setting in errors.
    ///
    /// # Errors
    /// A message naming `field` and the expected format.
    pub fn parse(field: &str, spec: &str) -> Result<Option<Self>, QuietHoursError> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = |why: &str| {
            QuietHoursError(format!(
                "{field} must be a local time range like `21:00-08:00`, or `off` ({why}; got `{spec}`)"
            ))
        };
        let (from, to) = spec.split_once('-').ok_or_else(|| bad("no `-`"))?;
        let start = clock(from).ok_or_else(|| bad("not HH:MM"))?;
        let end = clock(to).ok_or_else(|| bad("not HH:MM"))?;
        if start == end {
            return Err(bad("start and end are the same"));
        }
        Ok(Some(Self { start, end }))
    }

    /// Whether local minute-of-day `minute` is quiet.
    fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

fn clock(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once([':', '.'])?;
    let h: u16 = h.trim().parse().ok()?;
    let m: u16 = m.trim().parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// When a follow-up due at `due_ms` goes out: at `due_ms`, or — when that falls in `quiet`
/// hours in the zone of `hours` — at the end of that quiet window. The flag says whether it
/// was deferred.
pub fn defer(quiet: Option<QuietHours>, hours: &BusinessHours, due_ms: i64) -> (i64, bool) {
    let Some(quiet) = quiet else {
        return (due_ms, false);
    };
    let Ok(at) = Timestamp::from_millisecond(due_ms) else {
        return (due_ms, false);
    };
    let local = at.to_zoned(hours.zone().clone());
    let minute =
        u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
    if !quiet.contains(minute) {
        return (due_ms, false);
    }
    // The window ends today at `end` when it has not yet passed, otherwise tomorrow.
    let date = if minute < quiet.end {
        local.date()
    } else {
        match local.date().tomorrow() {
            Ok(date) => date,
            Err(_) => return (due_ms, false),
        }
    };
    let end = jiff::civil::Time::new(
        i8::try_from(quiet.end / 60).unwrap_or(0),
        i8::try_from(quiet.end % 60).unwrap_or(0),
        0,
        0,
    )
    .unwrap_or(jiff::civil::Time::midnight());
    match date.to_datetime(end).to_zoned(hours.zone().clone()) {
        Ok(zoned) => (zoned.timestamp().as_millisecond().max(due_ms), true),
        Err(_) => (due_ms, false),
    }
}

/// A customer's follow-up command: the whole message, any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptCommand {
    /// "berhenti", "stop", "unsubscribe": no more follow-ups.
    Stop,
    /// "mulai", "start": follow-ups again.
    Start,
}

impl OptCommand {
    /// The command `text` is, if it is one (whole message, case-insensitive, surrounding
    /// spaces and a final `.` or `!` ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let word = text
            .trim()
            .trim_end_matches(['.', '!'])
            .trim()
            .to_lowercase();
        match word.as_str() {
            "berhenti" | "stop" | "unsubscribe" => Some(Self::Stop),
            "mulai" | "start" => Some(Self::Start),
            _ => None,
        }
    }

    /// What the customer is told.
    pub fn confirmation(self, locale: Locale) -> &'static str {
        match (self, locale) {
            (Self::Stop, Locale::Id) => {
                "Baik, kami tidak akan mengirim pesan tindak lanjut lagi. Ketik \"mulai\" jika ingin menerimanya kembali."
            }
            (Self::Stop, Locale::En) => {
                "Okay, we will not send you follow-up messages anymore. Type \"start\" to receive them again."
            }
            (Self::Start, Locale::Id) => {
                "Baik, pesan tindak lanjut kami aktif kembali. Ketik \"berhenti\" kapan saja untuk menghentikannya."
            }
            (Self::Start, Locale::En) => {
                "Okay, follow-up messages are on again. Type \"stop\" at any time to turn them off."
            }
        }
    }
}

/// The built-in follow-up text.
pub fn default_text(locale: Locale) -> &'static str {
    match locale {
        Locale::Id => "Ada lagi yang bisa kami bantu?",
        Locale::En => "Is there anything else we can help with?",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Unix ms of a Jakarta (UTC+7) local time on 2026-12-07.
    fn wib(hour: i64, minute: i64) -> i64 {
        // 2026-12-07T00:00:00+07:00 = 2026-12-06T17:00:00Z.
        let midnight = "2026-12-06T17:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond();
        midnight + (hour * 60 + minute) * 60_000
    }

    #[test]
    fn quiet_hours_defer_to_the_end_of_the_window_in_the_tenant_zone() {
        let hours = BusinessHours::always_open();
        let quiet = QuietHours::parse("x", "21:00-08:00").unwrap();
        // Before the window: unchanged.
        assert_eq!(defer(quiet, &hours, wib(20, 59)), (wib(20, 59), false));
        // Evening: next morning 08:00.
        assert_eq!(defer(quiet, &hours, wib(22, 30)), (wib(24 + 8, 0), true));
        // After midnight: the same morning 08:00.
        assert_eq!(defer(quiet, &hours, wib(3, 0)), (wib(8, 0), true));
        // The end is exclusive.
        assert_eq!(defer(quiet, &hours, wib(8, 0)), (wib(8, 0), false));
        // Off: never deferred.
        assert_eq!(defer(None, &hours, wib(23, 0)), (wib(23, 0), false));
        // A window inside one day.
        let lunch = QuietHours::parse("x", "12:00-13:00").unwrap();
        assert_eq!(defer(lunch, &hours, wib(12, 15)), (wib(13, 0), true));
    }

    #[test]
    fn quiet_hours_follow_the_configured_zone() {
        let hours = BusinessHours::parse("t", "Asia/Jayapura", [""; 7], &[]).unwrap();
        let quiet = QuietHours::parse("x", "21:00-08:00").unwrap();
        // 20:30 WIB is 22:30 WIT: quiet in Jayapura, until 08:00 WIT = 06:00 WIB next day.
        assert_eq!(defer(quiet, &hours, wib(20, 30)), (wib(24 + 6, 0), true));
    }

    #[test]
    fn bad_quiet_hours_name_the_key() {
        let err = QuietHours::parse("tenants.shop.follow_up.quiet_hours", "9pm").unwrap_err();
        assert!(
            err.to_string()
                .contains("tenants.shop.follow_up.quiet_hours must be")
        );
        assert!(QuietHours::parse("k", "off").unwrap().is_none());
        assert!(QuietHours::parse("k", "25:00-08:00").is_err());
    }

    #[test]
    fn opt_commands_are_whole_messages_in_any_case() {
        assert_eq!(OptCommand::parse(" BERHENTI "), Some(OptCommand::Stop));
        assert_eq!(OptCommand::parse("Stop!"), Some(OptCommand::Stop));
        assert_eq!(OptCommand::parse("unsubscribe"), Some(OptCommand::Stop));
        assert_eq!(OptCommand::parse("Mulai"), Some(OptCommand::Start));
        assert_eq!(OptCommand::parse("start"), Some(OptCommand::Start));
        assert_eq!(OptCommand::parse("jangan stop dulu"), None);
        assert_eq!(OptCommand::parse("/start"), None);
    }
}
