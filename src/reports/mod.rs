//! The reports CP-IS077 to CP-IS081 (issue 6), as plain functions over the database that return
//! rows and figures; the pages, CSV downloads and charts in src/web/reports/ only present them.
//!
//! - `period`: the period filter every report shares (UK dates, inclusive);
//! - `csv`: CSV downloads (with spreadsheet-formula injection neutralised);
//! - `chart`: server-rendered SVG bar charts (no script, no inline style: the CSP allows neither);
//! - one file per report.

pub mod activity;
pub mod chart;
pub mod csv;
pub mod held_on;
pub mod open_plans;
pub mod performance;
pub mod period;
pub mod subject_access;
pub mod summary;

pub use period::Period;

use diesel::PgConnection;

use crate::audit::{self, Actor, Event};
use crate::error::AppError;

/// Every report run is itself audited (issue 6: "report runs ... are in the audit trail"), in the
/// transaction that reads it. `report` is its id ("CP-IS077"); `details` holds the filters, never
/// personal data other than an NHS number that is also put in the entry's `nhs_number`.
pub fn record_run(
    conn: &mut PgConnection,
    actor: Actor,
    report: &str,
    nhs_number: Option<&str>,
    details: serde_json::Value,
) -> Result<(), AppError> {
    let mut details = details;
    if let serde_json::Value::Object(map) = &mut details {
        map.insert("report".into(), report.into());
    }
    let mut event = Event::new(actor, "report.run").details(details);
    if let Some(n) = nhs_number {
        event = event.about(n);
    }
    audit::record(conn, event)
}
