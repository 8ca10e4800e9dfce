//! The job queue in PostgreSQL, shared by every `cpis serve` instance and `cpis jobs run-due`.
//!
//! - [`tick`] inserts every scheduled occurrence that has come, under the unique (kind, key) with
//!   `ON CONFLICT DO NOTHING`: every instance may tick, exactly one row per occurrence exists, and
//!   occurrences missed while the service was down are caught up (triagebot's pattern).
//! - [`run_one`] claims the oldest due job with `FOR UPDATE SKIP LOCKED` inside the transaction
//!   that runs it (crates.io's worker): a runner that dies mid-job leaves its transaction rolled
//!   back and the row pending and unlocked, so another runner simply runs it again. The job runs in
//!   a savepoint, so a failure is undone and recorded in the same transaction.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use serde_json::json;

use super::{schedule, Context, Kind};
use crate::audit::{self, Actor, Event};
use crate::error::AppError;
use crate::schema::jobs;

/// Attempts before a job is marked failed (kept, and shown to CP-IS owners).
pub const MAX_ATTEMPTS: i32 = 5;

/// How far back a kind never scheduled before is caught up.
pub const FIRST_CATCH_UP: Duration = Duration::days(7);

/// The longest outage caught up: beyond it, older occurrences are not created (a month of daily
/// notifications is still sent; a clock set years wrong does not flood the queue).
pub const MAX_CATCH_UP: Duration = Duration::days(35);

/// Serialises jobs of one kind (two runners never run, say, two expiry jobs at once); the kind's
/// index is added. Held until the job's transaction ends.
const KIND_LOCK_BASE: i64 = 0x4350_4953_4a4f_4200; // "CPISJOB\0"

/// The wait before attempt `attempts + 1`, after `attempts` failures: 1, 2, 4, 8 minutes.
pub fn backoff(attempts: i32) -> Duration {
    Duration::minutes(1 << (attempts.clamp(1, 8) - 1))
}

/// A job as stored.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub scheduled_for: DateTime<Utc>,
    pub status: String,
    pub attempts: i32,
    pub run_after: DateTime<Utc>,
    pub last_error: Option<String>,
    pub summary: Option<serde_json::Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What became of a job after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Done {
        summary: serde_json::Value,
    },
    /// Failed this time; tried again from `run_after`.
    Retrying {
        error: String,
        run_after: DateTime<Utc>,
    },
    /// Failed for the last time: kept, with its error, for CP-IS owners to see.
    Failed {
        error: String,
    },
}

/// One attempt at one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub job_id: i64,
    pub kind: Kind,
    pub scheduled_for: DateTime<Utc>,
    /// Attempts so far, this one included.
    pub attempts: i32,
    pub status: Status,
}

impl std::fmt::Display for Outcome {
    /// One line, without personal data (summaries hold counts; errors hold no values).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} {} (#{}, attempt {}): ",
            self.kind.code(),
            schedule::key(self.scheduled_for),
            self.job_id,
            self.attempts
        )?;
        match &self.status {
            Status::Done { summary } => write!(f, "done {summary}"),
            Status::Retrying { error, run_after } => {
                write!(f, "failed, retrying after {}: {error}", schedule::key(*run_after))
            }
            Status::Failed { error } => write!(f, "failed for good after {MAX_ATTEMPTS} attempts: {error}"),
        }
    }
}

