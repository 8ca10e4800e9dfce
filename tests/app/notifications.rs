//! The daily Access to Service Notification (message 05) and its e-mail, against a real SMTP
//! server on loopback (aiosmtpd): content and attachment, an LA with no accesses, an LA holding
//! nothing, an expired record, reruns and racing runners, the server down and back, permanent
//! refusals, the days the clocks change, and the patterns worth a look (CP-IS022, CP-IS023,
//! CP-IS025, CP-IS029, CP-IS047, CP-IS070; issue 5 points 3 and 4).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamptz};
use reqwest::StatusCode;

use cpis::config::Config;
use cpis::domain::dates::{format_date, uk_date, uk_day_bounds};
use cpis::jobs::daily_notification;
use cpis::messages::access_notification::{parse_access_notification, AccessNotification};
use cpis::seed::demo::fixtures::*;
use cpis::seed::demo::{KENT, LEEDS, MANCHESTER};

use crate::support::db::{count, execute};
use crate::support::smtp::{self, Mode, SmtpSink};
use crate::support::{Template, TestApp, TestDatabase};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The scheduled occurrence that covers UK day `day`: 00:30 UK time the day after.
fn occurrence(day: NaiveDate) -> DateTime<Utc> {
    uk_day_bounds(day.succ_opt().unwrap()).0 + TimeDelta::minutes(30)
}

/// The day the demo data was seeded (its dates are relative to it): Mia's Kent plan began 400
/// days before.
fn seed_day(conn: &mut PgConnection) -> NaiveDate {
    #[derive(QueryableByName)]
    struct D {
        #[diesel(sql_type = diesel::sql_types::Date)]
        d: NaiveDate,
    }
    diesel::sql_query(format!(
        "SELECT start_date + 400 AS d FROM cp_items WHERE nhs_number = '{MIA_THOMPSON}' AND la_code = '{KENT}'"
    ))
    .get_result::<D>(conn)
    .unwrap()
    .d
}

/// Runs the job for `day` at its occurrence, in a transaction of its own.
fn run_job(conn: &mut PgConnection, day: NaiveDate) -> serde_json::Value {
    let at = occurrence(day);
    conn.transaction(|c| daily_notification::run(c, at, at)).expect("the job runs")
}

fn text_of(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct T {
        #[diesel(sql_type = Text)]
        t: String,
    }
    diesel::sql_query(sql).load::<T>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).into_iter().map(|r| r.t).collect()
}

/// The LA's messages 05 for `day` (found by their period).
fn notifications(conn: &mut PgConnection, la: &str, day: NaiveDate) -> Vec<AccessNotification> {
    let (start, _) = uk_day_bounds(day);
    text_of(conn, &format!("SELECT body AS t FROM mailbox_messages WHERE la_code = '{la}' AND message_type = '05'"))
        .iter()
        .map(|xml| parse_access_notification(xml).expect("a valid message 05"))
        .filter(|n| n.period_start == start)
        .collect()
}

fn the_notification(conn: &mut PgConnection, la: &str, day: NaiveDate) -> AccessNotification {
    let mut all = notifications(conn, la, day);
    assert_eq!(all.len(), 1, "one message 05 for {la} on {day}");
    all.remove(0)
}

fn child_id(conn: &mut PgConnection, nhs: &str, la: &str) -> String {
    text_of(
        conn,
        &format!(
            "SELECT la_child_id AS t FROM cp_items WHERE nhs_number = '{nhs}' AND la_code = '{la}' \
             AND deleted_at IS NULL LIMIT 1"
        ),
    )
    .remove(0)
}

/// Records an access directly, as the first access rule would have decided it.
#[allow(clippy::too_many_arguments)]
fn insert_access(
    conn: &mut PgConnection,
    nhs: &str,
    at: DateTime<Utc>,
    viewer: &str,
    name: &str,
    role: &str,
    org: &str,
    shown: bool,
) {
    diesel::sql_query(
        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
         organisation_code, channel, shown) VALUES ($1, $2, $3, $4, $5, $6, 'FHIR', $7)",
    )
    .bind::<Text, _>(nhs)
    .bind::<Timestamptz, _>(at)
    .bind::<Text, _>(viewer)
    .bind::<Text, _>(name)
    .bind::<Text, _>(role)
    .bind::<Text, _>(org)
    .bind::<diesel::sql_types::Bool, _>(shown)
    .execute(conn)
    .unwrap();
}

