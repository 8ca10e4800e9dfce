//! Recomputes the chain from the first entry (CP-IS074), across the entries purged by retention
//! (CP-IS076), and checks the signed checkpoints against it.
//!
//! The chain is walked in id order over two tables merged: `audit_log`, whose entries are checked
//! in full (the predecessor's hash, and the entry's own hash over its contents), and `audit_purged`,
//! the links that purged entries left behind, checked for continuity only (their contents are gone,
//! so only their place in the chain can be checked). Each purge's checkpoint entry (action
//! [`PURGE_ACTION`], itself checked in full) must describe exactly the links recorded under it, and
//! every link must belong to a checkpoint later in the chain.
//!
//! [`verify`] is that walk alone. [`verify_all`] adds the signed checkpoints
//! ([`super::checkpoint`]) when a key is configured: every checkpoint follows the previous one's
//! signature, was signed under the configured key and matches its signature; the entry each one
//! signed is in the chain with the hash it signed (so a chain rewritten with every hash recomputed
//! fails at the first signed head); and every `audit.checkpointed` entry names a checkpoint that is
//! still there (so removing the latest checkpoint fails too). [`verify_and_record`] also keeps the
//! run in `audit_verifications` and audits it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use super::chain::{entry_hash, EntryFields, PurgedSegment, SegmentDigest, GENESIS, PURGE_ACTION};
use super::checkpoint::{self, Checkpoint, CHECKPOINT_ACTION};
use super::{Actor, Event};
use crate::config::AuditKey;
use crate::error::AppError;
use crate::schema::{audit_log, audit_purged, audit_verifications, users};

/// The chain alone: [`verify`]'s answer.
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
/// Checks the hash chain only; [`verify_all`] checks the signed checkpoints too.
pub fn verify(conn: &mut PgConnection) -> QueryResult<Verdict> {
    let walked = walk(conn, |_| None)?;
    Ok(match walked.broken {
        None => Verdict::Intact { entries: walked.entries, purged: walked.purged },
        Some(b) => Verdict::Broken { entry_id: b.entry_id, reason: b.reason },
    })
}

/// What [`verify_all`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked in full (up to the first problem).
    pub entries: u64,
    /// Links of purged entries checked for their place in the chain.
    pub purged: u64,
    pub checkpoints: Checkpoints,
    /// The first problem, `None` when everything checked holds.
    pub broken: Option<Broken>,
}

/// Whether the signed checkpoints were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// No key is configured: the chain was checked, the checkpoints were not.
    NotChecked,
    /// Checked with the configured key: how many held (all of them when nothing is broken).
    Checked(u64),
}

/// The first thing that does not hold: the chain's entry (or purged link) it is at, the
/// checkpoint concerned if any, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub entry_id: i64,
    pub checkpoint_id: Option<i64>,
    pub reason: String,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }

    pub fn checkpoints_checked(&self) -> u64 {
        match self.checkpoints {
            Checkpoints::NotChecked => 0,
            Checkpoints::Checked(n) => n,
        }
    }

    /// One line for people: the outcome and its counts, or the first problem.
    pub fn summary(&self) -> String {
        let checkpoints = match self.checkpoints {
            Checkpoints::NotChecked => "signed checkpoints not checked (no audit key is configured)".to_owned(),
            Checkpoints::Checked(n) => format!("{n} signed checkpoint(s) verified"),
        };
        match &self.broken {
            None => format!(
                "the audit trail is intact: {} entries checked, {} purged links in place, {checkpoints}",
                self.entries, self.purged
            ),
            Some(b) => match b.checkpoint_id {
                Some(c) => format!("the audit trail is broken at entry {} (checkpoint {c}): {}", b.entry_id, b.reason),
                None => format!("the audit trail is broken at entry {}: {}", b.entry_id, b.reason),
            },
        }
    }
}

/// Checks the chain and, with a key, the signed checkpoints against it, in one consistent snapshot
/// of the database (a read-only REPEATABLE READ transaction, unless the caller already holds a
/// transaction). Without a key the result says the checkpoints were not checked.
pub fn verify_all(conn: &mut PgConnection, key: Option<&AuditKey>) -> QueryResult<Report> {
    if crate::db::in_transaction(conn) {
        check_all(conn, key)
    } else {
        conn.build_transaction().repeatable_read().read_only().run(|conn| check_all(conn, key))
    }
}

