//! Message 04's access history as AuditEvent resources: the accesses shown to users (first access
//! per user per 24 hours, at most 25, newest first; CP-IS026, CP-IS047, CP-IS048), each with the
//! viewer's PractitionerRole included (job role and organisation, with readable names).

use chrono::SecondsFormat;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{NHS_NUMBER_SYSTEM, ODS_SYSTEM};
use crate::cpis::access::HistoryEntry;
use crate::domain::names::readable_org_name;
use crate::domain::roles;

/// The SDS job role code system (UK Core); codes such as R8000.
pub const SDS_JOB_ROLE_SYSTEM: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName";
/// ISO 21089 record lifecycle events: `access` is "Access/View Record".
pub const LIFECYCLE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
/// Who observed the events: this service.
pub const OBSERVER: &str = "Child Protection Information Sharing (CP-IS) service";

pub fn event_id(access_id: i64) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("urn:cpis:AuditEvent:{access_id}").as_bytes())
}

pub fn practitioner_role_id(access_id: i64) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("urn:cpis:PractitionerRole:{access_id}").as_bytes())
}

/// The job role's name, as the tab shows it.
pub fn job_role_display(h: &HistoryEntry) -> String {
    h.job_role_name.as_deref().or_else(|| roles::job_role_name(&h.job_role_code)).unwrap_or(&h.job_role_code).to_owned()
}

/// The organisation's name in readable form, as the tab shows it.
pub fn organisation_display(h: &HistoryEntry) -> String {
    h.organisation_name.as_deref().map(readable_org_name).unwrap_or_else(|| h.organisation_code.clone())
}

pub fn audit_event(h: &HistoryEntry, nhs_number: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "id": event_id(h.id).to_string(),
        "type": { "system": LIFECYCLE_SYSTEM, "code": "access", "display": "Access/View Record Lifecycle Event" },
        "action": "R",
        "recorded": h.accessed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "outcome": "0",
        "agent": [{
            "who": {
                "reference": format!("urn:uuid:{}", practitioner_role_id(h.id)),
                "type": "PractitionerRole",
                "display": h.viewer_name,
            },
            "requestor": true,
        }],
        "source": {
            "site": "CP-IS",
            "observer": { "display": OBSERVER },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": [{
            "what": { "identifier": { "system": NHS_NUMBER_SYSTEM, "value": nhs_number } },
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
                "display": "Person",
            },
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "1",
                "display": "Patient",
            },
        }],
    })
}

pub fn practitioner_role(h: &HistoryEntry) -> Value {
    json!({
        "resourceType": "PractitionerRole",
        "id": practitioner_role_id(h.id).to_string(),
        "practitioner": { "display": h.viewer_name },
        "organization": {
            "identifier": { "system": ODS_SYSTEM, "value": h.organisation_code },
            "display": organisation_display(h),
        },
        "code": [{
            "coding": [{
                "system": SDS_JOB_ROLE_SYSTEM,
                "code": h.job_role_code,
                "display": job_role_display(h),
            }]
        }],
    })
}

/// Each shown access (search mode `match`) followed by its viewer's PractitionerRole (`include`).
pub fn entries(history: &[HistoryEntry], nhs_number: &str) -> Vec<Value> {
    history
        .iter()
        .flat_map(|h| {
            [
                json!({
                    "fullUrl": format!("urn:uuid:{}", event_id(h.id)),
                    "resource": audit_event(h, nhs_number),
                    "search": { "mode": "match" },
                }),
                json!({
                    "fullUrl": format!("urn:uuid:{}", practitioner_role_id(h.id)),
                    "resource": practitioner_role(h),
                    "search": { "mode": "include" },
                }),
            ]
        })
        .collect()
}
