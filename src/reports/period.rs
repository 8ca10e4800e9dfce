//! The period a report covers: two UK calendar dates, both included, read from `?from=&to=`.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;

use crate::domain::dates::{uk_date, uk_day_bounds};
use crate::error::AppError;
use crate::validation::FieldError;

/// The longest period a report accepts (a little over ten years).
pub const MAX_DAYS: i64 = 3700;
/// The period shown when none is given: the last 30 days, today included.
pub const DEFAULT_DAYS: i64 = 30;
/// The years a date may fall in (PostgreSQL's timestamps cannot hold the far past or future).
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` as typed; empty fields take the default.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PeriodQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// Reads a period, defaulting to the last [`DEFAULT_DAYS`] days up to `today`. A malformed date,
    /// `from` after `to`, or a period longer than [`MAX_DAYS`] is a 400 saying which.
    pub fn parse(q: &PeriodQuery, today: NaiveDate) -> Result<Period, AppError> {
        let date = |field: &str, v: &Option<String>| -> Result<Option<NaiveDate>, AppError> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .filter(|d| YEARS.contains(&d.year()))
                    .map(Some)
                    .ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "The {field} date \"{}\" is not a date: write it as YYYY-MM-DD, e.g. 2026-11-01.",
                            s.chars().take(40).collect::<String>()
                        ))
                    }),
            }
        };
        let to = date("to", &q.to)?.unwrap_or(today);
        let from = date("from", &q.from)?.unwrap_or(to - TimeDelta::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err(AppError::BadRequest(
                "The period starts after it ends: the from date must be on or before the to date.".into(),
            ));
        }
        if (to - from).num_days() + 1 > MAX_DAYS {
            return Err(AppError::BadRequest(format!(
                "The period is longer than {MAX_DAYS} days: choose a shorter one."
            )));
        }
        Ok(Period { from, to })
    }

    /// As [`Period::parse`], with the problem held against its field (`to` or `from`) for a form's
    /// error summary.
    pub fn parse_field(q: &PeriodQuery, today: NaiveDate) -> Result<Period, FieldError> {
        Period::parse(q, today).map_err(|e| {
            let message = e.to_string();
            FieldError::new(if message.contains("The to date") { "to" } else { "from" }, message)
        })
    }

    /// The last [`DEFAULT_DAYS`] days up to the UK date of `now`.
    pub fn default_at(now: DateTime<Utc>) -> Period {
        let to = uk_date(now);
        Period { from: to - TimeDelta::days(DEFAULT_DAYS - 1), to }
    }

    /// The instants the period covers: from the start of `from` (UK time) to the start of the day
    /// after `to`, half-open.
    pub fn bounds(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (uk_day_bounds(self.from).0, uk_day_bounds(self.to).1)
    }

    /// Every date of the period, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let to = self.to;
        self.from.iter_days().take_while(move |d| *d <= to)
    }

    /// The query string that reproduces it (for links and the CSV download).
    pub fn query(&self) -> String {
        format!("from={}&to={}", self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: &str, to: &str) -> PeriodQuery {
        PeriodQuery { from: Some(from.into()), to: Some(to.into()) }
    }
    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn missing_dates_default_to_the_last_thirty_days() {
        let p = Period::parse(&PeriodQuery::default(), d("2026-11-22")).unwrap();
        assert_eq!((p.from, p.to), (d("2026-10-24"), d("2026-11-22")));
        assert_eq!(p.days().count(), 30);
        let p = Period::parse(&q("", "2026-02-10"), d("2026-11-22")).unwrap();
        assert_eq!(p.from, d("2026-01-12"));
    }

    #[test]
    fn bad_periods_are_refused_with_a_reason() {
        let today = d("2026-11-22");
        let msg = |r: Result<Period, AppError>| r.unwrap_err().to_string();
        assert!(msg(Period::parse(&q("22/11/2026", ""), today)).contains("YYYY-MM-DD"));
        assert!(msg(Period::parse(&q("2026-11-02", "2026-11-01"), today)).contains("starts after it ends"));
        assert!(msg(Period::parse(&q("2000-01-01", "2026-11-01"), today)).contains("longer than"));
        assert!(Period::parse(&q("2026-11-01", "2026-11-01"), today).is_ok());
        // Years PostgreSQL cannot hold as a timestamp are refused, not a 500.
        assert!(msg(Period::parse(&q("-5000-01-01", "-5000-01-02"), today)).contains("YYYY-MM-DD"));
        assert!(msg(Period::parse(&q("", "+10000-01-01"), today)).contains("YYYY-MM-DD"));
    }

    #[test]
    fn bounds_follow_uk_time_across_the_clock_change() {
        // 2026-03-29 is the spring change: the day is 23 hours long.
        let p = Period { from: d("2026-03-29"), to: d("2026-03-29") };
        let (start, end) = p.bounds();
        assert_eq!((end - start).num_hours(), 23);
        assert_eq!(start.to_rfc3339(), "2026-03-29T00:00:00+00:00");
        assert_eq!(p.query(), "from=2026-03-29&to=2026-03-29");
    }
}