fn config(db: &TestDatabase, smtp_url: Option<String>) -> Config {
    let mut config = Config::for_database(&db.url);
    config.db_pool_size = 2;
    config.smtp_url = smtp_url;
    config.mail_dir = std::env::temp_dir()
        .join(format!("cpis-mail-{}", uuid::Uuid::new_v4().simple()))
        .to_string_lossy()
        .into_owned();
    config
}

fn address(la: &str) -> String {
    format!("cpis-alerts-{}@example.org", la.to_lowercase())
}

/// Leaves only these LAs' e-mails to send (the others are marked sent), so a test about one
/// e-mail does not wait on 150.
fn only_emails_of(conn: &mut PgConnection, las: &[&str]) {
    let list = las.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(", ");
    execute(
        conn,
        &format!("UPDATE outbound_emails SET status = 'sent', sent_at = now() WHERE la_code NOT IN ({list})"),
    );
}

#[derive(QueryableByName, Debug)]
struct EmailRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    next_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    sent_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    body_text: String,
    #[diesel(sql_type = Text)]
    body_html: String,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    message_id: String,
}

fn email_of(conn: &mut PgConnection, la: &str, day: NaiveDate) -> EmailRow {
    diesel::sql_query(
        "SELECT status, attempts, next_attempt_at, last_error, sent_at, body_text, body_html, subject, message_id \
         FROM outbound_emails WHERE message_key = $1",
    )
    .bind::<Text, _>(format!("05:{la}:{day}"))
    .get_result(conn)
    .unwrap_or_else(|e| panic!("the e-mail of {la} for {day}: {e}"))
}

