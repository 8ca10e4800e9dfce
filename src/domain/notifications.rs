//! What the daily Access to Service Notification (message 05) says to each local authority
//! (messages.md, "05 Access to Service Notification"; CP-IS022, CP-IS023, CP-IS025, CP-IS029,
//! CP-IS037, CP-IS070), and the "patterns worth a look" that open its e-mail.
//!
//! - **Who gets one.** Every LA that held retrievable information at any time during UK day D
//!   (an item retrievable on D by [`retrieval`]); an LA that held nothing that day gets nothing
//!   (CP-IS029). The caller passes the items held at some time during D (not logically deleted
//!   before D started); [`children_on`] keeps those retrievable on D.
//! - **What it lists.** The *shown* accesses (CP-IS047, the first access rule) made during D to
//!   that LA's children, oldest first (ties in insertion order), each with the LA's own child id
//!   (CP-IS051: returned to the LA only). A child known to PDS under a newer number is the same
//!   child: accesses recorded under the number its old one was superseded into count too.
//! - **Patterns worth a look** (beyond the standard): the guidance for social care practitioners
//!   warns that repeated attendances across places are easy to miss, so the notification starts
//!   with the LA's children accessed from [`PATTERN_ORGANISATIONS`] or more organisations, or
//!   [`PATTERN_ACCESSES`] or more times, within the [`PATTERN_DAYS`] UK days ending with D. Every
//!   access counts here, shown or not: a clinician opening the record again and again is itself
//!   worth a look.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};

use super::dates::uk_day_bounds;
use super::retrieval::{self, ItemDates, ItemKind};

/// The patterns look back over this many UK days, ending with (and including) the notified day.
pub const PATTERN_DAYS: u64 = 7;
/// A child accessed from this many different organisations or more within the window is listed.
pub const PATTERN_ORGANISATIONS: usize = 3;
/// A child accessed this many times or more within the window is listed.
pub const PATTERN_ACCESSES: usize = 3;

/// An item an LA held at some time during the day, with what retrievability needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldItem {
    pub id: i64,
    pub la_code: String,
    pub nhs_number: String,
    pub la_child_id: String,
    pub kind: ItemKind,
    pub dates: ItemDates,
    /// The birth date PDS holds for the number (the mother's, for an unborn plan).
    pub birth_date: NaiveDate,
    /// Not logically deleted (yet): its child id is the LA's current one.
    pub current: bool,
}

/// A child an LA held retrievable information for on the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub la_code: String,
    /// The number the LA holds the child under.
    pub nhs_number: String,
    /// The LA's own id for the child.
    pub la_child_id: String,
    /// Every number whose accesses are this child's: the held number first, then the numbers it
    /// was superseded into (accesses are recorded under the current number).
    pub numbers: Vec<String>,
}

/// The children each LA held retrievable items for on `day`, ordered by LA, child id and number.
/// `successors` maps a superseded number to the numbers it was superseded into, nearest first.
/// When an LA held several items for one number (a CPP and a LAC, or an item replaced during the
/// day), the child id is that of a current item, the most recently stored one first.
pub fn children_on(items: &[HeldItem], day: NaiveDate, successors: &HashMap<String, Vec<String>>) -> Vec<Child> {
    let mut best: BTreeMap<(&str, &str), &HeldItem> = BTreeMap::new();
    for item in items.iter().filter(|i| retrieval::is_retrievable(i.kind, &i.dates, i.birth_date, day)) {
        let key = (item.la_code.as_str(), item.nhs_number.as_str());
        match best.get(&key) {
            Some(b) if (b.current, b.id) >= (item.current, item.id) => {}
            _ => {
                best.insert(key, item);
            }
        }
    }
    let mut children: Vec<Child> = best
        .into_values()
        .map(|i| {
            let mut numbers = vec![i.nhs_number.clone()];
            for n in successors.get(&i.nhs_number).into_iter().flatten() {
                if !numbers.contains(n) {
                    numbers.push(n.clone());
                }
            }
            Child {
                la_code: i.la_code.clone(),
                nhs_number: i.nhs_number.clone(),
                la_child_id: i.la_child_id.clone(),
                numbers,
            }
        })
        .collect();
    children
        .sort_by(|a, b| (&a.la_code, &a.la_child_id, &a.nhs_number).cmp(&(&b.la_code, &b.la_child_id, &b.nhs_number)));
    children
}

