//! Business hours and the honest wait a customer is told when a chat goes to a human.
//!
//! Pure: the caller passes the current time (Unix ms), whether an agent is online and how
//! long claims took lately; nothing here reads a clock. Times are the tenant's local time in
//! an IANA time zone (default `Asia/Jakarta`), with a list of holidays (whole local days).

use std::collections::BTreeSet;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The zone of a tenant that sets none.
pub const DEFAULT_TIMEZONE: &str = "Asia/Jakarta";

/// How far ahead the next opening is looked for (a shop closed longer says "when we are back").
const LOOKAHEAD_DAYS: i32 = 31;

/// Why business hours cannot be read; each message names the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HoursError(String);

/// A tenant's weekly opening hours, holidays and time zone.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    zone: TimeZone,
    zone_name: String,
    /// Monday first; each day's open ranges as minutes since local midnight, end exclusive
    /// (`24:00` is 1440). `None` for the whole week means always open.
    week: Option<[Vec<(u16, u16)>; 7]>,
    holidays: BTreeSet<Date>,
}

/// Midnight UTC of the date `YYYY-MM-DD`, Unix ms (`None` for anything else).
pub fn utc_day_start_ms(day: &str) -> Option<i64> {
    let date: Date = day.parse().ok()?;
    let zoned = date.to_zoned(TimeZone::UTC).ok()?;
    Some(zoned.timestamp().as_millisecond())
}

/// The days of `week`, Monday first, as configured.
pub const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Whether the team works now, and if not, when it next does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Within business hours.
    Open,
    /// Outside business hours; `None` when no opening is in the next month.
    Closed(Option<Opening>),
}

/// The next opening, in the tenant's local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// Unix ms.
    pub at_ms: i64,
    /// Local date.
    pub date: Date,
    /// Local time of day.
    pub time: Time,
    /// Whole local days from today (0: later today, 1: tomorrow).
    pub days_ahead: i32,
    /// The zone's abbreviation at that moment (`WIB`), or its UTC offset (`UTC+07:00`).
    pub zone_label: String,
}

/// What a customer handed to a human is told about the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutlook {
    /// Within hours with an agent online: about this many minutes.
    Minutes(u32),
    /// Within hours, but nobody online.
    NobodyOnline,
    /// Outside business hours.
    Closed(Option<Opening>),
}

impl Default for BusinessHours {
    fn default() -> Self {
        Self::always_open()
    }
}

impl BusinessHours {
    /// Open around the clock, every day (a tenant without `business_hours`).
    pub fn always_open() -> Self {
        Self {
            zone: TimeZone::fixed(jiff::tz::offset(7)),
            zone_name: DEFAULT_TIMEZONE.to_owned(),
            week: None,
            holidays: BTreeSet::new(),
        }
    }

    /// Reads business hours: `timezone` an IANA name (empty: `Asia/Jakarta`), `days` each
    /// weekday's hours Monday first (`"08:00-17:00"`, several ranges separated by commas,
    /// `"closed"` or empty for a closed day), `holidays` local dates `YYYY-MM-DD`. `field` is
    /// the setting's path, used in error messages.
    ///
    /// # Errors
    /// A message naming the setting and what to write instead.
    pub fn parse(
        field: &str,
        timezone: &str,
        days: [&str; 7],
        holidays: &[String],
    ) -> Result<Self, HoursError> {
        let zone_name = if timezone.trim().is_empty() {
            DEFAULT_TIMEZONE
        } else {
            timezone.trim()
        };
        let zone = TimeZone::get(zone_name).map_err(|_| {
            HoursError(format!(
                "{field}.timezone must be an IANA time zone such as `Asia/Jakarta`, `Asia/Makassar` or `Asia/Jayapura` (got `{zone_name}`)"
            ))
        })?;
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for (i, spec) in days.iter().enumerate() {
            week[i] = parse_day(spec).map_err(|why| {
                HoursError(format!(
                    "{field}.{} must be ranges like `08:00-17:00` or `08:00-12:00, 13:00-17:00`, or `closed` ({why}; got `{spec}`)",
                    DAY_NAMES[i]
                ))
            })?;
        }
        let mut dates = BTreeSet::new();
        for holiday in holidays {
            let date: Date = holiday.trim().parse().map_err(|_| {
                HoursError(format!(
                    "{field}.holidays must hold dates as YYYY-MM-DD (got `{holiday}`)"
                ))
            })?;
            dates.insert(date);
        }
        Ok(Self {
            zone,
            zone_name: zone_name.to_owned(),
            week: Some(week),
            holidays: dates,
        })
    }

