//! CP-IS077, the service information report: the page (`/reports/cp-is077`) and its CSV
//! (`/reports/cp-is077.csv`), both over `?from=&to=` and both from the one
//! [`crate::reports::summary::Summary`], so they agree. Every run is audited.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::Utc;

use super::super::layout::Layout;
use super::super::{render, render_status};
use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::{Permission, SignedIn};
use crate::db;
use crate::domain::dates::{format_date, format_uk_datetime, uk_date};
use crate::error::AppError;
use crate::reports::chart::bar_chart;
use crate::reports::csv::download;
use crate::reports::period::{Period, PeriodQuery};
use crate::reports::summary::{self, Figure, LaFigures};
use crate::validation::{message_for, FieldError};

pub struct LaRow {
    pub code: String,
    pub name: String,
    pub first_upload: String,
    pub last_upload: String,
    pub provided: bool,
    pub cpp: i64,
    pub ucpp: i64,
    pub lac: i64,
    pub total: i64,
}

pub struct OrgRow {
    pub code: String,
    pub name: String,
    pub count: i64,
}

#[derive(Template)]
#[template(path = "reports/summary.html")]
struct SummaryPage {
    layout: Layout,
    errors: Vec<FieldError>,
    from: String,
    to: String,
    /// The period in words, and its query string (for the CSV link).
    period_text: String,
    query: String,
    current: Vec<Figure>,
    in_period: Vec<Figure>,
    providers: Vec<LaRow>,
    per_la: Vec<LaRow>,
    querying: Vec<OrgRow>,
    viewing: Vec<OrgRow>,
    per_day_chart: String,
    per_la_chart: String,
    generated: String,
}

impl SummaryPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

fn la_row(l: &LaFigures) -> LaRow {
    LaRow {
        code: l.code.clone(),
        name: l.name.clone(),
        first_upload: l.first_upload.map(format_uk_datetime).unwrap_or_default(),
        last_upload: l.last_upload.map(format_uk_datetime).unwrap_or_default(),
        provided: l.provided,
        cpp: l.cpp,
        ucpp: l.ucpp,
        lac: l.lac,
        total: l.current_items(),
    }
}

fn org_rows(list: &[summary::OrgCount]) -> Vec<OrgRow> {
    list.iter().map(|o| OrgRow { code: o.code.clone(), name: o.name.clone(), count: o.count }).collect()
}

fn echo(v: &Option<String>) -> String {
    v.as_deref().unwrap_or("").chars().filter(|c| !c.is_control()).take(40).collect()
}

fn empty_page(layout: Layout, q: &PeriodQuery) -> SummaryPage {
    SummaryPage {
        layout,
        errors: vec![],
        from: echo(&q.from),
        to: echo(&q.to),
        period_text: String::new(),
        query: String::new(),
        current: vec![],
        in_period: vec![],
        providers: vec![],
        per_la: vec![],
        querying: vec![],
        viewing: vec![],
        per_day_chart: String::new(),
        per_la_chart: String::new(),
        generated: String::new(),
    }
}

/// GET /reports/cp-is077?from=&to=
pub async fn summary_page(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let q = query.into_inner();
    let title = "CP-IS077: Service information";
    let now = Utc::now();
    let period = match Period::parse_field(&q, uk_date(now)) {
        Ok(p) => p,
        Err(e) => {
            let mut page = empty_page(Layout::new(&format!("Error: {title}"), Some(&principal), &session), &q);
            page.errors = vec![e];
            return render_status(StatusCode::BAD_REQUEST, &page);
        }
    };
    let actor = Actor::User(principal.account.id);
    let s = db::run(&state.pool, move |conn| summary::run(conn, period, actor.clone(), "page")).await?;
    let mut page = empty_page(Layout::new(title, Some(&principal), &session), &q);
    page.from = period.from.to_string();
    page.to = period.to.to_string();
    page.period_text = format!("{} to {}", format_date(period.from), format_date(period.to));
    page.query = period.query();
    let figures = s.figures();
    page.current = figures.iter().filter(|f| f.section == summary::SECTION_CURRENT).cloned().collect();
    page.in_period = figures.iter().filter(|f| f.section == summary::SECTION_PERIOD).cloned().collect();
    page.providers = s.providers().into_iter().map(la_row).collect();
    page.per_la = s.per_la.iter().map(la_row).collect();
    page.querying = org_rows(&s.querying);
    page.viewing = org_rows(&s.viewing);
    page.per_day_chart = bar_chart("Child Care Alert tab openings per day", &s.per_day_bars());
    page.per_la_chart = bar_chart(
        &format!("Current items per local authority (the {} holding most)", summary::CHART_TOP_LAS),
        &s.top_la_bars(),
    );
    page.generated = format_uk_datetime(now);
    render(&page)
}

/// GET /reports/cp-is077.csv?from=&to=
pub async fn summary_csv(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    query: web::Query<PeriodQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let period = Period::parse(&query.into_inner(), uk_date(Utc::now()))?;
    let actor = Actor::User(principal.account.id);
    let s = db::run(&state.pool, move |conn| summary::run(conn, period, actor.clone(), "csv")).await?;
    let (header, rows) = s.csv();
    download(&format!("cp-is077-{}-to-{}.csv", period.from, period.to), &header, &rows)
}
