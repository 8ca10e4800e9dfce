//! The append-only audit trail. [`record`] is called inside the transaction of the action it
//! describes, so an action and its audit entry are committed together or not at all.

pub mod chain;
pub mod chainer;
pub mod checkpoint;
pub mod verify;

use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Text};

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
    /// The details as compact JSON text with every object's keys in sorted order, exactly as
    /// `serde_json::Value::to_string` writes them: the text the chain hashes
    /// ([`chain::canonical_from_text`]) and the verifier writes again from what it reads back.
    details: String,
}

impl Event {
    pub fn new(actor: Actor, action: &'static str) -> Event {
        Event { actor, action, nhs_number: None, details: "{}".to_owned() }
    }
    pub fn about(mut self, nhs_number: &str) -> Event {
        self.nhs_number = Some(nhs_number.to_owned());
        self
    }
    pub fn details(mut self, details: serde_json::Value) -> Event {
        self.details = details.to_string();
        self
    }

    /// The details serialised straight from a typed value, without building a
    /// `serde_json::Value` first: for a large batch built in a loop (an upload's entry per record,
    /// 60,000 of them, whose `Value`s cost more than the statement storing them). The type's
    /// fields must be declared in sorted key order, maps must be sorted, and numbers written as
    /// serde_json writes them, so that the text is what [`Event::details`] would make of it
    /// (checked in debug builds, and so by every test that records one).
    pub fn details_from(mut self, details: &impl serde::Serialize) -> Result<Event, AppError> {
        self.details = serde_json::to_string(details)
            .map_err(|e| AppError::Internal(format!("audit details could not be written: {e}")))?;
        debug_assert_eq!(
            serde_json::from_str::<serde_json::Value>(&self.details).map(|v| v.to_string()).ok().as_deref(),
            Some(self.details.as_str()),
            "audit details must be written with sorted keys"
        );
        Ok(self)
    }

    /// The details as a JSON value (parsed from their text), for tests.
    #[cfg(test)]
    pub fn details_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.details).unwrap_or(serde_json::Value::Null)
    }
}

/// Records an entry: it joins the chain as the caller's transaction commits (in the same
/// transaction: committed with the action or not at all). Call it inside the action's transaction.
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

/// The outbox's row of one batch of entries ([`record_many`]), as SQL text with the six
/// placeholders given (time, actors, actions, NHS numbers, details, canonical texts), for a
/// statement that stores more with it: the access recorder stores a batch's accesses and their
/// entries in one statement (`cpis/alert.rs`). Bound by [`Outbox::bind`]. Its commit waits for
/// its own flush: [`record_many`] is for the deferred one.
macro_rules! outbox_insert {
    ($at:literal, $actors:literal, $actions:literal, $numbers:literal, $details:literal, $canonicals:literal) => {
        concat!(
            "INSERT INTO audit_outbox (occurred_at, actors, actions, numbers, details, canonicals) VALUES (",
            $at,
            ", ",
            $actors,
            ", ",
            $actions,
            ", ",
            $numbers,
            ", ",
            $details,
            "::text[]::jsonb[], ",
            $canonicals,
            ")"
        )
    };
}
pub(crate) use outbox_insert;

/// Records many entries in one go, in order, as [`record`] does:
/// one row in `audit_outbox`, which a deferred trigger moves into the chain inside COMMIT
/// (migration 000014), so the chain's lock is held for the move and the commit alone, never
/// across a round trip to this service. The entries are not in `audit_log` before the commit:
/// code that needs its entry's id at once uses [`append_now`].
pub fn record_many(conn: &mut PgConnection, events: Vec<Event>) -> Result<(), AppError> {
    let Some(outbox) = Outbox::of(events)? else { return Ok(()) };
    // The commit moves the entries under the chain's lock: in a request it need not wait for its
    // flush while holding it (see lock_chain).
    if crate::db::defer_flush() {
        outbox
            .bind(crate::db::prepared::sql!(
                "INSERT INTO audit_outbox (occurred_at, actors, actions, numbers, details, canonicals) \
                 SELECT $1, $2, $3, $4, $5::text[]::jsonb[], $6 \
                 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
            ))
            .execute(conn)?;
    } else {
        outbox.bind(crate::db::prepared::sql!(outbox_insert!("$1", "$2", "$3", "$4", "$5", "$6"))).execute(conn)?;
    }
    Ok(())
}

