//! Audit retention (CP-IS076): access events and audit entries about a child are purged after the
//! child's 26th birthday, or 8 years after a death as a child, and the rest of the audit chain stays
//! verifiable (CP-IS074).

use chrono::{DateTime, NaiveDate, Utc};
use cpis::audit::verify::{verify, Verdict};
use cpis::audit::{self, Actor, Event};
use cpis::domain::dates::anniversary;
use diesel::prelude::*;

use crate::support::db::{count, execute};
use crate::support::{Template, TestDatabase};

/// A fixed moment, so the edge days do not depend on when the tests run.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc)
}

fn today() -> NaiveDate {
    cpis::domain::dates::uk_date(now())
}

struct Fixture {
    db: TestDatabase,
    /// 27 years old: purged.
    adult: String,
    /// An earlier number of `adult`, superseded by it; its own record (wrongly) says 10 years old.
    adult_old_number: String,
    /// Died 9 years ago, aged 10 (so under 26 today): purged.
    died: String,
    /// 27, with access events but no audit entries: its events go.
    events_only: String,
    /// 25: kept.
    young: String,
    /// 26 today: kept today (purged from tomorrow).
    birthday_today: String,
    /// Died 8 years ago today, aged 4: kept today.
    died_eight_years_ago_today: String,
}

impl Fixture {
    fn kept(&self) -> [&str; 3] {
        [&self.young, &self.birthday_today, &self.died_eight_years_ago_today]
    }

    fn purged(&self) -> [&str; 4] {
        [&self.adult, &self.adult_old_number, &self.died, &self.events_only]
    }

    fn conn(&self) -> PgConnection {
        self.db.conn()
    }
}

fn patient(
    conn: &mut PgConnection,
    nhs: &str,
    birth: NaiveDate,
    death: Option<NaiveDate>,
    superseded_by: Option<&str>,
) {
    let death = death.map_or("NULL".to_owned(), |d| format!("'{d}'"));
    let superseded_by = superseded_by.map_or("NULL".to_owned(), |n| format!("'{n}'"));
    execute(
        conn,
        &format!(
            "INSERT INTO patients (nhs_number, family_name, gender, birth_date, death_date, superseded_by, \
             family_key, given_key, family_soundex, given_soundex) \
             VALUES ('{nhs}', 'Retained', 'female', '{birth}', {death}, {superseded_by}, 'retained', '', 'R353', '')"
        ),
    );
}

fn access_event(conn: &mut PgConnection, nhs: &str) {
    execute(
        conn,
        &format!(
            "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
             organisation_code, channel, shown) \
             VALUES ('{nhs}', now(), 'viewer-1', 'A Viewer', 'R8000', 'RJZ', 'SCRa', true)"
        ),
    );
}

fn about(nhs: &str) -> Event {
    Event::new(Actor::Operator, "test.viewed").about(nhs).details(serde_json::json!({"note": "about a child"}))
}

/// Patients of every kind, with access events and audit entries about them interleaved with
/// entries about no one.
fn fixture() -> Fixture {
    let db = TestDatabase::new(Template::Demo);
    let number = |n: usize| cpis::seed::demo::test_number(700_000 + n);
    let f = Fixture {
        adult: number(1),
        adult_old_number: number(2),
        died: number(3),
        events_only: number(4),
        young: number(5),
        birthday_today: number(6),
        died_eight_years_ago_today: number(7),
        db,
    };
    let t = today();
    let mut conn = f.conn();
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        patient(conn, &f.adult, anniversary(t, -27), None, None);
        patient(conn, &f.adult_old_number, anniversary(t, -10), None, Some(&f.adult));
        patient(conn, &f.died, anniversary(t, -19), Some(anniversary(t, -9)), None);
        patient(conn, &f.events_only, anniversary(t, -27), None, None);
        patient(conn, &f.young, anniversary(t, -25), None, None);
        patient(conn, &f.birthday_today, anniversary(t, -26), None, None);
        patient(conn, &f.died_eight_years_ago_today, anniversary(t, -12), Some(anniversary(t, -8)), None);
        Ok(())
    })
    .unwrap();
    for nhs in f.purged().into_iter().chain(f.kept()) {
        access_event(&mut conn, nhs);
        access_event(&mut conn, nhs);
    }
    for round in 0..2 {
        audit::record(
            &mut conn,
            Event::new(Actor::Operator, "test.other").details(serde_json::json!({"round": round})),
        )
        .unwrap();
        for nhs in [&f.young, &f.adult, &f.died, &f.birthday_today, &f.adult_old_number, &f.died_eight_years_ago_today]
        {
            audit::record(&mut conn, about(nhs)).unwrap();
        }
        audit::record_many(&mut conn, vec![about(&f.adult), about(&f.young), about(&f.adult)]).unwrap();
    }
    audit::record(&mut conn, Event::new(Actor::Operator, "test.last")).unwrap();
    f
}

