//! Scheduled maintenance windows (seed 003 [35]: "scheduled server shutdowns for routine
//! maintenance"; issue 19 item 1): when a window starts the server drains (no new sessions,
//! open ones stay), and it is selectable again when the window ends.
//!
//! Forms accepted in `maintenance = [...]` (the time zone is optional everywhere and is an
//! IANA name such as `Europe/Berlin`, read from the system tzdb; default `UTC`):
//!
//! | form | meaning |
//! |---|---|
//! | `daily 02:00-03:00 [TZ]` | every day, wall-clock time in TZ; wraps past midnight if the end is earlier |
//! | `Sun 02:00-04:00 [TZ]`, `Mon-Fri 22:00-23:00 [TZ]`, `Sat,Sun 01:00-05:00 [TZ]` | on those weekdays (the day the window starts) |
//! | `cron M H DOM MON DOW DURATION [TZ]` | starts at every match of the 5-field cron expression in TZ, lasts DURATION (`90m`, `2h`, `1h30m`, `45s`, `1d`) |
//! | `FROM-TO` | absolute, Unix seconds |
//!
//! **DST.** Wall-clock windows follow the local clock: `Sun 02:00-04:00 Europe/Berlin` on
//! the day clocks go forward (02:00 → 03:00) is the real hour 03:00–04:00 CEST; on the day
//! they go back it is three real hours. A start time that does not exist that day is moved
//! forward by the gap, an ambiguous one takes the earlier instant (RFC 5545 / jiff
//! "compatible"). A cron window's DURATION is real (elapsed) time from the start instant.
//! Cron fields: `*`, `N`, `A-B`, `*/S`, `A-B/S`, lists with `,`; months 1–12 or `jan`…,
//! weekdays 0–7 (0 and 7 Sunday) or `sun`…; when both day-of-month and day-of-week are
//! restricted, either matching is enough (classic cron).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Longest cron window duration accepted (keeps the look-back bounded).
const MAX_CRON_DURATION_MS: u64 = 7 * 86_400_000;

/// A parsed maintenance window.
#[derive(Debug, Clone)]
pub enum Window {
    /// On the days in `days` (bit 0 = Sunday … bit 6 = Saturday; all bits for `daily`),
    /// from one wall-clock minute of the day to another in `tz`; wraps past midnight into
    /// the next day if `from_min >= to_min`.
    Wall {
        /// Weekdays on which the window starts (bit 0 = Sunday).
        days: u8,
        /// Start minute of the day (local).
        from_min: u32,
        /// End minute of the day (local, exclusive).
        to_min: u32,
        /// Time zone name as written (`UTC` when none was given).
        tz_name: String,
        /// The time zone.
        tz: TimeZone,
    },
    /// Starts at every match of a 5-field cron expression in `tz` and lasts `duration_ms`.
    Cron {
        /// The parsed fields.
        spec: CronSpec,
        /// Length of each window, ms (real time).
        duration_ms: u64,
        /// Time zone name as written.
        tz_name: String,
        /// The time zone.
        tz: TimeZone,
    },
    /// Absolute interval in Unix milliseconds, `[from, to)`.
    Absolute {
        /// Start.
        from_ms: u64,
        /// End (exclusive).
        to_ms: u64,
    },
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Window::Wall {
                    days: a,
                    from_min: b,
                    to_min: c,
                    tz_name: d,
                    ..
                },
                Window::Wall {
                    days: e,
                    from_min: f,
                    to_min: g,
                    tz_name: h,
                    ..
                },
            ) => a == e && b == f && c == g && d == h,
            (
                Window::Cron {
                    spec: a,
                    duration_ms: b,
                    tz_name: c,
                    ..
                },
                Window::Cron {
                    spec: d,
                    duration_ms: e,
                    tz_name: f,
                    ..
                },
            ) => a == d && b == e && c == f,
            (
                Window::Absolute {
                    from_ms: a,
                    to_ms: b,
                },
                Window::Absolute {
                    from_ms: c,
                    to_ms: d,
                },
            ) => a == c && b == d,
            _ => false,
        }
    }
}

impl Eq for Window {}

