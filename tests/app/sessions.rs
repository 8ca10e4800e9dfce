//! Session lifetime and storage (OWASP ASVS 3.3): an idle timeout, an absolute limit that
//! activity cannot push back, and server-side rows keyed by a hash of the session key.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::support::{Client, Template, TestApp, PASSWORD};
use cpis::auth::session_cache::SessionCache;

const SEARCH: &str = "/search";

async fn assert_sent_to_sign_in(c: &Client, when: &str) {
    let res = c.get(SEARCH).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{when}");
    assert_eq!(res.headers()["location"], "/sign-in", "{when}");
}

async fn sleep_until(start: Instant, offset: Duration) {
    let now = Instant::now();
    if let Some(wait) = (start + offset).checked_duration_since(now) {
        tokio::time::sleep(wait).await;
    }
}

#[tokio::test]
async fn an_idle_session_expires() {
    let app = TestApp::spawn_with(Template::Demo, |config| {
        config.session_idle = Duration::from_secs(2);
    });
    let c = app.signed_in("amy.patel").await;
    assert_eq!(c.get(SEARCH).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_sent_to_sign_in(&c, "after 3 s without a request (idle limit 2 s)").await;
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_the_absolute_limit() {
    let app = TestApp::spawn_with(Template::Demo, |config| {
        config.session_idle = Duration::from_secs(2);
        config.session_absolute = Duration::from_secs(4);
    });
    // The absolute limit runs from the sign-in, which ends before this instant.
    let c = app.signed_in("amy.patel").await;
    let signed_in = Instant::now();
    for second in 1..=3 {
        sleep_until(signed_in, Duration::from_secs(second)).await;
        assert_eq!(
            c.get(SEARCH).await.status(),
            StatusCode::OK,
            "a request every second keeps the session alive at {second} s (idle limit 2 s)"
        );
    }
    // Around the absolute limit: either answer; the request keeps the idle timer running, so
    // whatever ends the session a second later is the absolute limit.
    sleep_until(signed_in, Duration::from_secs(4)).await;
    let _ = c.get(SEARCH).await;
    sleep_until(signed_in, Duration::from_secs(5)).await;
    assert_sent_to_sign_in(&c, "5 s after sign-in (absolute limit 4 s), despite activity").await;
}

#[tokio::test]
async fn the_session_row_holds_a_hash_not_the_cookie_value() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.client();
    let res = c.sign_in("amy.patel", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set_cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cpis-session="))
        .expect("sign-in sets the session cookie")
        .to_owned();
    let value = set_cookie["cpis-session=".len()..].split(';').next().unwrap().to_owned();
    // A signed cookie is the base64 HMAC followed by the value it signs: here the 43-character
    // URL-safe session key, which percent-encoding leaves as it is.
    assert!(value.len() > 43, "a signed session cookie: {value}");
    let key = &value[value.len() - 43..];
    assert!(
        key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "the cookie ends with a URL-safe session key: {value}"
    );
    for part in [value.as_str(), key] {
        assert!(part.bytes().all(|b| b != b'\''), "safe to quote: {part}");
    }
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.key_hash = decode('{hash}', 'hex') AND u.username = 'amy.patel'"
        )),
        1,
        "the signed-in session's row is keyed by the SHA-256 of the session key"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM sessions WHERE length(key_hash) <> 32"),
        0,
        "every row is keyed by a 32-byte hash"
    );
    for (what, secret) in [("cookie value", value.as_str()), ("session key", key)] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM sessions \
                 WHERE position(convert_to('{secret}', 'UTF8') in key_hash) > 0 \
                    OR position('{secret}' in state::text) > 0"
            )),
            0,
            "no session row holds the {what}"
        );
    }
}

