//! Local authorities: the reference list, and the name and numbers of each LA's latest accepted file.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::local_authorities;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, PartialEq)]
#[diesel(table_name = local_authorities, check_for_backend(diesel::pg::Pg))]
pub struct LocalAuthority {
    pub code: String,
    pub reference_name: String,
    pub display_name: Option<String>,
    pub emergency_phone: Option<String>,
    pub office_hours_phone: Option<String>,
    pub contacts_updated_at: Option<DateTime<Utc>>,
}

impl LocalAuthority {
    /// The name in the LA's latest accepted file, or the reference list's before its first file.
    pub fn name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.reference_name)
    }
}

pub fn find(conn: &mut PgConnection, code: &str) -> QueryResult<Option<LocalAuthority>> {
    local_authorities::table.find(code).select(LocalAuthority::as_select()).first(conn).optional()
}

pub fn find_many(conn: &mut PgConnection, codes: &[String]) -> QueryResult<Vec<LocalAuthority>> {
    local_authorities::table
        .filter(local_authorities::code.eq_any(codes))
        .select(LocalAuthority::as_select())
        .load(conn)
}

/// The directory: every LA whose name or code contains the text (all of them when it is empty).
pub fn search(conn: &mut PgConnection, text: &str) -> QueryResult<Vec<LocalAuthority>> {
    let mut q = local_authorities::table.select(LocalAuthority::as_select()).into_boxed();
    let text = text.trim();
    if !text.is_empty() {
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        q = q.filter(
            local_authorities::reference_name
                .ilike(pattern.clone())
                .or(local_authorities::display_name.ilike(pattern.clone()))
                .or(local_authorities::code.ilike(pattern)),
        );
    }
    let mut las: Vec<LocalAuthority> = q.load(conn)?;
    las.sort_by_key(|la| la.name().to_lowercase());
    Ok(las)
}