/// A batch of entries for the outbox's row ([`outbox_insert!`]).
pub struct Outbox(Batch);

impl Outbox {
    /// The entries, or `None` for none; refused as [`record_many`] refuses them.
    pub fn of(events: Vec<Event>) -> Result<Option<Outbox>, AppError> {
        Ok(Batch::of(events)?.map(Outbox))
    }

    /// Binds the next six placeholders, in [`outbox_insert!`]'s order.
    pub fn bind<S>(self, query: crate::db::prepared::Prepared<S>) -> crate::db::prepared::Prepared<S> {
        let (query, details, canonicals) = self.0.bind_head(query);
        query.bind::<Array<Text>, _>(details).bind::<Array<Text>, _>(canonicals)
    }
}

/// Appends entries to the chain at once, holding the chain's lock until the caller's transaction
/// ends: for code that reads its own entry back in the same transaction (a retention purge finds
/// its checkpoint entry's id, a checkpoint follows the head it signed). A large batch goes through
/// [`pend`] instead, which does not hold the lock while the action commits. The lock, a read of
/// the head, and one multi-row insert; the hashes are computed here ([`chain::entry_hash`]).
/// Entries the same transaction recorded through the outbox ([`record`]) join the chain after
/// these, at its commit.
pub fn append_now(conn: &mut PgConnection, events: Vec<Event>) -> Result<(), AppError> {
    let Some(batch) = Batch::of(events)? else { return Ok(()) };
    lock_chain(conn)?;
    let (prevs, hashes) = chain::link(&head_hash(conn)?, batch.canonicals.iter().map(String::as_str));
    // One statement from arrays, in array order (the chain's order is the id order). The
    // canonical texts are not sent: the hashes are computed above.
    let query = crate::db::prepared::sql!(
        "INSERT INTO audit_log (occurred_at, actor, action, nhs_number, details, prev_hash, hash) \
         SELECT $1, a, x, n, d::jsonb, p, h \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[]) \
         WITH ORDINALITY AS u(a, x, n, d, p, h, i) ORDER BY i",
    );
    let (query, details, _) = batch.bind_head(query);
    query
        .bind::<Array<Text>, _>(details)
        .bind::<Array<Bytea>, _>(prevs)
        .bind::<Array<Bytea>, _>(hashes)
        .execute(conn)?;
    Ok(())
}

/// How many pending entries one chaining transaction moves: the chain's lock is held for one
/// chunk at a time, so other appenders wait at most that long for a large action's entries.
/// Measured with `./scripts/bench national --only upload-tab` (the tab at 16 users while two
/// national files are stored): chunks of 2,000 gave the tab a p99 of 227 ms and a slowest opening
/// of 389 ms; chunks of 500, 54 and 114 ms, and the uploads were answered sooner too.
const PENDING_CHUNK: i64 = 500;

/// An action with at most this many entries (any ordinary upload) is answered once they are all
/// chained ([`chain_pended`]); a larger one leaves them to the background [`chainer`].
pub const CHAINED_BEFORE_ANSWER: usize = 2_000;

/// Writes a large action's entries in the caller's transaction (committed with the action or not
/// at all) without taking the chain's lock; [`chain_pended`] after that transaction commits, and
/// the background [`chainer`] for what it leaves, chain them (migration 000021). For an upload's
/// per-record changes: appended at once, they held the lock, and so every other audited request,
/// for seconds. Returns what it wrote, for [`chain_pended`].
pub fn pend(conn: &mut PgConnection, events: Vec<Event>) -> Result<Option<Pended>, AppError> {
    // An entry holding a NUL character is refused here with its action (`Batch::of`): left
    // pending, `jsonb` would refuse it only when chained, holding up every entry after it.
    let Some(batch) = Batch::of(events)? else { return Ok(None) };
    let count = batch.canonicals.len();
    // Streamed with COPY (diesel's binary rows) rather than bound as arrays of 60,000 and
    // unnested (issue 8: a national file's entries took 1.07 to 1.24 s that way, 0.48 to 0.69 s
    // copied).
    // The canonical texts alone: the chaining takes each entry's details from its text (migration
    // 000022). COPY keeps the rows' order, so their ids follow the events' order, and the last id
    // this connection took from the sequence is the last entry's.
    let rows: Vec<PendingRow<'_>> = (0..count)
        .map(|i| PendingRow {
            occurred_at: batch.occurred_at,
            actor: &batch.actors[i],
            action: batch.actions[i],
            nhs_number: batch.numbers[i].as_deref(),
            canonical: &batch.canonicals[i],
        })
        .collect();
    diesel::copy_from(crate::schema::audit_pending::table).from_insertable(&rows).execute(conn)?;
    let written: LastId =
        crate::db::prepared::sql!("SELECT currval(pg_get_serial_sequence('audit_pending', 'id')) AS last_id")
            .get_result(conn)?;
    Ok(Some(Pended { count, last_id: written.last_id }))
}

