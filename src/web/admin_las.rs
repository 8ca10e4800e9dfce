//! Local authorities as CP-IS owners administer them: the list with each LA's sending switch, live
//! endpoint tokens and last upload; an LA's page to switch its sending off and on (CP-SC014), set
//! its notification e-mail address (message 05), and issue and revoke its mailbox tokens (CP-SC025).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use serde::Deserialize;
use serde_json::json;

use super::layout::Layout;
use super::{render, render_status, see_other};
use crate::app::AppState;
use crate::audit::{self, Actor, Event};
use crate::auth::csrf::CsrfForm;
use crate::auth::{Permission, Principal, SignedIn};
use crate::csrf_form;
use crate::db;
use crate::domain::dates::format_uk_datetime;
use crate::error::AppError;
use crate::mailbox::tokens;
use crate::schema::{local_authorities, uploads};
use crate::validation::{message_for, FieldError};

/// The longest token label the database accepts.
const LABEL_MAX: usize = 200;
/// The longest e-mail address accepted (RFC 5321's path limit).
const EMAIL_MAX: usize = 254;
const EMAIL_FORMAT: &str = "Enter an email address in the correct format, like cpis-alerts@council.example.gov.uk";

fn owner_id(p: &Principal) -> Result<i64, AppError> {
    p.require(Permission::ServiceOwner)?;
    Ok(p.account.id)
}

fn not_found() -> AppError {
    AppError::NotFound("There is no local authority with that code.".into())
}

/// An LA code from the path, bounded before it reaches a query.
fn code_from(path: String) -> String {
    path.chars().take(20).collect()
}

fn base(code: &str) -> String {
    format!("/admin/local-authorities/{code}")
}

// ---------------------------------------------------------------------------------------------
// The list

/// One LA in the list, read with its live token count and last upload in one query.
#[derive(Debug, QueryableByName)]
struct ListRow {
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    reference_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    display_name: Option<String>,
    #[diesel(sql_type = Bool)]
    sending_enabled: bool,
    #[diesel(sql_type = BigInt)]
    live_tokens: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_upload: Option<DateTime<Utc>>,
}

/// Every LA whose name (reference or latest file's) or code contains the text, with its sending
/// switch, number of live tokens and last upload time: one query, whatever the number of LAs.
fn search(conn: &mut PgConnection, text: &str) -> QueryResult<Vec<ListRow>> {
    let text = text.trim();
    let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    diesel::sql_query(
        "SELECT la.code, la.reference_name, la.display_name, la.sending_enabled, \
                coalesce(t.live, 0) AS live_tokens, u.last_upload \
         FROM local_authorities la \
         LEFT JOIN (SELECT la_code, count(*) AS live FROM endpoint_tokens \
                    WHERE kind = 'la' AND revoked_at IS NULL GROUP BY la_code) t ON t.la_code = la.code \
         LEFT JOIN (SELECT la_code, max(received_at) AS last_upload FROM uploads GROUP BY la_code) u \
                ON u.la_code = la.code \
         WHERE $1 = '' OR la.code ILIKE $2 OR la.reference_name ILIKE $2 OR la.display_name ILIKE $2 \
         ORDER BY lower(coalesce(la.display_name, la.reference_name)), la.code",
    )
    .bind::<Text, _>(text)
    .bind::<Text, _>(pattern)
    .load(conn)
}

pub struct LaRow {
    pub href: String,
    pub code: String,
    pub name: String,
    pub sending: String,
    pub live_tokens: i64,
    pub last_upload: String,
}

#[derive(Template)]
#[template(path = "admin/local_authorities.html")]
struct ListPage {
    layout: Layout,
    q: String,
    no_error: Option<String>,
    rows: Vec<LaRow>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
}

pub async fn list_local_authorities(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    owner_id(&principal)?;
    let q: String = query.q.chars().filter(|c| !c.is_control()).take(100).collect();
    let text = q.clone();
    let found = db::run(&state.pool, move |conn| Ok(search(conn, &text)?)).await?;
    let rows = found
        .into_iter()
        .map(|r| LaRow {
            href: base(&r.code),
            name: r.display_name.unwrap_or(r.reference_name),
            sending: if r.sending_enabled { "On" } else { "Off" }.into(),
            live_tokens: r.live_tokens,
            last_upload: r.last_upload.map(format_uk_datetime).unwrap_or_else(|| "None yet".into()),
            code: r.code,
        })
        .collect();
    render(&ListPage {
        layout: Layout::new("Local authorities (admin)", Some(&principal), &session),
        q,
        no_error: None,
        rows,
    })
}

