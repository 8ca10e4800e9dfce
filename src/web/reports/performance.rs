//! CP-IS078: the service performance report page, its CSV (the per-area table), and the incident
//! log's two forms (record an incident, resolve one). The figures come from
//! src/reports/performance.rs; every run of the report is audited in the transaction that reads
//! it, and every incident recorded or resolved is audited in the transaction that stores it.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::csrf::CsrfForm;
use crate::auth::{Permission, Principal, SignedIn};
use crate::csrf_form;
use crate::db;
use crate::domain::dates::{format_date, format_uk_datetime, uk_date};
use crate::error::AppError;
use crate::reports::chart::{bar_chart, Bar};
use crate::reports::performance::{
    self, format_percent, IncidentInput, Report, AREA_HEADER, SEVERITIES, TARGET_HUNDREDTHS,
};
use crate::reports::period::PeriodQuery;
use crate::reports::{csv, record_run, Period};
use crate::validation::{message_for, FieldError};
use crate::web::layout::Layout;
use crate::web::{render, render_status, see_other};

const REPORT_ID: &str = "CP-IS078";
const BASE: &str = "/reports/cp-is078";

pub struct DayRow {
    pub date: String,
    pub availability: String,
    pub ok_minutes: i64,
    pub measured_minutes: i64,
}

pub struct JobRow {
    pub job: String,
    pub scheduled_for: String,
    pub status: String,
    pub attempts: i32,
    pub last_attempt: String,
    pub error: String,
}

pub struct IncidentRow {
    pub id: i64,
    pub severity: i16,
    pub title: String,
    pub description: String,
    pub started: String,
    pub resolved: Option<String>,
    pub recorded_by: String,
    pub resolve_action: String,
}

#[derive(Template)]
#[template(path = "reports/performance.html")]
struct PerformancePage {
    layout: Layout,
    from: String,
    to: String,
    period_text: String,
    csv_href: String,
    availability: String,
    ok_minutes: i64,
    measured_minutes: i64,
    target: String,
    verdict: String,
    measured_since: String,
    days: Vec<DayRow>,
    chart: String,
    area_header: &'static [&'static str],
    area_rows: Vec<Vec<String>>,
    job_failures: Vec<JobRow>,
    incidents: Vec<IncidentRow>,
    open_incidents: usize,
    severities: Vec<(String, String)>,
    form: IncidentInput,
    errors: Vec<FieldError>,
}

impl PerformancePage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
    /// For the period fields, which have no error of their own (a bad period is a 400 page).
    fn no_error(&self) -> Option<String> {
        None
    }
}

fn reporter(p: &Principal) -> Result<i64, AppError> {
    p.require(Permission::Reports)?;
    Ok(p.account.id)
}

/// Reads the report and records its run, in one transaction.
async fn run(state: &AppState, user_id: i64, period: Period, format: &'static str) -> Result<Report, AppError> {
    let now = Utc::now();
    db::transaction(&state.pool, move |conn| {
        let report = performance::load(conn, period, now)?;
        record_run(
            conn,
            Actor::User(user_id),
            REPORT_ID,
            None,
            json!({ "from": period.from.to_string(), "to": period.to.to_string(), "format": format }),
        )?;
        Ok(report)
    })
    .await
}

fn job_label(code: &str) -> String {
    crate::jobs::Kind::from_code(code).map_or_else(|| code.to_owned(), |k| k.label().to_owned())
}

