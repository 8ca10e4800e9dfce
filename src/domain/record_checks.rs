//! The record checks of message 01 (messages.md, "Record checks, in this order"): one record of an
//! upload, as parsed, against what PDS holds for its NHS number, gives a record code.
//!
//! The checks run in the contract's order and the first that fails decides:
//!
//! | code  | fails when |
//! |-------|------------|
//! | CPR04 | the NHS number is missing, is not exactly 10 ASCII digits after trimming surrounding whitespace (spaces or hyphens between digits are refused: the contract says 10 digits), or fails the modulus 11 check |
//! | CPR01 | PDS has no patient with that number, or the patient record is invalidated |
//! | CPR05 | PDS holds the number as superseded; the verdict carries the new number |
//! | CPR02 | the PDS record is restricted (S-flag) |
//! | CPR03 | no birth date was sent, it is not a `YYYY-MM-DD` date, or the CP-IS002 cross-check fails ([`cross_check`]); the text says which |
//! | CPR07 | any other fault, the text naming it (order below) |
//! | CPR06 | none of the above: the record is accepted with its items |
//!
//! CPR07's faults, checked in this order (the first found is reported):
//! 1. a structural fault the parser found (the first of `RawRecord::faults`);
//! 2. no `laChildId`, or one empty after trimming;
//! 3. the NHS number repeats one seen earlier in the same file;
//! 4. no item;
//! 5. two items of one type;
//! 6. an item without `start`;
//! 7. a `start`, `end` or `delete` that is not a `YYYY-MM-DD` date;
//! 8. `end` before `start`, then `delete` before `start` (equal dates are fine);
//! 9. an unborn child protection plan without `end` (the expected due date: CP-SC012, CP-SC013);
//! 10. a `start` after `today`;
//! 11. a CPP or LAC for a person older than 18 years and 365 days on `today`, by PDS's birth date
//!     (the one PDS holds, not the one sent); an unborn plan is the mother's and has no age limit.
//!
//! Record-wide faults come before item faults, and faults that make the record unreadable before
//! those about what it says. Within one fault, items are taken in record order.
//!
//! Values are raw text. Every value is trimmed of surrounding whitespace before use; an attribute
//! that is empty after trimming counts as absent (so `end=""` is an open plan and `start=""` is a
//! missing start). A date is exactly `YYYY-MM-DD` (four-digit year, two-digit month and day) and
//! must exist in the calendar (`2025-02-29` is refused).

use chrono::NaiveDate;

use super::codes::RecordCode;
use super::dates::is_child;
use super::nhs_number::is_valid;
use super::retrieval::{ItemDates, ItemKind};
use super::verification::{cross_check, PdsName};
use crate::messages::record::{RawItem, RawRecord};

/// What PDS holds for the record's NHS number, as the checks need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdsView {
    pub birth_date: NaiveDate,
    /// The patient's current names.
    pub names: Vec<PdsName>,
    /// The S-flag.
    pub restricted: bool,
    /// The number that replaced this one, when PDS holds it as superseded.
    pub superseded_by: Option<String>,
    pub invalidated: bool,
}

/// An item that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedItem {
    pub kind: ItemKind,
    pub dates: ItemDates,
}

/// The outcome of the record checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// CPR06: store the items (in record order) under the NHS number (the plain 10 digits) for
    /// the LA's child id (trimmed).
    Accepted { nhs_number: String, la_child_id: String, items: Vec<CheckedItem> },
    /// Any other code; `new_nhs_number` is set only for CPR05.
    Rejected { code: RecordCode, text: String, new_nhs_number: Option<String> },
}

impl Verdict {
    /// The record code: CPR06 when accepted.
    pub fn code(&self) -> RecordCode {
        match self {
            Verdict::Accepted { .. } => RecordCode::Cpr06,
            Verdict::Rejected { code, .. } => *code,
        }
    }

    /// The text for the acknowledgement's `RecordResponse`.
    pub fn text(&self) -> &str {
        match self {
            Verdict::Accepted { .. } => RecordCode::Cpr06.text(),
            Verdict::Rejected { text, .. } => text,
        }
    }
}

/// The NHS number the record names, if it is a valid one (the caller uses this to look PDS up and
/// to spot repeats): exactly 10 ASCII digits once surrounding whitespace is trimmed, with a correct
/// modulus 11 check digit.
pub fn nhs_number_of(record: &RawRecord) -> Option<String> {
    let trimmed = record.nhs_number.as_deref()?.trim();
    is_valid(trimmed).then(|| trimmed.to_string())
}

