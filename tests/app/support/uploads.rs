//! Building message 01 files from real (demo) patients, and talking to the mailbox API.

use diesel::prelude::*;
use reqwest::StatusCode;

use cpis::messages::ack::{parse_ack, Acknowledgement};

pub const KENT: &str = "E10000016";

/// A `<Record>` for a patient in the test database, with their PDS names and birth date.
pub fn record_for(conn: &mut PgConnection, nhs: &str, child_id: &str, items: &str) -> String {
    use cpis::schema::patients::dsl::*;
    let (g, f, b): (String, String, chrono::NaiveDate) =
        patients.find(nhs).select((given_name, family_name, birth_date)).first(conn).expect("a patient in PDS");
    record(nhs, child_id, &g, &f, &b.to_string(), items)
}

/// A `<Record>` with whatever values are given (names and dates are escaped by the caller).
pub fn record(nhs: &str, child_id: &str, given: &str, family: &str, birth: &str, items: &str) -> String {
    format!(
        "<Record laChildId=\"{child_id}\"><NhsNumber>{nhs}</NhsNumber><GivenName>{given}</GivenName>\
         <FamilyName>{family}</FamilyName><BirthDate>{birth}</BirthDate>{items}</Record>"
    )
}

/// A whole file from an LA.
pub fn file(message_id: &str, sequence: u64, sender: &str, records: &[String]) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LAUpload xmlns=\"urn:cpis:messages:1\" messageId=\"{message_id}\" \
         sequence=\"{sequence}\" created=\"2026-11-22T09:15:00Z\">\
         <Sender odsCode=\"{sender}\" name=\"Kent County Council Children's Services\" emergencyPhone=\"01632 960001\" \
         officeHoursPhone=\"01632 960002\"/>{}</LAUpload>",
        records.concat()
    )
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A mailbox client for one LA.
pub struct Mailbox {
    pub http: reqwest::Client,
    pub base: String,
    pub la: String,
    pub token: String,
}

impl Mailbox {
    pub fn new(app: &super::TestApp, la: &str) -> Mailbox {
        let token = cpis::mailbox::tokens::issue_la(&mut app.conn(), cpis::audit::Actor::Operator, la, "test").unwrap();
        Mailbox { http: reqwest::Client::new(), base: format!("http://{}", app.addr), la: la.into(), token }
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}/mesh/v1/{}{rest}", self.base, self.la)
    }

    /// Sends a file; returns the status and the JSON answer.
    pub async fn send(&self, body: impl Into<reqwest::Body>) -> (StatusCode, serde_json::Value) {
        let res = self.http.post(self.url("/outbox")).bearer_auth(&self.token).body(body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Sends a file that must be accepted for processing, and returns its acknowledgement.
    pub async fn upload(&self, body: impl Into<reqwest::Body>) -> Acknowledgement {
        let (status, json) = self.send(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        let id = json["messageId"].as_str().expect("the acknowledgement's messageId").to_owned();
        let xml = self.message(&id).await;
        parse_ack(&xml).expect("a well-formed acknowledgement")
    }

    pub async fn message(&self, id: &str) -> String {
        let res = self.http.get(self.url(&format!("/inbox/{id}"))).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.unwrap()
    }

    pub async fn inbox(&self) -> Vec<serde_json::Value> {
        let res = self.http.get(self.url("/inbox")).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn acknowledge(&self, id: &str) -> StatusCode {
        self.http
            .put(self.url(&format!("/inbox/{id}/status/acknowledged")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status()
    }
}
