//! User administration and account security (CP-IS059; OWASP ASVS 2.1, 2.2, 3.3).

use reqwest::StatusCode;

use crate::support::db::execute;
use crate::support::{between, Client, Template, TestApp, PASSWORD};

fn user_id(app: &TestApp, username: &str) -> i64 {
    app.count(&format!("SELECT id FROM users WHERE username = '{username}'"))
}

async fn create_user(admin: &Client, username: &str) -> String {
    let res = admin
        .post_form(
            "/admin/users",
            &[
                ("username", username),
                ("display_name", "Dr Kim Lowe"),
                ("email", "kim.lowe@nhs.example.org"),
                ("telephone", "020 7946 0199"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    between(&page, "id=\"temporary-password\">", "</p>").expect("the one-time password is shown")
}

#[tokio::test]
async fn a_new_user_must_choose_their_own_password_at_first_sign_in() {
    let app = TestApp::spawn(Template::Demo);
    let admin = app.signed_in("ravi.shah").await;
    let temporary = create_user(&admin, "kim.lowe").await;
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.created'"), 1);

    let kim = app.client();
    assert_eq!(kim.sign_in("kim.lowe", &temporary).await.status(), StatusCode::SEE_OTHER);
    // Every page but the password change sends her there.
    for path in ["/", "/search", "/select-role"] {
        assert_eq!(kim.get(path).await.headers()["location"], "/change-password", "{path}");
    }
    for (new, confirm, message) in [
        ("short", "short", "at least 12 characters"),
        ("password1234", "password1234", "too common"),
        ("purple tractor umbrella", "purple tractor umbrellas", "not the same"),
    ] {
        let res = kim
            .post_form(
                "/change-password",
                &[("current_password", &temporary), ("new_password", new), ("confirm_password", confirm)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(res.text().await.unwrap().contains(message), "{message}");
    }
    let res = kim
        .post_form(
            "/change-password",
            &[
                ("current_password", "wrong one entirely"),
                ("new_password", "purple tractor umbrella"),
                ("confirm_password", "purple tractor umbrella"),
            ],
        )
        .await;
    assert!(res.text().await.unwrap().contains("current password is not right"));
    let res = kim
        .post_form(
            "/change-password",
            &[
                ("current_password", &temporary),
                ("new_password", "purple tractor umbrella"),
                ("confirm_password", "purple tractor umbrella"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // No role profile yet: she is asked to choose one, and there is none.
    assert_eq!(kim.get("/search").await.headers()["location"], "/select-role");
    assert!(kim.text("/select-role").await.contains("no role profile"));
    let again = app.client();
    assert_eq!(again.sign_in("kim.lowe", "purple tractor umbrella").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(again.sign_in("kim.lowe", &temporary).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn role_profiles_are_added_and_removed_with_checked_codes() {
    let app = TestApp::spawn(Template::Demo);
    let admin = app.signed_in("ravi.shah").await;
    let _ = create_user(&admin, "kim.lowe").await;
    let id = user_id(&app, "kim.lowe");
    let path = format!("/admin/users/{id}/roles");
    for (fields, message) in [
        (vec![("organisation", "XYZ"), ("job_role", "R8000"), ("activity", "B0264")], "Enter the ODS code"),
        (vec![("organisation", "RJZ"), ("job_role", "R0000"), ("activity", "B0264")], "Choose a job role"),
        (vec![("organisation", "RJZ"), ("job_role", "R8000")], "at least one activity code"),
        (vec![("organisation", "RJZ"), ("job_role", "R8000"), ("activity", "Z9999")], "from the list"),
    ] {
        let res = admin.post_form(&path, &fields).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{message}");
        assert!(res.text().await.unwrap().contains(message), "{message}");
    }
    let res = admin
        .post_form(
            &path,
            &[("organisation", "rjz"), ("job_role", "R8000"), ("activity", "B0264"), ("activity", "B0107")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = admin.text(&format!("/admin/users/{id}")).await;
    assert!(page.contains("Clinical Practitioner Access Role, King&#39;s College Hospital NHS Foundation Trust"));
    assert!(page.contains("B0107, B0264"));
    // The same job role at the same organisation twice is refused.
    let res = admin.post_form(&path, &[("organisation", "RJZ"), ("job_role", "R8000"), ("activity", "B0264")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A profile at a local authority.
    let res =
        admin.post_form(&path, &[("organisation", "E10000016"), ("job_role", "R9000"), ("activity", "CPX03")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count(&format!("SELECT count(*) FROM role_profiles WHERE user_id = {id}")), 2);
    let profile = app.count(&format!("SELECT min(id) FROM role_profiles WHERE user_id = {id}"));
    let res = admin.post_form(&format!("/admin/users/{id}/roles/{profile}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count(&format!("SELECT count(*) FROM role_profiles WHERE user_id = {id}")), 1);
    // Another user's profile cannot be removed through this user.
    let other = app.count(
        "SELECT min(rp.id) FROM role_profiles rp JOIN users u ON u.id = rp.user_id WHERE u.username = 'amy.patel'",
    );
    let res = admin.post_form(&format!("/admin/users/{id}/roles/{other}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.role_profile_added'"), 2);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.role_profile_removed'"), 1);
}

#[tokio::test]
async fn contact_changes_are_checked_and_audited_with_before_and_after() {
    let app = TestApp::spawn(Template::Demo);
    let admin = app.signed_in("ravi.shah").await;
    let id = user_id(&app, "amy.patel");
    let path = format!("/admin/users/{id}/edit");
    let res = admin.post_form(&path, &[("display_name", ""), ("email", "nope"), ("telephone", "ring me")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = res.text().await.unwrap();
    assert!(page.contains("Enter the person&#39;s full name") && page.contains("Enter an email address"));
    let res = admin
        .post_form(
            &path,
            &[("display_name", "Dr Amy Patel-Shaw"), ("email", "amy.ps@nhs.example.org"), ("telephone", "")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE action = 'user.contact_changed' \
             AND details->'before'->>'display_name' = 'Dr Amy Patel' AND details->'after'->>'display_name' = 'Dr Amy Patel-Shaw' \
             AND details->'after'->>'telephone' IS NULL"
        ),
        1
    );
    assert!(admin.text("/admin/users?q=patel-shaw").await.contains("amy.patel"));
}

#[tokio::test]
async fn disabling_ends_every_session_of_the_user_at_once() {
    let app = TestApp::spawn(Template::Demo);
    let amy_here = app.signed_in("amy.patel").await;
    let amy_there = app.signed_in("amy.patel").await;
    assert_eq!(amy_here.get("/search").await.status(), StatusCode::OK);
    let id = user_id(&app, "amy.patel");
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = {id}")), 2);

    let admin = app.signed_in("ravi.shah").await;
    assert_eq!(admin.post_form(&format!("/admin/users/{id}/disable"), &[]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count(&format!("SELECT count(*) FROM sessions WHERE user_id = {id}")), 0, "CP-IS059: at once");
    for c in [&amy_here, &amy_there] {
        assert_eq!(c.get("/patients/9990000050").await.headers()["location"], "/sign-in");
    }
    assert_eq!(app.client().sign_in("amy.patel", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert!(admin.text(&format!("/admin/users/{id}")).await.contains("Disabled"));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.disabled'"), 1);

    assert_eq!(admin.post_form(&format!("/admin/users/{id}/enable"), &[]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.client().sign_in("amy.patel", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'user.enabled'"), 1);
}

#[tokio::test]
async fn an_administrator_cannot_disable_their_own_account() {
    let app = TestApp::spawn(Template::Demo);
    let admin = app.signed_in("ravi.shah").await;
    let id = user_id(&app, "ravi.shah");
    let res = admin.post_form(&format!("/admin/users/{id}/disable"), &[]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(res.text().await.unwrap().contains("cannot disable your own account"));
}

#[tokio::test]
async fn a_disabled_viewers_contact_card_is_empty() {
    let app = TestApp::spawn(Template::Demo);
    let amy = app.signed_in("amy.patel").await;
    let _ = amy.text("/patients/9990000050/child-care-alert").await;
    let sam = app.signed_in("sam.okafor").await;
    let page = sam.text("/patients/9990000050/child-care-alert").await;
    assert!(
        page.contains("amy.patel@nhs.example.org") && page.contains("020 7946 0101"),
        "the card shows her contacts"
    );

    let amy = user_id(&app, "amy.patel");
    app.change_account_elsewhere(amy, "UPDATE users SET disabled_at = now() WHERE username = 'amy.patel'").await;
    let page = sam.text("/patients/9990000050/child-care-alert").await;
    assert!(page.contains("Dr Amy Patel"), "the access itself stays in the history");
    assert!(!page.contains("amy.patel@nhs.example.org") && !page.contains("020 7946 0101"), "CP-IS059");
    assert!(page.contains("Contact details are not available"));
}

/// Issue 8, CP-IS059: the instance remembers the viewers' contact details it has shown
/// (src/cpis/contacts.rs), and forgets an account's as its change is announced (migration 000029),
/// wherever it was made: the next opening shows the new details, and none once disabled.
#[tokio::test]
async fn a_viewers_contact_card_follows_changes_made_elsewhere() {
    let app = TestApp::spawn(Template::Demo);
    let cache = app.sessions.clone().expect("sessions are remembered by default");
    let start = std::time::Instant::now();
    while !cache.is_listening() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the session listener listens");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let amy = user_id(&app, "amy.patel");
    let _ = app.signed_in("amy.patel").await.text("/patients/9990000050/child-care-alert").await;
    let sam = app.signed_in("sam.okafor").await;
    assert!(sam.text("/patients/9990000050/child-care-alert").await.contains("020 7946 0101"));
    assert!(cache.remembers_contact(amy), "the card's details are remembered");

    // Changed by another instance (here: a statement on a connection of its own).
    app.change_account_elsewhere(amy, &format!("UPDATE users SET telephone = '020 7946 0777' WHERE id = {amy}")).await;
    let page = sam.text("/patients/9990000050/child-care-alert").await;
    assert!(page.contains("020 7946 0777") && !page.contains("020 7946 0101"), "the new number");
    assert!(cache.remembers_contact(amy));
    app.change_account_elsewhere(amy, &format!("UPDATE users SET email = 'amy.p@nhs.example.org' WHERE id = {amy}"))
        .await;
    assert!(sam.text("/patients/9990000050/child-care-alert").await.contains("amy.p@nhs.example.org"));

    // A change that touches none of them announces nothing: the details stay remembered.
    crate::support::db::execute(
        &mut app.conn(),
        &format!("UPDATE users SET failed_sign_ins = failed_sign_ins + 1 WHERE id = {amy}"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(cache.remembers_contact(amy), "nothing of the card changed");

    app.change_account_elsewhere(amy, &format!("UPDATE users SET disabled_at = now() WHERE id = {amy}")).await;
    let page = sam.text("/patients/9990000050/child-care-alert").await;
    assert!(!page.contains("amy.p@nhs.example.org") && !page.contains("020 7946 0777"), "CP-IS059");
    assert!(page.contains("Contact details are not available"));
}

/// The contact card without remembered sessions (`CPIS_SESSION_CACHE=false`): every opening reads
/// the viewers' details, so a change shows at once.
#[tokio::test]
async fn a_viewers_contact_card_is_read_each_time_when_nothing_is_remembered() {
    let app = TestApp::spawn_with(Template::Demo, |config| config.session_cache = false);
    assert!(app.sessions.is_none());
    let _ = app.signed_in("amy.patel").await.text("/patients/9990000050/child-care-alert").await;
    let sam = app.signed_in("sam.okafor").await;
    assert!(sam.text("/patients/9990000050/child-care-alert").await.contains("020 7946 0101"));
    execute(&mut app.conn(), "UPDATE users SET telephone = '020 7946 0777' WHERE username = 'amy.patel'");
    assert!(sam.text("/patients/9990000050/child-care-alert").await.contains("020 7946 0777"));
    execute(&mut app.conn(), "UPDATE users SET disabled_at = now() WHERE username = 'amy.patel'");
    assert!(!sam.text("/patients/9990000050/child-care-alert").await.contains("020 7946 0777"), "CP-IS059");
}

#[tokio::test]
async fn a_password_reset_ends_sessions_and_forces_a_new_password() {
    let app = TestApp::spawn(Template::Demo);
    let amy = app.signed_in("amy.patel").await;
    let admin = app.signed_in("ravi.shah").await;
    let id = user_id(&app, "amy.patel");
    let res = admin.post_form(&format!("/admin/users/{id}/reset-password"), &[]).await;
    let temporary = between(&res.text().await.unwrap(), "id=\"temporary-password\">", "</p>").unwrap();
    assert_eq!(amy.get("/search").await.headers()["location"], "/sign-in");
    let amy = app.client();
    assert_eq!(amy.sign_in("amy.patel", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(amy.sign_in("amy.patel", &temporary).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(amy.get("/search").await.headers()["location"], "/change-password");
}

#[tokio::test]
async fn bad_administration_input_gets_a_clear_answer() {
    let app = TestApp::spawn(Template::Demo);
    let admin = app.signed_in("ravi.shah").await;
    let res = admin.post_form("/admin/users", &[("username", "Bad Name!"), ("display_name", "X")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("A username is 3 to 64"));
    let res = admin.post_form("/admin/users", &[("username", "amy.patel"), ("display_name", "Another Amy")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("is taken"));
    assert_eq!(admin.get("/admin/users/not-a-number").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(admin.get("/admin/users/999999").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(admin.post_form("/admin/users/999999/disable", &[]).await.status(), StatusCode::NOT_FOUND);
    let huge = "x".repeat(100_000);
    let res = admin.post_form("/admin/users", &[("username", "big.form"), ("display_name", &huge)]).await;
    assert!(res.status().is_client_error(), "an oversized form is refused: {}", res.status());
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.sign_in_limit = 3);
    let c = app.client();
    for _ in 0..3 {
        assert_eq!(c.sign_in("amy.patel", "wrong password here").await.status(), StatusCode::UNAUTHORIZED);
    }
    let res = c.sign_in("amy.patel", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    assert!(res.text().await.unwrap().contains("too many sign-in attempts"));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'auth.sign_in_throttled'"), 1);
}