// ---------------------------------------------------------------------------------------------
// One LA

/// What the admin page shows of an LA.
#[derive(Debug, Queryable)]
struct LaDetails {
    code: String,
    reference_name: String,
    display_name: Option<String>,
    emergency_phone: Option<String>,
    office_hours_phone: Option<String>,
    contacts_updated_at: Option<DateTime<Utc>>,
    notification_email: Option<String>,
    sending_enabled: bool,
    last_sequence: Option<i64>,
}

fn details(conn: &mut PgConnection, code: &str) -> QueryResult<Option<LaDetails>> {
    local_authorities::table
        .find(code)
        .select((
            local_authorities::code,
            local_authorities::reference_name,
            local_authorities::display_name,
            local_authorities::emergency_phone,
            local_authorities::office_hours_phone,
            local_authorities::contacts_updated_at,
            local_authorities::notification_email,
            local_authorities::sending_enabled,
            local_authorities::last_sequence,
        ))
        .first(conn)
        .optional()
}

pub struct TokenRow {
    pub label: String,
    pub issued: String,
    pub revoked: Option<String>,
    pub revoke_action: String,
}

#[derive(Template)]
#[template(path = "admin/local_authority.html")]
struct LaPage {
    layout: Layout,
    base: String,
    code: String,
    name: String,
    reference_name: String,
    file_name: String,
    emergency_phone: String,
    office_hours_phone: String,
    contacts_updated: String,
    notification_email: String,
    last_sequence: String,
    last_upload: String,
    sending_enabled: bool,
    tokens: Vec<TokenRow>,
    errors: Vec<FieldError>,
    /// The values of the forms, as submitted when one had a problem.
    email: String,
    label: String,
}

impl LaPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
    fn sending(&self) -> &'static str {
        if self.sending_enabled {
            "On"
        } else {
            "Off"
        }
    }
}

/// The values a form with a problem sends back to the page.
#[derive(Default)]
struct Submitted {
    email: Option<String>,
    label: String,
}

async fn la_page(
    state: &AppState,
    session: &Session,
    principal: &Principal,
    code: String,
    errors: Vec<FieldError>,
    submitted: Submitted,
) -> Result<LaPage, AppError> {
    let (la, token_list, last_upload) = db::run(&state.pool, move |conn| {
        let la = details(conn, &code)?.ok_or_else(not_found)?;
        let token_list = tokens::list_for_la(conn, &la.code)?;
        let last_upload: Option<DateTime<Utc>> = uploads::table
            .filter(uploads::la_code.eq(&la.code))
            .select(diesel::dsl::max(uploads::received_at))
            .first(conn)?;
        Ok((la, token_list, last_upload))
    })
    .await?;
    let base = base(&la.code);
    let name = la.display_name.clone().unwrap_or_else(|| la.reference_name.clone());
    let title = if errors.is_empty() { format!("{name} (admin)") } else { format!("Error: {name} (admin)") };
    Ok(LaPage {
        layout: Layout::new(&title, Some(principal), session),
        tokens: token_list
            .iter()
            .map(|t| TokenRow {
                label: if t.label.is_empty() { "(no label)".into() } else { t.label.clone() },
                issued: format_uk_datetime(t.created_at),
                revoked: t.revoked_at.map(format_uk_datetime),
                revoke_action: format!("{base}/tokens/{}/revoke", t.id),
            })
            .collect(),
        base,
        name,
        code: la.code,
        reference_name: la.reference_name,
        file_name: la.display_name.unwrap_or_else(|| "No file received yet".into()),
        emergency_phone: la.emergency_phone.unwrap_or_else(|| "Not provided yet".into()),
        office_hours_phone: la.office_hours_phone.unwrap_or_else(|| "Not provided".into()),
        contacts_updated: la.contacts_updated_at.map(format_uk_datetime).unwrap_or_else(|| "Not yet".into()),
        notification_email: la.notification_email.clone().unwrap_or_else(|| "Not set".into()),
        last_sequence: la.last_sequence.map(|s| s.to_string()).unwrap_or_else(|| "None yet".into()),
        last_upload: last_upload.map(format_uk_datetime).unwrap_or_else(|| "None yet".into()),
        sending_enabled: la.sending_enabled,
        errors,
        email: submitted.email.unwrap_or_else(|| la.notification_email.unwrap_or_default()),
        label: submitted.label,
    })
}

