//! The migrations are the schema: they apply under a lock from several processes, every down.sql
//! works, and the constraints keep bad data out whatever the path.

use diesel::prelude::*;
use diesel_migrations::MigrationHarness;

use crate::support::db::texts;
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

/// Issue 8: the hot hand-written statements (`cpis::db::prepared`) are planned once per
/// connection: diesel keeps them as prepared statements, as it does for its DSL's queries, and a
/// placeholder used twice is bound twice.
#[test]
fn hand_written_hot_statements_are_prepared_once_per_connection() {
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName, Debug, PartialEq)]
    struct Pair {
        #[diesel(sql_type = BigInt)]
        a: i64,
        #[diesel(sql_type = Text)]
        b: String,
    }
    let db = TestDatabase::new(Template::Reference);
    let mut conn = db.conn();
    let query = |n: i64| {
        cpis::db::prepared::sql("SELECT $1::bigint + $1::bigint AS a, $2::text AS b /* prepared-test */")
            .bind::<BigInt, _>(n)
            .bind::<Text, _>(format!("x{n}"))
    };
    for n in 1..=3 {
        let row: Pair = query(n).get_result(&mut conn).unwrap();
        assert_eq!(row, Pair { a: 2 * n, b: format!("x{n}") });
    }
    let numbers = cpis::pds::patient::linked_numbers(&mut conn, "9990000018").unwrap();
    let again = cpis::pds::patient::linked_numbers(&mut conn, "9990000018").unwrap();
    assert_eq!(numbers, again);
    assert_eq!(
        crate::support::db::count(
            &mut conn,
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%prepared-test%' \
             AND statement NOT LIKE '%pg_prepared_statements%'"
        ),
        1,
        "one prepared statement for three executions"
    );
    assert_eq!(
        crate::support::db::count(
            &mut conn,
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'WITH RECURSIVE linked%'"
        ),
        1
    );
    let missing = cpis::db::prepared::sql("SELECT $2::text AS b").bind::<Text, _>("only one".to_owned());
    assert!(diesel::RunQueryDsl::execute(missing, &mut conn).is_err(), "a placeholder without a value is an error");
}

/// Issue 8: `lookup_linked` answers in one statement what `lookup` and `linked_numbers` answer in
/// two, for every kind of record in the demo data (current with superseded numbers, superseded,
/// invalidated, unknown).
#[test]
fn lookup_linked_agrees_with_lookup_and_linked_numbers() {
    use cpis::pds::patient::{self, Lookup};
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let mut numbers = texts(
        &mut conn,
        "(SELECT nhs_number AS s FROM patients WHERE superseded_by IS NOT NULL LIMIT 5) \
         UNION ALL (SELECT superseded_by FROM patients WHERE superseded_by IS NOT NULL LIMIT 5) \
         UNION ALL (SELECT nhs_number FROM patients WHERE invalidated LIMIT 3) \
         UNION ALL (SELECT nhs_number FROM patients ORDER BY nhs_number LIMIT 20)",
    );
    numbers.push("9999999999".into());
    let mut kinds = std::collections::BTreeSet::new();
    for n in &numbers {
        let (found, linked) = patient::lookup_linked(&mut conn, n).unwrap();
        let expected = patient::lookup(&mut conn, n).unwrap();
        let expected_linked = match &expected {
            Lookup::Found(p) | Lookup::Superseded { current: p, .. } => {
                patient::linked_numbers(&mut conn, &p.nhs_number).unwrap()
            }
            Lookup::NotFound => vec![],
        };
        kinds.insert(match &expected {
            Lookup::Found(_) if expected_linked.len() > 1 => "current with superseded numbers",
            Lookup::Found(_) => "current",
            Lookup::Superseded { .. } => "superseded",
            Lookup::NotFound => "not found",
        });
        assert_eq!(format!("{found:?}"), format!("{expected:?}"), "{n}");
        assert_eq!(linked.first(), expected_linked.first(), "{n}: the current number first");
        let (mut a, mut b) = (linked.clone(), expected_linked.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "{n}");
    }
    assert_eq!(kinds.len(), 4, "every kind of record was tried: {kinds:?}");
}

/// The tab's locking read (hand-written SQL) returns exactly what `current_held` (diesel's DSL)
/// does, for every child with information in the demo data, over all their linked numbers.
#[test]
fn the_locking_read_of_held_items_agrees_with_the_plain_one() {
    use cpis::cpis::items;
    use cpis::pds::patient;
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let numbers = texts(&mut conn, "SELECT DISTINCT nhs_number AS s FROM cp_items ORDER BY 1");
    assert!(numbers.len() >= 5, "the demo data holds information for several people");
    let mut items_seen = 0;
    for n in &numbers {
        let linked = patient::linked_numbers(&mut conn, n).unwrap();
        let plain = items::current_held(&mut conn, &linked).unwrap();
        let locked = conn.transaction(|c| items::lock_and_read_held(c, n, &linked)).unwrap();
        assert_eq!(locked, plain, "{n}");
        items_seen += plain.len();
    }
    assert!(items_seen > 0);
}