/// Issue 8: a signed-in page reads its session and its principal in one statement. The store hands
/// the principal's rows over with the state, they give the same principal as loading it on its
/// own, they are read afresh on every load (a disabled account loses its session at once,
/// CP-IS059), they are used only for the session's own user, and they are never saved.
#[tokio::test]
async fn a_session_load_reads_the_principal_too_and_never_stores_it() {
    use actix_session::storage::SessionStore;
    use cpis::auth::principal::{Principal, PRINCIPAL_KEY};
    use cpis::auth::session_store::{PgSessionStore, USER_ID_KEY};
    use diesel::r2d2::Pool;
    use std::collections::HashMap;

    let db = crate::support::TestDatabase::new(Template::Demo);
    let pool = Pool::builder().max_size(2).build(cpis::db::manager::Manager::new(&db.url)).unwrap();
    let store = PgSessionStore::new(pool, Duration::from_secs(3600), Duration::from_secs(600));
    let ttl = actix_web::cookie::time::Duration::seconds(600);
    let mut conn = db.conn();
    let amy = crate::support::db::count(&mut conn, "SELECT id AS count FROM users WHERE username = 'amy.patel'");
    let role = crate::support::db::count(
        &mut conn,
        &format!("SELECT min(id) AS count FROM role_profiles WHERE user_id = {amy}"),
    );

    // An anonymous session carries no principal.
    let anonymous = store.save(HashMap::from([("csrf".to_owned(), "\"t\"".to_owned())]), &ttl).await.unwrap();
    assert!(!store.load(&anonymous).await.unwrap().unwrap().contains_key(PRINCIPAL_KEY));

    let key = store.save(HashMap::from([(USER_ID_KEY.to_owned(), amy.to_string())]), &ttl).await.unwrap();
    let state = store.load(&key).await.unwrap().expect("a live session");
    let rows = state.get(PRINCIPAL_KEY).expect("the principal's rows come with the session");
    let loaded = Principal::load(&mut conn, amy, Some(role)).unwrap();
    assert!(loaded.as_ref().is_some_and(|p| p.role.is_some()), "amy.patel holds role {role}");
    assert_eq!(Principal::from_json(rows, amy, Some(role)), Some(loaded), "the same principal as a load on its own");
    assert_eq!(Principal::from_json(rows, amy + 1, Some(role)), None, "another user's rows are not used");

    // Saved back (a changed state), the rows are dropped.
    let key = store.update(key, state, &ttl).await.unwrap();
    assert_eq!(
        crate::support::db::count(&mut conn, &format!("SELECT count(*) FROM sessions WHERE state ? '{PRINCIPAL_KEY}'")),
        0,
        "the principal is never stored"
    );

    // Read afresh on every load: a disabled account has no principal.
    crate::support::db::execute(&mut conn, &format!("UPDATE users SET disabled_at = now() WHERE id = {amy}"));
    let state = store.load(&key).await.unwrap().expect("the session row is still there");
    assert_eq!(Principal::from_json(&state[PRINCIPAL_KEY], amy, Some(role)), Some(None));
}