pub async fn show_local_authority(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    owner_id(&principal)?;
    let code = code_from(path.into_inner());
    render(&la_page(&state, &session, &principal, code, vec![], Submitted::default()).await?)
}

async fn form_problem(
    state: &AppState,
    session: &Session,
    principal: &Principal,
    code: String,
    error: FieldError,
    submitted: Submitted,
) -> Result<HttpResponse, AppError> {
    render_status(StatusCode::BAD_REQUEST, &la_page(state, session, principal, code, vec![error], submitted).await?)
}

// ---------------------------------------------------------------------------------------------
// Sending on and off (CP-SC014)

#[derive(Deserialize)]
pub struct SendingForm {
    #[serde(default)]
    enabled: String,
    csrf_token: String,
}
csrf_form!(SendingForm);

/// Switches an LA's sending; the change and its audit entry commit together. Setting the value it
/// already has changes and records nothing.
fn set_sending(conn: &mut PgConnection, actor: i64, code: &str, enabled: bool) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let before: bool = local_authorities::table
            .find(code)
            .select(local_authorities::sending_enabled)
            .for_update()
            .first(conn)
            .optional()?
            .ok_or_else(not_found)?;
        if before == enabled {
            return Ok(());
        }
        diesel::update(local_authorities::table.find(code))
            .set(local_authorities::sending_enabled.eq(enabled))
            .execute(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(actor), "la.sending_switched").details(json!({
                "la_code": code,
                "before": {"sending_enabled": before},
                "after": {"sending_enabled": enabled},
            })),
        )
    })
}

pub async fn switch_sending(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<SendingForm>,
) -> Result<HttpResponse, AppError> {
    let owner = owner_id(&principal)?;
    let code = code_from(path.into_inner());
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            let error = FieldError::new("sending", "Choose whether this local authority's sending is on or off");
            return form_problem(&state, &session, &principal, code, error, Submitted::default()).await;
        }
    };
    let c = code.clone();
    db::run(&state.pool, move |conn| set_sending(conn, owner, &c, enabled)).await?;
    Ok(see_other(&base(&code)))
}

// ---------------------------------------------------------------------------------------------
// The notification e-mail address (message 05)

/// The address as entered: `None` for an empty field (which clears it), or an error message.
/// What passes also passes the column's CHECK (`^[^@\s]+@[^@\s]+$`).
fn parse_email(input: &str) -> Result<Option<String>, &'static str> {
    let email = input.trim();
    if email.is_empty() {
        return Ok(None);
    }
    if email.chars().count() > EMAIL_MAX {
        return Err("The email address must be 254 characters or fewer");
    }
    let well_formed = email.matches('@').count() == 1
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if well_formed {
        Ok(Some(email.to_owned()))
    } else {
        Err(EMAIL_FORMAT)
    }
}

/// Why an address was not stored.
enum EmailRefused {
    /// The database's CHECK refused it: a problem with the form, not with the service.
    Check,
    Failed(AppError),
}

impl From<DieselError> for EmailRefused {
    fn from(e: DieselError) -> EmailRefused {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, _) => EmailRefused::Check,
            other => EmailRefused::Failed(other.into()),
        }
    }
}

impl From<AppError> for EmailRefused {
    fn from(e: AppError) -> EmailRefused {
        EmailRefused::Failed(e)
    }
}

/// Sets (or clears) the address in one transaction with its audit entry. Setting the address it
/// already has changes and records nothing.
fn set_email(
    conn: &mut PgConnection,
    actor: i64,
    code: &str,
    email: Option<String>,
) -> Result<Result<(), FieldError>, AppError> {
    let outcome = conn.transaction::<_, EmailRefused, _>(|conn| {
        let before: Option<String> = local_authorities::table
            .find(code)
            .select(local_authorities::notification_email)
            .for_update()
            .first(conn)
            .optional()?
            .ok_or_else(not_found)?;
        if before == email {
            return Ok(());
        }
        diesel::update(local_authorities::table.find(code))
            .set(local_authorities::notification_email.eq(&email))
            .execute(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(actor), "la.notification_email_changed").details(json!({
                "la_code": code,
                "before": {"notification_email": before},
                "after": {"notification_email": email},
            })),
        )?;
        Ok(())
    });
    match outcome {
        Ok(()) => Ok(Ok(())),
        Err(EmailRefused::Check) => Ok(Err(FieldError::new("email", EMAIL_FORMAT))),
        Err(EmailRefused::Failed(e)) => Err(e),
    }
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
    csrf_token: String,
}
csrf_form!(EmailForm);

