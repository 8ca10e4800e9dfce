//! NHS systems for CP-IS owners (CP-NHS018): a system registered for an organisation gets a FHIR
//! API token shown once and stored as a hash; its token is revoked once, and only through its own
//! organisation. The OpenAPI document and the integrators' page are public.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{between, Client, Template, TestApp};

const KINGS: &str = "RJZ";
const LEEDS: &str = "RR8";

fn org_path(ods: &str) -> String {
    format!("/admin/nhs-systems/{ods}")
}

/// Registers a system through the admin page and returns its token as the page shows it.
async fn register(owner: &Client, ods: &str, label: &str) -> String {
    let res = owner.post_form(&org_path(ods), &[("label", label)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("will not be shown again"), "the page says the token is shown once");
    between(&page, "id=\"issued-token\">", "</p>").expect("the new token is shown")
}

fn token_id(app: &TestApp, label: &str) -> i64 {
    app.count(&format!("SELECT id FROM endpoint_tokens WHERE label = '{label}'"))
}

fn audits(app: &TestApp, action: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM audit_log WHERE action = '{action}'"))
}

#[tokio::test]
async fn a_registered_system_gets_a_token_shown_once_and_only_its_hash_is_stored() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let list = owner.text("/admin/nhs-systems").await;
    assert!(list.contains("No NHS system has been registered yet"));
    assert!(list.contains("href=\"/admin/nhs-systems\""), "the header links to the page");
    // The search finds an organisation by ODS code or by name.
    let found = owner.text(&format!("/admin/nhs-systems?q={KINGS}")).await;
    assert!(found.contains(&format!("href=\"{}\"", org_path(KINGS))));
    let found = owner.text("/admin/nhs-systems?q=leeds+teaching").await;
    assert!(found.contains(&format!("href=\"{}\"", org_path(LEEDS))));

    let page = owner.text(&org_path(KINGS)).await;
    assert!(page.contains("KING&#39;S COLLEGE HOSPITAL NHS FOUNDATION TRUST") || page.contains("KING'S COLLEGE"));
    assert!(page.contains("No system has been registered"));

    let token = register(&owner, KINGS, "Emergency department system").await;
    assert!(token.len() > 40, "a long random token: {token}");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM endpoint_tokens WHERE kind = 'nhs' AND ods_code = '{KINGS}' AND la_code IS NULL \
             AND label = 'Emergency department system' AND revoked_at IS NULL \
             AND token_hash = sha256(convert_to('{token}', 'UTF8'))"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM information_schema.columns c, LATERAL ( \
               SELECT (xpath('/row/n/text()', query_to_xml(format( \
                 'SELECT count(*) AS n FROM %I.%I WHERE strpos(%I::text, %L) > 0', \
                 c.table_schema, c.table_name, c.column_name, '{token}'), false, true, '')))[1]::text::bigint AS n) x \
             WHERE c.table_schema = 'public' AND c.data_type IN ('text', 'character varying', 'json', 'jsonb') \
               AND x.n > 0"
        )),
        0,
        "the token is stored nowhere in the clear"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'token.issued' \
             AND actor = 'user:' || (SELECT id FROM users WHERE username = 'helen.ward') \
             AND details->>'kind' = 'nhs' AND details->>'ods_code' = '{KINGS}'"
        )),
        1
    );

    // It speaks for King's, and is never shown again.
    let endpoint = cpis::mailbox::tokens::authenticate(&mut app.conn(), &token).unwrap();
    assert!(
        matches!(endpoint, Some(cpis::mailbox::tokens::Endpoint::NhsSystem { ref ods_code, .. }) if ods_code == KINGS)
    );
    let page = owner.text(&org_path(KINGS)).await;
    assert!(page.contains("Emergency department system") && page.contains("Live"));
    assert!(!page.contains(&token));
    let list = owner.text("/admin/nhs-systems").await;
    let row = between(&list, &format!("<td class=\"nhsuk-table__cell\">{KINGS}</td>"), "</tr>").expect("King's row");
    assert!(row.contains("<td class=\"nhsuk-table__cell\">1</td>"), "one live system: {row}");

    // A name that is empty or longer than 200 characters is refused, and nothing is issued.
    for bad in ["", "   ", &"x".repeat(201)] {
        let res = owner.post_form(&org_path(KINGS), &[("label", bad)]).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = res.text().await.unwrap();
        assert!(body.contains("There is a problem") && !body.contains("issued-token"));
    }
    // Without the form's token, nothing happens.
    let res = owner
        .http
        .post(app.url(&org_path(KINGS)))
        .form(&[("label", "Forged system"), ("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // An unknown organisation has no page and gets no token.
    assert_eq!(owner.get(&org_path("ZZZ99")).await.status(), StatusCode::NOT_FOUND);
    let res = owner.post_form(&org_path("ZZZ99"), &[("label", "x")]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens"), 1);
    assert_eq!(audits(&app, "token.issued"), 1);
}

#[tokio::test]
async fn a_system_token_is_revoked_once_and_only_through_its_own_organisation() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let kings_token = register(&owner, KINGS, "kings-ed").await;
    let _ = register(&owner, LEEDS, "leeds-maternity").await;
    let la_token = cpis::mailbox::tokens::issue_la(&mut app.conn(), cpis::audit::Actor::Operator, "E10000016", "kent")
        .expect("an LA token");
    let (kings_id, leeds_id, la_id) =
        (token_id(&app, "kings-ed"), token_id(&app, "leeds-maternity"), token_id(&app, "kent"));
    let revoke = |ods: &str, id: i64| format!("{}/tokens/{id}/revoke", org_path(ods));

    // Not through another organisation's page, nor an LA's token, nor an unknown one.
    for (ods, id) in [(LEEDS, kings_id), (KINGS, leeds_id), (KINGS, la_id), (KINGS, 999_999)] {
        assert_eq!(owner.post_form(&revoke(ods, id), &[]).await.status(), StatusCode::NOT_FOUND, "{ods} {id}");
    }
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens WHERE revoked_at IS NOT NULL"), 0);
    assert_eq!(audits(&app, "token.revoked"), 0);

    let res = owner.post_form(&revoke(KINGS, kings_id), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], org_path(KINGS));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'token.revoked' \
             AND actor = 'user:' || (SELECT id FROM users WHERE username = 'helen.ward') \
             AND (details->>'token_id')::bigint = {kings_id}"
        )),
        1
    );
    assert_eq!(cpis::mailbox::tokens::authenticate(&mut app.conn(), &kings_token).unwrap(), None);
    // The others are untouched.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM endpoint_tokens WHERE id IN ({leeds_id}, {la_id}) AND revoked_at IS NULL"
        )),
        2
    );
    assert!(cpis::mailbox::tokens::authenticate(&mut app.conn(), &la_token).unwrap().is_some());

    // Not twice.
    assert_eq!(owner.post_form(&revoke(KINGS, kings_id), &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(audits(&app, "token.revoked"), 1);
    let page = owner.text(&org_path(KINGS)).await;
    let row = between(&page, "kings-ed</td>", "</tr>").expect("the system's row");
    assert!(!row.contains("Live") && !row.contains("Revoke"), "{row}");
}

#[tokio::test]
async fn only_service_owners_reach_the_nhs_systems_pages() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let _ = register(&owner, KINGS, "kings-ed").await;
    let id = token_id(&app, "kings-ed");
    for username in ["amy.patel", "ravi.shah"] {
        let c = app.signed_in(username).await;
        assert!(!c.text("/").await.contains("href=\"/admin/nhs-systems\""), "{username} has no link");
        for path in ["/admin/nhs-systems".to_owned(), org_path(KINGS)] {
            assert_eq!(c.get(&path).await.status(), StatusCode::FORBIDDEN, "{username} GET {path}");
        }
        let res = c.post_form(&org_path(KINGS), &[("label", "Sneaky system")]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{username} registers");
        let res = c.post_form(&format!("{}/tokens/{id}/revoke", org_path(KINGS)), &[]).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{username} revokes");
    }
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens WHERE revoked_at IS NULL"), 1);
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens"), 1);
    // Anonymous: sign in first.
    let res = app.client().get("/admin/nhs-systems").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/sign-in");
}

const HEADERS: [&str; 6] = [
    "NHSD-End-User-ID",
    "NHSD-End-User-Name",
    "NHSD-End-User-Role",
    "NHSD-End-User-Organisation-ODS",
    "TraceID",
    "IsUnscheduledAccessEvent",
];

#[tokio::test]
async fn anyone_gets_the_openapi_document_at_its_stable_url() {
    let app = TestApp::spawn(Template::Demo);
    let res = app.client().get("/cpis/FHIR/R4/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = serde_json::from_str(&res.text().await.unwrap()).expect("valid JSON");

    // OpenAPI 3.0's required top-level fields.
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.0."), "{version}");
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for path in ["/CareTeam", "/AuditEvent", "/metadata"] {
        assert!(paths.contains_key(path), "{path}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");

    // Every parameter of the two searches, resolved: the query parameter and the contract's headers.
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).cloned().unwrap_or_else(|| panic!("{r} resolves")),
            None => v.clone(),
        }
    };
    for path in ["/CareTeam", "/AuditEvent"] {
        let op = &doc["paths"][path]["get"];
        let params: Vec<Value> = op["parameters"].as_array().expect("parameters").iter().map(resolve).collect();
        let find = |name: &str| params.iter().find(|p| p["name"] == name).cloned();
        let query = find("patient:identifier").expect("patient:identifier");
        assert_eq!((query["in"].as_str(), query["required"].as_bool()), (Some("query"), Some(true)));
        for h in HEADERS {
            let p = find(h).unwrap_or_else(|| panic!("{path}: {h} is described"));
            assert_eq!(p["in"], "header", "{path} {h}");
            let required = h.starts_with("NHSD-");
            assert_eq!(p["required"].as_bool(), Some(required), "{path} {h}");
        }
        let unscheduled = find("IsUnscheduledAccessEvent").unwrap();
        assert_eq!(unscheduled["schema"]["enum"], serde_json::json!(["true", "false"]));
        assert_eq!(unscheduled["schema"]["default"], "true");
        for status in ["200", "400", "401", "403", "429"] {
            assert!(op["responses"][status].is_object(), "{path} {status}");
        }
        let throttled = resolve(&op["responses"]["429"]);
        assert!(throttled["headers"]["Retry-After"].is_object(), "{path}: 429 carries Retry-After");
    }
    let codes = doc
        .pointer("/components/schemas/OperationOutcome/properties/issue/items/properties/details/properties/coding/items/properties/code/enum")
        .and_then(Value::as_array)
        .expect("the error codes");
    for code in ["INVALID_SEARCH_DATA", "PRECONDITION_FAILED", "ACCESS_DENIED"] {
        assert!(codes.iter().any(|c| c == code), "{code}");
    }
    for schema in ["Bundle", "CareTeam", "AuditEvent", "PractitionerRole", "OperationOutcome"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

#[tokio::test]
async fn anyone_reads_the_integrators_page() {
    let app = TestApp::spawn(Template::Demo);
    let res = app.client().get("/developers").await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    for text in HEADERS.iter().chain(&[
        "Authorization",
        "/cpis/FHIR/R4/openapi.json",
        "cpis token nhs",
        "curl",
        "http://127.0.0.1:8080/cpis/FHIR/R4/CareTeam",
        "9990000042",
        "R0640",
        "R0680",
        "INVALID_SEARCH_DATA",
        "PRECONDITION_FAILED",
        "ACCESS_DENIED",
        "429",
        "Retry-After",
        "25",
    ]) {
        assert!(page.contains(text), "the page mentions {text}");
    }
    // Nothing inline: the CSP forbids it.
    assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style");
    // Signed in, it shows the header as any page does.
    let signed = app.signed_in("amy.patel").await;
    assert_eq!(signed.get("/developers").await.status(), StatusCode::OK);
}
