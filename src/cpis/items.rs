//! Child protection items as stored, and which of them a viewer may see today.

use chrono::NaiveDate;
use diesel::prelude::*;

use super::local_authority::LocalAuthority;
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
    crate::db::prepared::sql(
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

/// [`lookup_held`] for several numbers in one statement, one answer per number in their order:
/// the access recorder reads the records of a batch of tab openings so (issue 8). A number asked
/// twice is answered twice.
pub fn lookup_held_many(conn: &mut PgConnection, numbers: &[&str]) -> QueryResult<Vec<Held>> {
    use diesel::sql_types::{Array, BigInt, Date, Nullable, Text};
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
    /// A [`HeldItem`] whose number is named apart from the patient's.
    #[derive(QueryableByName)]
    struct HeldRow {
        #[diesel(sql_type = BigInt)]
        item_id: i64,
        #[diesel(sql_type = Text)]
        item_nhs_number: String,
        #[diesel(sql_type = Text)]
        la_code: String,
        #[diesel(sql_type = Text)]
        item_type: String,
        #[diesel(sql_type = Text)]
        la_child_id: String,
        #[diesel(sql_type = Date)]
        start_date: NaiveDate,
        #[diesel(sql_type = Nullable<Date>)]
        end_date: Option<NaiveDate>,
        #[diesel(sql_type = Nullable<Date>)]
        delete_date: Option<NaiveDate>,
        #[diesel(embed)]
        authority: LocalAuthority,
    }
    // Each number's record and its linked numbers as in `lookup_linked` (OFFSET 0: read once),
    // then its items as in `current_held`, each authority by its key; no items unless it is
    // current. The numbers come through a sub-select, as in `current_held`, so that one generic
    // plan serves every batch.
    let rows: Vec<Row> = crate::db::prepared::sql(concat!(
        "SELECT q.o, p.nhs_number, p.given_name, p.family_name, p.gender, p.birth_date, p.death_date, p.postcode, \
                p.address, p.gp_ods, p.restricted, p.superseded_by, p.invalidated, p.linked, \
                h.id AS item_id, h.nhs_number AS item_nhs_number, h.la_code, h.item_type, h.la_child_id, \
                h.start_date, h.end_date, h.delete_date, h.code, h.reference_name, h.display_name, \
                h.emergency_phone, h.office_hours_phone, h.contacts_updated_at \
         FROM unnest((SELECT $1::text[])) WITH ORDINALITY AS q(n, o) \
         CROSS JOIN LATERAL ( \
             SELECT p.nhs_number, p.given_name, p.family_name, p.gender, p.birth_date, p.death_date, p.postcode, \
                    p.address, p.gp_ods, p.restricted, p.superseded_by, p.invalidated, \
                    ARRAY(WITH RECURSIVE linked(nhs_number, depth) AS (SELECT p.nhs_number, 0 UNION ",
        crate::pds::patient::linked_step!(),
        ") SELECT DISTINCT nhs_number FROM linked) AS linked \
             FROM patients p WHERE p.nhs_number = q.n OFFSET 0 \
         ) AS p \
         LEFT JOIN LATERAL ( \
             SELECT i.id, i.nhs_number, i.la_code, i.item_type, i.la_child_id, i.start_date, i.end_date, \
                    i.delete_date, la.code, la.reference_name, la.display_name, la.emergency_phone, \
                    la.office_hours_phone, la.contacts_updated_at \
             FROM cp_items i CROSS JOIN LATERAL ( \
                 SELECT * FROM local_authorities la WHERE la.code = i.la_code OFFSET 0 \
             ) AS la \
             WHERE i.nhs_number = ANY(p.linked) AND i.deleted_at IS NULL \
               AND NOT p.invalidated AND p.superseded_by IS NULL \
         ) AS h ON true \
         ORDER BY q.o, h.la_code, h.item_type, h.id"
    ))
    .bind::<Array<Text>, _>(numbers.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    .load(conn)?;
    let mut rows = rows.into_iter().peekable();
    let mut answers = Vec::with_capacity(numbers.len());
    for (place, &nhs_number) in (1..).zip(numbers) {
        let Some(first) = rows.next_if(|r| r.o == place) else {
            answers.push((Lookup::NotFound, Vec::new(), Vec::new()));
            continue;
        };
        if first.patient.invalidated || first.patient.superseded_by.is_some() {
            while rows.next_if(|r| r.o == place).is_some() {}
            let (found, linked) = patient::lookup_then_linked(conn, nhs_number)?;
            let held = if matches!(found, Lookup::NotFound) { Vec::new() } else { current_held(conn, &linked)? };
            answers.push((found, linked, held));
            continue;
        }
        let Row { patient, mut linked, held, .. } = first;
        linked.sort_by_key(|n| n != &patient.nhs_number);
        let rest = std::iter::from_fn(|| rows.next_if(|r| r.o == place).map(|r| r.held));
        let items = std::iter::once(held)
            .chain(rest)
            .flatten()
            .map(|h| HeldItem {
                item: CpItem {
                    id: h.item_id,
                    nhs_number: h.item_nhs_number,
                    la_code: h.la_code,
                    item_type: h.item_type,
                    la_child_id: h.la_child_id,
                    start_date: h.start_date,
                    end_date: h.end_date,
                    delete_date: h.delete_date,
                },
                authority: h.authority,
            })
            .collect();
        answers.push((Lookup::Found(patient), linked, items));
    }
    Ok(answers)
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