/// A pending entry as [`pend`] copies it in.
#[derive(Insertable)]
#[diesel(table_name = crate::schema::audit_pending, treat_none_as_default_value = false)]
struct PendingRow<'a> {
    occurred_at: chrono::DateTime<Utc>,
    actor: &'a str,
    action: &'a str,
    nhs_number: Option<&'a str>,
    canonical: &'a str,
}

/// What [`pend`] wrote: how many entries, and the highest id among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pended {
    pub count: usize,
    pub last_id: i64,
}

#[derive(QueryableByName)]
struct LastId {
    #[diesel(sql_type = BigInt)]
    last_id: i64,
}

/// Chains what [`pend`] wrote, after its transaction has committed (call it outside a
/// transaction), with whatever was pending before it (the chain's order is the pending order),
/// when there are at most [`CHAINED_BEFORE_ANSWER`]: so an ordinary upload's entries are in the
/// chain when it is answered, even behind another file's. A larger action's are left to the
/// background [`chainer`]. Returns whether they are all chained.
pub fn chain_pended(conn: &mut PgConnection, pended: Pended) -> QueryResult<bool> {
    if pended.count > CHAINED_BEFORE_ANSWER {
        return Ok(!pending_through(conn, pended.last_id)?);
    }
    while pending_through(conn, pended.last_id)? {
        chain_pending_chunk(conn)?;
    }
    Ok(true)
}

/// Whether an entry up to `last_id` is still pending.
fn pending_through(conn: &mut PgConnection, last_id: i64) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Any {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        pending: bool,
    }
    Ok(crate::db::prepared::sql!("SELECT EXISTS (SELECT 1 FROM audit_pending WHERE id <= $1) AS pending")
        .bind::<BigInt, _>(last_id)
        .get_result::<Any>(conn)?
        .pending)
}

/// Chains every pending entry ([`pend`]), oldest first, a chunk per transaction: call it outside
/// a transaction. Returns how many chunks it committed. Entries someone else chained meanwhile are
/// simply not found again.
pub fn chain_pending(conn: &mut PgConnection) -> QueryResult<usize> {
    let mut chunks = 0;
    loop {
        let moved = chain_pending_chunk(conn)?;
        if moved > 0 {
            chunks += 1;
        }
        if moved < PENDING_CHUNK as usize {
            return Ok(chunks);
        }
    }
}

/// Chains the oldest pending entries, one chunk at most, in a transaction of its own: call it
/// outside a transaction. Returns how many it moved.
pub fn chain_pending_chunk(conn: &mut PgConnection) -> QueryResult<usize> {
    conn.transaction(|conn| {
        lock_chain(conn)?;
        chain_pending_locked(conn, PENDING_CHUNK)
    })
}

