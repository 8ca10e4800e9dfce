//! Message 02, the Local Authority Acknowledgement Response (messages.md, "02 Acknowledgement
//! Response"): encoded for the LA's inbox, and decoded again for the LA portal's table.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::xml::{attr, read_flat, timestamp, Element, DECLARATION};
use super::NAMESPACE;
use crate::domain::codes::{FileCode, RecordCode};

/// One `RecordResponse`: the outcome of the record numbered `index` (from 1, in file order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordResponse {
    pub index: usize,
    /// As sent; written as an empty attribute when None (and an empty attribute reads as None).
    pub la_child_id: Option<String>,
    /// As sent; written as an empty attribute when None (and an empty attribute reads as None).
    pub nhs_number: Option<String>,
    pub code: RecordCode,
    pub text: String,
    /// CPR05's replacement number; the attribute is written only when present.
    pub new_nhs_number: Option<String>,
}

/// A whole message 02.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Acknowledgement {
    pub message_id: Uuid,
    /// The upload's messageId; None (written `inResponseTo=""`) when it could not be read.
    pub in_response_to: Option<Uuid>,
    pub created: DateTime<Utc>,
    pub file_code: FileCode,
    pub file_text: String,
    pub received: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub records: Vec<RecordResponse>,
}

impl Acknowledgement {
    /// The message's XML. Characters XML 1.0 does not allow are written as U+FFFD.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(400 + self.records.len() * 160);
        out.push_str(DECLARATION);
        out.push_str("<LAAcknowledgement");
        attr(&mut out, "xmlns", NAMESPACE);
        attr(&mut out, "messageId", &self.message_id.to_string());
        attr(&mut out, "inResponseTo", &self.in_response_to.map(|u| u.to_string()).unwrap_or_default());
        attr(&mut out, "created", &timestamp(&self.created));
        out.push_str(">\n  <File");
        attr(&mut out, "code", self.file_code.code());
        attr(&mut out, "text", &self.file_text);
        attr(&mut out, "received", &self.received.to_string());
        attr(&mut out, "accepted", &self.accepted.to_string());
        attr(&mut out, "rejected", &self.rejected.to_string());
        out.push_str("/>\n");
        for r in &self.records {
            out.push_str("  <RecordResponse");
            attr(&mut out, "index", &r.index.to_string());
            attr(&mut out, "laChildId", r.la_child_id.as_deref().unwrap_or_default());
            attr(&mut out, "nhsNumber", r.nhs_number.as_deref().unwrap_or_default());
            attr(&mut out, "code", r.code.code());
            attr(&mut out, "text", &r.text);
            if let Some(new) = &r.new_nhs_number {
                attr(&mut out, "newNhsNumber", new);
            }
            out.push_str("/>\n");
        }
        out.push_str("</LAAcknowledgement>\n");
        out
    }
}

/// Reads a message 02 written by [`Acknowledgement::to_xml`] (or by hand in the same shape).
pub fn parse_ack(xml: &str) -> Result<Acknowledgement, String> {
    let (root, children) = read_flat(xml, "LAAcknowledgement")?;
    let message_id = root.uuid("messageId")?;
    let in_response_to = match root.get("inResponseTo") {
        None | Some("") => None,
        Some(_) => Some(root.uuid("inResponseTo")?),
    };
    let created = root.timestamp("created")?;
    let mut file: Option<Element> = None;
    let mut records = Vec::new();
    for child in children {
        match child.name.as_str() {
            "File" if file.is_some() => return Err("the acknowledgement has two File elements".into()),
            "File" => file = Some(child),
            "RecordResponse" => records.push(record_response(&child)?),
            other => return Err(format!("unexpected element {other} in LAAcknowledgement")),
        }
    }
    let file = file.ok_or("the acknowledgement has no File element")?;
    let code = file.required("code")?;
    Ok(Acknowledgement {
        message_id,
        in_response_to,
        created,
        file_code: FileCode::from_code(code).ok_or_else(|| format!("\"{code}\" is not a file code"))?,
        file_text: file.required("text")?.to_owned(),
        received: file.number("received")?,
        accepted: file.number("accepted")?,
        rejected: file.number("rejected")?,
        records,
    })
}

