//! Child protection items as stored, and which of them a viewer may see today.

use chrono::NaiveDate;
use diesel::prelude::*;

use super::local_authority::LocalAuthority;
use crate::domain::retrieval::{self, ItemDates, ItemKind};
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
         ORDER BY i.la_code, i.item_type",
    )
    .bind::<Array<Text>, _>(numbers.to_vec())
    .load(conn)
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