/// Migration 000024: the principal a session load reads is the array the account keeps, rebuilt by
/// triggers. After every kind of change to what it is built from (the account, its role profiles
/// and their activity codes, the names of organisations, local authorities and job roles, a
/// profile or an account deleted, activities truncated), every account's stored array equals the
/// one built afresh; the change shows in it, and a disabled account's session has no principal.
#[test]
fn the_stored_principal_follows_every_change_it_is_built_from() {
    use crate::support::db::{count, execute, texts};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let stale = "SELECT count(*) FROM users WHERE principal IS DISTINCT FROM user_principal(id)";
    assert_eq!(count(&mut conn, stale), 0, "every account's array is stored as the migration left it");
    let amy = count(&mut conn, "SELECT id AS count FROM users WHERE username = 'amy.patel'");
    let kent = count(&mut conn, "SELECT id AS count FROM users WHERE username = 'kent.social'");
    let stored = |conn: &mut diesel::PgConnection, id: i64| {
        texts(conn, &format!("SELECT coalesce(principal, '(none)') AS s FROM users WHERE id = {id}")).remove(0)
    };
    execute(
        &mut conn,
        "INSERT INTO users (username, display_name, password_hash) VALUES ('new.user', 'New User', '$argon2id$x')",
    );
    let new_user = count(&mut conn, "SELECT id AS count FROM users WHERE username = 'new.user'");
    assert!(stored(&mut conn, new_user).contains("\"profile_id\":null"), "a new account without a profile");
    let steps: Vec<(String, i64, &str)> = vec![
        (format!("UPDATE users SET display_name = 'Dr Amy Patel-Jones' WHERE id = {amy}"), amy, "Amy Patel-Jones"),
        (
            format!("UPDATE users SET must_change_password = true WHERE id = {amy}"),
            amy,
            "\"must_change_password\":true",
        ),
        (
            format!(
                "INSERT INTO role_profiles (user_id, nhs_org_code, job_role_code) \
                 SELECT {amy}, ods_code, 'R0680' FROM nhs_organisations WHERE ods_code = 'RR8'"
            ),
            amy,
            "R0680",
        ),
        (
            format!(
                "INSERT INTO role_profile_activities (role_profile_id, activity_code) \
                 SELECT id, 'B0107' FROM role_profiles WHERE user_id = {amy} AND job_role_code = 'R0680'"
            ),
            amy,
            "\"activity_codes\":[\"B0107\"]",
        ),
        (
            "UPDATE nhs_organisations SET name = 'LEEDS TEACHING RENAMED' WHERE ods_code = 'RR8'".into(),
            amy,
            "LEEDS TEACHING RENAMED",
        ),
        ("UPDATE job_roles SET name = 'Midwife renamed' WHERE code = 'R0680'".into(), amy, "Midwife renamed"),
        (
            format!(
                "DELETE FROM role_profile_activities WHERE role_profile_id IN \
                 (SELECT id FROM role_profiles WHERE user_id = {amy} AND job_role_code = 'R0680')"
            ),
            amy,
            "\"activity_codes\":[]",
        ),
        (format!("DELETE FROM role_profiles WHERE user_id = {amy} AND job_role_code = 'R0680'"), amy, "R8000"),
        (
            "UPDATE local_authorities SET display_name = 'Kent Children''s Services renamed' WHERE code = 'E10000016'"
                .into(),
            kent,
            "Kent Children's Services renamed",
        ),
        (format!("UPDATE users SET disabled_at = now() WHERE id = {amy}"), amy, "\"disabled_at\":\"20"),
    ];
    for (sql, user, shows) in steps {
        execute(&mut conn, &sql);
        assert_eq!(count(&mut conn, stale), 0, "after {sql}");
        assert!(stored(&mut conn, user).contains(shows), "after {sql}: {}", stored(&mut conn, user));
        if sql.starts_with("DELETE FROM role_profiles") {
            assert!(!stored(&mut conn, user).contains("R0680"), "the removed profile is gone");
        }
    }
    // What a session load hands over (the stored array): a disabled account has no principal.
    assert_eq!(cpis::auth::principal::Principal::from_json(&stored(&mut conn, amy), amy, None), Some(None));
    execute(&mut conn, "TRUNCATE role_profile_activities");
    assert_eq!(count(&mut conn, stale), 0, "after TRUNCATE role_profile_activities");
    assert!(stored(&mut conn, kent).contains("\"activity_codes\":[]"));
    execute(&mut conn, &format!("DELETE FROM users WHERE id = {kent}"));
    assert_eq!(count(&mut conn, stale), 0, "after an account is deleted");
}

