//! The FHIR R4 API for NHS systems (messages 03 and 04, messages.md "03/04 NHS Query and Response"):
//! every header rule and error code over HTTP, CareTeam and AuditEvent as the contract maps them,
//! the access rules (CP-IS041, CP-IS047, CP-IS048, CP-IS068, CP-IS073), the rate limit and the
//! CapabilityStatement, each resource checked against the structure FHIR R4 requires.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use cpis::audit::Actor;
use cpis::domain::dates::{format_date, format_uk_datetime};
use cpis::mailbox::tokens;
use cpis::seed::demo::fixtures::*;

use crate::support::db::count;
use crate::support::{between, Template, TestApp};

const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const SNOMED: &str = "http://snomed.info/sct";
const SPINE: &str = "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode";
const CPP: &str = "342191000000101";
const LAC: &str = "764841000000100";
const UCPP: &str = "818901000000100";
/// A valid NHS number (modulus 11) that the demo PDS does not hold.
const UNKNOWN: &str = "9434765919";

const USER_ID: &str = "5551-2222-3333";
const USER_NAME: &str = "Dr Rosa Hughes";

fn token(app: &TestApp) -> String {
    tokens::issue_nhs(&mut app.conn(), Actor::Operator, "RJZ", "test").unwrap()
}

fn token_id(app: &TestApp) -> i64 {
    app.count("SELECT max(id) FROM endpoint_tokens WHERE kind = 'nhs'")
}

fn query(nhs: &str) -> String {
    format!("patient:identifier={NHS_SYSTEM}|{nhs}")
}

/// The four end-user headers of a clinician at RJZ with this job role.
fn user(role: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NHSD-End-User-ID", USER_ID.to_owned()),
        ("NHSD-End-User-Name", USER_NAME.to_owned()),
        ("NHSD-End-User-Role", role.to_owned()),
        ("NHSD-End-User-Organisation-ODS", "RJZ".to_owned()),
    ]
}

fn without(headers: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    headers.iter().filter(|(n, _)| *n != name).cloned().collect()
}

