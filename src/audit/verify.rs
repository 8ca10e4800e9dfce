//! Recomputes the chain from the first entry (CP-IS074), across the entries purged by retention
//! (CP-IS076).
//!
//! The chain is walked in id order over two tables merged: `audit_log`, whose entries are checked
//! in full (the predecessor's hash, and the entry's own hash over its contents), and `audit_purged`,
//! the links that purged entries left behind, checked for continuity only (their contents are gone,
//! so only their place in the chain can be checked). Each purge's checkpoint entry (action
//! [`PURGE_ACTION`], itself checked in full) must describe exactly the links recorded under it, and
//! every link must belong to a checkpoint later in the chain.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::chain::{entry_hash, EntryFields, PurgedSegment, SegmentDigest, GENESIS, PURGE_ACTION};
use crate::schema::{audit_log, audit_purged};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The chain holds together: `entries` entries were checked in full, and `purged` links of
    /// entries purged by retention were checked for their place in the chain (not their contents,
    /// which are gone).
    Intact {
        entries: u64,
        purged: u64,
    },
    Broken {
        entry_id: i64,
        reason: String,
    },
}

const PAGE: i64 = 5000;

type Row = (i64, DateTime<Utc>, String, String, Option<String>, serde_json::Value, Vec<u8>, Vec<u8>);

/// A purged entry's link: id, predecessor's hash, own hash, and the checkpoint that recorded it.
type Link = (i64, Vec<u8>, Vec<u8>, i64);

const REMOVED: &str = "its predecessor hash does not match the entry before it (an entry was removed or inserted)";

/// Walks the whole trail in id order, in pages, and names the first entry that does not fit.
pub fn verify(conn: &mut PgConnection) -> QueryResult<Verdict> {
    let mut entries = Pages::new(|conn: &mut PgConnection, after: i64| {
        audit_log::table
            .filter(audit_log::id.gt(after))
            .order(audit_log::id)
            .limit(PAGE)
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
            .load::<Row>(conn)
    });
    let mut links = Pages::new(|conn: &mut PgConnection, after: i64| {
        audit_purged::table
            .filter(audit_purged::entry_id.gt(after))
            .order(audit_purged::entry_id)
            .limit(PAGE)
            .select((audit_purged::entry_id, audit_purged::prev_hash, audit_purged::hash, audit_purged::checkpoint_id))
            .load::<Link>(conn)
    });

    let mut expected_prev = GENESIS.to_vec();
    let mut checked = 0u64;
    let mut purged = 0u64;
    // Links walked so far whose checkpoint is still ahead, by checkpoint id.
    let mut open: BTreeMap<i64, (i64, SegmentDigest)> = BTreeMap::new();
    loop {
        let next_entry = entries.peek_id(conn, |r| r.0)?;
        let next_link = links.peek_id(conn, |l| l.0)?;
        match (next_entry, next_link) {
            (None, None) => break,
            (Some(e), Some(l)) if e == l => {
                return Ok(Verdict::Broken {
                    entry_id: e,
                    reason: "it is recorded as purged but is still present".into(),
                });
            }
            (Some(e), l) if l.is_none_or(|l| e < l) => {
                let Some((id, occurred_at, actor, action, nhs_number, details, prev_hash, hash)) = entries.pop() else {
                    break;
                };
                if prev_hash != expected_prev {
                    return Ok(Verdict::Broken { entry_id: id, reason: REMOVED.into() });
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
                if action == PURGE_ACTION {
                    let recorded = PurgedSegment::from_details(&details);
                    let found = open.remove(&id).map(|(_, d)| d).unwrap_or_default().finish();
                    if recorded.as_ref() != Some(&found) {
                        return Ok(Verdict::Broken {
                            entry_id: id,
                            reason: "the purged links recorded under this checkpoint do not match it \
                                     (a purged link was added, removed or altered)"
                                .into(),
                        });
                    }
                }
                expected_prev = hash;
                checked += 1;
            }
            _ => {
                let Some((id, prev_hash, hash, checkpoint_id)) = links.pop() else {
                    break;
                };
                if prev_hash != expected_prev {
                    return Ok(Verdict::Broken { entry_id: id, reason: REMOVED.into() });
                }
                if checkpoint_id <= id {
                    return Ok(Verdict::Broken {
                        entry_id: id,
                        reason: "it is recorded as purged under a checkpoint that precedes it".into(),
                    });
                }
                open.entry(checkpoint_id).or_insert_with(|| (id, SegmentDigest::new())).1.add(id, &prev_hash, &hash);
                expected_prev = hash;
                purged += 1;
            }
        }
    }
    // Links whose checkpoint never came (it is missing, or is not a checkpoint).
    if let Some(first) = open.values().map(|(first, _)| *first).min() {
        return Ok(Verdict::Broken {
            entry_id: first,
            reason: "it is recorded as purged but no checkpoint in the chain records its purge".into(),
        });
    }
    Ok(Verdict::Intact { entries: checked, purged })
}

/// One table read in id order, a page at a time.
struct Pages<T, F> {
    buffer: VecDeque<T>,
    after: i64,
    exhausted: bool,
    fetch: F,
}

impl<T, F: FnMut(&mut PgConnection, i64) -> QueryResult<Vec<T>>> Pages<T, F> {
    fn new(fetch: F) -> Self {
        Pages { buffer: VecDeque::new(), after: 0, exhausted: false, fetch }
    }

    /// The id of the next row, reading the next page when the buffer is empty.
    fn peek_id(&mut self, conn: &mut PgConnection, id: impl Fn(&T) -> i64) -> QueryResult<Option<i64>> {
        if self.buffer.is_empty() && !self.exhausted {
            let page = (self.fetch)(conn, self.after)?;
            self.exhausted = (page.len() as i64) < PAGE;
            if let Some(last) = page.last() {
                self.after = id(last);
            }
            self.buffer.extend(page);
        }
        Ok(self.buffer.front().map(id))
    }

    fn pop(&mut self) -> Option<T> {
        self.buffer.pop_front()
    }
}
