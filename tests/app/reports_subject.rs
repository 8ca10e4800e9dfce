//! The subject access report (CP-IS079), "was it held on a date" (CP-IS075) and plans open over
//! two years (CP-IS080), over histories built through the real paths: LA uploads through the
//! mailbox API, the alert tab, and the expiry job.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use reqwest::StatusCode;

use cpis::domain::dates::{anniversary, format_date, uk_date};
use cpis::seed::demo::fixtures::*;

use crate::support::db::execute;
use crate::support::html_text as text_of;
use crate::support::uploads::{file, new_id, record_for, Mailbox, KENT};
use crate::support::{Client, Template, TestApp};

const LEEDS: &str = "E08000035";

/// The cells of every body row of the table with this id (empty when the page has no such table).
fn table(page: &str, id: &str) -> Vec<Vec<String>> {
    let Some(start) = page.find(&format!("<table class=\"nhsuk-table\" id=\"{id}\"")) else {
        return vec![];
    };
    let rest = &page[start..];
    let body = &rest[..rest.find("</table>").expect("the table ends")];
    body.split("<tr class=\"nhsuk-table__row\">")
        .skip(1)
        .map(|row| {
            row.split("<td class=\"nhsuk-table__cell\">")
                .skip(1)
                .map(|cell| text_of(&cell[..cell.find("</td>").expect("the cell ends")]))
                .collect()
        })
        .collect()
}

/// The rows of a CSV download.
fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

fn runs(app: &TestApp, report: &str, nhs: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'report' = '{report}' \
         AND nhs_number = '{nhs}'"
    ))
}

/// A file from Leeds (the builder names the sender as Kent's children's services).
fn leeds_file(sequence: u64, records: &[String]) -> String {
    file(&new_id(), sequence, LEEDS, records)
        .replace("Kent County Council Children's Services", "Leeds City Council Children's Services")
}

/// The instants of the first and last change to what is held for `nhs`, as the audit trail has them.
fn changes_between(app: &TestApp, nhs: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    use cpis::schema::audit_log::dsl::*;
    let times: Vec<DateTime<Utc>> = audit_log
        .filter(nhs_number.eq(nhs))
        .filter(action.like("cp.%"))
        .order(id)
        .select(occurred_at)
        .load(&mut app.conn())
        .unwrap();
    (*times.first().expect("changes"), *times.last().expect("changes"))
}

/// Alfie Moore, with no information in the demo data, gets a history through the real paths:
/// Kent sends a CPP and a LAC; a clinician opens the tab; Leeds sends a LAC with a delete date that
/// has passed; Kent sends an ended CPP (its LAC left out, so removed: CP-IS020); the expiry job then
/// deletes Leeds's LAC at its delete date (CP-IS009) and Kent's CPP a year after its end (CP-IS010).
async fn alfie_history(app: &TestApp) {
    let mut conn = app.conn();
    let kent = Mailbox::new(app, KENT);
    let leeds = Mailbox::new(app, LEEDS);
    let both = record_for(
        &mut conn,
        ALFIE_MOORE,
        "K-77",
        "<ChildProtectionPlan start=\"2024-06-01\"/><LookedAfterChild start=\"2025-02-01\"/>",
    );
    assert_eq!(kent.upload(file(&new_id(), 1, KENT, &[both])).await.accepted, 1);
    let amy = app.signed_in("amy.patel").await;
    assert_eq!(amy.get(&format!("/patients/{ALFIE_MOORE}/child-care-alert")).await.status(), StatusCode::OK);
    let lac =
        record_for(&mut conn, ALFIE_MOORE, "L-5", "<LookedAfterChild start=\"2025-03-01\" delete=\"2026-01-01\"/>");
    assert_eq!(leeds.upload(leeds_file(1, &[lac])).await.accepted, 1);
    let ended =
        record_for(&mut conn, ALFIE_MOORE, "K-77", "<ChildProtectionPlan start=\"2024-06-01\" end=\"2025-01-01\"/>");
    assert_eq!(kent.upload(file(&new_id(), 2, KENT, &[ended])).await.accepted, 1);
    let now = Utc::now();
    let summary = conn.transaction(|c| cpis::jobs::expiry::run(c, now, now)).unwrap();
    assert!(summary["expired"].as_i64().unwrap() >= 1 && summary["deleted_at_delete_date"].as_i64().unwrap() >= 1);
}