/// One access as stored, with names in readable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub id: i64,
    pub nhs_number: String,
    pub accessed_at: DateTime<Utc>,
    /// The first access rule's verdict (CP-IS047): only shown accesses are listed.
    pub shown: bool,
    pub viewer_name: String,
    pub job_role_code: String,
    pub job_role_name: String,
    pub organisation_code: String,
    pub organisation_name: String,
    pub channel: String,
}

/// Any access (shown or not) within the pattern window: what the patterns count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub nhs_number: String,
    pub accessed_at: DateTime<Utc>,
    pub organisation_code: String,
}

/// One line of an LA's notification: an access to one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The number the LA holds the child under.
    pub nhs_number: String,
    pub la_child_id: String,
    pub access: Access,
}

/// A child worth a look: accessed from several organisations, or several times, in the window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pattern {
    pub nhs_number: String,
    pub la_child_id: String,
    /// Every access in the window, shown or not.
    pub accesses: usize,
    /// The organisations (ODS codes) the accesses came from, in code order.
    pub organisations: Vec<String>,
}

/// What one LA is told for the day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub la_code: String,
    /// Oldest first; empty means `<NoAccess/>`.
    pub entries: Vec<Entry>,
    /// Most organisations first, then most accesses, then by child id.
    pub patterns: Vec<Pattern>,
}

/// The instants the patterns look at: from the start of the UK day `PATTERN_DAYS - 1` days before
/// `day` to the end of `day` (half-open; clock changes make it 167 or 169 hours).
pub fn pattern_window(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = day.checked_sub_days(Days::new(PATTERN_DAYS - 1)).unwrap_or(NaiveDate::MIN);
    (uk_day_bounds(first).0, uk_day_bounds(day).1)
}

/// Whether a child's accesses in the window make a pattern worth a look.
pub fn is_pattern(accesses: usize, organisations: usize) -> bool {
    accesses >= PATTERN_ACCESSES || organisations >= PATTERN_ORGANISATIONS
}

