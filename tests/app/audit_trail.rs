//! The append-only, hash-chained audit trail (CP-IS073, CP-IS074).

use cpis::audit::verify::{verify, Verdict};
use diesel::prelude::*;

use crate::support::{Template, TestApp, TestDatabase};

#[tokio::test]
async fn the_journey_leaves_a_verifiable_chain() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let _ = c.text("/patients/9990000042/child-care-alert").await;
    let _ = c.post_form("/sign-out", &[]).await;
    let mut conn = app.conn();
    for action in ["seed.demo_loaded", "auth.sign_in_succeeded", "access.alert_tab_opened", "auth.signed_out"] {
        assert_eq!(
            crate::support::db::count(&mut conn, &format!("SELECT count(*) FROM audit_log WHERE action = '{action}'")),
            1,
            "{action}"
        );
    }
    match verify(&mut conn).unwrap() {
        Verdict::Intact { entries, purged: 0 } => assert!(entries >= 4),
        broken => panic!("{broken:?}"),
    }
}

#[test]
fn update_delete_and_truncate_are_refused_by_the_database() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    for sql in ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
        let err = diesel::sql_query(sql).execute(&mut conn).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
}

#[test]
fn verify_names_the_first_altered_entry() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let before = crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log") as u64;
    cpis::audit::record(&mut conn, cpis::audit::Event::new(cpis::audit::Actor::Operator, "test.second")).unwrap();
    cpis::audit::record(&mut conn, cpis::audit::Event::new(cpis::audit::Actor::Operator, "test.third")).unwrap();
    assert_eq!(verify(&mut conn).unwrap(), Verdict::Intact { entries: before + 2, purged: 0 });
    // As the database superuser, bypassing the triggers.
    let second: i64 =
        diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT id FROM audit_log WHERE action = 'test.second'")
            .get_result(&mut conn)
            .unwrap();
    diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).unwrap();
    diesel::sql_query(format!("UPDATE audit_log SET actor = 'user:999' WHERE id = {second}"))
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query("SET session_replication_role = origin").execute(&mut conn).unwrap();
    assert_eq!(
        verify(&mut conn).unwrap(),
        Verdict::Broken {
            entry_id: second,
            reason: "its contents do not match its hash (the entry was altered)".into()
        }
    );
}

#[test]
fn verify_notices_a_removed_entry() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    for action in ["test.a", "test.b", "test.c"] {
        cpis::audit::record(&mut conn, cpis::audit::Event::new(cpis::audit::Actor::Operator, action)).unwrap();
    }
    diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).unwrap();
    diesel::sql_query("DELETE FROM audit_log WHERE action = 'test.b'").execute(&mut conn).unwrap();
    diesel::sql_query("SET session_replication_role = origin").execute(&mut conn).unwrap();
    let c_id: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT id FROM audit_log WHERE action = 'test.c'")
        .get_result(&mut conn)
        .unwrap();
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, .. } if entry_id == c_id));
}

/// Issue 8: in a request, an audited transaction commits without waiting for its WAL flush, so the
/// chain's append lock is not held through a disk flush, and the request then waits for the flush
/// before it answers (one more transaction with an id of its own, committed durably). Outside a
/// request (jobs, the command line) the commit is durable as before.
#[tokio::test]
async fn an_audited_request_lets_go_of_the_chain_lock_before_the_flush_and_waits_for_it_after() {
    use cpis::audit::{self, Actor, Event};
    use diesel::r2d2::Pool;

    #[derive(QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        s: String,
    }
    fn text(c: &mut PgConnection, sql: &str) -> String {
        diesel::sql_query(sql).get_result::<Text>(c).unwrap().s
    }
    fn setting(c: &mut PgConnection) -> String {
        text(c, "SELECT current_setting('synchronous_commit') AS s")
    }
    fn insert_lsn(c: &mut PgConnection) -> String {
        text(c, "SELECT pg_current_wal_insert_lsn()::text AS s")
    }
    fn flushed_past(c: &mut PgConnection, lsn: &str) -> bool {
        crate::support::db::count(c, &format!("SELECT (pg_current_wal_flush_lsn() > '{lsn}'::pg_lsn)::int")) == 1
    }

    let db = TestDatabase::new(Template::Reference);
    // The test cluster runs with synchronous_commit off; this database as a durable one would.
    crate::support::db::execute(&mut db.conn(), &format!("ALTER DATABASE \"{}\" SET synchronous_commit = on", db.name));
    let pool = Pool::builder().max_size(1).build(cpis::db::manager::Manager::new(&db.url)).unwrap();
    let mut watcher = db.conn();

    let (inside, lsn) = cpis::db::run(&pool, |conn| {
        conn.transaction(|c| {
            audit::record(c, Event::new(Actor::Operator, "test.deferred_flush"))?;
            Ok((setting(c), insert_lsn(c)))
        })
    })
    .await
    .unwrap();
    assert_eq!(inside, "off", "the audited transaction commits without waiting for the flush");
    // Its commit record follows `lsn`; the request answered only once the WAL was flushed past it.
    // (The WAL writer flushes asynchronous commits soon too, so this alone could pass without the
    // wait; with the setting above it says what the request promises.)
    assert!(flushed_past(&mut watcher, &lsn), "the audited commit is on disk when the request answers");

    // A request without an audit entry keeps the durable default.
    let plain = cpis::db::run(&pool, |conn| conn.transaction(|c| Ok(setting(c)))).await.unwrap();
    assert_eq!(plain, "on");

    // Outside a request, the audited commit itself is durable.
    let mut conn = db.conn();
    let outside = conn
        .transaction::<_, cpis::error::AppError, _>(|c| {
            audit::record(c, Event::new(Actor::Operator, "test.durable"))?;
            Ok(setting(c))
        })
        .unwrap();
    assert_eq!(outside, "on");
    assert_eq!(verify(&mut conn).unwrap(), Verdict::Intact { entries: 2, purged: 0 });
}