/// The five fields of a cron expression as bit sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronSpec {
    /// Minutes 0–59.
    pub minutes: u64,
    /// Hours 0–23.
    pub hours: u32,
    /// Days of the month 1–31 (bit n = day n).
    pub days_of_month: u32,
    /// Months 1–12 (bit n = month n).
    pub months: u16,
    /// Weekdays, bit 0 = Sunday.
    pub days_of_week: u8,
    /// Day of month was `*` (classic cron: then only the weekday restricts).
    dom_any: bool,
    /// Day of week was `*`.
    dow_any: bool,
}

impl CronSpec {
    /// Parses `M H DOM MON DOW`.
    pub fn parse(fields: &[&str]) -> Result<CronSpec, String> {
        let [m, h, dom, mon, dow] = fields else {
            return Err(
                "a cron expression has 5 fields: minute hour day-of-month month day-of-week".into(),
            );
        };
        let minutes = field(m, 0, 59, &[])?;
        let hours = field(h, 0, 23, &[])?;
        let days_of_month = field(dom, 1, 31, &[])?;
        let months = field(mon, 1, 12, &MONTHS)?;
        let mut days_of_week = field(dow, 0, 7, &WEEKDAYS)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7f;
        }
        Ok(CronSpec {
            minutes,
            hours: u32::try_from(hours).map_err(|_| "hour out of range")?,
            days_of_month: u32::try_from(days_of_month).map_err(|_| "day out of range")?,
            months: u16::try_from(months).map_err(|_| "month out of range")?,
            days_of_week: u8::try_from(days_of_week).map_err(|_| "weekday out of range")?,
            dom_any: *dom == "*",
            dow_any: *dow == "*",
        })
    }

    /// Does the cron day part match this date?
    fn day_matches(&self, d: Date) -> bool {
        let month_ok = self.months & (1 << d.month()) != 0;
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << weekday_bit(d)) != 0;
        let day_ok = match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        };
        month_ok && day_ok
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses one cron field into a bit set over `lo..=hi`. `names[i]` stands for `lo + i`
/// (months) or `i` (weekdays, whose `lo` is 0).
fn field(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |t: &str| -> Result<u32, String> {
        let lower = t.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            let base = if lo == 0 { 0 } else { lo };
            return Ok(base + u32::try_from(i).unwrap_or(0));
        }
        let v: u32 = t
            .parse()
            .map_err(|_| format!("`{t}` is not a number in {lo}-{hi}"))?;
        if v < lo || v > hi {
            return Err(format!("`{t}` is outside {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st
                    .parse()
                    .ok()
                    .filter(|&x| x > 0)
                    .ok_or_else(|| format!("`{st}` is not a step (1 or more)"))?;
                (r, st)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if b < a {
                return Err(format!("`{range}`: range runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            // `N/S` means N, N+S, ... up to the field's end.
            (a, if part.contains('/') { hi } else { a })
        };
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn weekday_bit(d: Date) -> u8 {
    u8::try_from(d.weekday().to_sunday_zero_offset()).unwrap_or(0)
}

fn parse_days(s: &str) -> Option<u8> {
    let day = |t: &str| -> Option<u8> {
        let t = t.to_ascii_lowercase();
        let p = WEEKDAYS
            .iter()
            .position(|n| t.starts_with(n) && t.len() >= 3)?;
        // Accept the full names too (`sunday`), nothing else.
        let full = [
            "sunday",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
        ];
        (t.len() == 3 || t == full[p]).then(|| u8::try_from(p).unwrap_or(0))
    };
    let mut bits = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                // Mon-Fri, also wrapping: Fri-Mon.
                let mut d = a;
                loop {
                    bits |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => bits |= 1 << day(part)?,
        }
    }
    Some(bits)
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `90m`, `2h`, `1h30m`, `45s`, `1d`, `500ms` → milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match c {
                's' => (1_000, 1),
                'm' => (60_000, 1),
                'h' => (3_600_000, 1),
                'd' => (86_400_000, 1),
                _ => return None,
            }
        };
        let n: u64 = num.parse().ok()?;
        num.clear();
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &rest[len..];
    }
    if !num.is_empty() {
        return None;
    }
    (total > 0).then_some(total)
}

fn zone(name: Option<&str>) -> Result<(String, TimeZone), String> {
    match name {
        None => Ok(("UTC".into(), TimeZone::UTC)),
        Some(n) => TimeZone::get(n)
            .map(|tz| (n.to_string(), tz))
            .map_err(|e| format!("unknown time zone `{n}`: {e}")),
    }
}

fn instant_ms(tz: &TimeZone, dt: DateTime) -> Option<u64> {
    let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

fn local_date(tz: &TimeZone, now_ms: u64) -> Option<Date> {
    let ts = Timestamp::from_millisecond(i64::try_from(now_ms).ok()?).ok()?;
    Some(tz.to_datetime(ts).date())
}

fn at_minute(d: Date, minute_of_day: u32) -> Option<DateTime> {
    let h = i8::try_from(minute_of_day / 60).ok()?;
    let m = i8::try_from(minute_of_day % 60).ok()?;
    Some(d.at(h, m, 0, 0))
}

impl Window {
    /// Parses one `maintenance` entry (see the module documentation for the forms).
    pub fn parse(s: &str) -> Result<Window, String> {
        let s = s.trim();
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.first().copied() {
            Some("cron") => {
                if words.len() < 7 || words.len() > 8 {
                    return Err(format!(
                        "`{s}`: expected `cron M H DOM MON DOW DURATION [TZ]`"
                    ));
                }
                let spec = CronSpec::parse(&words[1..6]).map_err(|e| format!("`{s}`: {e}"))?;
                let duration_ms = parse_duration_ms(words[6]).ok_or_else(|| {
                    format!("`{}` is not a duration (e.g. 90m, 2h, 1h30m)", words[6])
                })?;
                if duration_ms > MAX_CRON_DURATION_MS {
                    return Err(format!("`{}`: a cron window lasts at most 7d", words[6]));
                }
                let (tz_name, tz) = zone(words.get(7).copied())?;
                Ok(Window::Cron {
                    spec,
                    duration_ms,
                    tz_name,
                    tz,
                })
            }
            Some(first) if words.len() >= 2 && words.len() <= 3 => {
                let days = if first == "daily" {
                    0x7f
                } else {
                    parse_days(first).ok_or_else(|| {
                        format!("`{first}` is not `daily` or weekdays (Sun, Mon-Fri, Sat,Sun)")
                    })?
                };
                let (a, b) = words[1]
                    .split_once('-')
                    .ok_or_else(|| format!("`{s}`: expected `{first} HH:MM-HH:MM [TZ]`"))?;
                let from_min = hhmm(a).ok_or_else(|| format!("`{a}` is not HH:MM"))?;
                let to_min = hhmm(b).ok_or_else(|| format!("`{b}` is not HH:MM"))?;
                if from_min == to_min {
                    return Err(format!("`{s}`: empty window"));
                }
                let (tz_name, tz) = zone(words.get(2).copied())?;
                Ok(Window::Wall {
                    days,
                    from_min,
                    to_min,
                    tz_name,
                    tz,
                })
            }
            _ => {
                let (a, b) = s.split_once('-').ok_or_else(|| {
                    format!(
                        "`{s}`: expected `daily HH:MM-HH:MM [TZ]`, `DAYS HH:MM-HH:MM [TZ]`, `cron M H DOM MON DOW DURATION [TZ]` or `FROM-TO` in Unix seconds"
                    )
                })?;
                let from: u64 = a
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{a}` is not a Unix time in seconds"))?;
                let to: u64 = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{b}` is not a Unix time in seconds"))?;
                if to <= from {
                    return Err(format!("`{s}`: end is not after start"));
                }
                Ok(Window::Absolute {
                    from_ms: from.saturating_mul(1000),
                    to_ms: to.saturating_mul(1000),
                })
            }
        }
    }

    /// True when `now_ms` (Unix milliseconds) is inside the window.
    pub fn contains(&self, now_ms: u64) -> bool {
        self.current(now_ms).is_some()
    }

    /// The occurrence containing `now_ms` as `[start, end)` in Unix ms, if any.
    pub fn current(&self, now_ms: u64) -> Option<(u64, u64)> {
        match self {
            Window::Absolute { from_ms, to_ms } => {
                (now_ms >= *from_ms && now_ms < *to_ms).then_some((*from_ms, *to_ms))
            }
            Window::Wall {
                days,
                from_min,
                to_min,
                tz,
                ..
            } => {
                let today = local_date(tz, now_ms)?;
                // A window started today, or yesterday and wrapping past midnight.
                for start_day in [Some(today), today.yesterday().ok()].into_iter().flatten() {
                    if days & (1 << weekday_bit(start_day)) == 0 {
                        continue;
                    }
                    let end_day = if to_min > from_min {
                        start_day
                    } else {
                        start_day.tomorrow().ok()?
                    };
                    let start = instant_ms(tz, at_minute(start_day, *from_min)?)?;
                    let end = instant_ms(tz, at_minute(end_day, *to_min)?)?;
                    if now_ms >= start && now_ms < end {
                        return Some((start, end));
                    }
                }
                None
            }
            Window::Cron {
                spec,
                duration_ms,
                tz,
                ..
            } => {
                // The latest start at or before now decides: an earlier start of the same
                // length ends earlier.
                let mut day = local_date(tz, now_ms)?;
                let oldest = now_ms.saturating_sub(*duration_ms + 2 * 86_400_000);
                loop {
                    if spec.day_matches(day) {
                        for h in (0..24u32).rev().filter(|h| spec.hours & (1 << h) != 0) {
                            for m in (0..60u32).rev().filter(|m| spec.minutes & (1 << m) != 0) {
                                let start = instant_ms(tz, at_minute(day, h * 60 + m)?)?;
                                if start <= now_ms {
                                    let end = start.saturating_add(*duration_ms);
                                    return (now_ms < end).then_some((start, end));
                                }
                            }
                        }
                    }
                    let prev = day.yesterday().ok()?;
                    let prev_start = instant_ms(tz, prev.at(0, 0, 0, 0))?;
                    if prev_start < oldest {
                        return None;
                    }
                    day = prev;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC civil time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> u64 {
        let ts = jiff::civil::date(y, mo, d)
            .at(h, mi, 0, 0)
            .to_zoned(TimeZone::UTC)
            .expect("valid")
            .timestamp();
        u64::try_from(ts.as_millisecond()).expect("after 1970")
    }

    /// Asserts that `w` holds from `start` up to `end` (excluded), to the minute: not the
    /// minute before, at `start`, in the last minute, not at `end`.
    #[track_caller]
    fn assert_span(w: &Window, start: u64, end: u64) {
        const MINUTE: u64 = 60_000;
        assert!(!w.contains(start - MINUTE), "in a minute before {start}");
        assert!(w.contains(start), "not at its start {start}");
        assert!(w.contains(end - MINUTE), "not in the minute before {end}");
        assert!(!w.contains(end), "still at its end {end}");
    }

    #[test]
    fn utc_daily_and_absolute_as_before() {
        let w = Window::parse("daily 23:00-01:00").expect("ok");
        assert!(w.contains(23 * 3_600_000 + 5));
        assert!(w.contains(86_400_000 + 30 * 60_000));
        assert!(!w.contains(2 * 3_600_000));
        let w = Window::parse("10-20").expect("ok");
        assert!(!w.contains(9_999));
        assert!(w.contains(10_000));
        assert!(!w.contains(20_000));
        assert!(Window::parse("20-10").is_err());
    }

    #[test]
    fn weekly_window_in_berlin_across_spring_forward() {
        // 2026-03-29 is a Sunday; Berlin goes 02:00 CET -> 03:00 CEST (01:00 UTC).
        let w = Window::parse("Sun 02:00-04:00 Europe/Berlin").expect("ok");
        // 02:00 does not exist: the window starts at 03:00 CEST = 01:00 UTC and ends at
        // 04:00 CEST = 02:00 UTC: one real hour that day.
        assert_span(&w, utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0));
        assert_eq!(
            w.current(utc(2026, 3, 29, 1, 30)),
            Some((utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0)))
        );
        // The Sunday before (CET, UTC+1): 01:00-03:00 UTC.
        assert_span(&w, utc(2026, 3, 22, 1, 0), utc(2026, 3, 22, 3, 0));
        // The Sunday after (CEST, UTC+2): 00:00-02:00 UTC.
        assert_span(&w, utc(2026, 4, 5, 0, 0), utc(2026, 4, 5, 2, 0));
        // Not on a Saturday at the same time.
        assert!(!w.contains(utc(2026, 3, 28, 1, 30)));
    }

    #[test]
    fn weekly_window_in_berlin_across_fall_back() {
        // 2026-10-25 (Sunday): 03:00 CEST -> 02:00 CET (01:00 UTC); 02:00-04:00 local
        // starts at the first 02:00 (00:00 UTC) and ends at 04:00 CET (03:00 UTC).
        let w = Window::parse("Sun 02:00-04:00 Europe/Berlin").expect("ok");
        assert_span(&w, utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 3, 0));
    }

    #[test]
    fn daily_window_with_zone_wraps_midnight() {
        let w = Window::parse("daily 23:30-00:30 America/New_York").expect("ok");
        // 2026-07-01 23:45 EDT = 2026-07-02 03:45 UTC.
        assert!(w.contains(utc(2026, 7, 2, 3, 45)));
        // 00:15 EDT next day = 04:15 UTC (window started the day before).
        assert!(w.contains(utc(2026, 7, 2, 4, 15)));
        assert!(!w.contains(utc(2026, 7, 2, 4, 30)));
    }

    #[test]
    fn weekday_lists_and_ranges() {
        let w = Window::parse("Mon-Fri 12:00-13:00").expect("ok");
        // 2026-12-04 is a Friday, 2026-12-05 a Saturday.
        assert!(w.contains(utc(2026, 12, 4, 12, 30)));
        assert!(!w.contains(utc(2026, 12, 5, 12, 30)));
        let w = Window::parse("Sat,Sun 12:00-13:00 UTC").expect("ok");
        assert!(w.contains(utc(2026, 12, 5, 12, 30)));
        assert!(w.contains(utc(2026, 12, 6, 12, 0)));
        assert!(!w.contains(utc(2026, 12, 7, 12, 0)));
        let w = Window::parse("Fri-Mon 12:00-13:00").expect("ok");
        assert!(w.contains(utc(2026, 12, 7, 12, 0)));
        assert!(!w.contains(utc(2026, 12, 8, 12, 0)));
    }

    #[test]
    fn cron_window_across_spring_forward_keeps_real_duration() {
        // Every Sunday 02:30 Berlin for 90 minutes.
        let w = Window::parse("cron 30 2 * * 0 90m Europe/Berlin").expect("ok");
        // Normal Sunday (CET): 01:30-03:00 UTC.
        assert_span(&w, utc(2026, 3, 22, 1, 30), utc(2026, 3, 22, 3, 0));
        // DST day: 02:30 does not exist -> 03:30 CEST = 01:30 UTC, then 90 real minutes.
        assert_span(&w, utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 3, 0));
        // Monday: none.
        assert!(!w.contains(utc(2026, 3, 30, 1, 45)));
        // Fall back: 02:30 happens twice; the earlier (00:30 UTC) starts the window.
        assert_span(&w, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 0));
    }

    #[test]
    fn cron_fields_steps_lists_names_and_dom_or_dow() {
        let w = Window::parse("cron */15 9-17 * * mon-fri 5m").expect("ok");
        // Friday 2026-12-04 10:45 UTC.
        assert!(w.contains(utc(2026, 12, 4, 10, 47)));
        assert!(!w.contains(utc(2026, 12, 4, 10, 50)));
        assert!(!w.contains(utc(2026, 12, 5, 10, 47)));
        // Day 1 of the month OR Sundays (both restricted: either).
        let w = Window::parse("cron 0 3 1 * 0 1h").expect("ok");
        assert!(w.contains(utc(2026, 12, 1, 3, 10))); // a Tuesday, the 1st
        assert!(w.contains(utc(2026, 12, 6, 3, 10))); // a Sunday
        assert!(!w.contains(utc(2026, 12, 7, 3, 10)));
        // Months by name, 7 = Sunday, a window running past midnight.
        let w = Window::parse("cron 0 23 * jan,dec 7 2h").expect("ok");
        assert!(w.contains(utc(2026, 12, 7, 0, 30))); // Sunday 23:00 + 2h
        assert!(!w.contains(utc(2026, 11, 30, 0, 30)));
    }

    #[test]
    fn bad_forms_are_explained() {
        for (text, want) in [
            ("daily 25:00-03:00", "`25:00` is not HH:MM"),
            (
                "Sun 02:00-04:00 Mars/Olympus",
                "unknown time zone `Mars/Olympus`",
            ),
            ("Funday 02:00-04:00", "`Funday` is not `daily` or weekdays"),
            ("cron 61 2 * * 0 1h", "`61` is outside 0-59"),
            ("cron 0 2 * * 0 2x", "`2x` is not a duration"),
            (
                "cron 0 2 * * 1h",
                "expected `cron M H DOM MON DOW DURATION [TZ]`",
            ),
            ("cron 0 2 * * 0 8d", "at most 7d"),
            ("daily 02:00-02:00", "empty window"),
        ] {
            let e = Window::parse(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