fn check_all(conn: &mut PgConnection, key: Option<&AuditKey>) -> QueryResult<Report> {
    let Some(key) = key else {
        let walked = walk(conn, |_| None)?;
        return Ok(Report {
            entries: walked.entries,
            purged: walked.purged,
            checkpoints: Checkpoints::NotChecked,
            broken: walked.broken,
        });
    };
    let key_id = checkpoint::key_id(key);
    let checkpoints = checkpoint::all(conn)?;
    let mut by_entry: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    for (i, c) in checkpoints.iter().enumerate() {
        by_entry.entry(c.entry_id).or_default().push(i);
        by_id.insert(c.id, i);
    }
    let mut matched = vec![false; checkpoints.len()];
    let walked = walk(conn, |step| against_checkpoints(step, &checkpoints, &by_entry, &by_id, &mut matched))?;
    let held = |matched: &[bool]| matched.iter().filter(|m| **m).count() as u64;
    let report = |broken: Option<Broken>, checked: u64| Report {
        entries: walked.entries,
        purged: walked.purged,
        checkpoints: Checkpoints::Checked(checked),
        broken,
    };
    if let Some(b) = &walked.broken {
        return Ok(report(Some(b.clone()), held(&matched)));
    }
    // Each checkpoint by itself and against its predecessor, in order.
    let mut prev: Option<&Checkpoint> = None;
    for (i, c) in checkpoints.iter().enumerate() {
        if let Some(reason) = checkpoint::problem(key, &key_id, prev, c) {
            return Ok(report(Some(Broken { entry_id: c.entry_id, checkpoint_id: Some(c.id), reason }), i as u64));
        }
        prev = Some(c);
    }
    // A checkpoint whose entry the walk never reached: the chain's end was cut off.
    if let Some(i) = matched.iter().position(|m| !m) {
        let c = &checkpoints[i];
        return Ok(report(
            Some(Broken {
                entry_id: c.entry_id,
                checkpoint_id: Some(c.id),
                reason: format!(
                    "checkpoint {} signed entry {}, which is no longer in the chain (entries were removed from its end)",
                    c.id, c.entry_id
                ),
            }),
            i as u64,
        ));
    }
    Ok(report(None, checkpoints.len() as u64))
}

/// The checks of one step of the walk against the checkpoints: the hash each checkpoint signed
/// for this entry, and the checkpoint an `audit.checkpointed` entry names.
fn against_checkpoints(
    step: Step<'_>,
    checkpoints: &[Checkpoint],
    by_entry: &BTreeMap<i64, Vec<usize>>,
    by_id: &HashMap<i64, usize>,
    matched: &mut [bool],
) -> Option<Problem> {
    let (id, hash) = match step {
        Step::Entry { id, hash, .. } | Step::Link { id, hash } => (id, hash),
    };
    for &i in by_entry.get(&id).map(Vec::as_slice).unwrap_or_default() {
        let c = &checkpoints[i];
        if c.entry_hash != hash {
            return Some(Problem {
                checkpoint_id: Some(c.id),
                reason: format!(
                    "checkpoint {} signed another hash for this entry: the chain was rewritten up to here (its \
                     hashes recomputed), or the checkpoint was altered",
                    c.id
                ),
            });
        }
        matched[i] = true;
    }
    if let Step::Entry { action, details, .. } = step {
        if action == CHECKPOINT_ACTION {
            let Some((named, signature)) = checkpoint::named_in(details) else {
                return Some(Problem {
                    checkpoint_id: None,
                    reason: "it does not name the checkpoint it records".into(),
                });
            };
            match by_id.get(&named) {
                None => {
                    return Some(Problem {
                        checkpoint_id: Some(named),
                        reason: format!(
                            "it records checkpoint {named}, which is no longer in audit_checkpoints (a checkpoint \
                             was removed)"
                        ),
                    })
                }
                Some(&i) if hex::encode(&checkpoints[i].signature) != signature => {
                    return Some(Problem {
                        checkpoint_id: Some(named),
                        reason: format!(
                            "it records checkpoint {named} with another signature (the checkpoint was replaced)"
                        ),
                    })
                }
                Some(_) => {}
            }
        }
    }
    None
}

/// One entry or purged link that fits the chain, handed to the walk's observer.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Entry { id: i64, hash: &'a [u8], action: &'a str, details: &'a serde_json::Value },
    Link { id: i64, hash: &'a [u8] },
}

/// What an observer found wrong at a step.
struct Problem {
    checkpoint_id: Option<i64>,
    reason: String,
}

struct Walked {
    entries: u64,
    purged: u64,
    broken: Option<Broken>,
}

fn broken(entry_id: i64, reason: impl Into<String>) -> Option<Broken> {
    Some(Broken { entry_id, checkpoint_id: None, reason: reason.into() })
}

