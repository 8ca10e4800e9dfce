//! The append-only audit trail. [`record`] is called inside the transaction of the action it
//! describes, so an action and its audit entry are committed together or not at all.

pub mod chain;
pub mod checkpoint;
pub mod verify;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::error::AppError;

/// Serialises appends so the chain has one order (the lock is released at commit).
const AUDIT_APPEND_LOCK: i64 = 0x4350_4953_4155_4454; // "CPISAUDT"

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(i64),
    LocalAuthority(String),
    NhsSystem(i64),
    Operator,
    Service,
    Anonymous,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::LocalAuthority(code) => write!(f, "la:{code}"),
            Actor::NhsSystem(id) => write!(f, "nhs-system:{id}"),
            Actor::Operator => f.write_str("operator"),
            Actor::Service => f.write_str("service"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// One thing to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: Actor,
    pub action: &'static str,
    pub nhs_number: Option<String>,
    pub details: serde_json::Value,
}

impl Event {
    pub fn new(actor: Actor, action: &'static str) -> Event {
        Event { actor, action, nhs_number: None, details: serde_json::json!({}) }
    }
    pub fn about(mut self, nhs_number: &str) -> Event {
        self.nhs_number = Some(nhs_number.to_owned());
        self
    }
    pub fn details(mut self, details: serde_json::Value) -> Event {
        self.details = details;
        self
    }
}

/// Appends an entry to the chain. Call it inside the action's transaction, as late as possible:
/// it holds the append lock until that transaction ends.
pub fn record(conn: &mut PgConnection, event: Event) -> Result<(), AppError> {
    record_many(conn, vec![event])
}

/// Takes the chain's append lock until the caller's transaction ends, so nothing is appended
/// meanwhile (taken again by the same transaction, it is simply held twice). In a request
/// ([`crate::db::run`]) the transaction then commits without waiting for its WAL flush, which the
/// request waits for after the commit instead: the lock is not held through a disk flush, so
/// audited requests share their flushes instead of queueing for one each ([`crate::db::defer_flush`]).
pub(crate) fn lock_chain(conn: &mut PgConnection) -> QueryResult<()> {
    let sql = if crate::db::defer_flush() {
        "SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)"
    } else {
        "SELECT pg_advisory_xact_lock($1)"
    };
    diesel::sql_query(sql).bind::<BigInt, _>(AUDIT_APPEND_LOCK).execute(conn)?;
    Ok(())
}

/// Appends many entries in one go (an upload's per-record changes): one statement that takes
/// the chain's lock, reads the head and inserts the entries chained in order (the database's
/// `audit_append`, migration 000013). The service sends each entry's canonical text
/// ([`chain::canonical`]); the function hashes it with its predecessor exactly as
/// [`chain::entry_hash`] does, which the verifier recomputes. Same chain, same rules as [`record`].
/// One statement, so the lock is held for no round trip but the commit's; in a request that commit
/// does not wait for its flush either ([`lock_chain`]).
pub fn record_many(conn: &mut PgConnection, events: Vec<Event>) -> Result<(), AppError> {
    if events.is_empty() {
        return Ok(());
    }
    let occurred_at = chain::to_micros(Utc::now());
    let n = events.len();
    let (mut actors, mut actions, mut numbers, mut details, mut canonicals) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for event in events {
        let actor = event.actor.to_string();
        canonicals.push(chain::canonical(&chain::EntryFields {
            occurred_at,
            actor: &actor,
            action: event.action,
            nhs_number: event.nhs_number.as_deref(),
            details: &event.details,
        }));
        actors.push(actor);
        actions.push(event.action);
        numbers.push(event.nhs_number);
        details.push(event.details);
    }
    let sql = if crate::db::defer_flush() {
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7), set_config('synchronous_commit', 'off', true)"
    } else {
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7)"
    };
    use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz};
    diesel::sql_query(sql)
        .bind::<BigInt, _>(AUDIT_APPEND_LOCK)
        .bind::<Timestamptz, _>(occurred_at)
        .bind::<Array<Text>, _>(&actors)
        .bind::<Array<Text>, _>(&actions)
        .bind::<Array<Nullable<Text>>, _>(&numbers)
        .bind::<Array<Jsonb>, _>(&details)
        .bind::<Array<Text>, _>(&canonicals)
        .execute(conn)?;
    Ok(())
}
