//! Helpers shared by the benches (included by benches/national.rs and benches/upload.rs with
//! `#[path = "national/common.rs"] mod common;`).

use std::time::Duration;

use diesel::prelude::*;

/// The bench cluster's administrative database URL.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/bench sets it)")
}

/// The URL of database `db` on the same cluster as [`admin_url`].
pub fn url_for(db: &str) -> String {
    let url = admin_url();
    let i = url.rfind('/').expect("a database URL");
    format!("{}/{db}", &url[..i])
}

/// Runs one statement, panicking with the SQL when it fails.
pub fn exec(conn: &mut PgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).unwrap_or_else(|e| panic!("{e}\n{sql}"));
}

/// The median of some timings (zero for none).
pub fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}
