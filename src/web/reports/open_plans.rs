//! CP-IS080: child protection plans open more than two years without an end or delete date, as a
//! page and a CSV. Every run is audited.

use actix_session::Session;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde_json::json;

use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::{Permission, Principal, SignedIn};
use crate::db;
use crate::domain::dates::{format_date, format_uk_datetime, uk_date};
use crate::error::AppError;
use crate::reports::open_plans::{self, OpenPlans};
use crate::reports::{csv, record_run};
use crate::web::layout::Layout;
use crate::web::render;

struct PlanRow {
    la_name: String,
    la_code: String,
    nhs_number: String,
    la_child_id: String,
    start: String,
    open_for: String,
    days: i64,
}

struct LaRow {
    la_name: String,
    la_code: String,
    plans: usize,
}

#[derive(Template)]
#[template(path = "reports/open_plans.html")]
struct OpenPlansPage {
    layout: Layout,
    generated: String,
    today: String,
    plans: Vec<PlanRow>,
    per_la: Vec<LaRow>,
}

async fn run_report(state: &AppState, principal: &Principal, format: &'static str) -> Result<OpenPlans, AppError> {
    let actor = Actor::User(principal.account.id);
    let today = uk_date(Utc::now());
    db::transaction(&state.pool, move |conn| {
        let report = open_plans::load(conn, today)?;
        record_run(
            conn,
            actor.clone(),
            "CP-IS080",
            None,
            json!({ "format": format, "today": today, "plans": report.plans.len() }),
        )?;
        Ok(report)
    })
    .await
}

fn rows(r: &OpenPlans) -> Vec<PlanRow> {
    r.plans
        .iter()
        .map(|p| PlanRow {
            la_name: p.la_name.clone(),
            la_code: p.la_code.clone(),
            nhs_number: p.nhs_number.clone(),
            la_child_id: p.la_child_id.clone(),
            start: format_date(p.start),
            open_for: p.open_for.to_string(),
            days: p.open_for.total_days,
        })
        .collect()
}

/// GET /reports/cp-is080
pub async fn show_open_plans(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let report = run_report(&state, &principal, "html").await?;
    render(&OpenPlansPage {
        layout: Layout::new("CP-IS080 plans open over two years", Some(&principal), &session),
        generated: format_uk_datetime(Utc::now()),
        today: format_date(report.today),
        plans: rows(&report),
        per_la: report
            .per_la
            .iter()
            .map(|l| LaRow { la_name: l.la_name.clone(), la_code: l.la_code.clone(), plans: l.plans })
            .collect(),
    })
}

/// The CSV's columns.
pub const CSV_HEADER: [&str; 7] =
    ["local_authority", "la_code", "nhs_number", "la_child_id", "start_date", "open_for", "days_open"];

/// GET /reports/cp-is080.csv: the plans as the page lists them.
pub async fn download_open_plans(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let report = run_report(&state, &principal, "csv").await?;
    let rows: Vec<Vec<String>> = report
        .plans
        .iter()
        .map(|p| {
            vec![
                p.la_name.clone(),
                p.la_code.clone(),
                p.nhs_number.clone(),
                p.la_child_id.clone(),
                p.start.to_string(),
                p.open_for.to_string(),
                p.open_for.total_days.to_string(),
            ]
        })
        .collect();
    csv::download(&format!("cp-is080-{}.csv", report.today), &CSV_HEADER, &rows)
}
