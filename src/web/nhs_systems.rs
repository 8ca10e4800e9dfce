//! NHS systems as CP-IS owners administer them (CP-NHS018): the organisations that have registered
//! systems, a search over every NHS organisation, and an organisation's page to register a system
//! (a FHIR API token, shown once; only its hash is stored) and revoke its systems' tokens. A token's
//! label is the system's name; the token speaks only for its organisation (messages 03/04).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use serde::Deserialize;

use super::layout::Layout;
use super::{render, render_status, see_other};
use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::csrf::CsrfForm;
use crate::auth::{Permission, Principal, SignedIn};
use crate::csrf_form;
use crate::db;
use crate::domain::dates::format_uk_datetime;
use crate::error::AppError;
use crate::mailbox::tokens::{self, TokenInfo};
use crate::schema::{endpoint_tokens, nhs_organisations};
use crate::validation::{message_for, FieldError};

/// The longest system name (token label) the database accepts.
const LABEL_MAX: usize = 200;
/// The longest search text read.
const QUERY_MAX: usize = 100;

fn owner_id(p: &Principal) -> Result<i64, AppError> {
    p.require(Permission::ServiceOwner)?;
    Ok(p.account.id)
}

fn not_found() -> AppError {
    AppError::NotFound("There is no NHS organisation with that ODS code.".into())
}

/// An ODS code from the path, bounded before it reaches a query (codes are upper case).
fn ods_from(path: String) -> String {
    path.chars().take(20).collect::<String>().to_ascii_uppercase()
}

fn base(ods: &str) -> String {
    format!("/admin/nhs-systems/{ods}")
}

// ---------------------------------------------------------------------------------------------
// The list and the search

/// One organisation in a list, with its live and revoked systems and when it last registered one.
#[derive(Debug, QueryableByName)]
struct OrgRow {
    #[diesel(sql_type = Text)]
    ods_code: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    town: Option<String>,
    #[diesel(sql_type = BigInt)]
    live: i64,
    #[diesel(sql_type = BigInt)]
    revoked: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_registered: Option<DateTime<Utc>>,
}

/// Organisations with their system counts: with an empty text, those that have registered at
/// least one system; otherwise every organisation whose ODS code or name contains the text (at
/// most 100). One query, whatever the number of organisations.
fn organisations(conn: &mut PgConnection, text: &str) -> QueryResult<Vec<OrgRow>> {
    let text = text.trim();
    let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    diesel::sql_query(
        "SELECT o.ods_code, o.name, o.town, coalesce(t.live, 0) AS live, coalesce(t.revoked, 0) AS revoked, \
                t.last_registered \
         FROM nhs_organisations o \
         LEFT JOIN (SELECT ods_code, count(*) FILTER (WHERE revoked_at IS NULL) AS live, \
                           count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked, \
                           max(created_at) AS last_registered \
                    FROM endpoint_tokens WHERE kind = 'nhs' GROUP BY ods_code) t ON t.ods_code = o.ods_code \
         WHERE ($1 = '' AND t.ods_code IS NOT NULL) OR ($1 <> '' AND (o.ods_code ILIKE $2 OR o.name ILIKE $2)) \
         ORDER BY (upper(o.ods_code) <> upper($1)), lower(o.name), o.ods_code \
         LIMIT 100",
    )
    .bind::<Text, _>(text)
    .bind::<Text, _>(pattern)
    .load(conn)
}

pub struct OrgListRow {
    pub href: String,
    pub ods_code: String,
    pub name: String,
    pub town: String,
    pub live: i64,
    pub revoked: i64,
    pub last_registered: String,
}

