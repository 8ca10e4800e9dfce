//! How long access events and audit entries about a child are kept (CP-IS076): "until the child's
//! 26th birthday or until 8 years after the child's death".
//!
//! The two alternatives are read as chosen by what happened to the child, not as "whichever is
//! earlier" or "whichever is later":
//!
//! - a child who died **as a child** (up to 18 years and 365 days, CP-IS007, [`dates::is_child`]):
//!   8 years after the death;
//! - everyone else: the 26th birthday.
//!
//! Why: CP-IS076 says it follows "existing auditing of medical records", and the Records Management
//! Code of Practice keeps children's records until an age "or 8 years after death", the death rule
//! standing for the child who did not reach that age. The statutory rules for children's case records
//! have the same shape ("until the 75th anniversary of the child's birth or, if the child dies before
//! attaining the age of 18, for 15 years from the death"). Reading it as "the later of" would make the
//! death clause meaningless for the only deaths it names (those of children: 8 years after a death
//! before 18 is always before the 26th birthday), and "the earlier of" would discard the audit of a
//! young adult less than 8 years after their death. For a death at 18 years and up to 365 days
//! (still a child for CP-IS) the death rule keeps the audit slightly beyond the 26th birthday,
//! which errs on the side of retention.
//!
//! Both dates follow [`dates::anniversary`]: a 29 February date falls on 28 February in other
//! years. Everything is kept on the last day itself and may be purged from the day after.

use chrono::NaiveDate;

use super::dates;

/// Years after birth (the 26th birthday) for a child who did not die as a child.
pub const YEARS_AFTER_BIRTH: i32 = 26;
/// Years after death for a child who died as a child.
pub const YEARS_AFTER_DEATH: i32 = 8;

/// The last day on which access events and audit entries about the child must be kept.
pub fn retain_until(birth: NaiveDate, death: Option<NaiveDate>) -> NaiveDate {
    match death {
        Some(died) if dates::is_child(birth, died) => dates::anniversary(died, YEARS_AFTER_DEATH),
        _ => dates::anniversary(birth, YEARS_AFTER_BIRTH),
    }
}

/// True when, on UK date `today`, the child's access events and audit entries are past their
/// retention and are to be purged: from the day after [`retain_until`].
pub fn purgeable(birth: NaiveDate, death: Option<NaiveDate>, today: NaiveDate) -> bool {
    today > retain_until(birth, death)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_living_child_is_kept_until_the_26th_birthday() {
        let birth = date(2000, 6, 15);
        assert_eq!(retain_until(birth, None), date(2026, 6, 15));
        assert!(!purgeable(birth, None, date(2026, 6, 14)));
        // Kept on the birthday itself, purged from the day after.
        assert!(!purgeable(birth, None, date(2026, 6, 15)));
        assert!(purgeable(birth, None, date(2026, 6, 16)));
        // 25 years old: untouched.
        assert!(!purgeable(date(2001, 1, 1), None, date(2026, 12, 31)));
    }

    #[test]
    fn born_on_29_february() {
        // 2026 is not a leap year: the 26th birthday is 28 February.
        let birth = date(2000, 2, 29);
        assert_eq!(retain_until(birth, None), date(2026, 2, 28));
        assert!(!purgeable(birth, None, date(2026, 2, 28)));
        assert!(purgeable(birth, None, date(2026, 3, 1)));
        // 26 years after a leap year is never one: always 28 February.
        assert_eq!(retain_until(date(2004, 2, 29), None), date(2030, 2, 28));
        assert!(!purgeable(date(2004, 2, 29), None, date(2030, 2, 28)));
        assert!(purgeable(date(2004, 2, 29), None, date(2030, 3, 1)));
    }

    #[test]
    fn a_child_who_died_young_is_kept_8_years_after_death() {
        let birth = date(2010, 4, 1);
        let died = date(2015, 9, 30);
        assert_eq!(retain_until(birth, Some(died)), date(2023, 9, 30));
        assert!(!purgeable(birth, Some(died), date(2023, 9, 30)));
        assert!(purgeable(birth, Some(died), date(2023, 10, 1)));
        // Well before the 26th birthday (2036).
        assert!(retain_until(birth, Some(died)) < retain_until(birth, None));
    }

    #[test]
    fn a_death_on_29_february() {
        // 8 years after a 29 February is 29 February again, except across a century that is
        // not a leap year (2100).
        assert_eq!(retain_until(date(2010, 1, 1), Some(date(2020, 2, 29))), date(2028, 2, 29));
        assert_eq!(retain_until(date(2080, 1, 1), Some(date(2092, 2, 29))), date(2100, 2, 28));
        assert!(purgeable(date(2080, 1, 1), Some(date(2092, 2, 29)), date(2100, 3, 1)));
        assert!(!purgeable(date(2080, 1, 1), Some(date(2092, 2, 29)), date(2100, 2, 28)));
    }

    #[test]
    fn a_death_as_an_adult_leaves_the_26th_birthday() {
        // Died at 20, after the last day as a child: the 26th birthday, as if alive.
        let birth = date(2000, 3, 10);
        assert_eq!(retain_until(birth, Some(date(2020, 5, 5))), date(2026, 3, 10));
        // Died at 30: long past; the 26th birthday still.
        assert_eq!(retain_until(birth, Some(date(2030, 5, 5))), date(2026, 3, 10));
    }

    #[test]
    fn the_death_rule_follows_the_cp_is_age_of_a_child() {
        // 18th birthday 2028-10-22; still a child up to 2029-10-22 (18 years and 365 days).
        let birth = date(2010, 10, 22);
        // Died the day before the 18th birthday: 8 years later, the day before the 26th.
        assert_eq!(retain_until(birth, Some(date(2028, 10, 21))), date(2036, 10, 21));
        // Died on the last day as a child: 8 years after, beyond the 26th birthday.
        assert_eq!(retain_until(birth, Some(date(2029, 10, 22))), date(2037, 10, 22));
        // Died the day after: no longer a child, so the 26th birthday.
        assert_eq!(retain_until(birth, Some(date(2029, 10, 23))), date(2036, 10, 22));
    }

    #[test]
    fn death_on_the_day_of_birth() {
        let birth = date(2016, 7, 1);
        assert_eq!(retain_until(birth, Some(birth)), date(2024, 7, 1));
        assert!(purgeable(birth, Some(birth), date(2024, 7, 2)));
    }
}
