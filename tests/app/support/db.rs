//! A fresh PostgreSQL database per test, cloned from a template that is migrated (and seeded)
//! once per build of the test binary, then dropped when the test ends.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    /// Migrated, with reference data (LAs, NHS organisations, job roles, activity codes).
    Reference,
    /// And the demo data set (`cpis seed --demo`).
    Demo,
}

pub struct TestDatabase {
    pub url: String,
    pub name: String,
}

/// The server's URL from DATABASE_URL (scripts/test starts a private cluster and sets it).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with ./scripts/test, which starts a private PostgreSQL")
}

/// The same server, another database.
pub fn url_for(database: &str) -> String {
    let url = admin_url();
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (url.clone(), String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..host_end])
}

fn admin() -> PgConnection {
    PgConnection::establish(&admin_url()).expect("connect to the test PostgreSQL server")
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

/// Identifies this build of the test binary, so a rebuilt binary gets fresh templates.
fn fingerprint() -> String {
    static FP: OnceLock<String> = OnceLock::new();
    FP.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let bytes = std::fs::read(exe).expect("read the test binary");
        hex::encode(&Sha256::digest(&bytes)[..6])
    })
    .clone()
}

fn template(t: Template) -> String {
    static DONE: OnceLock<Mutex<HashMap<Template, String>>> = OnceLock::new();
    let done = DONE.get_or_init(Default::default);
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(name) = done.get(&t) {
        return name.clone();
    }
    let prefix = format!("cpis_tmpl_{}_{}_", fingerprint(), format!("{t:?}").to_lowercase());
    let mut conn = admin();
    // Another test process may be building the same template.
    diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<BigInt, _>(0x7e57_7e57_i64).execute(&mut conn).unwrap();
    let existing: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'cpis\\_tmpl\\_%'")
        .load(&mut conn)
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    // Templates of other builds are dropped once they are two hours old: a test run of another
    // build that is still going may be cloning them.
    for old in &existing {
        let created = old.datname.rsplit('_').next().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
        if !old.datname.starts_with(&format!("cpis_tmpl_{}_", fingerprint())) && now - created > 2 * 3600 {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", old.datname))
                .execute(&mut conn);
        }
    }
    let name = match existing.iter().find(|n| n.datname.starts_with(&prefix) && !n.datname.ends_with("_building")) {
        Some(found) => found.datname.clone(),
        None => {
            let name = format!("{prefix}{now}");
            let building = format!("{name}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))
                .execute(&mut conn)
                .unwrap();
            diesel::sql_query(format!("CREATE DATABASE \"{building}\"")).execute(&mut conn).unwrap();
            {
                let mut t_conn = PgConnection::establish(&url_for(&building)).unwrap();
                cpis::db::migrate(&mut t_conn).expect("migrations apply");
                cpis::seed::reference::load(&mut t_conn).expect("reference data loads");
                if t == Template::Demo {
                    cpis::seed::demo::load(&mut t_conn, chrono::Utc::now()).expect("demo data loads");
                }
            }
            diesel::sql_query(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""))
                .execute(&mut conn)
                .unwrap();
            name
        }
    };
    diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(0x7e57_7e57_i64).execute(&mut conn).unwrap();
    done.insert(t, name.clone());
    name
}

impl TestDatabase {
    pub fn new(t: Template) -> TestDatabase {
        let template = template(t);
        let name = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        diesel::sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
            .execute(&mut admin())
            .expect("clone the template database");
        TestDatabase { url: url_for(&name), name }
    }

    /// An empty database: nothing migrated.
    pub fn empty() -> TestDatabase {
        let name = format!("t_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin()).expect("create a database");
        TestDatabase { url: url_for(&name), name }
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ =
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut admin());
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// `SELECT count(*) ...` as a number.
pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(format!("SELECT q.n::bigint AS n FROM ({sql}) AS q(n)"))
        .get_result::<Count>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    s: String,
}

/// A query's one text column (named `s`), row by row.
pub fn texts(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<TextRow>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|r| r.s)
        .collect()
}

/// Runs a statement, returning how many rows it touched.
pub fn execute(conn: &mut PgConnection, sql: &str) -> usize {
    diesel::sql_query(sql).execute(conn).unwrap_or_else(|e| panic!("{sql}: {e}"))
}
