//! The patient record and the Child Care Alert tab: every visibility rule over HTTP
//! (CP-IS041, CP-IS047, CP-IS048, CP-IS051, CP-IS053 to CP-IS058, CP-IS067).

use cpis::seed::demo::fixtures::*;
use reqwest::StatusCode;

use crate::support::{Template, TestApp};

fn accesses(app: &TestApp, nhs: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM access_events WHERE nhs_number = '{nhs}'"))
}

fn tab(nhs: &str) -> String {
    format!("/patients/{nhs}/child-care-alert")
}

#[tokio::test]
async fn tab_open_records_access_but_page_view_does_not() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let before = accesses(&app, NOAH_WILLIAMS);
    let page = c.text(&format!("/patients/{NOAH_WILLIAMS}")).await;
    assert!(page.contains(&tab(NOAH_WILLIAMS)), "the record offers the tab");
    assert_eq!(accesses(&app, NOAH_WILLIAMS), before, "CP-IS058: showing the tab's link records nothing");
    let res = c.get(&tab(NOAH_WILLIAMS)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(accesses(&app, NOAH_WILLIAMS), before + 1, "CP-IS067: opening the tab records the access at once");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'access.alert_tab_opened' AND nhs_number = '{NOAH_WILLIAMS}'"
        )),
        1,
        "the access is audited in the same transaction"
    );
}

#[tokio::test]
async fn without_b0107_there_is_no_tab_and_its_url_is_forbidden() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("lee.carter").await; // receptionist: B0264 only
    let page = c.text(&format!("/patients/{NOAH_WILLIAMS}")).await;
    assert!(page.contains("999 000 0050"), "Patient Details are shown");
    assert!(!page.contains("child-care-alert"), "CP-IS056: no tab, nor a hint of one");
    assert!(!page.contains("Child Care Alert"));
    let res = c.get(&tab(NOAH_WILLIAMS)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(accesses(&app, NOAH_WILLIAMS), 3, "only the three seeded accesses");
}

#[tokio::test]
async fn a_role_without_patient_trace_cannot_search() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("ravi.shah").await; // RA manager
    assert_eq!(c.get("/search").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(&format!("/patients/{NOAH_WILLIAMS}")).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(c.get(&tab(NOAH_WILLIAMS)).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn only_midwives_see_unborn_plans() {
    let app = TestApp::spawn(Template::Demo);
    // Amelia Hart holds her own CPP and an unborn plan.
    let clinician = app.signed_in("amy.patel").await;
    let page = clinician.text(&tab(AMELIA_HART)).await;
    assert!(page.contains("Child protection plan"));
    assert!(!page.contains("Unborn child protection plan"), "CP-IS041");
    let midwife = app.signed_in("grace.hughes").await;
    let page = midwife.text(&tab(AMELIA_HART)).await;
    assert!(page.contains("Child protection plan"));
    assert!(page.contains("Unborn child protection plan"));

    // Sarah Collins holds only an unborn plan: a non-midwife sees no tab at all.
    let record = clinician.text(&format!("/patients/{SARAH_COLLINS}")).await;
    assert!(!record.contains("child-care-alert"));
    assert_eq!(clinician.get(&tab(SARAH_COLLINS)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(accesses(&app, SARAH_COLLINS), 0, "nothing shown, nothing recorded");
    let record = midwife.text(&format!("/patients/{SARAH_COLLINS}")).await;
    assert!(record.contains(&tab(SARAH_COLLINS)));
    assert_eq!(midwife.get(&tab(SARAH_COLLINS)).await.status(), StatusCode::OK);
    assert_eq!(accesses(&app, SARAH_COLLINS), 1);
}

#[tokio::test]
async fn no_retrievable_information_means_no_tab() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    // Ended 400 days ago (CP-IS010), past its delete date or replaced (CP-IS009), nothing at all.
    for nhs in [ELLA_WRIGHT, HARRY_GREEN, ALFIE_MOORE] {
        let record = c.text(&format!("/patients/{nhs}")).await;
        assert!(!record.contains("child-care-alert"), "{nhs}: CP-IS055");
        assert_eq!(c.get(&tab(nhs)).await.status(), StatusCode::NOT_FOUND, "{nhs}");
        assert_eq!(accesses(&app, nhs), 0, "{nhs}");
    }
    // Ended 300 days ago: still shown (CP-IS032), with its end date.
    let page = c.text(&tab(JACK_ROBINSON)).await;
    assert!(page.contains("Child protection plan"));
}

#[tokio::test]
async fn a_plan_left_open_past_the_18th_birthday_is_shown_ended_on_it() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let page = c.text(&tab(CHLOE_EVANS)).await;
    let birth: chrono::NaiveDate = {
        use cpis::schema::patients::dsl::*;
        use diesel::prelude::*;
        patients.find(CHLOE_EVANS).select(birth_date).first(&mut app.conn()).unwrap()
    };
    let eighteenth = cpis::domain::dates::anniversary(birth, 18);
    assert!(page.contains(&cpis::domain::dates::format_date(eighteenth)), "CP-IS030: end-dated on the 18th birthday");
}

#[tokio::test]
async fn the_tab_shows_contacts_and_items_but_never_the_la_child_id_or_delete_dates() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let page = c.text(&tab(MIA_THOMPSON)).await;
    for expected in ["Kent", "E10000016", "Manchester", "E08000003", "Emergency duty team", "Office hours", "01632 960"]
    {
        assert!(page.contains(expected), "{expected}");
    }
    assert!(page.contains("Looked after child"));
    assert!(page.contains("/local-authorities/E10000016"), "linked to the LA's page");
    let child_ids: Vec<String> = {
        use cpis::schema::cp_items::dsl::*;
        use diesel::prelude::*;
        cp_items.filter(nhs_number.eq(MIA_THOMPSON)).select(la_child_id).load(&mut app.conn()).unwrap()
    };
    for id in child_ids {
        assert!(!page.contains(&id), "CP-IS051: the LA's child id is never shown");
    }
    assert!(!page.to_lowercase().contains("delete"));
    // The patient banner identifies the child beyond doubt on every tab (CP-NHS013).
    assert!(page.contains("999 000 0042") && page.contains("Mia THOMPSON") && page.contains("Female"));
}

#[tokio::test]
async fn the_history_shows_at_most_25_newest_first_in_readable_form() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let page = c.text(&tab(MIA_THOMPSON)).await;
    let table = page.split("access-history-table").nth(1).unwrap();
    let rows = table.matches("<tr class=\"nhsuk-table__row\">").count();
    assert_eq!(rows, 25, "CP-IS048: 31 shown accesses, the newest 25 listed");
    let first = table.split("<tr class=\"nhsuk-table__row\">").nth(1).unwrap();
    assert!(first.contains("Dr Amy Patel"), "newest first: this access");
    assert!(first.contains("Clinical Practitioner Access Role"), "job role by name");
    assert!(first.contains("King&#39;s College Hospital NHS Foundation Trust"), "organisation in readable form");
    assert!(first.contains(" GMT") || first.contains(" BST"), "CP-IS045: time with its zone");
}

