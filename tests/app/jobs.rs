//! Scheduled work (issue 5): the queue shared by every instance, the schedule caught up after an
//! outage, runners racing or dying mid-job, retries with backoff, expiry over the demo data, the
//! operator command and the jobs page.
//!
//! The daily notification and audit retention jobs belong to their own tests: here they may fail
//! (or not) without changing what is checked, which is the queue and the expiry and session jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use reqwest::StatusCode;

use cpis::config::Config;
use cpis::domain::dates::{anniversary, uk_date};
use cpis::jobs::queue::{self, Status};
use cpis::jobs::{runner, Context, Kind};
use cpis::pds::Lookup;
use cpis::seed::demo::fixtures::*;

use crate::support::db::{count, execute};
use crate::support::{Template, TestApp, TestDatabase};

/// The clock, to the microsecond PostgreSQL keeps.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    t: String,
}

/// One text value from a query (`SELECT ... AS t`).
fn text(conn: &mut PgConnection, sql: &str) -> String {
    diesel::sql_query(sql).get_result::<Row>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).t
}

/// Everything about the queue and what the jobs change, as text to compare.
fn snapshot(conn: &mut PgConnection) -> Vec<String> {
    [
        "SELECT coalesce(string_agg(concat_ws('|', id, kind, key, status, attempts, run_after, last_error, \
         summary::text, started_at, finished_at), E'\\n' ORDER BY id), '') AS t FROM jobs",
        "SELECT count(*)::text AS t FROM audit_log",
        "SELECT coalesce(string_agg(concat_ws('|', id, end_date, deleted_at, deleted_reason), E'\\n' ORDER BY id), '') \
         AS t FROM cp_items",
        "SELECT count(*)::text AS t FROM sessions",
    ]
    .iter()
    .map(|q| text(conn, q))
    .collect()
}

fn pool(db: &TestDatabase) -> cpis::db::DbPool {
    let mut config = Config::for_database(&db.url);
    config.db_pool_size = 2;
    cpis::db::pool(&config)
}

fn config(db: &TestDatabase) -> Config {
    Config::for_database(&db.url)
}

fn cpis(db: &TestDatabase, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("CPIS_LOG", "warn")
        .env("CPIS_MAIL_DIR", std::env::temp_dir().join("cpis-jobs-test-mail"))
        .output()
        .expect("run cpis")
}

/// A job of `kind` due at `at`, put in the queue by hand.
fn one_job(conn: &mut PgConnection, kind: Kind, at: DateTime<Utc>) -> i64 {
    let key = cpis::jobs::schedule::key(at);
    execute(
        conn,
        &format!(
            "INSERT INTO jobs (kind, key, scheduled_for, run_after) VALUES ('{}', '{key}', '{at:?}', '{at:?}')",
            kind.code()
        ),
    );
    count(conn, &format!("SELECT id FROM jobs WHERE kind = '{}' AND key = '{key}'", kind.code()))
}

#[test]
fn run_due_twice_for_the_same_moment_changes_nothing() {
    let db = TestDatabase::new(Template::Demo);
    let (pool, config) = (pool(&db), config(&db));
    let mut conn = db.conn();
    let now = now();
    let first = runner::run_due(&pool, &config, now).unwrap();
    assert!(first.scheduled > 0, "a first tick catches up the last week");
    assert_eq!(first.outcomes.len(), first.scheduled, "every occurrence that came ran once");
    for o in first.outcomes.iter().filter(|o| matches!(o.kind, Kind::Expiry | Kind::SessionCleanup)) {
        assert!(matches!(o.status, Status::Done { .. }), "{o}");
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM jobs WHERE kind = 'expiry' AND status = 'done'"),
        7,
        "one expiry a day for the week caught up"
    );
    let before = snapshot(&mut conn);
    let second = runner::run_due(&pool, &config, now).unwrap();
    assert_eq!(second.scheduled, 0);
    assert!(second.outcomes.is_empty(), "nothing is due: failures wait for their backoff");
    assert_eq!(snapshot(&mut conn), before, "job rows, items, sessions and the audit are unchanged");
}

