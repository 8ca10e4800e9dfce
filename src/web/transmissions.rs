//! The transmission log for CP-IS owners (CP-IS061): time, direction, origin, destination, type,
//! message id and channel of every message in or out, never its content. Newest first, a page at a
//! time, filtered by party, message type and UK dates.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

use super::layout::Layout;
use super::{render, render_status};
use crate::app::AppState;
use crate::auth::{Permission, SignedIn};
use crate::db;
use crate::domain::dates::{format_uk_datetime, uk_day_bounds};
use crate::error::AppError;
use crate::mailbox::transmissions::{self, Filter, Row};
use crate::validation::{message_for, FieldError};

/// Rows on a page.
const PAGE: usize = 100;

/// The six interactions (messages.md).
const MESSAGE_TYPES: [(&str, &str); 6] = [
    ("01", "Local Authority Upload"),
    ("02", "Local Authority Acknowledgement Response"),
    ("03", "NHS Query"),
    ("04", "NHS Query Response"),
    ("05", "Access to Service Notification"),
    ("06", "Inactive NHS Number Notification"),
];

fn type_label(code: &str) -> String {
    MESSAGE_TYPES.iter().find(|(c, _)| *c == code).map(|(c, n)| format!("{c} {n}")).unwrap_or_else(|| code.into())
}

/// The filter as typed (every field optional; an empty field does not filter).
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    party: String,
    #[serde(default, rename = "type")]
    message_type: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
}

/// A party as the log names it: an LA code (E10000016), an ODS code (RJZ) or the service (CP-IS).
fn parse_party(input: &str) -> Result<Option<String>, FieldError> {
    let party = input.trim();
    if party.is_empty() {
        return Ok(None);
    }
    if party.len() <= 20 && party.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(Some(party.to_ascii_uppercase()))
    } else {
        Err(FieldError::new("party", "Enter a local authority or ODS code, like E10000016 or RJZ"))
    }
}

fn parse_type(input: &str) -> Result<Option<String>, FieldError> {
    let t = input.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match MESSAGE_TYPES.iter().find(|(c, _)| *c == t) {
        Some((c, _)) => Ok(Some((*c).to_owned())),
        None => Err(FieldError::new("type", "Choose a message type from the list")),
    }
}

/// A date as YYYY-MM-DD.
fn parse_date(field: &str, label: &str, input: &str) -> Result<Option<NaiveDate>, FieldError> {
    let s = input.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let error = || FieldError::new(field, format!("{label} must be a real date as YYYY-MM-DD, like 2026-11-21"));
    if s.len() != 10 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return Err(error());
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) if (1900..=9999).contains(&d.year()) => Ok(Some(d)),
        _ => Err(error()),
    }
}

/// The filter, or a problem with each field that has one.
fn parse(q: &LogQuery) -> Result<Filter, Vec<FieldError>> {
    let mut errors = Vec::new();
    let party = parse_party(&q.party).map_err(|e| errors.push(e)).ok().flatten();
    let message_type = parse_type(&q.message_type).map_err(|e| errors.push(e)).ok().flatten();
    let from = parse_date("from", "The from date", &q.from).map_err(|e| errors.push(e)).ok().flatten();
    let to = parse_date("to", "The to date", &q.to).map_err(|e| errors.push(e)).ok().flatten();
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            errors.push(FieldError::new("to", "The to date must be the same as or after the from date"));
        }
    }
    let before = q.before.trim();
    let before_id = if before.is_empty() {
        None
    } else {
        match before.parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                errors.push(FieldError::new("before", "The link to older transmissions is not valid: filter again"));
                None
            }
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Filter {
        party,
        message_type,
        // A UK day runs from its midnight to the next (uk_day_bounds: 23 or 25 hours on change days).
        from: from.map(|d| uk_day_bounds(d).0),
        to: to.map(|d| uk_day_bounds(d).1),
        before_id,
    })
}

pub struct LogRow {
    pub at: String,
    pub direction: String,
    pub origin: String,
    pub destination: String,
    pub message_type: String,
    pub message_id: String,
    pub channel: String,
}

fn row(r: &Row) -> LogRow {
    LogRow {
        at: format_uk_datetime(r.at),
        direction: if r.direction == "in" { "In" } else { "Out" }.into(),
        origin: r.origin.clone(),
        destination: r.destination.clone(),
        message_type: type_label(&r.message_type),
        message_id: r.message_id.clone().unwrap_or_default(),
        channel: r.channel.clone(),
    }
}

