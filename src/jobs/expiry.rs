//! Expiry and end-dating (CP-IS009, 010, 011, 030, 032, 033), on the UK date of `now`.
//!
//! Reads already decide retrievability at the moment of reading (`domain::retrieval`); this job
//! makes the stored state and the audit agree with them, using the same functions, so it never
//! changes what anyone sees:
//! - a CPP or LAC still open at the child's 18th birthday that has come (no end, or an end after
//!   it) gets that birthday as its end (CP-IS030), recorded as the service's own change;
//! - an item no longer retrievable is logically deleted: `delete_date` when its delete date has
//!   come (CP-IS009), otherwise `expired` (end + 365 days for CPP and LAC, CP-IS010 and CP-IS032;
//!   end + 28 days for an unborn plan, CP-IS011 and CP-IS033).
//!
//! End-dating applies to items expired in the same run too, so the stored state is the same as if
//! the job had run every day, whatever was missed.
//!
//! Set-based: one query finds the candidates (a superset, narrowed by the rules here), one UPDATE
//! from arrays end-dates, one logically deletes, and the audit entries are appended together. The
//! UPDATEs re-check each row, so a row an upload replaced meanwhile is left alone and not audited.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Nullable, Text, Timestamptz};
use serde_json::json;

use crate::audit::{self, Actor, Event};
use crate::domain::dates::{anniversary, uk_date};
use crate::domain::retrieval::{self, ItemDates, ItemKind};
use crate::error::AppError;

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Text)]
    la_code: String,
    #[diesel(sql_type = Text)]
    item_type: String,
    #[diesel(sql_type = Date)]
    start_date: NaiveDate,
    #[diesel(sql_type = Nullable<Date>)]
    end_date: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Date>)]
    delete_date: Option<NaiveDate>,
    #[diesel(sql_type = Date)]
    birth_date: NaiveDate,
    #[diesel(sql_type = Nullable<Text>)]
    superseded_by: Option<String>,
}

#[derive(QueryableByName)]
struct Linked {
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Nullable<Text>)]
    superseded_by: Option<String>,
    #[diesel(sql_type = Date)]
    birth_date: NaiveDate,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    invalidated: bool,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// What the rules decide for one item on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// CP-IS030: the end the item takes (the 18th birthday), when it changes.
    pub end_date: Option<NaiveDate>,
    /// The reason it is logically deleted, when it is: `delete_date` or `expired`.
    pub deleted_reason: Option<&'static str>,
    /// A CPP or LAC that started after the 18th birthday cannot take it as its end (the end may
    /// not precede the start); its retrievability is as the reads compute it all the same.
    pub started_after_18: bool,
}

/// The rules for one item on UK date `today` (pure; the same functions the reads use).
pub fn decide(kind: ItemKind, dates: &ItemDates, birth_date: NaiveDate, today: NaiveDate) -> Decision {
    let mut decision = Decision { end_date: None, deleted_reason: None, started_after_18: false };
    if !kind.is_unborn() {
        if let Some(effective) = retrieval::effective_end(kind, dates, birth_date) {
            if effective <= today && dates.end != Some(effective) {
                if effective >= dates.start {
                    decision.end_date = Some(effective);
                } else {
                    decision.started_after_18 = true;
                }
            }
        }
    }
    if !retrieval::is_retrievable(kind, dates, birth_date, today) {
        let by_delete = dates.delete.is_some_and(|d| d <= today);
        decision.deleted_reason = Some(if by_delete { "delete_date" } else { "expired" });
    }
    decision
}

/// The requirement behind a deletion, for the audit entry.
fn rule_of(kind: ItemKind, dates: &ItemDates, birth_date: NaiveDate, reason: &str) -> &'static str {
    if reason == "delete_date" {
        "CP-IS009"
    } else if kind.is_unborn() {
        "CP-IS011, CP-IS033"
    } else if dates.end.is_none_or(|e| e > anniversary(birth_date, 18)) {
        "CP-IS007, CP-IS030, CP-IS010, CP-IS032"
    } else {
        "CP-IS010, CP-IS032"
    }
}

