//! Page handlers, one file per area. Handlers are thin: extract, call the domain, render or redirect.

pub mod account;
pub mod admin_las;
pub mod admin_users;
pub mod developers;
pub mod health;
pub mod home;
pub mod jobs;
pub mod la_portal;
pub mod layout;
pub mod local_authorities;
pub mod middleware;
pub mod nhs_systems;
pub mod patient;
pub mod reports;
pub mod search;
pub mod sign_in;
pub mod transmissions;

use actix_web::http::header;
use actix_web::HttpResponse;
use askama::Template;

use crate::error::AppError;

/// Renders a page. Pages may show patient data, so nothing is cached.
pub fn render(page: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

/// Renders a page with a status other than 200 (a form with errors is 400 or 422).
pub fn render_status(status: actix_web::http::StatusCode, page: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}
