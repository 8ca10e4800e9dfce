//! The Child Care Alert tab (CP-IS049 to CP-IS058, CP-IS067): whether it exists for a viewer, and
//! opening it, which reads what it shows and records the access in one transaction.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;

use super::access::{self, HistoryEntry, Viewer};
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
/// nothing for this viewer to see.
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
    // CP-IS058, CP-IS067: the access is recorded the moment the tab is opened.
    let recorded = access::record(conn, &patient.nhs_number, viewer, now)?;
    let history = access::history(conn, linked)?;
    let authorities = group_by_authority(visible, held_by, patient.birth_date, today);
    audit::record(
        conn,
        Event::new(actor, "access.alert_tab_opened").about(&patient.nhs_number).details(serde_json::json!({
            "access_event_id": recorded.id,
            "shown": recorded.shown,
            "job_role": viewer.job_role_code,
            "organisation": viewer.organisation_code,
            "channel": viewer.channel.code(),
        })),
    )?;
    Ok(Some(AlertTab { authorities, history, access_shown: recorded.shown }))
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
