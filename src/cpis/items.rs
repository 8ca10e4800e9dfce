//! Child protection items as stored, and which of them a viewer may see today.

use chrono::NaiveDate;
use diesel::prelude::*;

use crate::domain::retrieval::{self, ItemDates, ItemKind};
use crate::schema::cp_items;

#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
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
    /// The end date shown: CP-IS030 ends an open CPP or LAC on the 18th birthday.
    pub fn shown_end(&self, birth_date: NaiveDate) -> Option<NaiveDate> {
        retrieval::effective_end(self.kind(), &self.dates(), birth_date)
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

/// Items not logically deleted, held under any of the numbers.
pub fn current_for(conn: &mut PgConnection, numbers: &[String]) -> QueryResult<Vec<CpItem>> {
    cp_items::table
        .filter(cp_items::nhs_number.eq_any(numbers))
        .filter(cp_items::deleted_at.is_null())
        .order((cp_items::la_code, cp_items::item_type))
        .select(CpItem::as_select())
        .load(conn)
}
