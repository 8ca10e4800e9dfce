//! Access events: every access is stored (CP-IS036, CP-IS047); the first-access rule decides, as
//! each one is recorded, whether it is shown in the history, the API and message 05.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::auth::session_cache::AccountContact;
use crate::domain::access_history::{self, HISTORY_LIMIT};
use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Scra,
    Fhir,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Channel::Scra => "SCRa",
            Channel::Fhir => "FHIR",
        }
    }

    /// Whether an opening through this channel shows the child's access history (CP-IS048): the
    /// tab does; a FHIR CareTeam search does not (its history is the AuditEvent search, which
    /// records nothing), so its opening reads none.
    pub fn shows_history(self) -> bool {
        self == Channel::Scra
    }
}

/// Who is looking, as the access history records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// "The same user" of CP-IS047: the account's SDS user id, or the API's NHSD-End-User-ID.
    pub viewer_id: String,
    pub user_id: Option<i64>,
    pub name: String,
    pub job_role_code: String,
    pub organisation_code: String,
    pub channel: Channel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub shown: bool,
}

/// What a batch's first-access decisions rest on (CP-IS047): for each (NHS number, viewer) of its
/// accesses, once, the start of the window read ([`access_history::window_start`] of the earliest
/// of its accesses) and the latest shown access found after it. As long as the same question gets
/// the same answers, the decisions stand. A batch stored without a transaction has that checked
/// under its children's locks, in the statement that stores it (`alert::record_openings_alone`).
#[derive(Debug, Clone, PartialEq)]
pub struct Basis {
    numbers: Vec<String>,
    viewers: Vec<String>,
    since: Vec<DateTime<Utc>>,
    latest: Vec<Option<DateTime<Utc>>>,
}

impl Basis {
    /// Binds the next four placeholders: the NHS numbers, the viewer ids, the windows' starts and
    /// the latest shown accesses (null for none), one per (NHS number, viewer).
    pub fn bind<S>(self, query: crate::db::prepared::Prepared<S>) -> crate::db::prepared::Prepared<S> {
        use diesel::sql_types::{Array, Nullable, Text, Timestamptz};
        query
            .bind::<Array<Text>, _>(self.numbers)
            .bind::<Array<Text>, _>(self.viewers)
            .bind::<Array<Timestamptz>, _>(self.since)
            .bind::<Array<Nullable<Timestamptz>>, _>(self.latest)
    }

    /// The place of (NHS number, viewer id) among the pairs.
    fn pair(&self, nhs_number: &str, viewer_id: &str) -> Option<usize> {
        (0..self.numbers.len()).find(|&i| self.numbers[i] == nhs_number && self.viewers[i] == viewer_id)
    }

    /// Per (NHS number, viewer id), the time of the viewer's latest shown access to the child, as
    /// [`access_history::decide_in_order`] takes it.
    fn latest_shown(&self) -> HashMap<(&str, &str), DateTime<Utc>> {
        self.numbers
            .iter()
            .zip(&self.viewers)
            .zip(&self.latest)
            .filter_map(|((n, v), l)| l.map(|at| ((n.as_str(), v.as_str()), at)))
            .collect()
    }
}

/// One history per list of numbers, in the lists' order ([`histories`], [`record_reading`]).
pub type Histories = Vec<Vec<HistoryEntry>>;

/// What recording a batch of accesses reads first ([`read_before_recording`]): what their
/// first-access decisions rest on, each list's history before them, and an id for each access.
#[derive(Debug, Clone, PartialEq)]
pub struct BeforeRecording {
    basis: Basis,
    before: Histories,
    ids: Vec<i64>,
}

/// What [`read_before_recording`] reads for one access, read ahead with its child's record
/// (`items::lookup_held_reading_ahead`): the viewer's latest shown access to the child after
/// `since` (the window's start, [`access_history::window_start`]), the history of the child's
/// numbers (not named), and the access's id.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadAhead {
    pub since: DateTime<Utc>,
    pub latest: Option<DateTime<Utc>>,
    pub history: Vec<HistoryEntry>,
    pub id: i64,
}

/// A shown access this instance recorded, as the access recorder remembers it for a while
/// (`recent::Recent`): what a read ahead of it may lack.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentAccess {
    pub nhs_number: String,
    pub viewer_id: String,
    pub line: HistoryEntry,
}