#[tokio::test]
async fn a_second_opening_within_24_hours_is_recorded_but_shown_once() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let _ = c.text(&tab(NOAH_WILLIAMS)).await;
    let page = c.text(&tab(NOAH_WILLIAMS)).await;
    assert_eq!(accesses(&app, NOAH_WILLIAMS), 5, "CP-IS047: every access is stored");
    // The seeded viewer who looked twice within 24 hours is listed once, and so is this one.
    let table = page.split("access-history-table").nth(1).unwrap();
    let rows: Vec<&str> = table.split("<tr class=\"nhsuk-table__row\">").skip(1).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r.contains("Dr Amy Patel")).count(), 1);
}

#[tokio::test]
async fn a_superseded_number_leads_to_the_current_record_and_its_information() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let res = c.get(&format!("/patients/{OLIVER_OLD_NUMBER}")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("/patients/{OLIVER_BENNETT}")));
    let page = c.text(&location).await;
    assert!(page.contains("999 000 0026 has been replaced by 999 000 0034"));
    // Kent's plan is still held under the old number and shows on the current record.
    assert!(page.contains(&tab(OLIVER_BENNETT)));
    let alert = c.text(&tab(OLIVER_BENNETT)).await;
    assert!(alert.contains("Kent") && alert.contains("Child protection plan"));
}

#[tokio::test]
async fn the_tab_cannot_be_opened_from_another_site() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let res = c.http.get(app.url(&tab(NOAH_WILLIAMS))).header("Sec-Fetch-Site", "cross-site").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(accesses(&app, NOAH_WILLIAMS), 3, "nothing recorded");
}

#[tokio::test]
async fn restricted_records_never_show_address_or_gp() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let page = c.text(&format!("/patients/{AVA_HALL}")).await;
    assert!(page.contains("Not shown: this is a restricted record"));
    assert!(!page.contains("Withheld") && !page.contains("SE5 9RS") && !page.contains("Y01234"));
    let page = c.text(&format!("/patients/{NOAH_WILLIAMS}")).await;
    assert!(page.contains("LS9 7TF"));
}