    /// The zone local times are read in.
    pub(crate) fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The IANA name of the zone.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The local date at `ms` (Unix milliseconds) as `YYYY-MM-DD`: the day usage is counted
    /// on. A time out of range counts on 1970-01-01.
    pub fn local_day(&self, ms: i64) -> String {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.zone.clone())
            .date()
            .to_string()
    }

    /// The local date and time at `ms` (what "besok jam 3" is relative to).
    pub fn local_datetime(&self, ms: i64) -> jiff::civil::DateTime {
        Timestamp::from_millisecond(ms)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.zone.clone())
            .datetime()
    }

    /// Whether the team works at `now_ms`, and if not, when it next opens.
    pub fn availability(&self, now_ms: i64) -> Availability {
        let Some(week) = &self.week else {
            return Availability::Open;
        };
        let Ok(now) = Timestamp::from_millisecond(now_ms) else {
            return Availability::Open;
        };
        let local = now.to_zoned(self.zone.clone());
        let today = local.date();
        let minute =
            u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
        let ranges = self.ranges_on(week, today);
        if ranges.iter().any(|&(a, b)| a <= minute && minute < b) {
            return Availability::Open;
        }
        Availability::Closed(self.next_opening(week, &local, minute))
    }

    /// What to tell a customer handed to a human at `now_ms`: outside hours, when the team is
    /// back; inside, whether someone is online and about how long it takes.
    pub fn outlook(&self, now_ms: i64, agents_online: u32, expected_minutes: u32) -> WaitOutlook {
        match self.availability(now_ms) {
            Availability::Closed(opening) => WaitOutlook::Closed(opening),
            Availability::Open if agents_online == 0 => WaitOutlook::NobodyOnline,
            Availability::Open => WaitOutlook::Minutes(expected_minutes),
        }
    }

    fn ranges_on<'w>(&self, week: &'w [Vec<(u16, u16)>; 7], date: Date) -> &'w [(u16, u16)] {
        if self.holidays.contains(&date) {
            return &[];
        }
        let index = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        &week[index]
    }

    fn next_opening(
        &self,
        week: &[Vec<(u16, u16)>; 7],
        local: &Zoned,
        minute: u16,
    ) -> Option<Opening> {
        let today = local.date();
        let mut date = today;
        for days_ahead in 0..=LOOKAHEAD_DAYS {
            let start = self
                .ranges_on(week, date)
                .iter()
                .map(|&(a, _)| a)
                .find(|&a| days_ahead > 0 || a > minute);
            if let Some(start) = start {
                let time = Time::new(
                    i8::try_from(start / 60).ok()?,
                    i8::try_from(start % 60).ok()?,
                    0,
                    0,
                )
                .ok()?;
                let zoned = date.to_datetime(time).to_zoned(self.zone.clone()).ok()?;
                let info = self.zone.to_offset_info(zoned.timestamp());
                let abbreviation = info.abbreviation();
                let zone_label = if abbreviation.starts_with(['+', '-']) || abbreviation.is_empty()
                {
                    format!("UTC{}", info.offset())
                } else {
                    abbreviation.to_owned()
                };
                return Some(Opening {
                    at_ms: zoned.timestamp().as_millisecond(),
                    date,
                    time,
                    days_ahead,
                    zone_label,
                });
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// One day's ranges, sorted; `closed` or blank is none.
fn parse_day(spec: &str) -> Result<Vec<(u16, u16)>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    for part in spec.split(',') {
        let (from, to) = part
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("`{}` has no `-`", part.trim()))?;
        let from = parse_clock(from)?;
        let to = parse_clock(to)?;
        if from >= to {
            return Err(format!(
                "a range must end after it starts (`{}`)",
                part.trim()
            ));
        }
        ranges.push((from, to));
    }
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err("ranges overlap".to_owned());
    }
    Ok(ranges)
}

