//! The service's calendar: Europe/London everywhere (messages.md, "Rules every interface
//! shares"). Instants are stored in UTC; dates and times shown to people are UK local.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Offset, TimeZone, Timelike, Utc};

/// The service's time zone.
pub const UK: chrono_tz::Tz = chrono_tz::Europe::London;

/// The UK calendar date of an instant (so 23:30Z on a summer day is already the next UK date).
pub fn uk_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&UK).date_naive()
}

/// A date as people in the UK write it: "DD/MM/YYYY".
pub fn format_date(d: NaiveDate) -> String {
    // Written out rather than through `format("%d/%m/%Y")`, which parses its pattern on every
    // call: the tab shows up to 25 of these per opening (issue 8). Same text for years 0 to 9999.
    if (0..=9999).contains(&d.year()) {
        format!("{:02}/{:02}/{:04}", d.day(), d.month(), d.year())
    } else {
        d.format("%d/%m/%Y").to_string()
    }
}

/// An instant in UK local time with its zone named: "DD/MM/YYYY HH:MM:SS GMT" in winter,
/// "... BST" in summer (CP-IS045: times are shown in UK time, unambiguously on change days).
pub fn format_uk_datetime(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&UK);
    // Name the zone from the offset rather than trusting the abbreviation table.
    let zone = if local.offset().fix().local_minus_utc() == 0 { "GMT" } else { "BST" };
    let time = local.time();
    format!("{} {:02}:{:02}:{:02} {}", format_date(local.date_naive()), time.hour(), time.minute(), time.second(), zone)
}

/// The instants at which UK day `d` starts and ends; the end is the next day's start, so the day
/// is the half-open interval `[start, end)`. The spring change day lasts 23 hours, the autumn one
/// 25.
pub fn uk_day_bounds(d: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let next = d.succ_opt().unwrap_or(NaiveDate::MAX);
    (uk_day_start(d), uk_day_start(next))
}

/// The first instant of UK day `d`. UK clocks change at 01:00 UTC, so midnight always exists
/// exactly once; the fallback covers any zone whose midnight falls in a gap.
fn uk_day_start(d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_time(NaiveTime::MIN);
    if let Some(t) = UK.from_local_datetime(&midnight).earliest() {
        return t.with_timezone(&Utc);
    }
    // In a gap: the day starts at the first local minute that exists.
    (1..=24 * 60)
        .filter_map(|m| {
            let local = midnight + chrono::TimeDelta::minutes(m);
            UK.from_local_datetime(&local).earliest()
        })
        .next()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

/// The date `years` years after `birth` (before it, when negative): the birthday in that year.
/// A 29 February birthday falls on 28 February in a year that is not a leap year.
/// Saturates at chrono's representable range.
pub fn anniversary(birth: NaiveDate, years: i32) -> NaiveDate {
    let Some(year) = birth.year().checked_add(years) else {
        return if years < 0 { NaiveDate::MIN } else { NaiveDate::MAX };
    };
    NaiveDate::from_ymd_opt(year, birth.month(), birth.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, birth.month(), 28))
        .unwrap_or(if years < 0 { NaiveDate::MIN } else { NaiveDate::MAX })
}

/// Age in whole years on date `on`: the number of birthdays (by [`anniversary`], so a 29 February
/// baby turns a year older on 28 February in other years) that have passed. Negative before birth.
pub fn age_in_years(birth: NaiveDate, on: NaiveDate) -> i32 {
    let years = on.year() - birth.year();
    if on < anniversary(birth, years) {
        years - 1
    } else {
        years
    }
}

/// The last day on which a person is a child for CP-IS purposes: the 18th birthday plus 365 days
/// (CP-IS007, CP-NHS008: "a child up to 18 years and 365 days").
pub fn last_day_as_child(birth: NaiveDate) -> NaiveDate {
    add_days(anniversary(birth, 18), 365)
}

/// True while a person is a child for CP-IS purposes on `on` (CP-IS007, CP-NHS008).
pub fn is_child(birth: NaiveDate, on: NaiveDate) -> bool {
    on <= last_day_as_child(birth)
}

