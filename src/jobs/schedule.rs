//! When each kind of job runs, in UK local time (Europe/London). Pure: no I/O, unit-tested on the
//! days the clocks change.
//!
//! - expiry: every day at 00:05;
//! - daily_notification: every day at 00:30; its occurrence on UK day D+1 covers UK day D;
//! - audit_retention: every day at 01:00;
//! - session_cleanup: every hour at a quarter past;
//! - audit_checkpoint: every hour at a quarter to (CP-IS074).
//!
//! A daily time that does not exist on the spring change day (01:00 to 01:59 local on the last
//! Sunday of March) runs at the first instant after the gap (02:00 BST, the same instant as 01:00
//! GMT would have been); a time that happens twice on the autumn change day (01:00 to 01:59) runs
//! the first time only. So every UK day, of 23, 24 or 25 hours, has exactly one daily occurrence.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

use super::Kind;
use crate::domain::dates::{uk_date, UK};

/// A kind's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Once a UK day at this local time.
    Daily { hour: u32, minute: u32 },
    /// Every hour at this minute past (UK offsets are whole hours, so every UTC hour too).
    Hourly { minute: u32 },
}

pub fn rule(kind: Kind) -> Rule {
    match kind {
        Kind::Expiry => Rule::Daily { hour: 0, minute: 5 },
        Kind::DailyNotification => Rule::Daily { hour: 0, minute: 30 },
        Kind::AuditRetention => Rule::Daily { hour: 1, minute: 0 },
        Kind::SessionCleanup => Rule::Hourly { minute: 15 },
        Kind::AuditCheckpoint => Rule::Hourly { minute: 45 },
    }
}

/// The rule as people read it.
pub fn describe(kind: Kind) -> String {
    match rule(kind) {
        Rule::Daily { hour, minute } => format!("Every day at {hour:02}:{minute:02} UK time"),
        Rule::Hourly { minute } => format!("Every hour at {minute:02} minutes past"),
    }
}

/// The instant of a local time on UK day `d`: the first of two on the autumn change day, the end of
/// the gap on the spring one.
fn daily_instant(d: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let local = d.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or(NaiveTime::MIN));
    match UK.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In the gap: the first local minute that exists after it.
            (1..=24 * 60)
                .find_map(|m| UK.from_local_datetime(&(local + Duration::minutes(m))).earliest())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&local))
        }
    }
}

/// Every occurrence of `kind` in `(after, up_to]`, oldest first.
pub fn occurrences(kind: Kind, after: DateTime<Utc>, up_to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    if up_to <= after {
        return Vec::new();
    }
    match rule(kind) {
        Rule::Daily { hour, minute } => {
            // One day either side covers any offset between UTC and UK time.
            let first = uk_date(after).pred_opt().unwrap_or(NaiveDate::MIN);
            let last = uk_date(up_to).succ_opt().unwrap_or(NaiveDate::MAX);
            first
                .iter_days()
                .take_while(|d| *d <= last)
                .map(|d| daily_instant(d, hour, minute))
                .filter(|t| *t > after && *t <= up_to)
                .collect()
        }
        Rule::Hourly { minute } => {
            let hour_start = |t: DateTime<Utc>| {
                t.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)).unwrap_or(t)
            };
            let mut out = Vec::new();
            let mut t = hour_start(after) + Duration::minutes(i64::from(minute));
            while t <= up_to {
                if t > after {
                    out.push(t);
                }
                t += Duration::hours(1);
            }
            out
        }
    }
}

/// The first occurrence of `kind` after `t`.
pub fn next_after(kind: Kind, t: DateTime<Utc>) -> DateTime<Utc> {
    // A daily occurrence is never more than 50 hours away, an hourly one never more than 1.
    occurrences(kind, t, t + Duration::hours(50)).into_iter().next().unwrap_or(t)
}

/// The UK day a daily notification occurrence covers: the day before the one it runs on.
pub fn notification_day(scheduled_for: DateTime<Utc>) -> NaiveDate {
    let d = uk_date(scheduled_for);
    d.pred_opt().unwrap_or(d)
}

