//! Removes sessions past their idle or absolute expiry. The store already refuses them on load;
//! this keeps the table small.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::error::AppError;
use crate::schema::sessions;

pub fn run(
    conn: &mut PgConnection,
    _scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    // The store treats a session as live while both expiries are after now.
    let deleted =
        diesel::delete(sessions::table.filter(sessions::expires_at.le(now).or(sessions::absolute_expires_at.le(now))))
            .execute(conn)?;
    Ok(json!({ "sessions_deleted": deleted }))
}
