//! Sign-in, role selection, sign-out and the request checks every page shares.

use reqwest::StatusCode;

use crate::support::{between, Template, TestApp, PASSWORD};

#[tokio::test]
async fn anonymous_requests_are_sent_to_sign_in() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    for path in ["/", "/search", "/patients/9990000042", "/patients/9990000042/child-care-alert", "/local-authorities"]
    {
        let res = c.get(path).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(res.headers()["location"], "/sign-in", "{path}");
    }
    assert_eq!(c.get("/sign-in").await.status(), StatusCode::OK);
    assert_eq!(c.get("/health").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    let wrong = c.sign_in("amy.patel", "not the password at all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong_text = wrong.text().await.unwrap();
    let unknown = c.sign_in("nobody.here", "not the password at all").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown_text = unknown.text().await.unwrap();
    let message = |t: &str| between(t, "nhsuk-error-summary__list\">", "</ul>").unwrap();
    assert_eq!(message(&wrong_text), message(&unknown_text));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'auth.sign_in_failed'"), 2);
}

#[tokio::test]
async fn five_failures_lock_the_account_for_fifteen_minutes() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    for _ in 0..5 {
        assert_eq!(c.sign_in("amy.patel", "wrong password here").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused while locked.
    assert_eq!(c.sign_in("amy.patel", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action = 'auth.account_locked'"), 1);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM users WHERE username = 'amy.patel' AND locked_until > now() + interval '14 minutes'"
        ),
        1
    );
}

#[tokio::test]
async fn a_form_without_the_session_csrf_token_is_refused() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    let _ = c.text("/sign-in").await;
    let res = c
        .http
        .post(app.url("/sign-in"))
        .form(&[("username", "amy.patel"), ("password", PASSWORD), ("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("This form has expired"));
}

#[tokio::test]
async fn a_cross_site_post_is_refused_even_with_a_token() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    let token = c.csrf().await;
    let res = c
        .http
        .post(app.url("/sign-in"))
        .header("Origin", "https://evil.example")
        .form(&[("username", "amy.patel"), ("password", PASSWORD), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = c
        .http
        .post(app.url("/sign-in"))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("username", "amy.patel"), ("password", PASSWORD), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sign_in_issues_a_new_session_id() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    let before = c.get("/sign-in").await;
    let cookie_before = before.headers()["set-cookie"].to_str().unwrap().to_owned();
    let after = c.sign_in("amy.patel", PASSWORD).await;
    let cookie_after = after.headers()["set-cookie"].to_str().unwrap().to_owned();
    let value = |c: &str| c.split(';').next().unwrap().to_owned();
    assert_ne!(value(&cookie_before), value(&cookie_after));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie_after.contains(attr), "{attr} in {cookie_after}");
    }
}

/// The demo password as the service hashed it before 2026-11-24 (argon2id, 19 MiB, 2 passes), as
/// a database from then holds it.
const FORMER_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Y3Bpcy1mb3JtZXItaGFzaA$ToqS+2QEnCI8QDn3Wbs5ZJWigC0kfv5XyEYPv3OiuYc";

#[tokio::test]
async fn a_password_hashed_at_former_parameters_still_signs_in_and_is_rehashed_then() {
    use crate::support::db::{execute, texts};
    let app = TestApp::spawn(Template::Demo);
    let mut conn = app.conn();
    let former = FORMER_HASH;
    for user in ["amy.patel", "sam.okafor"] {
        execute(&mut conn, &format!("UPDATE users SET password_hash = '{former}' WHERE username = '{user}'"));
    }
    let stored = |conn: &mut diesel::PgConnection, user: &str| {
        texts(conn, &format!("SELECT password_hash AS s FROM users WHERE username = '{user}'")).remove(0)
    };
    // A wrong password leaves the hash as it is.
    let c = app.client();
    assert_eq!(c.sign_in("sam.okafor", "not the password at all").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stored(&mut conn, "sam.okafor"), former);
    // The right one signs in, and the hash is made afresh at the current parameters.
    assert_eq!(c.sign_in("amy.patel", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    let rehashed = stored(&mut conn, "amy.patel");
    assert!(rehashed.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{rehashed}");
    assert!(cpis::auth::password::verify(&rehashed, PASSWORD));
    // ... which signs in as before, and is not made again.
    let again = app.client();
    assert_eq!(again.sign_in("amy.patel", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(stored(&mut conn, "amy.patel"), rehashed);
}

#[tokio::test]
async fn a_user_with_several_roles_chooses_one_and_can_change_it() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    let res = c.sign_in("nadia.khan", PASSWORD).await;
    assert_eq!(res.headers()["location"], "/select-role");
    // No role yet: patient pages send the user to choose one.
    assert_eq!(c.get("/search").await.headers()["location"], "/select-role");
    let page = c.text("/select-role").await;
    assert!(page.contains("Clinical Practitioner Access Role, Leeds Teaching Hospitals NHS Trust"));
    assert!(page.contains("Admin/Clinical Support Access Role, University Hospitals Birmingham NHS Foundation Trust"));
    let ids: Vec<String> = page
        .match_indices("name=\"role\" type=\"radio\" value=\"")
        .map(|(i, m)| page[i + m.len()..].split('"').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    // A role profile of someone else's is refused.
    let res = c.post_form("/select-role", &[("role", "999999")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = c.post_form("/select-role", &[("role", &ids[1])]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(c.text("/search").await.contains("Admin/Clinical Support Access Role"));
    let res = c.post_form("/select-role", &[("role", &ids[0])]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(c.text("/search").await.contains("Clinical Practitioner Access Role, Leeds"));
}

#[tokio::test]
async fn sign_out_ends_the_server_session() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    assert_eq!(c.get("/search").await.status(), StatusCode::OK);
    let sessions_before = app.count("SELECT count(*) FROM sessions WHERE user_id IS NOT NULL");
    assert_eq!(sessions_before, 1);
    let res = c.post_form("/sign-out", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT count(*) FROM sessions WHERE user_id IS NOT NULL"), 0);
    assert_eq!(c.get("/search").await.headers()["location"], "/sign-in");
}

#[tokio::test]
async fn a_disabled_account_is_signed_out_at_its_next_request() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("amy.patel").await;
    assert_eq!(c.get("/search").await.status(), StatusCode::OK);
    // Disabled by another connection, as by another instance: the page asked for once its
    // announcement has arrived is the sign-in page.
    let amy = app.count("SELECT id FROM users WHERE username = 'amy.patel'");
    app.change_account_elsewhere(amy, &format!("UPDATE users SET disabled_at = now() WHERE id = {amy}")).await;
    let res = c.get("/search").await;
    assert_eq!(res.headers()["location"], "/sign-in");
    assert_eq!(c.sign_in("amy.patel", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    for path in ["/sign-in", "/health", "/no-such-page", "/static/cpis.css"] {
        let res = c.get(path).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline"), "{path}");
        for part in ["object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "script-src 'self'"] {
            assert!(csp.contains(part), "{part} on {path}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn an_unknown_page_is_a_clear_404() {
    let app = TestApp::spawn(Template::Demo);
    let res = app.client().get("/no-such-page").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn under_tls_the_cookie_is_secure_and_host_prefixed_and_hsts_is_sent() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.secure_cookies = true);
    let c = app.client();
    let res = c.get("/sign-in").await;
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-cpis-session="), "{cookie}");
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Domain="), "a __Host- cookie has no Domain");
    assert!(res.headers()["strict-transport-security"].to_str().unwrap().contains("max-age="));
}

#[tokio::test]
async fn the_sign_in_page_says_when_a_session_has_ended() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.session_idle = std::time::Duration::from_secs(1));
    let c = app.signed_in("amy.patel").await;
    assert!(!c.text("/sign-in").await.contains("Your session has ended"), "not while it is live");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(c.get("/search").await.headers()["location"], "/sign-in");
    assert!(c.text("/sign-in").await.contains("Your session has ended"));
    assert!(!app.client().text("/sign-in").await.contains("Your session has ended"), "a first visit says nothing");
}