pub fn run(
    conn: &mut PgConnection,
    _scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let today = uk_date(now);
    let t0 = std::time::Instant::now();
    // A superset of the items any rule may touch today: a delete date that has come, an end at
    // least 28 days ago, a CPP or LAC of someone 18 or nearly (two days' margin for 29 February),
    // and anything held under a superseded number (the reads use the current record's birth date).
    let candidates: Vec<Candidate> = diesel::sql_query(
        "SELECT i.id, i.nhs_number, i.la_code, i.item_type, i.start_date, i.end_date, i.delete_date, \
                p.birth_date, p.superseded_by \
         FROM cp_items i JOIN patients p ON p.nhs_number = i.nhs_number \
         WHERE i.deleted_at IS NULL AND ( \
               i.delete_date <= $1 \
            OR i.end_date < $1 - 27 \
            OR (i.item_type <> 'UCPP' AND p.birth_date <= ($1 - interval '18 years')::date + 2) \
            OR p.superseded_by IS NOT NULL) \
         ORDER BY i.id",
    )
    .bind::<Date, _>(today)
    .load(conn)?;
    let births = current_birth_dates(conn, &candidates)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, rows = candidates.len(), "expiry phase: candidates");

    let (mut end_ids, mut old_ends, mut new_ends) = (Vec::new(), Vec::new(), Vec::new());
    let (mut delete_ids, mut reasons) = (Vec::new(), Vec::new());
    let mut started_after_18 = 0;
    let mut decided = HashMap::new();
    for c in &candidates {
        let Some(kind) = ItemKind::from_code(&c.item_type) else { continue };
        let dates = ItemDates { start: c.start_date, end: c.end_date, delete: c.delete_date };
        let birth = births.get(&c.nhs_number).copied().unwrap_or(c.birth_date);
        let d = decide(kind, &dates, birth, today);
        if let Some(end) = d.end_date {
            end_ids.push(c.id);
            old_ends.push(c.end_date);
            new_ends.push(end);
        }
        if let Some(reason) = d.deleted_reason {
            delete_ids.push(c.id);
            reasons.push(reason);
        }
        started_after_18 += usize::from(d.started_after_18);
        if d.end_date.is_some() || d.deleted_reason.is_some() {
            decided.insert(c.id, (c, kind, dates, birth, d));
        }
    }

    // Only rows still as read are changed (and audited).
    let end_dated: HashSet<i64> = diesel::sql_query(
        "UPDATE cp_items SET end_date = u.new_end \
         FROM unnest($1::bigint[], $2::date[], $3::date[]) AS u(id, old_end, new_end) \
         WHERE cp_items.id = u.id AND cp_items.deleted_at IS NULL \
           AND cp_items.end_date IS NOT DISTINCT FROM u.old_end \
         RETURNING cp_items.id",
    )
    .bind::<Array<BigInt>, _>(&end_ids)
    .bind::<Array<Nullable<Date>>, _>(&old_ends)
    .bind::<Array<Date>, _>(&new_ends)
    .load::<Id>(conn)?
    .into_iter()
    .map(|r| r.id)
    .collect();
    let deleted: HashSet<i64> = diesel::sql_query(
        "UPDATE cp_items SET deleted_at = $1, deleted_reason = u.reason \
         FROM unnest($2::bigint[], $3::text[]) AS u(id, reason) \
         WHERE cp_items.id = u.id AND cp_items.deleted_at IS NULL \
         RETURNING cp_items.id",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Array<BigInt>, _>(&delete_ids)
    .bind::<Array<Text>, _>(&reasons)
    .load::<Id>(conn)?
    .into_iter()
    .map(|r| r.id)
    .collect();

    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "expiry phase: updates");
    // The audit, per item, in item order: the service's own changes, with before and after.
    let mut ids: Vec<&i64> = decided.keys().collect();
    ids.sort();
    let mut events = Vec::with_capacity(end_dated.len() + deleted.len());
    let (mut by_delete_date, mut expired) = (0, 0);
    for id in ids {
        let (c, kind, dates, birth, d) = &decided[id];
        if let (true, Some(end)) = (end_dated.contains(id), d.end_date) {
            events.push(Event::new(Actor::Service, "cp.item_end_dated").about(&c.nhs_number).details(json!({
                "item_id": c.id, "la_code": c.la_code, "type": c.item_type, "rule": "CP-IS030",
                "before": { "end": c.end_date }, "after": { "end": end },
            })));
        }
        if let (true, Some(reason)) = (deleted.contains(id), d.deleted_reason) {
            if reason == "delete_date" {
                by_delete_date += 1;
            } else {
                expired += 1;
            }
            events.push(Event::new(Actor::Service, "cp.item_expired").about(&c.nhs_number).details(json!({
                "item_id": c.id, "la_code": c.la_code, "type": c.item_type,
                "rule": rule_of(*kind, dates, *birth, reason),
                "last_retrievable_day": retrieval::last_retrievable_day(*kind, dates, *birth),
                "before": { "deleted_at": null, "deleted_reason": null },
                "after": { "deleted_at": now, "deleted_reason": reason },
            })));
        }
    }
    // An upload's entries are chained just after it commits, a large file's mostly by the
    // background chainer (src/audit/chainer.rs): any still pending are chained now, so this job's
    // changes follow the uploads whose items they change in the chain, which CP-IS075 replays in
    // order. The lock is then held to this job's commit, with its work already done.
    audit::lock_chain(conn)?;
    audit::chain_pending_locked(conn, i64::MAX)?;
    audit::record_many(conn, events)?;
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "expiry phase: audit");
    Ok(json!({
        "today": today,
        "checked": candidates.len(),
        "end_dated": end_dated.len(),
        "deleted_at_delete_date": by_delete_date,
        "expired": expired,
        "started_after_18": started_after_18,
    }))
}

