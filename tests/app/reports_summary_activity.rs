//! The reports CP-IS077 (service information) and CP-IS081 (who viewed or changed which records)
//! over HTTP, against a data set whose every answer is known: the demo's child protection data is
//! cleared and replaced by rows inserted directly, all in March 2025 (the month the UK clocks went
//! forward, on 30 March), so no answer depends on the day the tests run.

use std::collections::{HashMap, HashSet};

use cpis::audit::Actor;
use cpis::reports::activity::{self, ActivityQuery};
use cpis::seed::demo::{KENT, LEEDS, MANCHESTER};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use reqwest::StatusCode;

use crate::support::db::execute;
use crate::support::{between, Client, Template, TestApp};

const PERIOD: &str = "from=2025-03-01&to=2025-03-31";
/// The period's instants: 1 March 00:00 GMT to 1 April 00:00 BST.
const START: &str = "2025-03-01 00:00:00+00";
const END: &str = "2025-03-31 23:00:00+00";

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Str {
    #[diesel(sql_type = Text)]
    s: String,
}

fn id(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Id>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).id
}

fn text(conn: &mut PgConnection, sql: &str) -> String {
    diesel::sql_query(sql).get_result::<Str>(conn).unwrap_or_else(|e| panic!("{sql}: {e}")).s
}

/// The known data set: children n[1]..n[6], the views and changes by name.
struct Data {
    n: Vec<String>,
    views: HashMap<&'static str, i64>,
    changes: HashMap<&'static str, i64>,
    bulk_views: Vec<i64>,
    bulk_changes: Vec<i64>,
}

impl Data {
    fn v(&self, name: &str) -> String {
        format!("view-{}", self.views[name])
    }
    fn c(&self, name: &str) -> String {
        format!("change-{}", self.changes[name])
    }
    fn refs(&self, views: &[&str], changes: &[&str]) -> HashSet<String> {
        views.iter().map(|v| self.v(v)).chain(changes.iter().map(|c| self.c(c))).collect()
    }
}