fn with(headers: &[(&'static str, String)], name: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut h = without(headers, name);
    h.push((name, value.to_owned()));
    h
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn spine_code(&self) -> &str {
        self.body["issue"][0]["details"]["coding"][0]["code"].as_str().unwrap_or("")
    }
    fn total(&self) -> u64 {
        self.body["total"].as_u64().expect("a total")
    }
    fn resources(&self, kind: &str) -> Vec<&Value> {
        self.body["entry"]
            .as_array()
            .map(|e| e.iter().map(|e| &e["resource"]).filter(|r| r["resourceType"] == kind).collect())
            .unwrap_or_default()
    }
}

async fn get(app: &TestApp, path: &str, token: Option<&str>, headers: &[(&'static str, String)]) -> Answer {
    let mut rb = reqwest::Client::new().get(app.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    for (n, v) in headers {
        rb = rb.header(*n, v);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON from {path}: {text}"));
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/fhir+json"), "{path}: content type {ct}");
    check(&body);
    Answer { status, headers, body }
}

async fn care_team(app: &TestApp, token: &str, nhs: &str, headers: &[(&'static str, String)]) -> Answer {
    get(app, &format!("/cpis/FHIR/R4/CareTeam?{}", query(nhs)), Some(token), headers).await
}

async fn audit_events(app: &TestApp, token: &str, nhs: &str, headers: &[(&'static str, String)]) -> Answer {
    get(app, &format!("/cpis/FHIR/R4/AuditEvent?{}", query(nhs)), Some(token), headers).await
}

fn accesses(app: &TestApp, nhs: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM access_events WHERE nhs_number = '{nhs}'"))
}

fn all_accesses(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM access_events")
}

// ---------------------------------------------------------------------------------------------
// A structural check of FHIR R4 resources: the required elements and the code systems used.

fn is_date(s: &str) -> bool {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

fn coding(v: &Value, what: &str) -> (String, String) {
    let system = v["system"].as_str().unwrap_or_else(|| panic!("{what}: coding.system in {v}"));
    let code = v["code"].as_str().unwrap_or_else(|| panic!("{what}: coding.code in {v}"));
    assert!(!code.is_empty(), "{what}: empty code");
    (system.to_owned(), code.to_owned())
}

fn check(r: &Value) {
    let kind = r["resourceType"].as_str().unwrap_or_else(|| panic!("resourceType missing: {r}"));
    match kind {
        "Bundle" => {
            assert_eq!(r["type"], "searchset", "Bundle.type");
            assert!(r["total"].is_u64(), "Bundle.total");
            for e in r["entry"].as_array().expect("Bundle.entry") {
                let url = e["fullUrl"].as_str().expect("entry.fullUrl");
                let id = url.strip_prefix("urn:uuid:").expect("fullUrl is a urn:uuid");
                assert!(uuid::Uuid::parse_str(id).is_ok(), "fullUrl {url}");
                assert_eq!(e["resource"]["id"].as_str(), Some(id), "resource id matches its fullUrl");
                assert!(matches!(e["search"]["mode"].as_str(), Some("match" | "include")), "entry.search.mode");
                check(&e["resource"]);
            }
            let matches = r["entry"].as_array().unwrap().iter().filter(|e| e["search"]["mode"] == "match").count();
            assert_eq!(r["total"].as_u64().unwrap() as usize, matches, "total counts the matches");
        }
        "CareTeam" => {
            assert!(r["id"].is_string());
            assert!(matches!(r["status"].as_str(), Some("active" | "inactive")), "CareTeam.status");
            let (system, code) = coding(&r["category"][0]["coding"][0], "CareTeam.category");
            assert_eq!(system, SNOMED);
            assert!([CPP, LAC, UCPP].contains(&code.as_str()), "SNOMED code {code}");
            assert_eq!(r["subject"]["identifier"]["system"], NHS_SYSTEM);
            assert!(r["subject"]["identifier"]["value"].as_str().is_some_and(|v| v.len() == 10));
            assert!(r["period"]["start"].as_str().is_some_and(is_date), "period.start");
            if let Some(end) = r["period"].get("end") {
                assert!(end.as_str().is_some_and(is_date), "period.end");
            }
            assert!(r["name"].as_str().is_some_and(|n| !n.is_empty()), "CareTeam.name");
            let org = &r["managingOrganization"][0];
            assert_eq!(org["identifier"]["system"], ODS_SYSTEM);
            assert!(org["identifier"]["value"].is_string() && org["display"].is_string());
            for t in r["telecom"].as_array().map(Vec::as_slice).unwrap_or_default() {
                assert_eq!(t["system"], "phone");
                assert!(matches!(t["use"].as_str(), Some("mobile" | "work")));
                assert!(t["value"].is_string());
            }
        }
        "AuditEvent" => {
            coding(&r["type"], "AuditEvent.type");
            let recorded = r["recorded"].as_str().expect("AuditEvent.recorded");
            assert!(DateTime::parse_from_rfc3339(recorded).is_ok(), "recorded {recorded}");
            let agents = r["agent"].as_array().expect("AuditEvent.agent");
            assert!(!agents.is_empty());
            for a in agents {
                assert!(a["requestor"].is_boolean(), "agent.requestor is required");
                assert!(a["who"]["display"].is_string());
            }
            assert!(r["source"]["observer"].is_object(), "AuditEvent.source.observer is required");
            assert_eq!(r["entity"][0]["what"]["identifier"]["system"], NHS_SYSTEM);
        }
        "PractitionerRole" => {
            coding(&r["code"][0]["coding"][0], "PractitionerRole.code");
            assert!(r["code"][0]["coding"][0]["display"].is_string());
            assert_eq!(r["organization"]["identifier"]["system"], ODS_SYSTEM);
            assert!(r["organization"]["display"].is_string());
        }
        "OperationOutcome" => {
            let issue = &r["issue"][0];
            assert!(matches!(issue["severity"].as_str(), Some("fatal" | "error" | "warning" | "information")));
            assert!(issue["code"].as_str().is_some_and(|c| !c.is_empty()), "issue.code");
            assert_eq!(issue["details"]["coding"][0]["system"], SPINE);
            assert!(issue["diagnostics"].as_str().is_some_and(|d| d.len() > 10));
        }
        "CapabilityStatement" => {
            assert_eq!(r["status"], "active");
            assert!(r["date"].is_string());
            assert_eq!(r["kind"], "instance");
            assert_eq!(r["fhirVersion"], "4.0.1");
            assert!(r["format"].as_array().is_some_and(|f| f.iter().any(|x| x == "json")));
        }
        other => panic!("unexpected resource {other}"),
    }
}

// ---------------------------------------------------------------------------------------------

fn assert_error(a: &Answer, status: StatusCode, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    assert_eq!(a.body["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(a.spine_code(), code, "{what}");
}

#[tokio::test]
async fn every_header_rule_and_error_code() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let h = user("R8000");
    let before = all_accesses(&app);
    let path = format!("/cpis/FHIR/R4/CareTeam?{}", query(MIA_THOMPSON));

    // Tokens: none, unknown, revoked -> 401; an LA's -> 403.
    let a = get(&app, &path, None, &h).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "ACCESS_DENIED", "no token");
    assert_eq!(a.body["issue"][0]["code"], "security");
    assert_error(
        &get(&app, &path, Some("cpisnhs_nonsense"), &h).await,
        StatusCode::UNAUTHORIZED,
        "ACCESS_DENIED",
        "bad",
    );
    let revoked = token(&app);
    tokens::revoke(&mut app.conn(), Actor::Operator, token_id(&app), Utc::now()).unwrap();
    assert_error(&get(&app, &path, Some(&revoked), &h).await, StatusCode::UNAUTHORIZED, "ACCESS_DENIED", "revoked");
    let la = tokens::issue_la(&mut app.conn(), Actor::Operator, "E10000016", "test").unwrap();
    let a = get(&app, &path, Some(&la), &h).await;
    assert_error(&a, StatusCode::FORBIDDEN, "ACCESS_DENIED", "an LA token");
    assert_eq!(a.body["issue"][0]["code"], "forbidden");

    // The four end-user headers: missing, empty, oversized -> 400 PRECONDITION_FAILED.
    for name in ["NHSD-End-User-ID", "NHSD-End-User-Name", "NHSD-End-User-Role", "NHSD-End-User-Organisation-ODS"] {
        let a = get(&app, &path, Some(&t), &without(&h, name)).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "PRECONDITION_FAILED", name);
        assert!(a.body["issue"][0]["diagnostics"].as_str().unwrap().contains(name), "the diagnostics name {name}");
        let a = get(&app, &path, Some(&t), &with(&h, name, "")).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "PRECONDITION_FAILED", &format!("{name} empty"));
        let a = get(&app, &path, Some(&t), &with(&h, name, &"R".repeat(300))).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "PRECONDITION_FAILED", &format!("{name} oversized"));
    }
    let a = get(&app, &path, Some(&t), &with(&h, "NHSD-End-User-Role", "doctor")).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "PRECONDITION_FAILED", "a role that is not a job role code");
    // Another organisation than the token's -> 403.
    let a = get(&app, &path, Some(&t), &with(&h, "NHSD-End-User-Organisation-ODS", "RRU")).await;
    assert_error(&a, StatusCode::FORBIDDEN, "ACCESS_DENIED", "another organisation");
    // IsUnscheduledAccessEvent: true or false only.
    for bad in ["yes", "TRUE", "1", ""] {
        let a = get(&app, &path, Some(&t), &with(&h, "IsUnscheduledAccessEvent", bad)).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "PRECONDITION_FAILED", &format!("IsUnscheduledAccessEvent={bad}"));
    }

    // The identifier: missing, no system, wrong system, not 10 digits, failing modulus 11.
    for q in [
        String::new(),
        format!("patient:identifier={MIA_THOMPSON}"),
        format!("patient:identifier=https://example.org/nhs|{MIA_THOMPSON}"),
        format!("patient:identifier={NHS_SYSTEM}|999000004"),
        format!("patient:identifier={NHS_SYSTEM}|9990000043"),
        format!("patient:identifier={NHS_SYSTEM}|99900000AB"),
        format!("patient={NHS_SYSTEM}|{MIA_THOMPSON}"),
    ] {
        for resource in ["CareTeam", "AuditEvent"] {
            let a = get(&app, &format!("/cpis/FHIR/R4/{resource}?{q}"), Some(&t), &h).await;
            assert_error(&a, StatusCode::BAD_REQUEST, "INVALID_SEARCH_DATA", &format!("{resource}?{q}"));
            assert_eq!(a.body["issue"][0]["code"], "invalid");
        }
    }
    // An encoded bar is the same search.
    let a =
        get(&app, &format!("/cpis/FHIR/R4/CareTeam?patient%3Aidentifier={NHS_SYSTEM}%7C{UNKNOWN}"), Some(&t), &h).await;
    assert_eq!(a.status, StatusCode::OK);
    // A number PDS does not know: an empty searchset.
    assert_eq!(app.count(&format!("SELECT count(*) FROM patients WHERE nhs_number = '{UNKNOWN}'")), 0);
    let a = care_team(&app, &t, UNKNOWN, &h).await;
    assert_eq!((a.status, a.total()), (StatusCode::OK, 0));
    assert_eq!(a.body["entry"].as_array().unwrap().len(), 0);

    // TraceID is echoed on answers and on errors alike.
    let traced = with(&h, "TraceID", "trace-42");
    for (tok, hs) in [
        (Some(t.as_str()), traced.clone()),
        (None, traced.clone()),
        (Some(t.as_str()), without(&traced, "NHSD-End-User-ID")),
    ] {
        let a = get(&app, &path.replace(MIA_THOMPSON, UNKNOWN), tok, &hs).await;
        assert_eq!(a.headers.get("traceid").map(|v| v.to_str().unwrap()), Some("trace-42"), "{}", a.status);
    }

    // With several faults, the token's refusal comes first, then the headers', then the organisation's,
    // then the number's (the checks run in this order, the token's on the database).
    let bad_number = format!("/cpis/FHIR/R4/CareTeam?patient:identifier={NHS_SYSTEM}|9990000043");
    let no_user = without(&h, "NHSD-End-User-ID");
    let a = get(&app, &bad_number, Some("cpisnhs_nonsense"), &no_user).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "ACCESS_DENIED", "a bad token before the rest");
    let a = get(&app, &bad_number, Some(&la), &no_user).await;
    assert_error(&a, StatusCode::FORBIDDEN, "ACCESS_DENIED", "an LA token before the rest");
    let a = get(&app, &bad_number, Some(&t), &no_user).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "PRECONDITION_FAILED", "the headers before the number");
    let a = get(&app, &bad_number, Some(&t), &with(&h, "NHSD-End-User-Organisation-ODS", "RRU")).await;
    assert_error(&a, StatusCode::FORBIDDEN, "ACCESS_DENIED", "the organisation before the number");

    assert_eq!(all_accesses(&app), before, "no refused or empty query records an access");
}

#[tokio::test]
async fn care_team_lists_every_item_across_authorities() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let a = care_team(&app, &t, MIA_THOMPSON, &with(&user("R8000"), "TraceID", "abc")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["traceid"], "abc");
    assert_eq!(a.total(), 2);
    let teams = a.resources("CareTeam");
    assert_eq!(teams.len(), 2);
    let mut conn = app.conn();
    for (la, code) in [("E10000016", CPP), ("E08000003", LAC)] {
        let team = teams
            .iter()
            .find(|r| r["managingOrganization"][0]["identifier"]["value"] == la)
            .unwrap_or_else(|| panic!("a CareTeam from {la}"));
        assert_eq!(team["category"][0]["coding"][0]["code"], code);
        assert_eq!(team["subject"]["identifier"]["value"], MIA_THOMPSON);
        assert_eq!(team["status"], "active");
        let start = count(
            &mut conn,
            &format!(
                "SELECT (start_date - DATE '2000-01-01')::int8 FROM cp_items \
                 WHERE nhs_number = '{MIA_THOMPSON}' AND la_code = '{la}' AND deleted_at IS NULL"
            ),
        );
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::TimeDelta::days(start);
        assert_eq!(team["period"]["start"], start.format("%Y-%m-%d").to_string());
        assert!(team["period"].get("end").is_none(), "an open plan has no end");
        let name: String = diesel::RunQueryDsl::get_result::<NameRow>(
            diesel::sql_query(format!(
                "SELECT coalesce(display_name, reference_name) AS text, emergency_phone, office_hours_phone \
                 FROM local_authorities WHERE code = '{la}'"
            )),
            &mut conn,
        )
        .map(|r| {
            let mut expected = Vec::new();
            if let Some(p) = r.emergency_phone {
                expected.push(serde_json::json!({"system": "phone", "value": p, "use": "mobile"}));
            }
            if let Some(p) = r.office_hours_phone {
                expected.push(serde_json::json!({"system": "phone", "value": p, "use": "work"}));
            }
            assert_eq!(team["telecom"].as_array().cloned().unwrap_or_default(), expected, "telecom of {la}");
            r.text
        })
        .unwrap();
        assert_eq!(team["name"], name.as_str());
        assert_eq!(team["managingOrganization"][0]["display"], name.as_str());
    }
    // Never the LA's child id nor the delete dates.
    let body = a.body.to_string();
    let mut ids = Vec::new();
    for la in ["E10000016", "E08000003"] {
        ids.push(
            diesel::RunQueryDsl::get_result::<TextRow>(
                diesel::sql_query(format!(
                    "SELECT la_child_id AS text FROM cp_items WHERE nhs_number = '{MIA_THOMPSON}' AND la_code = '{la}'"
                )),
                &mut conn,
            )
            .unwrap()
            .text,
        );
    }
    for id in ids {
        assert!(!body.contains(&id), "the LA's child id is never sent");
    }
    assert!(!body.contains("delete"));
    // The ids are stable from one query to the next.
    let again = care_team(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    let ids = |a: &Answer| a.resources("CareTeam").iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&again));
}

#[derive(diesel::QueryableByName)]
struct NameRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    emergency_phone: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    office_hours_phone: Option<String>,
}

#[derive(diesel::QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    text: String,
}