pub async fn set_notification_email(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<HttpResponse, AppError> {
    let owner = owner_id(&principal)?;
    let code = code_from(path.into_inner());
    let submitted = || Submitted { email: Some(form.email.clone()), label: String::new() };
    let email = match parse_email(&form.email) {
        Ok(email) => email,
        Err(message) => {
            let error = FieldError::new("email", message);
            return form_problem(&state, &session, &principal, code, error, submitted()).await;
        }
    };
    let c = code.clone();
    match db::run(&state.pool, move |conn| set_email(conn, owner, &c, email.clone())).await? {
        Ok(()) => Ok(see_other(&base(&code))),
        Err(error) => form_problem(&state, &session, &principal, code, error, submitted()).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint tokens (CP-SC025)

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    label: String,
    csrf_token: String,
}
csrf_form!(TokenForm);

fn parse_label(input: &str) -> Result<String, &'static str> {
    let label = input.trim();
    if label.chars().count() > LABEL_MAX {
        return Err("The label must be 200 characters or fewer");
    }
    if label.chars().any(char::is_control) {
        return Err("The label must be plain text on one line");
    }
    Ok(label.to_owned())
}

#[derive(Template)]
#[template(path = "admin/token_issued.html")]
struct TokenIssuedPage {
    layout: Layout,
    name: String,
    code: String,
    label: String,
    token: String,
    la_href: String,
}

pub async fn issue_token(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<HttpResponse, AppError> {
    let owner = owner_id(&principal)?;
    let code = code_from(path.into_inner());
    let label = match parse_label(&form.label) {
        Ok(label) => label,
        Err(message) => {
            let submitted = Submitted { email: None, label: form.label.chars().take(LABEL_MAX * 2).collect() };
            let error = FieldError::new("label", message);
            return form_problem(&state, &session, &principal, code, error, submitted).await;
        }
    };
    let (c, l) = (code.clone(), label.clone());
    let (token, la) = db::run(&state.pool, move |conn| {
        let la = details(conn, &c)?.ok_or_else(not_found)?;
        Ok((tokens::issue_la(conn, Actor::User(owner), &c, &l)?, la))
    })
    .await?;
    render(&TokenIssuedPage {
        layout: Layout::new("Token issued", Some(&principal), &session),
        name: la.display_name.unwrap_or(la.reference_name),
        la_href: base(&la.code),
        code: la.code,
        label,
        token,
    })
}

pub async fn revoke_token(
    state: web::Data<AppState>,
    SignedIn(principal): SignedIn,
    path: web::Path<(String, i64)>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let owner = owner_id(&principal)?;
    let (code, token_id) = path.into_inner();
    let code = code_from(code);
    let c = code.clone();
    db::run(&state.pool, move |conn| {
        tokens::revoke_held(conn, Actor::User(owner), tokens::Holder::LocalAuthority(&c), token_id, Utc::now())
    })
    .await?;
    state.forget_token(token_id);
    Ok(see_other(&base(&code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_email_clears_the_address() {
        assert_eq!(parse_email("  "), Ok(None));
        assert_eq!(parse_email(" alerts@kent.example.org "), Ok(Some("alerts@kent.example.org".into())));
    }

    #[test]
    fn a_malformed_email_is_refused() {
        for bad in [
            "alerts",
            "@kent.gov.uk",
            "alerts@",
            "a@b@c.uk",
            "al erts@kent.gov.uk",
            "alerts@kent",
            "a@.uk",
            "a@b.",
            "a\0@b.uk",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
        assert!(parse_email(&format!("{}@kent.gov.uk", "a".repeat(250))).is_err());
    }

    #[test]
    fn a_label_is_at_most_200_characters_on_one_line() {
        assert_eq!(parse_label(&"é".repeat(200)), Ok("é".repeat(200)));
        assert!(parse_label(&"a".repeat(201)).is_err());
        assert!(parse_label("line\nbreak").is_err());
        assert_eq!(parse_label(""), Ok(String::new()));
    }
}
