//! Recomputes the chain from the first entry (CP-IS074).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::chain::{entry_hash, EntryFields, GENESIS};
use crate::schema::audit_log;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64 },
    Broken { entry_id: i64, reason: String },
}

type Row = (i64, DateTime<Utc>, String, String, Option<String>, serde_json::Value, Vec<u8>, Vec<u8>);

/// Walks the whole trail in id order, in pages, and names the first entry that does not fit.
pub fn verify(conn: &mut PgConnection) -> QueryResult<Verdict> {
    let mut expected_prev = GENESIS.to_vec();
    let mut last_id = 0i64;
    let mut count = 0u64;
    loop {
        let page: Vec<Row> = audit_log::table
            .filter(audit_log::id.gt(last_id))
            .order(audit_log::id)
            .limit(5000)
            .select((
                audit_log::id,
                audit_log::occurred_at,
                audit_log::actor,
                audit_log::action,
                audit_log::nhs_number,
                audit_log::details,
                audit_log::prev_hash,
                audit_log::hash,
            ))
            .load(conn)?;
        if page.is_empty() {
            return Ok(Verdict::Intact { entries: count });
        }
        for (id, occurred_at, actor, action, nhs_number, details, prev_hash, hash) in page {
            if prev_hash != expected_prev {
                return Ok(Verdict::Broken {
                    entry_id: id,
                    reason:
                        "its predecessor hash does not match the entry before it (an entry was removed or inserted)"
                            .into(),
                });
            }
            let fields = EntryFields {
                occurred_at,
                actor: &actor,
                action: &action,
                nhs_number: nhs_number.as_deref(),
                details: &details,
            };
            if entry_hash(&prev_hash, &fields)[..] != hash[..] {
                return Ok(Verdict::Broken {
                    entry_id: id,
                    reason: "its contents do not match its hash (the entry was altered)".into(),
                });
            }
            expected_prev = hash;
            last_id = id;
            count += 1;
        }
    }
}