#[tokio::test]
async fn malformed_and_unknown_numbers_in_the_path_are_404() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    for path in [
        "/patients/123",
        "/patients/9990000019",
        "/patients/%00",
        &format!("/patients/{LEO_BAKER}"),
        "/patients/9990009990/child-care-alert",
    ] {
        assert_eq!(c.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn local_authority_directory_and_pages() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let all = c.text("/local-authorities").await;
    assert!(all.contains("152 local authorities"));
    let kent = c.text("/local-authorities?q=kent").await;
    assert!(kent.contains("E10000016") && kent.contains("1 local authority"));
    let by_code = c.text("/local-authorities?q=E10000016").await;
    assert!(by_code.contains("Kent"));
    let page = c.text("/local-authorities/E10000016").await;
    assert!(
        page.contains("Emergency duty team")
            && page.contains("01632 960")
            && page.contains("Contact details last changed")
    );
    assert_eq!(c.get("/local-authorities/NOPE").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_plan_past_its_delete_date_goes_while_the_looked_after_status_stays() {
    let app = TestApp::spawn(Template::Demo);
    // CP-IS009: Noah's CPP is logically deleted on its delete date; his LAC is untouched.
    crate::support::db::execute(
        &mut app.conn(),
        &format!(
            "UPDATE cp_items SET delete_date = current_date WHERE nhs_number = '{NOAH_WILLIAMS}' AND item_type = 'CPP'"
        ),
    );
    let c = app.signed_in("amy.patel").await;
    let page = c.text(&tab(NOAH_WILLIAMS)).await;
    assert!(page.contains("Looked after child"));
    assert!(!page.contains("Child protection plan"));
}

/// CP-IS047 under concurrency: the same clinician opening the same child's tab many times at once
/// is shown in the history once. The openings are decided one after another (in the access
/// recorder's queue order, and under the child's lock across batches), so only the first finds no
/// earlier shown access.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openings_at_the_same_moment_are_decided_one_after_another() {
    const AT_ONCE: usize = 12;
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    let before = accesses(&app, NOAH_WILLIAMS);
    let max_id = app.count("SELECT coalesce(max(id), 0) FROM access_events");
    let path = tab(NOAH_WILLIAMS);
    let answers = futures_util::future::join_all((0..AT_ONCE).map(|_| c.get(&path))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(accesses(&app, NOAH_WILLIAMS), before + AT_ONCE as i64, "every opening is recorded");
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM access_events WHERE id > {max_id} AND shown")),
        1,
        "one of the openings is shown, the others fall within its 24 hours"
    );
}

/// CP-IS047 at the database, at the window's edges: the record reads only the child's shown
/// accesses of the last 24 hours (`access_history::window_start`), and decides as if it read them
/// all. Exactly 24 hours after the viewer's last shown access is shown, a second less is not, and
/// a shown access stamped after this one (decided first) hides it.
#[test]
fn the_first_access_rule_holds_at_the_edges_of_its_window() {
    use chrono::{TimeDelta, TimeZone, Utc};
    use cpis::cpis::access;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let viewer = crate::support::api_viewer;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let day = TimeDelta::hours(24);
    let second = TimeDelta::seconds(1);
    // (viewer, time of an earlier shown access, time of this one, shown?)
    for (who, earlier, at, shown) in [
        ("edge-a", t0, t0 + day, true),
        ("edge-b", t0, t0 + day - second, false),
        ("edge-c", t0 + second, t0, false),
        ("edge-d", t0 - TimeDelta::days(30), t0, true),
    ] {
        let first = access::record(&mut conn, NOAH_WILLIAMS, &viewer(who), earlier).unwrap();
        assert!(first.shown, "{who}: the first access is shown");
        let next = access::record(&mut conn, NOAH_WILLIAMS, &viewer(who), at).unwrap();
        assert_eq!(next.shown, shown, "{who}: shown access at {earlier}, this one at {at}");
    }
    // Another viewer's shown access in the window hides nothing of this viewer's.
    assert!(access::record(&mut conn, NOAH_WILLIAMS, &viewer("edge-e"), t0 + second).unwrap().shown);
    // The window follows shown accesses only: shown at 0 h, hidden at 23 h, shown again at 24 h
    // (the hidden one at 23 h does not restart the window).
    let chain: Vec<bool> = [t0, t0 + TimeDelta::hours(23), t0 + day]
        .into_iter()
        .map(|at| access::record(&mut conn, NOAH_WILLIAMS, &viewer("edge-f"), at).unwrap().shown)
        .collect();
    assert_eq!(chain, [true, false, true]);
}

/// CP-IS047 with a child viewed by many people in a day (issue 8: the viewer's own shown access is
/// looked up by viewer, migration 000032, not found among the day's others): a viewer's shown
/// access still hides their next within 24 hours when thirty others viewed the child in between,
/// more than the history's 25 lines, and still not one of the others' hides another's.
#[test]
fn a_viewers_first_access_is_found_however_many_others_viewed_the_child_that_day() {
    use chrono::{TimeDelta, TimeZone, Utc};
    use cpis::cpis::access;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let viewer = crate::support::api_viewer;
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    assert!(access::record(&mut conn, NOAH_WILLIAMS, &viewer("busy-day-first"), t0).unwrap().shown);
    for i in 0..30 {
        let at = t0 + TimeDelta::minutes(10 + i);
        let other = access::record(&mut conn, NOAH_WILLIAMS, &viewer(&format!("busy-day-{i}")), at).unwrap();
        assert!(other.shown, "each other viewer's first access is shown");
    }
    let again = t0 + TimeDelta::hours(23);
    assert!(!access::record(&mut conn, NOAH_WILLIAMS, &viewer("busy-day-first"), again).unwrap().shown);
    let next_day = t0 + TimeDelta::hours(24);
    assert!(access::record(&mut conn, NOAH_WILLIAMS, &viewer("busy-day-first"), next_day).unwrap().shown);
}

/// Issue 8 (migration 000033): the tab's history (CP-IS048) is read from its index alone once the
/// table's pages are marked all-visible, which only vacuum does; and autovacuum visits the access
/// table after every 10,000 inserts rather than after a fifth of the table. Counted in the read's
/// own transaction: the table's blocks it fetched (the visibility map's page among them).
/// The demo's table is small enough that a read of it all would be planned: the planner is steered
/// to the indexes, as on a national table.
#[test]
fn the_history_is_read_from_its_index_alone_once_the_table_is_vacuumed() {
    use crate::support::db::{count, execute, texts};
    use chrono::{TimeDelta, TimeZone, Utc};
    use cpis::cpis::{access, reference_names::ReferenceNames};
    use std::time::Duration;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    // Vacuum marks a page all-visible only once its rows' commits are on disk, as they are in
    // service; the test cluster otherwise lets commits go before they are.
    execute(&mut conn, "SET synchronous_commit = on");
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    for i in 0..30 {
        let viewer = crate::support::api_viewer(&format!("index-only-{i}"));
        assert!(access::record(&mut conn, NOAH_WILLIAMS, &viewer, t0 + TimeDelta::minutes(i)).unwrap().shown);
        // Other children's accesses between, as on a national table: each of this child's on a
        // page of its own.
        execute(
            &mut conn,
            &format!(
                "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
                     organisation_code, channel, shown) \
                 SELECT '{MIA_THOMPSON}', now(), 'filler-' || g, 'Filler', 'R8000', 'RJZ', 'SCRa', false \
                 FROM generate_series(1, 80) AS g"
            ),
        );
    }
    let names = ReferenceNames::new(Duration::from_secs(3600), Duration::from_secs(3600));
    execute(&mut conn, "SET enable_seqscan = off");
    execute(&mut conn, "SET enable_bitmapscan = off");
    let blocks_read = |conn: &mut diesel::PgConnection| {
        // The counter holds what this connection has not yet reported, which it reports only
        // outside a transaction: read before and after, inside one.
        let fetched = "SELECT pg_stat_get_xact_blocks_fetched('access_events'::regclass)";
        execute(conn, "BEGIN");
        let start = count(conn, fetched);
        let history = access::history(conn, &names, &[NOAH_WILLIAMS.to_owned()]).unwrap();
        assert_eq!(history.len(), 25);
        let n = count(conn, fetched) - start;
        execute(conn, "COMMIT");
        n
    };
    let before = blocks_read(&mut conn);
    // A vacuum leaves a page unmarked while another process holds it (FREEZE waits for each
    // page's cleanup lock instead of skipping it) or while a snapshot older than its rows is held
    // in this database (an autoanalyze, under a loaded test run: this test failed so twice in
    // full runs); autovacuum's next visit marks it. So vacuum again, a bounded number of times,
    // until the marking is done.
    let mut after = i64::MAX;
    for _ in 0..50 {
        execute(&mut conn, "VACUUM (FREEZE) access_events");
        after = blocks_read(&mut conn);
        if after <= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(after < before, "vacuumed, the history fetches fewer of the table's blocks ({after}, before {before})");
    assert!(before >= 20, "unvacuumed, each line is fetched from its page: {before}");
    assert!(after <= 1, "vacuumed, only the visibility map's: {after}");
    let options =
        texts(&mut conn, "SELECT array_to_string(reloptions, ',') AS s FROM pg_class WHERE relname = 'access_events'");
    assert_eq!(options, ["autovacuum_vacuum_insert_scale_factor=0,autovacuum_vacuum_insert_threshold=10000"]);
}

fn opening(nhs: &str, who: &str, at: chrono::DateTime<chrono::Utc>) -> cpis::cpis::recorder::Opening {
    cpis::cpis::recorder::Opening {
        nhs_number: nhs.to_owned(),
        history_of: vec![nhs.to_owned()],
        viewer: crate::support::api_viewer(who),
        actor: cpis::audit::Actor::Anonymous,
        at,
        exchange: None,
        read_ahead: None,
    }
}

/// [`opening`] of the tab on screen (SCRa), whose history is shown: through the tab thread a FHIR
/// search's opening reads none.
fn tab_opening(nhs: &str, who: &str, at: chrono::DateTime<chrono::Utc>) -> cpis::cpis::recorder::Opening {
    let viewer =
        cpis::cpis::access::Viewer { channel: cpis::cpis::access::Channel::Scra, ..crate::support::api_viewer(who) };
    cpis::cpis::recorder::Opening { viewer, ..opening(nhs, who, at) }
}

/// Tabs opened together are read in one statement by the recorder (issue 8): each is answered as
/// it would be alone. A number not found, a record with nothing this viewer may see (CP-IS055,
/// CP-IS041) or a superseded number (answered with the current one) records nothing; the rest are
/// recorded under the current record's number, in the order queued (CP-IS047), each with its
/// history over the record's numbers (CP-IS048).
#[test]
fn tabs_opened_together_are_each_read_and_recorded_as_alone() {
    use chrono::Utc;
    use cpis::cpis::recorder::{self, TabAnswer};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let count = |conn: &mut diesel::PgConnection, nhs: &str| {
        crate::support::db::texts(
            conn,
            &format!("SELECT count(*)::text AS s FROM access_events WHERE nhs_number = '{nhs}'"),
        )
        .remove(0)
    };
    let before: Vec<String> =
        [NOAH_WILLIAMS, OLIVER_BENNETT, OLIVER_OLD_NUMBER, ELLA_WRIGHT, SARAH_COLLINS, AMELIA_HART]
            .iter()
            .map(|n| count(&mut conn, n))
            .collect();
    let now = Utc::now();
    let tabs = [
        (tab_opening(NOAH_WILLIAMS, "together-a", now), false),
        (tab_opening("9990009999", "together-a", now), false),
        (tab_opening(ELLA_WRIGHT, "together-a", now), false),
        (tab_opening(OLIVER_OLD_NUMBER, "together-a", now), false),
        (tab_opening(OLIVER_BENNETT, "together-a", now), false),
        (tab_opening(SARAH_COLLINS, "together-a", now), false),
        (tab_opening(SARAH_COLLINS, "together-b", now), true),
        (tab_opening(AMELIA_HART, "together-a", now), false),
        (tab_opening(NOAH_WILLIAMS, "together-a", now), false),
    ];
    let answers = recorder::open_tabs(&mut conn, &Default::default(), None, &tabs).unwrap();
    let summary: Vec<String> = answers
        .iter()
        .map(|a| match a.as_ref().unwrap() {
            TabAnswer::Opened { patient, tab } => {
                let kinds: Vec<&str> =
                    tab.authorities.iter().flat_map(|b| b.items.iter().map(|i| i.kind.display_name())).collect();
                format!("{} shown={} {}", patient.nhs_number, tab.access_shown, kinds.join("+"))
            }
            TabAnswer::Moved { current } => format!("moved to {current}"),
            TabAnswer::NotFound => "not found".into(),
            TabAnswer::NothingToShow => "nothing".into(),
        })
        .collect();
    // Each as the same number alone answers over HTTP (the tests above).
    assert_eq!(summary[1], "not found");
    assert_eq!(summary[2], "nothing");
    assert_eq!(summary[3], format!("moved to {OLIVER_BENNETT}"));
    assert!(summary[4].starts_with(&format!("{OLIVER_BENNETT} shown=true")), "{}", summary[4]);
    assert_eq!(summary[5], "nothing", "CP-IS041: no unborn plan for a non-midwife");
    assert!(summary[6].starts_with(&format!("{SARAH_COLLINS} shown=true Unborn")), "{}", summary[6]);
    assert!(
        summary[7].starts_with(&format!("{AMELIA_HART} shown=true")) && !summary[7].contains("Unborn"),
        "{}",
        summary[7]
    );
    assert!(summary[0].starts_with(&format!("{NOAH_WILLIAMS} shown=true")), "{}", summary[0]);
    assert!(summary[8].starts_with(&format!("{NOAH_WILLIAMS} shown=false")), "CP-IS047: {}", summary[8]);
    // Recorded: Noah twice, Oliver once under his current number, Sarah once (the midwife's),
    // Amelia once; nothing for the others.
    let after: Vec<String> =
        [NOAH_WILLIAMS, OLIVER_BENNETT, OLIVER_OLD_NUMBER, ELLA_WRIGHT, SARAH_COLLINS, AMELIA_HART]
            .iter()
            .map(|n| count(&mut conn, n))
            .collect();
    let added: Vec<i64> =
        after.iter().zip(&before).map(|(a, b)| a.parse::<i64>().unwrap() - b.parse::<i64>().unwrap()).collect();
    assert_eq!(added, [2, 1, 0, 0, 1, 1]);
    // Oliver's history is over his numbers, the old one too, as read after the batch.
    let TabAnswer::Opened { tab, .. } = answers[4].as_ref().unwrap() else { unreachable!() };
    let numbers = [OLIVER_BENNETT.to_owned(), OLIVER_OLD_NUMBER.to_owned()];
    let expected = cpis::cpis::access::history(&mut conn, &Default::default(), &numbers).unwrap();
    let ids = |h: &[cpis::cpis::access::HistoryEntry]| h.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&tab.history), ids(&expected));
    assert_eq!(tab.history.first().map(|h| h.accessed_at), Some(chrono::SubsecRound::trunc_subsecs(now, 6)));
}

