//! CP-IS078: the service performance report. A known set of probes, request minutes, jobs and
//! incidents is inserted directly, and every figure on the page is checked against what it must be
//! (availability per period and per day against CP-IS072's 99.90%, requests, errors and latency
//! percentiles per area, job failures, the incident log); the CSV equals the page's per-area table.
//! A running server's own requests and probes reach the tables through the monitor; the incident
//! form stores what is valid, refuses each invalid field with its message, and is refused without
//! its CSRF token or to a clinician; an open incident can be resolved.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::db::{count, execute};
use crate::support::{between, html_text, Client, Template, TestApp, TestDatabase};

const PAGE: &str = "/reports/cp-is078";

/// The body rows of the table with this id, each as its cells' text.
fn table_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no table {id} on the page"));
    let table = &html[start..start + html[start..].find("</table>").expect("the table ends")];
    let body = table.split_once("<tbody").map(|(_, b)| b).unwrap_or(table);
    body.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
                    text_of(inner)
                })
                .collect()
        })
        .collect()
}

/// Text without tags, with askama's escapes undone and whitespace collapsed.
fn text_of(html: &str) -> String {
    html_text(html).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of the element with this id.
fn by_id(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let text = between(html, &marker, "</").unwrap_or_else(|| panic!("no element {id} on the page"));
    text_of(&text)
}

fn report_runs(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'report' = 'CP-IS078'")
}

/// The known dataset: January 2026 (GMT, so UK days are UTC days).
fn insert_dataset(app: &TestApp) {
    let mut conn = app.conn();
    let helen = count(&mut conn, "SELECT id FROM users WHERE username = 'helen.ward'");
    for sql in [
        // 10 January: the first probe ever at 12:00:30, then one a minute from instance a until
        // midnight; 13:00 to 13:02 failed on a, but instance b succeeded at 13:01 (and also
        // probed, successfully, at every minute a did: a minute counts once).
        "INSERT INTO health_probes (at, instance, ok, latency_ms) \
         SELECT m + interval '30 seconds', 'host-a', m NOT IN ('2026-01-10 13:00Z', '2026-01-10 13:01Z', '2026-01-10 13:02Z'), 2.5 \
         FROM generate_series('2026-01-10 12:00Z'::timestamptz, '2026-01-10 23:59Z', interval '1 minute') m",
        "INSERT INTO health_probes (at, instance, ok, latency_ms) \
         SELECT m + interval '45 seconds', 'host-b', true, 3 \
         FROM generate_series('2026-01-10 12:00Z'::timestamptz, '2026-01-10 23:59Z', interval '1 minute') m \
         WHERE m NOT IN ('2026-01-10 13:00Z', '2026-01-10 13:02Z')",
        // 11 January: every minute but 10:00 to 10:59, when no instance was running.
        "INSERT INTO health_probes (at, instance, ok, latency_ms) \
         SELECT m + interval '10 seconds', 'host-a', true, 1.5 \
         FROM generate_series('2026-01-11 00:00Z'::timestamptz, '2026-01-11 23:59Z', interval '1 minute') m \
         WHERE m < '2026-01-11 10:00Z' OR m >= '2026-01-11 11:00Z'",
        // 12 January: nothing. 13 January: outside the period.
        "INSERT INTO health_probes (at, instance, ok, latency_ms) VALUES ('2026-01-13 08:00Z', 'host-a', true, 1)",
        // Requests: the alert tab on two instances, the FHIR API, and minutes outside the period.
        "INSERT INTO request_minutes (minute, instance, area, requests, client_errors, server_errors, buckets) VALUES \
         ('2026-01-10 12:00Z', 'host-a', 'Child Care Alert tab', 10, 1, 0, '{0,0,5,3,0,0,2,0,0,0,0,0,0,0}'), \
         ('2026-01-11 09:00Z', 'host-b', 'Child Care Alert tab', 10, 0, 1, '{0,0,0,0,0,0,0,0,10,0,0,0,0,0}'), \
         ('2026-01-12 00:00Z', 'host-a', 'FHIR API', 3, 2, 0, '{0,1,1,0,0,0,0,0,0,0,0,0,0,1}'), \
         ('2026-01-13 00:00Z', 'host-a', 'Reports', 100, 0, 50, '{100,0,0,0,0,0,0,0,0,0,0,0,0,0}'), \
         ('2026-01-09 23:59Z', 'host-a', 'Child Care Alert tab', 100, 0, 50, '{100,0,0,0,0,0,0,0,0,0,0,0,0,0}')",
        // Jobs: one failed for good and one to be retried in the period; one done, one failed later.
        "INSERT INTO jobs (kind, key, scheduled_for, status, attempts, run_after, last_error, started_at, finished_at) VALUES \
         ('expiry', 'p1', '2026-01-11 00:05Z', 'failed', 5, '2026-01-11 00:05Z', 'disk full', '2026-01-11 00:20Z', '2026-01-11 00:20Z'), \
         ('session_cleanup', 'p2', '2026-01-11 10:15Z', 'pending', 2, '2026-01-11 10:18Z', 'timeout', '2026-01-11 10:16Z', '2026-01-11 10:16Z'), \
         ('expiry', 'p3', '2026-01-12 00:05Z', 'done', 1, '2026-01-12 00:05Z', NULL, '2026-01-12 00:05Z', '2026-01-12 00:06Z'), \
         ('expiry', 'p4', '2026-01-14 00:05Z', 'failed', 5, '2026-01-14 00:05Z', 'later', '2026-01-14 00:30Z', '2026-01-14 00:30Z')",
    ] {
        execute(&mut conn, sql);
    }
    execute(
        &mut conn,
        &format!(
            "INSERT INTO incidents (id, severity, title, description, started_at, resolved_at, recorded_by) VALUES \
             (901, 2, 'Database failover', 'Primary lost; replica promoted', '2026-01-11 10:00Z', '2026-01-11 11:00Z', {helen}), \
             (902, 4, 'Slow e-mail relay', 'Still being looked at', '2025-12-01 09:00Z', NULL, {helen}), \
             (903, 1, 'Old and resolved', '', '2025-12-01 09:00Z', '2025-12-02 09:00Z', {helen}), \
             (904, 3, 'After the period', '', '2026-01-20 09:00Z', '2026-01-20 10:00Z', {helen})"
        ),
    );
}

#[tokio::test]
async fn every_figure_of_the_report_is_what_the_known_data_makes_it() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.monitor_interval = Duration::ZERO);
    insert_dataset(&app);
    let c = app.signed_in("helen.ward").await;
    let runs_before = report_runs(&app);

    let res = c.get(&format!("{PAGE}?from=2026-01-10&to=2026-01-12")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("CP-IS078"));
    assert_eq!(by_id(&html, "period"), "10/01/2026 to 12/01/2026");

    // Availability (CP-IS072): 718 of 720 minutes on the 10th (from the first probe's minute),
    // 1380 of 1440 on the 11th, 0 of 1440 on the 12th: 2098 of 3600, 58.27% (rounded down).
    assert_eq!(by_id(&html, "availability"), "58.27%");
    assert_eq!(by_id(&html, "ok-minutes"), "2098");
    assert_eq!(by_id(&html, "measured-minutes"), "3600");
    assert_eq!(by_id(&html, "target"), "99.90%");
    assert_eq!(by_id(&html, "target-verdict"), "Not met");
    assert_eq!(by_id(&html, "measured-since"), "10/01/2026 12:00:30 GMT");
    assert_eq!(
        table_rows(&html, "availability-days"),
        [
            ["10/01/2026", "99.72%", "718", "720"],
            ["11/01/2026", "95.83%", "1380", "1440"],
            ["12/01/2026", "0.00%", "0", "1440"],
        ]
    );
    // The chart has a bar per measured day.
    assert!(html.contains("<title>10/01: 99.7</title>"), "the chart's first bar");
    assert!(html.contains("<title>12/01: 0</title>"), "the chart's last bar");

    // Requests per area, merged over minutes and instances; percentiles are bucket bounds.
    let areas = table_rows(&html, "areas-table");
    assert_eq!(
        areas,
        [
            ["Child Care Alert tab", "20", "1", "1", "5.00%", "100", "500", "500"],
            ["FHIR API", "3", "2", "0", "0.00%", "5", "over 10000", "over 10000"],
            ["All areas", "23", "3", "1", "4.35%", "100", "500", "over 10000"],
        ]
    );

    // Job failures in the period, newest first.
    assert_eq!(
        table_rows(&html, "job-failures"),
        [
            [
                "Session clean-up",
                "11/01/2026 10:15:00 GMT",
                "Failed, to be retried",
                "2",
                "11/01/2026 10:16:00 GMT",
                "timeout"
            ],
            ["Expiry and end-dating", "11/01/2026 00:05:00 GMT", "Failed", "5", "11/01/2026 00:20:00 GMT", "disk full"],
        ]
    );

    // The incident log: the one that started in the period, and the open one from before it.
    let incidents = table_rows(&html, "incidents-table");
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    assert_eq!(
        incidents[0],
        [
            "2",
            "Database failover",
            "Primary lost; replica promoted",
            "11/01/2026 10:00:00 GMT",
            "11/01/2026 11:00:00 GMT",
            "Helen Ward"
        ]
    );
    assert_eq!(incidents[1][..4], ["4", "Slow e-mail relay", "Still being looked at", "01/12/2025 09:00:00 GMT"]);
    assert!(incidents[1][4].starts_with("Open"), "{:?}", incidents[1]);
    assert_eq!(incidents[1][5], "Helen Ward");
    assert_eq!(by_id(&html, "open-incidents"), "1");
    assert!(html.contains("/reports/cp-is078/incidents/902/resolve"));
    assert!(!html.contains("Old and resolved") && !html.contains("After the period"));

    // The CSV is the page's per-area table, header included.
    let res = c.get(&format!("{PAGE}.csv?from=2026-01-10&to=2026-01-12")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, cpis::reports::performance::AREA_HEADER);
    let start = html.find("id=\"areas-table\"").unwrap();
    let page_header: Vec<String> = html[start..html[start..].find("</thead>").unwrap() + start]
        .split("<th scope=\"col\">")
        .skip(1)
        .map(|h| text_of(&h[..h.find("</th>").unwrap()]))
        .collect();
    assert_eq!(header, page_header);
    let rows: Vec<Vec<String>> = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    assert_eq!(rows, areas);

    // Each run (page and CSV) is in the audit trail.
    assert_eq!(report_runs(&app), runs_before + 2);

    // A single day; a day before the first probe is not measured (a fresh install is not penalised).
    let html = c.text(&format!("{PAGE}?from=2026-01-11&to=2026-01-11")).await;
    assert_eq!(by_id(&html, "availability"), "95.83%");
    assert_eq!(
        table_rows(&html, "areas-table")[0],
        ["Child Care Alert tab", "10", "0", "1", "10.00%", "500", "500", "500"]
    );
    let html = c.text(&format!("{PAGE}?from=2026-01-01&to=2026-01-09")).await;
    assert_eq!(by_id(&html, "availability"), "Not measured");
    assert_eq!(by_id(&html, "target-verdict"), "Not measured");
    assert!(html.contains("id=\"no-job-failures\""));
    // Only the open incident shows.
    assert_eq!(table_rows(&html, "incidents-table").len(), 1);

    // A period that does not read is a 400 that says why.
    for q in ["from=10/01/2026", "from=-5000-01-01&to=-5000-01-02"] {
        let res = c.get(&format!("{PAGE}?{q}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        assert!(res.text().await.unwrap().contains("YYYY-MM-DD"), "{q}");
    }
}

#[tokio::test]
async fn a_running_server_writes_its_requests_and_probes_every_interval() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.monitor_interval = Duration::from_millis(200));
    let c = app.client();
    assert_eq!(c.get("/health").await.status(), StatusCode::OK);
    assert_eq!(c.get("/health").await.status(), StatusCode::OK);
    assert_eq!(c.get("/no-such-page").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get("/sign-in").await.status(), StatusCode::OK);
    assert_eq!(c.get("/static/cpis.css").await.status(), StatusCode::OK);

    let sum = |area: &str, column: &str| {
        app.count(&format!("SELECT coalesce(sum({column}), 0) FROM request_minutes WHERE area = '{area}'"))
    };
    let mut tries = 0;
    while sum("Health", "requests") < 2
        || sum("Other", "requests") < 1
        || sum("Static files", "requests") < 1
        || app.count("SELECT count(*) FROM health_probes WHERE ok") < 1
    {
        tries += 1;
        assert!(tries < 150, "the monitor wrote nothing after {tries} rounds of polling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sum("Health", "requests"), 2);
    assert_eq!(sum("Health", "client_errors") + sum("Health", "server_errors"), 0);
    assert_eq!(sum("Other", "client_errors"), 1, "the 404 is a client error");
    assert!(sum("Sign-in", "requests") >= 1);
    // Each request is in one latency bucket.
    assert_eq!(
        app.count("SELECT coalesce(sum(b), 0) FROM request_minutes, unnest(buckets) b WHERE area = 'Health'"),
        2
    );
    assert_eq!(app.count("SELECT count(*) FROM request_minutes WHERE cardinality(buckets) <> 14"), 0);
    // The instance names this process; the probe timed itself.
    let pid = std::process::id();
    assert_eq!(app.count(&format!("SELECT count(*) FROM health_probes WHERE instance NOT LIKE '%-{pid}-%'")), 0);
    assert_eq!(app.count(&format!("SELECT count(*) FROM request_minutes WHERE instance NOT LIKE '%-{pid}-%'")), 0);
    assert_eq!(app.count("SELECT count(*) FROM health_probes WHERE latency_ms < 0"), 0);
}

/// The form's fields, valid, with one replaced.
fn incident_form<'a>(replace: Option<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("severity", "2"),
        ("title", "Kept title"),
        ("description", "Kept description"),
        ("started_at", "2026-01-15 09:30"),
        ("resolved_at", ""),
        ("from", "2026-01-01"),
        ("to", "2026-01-31"),
    ];
    if let Some((field, value)) = replace {
        form.iter_mut().find(|(f, _)| *f == field).expect("a field of the form").1 = value;
    }
    form
}

