//! The Child Care Alert tab (CP-IS049 to CP-IS058, CP-IS067): whether it exists for a viewer, and
//! opening it, which reads what it shows and records the access in one transaction.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;

use super::access::{self, HistoryEntry, NewAccess, Recorded, Viewer};
use super::items::{self, CpItem};
use super::local_authority::LocalAuthority;
use crate::audit::{self, Actor, Event};
use crate::domain::dates;
use crate::domain::retrieval::ItemKind;
use crate::error::AppError;
use crate::pds::Patient;

/// One LA's block on the tab.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorityBlock {
    pub authority: LocalAuthority,
    pub items: Vec<ShownItem>,
}

/// An item as the tab shows it: never the LA's child id nor the delete date (CP-IS051).
#[derive(Debug, Clone, PartialEq)]
pub struct ShownItem {
    /// The stored item's id: the FHIR API derives its stable resource id from it (never shown).
    pub item_id: i64,
    pub kind: ItemKind,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertTab {
    pub authorities: Vec<AuthorityBlock>,
    pub history: Vec<HistoryEntry>,
    /// Whether this opening was itself shown (the first access by this user in 24 hours).
    pub access_shown: bool,
}

/// What the viewer may see for the child today; empty means there is no tab (CP-IS055).
pub fn visible_items(
    conn: &mut PgConnection,
    patient: &Patient,
    linked: &[String],
    may_see_unborn: bool,
    today: NaiveDate,
) -> QueryResult<Vec<CpItem>> {
    let all = items::current_for(conn, linked)?;
    Ok(items::visible(all, patient.birth_date, today, may_see_unborn))
}

/// Opens the tab: locks the child's record, reads what the viewer may see, records the access and
/// its audit entry, all in the caller's transaction. `None` (and nothing recorded) when there is
/// nothing for this viewer to see. The service's requests open the tab in two steps instead
/// ([`authorities`], then [`record_openings`] through the access recorder, src/cpis/recorder.rs).
pub fn open(
    conn: &mut PgConnection,
    patient: &Patient,
    linked: &[String],
    viewer: &Viewer,
    may_see_unborn: bool,
    now: DateTime<Utc>,
) -> Result<Option<AlertTab>, AppError> {
    let actor = viewer.user_id.map_or(Actor::Anonymous, Actor::User);
    open_as(conn, patient, linked, viewer, may_see_unborn, actor, now)
}

/// [`open`] with the audit trail's actor named by the caller: the FHIR API records an access on
/// behalf of an NHS system (`Actor::NhsSystem`), whose end user has no account here.
pub fn open_as(
    conn: &mut PgConnection,
    patient: &Patient,
    linked: &[String],
    viewer: &Viewer,
    may_see_unborn: bool,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<Option<AlertTab>, AppError> {
    // Accesses to one child are decided one after another (CP-IS047 depends on the order): the
    // child's record is locked by the statement that reads the items. The items are as they were
    // when that statement began (an upload committed while it waited for the lock shows from the
    // next opening on); who saw the child last is read by a later statement, after the lock.
    let held = items::lock_and_read_held(conn, &patient.nhs_number, linked)?;
    let today = dates::uk_date(now);
    let (visible, held_by) = visible_held(held, patient, may_see_unborn, today);
    if visible.is_empty() {
        return Ok(None);
    }
    let opening = AccessOpening { nhs_number: &patient.nhs_number, viewer, actor, at: now };
    let recorded = record_locked(conn, &[opening])?.remove(0);
    let history = access::history(conn, linked)?;
    let authorities = group_by_authority(visible, held_by, patient.birth_date, today);
    Ok(Some(AlertTab { authorities, history, access_shown: recorded.shown }))
}

/// What the tab shows the viewer today, by authority, read without locking or recording anything:
/// empty when there is no tab for this viewer (CP-IS055). The first step of an opening; the access
/// is recorded next ([`record_openings`]), when this is not empty.
pub fn authorities(
    conn: &mut PgConnection,
    patient: &Patient,
    linked: &[String],
    may_see_unborn: bool,
    now: DateTime<Utc>,
) -> QueryResult<Vec<AuthorityBlock>> {
    let today = dates::uk_date(now);
    let (visible, held_by) = visible_held(items::current_held(conn, linked)?, patient, may_see_unborn, today);
    Ok(group_by_authority(visible, held_by, patient.birth_date, today))
}

/// An opening of the tab to record: whose record, who is looking, who the audit trail names as
/// acting, and when.
#[derive(Debug, Clone)]
pub struct AccessOpening<'a> {
    pub nhs_number: &'a str,
    pub viewer: &'a Viewer,
    pub actor: Actor,
    pub at: DateTime<Utc>,
}

/// Records openings of the tab, in the order given, with their audit entries (CP-IS058, CP-IS067),
/// in the caller's transaction: first every child's record is locked, in NHS number order (so two
/// callers never wait for each other crosswise), and accesses to one child are decided one after
/// another (CP-IS047).
pub fn record_openings(conn: &mut PgConnection, openings: &[AccessOpening<'_>]) -> Result<Vec<Recorded>, AppError> {
    let mut children: Vec<String> = openings.iter().map(|o| o.nhs_number.to_owned()).collect();
    children.sort_unstable();
    children.dedup();
    lock_children(conn, children)?;
    record_locked(conn, openings)
}

/// Locks the children's patient rows `FOR NO KEY UPDATE` (as `items::lock_and_read_held`), in the
/// order given. The array is read through a sub-select so that PostgreSQL keeps one generic plan.
fn lock_children(conn: &mut PgConnection, sorted: Vec<String>) -> QueryResult<()> {
    use diesel::sql_types::{Array, Text};
    crate::db::prepared::sql(
        "SELECT 1 FROM patients WHERE nhs_number = ANY(((SELECT $1))::text[]) \
         ORDER BY nhs_number FOR NO KEY UPDATE",
    )
    .bind::<Array<Text>, _>(sorted)
    .execute(conn)?;
    Ok(())
}

/// [`record_openings`] for children whose records the caller has locked.
fn record_locked(conn: &mut PgConnection, openings: &[AccessOpening<'_>]) -> Result<Vec<Recorded>, AppError> {
    let accesses: Vec<NewAccess<'_>> =
        openings.iter().map(|o| NewAccess { nhs_number: o.nhs_number, viewer: o.viewer, at: o.at }).collect();
    let recorded = access::record_many(conn, &accesses)?;
    let events = openings
        .iter()
        .zip(&recorded)
        .map(|(o, r)| {
            Event::new(o.actor.clone(), "access.alert_tab_opened").about(o.nhs_number).details(serde_json::json!({
                "access_event_id": r.id,
                "shown": r.shown,
                "job_role": o.viewer.job_role_code,
                "organisation": o.viewer.organisation_code,
                "channel": o.viewer.channel.code(),
            }))
        })
        .collect();
    audit::record_many(conn, events)?;
    Ok(recorded)
}

/// What the tab would show, without opening it: nothing is locked or recorded. For reads that are
/// not themselves an access (a scheduled FHIR query, the FHIR access history). `None` when there is
/// nothing for this viewer to see; `access_shown` is then meaningless and false.
pub fn read(
    conn: &mut PgConnection,
    patient: &Patient,
    linked: &[String],
    may_see_unborn: bool,
    now: DateTime<Utc>,
) -> Result<Option<AlertTab>, AppError> {
    let today = dates::uk_date(now);
    let (visible, held_by) = visible_held(items::current_held(conn, linked)?, patient, may_see_unborn, today);
    if visible.is_empty() {
        return Ok(None);
    }
    let history = access::history(conn, linked)?;
    let authorities = group_by_authority(visible, held_by, patient.birth_date, today);
    Ok(Some(AlertTab { authorities, history, access_shown: false }))
}

/// The items the viewer may see today ([`items::visible`]), and the authorities holding any item.
fn visible_held(
    held: Vec<items::HeldItem>,
    patient: &Patient,
    may_see_unborn: bool,
    today: NaiveDate,
) -> (Vec<CpItem>, Vec<LocalAuthority>) {
    let mut authorities: Vec<LocalAuthority> = Vec::new();
    let mut all = Vec::with_capacity(held.len());
    for h in held {
        if !authorities.iter().any(|a| a.code == h.authority.code) {
            authorities.push(h.authority);
        }
        all.push(h.item);
    }
    (items::visible(all, patient.birth_date, today, may_see_unborn), authorities)
}

/// One block per authority holding a visible item, in name order.
fn group_by_authority(
    visible: Vec<CpItem>,
    authorities: Vec<LocalAuthority>,
    birth_date: NaiveDate,
    today: NaiveDate,
) -> Vec<AuthorityBlock> {
    let mut blocks: Vec<AuthorityBlock> = authorities
        .into_iter()
        .filter(|authority| visible.iter().any(|i| i.la_code == authority.code))
        .map(|authority| {
            let mut items: Vec<ShownItem> = visible
                .iter()
                .filter(|i| i.la_code == authority.code)
                .map(|i| ShownItem {
                    item_id: i.id,
                    kind: i.kind(),
                    start: i.start_date,
                    end: i.shown_end(birth_date, today),
                })
                .collect();
            items.sort_by_key(|i| (i.kind, i.start));
            AuthorityBlock { authority, items }
        })
        .collect();
    blocks.sort_by_key(|b| b.authority.name().to_lowercase());
    blocks
}
