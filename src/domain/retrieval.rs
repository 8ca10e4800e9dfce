//! Which items are retrievable on a given UK date (messages.md, "Rules every interface shares";
//! CP-IS007, CP-IS009, CP-IS010, CP-IS011, CP-IS030, CP-IS032, CP-IS033).
//!
//! An item is retrievable on UK date D when every rule that applies to it allows D:
//! - its delete date is after D (CP-IS009: gone on the delete date itself);
//! - CPP and LAC: its effective end plus 365 days is on or after D (CP-IS010, CP-IS032), where a
//!   missing end or an end after the 18th birthday becomes the 18th birthday (CP-IS030), which
//!   also keeps it within the child's 18th birthday plus 365 days (CP-IS007);
//! - unborn child protection plan: its end plus 28 days is on or after D (CP-IS011, CP-IS033);
//!   the plan is the mother's, so no age rule applies.
//!
//! The start date plays no part in retrievability.

use chrono::NaiveDate;

use super::dates::{add_days, anniversary};

/// The three kinds of information a local authority shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ItemKind {
    /// Child protection plan (CPP).
    ChildProtectionPlan,
    /// Looked after child (LAC).
    LookedAfterChild,
    /// Unborn child protection plan (UCPP), held against the mother's NHS number.
    UnbornChildProtectionPlan,
}

impl ItemKind {
    /// Every kind, in display order.
    pub const ALL: [ItemKind; 3] =
        [ItemKind::ChildProtectionPlan, ItemKind::LookedAfterChild, ItemKind::UnbornChildProtectionPlan];

    /// The code used in messages and storage: "CPP", "LAC" or "UCPP".
    pub fn code(self) -> &'static str {
        match self {
            ItemKind::ChildProtectionPlan => "CPP",
            ItemKind::LookedAfterChild => "LAC",
            ItemKind::UnbornChildProtectionPlan => "UCPP",
        }
    }

    /// The kind with that code (exact, upper case), if any.
    pub fn from_code(code: &str) -> Option<Self> {
        ItemKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The name shown to people.
    pub fn display_name(self) -> &'static str {
        match self {
            ItemKind::ChildProtectionPlan => "Child protection plan",
            ItemKind::LookedAfterChild => "Looked after child",
            ItemKind::UnbornChildProtectionPlan => "Unborn child protection plan",
        }
    }

    /// The SNOMED CT concept used as the FHIR CareTeam category (messages.md, message 04).
    pub fn snomed_code(self) -> &'static str {
        match self {
            ItemKind::ChildProtectionPlan => "342191000000101",
            ItemKind::LookedAfterChild => "764841000000100",
            ItemKind::UnbornChildProtectionPlan => "818901000000100",
        }
    }

    /// True for the unborn child protection plan, which only midwife roles see (CP-IS041).
    pub fn is_unborn(self) -> bool {
        matches!(self, ItemKind::UnbornChildProtectionPlan)
    }
}

/// The dates a local authority sends for an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemDates {
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub delete: Option<NaiveDate>,
}

/// The end date the rules use (CP-IS030): for a CPP or LAC, a missing end, or an end after the
/// child's 18th birthday, becomes the 18th birthday (always `Some`); an unborn child protection
/// plan's end is as given (it is the mother's; no age rule).
pub fn effective_end(kind: ItemKind, dates: &ItemDates, birth_date: NaiveDate) -> Option<NaiveDate> {
    if kind.is_unborn() {
        return dates.end;
    }
    let eighteenth = anniversary(birth_date, 18);
    Some(match dates.end {
        Some(end) if end <= eighteenth => end,
        _ => eighteenth,
    })
}

