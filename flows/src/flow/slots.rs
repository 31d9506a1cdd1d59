//! Reading a customer's answer into a slot: numbers in digits or words, phone numbers in
//! E.164, e-mail addresses, dates, times and both together in the ways people type them in
//! Indonesian and English, and one of a `choice` slot's options.
//!
//! Pure: "today" is the `now` passed in (a civil date and time in the tenant's zone), never the
//! clock. Normalized values are strings: dates `YYYY-MM-DD`, times `HH:MM`, date-times
//! `YYYY-MM-DD HH:MM`, numbers in digits, phones `+62…`.

use jiff::civil::{Date, DateTime, Time};

use super::{Ask, Choice, SlotType};
use crate::state::Locale;

/// Why an answer does not fit its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Nothing but spaces.
    #[error("the answer is empty")]
    Empty,
    /// A `text` answer that does not match the slot's `pattern`.
    #[error("the answer does not match the pattern")]
    Pattern,
    /// No number in the answer.
    #[error("no number in the answer")]
    Number,
    /// Not a phone number.
    #[error("not a phone number")]
    Phone,
    /// Not an e-mail address.
    #[error("not an e-mail address")]
    Email,
    /// No date in the answer, or not a date on the calendar.
    #[error("not a date")]
    Date,
    /// No time of day in the answer.
    #[error("not a time")]
    Time,
    /// Not a date with a time.
    #[error("not a date and time")]
    Datetime,
    /// None of the options.
    #[error("not one of the choices")]
    Choice,
}

impl SlotError {
    /// The built-in sentence asking again, for an `ask` step without its own `invalid`.
    #[must_use]
    pub fn sentence(self, locale: Locale) -> &'static str {
        crate::texts::flow_invalid_answer(locale, self)
    }
}

/// Reads `input` as the answer to `ask`, with `now` in the tenant's zone.
///
/// # Errors
/// The answer does not fit the slot's type (or its `pattern`).
pub fn parse_answer(ask: &Ask, input: &str, now: DateTime) -> Result<String, SlotError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(SlotError::Empty);
    }
    match ask.kind {
        SlotType::Text => parse_text(input, ask.pattern.as_deref()),
        SlotType::Number => parse_number(input),
        SlotType::Phone => parse_phone(input),
        SlotType::Email => parse_email(input),
        SlotType::Date => parse_date(input, now.date()),
        SlotType::Time => parse_time(input),
        SlotType::Datetime => parse_datetime(input, now),
        SlotType::Choice => parse_choice(input, &ask.choices),
    }
}

/// Any text, trimmed; with a `pattern`, only text it matches. A pattern that does not compile
/// (the flow's checks reject those) matches nothing.
///
/// # Errors
/// [`SlotError::Pattern`] when the pattern does not match.
pub fn parse_text(input: &str, pattern: Option<&str>) -> Result<String, SlotError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(SlotError::Empty);
    }
    match pattern {
        None => Ok(input.to_owned()),
        Some(p) => match regex::Regex::new(p) {
            Ok(re) if re.is_match(input) => Ok(input.to_owned()),
            _ => Err(SlotError::Pattern),
        },
    }
}

