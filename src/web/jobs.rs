//! The jobs page for CP-IS owners: the schedule, queue depth, failures with their errors, recent
//! runs, and the e-mails sent today or failed. Job rows hold counts and error messages, never
//! personal data; e-mails go to local authorities' organisational addresses.

use actix_session::Session;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::layout::Layout;
use super::render;
use crate::app::AppState;
use crate::auth::{Permission, SignedIn};
use crate::db;
use crate::domain::dates::{format_uk_datetime, uk_date, uk_day_bounds};
use crate::error::AppError;
use crate::jobs::queue::{self, Job};
use crate::jobs::{schedule, Kind};
use crate::schema::outbound_emails;

/// Rows of recent runs shown.
const RECENT: i64 = 50;

pub struct ScheduleRow {
    pub label: String,
    pub rule: String,
    pub next: String,
    pub last: String,
}

pub struct JobRow {
    pub label: String,
    pub scheduled_for: String,
    pub status: String,
    pub attempts: i32,
    pub finished: String,
    pub summary: String,
    pub error: String,
}

pub struct EmailRow {
    pub la_code: String,
    pub to_address: String,
    pub subject: String,
    pub attempts: i32,
    pub created: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "admin/jobs.html")]
struct JobsPage {
    layout: Layout,
    now: String,
    schedule: Vec<ScheduleRow>,
    due_now: i64,
    failures: Vec<JobRow>,
    recent: Vec<JobRow>,
    emails_sent_today: i64,
    emails_pending: i64,
    failed_emails: Vec<EmailRow>,
}

fn label_of(code: &str) -> String {
    Kind::from_code(code).map_or_else(|| code.to_owned(), |k| k.label().to_owned())
}

fn status_of(j: &Job) -> String {
    match j.status.as_str() {
        "done" => "Done".into(),
        "failed" => "Failed".into(),
        _ if j.last_error.is_some() => format!("Retrying from {}", format_uk_datetime(j.run_after)),
        _ => "Waiting".into(),
    }
}

/// A summary as "key: value" pairs (summaries hold counts and dates).
fn summary_text(summary: &Option<serde_json::Value>) -> String {
    match summary {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{}: {s}", k.replace('_', " ")),
                other => format!("{}: {other}", k.replace('_', " ")),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn job_row(j: &Job) -> JobRow {
    JobRow {
        label: label_of(&j.kind),
        scheduled_for: format_uk_datetime(j.scheduled_for),
        status: status_of(j),
        attempts: j.attempts,
        finished: j.finished_at.map(format_uk_datetime).unwrap_or_default(),
        summary: summary_text(&j.summary),
        error: j.last_error.clone().unwrap_or_default(),
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = outbound_emails, check_for_backend(diesel::pg::Pg))]
struct FailedEmail {
    la_code: Option<String>,
    to_address: String,
    subject: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    last_error: Option<String>,
}

struct Loaded {
    last_runs: Vec<Option<Job>>,
    due_now: i64,
    failures: Vec<Job>,
    recent: Vec<Job>,
    emails_sent_today: i64,
    emails_pending: i64,
    failed_emails: Vec<EmailRow>,
}

fn load(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Loaded, AppError> {
    let last_runs = Kind::ALL.iter().map(|k| queue::last_run(conn, *k)).collect::<QueryResult<Vec<_>>>()?;
    let (start, end) = uk_day_bounds(uk_date(now));
    let emails_sent_today = outbound_emails::table
        .filter(outbound_emails::status.eq("sent"))
        .filter(outbound_emails::sent_at.ge(start))
        .filter(outbound_emails::sent_at.lt(end))
        .count()
        .get_result(conn)?;
    let emails_pending =
        outbound_emails::table.filter(outbound_emails::status.eq("pending")).count().get_result(conn)?;
    let failed: Vec<FailedEmail> = outbound_emails::table
        .filter(outbound_emails::status.eq("failed"))
        .order(outbound_emails::id.desc())
        .limit(RECENT)
        .select(FailedEmail::as_select())
        .load(conn)?;
    Ok(Loaded {
        last_runs,
        due_now: queue::due_count(conn, now)?,
        failures: queue::failures(conn, RECENT)?,
        recent: queue::recent(conn, RECENT)?,
        emails_sent_today,
        emails_pending,
        failed_emails: failed
            .into_iter()
            .map(|e| EmailRow {
                la_code: e.la_code.unwrap_or_default(),
                to_address: e.to_address,
                subject: e.subject,
                attempts: e.attempts,
                created: format_uk_datetime(e.created_at),
                error: e.last_error.unwrap_or_default(),
            })
            .collect(),
    })
}

pub async fn show_jobs(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::ServiceOwner)?;
    let now = Utc::now();
    let loaded = db::run(&state.pool, move |conn| load(conn, now)).await?;
    let schedule = Kind::ALL
        .iter()
        .zip(&loaded.last_runs)
        .map(|(k, last)| ScheduleRow {
            label: k.label().into(),
            rule: schedule::describe(*k),
            next: format_uk_datetime(schedule::next_after(*k, now)),
            last: match last {
                Some(j) => format!(
                    "{} ({})",
                    status_of(j),
                    j.finished_at.map(format_uk_datetime).unwrap_or_else(|| "not finished".into())
                ),
                None => "Not run yet".into(),
            },
        })
        .collect();
    let page = JobsPage {
        layout: Layout::new("Scheduled work", Some(&principal), &session),
        now: format_uk_datetime(now),
        schedule,
        due_now: loaded.due_now,
        failures: loaded.failures.iter().map(job_row).collect(),
        recent: loaded.recent.iter().map(job_row).collect(),
        emails_sent_today: loaded.emails_sent_today,
        emails_pending: loaded.emails_pending,
        failed_emails: loaded.failed_emails,
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_as_pairs() {
        let s = Some(serde_json::json!({ "today": "2026-11-22", "end_dated": 2 }));
        assert_eq!(summary_text(&s), "end dated: 2, today: 2026-11-22");
        assert_eq!(summary_text(&None), "");
    }
}
