pub mod app;
pub mod browser;
pub mod cluster;
pub mod db;

pub use app::{between, html_text, Client, TestApp, PASSWORD};
pub use db::{Template, TestDatabase};
pub mod server;
pub mod smtp;
pub mod uploads;

/// A viewer as an NHS system's end user (no account here) at King's College Hospital, for tests
/// that record accesses through `cpis::cpis::access` directly.
pub fn api_viewer(viewer_id: &str) -> cpis::cpis::access::Viewer {
    cpis::cpis::access::Viewer {
        viewer_id: viewer_id.to_owned(),
        user_id: None,
        name: "Dr Api".to_owned(),
        job_role_code: "R8000".to_owned(),
        organisation_code: "RJZ".to_owned(),
        channel: cpis::cpis::access::Channel::Fhir,
    }
}