fn record_response(e: &Element) -> Result<RecordResponse, String> {
    let code = e.required("code")?;
    Ok(RecordResponse {
        index: e.number("index")?,
        la_child_id: e.optional("laChildId"),
        nhs_number: e.optional("nhsNumber"),
        code: RecordCode::from_code(code).ok_or_else(|| format!("\"{code}\" is not a record code"))?,
        text: e.required("text")?.to_owned(),
        new_nhs_number: e.optional("newNhsNumber"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example() -> Acknowledgement {
        Acknowledgement {
            message_id: Uuid::parse_str("6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b").unwrap(),
            in_response_to: Some(Uuid::parse_str("0b7c1f0e-8d1a-4a51-9a6e-3c2f5a1d9e40").unwrap()),
            created: Utc.with_ymd_and_hms(2026, 11, 22, 9, 15, 2).unwrap(),
            file_code: FileCode::Cpf02,
            file_text: "2 of 3 records accepted".into(),
            received: 3,
            accepted: 2,
            rejected: 1,
            records: vec![
                RecordResponse {
                    index: 1,
                    la_child_id: Some("KCC-000123".into()),
                    nhs_number: Some("9990000018".into()),
                    code: RecordCode::Cpr06,
                    text: "Success".into(),
                    new_nhs_number: None,
                },
                RecordResponse {
                    index: 2,
                    la_child_id: Some("KCC-000124".into()),
                    nhs_number: Some("9990000026".into()),
                    code: RecordCode::Cpr05,
                    text: "NHS number superseded".into(),
                    new_nhs_number: Some("9990000034".into()),
                },
                RecordResponse {
                    index: 3,
                    la_child_id: Some("KCC-000125".into()),
                    nhs_number: Some("1234567890".into()),
                    code: RecordCode::Cpr04,
                    text: "Not a new-style NHS number".into(),
                    new_nhs_number: None,
                },
            ],
        }
    }

    #[test]
    fn writes_the_contract_shape() {
        let xml = example().to_xml();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LAAcknowledgement xmlns=\"urn:cpis:messages:1\" messageId=\"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b\" inResponseTo=\"0b7c1f0e-8d1a-4a51-9a6e-3c2f5a1d9e40\" created=\"2026-11-22T09:15:02Z\">"), "{xml}");
        assert!(xml.contains(
            "<File code=\"CPF02\" text=\"2 of 3 records accepted\" received=\"3\" accepted=\"2\" rejected=\"1\"/>"
        ));
        assert!(xml.contains("<RecordResponse index=\"1\" laChildId=\"KCC-000123\" nhsNumber=\"9990000018\" code=\"CPR06\" text=\"Success\"/>"));
        assert!(xml.contains("code=\"CPR05\" text=\"NHS number superseded\" newNhsNumber=\"9990000034\"/>"));
        assert_eq!(xml.matches("newNhsNumber").count(), 1);
        assert!(xml.ends_with("</LAAcknowledgement>\n"));
    }

    #[test]
    fn round_trips() {
        let a = example();
        assert_eq!(parse_ack(&a.to_xml()).unwrap(), a);
    }

    #[test]
    fn round_trips_awkward_text_and_absent_values() {
        let mut a = example();
        a.in_response_to = None;
        a.file_code = FileCode::Cpf03;
        a.file_text = "Rejected: the entity reference &foo; is not allowed (only &lt; <b> \"q\" 'a')".into();
        a.created = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 59).unwrap() + chrono::Duration::microseconds(123_456);
        a.records[0].la_child_id = None;
        a.records[0].nhs_number = None;
        a.records[1].text = "tab\there\nnew line\r\ncrlf  two spaces ]]> --> é 日本 🦀 &amp;".into();
        a.records[2].la_child_id = Some("  KCC & <co> \"x\"  ".into());
        let xml = a.to_xml();
        assert!(xml.contains("inResponseTo=\"\""));
        assert_eq!(parse_ack(&xml).unwrap(), a);
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        let mut a = example();
        a.records[0].text = "bell\u{7} nul\u{0} \u{FFFE}".into();
        let xml = a.to_xml();
        assert!(!xml.contains('\u{7}') && !xml.contains('\u{0}'));
        assert_eq!(parse_ack(&xml).unwrap().records[0].text, "bell\u{FFFD} nul\u{FFFD} \u{FFFD}");
    }

    #[test]
    fn refuses_what_is_not_an_acknowledgement() {
        assert!(parse_ack("").is_err());
        assert!(parse_ack("<LAUpload xmlns=\"urn:cpis:messages:1\"/>").is_err());
        let xml = example().to_xml();
        assert!(parse_ack(&xml.replace("urn:cpis:messages:1", "urn:other")).is_err());
        assert!(parse_ack(&xml.replace("CPF02", "CPF99")).is_err());
        assert!(parse_ack(&xml.replace("<File", "<Fil")).is_err());
        assert!(parse_ack(&xml[..xml.len() - 10]).is_err());
        assert!(parse_ack(&xml.replace("Success", "&bogus;")).is_err());
    }
}
