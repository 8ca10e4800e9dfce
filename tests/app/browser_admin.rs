//! An administrator disables a clinician who is signed in elsewhere, in two headless Chromium
//! sessions (two profiles, two cookie jars): the clinician's next click lands on sign-in
//! (CP-IS059: a disabled account is signed out everywhere at once).

use crate::support::browser::{screenshot_path, Browser};
use crate::support::{Template, TestApp, PASSWORD};

const CLINICIAN: &str = "amy.patel";
const ADMIN: &str = "ravi.shah";

async fn sign_in(b: &Browser, app: &TestApp, username: &str, lands_on: &str) {
    b.goto(&app.url("/sign-in")).await;
    b.fill("#username", username).await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/sign-in'] button[type=submit]").await;
    b.wait_for_path(lands_on).await;
}

/// The value beside a key of the page's summary list ("Status" -> "Active").
async fn summary_value(b: &Browser, key: &str) -> String {
    b.script(&format!(
        "const row = [...document.querySelectorAll('.nhsuk-summary-list__row')]
             .find(r => r.querySelector('dt')?.innerText.trim() === {key:?});
         return row ? row.querySelector('dd').innerText.trim() : '(no {key} row)';"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_administrator_disables_a_signed_in_clinician_whose_next_click_lands_on_sign_in() {
    let app = TestApp::spawn(Template::Demo);
    let amy_id = app.count(&format!("SELECT id FROM users WHERE username = '{CLINICIAN}'"));
    let shot = |step: &str| screenshot_path(&format!("admin-disables-clinician-{step}"));

    // Browser A: the clinician, at work on the search page.
    let clinician = Browser::start().await;
    sign_in(&clinician, &app, CLINICIAN, "/search").await;
    assert!(clinician.text(".nhsuk-header__account").await.contains("Dr Amy Patel"));
    clinician.screenshot_full_page(&shot("1-clinician-searching")).await;
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = {amy_id}")), 1);

    // Browser B: the Registration Authority manager finds her and disables her account.
    let admin = Browser::start().await;
    sign_in(&admin, &app, ADMIN, "/admin/users").await;
    admin.fill("#q", CLINICIAN).await;
    admin.click("form[action='/admin/users'] button[type=submit]").await;
    admin.wait_for_path_containing("q=amy.patel").await;
    assert!(admin.current_path().await.contains("q=amy.patel"), "the search ran: {}", admin.current_url().await);
    let caption = admin.text("#users-table caption").await;
    assert_eq!(caption, "1 user", "the search finds her alone");
    admin.click_link(CLINICIAN).await;
    let user_page = format!("/admin/users/{amy_id}");
    admin.wait_for_path(&user_page).await;
    assert_eq!(admin.text("h1").await, "Dr Amy Patel");
    assert_eq!(summary_value(&admin, "Status").await, "Active");
    admin.screenshot_full_page(&shot("2-admin-sees-her-account")).await;
    admin.click("#disable-user").await;
    admin.wait_for_path(&user_page).await;
    // The path is the same before and after: wait for the new page, whose form re-enables.
    admin.find("form[action$='/enable']").await;
    assert_eq!(summary_value(&admin, "Status").await, "Disabled", "the page shows the account disabled");
    let account = admin.text("main").await;
    assert!(account.contains("Re-enable this account"), "the page offers to re-enable it: {account}");
    admin.screenshot_full_page(&shot("3-admin-has-disabled-her")).await;

    // Her sessions ended with the change, and the change is in the audit trail once.
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = {amy_id}")), 0);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'user.disabled' AND details->>'user_id' = '{amy_id}'"
        )),
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.disabled'"), 1);

    // Browser A: still showing the search page; her next click lands on sign-in.
    assert_eq!(clinician.current_path().await, "/search");
    clinician.click_link("Local authorities").await;
    clinician.wait_for_path("/sign-in").await;
    let page = clinician.text("main").await;
    assert!(page.contains("Sign in"), "the sign-in page: {page}");
    assert!(
        !clinician.script("return document.body.innerText").await.contains("Dr Amy Patel"),
        "the header no longer names her"
    );
    clinician.screenshot_full_page(&shot("4-clinician-sent-to-sign-in")).await;

    // And she cannot sign in again.
    clinician.fill("#username", CLINICIAN).await;
    clinician.fill("#password", PASSWORD).await;
    clinician.click("form[action='/sign-in'] button[type=submit]").await;
    clinician.wait_for_path("/sign-in").await;
    // The refusal is the same address as the form: wait for its error summary.
    clinician.find(".nhsuk-error-summary").await;
    let refused = clinician.text("main").await;
    assert!(refused.contains("There is a problem"), "a disabled account cannot sign in: {refused}");
    clinician.screenshot_full_page(&shot("5-clinician-cannot-sign-in")).await;
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = {amy_id}")), 0);

    clinician.quit().await;
    admin.quit().await;
}
