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
        cpis::db::prepared::sql!("SELECT $1::bigint + $1::bigint AS a, $2::text AS b /* prepared-test */")
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
    let missing = cpis::db::prepared::sql!("SELECT $2::text AS b").bind::<Text, _>("only one".to_owned());
    assert!(diesel::RunQueryDsl::execute(missing, &mut conn).is_err(), "a placeholder without a value is an error");
}

/// Issue 8: each `sql!` is found by a type of its own, so two texts chosen between at one place
/// are two statements, each answering as its own text says, however often and in whatever order
/// they run.
#[test]
fn each_hand_written_statement_answers_as_its_own_text() {
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName, Debug, PartialEq)]
    struct One {
        #[diesel(sql_type = BigInt)]
        a: i64,
    }
    let db = TestDatabase::new(Template::Reference);
    let mut conn = db.conn();
    let own = |conn: &mut PgConnection, double: bool, n: i64| -> One {
        if double {
            cpis::db::prepared::sql!("SELECT $1::bigint * 2 AS a /* own-text */").bind::<BigInt, _>(n).get_result(conn)
        } else {
            cpis::db::prepared::sql!("SELECT $1::bigint * 3 AS a /* own-text */").bind::<BigInt, _>(n).get_result(conn)
        }
        .unwrap()
    };
    for n in 1..=3 {
        for double in [true, false, false, true] {
            assert_eq!(own(&mut conn, double, n), One { a: if double { 2 * n } else { 3 * n } });
        }
    }
    assert_eq!(
        crate::support::db::count(
            &mut conn,
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%own-text%' \
             AND statement NOT LIKE '%pg_prepared_statements%'"
        ),
        2,
        "one prepared statement for each text"
    );
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

/// The tab's read of held items (hand-written SQL) returns exactly what the same read in diesel's
/// DSL does, each item with its authority, for every child with information in the demo data,
/// over all their linked numbers.
#[test]
fn the_hand_written_read_of_held_items_agrees_with_the_dsl() {
    use cpis::cpis::items;
    use cpis::pds::patient;
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let numbers = texts(&mut conn, "SELECT DISTINCT nhs_number AS s FROM cp_items ORDER BY 1");
    assert!(numbers.len() >= 5, "the demo data holds information for several people");
    let mut items_seen = 0;
    for n in &numbers {
        let linked = patient::linked_numbers(&mut conn, n).unwrap();
        let held = items::current_held(&mut conn, &linked).unwrap();
        let dsl: Vec<items::CpItem> = {
            use cpis::schema::cp_items;
            cp_items::table
                .filter(cp_items::nhs_number.eq_any(&linked))
                .filter(cp_items::deleted_at.is_null())
                .order((cp_items::la_code, cp_items::item_type))
                .select(items::CpItem::as_select())
                .load(&mut conn)
                .unwrap()
        };
        assert_eq!(held.iter().map(|h| h.item.clone()).collect::<Vec<_>>(), dsl, "{n}");
        assert!(held.iter().all(|h| h.authority.code == h.item.la_code), "{n}");
        items_seen += held.len();
    }
    assert!(items_seen > 0);
}

/// Issue 8: `lookup_held`, the tab's and a FHIR query's first read, answers in one statement what
/// `lookup_linked` and `current_held` answer in two, for every kind of record in the demo data:
/// current with items (the demo holds some under a superseded number), current without, superseded,
/// invalidated, unknown.
#[test]
fn lookup_held_agrees_with_lookup_linked_and_current_held() {
    use cpis::cpis::items;
    use cpis::pds::patient::{self, Lookup};
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let mut numbers = texts(
        &mut conn,
        "(SELECT DISTINCT nhs_number AS s FROM cp_items) \
         UNION ALL (SELECT superseded_by FROM patients WHERE superseded_by IS NOT NULL LIMIT 5) \
         UNION ALL (SELECT nhs_number FROM patients WHERE superseded_by IS NOT NULL LIMIT 5) \
         UNION ALL (SELECT nhs_number FROM patients WHERE invalidated LIMIT 3) \
         UNION ALL (SELECT nhs_number FROM patients ORDER BY nhs_number LIMIT 20)",
    );
    numbers.push("9999999999".into());
    let (mut with_items, mut under_old_number, mut without) = (0, 0, 0);
    for n in &numbers {
        let (found, linked, held) = items::lookup_held(&mut conn, n).unwrap();
        let (expected, expected_linked) = patient::lookup_linked(&mut conn, n).unwrap();
        let expected_held = match expected {
            Lookup::NotFound => vec![],
            _ => items::current_held(&mut conn, &expected_linked).unwrap(),
        };
        assert_eq!(format!("{found:?}"), format!("{expected:?}"), "{n}");
        assert_eq!(linked, expected_linked, "{n}: the same numbers, the current one first");
        assert_eq!(held, expected_held, "{n}");
        if let Lookup::Found(p) = &found {
            match held.is_empty() {
                true => without += 1,
                false => with_items += 1,
            }
            under_old_number += usize::from(held.iter().any(|h| h.item.nhs_number != p.nhs_number));
        }
    }
    assert!(with_items > 0 && under_old_number > 0 && without > 0, "{with_items} {under_old_number} {without}");
    // All at once (the access recorder's read of a batch of tabs), a number asked twice among
    // them: the same answers, in the order asked.
    numbers.push(numbers[0].clone());
    let asked: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let together = items::lookup_held_many(&mut conn, &asked).unwrap();
    assert_eq!(together.len(), numbers.len());
    for (n, (found, linked, held)) in numbers.iter().zip(together) {
        let (alone, alone_linked, alone_held) = items::lookup_held(&mut conn, n).unwrap();
        assert_eq!(format!("{found:?}"), format!("{alone:?}"), "{n}");
        assert_eq!((linked, held), (alone_linked, alone_held), "{n}");
    }
}