#[tokio::test]
async fn unborn_plans_only_for_midwife_roles() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let codes = |a: &Answer| -> BTreeSet<String> {
        a.resources("CareTeam").iter().map(|r| r["category"][0]["coding"][0]["code"].as_str().unwrap().into()).collect()
    };
    let scheduled = |role: &str| with(&user(role), "IsUnscheduledAccessEvent", "false");
    assert_eq!(codes(&care_team(&app, &t, AMELIA_HART, &scheduled("R8000")).await), BTreeSet::from([CPP.into()]));
    for role in ["R0640", "R0650", "R0660", "R0670", "R0680", "S8000:G8000:R0680"] {
        let a = care_team(&app, &t, AMELIA_HART, &scheduled(role)).await;
        assert_eq!(codes(&a), BTreeSet::from([CPP.into(), UCPP.into()]), "{role}");
    }
    // Sarah Collins holds only an unborn plan: nothing for a non-midwife, not even the history.
    let before = accesses(&app, SARAH_COLLINS);
    let a = care_team(&app, &t, SARAH_COLLINS, &user("R8000")).await;
    assert_eq!(a.total(), 0);
    assert_eq!(accesses(&app, SARAH_COLLINS), before, "an empty reply records nothing");
    let a = care_team(&app, &t, SARAH_COLLINS, &user("R0650")).await;
    assert_eq!(codes(&a), BTreeSet::from([UCPP.into()]));
    assert_eq!(accesses(&app, SARAH_COLLINS), before + 1);
    assert_eq!(audit_events(&app, &t, SARAH_COLLINS, &user("R8000")).await.total(), 0);
    assert_eq!(audit_events(&app, &t, SARAH_COLLINS, &user("R0650")).await.total(), 1);
}