/// Lowercased words: letters and digits, with `:` `.` `/` `-` `'` `@` `+` kept inside a word.
fn words(input: &str) -> Vec<String> {
    input
        .to_lowercase()
        .split(|c: char| {
            c.is_whitespace() || !(c.is_alphanumeric() || matches!(c, ':' | '.' | '/' | '-' | '\''))
        })
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

const UNITS_ID: [&str; 10] = [
    "nol", "satu", "dua", "tiga", "empat", "lima", "enam", "tujuh", "delapan", "sembilan",
];
const UNITS_EN: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

fn unit_id(word: &str) -> Option<u32> {
    UNITS_ID
        .iter()
        .position(|w| *w == word)
        .and_then(|i| u32::try_from(i).ok())
}

/// A number written in words at the start of `words`, and how many words it took:
/// "tiga", "sebelas", "dua belas", "dua puluh lima", "seratus"; "twelve".
fn number_in_words(words: &[String]) -> Option<(u32, usize)> {
    let first = words.first()?.as_str();
    let next = words.get(1).map(String::as_str);
    match first {
        "sepuluh" => return Some((10, 1)),
        "sebelas" => return Some((11, 1)),
        "seratus" => return Some((100, 1)),
        _ => {}
    }
    if let Some(i) = UNITS_EN.iter().position(|w| *w == first) {
        return u32::try_from(i).ok().map(|n| (n, 1));
    }
    let unit = unit_id(first)?;
    match next {
        Some("belas") if unit > 0 => Some((10 + unit, 2)),
        Some("puluh") if unit > 1 => {
            let tens = unit * 10;
            match words.get(2).and_then(|w| unit_id(w)) {
                Some(u) if u > 0 => Some((tens + u, 3)),
                _ => Some((tens, 2)),
            }
        }
        _ => Some((unit, 1)),
    }
}

/// A whole number, the first in the answer: "3", "3 orang", "untuk tiga", "dua belas",
/// "twelve".
///
/// # Errors
/// [`SlotError::Number`] when there is none.
pub fn parse_number(input: &str) -> Result<String, SlotError> {
    let words = words(input);
    for (i, word) in words.iter().enumerate() {
        if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
            return word
                .parse::<u64>()
                .map(|n| n.to_string())
                .map_err(|_| SlotError::Number);
        }
        if let Some((n, _)) = number_in_words(&words[i..]) {
            return Ok(n.to_string());
        }
    }
    Err(SlotError::Number)
}

/// A phone number in E.164 with Indonesian defaults: "0812-3456-7890", "62812…", "+62 812…"
/// and "812…" all become "+62812…", also inside a short message ("nomor saya 0812…"). 8 to 15
/// digits; other countries need their `+`.
///
/// # Errors
/// [`SlotError::Phone`] for anything else (letters, too short or long, no country).
pub fn parse_phone(input: &str) -> Result<String, SlotError> {
    // "nomor saya 0812…", "WA: +62 812…": the number is what runs from the first `+` or digit
    // to the last digit, and nothing before it may be a digit.
    let start = input
        .find(|c: char| c == '+' || c.is_ascii_digit())
        .ok_or(SlotError::Phone)?;
    let end = input
        .rfind(|c: char| c.is_ascii_digit())
        .map_or(input.len(), |i| i + 1);
    let input = input.get(start..end.max(start)).ok_or(SlotError::Phone)?;
    let mut plus = false;
    let mut digits = String::new();
    for (i, c) in input.chars().enumerate() {
        match c {
            '+' if i == 0 => plus = true,
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(SlotError::Phone),
        }
    }
    let e164 = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("62{rest}")
    } else if digits.starts_with("62") {
        digits
    } else if digits.starts_with('8') {
        format!("62{digits}")
    } else {
        return Err(SlotError::Phone);
    };
    let national_ok = !e164.starts_with("62") || e164.len() >= 10;
    if (8..=15).contains(&e164.len()) && !e164.starts_with('0') && national_ok {
        Ok(format!("+{e164}"))
    } else {
        Err(SlotError::Phone)
    }
}

/// An e-mail address: one `@`, a local part without spaces, a domain of dotted labels ending
/// in a top-level domain of at least two letters; the one word with an `@` in a short message.
/// The domain is lowercased.
///
/// # Errors
/// [`SlotError::Email`] for anything else.
pub fn parse_email(input: &str) -> Result<String, SlotError> {
    // "email saya budi@contoh.com ya": the one word with an `@`.
    let mut candidates = input.split_whitespace().filter(|w| w.contains('@'));
    let (Some(input), None) = (candidates.next(), candidates.next()) else {
        return Err(SlotError::Email);
    };
    let input = input
        .trim_start_matches(['<', '(', '"', '\''])
        .trim_end_matches(['.', ',', '!', '?', '>', ')', '"', '\'']);
    let (local, domain) = input.split_once('@').ok_or(SlotError::Email)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "._%+-'".contains(c));
    let domain = domain.to_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    if local_ok && domain_ok {
        Ok(format!("{local}@{domain}"))
    } else {
        Err(SlotError::Email)
    }
}