/// A statement the database must refuse as a broken reference (SQLSTATE 23503), whatever path
/// the row took.
fn refused_as_reference(conn: &mut PgConnection, sql: &str) {
    refused_as_reference_from(conn, sql, "cp_items");
}

/// A reference refusal from `table`'s triggers (cp_items', migration 000017; access_events',
/// migration 000036).
fn refused_as_reference_from(conn: &mut PgConnection, sql: &str, table: &str) {
    match diesel::sql_query(sql).execute(conn) {
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, e))
            if e.message().contains(&format!("\"{table}\"")) => {}
        other => panic!("{sql}: expected {table}' reference refused, got {other:?}"),
    }
}

/// Whether a statement failed as a serialization failure (the references' refusals outside READ
/// COMMITTED, and an insert behind a parent's delete).
fn is_serialization_failure<T>(outcome: &QueryResult<T>) -> bool {
    matches!(
        outcome,
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::SerializationFailure, _))
    )
}

/// A parent's delete or key change in a REPEATABLE READ transaction is refused, as its check could
/// miss a concurrent child (migration 000020, `reference_parent_isolation_check`).
fn refused_outside_read_committed(conn: &mut PgConnection, sql: &str) {
    let outcome = conn.build_transaction().repeatable_read().run(|conn| diesel::sql_query(sql).execute(conn));
    assert!(is_serialization_failure(&outcome), "{sql} outside READ COMMITTED: {outcome:?}");
}

const NEW_PATIENT: &str = "INSERT INTO patients (nhs_number, family_name, gender, birth_date, family_key, given_key, \
     family_soundex, given_soundex) VALUES ('9111111110', 'Orphan', 'female', '2015-01-01', 'orphan', '', 'O615', '')";
const NEW_UPLOAD: &str = "INSERT INTO uploads (id, la_code, received_at, size_bytes, channel, file_code, received, \
     accepted, rejected, ack_message_id) VALUES (900001, 'E10000016', now(), 1, 'portal', 'CPF01', 1, 1, 0, gen_random_uuid())";
const ITEM_OF_NEW_PATIENT: &str = "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, \
     upload_id) VALUES ('9111111110', 'E10000016', 'CPP', 'K-9', '2026-01-01', 900001)";

/// Issue 8, migration 000017: cp_items' references are checked once per statement rather than by
/// three foreign keys per row; the guarantee must stay a foreign key's, in both directions.
#[test]
fn cp_items_references_hold_as_foreign_keys_would() {
    use crate::support::db::{count, execute};
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    execute(&mut conn, NEW_PATIENT);
    execute(&mut conn, NEW_UPLOAD);
    let items = || "SELECT count(*) FROM cp_items";
    let before = count(&mut conn, items());
    for sql in [
        // A child who is not a PDS patient; an unknown LA; an unknown upload.
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         VALUES ('9111111129', 'E10000016', 'CPP', 'K-1', '2026-01-01')",
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         VALUES ('9111111110', 'E99999999', 'CPP', 'K-1', '2026-01-01')",
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, upload_id) \
         VALUES ('9111111110', 'E10000016', 'CPP', 'K-1', '2026-01-01', 424242)",
        // One unknown child among many in one statement: the whole statement is refused.
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         SELECT nhs_number, 'E09000033', 'LAC', 'K-1', DATE '2026-01-01' FROM patients \
         WHERE nhs_number NOT IN (SELECT nhs_number FROM cp_items) \
         UNION ALL SELECT '9111111129', 'E09000033', 'LAC', 'K-1', '2026-01-01'",
    ] {
        refused_as_reference(&mut conn, sql);
    }
    assert_eq!(count(&mut conn, items()), before, "nothing of a refused statement is stored");

    execute(&mut conn, ITEM_OF_NEW_PATIENT);
    // An item is replaced, never re-pointed; its other columns may change.
    for sql in [
        "UPDATE cp_items SET nhs_number = (SELECT nhs_number FROM patients WHERE nhs_number <> '9111111110' LIMIT 1) \
         WHERE nhs_number = '9111111110'",
        "UPDATE cp_items SET la_code = 'E09000033' WHERE nhs_number = '9111111110'",
        "UPDATE cp_items SET upload_id = NULL WHERE nhs_number = '9111111110'",
    ] {
        refused_as_reference(&mut conn, sql);
    }
    execute(&mut conn, "UPDATE cp_items SET end_date = '2026-06-01' WHERE nhs_number = '9111111110'");
    // A referenced parent is neither deleted nor re-keyed; its other columns may change.
    for sql in [
        "DELETE FROM patients WHERE nhs_number = '9111111110'",
        "UPDATE patients SET nhs_number = '9111111129' WHERE nhs_number = '9111111110'",
        "DELETE FROM uploads WHERE id = 900001",
        "UPDATE uploads SET id = 900002 WHERE id = 900001",
        "UPDATE local_authorities SET code = 'E10000099' WHERE code = 'E10000016'",
    ] {
        refused_as_reference(&mut conn, sql);
    }
    execute(
        &mut conn,
        "UPDATE patients SET nhs_number = nhs_number, postcode = 'LS11AA' WHERE nhs_number = '9111111110'",
    );
    // Once nothing refers to them, they go as any row does.
    execute(&mut conn, "DELETE FROM cp_items WHERE nhs_number = '9111111110'");
    execute(&mut conn, "DELETE FROM uploads WHERE id = 900001");
    execute(&mut conn, "DELETE FROM patients WHERE nhs_number = '9111111110'");
}