#[tokio::test]
async fn unscheduled_queries_with_results_record_one_access_and_others_none() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let before = accesses(&app, MIA_THOMPSON);
    // Scheduled: nothing recorded, though the reply carries the plans.
    let a = care_team(&app, &t, MIA_THOMPSON, &with(&user("R8000"), "IsUnscheduledAccessEvent", "false")).await;
    assert_eq!(a.total(), 2);
    assert_eq!(accesses(&app, MIA_THOMPSON), before);
    // Empty replies: an expired record and an unknown number.
    for nhs in [ELLA_WRIGHT, UNKNOWN] {
        let all = all_accesses(&app);
        assert_eq!(care_team(&app, &t, nhs, &user("R8000")).await.total(), 0, "{nhs}");
        assert_eq!(all_accesses(&app), all);
    }
    // AuditEvent is never an access.
    audit_events(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    assert_eq!(accesses(&app, MIA_THOMPSON), before);

    // Unscheduled (the default, and explicitly true): recorded at once; the second within 24 hours
    // is stored but not shown (CP-IS047).
    care_team(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    care_team(&app, &t, MIA_THOMPSON, &with(&user("R8000"), "IsUnscheduledAccessEvent", "true")).await;
    assert_eq!(accesses(&app, MIA_THOMPSON), before + 2);
    let shown = app.count(&format!(
        "SELECT count(*) FROM access_events WHERE nhs_number = '{MIA_THOMPSON}' AND viewer_id = '{USER_ID}' \
         AND shown AND channel = 'FHIR' AND viewer_name = '{USER_NAME}' AND job_role_code = 'R8000' \
         AND organisation_code = 'RJZ' AND user_id IS NULL"
    ));
    assert_eq!(shown, 1, "the first is shown, the second is not");
    let audited = app.count(&format!(
        "SELECT count(*) FROM audit_log WHERE actor = 'nhs-system:{}' AND nhs_number = '{MIA_THOMPSON}' \
         AND details->>'channel' = 'FHIR'",
        token_id(&app)
    ));
    assert_eq!(audited, 2, "each access is audited with the NHS system as the actor");
    let history = audit_events(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    let names: Vec<&str> =
        history.resources("AuditEvent").iter().map(|r| r["agent"][0]["who"]["display"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == USER_NAME).count(), 1);
    assert_eq!(names[0], USER_NAME, "newest first");
}

#[tokio::test]
async fn superseded_and_invalidated_numbers() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let h = with(&user("R8000"), "IsUnscheduledAccessEvent", "false");
    let old = care_team(&app, &t, OLIVER_OLD_NUMBER, &h).await;
    let current = care_team(&app, &t, OLIVER_BENNETT, &h).await;
    assert!(old.total() >= 1, "what Kent holds under the old number is returned");
    assert_eq!(old.body["entry"], current.body["entry"], "either number returns the same");
    for r in old.resources("CareTeam") {
        assert_eq!(r["subject"]["identifier"]["value"], OLIVER_BENNETT, "the subject is the current number");
    }
    // An unscheduled query through the old number is an access to the current record.
    let before = accesses(&app, OLIVER_BENNETT);
    care_team(&app, &t, OLIVER_OLD_NUMBER, &user("R8000")).await;
    assert_eq!(accesses(&app, OLIVER_BENNETT), before + 1);
    assert_eq!(audit_events(&app, &t, OLIVER_OLD_NUMBER, &user("R8000")).await.total(), 1);

    for resource in ["CareTeam", "AuditEvent"] {
        let a = get(&app, &format!("/cpis/FHIR/R4/{resource}?{}", query(LEO_BAKER)), Some(&t), &user("R8000")).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "INVALID_SEARCH_DATA", "an invalidated number");
    }
}

