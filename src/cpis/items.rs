//! Child protection items as stored, and which of them a viewer may see today.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;

use super::access::{self, HistoryEntry};
use super::local_authority::LocalAuthority;
use crate::domain::access_history::{self, HISTORY_LIMIT};
use crate::domain::retrieval::{self, ItemDates, ItemKind};
use crate::pds::patient::{self, Lookup, Patient};
use crate::schema::cp_items;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, PartialEq)]
#[diesel(table_name = cp_items, check_for_backend(diesel::pg::Pg))]
pub struct CpItem {
    pub id: i64,
    pub nhs_number: String,
    pub la_code: String,
    pub item_type: String,
    pub la_child_id: String,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub delete_date: Option<NaiveDate>,
}

impl CpItem {
    pub fn kind(&self) -> ItemKind {
        // The column's CHECK constraint admits only the three codes.
        ItemKind::from_code(&self.item_type).unwrap_or(ItemKind::ChildProtectionPlan)
    }
    pub fn dates(&self) -> ItemDates {
        ItemDates { start: self.start_date, end: self.end_date, delete: self.delete_date }
    }
    /// Retrievable on `on` (messages.md, "Rules every interface shares").
    pub fn is_retrievable(&self, birth_date: NaiveDate, on: NaiveDate) -> bool {
        retrieval::is_retrievable(self.kind(), &self.dates(), birth_date, on)
    }
    /// The end date shown on `today`: the LA's end date, until CP-IS030 ends a CPP or LAC still
    /// open at the 18th birthday on that birthday (the record is end-dated when it arrives).
    pub fn shown_end(&self, birth_date: NaiveDate, today: NaiveDate) -> Option<NaiveDate> {
        match retrieval::effective_end(self.kind(), &self.dates(), birth_date) {
            Some(effective) if effective <= today => Some(effective),
            _ => self.end_date,
        }
    }
}

/// What a viewer may see: retrievable items, and unborn plans only for midwife roles (CP-IS041).
pub fn visible(items: Vec<CpItem>, birth_date: NaiveDate, today: NaiveDate, may_see_unborn: bool) -> Vec<CpItem> {
    items
        .into_iter()
        .filter(|i| i.is_retrievable(birth_date, today))
        .filter(|i| may_see_unborn || !i.kind().is_unborn())
        .collect()
}

/// A current item with the local authority that holds it.
#[derive(Debug, Clone, QueryableByName, PartialEq)]
pub struct HeldItem {
    #[diesel(embed)]
    pub item: CpItem,
    #[diesel(embed)]
    pub authority: LocalAuthority,
}

/// Items not logically deleted, held under any of the numbers, each with its authority: what a
/// tab shows, in one statement. Read by hand (diesel's DSL sends the array as it is): the numbers
/// are read through a sub-select (`(SELECT $1)`) so that the planner sees no array in any plan.
/// Otherwise a plan for the actual one or two numbers always looks cheaper than the prepared
/// statement's generic plan (which assumes ten), and PostgreSQL plans the statement again on every
/// opening, which cost more than running it (issue 8). Each item's authority is looked up by its
/// key (the `OFFSET 0` keeps the sub-select from being flattened into a join): as a join, the
/// generic plan, which expects ten items, read and hashed all 152 authorities for the one or two
/// items a child has (pgbench on the national dataset: 25,000 reads a second as a join, 38,000 to
/// 48,000 by key). A test compares it with the same read in diesel's DSL.
pub fn current_held(conn: &mut PgConnection, numbers: &[String]) -> QueryResult<Vec<HeldItem>> {
    use diesel::sql_types::{Array, Text};
    crate::db::prepared::sql!(
        "SELECT i.id, i.nhs_number, i.la_code, i.item_type, i.la_child_id, i.start_date, i.end_date, \
         i.delete_date, la.code, la.reference_name, la.display_name, la.emergency_phone, \
         la.office_hours_phone, la.contacts_updated_at \
         FROM cp_items i CROSS JOIN LATERAL ( \
             SELECT * FROM local_authorities la WHERE la.code = i.la_code OFFSET 0 \
         ) AS la \
         WHERE i.nhs_number = ANY(((SELECT $1))::text[]) AND i.deleted_at IS NULL \
         ORDER BY i.la_code, i.item_type, i.id",
    )
    .bind::<Array<Text>, _>(numbers.to_vec())
    .load(conn)
}