impl RecentAccess {
    /// An access recorded as shown, with the id it was given, to remember.
    pub fn of(access: &NewAccess<'_>, id: i64) -> RecentAccess {
        RecentAccess {
            nhs_number: access.nhs_number.to_owned(),
            viewer_id: access.viewer.viewer_id.clone(),
            line: HistoryEntry::recorded(access, id),
        }
    }
}

impl BeforeRecording {
    /// The read before recording `accesses`, put together from each one's [`ReadAhead`] (in the
    /// same order) and the shown accesses recorded since the earliest of those reads may have
    /// been taken (`since_read`; any recorded before it too, which change nothing), as
    /// [`read_before_recording`] would read it now, as far as this instance's accesses go:
    /// - each (NHS number, viewer)'s window starts at the earliest of its accesses' `since`, and
    ///   its latest shown access is the latest of those read and those in `since_read` after it
    ///   (an access another instance recorded meanwhile is not known here: the store's check of
    ///   the [`Basis`] finds it, and the batch is recorded again, locked);
    /// - each list's history is the one read ahead with `since_read`'s lines of its numbers
    ///   added, each line once ([`with_recorded`]);
    /// - the ids are those read ahead.
    ///
    /// `None` when the reads ahead do not cover the batch: an access without one, or lists that
    /// are not one per access, of that access's child (unless there are none).
    pub fn from_read_aheads(
        accesses: &[NewAccess<'_>],
        lists: &[&[String]],
        aheads: &[Option<&ReadAhead>],
        since_read: &[RecentAccess],
    ) -> Option<BeforeRecording> {
        if aheads.len() != accesses.len() || (!lists.is_empty() && lists.len() != accesses.len()) {
            return None;
        }
        let mut basis = Basis { numbers: Vec::new(), viewers: Vec::new(), since: Vec::new(), latest: Vec::new() };
        let mut ids = Vec::with_capacity(accesses.len());
        let mut before = Vec::with_capacity(lists.len());
        for (place, (a, ahead)) in accesses.iter().zip(aheads).enumerate() {
            let ahead = (*ahead)?;
            ids.push(ahead.id);
            match basis.pair(a.nhs_number, &a.viewer.viewer_id) {
                Some(i) => {
                    basis.since[i] = basis.since[i].min(ahead.since);
                    basis.latest[i] = basis.latest[i].max(ahead.latest);
                }
                None => {
                    basis.numbers.push(a.nhs_number.to_owned());
                    basis.viewers.push(a.viewer.viewer_id.clone());
                    basis.since.push(ahead.since);
                    basis.latest.push(ahead.latest);
                }
            }
            if let Some(list) = lists.get(place) {
                if list.is_empty() {
                    before.push(Vec::new());
                    continue;
                }
                if !list.iter().any(|n| n == a.nhs_number) {
                    return None;
                }
                let recent = since_read.iter().filter(|r| list.contains(&r.nhs_number)).map(|r| r.line.clone());
                before.push(with_recorded(ahead.history.clone(), recent));
            }
        }
        for r in since_read {
            if let Some(i) = basis.pair(&r.nhs_number, &r.viewer_id).filter(|&i| r.line.accessed_at > basis.since[i]) {
                basis.latest[i] = basis.latest[i].max(Some(r.line.accessed_at));
            }
        }
        Some(BeforeRecording { basis, before, ids })
    }
}

/// An access to record: the child's NHS number, who is looking, and when.
#[derive(Debug, Clone, Copy)]
pub struct NewAccess<'a> {
    pub nhs_number: &'a str,
    pub viewer: &'a Viewer,
    pub at: DateTime<Utc>,
}

/// Records an access at `at`: [`record_many`] for one.
pub fn record(
    conn: &mut PgConnection,
    nhs_number: &str,
    viewer: &Viewer,
    at: DateTime<Utc>,
) -> Result<Recorded, AppError> {
    let mut recorded = record_many(conn, &[NewAccess { nhs_number, viewer, at }])?;
    Ok(recorded.remove(0))
}

