//! CP-IS080: "The CP-IS service MUST be able to identify where a Child Protection Plan with a Start
//! Date has not received an End Date nor a Delete Date within 2 years. This will specifically be
//! for Child Protection Plans only, and not Unborn Child Protection Plans or Looked After Child
//! dates."
//!
//! Current items (not logically deleted) of type CPP with neither an end date nor a delete date,
//! whose two years from the start date have passed ([`open_too_long`]), with how long each has been
//! open and a count per LA. The dates are as the LA sent them.

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::{Date, Text};

use crate::domain::dates::anniversary;
use crate::error::AppError;

/// How long a plan may stay open before it is reported.
pub const YEARS: i32 = 2;

/// The last day of a plan's two years: the second anniversary of its start. A plan started on
/// 29 February reaches it on 28 February (the service's anniversary rule, `dates::anniversary`).
pub fn two_years_on(start: NaiveDate) -> NaiveDate {
    anniversary(start, YEARS)
}

/// CP-IS080: a plan that started on `start` and is still open (no end, no delete date) on UK date
/// `today` has gone more than two years without either, from the day after its second anniversary.
pub fn open_too_long(start: NaiveDate, today: NaiveDate) -> bool {
    today > two_years_on(start)
}

/// How long a plan has been open on `today`: whole years (anniversaries passed) and days since
/// the last one, and the days in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFor {
    pub years: i32,
    pub days: i64,
    pub total_days: i64,
}

impl std::fmt::Display for OpenFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: i64, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
        write!(f, "{}, {}", plural(self.years.into(), "year"), plural(self.days, "day"))
    }
}

pub fn open_for(start: NaiveDate, today: NaiveDate) -> OpenFor {
    let total_days = (today - start).num_days();
    let mut years = (today.year() - start.year()).max(0);
    while years > 0 && anniversary(start, years) > today {
        years -= 1;
    }
    let days = (today - anniversary(start, years)).num_days();
    OpenFor { years, days, total_days }
}

/// One plan open too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPlan {
    pub la_code: String,
    pub la_name: String,
    pub nhs_number: String,
    pub la_child_id: String,
    pub start: NaiveDate,
    pub open_for: OpenFor,
}

/// How many plans each LA has open too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerLa {
    pub la_code: String,
    pub la_name: String,
    pub plans: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPlans {
    pub today: NaiveDate,
    /// Longest open first.
    pub plans: Vec<OpenPlan>,
    /// By LA name.
    pub per_la: Vec<PerLa>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    la_code: String,
    #[diesel(sql_type = Text)]
    la_name: String,
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Text)]
    la_child_id: String,
    #[diesel(sql_type = Date)]
    start_date: NaiveDate,
}

/// The plans open too long on UK date `today`.
pub fn load(conn: &mut PgConnection, today: NaiveDate) -> Result<OpenPlans, AppError> {
    // A superset (two years are at least 730 days); the rule itself is applied below.
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT i.la_code, coalesce(l.display_name, l.reference_name) AS la_name, i.nhs_number, i.la_child_id, \
                i.start_date \
         FROM cp_items i JOIN local_authorities l ON l.code = i.la_code \
         WHERE i.item_type = 'CPP' AND i.deleted_at IS NULL AND i.end_date IS NULL AND i.delete_date IS NULL \
           AND i.start_date <= $1 - 730 \
         ORDER BY i.start_date, i.la_code, i.nhs_number",
    )
    .bind::<Date, _>(today)
    .load(conn)?;
    Ok(collect(rows, today))
}

