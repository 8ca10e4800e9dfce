//! Audit retention (CP-IS076).

use chrono::{DateTime, Utc};
use diesel::PgConnection;

use crate::error::AppError;

pub fn run(
    conn: &mut PgConnection,
    scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let _ = (conn, scheduled_for, now);
    Err(AppError::Internal("not built yet".into()))
}
