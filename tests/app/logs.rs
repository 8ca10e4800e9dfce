//! The logs of the real binary (docs/LOGGING.md): one JSON object a line, one line per request by
//! route pattern, and no personal data, however much of it went through the service.

use cpis::seed::demo::fixtures::MIA_THOMPSON;
use diesel::prelude::*;
use diesel::sql_types::Text;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::server::Server;
use crate::support::{between, Template, TestDatabase, PASSWORD};

/// Records what a journey must never let reach the logs: session cookies and CSRF tokens.
#[derive(Default)]
struct Secrets(Vec<String>);

impl Secrets {
    fn cookies(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let value = v.split(';').next().unwrap();
            let value = value.split_once('=').map_or(value, |(_, v)| v);
            if value.len() >= 43 {
                self.0.push(value.to_owned());
                // The signed value ends with the session key itself.
                self.0.push(value[value.len() - 43..].to_owned());
            }
        }
    }
}

#[derive(QueryableByName)]
struct BirthDate {
    #[diesel(sql_type = Text)]
    iso: String,
    #[diesel(sql_type = Text)]
    uk: String,
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = Text)]
    month: String,
    #[diesel(sql_type = Text)]
    year: String,
}

fn birth_date(db: &TestDatabase, nhs: &str) -> BirthDate {
    diesel::sql_query(
        "SELECT to_char(birth_date, 'YYYY-MM-DD') AS iso, to_char(birth_date, 'DD/MM/YYYY') AS uk, \
         to_char(birth_date, 'FMDD') AS day, to_char(birth_date, 'FMMM') AS month, \
         to_char(birth_date, 'YYYY') AS year FROM patients WHERE nhs_number = $1",
    )
    .bind::<Text, _>(nhs)
    .get_result(&mut db.conn())
    .expect("the fixture's birth date")
}

/// The lines of the log that are not one JSON object each.
fn non_json_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()))
        .collect()
}

/// The log's JSON objects (the other lines are `json_logs_are_one_json_object_a_line`'s concern).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(Value::is_object).collect()
}

fn request_lines<'a>(lines: &'a [Value], route: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["fields"]["message"] == "request" && v["fields"]["route"] == route).collect()
}

#[tokio::test]
async fn json_logs_are_one_json_object_a_line() {
    let db = TestDatabase::new(Template::Demo);
    let mut server = Server::start(&db);
    server.wait_until_healthy().await;
    let c = server.client();
    assert_eq!(c.get("/sign-in").await.status(), StatusCode::OK);
    assert_eq!(c.get("/nope").await.status(), StatusCode::NOT_FOUND);
    let log = server.stop();
    let lines = json_lines(&log);
    assert!(!request_lines(&lines, "/sign-in").is_empty(), "the requests are logged:\n{log}");
    let others = non_json_lines(&log);
    assert!(
        others.is_empty(),
        "with CPIS_LOG_FORMAT=json every line is a JSON object; these are not:\n{}",
        others.join("\n")
    );
}

#[tokio::test]
async fn the_clinician_journey_logs_no_personal_data() {
    let db = TestDatabase::new(Template::Demo);
    let born = birth_date(&db, MIA_THOMPSON);
    let mut server = Server::start(&db);
    server.wait_until_healthy().await;
    let mut secrets = Secrets::default();

    let c = server.client();
    let res = c.sign_in("amy.patel", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "amy.patel signs in");
    assert_eq!(res.headers()["location"], "/");
    secrets.cookies(&res);
    let page = c.text("/search").await;
    secrets.0.push(between(&page, "name=\"csrf_token\" value=\"", "\"").expect("a CSRF token"));

    let res = c.get("/search?by=nhs&nhs_number=999+000+0042").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "search by NHS number");
    assert_eq!(res.headers()["location"], format!("/patients/{MIA_THOMPSON}"));
    secrets.cookies(&res);

    let res = c
        .get(&format!(
            "/search?by=demographics&family_name=Thompson&given_name=Mia&dob_day={}&dob_month={}&dob_year={}",
            born.day, born.month, born.year
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "search by demographics");
    secrets.cookies(&res);
    assert!(res.text().await.unwrap().contains("999 000 0042"), "the demographic search finds Mia Thompson");

    let res = c.get(&format!("/patients/{MIA_THOMPSON}")).await;
    assert_eq!(res.status(), StatusCode::OK, "the patient record");
    secrets.cookies(&res);
    let res = c.get(&format!("/patients/{MIA_THOMPSON}/child-care-alert")).await;
    assert_eq!(res.status(), StatusCode::OK, "the Child Care Alert tab");
    secrets.cookies(&res);
    assert!(res.text().await.unwrap().contains("THOMPSON"));

    let res = c.get(&format!("/patients/{MIA_THOMPSON}/nope")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "a path with an NHS number that matches no route");
    secrets.cookies(&res);

    let other = server.client();
    let res = other.sign_in("amy.patel", "not the password at all").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a failed sign-in");
    secrets.cookies(&res);

    let res = c.post_form("/sign-out", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "sign-out");
    secrets.cookies(&res);

    let log = server.stop();
    assert!(!log.trim().is_empty(), "the service logged something");
    let lines = json_lines(&log);
    let tab = request_lines(&lines, "/patients/{nhs_number}/child-care-alert");
    assert!(
        tab.iter().any(|v| v["fields"]["status"] == 200),
        "the tab's request is logged by its route pattern:\n{log}"
    );
    assert!(
        request_lines(&lines, "(unmatched)").iter().any(|v| v["fields"]["status"] == 404),
        "the unmatched path is logged as unmatched:\n{log}"
    );

    let mut never = vec![
        MIA_THOMPSON.to_owned(),
        "999 000 0042".into(),
        "999+000+0042".into(),
        "Thompson".into(),
        "THOMPSON".into(),
        "Mia".into(),
        born.iso.clone(),
        born.uk.clone(),
        PASSWORD.into(),
        "not the password at all".into(),
        "amy.patel".into(),
        "Amy Patel".into(),
    ];
    never.extend(secrets.0.iter().cloned());
    for secret in &never {
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} reached the log:\n{}",
            log.lines().filter(|l| l.contains(secret.as_str())).collect::<Vec<_>>().join("\n")
        );
    }
}