/// Issue 8: a FHIR CareTeam search whose token is remembered is opened through the tab thread,
/// with the tabs: it is recorded as a FHIR access with its exchange logged in the same batch
/// (CP-IS061, CP-IS068), shows no history (CareTeam has none), and is shown once per viewer
/// beside a tab's opening of the same child by the same viewer id (CP-IS047). A search of a
/// superseded number records nothing there (its search reads the record itself).
#[test]
fn care_team_searches_open_through_the_tab_thread_with_their_exchanges() {
    use chrono::Utc;
    use cpis::cpis::recorder::{self, FhirExchange, TabAnswer};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let count = |conn: &mut diesel::PgConnection, sql: &str| crate::support::db::count(conn, sql);
    let now = Utc::now();
    let search = |nhs: &str, trace: &str| cpis::cpis::recorder::Opening {
        history_of: Vec::new(),
        exchange: Some(FhirExchange { ods_code: "RJZ".into(), trace_id: Some(trace.into()) }),
        ..opening(nhs, "care-team", now)
    };
    let tabs = [
        (search(NOAH_WILLIAMS, "ct-1"), false),
        (tab_opening(NOAH_WILLIAMS, "care-team", now), false),
        (search(OLIVER_OLD_NUMBER, "ct-2"), false),
        (search(MIA_THOMPSON, "ct-3"), false),
    ];
    let answers = recorder::open_tabs(&mut conn, &Default::default(), None, &tabs).unwrap();
    let opened = |i: usize| match answers[i].as_ref().unwrap() {
        TabAnswer::Opened { patient, tab } => (patient.nhs_number.clone(), tab.access_shown, tab.history.len()),
        other => panic!("{other:?}"),
    };
    assert_eq!(opened(0), (NOAH_WILLIAMS.to_owned(), true, 0), "no history for CareTeam");
    let (number, shown, lines) = opened(1);
    assert_eq!((number.as_str(), shown), (NOAH_WILLIAMS, false), "CP-IS047: the same viewer id, already shown");
    assert!(lines > 0, "the tab shows its history, the search's access in it");
    assert!(matches!(answers[2].as_ref().unwrap(), TabAnswer::Moved { current } if current == OLIVER_BENNETT));
    assert_eq!(opened(3).0, MIA_THOMPSON);
    let fhir = "SELECT count(*) FROM access_events WHERE viewer_id = 'care-team' AND channel = 'FHIR'";
    assert_eq!(count(&mut conn, fhir), 2);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id = 'care-team'"), 3);
    let logged = |conn: &mut diesel::PgConnection, trace: &str| {
        count(conn, &format!("SELECT count(*) FROM transmissions WHERE message_id = '{trace}' AND channel = 'fhir'"))
    };
    assert_eq!((logged(&mut conn, "ct-1"), logged(&mut conn, "ct-2"), logged(&mut conn, "ct-3")), (2, 0, 2));
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

/// The access recorder records a batch of openings in one transaction, deciding them in the order
/// queued (CP-IS047), each with its audit entry (CP-IS067) and the child's history as it stands
/// after the batch; the chain stays intact.
#[test]
fn a_batch_of_openings_is_decided_in_the_order_queued() {
    use chrono::{TimeDelta, Utc};
    use cpis::cpis::recorder;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = Utc::now();
    let batch = [
        opening(NOAH_WILLIAMS, "batch-a", now),
        opening(NOAH_WILLIAMS, "batch-a", now + TimeDelta::seconds(1)),
        opening(MIA_THOMPSON, "batch-a", now),
        opening(NOAH_WILLIAMS, "batch-b", now),
        // Queued after a later-stamped shown opening by the same viewer: within its window.
        opening(MIA_THOMPSON, "batch-a", now - TimeDelta::seconds(1)),
    ];
    let results = recorder::record_all(&mut conn, &Default::default(), None, None, &batch).unwrap();
    let shown: Vec<bool> = results.iter().map(|r| r.as_ref().unwrap().recorded.shown).collect();
    assert_eq!(shown, [true, false, true, true, false]);
    let ids: Vec<i64> = results.iter().map(|r| r.as_ref().unwrap().recorded.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in the order queued: {ids:?}");
    // The ids were taken before the insert (so that the audit entries, stored in the same
    // statement, can name them): each is its own opening's stored access.
    let stored = crate::support::db::texts(
        &mut conn,
        &format!(
            "SELECT nhs_number || ':' || viewer_id || ':' || shown AS s \
             FROM access_events WHERE id IN ({}) ORDER BY id",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ),
    );
    let expected: Vec<String> =
        batch.iter().zip(&shown).map(|(o, s)| format!("{}:{}:{s}", o.nhs_number, o.viewer.viewer_id)).collect();
    assert_eq!(stored, expected);
    for (result, o) in results.iter().zip(&batch) {
        let history = &result.as_ref().unwrap().history;
        assert!(
            history.iter().any(|h| h.viewer_name == "Dr Api"),
            "{}'s history, read after the batch, lists the batch's shown openings",
            o.nhs_number
        );
        // Read with the batch and completed with its shown openings: as a read after it finds it.
        let read_after = cpis::cpis::access::history(&mut conn, &Default::default(), &o.history_of).unwrap();
        assert_eq!(history, &read_after, "{}'s history as the recorder answered it", o.nhs_number);
    }
    // Each opening is audited with its own access, in order.
    let audited = crate::support::db::texts(
        &mut conn,
        "SELECT (details->>'access_event_id') || ':' || (details->>'shown') AS s FROM audit_log \
         WHERE action = 'access.alert_tab_opened' ORDER BY id",
    );
    let expected: Vec<String> = ids.iter().zip(&shown).map(|(id, s)| format!("{id}:{s}")).collect();
    assert_eq!(audited[audited.len() - 5..], expected[..]);
    assert!(
        matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }),
        "the chain is intact"
    );
    // A FHIR search's transmission log entry is stored with its opening (CP-IS061).
    let before = crate::support::db::count(&mut conn, "SELECT count(*) FROM transmissions");
    let mut with_exchange = opening(MIA_THOMPSON, "batch-c", now);
    with_exchange.exchange =
        Some(cpis::cpis::recorder::FhirExchange { ods_code: "RJZ".into(), trace_id: Some("t-1".into()) });
    assert!(
        recorder::record_all(&mut conn, &Default::default(), None, None, &[with_exchange]).unwrap()[0]
            .as_ref()
            .unwrap()
            .recorded
            .shown
    );
    assert_eq!(
        crate::support::db::count(
            &mut conn,
            "SELECT count(*) FROM transmissions WHERE message_id = 't-1' AND channel = 'fhir' AND message_type IN ('03', '04')"
        ),
        2
    );
    assert_eq!(crate::support::db::count(&mut conn, "SELECT count(*) FROM transmissions"), before + 2);
    // A second batch: everyone within their window now, except another child.
    let again = recorder::record_all(
        &mut conn,
        &Default::default(),
        None,
        None,
        &[opening(NOAH_WILLIAMS, "batch-b", now + TimeDelta::hours(1))],
    )
    .unwrap();
    assert!(!again[0].as_ref().unwrap().recorded.shown);
}

