//! CP-IS079 (subject access) and CP-IS075 (was a number held on a date) pages: read the NHS number
//! (and date), call src/reports/, render the page or the CSV. Every run is audited about the child.

use actix_session::Session;
use actix_web::{http::StatusCode, web, HttpResponse};
use askama::Template;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::{Permission, Principal, SignedIn};
use crate::db;
use crate::domain::dates::{format_date, format_uk_datetime, uk_date};
use crate::domain::nhs_number::NhsNumber;
use crate::error::AppError;
use crate::reports::held_on::{self, HeldOn};
use crate::reports::subject_access::{self, Section, SubjectAccess};
use crate::reports::{csv, record_run};
use crate::validation::{message_for, FieldError};
use crate::web::layout::Layout;
use crate::web::{render, render_status};

/// `?nhs_number=` as typed.
#[derive(Debug, Default, Deserialize)]
pub struct SubjectQuery {
    #[serde(default)]
    pub nhs_number: Option<String>,
}

/// `?nhs_number=&date=` as typed.
#[derive(Debug, Default, Deserialize)]
pub struct HeldOnQuery {
    #[serde(default)]
    pub nhs_number: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The NHS number, or a message saying what is wrong with it.
fn parse_nhs_number(input: &str) -> Result<NhsNumber, String> {
    NhsNumber::parse(input).map_err(|e| format!("{e}, for example 943 476 5919."))
}

/// A UK date written YYYY-MM-DD, not after `today`, or a message saying what is wrong with it.
pub fn parse_date(input: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let shown: String = input.chars().take(40).collect();
    let date = NaiveDate::parse_from_str(input.trim(), "%Y-%m-%d")
        .map_err(|_| format!("The date \"{shown}\" is not a date: write it as YYYY-MM-DD, for example 2026-11-01."))?;
    if date > today {
        return Err(format!(
            "The date {} is in the future: what was held can be answered for today and earlier days only.",
            format_date(date)
        ));
    }
    Ok(date)
}

fn actor(principal: &Principal) -> Actor {
    Actor::User(principal.account.id)
}

#[derive(Template)]
#[template(path = "reports/subject_access.html")]
struct SubjectAccessPage {
    layout: Layout,
    errors: Vec<FieldError>,
    nhs_number_input: String,
    /// Set when a report was produced.
    report: Option<ReportView>,
}

impl SubjectAccessPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

struct ReportView {
    nhs_number: String,
    nhs_number_formatted: String,
    generated: String,
    today: String,
    /// Always `None`: the CP-IS075 form on this page has no error to show.
    date_error: Option<String>,
    nothing_held: bool,
    any_information: bool,
    unexplained: usize,
    trail_matches_store: bool,
    restricted: bool,
    earlier_numbers: Vec<String>,
    sections: Vec<Section>,
    csv_href: String,
}

fn view(r: &SubjectAccess, now: chrono::DateTime<Utc>) -> ReportView {
    let n = r.nhs_number.as_str().to_owned();
    ReportView {
        csv_href: format!("/reports/cp-is079.csv?nhs_number={n}"),
        nhs_number_formatted: r.nhs_number.formatted(),
        nhs_number: n,
        generated: format_uk_datetime(now),
        today: uk_date(now).to_string(),
        date_error: None,
        nothing_held: r.nothing_held(),
        any_information: r.any_information(),
        unexplained: r.timeline.unexplained.len(),
        trail_matches_store: r.trail_matches_store(),
        restricted: r.patient.as_ref().is_some_and(|p| p.restricted),
        earlier_numbers: r.earlier_numbers.clone(),
        sections: subject_access::sections(r),
    }
}

/// Reads the report and records the run, in one transaction.
async fn run_report(
    state: &AppState,
    principal: &Principal,
    nhs: NhsNumber,
    format: &'static str,
) -> Result<SubjectAccess, AppError> {
    let actor = actor(principal);
    db::transaction(&state.pool, move |conn| {
        let report = subject_access::load(conn, &nhs)?;
        record_run(conn, actor.clone(), "CP-IS079", Some(nhs.as_str()), json!({ "format": format }))?;
        Ok(report)
    })
    .await
}

/// GET /reports/cp-is079: the form; with `?nhs_number=` the report (CP-IS079).
pub async fn show_subject_access(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<SubjectQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let mut page = SubjectAccessPage {
        layout: Layout::new("CP-IS079 subject access report", Some(&principal), &session),
        errors: vec![],
        nhs_number_input: query.nhs_number.clone().unwrap_or_default(),
        report: None,
    };
    let Some(input) = query.nhs_number.as_deref() else {
        return render(&page);
    };
    match parse_nhs_number(input) {
        Err(message) => {
            page.errors.push(FieldError::new("nhs_number", message));
            render_status(StatusCode::BAD_REQUEST, &page)
        }
        Ok(nhs) => {
            let report = run_report(&state, &principal, nhs, "html").await?;
            page.nhs_number_input = report.nhs_number.formatted();
            page.report = Some(view(&report, Utc::now()));
            render(&page)
        }
    }
}

/// GET /reports/cp-is079.csv?nhs_number=: the same tables, one line per cell.
pub async fn download_subject_access(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    query: web::Query<SubjectQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let input = given(&query.nhs_number).ok_or_else(|| {
        AppError::BadRequest("Give the NHS number: /reports/cp-is079.csv?nhs_number=9434765919".into())
    })?;
    let nhs = parse_nhs_number(input).map_err(AppError::BadRequest)?;
    let report = run_report(&state, &principal, nhs, "csv").await?;
    let rows = subject_access::csv_rows(&subject_access::sections(&report));
    csv::download(&format!("cp-is079-{}.csv", report.nhs_number.as_str()), &subject_access::CSV_HEADER, &rows)
}

#[derive(Template)]
#[template(path = "reports/held_on.html")]
struct HeldOnPage {
    layout: Layout,
    errors: Vec<FieldError>,
    nhs_number_input: String,
    date_input: String,
    answer: Option<AnswerView>,
}

impl HeldOnPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

struct SpanRow {
    la: String,
    item_type: String,
    la_child_id: String,
    start: String,
    end: String,
    delete: String,
    from: String,
    until: String,
}

struct AnswerView {
    nhs_number: String,
    nhs_number_formatted: String,
    date: String,
    held: bool,
    spans: Vec<SpanRow>,
    first_change: String,
    unexplained: usize,
}

fn answer_view(nhs: &NhsNumber, answer: &HeldOn, timeline: &held_on::Timeline, las: &[(String, String)]) -> AnswerView {
    let la_name =
        |code: &str| las.iter().find(|(c, _)| c == code).map_or_else(|| code.to_owned(), |(c, n)| format!("{n} ({c})"));
    let date_or = |d: Option<NaiveDate>| d.map(format_date).unwrap_or_default();
    AnswerView {
        nhs_number: nhs.as_str().to_owned(),
        nhs_number_formatted: nhs.formatted(),
        date: format_date(answer.date),
        held: answer.held(),
        spans: answer
            .spans
            .iter()
            .map(|s| SpanRow {
                la: la_name(&s.la_code),
                item_type: s.item.item_type.clone(),
                la_child_id: s.item.la_child_id.clone(),
                start: format_date(s.item.start),
                end: date_or(s.item.end),
                delete: date_or(s.item.delete),
                from: format_uk_datetime(s.from),
                until: s.until.map_or_else(|| "Still held".into(), format_uk_datetime),
            })
            .collect(),
        first_change: timeline.first_change.map(format_uk_datetime).unwrap_or_default(),
        unexplained: timeline.unexplained.len(),
    }
}

/// GET /reports/cp-is075?nhs_number=&date=: was the number held on that UK date, and with what.
pub async fn show_held_on(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<HeldOnQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::Reports)?;
    let now = Utc::now();
    let mut page = HeldOnPage {
        layout: Layout::new("CP-IS075 was it held on a date", Some(&principal), &session),
        errors: vec![],
        nhs_number_input: query.nhs_number.clone().unwrap_or_default(),
        date_input: query.date.clone().unwrap_or_default(),
        answer: None,
    };
    if query.nhs_number.is_none() && query.date.is_none() {
        return render(&page);
    }
    let nhs = match given(&query.nhs_number) {
        None => Err("Enter the NHS number".to_owned()),
        Some(n) => parse_nhs_number(n),
    };
    let date = match given(&query.date) {
        None => Err("Enter the date, as YYYY-MM-DD, for example 2026-11-01.".to_owned()),
        Some(d) => parse_date(d, uk_date(now)),
    };
    let (nhs, date) = match (nhs, date) {
        (Ok(n), Ok(d)) => (n, d),
        (n, d) => {
            if let Err(m) = n {
                page.errors.push(FieldError::new("nhs_number", m));
            }
            if let Err(m) = d {
                page.errors.push(FieldError::new("date", m));
            }
            return render_status(StatusCode::BAD_REQUEST, &page);
        }
    };
    let actor = actor(&principal);
    let number = nhs.clone();
    let (timeline, las) = db::transaction(&state.pool, move |conn| {
        let timeline = held_on::load(conn, number.as_str())?;
        let codes: Vec<String> = timeline.spans.iter().map(|s| s.la_code.clone()).collect();
        let las = crate::cpis::local_authority::find_many(conn, &codes)?
            .into_iter()
            .map(|l| (l.code.clone(), l.name().to_owned()))
            .collect::<Vec<_>>();
        record_run(conn, actor.clone(), "CP-IS075", Some(number.as_str()), json!({ "date": date }))?;
        Ok((timeline, las))
    })
    .await?;
    let answer = held_on::held_on(&timeline, date);
    page.nhs_number_input = nhs.formatted();
    page.date_input = date.to_string();
    page.answer = Some(answer_view(&nhs, &answer, &timeline, &las));
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_strictly_and_never_in_the_future() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(parse_date("2026-11-22", today), Ok(today));
        assert_eq!(parse_date(" 2024-02-29 ", today), Ok(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()));
        assert!(parse_date("22/11/2026", today).unwrap_err().contains("YYYY-MM-DD"));
        assert!(parse_date("2025-02-29", today).unwrap_err().contains("is not a date"));
        assert!(parse_date("2026-11-23", today).unwrap_err().contains("in the future"));
        assert!(parse_nhs_number("123").unwrap_err().contains("10 digits"));
        assert!(parse_nhs_number("9434765918").unwrap_err().contains("check the digits"));
    }
}