#[test]
fn a_week_down_is_caught_up_with_one_occurrence_per_missed_day() {
    let db = TestDatabase::new(Template::Reference);
    let mut conn = db.conn();
    // The week after spans the autumn change (Sunday 25 October 2026, 25 hours).
    let t0 = utc("2026-10-20T12:00:00Z");
    queue::tick(&mut conn, t0).unwrap();
    let per_kind =
        |conn: &mut PgConnection, kind: &str| count(conn, &format!("SELECT count(*) FROM jobs WHERE kind = '{kind}'"));
    let daily = ["expiry", "daily_notification", "audit_retention"];
    let before: Vec<i64> = daily.iter().map(|k| per_kind(&mut conn, k)).collect();
    assert_eq!(before, [7, 7, 7], "a first tick schedules the last 7 days");
    let hourly_before = per_kind(&mut conn, "session_cleanup");
    assert_eq!(hourly_before, 7 * 24);
    assert_eq!(per_kind(&mut conn, "audit_checkpoint"), 7 * 24);

    // Down for a week: the next tick finds every missed occurrence.
    let t1 = t0 + Duration::days(7);
    let inserted = queue::tick(&mut conn, t1).unwrap();
    let after: Vec<i64> = daily.iter().map(|k| per_kind(&mut conn, k)).collect();
    assert_eq!(after, [14, 14, 14], "one occurrence per missed day");
    assert_eq!(per_kind(&mut conn, "session_cleanup") - hourly_before, 7 * 24, "every hour of the week");
    assert_eq!(per_kind(&mut conn, "audit_checkpoint"), 2 * 7 * 24, "every hour of the week");
    assert_eq!(inserted, 3 * 7 + 2 * 7 * 24);
    let (start, end) = cpis::domain::dates::uk_day_bounds(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap());
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) FROM jobs WHERE kind = 'session_cleanup' AND scheduled_for >= '{start:?}' \
                 AND scheduled_for < '{end:?}'"
            )
        ),
        25,
        "the 25-hour day has 25"
    );
    let days = text(
        &mut conn,
        "SELECT string_agg(to_char(scheduled_for AT TIME ZONE 'Europe/London', 'YYYY-MM-DD HH24:MI'), ',' \
         ORDER BY scheduled_for) AS t FROM jobs WHERE kind = 'expiry' AND scheduled_for > '2026-10-20T12:00:00Z'",
    );
    assert_eq!(
        days,
        "2026-10-21 00:05,2026-10-22 00:05,2026-10-23 00:05,2026-10-24 00:05,2026-10-25 00:05,2026-10-26 00:05,\
         2026-10-27 00:05"
    );
    // Another instance ticking the same moment adds nothing.
    assert_eq!(queue::tick(&mut conn, t1).unwrap(), 0);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM jobs WHERE run_after <> scheduled_for"), 0);

    // An operator's run for a moment months ahead does not hold back the days in between.
    queue::tick(&mut conn, t1 + Duration::days(100)).unwrap();
    queue::tick(&mut conn, t1 + Duration::days(1)).unwrap();
    let next_day: Vec<i64> = daily.iter().map(|k| per_kind(&mut conn, k)).collect();
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM jobs WHERE kind = 'expiry' AND scheduled_for < '2026-10-29T00:00:00Z'"),
        15
    );
    assert_eq!(next_day[0], next_day[1]);
    assert_eq!(next_day[0], next_day[2]);
}

