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

#[derive(QueryableByName)]
struct Pending {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Waits until no audit entry is pending, that is until the background chainer has linked an
/// upload's entries into the chain after the upload was answered (src/audit/chainer.rs), for two
/// minutes at most. Returns how long that took, so a bench can report it and start its next
/// upload on a settled chain.
pub fn wait_until_chained(conn: &mut PgConnection) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let pending =
            diesel::sql_query("SELECT count(*) AS n FROM audit_pending").get_result::<Pending>(conn).unwrap().n;
        if pending == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{pending} audit entries still pending after two minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