/// Migration 000024: a rebuild waits for another rebuild of the same account to commit and then
/// reads the account afresh. Here an administrator's transaction removes Kent's staff member's
/// activity codes and still holds the account when Kent's LA is renamed (as an upload does); the
/// rename's rebuild waits for it. Built from its earlier snapshot instead, the rename's rebuild
/// would write the removed codes back after the administrator committed.
#[test]
fn a_rebuild_behind_another_reads_the_account_afresh() {
    use crate::support::db::{count, execute, texts};
    use diesel::Connection;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let (mut admin, mut setup) = (db.conn(), db.conn());
    let kent = count(&mut setup, "SELECT id AS count FROM users WHERE username = 'kent.social'");
    execute(&mut admin, "BEGIN");
    execute(
        &mut admin,
        &format!(
            "DELETE FROM role_profile_activities WHERE role_profile_id IN \
             (SELECT id FROM role_profiles WHERE user_id = {kent})"
        ),
    );
    execute(&mut admin, &format!("SELECT 1 FROM users WHERE id = {kent} FOR NO KEY UPDATE"));
    let url = db.url.clone();
    let rename = std::thread::spawn(move || {
        let mut upload = diesel::PgConnection::establish(&url).unwrap();
        execute(&mut upload, "UPDATE local_authorities SET display_name = 'Kent renamed' WHERE code = 'E10000016'");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count(
        &mut setup,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    ) == 0
    {
        assert!(Instant::now() < deadline, "the rename's rebuild should wait for the account");
        assert!(!rename.is_finished(), "the rename's rebuild went ahead without waiting for the account");
        std::thread::sleep(Duration::from_millis(20));
    }
    execute(&mut admin, "COMMIT");
    rename.join().unwrap();
    let stored = texts(&mut setup, &format!("SELECT principal AS s FROM users WHERE id = {kent}")).remove(0);
    assert!(stored.contains("Kent renamed") && stored.contains("\"activity_codes\":[]"), "{stored}");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM users WHERE principal IS DISTINCT FROM user_principal(id)"), 0);
}

/// Waits (at most 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asks for the search page until it answers `status` (at most 10 s: an announcement takes a
/// fraction of a millisecond on this host, but a loaded test machine may be slow to run anything).
async fn until_answered(c: &Client, status: StatusCode, what: &str) -> reqwest::Response {
    let start = Instant::now();
    loop {
        let res = c.get(SEARCH).await;
        if res.status() == status {
            return res;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: still {} after 10 s", res.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asks for the search page until one is answered from a remembered session (at most 10 s; the
/// sign-in's own writes are announced too, and may forget the first one remembered).
async fn until_remembered(c: &Client, cache: &SessionCache) {
    let start = Instant::now();
    loop {
        let before = cache.counts().remembered;
        assert_eq!(c.get(SEARCH).await.status(), StatusCode::OK);
        if cache.counts().remembered > before {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no page used a remembered session in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Issue 8, CP-IS059: each instance remembers the sessions it has read (src/auth/session_cache.rs),
/// so a page costs no round trip before its handler; anything that changes what a session load
/// returns, made by another connection (another instance, a job, a statement by hand), is
/// announced at its commit (migration 000025) and the session is read afresh. Each change is made
/// while the session is remembered.
#[tokio::test]
async fn a_remembered_session_is_forgotten_when_what_it_holds_changes_elsewhere() {
    use crate::support::db::{count, execute};
    let app = TestApp::spawn(Template::Demo);
    let cache = app.sessions.clone().expect("sessions are remembered by default");
    until("the session listener", || cache.is_listening()).await;
    let mut conn = app.conn();
    let amy = count(&mut conn, "SELECT id AS count FROM users WHERE username = 'amy.patel'");

    let c = app.signed_in("amy.patel").await;
    until_remembered(&c, &cache).await;
    let before = cache.counts();
    assert_eq!(c.get(SEARCH).await.status(), StatusCode::OK);
    assert_eq!(cache.counts().remembered, before.remembered + 1, "the next page used the remembered session");
    assert_eq!(cache.counts().read, before.read, "and read nothing for it");

    // The account loses the activity the search needs: its principal changes, so its sessions go.
    execute(
        &mut conn,
        &format!(
            "DELETE FROM role_profile_activities WHERE activity_code = 'B0264' \
             AND role_profile_id IN (SELECT id FROM role_profiles WHERE user_id = {amy})"
        ),
    );
    until_answered(&c, StatusCode::FORBIDDEN, "the removed activity").await;
    execute(
        &mut conn,
        &format!(
            "INSERT INTO role_profile_activities (role_profile_id, activity_code) \
             SELECT id, 'B0264' FROM role_profiles WHERE user_id = {amy}"
        ),
    );
    until_answered(&c, StatusCode::OK, "the restored activity").await;

    // The session's state changed by another instance (here: its role forgotten).
    until_remembered(&c, &cache).await;
    execute(&mut conn, &format!("UPDATE sessions SET state = state - 'rid' WHERE user_id = {amy}"));
    let res = until_answered(&c, StatusCode::SEE_OTHER, "the role forgotten").await;
    assert_eq!(res.headers()["location"], "/select-role");

    // Its expiry brought forward; the row deleted (signed out elsewhere); the account disabled;
    // every session emptied at once.
    for (user, change) in [
        ("amy.patel", format!("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = {amy}")),
        ("amy.patel", format!("DELETE FROM sessions WHERE user_id = {amy}")),
        ("amy.patel", format!("UPDATE users SET disabled_at = now() WHERE id = {amy}")),
        ("sam.okafor", "TRUNCATE sessions".to_owned()),
    ] {
        let c = app.signed_in(user).await;
        until_remembered(&c, &cache).await;
        execute(&mut conn, &change);
        let res = until_answered(&c, StatusCode::SEE_OTHER, &change).await;
        assert_eq!(res.headers()["location"], "/sign-in", "{change}");
    }

    // An extension of the idle expiry (every load's, about once a minute) announces nothing.
    let c = app.signed_in("sam.okafor").await;
    until_remembered(&c, &cache).await;
    execute(&mut conn, "UPDATE sessions SET expires_at = expires_at + interval '1 minute'");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cache.counts();
    assert_eq!(c.get(SEARCH).await.status(), StatusCode::OK);
    assert_eq!(cache.counts().remembered, before.remembered + 1, "still remembered");
}

/// Issue 8: a remembered session is never used past its absolute limit, however fresh its idle
/// expiry (30 minutes here: remembered for a minute).
#[tokio::test]
async fn a_remembered_session_ends_at_its_absolute_limit() {
    let app = TestApp::spawn_with(Template::Demo, |config| {
        config.session_absolute = Duration::from_secs(4);
    });
    let cache = app.sessions.clone().expect("sessions are remembered by default");
    until("the session listener", || cache.is_listening()).await;
    let c = app.signed_in("amy.patel").await;
    let signed_in = Instant::now();
    until_remembered(&c, &cache).await;
    sleep_until(signed_in, Duration::from_millis(4500)).await;
    assert_sent_to_sign_in(&c, "4.5 s after sign-in (absolute limit 4 s)").await;
}

/// Issue 8: a request reads the announcements that have arrived itself before it uses a
/// remembered session (the listener's own thread here never does); a listening connection that
/// was lost is noticed by the next request, which forgets everything and reads the database, so
/// a change made while nobody listened (its announcement lost with the connection) is honoured.
#[tokio::test]
async fn requests_read_the_announcements_themselves_and_notice_a_lost_listener() {
    use crate::support::db::{count, execute};
    use actix_session::storage::SessionStore;
    use cpis::auth::principal::{Principal, PRINCIPAL_KEY};
    use cpis::auth::session_store::{PgSessionStore, USER_ID_KEY};
    use diesel::r2d2::Pool;
    use std::collections::HashMap;

    let db = crate::support::TestDatabase::new(Template::Demo);
    // The thread reads the connection once as it begins to listen (before the session below
    // exists) and then only once an hour: whatever is read after that, a load read.
    let cache = SessionCache::start_polling(&db.url, Duration::from_secs(3600));
    until("the session listener", || cache.is_listening()).await;
    let pool = Pool::builder().max_size(2).build(cpis::db::manager::Manager::new(&db.url)).unwrap();
    let store =
        PgSessionStore::new(pool, Duration::from_secs(3600), Duration::from_secs(600)).remembering(Some(cache.clone()));
    let ttl = actix_web::cookie::time::Duration::seconds(600);
    let mut conn = db.conn();
    let amy = count(&mut conn, "SELECT id AS count FROM users WHERE username = 'amy.patel'");
    let key = store.save(HashMap::from([(USER_ID_KEY.to_owned(), amy.to_string())]), &ttl).await.unwrap();
    let disabled =
        |state: &HashMap<String, String>| Principal::from_json(&state[PRINCIPAL_KEY], amy, None) == Some(None);

    let remembered = || cache.counts().remembered;
    assert!(!disabled(&store.load(&key).await.unwrap().unwrap()));
    let hits = remembered();
    assert!(!disabled(&store.load(&key).await.unwrap().unwrap()));
    assert_eq!(remembered(), hits + 1, "remembered");

    execute(&mut conn, &format!("UPDATE users SET disabled_at = now() WHERE id = {amy}"));
    let start = Instant::now();
    while !disabled(&store.load(&key).await.unwrap().unwrap()) {
        assert!(start.elapsed() < Duration::from_secs(10), "the load never read the announcement");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Enabled again and remembered again; then the listening backend is terminated (waiting until
    // it has gone) and the account disabled while nobody listens.
    execute(&mut conn, &format!("UPDATE users SET disabled_at = NULL WHERE id = {amy}"));
    let start = Instant::now();
    loop {
        let hits = remembered();
        let state = store.load(&key).await.unwrap().unwrap();
        if !disabled(&state) && remembered() > hits {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never remembered enabled again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let terminated = count(
        &mut conn,
        "SELECT count(*) FROM (SELECT pid FROM pg_stat_activity \
           WHERE application_name = 'cpis-session-listener' AND datname = current_database() OFFSET 0) AS s \
         WHERE pg_terminate_backend(s.pid, 5000)",
    );
    assert_eq!(terminated, 1, "the listening backend");
    execute(&mut conn, &format!("UPDATE users SET disabled_at = now() WHERE id = {amy}"));
    let hits = remembered();
    assert!(disabled(&store.load(&key).await.unwrap().unwrap()), "the very next load reads the database");
    assert_eq!(remembered(), hits, "and nothing remembered was used");
    assert!(!cache.is_listening(), "nothing is remembered until a connection listens again");
}

/// Migration 000026: only signed-in sessions are remembered, so only their changes are announced;
/// the clean-up job's deletion of sign-in-page sessions (anyone can make many) sends nothing.
#[test]
fn only_the_changes_of_signed_in_sessions_are_announced() {
    use crate::support::db::{count, execute};
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut listener = db.conn();
    execute(&mut listener, "LISTEN cpis_sessions");
    let mut conn = db.conn();
    let amy = count(&mut conn, "SELECT id AS count FROM users WHERE username = 'amy.patel'");
    let (anonymous, signed_in) = ("aa".repeat(32), "bb".repeat(32));
    execute(
        &mut conn,
        &format!(
            "INSERT INTO sessions (key_hash, user_id, state, expires_at, absolute_expires_at) VALUES \
             (decode('{anonymous}', 'hex'), NULL, '{{}}', now() + interval '1 hour', now() + interval '2 hours'), \
             (decode('{signed_in}', 'hex'), {amy}, '{{}}', now() + interval '1 hour', now() + interval '2 hours')"
        ),
    );
    execute(&mut conn, r#"UPDATE sessions SET state = '{"csrf": "x"}'"#);
    execute(&mut conn, "DELETE FROM sessions WHERE user_id IS NULL");
    execute(&mut conn, "DELETE FROM sessions");
    // A marker after them all: once it has arrived, so has everything before it.
    execute(&mut conn, "NOTIFY cpis_sessions, 'marker'");
    let mut heard = Vec::new();
    let start = Instant::now();
    while heard.last().map(String::as_str) != Some("marker") {
        assert!(start.elapsed() < Duration::from_secs(10), "heard only {heard:?}");
        heard.extend(listener.notifications_iter().map(|n| n.unwrap().payload));
        std::thread::sleep(Duration::from_millis(5));
    }
    let session = format!("k{signed_in}");
    assert_eq!(heard, [session.as_str(), session.as_str(), "marker"], "the signed-in session's update and deletion");
}