#[tokio::test]
async fn audit_events_are_the_shown_history_with_practitioner_roles() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let a = audit_events(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.total(), 25, "CP-IS048: at most 25 of the 30 seeded accesses");
    let events = a.resources("AuditEvent");
    let roles = a.resources("PractitionerRole");
    assert_eq!((events.len(), roles.len()), (25, 25));
    let times: Vec<DateTime<Utc>> = events
        .iter()
        .map(|e| DateTime::parse_from_rfc3339(e["recorded"].as_str().unwrap()).unwrap().with_timezone(&Utc))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let newest: DateTime<Utc> = {
        let secs = app.count(&format!(
            "SELECT floor(extract(epoch FROM max(accessed_at)))::int8 FROM access_events WHERE nhs_number = '{MIA_THOMPSON}'"
        ));
        DateTime::from_timestamp(secs, 0).unwrap()
    };
    assert_eq!(times[0], newest);
    for e in &events {
        assert_eq!(e["entity"][0]["what"]["identifier"]["value"], MIA_THOMPSON);
        // The agent points at its PractitionerRole, included in the Bundle.
        let reference = e["agent"][0]["who"]["reference"].as_str().unwrap();
        let included = a.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["fullUrl"] == reference)
            .unwrap_or_else(|| panic!("{reference} is included"));
        assert_eq!(included["search"]["mode"], "include");
        let role = &included["resource"];
        let code = role["code"][0]["coding"][0]["code"].as_str().unwrap();
        let display = role["code"][0]["coding"][0]["display"].as_str().unwrap();
        assert_ne!(code, display, "the job role is named, not just coded");
        let org = role["organization"]["display"].as_str().unwrap();
        assert!(!org.is_empty() && org != org.to_uppercase(), "a readable organisation name: {org}");
        assert!(role["organization"]["identifier"]["value"].as_str().is_some_and(|v| !v.is_empty()));
    }
    // The seed's RJZ accesses name King's College Hospital readably.
    assert!(a.body.to_string().contains("King's College Hospital NHS Foundation Trust"));
}