#[tokio::test]
async fn an_accessed_child_is_notified_to_each_la_by_message_and_email() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let res = c.get(&format!("/patients/{MIA_THOMPSON}/child-care-alert")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut conn = app.conn();
    let day = uk_date(Utc::now());
    let summary = run_job(&mut conn, day);
    assert!(summary["messages_created"].as_u64().unwrap() >= 3, "{summary}");

    // CP-IS023: both LAs holding information for Mia hear of the access, each with its own child id.
    for la in [KENT, MANCHESTER] {
        let n = the_notification(&mut conn, la, day);
        assert_eq!(n.la_ods_code, la);
        assert_eq!((n.period_start, n.period_end), uk_day_bounds(day));
        let id = child_id(&mut conn, MIA_THOMPSON, la);
        let amy: Vec<_> = n.accesses.iter().filter(|a| a.user_name == "Dr Amy Patel").collect();
        assert_eq!(amy.len(), 1, "{la}: {n:?}");
        let a = amy[0];
        assert_eq!(a.nhs_number, MIA_THOMPSON);
        assert_eq!(a.la_child_id, id);
        assert_eq!(a.job_role, "R8000");
        assert!(!a.job_role_name.is_empty() && a.job_role_name != "R8000", "the role's name: {a:?}");
        assert_eq!(a.organisation_code, "RJZ");
        assert_eq!(a.organisation_name, "King's College Hospital NHS Foundation Trust");
        assert_eq!(a.channel, "SCRa");
        assert!(n.accesses.iter().all(|a| a.nhs_number == MIA_THOMPSON), "only Mia was accessed today");
    }
    // The transmission log and the audit trail, once per LA.
    let mut conn = app.conn();
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) FROM transmissions WHERE destination = '{KENT}' AND message_type = '05' \
                 AND direction = 'out' AND channel IN ('mailbox', 'email')"
            )
        ),
        2
    );
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT count(*) FROM audit_log WHERE action = 'notification.access_sent' \
                 AND details->>'la_code' = '{KENT}' AND details->>'day' = '{day}'"
            )
        ),
        1
    );

    // The e-mail, through a real SMTP server.
    let sink = SmtpSink::start(Mode::Accept);
    let config = config(&app.db, Some(sink.url()));
    let pool = cpis::db::pool(&config);
    only_emails_of(&mut conn, &[KENT, MANCHESTER]);
    let sent = cpis::mail::send_due(&pool, &config, occurrence(day)).unwrap();
    assert_eq!(sent, 2);
    let kent_xml = text_of(
        &mut conn,
        &format!(
            "SELECT body AS t FROM mailbox_messages WHERE la_code = '{KENT}' AND message_type = '05' \
             AND id = '{}'",
            daily_notification::message_id(KENT, day)
        ),
    )
    .remove(0);
    let mails = sink.messages_to(&address(KENT));
    assert_eq!(mails.len(), 1, "one e-mail to Kent");
    let m = &mails[0];
    assert_eq!(m["subject"], format!("CP-IS access notification for Kent, {}", format_date(day)));
    assert_eq!(m["message_id"], format!("<cpis-05-{KENT}-{day}@cpis.example.org>"));
    assert_eq!(m["from"], "cpis-notifications@example.org");
    let kent_id = child_id(&mut conn, MIA_THOMPSON, KENT);
    let text = m["text"].as_str().expect("a plain-text body");
    let html = m["html"].as_str().expect("an HTML body");
    for body in [text, html] {
        assert!(body.to_lowercase().starts_with("cp-is access notification") || body.contains("<h1>"));
        assert!(body.contains(&kent_id), "the LA's child id: {body}");
        assert!(body.contains(MIA_THOMPSON), "the NHS number");
        assert!(body.contains("Dr Amy Patel"));
        assert!(body.contains("Clinical Practitioner Access Role") || body.contains("R8000"));
        assert!(body.contains("King") && body.contains("College Hospital NHS Foundation Trust"));
        assert!(body.contains(" GMT") || body.contains(" BST"), "UK time with its zone");
        assert!(body.to_lowercase().contains("patterns worth a look"));
    }
    assert!(
        text.to_lowercase().find("patterns worth a look").unwrap() < text.find(&kent_id).unwrap(),
        "the patterns come first"
    );
    // Mia has been seen 30 times by 30 people in 15 days: a pattern worth a look.
    let patterns = &text[..text.find("ACCESSES ON").unwrap()];
    assert!(patterns.contains(&kent_id), "{text}");
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["filename"], format!("cpis-05-{KENT}-{day}.xml"));
    assert_eq!(attachments[0]["content_type"], "application/xml");
    let attached = attachments[0]["content"].as_str().unwrap();
    // MIME text parts travel with CRLF line ends.
    assert_eq!(attached.replace("\r\n", "\n").trim_end(), kent_xml.trim_end(), "the inbox's message 05 is attached");
    assert_eq!(parse_access_notification(attached).unwrap(), parse_access_notification(&kent_xml).unwrap());
    let row = email_of(&mut conn, KENT, day);
    assert_eq!(row.status, "sent");
    assert!(row.sent_at.is_some());
    assert_eq!(sink.messages_to(&address(MANCHESTER)).len(), 1);
    // Nothing more to send.
    assert_eq!(cpis::mail::send_due(&pool, &config, occurrence(day) + TimeDelta::hours(2)).unwrap(), 0);
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn no_access_says_so_and_an_la_holding_nothing_or_only_expired_information_gets_nothing() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let day = seed_day(&mut conn) - TimeDelta::days(20);
    let (start, _) = uk_day_bounds(day);
    // Three other LAs: one whose information was all removed before the day, one whose
    // information was removed during it, and one holding only an expired item.
    let others = text_of(
        &mut conn,
        &format!(
            "SELECT la_code AS t FROM cp_items WHERE la_code NOT IN ('{KENT}', '{MANCHESTER}', '{LEEDS}') \
             GROUP BY la_code ORDER BY la_code LIMIT 3"
        ),
    );
    let (gone, gone_during, expired_only) = (&others[0], &others[1], &others[2]);
    let at = |t: DateTime<Utc>| t.to_rfc3339();
    execute(
        &mut conn,
        &format!(
            "UPDATE cp_items SET deleted_at = '{}', deleted_reason = 'replaced' WHERE la_code = '{gone}'",
            at(start - TimeDelta::seconds(1))
        ),
    );
    execute(
        &mut conn,
        &format!(
            "UPDATE cp_items SET deleted_at = '{}', deleted_reason = 'replaced' WHERE la_code = '{gone_during}'",
            at(start + TimeDelta::hours(3))
        ),
    );
    execute(
        &mut conn,
        &format!(
            "UPDATE cp_items SET deleted_at = '{}', deleted_reason = 'replaced' WHERE la_code = '{expired_only}'",
            at(start - TimeDelta::days(30))
        ),
    );
    // Ella's plan ended 400 days before the seed day: 380 before this day, so expired on it.
    execute(
        &mut conn,
        &format!(
            "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date) \
             VALUES ('{ELLA_WRIGHT}', '{expired_only}', 'CPP', 'X-ELLA', '{}', '{}')",
            day - TimeDelta::days(800),
            day - TimeDelta::days(366)
        ),
    );
    // An access to Ella on the day (it could not happen through the service: she has no record).
    insert_access(
        &mut conn,
        ELLA_WRIGHT,
        start + TimeDelta::hours(9),
        "v-ella",
        "Dr Ella Viewer",
        "R8000",
        "RJZ",
        true,
    );
    // An access to Noah that is not shown (a repeat): never listed.
    insert_access(&mut conn, NOAH_WILLIAMS, start + TimeDelta::hours(9), "v-noah", "Dr Repeat", "R8000", "RJZ", false);

    let summary = run_job(&mut conn, day);
    assert_eq!(summary["accesses_listed"], 0, "{summary}");

    // Leeds holds Noah and others, and nobody looked: <NoAccess/>, said plainly in the e-mail.
    let leeds = the_notification(&mut conn, LEEDS, day);
    assert!(leeds.accesses.is_empty());
    let xml = text_of(
        &mut conn,
        &format!("SELECT body AS t FROM mailbox_messages WHERE id = '{}'", daily_notification::message_id(LEEDS, day)),
    )
    .remove(0);
    assert_eq!(xml.matches("<NoAccess/>").count(), 1);
    let row = email_of(&mut conn, LEEDS, day);
    assert!(row.body_text.contains(&format!("No child of yours was accessed on {}", format_date(day))));
    assert!(row.body_html.contains(&format!("No child of yours was accessed on {}", format_date(day))));
    assert!(row.body_text.contains("Patterns worth a look".to_uppercase().as_str()));

    // Kent holds Ella's expired plan too: the access to her is not Kent's to hear of.
    let kent = the_notification(&mut conn, KENT, day);
    assert!(kent.accesses.is_empty(), "{kent:?}");

    // CP-IS029: nothing held that day, nothing sent; held part of the day, a notification.
    assert!(notifications(&mut conn, gone, day).is_empty());
    assert!(notifications(&mut conn, expired_only, day).is_empty());
    assert_eq!(the_notification(&mut conn, gone_during, day).accesses.len(), 0);
    for la in [gone, expired_only] {
        assert_eq!(
            count(&mut conn, &format!("SELECT count(*) FROM outbound_emails WHERE la_code = '{la}'")),
            0,
            "{la} gets no e-mail"
        );
        assert_eq!(
            count(&mut conn, &format!("SELECT count(*) FROM transmissions WHERE destination = '{la}'")),
            0,
            "{la} is sent nothing"
        );
    }
    assert!(summary["authorities"].as_u64().unwrap() > 100, "{summary}");
}