/// Walks the whole trail in id order, in pages, and stops at the first entry that does not fit,
/// or that `observe` (called for each entry and link that fits) finds wrong.
fn walk(conn: &mut PgConnection, mut observe: impl FnMut(Step<'_>) -> Option<Problem>) -> QueryResult<Walked> {
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
    let stop = |checked: u64, purged: u64, broken: Option<Broken>| Ok(Walked { entries: checked, purged, broken });
    // Links walked so far whose checkpoint is still ahead, by checkpoint id.
    let mut open: BTreeMap<i64, (i64, SegmentDigest)> = BTreeMap::new();
    loop {
        let next_entry = entries.peek_id(conn, |r| r.0)?;
        let next_link = links.peek_id(conn, |l| l.0)?;
        match (next_entry, next_link) {
            (None, None) => break,
            (Some(e), Some(l)) if e == l => {
                return stop(checked, purged, broken(e, "it is recorded as purged but is still present"));
            }
            (Some(e), l) if l.is_none_or(|l| e < l) => {
                let Some((id, occurred_at, actor, action, nhs_number, details, prev_hash, hash)) = entries.pop() else {
                    break;
                };
                if prev_hash != expected_prev {
                    return stop(checked, purged, broken(id, REMOVED));
                }
                let fields = EntryFields {
                    occurred_at,
                    actor: &actor,
                    action: &action,
                    nhs_number: nhs_number.as_deref(),
                    details: &details,
                };
                if entry_hash(&prev_hash, &fields)[..] != hash[..] {
                    return stop(
                        checked,
                        purged,
                        broken(id, "its contents do not match its hash (the entry was altered)"),
                    );
                }
                if action == PURGE_ACTION {
                    let recorded = PurgedSegment::from_details(&details);
                    let found = open.remove(&id).map(|(_, d)| d).unwrap_or_default().finish();
                    if recorded.as_ref() != Some(&found) {
                        return stop(
                            checked,
                            purged,
                            broken(
                                id,
                                "the purged links recorded under this checkpoint do not match it \
                                 (a purged link was added, removed or altered)",
                            ),
                        );
                    }
                }
                if let Some(p) = observe(Step::Entry { id, hash: &hash, action: &action, details: &details }) {
                    let b = Broken { entry_id: id, checkpoint_id: p.checkpoint_id, reason: p.reason };
                    return stop(checked, purged, Some(b));
                }
                expected_prev = hash;
                checked += 1;
            }
            _ => {
                let Some((id, prev_hash, hash, checkpoint_id)) = links.pop() else {
                    break;
                };
                if prev_hash != expected_prev {
                    return stop(checked, purged, broken(id, REMOVED));
                }
                if checkpoint_id <= id {
                    return stop(
                        checked,
                        purged,
                        broken(id, "it is recorded as purged under a checkpoint that precedes it"),
                    );
                }
                if let Some(p) = observe(Step::Link { id, hash: &hash }) {
                    let b = Broken { entry_id: id, checkpoint_id: p.checkpoint_id, reason: p.reason };
                    return stop(checked, purged, Some(b));
                }
                open.entry(checkpoint_id).or_insert_with(|| (id, SegmentDigest::new())).1.add(id, &prev_hash, &hash);
                expected_prev = hash;
                purged += 1;
            }
        }
    }
    // Links whose checkpoint never came (it is missing, or is not a checkpoint).
    if let Some(first) = open.values().map(|(first, _)| *first).min() {
        return stop(
            checked,
            purged,
            broken(first, "it is recorded as purged but no checkpoint in the chain records its purge"),
        );
    }
    stop(checked, purged, None)
}

// Recording verifications (the page's "Verify now", `cpis audit verify`).

/// Checks everything ([`verify_all`]), then records the run in `audit_verifications` and audits
/// it (`audit.verified`, with the outcome and counts), in one transaction. Returns the record's id
/// and the report.
pub fn verify_and_record(
    conn: &mut PgConnection,
    key: Option<&AuditKey>,
    actor: Actor,
) -> Result<(i64, Report), AppError> {
    let started_at = Utc::now();
    let report = verify_all(conn, key)?;
    let finished_at = Utc::now();
    let id = conn.transaction(|conn| record(conn, &actor, started_at, finished_at, &report))?;
    Ok((id, report))
}

/// Keeps one verification's outcome and audits it, in the caller's transaction.
pub fn record(
    conn: &mut PgConnection,
    actor: &Actor,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    report: &Report,
) -> Result<i64, AppError> {
    let (broken_entry_id, reason) = match &report.broken {
        Some(b) => (Some(b.entry_id), Some(bounded(&b.reason, 1000))),
        None => (None, None),
    };
    let id: i64 = diesel::insert_into(audit_verifications::table)
        .values((
            audit_verifications::started_at.eq(started_at),
            audit_verifications::finished_at.eq(finished_at),
            audit_verifications::run_by.eq(actor.to_string()),
            audit_verifications::intact.eq(report.intact()),
            audit_verifications::entries.eq(report.entries as i64),
            audit_verifications::purged.eq(report.purged as i64),
            audit_verifications::checkpoints.eq(report.checkpoints_checked() as i64),
            audit_verifications::broken_entry_id.eq(broken_entry_id),
            audit_verifications::reason.eq(&reason),
        ))
        .returning(audit_verifications::id)
        .get_result(conn)?;
    super::record(
        conn,
        Event::new(actor.clone(), "audit.verified").details(json!({
            "verification_id": id,
            "outcome": if report.intact() { "intact" } else { "broken" },
            "entries": report.entries,
            "purged": report.purged,
            "checkpoints": report.checkpoints_checked(),
            "checkpoints_checked": report.checkpoints != Checkpoints::NotChecked,
            "broken_entry_id": broken_entry_id,
            "broken_checkpoint_id": report.broken.as_ref().and_then(|b| b.checkpoint_id),
            "reason": reason,
        })),
    )?;
    Ok(id)
}

fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max.saturating_sub(1)).chain(std::iter::once('…')).collect()
    }
}