/// The tab's authorities and items as (LA name, kind, start, end), and its history rows as
/// (time, name, job role, organisation).
type Items = BTreeSet<(String, String, String, String)>;
type History = Vec<(String, String, String, String)>;

fn unescape(s: &str) -> String {
    s.replace("&#x27;", "'").replace("&#39;", "'").replace("&quot;", "\"").replace("&amp;", "&").trim().to_owned()
}

fn cells(row: &str) -> Vec<String> {
    row.split("<td class=\"nhsuk-table__cell\">").skip(1).map(|c| c.split("</td>").next().unwrap().to_owned()).collect()
}

fn parse_tab(page: &str) -> (Items, History) {
    let (cards, history) = page.split_once("id=\"access-history-table\"").expect("the history table");
    let mut items = Items::new();
    for card in cards.split("<div class=\"nhsuk-card\">").skip(1) {
        let name =
            unescape(between(card, "<a href=\"/local-authorities/", "</a>").unwrap().split_once("\">").unwrap().1);
        for row in card.split("<tr class=\"nhsuk-table__row\">").skip(1) {
            let c = cells(row);
            items.insert((name.clone(), unescape(&c[0]), unescape(&c[1]), unescape(&c[2])));
        }
    }
    let rows = history
        .split("<tr class=\"nhsuk-table__row\">")
        .skip(1)
        .map(|row| {
            let c = cells(row);
            let name = between(row, "nhsuk-details__summary-text\">", "</span>").unwrap();
            (unescape(&c[0]), unescape(&name), unescape(&c[2]), unescape(&c[3]))
        })
        .collect();
    (items, rows)
}

fn api_items(a: &Answer) -> Items {
    a.resources("CareTeam")
        .iter()
        .map(|r| {
            let date = |v: &Value| {
                v.as_str()
                    .map(|s| format_date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()))
                    .unwrap_or("None".into())
            };
            (
                r["name"].as_str().unwrap().to_owned(),
                r["category"][0]["coding"][0]["display"].as_str().unwrap().to_owned(),
                date(&r["period"]["start"]),
                date(&r["period"]["end"]),
            )
        })
        .collect()
}