/// Records accesses, deciding them in the order given (CP-IS047): one read of who saw each child
/// last, one insert. The caller holds each child's lock (`alert::record_openings`) so that
/// accesses to one child are decided one after the other, here or elsewhere.
///
/// Every shown access of the viewer counts, even one stamped later than `at`: an opening takes its
/// time before it waits for the lock, so one that took its time first may get the lock second,
/// after a later-stamped opening was recorded as shown. That access is then within the window
/// ([`access_history::is_shown`]) and this one is not shown: at most one per 24 hours (CP-IS047).
/// Within one call the same holds ([`access_history::decide_in_order`]).
pub fn record_many(conn: &mut PgConnection, accesses: &[NewAccess<'_>]) -> Result<Vec<Recorded>, AppError> {
    Ok(record_reading(conn, &Default::default(), accesses, &[], None, |conn, recorded, _| {
        insert(conn, accesses, recorded)
    })?
    .0)
}

/// [`record_many`], the accesses stored by `store` as decided (their ids taken already, so that
/// what is stored with them, such as their audit entries, can name them: [`insert`] alone, or
/// [`insert_accesses!`] with more in one statement; with what the decisions rest on, [`Basis`]),
/// and the shown accesses to each list of numbers as they stand after these ([`histories`]): read
/// in the same statement as who saw each child last and the ids, before the insert, with the
/// accesses recorded here added to them ([`with_recorded`]). The access recorder's batches are
/// recorded so (issue 8: each round trip saved is one fewer on its serial path). The caller holds
/// the lock of every child whose accesses the lists are of, so that no other access to them is
/// recorded in between, or has `store` check the [`Basis`] under those locks. `read`, when given,
/// is that read done already ([`BeforeRecording::from_read_aheads`]), for the same accesses and
/// lists: nothing is read then.
pub fn record_reading(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    accesses: &[NewAccess<'_>],
    lists: &[&[String]],
    read: Option<BeforeRecording>,
    store: impl FnOnce(&mut PgConnection, &[Recorded], Basis) -> Result<(), AppError>,
) -> Result<(Vec<Recorded>, Histories), AppError> {
    if accesses.is_empty() {
        return Ok((Vec::new(), lists.iter().map(|_| Vec::new()).collect()));
    }
    let BeforeRecording { basis, before, ids } = match read {
        Some(read) => read,
        None => read_before_recording(conn, accesses, lists)?,
    };
    let keyed: Vec<((&str, &str), DateTime<Utc>)> =
        accesses.iter().map(|a| ((a.nhs_number, a.viewer.viewer_id.as_str()), a.at)).collect();
    let shown = access_history::decide_in_order(basis.latest_shown(), &keyed);
    let recorded: Vec<Recorded> = ids.into_iter().zip(shown).map(|(id, shown)| Recorded { id, shown }).collect();
    store(conn, &recorded, basis)?;
    let mut histories: Histories = before
        .into_iter()
        .zip(lists)
        .map(|(history, numbers)| {
            let new = accesses
                .iter()
                .zip(&recorded)
                .filter(|(a, r)| r.shown && numbers.iter().any(|n| n == a.nhs_number))
                .map(|(a, r)| HistoryEntry::recorded(a, r.id));
            with_recorded(history, new)
        })
        .collect();
    // (A list with no line is not named: a fresh `names`, as `record_many`'s, would read them all.)
    for history in histories.iter_mut().filter(|h| !h.is_empty()) {
        names.name(conn, history);
    }
    Ok((recorded, histories))
}

/// The insert of a batch's accesses as recorded, with the ids they were given (placeholders $1 to
/// $10: ids, NHS numbers, times, viewer ids, user ids, names, job roles, organisations, channels,
/// shown), for a statement that may store more with it. Bound by [`bind_accesses`]. The arrays are
/// read through sub-selects, so that every plan estimates them alike and PostgreSQL keeps one
/// generic plan (as [`read_before_recording`]). With `where` and a condition, nothing is inserted
/// before the condition is evaluated, once (an uncorrelated sub-select).
macro_rules! insert_accesses {
    () => {
        $crate::cpis::access::insert_accesses!(where "true")
    };
    (where $condition:literal) => {
        concat!(
            "INSERT INTO access_events (id, nhs_number, accessed_at, viewer_id, user_id, viewer_name, job_role_code, \
                 organisation_code, channel, shown) \
             SELECT id, n, t, v, u, vn, j, o, c, s FROM unnest((SELECT $1::bigint[]), (SELECT $2::text[]), \
                 (SELECT $3::timestamptz[]), (SELECT $4::text[]), (SELECT $5::bigint[]), (SELECT $6::text[]), \
                 (SELECT $7::text[]), (SELECT $8::text[]), (SELECT $9::text[]), (SELECT $10::bool[])) \
                 AS a(id, n, t, v, u, vn, j, o, c, s) WHERE ",
            $condition
        )
    };
}
pub(crate) use insert_accesses;

/// Binds the first ten placeholders, in [`insert_accesses!`]'s order: the accesses as recorded.
pub fn bind_accesses<S>(
    query: crate::db::prepared::Prepared<S>,
    accesses: &[NewAccess<'_>],
    recorded: &[Recorded],
) -> crate::db::prepared::Prepared<S> {
    use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
    let column = |f: fn(&NewAccess<'_>) -> String| accesses.iter().map(f).collect::<Vec<String>>();
    query
        .bind::<Array<BigInt>, _>(recorded.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(|a| a.nhs_number.to_owned()))
        .bind::<Array<Timestamptz>, _>(accesses.iter().map(|a| a.at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(|a| a.viewer.viewer_id.clone()))
        .bind::<Array<Nullable<BigInt>>, _>(accesses.iter().map(|a| a.viewer.user_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(|a| a.viewer.name.clone()))
        .bind::<Array<Text>, _>(column(|a| a.viewer.job_role_code.clone()))
        .bind::<Array<Text>, _>(column(|a| a.viewer.organisation_code.clone()))
        .bind::<Array<Text>, _>(column(|a| a.viewer.channel.code().to_owned()))
        .bind::<Array<Bool>, _>(recorded.iter().map(|r| r.shown).collect::<Vec<_>>())
}

/// Inserts the accesses as recorded, alone, in one statement.
fn insert(conn: &mut PgConnection, accesses: &[NewAccess<'_>], recorded: &[Recorded]) -> Result<(), AppError> {
    bind_accesses(crate::db::prepared::sql!(insert_accesses!()), accesses, recorded).execute(conn)?;
    Ok(())
}

/// The body of a lateral sub-select: the `$limit` newest shown accesses to the number `$number`,
/// with what a history line shows, read from that number's own end of the history index
/// (`access_events_child_idx`). The history's reads here and the tab thread's
/// (`items::lookup_held_reading_ahead`) merge these over a record's numbers.
macro_rules! newest_shown_of {
    ($number:literal, $limit:literal) => {
        concat!(
            "SELECT id, accessed_at, user_id, viewer_name, job_role_code, organisation_code \
             FROM access_events \
             WHERE access_events.nhs_number = ",
            $number,
            " AND shown \
             ORDER BY accessed_at DESC, id DESC LIMIT ",
            $limit
        )
    };
}
pub(crate) use newest_shown_of;

/// The FROM list of the history's read: for each list `w.o` of the arrays `$owners` (its place,
/// from 0, for each number) and `$numbers`, the `$limit` newest shown accesses to any of its
/// numbers, as `a`. Each number's are read from its own end of the history index, so the cost
/// follows the limit, not how often the child was viewed.
macro_rules! newest_shown {
    ($owners:literal, $numbers:literal, $limit:literal) => {
        concat!(
            "FROM (SELECT DISTINCT o FROM unnest(",
            $owners,
            ") AS w(o)) AS w \
             CROSS JOIN LATERAL ( \
                 SELECT e.* FROM unnest(",
            $owners,
            ", ",
            $numbers,
            ") AS n(o, nhs_number) \
                 CROSS JOIN LATERAL (",
            newest_shown_of!("n.nhs_number", $limit),
            ") AS e \
                 WHERE n.o = w.o \
                 ORDER BY e.accessed_at DESC, e.id DESC LIMIT ",
            $limit,
            " \
             ) AS a"
        )
    };
}

/// What deciding and listing a batch's accesses needs, read in one statement before they are
/// inserted:
/// - for each (NHS number, viewer) of the accesses, the latest shown access after
///   [`access_history::window_start`] of the earliest of them: only those can hide one of them.
///   It is one probe of `access_events_child_viewer_idx` (migration 000032), whoever else viewed
///   the child that day;
/// - each list's history as it stands ([`histories`]' rows, not yet named), newest first;
/// - an id from the accesses' sequence for each access, ascending in the order given, so that
///   their audit entries, which name them, can be stored in the same statement as they are.
///
/// The arrays are read through sub-selects so that every plan estimates them alike and
/// PostgreSQL keeps one generic plan instead of planning the statement on every opening (as
/// `items::current_held`).
fn read_before_recording(
    conn: &mut PgConnection,
    accesses: &[NewAccess<'_>],
    lists: &[&[String]],
) -> Result<BeforeRecording, AppError> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
    /// A row of any part: `k` 0 is a pair's latest shown access (`o` its place in the pairs,
    /// from 1; `accessed_at` null when there is none), `k` 1 a history line (`o` its list), `k` 2
    /// an access's id.
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        k: i32,
        #[diesel(sql_type = BigInt)]
        o: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        id: Option<i64>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        accessed_at: Option<DateTime<Utc>>,
        #[diesel(sql_type = Nullable<BigInt>)]
        user_id: Option<i64>,
        #[diesel(sql_type = Nullable<Text>)]
        viewer_name: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        job_role_code: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        organisation_code: Option<String>,
    }
    // Each (NHS number, viewer) once, read from the earliest window start among its accesses.
    let mut starts: HashMap<(&str, &str), DateTime<Utc>> = HashMap::new();
    for a in accesses {
        let start = access_history::window_start(a.at);
        starts.entry((a.nhs_number, a.viewer.viewer_id.as_str())).and_modify(|s| *s = (*s).min(start)).or_insert(start);
    }
    let mut basis = Basis {
        numbers: Vec::with_capacity(starts.len()),
        viewers: Vec::with_capacity(starts.len()),
        since: Vec::with_capacity(starts.len()),
        latest: vec![None; starts.len()],
    };
    for ((n, v), w) in starts {
        basis.numbers.push(n.to_owned());
        basis.viewers.push(v.to_owned());
        basis.since.push(w);
    }
    let (owners, numbers): (Vec<i32>, Vec<String>) =
        lists.iter().enumerate().flat_map(|(o, list)| list.iter().map(move |n| (o as i32, n.clone()))).unzip();
    let rows: Vec<Row> = crate::db::prepared::sql!(concat!(
        "SELECT 0 AS k, q.i AS o, NULL::bigint AS id, \
             (SELECT max(accessed_at) FROM access_events \
              WHERE nhs_number = q.n AND viewer_id = q.v AND shown AND accessed_at > q.w) AS accessed_at, \
             NULL::bigint AS user_id, NULL::text AS viewer_name, NULL::text AS job_role_code, \
             NULL::text AS organisation_code \
         FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::timestamptz[])) WITH ORDINALITY AS q(n, v, w, i) \
         UNION ALL \
         SELECT 2, g, nextval('access_events_id_seq'), NULL, NULL, NULL, NULL, NULL \
         FROM generate_series(1, (SELECT $7::bigint)) AS g \
         UNION ALL \
         SELECT 1, w.o, a.id, a.accessed_at, a.user_id, a.viewer_name, a.job_role_code, a.organisation_code ",
        newest_shown!("(SELECT $4::int[])", "(SELECT $5::text[])", "$6")
    ),
    )
    .bind::<Array<Text>, _>(basis.numbers.clone())
    .bind::<Array<Text>, _>(basis.viewers.clone())
    .bind::<Array<Timestamptz>, _>(basis.since.clone())
    .bind::<Array<Integer>, _>(owners)
    .bind::<Array<Text>, _>(numbers)
    .bind::<BigInt, _>(HISTORY_LIMIT as i64)
    .bind::<BigInt, _>(accesses.len() as i64)
    .load(conn)?;
    let mut ids = Vec::with_capacity(accesses.len());
    let mut histories: Vec<Vec<HistoryEntry>> = lists.iter().map(|_| Vec::new()).collect();
    for row in rows {
        if row.k == 2 {
            ids.extend(row.id);
            continue;
        }
        if row.k == 0 {
            if let Some(latest) =
                usize::try_from(row.o).ok().and_then(|i| i.checked_sub(1)).and_then(|i| basis.latest.get_mut(i))
            {
                *latest = row.accessed_at;
            }
            continue;
        }
        let (Some(id), Some(accessed_at), Some(viewer_name), Some(job_role_code), Some(organisation_code)) =
            (row.id, row.accessed_at, row.viewer_name, row.job_role_code, row.organisation_code)
        else {
            continue;
        };
        if let Some(list) = usize::try_from(row.o).ok().and_then(|o| histories.get_mut(o)) {
            list.push(HistoryEntry::unnamed(
                id,
                accessed_at,
                row.user_id,
                viewer_name,
                job_role_code,
                organisation_code,
            ));
        }
    }
    if ids.len() != accesses.len() {
        return Err(AppError::Internal("the accesses' ids were not all taken".into()));
    }
    // Taken in the order of the series; sorted all the same, since that order is what they stand for.
    ids.sort_unstable();
    Ok(BeforeRecording { basis, before: histories, ids })
}

/// A list's history with accesses recorded since it was read added to it: newest first, ties by
/// id (the later recorded first), each line once (one read may have had it already), at most
/// [`HISTORY_LIMIT`], as [`histories`] reads it.
fn with_recorded(mut history: Vec<HistoryEntry>, recorded: impl Iterator<Item = HistoryEntry>) -> Vec<HistoryEntry> {
    history.extend(recorded);
    history.sort_by_key(|h| std::cmp::Reverse((h.accessed_at, h.id)));
    history.dedup_by_key(|h| h.id);
    history.truncate(HISTORY_LIMIT);
    history
}

/// One line of the access history, with names in readable form where the reference data has them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: i64,
    pub accessed_at: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub viewer_name: String,
    pub job_role_code: String,
    /// Shared with the instance's names ([`super::reference_names`]): a history's lines name the
    /// same roles and organisations again and again, and are set on the recording thread.
    pub job_role_name: Option<Arc<str>>,
    pub organisation_code: String,
    pub organisation_name: Option<Arc<str>>,
    /// The viewer's account contact details, when the viewer has an account here and they were
    /// asked for ([`super::contacts::fill`]: the tab shows them, the FHIR API does not), shared
    /// with those the instance remembers.
    pub contact: Option<Arc<AccountContact>>,
}

/// A line of the access history as the history's statement reads it.
#[derive(QueryableByName)]
struct HistoryRow {
    /// Which list (0-based) the line is of.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    o: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    accessed_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    user_id: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    viewer_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    job_role_code: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    organisation_code: String,
}

impl HistoryRow {
    /// The list it is of, and the line (names and contact not yet set).
    fn into_entry(self) -> (i32, HistoryEntry) {
        let entry = HistoryEntry::unnamed(
            self.id,
            self.accessed_at,
            self.user_id,
            self.viewer_name,
            self.job_role_code,
            self.organisation_code,
        );
        (self.o, entry)
    }
}

impl HistoryEntry {
    /// The line of an access just recorded with id `id`, as the history's statement would read it
    /// back (its time to the microsecond, as stored).
    fn recorded(a: &NewAccess<'_>, id: i64) -> HistoryEntry {
        use chrono::SubsecRound;
        HistoryEntry::unnamed(
            id,
            a.at.trunc_subsecs(6),
            a.viewer.user_id,
            a.viewer.name.clone(),
            a.viewer.job_role_code.clone(),
            a.viewer.organisation_code.clone(),
        )
    }

    /// A line as read, its names and contact details not yet set.
    pub(crate) fn unnamed(
        id: i64,
        accessed_at: DateTime<Utc>,
        user_id: Option<i64>,
        viewer_name: String,
        job_role_code: String,
        organisation_code: String,
    ) -> HistoryEntry {
        HistoryEntry {
            id,
            accessed_at,
            user_id,
            viewer_name,
            job_role_code,
            job_role_name: None,
            organisation_code,
            organisation_name: None,
            contact: None,
        }
    }

    /// CP-IS059: a disabled account's contact details are shown to nobody.
    pub fn contact(&self) -> Option<(Option<&str>, Option<&str>)> {
        let contact = self.contact.as_ref().filter(|c| c.disabled_at.is_none())?;
        Some((contact.email.as_deref(), contact.telephone.as_deref()))
    }
}

/// The shown accesses to any of the numbers: newest first, ties in insertion order, at most 25 (CP-IS048).
/// Each number's newest shown accesses are read from its own end of the history index (so the
/// cost follows 25, not how often the child was viewed), and the job role and organisation names
/// come from the instance's `names`. The viewers' contact details are not read here: the tab asks
/// for them ([`super::contacts::fill`]), the FHIR API does not show them.
pub fn history(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    numbers: &[String],
) -> QueryResult<Vec<HistoryEntry>> {
    Ok(histories(conn, names, &[numbers])?.pop().unwrap_or_default())
}

/// [`history`] for several children at once, in one statement: one history per list of numbers,
/// in the order given.
pub fn histories(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    lists: &[&[String]],
) -> QueryResult<Vec<Vec<HistoryEntry>>> {
    use diesel::sql_types::{Array, BigInt, Integer, Text};
    let (owners, numbers): (Vec<i32>, Vec<String>) =
        lists.iter().enumerate().flat_map(|(o, list)| list.iter().map(move |n| (o as i32, n.clone()))).unzip();
    let rows: Vec<HistoryRow> = crate::db::prepared::sql!(concat!(
        "SELECT w.o, a.id, a.accessed_at, a.user_id, a.viewer_name, a.job_role_code, a.organisation_code ",
        newest_shown!("$1::int[]", "$2::text[]", "$3"),
        " ORDER BY w.o, a.accessed_at DESC, a.id DESC"
    ))
    .bind::<Array<Integer>, _>(owners)
    .bind::<Array<Text>, _>(numbers)
    .bind::<BigInt, _>(HISTORY_LIMIT as i64)
    .load(conn)?;
    let (owners, mut entries): (Vec<i32>, Vec<HistoryEntry>) = rows.into_iter().map(HistoryRow::into_entry).unzip();
    names.name(conn, &mut entries);
    let mut out: Vec<Vec<HistoryEntry>> = lists.iter().map(|_| Vec::new()).collect();
    for (o, entry) in owners.into_iter().zip(entries) {
        if let Some(list) = usize::try_from(o).ok().and_then(|o| out.get_mut(o)) {
            list.push(entry);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// CP-IS048: the tab shows the child's history; a FHIR CareTeam search shows none.
    #[test]
    fn only_the_tab_shows_the_history() {
        assert!(Channel::Scra.shows_history());
        assert!(!Channel::Fhir.shows_history());
    }

    fn line(id: i64, minute: u32) -> HistoryEntry {
        HistoryEntry {
            id,
            accessed_at: Utc.with_ymd_and_hms(2026, 11, 23, 9, minute, 0).unwrap(),
            user_id: None,
            viewer_name: format!("Dr {id}"),
            job_role_code: "R8000".into(),
            job_role_name: None,
            organisation_code: "RJZ".into(),
            organisation_name: None,
            contact: None,
        }
    }

    fn ids(history: &[HistoryEntry]) -> Vec<i64> {
        history.iter().map(|h| h.id).collect()
    }

    #[test]
    fn accesses_just_recorded_join_the_history_newest_first_ties_by_id() {
        let read = vec![line(7, 30), line(5, 20), line(6, 20)];
        let merged = with_recorded(read, [line(9, 20), line(8, 40)].into_iter());
        assert_eq!(ids(&merged), [8, 7, 9, 6, 5]);
    }

    #[test]
    fn the_history_keeps_its_25_newest_cp_is048() {
        let read: Vec<HistoryEntry> = (0..25).map(|i| line(i, i as u32)).rev().collect();
        let merged = with_recorded(read, [line(100, 59), line(101, 0)].into_iter());
        assert_eq!(merged.len(), HISTORY_LIMIT);
        assert_eq!(merged[0].id, 100, "the newest access leads");
        assert!(!ids(&merged).contains(&0) && !ids(&merged).contains(&101), "the oldest fall off");
    }

    #[test]
    fn a_recorded_line_has_the_time_as_stored_to_the_microsecond() {
        let viewer = Viewer {
            viewer_id: "v".into(),
            user_id: Some(3),
            name: "Dr V".into(),
            job_role_code: "R8000".into(),
            organisation_code: "RJZ".into(),
            channel: Channel::Scra,
        };
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap() + chrono::TimeDelta::nanoseconds(1_234_567);
        let entry = HistoryEntry::recorded(&NewAccess { nhs_number: "9434765919", viewer: &viewer, at }, 42);
        assert_eq!(entry.accessed_at.timestamp_subsec_nanos(), 1_234_000);
        assert_eq!((entry.id, entry.user_id, entry.viewer_name.as_str()), (42, Some(3), "Dr V"));
    }

    fn viewer(id: &str) -> Viewer {
        Viewer {
            viewer_id: id.into(),
            user_id: None,
            name: format!("Dr {id}"),
            job_role_code: "R8000".into(),
            organisation_code: "RJZ".into(),
            channel: Channel::Scra,
        }
    }

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 9, minute, 0).unwrap()
    }

    fn ahead(minute: u32, latest: Option<u32>, history: Vec<HistoryEntry>, id: i64) -> ReadAhead {
        ReadAhead { since: access_history::window_start(at(minute)), latest: latest.map(at), history, id }
    }

    fn remembered(nhs_number: &str, viewer_id: &str, line: HistoryEntry) -> RecentAccess {
        RecentAccess { nhs_number: nhs_number.into(), viewer_id: viewer_id.into(), line }
    }

    const CHILD: &str = "9434765919";
    const SIBLING: &str = "9434765870";

    /// Issue 8: a batch read ahead is put together as `read_before_recording` would read it now,
    /// this instance's accesses since the reads included (CP-IS047's basis, CP-IS048's history).
    #[test]
    fn reads_ahead_with_what_was_recorded_since_are_the_read_before_recording() {
        let (a, b) = (viewer("a"), viewer("b"));
        let accesses = [
            NewAccess { nhs_number: CHILD, viewer: &a, at: at(30) },
            NewAccess { nhs_number: CHILD, viewer: &a, at: at(31) },
            NewAccess { nhs_number: SIBLING, viewer: &b, at: at(30) },
        ];
        let child = [CHILD.to_owned()];
        let sibling = [SIBLING.to_owned()];
        let lists: [&[String]; 3] = [&child, &child, &sibling];
        // The first read saw a's access at :10 and line 5; the second, later, a's at :20 too.
        let first = ahead(30, Some(10), vec![line(5, 10)], 100);
        let second = ahead(31, Some(20), vec![line(6, 20), line(5, 10)], 101);
        let third = ahead(30, None, Vec::new(), 102);
        // Remembered since: line 6 (which the second read saw), and b's access to the sibling.
        let since_read = [
            remembered(CHILD, "a", line(6, 20)),
            remembered(SIBLING, "b", line(7, 25)),
            remembered(CHILD, "c", line(8, 26)),
        ];
        let read = BeforeRecording::from_read_aheads(
            &accesses,
            &lists,
            &[Some(&first), Some(&second), Some(&third)],
            &since_read,
        )
        .unwrap();
        assert_eq!(read.ids, [100, 101, 102]);
        // One pair per (child, viewer): the earliest window, the latest shown access of any source.
        assert_eq!(read.basis.numbers, [CHILD, SIBLING]);
        assert_eq!(read.basis.viewers, ["a", "b"]);
        assert_eq!(read.basis.since, [access_history::window_start(at(30)); 2]);
        assert_eq!(read.basis.latest, [Some(at(20)), Some(at(25))]);
        // Each line once, newest first; c's access to the child joins the child's lists.
        assert_eq!(ids(&read.before[0]), [8, 6, 5]);
        assert_eq!(ids(&read.before[1]), [8, 6, 5]);
        assert_eq!(ids(&read.before[2]), [7]);
    }

    #[test]
    fn a_remembered_access_before_the_window_is_no_latest() {
        let a = viewer("a");
        let accesses = [NewAccess { nhs_number: CHILD, viewer: &a, at: at(30) + access_history::FIRST_ACCESS_WINDOW }];
        let read = ahead(30, None, Vec::new(), 1);
        let read = ReadAhead { since: access_history::window_start(accesses[0].at), ..read };
        let old = [remembered(CHILD, "a", line(3, 29))];
        let put = BeforeRecording::from_read_aheads(&accesses, &[], &[Some(&read)], &old).unwrap();
        assert_eq!(put.basis.latest, [None], "from before the window: it hides nothing");
        assert!(put.before.is_empty());
    }

    #[test]
    fn a_batch_not_wholly_read_ahead_is_read_afresh() {
        let a = viewer("a");
        let accesses = [NewAccess { nhs_number: CHILD, viewer: &a, at: at(30) }; 2];
        let read = ahead(30, None, Vec::new(), 1);
        // An opening with no read ahead.
        assert_eq!(BeforeRecording::from_read_aheads(&accesses, &[], &[Some(&read), None], &[]), None);
        // A list that is not of the access's child.
        let other = [SIBLING.to_owned()];
        assert_eq!(BeforeRecording::from_read_aheads(&accesses[..1], &[&other], &[Some(&read)], &[]), None);
        // As many reads as accesses, or nothing.
        assert_eq!(BeforeRecording::from_read_aheads(&accesses, &[], &[Some(&read)], &[]), None);
        assert!(BeforeRecording::from_read_aheads(&accesses, &[], &[Some(&read), Some(&read)], &[]).is_some());
    }
}