/// The races a foreign key closes: a parent deleted while an item naming it is being inserted.
/// Whichever transaction goes first, the second waits for it and is then refused, so no item is
/// left naming a patient or an upload that is gone.
#[test]
fn a_parent_deleted_while_its_item_is_inserted_leaves_no_orphan() {
    let db = TestDatabase::new(Template::Demo);
    let orphans = "SELECT count(*) FROM cp_items i WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.nhs_number = i.nhs_number) \
         OR (i.upload_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.id = i.upload_id))";
    for delete in ["DELETE FROM patients WHERE nhs_number = '9111111110'", "DELETE FROM uploads WHERE id = 900001"] {
        a_delete_racing_an_insert_is_refused_either_way(
            &db,
            &[NEW_PATIENT, NEW_UPLOAD],
            ITEM_OF_NEW_PATIENT,
            delete,
            orphans,
            &[
                "DELETE FROM cp_items WHERE nhs_number = '9111111110'",
                "DELETE FROM uploads WHERE id = 900001",
                "DELETE FROM patients WHERE nhs_number = '9111111110'",
            ],
        );
    }
}

/// The race a foreign key closes, both ways round, on two connections: `insert` (a child naming
/// a parent) and `delete` (of that parent), each first in turn. The second must wait for the
/// first's lock and, once the first commits, be refused as a reference; `orphans` then counts
/// none. `parents` are made before each order, and `cleanup` removes what is left after it.
fn a_delete_racing_an_insert_is_refused_either_way(
    db: &TestDatabase,
    parents: &[&str],
    insert: &'static str,
    delete: &'static str,
    orphans: &str,
    cleanup: &[&str],
) {
    use crate::support::db::{count, execute};
    let mut setup = db.conn();
    let waiting = |conn: &mut PgConnection| {
        count(
            conn,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
    };
    for insert_first in [true, false] {
        for parent in parents {
            execute(&mut setup, parent);
        }
        let (mut first, mut second) =
            (PgConnection::establish(&db.url).unwrap(), PgConnection::establish(&db.url).unwrap());
        let (lead, follow) = if insert_first { (insert, delete) } else { (delete, insert) };
        execute(&mut first, "BEGIN");
        execute(&mut first, lead);
        let follower = std::thread::spawn(move || {
            let outcome = diesel::sql_query(follow).execute(&mut second);
            (outcome, second)
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while waiting(&mut setup) == 0 {
            assert!(std::time::Instant::now() < deadline, "the second ({follow}) should wait for the first's lock");
            assert!(!follower.is_finished(), "the second ({follow}) went ahead without waiting for the first");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        execute(&mut first, "COMMIT");
        let (outcome, _) = follower.join().unwrap();
        assert!(
            matches!(
                outcome,
                Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _))
            ),
            "the second ({follow}) waits for the first ({lead}) and is refused: {outcome:?}"
        );
        assert_eq!(count(&mut setup, orphans), 0);
        for sql in cleanup {
            execute(&mut setup, sql);
        }
    }
}

/// Migration 000023: under READ COMMITTED an insert into cp_items meets a parent's deletion at one
/// advisory lock (the race test above) and locks no parent row, so a national file no longer
/// writes a lock into 60,000 patients' rows. Outside READ COMMITTED its snapshot could miss a
/// deletion committed meanwhile, so it locks each parent row FOR KEY SHARE as a foreign key does,
/// and a parent deleted since its snapshot is a serialization failure, not an orphan.
#[test]
fn the_reference_check_locks_parent_rows_only_outside_read_committed() {
    use crate::support::db::{count, execute};
    let db = TestDatabase::new(Template::Demo);
    let (mut inserter, mut other) = (db.conn(), db.conn());
    execute(&mut other, NEW_PATIENT);
    execute(&mut other, NEW_UPLOAD);
    for (isolation, locks_rows) in [("READ COMMITTED", false), ("REPEATABLE READ", true)] {
        execute(&mut inserter, &format!("BEGIN ISOLATION LEVEL {isolation}"));
        execute(&mut inserter, ITEM_OF_NEW_PATIENT);
        // A key change of the row (FOR UPDATE) conflicts with FOR KEY SHARE.
        let held = diesel::sql_query("SELECT 1 FROM patients WHERE nhs_number = '9111111110' FOR UPDATE NOWAIT")
            .execute(&mut other);
        assert_eq!(held.is_err(), locks_rows, "{isolation}: the patient's row is locked: {held:?}");
        execute(&mut inserter, "ROLLBACK");
    }

    // REPEATABLE READ: the patient is deleted (nothing refers to it yet) after the inserter's
    // snapshot was taken, and before its insert.
    execute(&mut inserter, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    assert_eq!(count(&mut inserter, "SELECT count(*) FROM patients WHERE nhs_number = '9111111110'"), 1);
    execute(&mut other, "DELETE FROM patients WHERE nhs_number = '9111111110'");
    let outcome = diesel::sql_query(ITEM_OF_NEW_PATIENT).execute(&mut inserter);
    assert!(is_serialization_failure(&outcome), "an item naming a patient deleted since the snapshot: {outcome:?}");
    execute(&mut inserter, "ROLLBACK");
    assert_eq!(count(&mut other, "SELECT count(*) FROM cp_items WHERE nhs_number = '9111111110'"), 0);

    // REPEATABLE READ takes no advisory lock: a delete holding the patient's row (locked before
    // its trigger runs) and waiting for that lock behind an earlier insert of this transaction
    // would otherwise deadlock with this transaction's next insert, which waits for the row.
    // Instead the delete goes ahead and the insert is a serialization failure.
    execute(&mut other, NEW_PATIENT);
    execute(&mut inserter, "BEGIN ISOLATION LEVEL REPEATABLE READ");
    execute(
        &mut inserter,
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, upload_id) \
         SELECT nhs_number, 'E10000016', 'LAC', 'K-8', '2026-01-01', 900001 FROM patients \
         WHERE nhs_number <> '9111111110' AND nhs_number NOT IN (SELECT nhs_number FROM cp_items) LIMIT 1",
    );
    // (Were the delete to wait for this transaction's lock, it gives up rather than hang the test.)
    execute(&mut other, "SET lock_timeout = '5s'");
    execute(&mut other, "BEGIN");
    execute(&mut other, "DELETE FROM patients WHERE nhs_number = '9111111110'");
    let insert = std::thread::spawn(move || {
        let outcome = diesel::sql_query(ITEM_OF_NEW_PATIENT).execute(&mut inserter);
        let _ = diesel::sql_query("ROLLBACK").execute(&mut inserter);
        outcome
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count(
        &mut db.conn(),
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    ) == 0
    {
        assert!(std::time::Instant::now() < deadline, "the insert should wait for the deleted row");
        assert!(!insert.is_finished(), "the insert went ahead without waiting for the deleted row");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    execute(&mut other, "COMMIT");
    let outcome = insert.join().unwrap();
    assert!(is_serialization_failure(&outcome), "the insert behind the delete: {outcome:?}");
}

/// Where the triggers could not promise what a foreign key does, they refuse: a parent deleted
/// or re-keyed outside READ COMMITTED (its snapshot could miss a concurrent item), and a parent
/// truncated while items exist (TRUNCATE fires no row trigger).
#[test]
fn what_the_reference_triggers_cannot_check_they_refuse() {
    use crate::support::db::execute;
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    execute(&mut conn, NEW_PATIENT);
    refused_outside_read_committed(&mut conn, "DELETE FROM patients WHERE nhs_number = '9111111110'");
    execute(&mut conn, "DELETE FROM patients WHERE nhs_number = '9111111110'");
    for table in ["patients", "uploads", "local_authorities"] {
        refused_as_reference(&mut conn, &format!("TRUNCATE {table} CASCADE"));
    }
}

const NEW_VIEWER: &str = "INSERT INTO users (id, username, display_name, password_hash) \
     VALUES (900001, 'orphan.viewer', 'Orphan Viewer', '$argon2id$v=19$m=7168,t=5,p=1$c2FsdA$aGFzaA')";
const ACCESS_OF_NEW_PATIENT: &str = "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, user_id, \
     viewer_name, job_role_code, organisation_code, channel, shown) \
     VALUES ('9111111110', now(), 'orphan-viewer', 900001, 'Orphan Viewer', 'R8000', 'RXX', 'SCRa', true)";

/// Issue 8, migration 000036: access_events' references (the child, the viewer's account) are
/// checked once per statement rather than by two foreign keys per row, each locking its parent's
/// row; the guarantee must stay a foreign key's, in both directions.
#[test]
fn access_events_references_hold_as_foreign_keys_would() {
    use crate::support::db::{count, execute};
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    execute(&mut conn, NEW_PATIENT);
    execute(&mut conn, NEW_VIEWER);
    let accesses = || "SELECT count(*) FROM access_events";
    let before = count(&mut conn, accesses());
    for sql in [
        // A child who is not a PDS patient; an account that does not exist.
        &ACCESS_OF_NEW_PATIENT.replace("'9111111110'", "'9111111129'"),
        &ACCESS_OF_NEW_PATIENT.replace("900001", "424242"),
        // One unknown child among many in one statement: the whole statement is refused.
        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, organisation_code, \
         channel, shown) \
         SELECT nhs_number, now(), 'v', 'V', 'R8000', 'RXX', 'FHIR', true FROM patients \
         UNION ALL SELECT '9111111129', now(), 'v', 'V', 'R8000', 'RXX', 'FHIR', true",
    ] {
        refused_as_reference_from(&mut conn, sql, "access_events");
    }
    assert_eq!(count(&mut conn, accesses()), before, "nothing of a refused statement is stored");

    // An API access names no account.
    execute(&mut conn, &ACCESS_OF_NEW_PATIENT.replace("900001", "NULL"));
    execute(&mut conn, ACCESS_OF_NEW_PATIENT);
    // An access is never re-pointed.
    for sql in [
        "UPDATE access_events SET nhs_number = (SELECT nhs_number FROM patients WHERE nhs_number <> '9111111110' LIMIT 1) \
         WHERE nhs_number = '9111111110'",
        "UPDATE access_events SET user_id = NULL WHERE user_id = 900001",
    ] {
        refused_as_reference_from(&mut conn, sql, "access_events");
    }
    // A referenced parent is neither deleted nor re-keyed (nor truncated); its other columns may
    // change.
    for sql in [
        "DELETE FROM patients WHERE nhs_number = '9111111110'",
        "UPDATE patients SET nhs_number = '9111111129' WHERE nhs_number = '9111111110'",
        "DELETE FROM users WHERE id = 900001",
        "UPDATE users SET id = 900002 WHERE id = 900001",
        "TRUNCATE users CASCADE",
    ] {
        refused_as_reference_from(&mut conn, sql, "access_events");
    }
    execute(&mut conn, "UPDATE users SET id = id, telephone = '0113 496 0000' WHERE id = 900001");
    execute(&mut conn, "UPDATE patients SET postcode = 'LS11AA' WHERE nhs_number = '9111111110'");
    // Under READ COMMITTED an access locks no parent row (the references' advisory lock stands in);
    // outside it, its snapshot could miss a deletion committed meanwhile, so it locks the patient's
    // and the account's rows FOR KEY SHARE as a foreign key does.
    let mut other = db.conn();
    for (isolation, locks_rows) in [("READ COMMITTED", false), ("REPEATABLE READ", true)] {
        execute(&mut conn, &format!("BEGIN ISOLATION LEVEL {isolation}"));
        execute(&mut conn, ACCESS_OF_NEW_PATIENT);
        for parent in ["patients WHERE nhs_number = '9111111110'", "users WHERE id = 900001"] {
            let held = diesel::sql_query(format!("SELECT 1 FROM {parent} FOR UPDATE NOWAIT")).execute(&mut other);
            assert_eq!(held.is_err(), locks_rows, "{isolation}: {parent} is locked: {held:?}");
        }
        execute(&mut conn, "ROLLBACK");
    }
    // Outside READ COMMITTED a parent's check could miss a concurrent access: refused outright.
    refused_outside_read_committed(&mut conn, "DELETE FROM users WHERE id = 900001");
    // Once nothing refers to them, they go as any row does (the retention purge deletes accesses).
    execute(&mut conn, "DELETE FROM access_events WHERE nhs_number = '9111111110'");
    execute(&mut conn, "DELETE FROM users WHERE id = 900001");
    execute(&mut conn, "DELETE FROM patients WHERE nhs_number = '9111111110'");
}

/// The races a foreign key closes, for accesses: a patient or an account deleted while an access
/// naming it is being recorded. Whichever transaction goes first, the second waits for it (at the
/// references' advisory lock) and is then refused, so no access is left naming a child or an
/// account that is gone.
#[test]
fn a_parent_deleted_while_its_access_is_recorded_leaves_no_orphan() {
    let db = TestDatabase::new(Template::Demo);
    let orphans = "SELECT count(*) FROM access_events a \
         WHERE NOT EXISTS (SELECT 1 FROM patients p WHERE p.nhs_number = a.nhs_number) \
         OR (a.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = a.user_id))";
    for delete in ["DELETE FROM patients WHERE nhs_number = '9111111110'", "DELETE FROM users WHERE id = 900001"] {
        a_delete_racing_an_insert_is_refused_either_way(
            &db,
            &[NEW_PATIENT, NEW_VIEWER],
            ACCESS_OF_NEW_PATIENT,
            delete,
            orphans,
            &[
                "DELETE FROM access_events WHERE nhs_number = '9111111110'",
                "DELETE FROM users WHERE id = 900001",
                "DELETE FROM patients WHERE nhs_number = '9111111110'",
            ],
        );
    }
}

/// 20,000 children with a plan and looked-after status each (Kent's), so that the planner
/// estimates the tab's statements as it does on a national dataset.
fn insert_children_with_items(conn: &mut PgConnection) {
    for sql in [
        "INSERT INTO patients (nhs_number, family_name, gender, birth_date, family_key, given_key, family_soundex, given_soundex) \
         SELECT '8' || lpad(g::text, 9, '0'), 'Plan', 'female', '2015-01-01', 'plan', '', 'P450', '' FROM generate_series(1, 20000) g",
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
         SELECT '8' || lpad(g::text, 9, '0'), 'E10000016', t, 'P-' || g, '2025-01-01' \
         FROM generate_series(1, 20000) g, unnest(ARRAY['CPP', 'LAC']) t",
    ] {
        crate::support::db::execute(conn, sql);
    }
}

/// Issue 8: the tab's hand-written statements settle on one generic plan per connection. A
/// statement whose plan for the actual values always looks cheaper than its generic plan (an
/// array of one or two numbers, a range from a bound time) is planned again on every execution by
/// PostgreSQL; on the national dataset that planning cost more than running the statements.
#[test]
fn the_tab_statements_are_not_planned_on_every_opening() {
    use cpis::seed::demo::fixtures::NOAH_WILLIAMS;
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    // Enough rows for the planner to estimate as it does on a national dataset: 20,000 children
    // with two items each and 200,000 shown accesses over a year.
    insert_children_with_items(&mut conn);
    for sql in [
        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, organisation_code, channel, shown) \
         SELECT '8' || lpad((g % 20000 + 1)::text, 9, '0'), now() - (g % 365) * interval '1 day', 'v' || (g % 500), \
                'Dr V', 'R8000', 'RJZ', 'SCRa', true FROM generate_series(1, 200000) g",
        "ANALYZE",
    ] {
        crate::support::db::execute(&mut conn, sql);
    }
    let viewer = crate::support::api_viewer("plan-test");
    let numbers = vec![NOAH_WILLIAMS.to_owned()];
    for _ in 0..12 {
        // A request's read, the tab thread's read ahead, then the access recorder's transaction.
        assert!(!cpis::cpis::items::current_held(&mut conn, &numbers).unwrap().is_empty());
        let access =
            cpis::cpis::access::NewAccess { nhs_number: NOAH_WILLIAMS, viewer: &viewer, at: chrono::Utc::now() };
        let (_, read) = cpis::cpis::items::lookup_held_reading_ahead(&mut conn, &[access]).unwrap().remove(0);
        assert!(read.is_some(), "a current record holding items is read ahead");
        let opening = cpis::cpis::recorder::Opening {
            nhs_number: NOAH_WILLIAMS.to_owned(),
            history_of: numbers.clone(),
            viewer: viewer.clone(),
            actor: cpis::audit::Actor::Anonymous,
            at: chrono::Utc::now(),
            exchange: None,
            read_ahead: None,
        };
        cpis::cpis::recorder::record_all(&mut conn, &Default::default(), None, None, &[opening])
            .unwrap()
            .remove(0)
            .unwrap();
    }
    // The children's locks are not among them: they go as text with the batch's BEGIN, one round
    // trip for both, and their plan is a scan of a literal array (cheaper than the round trip).
    // The accesses' insert carries their audit entries' outbox row.
    // The tab thread's statement (`items::lookup_held_reading_ahead`) is the first of each opening.
    for start in [
        "SELECT i.id, i.nhs_number",
        "WITH p AS MATERIALIZED",
        "SELECT 0 AS k, q.i AS o",
        "WITH a AS (INSERT INTO access_events",
    ] {
        let plans = texts(
            &mut conn,
            &format!(
                "SELECT generic_plans || ' generic, ' || custom_plans || ' custom' AS s FROM pg_prepared_statements \
                 WHERE statement LIKE '{start}%'"
            ),
        );
        assert_eq!(plans.len(), 1, "{start}: one prepared statement");
        let custom: i64 = plans[0].split(' ').nth(2).unwrap().parse().unwrap();
        assert!(custom <= 5, "{start}: planned once for all after PostgreSQL's five trial plans, got {}", plans[0]);
    }
}

/// Issue 8: the service's connections plan with a random page cost of 1.1, not PostgreSQL's 4, and
/// the tab's read (`items::lookup_held`, the FHIR query's too) then finds each item's local
/// authority through its key, where with 4 it read all 152 of them for each item. Counted in one
/// transaction over seven reads (past PostgreSQL's five trial plans): the scans of the table and
/// of its key. With the server's setting the same reads scan the table: the test sees the
/// difference it means to.
#[test]
fn the_tab_read_finds_each_items_authority_by_its_key() {
    use crate::support::db::{count, execute};
    use cpis::seed::demo::fixtures::MIA_THOMPSON;
    let db = TestDatabase::new(Template::Demo);
    // Enough items for the planner to estimate as on a national dataset.
    insert_children_with_items(&mut db.conn());
    execute(&mut db.conn(), "ANALYZE");
    let scans = |cost: Option<f64>| {
        let pool = diesel::r2d2::Pool::builder()
            .max_size(1)
            .build(cpis::db::manager::Manager::new(&db.url).with_random_page_cost(cost))
            .unwrap();
        let mut conn = pool.get().unwrap();
        execute(&mut conn, "BEGIN");
        let (whole, keyed) = (
            "SELECT pg_stat_get_xact_numscans('local_authorities'::regclass)",
            "SELECT pg_stat_get_xact_numscans('local_authorities_pkey'::regclass)",
        );
        let before = (count(&mut conn, whole), count(&mut conn, keyed));
        for _ in 0..7 {
            let (_, _, held) = cpis::cpis::items::lookup_held(&mut conn, MIA_THOMPSON).unwrap();
            assert_eq!(held.len(), 2, "a plan from Kent and looked-after status from Manchester");
        }
        let after = (count(&mut conn, whole), count(&mut conn, keyed));
        execute(&mut conn, "COMMIT");
        (after.0 - before.0, after.1 - before.1)
    };
    let (whole, keyed) = scans(Some(cpis::db::manager::RANDOM_PAGE_COST));
    assert_eq!(whole, 0, "no read of every local authority");
    assert_eq!(keyed, 14, "each item's authority by its key");
    let (whole, _) = scans(None);
    assert!(whole > 0, "with PostgreSQL's default the same read scans the table");
    let config = cpis::config::Config::for_database(&db.url);
    let mut conn = cpis::db::pool(&config).get().unwrap();
    assert_eq!(crate::support::db::texts(&mut conn, "SELECT current_setting('random_page_cost') AS s"), ["1.1"]);
}

/// Issue 8: the demographic search's statements (one per kind of family name pattern, with and
/// without similar names) settle on one generic plan per connection, like the tab's. Diesel's
/// boxed query before them was sent as text and planned on every search: planning cost four
/// times what running it did, on the national dataset.
#[test]
fn the_demographic_search_statements_are_not_planned_on_every_search() {
    use cpis::pds::search::{self, DemographicQuery, NamePattern};
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    // Enough patients for the planner to estimate as on a national dataset.
    for sql in [
        "INSERT INTO patients (nhs_number, given_name, family_name, gender, birth_date, family_key, given_key, family_soundex, given_soundex) \
         SELECT '8' || lpad(g::text, 9, '0'), 'Ann', 'Name' || (g % 2000), 'female', date '2010-01-01' + (g % 3000), \
                'name' || (g % 2000), 'ann', 'N500', 'A500' FROM generate_series(1, 20000) g",
        "ANALYZE patients",
    ] {
        crate::support::db::execute(&mut conn, sql);
    }
    let born = chrono::NaiveDate::from_ymd_opt(2012, 3, 4).unwrap();
    for family in ["name17", "name1*"] {
        for similar in [false, true] {
            for given in [None, Some("ann")] {
                for _ in 0..6 {
                    let q = DemographicQuery {
                        family: NamePattern::parse(family, "f").unwrap().unwrap(),
                        given: given.map(|g| NamePattern::parse(g, "g").unwrap().unwrap()),
                        birth_from: born,
                        birth_to: born + chrono::TimeDelta::days(400),
                        gender: None,
                        postcode: None,
                        similar,
                    };
                    search::search(&mut conn, &q).unwrap();
                }
            }
        }
    }
    let plans = texts(
        &mut conn,
        "SELECT generic_plans || ' generic, ' || custom_plans || ' custom' AS s FROM pg_prepared_statements \
         WHERE statement LIKE 'SELECT nhs_number, given_name, family_name, gender, birth_date, death_date%' ORDER BY 1",
    );
    assert_eq!(plans.len(), 4, "one statement per kind of search: {plans:?}");
    for p in &plans {
        let custom: i64 = p.split(' ').nth(2).unwrap().parse().unwrap();
        assert!(custom <= 5, "planned once for all after PostgreSQL's five trial plans, got {p}");
    }
}

/// Locks that exclude only what they must. A clinician opening the tab of a child whose LA is
/// uploading meanwhile does not wait for the file (its reference check held the child's row FOR KEY
/// SHARE until it committed, before migration 000023; it still does outside READ COMMITTED), nor
/// for a PDS update of the child's row; an upload does not
/// wait for a message being put into its LA's inbox (which holds the LA's row FOR KEY SHARE
/// through its foreign key). Openings of one child still exclude each other (CP-IS047).
#[test]
fn an_upload_in_flight_does_not_hold_up_the_tab_nor_the_inbox_the_upload() {
    use crate::support::db::execute;
    use crate::support::uploads::{file, new_id, record_for, KENT};
    use cpis::cpis::alert::{record_openings, AccessOpening};
    use cpis::seed::demo::fixtures::{ALFIE_MOORE, NOAH_WILLIAMS};
    let db = TestDatabase::new(Template::Demo);
    let (mut upload, mut clinician) = (db.conn(), db.conn());
    let viewer = crate::support::api_viewer("lock-test");
    let opening = AccessOpening {
        nhs_number: NOAH_WILLIAMS,
        viewer: &viewer,
        actor: cpis::audit::Actor::Anonymous,
        at: chrono::Utc::now(),
    };
    let open = |conn: &mut PgConnection| conn.transaction(|c| record_openings(c, std::slice::from_ref(&opening)));
    execute(&mut clinician, "SET lock_timeout = '2s'");
    // The upload's hold on the child: what its items' reference check takes until it commits; and
    // a PDS update of the child's record (its other columns).
    for hold in ["FOR KEY SHARE", "FOR NO KEY UPDATE"] {
        execute(&mut upload, "BEGIN");
        execute(&mut upload, &format!("SELECT 1 FROM patients WHERE nhs_number = '{NOAH_WILLIAMS}' {hold}"));
        assert!(open(&mut clinician).is_ok(), "the tab opens while the child's row is held {hold}");
        execute(&mut upload, "ROLLBACK");
    }
    // Another opening of the same child does wait, and gives up after CHILD_LOCK_TIMEOUT with a
    // 503 (held that long, the holder is stalled). Then the connection's own lock_timeout is back.
    execute(&mut upload, "BEGIN");
    record_openings(&mut upload, std::slice::from_ref(&opening)).unwrap();
    let second = open(&mut clinician);
    assert!(
        matches!(second, Err(cpis::error::AppError::Unavailable)),
        "openings of one child are decided one after another: {second:?}"
    );
    execute(&mut upload, "ROLLBACK");
    assert_eq!(texts(&mut clinician, "SELECT current_setting('lock_timeout') AS s"), ["2s"]);

    // A message 05 being put into Kent's inbox (uncommitted) while Kent's file arrives.
    let mut job = db.conn();
    execute(&mut job, "BEGIN");
    execute(
        &mut job,
        &format!(
            "INSERT INTO mailbox_messages (id, la_code, message_type, created_at, body) \
             VALUES (gen_random_uuid(), '{KENT}', '05', now(), '<AccessNotification/>')"
        ),
    );
    let records = vec![record_for(&mut upload, ALFIE_MOORE, "K-LOCK", "<ChildProtectionPlan start=\"2026-01-10\"/>")];
    let body = file(&new_id(), 900, KENT, &records);
    execute(&mut upload, "SET lock_timeout = '2s'");
    let processed = cpis::cpis::upload::process(
        &mut upload,
        KENT,
        body.as_bytes(),
        cpis::cpis::upload::Channel::Portal,
        cpis::audit::Actor::LocalAuthority(KENT.to_owned()),
        chrono::Utc::now(),
    );
    assert!(processed.is_ok(), "the upload does not wait for the inbox: {:?}", processed.err());
    execute(&mut job, "ROLLBACK");
}

/// Issue 8 (migration 000030): a vacuum leaves the audit outbox's empty pages in place rather
/// than truncating them, which would take the table's ACCESS EXCLUSIVE lock that every audited
/// action's outbox insert waits for. Dead rows at the table's end (a rolled-back insert) are
/// vacuumed away; the table keeps its length.
#[test]
fn vacuum_never_shortens_the_audit_outbox() {
    use crate::support::db::{count, execute};
    let db = TestDatabase::new(Template::Reference);
    let mut conn = db.conn();
    let size = |conn: &mut PgConnection| count(conn, "SELECT pg_relation_size('audit_outbox')");
    execute(&mut conn, "BEGIN");
    execute(
        &mut conn,
        "INSERT INTO audit_outbox (occurred_at, actors, actions, numbers, details, canonicals) \
         SELECT now(), ARRAY['system'], ARRAY['test.rolled_back'], ARRAY[''], ARRAY['{}'::jsonb], \
                ARRAY[repeat('x', 500)] FROM generate_series(1, 200)",
    );
    execute(&mut conn, "ROLLBACK");
    let before = size(&mut conn);
    assert!(before > 0, "the rolled-back rows took pages");
    execute(&mut conn, "VACUUM audit_outbox");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_outbox"), 0);
    assert_eq!(size(&mut conn), before, "vacuum left the outbox's length as it was");
    let toast = texts(
        &mut conn,
        "SELECT array_to_string(t.reloptions, ',') AS s FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid \
         WHERE c.relname = 'audit_outbox'",
    );
    assert_eq!(toast, ["vacuum_truncate=false"], "nor its TOAST table's");
    // Without the setting, the same vacuum truncates the empty pages: the test sees what it means to.
    execute(&mut conn, "ALTER TABLE audit_outbox RESET (vacuum_truncate)");
    execute(&mut conn, "VACUUM audit_outbox");
    assert!(size(&mut conn) < before, "a vacuum allowed to truncate does");
}
