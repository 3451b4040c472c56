//! Weekly maintenance windows: "is this instant inside a window" and "when does the next one
//! open". Pure: instants are UTC, each window's days and start time are read in its own time
//! zone (`chrono-tz`'s copy of the zoneinfo database), so a window at 08:00 Europe/Berlin is at
//! 07:00 UTC in winter and 06:00 UTC in summer. A window's length is elapsed time: a 60-minute
//! window over a DST change still lasts 60 minutes. A start time that does not exist on a
//! spring-forward day opens at the first minute after the gap; one that exists twice on a
//! fall-back day opens at the first of them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

/// The longest window: a whole week (longer would overlap itself).
pub const MAX_LENGTH_MINUTES: u32 = 7 * 24 * 60;

/// One weekly window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    /// The days it opens on, in its time zone.
    pub days: Vec<Weekday>,
    /// When it opens on those days, local time.
    pub start: NaiveTime,
    pub length_minutes: u32,
    pub time_zone: Tz,
}

impl Window {
    /// The instant this window opens on local date `date`, if it opens that day.
    fn opening_on(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        if !self.days.contains(&date.weekday()) {
            return None;
        }
        let mut local = date.and_time(self.start);
        // A gap (spring forward) is at most a few hours: walk forward minute by minute.
        for _ in 0..=(4 * 60) {
            if let Some(t) = self.time_zone.from_local_datetime(&local).earliest() {
                return Some(t.with_timezone(&Utc));
            }
            local += Duration::minutes(1);
        }
        None
    }

    /// The openings `[start, end)` that can touch the week around `t`, in order.
    fn intervals_around(&self, t: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let today = t.with_timezone(&self.time_zone).date_naive();
        let length = Duration::minutes(i64::from(self.length_minutes));
        (-8..=8)
            .filter_map(|offset| today.checked_add_signed(Duration::days(offset)))
            .filter_map(|date| self.opening_on(date))
            .map(|start| (start, start + length))
            .collect()
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.intervals_around(t)
            .iter()
            .any(|&(start, end)| start <= t && t < end)
    }

    /// `t` when inside, else the next opening after `t`.
    pub fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.intervals_around(t)
            .into_iter()
            .filter(|&(_, end)| t < end)
            .map(|(start, _)| start.max(t))
            .min()
    }
}

/// All the configured windows; none means "always".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub windows: Vec<Window>,
}

impl Schedule {
    /// No window configured: every instant is allowed.
    pub fn is_always(&self) -> bool {
        self.windows.is_empty()
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.is_always() || self.windows.iter().any(|w| w.contains(t))
    }

    /// `t` when allowed now, else when the next window opens.
    pub fn next_open(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_always() {
            return Some(t);
        }
        self.windows.iter().filter_map(|w| w.next_open(t)).min()
    }
}

/// Parses a day as Zincati writes them: `Mon` or `Monday`, any case.
pub fn parse_day(text: &str) -> Option<Weekday> {
    let lower = text.to_ascii_lowercase();
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .into_iter()
    .find(|d| {
        let short = d.to_string().to_ascii_lowercase();
        lower == short || full_name(*d) == lower
    })
}