#[test]
fn two_runners_racing_run_each_job_once() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = now();
    let scheduled = queue::tick(&mut conn, now).unwrap();
    assert!(scheduled > 150, "a week of occurrences");
    let barrier = Arc::new(Barrier::new(2));
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conn = PgConnection::establish(&url).unwrap();
                barrier.wait();
                let mut ran = Vec::new();
                while let Some(o) = queue::run_one(&mut conn, &Context::default(), now).unwrap() {
                    ran.push(o.job_id);
                }
                ran
            })
        })
        .collect();
    let ran: Vec<Vec<i64>> = runners.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(!ran[0].is_empty() && !ran[1].is_empty(), "both runners took jobs");
    let (a, b): (BTreeSet<i64>, BTreeSet<i64>) = (ran[0].iter().copied().collect(), ran[1].iter().copied().collect());
    assert!(a.is_disjoint(&b), "no job ran on both");
    assert_eq!(a.len() + b.len(), scheduled);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM jobs WHERE attempts <> 1"), 0, "each job was attempted once");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM audit_log WHERE action IN ('job.completed', 'job.failed')"),
        scheduled as i64
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM jobs WHERE kind = 'expiry' AND status = 'done'"), 7);
    // Seven expiry jobs, one change each: every item is expired and audited once.
    let expired = count(&mut conn, "SELECT count(*) FROM cp_items WHERE deleted_reason IN ('expired', 'delete_date')");
    assert!(expired >= 2, "Ella Wright's and Harry Green's at least");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'cp.item_expired'"), expired);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM (SELECT details->>'item_id' FROM audit_log WHERE action IN \
             ('cp.item_expired', 'cp.item_end_dated') GROUP BY action, details->>'item_id' HAVING count(*) > 1) x"
        ),
        0
    );
}

#[test]
fn a_runner_killed_mid_job_leaves_it_to_be_retried_and_done_once() {
    let db = TestDatabase::new(Template::Demo);
    let mut other = db.conn();
    let now = now();
    let id = one_job(&mut other, Kind::Expiry, now - Duration::minutes(5));

    // A runner claims the job and does its work, then dies before committing.
    let mut dying = db.conn();
    execute(&mut dying, "BEGIN");
    let claimed = count(
        &mut dying,
        "SELECT id FROM jobs WHERE status = 'pending' ORDER BY scheduled_for LIMIT 1 FOR UPDATE SKIP LOCKED",
    );
    assert_eq!(claimed, id);
    cpis::jobs::expiry::run(&mut dying, now, now).unwrap();
    assert_eq!(
        queue::run_one(&mut other, &Context::default(), now).unwrap(),
        None,
        "a locked job is skipped, not waited for"
    );
    let pid = count(&mut dying, "SELECT pg_backend_pid()");
    execute(&mut other, &format!("SELECT pg_terminate_backend({pid})::int"));
    drop(dying);
    // The backend releases its locks as it exits, a moment after it is told to (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(&mut other, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")) > 0 {
        assert!(std::time::Instant::now() < deadline, "the terminated backend never exited");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // Nothing of the dead runner's work remains; the job is pending, unlocked, and runs once.
    assert_eq!(count(&mut other, "SELECT count(*) FROM audit_log WHERE action = 'cp.item_expired'"), 0);
    assert_eq!(count(&mut other, "SELECT count(*) FROM cp_items WHERE deleted_reason = 'expired'"), 0);
    let outcome = queue::run_one(&mut other, &Context::default(), now).unwrap().expect("the job is run again");
    assert_eq!(outcome.job_id, id);
    assert_eq!(outcome.attempts, 1, "the dead runner's attempt was never recorded");
    assert!(matches!(outcome.status, Status::Done { .. }), "{outcome}");
    assert_eq!(queue::run_one(&mut other, &Context::default(), now).unwrap(), None);
    let expired = count(&mut other, "SELECT count(*) FROM cp_items WHERE deleted_reason IN ('expired', 'delete_date')");
    assert!(expired >= 2);
    assert_eq!(count(&mut other, "SELECT count(*) FROM audit_log WHERE action = 'cp.item_expired'"), expired);
    assert_eq!(count(&mut other, "SELECT count(*) FROM audit_log WHERE action = 'job.completed'"), 1);
}