/// `HH:MM` (or `HH.MM`, as Indonesians write it) as minutes since midnight; `24:00` allowed.
fn parse_clock(s: &str) -> Result<u16, String> {
    let s = s.trim();
    let (h, m) = s
        .split_once([':', '.'])
        .ok_or_else(|| format!("`{s}` is not HH:MM"))?;
    let h: u16 = h.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
    let m: u16 = m.parse().map_err(|_| format!("`{s}` is not HH:MM"))?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("`{s}` is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// The expected wait in minutes: a claim usually takes `typical_minutes` (the median of the
/// tenant's recent claims), and `waiting_ahead` customers are shared among `agents_online`.
/// Rounded to whole minutes up to 10, then up to 5-minute steps; at least 1.
pub fn expected_minutes(typical_minutes: u32, waiting_ahead: u32, agents_online: u32) -> u32 {
    let typical = typical_minutes.max(1);
    let rounds = waiting_ahead / agents_online.max(1) + 1;
    let minutes = typical.saturating_mul(rounds).min(24 * 60);
    if minutes <= 10 {
        minutes
    } else {
        minutes.div_ceil(5) * 5
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn weekdays_9_to_5() -> BusinessHours {
        BusinessHours::parse(
            "tenants.demo.business_hours",
            "",
            [
                "09:00-12:00, 13:00-17:00",
                "09:00-17:00",
                "09:00-17:00",
                "09:00-17:00",
                "09:00-17:00",
                "10.00-14.00",
                "closed",
            ],
            &["2026-12-25".to_owned()],
        )
        .unwrap()
    }

    /// Unix ms of a Jakarta wall-clock time (UTC+7, no daylight saving).
    fn jakarta(date: &str, time: &str) -> i64 {
        let dt: jiff::civil::DateTime = format!("{date}T{time}").parse().unwrap();
        dt.to_zoned(TimeZone::get("Asia/Jakarta").unwrap())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    #[test]
    fn inside_and_outside_the_ranges_of_each_day() {
        let hours = weekdays_9_to_5();
        // 2026-12-07 is a Monday.
        for (date, time, open) in [
            ("2026-12-07", "08:59", false),
            ("2026-12-07", "09:00", true),
            ("2026-12-07", "11:59", true),
            ("2026-12-07", "12:30", false), // lunch break
            ("2026-12-07", "13:00", true),
            ("2026-12-07", "17:00", false), // the end is exclusive
            ("2026-12-12", "10:00", true),  // Saturday, written 10.00
            ("2026-12-12", "14:00", false),
            ("2026-12-13", "12:00", false), // Sunday closed
            ("2026-12-25", "10:00", false), // a Friday, but a holiday
        ] {
            let got = hours.availability(jakarta(date, time));
            assert_eq!(got == Availability::Open, open, "{date} {time}: {got:?}");
        }
    }

    #[test]
    fn closed_says_when_the_team_is_back() {
        let hours = weekdays_9_to_5();
        let opening = |date, time| match hours.availability(jakarta(date, time)) {
            Availability::Closed(Some(o)) => o,
            other => panic!("{date} {time}: {other:?}"),
        };
        // Early morning: later today.
        let o = opening("2026-12-07", "06:00");
        assert_eq!(
            (o.days_ahead, o.time.hour(), o.zone_label.as_str()),
            (0, 9, "WIB")
        );
        assert_eq!(o.at_ms, jakarta("2026-12-07", "09:00"));
        // Lunch: 13:00 today.
        assert_eq!(
            opening("2026-12-07", "12:10").at_ms,
            jakarta("2026-12-07", "13:00")
        );
        // Evening: tomorrow 09:00.
        let o = opening("2026-12-07", "20:00");
        assert_eq!((o.days_ahead, o.at_ms), (1, jakarta("2026-12-08", "09:00")));
        // Saturday afternoon: Sunday closed, so Monday.
        let o = opening("2026-12-12", "15:00");
        assert_eq!((o.days_ahead, o.at_ms), (2, jakarta("2026-12-14", "09:00")));
        // Christmas Eve evening: the 25th is a holiday, so Saturday the 26th at 10:00.
        let o = opening("2026-12-24", "18:00");
        assert_eq!(o.at_ms, jakarta("2026-12-26", "10:00"));
    }

    #[test]
    fn zones_other_than_jakarta_use_their_own_clock_and_abbreviation() {
        let days = ["08:00-16:00"; 7];
        let hours = BusinessHours::parse("h", "Asia/Makassar", days, &[]).unwrap();
        // 07:30 in Jakarta is 08:30 in Makassar (UTC+8).
        assert_eq!(
            hours.availability(jakarta("2026-12-07", "07:30")),
            Availability::Open
        );
        match hours.availability(jakarta("2026-12-07", "06:00")) {
            Availability::Closed(Some(o)) => assert_eq!(o.zone_label, "WITA"),
            other => panic!("{other:?}"),
        }
        let europe = BusinessHours::parse("h", "Europe/Amsterdam", days, &[]).unwrap();
        assert_eq!(europe.zone_name(), "Europe/Amsterdam");
        // Amsterdam in December is UTC+1: 08:30 there is 14:30 in Jakarta.
        assert_eq!(
            europe.availability(jakarta("2026-12-07", "14:30")),
            Availability::Open
        );
    }

    #[test]
    fn without_hours_the_team_is_always_open() {
        let hours = BusinessHours::always_open();
        for time in ["00:00", "03:00", "23:59"] {
            assert_eq!(
                hours.availability(jakarta("2026-12-13", time)),
                Availability::Open
            );
        }
        let closed_always = BusinessHours::parse("h", "", ["closed"; 7], &[]).unwrap();
        assert_eq!(
            closed_always.availability(jakarta("2026-12-07", "10:00")),
            Availability::Closed(None)
        );
    }

    #[test]
    fn the_outlook_combines_hours_and_presence() {
        let hours = weekdays_9_to_5();
        let monday_10 = jakarta("2026-12-07", "10:00");
        assert_eq!(hours.outlook(monday_10, 2, 5), WaitOutlook::Minutes(5));
        assert_eq!(hours.outlook(monday_10, 0, 5), WaitOutlook::NobodyOnline);
        assert!(matches!(
            hours.outlook(jakarta("2026-12-07", "22:00"), 3, 5),
            WaitOutlook::Closed(Some(_))
        ));
    }

    #[test]
    fn expected_minutes_grow_with_the_queue_per_agent() {
        assert_eq!(expected_minutes(0, 0, 1), 1);
        assert_eq!(expected_minutes(4, 0, 1), 4);
        assert_eq!(expected_minutes(4, 1, 2), 4);
        assert_eq!(expected_minutes(4, 2, 2), 8);
        assert_eq!(expected_minutes(4, 3, 1), 20);
        assert_eq!(expected_minutes(7, 1, 1), 15);
        assert_eq!(expected_minutes(u32::MAX, 9, 1), 24 * 60);
    }

    #[test]
    fn bad_settings_name_the_field_and_the_fix() {
        let err = |tz: &str, day: &str, holiday: &str| {
            let mut days = ["09:00-17:00"; 7];
            days[2] = day;
            BusinessHours::parse("tenants.t.business_hours", tz, days, &[holiday.to_owned()])
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("Mars/Olympus", "", "2026-01-01").contains("tenants.t.business_hours.timezone")
        );
        for day in [
            "9-17",
            "17:00-09:00",
            "09:00-12:00,11:00-13:00",
            "25:00-26:00",
            "09:60-10:00",
        ] {
            let e = err("", day, "2026-01-01");
            assert!(
                e.contains("tenants.t.business_hours.wednesday"),
                "{day}: {e}"
            );
        }
        assert!(err("", "", "25/12/2026").contains("holidays"));
        assert!(BusinessHours::parse("h", "", ["00:00-24:00"; 7], &[]).is_ok());
    }

    #[test]
    fn local_day_is_the_tenant_date() {
        // 2026-12-06 18:30 UTC is already 7 December in Jakarta (UTC+7), not in Amsterdam.
        let ms = 1_796_581_800_000;
        assert_eq!(BusinessHours::always_open().local_day(ms), "2026-12-07");
        let europe = BusinessHours::parse("h", "Europe/Amsterdam", [""; 7], &[]).unwrap();
        assert_eq!(europe.local_day(ms), "2026-12-06");
    }
}
