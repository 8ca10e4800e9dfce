//! Audit retention (CP-IS076), the daily job: access events and audit entries about a child past
//! their retention ([`crate::domain::retention`]: the 26th birthday, or 8 years after a death as a
//! child) are purged, and the rest of the audit chain stays verifiable (CP-IS074).
//!
//! How an audit entry is purged without breaking the chain (migration 009, `audit::verify`):
//!
//! 1. its links (id, predecessor's hash, own hash; no personal data) are copied to the append-only
//!    `audit_purged`, naming the purge's checkpoint;
//! 2. the checkpoint, an `audit.purged` entry appended to the chain by the service, records how many
//!    links were left, their id range and a SHA-256 over them, with counts of what was removed;
//! 3. the entries are deleted, which the database allows only in a transaction that has set
//!    `cpis.audit_purge` and only for entries about a child whose links are already in
//!    `audit_purged` unchanged (UPDATE and TRUNCATE stay refused, and so does any other DELETE).
//!
//! The verifier then walks one chain over both tables: remaining entries in full, purged ones by
//! their links, each checkpoint against the links recorded under it.
//!
//! A child is looked up by the NHS number the entries carry. A superseded number is the same child
//! under an earlier number, so its dates are taken from the record it was superseded by. Entries
//! naming a number the demographic store does not hold are kept: nothing says when they expire.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Date, Nullable, Text, Timestamptz};
use serde_json::json;

use crate::audit::chain::{SegmentDigest, PURGE_ACTION};
use crate::audit::{self, Actor, Event};
use crate::domain::{dates, retention};
use crate::error::AppError;
use crate::schema::audit_log;

/// Serialises purges, so two runs at once (a manual run beside the scheduled one) do not both
/// try to purge the same entries: the second waits, then finds nothing left.
const RETENTION_LOCK: i64 = 0x4350_4953_5245_544E; // "CPISRETN"

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Date)]
    birth_date: NaiveDate,
    #[diesel(sql_type = Nullable<Date>)]
    death_date: Option<NaiveDate>,
}

pub fn run(
    conn: &mut PgConnection,
    scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let _ = scheduled_for;
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<BigInt, _>(RETENTION_LOCK).execute(conn)?;
    let today = dates::uk_date(now);

    // A generous superset in SQL (anyone 25 or more, or dead 7 years or more, with something to
    // purge); the rule itself is applied below, in one place. A number for which information is
    // still held (not logically deleted), under it or under the number it was superseded by or
    // into, is never purged: its access history is shown until the whole record is gone
    // (CP-IS028, CP-IS039). That covers an adult mother's unborn child protection plan, filed on
    // her number.
    let candidates: Vec<Candidate> = diesel::sql_query(
        "SELECT p.nhs_number, \
                coalesce(cur.birth_date, p.birth_date) AS birth_date, \
                coalesce(cur.death_date, p.death_date) AS death_date \
         FROM patients p LEFT JOIN patients cur ON cur.nhs_number = p.superseded_by \
         WHERE (coalesce(cur.birth_date, p.birth_date) < $1 OR coalesce(cur.death_date, p.death_date) < $2) \
           AND (EXISTS (SELECT 1 FROM audit_log a WHERE a.nhs_number = p.nhs_number) \
                OR EXISTS (SELECT 1 FROM access_events e WHERE e.nhs_number = p.nhs_number)) \
           AND NOT EXISTS (SELECT 1 FROM cp_items i WHERE i.deleted_at IS NULL \
                           AND (i.nhs_number = p.nhs_number OR i.nhs_number = p.superseded_by \
                                OR i.nhs_number IN (SELECT o.nhs_number FROM patients o WHERE o.superseded_by = p.nhs_number))) \
         ORDER BY p.nhs_number",
    )
    .bind::<Date, _>(dates::anniversary(today, -25))
    .bind::<Date, _>(dates::anniversary(today, -7))
    .load(conn)?;
    let numbers: Vec<String> = candidates
        .into_iter()
        .filter(|c| retention::purgeable(c.birth_date, c.death_date, today))
        .map(|c| c.nhs_number)
        .collect();
    if numbers.is_empty() {
        return Ok(summary(0, 0, 0, None));
    }

    let access_events = diesel::sql_query("DELETE FROM access_events WHERE nhs_number = ANY($1)")
        .bind::<Array<Text>, _>(&numbers)
        .execute(conn)?;

    // The links of the entries to purge, in chain order. Entries about these children appended
    // after this read (by a transaction still running) are purged by the next run.
    let links: Vec<(i64, Vec<u8>, Vec<u8>)> = audit_log::table
        .filter(audit_log::nhs_number.eq_any(&numbers))
        .order(audit_log::id)
        .select((audit_log::id, audit_log::prev_hash, audit_log::hash))
        .load(conn)?;
    let mut digest = SegmentDigest::new();
    for (id, prev_hash, hash) in &links {
        digest.add(*id, prev_hash, hash);
    }
    let segment = digest.finish();
    let ids: Vec<i64> = links.iter().map(|l| l.0).collect();

    // The checkpoint: appended after every entry it covers, so later in the chain than all of them.
    let mut details = serde_json::to_value(&segment).map_err(AppError::internal)?;
    details["reason"] = json!("retention");
    details["children"] = json!(numbers.len());
    details["access_events"] = json!(access_events);
    audit::append_now(conn, vec![Event::new(Actor::Service, PURGE_ACTION).details(details)])?;
    // `append_now` holds the append lock until this transaction ends, so the newest entry is our
    // checkpoint (read from the end of the primary key; no index on the action is needed).
    let (checkpoint_id, action): (i64, String) =
        audit_log::table.order(audit_log::id.desc()).select((audit_log::id, audit_log::action)).first(conn)?;
    if action != PURGE_ACTION {
        return Err(AppError::Internal(format!("the newest audit entry is {action}, not the purge's checkpoint")));
    }

    if !ids.is_empty() {
        diesel::sql_query(
            "INSERT INTO audit_purged (entry_id, prev_hash, hash, checkpoint_id, purged_at, reason) \
             SELECT id, prev_hash, hash, $2, $3, 'retention' FROM audit_log WHERE id = ANY($1) ORDER BY id",
        )
        .bind::<Array<BigInt>, _>(&ids)
        .bind::<BigInt, _>(checkpoint_id)
        .bind::<Timestamptz, _>(now)
        .execute(conn)?;
        diesel::sql_query("SELECT set_config('cpis.audit_purge', 'on', true)").execute(conn)?;
        let deleted = diesel::sql_query("DELETE FROM audit_log WHERE id = ANY($1)")
            .bind::<Array<BigInt>, _>(&ids)
            .execute(conn)?;
        diesel::sql_query("SELECT set_config('cpis.audit_purge', 'off', true)").execute(conn)?;
        if deleted != ids.len() {
            return Err(AppError::Internal(format!("retention purged {deleted} audit entries of {}", ids.len())));
        }
    }
    Ok(summary(numbers.len(), access_events, ids.len(), Some(checkpoint_id)))
}

/// What the job row keeps: counts, never NHS numbers.
fn summary(children: usize, access_events: usize, audit_entries: usize, checkpoint: Option<i64>) -> serde_json::Value {
    json!({
        "children": children,
        "access_events_deleted": access_events,
        "audit_entries_purged": audit_entries,
        "checkpoint_entry_id": checkpoint,
    })
}