/// Runs the record checks in the contract's order (see the module notes).
///
/// `pds` is PDS's record for the NHS number (None when PDS has none); `seen_earlier` is true when
/// an earlier record in the same file had the same NHS number; `today` is the UK date of processing.
pub fn check(record: &RawRecord, pds: Option<&PdsView>, seen_earlier: bool, today: NaiveDate) -> Verdict {
    let Some(nhs_number) = nhs_number_of(record) else {
        return reject(RecordCode::Cpr04);
    };
    let pds = match pds {
        Some(p) if !p.invalidated => p,
        _ => return reject(RecordCode::Cpr01),
    };
    if let Some(new) = &pds.superseded_by {
        return Verdict::Rejected {
            code: RecordCode::Cpr05,
            text: RecordCode::Cpr05.text().to_string(),
            new_nhs_number: Some(new.clone()),
        };
    }
    if pds.restricted {
        return reject(RecordCode::Cpr02);
    }
    if let Err(why) = verify(record, pds) {
        return reject_with(RecordCode::Cpr03, format!("{}: {why}", RecordCode::Cpr03.text()));
    }
    match check_content(record, pds, seen_earlier, today) {
        Ok((la_child_id, items)) => Verdict::Accepted { nhs_number, la_child_id, items },
        Err(fault) => reject_with(RecordCode::Cpr07, format!("{}: {fault}", RecordCode::Cpr07.text())),
    }
}

/// CPR03: the birth date sent, then the cross-check. `Err` says why it is not verified.
fn verify(record: &RawRecord, pds: &PdsView) -> Result<(), &'static str> {
    let birth = match present(&record.birth_date) {
        None => return Err("no date of birth was sent"),
        Some(text) => parse_date(text).ok_or("the date of birth is not a YYYY-MM-DD date")?,
    };
    if cross_check(pds.birth_date, &pds.names, record.given_name.as_deref(), record.family_name.as_deref(), birth) {
        Ok(())
    } else {
        Err("the name and date of birth do not match PDS")
    }
}

/// The longest `laChildId` the service stores.
pub const MAX_LA_CHILD_ID: usize = 100;

/// CPR07's checks, in the order of the module notes. `Ok` holds the trimmed `laChildId` and the
/// items; `Err` names the fault.
fn check_content(
    record: &RawRecord,
    pds: &PdsView,
    seen_earlier: bool,
    today: NaiveDate,
) -> Result<(String, Vec<CheckedItem>), String> {
    if let Some(fault) = record.faults.first() {
        return Err(fault.trim().trim_end_matches('.').to_string());
    }
    let Some(la_child_id) = present(&record.la_child_id) else {
        return Err("the record has no laChildId".to_string());
    };
    if la_child_id.chars().count() > MAX_LA_CHILD_ID {
        return Err(format!("the laChildId is longer than {MAX_LA_CHILD_ID} characters"));
    }
    if seen_earlier {
        return Err("an earlier record in this file has the same NHS number; send one record per person".to_string());
    }
    if record.items.is_empty() {
        return Err(
            "the record has no ChildProtectionPlan, LookedAfterChild or UnbornChildProtectionPlan item".to_string()
        );
    }
    for (i, item) in record.items.iter().enumerate() {
        if record.items[..i].iter().any(|earlier| earlier.kind == item.kind) {
            return Err(format!("the record has two {} items; send at most one of each type", element(item.kind)));
        }
    }
    if let Some(item) = record.items.iter().find(|item| present(&item.start).is_none()) {
        return Err(format!("the {} item has no start date", element(item.kind)));
    }
    let mut items = Vec::with_capacity(record.items.len());
    for item in &record.items {
        items.push(CheckedItem { kind: item.kind, dates: parse_dates(item)? });
    }
    for CheckedItem { kind, dates } in &items {
        if dates.end.is_some_and(|end| end < dates.start) {
            return Err(format!("the {} item's end date is before its start date", element(*kind)));
        }
        if dates.delete.is_some_and(|delete| delete < dates.start) {
            return Err(format!("the {} item's delete date is before its start date", element(*kind)));
        }
    }
    if items.iter().any(|item| item.kind.is_unborn() && item.dates.end.is_none()) {
        return Err("an unborn child protection plan needs an end date (the expected due date)".to_string());
    }
    if let Some(item) = items.iter().find(|item| item.dates.start > today) {
        return Err(format!("the {} item's start date is in the future", element(item.kind)));
    }
    if !is_child(pds.birth_date, today) {
        if let Some(item) = items.iter().find(|item| !item.kind.is_unborn()) {
            return Err(format!(
                "the person is older than 18 years and 365 days (by PDS's date of birth), so a {} cannot be held",
                element(item.kind)
            ));
        }
    }
    Ok((la_child_id.to_string(), items))
}

/// An item's dates. `Err` names the first that is missing (`start`) or not a date.
fn parse_dates(item: &RawItem) -> Result<ItemDates, String> {
    let field = |value: &Option<String>, attribute: &str| -> Result<Option<NaiveDate>, String> {
        match present(value) {
            None => Ok(None),
            Some(text) => parse_date(text)
                .map(Some)
                .ok_or_else(|| format!("the {} item's {attribute} date is not a YYYY-MM-DD date", element(item.kind))),
        }
    };
    let Some(start) = field(&item.start, "start")? else {
        return Err(format!("the {} item has no start date", element(item.kind)));
    };
    let end = field(&item.end, "end")?;
    let delete = field(&item.delete, "delete")?;
    Ok(ItemDates { start, end, delete })
}