/// A number's record as [`lookup_held`] reads it, the numbers linked to it (the current one first)
/// and the items held under them.
pub type Held = (Lookup, Vec<String>, Vec<HeldItem>);

/// What opening the tab, or a FHIR query, reads first: the record a number names and the numbers
/// linked to it ([`patient::lookup_linked`]), with the items held under those numbers
/// ([`current_held`]). One statement when the number asked is itself the current record (the
/// common case); otherwise, a rare case, the separate reads. No items for a number not found.
pub fn lookup_held(conn: &mut PgConnection, nhs_number: &str) -> QueryResult<Held> {
    let mut found = lookup_held_many(conn, std::slice::from_ref(&nhs_number))?;
    Ok(found.pop().unwrap_or((Lookup::NotFound, Vec::new(), Vec::new())))
}

/// The body of a lateral sub-select reading the record `$number` names and its linked numbers
/// (`linked`), as [`patient::lookup_linked`] does (OFFSET 0: read once).
macro_rules! record_and_linked {
    ($number:literal) => {
        concat!(
            "SELECT p.nhs_number, p.given_name, p.family_name, p.gender, p.birth_date, p.death_date, p.postcode, \
                    p.address, p.gp_ods, p.restricted, p.superseded_by, p.invalidated, \
                    ARRAY(WITH RECURSIVE linked(nhs_number, depth) AS (SELECT p.nhs_number, 0 UNION ",
            crate::pds::patient::linked_step!(),
            ") SELECT DISTINCT nhs_number FROM linked) AS linked \
             FROM patients p WHERE p.nhs_number = ",
            $number,
            " OFFSET 0"
        )
    };
}

/// The body of a lateral sub-select reading the items held under the numbers of the record `p`
/// ([`record_and_linked!`]) as [`current_held`] does, each authority by its key; none unless the
/// record is current. Its item's columns are named apart from the record's ([`HeldRow`]).
macro_rules! held_by_record {
    () => {
        "SELECT i.id AS item_id, i.nhs_number AS item_nhs_number, i.la_code, i.item_type, i.la_child_id, \
                i.start_date, i.end_date, i.delete_date, la.code, la.reference_name, la.display_name, \
                la.emergency_phone, la.office_hours_phone, la.contacts_updated_at \
         FROM cp_items i CROSS JOIN LATERAL ( \
             SELECT * FROM local_authorities la WHERE la.code = i.la_code OFFSET 0 \
         ) AS la \
         WHERE i.nhs_number = ANY(p.linked) AND i.deleted_at IS NULL \
           AND NOT p.invalidated AND p.superseded_by IS NULL"
    };
}

