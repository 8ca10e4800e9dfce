//! The hourly audit checkpoint (CP-IS074): signs the audit chain's head with the configured key
//! ([`crate::audit::checkpoint`]), so a rewrite of the whole chain is detected by the next
//! verification.
//!
//! Without a key the job succeeds and its summary says nothing was signed. Occurrences caught up
//! after an outage all run at once: the first signs, and the rest find a checkpoint made at or
//! after their own time and sign nothing more (one signature covers the whole chain).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::audit::checkpoint;
use crate::config::AuditKey;
use crate::error::AppError;

pub fn run(
    conn: &mut PgConnection,
    key: Option<&AuditKey>,
    scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let Some(key) = key else {
        // Entries a crash left pending (committed with an upload, never chained) are chained
        // every hour all the same; with a key, checkpoint::write chains them before it signs.
        let chained = crate::audit::chain_pending(conn)?;
        if chained > 0 {
            tracing::warn!(chunks = chained, "audit entries left pending were chained");
        }
        return Ok(json!({ "signed": false, "note": "no audit key is configured: nothing was signed" }));
    };
    if let Some(last) = checkpoint::last(conn)? {
        if last.created_at >= scheduled_for {
            return Ok(json!({
                "signed": false,
                "note": "a checkpoint was already signed at or after this occurrence",
                "checkpoint_id": last.id,
            }));
        }
    }
    Ok(match checkpoint::write(conn, key, now)? {
        Some(c) => json!({
            "signed": true,
            "checkpoint_id": c.id,
            "entry_id": c.entry_id,
            "key_id": c.key_id,
            "signature": hex::encode(&c.signature),
        }),
        None => json!({ "signed": false, "note": "the audit trail is empty: nothing to sign" }),
    })
}