/// The key of an occurrence in the queue: its instant as RFC 3339 in UTC, to the second.
pub fn key(scheduled_for: DateTime<Utc>) -> String {
    scheduled_for.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn keys(v: &[DateTime<Utc>]) -> Vec<String> {
        v.iter().map(|t| key(*t)).collect()
    }

    /// The occurrences within UK day `d`.
    fn on_day(kind: Kind, d: NaiveDate) -> Vec<DateTime<Utc>> {
        let (start, end) = crate::domain::dates::uk_day_bounds(d);
        occurrences(kind, start - Duration::seconds(1), end - Duration::seconds(1))
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn daily_times_in_winter_and_summer() {
        let w = occurrences(Kind::Expiry, utc("2026-01-14T12:00:00Z"), utc("2026-01-16T12:00:00Z"));
        assert_eq!(keys(&w), ["2026-01-15T00:05:00Z", "2026-01-16T00:05:00Z"]);
        // BST: 00:30 local is 23:30 UTC the evening before.
        let s = occurrences(Kind::DailyNotification, utc("2026-07-14T12:00:00Z"), utc("2026-07-16T12:00:00Z"));
        assert_eq!(keys(&s), ["2026-07-14T23:30:00Z", "2026-07-15T23:30:00Z"]);
        let r = occurrences(Kind::AuditRetention, utc("2026-07-14T12:00:00Z"), utc("2026-07-15T12:00:00Z"));
        assert_eq!(keys(&r), ["2026-07-15T00:00:00Z"]);
    }

    #[test]
    fn the_interval_is_open_before_and_closed_after() {
        let at = utc("2026-01-15T00:05:00Z");
        assert_eq!(keys(&occurrences(Kind::Expiry, at - Duration::seconds(1), at)), ["2026-01-15T00:05:00Z"]);
        assert!(occurrences(Kind::Expiry, at, at + Duration::hours(23)).is_empty());
        assert!(occurrences(Kind::Expiry, at, at).is_empty());
        assert!(occurrences(Kind::Expiry, at, at - Duration::days(3)).is_empty());
    }

    #[test]
    fn spring_change_day_29_march_2026() {
        let d = date(2026, 3, 29);
        // 00:05 and 00:30 are still GMT.
        assert_eq!(keys(&on_day(Kind::Expiry, d)), ["2026-03-29T00:05:00Z"]);
        assert_eq!(keys(&on_day(Kind::DailyNotification, d)), ["2026-03-29T00:30:00Z"]);
        // 01:00 local does not exist (01:00 GMT becomes 02:00 BST): it runs as the gap ends.
        assert_eq!(keys(&on_day(Kind::AuditRetention, d)), ["2026-03-29T01:00:00Z"]);
        // A 23-hour day: 23 hourly occurrences.
        assert_eq!(on_day(Kind::SessionCleanup, d).len(), 23);
        // The day after is back to BST times.
        assert_eq!(keys(&on_day(Kind::AuditRetention, date(2026, 3, 30))), ["2026-03-30T00:00:00Z"]);
    }

    #[test]
    fn autumn_change_day_25_october_2026() {
        let d = date(2026, 10, 25);
        // 00:05 and 00:30 are BST (the change is at 02:00 BST).
        assert_eq!(keys(&on_day(Kind::Expiry, d)), ["2026-10-24T23:05:00Z"]);
        assert_eq!(keys(&on_day(Kind::DailyNotification, d)), ["2026-10-24T23:30:00Z"]);
        // 01:00 happens twice (BST, then GMT): it runs the first time only.
        assert_eq!(keys(&on_day(Kind::AuditRetention, d)), ["2026-10-25T00:00:00Z"]);
        // A 25-hour day: 25 hourly occurrences.
        assert_eq!(on_day(Kind::SessionCleanup, d).len(), 25);
        assert_eq!(keys(&on_day(Kind::Expiry, date(2026, 10, 26))), ["2026-10-26T00:05:00Z"]);
    }

    #[test]
    fn exactly_one_daily_occurrence_on_every_day_of_a_year() {
        let mut d = date(2026, 1, 1);
        while d < date(2027, 1, 1) {
            for kind in [Kind::Expiry, Kind::DailyNotification, Kind::AuditRetention] {
                let o = on_day(kind, d);
                assert_eq!(o.len(), 1, "{kind:?} on {d}");
                assert_eq!(uk_date(o[0]), d, "{kind:?} on {d}");
            }
            let hours = {
                let (s, e) = crate::domain::dates::uk_day_bounds(d);
                (e - s).num_hours() as usize
            };
            assert_eq!(on_day(Kind::SessionCleanup, d).len(), hours, "{d}");
            d = d.succ_opt().unwrap();
        }
    }

    #[test]
    fn a_week_has_seven_daily_occurrences_across_the_change() {
        let o = occurrences(Kind::Expiry, utc("2026-10-21T12:00:00Z"), utc("2026-10-28T12:00:00Z"));
        assert_eq!(o.len(), 7);
        let days: Vec<NaiveDate> = o.iter().map(|t| uk_date(*t)).collect();
        assert_eq!(days.first(), Some(&date(2026, 10, 22)));
        assert_eq!(days.last(), Some(&date(2026, 10, 28)));
    }

    #[test]
    fn hourly_at_quarter_past() {
        let o = occurrences(Kind::SessionCleanup, utc("2026-07-15T10:15:00Z"), utc("2026-07-15T13:14:59Z"));
        assert_eq!(keys(&o), ["2026-07-15T11:15:00Z", "2026-07-15T12:15:00Z"]);
        assert_eq!(next_after(Kind::SessionCleanup, utc("2026-07-15T10:20:00Z")), utc("2026-07-15T11:15:00Z"));
        assert_eq!(next_after(Kind::AuditCheckpoint, utc("2026-07-15T10:20:00Z")), utc("2026-07-15T10:45:00Z"));
    }

    #[test]
    fn next_occurrence() {
        assert_eq!(next_after(Kind::Expiry, utc("2026-11-22T06:00:00Z")), utc("2026-11-23T00:05:00Z"));
        assert_eq!(next_after(Kind::Expiry, utc("2026-11-22T00:04:59Z")), utc("2026-11-22T00:05:00Z"));
        assert_eq!(next_after(Kind::AuditRetention, utc("2026-03-28T12:00:00Z")), utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn the_notification_covers_the_previous_uk_day() {
        assert_eq!(notification_day(utc("2026-11-22T00:30:00Z")), date(2026, 11, 21));
        assert_eq!(notification_day(utc("2026-07-15T23:30:00Z")), date(2026, 7, 15));
    }

    #[test]
    fn rules_read_well() {
        assert_eq!(describe(Kind::Expiry), "Every day at 00:05 UK time");
        assert_eq!(describe(Kind::SessionCleanup), "Every hour at 15 minutes past");
        assert_eq!(describe(Kind::AuditCheckpoint), "Every hour at 45 minutes past");
    }
}
