//! For integrators of NHS systems: the OpenAPI document of the CP-IS FHIR R4 API (messages 03 and
//! 04) at a stable URL, and a readable page with the contract's headers, rules, errors and example
//! requests. Both are public and hold no data. The page's headers table and example response are
//! read from the OpenAPI document, so the two cannot disagree.

use std::sync::OnceLock;

use actix_session::Session;
use actix_web::http::header;
use actix_web::HttpResponse;
use askama::Template;
use serde_json::Value;

use super::layout::Layout;
use super::render;
use crate::auth::SignedIn;
use crate::error::AppError;

/// The OpenAPI 3.0 document, as served.
pub const OPENAPI_JSON: &str = include_str!("../../static/openapi.json");

/// Where the document is served (a stable URL beside the API it describes).
pub const OPENAPI_PATH: &str = "/cpis/FHIR/R4/openapi.json";

/// The example base URL of the page's requests: the service on a developer's machine.
const EXAMPLE_BASE: &str = "http://127.0.0.1:8080/cpis/FHIR/R4";

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(OPENAPI_JSON).expect("static/openapi.json is valid JSON"))
}

/// `GET /cpis/FHIR/R4/openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(OPENAPI_JSON)
}

/// One request header of the contract, as the OpenAPI document describes it.
pub struct HeaderRow {
    pub name: String,
    pub required: &'static str,
    pub values: String,
    pub description: String,
}

/// The header parameters of the CareTeam search (AuditEvent takes the same ones), in order.
fn header_rows(doc: &Value) -> Vec<HeaderRow> {
    let params = doc["components"]["parameters"].as_object().cloned().unwrap_or_default();
    let listed = doc["paths"]["/CareTeam"]["get"]["parameters"].as_array().cloned().unwrap_or_default();
    listed
        .iter()
        .filter_map(|p| p["$ref"].as_str().and_then(|r| r.rsplit('/').next()).and_then(|n| params.get(n)))
        .filter(|p| p["in"] == "header")
        .map(|p| {
            let schema = &p["schema"];
            let values = match (schema["enum"].as_array(), p["example"].as_str()) {
                (Some(allowed), _) => {
                    let allowed: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    let default = schema["default"].as_str().map(|d| format!(" (default {d})")).unwrap_or_default();
                    format!("{}{default}", allowed.join(" or "))
                }
                (None, Some(example)) => format!("e.g. {example}"),
                (None, None) => String::new(),
            };
            HeaderRow {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                required: if p["required"] == true { "Yes" } else { "No" },
                values,
                description: p["description"].as_str().unwrap_or_default().replace('`', ""),
            }
        })
        .collect()
}

/// The document's example CareTeam Bundle, pretty-printed.
fn example_response(doc: &Value) -> String {
    let example = &doc["paths"]["/CareTeam"]["get"]["responses"]["200"]["content"]["application/fhir+json"]["example"];
    serde_json::to_string_pretty(example).unwrap_or_default()
}

fn example_error(doc: &Value) -> String {
    let example = &doc["components"]["responses"]["BadRequest"]["content"]["application/fhir+json"]["example"];
    serde_json::to_string_pretty(example).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "developers.html")]
struct DevelopersPage {
    layout: Layout,
    openapi_path: &'static str,
    base: &'static str,
    headers: Vec<HeaderRow>,
    example_response: String,
    example_error: String,
}

/// `GET /developers`: the readable guide for integrators.
pub async fn developers(session: Session, signed_in: Option<SignedIn>) -> Result<HttpResponse, AppError> {
    let doc = document();
    let principal = signed_in.map(|SignedIn(p)| p);
    render(&DevelopersPage {
        layout: Layout::new("The CP-IS FHIR API for NHS systems", principal.as_ref(), &session),
        openapi_path: OPENAPI_PATH,
        base: EXAMPLE_BASE,
        headers: header_rows(doc),
        example_response: example_response(doc),
        example_error: example_error(doc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_0_with_the_three_paths() {
        let doc = document();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.0.")));
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        for path in ["/CareTeam", "/AuditEvent", "/metadata"] {
            assert!(doc["paths"][path]["get"]["responses"]["200"].is_object(), "{path}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                        let pointer = r.strip_prefix('#').expect("a local reference");
                        assert!(doc.pointer(pointer).is_some(), "{r} resolves");
                    }
                    m.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        walk(document(), document());
    }

    #[test]
    fn the_page_lists_every_header_of_the_contract() {
        let names: Vec<String> = header_rows(document()).into_iter().map(|h| h.name).collect();
        assert_eq!(
            names,
            [
                "NHSD-End-User-ID",
                "NHSD-End-User-Name",
                "NHSD-End-User-Role",
                "NHSD-End-User-Organisation-ODS",
                "TraceID",
                "IsUnscheduledAccessEvent"
            ]
        );
        assert!(example_response(document()).contains("342191000000101"));
        assert!(example_error(document()).contains("INVALID_SEARCH_DATA"));
    }
}