/// Migration 000027: moving an outbox row into the chain reads that row by its key. The outbox
/// holds, dead, every row moved since its last vacuum; read whole on every commit, it was a tenth
/// of PostgreSQL's work during the tab's benchmark. The rows of one transaction still join the
/// chain in the order they were written, none is left behind, the function's planner setting
/// stays inside it, and a row taken back before the commit is an error, not an entry.
#[test]
fn the_outbox_is_moved_into_the_chain_row_by_row_through_its_key() {
    use cpis::audit::{self, Actor, Event};

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Scans {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        idx: i64,
    }
    // This connection's reads of the outbox so far (its transaction's, and its earlier ones not
    // yet reported: so only differences within one transaction are compared).
    fn scans(c: &mut PgConnection) -> QueryResult<Scans> {
        diesel::sql_query(
            "SELECT coalesce(seq_scan, 0) AS seq, coalesce(idx_scan, 0) AS idx \
             FROM pg_stat_xact_user_tables WHERE relname = 'audit_outbox'",
        )
        .get_result(c)
    }

    let db = TestDatabase::new(Template::Reference);
    let mut conn = db.conn();
    // Dead rows, as between two vacuums.
    for i in 0..50 {
        audit::record(&mut conn, Event::new(Actor::Operator, "test.earlier").details(serde_json::json!({ "i": i })))
            .unwrap();
    }
    let (before, after, seqscan) = conn
        .transaction::<_, cpis::error::AppError, _>(|c| {
            for action in ["test.first", "test.second", "test.third"] {
                audit::record(c, Event::new(Actor::Operator, action))?;
            }
            let before = scans(c)?;
            // The deferred trigger runs now instead of in COMMIT, so its reads are this
            // transaction's to count.
            diesel::sql_query("SET CONSTRAINTS audit_outbox_append IMMEDIATE").execute(c)?;
            let after = scans(c)?;
            let seqscan = crate::support::db::texts(c, "SELECT current_setting('enable_seqscan') AS s");
            Ok((before, after, seqscan))
        })
        .unwrap();
    assert_eq!(after.seq - before.seq, 0, "the outbox is never read whole");
    assert_eq!(after.idx - before.idx, 3, "each of the three rows is found through the primary key");
    assert_eq!(seqscan, ["on"], "the function's setting does not outlive it");
    assert_eq!(crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_outbox"), 0);
    let order = crate::support::db::count(
        &mut conn,
        "SELECT (array_agg(action ORDER BY id) = ARRAY['test.first', 'test.second', 'test.third'])::int \
         FROM audit_log WHERE action IN ('test.first', 'test.second', 'test.third')",
    );
    assert_eq!(order, 1, "written in order");

    // A row taken back before the commit: the commit fails and nothing of it is chained.
    let entries = crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log");
    let refused = conn.transaction::<_, cpis::error::AppError, _>(|c| {
        audit::record(c, Event::new(Actor::Operator, "test.taken_back"))?;
        diesel::sql_query("DELETE FROM audit_outbox").execute(c)?;
        Ok(())
    });
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("is gone before its transaction committed"), "{err}");
    assert_eq!(crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log"), entries);
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Intact { .. }));
}
