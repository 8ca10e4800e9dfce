//! What a clinician sees, in headless Chromium: sign in, find a child, open the Child Care Alert
//! tab and find their own access at the top of its history.

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::Date;

use crate::support::browser::{screenshot_path, Browser};
use crate::support::{Template, TestApp, PASSWORD};

const MIA: &str = "9990000042";

#[derive(QueryableByName)]
struct BirthDate {
    #[diesel(sql_type = Date)]
    birth_date: NaiveDate,
}

#[tokio::test(flavor = "multi_thread")]
async fn clinician_finds_a_child_and_sees_their_own_access_in_the_history() {
    let app = TestApp::spawn(Template::Demo);
    let born = diesel::sql_query(format!("SELECT birth_date FROM patients WHERE nhs_number = '{MIA}'"))
        .get_result::<BirthDate>(&mut app.conn())
        .expect("Mia Thompson's birth date")
        .birth_date;
    let b = Browser::start().await;

    // Sign in: one role profile, so straight to the search page.
    b.goto(&app.url("/sign-in")).await;
    b.fill("#username", "amy.patel").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/sign-in'] button[type=submit]").await;
    b.wait_for_path("/search").await;
    let header = b.text(".nhsuk-header__account").await;
    assert!(header.contains("Dr Amy Patel"), "the header names the signed-in user: {header:?}");

    // The session cookie over plain http://127.0.0.1 (not Secure in this configuration).
    let cookies = b.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "cpis-session")
        .unwrap_or_else(|| panic!("Chromium keeps the session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert_eq!(session["secure"], false, "{session}");

    // Search by name and date of birth.
    let demographics = "form:has(input[name=by][value=demographics])";
    b.fill(&format!("{demographics} #family_name"), "Thompson").await;
    b.fill(&format!("{demographics} #given_name"), "Mia").await;
    b.fill(&format!("{demographics} #dob_day"), &born.day().to_string()).await;
    b.fill(&format!("{demographics} #dob_month"), &born.month().to_string()).await;
    b.fill(&format!("{demographics} #dob_year"), &born.year().to_string()).await;
    b.click(&format!("{demographics} button[type=submit]")).await;
    // The form submits to the page it is on: wait for the search's own address.
    b.wait_for_path_containing("by=demographics").await;
    assert!(
        b.current_path().await.contains("by=demographics"),
        "the demographic search ran: {}",
        b.current_url().await
    );

    // Open her record from the results.
    b.click(&format!("table a[href='/patients/{MIA}']")).await;
    b.wait_for_path(&format!("/patients/{MIA}")).await;
    let banner = b.text(".cpis-banner").await;
    assert!(banner.to_lowercase().contains("thompson"), "banner: {banner:?}");
    assert!(banner.contains("999 000 0042"), "the banner shows the NHS number, spaced: {banner:?}");

    // The Child Care Alert tab.
    b.click("#child-care-alert-tab").await;
    b.wait_for_path(&format!("/patients/{MIA}/child-care-alert")).await;
    b.screenshot_full_page(&screenshot_path("clinician-journey")).await;
    let main = b.text("main").await;
    for la in ["Kent", "Manchester"] {
        assert!(main.contains(la), "the alert shows information from {la}: {main}");
    }
    let first = b.text("#access-history-table tbody tr:first-child").await;
    assert!(first.contains("Dr Amy Patel"), "her own access is the newest in the history: {first:?}");
    assert!(first.contains("King's College Hospital NHS Foundation Trust"), "with her organisation: {first:?}");
    b.quit().await;

    // Exactly one access event, recorded against her account.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM access_events e JOIN users u ON u.id = e.user_id \
             WHERE u.username = 'amy.patel' AND e.nhs_number = '{MIA}'"
        )),
        1
    );
}
