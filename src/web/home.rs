//! The start page: sends each person where their role works.

use actix_session::Session;
use actix_web::HttpResponse;
use askama::Template;

use super::layout::Layout;
use super::{render, see_other};
use crate::auth::SignedIn;
use crate::domain::roles;
use crate::error::AppError;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
}

pub async fn home(session: Session, SignedIn(principal): SignedIn) -> Result<HttpResponse, AppError> {
    match &principal.role {
        None => Ok(see_other("/select-role")),
        Some(role) if roles::may_trace_patients(&role.activity_codes) => Ok(see_other("/search")),
        Some(role) if role.la_code.is_some() && roles::may_use_la_portal(&role.activity_codes) => Ok(see_other("/la")),
        Some(role) if roles::may_administer_users(&role.job_role_code, &role.activity_codes) => {
            Ok(see_other("/admin/users"))
        }
        Some(role) if roles::may_run_reports(&role.job_role_code, &role.activity_codes) => Ok(see_other("/reports")),
        Some(_) => render(&HomePage { layout: Layout::new("Home", Some(&principal), &session) }),
    }
}

/// Static files are served from the configured folder. Files up to 1 MiB (all of the service's
/// own) are read on the worker itself, not on its blocking threads, which the database's work
/// has to itself (`app::blocking_threads`).
pub fn static_files(dir: &str) -> actix_files::Files {
    actix_files::Files::new("/static", dir).prefer_utf8(true).read_mode_threshold(1024 * 1024)
}

pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound("The page you asked for does not exist. Check the address or go to the start page.".into()))
}