#[test]
fn a_run_due_process_killed_mid_job_leaves_it_to_the_next_run() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    // The expiry job's first statement sleeps; the server notices a lost client within 100 ms.
    let name = text(&mut conn, "SELECT current_database()::text AS t");
    execute(&mut conn, &format!("ALTER DATABASE \"{name}\" SET client_connection_check_interval = '100ms'"));
    execute(
        &mut conn,
        "CREATE FUNCTION slow_items() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$",
    );
    execute(
        &mut conn,
        "CREATE TRIGGER slow_items AFTER UPDATE ON cp_items FOR EACH STATEMENT EXECUTE FUNCTION slow_items()",
    );
    let now = cpis::jobs::schedule::key(now());
    let mut child = Command::new(env!("CARGO_BIN_EXE_cpis"))
        .args(["jobs", "run-due", "--now", &now])
        .env("DATABASE_URL", &db.url)
        .env("CPIS_LOG", "warn")
        .env("CPIS_MAIL_DIR", std::env::temp_dir().join("cpis-jobs-test-mail"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sleeping =
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&mut conn, sleeping) == 0 {
        assert!(std::time::Instant::now() < deadline, "the expiry job never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while count(&mut conn, sleeping) > 0 {
        assert!(std::time::Instant::now() < deadline, "the server kept the dead runner's transaction");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(&mut conn, "SELECT count(*) FROM jobs WHERE kind = 'expiry' AND attempts > 0"), 0);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM cp_items WHERE deleted_reason = 'expired'"), 0);

    execute(&mut conn, "DROP TRIGGER slow_items ON cp_items");
    let out = cpis(&db, &["jobs", "run-due", "--now", &now]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM jobs WHERE kind = 'expiry' AND (status <> 'done' OR attempts <> 1)"),
        0,
        "every expiry occurrence done, once"
    );
    let expired = count(&mut conn, "SELECT count(*) FROM cp_items WHERE deleted_reason IN ('expired', 'delete_date')");
    assert!(expired >= 2);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'cp.item_expired'"), expired);
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_failed_and_shown_to_owners() {
    let app = TestApp::spawn(Template::Demo);
    let mut conn = app.conn();
    execute(
        &mut conn,
        "CREATE FUNCTION refuse_session_delete() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'sessions are read-only for this test'; END $$",
    );
    execute(
        &mut conn,
        "CREATE TRIGGER refuse_session_delete BEFORE DELETE ON sessions \
         FOR EACH STATEMENT EXECUTE FUNCTION refuse_session_delete()",
    );
    let t = utc("2026-11-22T09:15:00Z");
    let id = one_job(&mut conn, Kind::SessionCleanup, t);
    let mut at = t;
    for (attempt, wait) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
        let o = queue::run_one(&mut conn, &Context::default(), at).unwrap().expect("due");
        assert_eq!((o.job_id, o.attempts), (id, attempt));
        let Status::Retrying { error, run_after } = o.status else { panic!("attempt {attempt}: {:?}", o.status) };
        assert!(error.contains("sessions are read-only for this test"), "{error}");
        assert_eq!(run_after, at + Duration::minutes(wait), "backoff after attempt {attempt}");
        assert_eq!(
            queue::run_one(&mut conn, &Context::default(), run_after - Duration::seconds(1)).unwrap(),
            None,
            "not before"
        );
        at = run_after;
    }
    let o = queue::run_one(&mut conn, &Context::default(), at).unwrap().expect("the fifth attempt");
    assert_eq!(o.attempts, 5);
    assert!(matches!(o.status, Status::Failed { .. }), "{o}");
    assert_eq!(
        queue::run_one(&mut conn, &Context::default(), at + Duration::days(1)).unwrap(),
        None,
        "a failed job is kept, not retried"
    );
    assert_eq!(count(&mut conn, &format!("SELECT count(*) FROM jobs WHERE id = {id} AND status = 'failed'")), 1);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'job.failed' AND actor = 'service'"), 5);
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'job.failed' AND (details->>'final')::bool"),
        1
    );
    execute(&mut conn, "DROP TRIGGER refuse_session_delete ON sessions");

    let owner = app.signed_in("helen.ward").await;
    let res = owner.get("/admin/jobs").await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let failures = page.split("id=\"failures-table\"").nth(1).expect("a failures table");
    assert!(failures.contains("Session clean-up"));
    assert!(failures.contains("Failed"));
    assert!(failures.contains("sessions are read-only for this test"));
    assert!(failures.contains("22/11/2026 09:15:00 GMT"), "the occurrence in UK time");
    assert!(page.contains("id=\"schedule-table\""));
    assert!(page.contains("Every day at 00:05 UK time"));
    assert!(page.contains("href=\"/admin/jobs\""), "a Jobs link in the header");

    let clinician = app.signed_in("amy.patel").await;
    assert_eq!(clinician.get("/admin/jobs").await.status(), StatusCode::FORBIDDEN);
    assert!(!clinician.text("/").await.contains("href=\"/admin/jobs\""));
}