#[test]
fn a_rerun_racing_runners_and_a_crash_yield_one_message_and_one_email_per_la() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let day = seed_day(&mut conn) - TimeDelta::days(20);
    let at = occurrence(day);
    // A runner that crashes mid-job: its transaction rolls back, leaving nothing behind.
    let crashed: Result<(), cpis::error::AppError> = conn.transaction(|c| {
        daily_notification::run(c, at, at)?;
        Err(cpis::error::AppError::Internal("the runner was killed".into()))
    });
    assert!(crashed.is_err());
    assert_eq!(count(&mut conn, "SELECT count(*) FROM mailbox_messages WHERE message_type = '05'"), 0);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM outbound_emails"), 0);

    // Two runners at once, each in its own transaction.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conn = PgConnection::establish(&url).unwrap();
                barrier.wait();
                conn.transaction(|c| daily_notification::run(c, at, at)).expect("each runner succeeds")
            })
        })
        .collect();
    let summaries: Vec<serde_json::Value> = runners.into_iter().map(|r| r.join().unwrap()).collect();
    let created: u64 = summaries.iter().map(|s| s["messages_created"].as_u64().unwrap()).sum();
    let authorities = summaries[0]["authorities"].as_u64().unwrap();
    assert!(authorities > 100, "the demo data spreads over most LAs: {}", summaries[0]);
    assert_eq!(created, authorities, "between them, one message per LA: {summaries:?}");
    // And a rerun afterwards changes nothing.
    let again = run_job(&mut conn, day);
    assert_eq!(again["messages_created"], 0);
    assert_eq!(again["emails_queued"], 0);
    assert_eq!(again["messages_already_sent"].as_u64().unwrap(), authorities);

    let n = authorities as i64;
    assert_eq!(count(&mut conn, "SELECT count(*) FROM mailbox_messages WHERE message_type = '05'"), n);
    assert_eq!(count(&mut conn, "SELECT count(DISTINCT la_code) FROM mailbox_messages WHERE message_type = '05'"), n);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM outbound_emails"), n);
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM transmissions WHERE message_type = '05' AND channel = 'mailbox'"),
        n
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) FROM transmissions WHERE message_type = '05' AND channel = 'email'"),
        n
    );
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'notification.access_sent'"), n);

    // An LA without a notification address gets its message, and no e-mail (noted in the summary).
    execute(&mut conn, &format!("UPDATE local_authorities SET notification_email = NULL WHERE code = '{LEEDS}'"));
    let next = day.succ_opt().unwrap();
    let s = run_job(&mut conn, next);
    assert_eq!(s["without_email_address"], serde_json::json!([LEEDS]), "{s}");
    assert_eq!(notifications(&mut conn, LEEDS, next).len(), 1);
    assert_eq!(
        count(&mut conn, &format!("SELECT count(*) FROM outbound_emails WHERE message_key = '05:{LEEDS}:{next}'")),
        0
    );
}

