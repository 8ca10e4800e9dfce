//! Scheduled work (issue 5): a job queue in PostgreSQL that any number of `cpis serve` instances
//! share, the schedule, and one file per job.
//!
//! - `schedule`: when each kind runs, in UK local time (pure);
//! - `queue`: tick (insert occurrences, caught up after an outage) and run one job (claimed with
//!   `FOR UPDATE SKIP LOCKED` in the transaction that runs it; retries with backoff);
//! - `runner`: `run_due` (what `cpis jobs run-due` and the scheduler thread call) and the thread;
//! - one file per job: `expiry`, `daily_notification`, `retention`, `sessions`, `audit_checkpoint`.
//!
//! Every job kind has the same entry point:
//! `pub fn run(conn: &mut PgConnection, scheduled_for: DateTime<Utc>, now: DateTime<Utc>) -> Result<serde_json::Value, AppError>`
//! (a job that needs configuration, such as the audit key, also takes it from [`Context`]), run
//! inside the transaction that claimed the job (so a crash mid-job leaves nothing half-done and
//! the job is simply run again); the returned JSON is a summary kept on the job row (counts, never
//! personal data).

pub mod audit_checkpoint;
pub mod daily_notification;
pub mod expiry;
pub mod queue;
pub mod retention;
pub mod runner;
pub mod schedule;
pub mod sessions;

use chrono::{DateTime, Utc};
use diesel::PgConnection;

use crate::config::{AuditKey, Config};
use crate::error::AppError;

/// What jobs need of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The key that signs audit checkpoints (`CPIS_AUDIT_KEY`); none: nothing is signed.
    pub audit_key: Option<AuditKey>,
}

impl Context {
    pub fn from_config(config: &Config) -> Context {
        Context { audit_key: config.audit_key.clone() }
    }
}

/// The kinds of scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// CP-IS009, 010, 011, 030, 032, 033: logical deletion and end-dating at 18.
    Expiry,
    /// CP-IS025, CP-IS070: message 05 and its e-mail for every LA, for the previous UK day.
    DailyNotification,
    /// CP-IS076: purge access events and audit entries past their retention.
    AuditRetention,
    /// Removes expired sessions.
    SessionCleanup,
    /// CP-IS074: signs the audit chain's head with the configured key.
    AuditCheckpoint,
}

impl Kind {
    pub const ALL: [Kind; 5] =
        [Kind::Expiry, Kind::DailyNotification, Kind::AuditRetention, Kind::SessionCleanup, Kind::AuditCheckpoint];

    pub fn code(self) -> &'static str {
        match self {
            Kind::Expiry => "expiry",
            Kind::DailyNotification => "daily_notification",
            Kind::AuditRetention => "audit_retention",
            Kind::SessionCleanup => "session_cleanup",
            Kind::AuditCheckpoint => "audit_checkpoint",
        }
    }

    /// The name CP-IS owners read on the jobs page.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Expiry => "Expiry and end-dating",
            Kind::DailyNotification => "Daily access notifications (message 05)",
            Kind::AuditRetention => "Audit retention",
            Kind::SessionCleanup => "Session clean-up",
            Kind::AuditCheckpoint => "Audit checkpoint (signed)",
        }
    }

    pub fn from_code(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == s)
    }
}

/// Runs one job of `kind` for its scheduled occurrence, at `now`, in the caller's transaction.
pub fn run(
    kind: Kind,
    conn: &mut PgConnection,
    context: &Context,
    scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    match kind {
        Kind::AuditCheckpoint => audit_checkpoint::run(conn, context.audit_key.as_ref(), scheduled_for, now),
        Kind::DailyNotification => daily_notification::run(conn, scheduled_for, now),
        Kind::AuditRetention => retention::run(conn, scheduled_for, now),
        Kind::Expiry => expiry::run(conn, scheduled_for, now),
        Kind::SessionCleanup => sessions::run(conn, scheduled_for, now),
    }
}
