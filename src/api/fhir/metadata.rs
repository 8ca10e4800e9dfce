//! `GET /cpis/FHIR/R4/metadata`: the CapabilityStatement. Public (no token): it describes the
//! interface, holds no data, and a supplier's tooling reads it before it has credentials.

use serde_json::{json, Value};

use super::headers::{END_USER_ID, END_USER_NAME, END_USER_ORGANISATION, END_USER_ROLE, TRACE_ID, UNSCHEDULED};
use super::BASE;

fn search_param(documentation: &str) -> Value {
    json!([{
        "name": "patient:identifier",
        "type": "token",
        "documentation": documentation,
    }])
}

pub fn capability_statement(base_url: &str) -> Value {
    let param = "The child's (or, for an unborn child protection plan, the mother's) NHS number: \
                 https://fhir.nhs.uk/Id/nhs-number|{10 digits}. Mandatory.";
    json!({
        "resourceType": "CapabilityStatement",
        "id": "cpis-fhir-r4",
        "name": "CPISFhirApi",
        "title": "Child Protection Information Sharing (CP-IS) FHIR R4 API",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "CP-IS service",
        "description": "Messages 03 and 04: NHS systems query the child protection information held for an NHS \
                        number (CareTeam) and its access history (AuditEvent), after NHS England's CP-IS FHIR API.",
        "kind": "instance",
        "software": { "name": "cpis", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "CP-IS FHIR R4 API", "url": format!("{base_url}{BASE}") },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "Every search needs Authorization: Bearer <endpoint token> of an NHS system registered with the \
                 service, and the end user in {END_USER_ID}, {END_USER_NAME}, {END_USER_ROLE} (SDS job role code) \
                 and {END_USER_ORGANISATION} (the token's organisation). {UNSCHEDULED} (true by default, or false \
                 for a scheduled query, which records no access) and {TRACE_ID} (echoed back) are optional. \
                 Errors are OperationOutcome with a Spine error code. This CapabilityStatement needs no token."
            ),
            "security": {
                "cors": false,
                "description": "Bearer endpoint token issued per NHS system (cpis token nhs ODS); \
                                a per-token rate limit answers 429 with Retry-After.",
            },
            "resource": [
                {
                    "type": "CareTeam",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": search_param(param),
                    "documentation": "One CareTeam per retrievable child protection plan, looked after child \
                                      episode or unborn child protection plan (midwife roles only), across all \
                                      local authorities. An unscheduled search that finds information records an \
                                      access.",
                },
                {
                    "type": "AuditEvent",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": search_param(param),
                    "searchInclude": ["AuditEvent:agent"],
                    "documentation": "The access history shown to users (first access per user per 24 hours, at \
                                      most 25, newest first), each with the viewer's PractitionerRole included. \
                                      Never itself an access.",
                },
            ],
        }],
    })
}