impl From<OrgRow> for OrgListRow {
    fn from(r: OrgRow) -> OrgListRow {
        OrgListRow {
            href: base(&r.ods_code),
            name: r.name,
            town: r.town.unwrap_or_default(),
            live: r.live,
            revoked: r.revoked,
            last_registered: r.last_registered.map(format_uk_datetime).unwrap_or_else(|| "Never".into()),
            ods_code: r.ods_code,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/nhs_systems.html")]
struct ListPage {
    layout: Layout,
    q: String,
    no_error: Option<String>,
    registered: Vec<OrgListRow>,
    /// `None` when nothing was searched for.
    found: Option<Vec<OrgListRow>>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
}

pub async fn list_nhs_systems(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    owner_id(&principal)?;
    let q: String = query.q.chars().filter(|c| !c.is_control()).take(QUERY_MAX).collect();
    let text = q.trim().to_owned();
    let (registered, found) = db::run(&state.pool, move |conn| {
        let registered = organisations(conn, "")?;
        let found = if text.is_empty() { None } else { Some(organisations(conn, &text)?) };
        Ok((registered, found))
    })
    .await?;
    render(&ListPage {
        layout: Layout::new("NHS systems (admin)", Some(&principal), &session),
        q,
        no_error: None,
        registered: registered.into_iter().map(OrgListRow::from).collect(),
        found: found.map(|rows| rows.into_iter().map(OrgListRow::from).collect()),
    })
}

// ---------------------------------------------------------------------------------------------
// One organisation

#[derive(Debug, Queryable)]
struct OrgDetails {
    ods_code: String,
    name: String,
    town: Option<String>,
    postcode: Option<String>,
}

fn details(conn: &mut PgConnection, ods: &str) -> QueryResult<Option<OrgDetails>> {
    nhs_organisations::table
        .find(ods)
        .select((
            nhs_organisations::ods_code,
            nhs_organisations::name,
            nhs_organisations::town,
            nhs_organisations::postcode,
        ))
        .first(conn)
        .optional()
}

/// The organisation's systems, newest first (never the tokens themselves).
fn systems(conn: &mut PgConnection, ods: &str) -> QueryResult<Vec<TokenInfo>> {
    endpoint_tokens::table
        .filter(endpoint_tokens::kind.eq("nhs"))
        .filter(endpoint_tokens::ods_code.eq(ods))
        .order(endpoint_tokens::id.desc())
        .select((endpoint_tokens::id, endpoint_tokens::label, endpoint_tokens::created_at, endpoint_tokens::revoked_at))
        .load(conn)
}

pub struct SystemRow {
    pub label: String,
    pub issued: String,
    pub revoked: Option<String>,
    pub revoke_action: String,
}

/// A token just issued, shown on the page this once.
pub struct Issued {
    pub label: String,
    pub token: String,
}

#[derive(Template)]
#[template(path = "admin/nhs_system.html")]
struct OrgPage {
    layout: Layout,
    base: String,
    ods_code: String,
    name: String,
    town: String,
    postcode: String,
    live: usize,
    systems: Vec<SystemRow>,
    issued: Option<Issued>,
    errors: Vec<FieldError>,
    /// The register form's value, as submitted when it had a problem.
    label: String,
}

impl OrgPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

async fn org_page(
    state: &AppState,
    session: &Session,
    principal: &Principal,
    ods: String,
    errors: Vec<FieldError>,
    label: String,
    issued: Option<Issued>,
) -> Result<OrgPage, AppError> {
    let (org, list) = db::run(&state.pool, move |conn| {
        let org = details(conn, &ods)?.ok_or_else(not_found)?;
        let list = systems(conn, &org.ods_code)?;
        Ok((org, list))
    })
    .await?;
    let base = base(&org.ods_code);
    let title = match (&issued, errors.is_empty()) {
        (Some(_), _) => format!("System registered: {} (admin)", org.name),
        (None, true) => format!("{} (admin)", org.name),
        (None, false) => format!("Error: {} (admin)", org.name),
    };
    Ok(OrgPage {
        layout: Layout::new(&title, Some(principal), session),
        live: list.iter().filter(|t| t.revoked_at.is_none()).count(),
        systems: list
            .iter()
            .map(|t| SystemRow {
                label: if t.label.is_empty() { "(no name)".into() } else { t.label.clone() },
                issued: format_uk_datetime(t.created_at),
                revoked: t.revoked_at.map(format_uk_datetime),
                revoke_action: format!("{base}/tokens/{}/revoke", t.id),
            })
            .collect(),
        base,
        ods_code: org.ods_code,
        name: org.name,
        town: org.town.unwrap_or_else(|| "Not known".into()),
        postcode: org.postcode.unwrap_or_else(|| "Not known".into()),
        issued,
        errors,
        label,
    })
}

pub async fn show_nhs_organisation(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    owner_id(&principal)?;
    let ods = ods_from(path.into_inner());
    render(&org_page(&state, &session, &principal, ods, vec![], String::new(), None).await?)
}

// ---------------------------------------------------------------------------------------------
// Registering a system: a new token, shown once

#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    label: String,
    csrf_token: String,
}
csrf_form!(RegisterForm);

/// The system's name as entered: 1 to 200 characters of plain text on one line.
fn parse_label(input: &str) -> Result<String, &'static str> {
    let label = input.trim();
    if label.is_empty() {
        return Err("Enter the system's name");
    }
    if label.chars().count() > LABEL_MAX {
        return Err("The system's name must be 200 characters or fewer");
    }
    if label.chars().any(char::is_control) {
        return Err("The system's name must be plain text on one line");
    }
    Ok(label.to_owned())
}

pub async fn register_system(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<RegisterForm>,
) -> Result<HttpResponse, AppError> {
    let owner = owner_id(&principal)?;
    let ods = ods_from(path.into_inner());
    let label = match parse_label(&form.label) {
        Ok(label) => label,
        Err(message) => {
            let submitted: String = form.label.chars().take(LABEL_MAX * 2).collect();
            let errors = vec![FieldError::new("label", message)];
            let page = org_page(&state, &session, &principal, ods, errors, submitted, None).await?;
            return render_status(StatusCode::BAD_REQUEST, &page);
        }
    };
    let (o, l) = (ods.clone(), label.clone());
    // issue_nhs refuses an unknown organisation (404) and audits the issue with the token.
    let token = db::run(&state.pool, move |conn| tokens::issue_nhs(conn, Actor::User(owner), &o, &l)).await?;
    let issued = Some(Issued { label, token });
    render(&org_page(&state, &session, &principal, ods, vec![], String::new(), issued).await?)
}

// ---------------------------------------------------------------------------------------------
// Revoking a system's token

pub async fn revoke_system_token(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<(String, i64)>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let owner = owner_id(&principal)?;
    let (ods, token_id) = path.into_inner();
    let ods = ods_from(ods);
    let o = ods.clone();
    db::run(&state.pool, move |conn| {
        tokens::revoke_held(conn, Actor::User(owner), tokens::Holder::NhsOrganisation(&o), token_id, Utc::now())
    })
    .await?;
    state.forget_token(token_id);
    Ok(see_other(&base(&ods)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_name_is_1_to_200_characters_on_one_line() {
        assert_eq!(parse_label(" Emergency department system "), Ok("Emergency department system".into()));
        assert_eq!(parse_label(&"é".repeat(200)), Ok("é".repeat(200)));
        assert!(parse_label(&"a".repeat(201)).is_err());
        assert!(parse_label("line\nbreak").is_err());
        assert!(parse_label("   ").is_err());
        assert!(parse_label("").is_err());
    }

    #[test]
    fn an_ods_code_from_the_path_is_bounded_and_upper_case() {
        assert_eq!(ods_from("rjz".into()), "RJZ");
        assert_eq!(ods_from("x".repeat(50)).len(), 20);
    }
}