/// Issue 8: the recorder answers only once its batch's commit is on disk (CP-IS058): the batch's
/// COMMIT is durable itself (even inside `db::run`, which would otherwise let an audited commit
/// defer its flush), so nothing more is owed for the flush afterwards, and a flush owed before the
/// batch is still owed after it. The WAL has been flushed past the batch when it answers.
#[test]
fn a_batchs_commit_is_on_disk_when_the_recorder_answers() {
    use chrono::Utc;
    use cpis::cpis::recorder;
    use diesel::r2d2::Pool;

    let db = crate::support::TestDatabase::new(Template::Demo);
    // The test cluster runs with synchronous_commit off; this database as a durable one would.
    crate::support::db::execute(&mut db.conn(), &format!("ALTER DATABASE \"{}\" SET synchronous_commit = on", db.name));
    let pool = Pool::builder().max_size(1).build(cpis::db::manager::Manager::new(&db.url)).unwrap();
    let mut watcher = db.conn();
    let lsn = |c: &mut diesel::PgConnection| {
        crate::support::db::texts(c, "SELECT pg_current_wal_insert_lsn()::text AS s").remove(0)
    };
    let flushed_past = |c: &mut diesel::PgConnection, lsn: &str| {
        crate::support::db::count(c, &format!("SELECT (pg_current_wal_flush_lsn() > '{lsn}'::pg_lsn)::int")) == 1
    };

    // The WAL flushed past where it was written before the batch. (Not past where it is written
    // after it: other tests' databases write to the same cluster meanwhile, unflushed.)
    let before = lsn(&mut watcher);
    let owed = cpis::db::run_blocking(&pool, |conn| {
        let results = recorder::record_all(
            conn,
            &Default::default(),
            None,
            None,
            &[opening(NOAH_WILLIAMS, "flush-a", Utc::now())],
        )?;
        assert!(results[0].as_ref().unwrap().history.iter().any(|h| h.viewer_name == "Dr Api"));
        Ok(cpis::db::flush_owed())
    })
    .unwrap();
    assert!(!owed, "nothing is owed for the batch's flush");
    assert!(flushed_past(&mut watcher, &before), "the batch's commit is on disk when the recorder answers");

    // A deferred commit before the batch is still waited for by `run`.
    let owed = cpis::db::run_blocking(&pool, |conn| {
        assert!(cpis::db::defer_flush());
        recorder::record_all(conn, &Default::default(), None, None, &[opening(NOAH_WILLIAMS, "flush-b", Utc::now())])?;
        Ok(cpis::db::flush_owed())
    })
    .unwrap();
    assert!(owed, "a flush owed before the batch is owed after it");
}

