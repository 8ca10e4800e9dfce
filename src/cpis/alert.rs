//! The Child Care Alert tab (CP-IS049 to CP-IS058, CP-IS067): whether it exists for a viewer, what
//! it shows, and recording its openings (the access recorder, src/cpis/recorder.rs, calls
//! [`record_openings_alone`] for a batch of them).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;

use super::access::{self, BeforeRecording, Histories, HistoryEntry, NewAccess, Recorded, Viewer};
use super::items::{self, CpItem, HeldItem};
use super::local_authority::LocalAuthority;
use super::reference_names::ReferenceNames;
use crate::audit::{self, Actor, Event};
use crate::domain::dates;
use crate::domain::retrieval::ItemKind;
use crate::error::AppError;
use crate::mailbox::transmissions::{self, Log};
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

/// What the viewer may see for the child today, of the items held under its numbers
/// ([`items::lookup_held`], [`items::current_held`]); empty means there is no tab (CP-IS055).
pub fn visible_items(held: Vec<HeldItem>, patient: &Patient, may_see_unborn: bool, today: NaiveDate) -> Vec<CpItem> {
    let all = held.into_iter().map(|h| h.item).collect();
    items::visible(all, patient.birth_date, today, may_see_unborn)
}

/// What the tab shows the viewer today, by authority, of the items held under the child's numbers:
/// empty when there is no tab for this viewer (CP-IS055). The first step of an opening; the access
/// is recorded next ([`record_openings`]), when this is not empty.
pub fn authorities(
    held: Vec<HeldItem>,
    patient: &Patient,
    may_see_unborn: bool,
    now: DateTime<Utc>,
) -> Vec<AuthorityBlock> {
    let today = dates::uk_date(now);
    let (visible, held_by) = visible_held(held, patient, may_see_unborn, today);
    group_by_authority(visible, held_by, patient.birth_date, today)
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
/// in the caller's transaction. Accesses to one child are decided one after another (CP-IS047):
/// first each child is locked until the transaction ends ([`lock_children`]), so every other
/// opening of those children, here or in another instance, waits for this one.
pub fn record_openings(conn: &mut PgConnection, openings: &[AccessOpening<'_>]) -> Result<Vec<Recorded>, AppError> {
    lock_children(conn, openings.iter().map(|o| o.nhs_number))?;
    Ok(record_read(conn, &Default::default(), openings, &[], None, Log::default(), Guard::Held)?.0)
}

/// [`record_openings`] alone, in two round trips (issue 8: the batch is the access recorder's serial
/// path, and each round trip on it is paid by every opening waiting behind it), with the
/// transmissions of `log` (the FHIR exchanges the openings answer, CP-IS061) stored in the same
/// statement as they are (stored with them or not at all), and the history of each list of numbers
/// in `lists` as it stands after them ([`access::record_reading`], named from `names`). The lists
/// must be of the openings' children.
///
/// First the read of who saw each child last, the histories and the ids, outside any transaction.
/// The first-access rule (CP-IS047) decides in Rust, then one statement stores the accesses, their
/// audit entries and the log, having first taken the children's locks and checked under them that
/// the read would still answer the same ([`access::Basis`], `cpis_claim_children` of migration
/// 000034). Its commit waits for its own flush ([`crate::db::DurableCommits`]): when this returns,
/// the openings are on disk, unless the connection commits without waiting (the access
/// recorder's, whose flusher then waits before anyone is answered, src/db/flusher.rs). If another opening of one of these children by the same viewer was
/// recorded in between (by another instance, or another recorder thread), nothing was stored and
/// the openings are recorded again as before: locked in a transaction's BEGIN, then read, stored
/// and committed ([`record_openings_locked`]).
///
/// Only a pair's decision is checked, not the history shown: an opening of the same child by
/// someone else, recorded by another instance between this read and this store, is not in this
/// opening's history (as if this one had been read a moment earlier); it is in the next.
///
/// `read`, when given, is that first read done already, ahead, with the openings' records
/// ([`access::BeforeRecording::from_read_aheads`]): then the openings are recorded in the one
/// statement. The check is the same; the fallback reads afresh.
pub fn record_openings_alone(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    openings: &[AccessOpening<'_>],
    lists: &[&[String]],
    read: Option<BeforeRecording>,
    log: Log,
) -> Result<(Vec<Recorded>, Histories), AppError> {
    if crate::db::in_transaction(conn) {
        // The claim's locks would be held until the caller's commit, for an unknown time, and the
        // fallback's ROLLBACK on a failed BEGIN would end the caller's transaction.
        return Err(AppError::Internal("openings are recorded alone in a transaction of their own".into()));
    }
    let keys = child_lock_keys(openings.iter().map(|o| o.nhs_number))?;
    let _durable = crate::db::DurableCommits::enter();
    let mut changed = false;
    let claim = Guard::Claim { keys: &keys, changed: &mut changed };
    match record_read(conn, names, openings, lists, read, log.clone(), claim) {
        Err(_) if changed => {
            tracing::debug!(
                openings = openings.len(),
                "an opening's child changed since it was read; recording again, locked"
            );
            record_openings_locked(conn, names, openings, lists, log)
        }
        done => done,
    }
}

/// [`record_openings_alone`]'s way before issue 8's two round trips, and its fallback: in a
/// transaction of its own whose BEGIN takes the children's locks in the same round trip
/// ([`children_locks`]), then the read, the store and the COMMIT. Never inside a transaction (its
/// one caller makes sure).
fn record_openings_locked(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    openings: &[AccessOpening<'_>],
    lists: &[&[String]],
    log: Log,
) -> Result<(Vec<Recorded>, Histories), AppError> {
    use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
    let locks = children_locks(openings.iter().map(|o| o.nhs_number))?;
    if let Err(e) = AnsiTransactionManager::begin_transaction_sql(conn, &format!("BEGIN; {locks}")) {
        // BEGIN ran and a lock failed (or timed out): the transaction is open and aborted, and
        // diesel does not know of it.
        let _ = conn.batch_execute("ROLLBACK");
        return Err(lock_error(e));
    }
    let _durable = crate::db::DurableCommits::enter();
    match record_read(conn, names, openings, lists, None, log, Guard::Held) {
        Ok(done) => {
            AnsiTransactionManager::commit_transaction(conn)?;
            Ok(done)
        }
        Err(e) => {
            // As diesel's own `transaction`: the work's error is the answer; a rollback that
            // fails leaves the connection to the pool's checks.
            let _ = AnsiTransactionManager::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// How the children of the openings are kept from other openings while theirs are decided.
enum Guard<'a> {
    /// Locked already, by the caller's transaction.
    Held,
    /// Locked (these keys, [`child_lock_keys`]) and checked in the statement that stores them,
    /// which fails if what the decisions rest on changed: `changed` is then set.
    Claim { keys: &'a [i64], changed: &'a mut bool },
}

/// The openings' accesses and audit entries (and the transmissions of `log`) read (unless `read`
/// was already), decided and stored as `guard` says, and the lists' histories after them.
fn record_read(
    conn: &mut PgConnection,
    names: &ReferenceNames,
    openings: &[AccessOpening<'_>],
    lists: &[&[String]],
    read: Option<BeforeRecording>,
    log: Log,
    guard: Guard<'_>,
) -> Result<(Vec<Recorded>, Histories), AppError> {
    let accesses: Vec<NewAccess<'_>> =
        openings.iter().map(|o| NewAccess { nhs_number: o.nhs_number, viewer: o.viewer, at: o.at }).collect();
    access::record_reading(conn, names, &accesses, lists, read, |conn, recorded, basis| {
        // Each opening's audit entry names its access.
        let events = openings
            .iter()
            .zip(recorded)
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
        // One entry per opening, and `access::record_reading` stores none when there is none.
        let outbox = audit::Outbox::of(events)?
            .ok_or_else(|| AppError::Internal("openings to store without their audit entries".into()))?;
        match guard {
            Guard::Held => Ok(store_openings(conn, &accesses, recorded, outbox, log, None)?),
            Guard::Claim { keys, changed } => {
                store_openings(conn, &accesses, recorded, outbox, log, Some((keys, basis))).map_err(|e| {
                    *changed = is_changed(&e);
                    lock_error(e)
                })
            }
        }
    })
}

/// The statement storing a batch: its accesses (inserted only once `$condition` has been
/// evaluated, [`access::insert_accesses!`]), the outbox row of their audit entries and the
/// transmissions of its log (none for the tab's).
macro_rules! store_statement {
    ($condition:literal) => {
        concat!(
            "WITH a AS (",
            access::insert_accesses!(where $condition),
            "), t AS (",
            transmissions::log_insert!("$17", "$18", "$19", "$20", "$21", "$22", "$23"),
            ") ",
            audit::outbox_insert!("$11", "$12", "$13", "$14", "$15", "$16")
        )
    };
}

/// Stores openings as recorded, in one statement ([`store_statement!`]). With no `claim` their
/// children are locked already. With one, the statement is not in a transaction and first takes
/// the children's locks (its keys, [`child_lock_keys`]) and checks the [`access::Basis`] under
/// them (`cpis_claim_children`, migration 000034), inserting nothing unless it holds; its own
/// commit follows at once, with the locks held through it. A changed basis fails it as a
/// serialization failure ([`is_changed`]).
fn store_openings(
    conn: &mut PgConnection,
    accesses: &[NewAccess<'_>],
    recorded: &[Recorded],
    outbox: audit::Outbox,
    log: Log,
    claim: Option<(&[i64], access::Basis)>,
) -> Result<(), diesel::result::Error> {
    use diesel::sql_types::{Array, BigInt, Integer};
    // Each text its own statement (`sql!`), the same values bound to both.
    match claim {
        None => {
            let query = crate::db::prepared::sql!(store_statement!("true"));
            log.bind(outbox.bind(access::bind_accesses(query, accesses, recorded))).execute(conn)?
        }
        Some((keys, basis)) => {
            let query = crate::db::prepared::sql!(store_statement!(
                "(SELECT cpis_claim_children($24, $25, $26, $27, $28, $29, $1))"
            ));
            let query = log.bind(outbox.bind(access::bind_accesses(query, accesses, recorded)));
            let timeout = i32::try_from(CHILD_LOCK_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
            basis.bind(query.bind::<Array<BigInt>, _>(keys.to_vec()).bind::<Integer, _>(timeout)).execute(conn)?
        }
    };
    Ok(())
}

/// Whether a claimed store failed because what its decisions rest on changed.
fn is_changed(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(e, Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _))
}

/// The longest an opening waits for a child's lock. Openings hold it for a few milliseconds; a
/// longer wait means a transaction stalled elsewhere (an instance frozen mid-batch), and the
/// access recorder's other openings must not wait with it: the batch fails, its openings are
/// recorded one by one, and only those of the held child fail (503).
pub const CHILD_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where the children's locks lie among the service's advisory lock keys: "CPC" and a zero byte,
/// plus the NHS number (ten digits, below 2^34). The service's other keys start with "CPIS".
const CHILD_LOCK_BASE: i64 = 0x4350_4300_0000_0000;

/// Locks each child until the transaction ends ([`children_locks`]), in one round trip.
fn lock_children<'a>(conn: &mut PgConnection, numbers: impl Iterator<Item = &'a str>) -> Result<(), AppError> {
    use diesel::connection::SimpleConnection;
    let locks = children_locks(numbers)?;
    conn.batch_execute(&locks).map_err(lock_error)
}

/// The statements that lock each child until the transaction ends: a transaction-scoped advisory
/// lock keyed by the NHS number, taken in key order (so two callers never wait for each other
/// crosswise), waited for at most [`CHILD_LOCK_TIMEOUT`] (for these locks alone: the timeout is
/// set back before anything else, such as the chain's lock at COMMIT). Not the patient's row: a
/// PDS update holding many patients' rows would then hold up every batch of openings, and a row
/// lock writes to the table. Only openings take these locks.
///
/// Text for the simple protocol, so that it can be sent with other statements in one round trip
/// (its keys are numbers made here, never text from outside).
fn children_locks<'a>(numbers: impl Iterator<Item = &'a str>) -> Result<String, AppError> {
    let keys: Vec<String> = child_lock_keys(numbers)?.iter().map(i64::to_string).collect();
    // In array order: the sub-select is not flattened, so each row's lock is taken as it is read.
    Ok(format!(
        "SET LOCAL lock_timeout = '{}ms'; \
         SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest('{{{}}}'::bigint[]) AS u(k) OFFSET 0) AS s; \
         SET LOCAL lock_timeout TO DEFAULT",
        CHILD_LOCK_TIMEOUT.as_millis(),
        keys.join(",")
    ))
}

/// The children's advisory lock keys, each once, in the order they are taken (key order, so that
/// two callers never wait for each other crosswise): [`CHILD_LOCK_BASE`] plus the NHS number.
fn child_lock_keys<'a>(numbers: impl Iterator<Item = &'a str>) -> Result<Vec<i64>, AppError> {
    let mut keys = Vec::new();
    for n in numbers {
        let number: i64 = n.parse().map_err(|_| AppError::Internal("an opening names no NHS number".into()))?;
        keys.push(CHILD_LOCK_BASE + number);
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// A child's lock held elsewhere for longer than an opening ever holds it is the 503 of "try
/// again shortly"; any other failure is as usual.
fn lock_error(e: diesel::result::Error) -> AppError {
    match &e {
        diesel::result::Error::DatabaseError(_, info) if info.message().contains("lock timeout") => {
            tracing::warn!("an opening gave up waiting for its child's lock");
            AppError::Unavailable
        }
        _ => AppError::from(e),
    }
}

/// What the tab would show, without opening it: nothing is locked or recorded. For reads that are
/// not themselves an access (a scheduled FHIR query, the FHIR access history). `held` is what the
/// child's numbers hold ([`items::lookup_held`]). `None` when there is nothing for this viewer to
/// see; `access_shown` is then meaningless and false.
pub fn read(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    patient: &Patient,
    linked: &[String],
    held: Vec<HeldItem>,
    may_see_unborn: bool,
    now: DateTime<Utc>,
) -> Result<Option<AlertTab>, AppError> {
    let authorities = authorities(held, patient, may_see_unborn, now);
    if authorities.is_empty() {
        return Ok(None);
    }
    let history = access::history(conn, names, linked)?;
    Ok(Some(AlertTab { authorities, history, access_shown: false }))
}

/// The items the viewer may see today ([`items::visible`]), and the authorities holding any item.
fn visible_held(
    held: Vec<HeldItem>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_locked_once_each_in_key_order_with_their_own_timeout() {
        let sql = children_locks(["9434765919", "9434765870", "9434765919"].into_iter()).unwrap();
        let (a, b) = (CHILD_LOCK_BASE + 9_434_765_870, CHILD_LOCK_BASE + 9_434_765_919);
        assert!(sql.contains(&format!("'{{{a},{b}}}'::bigint[]")), "{sql}");
        assert!(sql.starts_with("SET LOCAL lock_timeout = '2000ms'; "), "{sql}");
        assert!(sql.ends_with("; SET LOCAL lock_timeout TO DEFAULT"), "{sql}");
    }

    #[test]
    fn only_nhs_numbers_become_lock_keys() {
        // The keys are written into the statement's text: anything but a number is refused.
        assert!(children_locks(["9434765919'); DROP TABLE patients; --"].into_iter()).is_err());
        assert!(children_locks(["".into()].iter().map(String::as_str)).is_err());
    }
}