/// `d` plus `n` days, saturating at the end of chrono's range.
pub(crate) fn add_days(d: NaiveDate, n: u64) -> NaiveDate {
    d.checked_add_days(Days::new(n)).unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn uk_date_follows_local_midnight() {
        // Winter: UK = UTC.
        assert_eq!(uk_date(utc("2026-01-15T23:59:59Z")), date(2026, 1, 15));
        assert_eq!(uk_date(utc("2026-01-16T00:00:00Z")), date(2026, 1, 16));
        // Summer: UK = UTC + 1, so 23:00Z is already tomorrow.
        assert_eq!(uk_date(utc("2026-07-15T22:59:59Z")), date(2026, 7, 15));
        assert_eq!(uk_date(utc("2026-07-15T23:00:00Z")), date(2026, 7, 16));
    }

    #[test]
    fn dates_and_times_are_written_as_chrono_would_write_them() {
        let mut t = utc("2025-01-01T00:00:00Z");
        while t < utc("2028-01-01T00:00:00Z") {
            let local = t.with_timezone(&UK);
            assert_eq!(format_uk_datetime(t)[..19], local.format("%d/%m/%Y %H:%M:%S").to_string());
            assert_eq!(format_date(local.date_naive()), local.format("%d/%m/%Y").to_string());
            t += chrono::TimeDelta::seconds(7_919);
        }
        for y in [0, 1, 99, 999, 9999, 10_000, -1] {
            let d = date(y, 2, 3);
            assert_eq!(format_date(d), d.format("%d/%m/%Y").to_string());
        }
    }

    #[test]
    fn format_date_is_dd_mm_yyyy() {
        assert_eq!(format_date(date(2026, 3, 9)), "09/03/2026");
        assert_eq!(format_date(date(2010, 10, 22)), "22/10/2010");
        assert_eq!(format_date(date(999, 1, 1)), "01/01/0999");
    }

    #[test]
    fn format_uk_datetime_winter_and_summer() {
        assert_eq!(format_uk_datetime(utc("2026-01-15T09:05:07Z")), "15/01/2026 09:05:07 GMT");
        assert_eq!(format_uk_datetime(utc("2026-07-15T09:05:07Z")), "15/07/2026 10:05:07 BST");
        assert_eq!(format_uk_datetime(utc("2026-07-15T23:30:00Z")), "16/07/2026 00:30:00 BST");
    }

    #[test]
    fn format_uk_datetime_spring_change() {
        assert_eq!(format_uk_datetime(utc("2026-03-29T00:59:59Z")), "29/03/2026 00:59:59 GMT");
        assert_eq!(format_uk_datetime(utc("2026-03-29T01:00:00Z")), "29/03/2026 02:00:00 BST");
    }

    #[test]
    fn format_uk_datetime_autumn_change() {
        assert_eq!(format_uk_datetime(utc("2026-10-25T00:00:00Z")), "25/10/2026 01:00:00 BST");
        assert_eq!(format_uk_datetime(utc("2026-10-25T00:59:59Z")), "25/10/2026 01:59:59 BST");
        assert_eq!(format_uk_datetime(utc("2026-10-25T01:00:00Z")), "25/10/2026 01:00:00 GMT");
    }

    #[test]
    fn day_bounds_ordinary_days() {
        let (start, end) = uk_day_bounds(date(2026, 1, 15));
        assert_eq!(start, utc("2026-01-15T00:00:00Z"));
        assert_eq!(end, utc("2026-01-16T00:00:00Z"));
        let (start, end) = uk_day_bounds(date(2026, 7, 15));
        assert_eq!(start, utc("2026-07-14T23:00:00Z"));
        assert_eq!(end, utc("2026-07-15T23:00:00Z"));
        assert_eq!(end - start, chrono::TimeDelta::hours(24));
    }

    #[test]
    fn day_bounds_spring_change_day_is_23_hours() {
        let (start, end) = uk_day_bounds(date(2026, 3, 29));
        assert_eq!(start, utc("2026-03-29T00:00:00Z"));
        assert_eq!(end, utc("2026-03-29T23:00:00Z"));
        assert_eq!(end - start, chrono::TimeDelta::hours(23));
    }

    #[test]
    fn day_bounds_autumn_change_day_is_25_hours() {
        let (start, end) = uk_day_bounds(date(2026, 10, 25));
        assert_eq!(start, utc("2026-10-24T23:00:00Z"));
        assert_eq!(end, utc("2026-10-26T00:00:00Z"));
        assert_eq!(end - start, chrono::TimeDelta::hours(25));
    }

    #[test]
    fn day_bounds_agree_with_uk_date() {
        for d in [date(2026, 3, 29), date(2026, 10, 25), date(2024, 2, 29)] {
            let (start, end) = uk_day_bounds(d);
            assert_eq!(uk_date(start), d);
            assert_eq!(uk_date(end - chrono::TimeDelta::seconds(1)), d);
            assert_eq!(uk_date(end), d.succ_opt().unwrap());
            assert_eq!(uk_date(start - chrono::TimeDelta::seconds(1)), d.pred_opt().unwrap());
        }
    }

    #[test]
    fn anniversary_ordinary_and_leap_day() {
        assert_eq!(anniversary(date(2010, 10, 22), 18), date(2028, 10, 22));
        assert_eq!(anniversary(date(2010, 10, 22), 0), date(2010, 10, 22));
        assert_eq!(anniversary(date(2010, 10, 22), -1), date(2009, 10, 22));
        // 29 February: 28 February in other years, 29 February in leap years.
        assert_eq!(anniversary(date(2008, 2, 29), 1), date(2009, 2, 28));
        assert_eq!(anniversary(date(2008, 2, 29), 4), date(2012, 2, 29));
        assert_eq!(anniversary(date(2008, 2, 29), 18), date(2026, 2, 28));
        // 2100 is not a leap year.
        assert_eq!(anniversary(date(2096, 2, 29), 4), date(2100, 2, 28));
    }

    #[test]
    fn anniversary_saturates() {
        assert_eq!(anniversary(date(2000, 1, 1), i32::MAX), NaiveDate::MAX);
        assert_eq!(anniversary(date(2000, 1, 1), i32::MIN), NaiveDate::MIN);
    }

    #[test]
    fn age_in_years_edges() {
        let birth = date(2010, 10, 22);
        assert_eq!(age_in_years(birth, birth), 0);
        assert_eq!(age_in_years(birth, date(2011, 10, 21)), 0);
        assert_eq!(age_in_years(birth, date(2011, 10, 22)), 1);
        assert_eq!(age_in_years(birth, date(2028, 10, 21)), 17);
        assert_eq!(age_in_years(birth, date(2028, 10, 22)), 18);
        assert_eq!(age_in_years(birth, date(2010, 10, 21)), -1);
    }

    #[test]
    fn age_in_years_leap_day_birth() {
        let birth = date(2008, 2, 29);
        assert_eq!(age_in_years(birth, date(2009, 2, 27)), 0);
        assert_eq!(age_in_years(birth, date(2009, 2, 28)), 1);
        assert_eq!(age_in_years(birth, date(2012, 2, 28)), 3);
        assert_eq!(age_in_years(birth, date(2012, 2, 29)), 4);
        assert_eq!(age_in_years(birth, date(2026, 2, 27)), 17);
        assert_eq!(age_in_years(birth, date(2026, 2, 28)), 18);
    }

    #[test]
    fn child_until_18_years_and_365_days() {
        let birth = date(2010, 10, 22);
        // 18th birthday 2028-10-22; + 365 days = 2029-10-22 (no 29 February in between).
        assert_eq!(last_day_as_child(birth), date(2029, 10, 22));
        assert!(is_child(birth, date(2028, 10, 22)));
        assert!(is_child(birth, date(2029, 10, 22)));
        assert!(!is_child(birth, date(2029, 10, 23)));
        assert!(is_child(birth, birth));
    }

    #[test]
    fn child_across_a_leap_year() {
        // 18th birthday 2027-06-01; + 365 days crosses 29 February 2028, so lands on 2028-05-31.
        let birth = date(2009, 6, 1);
        assert_eq!(last_day_as_child(birth), date(2028, 5, 31));
        assert!(is_child(birth, date(2028, 5, 31)));
        assert!(!is_child(birth, date(2028, 6, 1)));
    }

    #[test]
    fn child_born_on_29_february() {
        let birth = date(2008, 2, 29);
        // 18th birthday 2026-02-28; + 365 days = 2027-02-28.
        assert_eq!(last_day_as_child(birth), date(2027, 2, 28));
        assert!(is_child(birth, date(2027, 2, 28)));
        assert!(!is_child(birth, date(2027, 3, 1)));
        // A birth on 29 February 2012 turns 18 on 28 February 2030; +365 = 28 February 2031.
        assert_eq!(last_day_as_child(date(2012, 2, 29)), date(2031, 2, 28));
    }
}