#[derive(Template)]
#[template(path = "admin/transmissions.html")]
struct LogPage {
    layout: Layout,
    errors: Vec<FieldError>,
    party: String,
    message_type: String,
    from: String,
    to: String,
    types: Vec<(String, String)>,
    rows: Vec<LogRow>,
    /// The link to the next page of older rows, when there is one.
    older: Option<String>,
    /// Whether this page is an older one (so a link back to the newest makes sense).
    paged: bool,
    newest: String,
}

impl LogPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

/// The query string of a page of this filter (the values were checked: codes, digits and dates).
fn query_string(f: &Filter, q: &LogQuery, before: Option<i64>) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &f.party {
        parts.push(format!("party={p}"));
    }
    if let Some(t) = &f.message_type {
        parts.push(format!("type={t}"));
    }
    if f.from.is_some() {
        parts.push(format!("from={}", q.from.trim()));
    }
    if f.to.is_some() {
        parts.push(format!("to={}", q.to.trim()));
    }
    if let Some(b) = before {
        parts.push(format!("before={b}"));
    }
    if parts.is_empty() {
        "/admin/transmissions".into()
    } else {
        format!("/admin/transmissions?{}", parts.join("&"))
    }
}

pub async fn list_transmissions(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::ServiceOwner)?;
    let q = query.into_inner();
    let types = std::iter::once((String::new(), "All types".to_owned()))
        .chain(MESSAGE_TYPES.iter().map(|(c, n)| ((*c).to_owned(), format!("{c} {n}"))))
        .collect();
    // What the form shows back: bounded, without control characters.
    let echo = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(40).collect() };
    let mut page = LogPage {
        layout: Layout::new("Transmissions", Some(&principal), &session),
        errors: vec![],
        party: echo(&q.party),
        message_type: echo(&q.message_type),
        from: echo(&q.from),
        to: echo(&q.to),
        types,
        rows: vec![],
        older: None,
        paged: false,
        newest: "/admin/transmissions".into(),
    };
    let filter = match parse(&q) {
        Ok(f) => f,
        Err(errors) => {
            page.layout = Layout::new("Error: Transmissions", Some(&principal), &session);
            page.errors = errors;
            return render_status(StatusCode::BAD_REQUEST, &page);
        }
    };
    let f = filter.clone();
    let found = db::run(&state.pool, move |conn| Ok(transmissions::search(conn, &f, PAGE as i64 + 1)?)).await?;
    let more = found.len() > PAGE;
    let shown = &found[..found.len().min(PAGE)];
    page.older = match (more, shown.last()) {
        (true, Some(last)) => Some(query_string(&filter, &q, Some(last.id))),
        _ => None,
    };
    page.paged = filter.before_id.is_some();
    page.newest = query_string(&filter, &q, None);
    page.rows = shown.iter().map(row).collect();
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(party: &str, t: &str, from: &str, to: &str) -> LogQuery {
        LogQuery { party: party.into(), message_type: t.into(), from: from.into(), to: to.into(), before: "".into() }
    }

    #[test]
    fn an_empty_filter_filters_nothing() {
        assert_eq!(parse(&LogQuery::default()), Ok(Filter::default()));
    }

    #[test]
    fn dates_are_whole_uk_days() {
        let f = parse(&query("e10000016", "01", "2026-03-29", "2026-03-29")).unwrap();
        assert_eq!(f.party.as_deref(), Some("E10000016"));
        assert_eq!(f.message_type.as_deref(), Some("01"));
        // The spring change day: GMT midnight to BST midnight, 23 hours.
        assert_eq!(f.from.unwrap().to_rfc3339(), "2026-03-29T00:00:00+00:00");
        assert_eq!(f.to.unwrap().to_rfc3339(), "2026-03-29T23:00:00+00:00");
    }

    #[test]
    fn bad_values_are_field_errors() {
        let errors = parse(&query("E1000'; --", "07", "2026-02-30", "21/11/2026")).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["party", "type", "from", "to"]);
        let errors = parse(&query("", "", "2026-11-22", "2026-11-21")).unwrap_err();
        assert_eq!(errors[0].field, "to");
        assert!(parse(&query("", "", "2026-1-05", "")).is_err());
        let bad_page = LogQuery { before: "x".into(), ..LogQuery::default() };
        assert!(parse(&bad_page).is_err());
    }
}