fn api_history(a: &Answer) -> History {
    let roles = a.resources("PractitionerRole");
    a.resources("AuditEvent")
        .iter()
        .zip(roles)
        .map(|(e, r)| {
            let at = DateTime::parse_from_rfc3339(e["recorded"].as_str().unwrap()).unwrap().with_timezone(&Utc);
            (
                format_uk_datetime(at),
                e["agent"][0]["who"]["display"].as_str().unwrap().to_owned(),
                r["code"][0]["coding"][0]["display"].as_str().unwrap().to_owned(),
                r["organization"]["display"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_tab_and_the_api_show_the_same_plans_and_history() {
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let amy = app.signed_in("amy.patel").await;
    let tab = format!("/patients/{MIA_THOMPSON}/child-care-alert");
    assert_eq!(amy.get(&tab).await.status(), StatusCode::OK);
    // An access through the API, then the tab again (Amy's second opening is not shown).
    let teams = care_team(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    let page = amy.text(&tab).await;
    let history = audit_events(&app, &t, MIA_THOMPSON, &user("R8000")).await;
    let (tab_items, tab_history) = parse_tab(&page);
    assert_eq!(tab_items.len(), 2);
    assert_eq!(api_items(&teams), tab_items, "the same plans");
    assert_eq!(api_history(&history), tab_history, "the same history");
    assert_eq!(tab_history.len(), 25);
    assert_eq!(tab_history[0].1, USER_NAME, "the tab shows the API's access");
    assert!(tab_history.iter().any(|h| h.1 == "Dr Amy Patel"), "the API shows the tab's access");
}

#[tokio::test]
async fn the_rate_limit_is_per_token() {
    let app = TestApp::spawn(Template::Demo);
    let busy = token(&app);
    let other = token(&app);
    // Cheap requests (no end-user headers: 400 after the token and the limit are checked).
    let path = format!("/cpis/FHIR/R4/CareTeam?{}", query(UNKNOWN));
    let traced = vec![("TraceID", "rl".to_owned())];
    let answers = futures_util::future::join_all((0..150).map(|_| get(&app, &path, Some(&busy), &traced))).await;
    let throttled: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).collect();
    assert!(!throttled.is_empty(), "a burst above the limit is refused");
    let a = throttled[0];
    assert_eq!(a.body["issue"][0]["code"], "throttled");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(a.headers["traceid"], "rl");
    assert!(answers.iter().all(|a| matches!(a.status.as_u16(), 400 | 429)));
    // Another token is unaffected.
    let a = care_team(&app, &other, MIA_THOMPSON, &with(&user("R8000"), "IsUnscheduledAccessEvent", "false")).await;
    assert_eq!((a.status, a.total()), (StatusCode::OK, 2));
}

#[tokio::test]
async fn metadata_is_a_valid_capability_statement_without_a_token() {
    let app = TestApp::spawn(Template::Demo);
    let a = get(&app, "/cpis/FHIR/R4/metadata", None, &[("TraceID", "m".to_owned())]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["resourceType"], "CapabilityStatement");
    assert_eq!(a.headers["traceid"], "m");
    let rest = &a.body["rest"][0];
    assert_eq!(rest["mode"], "server");
    let resources = rest["resource"].as_array().unwrap();
    for kind in ["CareTeam", "AuditEvent"] {
        let r = resources.iter().find(|r| r["type"] == kind).unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(r["interaction"][0]["code"], "search-type");
        assert_eq!(r["searchParam"][0]["name"], "patient:identifier");
    }
}

#[tokio::test]
async fn every_query_and_response_is_in_the_transmission_log_without_content() {
    // CP-IS061: message 03 in and 04 out, with the caller's TraceID as their id.
    let app = TestApp::spawn(Template::Demo);
    let t = token(&app);
    let headers = with(&user("R8000"), "TraceID", "trace-0042");
    let answer = care_team(&app, &t, MIA_THOMPSON, &headers).await;
    assert_eq!(answer.total(), 2);
    let _ = audit_events(&app, &t, MIA_THOMPSON, &headers).await;
    for (direction, kind, origin, destination) in [("in", "03", "RJZ", "CP-IS"), ("out", "04", "CP-IS", "RJZ")] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM transmissions WHERE direction = '{direction}' AND message_type = '{kind}' \
                 AND origin = '{origin}' AND destination = '{destination}' AND message_id = 'trace-0042' AND channel = 'fhir'"
            )),
            2,
            "{kind}: one for CareTeam, one for AuditEvent"
        );
    }
}

/// Asks `done` until it holds, at most 10 s (an announcement takes a fraction of a millisecond on
/// this host, but a loaded test machine may be slow to run anything).
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "waited 10 s for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Issue 8, CP-NHS018: each instance remembers a token it has found live
/// (src/auth/session_cache.rs), so a search need not read it; a token revoked, moved to another
/// organisation or deleted by any other connection is announced (migration 000031), forgotten and
/// refused from then on, and one revoked through this instance's own page is refused at its very
/// next use. A change that does not touch what a token stands for (its label) keeps it.
#[tokio::test]
async fn a_remembered_token_is_refused_once_it_changes_anywhere() {
    use crate::support::db::execute;
    let app = TestApp::spawn(Template::Demo);
    let cache = app.sessions.clone().expect("sessions and tokens are remembered by default");
    until("the listener", || cache.is_listening()).await;
    let (h, mut conn) = (user("R8000"), app.conn());
    let path = format!("/cpis/FHIR/R4/CareTeam?{}", query(UNKNOWN));
    for (change, refused) in [
        ("UPDATE endpoint_tokens SET revoked_at = now() WHERE id = {id}", StatusCode::UNAUTHORIZED),
        ("UPDATE endpoint_tokens SET ods_code = 'RR8' WHERE id = {id}", StatusCode::FORBIDDEN),
        ("DELETE FROM endpoint_tokens WHERE id = {id}", StatusCode::UNAUTHORIZED),
    ] {
        let (t, id) = (token(&app), token_id(&app));
        let hashed = tokens::hash(&t);
        assert_eq!(get(&app, &path, Some(&t), &h).await.status, StatusCode::OK, "{change}");
        assert!(cache.remembers_endpoint(&hashed), "a token found live is remembered");
        execute(&mut conn, &format!("UPDATE endpoint_tokens SET label = 'renamed' WHERE id = {id}"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(cache.remembers_endpoint(&hashed), "a new label is not announced");
        assert_eq!(get(&app, &path, Some(&t), &h).await.status, StatusCode::OK);
        let change = change.replace("{id}", &id.to_string());
        execute(&mut conn, &change);
        until(&change, || !cache.remembers_endpoint(&hashed)).await;
        assert_eq!(get(&app, &path, Some(&t), &h).await.status, refused, "{change}");
    }

    // Revoked through the CP-IS owner's page of this instance: refused at once.
    let owner = app.signed_in("helen.ward").await;
    let res = owner.post_form("/admin/nhs-systems/RJZ", &[("label", "kings-ed")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    let t = between(&page, "id=\"issued-token\">", "</p>").expect("the new token is shown");
    assert_eq!(get(&app, &path, Some(&t), &h).await.status, StatusCode::OK);
    assert!(cache.remembers_endpoint(&tokens::hash(&t)));
    let id = app.count("SELECT id FROM endpoint_tokens WHERE label = 'kings-ed'");
    let res = owner.post_form(&format!("/admin/nhs-systems/RJZ/tokens/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&app, &path, Some(&t), &h).await.status, StatusCode::UNAUTHORIZED, "no wait for the announcement");
}

/// Issue 8: once the token is remembered, a CareTeam search goes straight to the access
/// recorder's tab thread, with no statement of its own. It answers as before: the items this role
/// may see under the current number, one access recorded (shown once per viewer, CP-IS047), the
/// query and response logged with its TraceID (CP-IS061); a superseded number's search records
/// under the current one; one with nothing to show and an unknown number's record nothing and are
/// logged all the same.
#[tokio::test]
async fn searches_with_a_remembered_token_answer_record_and_log_as_any() {
    let app = TestApp::spawn(Template::Demo);
    let cache = app.sessions.clone().expect("tokens are remembered by default");
    until("the listener", || cache.is_listening()).await;
    let t = token(&app);
    let traced = |trace: &str| with(&user("R8000"), "TraceID", trace);
    let logged = |trace: &str| {
        app.count(&format!("SELECT count(*) FROM transmissions WHERE message_id = '{trace}' AND channel = 'fhir'"))
    };
    // The first search reads the token and remembers it.
    assert_eq!(care_team(&app, &t, UNKNOWN, &traced("first")).await.total(), 0);
    assert!(cache.remembers_endpoint(&tokens::hash(&t)));

    let before = accesses(&app, MIA_THOMPSON);
    let found = care_team(&app, &t, MIA_THOMPSON, &traced("remembered-1")).await;
    assert_eq!(found.total(), 2);
    for r in found.resources("CareTeam") {
        assert_eq!(r["subject"]["identifier"]["value"], MIA_THOMPSON);
    }
    assert_eq!(care_team(&app, &t, MIA_THOMPSON, &traced("remembered-2")).await.total(), 2);
    assert_eq!(accesses(&app, MIA_THOMPSON), before + 2);
    let shown = format!(
        "SELECT count(*) FROM access_events WHERE nhs_number = '{MIA_THOMPSON}' AND viewer_id = '{USER_ID}' \
         AND channel = 'FHIR' AND shown"
    );
    assert_eq!(app.count(&shown), 1, "the first is shown, the second is not");
    assert_eq!((logged("remembered-1"), logged("remembered-2")), (2, 2));

    let current = accesses(&app, OLIVER_BENNETT);
    let moved = care_team(&app, &t, OLIVER_OLD_NUMBER, &traced("remembered-old")).await;
    assert!(moved.total() >= 1);
    assert!(moved.resources("CareTeam").iter().all(|r| r["subject"]["identifier"]["value"] == OLIVER_BENNETT));
    assert_eq!(accesses(&app, OLIVER_BENNETT), current + 1);
    assert_eq!(accesses(&app, OLIVER_OLD_NUMBER), 0);
    assert_eq!(logged("remembered-old"), 2, "logged once, by the search that recorded it");

    let all = all_accesses(&app);
    assert_eq!(care_team(&app, &t, ELLA_WRIGHT, &traced("remembered-expired")).await.total(), 0);
    assert_eq!(care_team(&app, &t, UNKNOWN, &traced("remembered-unknown")).await.total(), 0);
    assert_eq!(all_accesses(&app), all);
    assert_eq!((logged("remembered-expired"), logged("remembered-unknown")), (2, 2));
}
