//! The migrations are the schema: they apply under a lock from several processes, every down.sql
//! works, and the constraints keep bad data out whatever the path.

use diesel::prelude::*;
use diesel_migrations::MigrationHarness;

use crate::support::{Template, TestDatabase};

#[test]
fn migrations_apply_concurrently_and_revert_cleanly() {
    let db = TestDatabase::empty();
    let url = db.url.clone();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || cpis::db::migrate(&mut PgConnection::establish(&url).unwrap()).unwrap())
        })
        .collect();
    let applied: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut conn = db.conn();
    let all = MigrationHarness::applied_migrations(&mut conn).unwrap().len();
    assert!(all >= 6);
    assert_eq!(applied, all, "each migration applied exactly once across the three");
    conn.revert_all_migrations(cpis::db::MIGRATIONS).unwrap();
    assert_eq!(cpis::db::migrate(&mut conn).unwrap(), all, "every down.sql works and up applies again");
}

#[test]
fn constraints_refuse_bad_rows() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    for sql in [
        // Not 10 digits.
        "INSERT INTO patients (nhs_number, family_name, gender, birth_date, family_key, given_key, family_soundex, given_soundex) \
         VALUES ('12345', 'X', 'female', '2010-01-01', 'x', '', 'X000', '')",
        // An unborn plan needs its due date as end (CP-IS033).
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         VALUES ('9990000069', 'E10000016', 'UCPP', 'K-1', '2026-01-01')",
        // End before start.
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date) \
         VALUES ('9990000131', 'E10000016', 'CPP', 'K-1', '2026-01-01', '2025-01-01')",
        // Two current items of one type for one child from one LA.
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         VALUES ('9990000050', 'E08000035', 'CPP', 'L-2', '2026-01-01')",
        // An unknown LA.
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         VALUES ('9990000131', 'E99999999', 'CPP', 'K-1', '2026-01-01')",
        // A role profile at both an NHS organisation and an LA.
        "INSERT INTO role_profiles (user_id, nhs_org_code, la_code, job_role_code) \
         SELECT id, 'RJZ', 'E10000016', 'R8000' FROM users LIMIT 1",
        // A password that is not an argon2id hash.
        "INSERT INTO users (username, display_name, password_hash) VALUES ('plain.text', 'P', 'secret')",
    ] {
        assert!(diesel::sql_query(sql).execute(&mut conn).is_err(), "refused: {sql}");
    }
}
