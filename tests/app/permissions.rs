//! The permission matrix: every route of the one route table (src/routes.rs), requested as
//! anonymous, as every demo persona (with their first role), as a persona with several roles who
//! has not chosen one yet, and as a disabled user whose session was live. Each answer is checked
//! against what the route's declared permission decides for that person, so a route whose
//! handler or middleware disagrees with the table fails here, and a route with a new path
//! parameter fails until the matrix knows a sample value for it.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use actix_web::http::Method;
use diesel::PgConnection;

use cpis::auth::permission::Decision;
use cpis::auth::{Permission, Principal};
use cpis::routes::RouteTable;
use cpis::seed::demo::PERSONAS;

use crate::support::db::{count, execute};
use crate::support::{between, Client, Template, TestApp, PASSWORD};

/// The phrase of the page the middleware answers a denied request with.
const DENIED: &str = "does not allow this";

/// A throwaway user whose id and role profile fill `{id}` and `{profile_id}`; the
/// administration routes act on it (disable, reset password, remove its role profile).
const TARGET: &str = "matrix.target";
/// A throwaway clinician, signed in and then disabled: the "disabled user" column.
const DISABLED: &str = "matrix.disabled";
/// A persona with two role profiles, also requested before choosing one.
const MULTI_ROLE: &str = "nadia.khan";

/// Routes whose own handler answers with the same redirect a denial would, so that an allowed
/// request cannot be told from a refused one by the answer alone: (method, pattern, location).
/// POST /sign-out is confirmed by its audit record; GET / sends a user without a role to choose
/// one, which is its job.
const HANDLER_REDIRECTS: &[(&str, &str, &str)] = &[("POST", "/sign-out", "/sign-in"), ("GET", "/", "/select-role")];

/// A sample value for every path parameter the route table uses, by name. Where no row fits,
/// the value names nothing: an allowed request may then answer 404, which still shows that the
/// authorisation let it through.
fn sample_values(target_id: i64, target_profile_id: i64) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        // Mia Thompson: CPP and LAC, so the alert tab has something to show.
        ("nhs_number", "9990000042".to_owned()),
        // Kent, for the local authority pages and its mailbox.
        ("code", "E10000016".to_owned()),
        ("la", "E10000016".to_owned()),
        // King's College Hospital, for the NHS systems admin pages.
        ("ods", "RJZ".to_owned()),
        // The throwaway user (also the `{id}` of /la/uploads/{id}, where it names no upload).
        ("id", target_id.to_string()),
        ("profile_id", target_profile_id.to_string()),
        // No such message or endpoint token.
        ("message_id", "00000000-0000-4000-8000-000000000000".to_owned()),
        ("token_id", "999999".to_owned()),
        // No such incident (CP-IS078's incident log).
        ("incident_id", "999999".to_owned()),
    ])
}