/// Issue 8: the access recorder's connections commit without waiting for the disk, so that its
/// thread (and the audit chain's lock) is not held through each flush; what they committed is
/// answered by the flusher once a flush of its own, committed as the server is configured to,
/// has covered it (src/db/flusher.rs). The WAL has been flushed past the commit when the answer
/// is delivered, and the tab opened through the recorder is on disk when it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorders_commits_are_answered_once_a_shared_flush_covers_them() {
    use crate::support::db::{count, execute, texts};
    use cpis::cpis::recorder::{AccessRecorder, TabAnswer};
    use cpis::db::flusher::Flusher;

    let db = crate::support::TestDatabase::new(Template::Demo);
    // The test cluster runs with synchronous_commit off; this database as a durable one would.
    execute(&mut db.conn(), &format!("ALTER DATABASE \"{}\" SET synchronous_commit = on", db.name));
    let config = cpis::config::Config::for_database(&db.url);
    let setting =
        |pool: &cpis::db::DbPool| texts(&mut pool.get().unwrap(), "SELECT current_setting('synchronous_commit') AS s");
    let recording = cpis::db::pool_committing_without_waiting(&config, 1);
    assert_eq!(setting(&recording), ["off"], "the recorder's connections do not wait for the disk");
    assert_eq!(setting(&cpis::db::pool_of(&config, 1)), ["on"], "the flusher's commits as the server is configured");

    // A commit that did not wait, then the flusher: delivered once the WAL is flushed past it.
    let lsn_after = {
        let mut conn = recording.get().unwrap();
        execute(
            &mut conn,
            "INSERT INTO health_probes (at, instance, ok, latency_ms) VALUES (now(), 'flush-test', true, 0)",
        );
        texts(&mut conn, "SELECT pg_current_wal_insert_lsn()::text AS s").remove(0)
    };
    let flusher = Flusher::start(cpis::db::pool_of(&config, 1));
    let mut watcher = db.conn();
    let (told, delivered) = std::sync::mpsc::channel();
    flusher.after_flush(move |flushed| {
        let past = count(&mut watcher, &format!("SELECT (pg_current_wal_flush_lsn() >= '{lsn_after}'::pg_lsn)::int"));
        told.send((flushed, past == 1)).unwrap();
    });
    let (flushed, past) = delivered.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(flushed, "the flush was confirmed");
    assert!(past, "the WAL was flushed past the commit before the delivery");

    // Through the recorder: the tab is answered, and its access is on disk by then.
    let recorder = AccessRecorder::start(&config, 1, Default::default(), None);
    let mut conn = db.conn();
    let before = texts(&mut conn, "SELECT pg_current_wal_insert_lsn()::text AS s").remove(0);
    let answer = recorder.open_tab(tab_opening(NOAH_WILLIAMS, "flush-tab", chrono::Utc::now()), false).await.unwrap();
    assert!(matches!(answer, TabAnswer::Opened { .. }), "{answer:?}");
    let recorded = count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id = 'flush-tab'");
    assert_eq!(recorded, 1);
    let past = count(&mut conn, &format!("SELECT (pg_current_wal_flush_lsn() > '{before}'::pg_lsn)::int"));
    assert_eq!(past, 1, "the WAL was flushed past the batch when the tab was answered");
}

/// The FHIR queries a batch answers are logged together (CP-IS061), each as its query in (03) and
/// response out (04), at its own time, in the batch's order; an opening from the screens logs
/// nothing.
#[test]
fn a_batchs_fhir_exchanges_are_each_logged_at_their_own_time() {
    use chrono::{TimeDelta, Utc};
    use cpis::cpis::recorder::{self, FhirExchange};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = Utc::now();
    let exchange =
        |ods: &str, trace: Option<&str>| Some(FhirExchange { ods_code: ods.into(), trace_id: trace.map(Into::into) });
    let mut batch = vec![
        opening(NOAH_WILLIAMS, "fhir-a", now),
        opening(MIA_THOMPSON, "fhir-b", now + TimeDelta::milliseconds(5)),
        opening(NOAH_WILLIAMS, "screen", now + TimeDelta::milliseconds(7)),
        opening(MIA_THOMPSON, "fhir-c", now + TimeDelta::milliseconds(9)),
    ];
    batch[0].exchange = exchange("RJZ", Some("trace-a"));
    batch[1].exchange = exchange("RR8", None);
    batch[3].exchange = exchange("RJZ", Some(&"t".repeat(150)));
    let before = crate::support::db::count(&mut conn, "SELECT coalesce(max(id), 0) FROM transmissions");
    let results = recorder::record_all(&mut conn, &Default::default(), None, None, &batch).unwrap();
    assert!(results.iter().all(Result::is_ok));
    let logged = crate::support::db::texts(
        &mut conn,
        &format!(
            "SELECT concat_ws(' ', direction, origin, destination, message_type, coalesce(left(message_id, 8), '-'), \
                 length(message_id), channel, (extract(epoch FROM at - '{}'::timestamptz) * 1000)::int) AS s \
             FROM transmissions WHERE id > {before} ORDER BY id",
            now.to_rfc3339()
        ),
    );
    assert_eq!(
        logged,
        [
            "in RJZ CP-IS 03 trace-a 7 fhir 0",
            "out CP-IS RJZ 04 trace-a 7 fhir 0",
            "in RR8 CP-IS 03 - fhir 5",
            "out CP-IS RR8 04 - fhir 5",
            "in RJZ CP-IS 03 tttttttt 100 fhir 9",
            "out CP-IS RJZ 04 tttttttt 100 fhir 9",
        ]
    );
}

/// One opening the database refuses (here a viewer id longer than its column allows) fails alone:
/// the others of its batch are recorded, each in a transaction of its own.
#[test]
fn an_opening_the_database_refuses_does_not_fail_its_batch() {
    use chrono::Utc;
    use cpis::cpis::recorder;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let before = crate::support::db::count(&mut conn, "SELECT count(*) FROM access_events");
    let now = Utc::now();
    let too_long = "x".repeat(201);
    let batch = [
        opening(NOAH_WILLIAMS, "fine-1", now),
        opening(NOAH_WILLIAMS, &too_long, now),
        opening(MIA_THOMPSON, "fine-2", now),
    ];
    let results = recorder::record_all(&mut conn, &Default::default(), None, None, &batch).unwrap();
    assert!(results[0].as_ref().unwrap().recorded.shown);
    assert!(results[1].is_err(), "the refused opening fails");
    assert!(results[2].as_ref().unwrap().recorded.shown);
    assert_eq!(crate::support::db::count(&mut conn, "SELECT count(*) FROM access_events"), before + 2);
    assert_eq!(
        crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'access.alert_tab_opened'"),
        2,
        "nothing of the refused opening is audited"
    );
}

