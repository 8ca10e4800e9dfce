//! Message 04's CareTeam: one resource per retrievable item, across all LAs, as NHS England's CP-IS
//! FHIR API maps it (SNOMED category, period, the LA's name, code and telephone numbers).
//!
//! `status` is "active" while today (UK calendar) is within the item's period (no end, or an end on
//! or after today) and "inactive" once the shown end has passed: an ended item stays retrievable for
//! a year (28 days for an unborn plan), and the integrator should not read it as current.

use chrono::NaiveDate;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{NHS_NUMBER_SYSTEM, ODS_SYSTEM, SNOMED};
use crate::cpis::alert::{AlertTab, ShownItem};
use crate::cpis::local_authority::LocalAuthority;

/// A stable id for a stored item (a name-based UUID): the same item gets the same id on every
/// query; it says nothing of the LA's child id or the item's dates.
pub fn stable_id(item_id: i64) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("urn:cpis:CareTeam:{item_id}").as_bytes())
}

pub fn status(item: &ShownItem, today: NaiveDate) -> &'static str {
    match item.end {
        Some(end) if end < today => "inactive",
        _ => "active",
    }
}

/// The CareTeam of one item. Never the LA's child id, nor its delete date (CP-IS051).
pub fn resource(item: &ShownItem, la: &LocalAuthority, nhs_number: &str, today: NaiveDate) -> Value {
    let mut period = json!({ "start": item.start.format("%Y-%m-%d").to_string() });
    if let Some(end) = item.end {
        period["end"] = json!(end.format("%Y-%m-%d").to_string());
    }
    let mut telecom = Vec::new();
    if let Some(phone) = la.emergency_phone.as_deref().filter(|p| !p.trim().is_empty()) {
        telecom.push(json!({ "system": "phone", "value": phone, "use": "mobile" }));
    }
    if let Some(phone) = la.office_hours_phone.as_deref().filter(|p| !p.trim().is_empty()) {
        telecom.push(json!({ "system": "phone", "value": phone, "use": "work" }));
    }
    let mut team = json!({
        "resourceType": "CareTeam",
        "id": stable_id(item.item_id).to_string(),
        "status": status(item, today),
        "category": [{
            "coding": [{
                "system": SNOMED,
                "code": item.kind.snomed_code(),
                "display": item.kind.display_name(),
            }]
        }],
        "subject": { "identifier": { "system": NHS_NUMBER_SYSTEM, "value": nhs_number } },
        "period": period,
        "name": la.name(),
        "managingOrganization": [{
            "identifier": { "system": ODS_SYSTEM, "value": la.code },
            "display": la.name(),
        }],
    });
    if !telecom.is_empty() {
        team["telecom"] = Value::Array(telecom);
    }
    team
}

/// The search's entries: the tab's authorities in its order (LA name, then kind and start).
pub fn entries(tab: Option<&AlertTab>, nhs_number: &str, today: NaiveDate) -> Vec<Value> {
    let Some(tab) = tab else {
        return Vec::new();
    };
    tab.authorities
        .iter()
        .flat_map(|block| {
            block.items.iter().map(move |item| {
                json!({
                    "fullUrl": format!("urn:uuid:{}", stable_id(item.item_id)),
                    "resource": resource(item, &block.authority, nhs_number, today),
                    "search": { "mode": "match" },
                })
            })
        })
        .collect()
}