const MONTHS: [&[&str]; 12] = [
    &["januari", "january", "jan"],
    &["februari", "february", "feb", "pebruari"],
    &["maret", "march", "mar"],
    &["april", "apr"],
    &["mei", "may"],
    &["juni", "june", "jun"],
    &["juli", "july", "jul"],
    &["agustus", "august", "aug", "agu", "agt", "ags"],
    &["september", "sep", "sept"],
    &["oktober", "october", "oct", "okt"],
    &["november", "nov", "nop", "nopember"],
    &["desember", "december", "dec", "des"],
];

/// Weekdays from Monday, each with its Indonesian and English spellings.
const WEEKDAYS: [&[&str]; 7] = [
    &["senin", "monday", "mon"],
    &["selasa", "tuesday", "tue", "tues"],
    &["rabu", "wednesday", "wed"],
    &["kamis", "thursday", "thu", "thurs"],
    &["jumat", "jum'at", "friday", "fri"],
    &["sabtu", "saturday", "sat"],
    &["minggu", "ahad", "sunday", "sun"],
];

fn month(word: &str) -> Option<i8> {
    let word = word.trim_end_matches('.');
    MONTHS
        .iter()
        .position(|names| names.contains(&word))
        .and_then(|i| i8::try_from(i + 1).ok())
}

/// Words that carry no date: "hari Sabtu", "tanggal 12", "on Friday", "this Monday".
const DATE_FILLER: &[&str] = &["hari", "tanggal", "tgl", "on", "this", "ini", "the", "pada"];

/// A date: "hari ini", "besok", "lusa", "today", "tomorrow", a weekday (its next occurrence,
/// today included), "12/12", "12/12/2026", "2026-12-12", "12 Desember", "Dec 12". A day and
/// month without a year that already passed this year means next year.
///
/// # Errors
/// [`SlotError::Date`] when there is no date, or it is not on the calendar (31/2).
pub fn parse_date(input: &str, today: Date) -> Result<String, SlotError> {
    date_of(&words(input), today)
        .map(|d| d.to_string())
        .ok_or(SlotError::Date)
}

fn date_of(words: &[String], today: Date) -> Option<Date> {
    let joined = words.join(" ");
    let relative = match joined.as_str() {
        "hari ini" | "today" | "sekarang" => Some(0),
        "besok" | "besuk" | "tomorrow" => Some(1),
        "lusa" | "besok lusa" | "day after tomorrow" | "the day after tomorrow" => Some(2),
        _ => None,
    };
    if let Some(days) = relative {
        return today.checked_add(jiff::Span::new().days(days)).ok();
    }
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| !DATE_FILLER.contains(w))
        .collect();
    match words.as_slice() {
        [one] => weekday(one, today).or_else(|| numeric_date(one, today)),
        [a, b] => day_month(a, b, None, today).or_else(|| day_month(b, a, None, today)),
        [a, b, y] => {
            let year = y.parse::<i16>().ok()?;
            day_month(a, b, Some(year), today).or_else(|| day_month(b, a, Some(year), today))
        }
        _ => None,
    }
}

fn weekday(word: &str, today: Date) -> Option<Date> {
    let target = WEEKDAYS.iter().position(|names| names.contains(&word))?;
    let current = usize::try_from(today.weekday().to_monday_zero_offset()).ok()?;
    let ahead = (target + 7 - current) % 7;
    today
        .checked_add(jiff::Span::new().days(i64::try_from(ahead).ok()?))
        .ok()
}