/// What the tab would show (to a midwife, who sees every kind) for every child with items:
/// each item's id and shown end.
fn shown_everywhere(conn: &mut PgConnection, today: NaiveDate) -> BTreeMap<String, Vec<(i64, Option<NaiveDate>)>> {
    use cpis::schema::cp_items;
    let numbers: Vec<String> = cp_items::table.select(cp_items::nhs_number).distinct().load(conn).unwrap();
    let mut out = BTreeMap::new();
    for n in numbers {
        let patient = match cpis::pds::patient::lookup(conn, &n).unwrap() {
            Lookup::Found(p) | Lookup::Superseded { current: p, .. } => p,
            Lookup::NotFound => continue,
        };
        let linked = cpis::pds::patient::linked_numbers(conn, &patient.nhs_number).unwrap();
        let held = cpis::cpis::items::current_held(conn, &linked).unwrap();
        let items = cpis::cpis::alert::visible_items(held, &patient, true, today);
        let mut shown: Vec<(i64, Option<NaiveDate>)> =
            items.iter().map(|i| (i.id, i.shown_end(patient.birth_date, today))).collect();
        shown.sort();
        out.insert(patient.nhs_number.clone(), shown);
    }
    out
}

#[derive(QueryableByName, Debug)]
struct Item {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    end_date: Option<NaiveDate>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    deleted_reason: Option<String>,
}

fn item(conn: &mut PgConnection, nhs: &str, kind: &str) -> Item {
    diesel::sql_query(format!(
        "SELECT end_date, deleted_reason FROM cp_items WHERE nhs_number = '{nhs}' AND item_type = '{kind}' \
         AND deleted_reason IS DISTINCT FROM 'replaced'"
    ))
    .get_result(conn)
    .unwrap()
}

#[test]
fn expiry_over_the_demo_data_makes_the_stored_state_agree_with_the_reads() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = now();
    let today = uk_date(now);
    let shown_before = shown_everywhere(&mut conn, today);
    let jack_before = item(&mut conn, JACK_ROBINSON, "CPP");
    let chloe_birth: NaiveDate = cpis::pds::patient::find(&mut conn, CHLOE_EVANS).unwrap().unwrap().birth_date;
    let mut audit_before = count(&mut conn, "SELECT count(*) FROM audit_log");

    let job = one_job(&mut conn, Kind::Expiry, now);
    let outcome = queue::run_one(&mut conn, &Context::default(), now).unwrap().unwrap();
    assert_eq!(outcome.job_id, job);
    let Status::Done { summary } = &outcome.status else { panic!("{outcome}") };

    let ella = item(&mut conn, ELLA_WRIGHT, "CPP");
    assert_eq!(ella.deleted_reason.as_deref(), Some("expired"), "ended 400 days ago (CP-IS010)");
    let harry = item(&mut conn, HARRY_GREEN, "CPP");
    assert_eq!(harry.deleted_reason.as_deref(), Some("delete_date"), "its delete date has passed (CP-IS009)");
    let chloe = item(&mut conn, CHLOE_EVANS, "CPP");
    assert_eq!(chloe.deleted_reason, None, "still shown until 18 years and 365 days");
    assert_eq!(chloe.end_date, Some(anniversary(chloe_birth, 18)), "CP-IS030: ended on the 18th birthday");
    let jack = item(&mut conn, JACK_ROBINSON, "CPP");
    assert_eq!((jack.end_date, jack.deleted_reason), (jack_before.end_date, None), "ended 300 days ago: untouched");

    // The service's own changes, in the audit, per item, with before and after.
    let end_dated = text(
        &mut conn,
        &format!(
            "SELECT concat_ws('|', actor, details->'before'->>'end', details->'after'->>'end') AS t FROM audit_log \
             WHERE action = 'cp.item_end_dated' AND nhs_number = '{CHLOE_EVANS}'"
        ),
    );
    assert_eq!(end_dated, format!("service|{}", anniversary(chloe_birth, 18)));
    for (nhs, reason) in [(ELLA_WRIGHT, "expired"), (HARRY_GREEN, "delete_date")] {
        let row = text(
            &mut conn,
            &format!(
                "SELECT concat_ws('|', actor, details->'after'->>'deleted_reason', details->>'type') AS t \
                 FROM audit_log WHERE action = 'cp.item_expired' AND nhs_number = '{nhs}'"
            ),
        );
        assert_eq!(row, format!("service|{reason}|CPP"));
    }
    let changes =
        count(&mut conn, "SELECT count(*) FROM audit_log WHERE action IN ('cp.item_expired', 'cp.item_end_dated')");
    assert_eq!(
        summary["end_dated"].as_i64().unwrap()
            + summary["expired"].as_i64().unwrap()
            + summary["deleted_at_delete_date"].as_i64().unwrap(),
        changes
    );
    audit_before += changes + 1; // and job.completed
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log"), audit_before);

    // The job changes what is stored, never what is shown.
    assert_eq!(shown_everywhere(&mut conn, today), shown_before);

    // Run again the same day: nothing left to do.
    one_job(&mut conn, Kind::Expiry, now + Duration::seconds(1));
    let again = queue::run_one(&mut conn, &Context::default(), now + Duration::seconds(1)).unwrap().unwrap();
    let Status::Done { summary } = &again.status else { panic!("{again}") };
    assert_eq!((summary["end_dated"].as_i64(), summary["expired"].as_i64()), (Some(0), Some(0)));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log"), audit_before + 1);
}