/// Each LA's notice for `day`, one for every LA with a child in `children` (an LA whose children
/// nobody accessed gets an empty one: `<NoAccess/>`, CP-IS025). `day_accesses` may hold more
/// than the day's shown accesses and `window` more than the window: both are filtered here.
pub fn notices(
    day: NaiveDate,
    children: &[Child],
    day_accesses: &[Access],
    window: &[Seen],
) -> BTreeMap<String, Notice> {
    // Which child of each LA an accessed number belongs to: the child held under that very
    // number if the LA has one, otherwise the first child whose number was superseded into it.
    let mut owner: HashMap<(&str, &str), (usize, bool)> = HashMap::new();
    for (idx, child) in children.iter().enumerate() {
        for (n, number) in child.numbers.iter().enumerate() {
            let direct = n == 0;
            let key = (child.la_code.as_str(), number.as_str());
            match owner.get(&key) {
                Some(&(_, true)) => {}
                Some(&(_, false)) if !direct => {}
                _ => {
                    owner.insert(key, (idx, direct));
                }
            }
        }
    }
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (&(_, number), &(idx, _)) in &owner {
        by_number.entry(number).or_default().push(idx);
    }

    let mut out: BTreeMap<String, Notice> = BTreeMap::new();
    for child in children {
        out.entry(child.la_code.clone()).or_insert_with(|| Notice {
            la_code: child.la_code.clone(),
            entries: Vec::new(),
            patterns: Vec::new(),
        });
    }

    let (start, end) = uk_day_bounds(day);
    for access in day_accesses.iter().filter(|a| a.shown && a.accessed_at >= start && a.accessed_at < end) {
        for &idx in by_number.get(access.nhs_number.as_str()).into_iter().flatten() {
            let child = &children[idx];
            if let Some(notice) = out.get_mut(&child.la_code) {
                notice.entries.push(Entry {
                    nhs_number: child.nhs_number.clone(),
                    la_child_id: child.la_child_id.clone(),
                    access: access.clone(),
                });
            }
        }
    }
    for notice in out.values_mut() {
        notice.entries.sort_by_key(|e| (e.access.accessed_at, e.access.id));
    }

    let (from, to) = pattern_window(day);
    let mut counts: HashMap<usize, (usize, BTreeSet<&str>)> = HashMap::new();
    for seen in window.iter().filter(|s| s.accessed_at >= from && s.accessed_at < to) {
        for &idx in by_number.get(seen.nhs_number.as_str()).into_iter().flatten() {
            let c = counts.entry(idx).or_default();
            c.0 += 1;
            c.1.insert(seen.organisation_code.as_str());
        }
    }
    for (idx, (accesses, organisations)) in counts {
        if !is_pattern(accesses, organisations.len()) {
            continue;
        }
        let child = &children[idx];
        if let Some(notice) = out.get_mut(&child.la_code) {
            notice.patterns.push(Pattern {
                nhs_number: child.nhs_number.clone(),
                la_child_id: child.la_child_id.clone(),
                accesses,
                organisations: organisations.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    for notice in out.values_mut() {
        notice.patterns.sort_by(|a, b| {
            (b.organisations.len(), b.accesses, &a.la_child_id, &a.nhs_number).cmp(&(
                a.organisations.len(),
                a.accesses,
                &b.la_child_id,
                &b.nhs_number,
            ))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    const KENT: &str = "E10000016";
    const MANCHESTER: &str = "E08000003";

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn held(id: i64, la: &str, nhs: &str, child: &str, end: Option<NaiveDate>, current: bool) -> HeldItem {
        HeldItem {
            id,
            la_code: la.into(),
            nhs_number: nhs.into(),
            la_child_id: child.into(),
            kind: ItemKind::ChildProtectionPlan,
            dates: ItemDates { start: date(2024, 1, 1), end, delete: None },
            birth_date: date(2018, 5, 1),
            current,
        }
    }

    fn child(la: &str, nhs: &str, id: &str) -> Child {
        Child { la_code: la.into(), nhs_number: nhs.into(), la_child_id: id.into(), numbers: vec![nhs.into()] }
    }

    fn access(id: i64, nhs: &str, at: &str, shown: bool) -> Access {
        Access {
            id,
            nhs_number: nhs.into(),
            accessed_at: utc(at),
            shown,
            viewer_name: format!("Viewer {id}"),
            job_role_code: "R8000".into(),
            job_role_name: "Clinical Practitioner Access Role".into(),
            organisation_code: "RJZ".into(),
            organisation_name: "King's College Hospital NHS Foundation Trust".into(),
            channel: "SCRa".into(),
        }
    }

    fn seen(nhs: &str, at: DateTime<Utc>, org: &str) -> Seen {
        Seen { nhs_number: nhs.into(), accessed_at: at, organisation_code: org.into() }
    }

    #[test]
    fn children_are_those_retrievable_on_the_day() {
        let day = date(2026, 11, 21);
        let items = vec![
            held(1, KENT, "9990000042", "K-42", None, true),
            // Ended 365 days before the day: still retrievable on it.
            held(2, KENT, "9990000077", "K-77", Some(date(2025, 11, 21)), true),
            // Ended 366 days before: gone.
            held(3, KENT, "9990000085", "K-85", Some(date(2025, 11, 20)), true),
            // Manchester holds only an expired item: no child, so no notice.
            held(4, MANCHESTER, "9990000123", "M-123", Some(date(2024, 1, 1)), true),
        ];
        let children = children_on(&items, day, &HashMap::new());
        let ids: Vec<&str> = children.iter().map(|c| c.la_child_id.as_str()).collect();
        assert_eq!(ids, ["K-42", "K-77"]);
        let n = notices(day, &children, &[], &[]);
        assert_eq!(n.keys().collect::<Vec<_>>(), [KENT]);
        assert!(n[KENT].entries.is_empty(), "no access: <NoAccess/>");
    }

    #[test]
    fn the_child_id_is_the_current_items() {
        let day = date(2026, 11, 21);
        // Replaced during the day by an item with a new child id, and a LAC stored later.
        let items = vec![
            held(5, KENT, "9990000042", "OLD-ID", None, false),
            held(7, KENT, "9990000042", "NEW-ID", None, true),
            held(6, KENT, "9990000042", "CPP-ID", None, true),
        ];
        let children = children_on(&items, day, &HashMap::new());
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].la_child_id, "NEW-ID");
        // Only a replaced item: its id is the one the LA knew that day.
        let children = children_on(&items[..1], day, &HashMap::new());
        assert_eq!(children[0].la_child_id, "OLD-ID");
    }

    #[test]
    fn entries_are_the_days_shown_accesses_oldest_first() {
        let day = date(2026, 11, 21);
        let children = vec![child(KENT, "9990000042", "K-42"), child(MANCHESTER, "9990000042", "M-42")];
        let accesses = vec![
            access(4, "9990000042", "2026-11-21T14:00:00Z", true),
            access(3, "9990000042", "2026-11-21T09:00:00Z", true),
            access(5, "9990000042", "2026-11-21T09:00:00Z", true),
            // Not shown (a repeat within 24 hours): counted in patterns, never listed.
            access(6, "9990000042", "2026-11-21T15:00:00Z", false),
            // Outside the day, either side.
            access(1, "9990000042", "2026-11-20T23:59:59Z", true),
            access(7, "9990000042", "2026-11-22T00:00:00Z", true),
            // Nobody's child.
            access(8, "9990000999", "2026-11-21T10:00:00Z", true),
        ];
        let n = notices(day, &children, &accesses, &[]);
        for (la, id) in [(KENT, "K-42"), (MANCHESTER, "M-42")] {
            let ids: Vec<i64> = n[la].entries.iter().map(|e| e.access.id).collect();
            assert_eq!(ids, [3, 5, 4], "{la}");
            assert!(n[la].entries.iter().all(|e| e.la_child_id == id && e.nhs_number == "9990000042"));
        }
    }

    #[test]
    fn the_day_is_the_uk_day_on_clock_change_days() {
        // 25 October 2026 lasts 25 hours: 23:00Z on the 24th to 00:00Z on the 26th.
        let long = date(2026, 10, 25);
        let children = vec![child(KENT, "9990000042", "K-42")];
        let accesses = vec![
            access(1, "9990000042", "2026-10-24T22:59:59Z", true),
            access(2, "9990000042", "2026-10-24T23:00:00Z", true),
            access(3, "9990000042", "2026-10-25T00:30:00Z", true),
            access(4, "9990000042", "2026-10-25T23:30:00Z", true),
            access(5, "9990000042", "2026-10-26T00:00:00Z", true),
        ];
        let ids: Vec<i64> =
            notices(long, &children, &accesses, &[])[KENT].entries.iter().map(|e| e.access.id).collect();
        assert_eq!(ids, [2, 3, 4]);
        // 29 March 2026 lasts 23 hours: 00:00Z to 23:00Z.
        let short = date(2026, 3, 29);
        let accesses = vec![
            access(1, "9990000042", "2026-03-28T23:59:59Z", true),
            access(2, "9990000042", "2026-03-29T00:00:00Z", true),
            access(3, "9990000042", "2026-03-29T22:59:59Z", true),
            access(4, "9990000042", "2026-03-29T23:30:00Z", true),
        ];
        let ids: Vec<i64> =
            notices(short, &children, &accesses, &[])[KENT].entries.iter().map(|e| e.access.id).collect();
        assert_eq!(ids, [2, 3]);
    }

    #[test]
    fn accesses_under_the_newer_number_reach_the_la_holding_the_old_one() {
        let day = date(2026, 11, 21);
        let items = vec![
            held(1, KENT, "9990000026", "K-OLD", None, true),
            held(2, MANCHESTER, "9990000034", "M-NEW", None, true),
        ];
        let successors = HashMap::from([("9990000026".to_owned(), vec!["9990000034".to_owned()])]);
        let children = children_on(&items, day, &successors);
        assert_eq!(children.iter().find(|c| c.la_code == KENT).unwrap().numbers, ["9990000026", "9990000034"]);
        let accesses = vec![access(1, "9990000034", "2026-11-21T10:00:00Z", true)];
        let n = notices(day, &children, &accesses, &[]);
        assert_eq!(n[KENT].entries.len(), 1);
        assert_eq!(n[KENT].entries[0].nhs_number, "9990000026", "the LA's own number");
        assert_eq!(n[KENT].entries[0].la_child_id, "K-OLD");
        assert_eq!(n[MANCHESTER].entries[0].la_child_id, "M-NEW");
    }

    #[test]
    fn an_la_holding_both_numbers_hears_of_an_access_once() {
        let day = date(2026, 11, 21);
        let items =
            vec![held(1, KENT, "9990000026", "K-OLD", None, true), held(2, KENT, "9990000034", "K-NEW", None, true)];
        let successors = HashMap::from([("9990000026".to_owned(), vec!["9990000034".to_owned()])]);
        let children = children_on(&items, day, &successors);
        let accesses = vec![access(1, "9990000034", "2026-11-21T10:00:00Z", true)];
        let n = notices(day, &children, &accesses, &[]);
        assert_eq!(n[KENT].entries.len(), 1);
        assert_eq!(n[KENT].entries[0].la_child_id, "K-NEW");
    }

    #[test]
    fn pattern_thresholds() {
        assert!(!is_pattern(2, 2));
        assert!(is_pattern(3, 1));
        assert!(is_pattern(3, 3));
        assert!(!is_pattern(2, 1));
        // Three organisations take three accesses at least; the rule reads either way.
        assert!(is_pattern(2, 3));
    }

    #[test]
    fn patterns_from_three_organisations_or_three_accesses() {
        let day = date(2026, 11, 21);
        let children = vec![
            child(KENT, "9990000042", "K-42"), // three organisations
            child(KENT, "9990000050", "K-50"), // three times from one organisation
            child(KENT, "9990000069", "K-69"), // twice, two organisations: not a pattern
            child(KENT, "9990000077", "K-77"), // never
        ];
        let t = utc("2026-11-18T10:00:00Z");
        let window = vec![
            seen("9990000042", t, "RJZ"),
            seen("9990000042", t + TimeDelta::hours(30), "RRU"),
            seen("9990000042", t + TimeDelta::hours(40), "RR8"),
            seen("9990000050", t, "RJZ"),
            seen("9990000050", t + TimeDelta::minutes(5), "RJZ"),
            seen("9990000050", t + TimeDelta::minutes(10), "RJZ"),
            seen("9990000069", t, "RJZ"),
            seen("9990000069", t, "RRU"),
        ];
        let n = notices(day, &children, &[], &window);
        let p = &n[KENT].patterns;
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].la_child_id, "K-42");
        assert_eq!(p[0].accesses, 3);
        assert_eq!(p[0].organisations, ["RJZ", "RR8", "RRU"]);
        assert_eq!(p[1].la_child_id, "K-50");
        assert_eq!(p[1].accesses, 3);
        assert_eq!(p[1].organisations, ["RJZ"]);
        // The entries list nothing: no access was made on the day itself.
        assert!(n[KENT].entries.is_empty());
    }

    #[test]
    fn two_organisations_and_two_accesses_are_not_a_pattern() {
        let day = date(2026, 11, 21);
        let children = vec![child(KENT, "9990000042", "K-42")];
        let t = utc("2026-11-21T10:00:00Z");
        let window = vec![seen("9990000042", t, "RJZ"), seen("9990000042", t, "RRU")];
        assert!(notices(day, &children, &[], &window)[KENT].patterns.is_empty());
        let mut three = window.clone();
        three.push(seen("9990000042", t, "RRU"));
        let p = &notices(day, &children, &[], &three)[KENT].patterns;
        assert_eq!((p[0].accesses, p[0].organisations.len()), (3, 2));
    }

    #[test]
    fn the_pattern_window_is_seven_uk_days_ending_with_the_day() {
        let day = date(2026, 11, 21);
        let (from, to) = pattern_window(day);
        assert_eq!(from, utc("2026-11-15T00:00:00Z"));
        assert_eq!(to, utc("2026-11-22T00:00:00Z"));
        let children = vec![child(KENT, "9990000042", "K-42")];
        let orgs = |at: [DateTime<Utc>; 3]| {
            let w: Vec<Seen> = at.iter().zip(["RJZ", "RRU", "RR8"]).map(|(t, o)| seen("9990000042", *t, o)).collect();
            notices(day, &children, &[], &w)[KENT].patterns.len()
        };
        let second = TimeDelta::seconds(1);
        // The first instant of the window and the last one both count.
        assert_eq!(orgs([from, from, to - second]), 1);
        // One of the three just before the window, or at its end: only two remain.
        assert_eq!(orgs([from - second, from, to - second]), 0);
        assert_eq!(orgs([from, from, to]), 0);
    }

    #[test]
    fn the_pattern_window_follows_clock_changes() {
        // The seven days ending 31 March 2026 include the 23-hour 29 March: 167 hours.
        let (from, to) = pattern_window(date(2026, 3, 31));
        assert_eq!(from, utc("2026-03-25T00:00:00Z"));
        assert_eq!(to, utc("2026-03-31T23:00:00Z"));
        assert_eq!(to - from, TimeDelta::hours(167));
        // The seven days ending 25 October 2026 end with the 25-hour day: 169 hours.
        let (from, to) = pattern_window(date(2026, 10, 25));
        assert_eq!(from, utc("2026-10-18T23:00:00Z"));
        assert_eq!(to, utc("2026-10-26T00:00:00Z"));
        assert_eq!(to - from, TimeDelta::hours(169));
    }

    #[test]
    fn patterns_follow_the_newer_number_and_order_by_organisations() {
        let day = date(2026, 11, 21);
        let mut old = child(KENT, "9990000026", "K-OLD");
        old.numbers.push("9990000034".into());
        let children = vec![child(KENT, "9990000018", "K-18"), old];
        let t = utc("2026-11-20T10:00:00Z");
        let window = vec![
            seen("9990000018", t, "RJZ"),
            seen("9990000018", t, "RJZ"),
            seen("9990000018", t, "RJZ"),
            seen("9990000018", t, "RJZ"),
            seen("9990000026", t, "RJZ"),
            seen("9990000034", t, "RRU"),
            seen("9990000034", t, "RR8"),
        ];
        let p = &notices(day, &children, &[], &window)[KENT].patterns;
        assert_eq!(p.iter().map(|p| p.la_child_id.as_str()).collect::<Vec<_>>(), ["K-OLD", "K-18"]);
        assert_eq!(p[0].nhs_number, "9990000026");
        assert_eq!(p[0].organisations.len(), 3);
    }
}
