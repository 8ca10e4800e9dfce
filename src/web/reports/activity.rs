//! CP-IS081, who viewed or changed which records: the page (`/reports/cp-is081`), 50 rows at a time
//! with a keyset link to the next page, and the CSV of every matching row
//! (`/reports/cp-is081.csv`). Filters: `from`, `to`, `user`, `organisation`, `nhs_number`, `la`
//! (and `after`, the page's cursor). Every run is audited.

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
use crate::domain::nhs_number::NhsNumber;
use crate::error::AppError;
use crate::reports::activity::{self, ActivityQuery, Checked, Entry, UserFilter};
use crate::reports::csv::attachment;
use crate::validation::{message_for, FieldError};

pub struct Row {
    pub at: String,
    pub kind: &'static str,
    pub reference: String,
    pub who: String,
    pub user: String,
    pub role: String,
    pub organisation: String,
    pub channel: String,
    pub action: String,
    pub nhs_number: String,
    pub la: String,
    pub shown: String,
}

fn with_code(name: &str, code: &str) -> String {
    match (name.is_empty(), code.is_empty()) {
        (_, true) => name.to_owned(),
        (true, false) => code.to_owned(),
        (false, false) => format!("{name} ({code})"),
    }
}

fn row(e: &Entry) -> Row {
    Row {
        at: format_uk_datetime(e.at),
        kind: e.kind.label(),
        reference: e.reference(),
        who: e.who.clone(),
        user: e.user.clone(),
        role: e.role.clone(),
        organisation: with_code(&e.organisation_name, &e.organisation_code),
        channel: e.channel.clone(),
        action: e.action.clone(),
        nhs_number: NhsNumber::parse(&e.nhs_number).map(|n| n.formatted()).unwrap_or_else(|_| e.nhs_number.clone()),
        la: with_code(&e.la_name, &e.la_code),
        shown: match e.shown {
            Some(true) => "Yes".into(),
            Some(false) => "No".into(),
            None => String::new(),
        },
    }
}

#[derive(Template)]
#[template(path = "reports/activity.html")]
struct ActivityPage {
    layout: Layout,
    errors: Vec<FieldError>,
    from: String,
    to: String,
    user: String,
    organisation: String,
    nhs_number: String,
    la: String,
    period_text: String,
    /// What the user filter was taken to mean.
    user_note: String,
    rows: Vec<Row>,
    /// Links: the next page, the first page (when on a later one), the CSV.
    next: Option<String>,
    first: Option<String>,
    csv: String,
}

impl ActivityPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

fn echo(v: &Option<String>) -> String {
    v.as_deref().unwrap_or("").chars().filter(|c| !c.is_control()).take(60).collect()
}

/// GET /reports/cp-is081?from=&to=&user=&organisation=&nhs_number=&la=&after=
pub async fn activity_page(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let q = query.into_inner();
    let title = "CP-IS081: Who viewed or changed which records";
    let mut page = ActivityPage {
        layout: Layout::new(title, Some(&principal), &session),
        errors: vec![],
        from: echo(&q.from),
        to: echo(&q.to),
        user: echo(&q.user),
        organisation: echo(&q.organisation),
        nhs_number: echo(&q.nhs_number),
        la: echo(&q.la),
        period_text: String::new(),
        user_note: String::new(),
        rows: vec![],
        next: None,
        first: None,
        csv: String::new(),
    };
    let bad = |mut page: ActivityPage, errors: Vec<FieldError>| {
        page.layout = Layout::new(&format!("Error: {title}"), Some(&principal), &session);
        page.errors = errors;
        render_status(StatusCode::BAD_REQUEST, &page)
    };
    let checked = match activity::check(&q, uk_date(Utc::now())) {
        Ok(c) => c,
        Err(errors) => return bad(page, errors),
    };
    let actor = Actor::User(principal.account.id);
    let c = checked.clone();
    let result = db::run(&state.pool, move |conn| activity::run_page(conn, &c, actor.clone())).await?;
    let result = match result {
        Ok(r) => r,
        Err(errors) => return bad(page, errors),
    };
    fill(&mut page, &checked);
    page.user_note = match &result.filter.user {
        Some(UserFilter::Account { username, .. }) => {
            format!("Showing the account {username}: its views (by its SDS user id) and its changes.")
        }
        Some(UserFilter::Viewer(v)) => format!(
            "No account has the username \"{v}\": showing views whose viewer id is \"{v}\" (an SDS user id or an NHSD-End-User-ID)."
        ),
        None => String::new(),
    };
    page.rows = result.entries.iter().map(row).collect();
    page.next = result.next.map(|n| format!("/reports/cp-is081?{}", activity::query_string(&checked, Some(&n))));
    page.first = checked.after.map(|_| format!("/reports/cp-is081?{}", activity::query_string(&checked, None)));
    render(&page)
}

/// The form shows the filters as the report read them.
fn fill(page: &mut ActivityPage, c: &Checked) {
    page.from = c.period.from.to_string();
    page.to = c.period.to.to_string();
    page.user = c.user.clone().unwrap_or_default();
    page.organisation = c.organisation.clone().unwrap_or_default();
    page.nhs_number = c.nhs_number.clone().unwrap_or_default();
    page.la = c.la.clone().unwrap_or_default();
    page.period_text = format!("{} to {}", format_date(c.period.from), format_date(c.period.to));
    page.csv = format!("/reports/cp-is081.csv?{}", activity::query_string(c, None));
}

/// GET /reports/cp-is081.csv with the page's filters (without `after`): every matching row.
pub async fn activity_csv(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let mut q = query.into_inner();
    // The download is always the whole result, from the newest.
    q.after = None;
    let checked = activity::check(&q, uk_date(Utc::now()))
        .map_err(|errors| AppError::BadRequest(errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join(". ")))?;
    let actor = Actor::User(principal.account.id);
    let c = checked.clone();
    let body = db::run(&state.pool, move |conn| activity::run_csv(conn, &c, actor.clone())).await?;
    Ok(attachment(&format!("cp-is081-{}-to-{}.csv", checked.period.from, checked.period.to), body))
}