#[test]
fn the_smtp_server_down_then_back_sends_the_email_once() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let day = seed_day(&mut conn) - TimeDelta::days(20);
    run_job(&mut conn, day);
    only_emails_of(&mut conn, &[KENT]);
    let port = smtp::free_port();
    let config = config(&db, Some(smtp::url(port)));
    let pool = cpis::db::pool(&config);
    let now = occurrence(day);

    // Nobody listens: a transient failure, retried after a minute.
    assert_eq!(cpis::mail::send_due(&pool, &config, now).unwrap(), 0);
    let row = email_of(&mut conn, KENT, day);
    assert_eq!(row.status, "pending");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.next_attempt_at, now + TimeDelta::minutes(1));
    assert!(row.last_error.as_deref().is_some_and(|e| !e.is_empty()), "{row:?}");
    // Not due again yet.
    assert_eq!(cpis::mail::send_due(&pool, &config, now + TimeDelta::seconds(30)).unwrap(), 0);
    assert_eq!(email_of(&mut conn, KENT, day).attempts, 1);
    // Still down a minute later: the wait doubles.
    let later = now + TimeDelta::minutes(1);
    assert_eq!(cpis::mail::send_due(&pool, &config, later).unwrap(), 0);
    let row = email_of(&mut conn, KENT, day);
    assert_eq!((row.attempts, row.next_attempt_at), (2, later + TimeDelta::minutes(2)));

    // The server is back.
    let sink = SmtpSink::start_on(port, Mode::Accept);
    let back = later + TimeDelta::minutes(2);
    assert_eq!(cpis::mail::send_due(&pool, &config, back).unwrap(), 1);
    let row = email_of(&mut conn, KENT, day);
    assert_eq!(row.status, "sent");
    assert_eq!(row.sent_at, Some(back));
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["message_id"], row.message_id);
    assert_eq!(mails[0]["subject"], row.subject);
    // Sent once: later rounds find nothing to send.
    assert_eq!(cpis::mail::send_due(&pool, &config, back + TimeDelta::hours(3)).unwrap(), 0);
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn a_permanent_refusal_fails_at_once_and_a_deferring_server_is_given_up_after_ten_tries() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let day = seed_day(&mut conn) - TimeDelta::days(20);
    run_job(&mut conn, day);
    only_emails_of(&mut conn, &[KENT, LEEDS]);
    let now = occurrence(day);

    // 550: failed at once, with the server's words for CP-IS owners to read.
    execute(&mut conn, &format!("UPDATE outbound_emails SET status = 'sent' WHERE la_code = '{LEEDS}'"));
    let refusing = SmtpSink::start(Mode::Reject);
    let config_550 = config(&db, Some(refusing.url()));
    let pool = cpis::db::pool(&config_550);
    assert_eq!(cpis::mail::send_due(&pool, &config_550, now).unwrap(), 0);
    let row = email_of(&mut conn, KENT, day);
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("550")), "{row:?}");
    assert!(refusing.messages().is_empty());
    assert_eq!(cpis::mail::send_due(&pool, &config_550, now + TimeDelta::days(1)).unwrap(), 0);
    assert_eq!(email_of(&mut conn, KENT, day).attempts, 1, "a failed e-mail is not tried again");

    // 451 every time: retried with backoff, failed after the tenth attempt.
    execute(&mut conn, &format!("UPDATE outbound_emails SET status = 'pending' WHERE la_code = '{LEEDS}'"));
    let deferring = SmtpSink::start(Mode::Defer);
    let config_451 = config(&db, Some(deferring.url()));
    let mut t = now;
    for attempt in 1..=10 {
        assert_eq!(cpis::mail::send_due(&pool, &config_451, t).unwrap(), 0);
        let row = email_of(&mut conn, LEEDS, day);
        assert_eq!(row.attempts, attempt);
        assert!(row.last_error.as_deref().is_some_and(|e| e.contains("451")), "{row:?}");
        if attempt < 10 {
            assert_eq!(row.status, "pending");
            let wait = TimeDelta::minutes((1i64 << (attempt - 1)).min(60));
            assert_eq!(row.next_attempt_at, t + wait, "attempt {attempt}");
            t += wait;
        } else {
            assert_eq!(row.status, "failed");
        }
    }
}