fn run_job(conn: &mut PgConnection) -> serde_json::Value {
    conn.transaction(|conn| cpis::jobs::retention::run(conn, now(), now())).unwrap()
}

fn audit_entries_about(conn: &mut PgConnection, nhs: &str) -> i64 {
    count(conn, &format!("SELECT count(*) FROM audit_log WHERE nhs_number = '{nhs}'"))
}

fn access_events_of(conn: &mut PgConnection, nhs: &str) -> i64 {
    count(conn, &format!("SELECT count(*) FROM access_events WHERE nhs_number = '{nhs}'"))
}

fn id_of(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::dsl::sql::<diesel::sql_types::BigInt>(sql).get_result(conn).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Fixture, then the job.
fn purged_fixture() -> Fixture {
    let f = fixture();
    run_job(&mut f.conn());
    f
}

fn checkpoint_id(conn: &mut PgConnection) -> i64 {
    id_of(conn, "SELECT max(id) FROM audit_log WHERE action = 'audit.purged'")
}

/// As the database superuser, with the triggers off.
fn as_superuser(conn: &mut PgConnection, sql: &str) {
    execute(conn, "SET session_replication_role = replica");
    execute(conn, sql);
    execute(conn, "SET session_replication_role = origin");
}

#[test]
fn past_retention_is_purged_and_the_chain_still_verifies() {
    let f = fixture();
    let mut conn = f.conn();
    let before = count(&mut conn, "SELECT count(*) FROM audit_log");
    assert_eq!(verify(&mut conn).unwrap(), Verdict::Intact { entries: before as u64, purged: 0 });
    let kept_entries: Vec<i64> = f.kept().iter().map(|n| audit_entries_about(&mut conn, n)).collect();

    let summary = run_job(&mut conn);
    // The adult's 2 + 4, the old number's 2, the dead child's 2; 2 access events each for 4.
    assert_eq!(
        summary,
        serde_json::json!({
            "children": 4, "access_events_deleted": 8, "audit_entries_purged": 10,
            "checkpoint_entry_id": checkpoint_id(&mut conn),
        })
    );
    for nhs in f.purged() {
        assert_eq!(audit_entries_about(&mut conn, nhs), 0, "{nhs}");
        assert_eq!(access_events_of(&mut conn, nhs), 0, "{nhs}");
        // The demographic record itself is not the audit's to remove.
        assert_eq!(count(&mut conn, &format!("SELECT count(*) FROM patients WHERE nhs_number = '{nhs}'")), 1);
    }
    for (nhs, entries) in f.kept().into_iter().zip(kept_entries) {
        assert_eq!(audit_entries_about(&mut conn, nhs), entries, "{nhs}");
        assert_eq!(access_events_of(&mut conn, nhs), 2, "{nhs}");
    }
    // Every purged entry left its links, under the one checkpoint, which carries no NHS number.
    let checkpoint = checkpoint_id(&mut conn);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_purged"), 10);
    assert_eq!(count(&mut conn, &format!("SELECT count(*) FROM audit_purged WHERE checkpoint_id = {checkpoint}")), 10);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_purged WHERE entry_id > (SELECT min(id) FROM audit_log WHERE action = 'test.last')"), 0);
    let details: serde_json::Value = diesel::dsl::sql::<diesel::sql_types::Jsonb>(&format!(
        "SELECT details FROM audit_log WHERE id = {checkpoint} AND actor = 'service' AND nhs_number IS NULL"
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(details["entries"], 10);
    assert_eq!(details["access_events"], 8);
    for nhs in f.purged() {
        assert!(!details.to_string().contains(nhs));
        assert!(!summary.to_string().contains(nhs));
    }
    assert_eq!(verify(&mut conn).unwrap(), Verdict::Intact { entries: before as u64 - 10 + 1, purged: 10 });

    // A second run changes nothing.
    let after = count(&mut conn, "SELECT count(*) FROM audit_log");
    let events = count(&mut conn, "SELECT count(*) FROM access_events");
    assert_eq!(
        run_job(&mut conn),
        serde_json::json!({
            "children": 0, "access_events_deleted": 0, "audit_entries_purged": 0, "checkpoint_entry_id": null,
        })
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log"), after);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events"), events);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_purged"), 10);
    assert_eq!(verify(&mut conn).unwrap(), Verdict::Intact { entries: before as u64 - 10 + 1, purged: 10 });
}

#[test]
fn the_next_day_purges_the_birthday_and_a_second_checkpoint_verifies() {
    let f = purged_fixture();
    let mut conn = f.conn();
    let tomorrow = now() + chrono::TimeDelta::days(1);
    let summary = conn.transaction(|conn| cpis::jobs::retention::run(conn, tomorrow, tomorrow)).unwrap();
    // The 26th birthday and the 8th anniversary of the death were yesterday.
    assert_eq!(summary["children"], 2);
    assert_eq!(summary["audit_entries_purged"], 4);
    assert_eq!(audit_entries_about(&mut conn, &f.birthday_today), 0);
    assert_eq!(audit_entries_about(&mut conn, &f.died_eight_years_ago_today), 0);
    assert_eq!(audit_entries_about(&mut conn, &f.young), 4);
    assert_eq!(count(&mut conn, "SELECT count(DISTINCT checkpoint_id) FROM audit_purged"), 2);
    // The second purge's links lie between the first's: each checkpoint still matches its own.
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Intact { purged: 14, .. }));
}