/// [`lookup_held`] for several numbers in one statement, one answer per number in their order. A
/// number asked twice is answered twice.
pub fn lookup_held_many(conn: &mut PgConnection, numbers: &[&str]) -> QueryResult<Vec<Held>> {
    use diesel::sql_types::{Array, BigInt, Text};
    #[derive(QueryableByName)]
    struct Row {
        /// The number's place among those asked, from 1.
        #[diesel(sql_type = BigInt)]
        o: i64,
        #[diesel(embed)]
        patient: Patient,
        #[diesel(sql_type = Array<Text>)]
        linked: Vec<String>,
        /// None on the one row of a record with no items (or not current).
        #[diesel(embed)]
        held: Option<HeldRow>,
    }
    // The numbers come through a sub-select, as in `current_held`, so that one generic plan serves
    // every batch.
    let rows: Vec<Row> = crate::db::prepared::sql!(concat!(
        "SELECT q.o, p.*, h.* FROM unnest((SELECT $1::text[])) WITH ORDINALITY AS q(n, o) \
         CROSS JOIN LATERAL (",
        record_and_linked!("q.n"),
        ") AS p LEFT JOIN LATERAL (",
        held_by_record!(),
        ") AS h ON true \
         ORDER BY q.o, h.la_code, h.item_type, h.item_id"
    ))
    .bind::<Array<Text>, _>(numbers.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    .load(conn)?;
    let mut rows = rows.into_iter().peekable();
    let mut answers = Vec::with_capacity(numbers.len());
    for (place, &nhs_number) in (1..).zip(numbers) {
        let Some(Row { patient, linked, held, .. }) = rows.next_if(|r| r.o == place) else {
            answers.push((Lookup::NotFound, Vec::new(), Vec::new()));
            continue;
        };
        let rest = std::iter::from_fn(|| rows.next_if(|r| r.o == place).map(|r| r.held));
        let items = std::iter::once(held).chain(rest).flatten().map(HeldRow::into_item).collect();
        answers.push(answer(conn, nhs_number, patient, linked, items)?);
    }
    Ok(answers)
}

/// The answer for a number whose record (`patient`, with its `linked` numbers and the `items`
/// they hold) was read in one statement: as it stands when the record is current (the common
/// case); otherwise, a rare case, read again with the separate reads.
fn answer(
    conn: &mut PgConnection,
    nhs_number: &str,
    patient: Patient,
    mut linked: Vec<String>,
    items: Vec<HeldItem>,
) -> QueryResult<Held> {
    if patient.invalidated || patient.superseded_by.is_some() {
        let (found, linked) = patient::lookup_then_linked(conn, nhs_number)?;
        let held = if matches!(found, Lookup::NotFound) { Vec::new() } else { current_held(conn, &linked)? };
        return Ok((found, linked, held));
    }
    linked.sort_by_key(|n| n != &patient.nhs_number);
    Ok((Lookup::Found(patient), linked, items))
}

/// [`lookup_held_many`] for the numbers of the accesses about to be recorded, each answer with
/// what recording its access will read ([`access::ReadAhead`], its viewer's window starting at
/// [`access_history::window_start`] of its time) when the number is the current record's and that
/// record holds items:
/// the tab thread reads its batch so, so that recording it need not read again (issue 8: one round
/// trip fewer on every opening's way). A number asked twice is answered twice (and takes two ids).
/// A FHIR CareTeam search ([`access::Channel::Fhir`]) is read so too, with the tabs, but its
/// history is not read: it shows none ([`shows_history`]).
///
/// [`shows_history`]: access::Channel::shows_history
///
/// The statement's parts are rows of one `UNION ALL`, told apart by `k`: 0 the record with each
/// item it holds (one row with no item when it holds none), 1 the viewer's latest shown access
/// since the window's start (CP-IS047), 2 an id from the accesses' sequence, 3 the history of
/// the record's numbers (CP-IS048; none unless the channel [`shows_history`]), the newest
/// [`HISTORY_LIMIT`] lines, newest first, as one array of records. Parts 1 to 3 are
/// read only for records that are current and hold items: an id taken for a record whose items
/// the viewer may not see is left unused (a gap in the sequence, as any rolled-back insert
/// leaves).
///
/// The history is one array rather than a row a line (issue 8): as rows, nine rows in ten were
/// history lines of 35 columns, and libpq's parsing of them and diesel's building of each (a
/// column found by its name, scanning from the first) were about a fifth of the service's samples
/// on the tab thread, on the serial path. The access's columns come right after `k` and
/// `o` for the same scan.
pub fn lookup_held_reading_ahead(
    conn: &mut PgConnection,
    asked: &[access::NewAccess<'_>],
) -> QueryResult<Vec<(Held, Option<access::ReadAhead>)>> {
    use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Record, Text, Timestamptz};
    #[derive(QueryableByName)]
    struct Row {
        /// Which part the row is of (above).
        #[diesel(sql_type = Integer)]
        k: i32,
        /// The number's place among those asked, from 1.
        #[diesel(sql_type = BigInt)]
        o: i64,
        /// Part 0's: the record.
        #[diesel(embed)]
        patient: Option<Patient>,
        #[diesel(sql_type = Nullable<Array<Text>>)]
        linked: Option<Vec<String>>,
        /// Part 0's: an item (none on the one row of a record with no items, or not current).
        #[diesel(embed)]
        held: Option<HeldRow>,
        /// Part 2's: the access's id.
        #[diesel(sql_type = Nullable<BigInt>)]
        a_id: Option<i64>,
        /// Part 1's: the time of the viewer's latest shown access.
        #[diesel(sql_type = Nullable<Timestamptz>)]
        a_at: Option<DateTime<Utc>>,
        /// Part 3's: the history's lines, newest first, in one array (one row, not one a line).
        #[diesel(sql_type = Nullable<Array<Record<(BigInt, Timestamptz, Nullable<BigInt>, Text, Text, Text)>>>)]
        a_history: Option<Vec<HistoryLine>>,
    }
    type HistoryLine = (i64, DateTime<Utc>, Option<i64>, String, String, String);
    // Part 0 as `lookup_held_many` reads it. The arrays come through sub-selects, so that one
    // generic plan serves every batch. Parts 1 to 3 read as `access::read_before_recording` does.
    let rows: Vec<Row> = crate::db::prepared::sql!(concat!(
        "WITH p AS MATERIALIZED ( \
             SELECT q.o, q.v, q.w, q.s, p.* \
             FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::timestamptz[]), \
                         (SELECT $5::bool[])) \
                 WITH ORDINALITY AS q(n, v, w, s, o) \
             CROSS JOIN LATERAL (",
        record_and_linked!("q.n"),
        ") AS p \
         ), h AS MATERIALIZED ( \
             SELECT p.o, h.* FROM p CROSS JOIN LATERAL (",
        held_by_record!(),
        ") AS h \
         ), r AS MATERIALIZED ( \
             SELECT p.o, p.nhs_number, p.linked, p.v, p.w, p.s FROM p WHERE EXISTS (SELECT FROM h WHERE h.o = p.o) \
         ) \
         SELECT 0 AS k, p.o, \
                NULL::bigint AS a_id, NULL::timestamptz AS a_at, NULL::record[] AS a_history, \
                p.nhs_number, p.given_name, p.family_name, p.gender, p.birth_date, p.death_date, \
                p.postcode, p.address, p.gp_ods, p.restricted, p.superseded_by, p.invalidated, p.linked, \
                h.item_id, h.item_nhs_number, h.la_code, h.item_type, h.la_child_id, h.start_date, h.end_date, \
                h.delete_date, h.code, h.reference_name, h.display_name, h.emergency_phone, \
                h.office_hours_phone, h.contacts_updated_at \
         FROM p LEFT JOIN h ON h.o = p.o \
         UNION ALL \
         SELECT x.k, r.o, x.id, x.accessed_at, x.history, \
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
         FROM r CROSS JOIN LATERAL ( \
             SELECT 1 AS k, NULL::bigint AS id, \
                 (SELECT max(e.accessed_at) FROM access_events e \
                  WHERE e.nhs_number = r.nhs_number AND e.viewer_id = r.v AND e.shown AND e.accessed_at > r.w) \
                     AS accessed_at, \
                 NULL::record[] AS history \
             UNION ALL \
             SELECT 2, nextval('access_events_id_seq'), NULL, NULL \
             UNION ALL \
             SELECT 3, NULL, NULL, ARRAY( \
                 SELECT ROW(e.id, e.accessed_at, e.user_id, e.viewer_name, e.job_role_code, e.organisation_code) \
                 FROM unnest(r.linked) AS n(nhs_number) CROSS JOIN LATERAL (",
        access::newest_shown_of!("n.nhs_number", "$4"),
        ") AS e \
                 WHERE r.s \
                 ORDER BY e.accessed_at DESC, e.id DESC LIMIT $4) \
         ) AS x \
         ORDER BY o, k, la_code, item_type, item_id"
    ))
    .bind::<Array<Text>, _>(asked.iter().map(|a| a.nhs_number.to_owned()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(asked.iter().map(|a| a.viewer.viewer_id.clone()).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(asked.iter().map(|a| access_history::window_start(a.at)).collect::<Vec<_>>())
    .bind::<BigInt, _>(HISTORY_LIMIT as i64)
    .bind::<Array<Bool>, _>(asked.iter().map(|a| a.viewer.channel.shows_history()).collect::<Vec<_>>())
    .load(conn)?;
    let mut rows = rows.into_iter().peekable();
    let mut answers = Vec::with_capacity(asked.len());
    for (place, access) in (1..).zip(asked) {
        let mut mine = std::iter::from_fn(|| rows.next_if(|r| r.o == place));
        let Some(first) = mine.next() else {
            answers.push(((Lookup::NotFound, Vec::new(), Vec::new()), None));
            continue;
        };
        let Row { patient: Some(patient), linked: Some(linked), held, .. } = first else {
            // Part 0 comes first for every record found, and it always has the record.
            return Err(diesel::result::Error::DeserializationError("a lookup's row came without its record".into()));
        };
        let mut items: Vec<HeldItem> = held.map(HeldRow::into_item).into_iter().collect();
        let (mut latest, mut id, mut history) = (None, None, Vec::new());
        for row in mine {
            match row.k {
                0 => items.extend(row.held.map(HeldRow::into_item)),
                1 => latest = row.a_at,
                2 => id = row.a_id,
                _ => {
                    let lines = row.a_history.into_iter().flatten();
                    history.extend(lines.map(|(id, at, user, name, role, organisation)| {
                        HistoryEntry::unnamed(id, at, user, name, role, organisation)
                    }));
                }
            }
        }
        // Parts 1 to 3 are only read for a current record: the answer is as read.
        let since = access_history::window_start(access.at);
        let read = id.map(|id| access::ReadAhead { since, latest, history, id });
        answers.push((answer(conn, access.nhs_number, patient, linked, items)?, read));
    }
    Ok(answers)
}

/// A [`HeldItem`] whose number is named apart from the patient's, as [`held_by_record!`] reads it.
#[derive(QueryableByName)]
struct HeldRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    item_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    item_nhs_number: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    la_code: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    item_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    la_child_id: String,
    #[diesel(sql_type = diesel::sql_types::Date)]
    start_date: NaiveDate,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    end_date: Option<NaiveDate>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    delete_date: Option<NaiveDate>,
    #[diesel(embed)]
    authority: LocalAuthority,
}

impl HeldRow {
    fn into_item(self) -> HeldItem {
        HeldItem {
            item: CpItem {
                id: self.item_id,
                nhs_number: self.item_nhs_number,
                la_code: self.la_code,
                item_type: self.item_type,
                la_child_id: self.la_child_id,
                start_date: self.start_date,
                end_date: self.end_date,
                delete_date: self.delete_date,
            },
            authority: self.authority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn cpp(end: Option<NaiveDate>) -> CpItem {
        CpItem {
            id: 1,
            nhs_number: "9990000018".into(),
            la_code: "E10000016".into(),
            item_type: "CPP".into(),
            la_child_id: "K-1".into(),
            start_date: d(2020, 1, 1),
            end_date: end,
            delete_date: None,
        }
    }

    #[test]
    fn an_open_plan_shows_no_end_until_the_18th_birthday_ends_it() {
        let birth = d(2008, 6, 1);
        assert_eq!(cpp(None).shown_end(birth, d(2026, 5, 31)), None);
        // CP-IS030: end-dated on the 18th birthday.
        assert_eq!(cpp(None).shown_end(birth, d(2026, 6, 1)), Some(d(2026, 6, 1)));
        assert_eq!(cpp(Some(d(2027, 1, 1))).shown_end(birth, d(2026, 5, 1)), Some(d(2027, 1, 1)));
        assert_eq!(cpp(Some(d(2027, 1, 1))).shown_end(birth, d(2026, 7, 1)), Some(d(2026, 6, 1)));
        assert_eq!(cpp(Some(d(2025, 1, 1))).shown_end(birth, d(2026, 7, 1)), Some(d(2025, 1, 1)));
    }

    #[test]
    fn unborn_plans_are_for_midwives_only() {
        let mut u = cpp(Some(d(2026, 12, 1)));
        u.item_type = "UCPP".into();
        let birth = d(1990, 1, 1);
        let today = d(2026, 11, 22);
        assert_eq!(visible(vec![u.clone()], birth, today, false).len(), 0);
        assert_eq!(visible(vec![u], birth, today, true).len(), 1);
    }
}