/// A verification as kept, with the name of whoever ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub run_by: String,
    /// The person's name for `user:<id>`; "An operator (cpis audit verify)" or "The service" otherwise.
    pub run_by_name: String,
    pub intact: bool,
    pub entries: i64,
    pub purged: i64,
    pub checkpoints: i64,
    pub broken_entry_id: Option<i64>,
    pub reason: Option<String>,
}

type VerificationRow = (i64, DateTime<Utc>, DateTime<Utc>, String, bool, i64, i64, i64, Option<i64>, Option<String>);

/// The latest verifications, most recent first.
pub fn recent(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<Verification>> {
    let rows: Vec<VerificationRow> = audit_verifications::table
        .order((audit_verifications::finished_at.desc(), audit_verifications::id.desc()))
        .limit(limit)
        .select((
            audit_verifications::id,
            audit_verifications::started_at,
            audit_verifications::finished_at,
            audit_verifications::run_by,
            audit_verifications::intact,
            audit_verifications::entries,
            audit_verifications::purged,
            audit_verifications::checkpoints,
            audit_verifications::broken_entry_id,
            audit_verifications::reason,
        ))
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().filter_map(|r| user_id(&r.3)).collect();
    let names: HashMap<i64, String> = if ids.is_empty() {
        HashMap::new()
    } else {
        users::table
            .filter(users::id.eq_any(&ids))
            .select((users::id, users::display_name))
            .load(conn)?
            .into_iter()
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|(id, started_at, finished_at, run_by, intact, entries, purged, checkpoints, broken_entry_id, reason)| {
            let run_by_name = run_by_name(&run_by, &names);
            Verification {
                id,
                started_at,
                finished_at,
                run_by,
                run_by_name,
                intact,
                entries,
                purged,
                checkpoints,
                broken_entry_id,
                reason,
            }
        })
        .collect())
}

fn user_id(run_by: &str) -> Option<i64> {
    run_by.strip_prefix("user:")?.parse().ok()
}

/// Who ran a verification, as people read it.
fn run_by_name(run_by: &str, names: &HashMap<i64, String>) -> String {
    match (run_by, user_id(run_by)) {
        (_, Some(id)) => names.get(&id).cloned().unwrap_or_else(|| format!("User {id} (no longer known)")),
        ("operator", _) => "An operator (cpis audit verify)".into(),
        ("service", _) => "The service (scheduled)".into(),
        (other, _) => other.to_owned(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_ran_it_reads_well() {
        let names = HashMap::from([(7, "Helen Ward".to_owned())]);
        assert_eq!(run_by_name("user:7", &names), "Helen Ward");
        assert_eq!(run_by_name("user:8", &names), "User 8 (no longer known)");
        assert_eq!(run_by_name("operator", &names), "An operator (cpis audit verify)");
        assert_eq!(run_by_name("service", &names), "The service (scheduled)");
    }

    #[test]
    fn reasons_are_bounded() {
        assert_eq!(bounded("short", 1000), "short");
        let long = "é".repeat(1500);
        let b = bounded(&long, 1000);
        assert_eq!(b.chars().count(), 1000);
        assert!(b.ends_with('…'));
        assert_eq!(bounded(&"x".repeat(1000), 1000).chars().count(), 1000);
    }

    #[test]
    fn summaries_say_what_was_checked() {
        let intact = Report { entries: 5, purged: 1, checkpoints: Checkpoints::NotChecked, broken: None };
        assert!(intact.summary().contains("not checked (no audit key is configured)"));
        assert_eq!(intact.checkpoints_checked(), 0);
        let broken = Report {
            entries: 2,
            purged: 0,
            checkpoints: Checkpoints::Checked(1),
            broken: Some(Broken { entry_id: 9, checkpoint_id: Some(3), reason: "why".into() }),
        };
        assert!(!broken.intact());
        assert_eq!(broken.summary(), "the audit trail is broken at entry 9 (checkpoint 3): why");
    }
}