/// The route pattern with every `{param}` (or `{param:regex}`) replaced by its sample value.
fn concrete_path(pattern: &str, samples: &BTreeMap<&'static str, String>) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|i| open + i).unwrap_or_else(|| panic!("unclosed {{ in {pattern}"));
        let name = rest[open + 1..close].split(':').next().unwrap_or_default();
        let value = samples.get(name).unwrap_or_else(|| {
            panic!(
                "the route {pattern} has the path parameter {{{name}}}, which the permission matrix does not know: \
                 add a sample value for `{name}` to sample_values() in tests/app/permissions.rs"
            )
        });
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A demo persona, signed in with their first role profile selected.
    Persona(&'static str),
    /// Signed in, no role chosen yet.
    NoRole(&'static str),
    /// Signed in, then the account disabled.
    Disabled,
}

struct Column {
    label: String,
    who: Who,
    /// What each permission decides for this person.
    principal: Option<Principal>,
}

/// One answer, as much of it as the matrix needs.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Answer {
    async fn from(res: reqwest::Response) -> Answer {
        let status = res.status().as_u16();
        let location = res.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = res.text().await.unwrap_or_default();
        Answer { status, location, body }
    }

    fn redirects_to(&self, path: &str) -> bool {
        self.status == 303 && self.location.as_deref() == Some(path)
    }

    fn is_denial_page(&self) -> bool {
        self.status == 403 && self.body.contains(DENIED)
    }

    /// The first paragraph of the page's main content, for a failure message.
    fn message(&self) -> String {
        let main = self.body.split_once("id=\"maincontent\"").map(|(_, m)| m).unwrap_or("");
        let text = between(main, "<p>", "</p>").or_else(|| between(main, "<h1>", "</h1>")).unwrap_or_default();
        text.trim().chars().take(160).collect()
    }

    /// A short form for the printed matrix.
    fn cell(&self) -> String {
        match (self.status, self.location.as_deref()) {
            (303, Some("/sign-in")) => "303>in".into(),
            (303, Some("/select-role")) => "303>role".into(),
            (303, Some(other)) => format!("303>{}", other.trim_start_matches('/').split('/').next().unwrap_or("")),
            (403, _) if self.is_denial_page() => "403".into(),
            (403, _) => "403?".into(),
            (status, _) => status.to_string(),
        }
    }
}

/// One request of the matrix: what the table decides, what came back, and whether they agree.
struct Cell {
    expected: Decision,
    answer: Answer,
    verdict: Result<(), String>,
}

/// A column label: the first part of a username ("amy.patel" -> "amy").
fn short(username: &str) -> String {
    username.split('.').next().unwrap_or(username).to_owned()
}

fn id_of(conn: &mut PgConnection, username: &str) -> i64 {
    count(conn, &format!("SELECT id FROM users WHERE username = '{username}'"))
}

fn first_role_of(conn: &mut PgConnection, user_id: i64) -> i64 {
    count(conn, &format!("SELECT min(id) FROM role_profiles WHERE user_id = {user_id}"))
}

/// A user with the demo password and one role profile (RJZ, R8000 with the given activities).
fn create_user(conn: &mut PgConnection, username: &str, activities: &[&str]) -> (i64, i64) {
    execute(
        conn,
        &format!(
            "INSERT INTO users (username, display_name, email, password_hash) \
             SELECT '{username}', 'Matrix {username}', '{username}@nhs.example.org', password_hash \
             FROM users WHERE username = 'amy.patel'"
        ),
    );
    let user_id = id_of(conn, username);
    execute(
        conn,
        &format!("INSERT INTO role_profiles (user_id, nhs_org_code, job_role_code) VALUES ({user_id}, 'RJZ', 'R8000')"),
    );
    let profile_id = first_role_of(conn, user_id);
    for a in activities {
        execute(
            conn,
            &format!(
                "INSERT INTO role_profile_activities (role_profile_id, activity_code) VALUES ({profile_id}, '{a}')"
            ),
        );
    }
    (user_id, profile_id)
}

/// What the database holds that a refused request must not change.
fn footprint(conn: &mut PgConnection) -> (i64, i64) {
    (count(conn, "SELECT count(*) FROM audit_log"), count(conn, "SELECT count(*) FROM access_events"))
}

fn signed_out_records(conn: &mut PgConnection) -> i64 {
    count(conn, "SELECT count(*) FROM audit_log WHERE action = 'auth.signed_out'")
}

/// A client for a column, signed in as that column's person.
async fn client_for(app: &TestApp, who: Who) -> Client {
    match who {
        Who::Anonymous => app.client(),
        Who::Persona(username) => app.signed_in(username).await,
        Who::NoRole(username) => {
            let c = app.client();
            let res = c.sign_in(username, PASSWORD).await;
            assert_eq!(res.status(), 303, "sign-in of {username}");
            assert_eq!(res.headers()["location"], "/select-role", "{username} has several roles to choose from");
            c
        }
        Who::Disabled => {
            let c = app.client();
            let res = c.sign_in(DISABLED, PASSWORD).await;
            assert_eq!(res.status(), 303, "sign-in of {DISABLED} before it is disabled");
            c
        }
    }
}

/// GET as it is; any other method with an empty form carrying the session's token (what a
/// page's form would send), read from a page first.
async fn request(c: &Client, method: &Method, path: &str) -> Answer {
    if *method == Method::GET {
        Answer::from(c.get(path).await).await
    } else {
        let token = c.csrf().await;
        send_with_token(c, method, path, &token).await
    }
}

/// A request with an empty form and a token read earlier (the disabled user's token was read
/// while the account was enabled).
async fn send_with_token(c: &Client, method: &Method, path: &str, token: &str) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("an HTTP method");
    let res = c
        .http
        .request(method.clone(), format!("{}{}", c.base, path))
        .form(&[("csrf_token", token)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    Answer::from(res).await
}

/// Checks one answer against the expected decision; `Err` says what is wrong.
fn check(
    method: &Method,
    pattern: &str,
    who: Who,
    expected: Decision,
    answer: &Answer,
    footprint_changed: bool,
    signed_out_recorded: bool,
) -> Result<(), String> {
    let denied_without_trace = || {
        if footprint_changed {
            Err("refused, yet audit_log or access_events changed".to_owned())
        } else {
            Ok(())
        }
    };
    match expected {
        Decision::SignIn if answer.redirects_to("/sign-in") => denied_without_trace(),
        Decision::SignIn => Err("expected 303 to /sign-in".into()),
        Decision::ChooseRole if answer.redirects_to("/select-role") => denied_without_trace(),
        Decision::ChooseRole => Err("expected 303 to /select-role".into()),
        Decision::Deny if answer.is_denial_page() => denied_without_trace(),
        Decision::Deny => Err(format!("expected 403 with a page saying {DENIED:?}")),
        Decision::Allow => {
            if answer.status >= 500 {
                return Err("allowed, but the server failed".into());
            }
            if answer.is_denial_page() {
                return Err("allowed by the table, refused by the service".into());
            }
            // With a valid token and a live session, a 403 means the request never reached the
            // handler (a refused form or origin): the matrix would prove nothing.
            if answer.status == 403 && who != Who::Disabled {
                return Err("allowed, but refused with 403 (form token or origin?)".into());
            }
            for denial in ["/sign-in", "/select-role"] {
                if answer.redirects_to(denial) {
                    let own = HANDLER_REDIRECTS
                        .iter()
                        .any(|(m, p, l)| *m == method.as_str() && *p == pattern && *l == denial);
                    if !own {
                        return Err(format!("allowed by the table, but sent to {denial} like a refused request"));
                    }
                    if pattern == "/sign-out" && !signed_out_recorded {
                        return Err("allowed sign-out redirected to /sign-in without recording auth.signed_out".into());
                    }
                }
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn every_route_allows_and_denies_exactly_as_the_route_table_declares() {
    let started = Instant::now();
    let table = RouteTable::new();
    let specs = table.specs();

    // The table itself: one permission per (method, path).
    let mut seen = HashSet::new();
    for (method, path, _) in specs {
        assert!(seen.insert((method.clone(), *path)), "{method} {path} is declared twice in the route table");
        assert!(path.starts_with('/'), "{path} does not start with /");
    }
    let paths: HashSet<&str> = specs.iter().map(|(_, p, _)| *p).collect();
    for path in &paths {
        assert!(specs.iter().any(|(_, p, _)| p == path), "{path} has no method");
    }

    let app = TestApp::spawn_with(Template::Demo, |c| c.sign_in_limit = 100_000);
    let mut conn = app.conn();
    let (target_id, target_profile_id) = create_user(&mut conn, TARGET, &["B0264", "B0107"]);
    let (disabled_id, disabled_profile_id) = create_user(&mut conn, DISABLED, &["B0264", "B0107"]);
    let samples = sample_values(target_id, target_profile_id);
    let concrete: Vec<String> = specs.iter().map(|(_, pattern, _)| concrete_path(pattern, &samples)).collect();

    // The columns, and what each person's selected role holds.
    let mut columns = vec![Column { label: "anon".into(), who: Who::Anonymous, principal: None }];
    for persona in PERSONAS {
        let uid = id_of(&mut conn, persona.username);
        let rid = first_role_of(&mut conn, uid);
        let principal = Principal::load(&mut conn, uid, Some(rid)).unwrap().expect("an enabled persona");
        assert!(principal.role.is_some(), "{}: role {rid} loads", persona.username);
        columns.push(Column {
            label: short(persona.username),
            who: Who::Persona(persona.username),
            principal: Some(principal),
        });
    }
    let multi = PERSONAS.iter().find(|p| p.username == MULTI_ROLE).expect("the multi-role persona");
    assert!(multi.profiles.len() > 1, "{MULTI_ROLE} has several role profiles");
    let uid = id_of(&mut conn, MULTI_ROLE);
    let principal = Principal::load(&mut conn, uid, None).unwrap().expect("an enabled persona");
    columns.push(Column {
        label: format!("{}:none", short(MULTI_ROLE)),
        who: Who::NoRole(MULTI_ROLE),
        principal: Some(principal),
    });
    let disabled_column = columns.len();
    columns.push(Column { label: "disabled".into(), who: Who::Disabled, principal: None });

    // answers[spec][column]
    let mut answers: Vec<Vec<Option<Cell>>> = specs.iter().map(|_| columns.iter().map(|_| None).collect()).collect();

    // POSTs (and any other method but GET) first, each from a fresh session: some change state
    // (sign-out ends the session; the administration routes act on the throwaway user).
    for (ci, column) in columns.iter().enumerate().filter(|(ci, _)| *ci != disabled_column) {
        for (si, (method, pattern, permission)) in specs.iter().enumerate().filter(|(_, s)| s.0 != Method::GET) {
            let expected = permission.decide(column.principal.as_ref());
            let c = client_for(&app, column.who).await;
            let (before, outs_before) = (footprint(&mut conn), signed_out_records(&mut conn));
            let answer = request(&c, method, &concrete[si]).await;
            let changed = footprint(&mut conn) != before;
            let signed_out = signed_out_records(&mut conn) == outs_before + 1;
            let verdict = check(method, pattern, column.who, expected, &answer, changed, signed_out);
            answers[si][ci] = Some(Cell { expected, answer, verdict });
        }
    }

    // GETs: one session per person.
    for (ci, column) in columns.iter().enumerate().filter(|(ci, _)| *ci != disabled_column) {
        let c = client_for(&app, column.who).await;
        for (si, (method, pattern, permission)) in specs.iter().enumerate().filter(|(_, s)| s.0 == Method::GET) {
            let expected = permission.decide(column.principal.as_ref());
            let before = footprint(&mut conn);
            let answer = request(&c, method, &concrete[si]).await;
            let changed = footprint(&mut conn) != before;
            let verdict = check(method, pattern, column.who, expected, &answer, changed, false);
            answers[si][ci] = Some(Cell { expected, answer, verdict });
        }
    }

    // The disabled user: one live session per route (a refused request ends the session), each
    // with its form token read while the account was enabled; then the account is disabled.
    let mut sessions = Vec::new();
    for (method, _, _) in specs {
        let c = client_for(&app, Who::Disabled).await;
        let token = if *method == Method::GET { None } else { Some(c.csrf().await) };
        sessions.push((c, token));
    }
    assert_eq!(
        count(&mut conn, &format!("SELECT count(*) FROM sessions WHERE user_id = {disabled_id}")),
        specs.len() as i64
    );
    app.change_account_elsewhere(
        disabled_id,
        &format!("UPDATE users SET disabled_at = now() WHERE id = {disabled_id}"),
    )
    .await;
    let principal = Principal::load(&mut conn, disabled_id, Some(disabled_profile_id)).unwrap();
    assert!(principal.is_none(), "a disabled account loads no principal");
    for (si, ((method, pattern, permission), (c, token))) in specs.iter().zip(&sessions).enumerate() {
        // A disabled account is nobody: whatever needs a session sends them to sign in.
        let expected = permission.decide(principal.as_ref());
        assert!(matches!(expected, Decision::Allow | Decision::SignIn), "{method} {pattern}: {expected:?}");
        let before = footprint(&mut conn);
        let answer = match token {
            Some(t) => send_with_token(c, method, &concrete[si], t).await,
            None => request(c, method, &concrete[si]).await,
        };
        let changed = footprint(&mut conn) != before;
        let verdict = check(method, pattern, Who::Disabled, expected, &answer, changed, false);
        answers[si][disabled_column] = Some(Cell { expected, answer, verdict });
    }
    let left = count(&mut conn, &format!("SELECT count(*) FROM sessions WHERE user_id = {disabled_id}"));

    // The matrix, printed: a failing run shows every answer at once ("!" marks a wrong one).
    let route_width = specs.iter().map(|(m, p, perm)| format!("{m} {p} [{perm:?}]").len()).max().unwrap_or(0);
    let width = columns.iter().map(|c| c.label.len()).max().unwrap_or(0).max(10);
    let mut printed = format!("{:route_width$}", "route [permission]");
    for column in &columns {
        printed.push_str(&format!(" {:>width$}", column.label));
    }
    printed.push('\n');
    let mut failures = Vec::new();
    for (si, (method, pattern, permission)) in specs.iter().enumerate() {
        printed.push_str(&format!("{:route_width$}", format!("{method} {pattern} [{permission:?}]")));
        for (ci, column) in columns.iter().enumerate() {
            let Cell { expected, answer, verdict } = answers[si][ci].as_ref().expect("every cell was requested");
            let mark = if verdict.is_ok() { "" } else { "!" };
            printed.push_str(&format!(" {:>width$}", format!("{mark}{}", answer.cell())));
            if let Err(why) = verdict {
                failures.push(format!(
                    "{method} {} as {}: expected {expected:?}, got {} {:?}: {why} {:?}",
                    concrete[si],
                    column.label,
                    answer.status,
                    answer.location.as_deref().unwrap_or(""),
                    answer.message()
                ));
            }
        }
        printed.push('\n');
    }
    eprintln!(
        "{printed}(303>in: to /sign-in; 303>role: to /select-role; 403: the denial page; 403?: another 403)\n\
         {} routes x {} people in {:.1} s",
        specs.len(),
        columns.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} answers disagree with the route table:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(left, 0, "every session of the disabled user ended at its first request");
}

#[tokio::test]
async fn a_route_missing_from_the_table_is_refused() {
    let table = RouteTable::new();
    assert_eq!(table.permission_for(&Method::GET, Some("/search"), "/search"), Some(Permission::PatientTrace));
    // A declared path with an undeclared method has no permission ...
    assert_eq!(table.permission_for(&Method::DELETE, Some("/search"), "/search"), None);
    assert_eq!(table.permission_for(&Method::PUT, Some("/admin/users/{id}"), "/admin/users/1"), None);
    // ... and the middleware refuses it, whoever asks (deny by default), before any handler.
    let app = TestApp::spawn(Template::Demo);
    for c in [app.client(), app.signed_in("amy.patel").await] {
        let res = c.http.delete(format!("{}/search", c.base)).send().await.unwrap();
        assert_eq!(res.status(), 403);
        assert!(res.text().await.unwrap().contains(DENIED));
    }
}

#[test]
#[should_panic(expected = "add a sample value for `thing_id`")]
fn a_route_parameter_without_a_sample_value_fails_the_matrix() {
    concrete_path("/things/{thing_id}", &sample_values(1, 2));
}

#[test]
fn sample_values_fill_every_parameter() {
    let samples = sample_values(7, 8);
    for (method, pattern, _) in RouteTable::new().specs() {
        let path = concrete_path(pattern, &samples);
        assert!(!path.contains(['{', '}']), "{method} {pattern} -> {path}");
    }
    assert_eq!(concrete_path("/admin/users/{id}/roles/{profile_id}/remove", &samples), "/admin/users/7/roles/8/remove");
    assert_eq!(concrete_path("/patients/{nhs_number:\\d+}", &samples), "/patients/9990000042");
    assert_eq!(concrete_path("/search", &samples), "/search");
}