#[test]
fn without_smtp_the_email_is_written_as_an_eml_file() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let day = seed_day(&mut conn) - TimeDelta::days(20);
    run_job(&mut conn, day);
    only_emails_of(&mut conn, &[KENT]);
    let config = config(&db, None);
    let pool = cpis::db::pool(&config);
    assert_eq!(cpis::mail::send_due(&pool, &config, occurrence(day)).unwrap(), 1);
    let files: Vec<_> = std::fs::read_dir(&config.mail_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    assert_eq!(files.len(), 1);
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(raw.contains(&format!("Message-ID: <cpis-05-{KENT}-{day}@cpis.example.org>")));
    assert!(raw.contains(&format!("cpis-05-{KENT}-{day}.xml")));
    assert_eq!(email_of(&mut conn, KENT, day).status, "sent");
    let _ = std::fs::remove_dir_all(&config.mail_dir);
}

#[test]
fn the_25_hour_day_includes_both_ends_and_the_23_hour_day_stops_at_bst_midnight() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let kent_id = child_id(&mut conn, MIA_THOMPSON, KENT);
    // 25 October 2026: the clocks go back; the UK day runs from 23:00Z on the 24th to 00:00Z on the 26th.
    for (at, who) in [
        ("2026-10-24T22:30:00Z", "Before"), // 23:30 BST on the 24th
        ("2026-10-25T00:30:00Z", "Early"),  // 01:30 BST on the 25th
        ("2026-10-25T23:30:00Z", "Late"),   // 23:30 GMT, still the 25th
        ("2026-10-26T00:30:00Z", "After"),  // the 26th
    ] {
        insert_access(&mut conn, MIA_THOMPSON, utc(at), &format!("v-{who}"), who, "R8000", "RJZ", true);
    }
    let long = date(2026, 10, 25);
    assert_eq!(occurrence(long), utc("2026-10-26T00:30:00Z"));
    run_job(&mut conn, long);
    let n = the_notification(&mut conn, KENT, long);
    assert_eq!((n.period_start, n.period_end), (utc("2026-10-24T23:00:00Z"), utc("2026-10-26T00:00:00Z")));
    let who: Vec<&str> = n.accesses.iter().map(|a| a.user_name.as_str()).collect();
    assert_eq!(who, ["Early", "Late"]);
    assert!(n.accesses.iter().all(|a| a.la_child_id == kent_id));
    let mail = email_of(&mut conn, KENT, long);
    assert!(mail.body_text.contains("25/10/2026 01:30:00 BST"), "{}", mail.body_text);
    assert!(mail.body_text.contains("25/10/2026 23:30:00 GMT"), "{}", mail.body_text);
    assert_eq!(the_notification(&mut conn, MANCHESTER, long).accesses.len(), 2);

    // 29 March 2026: the clocks go forward; the UK day runs from 00:00Z to 23:00Z.
    for (at, who) in [("2026-03-29T00:30:00Z", "Spring early"), ("2026-03-29T23:30:00Z", "Spring next day")] {
        insert_access(&mut conn, MIA_THOMPSON, utc(at), &format!("v-{who}"), who, "R8000", "RJZ", true);
    }
    let short = date(2026, 3, 29);
    assert_eq!(occurrence(short), utc("2026-03-29T23:30:00Z"), "00:30 BST on 30 March");
    run_job(&mut conn, short);
    let n = the_notification(&mut conn, KENT, short);
    assert_eq!((n.period_start, n.period_end), (utc("2026-03-29T00:00:00Z"), utc("2026-03-29T23:00:00Z")));
    let who: Vec<&str> = n.accesses.iter().map(|a| a.user_name.as_str()).collect();
    assert_eq!(who, ["Spring early"], "23:30Z on 29 March is 00:30 BST on 30 March");
    run_job(&mut conn, date(2026, 3, 30));
    let who: Vec<String> =
        the_notification(&mut conn, KENT, date(2026, 3, 30)).accesses.into_iter().map(|a| a.user_name).collect();
    assert_eq!(who, ["Spring next day"]);
}