/// Many requests opening one child's tab at once through the recorder's threads: whatever the
/// batches, one viewer's openings show once (CP-IS047), every opening is recorded and audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_openings_through_the_recorder_show_once_per_viewer() {
    use chrono::Utc;
    use cpis::cpis::recorder::AccessRecorder;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let config = cpis::config::Config::for_database(&db.url);
    let recorder = AccessRecorder::start(&config, 2, Default::default(), None);
    let now = Utc::now();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let recorder = recorder.clone();
            let who = format!("crowd-{}", i % 3);
            let child = if i % 2 == 0 { NOAH_WILLIAMS } else { MIA_THOMPSON };
            tokio::spawn(async move { recorder.open(opening(child, &who, now)).await.map(|o| o.recorded.shown) })
        })
        .collect();
    let mut shown = 0;
    for t in tasks {
        shown += t.await.unwrap().expect("recorded") as usize;
    }
    // Three viewers, two children: six pairs, each shown once.
    assert_eq!(shown, 6);
    let mut conn = db.conn();
    assert_eq!(
        crate::support::db::count(
            &mut conn,
            "SELECT count(*) FROM access_events WHERE viewer_id LIKE 'crowd-%' AND shown"
        ),
        6
    );
    assert_eq!(
        crate::support::db::count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id LIKE 'crowd-%'"),
        60
    );
    assert_eq!(
        crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'access.alert_tab_opened'"),
        60
    );
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

/// Tabs read together whose openings then fail together (here the only opening, refused by the
/// database): the tabs with nothing to record keep their answers, and only the opening fails.
#[test]
fn tabs_with_nothing_to_record_keep_their_answers_when_the_openings_fail() {
    use chrono::Utc;
    use cpis::cpis::recorder::{self, TabAnswer};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = Utc::now();
    let tabs = [
        (tab_opening("9990009999", "apart", now), false),
        (tab_opening(NOAH_WILLIAMS, &"x".repeat(201), now), false),
        (tab_opening(ELLA_WRIGHT, "apart", now), false),
    ];
    let answers = recorder::open_tabs(&mut conn, &Default::default(), None, &tabs).unwrap();
    assert!(matches!(answers[0], Ok(TabAnswer::NotFound)), "{:?}", answers[0]);
    assert!(answers[1].is_err(), "the refused opening fails: {:?}", answers[1]);
    assert!(matches!(answers[2], Ok(TabAnswer::NothingToShow)), "{:?}", answers[2]);
    // Every tab to record, and the openings failing together: one error for them all.
    let alone = [(tab_opening(NOAH_WILLIAMS, &"x".repeat(201), now), false)];
    assert!(recorder::open_tabs(&mut conn, &Default::default(), None, &alone).is_err());
}

/// The tab thread and the recording threads record at once (the tab's openings on one, the FHIR
/// API's on the others), each batch read ahead or read apart from the other's: one viewer opening
/// one child both ways at once is still shown once (CP-IS047), and every opening is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openings_through_the_tab_thread_and_the_recording_threads_at_once_show_once() {
    use chrono::Utc;
    use cpis::cpis::recorder::{AccessRecorder, TabAnswer};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let config = cpis::config::Config::for_database(&db.url);
    let recorder = AccessRecorder::start(&config, 2, Default::default(), None);
    let now = Utc::now();
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let recorder = recorder.clone();
            let who = format!("both-{}", i % 2);
            tokio::spawn(async move {
                if i % 4 < 2 {
                    match recorder.open_tab(tab_opening(NOAH_WILLIAMS, &who, now), false).await {
                        Ok(TabAnswer::Opened { tab, .. }) => Ok(tab.access_shown),
                        other => Err(format!("{other:?}")),
                    }
                } else {
                    let o = opening(NOAH_WILLIAMS, &who, now);
                    recorder.open(o).await.map(|o| o.recorded.shown).map_err(|e| e.to_string())
                }
            })
        })
        .collect();
    let mut shown = 0;
    for t in tasks {
        shown += t.await.unwrap().expect("recorded") as usize;
    }
    assert_eq!(shown, 2, "two viewers, one child: each shown once");
    let mut conn = db.conn();
    let count = |conn: &mut diesel::PgConnection, sql: &str| crate::support::db::count(conn, sql);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id LIKE 'both-%' AND shown"), 2);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id LIKE 'both-%'"), 48);
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

/// A child whose lock is held elsewhere for longer than any opening holds it (a stalled
/// transaction) costs its own openings a 503 after `CHILD_LOCK_TIMEOUT`, once; the other openings
/// of the batch are recorded.
#[test]
fn a_child_held_elsewhere_fails_only_its_own_openings() {
    use chrono::Utc;
    use cpis::cpis::alert::{record_openings, AccessOpening};
    use cpis::cpis::recorder;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let (mut stalled, mut conn) = (db.conn(), db.conn());
    let viewer = crate::support::api_viewer("stalled");
    let now = Utc::now();
    crate::support::db::execute(&mut stalled, "BEGIN");
    let held =
        AccessOpening { nhs_number: NOAH_WILLIAMS, viewer: &viewer, actor: cpis::audit::Actor::Anonymous, at: now };
    record_openings(&mut stalled, &[held]).unwrap();
    let batch = [
        opening(NOAH_WILLIAMS, "held-1", now),
        opening(NOAH_WILLIAMS, "held-2", now),
        opening(MIA_THOMPSON, "held-3", now),
    ];
    let results = recorder::record_all(&mut conn, &Default::default(), None, None, &batch).unwrap();
    assert!(matches!(results[0], Err(cpis::error::AppError::Unavailable)), "{:?}", results[0]);
    assert!(matches!(results[1], Err(cpis::error::AppError::Unavailable)), "{:?}", results[1]);
    assert!(results[2].as_ref().unwrap().recorded.shown);
    crate::support::db::execute(&mut stalled, "ROLLBACK");
    assert_eq!(
        crate::support::db::count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id LIKE 'held-%'"),
        1
    );
}

