//! CP-IS075: "Although no history of CP-IS records are being maintained, it must be possible to
//! derive whether an individual record was present on the system at any time in the past,
//! available by request from audit records."
//!
//! Items replaced by a later upload are deleted from `cp_items`; what was held, and when, lives in
//! the audit trail, which records every change with before and after. [`fold`] replays an NHS
//! number's changes, in the chain's order, into a [`Timeline`] of spans (what was held, per LA, from
//! when until when), and [`held_on`] answers for one UK date. Both are pure; [`load`] only reads the
//! changes.
//!
//! The changes replayed:
//! - `cp.record_replaced` (an LA's upload, CP-IS020): that LA's items become `after`;
//! - `cp.item_end_dated` (the expiry job, CP-IS030): the end of that LA's item of that type changes;
//! - `cp.item_expired` (the expiry job, CP-IS009/010/011/032/033): that item is no longer held.
//!
//! An item that is identical before and after a replacement is one span (it was held throughout).
//! A span of no duration (end-dated and expired by the same run) was never held at any moment and
//! is left out. A change that names an item the replay does not hold (information held before the
//! trail began, or entries purged by audit retention, CP-IS076) is listed in
//! [`Timeline::unexplained`] so the answer can say so rather than guess.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use serde_json::Value;

use crate::domain::dates::uk_day_bounds;
use crate::error::AppError;
use crate::schema::audit_log;

pub const REPLACED: &str = "cp.record_replaced";
pub const END_DATED: &str = "cp.item_end_dated";
pub const EXPIRED: &str = "cp.item_expired";
/// The actions that change what is held.
pub const CHANGES: [&str; 3] = [REPLACED, END_DATED, EXPIRED];

/// One audit entry about the number, as read from the trail.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Change {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub details: Value,
}

/// An item as the audit records it (`{type, la_child_id, start, end, delete}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeldItem {
    pub item_type: String,
    pub la_child_id: String,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub delete: Option<NaiveDate>,
}

fn date_of(v: &Value) -> Option<NaiveDate> {
    v.as_str().and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

impl HeldItem {
    /// Reads an item of a `before` or `after` list; `None` when it is not one.
    pub fn from_json(v: &Value) -> Option<HeldItem> {
        Some(HeldItem {
            item_type: v.get("type")?.as_str()?.to_owned(),
            la_child_id: v.get("la_child_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            start: date_of(v.get("start")?)?,
            end: v.get("end").and_then(date_of),
            delete: v.get("delete").and_then(date_of),
        })
    }

    /// The items of a `before` or `after` list (`None` when it is not a list of items).
    pub fn list_from_json(v: Option<&Value>) -> Option<Vec<HeldItem>> {
        v?.as_array()?.iter().map(HeldItem::from_json).collect()
    }
}

/// One item held by one LA, from one instant until another (`None`: still held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub la_code: String,
    pub item: HeldItem,
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl Span {
    /// True when the span and the half-open interval `[start, end)` share at least one instant.
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.from < end && self.until.is_none_or(|u| u > start)
    }
}

/// What was held, when, for one NHS number, as the audit trail tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// In the order they began (then by LA and item).
    pub spans: Vec<Span>,
    /// Ids of audit entries whose change does not fit what the replay held (see the module's notes).
    pub unexplained: Vec<i64>,
    /// When the first change was recorded (`None`: the trail records none).
    pub first_change: Option<DateTime<Utc>>,
}

impl Timeline {
    /// The spans still open: what the trail says is held now.
    pub fn current(&self) -> impl Iterator<Item = &Span> {
        self.spans.iter().filter(|s| s.until.is_none())
    }
}