#[test]
fn expiry_handles_100000_items_quickly() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = now();
    // 100,000 looked-after-child items, ended 400 days ago, across the population and six LAs.
    let added = execute(
        &mut conn,
        "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date) \
         SELECT p.nhs_number, la.code, 'LAC', 'BULK-' || p.nhs_number, current_date - 800, current_date - 400 \
         FROM patients p CROSS JOIN (SELECT code FROM local_authorities ORDER BY code DESC LIMIT 6) la \
         WHERE NOT EXISTS (SELECT 1 FROM cp_items i WHERE i.nhs_number = p.nhs_number AND i.la_code = la.code \
                           AND i.item_type = 'LAC' AND i.deleted_at IS NULL) \
         LIMIT 100000",
    );
    assert_eq!(added, 100_000);
    let started = std::time::Instant::now();
    let summary = conn.transaction(|c| cpis::jobs::expiry::run(c, now, now)).unwrap();
    let took = started.elapsed();
    eprintln!("expiry of {} items took {took:?}: {summary}", summary["expired"]);
    assert!(summary["expired"].as_i64().unwrap() >= 100_000);
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM cp_items WHERE la_child_id LIKE 'BULK-%' AND deleted_at IS NULL"),
        0
    );
}

#[test]
fn run_due_from_the_command_line() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let out = cpis(&db, &["jobs", "run-due", "--now", "2026-11-22T01:00:00Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("job expiry 2026-11-22T00:05:00Z"), "{stderr}");
    assert!(stderr.contains("job session_cleanup 2026-11-22T00:15:00Z"), "{stderr}");
    assert!(stderr.lines().any(|l| l.contains("job expiry") && l.contains("done")), "{stderr}");
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM jobs WHERE kind = 'expiry' AND status = 'done'"),
        7,
        "the last week, up to 00:05 on 22 November"
    );
    assert!(out.stdout.is_empty(), "notes go to stderr");
    let before = snapshot(&mut conn);
    let again = cpis(&db, &["jobs", "run-due", "--now", "2026-11-22T01:00:00Z"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 occurrence(s) newly scheduled, 0 job(s) done"));
    assert_eq!(snapshot(&mut conn), before, "a second run for the same moment changes nothing");

    for bad in ["yesterday", "2026-11-22", "2026-11-22T25:00:00Z"] {
        let out = cpis(&db, &["jobs", "run-due", "--now", bad]);
        assert_eq!(out.status.code(), Some(2), "--now {bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--now") && stderr.contains("RFC 3339"), "{stderr}");
    }
    assert_eq!(snapshot(&mut conn), before, "a bad --now runs nothing");
}