/// Moves up to `limit` pending entries, oldest first, into the chain; the caller holds the chain's
/// lock ([`lock_chain`]) in its transaction. One read (ids and canonical texts), the hashes here,
/// one statement that deletes them from `audit_pending` and inserts them into `audit_log` in
/// order, each with the details its canonical text holds (or, for an entry pended by a release
/// before migration 000022, the details it was written with). Returns how many it moved.
pub(crate) fn chain_pending_locked(conn: &mut PgConnection, limit: i64) -> QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Pending {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        canonical: String,
    }
    // The read also allows this transaction's deletes from audit_pending (its guard refuses any
    // other), before the statement that deletes them runs.
    let pending: Vec<Pending> = crate::db::prepared::sql!(
        "SELECT p.id, p.canonical FROM audit_pending p, \
             (SELECT set_config('cpis.audit_chaining', 'on', true)) AS allowed \
         ORDER BY p.id LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)?;
    if pending.is_empty() {
        return Ok(0);
    }
    let (prevs, hashes) = chain::link(&head_hash(conn)?, pending.iter().map(|p| p.canonical.as_str()));
    let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
    let count = ids.len();
    let inserted = crate::db::prepared::sql!(
        "WITH moved AS (DELETE FROM audit_pending WHERE id = ANY($1) RETURNING *) \
         INSERT INTO audit_log (occurred_at, actor, action, nhs_number, details, prev_hash, hash) \
         SELECT m.occurred_at, m.actor, m.action, m.nhs_number, \
             coalesce(m.details, (m.canonical::jsonb) -> 4), u.p, u.h \
         FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) WITH ORDINALITY AS u(id, p, h, i) \
         JOIN moved m ON m.id = u.id ORDER BY u.i",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<Bytea>, _>(prevs)
    .bind::<Array<Bytea>, _>(hashes)
    .execute(conn)?;
    if inserted != count {
        // A pending entry went missing between the read and the move: the hashes computed above
        // would not link. Nothing of this chunk is kept (the caller's transaction rolls back).
        return Err(diesel::result::Error::QueryBuilderError(
            format!("{count} pending audit entries read, {inserted} moved: chaining refused").into(),
        ));
    }
    Ok(count)
}

/// The chain's head hash (the genesis value for an empty trail). Call it holding the lock.
fn head_hash(conn: &mut PgConnection) -> QueryResult<Vec<u8>> {
    Ok(crate::db::prepared::sql!("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .get_result::<Head>(conn)
        .optional()?
        .map_or_else(|| chain::GENESIS.to_vec(), |h| h.hash))
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    hash: Vec<u8>,
}

/// Entries as the database's `audit_append` takes them: one time, column arrays, and each entry's
/// canonical text ([`chain::canonical`]), which the database hashes with its predecessor's hash
/// exactly as [`chain::entry_hash`] does (and the verifier recomputes). The details go as their
/// text, made once for the canonical text and for the statement; the statements cast them to
/// `jsonb` row by row (bound as `jsonb[]`, PostgreSQL parsed a national file's 60,000 details
/// while binding, into memory it kept until the statement ended: 1 to 3 s, measured).
struct Batch {
    occurred_at: chrono::DateTime<Utc>,
    actors: Vec<String>,
    actions: Vec<&'static str>,
    numbers: Vec<Option<String>>,
    /// Each entry's details as compact JSON text ([`Event`]'s).
    details: Vec<String>,
    canonicals: Vec<String>,
}

impl Batch {
    /// The entries as columns, or `None` for none. An entry holding a NUL character is refused
    /// with a clear error: `jsonb` refuses it (serde_json writes it as an escape), which would
    /// otherwise be a database error at the insert, or, for a pending entry, at its chaining.
    fn of(events: Vec<Event>) -> Result<Option<Batch>, AppError> {
        if events.is_empty() {
            return Ok(None);
        }
        let occurred_at = chain::to_micros(Utc::now());
        let n = events.len();
        let mut b = Batch {
            occurred_at,
            actors: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            numbers: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            canonicals: Vec::with_capacity(n),
        };
        for event in events {
            let actor = event.actor.to_string();
            let canonical = chain::canonical_from_text(
                occurred_at,
                &actor,
                event.action,
                event.nhs_number.as_deref(),
                &event.details,
            );
            if chain::has_escaped_nul(&canonical) {
                return Err(AppError::BadRequest("The record holds a NUL character, which cannot be stored.".into()));
            }
            b.canonicals.push(canonical);
            b.actors.push(actor);
            b.actions.push(event.action);
            b.numbers.push(event.nhs_number);
            b.details.push(event.details);
        }
        Ok(Some(b))
    }

    /// Binds $1 to $4 (time, actors, actions, NHS numbers), which every statement here takes, and
    /// hands back the details and canonical texts for the statement to bind what it takes of them.
    fn bind_head<S>(
        self,
        query: crate::db::prepared::Prepared<S>,
    ) -> (crate::db::prepared::Prepared<S>, Vec<String>, Vec<String>) {
        use diesel::sql_types::{Nullable, Timestamptz};
        let query = query
            .bind::<Timestamptz, _>(self.occurred_at)
            .bind::<Array<Text>, _>(self.actors)
            .bind::<Array<Text>, _>(self.actions)
            .bind::<Array<Nullable<Text>>, _>(self.numbers);
        (query, self.details, self.canonicals)
    }
}
