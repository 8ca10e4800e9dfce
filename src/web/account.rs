//! A signed-in user's own account: changing their password (required after a reset).

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::layout::Layout;
use super::{render, render_status, see_other};
use crate::app::AppState;
use crate::auth::admin;
use crate::auth::csrf::CsrfForm;
use crate::auth::SignedIn;
use crate::csrf_form;
use crate::error::AppError;
use crate::validation::{message_for, FieldError};

#[derive(Template)]
#[template(path = "change_password.html")]
struct ChangePasswordPage {
    layout: Layout,
    errors: Vec<FieldError>,
    required: bool,
}

impl ChangePasswordPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
}

pub async fn change_password_form(session: Session, SignedIn(principal): SignedIn) -> Result<HttpResponse, AppError> {
    render(&ChangePasswordPage {
        layout: Layout::new("Change your password", Some(&principal), &session),
        errors: vec![],
        required: principal.account.must_change_password,
    })
}

#[derive(Deserialize)]
pub struct ChangePasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
    csrf_token: String,
}
csrf_form!(ChangePasswordForm);

pub async fn change_password(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    CsrfForm(form): CsrfForm<ChangePasswordForm>,
) -> Result<HttpResponse, AppError> {
    let mut errors = Vec::new();
    if form.new_password != form.confirm_password {
        errors.push(FieldError::new("confirm_password", "The two new passwords are not the same"));
    }
    if form.current_password.len() > 1024 || form.new_password.len() > 1024 {
        errors.push(FieldError::new("new_password", "Your password must be at most 128 characters long"));
    }
    if errors.is_empty() {
        let user_id = principal.account.id;
        let (current, new) = (form.current_password, form.new_password);
        let result = state
            .change_account(user_id, move |conn| Ok(admin::change_own_password(conn, user_id, &current, &new)))
            .await?;
        match result {
            Ok(()) => {
                session.renew();
                return Ok(see_other("/"));
            }
            Err(e) => errors = e,
        }
    }
    let page = ChangePasswordPage {
        layout: Layout::new("Error: Change your password", Some(&principal), &session),
        errors,
        required: principal.account.must_change_password,
    };
    render_status(StatusCode::BAD_REQUEST, &page)
}