fn full_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn window(days: &[Weekday], start: &str, length_minutes: u32, tz: &str) -> Window {
        Window {
            days: days.to_vec(),
            start: NaiveTime::parse_from_str(start, "%H:%M").expect("test time"),
            length_minutes,
            time_zone: tz.parse().expect("test zone"),
        }
    }

    #[test]
    fn inside_and_next_open_across_midnight_week_end_and_dst() {
        use Weekday::*;
        // 2026-03-29 is a Sunday: Europe/Berlin springs forward at 02:00 CET -> 03:00 CEST.
        // 2026-10-25 is a Sunday: it falls back at 03:00 CEST -> 02:00 CET.
        let cases: Vec<(&str, Window, &str, bool, &str)> = vec![
            // (what, window, at, inside, next open)
            (
                "plain, before",
                window(&[Mon], "10:00", 60, "UTC"),
                "2026-03-02T09:00:00Z",
                false,
                "2026-03-02T10:00:00Z",
            ),
            (
                "plain, at the start",
                window(&[Mon], "10:00", 60, "UTC"),
                "2026-03-02T10:00:00Z",
                true,
                "2026-03-02T10:00:00Z",
            ),
            (
                "plain, at the end",
                window(&[Mon], "10:00", 60, "UTC"),
                "2026-03-02T11:00:00Z",
                false,
                "2026-03-09T10:00:00Z",
            ),
            (
                "across midnight, after it",
                window(&[Fri], "23:00", 120, "UTC"),
                "2026-03-07T00:30:00Z",
                true,
                "2026-03-07T00:30:00Z",
            ),
            (
                "across midnight, done",
                window(&[Fri], "23:00", 120, "UTC"),
                "2026-03-07T01:00:00Z",
                false,
                "2026-03-13T23:00:00Z",
            ),
            (
                "across the week's end",
                window(&[Sun], "22:00", 240, "UTC"),
                "2026-03-02T01:59:00Z",
                true,
                "2026-03-02T01:59:00Z",
            ),
            (
                "next week",
                window(&[Sun], "22:00", 240, "UTC"),
                "2026-03-02T02:00:00Z",
                false,
                "2026-03-08T22:00:00Z",
            ),
            (
                "several days",
                window(&[Tue, Thu], "03:00", 30, "UTC"),
                "2026-03-03T04:00:00Z",
                false,
                "2026-03-05T03:00:00Z",
            ),
            (
                "a named zone in winter",
                window(&[Mon], "08:00", 60, "Europe/Berlin"),
                "2026-03-23T06:30:00Z",
                false,
                "2026-03-23T07:00:00Z",
            ),
            (
                "the same zone in summer",
                window(&[Mon], "08:00", 60, "Europe/Berlin"),
                "2026-03-30T06:30:00Z",
                true,
                "2026-03-30T06:30:00Z",
            ),
            (
                "the week of the change",
                window(&[Mon], "08:00", 60, "Europe/Berlin"),
                "2026-03-24T00:00:00Z",
                false,
                "2026-03-30T06:00:00Z",
            ),
            (
                "a start in the spring gap opens after it",
                window(&[Sun], "02:30", 60, "Europe/Berlin"),
                "2026-03-29T00:30:00Z",
                false,
                "2026-03-29T01:00:00Z",
            ),
            (
                "and lasts its length",
                window(&[Sun], "02:30", 60, "Europe/Berlin"),
                "2026-03-29T01:59:00Z",
                true,
                "2026-03-29T01:59:00Z",
            ),
            (
                "a repeated start opens at the first",
                window(&[Sun], "02:30", 30, "Europe/Berlin"),
                "2026-10-25T00:15:00Z",
                false,
                "2026-10-25T00:30:00Z",
            ),
            (
                "and is not reopened by the second",
                window(&[Sun], "02:30", 30, "Europe/Berlin"),
                "2026-10-25T01:30:00Z",
                false,
                "2026-11-01T01:30:00Z",
            ),
            (
                "a zone west of UTC, its Monday is UTC Tuesday",
                window(&[Mon], "22:00", 60, "America/New_York"),
                "2026-03-03T03:30:00Z",
                true,
                "2026-03-03T03:30:00Z",
            ),
        ];
        for (what, w, at, inside, next) in cases {
            let t = utc(at);
            assert_eq!(w.contains(t), inside, "{what}: contains({at})");
            assert_eq!(w.next_open(t), Some(utc(next)), "{what}: next_open({at})");
        }
    }

    #[test]
    fn a_schedule_is_any_of_its_windows_and_none_means_always() {
        let always = Schedule::default();
        let t = utc("2026-03-04T12:00:00Z");
        assert!(always.contains(t));
        assert_eq!(always.next_open(t), Some(t));
        let two = Schedule {
            windows: vec![
                window(&[Weekday::Fri], "01:00", 60, "UTC"),
                window(&[Weekday::Thu], "01:00", 60, "UTC"),
            ],
        };
        assert!(!two.contains(t));
        assert_eq!(two.next_open(t), Some(utc("2026-03-05T01:00:00Z")));
        assert!(two.contains(utc("2026-03-06T01:30:00Z")));
    }

    #[test]
    fn days_parse_short_and_long() {
        assert_eq!(parse_day("Mon"), Some(Weekday::Mon));
        assert_eq!(parse_day("sunday"), Some(Weekday::Sun));
        assert_eq!(parse_day("SAT"), Some(Weekday::Sat));
        assert_eq!(parse_day("Mo"), None);
    }
}
