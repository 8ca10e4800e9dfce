//! Message 06, the Inactive NHS Number Notification (messages.md, "06 Inactive NHS Number
//! Notification"; CP-IS012, CP-IS023).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::xml::{attr, read_flat, timestamp, Element, DECLARATION};
use super::NAMESPACE;

/// Why PDS no longer holds the number as current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum InactiveReason {
    /// Replaced by another number (`newNhsNumber`).
    Superseded,
    Invalidated,
}

impl InactiveReason {
    /// The `reason` attribute's value.
    pub fn code(self) -> &'static str {
        match self {
            InactiveReason::Superseded => "superseded",
            InactiveReason::Invalidated => "invalidated",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "superseded" => Some(InactiveReason::Superseded),
            "invalidated" => Some(InactiveReason::Invalidated),
            _ => None,
        }
    }
}

/// One `Record`: a number this LA holds information for that is no longer current.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InactiveRecord {
    pub nhs_number: String,
    pub la_child_id: String,
    pub reason: InactiveReason,
    /// The replacement number when superseded; the attribute is written only when present.
    pub new_nhs_number: Option<String>,
}

/// A whole message 06.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InactiveNotice {
    pub message_id: Uuid,
    pub la_ods_code: String,
    pub created: DateTime<Utc>,
    pub records: Vec<InactiveRecord>,
}

impl InactiveNotice {
    /// The message's XML.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(300 + self.records.len() * 140);
        out.push_str(DECLARATION);
        out.push_str("<InactiveNhsNumber");
        attr(&mut out, "xmlns", NAMESPACE);
        attr(&mut out, "messageId", &self.message_id.to_string());
        attr(&mut out, "laOdsCode", &self.la_ods_code);
        attr(&mut out, "created", &timestamp(&self.created));
        out.push_str(">\n");
        for r in &self.records {
            out.push_str("  <Record");
            attr(&mut out, "nhsNumber", &r.nhs_number);
            attr(&mut out, "laChildId", &r.la_child_id);
            attr(&mut out, "reason", r.reason.code());
            if let Some(new) = &r.new_nhs_number {
                attr(&mut out, "newNhsNumber", new);
            }
            out.push_str("/>\n");
        }
        out.push_str("</InactiveNhsNumber>\n");
        out
    }
}

/// Reads a message 06 written by [`InactiveNotice::to_xml`].
pub fn parse_inactive(xml: &str) -> Result<InactiveNotice, String> {
    let (root, children) = read_flat(xml, "InactiveNhsNumber")?;
    let records = children
        .iter()
        .map(|c| match c.name.as_str() {
            "Record" => record(c),
            other => Err(format!("unexpected element {other} in InactiveNhsNumber")),
        })
        .collect::<Result<_, _>>()?;
    Ok(InactiveNotice {
        message_id: root.uuid("messageId")?,
        la_ods_code: root.required("laOdsCode")?.to_owned(),
        created: root.timestamp("created")?,
        records,
    })
}

fn record(e: &Element) -> Result<InactiveRecord, String> {
    let reason = e.required("reason")?;
    Ok(InactiveRecord {
        nhs_number: e.required("nhsNumber")?.to_owned(),
        la_child_id: e.required("laChildId")?.to_owned(),
        reason: InactiveReason::from_code(reason)
            .ok_or_else(|| format!("\"{reason}\" is not a reason (superseded or invalidated)"))?,
        new_nhs_number: e.optional("newNhsNumber"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example() -> InactiveNotice {
        InactiveNotice {
            message_id: Uuid::parse_str("a3a0c1de-2f4b-4c5d-9e6f-708192a3b4c5").unwrap(),
            la_ods_code: "E10000016".into(),
            created: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
            records: vec![
                InactiveRecord {
                    nhs_number: "9990000026".into(),
                    la_child_id: "KCC-000124".into(),
                    reason: InactiveReason::Superseded,
                    new_nhs_number: Some("9990000034".into()),
                },
                InactiveRecord {
                    nhs_number: "9990000042".into(),
                    la_child_id: "KCC <&> \"7\"".into(),
                    reason: InactiveReason::Invalidated,
                    new_nhs_number: None,
                },
            ],
        }
    }

    #[test]
    fn writes_the_contract_shape() {
        let xml = example().to_xml();
        assert!(xml.contains("<InactiveNhsNumber xmlns=\"urn:cpis:messages:1\" messageId=\"a3a0c1de-2f4b-4c5d-9e6f-708192a3b4c5\" laOdsCode=\"E10000016\" created=\"2026-11-22T10:00:00Z\">"), "{xml}");
        assert!(xml.contains(
            "<Record nhsNumber=\"9990000026\" laChildId=\"KCC-000124\" reason=\"superseded\" newNhsNumber=\"9990000034\"/>"
        ));
        assert!(xml.contains("reason=\"invalidated\"/>"));
        assert!(xml.contains("laChildId=\"KCC &lt;&amp;&gt; &quot;7&quot;\""));
    }

    #[test]
    fn round_trips() {
        let n = example();
        assert_eq!(parse_inactive(&n.to_xml()).unwrap(), n);
        let empty = InactiveNotice { records: vec![], ..example() };
        assert_eq!(parse_inactive(&empty.to_xml()).unwrap(), empty);
    }

    #[test]
    fn refuses_bad_messages() {
        let xml = example().to_xml();
        assert!(parse_inactive(&xml.replace("invalidated", "lost")).is_err());
        assert!(parse_inactive(&xml.replace("laOdsCode", "odsCode")).is_err());
        assert!(parse_inactive(&xml.replace("InactiveNhsNumber", "Inactive")).is_err());
        assert!(parse_inactive("<!DOCTYPE x><InactiveNhsNumber/>").is_err());
    }
}