#[test]
fn a_remaining_entry_altered_after_a_purge_is_named() {
    let f = purged_fixture();
    let mut conn = f.conn();
    let young = id_of(&mut conn, &format!("SELECT max(id) FROM audit_log WHERE nhs_number = '{}'", f.young));
    as_superuser(&mut conn, &format!("UPDATE audit_log SET details = '{{\"note\": \"changed\"}}' WHERE id = {young}"));
    assert_eq!(
        verify(&mut conn).unwrap(),
        Verdict::Broken {
            entry_id: young,
            reason: "its contents do not match its hash (the entry was altered)".into()
        }
    );
}

#[test]
fn a_remaining_entry_removed_after_a_purge_is_found() {
    let f = purged_fixture();
    let mut conn = f.conn();
    let young = id_of(&mut conn, &format!("SELECT min(id) FROM audit_log WHERE nhs_number = '{}'", f.young));
    as_superuser(&mut conn, &format!("DELETE FROM audit_log WHERE id = {young}"));
    // What follows it in the chain, a remaining entry or a purged link, no longer fits.
    let next = id_of(
        &mut conn,
        &format!(
            "SELECT min(id) FROM (SELECT id FROM audit_log UNION ALL SELECT entry_id FROM audit_purged) AS c(id) \
             WHERE id > {young}"
        ),
    );
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, ref reason }
        if entry_id == next && reason.contains("an entry was removed")));
}

#[test]
fn a_purged_link_removed_is_found() {
    let f = purged_fixture();
    let mut conn = f.conn();
    let link = id_of(&mut conn, "SELECT min(entry_id) FROM audit_purged");
    as_superuser(&mut conn, &format!("DELETE FROM audit_purged WHERE entry_id = {link}"));
    let next = id_of(
        &mut conn,
        &format!(
            "SELECT min(id) FROM (SELECT id FROM audit_log UNION ALL SELECT entry_id FROM audit_purged) AS c(id) \
             WHERE id > {link}"
        ),
    );
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, ref reason }
        if entry_id == next && reason.contains("an entry was removed")));
}

#[test]
fn a_purged_link_altered_is_found() {
    let f = purged_fixture();
    let mut conn = f.conn();
    let link = id_of(&mut conn, "SELECT max(entry_id) FROM audit_purged");
    as_superuser(&mut conn, &format!("UPDATE audit_purged SET hash = sha256(hash) WHERE entry_id = {link}"));
    // Its successor no longer follows from it.
    let next = id_of(
        &mut conn,
        &format!(
            "SELECT min(id) FROM (SELECT id FROM audit_log UNION ALL SELECT entry_id FROM audit_purged) AS c(id) \
             WHERE id > {link}"
        ),
    );
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, .. } if entry_id == next));
}

#[test]
fn an_entry_passed_off_as_purged_is_found() {
    // Removed as superuser, its links recorded under the real checkpoint: the chain holds, the
    // checkpoint does not.
    let f = purged_fixture();
    let mut conn = f.conn();
    let checkpoint = checkpoint_id(&mut conn);
    let young = id_of(&mut conn, &format!("SELECT min(id) FROM audit_log WHERE nhs_number = '{}'", f.young));
    execute(
        &mut conn,
        &format!(
            "INSERT INTO audit_purged (entry_id, prev_hash, hash, checkpoint_id, purged_at, reason) \
             SELECT id, prev_hash, hash, {checkpoint}, now(), 'retention' FROM audit_log WHERE id = {young}"
        ),
    );
    // Present and recorded as purged at once.
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, .. } if entry_id == young));
    as_superuser(&mut conn, &format!("DELETE FROM audit_log WHERE id = {young}"));
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, ref reason }
        if entry_id == checkpoint && reason.contains("do not match")));

    // Recorded under an entry that is no checkpoint.
    let f = purged_fixture();
    let mut conn = f.conn();
    let young = id_of(&mut conn, &format!("SELECT min(id) FROM audit_log WHERE nhs_number = '{}'", f.young));
    let last = id_of(&mut conn, "SELECT max(id) FROM audit_log WHERE action = 'test.last'");
    execute(
        &mut conn,
        &format!(
            "INSERT INTO audit_purged (entry_id, prev_hash, hash, checkpoint_id, purged_at, reason) \
             SELECT id, prev_hash, hash, {last}, now(), 'retention' FROM audit_log WHERE id = {young}"
        ),
    );
    as_superuser(&mut conn, &format!("DELETE FROM audit_log WHERE id = {young}"));
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, ref reason }
        if entry_id == young && reason.contains("no checkpoint")));
}

