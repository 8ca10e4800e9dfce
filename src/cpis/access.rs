//! Access events: every access is stored (CP-IS036, CP-IS047); the first-access rule decides, as
//! each one is recorded, whether it is shown in the history, the API and message 05.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::auth::session_cache::AccountContact;
use crate::domain::access_history::{self, HISTORY_LIMIT};

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

/// An access to record: the child's NHS number, who is looking, and when.
#[derive(Debug, Clone, Copy)]
pub struct NewAccess<'a> {
    pub nhs_number: &'a str,
    pub viewer: &'a Viewer,
    pub at: DateTime<Utc>,
}

/// Records an access at `at`: [`record_many`] for one.
pub fn record(conn: &mut PgConnection, nhs_number: &str, viewer: &Viewer, at: DateTime<Utc>) -> QueryResult<Recorded> {
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
pub fn record_many(conn: &mut PgConnection, accesses: &[NewAccess<'_>]) -> QueryResult<Vec<Recorded>> {
    if accesses.is_empty() {
        return Ok(Vec::new());
    }
    let latest = latest_shown_in_window(conn, accesses)?;
    let keyed: Vec<((&str, &str), DateTime<Utc>)> =
        accesses.iter().map(|a| ((a.nhs_number, a.viewer.viewer_id.as_str()), a.at)).collect();
    let shown = access_history::decide_in_order(latest, &keyed);
    let ids = insert(conn, accesses, &shown)?;
    Ok(ids.into_iter().zip(shown).map(|(id, shown)| Recorded { id, shown }).collect())
}

/// Inserts the accesses in the order given, in one statement; their ids in that order.
fn insert(conn: &mut PgConnection, accesses: &[NewAccess<'_>], shown: &[bool]) -> QueryResult<Vec<i64>> {
    use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let column = |f: fn(&NewAccess<'_>) -> String| accesses.iter().map(f).collect::<Vec<String>>();
    // The arrays are read through sub-selects, so that every plan estimates them alike and
    // PostgreSQL keeps one generic plan (as `latest_shown_in_window`).
    let mut ids: Vec<i64> = crate::db::prepared::sql(
        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, user_id, viewer_name, job_role_code, \
             organisation_code, channel, shown) \
         SELECT n, t, v, u, vn, j, o, c, s FROM unnest((SELECT $1::text[]), (SELECT $2::timestamptz[]), \
             (SELECT $3::text[]), (SELECT $4::bigint[]), (SELECT $5::text[]), (SELECT $6::text[]), \
             (SELECT $7::text[]), (SELECT $8::text[]), (SELECT $9::bool[])) \
             WITH ORDINALITY AS a(n, t, v, u, vn, j, o, c, s, i) \
         ORDER BY i RETURNING id",
    )
    .bind::<Array<Text>, _>(column(|a| a.nhs_number.to_owned()))
    .bind::<Array<Timestamptz>, _>(accesses.iter().map(|a| a.at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(|a| a.viewer.viewer_id.clone()))
    .bind::<Array<Nullable<BigInt>>, _>(accesses.iter().map(|a| a.viewer.user_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(|a| a.viewer.name.clone()))
    .bind::<Array<Text>, _>(column(|a| a.viewer.job_role_code.clone()))
    .bind::<Array<Text>, _>(column(|a| a.viewer.organisation_code.clone()))
    .bind::<Array<Text>, _>(column(|a| a.viewer.channel.code().to_owned()))
    .bind::<Array<Bool>, _>(shown.to_vec())
    .load::<Id>(conn)?
    .into_iter()
    .map(|r| r.id)
    .collect();
    // The rows are inserted in the order given and take their ids from the sequence as they are
    // inserted: ascending ids are the order given, whatever order RETURNING lists them in.
    ids.sort_unstable();
    Ok(ids)
}

/// For each (NHS number, viewer) of the accesses, the latest shown access after
/// [`access_history::window_start`] of the earliest of them: only those can hide one of them. They
/// are read from each child's shown accesses of the last day (the history index's newest range,
/// at most one per viewer, which the tab reads next anyway). The range is fenced off (`OFFSET 0`)
/// so that the planner does not go through a viewer's own accesses of the day instead, which for
/// a busy clinician are hundreds. The arrays are read through sub-selects so that every plan
/// estimates them alike and PostgreSQL keeps one generic plan instead of planning the statement
/// on every opening (as `items::current_held`).
fn latest_shown_in_window<'a>(
    conn: &mut PgConnection,
    accesses: &[NewAccess<'a>],
) -> QueryResult<HashMap<(&'a str, &'a str), DateTime<Utc>>> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
    #[derive(QueryableByName)]
    struct Latest {
        /// The pair's place in the arrays, from 1.
        #[diesel(sql_type = BigInt)]
        i: i64,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        latest: Option<DateTime<Utc>>,
    }
    // Each (NHS number, viewer) once, read from the earliest window start among its accesses.
    let mut starts: HashMap<(&'a str, &'a str), DateTime<Utc>> = HashMap::new();
    for a in accesses {
        let start = access_history::window_start(a.at);
        starts.entry((a.nhs_number, a.viewer.viewer_id.as_str())).and_modify(|s| *s = (*s).min(start)).or_insert(start);
    }
    let pairs: Vec<((&'a str, &'a str), DateTime<Utc>)> = starts.into_iter().collect();
    let rows: Vec<Latest> = crate::db::prepared::sql(
        "SELECT q.i, \
             (SELECT max(d.accessed_at) FROM ( \
                 SELECT accessed_at, viewer_id FROM access_events \
                 WHERE nhs_number = q.n AND shown AND accessed_at > q.w OFFSET 0 \
             ) AS d WHERE d.viewer_id = q.v) AS latest \
         FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::timestamptz[])) WITH ORDINALITY AS q(n, v, w, i)",
    )
    .bind::<Array<Text>, _>(pairs.iter().map(|((n, _), _)| (*n).to_owned()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(pairs.iter().map(|((_, v), _)| (*v).to_owned()).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(pairs.iter().map(|(_, w)| *w).collect::<Vec<_>>())
    .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let at = row.latest?;
            let (key, _) = pairs.get(usize::try_from(row.i).ok()?.checked_sub(1)?)?;
            Some((*key, at))
        })
        .collect())
}

/// One line of the access history, with names in readable form where the reference data has them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub id: i64,
    pub accessed_at: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub viewer_name: String,
    pub job_role_code: String,
    pub job_role_name: Option<String>,
    pub organisation_code: String,
    pub organisation_name: Option<String>,
    /// The viewer's account contact details, when the viewer has an account here and they were
    /// asked for ([`super::contacts::fill`]: the tab shows them, the FHIR API does not).
    pub contact: Option<AccountContact>,
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
        let entry = HistoryEntry {
            id: self.id,
            accessed_at: self.accessed_at,
            user_id: self.user_id,
            viewer_name: self.viewer_name,
            job_role_code: self.job_role_code,
            job_role_name: None,
            organisation_code: self.organisation_code,
            organisation_name: None,
            contact: None,
        };
        (self.o, entry)
    }
}

impl HistoryEntry {
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

/// The statement of [`histories`], after `$before` in its FROM list; `$gate` filters the lists,
/// and may name what `$before` brings in.
macro_rules! histories_sql {
    ($before:expr, $gate:expr) => {
        concat!(
            "SELECT w.o, a.id, a.accessed_at, a.user_id, a.viewer_name, a.job_role_code, a.organisation_code \
             FROM ",
            $before,
            "(SELECT DISTINCT o FROM unnest($1::int[]) AS w(o)",
            $gate,
            ") AS w \
             CROSS JOIN LATERAL ( \
                 SELECT e.* FROM unnest($1::int[], $2::text[]) AS n(o, nhs_number) \
                 CROSS JOIN LATERAL ( \
                     SELECT id, accessed_at, user_id, viewer_name, job_role_code, organisation_code \
                     FROM access_events \
                     WHERE access_events.nhs_number = n.nhs_number AND shown \
                     ORDER BY accessed_at DESC, id DESC LIMIT $3 \
                 ) AS e \
                 WHERE n.o = w.o \
                 ORDER BY e.accessed_at DESC, e.id DESC LIMIT $3 \
             ) AS a \
             ORDER BY w.o, a.accessed_at DESC, a.id DESC"
        )
    };
}

/// [`history`] for several children at once, in one statement: one history per list of numbers,
/// in the order given.
pub fn histories(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    lists: &[&[String]],
) -> QueryResult<Vec<Vec<HistoryEntry>>> {
    read_histories(conn, names, lists, histories_sql!("", ""))
}

/// [`histories`], read by a statement that also waits for the WAL flush of every commit before
/// it: its own transaction writes [`crate::flush_message!`] once, whatever the read finds (the
/// message's sub-select is the outer side of the read's joins, and the lists are gated on it),
/// and commits durably before the rows reach the caller. Only outside a transaction (the
/// statement must be its own); inside one, the flush is left owed. The access recorder reads its
/// batch's histories so after the batch's commit, whose flush was deferred
/// ([`crate::db::defer_flush`]): one round trip for both, not two.
pub fn histories_once_flushed(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    lists: &[&[String]],
) -> QueryResult<Vec<Vec<HistoryEntry>>> {
    let read = read_histories(
        conn,
        names,
        lists,
        histories_sql!(
            concat!("(SELECT ", crate::flush_message!(), " AS lsn OFFSET 0) AS f CROSS JOIN LATERAL "),
            " WHERE f.lsn IS NOT NULL"
        ),
    )?;
    if !crate::db::in_transaction(conn) {
        crate::db::flush_waited();
    }
    Ok(read)
}

fn read_histories(
    conn: &mut PgConnection,
    names: &super::reference_names::ReferenceNames,
    lists: &[&[String]],
    sql: &'static str,
) -> QueryResult<Vec<Vec<HistoryEntry>>> {
    use diesel::sql_types::{Array, BigInt, Integer, Text};
    let (owners, numbers): (Vec<i32>, Vec<String>) =
        lists.iter().enumerate().flat_map(|(o, list)| list.iter().map(move |n| (o as i32, n.clone()))).unzip();
    let rows: Vec<HistoryRow> = crate::db::prepared::sql(sql)
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
