//! Message 06, the Inactive NHS Number Notification (CP-IS012, CP-IS023): when PDS supersedes or
//! invalidates a number, every LA holding an item for it that is not yet logically deleted is
//! told, with the new number where there is one. The information stays under the old number
//! until the LA resubmits.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::audit::{self, Actor, Event};
use crate::error::AppError;
use crate::mailbox::inbox::{self, NewMessage};
use crate::mailbox::transmissions;
use crate::messages::inactive::{InactiveNotice, InactiveReason, InactiveRecord};
use crate::schema::cp_items;

/// A number whose PDS state has just become superseded or invalidated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub nhs_number: String,
    pub reason: InactiveReason,
    pub new_nhs_number: Option<String>,
}

/// Which numbers changed state: compares the state before an import with the state after.
/// Importing the same row again changes nothing, so it sends nothing.
pub fn changes(
    before: &BTreeMap<String, (Option<String>, bool)>,
    after: &[(String, Option<String>, bool)],
) -> Vec<StateChange> {
    after
        .iter()
        .filter_map(|(nhs, superseded_by, invalidated)| {
            let old = before.get(nhs).cloned().unwrap_or((None, false));
            if old == (superseded_by.clone(), *invalidated) {
                return None;
            }
            if *invalidated {
                Some(StateChange { nhs_number: nhs.clone(), reason: InactiveReason::Invalidated, new_nhs_number: None })
            } else {
                superseded_by.as_ref().map(|new| StateChange {
                    nhs_number: nhs.clone(),
                    reason: InactiveReason::Superseded,
                    new_nhs_number: Some(new.clone()),
                })
            }
        })
        .collect()
}

/// Sends message 06 to each LA holding current items for the changed numbers; returns how many
/// messages were sent. Call inside the import's transaction.
pub fn notify(
    conn: &mut PgConnection,
    changed: &[StateChange],
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<usize, AppError> {
    if changed.is_empty() {
        return Ok(0);
    }
    let numbers: Vec<&str> = changed.iter().map(|c| c.nhs_number.as_str()).collect();
    let held: Vec<(String, String, String)> = cp_items::table
        .filter(cp_items::nhs_number.eq_any(&numbers))
        .filter(cp_items::deleted_at.is_null())
        .select((cp_items::la_code, cp_items::nhs_number, cp_items::la_child_id))
        .distinct()
        .order((cp_items::la_code, cp_items::nhs_number))
        .load(conn)?;
    let mut by_la: BTreeMap<String, Vec<InactiveRecord>> = BTreeMap::new();
    for (la, nhs, child) in held {
        let Some(change) = changed.iter().find(|c| c.nhs_number == nhs) else { continue };
        let records = by_la.entry(la).or_default();
        if records.iter().any(|r| r.nhs_number == nhs) {
            continue;
        }
        records.push(InactiveRecord {
            nhs_number: nhs,
            la_child_id: child,
            reason: change.reason,
            new_nhs_number: change.new_nhs_number.clone(),
        });
    }
    let mut events = Vec::new();
    for (la, records) in &by_la {
        let notice = InactiveNotice {
            message_id: Uuid::new_v4(),
            la_ods_code: la.clone(),
            created: now,
            records: records.clone(),
        };
        let xml = notice.to_xml();
        inbox::put(
            conn,
            &NewMessage {
                id: notice.message_id,
                la_code: la,
                message_type: "06",
                created_at: now,
                body: &xml,
                upload_id: None,
            },
        )?;
        transmissions::log_out(conn, la, "06", Some(notice.message_id.to_string()), "mailbox", now)?;
        for r in records {
            events.push(
                Event::new(actor.clone(), "cp.number_inactive_notified").about(&r.nhs_number).details(serde_json::json!({
                    "la_code": la, "message_id": notice.message_id,
                    "reason": match r.reason { InactiveReason::Superseded => "superseded", InactiveReason::Invalidated => "invalidated" },
                    "new_nhs_number": r.new_nhs_number,
                })),
            );
        }
    }
    audit::record_many(conn, events)?;
    Ok(by_la.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_into_an_inactive_state_counts() {
        let mut before = BTreeMap::new();
        before.insert("9990000026".to_owned(), (None, false));
        before.insert("9990000042".to_owned(), (Some("9990000034".to_owned()), false));
        let after = vec![
            ("9990000026".to_owned(), Some("9990000034".to_owned()), false), // newly superseded
            ("9990000042".to_owned(), Some("9990000034".to_owned()), false), // the same again: nothing
            ("9990000050".to_owned(), None, true),                           // new and invalidated
            ("9990000069".to_owned(), None, false),                          // active: nothing
        ];
        let c = changes(&before, &after);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].reason, InactiveReason::Superseded);
        assert_eq!(c[0].new_nhs_number.as_deref(), Some("9990000034"));
        assert_eq!(c[1].reason, InactiveReason::Invalidated);
    }
}