#[test]
fn the_database_refuses_every_change_outside_the_purge() {
    let f = purged_fixture();
    let mut conn = f.conn();
    let young = id_of(&mut conn, &format!("SELECT min(id) FROM audit_log WHERE nhs_number = '{}'", f.young));
    let delete = format!("DELETE FROM audit_log WHERE id = {young}");
    // An ordinary DELETE, with or without the purge setting.
    refused(&mut conn, &[&delete]);
    refused(&mut conn, &[&format!("DELETE FROM audit_log WHERE nhs_number = '{}'", f.young)]);
    refused(&mut conn, &["SET LOCAL cpis.audit_purge = 'on'", &delete]);
    // UPDATE and TRUNCATE, even inside a purge.
    refused(&mut conn, &["SET LOCAL cpis.audit_purge = 'on'", "UPDATE audit_log SET actor = 'someone else'"]);
    refused(&mut conn, &["SET LOCAL cpis.audit_purge = 'on'", "TRUNCATE audit_log"]);
    // audit_purged is append-only too.
    for sql in ["UPDATE audit_purged SET reason = 'retention'", "DELETE FROM audit_purged", "TRUNCATE audit_purged"] {
        refused(&mut conn, &[sql]);
    }
    // An entry about no one cannot be purged at all.
    let other = id_of(&mut conn, "SELECT min(id) FROM audit_log WHERE action = 'test.other'");
    let checkpoint = checkpoint_id(&mut conn);
    let record_links = format!(
        "INSERT INTO audit_purged (entry_id, prev_hash, hash, checkpoint_id, purged_at, reason) \
         SELECT id, prev_hash, hash, {checkpoint}, now(), 'retention' FROM audit_log WHERE id = {other}"
    );
    refused(
        &mut conn,
        &[&record_links, "SET LOCAL cpis.audit_purge = 'on'", &format!("DELETE FROM audit_log WHERE id = {other}")],
    );
    // Links recorded but the setting off: refused.
    let record_links = record_links.replace(&format!("id = {other}"), &format!("id = {young}"));
    refused(&mut conn, &[&record_links, &delete]);
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Intact { .. }));

    // Someone with the service's own access who follows the purge path by hand, outside the job,
    // gets the entry removed, but not past the verifier: no checkpoint records it.
    conn.transaction::<(), diesel::result::Error, _>(|conn| {
        for sql in [record_links.as_str(), "SET LOCAL cpis.audit_purge = 'on'", delete.as_str()] {
            diesel::sql_query(sql).execute(conn)?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(count(&mut conn, &format!("SELECT count(*) FROM audit_log WHERE id = {young}")), 0);
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, .. } if entry_id == checkpoint));
}

/// Runs the statements in one transaction and expects the database to refuse them.
fn refused(conn: &mut PgConnection, sqls: &[&str]) {
    let err = conn
        .transaction::<(), diesel::result::Error, _>(|conn| {
            for sql in sqls {
                diesel::sql_query(*sql).execute(conn)?;
            }
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{sqls:?}: {err}");
}

#[test]
fn a_mothers_history_is_kept_while_her_unborn_plan_is_held() {
    // Sarah Collins is 29 and holds an unborn child protection plan on her own number: her access
    // history is shown while the plan is (CP-IS039), so retention must not purge it.
    use cpis::seed::demo::fixtures::SARAH_COLLINS;
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    access_event(&mut conn, SARAH_COLLINS);
    // The seed's record of her plan (CP-IS075) is about her too.
    let seeded = audit_entries_about(&mut conn, SARAH_COLLINS);
    cpis::audit::record(&mut conn, about(SARAH_COLLINS)).unwrap();
    run_job(&mut conn);
    assert_eq!(access_events_of(&mut conn, SARAH_COLLINS), 1);
    assert_eq!(audit_entries_about(&mut conn, SARAH_COLLINS), seeded + 1);
    // Once nothing of the record remains, the usual rule applies.
    execute(
        &mut conn,
        &format!(
            "UPDATE cp_items SET deleted_at = now(), deleted_reason = 'expired' \
             WHERE nhs_number = '{SARAH_COLLINS}' AND deleted_at IS NULL"
        ),
    );
    run_job(&mut conn);
    assert_eq!(access_events_of(&mut conn, SARAH_COLLINS), 0);
    assert_eq!(audit_entries_about(&mut conn, SARAH_COLLINS), 0);
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}