async fn reports_user(app: &TestApp) -> Client {
    app.signed_in("helen.ward").await
}

#[tokio::test]
async fn cp_is075_answers_before_during_and_after_a_history_built_through_the_real_paths() {
    let app = TestApp::spawn(Template::Demo);
    alfie_history(&app).await;
    let (first, last) = changes_between(&app, ALFIE_MOORE);
    let (first_day, last_day) = (uk_date(first), uk_date(last));
    let c = reports_user(&app).await;

    // Before the first upload: not held.
    let before = first_day - TimeDelta::days(1);
    let page = c.text(&format!("/reports/cp-is075?nhs_number={ALFIE_MOORE}&date={before}")).await;
    assert!(page.contains(&format!("Not held on {}", format_date(before))), "{page}");
    assert!(table(&page, "held-items").is_empty());

    // The day of the changes: everything held at any moment of it, each with when.
    let res = c.get(&format!("/reports/cp-is075?nhs_number={ALFIE_MOORE}&date={first_day}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains(&format!("Held on {}", format_date(first_day))), "{page}");
    let rows = table(&page, "held-items");
    let kinds = |rows: &[Vec<String>]| {
        let mut v: Vec<(String, String, String, String)> =
            rows.iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[4].clone())).collect();
        v.sort();
        v
    };
    if first_day == last_day {
        let kent = "Kent County Council Children's Services (E10000016)".to_owned();
        let leeds = "Leeds City Council Children's Services (E08000035)".to_owned();
        assert_eq!(
            kinds(&rows),
            vec![
                (kent.clone(), "CPP".into(), "K-77".into(), "".into()),
                (kent.clone(), "CPP".into(), "K-77".into(), "01/01/2025".into()),
                (kent, "LAC".into(), "K-77".into(), "".into()),
                (leeds, "LAC".into(), "L-5".into(), "".into()),
            ],
            "every item held that day, each version once"
        );
        assert!(rows.iter().all(|r| r[7] != "Still held"), "everything was removed later that day");
    } else {
        // The history straddled midnight: the first day holds at least the first upload's items.
        assert!(rows.len() >= 2);
    }
    assert_eq!(runs(&app, "CP-IS075", ALFIE_MOORE), 2, "each answer is an audited run");

    // After everything was removed: nothing held (today's answer covers the day of the removal,
    // so the day after is asked of the same timeline, read from the same trail).
    let timeline = cpis::reports::held_on::load(&mut app.conn(), ALFIE_MOORE).unwrap();
    assert!(timeline.unexplained.is_empty(), "{timeline:?}");
    assert_eq!(timeline.current().count(), 0);
    assert!(!cpis::reports::held_on::held_on(&timeline, last_day + TimeDelta::days(1)).held());
    assert!(cpis::reports::held_on::held_on(&timeline, last_day).held());

    // The demo data answers too: the seed records each child's items in the trail.
    let today = uk_date(Utc::now());
    let page = c.text(&format!("/reports/cp-is075?nhs_number={MIA_THOMPSON}&date={today}")).await;
    let mia: Vec<String> = table(&page, "held-items").into_iter().map(|r| r[1].clone()).collect();
    assert_eq!(mia, vec!["LAC", "CPP"], "{page}");
    let page =
        c.text(&format!("/reports/cp-is075?nhs_number={MIA_THOMPSON}&date={}", today - TimeDelta::days(1))).await;
    if uk_date(changes_between(&app, MIA_THOMPSON).0) == today {
        assert!(page.contains("Not held on"), "seeded today: not held yesterday");
    }
}