/// The birth date the reads use for items under a superseded number: the current record's (the
/// end of the chain of supersessions, as `pds::patient::lookup` follows it).
fn current_birth_dates(
    conn: &mut PgConnection,
    candidates: &[Candidate],
) -> Result<HashMap<String, NaiveDate>, AppError> {
    if candidates.iter().all(|c| c.superseded_by.is_none()) {
        return Ok(HashMap::new());
    }
    let linked: Vec<Linked> = diesel::sql_query(
        "SELECT nhs_number, superseded_by, birth_date, invalidated FROM patients \
         WHERE superseded_by IS NOT NULL \
            OR nhs_number IN (SELECT superseded_by FROM patients WHERE superseded_by IS NOT NULL)",
    )
    .load(conn)?;
    let by_number: HashMap<&str, &Linked> = linked.iter().map(|l| (l.nhs_number.as_str(), l)).collect();
    let mut out = HashMap::new();
    for c in candidates.iter().filter(|c| c.superseded_by.is_some()) {
        let mut current = by_number.get(c.nhs_number.as_str()).copied();
        for _ in 0..10 {
            match current.and_then(|p| p.superseded_by.as_deref()) {
                Some(next) => current = by_number.get(next).copied(),
                None => break,
            }
        }
        // A chain that ends in an invalidated or missing record, or does not end: no record is
        // found for it, so its own birth date stands.
        if let Some(p) = current.filter(|p| p.superseded_by.is_none() && !p.invalidated) {
            out.insert(c.nhs_number.clone(), p.birth_date);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemKind::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dates(start: NaiveDate, end: Option<NaiveDate>, delete: Option<NaiveDate>) -> ItemDates {
        ItemDates { start, end, delete }
    }

    fn today() -> NaiveDate {
        date(2026, 11, 22)
    }

    #[test]
    fn an_ended_plan_expires_on_day_366() {
        let birth = date(2016, 1, 1);
        let end365 = today() - chrono::Days::new(365);
        let end366 = today() - chrono::Days::new(366);
        let kept = decide(ChildProtectionPlan, &dates(date(2020, 1, 1), Some(end365), None), birth, today());
        assert_eq!(kept.deleted_reason, None);
        let gone = decide(LookedAfterChild, &dates(date(2020, 1, 1), Some(end366), None), birth, today());
        assert_eq!(gone.deleted_reason, Some("expired"));
        assert_eq!(gone.end_date, None);
    }

    #[test]
    fn an_unborn_plan_expires_on_day_29_after_its_end() {
        let mother = date(1995, 1, 1);
        let end28 = today() - chrono::Days::new(28);
        let end29 = today() - chrono::Days::new(29);
        assert_eq!(
            decide(UnbornChildProtectionPlan, &dates(end28, Some(end28), None), mother, today()).deleted_reason,
            None
        );
        let d = decide(UnbornChildProtectionPlan, &dates(end29, Some(end29), None), mother, today());
        assert_eq!(d.deleted_reason, Some("expired"));
        assert_eq!(d.end_date, None, "no age rule for the mother");
    }

    #[test]
    fn the_delete_date_wins_on_the_day_itself() {
        let birth = date(2016, 1, 1);
        let d = decide(ChildProtectionPlan, &dates(date(2025, 1, 1), None, Some(today())), birth, today());
        assert_eq!(d.deleted_reason, Some("delete_date"));
        let tomorrow = today().succ_opt().unwrap();
        let d = decide(ChildProtectionPlan, &dates(date(2025, 1, 1), None, Some(tomorrow)), birth, today());
        assert_eq!(d.deleted_reason, None);
    }

    #[test]
    fn open_plans_are_end_dated_on_the_18th_birthday() {
        let birth = date(2008, 11, 22);
        let open = dates(date(2020, 1, 1), None, None);
        let late = dates(date(2020, 1, 1), Some(date(2027, 1, 1)), None);
        for kind in [ChildProtectionPlan, LookedAfterChild] {
            assert_eq!(decide(kind, &open, birth, today()).end_date, Some(today()), "the birthday itself");
            assert_eq!(decide(kind, &late, birth, today()).end_date, Some(today()));
            let day_before = today().pred_opt().unwrap();
            assert_eq!(decide(kind, &open, birth, day_before).end_date, None, "not before the birthday");
        }
        // Ended before the birthday: left alone.
        let ended = dates(date(2020, 1, 1), Some(date(2025, 1, 1)), None);
        assert_eq!(decide(ChildProtectionPlan, &ended, birth, today()).end_date, None);
        // Already end-dated: nothing to do.
        let done = dates(date(2020, 1, 1), Some(today()), None);
        assert_eq!(decide(ChildProtectionPlan, &done, birth, today()).end_date, None);
    }

    #[test]
    fn a_29_february_birthday_ends_on_28_february() {
        let birth = date(2008, 2, 29);
        let open = dates(date(2020, 1, 1), None, None);
        assert_eq!(decide(ChildProtectionPlan, &open, birth, date(2026, 2, 28)).end_date, Some(date(2026, 2, 28)));
        assert_eq!(decide(ChildProtectionPlan, &open, birth, date(2026, 2, 27)).end_date, None);
        // Gone on 18 years and 366 days, and end-dated in the same run.
        let d = decide(ChildProtectionPlan, &open, birth, date(2027, 3, 1));
        assert_eq!(d.end_date, Some(date(2026, 2, 28)));
        assert_eq!(d.deleted_reason, Some("expired"));
        assert_eq!(rule_of(ChildProtectionPlan, &open, birth, "expired"), "CP-IS007, CP-IS030, CP-IS010, CP-IS032");
    }

    #[test]
    fn a_plan_started_after_the_18th_birthday_keeps_its_dates() {
        // 18 on 2024-06-01; a LAC from 2024-08-01 cannot end before it starts.
        let birth = date(2006, 6, 1);
        let d = decide(LookedAfterChild, &dates(date(2024, 8, 1), None, None), birth, date(2025, 1, 1));
        assert!(d.started_after_18);
        assert_eq!(d.end_date, None);
        assert_eq!(d.deleted_reason, None);
        // It goes when the reads stop showing it: 18 years and 365 days.
        let d = decide(LookedAfterChild, &dates(date(2024, 8, 1), None, None), birth, date(2025, 6, 2));
        assert_eq!(d.deleted_reason, Some("expired"));
    }

    #[test]
    fn the_decision_agrees_with_the_reads_on_every_day() {
        // Over two years around a birthday, with every kind of dates: deleted exactly when the
        // reads stop showing it, end-dated exactly when the reads show the birthday as its end.
        let birth = date(2008, 2, 29);
        let cases = [
            dates(date(2020, 1, 1), None, None),
            dates(date(2020, 1, 1), Some(date(2025, 6, 1)), None),
            dates(date(2020, 1, 1), Some(date(2027, 6, 1)), None),
            dates(date(2020, 1, 1), None, Some(date(2026, 9, 1))),
        ];
        let mut day = date(2025, 6, 1);
        while day < date(2027, 6, 1) {
            for kind in ItemKind::ALL {
                for c in &cases {
                    if kind.is_unborn() && c.end.is_none() {
                        continue;
                    }
                    let d = decide(kind, c, birth, day);
                    assert_eq!(d.deleted_reason.is_some(), !retrieval::is_retrievable(kind, c, birth, day));
                    let item = crate::cpis::items::CpItem {
                        id: 1,
                        nhs_number: "9990000018".into(),
                        la_code: "E10000016".into(),
                        item_type: kind.code().into(),
                        la_child_id: "x".into(),
                        start_date: c.start,
                        end_date: c.end,
                        delete_date: c.delete,
                    };
                    let shown = item.shown_end(birth, day);
                    let stored = d.end_date.or(c.end);
                    assert_eq!(stored, shown, "{kind:?} {c:?} on {day}");
                }
            }
            day = day.succ_opt().unwrap();
        }
    }
}