fn seed(app: &TestApp) -> Data {
    let mut conn = app.conn();
    let conn = &mut conn;
    for t in ["access_events", "cp_items", "mailbox_messages", "uploads", "transmissions"] {
        execute(conn, &format!("DELETE FROM {t}"));
    }
    let mut n = vec![String::new()];
    for i in 0..6 {
        n.push(text(
            conn,
            &format!("SELECT nhs_number AS s FROM patients ORDER BY nhs_number OFFSET {} LIMIT 1", 1000 + i),
        ));
    }
    let user = |conn: &mut PgConnection, name: &str| -> (i64, String) {
        let uid = id(conn, &format!("SELECT id FROM users WHERE username = '{name}'"));
        (uid, text(conn, &format!("SELECT sds_user_id::text AS s FROM users WHERE id = {uid}")))
    };
    let (amy, amy_sds) = user(conn, "amy.patel");
    let (grace, grace_sds) = user(conn, "grace.hughes");
    let (kent_social, _) = user(conn, "kent.social");

    // Uploads: Kent twice; Leeds once with every record rejected (so it has provided nothing).
    for (la, at, accepted) in
        [(KENT, "2025-01-10 09:00+00", 3), (KENT, "2025-02-20 09:00+00", 1), (LEEDS, "2025-02-01 09:00+00", 0)]
    {
        execute(
            conn,
            &format!(
                "INSERT INTO uploads (la_code, received_at, size_bytes, channel, file_code, received, accepted, rejected, ack_message_id) \
                 VALUES ('{la}', '{at}', 100, 'mailbox', 'CPF01', 3, {accepted}, {}, gen_random_uuid())",
                3 - accepted
            ),
        );
    }
    // Items: (child, LA, type, start, end, expired).
    for (c, la, kind, start, end, expired) in [
        (1, KENT, "CPP", "2025-01-01", None, false),
        (2, KENT, "UCPP", "2025-02-01", Some("2025-04-15"), false),
        (3, KENT, "LAC", "2025-04-05", None, false),
        (4, KENT, "CPP", "2024-01-01", Some("2025-02-28"), true),
        (5, KENT, "CPP", "2024-06-01", Some("2025-03-01"), true),
        (1, MANCHESTER, "LAC", "2025-03-31", None, false),
        (6, MANCHESTER, "CPP", "2025-02-01", Some("2025-02-15"), false),
    ] {
        let end = end.map_or("NULL".to_owned(), |e| format!("'{e}'"));
        let (deleted_at, reason) = if expired { ("now()", "'expired'") } else { ("NULL", "NULL") };
        execute(
            conn,
            &format!(
                "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date, deleted_at, deleted_reason) \
                 VALUES ('{}', '{la}', '{kind}', 'C-{c}', '{start}', {end}, {deleted_at}, {reason})",
                n[c]
            ),
        );
    }
    // Transmissions: NHS Query messages (03 in) and others that are not.
    for (at, dir, origin, dest, kind, channel) in [
        ("2025-03-05 10:00+00", "in", "RJZ", "CP-IS", "03", "fhir"),
        ("2025-03-06 10:00+00", "in", "RJZ", "CP-IS", "03", "fhir"),
        ("2025-03-31 22:30+00", "in", "RRU", "CP-IS", "03", "fhir"), // 23:30 BST on 31 March: inside
        ("2025-03-31 23:30+00", "in", "R0A", "CP-IS", "03", "fhir"), // 00:30 BST on 1 April: outside
        ("2025-02-28 23:59+00", "in", "R0A", "CP-IS", "03", "fhir"),
        ("2025-03-05 10:00+00", "out", "CP-IS", "RJZ", "04", "fhir"),
        ("2025-03-05 10:00+00", "in", KENT, "CP-IS", "01", "mailbox"),
    ] {
        execute(
            conn,
            &format!(
                "INSERT INTO transmissions (at, direction, origin, destination, message_type, channel) \
                 VALUES ('{at}', '{dir}', '{origin}', '{dest}', '{kind}', '{channel}')"
            ),
        );
    }
    // Views: (name, when, viewer id, user id, viewer name, role, organisation, channel, child, shown).
    let mut views = HashMap::new();
    for (name, at, viewer, uid, vname, role, org, channel, child, shown) in [
        ("V1", "2025-03-10 09:00+00", amy_sds.as_str(), Some(amy), "Dr Amy Patel", "R8000", "RJZ", "SCRa", 1, true),
        ("V2", "2025-03-10 09:00+00", grace_sds.as_str(), Some(grace), "Grace Hughes", "R0680", "RJZ", "SCRa", 2, true),
        ("V3", "2025-03-11 10:00+00", "fhir-user-7", None, "Pat Jones", "R8000", "RRU", "FHIR", 1, false),
        ("V4", "2025-03-11 10:00+00", amy_sds.as_str(), Some(amy), "Dr Amy Patel", "R8000", "RJZ", "SCRa", 3, false),
        ("V5", "2025-03-31 22:59+00", "fhir-user-8", None, "Sam Lee", "R8000", "R0A", "FHIR", 6, true),
        ("OUT", "2025-02-27 12:00+00", amy_sds.as_str(), Some(amy), "Dr Amy Patel", "R8000", "RJZ", "SCRa", 1, true),
        ("LATE", "2025-03-31 23:00+00", "fhir-user-8", None, "Sam Lee", "R8000", "R0A", "FHIR", 6, true),
    ] {
        let uid = uid.map_or("NULL".to_owned(), |u| u.to_string());
        let v = id(
            conn,
            &format!(
                "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, user_id, viewer_name, job_role_code, organisation_code, channel, shown) \
                 VALUES ('{}', '{at}', '{viewer}', {uid}, '{vname}', '{role}', '{org}', '{channel}', {shown}) RETURNING id",
                n[child]
            ),
        );
        views.insert(name, v);
    }
    // 60 views at one instant (of a child Kent held), to page across equal timestamps.
    let bulk_views: Vec<i64> = diesel::sql_query(format!(
        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, organisation_code, channel, shown) \
         SELECT '{}', '2025-03-15 12:00+00', 'bulk-viewer', 'Bulk Viewer', 'R8000', 'RRK', 'SCRa', true FROM generate_series(1, 60) \
         RETURNING id",
        n[4]
    ))
    .load::<Id>(conn)
    .unwrap()
    .into_iter()
    .map(|r| r.id)
    .collect();
    // Changes: (name, when, actor, action, child, the LA whose information changed).
    let audit = |conn: &mut PgConnection,
                 at: &str,
                 actor: &str,
                 action: &str,
                 nhs: &str,
                 la: &str,
                 extra: &str|
     -> Vec<i64> {
        diesel::sql_query(format!(
            "INSERT INTO audit_log (occurred_at, actor, action, nhs_number, details, prev_hash, hash) \
             SELECT '{at}', '{actor}', '{action}', '{nhs}', jsonb_build_object('la_code', '{la}'), \
                    sha256(convert_to(gen_random_uuid()::text, 'UTF8')), sha256(convert_to(gen_random_uuid()::text, 'UTF8')) {extra} \
             RETURNING id"
        ))
        .load::<Id>(conn)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
    };
    let mut changes = HashMap::new();
    let kent_user = format!("user:{kent_social}");
    for (name, at, actor, action, child, la) in [
        ("C1", "2025-03-10 09:00+00", "la:E10000016", "cp.record_replaced", 1, KENT),
        ("C2", "2025-03-10 09:00+00", "la:E10000016", "cp.record_replaced", 2, KENT),
        ("C3", "2025-03-20 00:00+00", "service", "cp.item_expired", 5, KENT),
        ("C4", "2025-03-21 08:00+00", "la:E08000003", "cp.record_replaced", 1, MANCHESTER),
        ("C5", "2025-03-22 08:00+00", kent_user.as_str(), "cp.record_replaced", 3, KENT),
        ("OUT", "2025-04-02 08:00+00", "la:E10000016", "cp.record_replaced", 1, KENT),
        // Not a change to child protection information: never listed.
        ("NOT", "2025-03-15 12:00+00", kent_user.as_str(), "access.alert_tab_opened", 1, KENT),
    ] {
        changes.insert(name, audit(conn, at, actor, action, &n[child], la, "")[0]);
    }
    let bulk_changes = audit(
        conn,
        "2025-03-15 12:00+00",
        "la:E08000035",
        "cp.record_replaced",
        &n[4],
        LEEDS,
        "FROM generate_series(1, 45)",
    );
    Data { n, views, changes, bulk_views, bulk_changes }
}