fn incidents_stored(app: &TestApp) -> (i64, i64) {
    (
        app.count("SELECT count(*) FROM incidents"),
        app.count("SELECT count(*) FROM audit_log WHERE action LIKE 'incident.%'"),
    )
}

async fn post_without_token(c: &Client, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    c.http.post(format!("{}{}", c.base, path)).form(form).send().await.unwrap()
}

#[tokio::test]
async fn incidents_are_recorded_checked_field_by_field_and_resolved() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.monitor_interval = Duration::ZERO);
    let c = app.signed_in("helen.ward").await;
    let action = "/reports/cp-is078/incidents";
    assert_eq!(incidents_stored(&app), (0, 0));

    // Each invalid field: 422, its message, the values kept, nothing stored.
    let long_title = "x".repeat(201);
    let long_description = "y".repeat(5001);
    let cases: [(&str, &str, &str); 10] = [
        ("severity", "", "Choose the severity, from 1 (the worst) to 5"),
        ("severity", "7", "Choose the severity, from 1 (the worst) to 5"),
        ("title", "  ", "Enter a title for the incident"),
        ("title", &long_title, "The title must be 200 characters or fewer"),
        ("description", &long_description, "The description must be 5000 characters or fewer"),
        ("started_at", "", "Enter when the incident started, as YYYY-MM-DD HH:MM"),
        ("started_at", "15/01/2026 09:30", "Enter when the incident started as YYYY-MM-DD HH:MM"),
        ("started_at", "2999-01-01 00:00", "The start of the incident cannot be in the future"),
        // A year PostgreSQL cannot hold is refused, not a 500.
        ("started_at", "-5000-01-01 00:00", "Enter when the incident started as YYYY-MM-DD HH:MM"),
        ("resolved_at", "2026-01-15 09:29", "The resolution must be on or after the start"),
    ];
    for (field, value, message) in cases {
        let res = c.post_form(action, &incident_form(Some((field, value)))).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}={value:?}");
        let html = res.text().await.unwrap();
        assert!(html.contains(message), "{field}={value:?} should say {message:?}");
        assert!(html.contains("There is a problem"), "the error summary");
        assert!(html.contains(&format!("href=\"#{field}\"")), "the summary links to {field}");
        if field != "title" {
            assert!(html.contains("value=\"Kept title\""), "the title is kept");
        }
        if field != "started_at" {
            assert!(html.contains("value=\"2026-01-15 09:30\""), "the start is kept");
        }
        // The page re-rendered shows the period the form came from.
        assert_eq!(by_id(&html, "period"), "01/01/2026 to 31/01/2026");
        assert_eq!(incidents_stored(&app), (0, 0), "{field}={value:?} stored nothing");
    }
    let res = c.post_form(action, &incident_form(Some(("resolved_at", "2026-03-29 01:30")))).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("clocks went forward"));

    // Without the CSRF token: refused, nothing stored.
    let res = post_without_token(&c, action, &incident_form(None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = c
        .http
        .post(format!("{}{action}", c.base))
        .form(&[incident_form(None), vec![("csrf_token", "forged")]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(incidents_stored(&app), (0, 0));

    // A clinician may neither see the report nor record an incident.
    let amy = app.signed_in("amy.patel").await;
    assert_eq!(amy.get(PAGE).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(amy.get(&format!("{PAGE}.csv")).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(amy.post_form(action, &incident_form(None)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(incidents_stored(&app), (0, 0));

    // Valid: stored in UTC (15 January is GMT), audited in the same transaction, back to the page.
    let res = c.post_form(action, &incident_form(None)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/reports/cp-is078?from=2026-01-01&to=2026-01-31#incidents");
    assert_eq!(incidents_stored(&app), (1, 1));
    let id = app.count("SELECT id FROM incidents");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM incidents i JOIN users u ON u.id = i.recorded_by WHERE i.id = {id} \
             AND u.username = 'helen.ward' AND severity = 2 AND title = 'Kept title' \
             AND description = 'Kept description' AND started_at = '2026-01-15 09:30Z' AND resolved_at IS NULL"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'incident.recorded' \
             AND (details->>'incident_id')::bigint = {id} AND actor = 'user:' || \
             (SELECT id FROM users WHERE username = 'helen.ward')"
        )),
        1
    );
    // Summer time: 09:30 BST is 08:30 UTC; a resolved incident is stored resolved.
    let res = c
        .post_form(
            action,
            &incident_form(Some(("started_at", "2026-07-01 09:30")))
                .into_iter()
                .map(|(f, v)| if f == "resolved_at" { (f, "2026-07-01 10:00") } else { (f, v) })
                .collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM incidents WHERE started_at = '2026-07-01 08:30Z' AND resolved_at = '2026-07-01 09:00Z'"
        ),
        1
    );

    // The open one shows with its button; resolving it works once, and is audited once.
    let html = c.text(&format!("{PAGE}?from=2026-01-01&to=2026-01-31")).await;
    let resolve = format!("/reports/cp-is078/incidents/{id}/resolve");
    assert!(html.contains(&resolve));
    assert_eq!(by_id(&html, "open-incidents"), "1");
    let res = post_without_token(&c, &resolve, &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "resolving needs the CSRF token");
    assert_eq!(amy.post_form(&resolve, &[]).await.status(), StatusCode::FORBIDDEN);
    let res = c.post_form(&resolve, &[("from", "2026-01-01"), ("to", "2026-01-31")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/reports/cp-is078?from=2026-01-01&to=2026-01-31#incidents");
    assert_eq!(app.count(&format!("SELECT count(*) FROM incidents WHERE id = {id} AND resolved_at IS NOT NULL")), 1);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'incident.resolved'"), 1);
    assert_eq!(c.post_form(&resolve, &[]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'incident.resolved'"), 1, "once only");
    let html = c.text(&format!("{PAGE}?from=2026-01-01&to=2026-01-31")).await;
    assert_eq!(by_id(&html, "open-incidents"), "0");
    // No such incident, or not a number: 404.
    assert_eq!(c.post_form("/reports/cp-is078/incidents/999999/resolve", &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.post_form("/reports/cp-is078/incidents/abc/resolve", &[]).await.status(), StatusCode::NOT_FOUND);
}

/// The database's name in its URL.
fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn probes_and_counts_taken_while_the_database_is_down_are_written_when_it_is_back() {
    use cpis::monitoring::{metrics::Metrics, probe::Monitor};
    use diesel::{Connection, PgConnection};
    use std::sync::Arc;

    let db = TestDatabase::new(Template::Reference);
    let mut config = cpis::config::Config::for_database(&db.url);
    config.db_pool_size = 2;
    config.db_timeout = Duration::from_millis(500);
    let metrics = Arc::new(Metrics::new());
    let mut monitor = Monitor::new(cpis::db::pool(&config), metrics.clone(), "outage-test");
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);

    metrics.record("/search", 200, Duration::from_millis(3));
    assert!(monitor.tick(at("2026-01-10T12:00:30Z")).await, "the database answers");
    assert_eq!(monitor.pending(), (0, 0));

    // The database refuses connections: the probe fails and nothing can be written.
    let name = database_name(&db.url);
    let mut admin = PgConnection::establish(&crate::support::db::admin_url()).unwrap();
    execute(&mut admin, &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"));
    execute(&mut admin, &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"));
    metrics.record("/health", 503, Duration::from_millis(20));
    assert!(!monitor.tick(at("2026-01-10T12:01:30Z")).await, "the probe fails");
    assert_eq!(monitor.pending(), (1, 1), "the failed probe and the minute's counts wait in memory");

    // Back: everything pending is written, the failure included.
    execute(&mut admin, &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"));
    metrics.record("/search", 200, Duration::from_millis(4));
    assert!(monitor.tick(at("2026-01-10T12:02:30Z")).await);
    assert_eq!(monitor.pending(), (0, 0));
    let mut conn = db.conn();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM health_probes WHERE instance = 'outage-test'"), 3);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM health_probes WHERE NOT ok AND at = '2026-01-10T12:01:30Z'"), 1);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM request_minutes WHERE area = 'Health' AND minute = '2026-01-10T12:01Z' \
             AND requests = 1 AND server_errors = 1"
        ),
        1
    );
    // A later flush into a minute already written adds to it, bucket by bucket.
    metrics.record("/search", 404, Duration::from_millis(4));
    assert!(monitor.tick(at("2026-01-10T12:02:50Z")).await);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM request_minutes WHERE area = 'Patient search and details' \
             AND minute = '2026-01-10T12:02Z' AND requests = 2 AND client_errors = 1 \
             AND buckets = '{0,0,2,0,0,0,0,0,0,0,0,0,0,0}'"
        ),
        1
    );
}
