//! Find a patient: by NHS number or by demographics (domain.md, "PDS emulation"). Needs B0264.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use super::layout::Layout;
use super::{render, render_status, see_other};
use crate::app::AppState;
use crate::auth::{Permission, SignedIn};
use crate::db;
use crate::domain::dates::{self, format_date};
use crate::domain::names::format_postcode;
use crate::domain::nhs_number::NhsNumber;
use crate::error::AppError;
use crate::pds::patient::{self, Lookup};
use crate::pds::search::{self, DemographicInput, DemographicQuery, SearchOutcome};
use crate::validation::{message_for, FieldError};

#[derive(Deserialize, Default)]
pub struct SearchParams {
    #[serde(default)]
    by: String,
    #[serde(default)]
    nhs_number: String,
    #[serde(flatten)]
    demographics: DemographicInput,
}

pub struct ResultRow {
    pub href: String,
    pub name: String,
    pub nhs_number: String,
    pub born: String,
    pub gender: String,
    pub postcode: String,
    pub score: String,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    errors: Vec<FieldError>,
    nhs_number: String,
    d: DemographicInput,
    gender_options: Vec<(String, String)>,
    searched: bool,
    results: Vec<ResultRow>,
    too_many: bool,
    not_found: bool,
}

impl SearchPage {
    fn error(&self, field: &str) -> Option<String> {
        message_for(&self.errors, field)
    }
    fn similar_checked(&self) -> bool {
        self.d.similar.as_deref().is_some_and(|s| !s.is_empty())
    }
}

pub async fn search_patients(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, AppError> {
    principal.require(Permission::PatientTrace)?;
    let params = params.into_inner();
    let mut page = SearchPage {
        layout: Layout::new("Find a patient", Some(&principal), &session),
        errors: vec![],
        nhs_number: params.nhs_number.clone(),
        d: params.demographics.clone(),
        gender_options: vec![
            ("".into(), "Any".into()),
            ("female".into(), "Female".into()),
            ("male".into(), "Male".into()),
            ("other".into(), "Other".into()),
            ("unknown".into(), "Not known".into()),
        ],
        searched: false,
        results: vec![],
        too_many: false,
        not_found: false,
    };
    match params.by.as_str() {
        "nhs" => match NhsNumber::parse(&params.nhs_number) {
            // Modulus 11 is checked before any look-up.
            Err(e) => page.errors.push(FieldError::new("nhs_number", e.to_string())),
            Ok(nhs) => {
                let number = nhs.as_str().to_owned();
                let found = db::run(&state.pool, move |conn| Ok(patient::lookup(conn, &number)?)).await?;
                match found {
                    Lookup::Found(p) => return Ok(see_other(&format!("/patients/{}", p.nhs_number))),
                    Lookup::Superseded { old_number, current } => {
                        return Ok(see_other(&format!("/patients/{}?superseded={}", current.nhs_number, old_number)))
                    }
                    Lookup::NotFound => {
                        page.searched = true;
                        page.not_found = true;
                    }
                }
            }
        },
        "demographics" => {
            let today = dates::uk_date(Utc::now());
            match DemographicQuery::parse(&params.demographics, today) {
                Err(errors) => page.errors = errors,
                Ok(q) => {
                    page.searched = true;
                    match db::run(&state.pool, move |conn| Ok(search::search(conn, &q)?)).await? {
                        SearchOutcome::TooMany => page.too_many = true,
                        SearchOutcome::Matches(found) => {
                            page.not_found = found.is_empty();
                            page.results = found.iter().map(|(p, score)| result_row(p, *score)).collect();
                        }
                    }
                }
            }
        }
        _ => {}
    }
    if page.errors.is_empty() {
        render(&page)
    } else {
        page.layout.title = "Error: Find a patient".into();
        render_status(StatusCode::BAD_REQUEST, &page)
    }
}

fn result_row(p: &crate::pds::Patient, score: f32) -> ResultRow {
    let nhs = NhsNumber::parse(&p.nhs_number).map(|n| n.formatted()).unwrap_or_else(|_| p.nhs_number.clone());
    ResultRow {
        href: format!("/patients/{}", p.nhs_number),
        name: p.display_name(),
        nhs_number: nhs,
        born: format_date(p.birth_date),
        gender: p.gender_label().into(),
        // A restricted patient's address is never shown, postcode included.
        postcode: if p.restricted {
            String::new()
        } else {
            p.postcode.as_deref().map(format_postcode).unwrap_or_default()
        },
        score: format!("{score:.2}"),
    }
}
