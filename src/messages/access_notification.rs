//! Message 05, the Access to Service Notification (messages.md, "05 Access to Service
//! Notification"; CP-IS025, CP-IS070): the day's shown accesses to an LA's children.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::xml::{attr, read_flat, timestamp, Element, DECLARATION};
use super::NAMESPACE;

/// One `Access` element: a shown access (after the first-access rule) to one of the LA's children.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessEntry {
    pub nhs_number: String,
    pub la_child_id: String,
    pub accessed_at: DateTime<Utc>,
    pub user_name: String,
    /// The job role code, such as `R8000`.
    pub job_role: String,
    pub job_role_name: String,
    pub organisation_code: String,
    pub organisation_name: String,
    /// How the access was made, such as `SCRa` or `FHIR`.
    pub channel: String,
}

/// A whole message 05. No accesses is written as a single `<NoAccess/>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessNotification {
    pub message_id: Uuid,
    pub la_ods_code: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub accesses: Vec<AccessEntry>,
}

impl AccessNotification {
    /// The message's XML.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(400 + self.accesses.len() * 360);
        out.push_str(DECLARATION);
        out.push_str("<AccessNotification");
        attr(&mut out, "xmlns", NAMESPACE);
        attr(&mut out, "messageId", &self.message_id.to_string());
        attr(&mut out, "laOdsCode", &self.la_ods_code);
        attr(&mut out, "periodStart", &timestamp(&self.period_start));
        attr(&mut out, "periodEnd", &timestamp(&self.period_end));
        attr(&mut out, "created", &timestamp(&self.created));
        out.push_str(">\n");
        if self.accesses.is_empty() {
            out.push_str("  <NoAccess/>\n");
        }
        for a in &self.accesses {
            out.push_str("  <Access");
            attr(&mut out, "nhsNumber", &a.nhs_number);
            attr(&mut out, "laChildId", &a.la_child_id);
            attr(&mut out, "accessedAt", &timestamp(&a.accessed_at));
            attr(&mut out, "userName", &a.user_name);
            attr(&mut out, "jobRole", &a.job_role);
            attr(&mut out, "jobRoleName", &a.job_role_name);
            attr(&mut out, "organisationCode", &a.organisation_code);
            attr(&mut out, "organisationName", &a.organisation_name);
            attr(&mut out, "channel", &a.channel);
            out.push_str("/>\n");
        }
        out.push_str("</AccessNotification>\n");
        out
    }
}

/// Reads a message 05 written by [`AccessNotification::to_xml`]. It holds either `Access`
/// elements or one `NoAccess`.
pub fn parse_access_notification(xml: &str) -> Result<AccessNotification, String> {
    let (root, children) = read_flat(xml, "AccessNotification")?;
    let mut accesses = Vec::new();
    let mut no_access = 0;
    for child in &children {
        match child.name.as_str() {
            "Access" => accesses.push(access(child)?),
            "NoAccess" => no_access += 1,
            other => return Err(format!("unexpected element {other} in AccessNotification")),
        }
    }
    match (accesses.len(), no_access) {
        (0, 1) | (1.., 0) => {}
        (0, 0) => return Err("the notification holds neither Access nor NoAccess".into()),
        _ => return Err("NoAccess must be the only element of a notification without accesses".into()),
    }
    Ok(AccessNotification {
        message_id: root.uuid("messageId")?,
        la_ods_code: root.required("laOdsCode")?.to_owned(),
        period_start: root.timestamp("periodStart")?,
        period_end: root.timestamp("periodEnd")?,
        created: root.timestamp("created")?,
        accesses,
    })
}

fn access(e: &Element) -> Result<AccessEntry, String> {
    let text = |name: &str| e.required(name).map(str::to_owned);
    Ok(AccessEntry {
        nhs_number: text("nhsNumber")?,
        la_child_id: text("laChildId")?,
        accessed_at: e.timestamp("accessedAt")?,
        user_name: text("userName")?,
        job_role: text("jobRole")?,
        job_role_name: text("jobRoleName")?,
        organisation_code: text("organisationCode")?,
        organisation_name: text("organisationName")?,
        channel: text("channel")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example() -> AccessNotification {
        AccessNotification {
            message_id: Uuid::parse_str("5d6e7f80-91a2-4b3c-8d4e-5f60718293a4").unwrap(),
            la_ods_code: "E10000016".into(),
            period_start: Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap(),
            period_end: Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap(),
            created: Utc.with_ymd_and_hms(2026, 11, 22, 1, 0, 0).unwrap(),
            accesses: vec![AccessEntry {
                nhs_number: "9990000018".into(),
                la_child_id: "KCC-000123".into(),
                accessed_at: Utc.with_ymd_and_hms(2026, 11, 21, 14, 2, 11).unwrap(),
                user_name: "Dr Amy Patel".into(),
                job_role: "R8000".into(),
                job_role_name: "Clinical Practitioner Access Role".into(),
                organisation_code: "RJZ".into(),
                organisation_name: "King's College Hospital NHS Foundation Trust".into(),
                channel: "SCRa".into(),
            }],
        }
    }

    #[test]
    fn writes_the_contract_shape() {
        let xml = example().to_xml();
        assert!(xml.contains("<AccessNotification xmlns=\"urn:cpis:messages:1\" messageId=\"5d6e7f80-91a2-4b3c-8d4e-5f60718293a4\" laOdsCode=\"E10000016\" periodStart=\"2026-11-21T00:00:00Z\" periodEnd=\"2026-11-22T00:00:00Z\" created=\"2026-11-22T01:00:00Z\">"), "{xml}");
        assert!(xml.contains("<Access nhsNumber=\"9990000018\" laChildId=\"KCC-000123\" accessedAt=\"2026-11-21T14:02:11Z\" userName=\"Dr Amy Patel\" jobRole=\"R8000\" jobRoleName=\"Clinical Practitioner Access Role\" organisationCode=\"RJZ\" organisationName=\"King's College Hospital NHS Foundation Trust\" channel=\"SCRa\"/>"));
        assert!(!xml.contains("NoAccess"));
    }

    #[test]
    fn no_access_is_one_element() {
        let n = AccessNotification { accesses: vec![], ..example() };
        let xml = n.to_xml();
        assert_eq!(xml.matches("<NoAccess/>").count(), 1);
        assert!(!xml.contains("<Access "));
        assert_eq!(parse_access_notification(&xml).unwrap(), n);
    }

    #[test]
    fn round_trips() {
        let mut n = example();
        let mut second = n.accesses[0].clone();
        second.user_name = "O'Brien & \"Sons\" <locum>\tß".into();
        second.accessed_at += chrono::Duration::milliseconds(1500);
        n.accesses.push(second);
        assert_eq!(parse_access_notification(&n.to_xml()).unwrap(), n);
    }

    #[test]
    fn refuses_bad_messages() {
        let xml = example().to_xml();
        assert!(parse_access_notification(&xml.replace("<Access ", "<Access userName=\"x\" ")).is_err());
        assert!(parse_access_notification(&xml.replace("2026-11-21T14:02:11Z", "yesterday")).is_err());
        assert!(parse_access_notification(&xml.replace("\n</AccessNotification>", "<NoAccess/></AccessNotification>"))
            .is_err());
        let none = AccessNotification { accesses: vec![], ..example() }.to_xml();
        assert!(parse_access_notification(&none.replace("<NoAccess/>", "")).is_err());
    }
}