fn collect(rows: Vec<Row>, today: NaiveDate) -> OpenPlans {
    let plans: Vec<OpenPlan> = rows
        .into_iter()
        .filter(|r| open_too_long(r.start_date, today))
        .map(|r| OpenPlan {
            open_for: open_for(r.start_date, today),
            la_code: r.la_code,
            la_name: r.la_name,
            nhs_number: r.nhs_number,
            la_child_id: r.la_child_id,
            start: r.start_date,
        })
        .collect();
    let mut per_la: Vec<PerLa> = Vec::new();
    for p in &plans {
        match per_la.iter_mut().find(|l| l.la_code == p.la_code) {
            Some(l) => l.plans += 1,
            None => per_la.push(PerLa { la_code: p.la_code.clone(), la_name: p.la_name.clone(), plans: 1 }),
        }
    }
    per_la.sort_by(|a, b| (&a.la_name, &a.la_code).cmp(&(&b.la_name, &b.la_code)));
    OpenPlans { today, plans, per_la }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn reported_from_the_day_after_the_second_anniversary() {
        let start = d("2024-06-10");
        assert!(!open_too_long(start, d("2026-06-09")));
        assert!(!open_too_long(start, d("2026-06-10")), "exactly two years: not more than two");
        assert!(open_too_long(start, d("2026-06-11")));
        assert!(!open_too_long(d("2026-11-22"), d("2026-11-22")), "started today");
    }

    #[test]
    fn mind_29_february() {
        // Started on 29 February: two years on is 28 February, so reported from 1 March.
        let leap = d("2024-02-29");
        assert_eq!(two_years_on(leap), d("2026-02-28"));
        assert!(!open_too_long(leap, d("2026-02-28")));
        assert!(open_too_long(leap, d("2026-03-01")));
        // Started on 28 February two years before a leap year: reported on 29 February already.
        let before_leap = d("2022-02-28");
        assert!(!open_too_long(before_leap, d("2024-02-28")));
        assert!(open_too_long(before_leap, d("2024-02-29")));
        // Started on 1 March before a leap day: 730 days are not yet two years.
        let march = d("2022-03-01");
        assert_eq!((d("2024-02-29") - march).num_days(), 730);
        assert!(!open_too_long(march, d("2024-02-29")));
        assert!(!open_too_long(march, d("2024-03-01")));
        assert!(open_too_long(march, d("2024-03-02")));
    }

    #[test]
    fn how_long_open_counts_years_then_days() {
        let start = d("2023-11-20");
        assert_eq!(open_for(start, d("2026-11-22")), OpenFor { years: 3, days: 2, total_days: 1098 });
        assert_eq!(open_for(start, d("2026-11-19")), OpenFor { years: 2, days: 364, total_days: 1095 });
        assert_eq!(open_for(start, d("2026-11-22")).to_string(), "3 years, 2 days");
        assert_eq!(open_for(d("2025-11-21"), d("2026-11-22")).to_string(), "1 year, 1 day");
        assert_eq!(open_for(d("2024-02-29"), d("2026-03-01")), OpenFor { years: 2, days: 1, total_days: 731 });
    }

    fn row(la: &str, name: &str, nhs: &str, start: &str) -> Row {
        Row {
            la_code: la.into(),
            la_name: name.into(),
            nhs_number: nhs.into(),
            la_child_id: "C-1".into(),
            start_date: d(start),
        }
    }

    #[test]
    fn the_superset_is_narrowed_and_counted_per_la() {
        let today = d("2026-11-22");
        let rows = vec![
            row("E10000016", "Kent", "9990000018", "2024-11-21"),
            row("E08000035", "Leeds", "9990000026", "2024-11-20"),
            row("E10000016", "Kent", "9990000034", "2024-11-22"), // exactly two years: not yet
            row("E10000016", "Kent", "9990000042", "2020-01-01"),
        ];
        let r = collect(rows, today);
        let numbers: Vec<&str> = r.plans.iter().map(|p| p.nhs_number.as_str()).collect();
        assert_eq!(numbers, vec!["9990000018", "9990000026", "9990000042"]);
        let per_la: Vec<(&str, usize)> = r.per_la.iter().map(|l| (l.la_name.as_str(), l.plans)).collect();
        assert_eq!(per_la, vec![("Kent", 2), ("Leeds", 1)]);
    }
}