/// The value trimmed, or `None` when absent or empty after trimming.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A date written exactly `YYYY-MM-DD` (ASCII digits) that exists in the calendar.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let year = text[0..4].parse().ok()?;
    let month = text[5..7].parse().ok()?;
    let day = text[8..10].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// The XML element name of an item kind, as the LA's system writes it.
fn element(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::ChildProtectionPlan => "ChildProtectionPlan",
        ItemKind::LookedAfterChild => "LookedAfterChild",
        ItemKind::UnbornChildProtectionPlan => "UnbornChildProtectionPlan",
    }
}

fn reject(code: RecordCode) -> Verdict {
    reject_with(code, code.text().to_string())
}

fn reject_with(code: RecordCode, text: String) -> Verdict {
    Verdict::Rejected { code, text, new_nhs_number: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dates::last_day_as_child;
    use ItemKind::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    const NHS: &str = "9990000018";

    /// The processing date of most tests.
    fn today() -> NaiveDate {
        date(2026, 11, 22)
    }

    fn item(kind: ItemKind, start: Option<&str>, end: Option<&str>, delete: Option<&str>) -> RawItem {
        RawItem {
            kind,
            start: start.map(str::to_string),
            end: end.map(str::to_string),
            delete: delete.map(str::to_string),
        }
    }

    /// Amelia Hart, born 2009-01-31, with a CPP from 2025-03-01: passes every check.
    fn record() -> RawRecord {
        RawRecord {
            index: 1,
            la_child_id: Some("KCC-000123".to_string()),
            nhs_number: Some(NHS.to_string()),
            given_name: Some("Amelia".to_string()),
            family_name: Some("Hart".to_string()),
            birth_date: Some("2009-01-31".to_string()),
            items: vec![item(ChildProtectionPlan, Some("2025-03-01"), None, None)],
            faults: vec![],
        }
    }

    fn pds() -> PdsView {
        PdsView {
            birth_date: date(2009, 1, 31),
            names: vec![PdsName { given: "Amelia".to_string(), family: "Hart".to_string() }],
            restricted: false,
            superseded_by: None,
            invalidated: false,
        }
    }

    fn run(record: &RawRecord, pds: &PdsView) -> Verdict {
        check(record, Some(pds), false, today())
    }

    fn with_items(items: Vec<RawItem>) -> RawRecord {
        RawRecord { items, ..record() }
    }

    /// Asserts a rejection with that code and returns its text.
    fn rejected(v: &Verdict, code: RecordCode) -> String {
        match v {
            Verdict::Rejected { code: c, text, new_nhs_number } => {
                assert_eq!(*c, code, "{text}");
                if code != RecordCode::Cpr05 {
                    assert_eq!(*new_nhs_number, None);
                }
                text.clone()
            }
            Verdict::Accepted { .. } => panic!("expected {code:?}, got {v:?}"),
        }
    }

    /// Asserts CPR07 and that its text contains `part`.
    fn cpr07(v: &Verdict, part: &str) {
        let text = rejected(v, RecordCode::Cpr07);
        assert!(text.starts_with("Unsuccessful: "), "{text}");
        assert!(text.contains(part), "{text:?} should contain {part:?}");
    }

    fn accepted(v: &Verdict) -> Vec<CheckedItem> {
        match v {
            Verdict::Accepted { items, .. } => items.clone(),
            Verdict::Rejected { .. } => panic!("expected acceptance, got {v:?}"),
        }
    }

    // --- CPR06 ---

    #[test]
    fn cpr06_accepts_a_good_record() {
        let v = run(&record(), &pds());
        assert_eq!(
            v,
            Verdict::Accepted {
                nhs_number: NHS.to_string(),
                la_child_id: "KCC-000123".to_string(),
                items: vec![CheckedItem {
                    kind: ChildProtectionPlan,
                    dates: ItemDates { start: date(2025, 3, 1), end: None, delete: None },
                }],
            }
        );
        assert_eq!(v.code(), RecordCode::Cpr06);
        assert_eq!(v.text(), "Success");
    }

    #[test]
    fn cpr06_the_contract_example_with_three_items() {
        let r = RawRecord {
            la_child_id: Some("  KCC-000123 ".to_string()),
            nhs_number: Some(format!(" {NHS}\n")),
            items: vec![
                item(ChildProtectionPlan, Some("2025-03-01"), None, None),
                item(LookedAfterChild, Some("2024-06-10"), Some("2025-06-10"), None),
                item(UnbornChildProtectionPlan, Some("2026-09-01"), Some("2027-01-15"), Some("2027-01-20")),
            ],
            ..record()
        };
        match run(&r, &pds()) {
            Verdict::Accepted { nhs_number, la_child_id, items } => {
                assert_eq!(nhs_number, NHS);
                assert_eq!(la_child_id, "KCC-000123");
                assert_eq!(items.len(), 3);
                assert_eq!(items[1].kind, LookedAfterChild);
                assert_eq!(items[1].dates.end, Some(date(2025, 6, 10)));
                assert_eq!(items[2].kind, UnbornChildProtectionPlan);
                assert_eq!(items[2].dates.delete, Some(date(2027, 1, 20)));
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn empty_end_and_delete_count_as_absent() {
        let r = with_items(vec![item(ChildProtectionPlan, Some(" 2025-03-01 "), Some(""), Some("  "))]);
        let items = accepted(&run(&r, &pds()));
        assert_eq!(items[0].dates, ItemDates { start: date(2025, 3, 1), end: None, delete: None });
    }

    // --- CPR04 ---

    #[test]
    fn cpr04_missing_number() {
        let r = RawRecord { nhs_number: None, ..record() };
        assert_eq!(rejected(&run(&r, &pds()), RecordCode::Cpr04), "Not a new-style NHS number");
        let r = RawRecord { nhs_number: Some("   ".to_string()), ..record() };
        rejected(&run(&r, &pds()), RecordCode::Cpr04);
    }

    #[test]
    fn cpr04_not_ten_digits() {
        for bad in
            ["999000001", "99900000180", "999 000 0018", "999-000-0018", "99900000l8", "٩٩٩٠٠٠٠٠١٨", "+9990000018"]
        {
            let r = RawRecord { nhs_number: Some(bad.to_string()), ..record() };
            rejected(&run(&r, &pds()), RecordCode::Cpr04);
            assert_eq!(nhs_number_of(&r), None, "{bad}");
        }
    }

    #[test]
    fn cpr04_bad_check_digit() {
        let r = RawRecord { nhs_number: Some("9990000019".to_string()), ..record() };
        rejected(&run(&r, &pds()), RecordCode::Cpr04);
    }

    #[test]
    fn nhs_number_of_trims() {
        let r = RawRecord { nhs_number: Some(" 9434765919\t".to_string()), ..record() };
        assert_eq!(nhs_number_of(&r), Some("9434765919".to_string()));
        assert_eq!(nhs_number_of(&record()), Some(NHS.to_string()));
    }

    // --- CPR01 ---

    #[test]
    fn cpr01_no_pds_patient() {
        let v = check(&record(), None, false, today());
        assert_eq!(rejected(&v, RecordCode::Cpr01), "No PDS match");
    }

    #[test]
    fn cpr01_invalidated() {
        let p = PdsView { invalidated: true, ..pds() };
        rejected(&run(&record(), &p), RecordCode::Cpr01);
    }

    // --- CPR05 ---

    #[test]
    fn cpr05_superseded_carries_the_new_number() {
        let p = PdsView { superseded_by: Some("9990000034".to_string()), ..pds() };
        assert_eq!(
            run(&record(), &p),
            Verdict::Rejected {
                code: RecordCode::Cpr05,
                text: "NHS number superseded".to_string(),
                new_nhs_number: Some("9990000034".to_string()),
            }
        );
    }

    // --- CPR02 ---

    #[test]
    fn cpr02_restricted() {
        let p = PdsView { restricted: true, ..pds() };
        assert_eq!(rejected(&run(&record(), &p), RecordCode::Cpr02), "Sensitive record");
    }

    // --- CPR03 ---

    #[test]
    fn cpr03_names_and_date_do_not_match() {
        let r = RawRecord {
            birth_date: Some("2009-01-13".to_string()),
            family_name: Some("Smith".to_string()),
            ..record()
        };
        assert_eq!(
            rejected(&run(&r, &pds()), RecordCode::Cpr03),
            "NHS number not verified: the name and date of birth do not match PDS"
        );
    }

    #[test]
    fn cpr03_near_date_with_matching_names_is_verified() {
        let r =
            RawRecord { birth_date: Some("2009-01-13".to_string()), given_name: Some("amy".to_string()), ..record() };
        accepted(&run(&r, &pds()));
    }

    #[test]
    fn cpr03_missing_birth_date() {
        for missing in [None, Some(""), Some("  ")] {
            let r = RawRecord { birth_date: missing.map(str::to_string), ..record() };
            assert_eq!(
                rejected(&run(&r, &pds()), RecordCode::Cpr03),
                "NHS number not verified: no date of birth was sent"
            );
        }
    }

    #[test]
    fn cpr03_birth_date_not_a_date() {
        for bad in
            ["31/01/2009", "20090131", "2009-1-31", "2009-02-30", "2009-01-31T00:00", "+2009-01-31", "２００９-01-31"]
        {
            let r = RawRecord { birth_date: Some(bad.to_string()), ..record() };
            assert_eq!(
                rejected(&run(&r, &pds()), RecordCode::Cpr03),
                "NHS number not verified: the date of birth is not a YYYY-MM-DD date",
                "{bad}"
            );
        }
        // Surrounding whitespace is fine.
        let r = RawRecord { birth_date: Some(" 2009-01-31 ".to_string()), ..record() };
        accepted(&run(&r, &pds()));
    }

    // --- CPR07, one test per fault ---

    #[test]
    fn cpr07_parser_fault_first_one_reported() {
        let r = RawRecord {
            faults: vec![
                "The element Foo is not allowed in a Record.".to_string(),
                "GivenName is given twice".to_string(),
            ],
            ..record()
        };
        assert_eq!(
            rejected(&run(&r, &pds()), RecordCode::Cpr07),
            "Unsuccessful: The element Foo is not allowed in a Record"
        );
    }

    #[test]
    fn cpr07_missing_la_child_id() {
        for missing in [None, Some(""), Some("   ")] {
            let r = RawRecord { la_child_id: missing.map(str::to_string), ..record() };
            cpr07(&run(&r, &pds()), "no laChildId");
        }
    }

    #[test]
    fn cpr07_repeated_nhs_number() {
        let v = check(&record(), Some(&pds()), true, today());
        cpr07(&v, "earlier record in this file has the same NHS number");
    }

    #[test]
    fn cpr07_no_item() {
        cpr07(
            &run(&with_items(vec![]), &pds()),
            "no ChildProtectionPlan, LookedAfterChild or UnbornChildProtectionPlan item",
        );
    }

    #[test]
    fn cpr07_two_items_of_one_type() {
        let r = with_items(vec![
            item(LookedAfterChild, Some("2025-01-01"), None, None),
            item(ChildProtectionPlan, Some("2025-03-01"), None, None),
            item(LookedAfterChild, Some("2025-02-01"), None, None),
        ]);
        cpr07(&run(&r, &pds()), "two LookedAfterChild items");
    }

    #[test]
    fn cpr07_item_without_start() {
        for missing in [None, Some(""), Some(" ")] {
            let r = with_items(vec![
                item(ChildProtectionPlan, Some("2025-03-01"), None, None),
                item(LookedAfterChild, missing, Some("2025-06-10"), None),
            ]);
            cpr07(&run(&r, &pds()), "LookedAfterChild item has no start date");
        }
    }

    #[test]
    fn cpr07_dates_not_yyyy_mm_dd() {
        let r = with_items(vec![item(ChildProtectionPlan, Some("01/03/2025"), None, None)]);
        cpr07(&run(&r, &pds()), "ChildProtectionPlan item's start date is not a YYYY-MM-DD date");
        let r = with_items(vec![item(ChildProtectionPlan, Some("2025-03-01"), Some("2025-13-01"), None)]);
        cpr07(&run(&r, &pds()), "ChildProtectionPlan item's end date is not a YYYY-MM-DD date");
        let r = with_items(vec![item(LookedAfterChild, Some("2025-03-01"), None, Some("tomorrow"))]);
        cpr07(&run(&r, &pds()), "LookedAfterChild item's delete date is not a YYYY-MM-DD date");
        let r = with_items(vec![item(LookedAfterChild, Some("2025-02-29"), None, None)]);
        cpr07(&run(&r, &pds()), "start date is not a YYYY-MM-DD date");
    }

    #[test]
    fn cpr07_end_before_start() {
        let r = with_items(vec![item(LookedAfterChild, Some("2025-03-01"), Some("2025-02-28"), None)]);
        cpr07(&run(&r, &pds()), "LookedAfterChild item's end date is before its start date");
    }

    #[test]
    fn cpr07_delete_before_start() {
        let r = with_items(vec![item(ChildProtectionPlan, Some("2025-03-01"), None, Some("2025-02-28"))]);
        cpr07(&run(&r, &pds()), "ChildProtectionPlan item's delete date is before its start date");
    }

    #[test]
    fn cpr07_unborn_plan_without_end() {
        let r = with_items(vec![item(UnbornChildProtectionPlan, Some("2026-09-01"), None, None)]);
        assert_eq!(
            rejected(&run(&r, &pds()), RecordCode::Cpr07),
            "Unsuccessful: an unborn child protection plan needs an end date (the expected due date)"
        );
    }

    #[test]
    fn cpr07_start_in_the_future() {
        let r = with_items(vec![item(ChildProtectionPlan, Some("2026-11-23"), None, None)]);
        cpr07(&run(&r, &pds()), "ChildProtectionPlan item's start date is in the future");
    }

    #[test]
    fn cpr07_cpp_or_lac_for_an_adult() {
        // Born 1990: far past 18 years and 365 days on 2026-11-22.
        let r = RawRecord { birth_date: Some("1990-05-05".to_string()), ..record() };
        let p = PdsView { birth_date: date(1990, 5, 5), ..pds() };
        cpr07(&run(&r, &p), "older than 18 years and 365 days (by PDS's date of birth), so a ChildProtectionPlan");
        let r = RawRecord { items: vec![item(LookedAfterChild, Some("2025-03-01"), None, None)], ..r };
        cpr07(&run(&r, &p), "so a LookedAfterChild cannot be held");
    }

    #[test]
    fn age_uses_pds_birth_date_not_the_one_sent() {
        // The sent date has 2 of 3 parts matching (verified by name) but is a year later: by it the
        // person would still be a child on the day after PDS's limit; by PDS's date they are not.
        let pds_birth = date(2007, 6, 15);
        let day_after = date(2026, 6, 16); // 18th birthday 2025-06-15, +365 = 2026-06-15.
        assert_eq!(last_day_as_child(pds_birth), date(2026, 6, 15));
        let r = RawRecord { birth_date: Some("2008-06-15".to_string()), ..record() };
        let p = PdsView { birth_date: pds_birth, ..pds() };
        cpr07(&check(&r, Some(&p), false, day_after), "older than 18 years and 365 days");
    }

    // --- order between checks ---

    #[test]
    fn order_cpr01_before_cpr07() {
        let r = with_items(vec![]);
        rejected(&check(&r, None, true, today()), RecordCode::Cpr01);
    }

    #[test]
    fn order_superseded_and_restricted_gives_cpr05() {
        let p = PdsView { superseded_by: Some("9990000034".to_string()), restricted: true, ..pds() };
        rejected(&run(&record(), &p), RecordCode::Cpr05);
    }

    #[test]
    fn order_invalidated_and_superseded_gives_cpr01() {
        let p = PdsView { superseded_by: Some("9990000034".to_string()), invalidated: true, ..pds() };
        rejected(&run(&record(), &p), RecordCode::Cpr01);
    }

    #[test]
    fn order_repeated_number_failing_cpr04_gives_cpr04() {
        let r = RawRecord { nhs_number: Some("9990000019".to_string()), ..record() };
        rejected(&check(&r, Some(&pds()), true, today()), RecordCode::Cpr04);
    }

    #[test]
    fn order_restricted_before_cross_check() {
        let r = RawRecord { birth_date: None, ..record() };
        let p = PdsView { restricted: true, ..pds() };
        rejected(&run(&r, &p), RecordCode::Cpr02);
    }

    #[test]
    fn order_cross_check_before_cpr07() {
        let r = RawRecord { birth_date: Some("1990-05-05".to_string()), la_child_id: None, items: vec![], ..record() };
        rejected(&run(&r, &pds()), RecordCode::Cpr03);
    }

    #[test]
    fn order_among_cpr07_faults() {
        // A laChildId over 100 characters cannot be stored.
        let long = RawRecord { la_child_id: Some("K".repeat(101)), ..record() };
        cpr07(&check(&long, Some(&pds()), false, today()), "longer than 100");
        // Parser fault beats missing laChildId.
        let r = RawRecord { faults: vec!["Foo is not allowed".to_string()], la_child_id: None, ..record() };
        cpr07(&run(&r, &pds()), "Foo is not allowed");
        // Missing laChildId beats a repeated number.
        let r = RawRecord { la_child_id: None, ..record() };
        cpr07(&check(&r, Some(&pds()), true, today()), "no laChildId");
        // A repeated number beats no item.
        cpr07(&check(&with_items(vec![]), Some(&pds()), true, today()), "same NHS number");
        // Duplicate type beats a missing start.
        let r = with_items(vec![item(LookedAfterChild, None, None, None), item(LookedAfterChild, None, None, None)]);
        cpr07(&run(&r, &pds()), "two LookedAfterChild items");
        // A missing start on a later item beats a bad date on an earlier one.
        let r = with_items(vec![
            item(ChildProtectionPlan, Some("2025-03-01"), Some("soon"), None),
            item(LookedAfterChild, None, None, None),
        ]);
        cpr07(&run(&r, &pds()), "LookedAfterChild item has no start date");
        // A bad date on a later item beats the ordering of an earlier one.
        let r = with_items(vec![
            item(ChildProtectionPlan, Some("2025-03-01"), Some("2025-01-01"), None),
            item(LookedAfterChild, Some("2025-03-01"), Some("soon"), None),
        ]);
        cpr07(&run(&r, &pds()), "LookedAfterChild item's end date is not a YYYY-MM-DD date");
        // End before start beats the unborn end check, a future start and the age.
        let p = PdsView { birth_date: date(1990, 5, 5), ..pds() };
        let r = RawRecord {
            birth_date: Some("1990-05-05".to_string()),
            items: vec![
                item(UnbornChildProtectionPlan, Some("2027-03-01"), None, None),
                item(ChildProtectionPlan, Some("2027-03-01"), Some("2027-02-01"), None),
            ],
            ..record()
        };
        cpr07(&run(&r, &p), "ChildProtectionPlan item's end date is before its start date");
        // Unborn end beats a future start and the age.
        let r = RawRecord {
            items: vec![
                item(ChildProtectionPlan, Some("2027-03-01"), None, None),
                item(UnbornChildProtectionPlan, Some("2026-03-01"), None, None),
            ],
            ..r
        };
        cpr07(&run(&r, &p), "needs an end date");
        // A future start beats the age.
        let r = RawRecord { items: vec![item(ChildProtectionPlan, Some("2027-03-01"), None, None)], ..r };
        cpr07(&run(&r, &p), "start date is in the future");
    }

    // --- edges ---

    #[test]
    fn cpp_on_the_last_day_as_child_is_accepted_and_the_day_after_is_not() {
        // Born 2008-03-10: 18 on 2026-03-10; the last day as a child is 2027-03-10.
        let birth = date(2008, 3, 10);
        let last = last_day_as_child(birth);
        assert_eq!(last, date(2027, 3, 10));
        let r = RawRecord {
            birth_date: Some("2008-03-10".to_string()),
            items: vec![item(ChildProtectionPlan, Some("2025-03-01"), None, None)],
            ..record()
        };
        let p = PdsView { birth_date: birth, ..pds() };
        accepted(&check(&r, Some(&p), false, last));
        cpr07(&check(&r, Some(&p), false, last.succ_opt().unwrap()), "older than 18 years and 365 days");
        // The same for a LAC.
        let r = RawRecord { items: vec![item(LookedAfterChild, Some("2025-03-01"), None, None)], ..r };
        accepted(&check(&r, Some(&p), false, last));
        cpr07(&check(&r, Some(&p), false, last.succ_opt().unwrap()), "older than 18 years and 365 days");
    }

    #[test]
    fn unborn_plan_for_a_forty_year_old_mother_is_accepted() {
        let mother = date(1986, 7, 4);
        let r = RawRecord {
            given_name: Some("Sarah".to_string()),
            family_name: Some("Hart".to_string()),
            birth_date: Some("1986-07-04".to_string()),
            items: vec![item(UnbornChildProtectionPlan, Some("2026-10-01"), Some("2027-02-14"), None)],
            ..record()
        };
        let p = PdsView {
            birth_date: mother,
            names: vec![PdsName { given: "Sarah".to_string(), family: "Hart".to_string() }],
            ..pds()
        };
        let on = date(2026, 11, 22);
        assert_eq!(crate::domain::dates::age_in_years(mother, on), 40);
        let items = accepted(&check(&r, Some(&p), false, on));
        assert_eq!(items[0].dates.end, Some(date(2027, 2, 14)));
        // The mother's own CPP alongside it is refused.
        let r = RawRecord {
            items: vec![
                item(UnbornChildProtectionPlan, Some("2026-10-01"), Some("2027-02-14"), None),
                item(ChildProtectionPlan, Some("2026-10-01"), None, None),
            ],
            ..r
        };
        cpr07(&check(&r, Some(&p), false, on), "so a ChildProtectionPlan cannot be held");
    }

    #[test]
    fn start_today_is_accepted_and_tomorrow_is_not() {
        let r = with_items(vec![item(LookedAfterChild, Some("2026-11-22"), None, None)]);
        accepted(&run(&r, &pds()));
        let r = with_items(vec![item(LookedAfterChild, Some("2026-11-23"), None, None)]);
        cpr07(&run(&r, &pds()), "start date is in the future");
    }

    #[test]
    fn end_and_delete_equal_to_start_are_accepted() {
        let r = with_items(vec![
            item(ChildProtectionPlan, Some("2025-03-01"), Some("2025-03-01"), None),
            item(LookedAfterChild, Some("2025-04-01"), None, Some("2025-04-01")),
            item(UnbornChildProtectionPlan, Some("2025-05-01"), Some("2025-05-01"), None),
        ]);
        let items = accepted(&run(&r, &pds()));
        assert_eq!(items[0].dates.end, Some(date(2025, 3, 1)));
        assert_eq!(items[1].dates.delete, Some(date(2025, 4, 1)));
    }

    #[test]
    fn end_and_delete_may_be_in_the_future() {
        let r = with_items(vec![item(ChildProtectionPlan, Some("2025-03-01"), Some("2027-01-01"), Some("2028-01-01"))]);
        accepted(&run(&r, &pds()));
    }

    #[test]
    fn parse_date_is_strict() {
        assert_eq!(parse_date("2024-02-29"), Some(date(2024, 2, 29)));
        assert_eq!(parse_date("0001-01-01"), Some(date(1, 1, 1)));
        for bad in ["2023-02-29", "2024-2-29", "2024/02/29", "24-02-29", "2024-02-290", "", "2024-00-10", "2024-01-00"]
        {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
    /// Property tests of the checks that use PDS: the NHS number and the CP-IS002 cross-check.
    mod props {
        use super::*;
        use crate::domain::nhs_number::check_digit;
        use chrono::Datelike;
        use proptest::prelude::*;

        /// A valid NHS number: nine random digits and their modulus 11 check digit.
        fn valid_nhs_number() -> impl Strategy<Value = String> {
            "[0-9]{9}".prop_filter_map("a check digit exists", |nine| check_digit(&nine).map(|c| format!("{nine}{c}")))
        }

        /// A change a person makes when copying a number: one digit replaced, or two neighbouring
        /// different digits swapped.
        #[derive(Debug, Clone)]
        enum Typo {
            Replace(usize, u8),
            Swap(usize),
        }

        fn typo() -> impl Strategy<Value = Typo> {
            prop_oneof![
                (0usize..10, 1u8..10).prop_map(|(i, by)| Typo::Replace(i, by)),
                (0usize..9).prop_map(Typo::Swap)
            ]
        }

        /// `number` with the typo, or None when the typo changes nothing (swapping equal digits).
        fn apply(number: &str, typo: &Typo) -> Option<String> {
            let mut b = number.as_bytes().to_vec();
            match *typo {
                Typo::Replace(i, by) => b[i] = b'0' + (b[i] - b'0' + by) % 10,
                Typo::Swap(i) => b.swap(i, i + 1),
            }
            (b != number.as_bytes()).then(|| String::from_utf8(b).unwrap())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1_000))]

            /// A valid number passes CPR04 and, with the rest of the record right, is accepted
            /// under that number; any single-digit typo or swap of neighbouring digits in it is
            /// always refused with CPR04 (modulus 11 catches both), before PDS is consulted.
            #[test]
            fn an_altered_nhs_number_always_fails(number in valid_nhs_number(), typo in typo()) {
                let r = RawRecord { nhs_number: Some(number.clone()), ..record() };
                match run(&r, &pds()) {
                    Verdict::Accepted { nhs_number, .. } => prop_assert_eq!(nhs_number, number.clone()),
                    other => prop_assert!(false, "{:?}", other),
                }
                if let Some(altered) = apply(&number, &typo) {
                    let r = RawRecord { nhs_number: Some(altered), ..record() };
                    prop_assert_eq!(check(&r, Some(&pds()), false, today()).code(), RecordCode::Cpr04);
                    prop_assert_eq!(check(&r, None, false, today()).code(), RecordCode::Cpr04);
                }
            }

            /// CP-IS002 through the record checks: a birth date sent that differs from PDS's in
            /// two or three of its parts is always CPR03, whatever names were sent; one differing
            /// in one part still verifies with PDS's own names.
            #[test]
            fn an_altered_birth_date_fails_unless_the_names_match(
                sent in prop_oneof![
                    Just(date(2009, 1, 31)),
                    (prop::option::of(1990i32..2026), prop::option::of(1u32..=12), prop::option::of(1u32..=31))
                        .prop_filter_map("a real date", |(y, m, d)| {
                            NaiveDate::from_ymd_opt(y.unwrap_or(2009), m.unwrap_or(1), d.unwrap_or(31))
                        }),
                ],
                names_right in any::<bool>(),
            ) {
                let (y, m, d) = (sent.year(), sent.month(), sent.day());
                let pds_birth = pds().birth_date;
                let same = [y == pds_birth.year(), m == pds_birth.month(), d == pds_birth.day()];
                let parts = same.iter().filter(|s| **s).count();
                let (given, family) = if names_right { ("amelia", " HART ") } else { ("Zoe", "Smith") };
                let r = RawRecord {
                    birth_date: Some(sent.format("%Y-%m-%d").to_string()),
                    given_name: Some(given.to_string()),
                    family_name: Some(family.to_string()),
                    ..record()
                };
                let code = run(&r, &pds()).code();
                match parts {
                    3 => prop_assert_eq!(code, RecordCode::Cpr06),
                    2 if names_right => prop_assert_eq!(code, RecordCode::Cpr06),
                    _ => prop_assert_eq!(code, RecordCode::Cpr03),
                }
            }

            /// The case and surrounding whitespace of the names sent never change the record code.
            #[test]
            fn the_case_of_names_does_not_change_the_code(
                upper in any::<bool>(), pad in "[ \t\n]{0,3}", near in any::<bool>(),
            ) {
                let birth = if near { "2009-01-13" } else { "2009-01-31" };
                let dress = |n: &str| {
                    let n = if upper { n.to_uppercase() } else { n.to_lowercase() };
                    format!("{pad}{n}{pad}")
                };
                let plain = RawRecord { birth_date: Some(birth.to_string()), ..record() };
                let dressed = RawRecord {
                    given_name: plain.given_name.as_deref().map(dress),
                    family_name: plain.family_name.as_deref().map(dress),
                    ..plain.clone()
                };
                prop_assert_eq!(run(&dressed, &pds()).code(), run(&plain, &pds()).code());
            }
        }
    }
}