/// Replays the changes, in the order given (the chain's order: by id), into a timeline. Entries
/// of other actions are ignored.
pub fn fold(changes: &[Change]) -> Timeline {
    // Per LA, the items held and since when.
    let mut open: Vec<(String, HeldItem, DateTime<Utc>)> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    let mut unexplained = Vec::new();
    let mut first_change = None;
    let close = |spans: &mut Vec<Span>, la: String, item: HeldItem, from: DateTime<Utc>, until: DateTime<Utc>| {
        if until > from {
            spans.push(Span { la_code: la, item, from, until: Some(until) });
        }
    };
    for c in changes {
        if !CHANGES.contains(&c.action.as_str()) {
            continue;
        }
        first_change.get_or_insert(c.at);
        let Some(la) = c.details.get("la_code").and_then(Value::as_str).map(str::to_owned) else {
            unexplained.push(c.id);
            continue;
        };
        match c.action.as_str() {
            REPLACED => {
                let Some(after) = HeldItem::list_from_json(c.details.get("after")) else {
                    unexplained.push(c.id);
                    continue;
                };
                let mut held: Vec<(HeldItem, DateTime<Utc>)> = Vec::new();
                let mut rest = Vec::with_capacity(open.len());
                for (l, item, from) in open.drain(..) {
                    if l == la {
                        held.push((item, from));
                    } else {
                        rest.push((l, item, from));
                    }
                }
                open = rest;
                // The trail's `before` should be what the replay held; when it is not, say so.
                if let Some(mut before) = HeldItem::list_from_json(c.details.get("before")) {
                    let mut replayed: Vec<HeldItem> = held.iter().map(|(i, _)| i.clone()).collect();
                    before.sort();
                    replayed.sort();
                    if before != replayed {
                        unexplained.push(c.id);
                    }
                }
                for item in after {
                    // An identical item held before was held throughout.
                    let from = match held.iter().position(|(h, _)| *h == item) {
                        Some(i) => held.remove(i).1,
                        None => c.at,
                    };
                    open.push((la.clone(), item, from));
                }
                for (item, from) in held {
                    close(&mut spans, la.clone(), item, from, c.at);
                }
            }
            END_DATED | EXPIRED => {
                let kind = c.details.get("type").and_then(Value::as_str).unwrap_or_default();
                let Some(i) = open.iter().position(|(l, item, _)| *l == la && item.item_type == kind) else {
                    unexplained.push(c.id);
                    continue;
                };
                let (l, item, from) = open.remove(i);
                if c.action == END_DATED {
                    let mut ended = item.clone();
                    ended.end = c.details.get("after").and_then(|a| a.get("end")).and_then(date_of);
                    close(&mut spans, l.clone(), item, from, c.at);
                    open.push((l, ended, c.at));
                } else {
                    close(&mut spans, l, item, from, c.at);
                }
            }
            _ => {}
        }
    }
    for (la, item, from) in open {
        spans.push(Span { la_code: la, item, from, until: None });
    }
    spans.sort_by(|a, b| (a.from, &a.la_code, &a.item).cmp(&(b.from, &b.la_code, &b.item)));
    Timeline { spans, unexplained, first_change }
}

/// CP-IS075's answer for one UK date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOn {
    pub date: NaiveDate,
    /// Every item held at any moment of that day, with when it was held.
    pub spans: Vec<Span>,
}

impl HeldOn {
    /// Was anything held for the number at any moment of the day?
    pub fn held(&self) -> bool {
        !self.spans.is_empty()
    }
}

/// Was the number held on UK date `date` (at any moment of that day, midnight to midnight UK
/// time), and with which items? Spans are given in the timeline's order.
pub fn held_on(timeline: &Timeline, date: NaiveDate) -> HeldOn {
    let (start, end) = uk_day_bounds(date);
    HeldOn { date, spans: timeline.spans.iter().filter(|s| s.overlaps(start, end)).cloned().collect() }
}