fn page(
    principal: &Principal,
    session: &Session,
    report: Report,
    form: IncidentInput,
    errors: Vec<FieldError>,
) -> PerformancePage {
    let period = report.period;
    let title = "CP-IS078 Service performance and incidents";
    let title = if errors.is_empty() { title.to_owned() } else { format!("Error: {title}") };
    let measured: Vec<_> = report.days.iter().filter(|d| d.availability.measured_minutes > 0).collect();
    let bars: Vec<Bar> = measured
        .iter()
        .map(|d| Bar::new(d.day.format("%d/%m").to_string(), d.availability.hundredths().unwrap_or(0) as f64 / 100.0))
        .collect();
    let incidents: Vec<IncidentRow> = report
        .incidents
        .into_iter()
        .map(|i| IncidentRow {
            resolve_action: format!("{BASE}/incidents/{}/resolve", i.id),
            id: i.id,
            severity: i.severity,
            title: i.title,
            description: i.description,
            started: format_uk_datetime(i.started_at),
            resolved: i.resolved_at.map(format_uk_datetime),
            recorded_by: i.recorded_by,
        })
        .collect();
    PerformancePage {
        layout: Layout::new(&title, Some(principal), session),
        from: period.from.to_string(),
        to: period.to.to_string(),
        period_text: format!("{} to {}", format_date(period.from), format_date(period.to)),
        csv_href: format!("{BASE}.csv?{}", period.query()),
        availability: report.availability.text(),
        ok_minutes: report.availability.ok_minutes,
        measured_minutes: report.availability.measured_minutes,
        target: format_percent(TARGET_HUNDREDTHS),
        verdict: match report.availability.meets_target() {
            Some(true) => "Met".into(),
            Some(false) => "Not met".into(),
            None => "Not measured".into(),
        },
        measured_since: report.first_probe.map(format_uk_datetime).unwrap_or_else(|| "No probe recorded yet".into()),
        days: report
            .days
            .iter()
            .map(|d| DayRow {
                date: format_date(d.day),
                availability: d.availability.text(),
                ok_minutes: d.availability.ok_minutes,
                measured_minutes: d.availability.measured_minutes,
            })
            .collect(),
        chart: bar_chart("Availability per day (%)", &bars),
        area_header: &AREA_HEADER,
        area_rows: report.areas.iter().map(|r| r.cells()).collect(),
        job_failures: report
            .job_failures
            .into_iter()
            .map(|j| JobRow {
                job: job_label(&j.kind),
                scheduled_for: format_uk_datetime(j.scheduled_for),
                status: if j.status == "failed" { "Failed".into() } else { "Failed, to be retried".into() },
                attempts: j.attempts,
                last_attempt: j.last_attempt.map(format_uk_datetime).unwrap_or_default(),
                error: j.error.unwrap_or_default(),
            })
            .collect(),
        open_incidents: incidents.iter().filter(|i| i.resolved.is_none()).count(),
        incidents,
        severities: std::iter::once((String::new(), "Choose a severity".to_owned()))
            .chain(SEVERITIES.iter().map(|(n, label)| (n.to_string(), (*label).to_owned())))
            .collect(),
        form,
        errors,
    }
}

fn today() -> chrono::NaiveDate {
    uk_date(Utc::now())
}

/// `GET /reports/cp-is078?from=&to=`
pub async fn show(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, AppError> {
    let user_id = reporter(&principal)?;
    let period = Period::parse(&query, today())?;
    let report = run(&state, user_id, period, "html").await?;
    render(&page(&principal, &session, report, IncidentInput::default(), vec![]))
}

/// `GET /reports/cp-is078.csv?from=&to=`: the page's per-area table, row for row.
pub async fn download_csv(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, AppError> {
    let user_id = reporter(&principal)?;
    let period = Period::parse(&query, today())?;
    let report = run(&state, user_id, period, "csv").await?;
    let rows: Vec<Vec<String>> = report.areas.iter().map(|r| r.cells()).collect();
    csv::download(&format!("cp-is078-{}-to-{}.csv", period.from, period.to), &AREA_HEADER, &rows)
}

#[derive(Deserialize)]
pub struct IncidentForm {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    resolved_at: String,
    /// The period the page showed, to return to it.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    /// Missing is refused like a wrong one (403), not as an unreadable form.
    #[serde(default)]
    csrf_token: String,
}
csrf_form!(IncidentForm);

/// The period a form came from; one that does not read falls back to the default.
fn period_of(from: Option<String>, to: Option<String>) -> Period {
    Period::parse(&PeriodQuery { from, to }, today()).unwrap_or_else(|_| Period::default_at(Utc::now()))
}

fn back_to(period: Period) -> String {
    format!("{BASE}?{}#incidents", period.query())
}

/// `POST /reports/cp-is078/incidents`: records an incident (CP-IS078's incident log). A field with
/// a problem re-renders the page with 422, every message and the values as typed.
pub async fn record_incident(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    CsrfForm(form): CsrfForm<IncidentForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = reporter(&principal)?;
    let period = period_of(form.from, form.to);
    let input = IncidentInput {
        severity: form.severity,
        title: form.title,
        description: form.description,
        started_at: form.started_at,
        resolved_at: form.resolved_at,
    };
    let now: DateTime<Utc> = Utc::now();
    match performance::validate_incident(&input, now) {
        Ok(new) => {
            db::run(&state.pool, move |conn| performance::record_incident(conn, user_id, &new)).await?;
            Ok(see_other(&back_to(period)))
        }
        Err(errors) => {
            let report = run(&state, user_id, period, "html").await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page(&principal, &session, report, input, errors))
        }
    }
}

#[derive(Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    /// Missing is refused like a wrong one (403), not as an unreadable form.
    #[serde(default)]
    csrf_token: String,
}
csrf_form!(ResolveForm);

/// `POST /reports/cp-is078/incidents/{incident_id}/resolve`: marks an open incident resolved now.
pub async fn resolve_incident(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<ResolveForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = reporter(&principal)?;
    let id = path.into_inner();
    let period = period_of(form.from, form.to);
    let now = Utc::now();
    db::run(&state.pool, move |conn| performance::resolve_incident(conn, user_id, id, now)).await?;
    Ok(see_other(&back_to(period)))
}