/// Issue 8: the history's job role and organisation names come from the names each instance holds
/// (`cpis::reference_names`). They are the reference data's; a code not held (an organisation
/// added since, or one the reference data does not know, shown as its code) is looked for again
/// once the retry interval has passed, not on every opening; names older than their freshness
/// are read again, so a renamed organisation shows its new name.
#[test]
fn history_names_come_from_the_names_the_instance_holds() {
    use crate::support::db::execute;
    use cpis::cpis::access::history;
    use cpis::cpis::reference_names::ReferenceNames;
    use std::time::Duration;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let child = vec![NOAH_WILLIAMS.to_owned()];
    execute(
        &mut conn,
        &format!(
            "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
             organisation_code, channel, shown) VALUES \
             ('{NOAH_WILLIAMS}', now() + interval '1 hour', 'v-new', 'Dr New', 'R8000', 'ZZZ99', 'FHIR', true), \
             ('{NOAH_WILLIAMS}', now() + interval '2 hours', 'v-rjz', 'Dr Known', 'R0680', 'RJZ', 'SCRa', true)"
        ),
    );
    let names_of = |conn: &mut diesel::PgConnection, names: &ReferenceNames| {
        let h = history(conn, names, &child).unwrap();
        (h[1].organisation_name.clone(), h[0].organisation_name.clone(), h[0].job_role_name.clone())
    };
    let hour = Duration::from_secs(3600);
    let (patient, eager, stale) = (
        ReferenceNames::new(hour, hour),
        ReferenceNames::new(hour, Duration::ZERO),
        ReferenceNames::new(Duration::ZERO, hour),
    );
    let (unknown, known, role) = names_of(&mut conn, &patient);
    assert_eq!(unknown, None, "a code the reference data does not know");
    assert_eq!(known.as_deref(), Some("KING'S COLLEGE HOSPITAL NHS FOUNDATION TRUST"));
    assert!(role.is_some_and(|r| !r.is_empty()));
    for names in [&eager, &stale] {
        names_of(&mut conn, names);
    }

    execute(&mut conn, "INSERT INTO nhs_organisations (ods_code, name) VALUES ('ZZZ99', 'NEW TRUST')");
    execute(&mut conn, "UPDATE nhs_organisations SET name = 'KING''S RENAMED' WHERE ods_code = 'RJZ'");
    assert_eq!(names_of(&mut conn, &patient).0, None, "not looked for again before the retry interval");
    assert_eq!(names_of(&mut conn, &eager).0.as_deref(), Some("NEW TRUST"), "looked for again after it");
    assert_eq!(names_of(&mut conn, &patient).1.as_deref(), Some("KING'S COLLEGE HOSPITAL NHS FOUNDATION TRUST"));
    assert_eq!(names_of(&mut conn, &stale).1.as_deref(), Some("KING'S RENAMED"), "read again once stale");

    // A read of the names that fails fails no history: the names held, or none, are used, and the
    // read is tried again a few seconds later, not on every opening.
    let fresh = ReferenceNames::default();
    execute(&mut conn, "ALTER TABLE nhs_organisations RENAME TO nhs_organisations_away");
    assert_eq!(names_of(&mut conn, &fresh).1, None, "no names could be read");
    assert!(names_of(&mut conn, &stale).1.is_some(), "the names held are kept");
    execute(&mut conn, "ALTER TABLE nhs_organisations_away RENAME TO nhs_organisations");
    assert_eq!(names_of(&mut conn, &fresh).1, None, "not tried again at once");
    std::thread::sleep(Duration::from_millis(5_100));
    assert_eq!(names_of(&mut conn, &fresh).1.as_deref(), Some("KING'S RENAMED"), "tried again later");
}

/// Issue 8: the access recorder reads the histories of its batch's openings in one statement. Each
/// equals its child's history as the rule has it (CP-IS048: shown accesses to any of the numbers,
/// newest first, ties in insertion order, at most 25), whatever else is in the batch.
#[test]
fn a_batchs_histories_read_together_are_each_childs_own() {
    use crate::support::db::execute;
    use cpis::cpis::access;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    // 40 more accesses to one child (a quarter not shown), 3 to another, in ties of seven to a minute.
    for (nhs, n) in [(NOAH_WILLIAMS, 40), (MIA_THOMPSON, 3)] {
        execute(
            &mut conn,
            &format!(
                "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
                     organisation_code, channel, shown) \
                 SELECT '{nhs}', date_trunc('minute', now()) - (g / 7) * interval '1 minute', 'v' || g, 'Dr V', \
                     'R8000', 'RJZ', 'SCRa', g % 4 <> 0 FROM generate_series(1, {n}) g"
            ),
        );
    }
    let expected = |conn: &mut diesel::PgConnection, numbers: &[String]| -> Vec<i64> {
        let list = numbers.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(",");
        crate::support::db::texts(
            conn,
            &format!(
                "SELECT id::text AS s FROM access_events WHERE nhs_number IN ({list}) AND shown \
                 ORDER BY accessed_at DESC, id DESC LIMIT 25"
            ),
        )
        .into_iter()
        .map(|s| s.parse().unwrap())
        .collect()
    };
    let one = |n: &str| vec![n.to_owned()];
    let lists = [
        one(NOAH_WILLIAMS),
        one(MIA_THOMPSON),
        one(ELLA_WRIGHT),
        vec![MIA_THOMPSON.to_owned(), NOAH_WILLIAMS.to_owned()],
        one(NOAH_WILLIAMS),
    ];
    let names = Default::default();
    let slices: Vec<&[String]> = lists.iter().map(Vec::as_slice).collect();
    let together = access::histories(&mut conn, &names, &slices).unwrap();
    assert_eq!(together.len(), lists.len());
    for (list, got) in lists.iter().zip(&together) {
        let ids: Vec<i64> = got.iter().map(|e| e.id).collect();
        assert_eq!(ids, expected(&mut conn, list), "{list:?}");
        assert_eq!(got, &access::history(&mut conn, &names, list).unwrap(), "{list:?} alone");
    }
    assert_eq!(together[0].len(), 25, "at most 25");
    assert!(together.iter().any(Vec::is_empty) && together.iter().any(|h| h.len() < 25), "{together:?}");
    assert!(access::histories(&mut conn, &names, &[]).unwrap().is_empty());

    // The tab thread reads the same histories ahead, with the records, one array per child
    // (`items::lookup_held_reading_ahead`): line for line the child's own, names aside.
    let viewer = access::Viewer { channel: access::Channel::Scra, ..crate::support::api_viewer("reader") };
    let asked: Vec<access::NewAccess<'_>> = [NOAH_WILLIAMS, MIA_THOMPSON, NOAH_WILLIAMS]
        .into_iter()
        .map(|nhs_number| access::NewAccess { nhs_number, viewer: &viewer, at: chrono::Utc::now() })
        .collect();
    let line = |e: &access::HistoryEntry| {
        (e.id, e.accessed_at, e.user_id, e.viewer_name.clone(), e.job_role_code.clone(), e.organisation_code.clone())
    };
    for (a, (_, ahead)) in asked.iter().zip(cpis::cpis::items::lookup_held_reading_ahead(&mut conn, &asked).unwrap()) {
        let ahead = ahead.expect("a current record holding items is read ahead");
        let ids: Vec<i64> = ahead.history.iter().map(|e| e.id).collect();
        assert_eq!(ids, expected(&mut conn, &one(a.nhs_number)), "{} read ahead", a.nhs_number);
        let alone = access::history(&mut conn, &names, &one(a.nhs_number)).unwrap();
        assert_eq!(ahead.history.iter().map(line).collect::<Vec<_>>(), alone.iter().map(line).collect::<Vec<_>>());
    }
    // A FHIR CareTeam search shows no history: its read ahead reads none, a tab's beside it does.
    let api = crate::support::api_viewer("reader");
    let searched = [access::NewAccess { nhs_number: NOAH_WILLIAMS, viewer: &api, at: chrono::Utc::now() }, asked[0]];
    let read = cpis::cpis::items::lookup_held_reading_ahead(&mut conn, &searched).unwrap();
    let (fhir, tab) = (read[0].1.as_ref().unwrap(), read[1].1.as_ref().unwrap());
    assert!(fhir.history.is_empty() && !tab.history.is_empty(), "{fhir:?}");
    assert_eq!(fhir.latest, tab.latest, "the rest is read alike: one viewer, one child");
}