/// The last UK date on which the item is retrievable, or `None` when no rule limits it (only an
/// unborn child protection plan with neither end nor delete date).
///
/// The earliest of: the day before the delete date (CP-IS009); for CPP and LAC the effective end
/// plus 365 days (CP-IS010, CP-IS032, CP-IS030), which is never after the 18th birthday plus 365
/// days (CP-IS007); for an unborn plan the end plus 28 days (CP-IS011, CP-IS033).
pub fn last_retrievable_day(kind: ItemKind, dates: &ItemDates, birth_date: NaiveDate) -> Option<NaiveDate> {
    let by_delete = dates.delete.map(|d| d.pred_opt().unwrap_or(NaiveDate::MIN));
    let grace_days = if kind.is_unborn() { 28 } else { 365 };
    let by_end = effective_end(kind, dates, birth_date).map(|end| add_days(end, grace_days));
    match (by_delete, by_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// True when the item is retrievable on UK date `on` (see the module notes).
pub fn is_retrievable(kind: ItemKind, dates: &ItemDates, birth_date: NaiveDate, on: NaiveDate) -> bool {
    match last_retrievable_day(kind, dates, birth_date) {
        Some(last) => on <= last,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemKind::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn plus(d: NaiveDate, n: u64) -> NaiveDate {
        d.checked_add_days(chrono::Days::new(n)).unwrap()
    }

    fn dates(start: NaiveDate, end: Option<NaiveDate>, delete: Option<NaiveDate>) -> ItemDates {
        ItemDates { start, end, delete }
    }

    // A child born 2015-05-10: 18 on 2033-05-10, a child until 2034-05-10.
    fn birth() -> NaiveDate {
        date(2015, 5, 10)
    }

    #[test]
    fn codes_round_trip() {
        for k in ItemKind::ALL {
            assert_eq!(ItemKind::from_code(k.code()), Some(k));
        }
        assert_eq!(ChildProtectionPlan.code(), "CPP");
        assert_eq!(LookedAfterChild.code(), "LAC");
        assert_eq!(UnbornChildProtectionPlan.code(), "UCPP");
        assert_eq!(ItemKind::from_code("cpp"), None);
        assert_eq!(ItemKind::from_code(""), None);
        assert_eq!(ItemKind::from_code("XYZ"), None);
    }

    #[test]
    fn names_and_snomed() {
        assert_eq!(ChildProtectionPlan.display_name(), "Child protection plan");
        assert_eq!(LookedAfterChild.display_name(), "Looked after child");
        assert_eq!(UnbornChildProtectionPlan.display_name(), "Unborn child protection plan");
        assert_eq!(ChildProtectionPlan.snomed_code(), "342191000000101");
        assert_eq!(LookedAfterChild.snomed_code(), "764841000000100");
        assert_eq!(UnbornChildProtectionPlan.snomed_code(), "818901000000100");
        assert!(UnbornChildProtectionPlan.is_unborn());
        assert!(!ChildProtectionPlan.is_unborn());
        assert!(!LookedAfterChild.is_unborn());
    }

    #[test]
    fn ended_cpp_and_lac_retrievable_for_365_days() {
        let end = date(2024, 3, 1);
        let d = dates(date(2023, 1, 1), Some(end), None);
        for kind in [ChildProtectionPlan, LookedAfterChild] {
            assert_eq!(effective_end(kind, &d, birth()), Some(end));
            assert_eq!(last_retrievable_day(kind, &d, birth()), Some(plus(end, 365)));
            assert!(is_retrievable(kind, &d, birth(), end));
            assert!(is_retrievable(kind, &d, birth(), plus(end, 365)));
            assert!(!is_retrievable(kind, &d, birth(), plus(end, 366)));
        }
    }

    #[test]
    fn retrievable_before_start_too() {
        // The start date plays no part.
        let d = dates(date(2025, 1, 1), None, None);
        assert!(is_retrievable(ChildProtectionPlan, &d, birth(), date(2024, 1, 1)));
    }

    #[test]
    fn unborn_plan_retrievable_for_28_days_after_end() {
        let end = date(2025, 6, 30);
        let d = dates(date(2025, 1, 1), Some(end), None);
        let mother = date(1995, 1, 1);
        assert_eq!(effective_end(UnbornChildProtectionPlan, &d, mother), Some(end));
        assert_eq!(last_retrievable_day(UnbornChildProtectionPlan, &d, mother), Some(plus(end, 28)));
        assert!(is_retrievable(UnbornChildProtectionPlan, &d, mother, plus(end, 28)));
        assert!(!is_retrievable(UnbornChildProtectionPlan, &d, mother, plus(end, 29)));
    }

    #[test]
    fn unborn_plan_without_end_has_no_limit() {
        let d = dates(date(2025, 1, 1), None, None);
        let mother = date(1995, 1, 1);
        assert_eq!(effective_end(UnbornChildProtectionPlan, &d, mother), None);
        assert_eq!(last_retrievable_day(UnbornChildProtectionPlan, &d, mother), None);
        assert!(is_retrievable(UnbornChildProtectionPlan, &d, mother, date(2099, 1, 1)));
    }

    #[test]
    fn unborn_plan_for_adult_mother_has_no_age_rule() {
        // The mother is 30: far past 18 years and 365 days, still retrievable.
        let mother = date(1996, 4, 2);
        let on = date(2026, 4, 2);
        let open = dates(date(2026, 1, 5), None, None);
        assert!(is_retrievable(UnbornChildProtectionPlan, &open, mother, on));
        let ended = dates(date(2026, 1, 5), Some(date(2026, 3, 20)), None);
        assert!(is_retrievable(UnbornChildProtectionPlan, &ended, mother, on));
        // The same dates on a CPP for someone born then are long gone.
        assert!(!is_retrievable(ChildProtectionPlan, &open, mother, on));
    }

    #[test]
    fn delete_date_hides_from_that_day() {
        let delete = date(2025, 9, 1);
        for kind in ItemKind::ALL {
            let d = dates(date(2025, 1, 1), None, Some(delete));
            assert_eq!(last_retrievable_day(kind, &d, birth()), Some(date(2025, 8, 31)));
            assert!(is_retrievable(kind, &d, birth(), date(2025, 8, 31)), "{kind:?}");
            assert!(!is_retrievable(kind, &d, birth(), delete), "{kind:?}");
            assert!(!is_retrievable(kind, &d, birth(), plus(delete, 1)), "{kind:?}");
        }
    }

    #[test]
    fn delete_date_after_end_window_does_not_extend_it() {
        let end = date(2024, 3, 1);
        let d = dates(date(2023, 1, 1), Some(end), Some(date(2030, 1, 1)));
        assert_eq!(last_retrievable_day(ChildProtectionPlan, &d, birth()), Some(plus(end, 365)));
        let u = dates(date(2023, 1, 1), Some(end), Some(date(2030, 1, 1)));
        assert_eq!(last_retrievable_day(UnbornChildProtectionPlan, &u, birth()), Some(plus(end, 28)));
    }

    #[test]
    fn delete_date_before_end_window_wins() {
        let end = date(2024, 3, 1);
        let d = dates(date(2023, 1, 1), Some(end), Some(date(2024, 3, 10)));
        assert_eq!(last_retrievable_day(LookedAfterChild, &d, birth()), Some(date(2024, 3, 9)));
        // Delete date on the start date: never retrievable from then on.
        let d = dates(date(2023, 1, 1), None, Some(date(2023, 1, 1)));
        assert!(!is_retrievable(ChildProtectionPlan, &d, birth(), date(2023, 1, 1)));
    }

    #[test]
    fn open_cpp_ends_at_18th_birthday() {
        let d = dates(date(2020, 1, 1), None, None);
        let eighteenth = date(2033, 5, 10);
        let last = date(2034, 5, 10); // 2033-05-10 + 365 days (no 29 February between)
        for kind in [ChildProtectionPlan, LookedAfterChild] {
            assert_eq!(effective_end(kind, &d, birth()), Some(eighteenth));
            assert_eq!(last_retrievable_day(kind, &d, birth()), Some(last));
            assert!(is_retrievable(kind, &d, birth(), eighteenth));
            assert!(is_retrievable(kind, &d, birth(), last));
            assert!(!is_retrievable(kind, &d, birth(), date(2034, 5, 11)));
            assert_eq!(last, crate::domain::dates::last_day_as_child(birth()));
        }
    }

    #[test]
    fn end_after_18th_birthday_clamps() {
        let d = dates(date(2020, 1, 1), Some(date(2035, 1, 1)), None);
        assert_eq!(effective_end(ChildProtectionPlan, &d, birth()), Some(date(2033, 5, 10)));
        assert_eq!(last_retrievable_day(ChildProtectionPlan, &d, birth()), Some(date(2034, 5, 10)));
        assert!(!is_retrievable(ChildProtectionPlan, &d, birth(), date(2034, 5, 11)));
        // An end on the 18th birthday itself stays; the day after clamps back to it.
        let on = dates(date(2020, 1, 1), Some(date(2033, 5, 10)), None);
        let after = dates(date(2020, 1, 1), Some(date(2033, 5, 11)), None);
        assert_eq!(effective_end(LookedAfterChild, &on, birth()), Some(date(2033, 5, 10)));
        assert_eq!(effective_end(LookedAfterChild, &after, birth()), Some(date(2033, 5, 10)));
    }

    #[test]
    fn unborn_end_is_not_clamped() {
        // A mother aged 30: an end long after her 18th birthday is kept.
        let mother = date(1996, 4, 2);
        let d = dates(date(2026, 1, 5), Some(date(2026, 9, 1)), None);
        assert_eq!(effective_end(UnbornChildProtectionPlan, &d, mother), Some(date(2026, 9, 1)));
    }

    #[test]
    fn born_on_29_february() {
        // 18 on 2026-02-28 (2026 is not a leap year); a child until 2027-02-28.
        let b = date(2008, 2, 29);
        let d = dates(date(2020, 1, 1), None, None);
        assert_eq!(effective_end(ChildProtectionPlan, &d, b), Some(date(2026, 2, 28)));
        assert!(is_retrievable(ChildProtectionPlan, &d, b, date(2027, 2, 28)));
        assert!(!is_retrievable(ChildProtectionPlan, &d, b, date(2027, 3, 1)));
        // An end on 1 March 2026 is after the 18th birthday and clamps.
        let late = dates(date(2020, 1, 1), Some(date(2026, 3, 1)), None);
        assert_eq!(effective_end(LookedAfterChild, &late, b), Some(date(2026, 2, 28)));
    }

    #[test]
    fn end_window_spanning_leap_day() {
        // 2027-06-01 + 365 days crosses 29 February 2028: last day 2028-05-31.
        let end = date(2027, 6, 1);
        let d = dates(date(2026, 1, 1), Some(end), None);
        assert_eq!(last_retrievable_day(ChildProtectionPlan, &d, birth()), Some(date(2028, 5, 31)));
    }
    /// Property tests: the rules above hold for any dates, not only the examples.
    mod props {
        use super::*;
        use crate::domain::dates::{anniversary, last_day_as_child};
        use proptest::prelude::*;

        /// A UK date between 1950 and about 2150.
        fn any_date() -> impl Strategy<Value = NaiveDate> {
            (0u64..73_000).prop_map(|n| plus(date(1950, 1, 1), n))
        }

        fn any_kind() -> impl Strategy<Value = ItemKind> {
            prop::sample::select(ItemKind::ALL.to_vec())
        }

        fn any_dates() -> impl Strategy<Value = ItemDates> {
            (any_date(), prop::option::of(any_date()), prop::option::of(any_date()))
                .prop_map(|(start, end, delete)| ItemDates { start, end, delete })
        }

        fn minus(d: NaiveDate, n: u64) -> NaiveDate {
            d.checked_sub_days(chrono::Days::new(n)).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// Once gone, always gone: retrievable on a later day implies retrievable on every
            /// earlier one (CP-IS009/010/011: every rule is a last day).
            #[test]
            fn retrievability_is_monotone(
                kind in any_kind(), d in any_dates(), birth in any_date(), on in any_date(), later in 0u64..40_000,
            ) {
                if !is_retrievable(kind, &d, birth, on) {
                    prop_assert!(!is_retrievable(kind, &d, birth, plus(on, later)));
                }
                if is_retrievable(kind, &d, birth, plus(on, later)) {
                    prop_assert!(is_retrievable(kind, &d, birth, on));
                }
            }

            /// `is_retrievable` and `last_retrievable_day` agree: retrievable on the last day, not
            /// on the day after.
            #[test]
            fn the_last_day_is_the_edge(kind in any_kind(), d in any_dates(), birth in any_date()) {
                match last_retrievable_day(kind, &d, birth) {
                    Some(last) => {
                        prop_assert!(is_retrievable(kind, &d, birth, last));
                        prop_assert!(!is_retrievable(kind, &d, birth, plus(last, 1)));
                    }
                    None => {
                        // Only an unborn plan with neither end nor delete date has no limit.
                        prop_assert!(kind.is_unborn() && d.end.is_none() && d.delete.is_none());
                        prop_assert!(is_retrievable(kind, &d, birth, date(2200, 1, 1)));
                    }
                }
            }

            /// The start date plays no part.
            #[test]
            fn the_start_date_plays_no_part(
                kind in any_kind(), d in any_dates(), other_start in any_date(), birth in any_date(), on in any_date(),
            ) {
                let moved = ItemDates { start: other_start, ..d };
                prop_assert_eq!(last_retrievable_day(kind, &moved, birth), last_retrievable_day(kind, &d, birth));
                prop_assert_eq!(is_retrievable(kind, &moved, birth, on), is_retrievable(kind, &d, birth, on));
            }

            /// CP-IS009: gone on the delete date and every day after, whatever else applies;
            /// the day before is decided by the other rules alone.
            #[test]
            fn gone_from_the_delete_date(
                kind in any_kind(), d in any_dates(), delete in any_date(), birth in any_date(), after in 0u64..5_000,
            ) {
                let with_delete = ItemDates { delete: Some(delete), ..d };
                prop_assert!(!is_retrievable(kind, &with_delete, birth, plus(delete, after)));
                let without = ItemDates { delete: None, ..d };
                let day_before = minus(delete, 1);
                prop_assert_eq!(
                    is_retrievable(kind, &with_delete, birth, day_before),
                    is_retrievable(kind, &without, birth, day_before)
                );
            }

            /// CP-IS010/032: a CPP or LAC that ended on or before the 18th birthday is retrievable
            /// up to and including its end plus 365 days and not the day after (no delete date).
            #[test]
            fn cpp_and_lac_end_plus_365(
                lac in any::<bool>(), birth in any_date(), end_before_18 in 0u64..7_000, start in any_date(),
            ) {
                let kind = if lac { LookedAfterChild } else { ChildProtectionPlan };
                let eighteenth = anniversary(birth, 18);
                let end = minus(eighteenth, end_before_18);
                let d = dates(start, Some(end), None);
                prop_assert_eq!(effective_end(kind, &d, birth), Some(end));
                prop_assert!(is_retrievable(kind, &d, birth, end));
                prop_assert!(is_retrievable(kind, &d, birth, plus(end, 365)));
                prop_assert!(!is_retrievable(kind, &d, birth, plus(end, 366)));
            }

            /// CP-IS007/030: a CPP or LAC is never retrievable after the child's 18th birthday plus
            /// 365 days, whatever its end (open, or after the 18th birthday) and delete dates; an
            /// open one, or one ending after the 18th birthday, is retrievable up to that day.
            #[test]
            fn cpp_and_lac_never_past_18_years_and_365_days(
                lac in any::<bool>(), d in any_dates(), birth in any_date(), after in 1u64..40_000,
            ) {
                let kind = if lac { LookedAfterChild } else { ChildProtectionPlan };
                let last_as_child = last_day_as_child(birth);
                prop_assert!(!is_retrievable(kind, &d, birth, plus(last_as_child, after)));
                let late_or_open = d.end.is_none_or(|end| end > anniversary(birth, 18));
                if late_or_open && d.delete.is_none_or(|delete| delete > last_as_child) {
                    prop_assert!(is_retrievable(kind, &d, birth, last_as_child));
                }
            }

            /// CP-IS011/033: an unborn plan is never retrievable after its end plus 28 days, and is
            /// retrievable on that day unless its delete date came first; the mother's birth date
            /// plays no part.
            #[test]
            fn unborn_plan_end_plus_28(
                start in any_date(), end in any_date(), delete in prop::option::of(any_date()),
                mother in any_date(), other_mother in any_date(), after in 1u64..40_000,
            ) {
                let d = dates(start, Some(end), delete);
                let last = plus(end, 28);
                prop_assert!(!is_retrievable(UnbornChildProtectionPlan, &d, mother, plus(last, after)));
                prop_assert_eq!(
                    is_retrievable(UnbornChildProtectionPlan, &d, mother, last),
                    delete.is_none_or(|delete| delete > last)
                );
                prop_assert_eq!(
                    last_retrievable_day(UnbornChildProtectionPlan, &d, mother),
                    last_retrievable_day(UnbornChildProtectionPlan, &d, other_mother)
                );
            }
        }
    }
}