/// "12/12", "12-12", "12/12/2026", "12/12/26", "2026-12-12".
fn numeric_date(word: &str, today: Date) -> Option<Date> {
    let parts: Vec<&str> = word.split(['/', '-', '.']).collect();
    let number = |s: &str| s.parse::<i16>().ok();
    match parts.as_slice() {
        [y, m, d] if y.len() == 4 => Date::new(
            number(y)?,
            i8::try_from(number(m)?).ok()?,
            i8::try_from(number(d)?).ok()?,
        )
        .ok(),
        [d, m] => yearless(
            i8::try_from(number(d)?).ok()?,
            i8::try_from(number(m)?).ok()?,
            today,
        ),
        [d, m, y] => {
            let y = number(y)?;
            let year = if y < 100 { 2000 + y } else { y };
            Date::new(
                year,
                i8::try_from(number(m)?).ok()?,
                i8::try_from(number(d)?).ok()?,
            )
            .ok()
        }
        _ => None,
    }
}

/// "12 Desember", with the day first (`day`, `month`) or second.
fn day_month(day: &str, month_word: &str, year: Option<i16>, today: Date) -> Option<Date> {
    let day = day.parse::<i8>().ok()?;
    let month = month(month_word)?;
    match year {
        Some(y) => Date::new(y, month, day).ok(),
        None => yearless(day, month, today),
    }
}

fn yearless(day: i8, month: i8, today: Date) -> Option<Date> {
    let this_year = Date::new(today.year(), month, day).ok();
    match this_year {
        Some(d) if d >= today => Some(d),
        _ => Date::new(today.year().checked_add(1)?, month, day).ok(),
    }
}