/// Inserts every occurrence of every kind that has come by `now` since the kind's catch-up
/// horizon: its latest occurrence in the queue up to `now`, or `now` minus [`FIRST_CATCH_UP`] for
/// a kind never scheduled (and never more than [`MAX_CATCH_UP`] back). Returns how many rows
/// were new (another instance may have inserted the rest).
pub fn tick(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<usize, AppError> {
    let mut inserted = 0;
    for kind in Kind::ALL {
        // The latest occurrence that has come: rows an operator created for a later moment
        // (`run-due --now` in the future) do not hold back today's.
        let latest: Option<DateTime<Utc>> = jobs::table
            .filter(jobs::kind.eq(kind.code()))
            .filter(jobs::scheduled_for.le(now))
            .select(diesel::dsl::max(jobs::scheduled_for))
            .first(conn)?;
        let after = latest.unwrap_or(now - FIRST_CATCH_UP).max(now - MAX_CATCH_UP);
        let due = schedule::occurrences(kind, after, now);
        if due.is_empty() {
            continue;
        }
        let keys: Vec<String> = due.iter().map(|t| schedule::key(*t)).collect();
        inserted += diesel::sql_query(
            "INSERT INTO jobs (kind, key, scheduled_for, run_after) \
             SELECT $1, k, s, s FROM unnest($2::text[], $3::timestamptz[]) AS u(k, s) \
             ON CONFLICT (kind, key) DO NOTHING",
        )
        .bind::<Text, _>(kind.code())
        .bind::<Array<Text>, _>(&keys)
        .bind::<Array<Timestamptz>, _>(&due)
        .execute(conn)?;
    }
    Ok(inserted)
}

/// Claims and runs the oldest job due at `now`, in one transaction; `None` when nothing is due.
/// A job's own failure is recorded (and is an `Ok` outcome); an `Err` means the queue itself could
/// not be used (the database is down), and nothing was recorded. `context` carries what jobs need
/// of the configuration (the audit key).
pub fn run_one(conn: &mut PgConnection, context: &Context, now: DateTime<Utc>) -> Result<Option<Outcome>, AppError> {
    conn.transaction(|conn| {
        let Some(job) = jobs::table
            .filter(jobs::status.eq("pending"))
            .filter(jobs::run_after.le(now))
            .order((jobs::scheduled_for, jobs::id))
            .select(Job::as_select())
            .for_update()
            .skip_locked()
            .first(conn)
            .optional()?
        else {
            return Ok(None);
        };
        // The table's CHECK admits only the known kinds.
        let kind = Kind::from_code(&job.kind)
            .ok_or_else(|| AppError::Internal(format!("job {} has an unknown kind", job.id)))?;
        let index = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as i64;
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(KIND_LOCK_BASE + index)
            .execute(conn)?;
        let started = Utc::now();
        let attempts = job.attempts + 1;
        // The job in a savepoint: its failure rolls back its work, not the claim.
        let result: Result<serde_json::Value, AppError> = conn.transaction(|conn| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                super::run(kind, conn, context, job.scheduled_for, now)
            }))
            .unwrap_or_else(|_| Err(AppError::Internal("the job panicked".into())))
        });
        let status = match result {
            Ok(summary) => {
                diesel::update(jobs::table.find(job.id))
                    .set((
                        jobs::status.eq("done"),
                        jobs::attempts.eq(attempts),
                        jobs::summary.eq(&summary),
                        jobs::started_at.eq(started),
                        jobs::finished_at.eq(Utc::now()),
                    ))
                    .execute(conn)?;
                audit::record(
                    conn,
                    Event::new(Actor::Service, "job.completed").details(json!({
                        "job_id": job.id, "kind": kind.code(), "scheduled_for": job.key,
                        "attempts": attempts, "summary": summary,
                    })),
                )?;
                Status::Done { summary }
            }
            Err(e) => {
                let error = error_text(&e);
                let last = attempts >= MAX_ATTEMPTS;
                let run_after = now + backoff(attempts);
                diesel::update(jobs::table.find(job.id))
                    .set((
                        jobs::status.eq(if last { "failed" } else { "pending" }),
                        jobs::attempts.eq(attempts),
                        jobs::last_error.eq(&error),
                        jobs::run_after.eq(if last { job.run_after } else { run_after }),
                        jobs::started_at.eq(started),
                        jobs::finished_at.eq(Utc::now()),
                    ))
                    .execute(conn)?;
                audit::record(
                    conn,
                    Event::new(Actor::Service, "job.failed").details(json!({
                        "job_id": job.id, "kind": kind.code(), "scheduled_for": job.key,
                        "attempts": attempts, "error": error, "final": last,
                    })),
                )?;
                if last {
                    Status::Failed { error }
                } else {
                    Status::Retrying { error, run_after }
                }
            }
        };
        Ok(Some(Outcome { job_id: job.id, kind, scheduled_for: job.scheduled_for, attempts, status }))
    })
}

/// The error as kept on the job row: its message, bounded. Jobs' errors name what failed, never a
/// person (AppError's messages carry no values from rows).
fn error_text(e: &AppError) -> String {
    let s = e.to_string();
    match s.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

// Reads for the jobs page.

/// The latest attempted jobs, most recently finished first.
pub fn recent(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<Job>> {
    jobs::table
        .filter(jobs::attempts.gt(0))
        .order((jobs::finished_at.desc().nulls_last(), jobs::id.desc()))
        .limit(limit)
        .select(Job::as_select())
        .load(conn)
}

/// Jobs that failed for good, and jobs waiting to retry after a failure, newest first.
pub fn failures(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<Job>> {
    jobs::table
        .filter(jobs::status.eq("failed").or(jobs::status.eq("pending").and(jobs::last_error.is_not_null())))
        .order((jobs::scheduled_for.desc(), jobs::id.desc()))
        .limit(limit)
        .select(Job::as_select())
        .load(conn)
}

/// The latest attempted job of a kind.
pub fn last_run(conn: &mut PgConnection, kind: Kind) -> QueryResult<Option<Job>> {
    jobs::table
        .filter(jobs::kind.eq(kind.code()))
        .filter(jobs::attempts.gt(0))
        .order((jobs::finished_at.desc().nulls_last(), jobs::id.desc()))
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// Queue depth: pending jobs due at `now`.
pub fn due_count(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<i64> {
    jobs::table.filter(jobs::status.eq("pending")).filter(jobs::run_after.le(now)).count().get_result(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_minute() {
        let minutes: Vec<i64> = (1..=4).map(|n| backoff(n).num_minutes()).collect();
        assert_eq!(minutes, [1, 2, 4, 8]);
    }

    #[test]
    fn long_errors_are_cut() {
        let e = AppError::Internal("x".repeat(2000));
        assert_eq!(error_text(&e).chars().count(), 501);
        assert_eq!(error_text(&AppError::Internal("short".into())), "internal error: short");
    }
}
