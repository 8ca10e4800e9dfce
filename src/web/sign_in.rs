//! Sign in, choose a role, sign out (standing in for the smartcard and Spine role selection).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{TimeDelta, Utc};
use serde::Deserialize;

use super::layout::Layout;
use super::{render, render_status, see_other};
use crate::app::AppState;
use crate::audit::{self, Actor, Event};
use crate::auth::csrf::CsrfForm;
use crate::auth::principal::ROLE_KEY;
use crate::auth::session_store::USER_ID_KEY;
use crate::auth::sign_in::{self, Outcome, FAILURE_MESSAGE};
use crate::auth::users::{self, RoleProfile};
use crate::auth::SignedIn;
use crate::csrf_form;
use crate::db;
use crate::error::AppError;
use crate::validation::{message_for, FieldError};

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    errors: Vec<FieldError>,
    username: String,
    ended: bool,
}

impl SignInPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

pub async fn sign_in_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    // A session cookie whose session is gone: idle, past its limit, or ended by an administrator.
    let cookie = crate::app::session_cookie_name(state.config.secure_cookies);
    let ended = req.cookie(cookie).is_some() && session.entries().is_empty();
    render(&SignInPage {
        layout: Layout::new("Sign in", None, &session),
        errors: vec![],
        username: String::new(),
        ended,
    })
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf_token: String,
}
csrf_form!(SignInForm);

pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<SignInForm>,
) -> Result<HttpResponse, AppError> {
    // A per-address limit, before any password is checked.
    let address = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let limit = state.config.sign_in_limit;
    let allowed = db::transaction(&state.pool, move |conn| {
        let allowed = sign_in::allow_attempt(conn, &address, Utc::now(), limit, TimeDelta::minutes(10))?;
        if !allowed {
            audit::record(conn, Event::new(Actor::Anonymous, "auth.sign_in_throttled"))?;
        }
        Ok(allowed)
    })
    .await?;
    if !allowed {
        return Err(AppError::TooManyRequests(
            "There have been too many sign-in attempts from your network. Wait 10 minutes and try again.".into(),
        ));
    }
    let mut errors = Vec::new();
    if form.username.trim().is_empty() {
        errors.push(FieldError::new("username", "Enter your username"));
    }
    if form.password.is_empty() {
        errors.push(FieldError::new("password", "Enter your password"));
    }
    if form.username.len() > 200 || form.password.len() > 1024 {
        errors.push(FieldError::new("username", FAILURE_MESSAGE));
    }
    if errors.is_empty() {
        let (username, password) = (form.username.clone(), form.password.clone());
        let outcome =
            db::run(&state.pool, move |conn| sign_in::sign_in(conn, &username, &password, Utc::now())).await?;
        match outcome {
            Outcome::SignedIn { user_id } => {
                let profiles = db::run(&state.pool, move |conn| Ok(users::profiles(conn, user_id)?)).await?;
                // A new session id at sign-in (OWASP ASVS 3.2.1): no fixation.
                session.renew();
                session.insert(USER_ID_KEY, user_id).map_err(AppError::internal)?;
                if let [only] = profiles.as_slice() {
                    session.insert(ROLE_KEY, only.id).map_err(AppError::internal)?;
                    return Ok(see_other("/"));
                }
                return Ok(see_other("/select-role"));
            }
            Outcome::Failed => errors.push(FieldError::new("username", FAILURE_MESSAGE)),
        }
    }
    let page = SignInPage {
        layout: Layout::new("Error: Sign in", None, &session),
        errors,
        username: form.username,
        ended: false,
    };
    render_status(StatusCode::UNAUTHORIZED, &page)
}

#[derive(Template)]
#[template(path = "select_role.html")]
struct SelectRolePage {
    layout: Layout,
    options: Vec<(String, String)>,
    selected: String,
    error: Option<String>,
}

pub async fn select_role_form(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
) -> Result<HttpResponse, AppError> {
    let user_id = principal.account.id;
    let profiles = db::run(&state.pool, move |conn| Ok(users::profiles(conn, user_id)?)).await?;
    let selected = principal.role.as_ref().map(|r| r.id.to_string()).unwrap_or_default();
    let page = SelectRolePage {
        layout: Layout::new("Choose a role", Some(&principal), &session),
        options: role_options(&profiles),
        selected,
        error: profiles.is_empty().then(|| "Your account has no role profile: ask your registration authority".into()),
    };
    render(&page)
}

fn role_options(profiles: &[RoleProfile]) -> Vec<(String, String)> {
    profiles.iter().map(|p| (p.id.to_string(), p.label())).collect()
}

#[derive(Deserialize)]
pub struct SelectRoleForm {
    #[serde(default)]
    role: String,
    csrf_token: String,
}
csrf_form!(SelectRoleForm);

pub async fn select_role(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    CsrfForm(form): CsrfForm<SelectRoleForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = principal.account.id;
    let chosen: Option<i64> = form.role.parse().ok();
    let profile = match chosen {
        Some(rid) => db::run(&state.pool, move |conn| Ok(users::profile(conn, user_id, rid)?)).await?,
        None => None,
    };
    let Some(profile) = profile else {
        let profiles = db::run(&state.pool, move |conn| Ok(users::profiles(conn, user_id)?)).await?;
        let page = SelectRolePage {
            layout: Layout::new("Error: Choose a role", Some(&principal), &session),
            options: role_options(&profiles),
            selected: String::new(),
            error: Some("Choose one of your roles".into()),
        };
        return render_status(StatusCode::BAD_REQUEST, &page);
    };
    let details = serde_json::json!({"role_profile_id": profile.id, "job_role": profile.job_role_code,
                                     "organisation": profile.organisation_code()});
    db::transaction(&state.pool, move |conn| {
        audit::record(conn, Event::new(Actor::User(user_id), "auth.role_selected").details(details.clone()))
    })
    .await?;
    session.insert(ROLE_KEY, profile.id).map_err(AppError::internal)?;
    Ok(see_other("/"))
}

pub async fn sign_out(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    CsrfForm(_): CsrfForm<crate::auth::csrf::ButtonForm>,
) -> Result<HttpResponse, AppError> {
    let user_id = principal.account.id;
    db::transaction(&state.pool, move |conn| audit::record(conn, Event::new(Actor::User(user_id), "auth.signed_out")))
        .await?;
    // Deletes the server-side session, not just the cookie.
    session.purge();
    Ok(see_other("/sign-in"))
}