/// Words that carry no time: "jam 3", "pukul 15.00", "at 3pm", "15.00 WIB".
const TIME_FILLER: &[&str] = &[
    "jam", "pukul", "pkl", "at", "wib", "wita", "wit", "o'clock", "oclock",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Period {
    Morning,
    Midday,
    Afternoon,
    Night,
    Am,
    Pm,
}

fn period(word: &str) -> Option<Period> {
    match word {
        "pagi" | "morning" => Some(Period::Morning),
        "siang" | "noon" => Some(Period::Midday),
        "sore" | "afternoon" => Some(Period::Afternoon),
        "malam" | "evening" | "night" | "tonight" => Some(Period::Night),
        "am" | "a.m" | "a.m." => Some(Period::Am),
        "pm" | "p.m" | "p.m." => Some(Period::Pm),
        _ => None,
    }
}

/// A time of day: "jam 3 sore" (15:00), "jam 7 malam" (19:00), "jam 10 pagi", "15.00",
/// "15:30", "3pm", "3.30 pm", "setengah 8 malam" (19:30).
///
/// # Errors
/// [`SlotError::Time`] when there is no time in the answer.
pub fn parse_time(input: &str) -> Result<String, SlotError> {
    time_of(&words(input))
        .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
        .ok_or(SlotError::Time)
}

fn time_of(words: &[String]) -> Option<Time> {
    let mut half = false;
    let mut clock: Option<(i8, i8)> = None;
    let mut when: Option<Period> = None;
    for word in words {
        let word = word.as_str();
        if TIME_FILLER.contains(&word) || matches!(word, "in" | "the") {
            continue;
        }
        if word == "setengah" || word == "half" {
            half = true;
            continue;
        }
        if let Some(p) = period(word) {
            when = Some(p);
            continue;
        }
        // "3pm", "3.30pm": the period glued to the number.
        let (number, glued) = match word
            .strip_suffix("pm")
            .map(|n| (n, Period::Pm))
            .or_else(|| word.strip_suffix("am").map(|n| (n, Period::Am)))
        {
            Some((n, p)) if !n.is_empty() => (n, Some(p)),
            _ => (word, None),
        };
        if clock.is_some() {
            return None;
        }
        clock = Some(clock_of(number)?);
        if glued.is_some() {
            when = glued;
        }
    }
    let (mut hour, mut minute) = clock?;
    if half {
        if minute != 0 || hour == 0 {
            return None;
        }
        hour -= 1;
        minute = 30;
    }
    let hour = match (when, hour) {
        (None, h) => h,
        (Some(_), h) if h > 12 => h,
        (Some(Period::Am | Period::Morning), 12) => 0,
        (Some(Period::Am | Period::Morning), h) => h,
        (Some(Period::Pm), 12) => 12,
        (Some(Period::Pm | Period::Afternoon), h) => h + 12,
        (Some(Period::Midday), h) if h <= 5 => h + 12,
        (Some(Period::Midday), h) => h,
        (Some(Period::Night), 12) => 0,
        (Some(Period::Night), h) if h >= 5 => h + 12,
        (Some(Period::Night), h) => h,
    };
    Time::new(hour % 24, minute, 0, 0).ok()
}

/// "15", "15.00", "15:30", "3", "tiga".
fn clock_of(word: &str) -> Option<(i8, i8)> {
    if let Some((h, m)) = word.split_once([':', '.']) {
        if m.len() != 2 {
            return None;
        }
        let (h, m) = (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?);
        return ((0..=24).contains(&h) && (0..60).contains(&m)).then_some((h % 24, m));
    }
    let h = word
        .parse::<i8>()
        .ok()
        .or_else(|| number_in_words(&[word.to_owned()]).and_then(|(n, _)| i8::try_from(n).ok()))?;
    (0..=24).contains(&h).then_some((h % 24, 0))
}

/// A date with a time, either order, "jam" or "at" between: "besok jam 3 sore",
/// "Sabtu 19.00", "12/12 jam 7 malam", "tomorrow at 7pm". A time alone means today.
///
/// # Errors
/// [`SlotError::Datetime`] when the answer is not a date with a time.
pub fn parse_datetime(input: &str, now: DateTime) -> Result<String, SlotError> {
    let words = words(input);
    let today = now.date();
    let format = |d: Date, t: Time| format!("{d} {:02}:{:02}", t.hour(), t.minute());
    for split in 1..words.len() {
        let (head, tail) = words.split_at(split);
        if let (Some(d), Some(t)) = (date_of(head, today), time_of(tail)) {
            return Ok(format(d, t));
        }
        if let (Some(t), Some(d)) = (time_of(head), date_of(tail, today)) {
            return Ok(format(d, t));
        }
    }
    match time_of(&words) {
        Some(t) => Ok(format(today, t)),
        None => Err(SlotError::Datetime),
    }
}

/// Lowercase, words separated by single spaces, no punctuation around them.
fn normalize(input: &str) -> String {
    words(input).join(" ")
}

/// One of `choices`: its value, its title in either language (case and spaces do not matter),
/// its number in the list ("1", "2"), or an answer that names exactly one title ("yang di
/// Kemang aja").
///
/// # Errors
/// [`SlotError::Choice`] when the answer names none or more than one.
pub fn parse_choice(input: &str, choices: &[Choice]) -> Result<String, SlotError> {
    let answer = normalize(input);
    if answer.is_empty() {
        return Err(SlotError::Empty);
    }
    let names = |c: &Choice| {
        [
            normalize(&c.value),
            normalize(&c.title.id),
            normalize(&c.title.en),
        ]
    };
    if let Some(c) = choices.iter().find(|c| names(c).contains(&answer)) {
        return Ok(c.value.clone());
    }
    if let Ok(n) = answer.trim_end_matches('.').parse::<usize>() {
        return n
            .checked_sub(1)
            .and_then(|i| choices.get(i))
            .map(|c| c.value.clone())
            .ok_or(SlotError::Choice);
    }
    let padded = format!(" {answer} ");
    let named: Vec<&Choice> = choices
        .iter()
        .filter(|c| {
            names(c)
                .iter()
                .any(|n| !n.is_empty() && padded.contains(&format!(" {n} ")))
        })
        .collect();
    match named.as_slice() {
        [one] => Ok(one.value.clone()),
        _ => Err(SlotError::Choice),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::flow::Localized;

    /// Monday 7 December 2026, 10:00 in the tenant's zone.
    fn now() -> DateTime {
        jiff::civil::date(2026, 12, 7).at(10, 0, 0, 0)
    }

    #[test]
    fn numbers_in_digits_and_words() {
        let cases = [
            ("3", "3"),
            ("tiga", "3"),
            ("3 orang", "3"),
            ("untuk 4 orang ya", "4"),
            ("dua belas", "12"),
            ("sebelas", "11"),
            ("sepuluh orang", "10"),
            ("dua puluh", "20"),
            ("dua puluh lima", "25"),
            ("nol", "0"),
            ("Twelve", "12"),
            ("twenty people", "20"),
            ("five", "5"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_number(input), Ok(want.to_owned()), "{input}");
        }
        for input in ["banyak", "a lot", "?"] {
            assert_eq!(parse_number(input), Err(SlotError::Number), "{input}");
        }
    }

    #[test]
    fn phones_become_e164_with_indonesian_defaults() {
        for input in [
            "0812-3456-7890",
            "081234567890",
            "62812 3456 7890",
            "+62 812-3456-7890",
            "812 3456 7890",
            "(0812) 3456.7890",
        ] {
            assert_eq!(
                parse_phone(input),
                Ok("+6281234567890".to_owned()),
                "{input}"
            );
        }
        assert_eq!(parse_phone("+65 9123 4567"), Ok("+6591234567".to_owned()));
        assert_eq!(
            parse_phone("nomor saya 0812 3456 7890 ya"),
            Ok("+6281234567890".to_owned())
        );
        assert_eq!(
            parse_phone("WA: +62 812-3456-7890"),
            Ok("+6281234567890".to_owned())
        );
        for input in [
            "nomor saya",
            "0812 atau 0813 1234 5678",
            "08123456789x0",
            "0812",
            "12345",
            "phone: 0812",
            "+1234567890123456",
            "91234567",
        ] {
            assert_eq!(parse_phone(input), Err(SlotError::Phone), "{input}");
        }
    }

    #[test]
    fn emails_are_checked_and_their_domain_lowercased() {
        assert_eq!(
            parse_email(" Budi.Santoso@Contoh.CO.id "),
            Ok("Budi.Santoso@contoh.co.id".to_owned())
        );
        assert_eq!(parse_email("a+b@x.io"), Ok("a+b@x.io".to_owned()));
        assert_eq!(
            parse_email("email saya budi@Contoh.com ya"),
            Ok("budi@contoh.com".to_owned())
        );
        assert_eq!(
            parse_email("<budi@contoh.com>."),
            Ok("budi@contoh.com".to_owned())
        );
        assert_eq!(parse_email("a@x.com atau b@y.com"), Err(SlotError::Email));
        for input in [
            "budi",
            "budi@",
            "@x.com",
            "budi@x",
            "budi @x.com",
            "a@@x.com",
            "a@x.c0",
        ] {
            assert_eq!(parse_email(input), Err(SlotError::Email), "{input}");
        }
    }

    #[test]
    fn dates_in_indonesian_and_english() {
        let today = now().date();
        let cases = [
            ("hari ini", "2026-12-07"),
            ("today", "2026-12-07"),
            ("besok", "2026-12-08"),
            ("Tomorrow", "2026-12-08"),
            ("lusa", "2026-12-09"),
            ("Sabtu", "2026-12-12"),
            ("hari sabtu", "2026-12-12"),
            ("saturday", "2026-12-12"),
            ("Senin", "2026-12-07"),
            ("minggu", "2026-12-13"),
            ("jumat", "2026-12-11"),
            ("12/12", "2026-12-12"),
            ("12/12/2026", "2026-12-12"),
            ("1/1", "2027-01-01"),
            ("12 Desember", "2026-12-12"),
            ("tanggal 24 des", "2026-12-24"),
            ("Dec 12", "2026-12-12"),
            ("12 December 2027", "2027-12-12"),
            ("2026-12-31", "2026-12-31"),
            ("5 januari", "2027-01-05"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_date(input, today), Ok(want.to_owned()), "{input}");
        }
        for input in ["kapan-kapan", "31/2", "13/13", "minggu depan lagi"] {
            assert_eq!(parse_date(input, today), Err(SlotError::Date), "{input}");
        }
    }

    #[test]
    fn times_in_indonesian_and_english() {
        let cases = [
            ("jam 3 sore", "15:00"),
            ("jam 7 malam", "19:00"),
            ("jam 10 pagi", "10:00"),
            ("jam 1 siang", "13:00"),
            ("jam 12 siang", "12:00"),
            ("15.00", "15:00"),
            ("15:30", "15:30"),
            ("pukul 19.30 WIB", "19:30"),
            ("3pm", "15:00"),
            ("3 pm", "15:00"),
            ("7.30pm", "19:30"),
            ("12am", "00:00"),
            ("9 am", "09:00"),
            ("setengah 8 malam", "19:30"),
            ("jam tujuh malam", "19:00"),
            ("jam 19", "19:00"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input), Ok(want.to_owned()), "{input}");
        }
        for input in ["nanti", "jam 25", "15.7", "jam 3 atau 4"] {
            assert_eq!(parse_time(input), Err(SlotError::Time), "{input}");
        }
    }

    #[test]
    fn date_times_in_either_order() {
        let cases = [
            ("besok jam 3 sore", "2026-12-08 15:00"),
            ("Sabtu 19.00", "2026-12-12 19:00"),
            ("12/12 jam 7 malam", "2026-12-12 19:00"),
            ("tomorrow at 7pm", "2026-12-08 19:00"),
            ("jam 7 malam besok", "2026-12-08 19:00"),
            ("lusa setengah 8 malam", "2026-12-09 19:30"),
            ("12 Desember pukul 18.30", "2026-12-12 18:30"),
            ("jam 7 malam", "2026-12-07 19:00"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_datetime(input, now()), Ok(want.to_owned()), "{input}");
        }
        for input in ["besok", "kapan saja", "apa ada meja kosong?"] {
            assert_eq!(
                parse_datetime(input, now()),
                Err(SlotError::Datetime),
                "{input}"
            );
        }
    }

    #[test]
    fn choices_by_value_title_number_or_a_named_title() {
        let choice = |value: &str, id: &str, en: &str| Choice {
            value: value.to_owned(),
            title: Localized {
                id: id.to_owned(),
                en: en.to_owned(),
            },
        };
        let choices = [
            choice("blok-m", "Blok M", "Blok M"),
            choice("kemang", "Kemang", "Kemang"),
            choice("bandung-dago", "Bandung Dago", "Bandung Dago"),
        ];
        let cases = [
            ("blok-m", "blok-m"),
            ("  BLOK   m ", "blok-m"),
            ("Kemang", "kemang"),
            ("2", "kemang"),
            ("3", "bandung-dago"),
            ("yang di kemang aja", "kemang"),
            ("bandung dago!", "bandung-dago"),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_choice(input, &choices),
                Ok(want.to_owned()),
                "{input}"
            );
        }
        for input in ["4", "0", "surabaya", "kemang atau blok m"] {
            assert_eq!(
                parse_choice(input, &choices),
                Err(SlotError::Choice),
                "{input}"
            );
        }
        let yes_no = [
            choice("ya", "Ya, benar", "Yes"),
            choice("ubah", "Ubah", "Change"),
        ];
        assert_eq!(parse_choice("yes", &yes_no), Ok("ya".to_owned()));
        assert_eq!(parse_choice("Ya, benar", &yes_no), Ok("ya".to_owned()));
        assert_eq!(parse_choice("change", &yes_no), Ok("ubah".to_owned()));
    }

    #[test]
    fn text_with_a_pattern() {
        let pattern = Some(r"^(?i)KN-?\d{4}$");
        assert_eq!(parse_text(" kn-1003 ", pattern), Ok("kn-1003".to_owned()));
        assert_eq!(parse_text("pesanan saya", pattern), Err(SlotError::Pattern));
        assert_eq!(parse_text("apa saja", None), Ok("apa saja".to_owned()));
        assert_eq!(parse_text("   ", None), Err(SlotError::Empty));
    }
}