/// The value a CP-IS077 page shows for a figure.
fn figure(page: &str, key: &str) -> i64 {
    between(page, &format!("data-figure=\"{key}\">"), "</td>")
        .unwrap_or_else(|| panic!("figure {key} on the page"))
        .parse()
        .unwrap()
}

/// The cells of the page's table row with this id.
fn row_cells(page: &str, row_id: &str) -> Vec<String> {
    let row = between(page, &format!("id=\"{row_id}\">"), "</tr>").unwrap_or_else(|| panic!("row {row_id}"));
    row.split("<td").skip(1).map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_owned()).collect()
}

fn parse_csv(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(body.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

fn report_runs(app: &TestApp, report: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'report' = '{report}'"
    ))
}

#[tokio::test]
async fn cp_is077_every_figure_is_known_and_the_csv_matches_the_page() {
    let app = TestApp::spawn(Template::Demo);
    let _data = seed(&app);
    let c = app.signed_in("helen.ward").await;
    let runs = report_runs(&app, "CP-IS077");
    let res = c.get(&format!("/reports/cp-is077?{PERIOD}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("Period: 01/03/2025 to 31/03/2025"));

    // CP-IS077, bullet by bullet: (key, section, label, value).
    let expected: [(&str, &str, &str, i64); 14] = [
        ("providers", "Current totals", "Local authorities that have provided information", 2),
        ("current-nhs-numbers", "Current totals", "Unique NHS numbers", 4),
        ("current-las", "Current totals", "Unique local authorities", 2),
        ("current-cpp", "Current totals", "Child protection plans (CPP)", 2),
        ("current-ucpp", "Current totals", "Unborn child protection plans (UCPP)", 1),
        ("current-lac", "Current totals", "Looked after child statuses (LAC)", 2),
        ("period-cpp", "Within the period", "Child protection plans (CPP)", 2),
        ("period-ucpp", "Within the period", "Unborn child protection plans (UCPP)", 1),
        ("period-lac", "Within the period", "Looked after child statuses (LAC)", 1),
        ("period-nhs-queries", "Within the period", "NHS Query messages received", 3),
        ("period-querying-orgs", "Within the period", "Unique NHS organisations submitting NHS Query messages", 2),
        (
            "period-viewing-orgs",
            "Within the period",
            "Unique organisations whose users opened the Child Care Alert tab",
            4,
        ),
        ("period-openings-scra", "Within the period", "Child Care Alert tab openings (screens)", 63),
        ("period-openings-fhir", "Within the period", "Child Care Alert tab openings (FHIR API)", 2),
    ];
    for (key, _, _, value) in expected {
        assert_eq!(figure(&page, key), value, "page figure {key}");
    }
    assert_eq!(page.matches("data-figure=").count(), expected.len());
    // The organisations behind the counts.
    assert!(page.contains("id=\"querying-RJZ\""));
    assert!(page.contains("id=\"querying-RRU\""));
    assert!(!page.contains("id=\"querying-R0A\""), "R0A's query came at 00:30 BST on 1 April");
    assert_eq!(row_cells(&page, "querying-RRU"), ["London Ambulance Service NHS Trust", "RRU", "1"]);
    for org in ["RJZ", "RRU", "R0A", "RRK"] {
        assert!(page.contains(&format!("id=\"viewing-{org}\"")), "{org} opened the tab");
    }
    // Most openings first: the bulk viewer's 60 at RRK, then RJZ's 3 (V1, V2, V4).
    assert_eq!(row_cells(&page, "viewing-RRK")[1..], ["RRK", "60"]);
    assert_eq!(row_cells(&page, "viewing-RJZ")[1..], ["RJZ", "3"]);
    assert!(page.find("id=\"viewing-RRK\"") < page.find("id=\"viewing-RJZ\""));
    // Who has provided information: Kent (uploads) and Manchester (items); Leeds only sent a
    // file whose every record was rejected.
    assert_eq!(page.matches("id=\"provider-").count(), 2);
    let kent = row_cells(&page, &format!("provider-{KENT}"));
    assert_eq!(kent[0], "Kent");
    assert_eq!(kent[2], "10/01/2025 09:00:00 GMT");
    assert_eq!(kent[3], "20/02/2025 09:00:00 GMT");
    assert_eq!(kent[4], "3");
    assert_eq!(row_cells(&page, &format!("provider-{MANCHESTER}"))[2..], ["", "", "2"]);
    // Every LA, zeros included.
    assert_eq!(page.matches("id=\"la-").count(), 152);
    assert_eq!(row_cells(&page, &format!("la-{KENT}"))[1..], ["E10000016", "1", "1", "1", "3", "Yes"]);
    assert_eq!(row_cells(&page, &format!("la-{MANCHESTER}"))[1..], ["E08000003", "1", "0", "1", "2", "Yes"]);
    assert_eq!(row_cells(&page, &format!("la-{LEEDS}"))[1..], ["E08000035", "0", "0", "0", "0", "No"]);
    // The charts: accesses per day (every day, zeros included) and records per LA.
    assert_eq!(page.matches("<rect").count(), 31 + 2);
    for (day, n) in [("10/03/2025", 2), ("11/03/2025", 2), ("15/03/2025", 60), ("31/03/2025", 1), ("12/03/2025", 0)] {
        assert!(page.contains(&format!("<title>{day}: {n}</title>")), "{day}: {n}");
    }
    assert!(page.contains("<title>Kent: 3</title>") && page.contains("<title>Manchester: 2</title>"));

    // The CSV holds the same figures and the same table.
    let res = c.get(&format!("/reports/cp-is077.csv?{PERIOD}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let (header, rows) = parse_csv(&res.text().await.unwrap());
    assert_eq!(header[..4], ["Section", "Figure or local authority", "Code", "Value"]);
    let figures: Vec<&Vec<String>> = rows.iter().filter(|r| !r[0].starts_with("Per local authority")).collect();
    assert_eq!(figures.len(), expected.len());
    for (key, section, label, value) in expected {
        let row = figures
            .iter()
            .find(|r| r[0].starts_with(section) && r[1] == label)
            .unwrap_or_else(|| panic!("CSV figure {section}: {label}"));
        assert_eq!(row[3], value.to_string(), "CSV {key}");
        assert_eq!(row[3], figure(&page, key).to_string(), "CSV and page agree on {key}");
    }
    assert!(figures[6][0].contains("2025-03-01 to 2025-03-31"));
    let las: Vec<&Vec<String>> = rows.iter().filter(|r| r[0].starts_with("Per local authority")).collect();
    assert_eq!(las.len(), 152);
    for r in &las {
        let cells = row_cells(&page, &format!("la-{}", r[2]));
        assert_eq!(cells[1], r[2]);
        assert_eq!(
            [&cells[2], &cells[3], &cells[4], &cells[5], &cells[6]],
            [&r[4], &r[5], &r[6], &r[3], &r[7]],
            "{}",
            r[2]
        );
    }
    let leeds = las.iter().find(|r| r[2] == LEEDS).unwrap();
    assert_eq!(leeds[7..], ["No", "01/02/2025 09:00:00 GMT", "01/02/2025 09:00:00 GMT"]);

    // Both runs audited, with the period.
    assert_eq!(report_runs(&app, "CP-IS077"), runs + 2);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'report' = 'CP-IS077' \
             AND details->>'from' = '2025-03-01' AND details->>'to' = '2025-03-31' AND actor LIKE 'user:%'"
        ),
        2
    );
}

#[tokio::test]
async fn cp_is077_refuses_bad_periods_and_clinicians() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("owen.price").await;
    for q in [
        "from=2025-02-30",
        "from=2025-03-02&to=2025-03-01",
        "from=2000-01-01&to=2025-01-01",
        "to=yesterday",
        "from=-5000-01-01&to=-5000-01-02",
    ] {
        assert_eq!(c.get(&format!("/reports/cp-is077?{q}")).await.status(), StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(c.get(&format!("/reports/cp-is077.csv?{q}")).await.status(), StatusCode::BAD_REQUEST, "{q}");
    }
    let page = c.text("/reports/cp-is077?from=2025-02-30").await;
    assert!(page.contains("YYYY-MM-DD"), "the reason is given");
    // The default period (the last 30 days) works on the demo data.
    assert_eq!(c.get("/reports/cp-is077").await.status(), StatusCode::OK);
    let clinician = app.signed_in("amy.patel").await;
    for path in ["/reports/cp-is077", "/reports/cp-is077.csv", "/reports/cp-is081", "/reports/cp-is081.csv"] {
        assert_eq!(clinician.get(path).await.status(), StatusCode::FORBIDDEN, "{path}");
    }
}

/// The references of the rows on a CP-IS081 page, in order, and the next page's link.
fn page_refs(page: &str) -> (Vec<String>, Option<String>) {
    let refs = page
        .split("<tr class=\"nhsuk-table__row\" id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect();
    let next = between(page, "id=\"next-page\" href=\"", "\"").map(|h| h.replace("&#38;", "&").replace("&amp;", "&"));
    (refs, next)
}

/// Every row of a filter, following the "Next page" links; checks no row comes twice.
async fn walk(c: &Client, query: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut path = format!("/reports/cp-is081?{query}");
    for _ in 0..20 {
        let res = c.get(&path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let (refs, next) = page_refs(&res.text().await.unwrap());
        assert!(refs.len() <= 50);
        all.extend(refs);
        match next {
            Some(n) => path = n,
            None => {
                let unique: HashSet<&String> = all.iter().collect();
                assert_eq!(unique.len(), all.len(), "no row twice: {query}");
                return all;
            }
        }
    }
    panic!("more than 20 pages: {query}");
}

#[tokio::test]
async fn cp_is081_each_filter_narrows_to_exactly_the_expected_rows() {
    let app = TestApp::spawn(Template::Demo);
    let d = seed(&app);
    let c = app.signed_in("helen.ward").await;
    let set = |v: Vec<String>| -> HashSet<String> { v.into_iter().collect() };
    let bulk_views: HashSet<String> = d.bulk_views.iter().map(|i| format!("view-{i}")).collect();
    let bulk_changes: HashSet<String> = d.bulk_changes.iter().map(|i| format!("change-{i}")).collect();

    // The period alone: everything inside it, nothing outside (OUT, LATE, the April change, and
    // the audit entry that is not a change).
    let mut all = d.refs(&["V1", "V2", "V3", "V4", "V5"], &["C1", "C2", "C3", "C4", "C5"]);
    all.extend(bulk_views.iter().cloned());
    all.extend(bulk_changes.iter().cloned());
    assert_eq!(set(walk(&c, PERIOD).await), all);

    // User: a username is the account (its views by SDS user id, its changes as user:<id>), in any case.
    assert_eq!(set(walk(&c, &format!("{PERIOD}&user=amy.patel")).await), d.refs(&["V1", "V4"], &[]));
    assert_eq!(set(walk(&c, &format!("{PERIOD}&user=%20AMY.PATEL%20")).await), d.refs(&["V1", "V4"], &[]));
    assert_eq!(set(walk(&c, &format!("{PERIOD}&user=kent.social")).await), d.refs(&[], &["C5"]));
    // An account's SDS user id is that account too.
    let grace = text(&mut app.conn(), "SELECT sds_user_id::text AS s FROM users WHERE username = 'grace.hughes'");
    assert_eq!(set(walk(&c, &format!("{PERIOD}&user={grace}")).await), d.refs(&["V2"], &[]));
    // A viewer id without an account (an NHSD-End-User-ID): its views, and the page says so.
    assert_eq!(set(walk(&c, &format!("{PERIOD}&user=fhir-user-7")).await), d.refs(&["V3"], &[]));
    let page = c.text(&format!("/reports/cp-is081?{PERIOD}&user=fhir-user-7")).await;
    assert!(page.contains("No account has the username"));
    assert!(walk(&c, &format!("{PERIOD}&user=nobody.here")).await.is_empty());

    // Organisation: an ODS code (its users' views) or an LA code (the changes it made).
    assert_eq!(set(walk(&c, &format!("{PERIOD}&organisation=rjz")).await), d.refs(&["V1", "V2", "V4"], &[]));
    assert_eq!(set(walk(&c, &format!("{PERIOD}&organisation=RRK")).await), bulk_views);
    assert_eq!(set(walk(&c, &format!("{PERIOD}&organisation={KENT}")).await), d.refs(&[], &["C1", "C2"]));

    // NHS number, typed with spaces.
    let n1 = &d.n[1];
    let spaced = format!("{}%20{}%20{}", &n1[..3], &n1[3..6], &n1[6..]);
    assert_eq!(set(walk(&c, &format!("{PERIOD}&nhs_number={spaced}")).await), d.refs(&["V1", "V3"], &["C1", "C4"]));

    // LA: views of children it holds or held (Kent's expired item for n4 counts) and changes to
    // its information (whoever made them).
    let mut kent = d.refs(&["V1", "V2", "V3", "V4"], &["C1", "C2", "C3", "C5"]);
    kent.extend(bulk_views.iter().cloned());
    assert_eq!(set(walk(&c, &format!("{PERIOD}&la={KENT}")).await), kent);
    assert_eq!(set(walk(&c, &format!("{PERIOD}&la=e08000003")).await), d.refs(&["V1", "V3", "V5"], &["C4"]));
    assert_eq!(set(walk(&c, &format!("{PERIOD}&la={LEEDS}")).await), bulk_changes);

    // Filters combine; a narrower period narrows.
    assert_eq!(set(walk(&c, &format!("{PERIOD}&la={KENT}&organisation=RJZ")).await), d.refs(&["V1", "V2", "V4"], &[]));
    assert_eq!(set(walk(&c, "from=2025-03-11&to=2025-03-11").await), d.refs(&["V3", "V4"], &[]));
    assert_eq!(
        set(walk(&c, "from=2025-03-31&to=2025-03-31").await),
        d.refs(&["V5"], &[]),
        "31 March ends at 23:00 UTC"
    );

    // What a row shows.
    let page = c.text(&format!("/reports/cp-is081?{PERIOD}&nhs_number={n1}")).await;
    let v1 = row_cells(&page, &d.v("V1"));
    assert_eq!(v1[1..4], ["View", "Dr Amy Patel", "amy.patel"]);
    assert_eq!(v1[4], "Clinical Practitioner Access Role (R8000)");
    assert!(v1[5].ends_with("(RJZ)"));
    assert_eq!(v1[6], "SCRa");
    assert_eq!(v1[8], format!("{} {} {}", &n1[..3], &n1[3..6], &n1[6..]));
    assert_eq!(v1[10], "Yes");
    let v3 = row_cells(&page, &d.v("V3"));
    assert_eq!((v3[3].as_str(), v3[6].as_str(), v3[10].as_str()), ("fhir-user-7", "FHIR", "No"));
    let c4 = row_cells(&page, &d.c("C4"));
    assert_eq!(c4[1..3], ["Change", "Manchester"]);
    assert_eq!(c4[5], "Manchester (E08000003)");
    assert_eq!(c4[7], "Information replaced by an upload");
    assert_eq!(c4[9], "Manchester (E08000003)");
    let page = c.text(&format!("/reports/cp-is081?{PERIOD}&la={KENT}&user=kent.social")).await;
    let c5 = row_cells(&page, &d.c("C5"));
    assert_eq!(c5[2..4], ["Priya Das", "kent.social"]);
    let page = c.text(&format!("/reports/cp-is081?{PERIOD}&nhs_number={}", d.n[5])).await;
    assert_eq!(row_cells(&page, &d.c("C3"))[2], "CP-IS service");
}

#[tokio::test]
async fn cp_is081_pages_walk_every_row_once_in_order_and_the_csv_equals_them() {
    let app = TestApp::spawn(Template::Demo);
    let d = seed(&app);
    let c = app.signed_in("helen.ward").await;
    // The order, worked out independently: newest first; at one instant views, then changes;
    // then the higher id first.
    let mut conn = app.conn();
    let expected: Vec<String> = diesel::sql_query(format!(
        "SELECT ref AS s FROM ( \
           SELECT accessed_at AS t, 1 AS k, id, 'view-' || id AS ref FROM access_events \
            WHERE accessed_at >= '{START}' AND accessed_at < '{END}' \
           UNION ALL \
           SELECT occurred_at, 0, id, 'change-' || id FROM audit_log \
            WHERE action LIKE 'cp.%' AND occurred_at >= '{START}' AND occurred_at < '{END}') x \
         ORDER BY t DESC, k DESC, id DESC"
    ))
    .load::<Str>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|r| r.s)
    .collect();
    assert_eq!(expected.len(), 5 + 60 + 5 + 45);

    // Page by page: 50, 50, 15, across the 105 rows of one instant (15 March 12:00).
    let first = c.text(&format!("/reports/cp-is081?{PERIOD}")).await;
    let (refs, next) = page_refs(&first);
    assert_eq!(refs.len(), 50);
    let next = next.expect("a next page");
    assert!(next.starts_with("/reports/cp-is081?from=2025-03-01&to=2025-03-31&after="), "{next}");
    assert!(!first.contains("id=\"first-page\""));
    let second = c.text(&next).await;
    assert!(second.contains("id=\"first-page\""), "a later page links back to the first");
    let walked = walk(&c, PERIOD).await;
    assert_eq!(walked, expected, "every row once, in order, no gaps");
    assert_eq!(walked[0], d.v("V5"));
    assert_eq!(
        walked[walked.len() - 4..],
        [d.v("V2"), d.v("V1"), d.c("C2"), d.c("C1")],
        "one instant: views, then changes, higher ids first"
    );

    // The Next link keeps the filters.
    let (_, next) = page_refs(&c.text(&format!("/reports/cp-is081?{PERIOD}&la={KENT}&organisation=rrk")).await);
    let next = next.expect("60 rows: a next page");
    assert!(next.contains("&organisation=RRK") && next.contains(&format!("&la={KENT}")), "{next}");
    assert_eq!(walk(&c, &format!("{PERIOD}&la={KENT}&organisation=rrk")).await.len(), 60);

    // The CSV: the same rows in the same order, with the page's columns.
    let runs = report_runs(&app, "CP-IS081");
    let res = c.get(&format!("/reports/cp-is081.csv?{PERIOD}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("cp-is081-2025-03-01-to-2025-03-31.csv"));
    let (header, rows) = parse_csv(&res.text().await.unwrap());
    assert_eq!(header, activity::CSV_HEADER);
    let csv_refs: Vec<String> = rows.iter().map(|r| r[13].clone()).collect();
    assert_eq!(csv_refs, walked, "the CSV equals the pages concatenated");
    let page_v1 = row_cells(&c.text(&format!("/reports/cp-is081?{PERIOD}&user=amy.patel")).await, &d.v("V1"));
    let csv_v1 = rows.iter().find(|r| r[13] == d.v("V1")).unwrap();
    assert_eq!(csv_v1[0], page_v1[0], "the same UK time");
    assert_eq!(csv_v1[0], "10/03/2025 09:00:00 GMT");
    assert_eq!(csv_v1[14], "2025-03-10T09:00:00.000000Z");
    // A filtered CSV equals its filtered pages.
    let res = c.get(&format!("/reports/cp-is081.csv?{PERIOD}&la={KENT}&after=ignored")).await;
    let (_, rows) = parse_csv(&res.text().await.unwrap());
    let kent: Vec<String> = rows.iter().map(|r| r[13].clone()).collect();
    assert_eq!(kent, walk(&c, &format!("{PERIOD}&la={KENT}")).await);
    // Two downloads, one page and the two pages of the Kent walk.
    assert_eq!(report_runs(&app, "CP-IS081"), runs + 5, "each download and page is a run");

    // Walking the keyset in small chunks gives the same; a result over the limit is refused.
    let checked = activity::check(
        &ActivityQuery { from: Some("2025-03-01".into()), to: Some("2025-03-31".into()), ..Default::default() },
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    )
    .unwrap();
    let body = activity::run_csv_with(&mut conn, &checked, Actor::Service, expected.len(), 7).unwrap();
    let (_, rows) = parse_csv(&body);
    assert_eq!(rows.iter().map(|r| r[13].clone()).collect::<Vec<_>>(), expected, "exactly the limit is allowed");
    let refused = activity::run_csv_with(&mut conn, &checked, Actor::Service, expected.len() - 1, 7).unwrap_err();
    assert!(refused.to_string().contains("Narrow the filter"), "{refused}");
}

#[tokio::test]
async fn cp_is081_bad_filters_are_400_and_every_run_is_audited() {
    let app = TestApp::spawn(Template::Demo);
    let d = seed(&app);
    let c = app.signed_in("helen.ward").await;
    let long_user = "u".repeat(201);
    let long_org = "A".repeat(21);
    for (q, says) in [
        ("nhs_number=9990000043", "not a valid NHS number"),
        ("nhs_number=12345", "10 digits"),
        ("nhs_number=abc", "only digits"),
        ("la=E99999999", "no local authority with the code E99999999"),
        ("la=E1%3B--", "local authority code"),
        ("organisation=R%20J%20Z", "ODS code"),
        (&format!("organisation={long_org}"), "ODS code"),
        (&format!("user={long_user}"), "longer than 200"),
        ("after=1741597200000000.v", "next page is not valid"),
        ("after=1741597200000000.x.5", "next page is not valid"),
        ("after=-262000000000000000.c.1", "next page is not valid"),
        ("from=-5000-01-01&to=-5000-01-02", "YYYY-MM-DD"),
        ("from=2025-02-30", "YYYY-MM-DD"),
        ("from=2025-03-02&to=2025-03-01", "starts after it ends"),
    ] {
        let res = c.get(&format!("/reports/cp-is081?{q}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        let page = res.text().await.unwrap();
        assert!(page.contains(says), "{q}: says {says}");
        assert!(page.contains("There is a problem"));
        if !q.starts_with("after") {
            let res = c.get(&format!("/reports/cp-is081.csv?{q}")).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "CSV {q}");
        }
    }
    assert_eq!(report_runs(&app, "CP-IS081"), 0, "a refused filter reads nothing");

    // A run is audited with its filters; the NHS number in the entry's own field.
    let n1 = &d.n[1];
    let q = format!("{PERIOD}&nhs_number={n1}&user=amy.patel&organisation=RJZ&la={KENT}");
    assert_eq!(c.get(&format!("/reports/cp-is081?{q}")).await.status(), StatusCode::OK);
    assert_eq!(c.get(&format!("/reports/cp-is081.csv?{q}")).await.status(), StatusCode::OK);
    let helen = app.count("SELECT id FROM users WHERE username = 'helen.ward'");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'report' = 'CP-IS081' \
             AND actor = 'user:{helen}' AND nhs_number = '{n1}' AND details->>'user' = 'amy.patel' \
             AND details->>'organisation' = 'RJZ' AND details->>'la' = '{KENT}' AND details->>'from' = '2025-03-01' \
             AND details->>'to' = '2025-03-31' AND NOT details ? 'nhs_number'"
        )),
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'format' = 'csv'"),
        1
    );
}

#[tokio::test]
async fn cp_is081_shows_a_tab_opened_through_the_real_path_in_the_default_period() {
    let app = TestApp::spawn(Template::Demo);
    let amy = app.signed_in("amy.patel").await;
    let mia = cpis::seed::demo::fixtures::MIA_THOMPSON;
    assert_eq!(amy.get(&format!("/patients/{mia}/child-care-alert")).await.status(), StatusCode::OK);
    let c = app.signed_in("helen.ward").await;
    let page = c.text("/reports/cp-is081?user=amy.patel").await;
    let (refs, _) = page_refs(&page);
    let opened = app.count(&format!(
        "SELECT max(id) FROM access_events WHERE nhs_number = '{mia}' AND viewer_id = \
         (SELECT sds_user_id::text FROM users WHERE username = 'amy.patel')"
    ));
    assert_eq!(refs, [format!("view-{opened}")]);
    assert!(page.contains("999 000 0042") && page.contains("Dr Amy Patel"));
    // And CP-IS077 counts it among today's openings on screen.
    let summary = c.text("/reports/cp-is077").await;
    let expected = app.count(
        "SELECT count(*) FROM access_events WHERE channel = 'SCRa' \
         AND (accessed_at AT TIME ZONE 'Europe/London')::date > (now() AT TIME ZONE 'Europe/London')::date - 30",
    );
    assert_eq!(figure(&summary, "period-openings-scra"), expected);
}
