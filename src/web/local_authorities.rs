//! The local authority directory and contact pages, linked from the alert tab.

use actix_session::Session;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::layout::Layout;
use super::render;
use crate::app::AppState;
use crate::auth::SignedIn;
use crate::cpis::local_authority::{self, LocalAuthority};
use crate::db;
use crate::domain::dates::format_uk_datetime;
use crate::error::AppError;

pub struct LaRow {
    pub name: String,
    pub code: String,
    pub href: String,
    pub emergency_phone: String,
    pub office_hours_phone: String,
}

fn row(la: &LocalAuthority) -> LaRow {
    LaRow {
        name: la.name().to_owned(),
        code: la.code.clone(),
        href: format!("/local-authorities/{}", la.code),
        emergency_phone: la.emergency_phone.clone().unwrap_or_else(|| "Not provided yet".into()),
        office_hours_phone: la.office_hours_phone.clone().unwrap_or_else(|| "Not provided".into()),
    }
}

#[derive(Deserialize)]
pub struct DirectoryQuery {
    #[serde(default)]
    q: String,
}

#[derive(Template)]
#[template(path = "local_authorities.html")]
struct DirectoryPage {
    layout: Layout,
    q: String,
    no_error: Option<String>,
    rows: Vec<LaRow>,
}

pub async fn list_local_authorities(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    query: web::Query<DirectoryQuery>,
) -> Result<HttpResponse, AppError> {
    let q: String = query.q.chars().take(100).collect();
    let text = q.clone();
    let las = db::run(&state.pool, move |conn| Ok(local_authority::search(conn, &text)?)).await?;
    render(&DirectoryPage {
        layout: Layout::new("Local authorities", Some(&principal), &session),
        q,
        no_error: None,
        rows: las.iter().map(row).collect(),
    })
}

#[derive(Template)]
#[template(path = "local_authority.html")]
struct LaPage {
    layout: Layout,
    la: LaRow,
    reference_name: String,
    updated: String,
}

pub async fn show_local_authority(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let code: String = path.into_inner().chars().take(20).collect();
    let la = db::run(&state.pool, move |conn| Ok(local_authority::find(conn, &code)?))
        .await?
        .ok_or_else(|| AppError::NotFound("There is no local authority with that code.".into()))?;
    render(&LaPage {
        layout: Layout::new(la.name(), Some(&principal), &session),
        la: row(&la),
        reference_name: la.reference_name.clone(),
        updated: la
            .contacts_updated_at
            .map(format_uk_datetime)
            .unwrap_or_else(|| "Not yet: this local authority has not sent a file".into()),
    })
}