/// Every audit entry about the number, in the chain's order.
pub fn load_changes(conn: &mut PgConnection, nhs_number: &str) -> Result<Vec<Change>, AppError> {
    Ok(audit_log::table
        .filter(audit_log::nhs_number.eq(nhs_number))
        .order(audit_log::id)
        .select((audit_log::id, audit_log::occurred_at, audit_log::actor, audit_log::action, audit_log::details))
        .load(conn)?)
}

/// The timeline of one NHS number, from its audit entries.
pub fn load(conn: &mut PgConnection, nhs_number: &str) -> Result<Timeline, AppError> {
    Ok(fold(&load_changes(conn, nhs_number)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KENT: &str = "E10000016";
    const LEEDS: &str = "E08000035";

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn item(kind: &str, start: &str, end: Option<&str>) -> Value {
        json!({"type": kind, "la_child_id": "K-1", "start": start, "end": end, "delete": null})
    }
    fn held(kind: &str, start: &str, end: Option<&str>) -> HeldItem {
        HeldItem::from_json(&item(kind, start, end)).unwrap()
    }

    struct Trail(Vec<Change>);

    impl Trail {
        fn new() -> Trail {
            Trail(Vec::new())
        }
        fn push(mut self, when: &str, action: &str, details: Value) -> Trail {
            let id = self.0.len() as i64 + 1;
            self.0.push(Change { id, at: at(when), actor: "la:E10000016".into(), action: action.into(), details });
            self
        }
        fn replaced(self, when: &str, la: &str, before: Vec<Value>, after: Vec<Value>) -> Trail {
            self.push(when, REPLACED, json!({"la_code": la, "upload_id": 1, "before": before, "after": after}))
        }
        fn end_dated(self, when: &str, la: &str, kind: &str, end: &str) -> Trail {
            self.push(
                when,
                END_DATED,
                json!({"item_id": 1, "la_code": la, "type": kind, "before": {"end": null}, "after": {"end": end}}),
            )
        }
        fn expired(self, when: &str, la: &str, kind: &str) -> Trail {
            self.push(
                when,
                EXPIRED,
                json!({"item_id": 1, "la_code": la, "type": kind, "after": {"deleted_reason": "expired"}}),
            )
        }
        fn timeline(&self) -> Timeline {
            fold(&self.0)
        }
    }

    fn types(h: &HeldOn) -> Vec<(String, String, Option<NaiveDate>)> {
        h.spans.iter().map(|s| (s.la_code.clone(), s.item.item_type.clone(), s.item.end)).collect()
    }

    fn row(la: &str, kind: &str, end: Option<&str>) -> (String, String, Option<NaiveDate>) {
        (la.into(), kind.into(), end.map(d))
    }

    #[test]
    fn nothing_is_held_before_the_first_record() {
        let t = Trail::new().replaced("2026-03-10T10:00:00Z", KENT, vec![], vec![item("CPP", "2026-01-01", None)]);
        let t = t.timeline();
        assert!(!held_on(&t, d("2026-03-09")).held(), "the day before");
        assert!(held_on(&t, d("2026-03-10")).held(), "the day of the upload itself (at any moment of it)");
        assert!(held_on(&t, d("2027-01-01")).held(), "still held");
        assert_eq!(t.first_change, Some(at("2026-03-10T10:00:00Z")));
        assert!(t.unexplained.is_empty());
        // Nothing recorded at all: never held.
        assert!(!held_on(&fold(&[]), d("2026-03-10")).held());
    }

    #[test]
    fn a_replacement_changes_what_is_held_from_its_moment() {
        let t = Trail::new()
            .replaced(
                "2026-03-10T10:00:00Z",
                KENT,
                vec![],
                vec![item("CPP", "2026-01-01", None), item("LAC", "2026-02-01", None)],
            )
            .replaced(
                "2026-03-20T10:00:00Z",
                KENT,
                vec![item("CPP", "2026-01-01", None), item("LAC", "2026-02-01", None)],
                vec![item("LAC", "2026-02-01", Some("2026-03-15"))],
            )
            .timeline();
        assert_eq!(types(&held_on(&t, d("2026-03-15"))), vec![row(KENT, "CPP", None), row(KENT, "LAC", None)]);
        // The day of the change: both states were held at some moment.
        assert_eq!(
            types(&held_on(&t, d("2026-03-20"))),
            vec![row(KENT, "CPP", None), row(KENT, "LAC", None), row(KENT, "LAC", Some("2026-03-15"))]
        );
        assert_eq!(types(&held_on(&t, d("2026-03-21"))), vec![row(KENT, "LAC", Some("2026-03-15"))]);
        let cpp = &t.spans[0];
        assert_eq!((cpp.from, cpp.until), (at("2026-03-10T10:00:00Z"), Some(at("2026-03-20T10:00:00Z"))));
        assert!(t.unexplained.is_empty());
    }

    #[test]
    fn an_item_unchanged_by_a_replacement_is_one_span() {
        let cpp = item("CPP", "2026-01-01", None);
        let t = Trail::new()
            .replaced("2026-03-10T10:00:00Z", KENT, vec![], vec![cpp.clone()])
            .replaced("2026-04-10T10:00:00Z", KENT, vec![cpp.clone()], vec![cpp.clone()])
            .timeline();
        assert_eq!(t.spans.len(), 1);
        assert_eq!((t.spans[0].from, t.spans[0].until), (at("2026-03-10T10:00:00Z"), None));
        assert_eq!(t.current().count(), 1);
    }

    #[test]
    fn an_upload_with_no_items_removes_everything_that_la_held() {
        let t = Trail::new()
            .replaced("2026-03-10T10:00:00Z", KENT, vec![], vec![item("CPP", "2026-01-01", None)])
            .replaced("2026-03-12T10:00:00Z", KENT, vec![item("CPP", "2026-01-01", None)], vec![])
            .timeline();
        assert!(held_on(&t, d("2026-03-12")).held(), "held until 10:00 that day");
        assert!(!held_on(&t, d("2026-03-13")).held(), "after everything was removed");
        assert_eq!(t.current().count(), 0);
    }

    #[test]
    fn end_dating_changes_the_end_of_that_item_only() {
        let t = Trail::new()
            .replaced(
                "2026-03-10T10:00:00Z",
                KENT,
                vec![],
                vec![item("CPP", "2020-01-01", None), item("LAC", "2021-01-01", None)],
            )
            .end_dated("2026-05-01T00:05:00Z", KENT, "CPP", "2026-05-01")
            .timeline();
        // 00:05 GMT on 1 May is 01:05 BST: the same UK day.
        assert_eq!(
            types(&held_on(&t, d("2026-05-01"))),
            vec![row(KENT, "CPP", None), row(KENT, "LAC", None), row(KENT, "CPP", Some("2026-05-01"))]
        );
        assert_eq!(
            types(&held_on(&t, d("2026-05-02"))),
            vec![row(KENT, "LAC", None), row(KENT, "CPP", Some("2026-05-01"))]
        );
        let current: Vec<&HeldItem> = t.current().map(|s| &s.item).collect();
        assert_eq!(current, vec![&held("LAC", "2021-01-01", None), &held("CPP", "2020-01-01", Some("2026-05-01"))]);
    }

    #[test]
    fn expiry_removes_the_item_from_its_moment() {
        let t = Trail::new()
            .replaced("2026-03-10T10:00:00Z", KENT, vec![], vec![item("CPP", "2020-01-01", Some("2025-01-01"))])
            .expired("2026-03-15T00:05:00Z", KENT, "CPP")
            .timeline();
        assert!(held_on(&t, d("2026-03-15")).held(), "held for the first five minutes of the day");
        assert!(!held_on(&t, d("2026-03-16")).held(), "a date after everything was removed");
        assert!(!held_on(&t, d("2030-01-01")).held());
        assert!(t.unexplained.is_empty());
    }

    #[test]
    fn end_dated_and_expired_in_one_run_leaves_no_span_for_the_moment_between() {
        let t = Trail::new()
            .replaced("2026-03-10T10:00:00Z", KENT, vec![], vec![item("CPP", "2000-01-01", None)])
            .end_dated("2026-03-15T00:05:00Z", KENT, "CPP", "2018-01-01")
            .expired("2026-03-15T00:05:00Z", KENT, "CPP")
            .timeline();
        assert_eq!(t.spans.len(), 1, "the end-dated item was never held at any moment");
        assert_eq!(t.spans[0].item.end, None);
        assert_eq!(t.current().count(), 0);
    }

    #[test]
    fn each_la_keeps_its_own_items() {
        let t = Trail::new()
            .replaced("2026-03-10T10:00:00Z", KENT, vec![], vec![item("CPP", "2026-01-01", None)])
            .replaced("2026-03-11T10:00:00Z", LEEDS, vec![], vec![item("LAC", "2026-01-05", None)])
            // Kent's upload leaves Leeds's item alone (CP-IS021).
            .replaced("2026-03-12T10:00:00Z", KENT, vec![item("CPP", "2026-01-01", None)], vec![])
            .expired("2026-03-20T10:00:00Z", LEEDS, "LAC")
            .timeline();
        assert_eq!(types(&held_on(&t, d("2026-03-10"))), vec![row(KENT, "CPP", None)]);
        assert_eq!(types(&held_on(&t, d("2026-03-11"))), vec![row(KENT, "CPP", None), row(LEEDS, "LAC", None)]);
        assert_eq!(types(&held_on(&t, d("2026-03-15"))), vec![row(LEEDS, "LAC", None)]);
        assert!(!held_on(&t, d("2026-03-21")).held());
        assert!(t.unexplained.is_empty());
    }

    #[test]
    fn the_day_follows_uk_time() {
        // 23:30 UTC on 1 July is 00:30 BST on 2 July.
        let t = Trail::new()
            .replaced("2026-07-01T23:30:00Z", KENT, vec![], vec![item("CPP", "2026-01-01", None)])
            .replaced("2026-07-02T22:59:59Z", KENT, vec![item("CPP", "2026-01-01", None)], vec![])
            .timeline();
        assert!(!held_on(&t, d("2026-07-01")).held());
        assert!(held_on(&t, d("2026-07-02")).held());
        assert!(!held_on(&t, d("2026-07-03")).held(), "removed at 23:59:59 BST on 2 July");
        // In winter UK time is UTC: removed at the first instant of 2 December is not held that day.
        let t = Trail::new()
            .replaced("2026-12-01T10:00:00Z", KENT, vec![], vec![item("CPP", "2026-01-01", None)])
            .replaced("2026-12-02T00:00:00Z", KENT, vec![item("CPP", "2026-01-01", None)], vec![])
            .timeline();
        assert!(held_on(&t, d("2026-12-01")).held());
        assert!(!held_on(&t, d("2026-12-02")).held());
    }

    #[test]
    fn changes_that_do_not_fit_are_reported_not_guessed() {
        let t = Trail::new()
            // Held before the trail began: the before list names an item the replay never saw.
            .replaced(
                "2026-03-10T10:00:00Z",
                KENT,
                vec![item("CPP", "2019-01-01", None)],
                vec![item("CPP", "2026-01-01", None)],
            )
            // Expiry of a type this LA does not hold.
            .expired("2026-03-11T10:00:00Z", KENT, "LAC")
            // Not a change about what is held: ignored.
            .push("2026-03-12T10:00:00Z", "access.alert_tab_opened", json!({"shown": true}))
            // No LA.
            .push("2026-03-13T10:00:00Z", REPLACED, json!({"after": []}))
            .timeline();
        assert_eq!(t.unexplained, vec![1, 2, 4]);
        assert_eq!(t.current().count(), 1, "the after state is still taken");
    }
}
