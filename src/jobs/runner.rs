//! Running what is due: once (`cpis jobs run-due`), or every 30 seconds on a background thread of
//! each `cpis serve` instance. Every instance may run the scheduler; the queue makes sure each
//! occurrence runs once.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};

use super::queue::{self, Outcome, Status};
use super::Context;
use crate::config::Config;
use crate::db::DbPool;
use crate::error::AppError;

/// Jobs run by one call at most, so one call always ends (a failing job waits for its backoff,
/// so it is not due again within the call anyway).
pub const MAX_JOBS_PER_CALL: usize = 1000;

/// How often the scheduler thread looks for due work.
pub const INTERVAL: StdDuration = StdDuration::from_secs(30);

/// What one call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// Occurrences newly put in the queue by this call's tick.
    pub scheduled: usize,
    /// Every job attempted, in order.
    pub outcomes: Vec<Outcome>,
    /// E-mails sent after the jobs.
    pub emails_sent: usize,
}

impl RunReport {
    pub fn done(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o.status, Status::Done { .. })).count()
    }
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.done()
    }
}

/// Runs, once, everything due at `now`, as the scheduler would: tick, every due job, then the
/// e-mails that are due. Running it twice for the same moment changes nothing.
pub fn run_due(pool: &DbPool, config: &Config, now: DateTime<Utc>) -> Result<RunReport, AppError> {
    let mut report = RunReport::default();
    {
        let mut conn = crate::db::checked(pool)?;
        let context = Context::from_config(config);
        report.scheduled = queue::tick(&mut conn, now)?;
        while report.outcomes.len() < MAX_JOBS_PER_CALL {
            match queue::run_one(&mut conn, &context, now)? {
                Some(outcome) => report.outcomes.push(outcome),
                None => break,
            }
        }
    }
    report.emails_sent = crate::mail::send_due(pool, config, now)?;
    Ok(report)
}

/// The scheduler of one `serve` instance: a thread that calls [`run_due`] with the real clock
/// every [`INTERVAL`]. It stops when this handle is dropped.
pub struct Scheduler {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the scheduler thread. A failure is logged once, at this boundary, by kind and without
/// personal data, and again only when it changes; jobs' own failures are logged per attempt.
pub fn spawn_scheduler(pool: DbPool, config: Config) -> std::io::Result<Scheduler> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new().name("cpis-scheduler".into()).spawn(move || {
        let mut last_failure: Option<String> = None;
        loop {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_due(&pool, &config, Utc::now())));
            let failure = match result {
                Ok(Ok(report)) => {
                    log_report(&report);
                    None
                }
                Ok(Err(e)) => Some(match e {
                    AppError::Unavailable => "database unavailable".to_owned(),
                    other => other.to_string(),
                }),
                Err(_) => Some("the scheduler panicked".to_owned()),
            };
            match (&failure, &last_failure) {
                (Some(now), Some(before)) if now == before => {}
                (Some(now), _) => tracing::warn!(error = %now, "scheduled work could not run; trying every 30 s"),
                (None, Some(_)) => tracing::info!("scheduled work runs again"),
                (None, None) => {}
            }
            last_failure = failure;
            match stopped.recv_timeout(INTERVAL) {
                Err(RecvTimeoutError::Timeout) => continue,
                _ => break,
            }
        }
    })?;
    Ok(Scheduler { stop: Some(stop), thread: Some(thread) })
}

fn log_report(report: &RunReport) {
    for o in &report.outcomes {
        let (kind, at, attempt) = (o.kind.code(), super::schedule::key(o.scheduled_for), o.attempts);
        match &o.status {
            Status::Done { .. } => tracing::info!(job = o.job_id, kind, scheduled_for = %at, attempt, "job done"),
            Status::Retrying { error, .. } => {
                tracing::warn!(job = o.job_id, kind, scheduled_for = %at, attempt, error = %error, "job failed; will retry")
            }
            Status::Failed { error } => {
                tracing::error!(job = o.job_id, kind, scheduled_for = %at, attempt, error = %error, "job failed for good")
            }
        }
    }
    if report.emails_sent > 0 {
        tracing::info!(sent = report.emails_sent, "e-mails sent");
    }
}