#[tokio::test]
async fn cp_is079_shows_every_section_and_the_csv_carries_the_same_rows() {
    let app = TestApp::spawn(Template::Demo);
    alfie_history(&app).await;
    let c = reports_user(&app).await;
    let res = c.get(&format!("/reports/cp-is079?nhs_number={ALFIE_MOORE}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();

    // The demographic details.
    let pds = table(&page, "pds");
    let detail = |k: &str| pds.iter().find(|r| r[0] == k).map(|r| r[1].clone()).unwrap_or_default();
    assert_eq!(detail("NHS number"), "999 000 0131");
    assert_eq!((detail("Given name").as_str(), detail("Family name").as_str()), ("Alfie", "Moore"));
    assert_eq!(detail("Address"), "8 Broad Street, Birmingham");
    // Nothing held now; what the expiry job deleted is kept, with its reason.
    assert!(page.contains("id=\"current-items-empty\""));
    let mut deleted: Vec<(String, String, String, String)> = table(&page, "deleted-items")
        .into_iter()
        .map(|r| (r[1].clone(), r[2].clone(), r[3].clone(), r[9].clone()))
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            (LEEDS.into(), "LAC".into(), "L-5".into(), "delete_date".into()),
            (KENT.into(), "CPP".into(), "K-77".into(), "expired".into()),
        ]
    );
    // Every change, in order, with who and before and after.
    let changes = table(&page, "changes");
    let what: Vec<&str> = changes.iter().map(|r| r[3].split(" (").next().unwrap()).collect();
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert!(what[..3].iter().all(|w| w.starts_with("Record replaced by upload")), "{what:?}");
    let mut service: Vec<&str> = what[3..].to_vec();
    service.sort();
    assert_eq!(service, vec!["CPP logically deleted by the service", "LAC logically deleted by the service"]);
    assert!(changes[0][1].starts_with("Local authority Kent"), "{:?}", changes[0]);
    assert_eq!(changes[0][4], "Nothing");
    assert_eq!(
        changes[0][5],
        "CPP, LA child id K-77, start 01/06/2024, end none, delete date none; \
         LAC, LA child id K-77, start 01/02/2025, end none, delete date none"
    );
    assert_eq!(changes[2][4], changes[0][5], "the second Kent upload's before is the first one's after");
    assert_eq!(changes[2][5], "CPP, LA child id K-77, start 01/06/2024, end 01/01/2025, delete date none");
    assert_eq!(changes[3][1], "The CP-IS service (scheduled job)");
    // What was held when: four spans, none still held.
    let timeline = table(&page, "timeline");
    assert_eq!(timeline.len(), 4, "{timeline:?}");
    assert!(timeline.iter().all(|r| r[8] != "Still held"));
    // The access, with who, role, organisation, channel and whether it is shown.
    let accesses = table(&page, "accesses");
    assert_eq!(accesses.len(), 1);
    assert_eq!(accesses[0][1], "Dr Amy Patel");
    assert!(accesses[0][3].contains("R8000") && accesses[0][4].contains("RJZ"), "{:?}", accesses[0]);
    assert_eq!((accesses[0][5].as_str(), accesses[0][6].as_str()), ("SCRa", "Yes"));
    assert!(page.contains("id=\"inactive-empty\""));
    let other = table(&page, "other-audit");
    assert!(other.iter().any(|r| r[2] == "access.alert_tab_opened"));
    // The page links to CP-IS075 for this number.
    assert!(page.contains("action=\"/reports/cp-is075\"") && page.contains(&format!("value=\"{ALFIE_MOORE}\"")));
    assert!(!page.contains("The audit trail and the stored information differ"));
    assert_eq!(runs(&app, "CP-IS079", ALFIE_MOORE), 1);

    // The CSV: the same cells, section by section, one line per cell.
    let res = c.get(&format!("/reports/cp-is079.csv?nhs_number={ALFIE_MOORE}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let (header, rows) = csv_rows(&res.text().await.unwrap());
    assert_eq!(header, vec!["section", "row", "column", "value"]);
    for section in ["pds", "deleted-items", "changes", "timeline", "accesses", "other-audit"] {
        let from_csv: Vec<Vec<String>> = {
            let mut by_row: Vec<Vec<String>> = Vec::new();
            for r in rows.iter().filter(|r| r[0] == section) {
                let i: usize = r[1].parse().unwrap();
                if by_row.len() < i {
                    by_row.push(Vec::new());
                }
                by_row[i - 1].push(r[3].clone());
            }
            by_row
        };
        let on_page = table(&page, section);
        if section == "other-audit" {
            // The CSV's run sees the page's run, recorded after the page was read.
            assert_eq!(from_csv.len(), on_page.len() + 1);
            assert_eq!(from_csv[..on_page.len()], on_page[..]);
            assert_eq!(from_csv.last().unwrap()[2], "report.run");
        } else {
            assert_eq!(from_csv, on_page, "section {section}");
        }
    }
    assert!(!rows.iter().any(|r| r[0] == "current-items" || r[0] == "inactive"));
    assert_eq!(runs(&app, "CP-IS079", ALFIE_MOORE), 2, "the download is a run too");
}

#[tokio::test]
async fn cp_is079_says_when_nothing_is_held_and_covers_the_demo_fixtures() {
    let app = TestApp::spawn(Template::Demo);
    let c = reports_user(&app).await;
    // A valid number that nothing is held against.
    let nobody = cpis::seed::demo::test_number(900_000);
    let res = c.get(&format!("/reports/cp-is079?nhs_number={nobody}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("Nothing is held against this NHS number"), "{page}");
    assert!(table(&page, "changes").is_empty());
    assert_eq!(runs(&app, "CP-IS079", &nobody), 1);

    // Demo data: Mia's seeded items are in the trail and the timeline, with her 30 accesses.
    let page = c.text(&format!("/reports/cp-is079?nhs_number={MIA_THOMPSON}")).await;
    assert_eq!(table(&page, "current-items").len(), 2);
    let changes = table(&page, "changes");
    assert_eq!(changes.len(), 2);
    assert!(changes
        .iter()
        .all(|r| r[1] == "An operator (command line or data load)" && r[3] == "Record loaded (no upload)"));
    let timeline = table(&page, "timeline");
    assert_eq!(timeline.len(), 2);
    assert!(timeline.iter().all(|r| r[8] == "Still held"));
    let accesses = table(&page, "accesses");
    assert_eq!(accesses.len(), 30);
    assert!(accesses.iter().all(|r| r[6] == "Yes"), "thirty people, each shown once");

    assert!(!page.contains("The audit trail and the stored information differ"));

    // Harry Green: the item replaced in the demo data is kept as logically deleted.
    let page = c.text(&format!("/reports/cp-is079?nhs_number={HARRY_GREEN}")).await;
    let deleted = table(&page, "deleted-items");
    assert_eq!(deleted.len(), 1);
    assert_eq!((deleted[0][2].as_str(), deleted[0][9].as_str()), ("LAC", "replaced"));
    assert!(table(&page, "current-items").iter().any(|r| r[2] == "CPP" && !r[6].is_empty()), "its delete date shown");

    // An inactive-number notice (message 06) appears in its section.
    let mut conn = app.conn();
    cpis::audit::record(
        &mut conn,
        cpis::audit::Event::new(cpis::audit::Actor::Operator, "cp.number_inactive_notified")
            .about(OLIVER_OLD_NUMBER)
            .details(serde_json::json!({
                "la_code": KENT, "message_id": "00000000-0000-4000-8000-000000000006",
                "reason": "superseded", "new_nhs_number": OLIVER_BENNETT,
            })),
    )
    .unwrap();
    let page = c.text(&format!("/reports/cp-is079?nhs_number={OLIVER_OLD_NUMBER}")).await;
    let inactive = table(&page, "inactive");
    assert_eq!(inactive.len(), 1);
    assert_eq!(inactive[0][2..4], ["superseded".to_owned(), OLIVER_BENNETT.to_owned()]);
    let pds = table(&page, "pds");
    assert!(pds.iter().any(|r| r[0] == "Superseded by" && r[1] == OLIVER_BENNETT));
    // The current number's report names the earlier one and links to its report.
    let page = c.text(&format!("/reports/cp-is079?nhs_number={OLIVER_BENNETT}")).await;
    assert!(page.contains(&format!("href=\"/reports/cp-is079?nhs_number={OLIVER_OLD_NUMBER}\"")), "{page}");

    // A restricted record: shown in full, with a warning to handle it accordingly.
    let page = c.text(&format!("/reports/cp-is079?nhs_number={AVA_HALL}")).await;
    assert!(page.contains("Restricted record (S-flag)"));
    assert!(table(&page, "pds").iter().any(|r| r[0] == "Address" && r[1] == "Withheld"));

    // Information stored without a recorded change: the report says the two differ.
    execute(
        &mut conn,
        &format!(
            "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date) \
             VALUES ('{JANE_SMITH}', '{LEEDS}', 'LAC', 'L-1', '2026-01-05')"
        ),
    );
    let page = c.text(&format!("/reports/cp-is079?nhs_number={JANE_SMITH}")).await;
    assert!(page.contains("The audit trail and the stored information differ"));
    assert_eq!(table(&page, "current-items").len(), 2);
    assert_eq!(table(&page, "timeline").len(), 1, "the trail knows the seeded CPP only");
}

/// A CPP (or other item) stored directly, for the CP-IS080 dataset.
fn store(
    conn: &mut PgConnection,
    nhs: &str,
    la: &str,
    kind: &str,
    (start, end, delete): (NaiveDate, Option<NaiveDate>, Option<NaiveDate>),
    deleted: bool,
) {
    let date = |d: Option<NaiveDate>| d.map_or("NULL".to_owned(), |d| format!("'{d}'"));
    execute(
        conn,
        &format!(
            "INSERT INTO cp_items (nhs_number, la_code, item_type, la_child_id, start_date, end_date, delete_date, \
             deleted_at, deleted_reason) VALUES ('{nhs}', '{la}', '{kind}', 'C-{nhs}', '{start}', {}, {}, {}, {})",
            date(end),
            date(delete),
            if deleted { "now()" } else { "NULL" },
            if deleted { "'expired'" } else { "NULL" },
        ),
    );
}

#[tokio::test]
async fn cp_is080_lists_exactly_the_plans_open_over_two_years() {
    let app = TestApp::spawn(Template::Demo);
    let mut conn = app.conn();
    execute(&mut conn, "DELETE FROM cp_items");
    let today = uk_date(Utc::now());
    let two_years = anniversary(today, -2);
    // Two days either side of the edge, so a run across midnight does not move a plan over it
    // (the edge day itself is unit-tested in src/reports/open_plans.rs).
    let over = two_years - TimeDelta::days(2);
    let under = two_years + TimeDelta::days(2);
    let long_ago = NaiveDate::from_ymd_opt(2015, 1, 10).unwrap();
    let n = |i: usize| cpis::seed::demo::test_number(100 + i);
    let later = Some(today + TimeDelta::days(100));
    store(&mut conn, &n(1), KENT, "CPP", (over, None, None), false); // listed
    store(&mut conn, &n(2), KENT, "CPP", (long_ago, None, None), false); // listed
    store(&mut conn, &n(3), LEEDS, "CPP", (over, None, None), false); // listed
    store(&mut conn, &n(4), KENT, "CPP", (under, None, None), false); // under two years
    store(&mut conn, &n(5), KENT, "UCPP", (over, later, None), false); // unborn plan (and has an end)
    store(&mut conn, &n(6), KENT, "LAC", (over, None, None), false); // looked-after status
    store(&mut conn, &n(7), KENT, "CPP", (over, Some(today), None), false); // end-dated
    store(&mut conn, &n(8), KENT, "CPP", (over, None, later), false); // delete-dated
    store(&mut conn, &n(9), KENT, "CPP", (over, None, None), true); // logically deleted

    let c = reports_user(&app).await;
    let res = c.get("/reports/cp-is080").await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let plans = table(&page, "plans");
    let listed: Vec<(&str, &str, &str)> = plans.iter().map(|r| (r[1].as_str(), r[2].as_str(), r[4].as_str())).collect();
    let (over_s, long_s) = (format_date(over), format_date(long_ago));
    assert_eq!(
        listed,
        vec![
            (KENT, n(2).as_str(), long_s.as_str()),
            (LEEDS, n(3).as_str(), over_s.as_str()),
            (KENT, n(1).as_str(), over_s.as_str())
        ],
        "longest open first; UCPP, LAC, under two years, end-dated, delete-dated and deleted left out"
    );
    assert!(plans[0][5].ends_with("days") || plans[0][5].ends_with("day"), "{:?}", plans[0]);
    assert_eq!(plans[1][6], (today - over).num_days().to_string());
    assert_eq!(plans[0][3], format!("C-{}", n(2)));
    let per_la: Vec<(String, String)> =
        table(&page, "per-la").into_iter().map(|r| (r[1].clone(), r[2].clone())).collect();
    assert_eq!(per_la, vec![(KENT.to_owned(), "2".to_owned()), (LEEDS.to_owned(), "1".to_owned())]);
    assert!(table(&page, "per-la")[0][0].starts_with("Kent"));

    // The CSV: the same plans.
    let res = c.get("/reports/cp-is080.csv").await;
    assert_eq!(res.status(), StatusCode::OK);
    let (header, rows) = csv_rows(&res.text().await.unwrap());
    assert_eq!(header[..3], ["local_authority", "la_code", "nhs_number"]);
    let from_csv: Vec<(&str, &str, String)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str(), format_date(NaiveDate::parse_from_str(&r[4], "%Y-%m-%d").unwrap())))
        .collect();
    let from_page: Vec<(&str, &str, String)> = listed.iter().map(|(a, b, c)| (*a, *b, (*c).to_owned())).collect();
    assert_eq!(from_csv, from_page);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'report.run' AND details->>'report' = 'CP-IS080'"),
        2
    );
}

#[tokio::test]
async fn bad_input_is_400_with_its_message_and_a_clinician_is_refused() {
    let app = TestApp::spawn(Template::Demo);
    let c = reports_user(&app).await;
    for (path, message) in [
        ("/reports/cp-is079?nhs_number=123", "An NHS number is 10 digits long"),
        ("/reports/cp-is079?nhs_number=9434765918", "This is not a valid NHS number: check the digits"),
        ("/reports/cp-is079?nhs_number=943A765919", "An NHS number contains only digits"),
        ("/reports/cp-is079.csv?nhs_number=12", "An NHS number is 10 digits long"),
        ("/reports/cp-is079.csv", "Give the NHS number"),
        ("/reports/cp-is075?nhs_number=9990000042&date=22/11/2026", "write it as YYYY-MM-DD"),
        ("/reports/cp-is075?nhs_number=9990000042&date=2025-02-29", "is not a date"),
        ("/reports/cp-is075?nhs_number=9990000042&date=2999-01-01", "is in the future"),
        ("/reports/cp-is075?nhs_number=9990000042&date=", "Enter the date"),
        ("/reports/cp-is075?nhs_number=99900&date=2026-01-01", "An NHS number is 10 digits long"),
    ] {
        let res = c.get(path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        let page = res.text().await.unwrap();
        assert!(text_of(&page).contains(message), "{path}: {page}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'report.run'"),
        0,
        "a refused request runs nothing"
    );
    // The forms alone are not runs.
    for path in ["/reports/cp-is079", "/reports/cp-is075"] {
        let res = c.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(res.text().await.unwrap().contains("name=\"nhs_number\""));
    }
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'report.run'"), 0);

    // A clinician (no reports permission) is refused every one of them, and nothing is recorded.
    let amy = app.signed_in("amy.patel").await;
    for path in [
        format!("/reports/cp-is079?nhs_number={MIA_THOMPSON}"),
        format!("/reports/cp-is079.csv?nhs_number={MIA_THOMPSON}"),
        format!("/reports/cp-is075?nhs_number={MIA_THOMPSON}&date=2026-01-01"),
        "/reports/cp-is080".to_owned(),
        "/reports/cp-is080.csv".to_owned(),
    ] {
        let res = amy.get(&path).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'report.run'"), 0);

    // A Caldicott Guardian may run them, and the run names the child and who ran it.
    let owen = app.signed_in("owen.price").await;
    let res = owen.get(&format!("/reports/cp-is079?nhs_number={MIA_THOMPSON}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let owen_id = app.count("SELECT id FROM users WHERE username = 'owen.price'");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'report.run' AND actor = 'user:{owen_id}' \
             AND nhs_number = '{MIA_THOMPSON}' AND details->>'report' = 'CP-IS079'"
        )),
        1
    );
}