#[test]
fn a_child_accessed_from_three_organisations_is_a_pattern_worth_a_look() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let day = seed_day(&mut conn) - TimeDelta::days(20);
    let (start, _) = uk_day_bounds(day);
    let jack = child_id(&mut conn, JACK_ROBINSON, KENT);
    let amelia = child_id(&mut conn, AMELIA_HART, KENT);
    // Jack: three organisations over the week (six days before, and on the day).
    insert_access(
        &mut conn,
        JACK_ROBINSON,
        start - TimeDelta::days(6) + TimeDelta::hours(1),
        "p1",
        "Dr One",
        "R8000",
        "RJZ",
        true,
    );
    insert_access(&mut conn, JACK_ROBINSON, start - TimeDelta::days(2), "p2", "Dr Two", "R8000", "RRU", true);
    insert_access(&mut conn, JACK_ROBINSON, start + TimeDelta::hours(10), "p3", "Dr Three", "R8000", "RR8", true);
    // Amelia: twice, from two organisations, and once more the week before the window.
    insert_access(&mut conn, AMELIA_HART, start - TimeDelta::days(1), "p4", "Dr Four", "R8000", "RJZ", true);
    insert_access(&mut conn, AMELIA_HART, start + TimeDelta::hours(11), "p5", "Dr Five", "R8000", "RRU", true);
    insert_access(&mut conn, AMELIA_HART, start - TimeDelta::days(7), "p6", "Dr Six", "R8000", "RR8", true);
    let summary = run_job(&mut conn, day);
    assert!(summary["patterns"].as_u64().unwrap() >= 1, "{summary}");

    let mail = email_of(&mut conn, KENT, day);
    let text = &mail.body_text;
    let patterns = &text[text.find("PATTERNS WORTH A LOOK").unwrap()..text.find("ACCESSES ON").unwrap()];
    assert!(
        patterns.contains(&format!("Child id {jack}, NHS number {JACK_ROBINSON}: 3 accesses from 3 organisations")),
        "{text}"
    );
    assert!(patterns.contains("(RJZ)") && patterns.contains("(RRU)") && patterns.contains("(RR8)"), "{patterns}");
    assert!(!patterns.contains(&amelia), "two accesses in the window are not a pattern: {patterns}");
    let html = &mail.body_html;
    assert!(html.find("Patterns worth a look").unwrap() < html.find(&jack).unwrap());
    // The day's list has the two accesses made on the day.
    let n = the_notification(&mut conn, KENT, day);
    let who: Vec<&str> = n.accesses.iter().map(|a| a.user_name.as_str()).collect();
    assert_eq!(who, ["Dr Three", "Dr Five"]);
    // Another LA with nothing in the week says there is none.
    let leeds = email_of(&mut conn, LEEDS, day);
    assert!(leeds.body_text.contains("None: no child of yours was accessed from 3 or more organisations"));
}
