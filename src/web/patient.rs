//! The patient record: Patient Details, and the Child Care Alert tab when the rules allow it
//! (CP-IS049 to CP-IS058). Viewing the record records nothing; opening the tab records the access.

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use diesel::PgConnection;
use serde::Deserialize;

use super::layout::Layout;
use super::{render, see_other};
use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::users::RoleProfile;
use crate::auth::{Permission, SignedIn};
use crate::cpis::alert::{self, AlertTab};
use crate::cpis::items;
use crate::cpis::recorder::{Opening, TabAnswer};
use crate::db;
use crate::domain::dates::{self, format_date, format_uk_datetime};
use crate::domain::names::readable_org_name;
use crate::domain::nhs_number::{self, NhsNumber};
use crate::error::AppError;
use crate::pds::patient::{self, Lookup, Patient};

/// The banner on every tab: the patient identified beyond doubt (CP-NHS013).
pub struct Banner {
    pub name: String,
    pub nhs_number: String,
    pub born: String,
    pub gender: String,
}

impl Banner {
    fn new(p: &Patient) -> Banner {
        let today = dates::uk_date(Utc::now());
        let age = p.age_on(today);
        Banner {
            name: p.display_name(),
            nhs_number: formatted(&p.nhs_number),
            born: format!("{} ({} {})", format_date(p.birth_date), age, if age == 1 { "year" } else { "years" }),
            gender: p.gender_label().into(),
        }
    }
}

fn formatted(nhs: &str) -> String {
    NhsNumber::parse(nhs).map(|n| n.formatted()).unwrap_or_else(|_| nhs.to_owned())
}

/// The record's tabs; the alert tab only when the rules hold.
pub struct Tabs {
    pub details_href: String,
    pub alert_href: Option<String>,
}

#[derive(Deserialize)]
pub struct RecordQuery {
    superseded: Option<String>,
}

#[derive(Template)]
#[template(path = "patient.html")]
struct PatientPage {
    layout: Layout,
    banner: Banner,
    tabs: Tabs,
    superseded_notice: Option<String>,
    death: Option<String>,
    address: String,
    gp: String,
}

/// Loads the record for a number in the path, following a superseded number to its current record.
enum Record {
    Current { patient: Patient, linked: Vec<String> },
    Moved { current: String, old: String },
}

/// A well-formed NHS number, or the same 404 an unknown one gets.
fn valid_number(number: &str) -> Result<String, AppError> {
    if !nhs_number::is_valid(number) {
        return Err(no_patient());
    }
    Ok(number.to_owned())
}

fn lookup_record(conn: &mut PgConnection, number: &str) -> Result<Record, AppError> {
    match patient::lookup_linked(conn, number)? {
        (Lookup::Found(p), linked) => Ok(Record::Current { patient: p, linked }),
        (Lookup::Superseded { old_number, current }, _) => {
            Ok(Record::Moved { current: current.nhs_number, old: old_number })
        }
        (Lookup::NotFound, _) => Err(no_patient()),
    }
}

fn no_patient() -> AppError {
    AppError::NotFound("There is no patient with that NHS number.".into())
}

/// Whether the alert tab is offered: B0264 + B0107 and something this role may see (CP-IS053 to
/// CP-IS056). Without B0107 nothing is even looked up, so the page cannot reveal that a record exists.
fn offers_alert_tab(
    conn: &mut PgConnection,
    role: &RoleProfile,
    patient: &Patient,
    linked: &[String],
) -> Result<bool, AppError> {
    if !role.may_view_alerts() {
        return Ok(false);
    }
    let today = dates::uk_date(Utc::now());
    let held = items::current_held(conn, linked)?;
    Ok(!alert::visible_items(held, patient, role.may_see_unborn_plans(), today).is_empty())
}

pub async fn show_patient(
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
    query: web::Query<RecordQuery>,
) -> Result<HttpResponse, AppError> {
    let role = principal.require(Permission::PatientTrace)?.clone();
    let number = valid_number(&path)?;
    // The record and whether it has a tab, on one connection.
    let found = db::run(&state.pool, move |conn| match lookup_record(conn, &number)? {
        Record::Moved { current, old } => Ok(Err((current, old))),
        Record::Current { patient, linked } => {
            let has_alert = offers_alert_tab(conn, &role, &patient, &linked)?;
            Ok(Ok((patient, linked, has_alert)))
        }
    })
    .await?;
    let (patient, linked, has_alert) = match found {
        Err((current, old)) => return Ok(see_other(&format!("/patients/{current}?superseded={old}"))),
        Ok(found) => found,
    };
    // Only a number that really was superseded into this record is named in the notice.
    let superseded_notice =
        query.superseded.as_ref().filter(|old| *old != &patient.nhs_number && linked.contains(old)).map(|old| {
            format!(
                "NHS number {} has been replaced by {}. This is the current record.",
                formatted(old),
                formatted(&patient.nhs_number)
            )
        });
    let page = PatientPage {
        layout: Layout::new("Patient details", Some(&principal), &session),
        tabs: tabs(&patient, has_alert),
        banner: Banner::new(&patient),
        superseded_notice,
        death: patient.death_date.map(format_date),
        address: if patient.restricted {
            "Not shown: this is a restricted record".into()
        } else {
            patient.shown_address().unwrap_or_else(|| "Not known".into())
        },
        gp: if patient.restricted {
            "Not shown: this is a restricted record".into()
        } else {
            patient.shown_gp().unwrap_or("Not known").to_owned()
        },
    };
    render(&page)
}

fn tabs(p: &Patient, has_alert: bool) -> Tabs {
    Tabs {
        details_href: format!("/patients/{}", p.nhs_number),
        alert_href: has_alert.then(|| format!("/patients/{}/child-care-alert", p.nhs_number)),
    }
}

pub struct AuthorityView {
    pub name: String,
    pub code: String,
    pub href: String,
    pub emergency_phone: String,
    pub office_hours_phone: String,
    pub items: Vec<(String, String, String)>,
}

pub struct HistoryView {
    pub at: String,
    pub name: String,
    pub job_role: String,
    pub organisation: String,
    /// The contact card: the viewer's e-mail and telephone, those recorded, and neither for a
    /// disabled account (CP-IS059).
    pub email: Option<String>,
    pub telephone: Option<String>,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    layout: Layout,
    banner: Banner,
    tabs: Tabs,
    authorities: Vec<AuthorityView>,
    history: Vec<HistoryView>,
}

/// Opening the Child Care Alert tab: a request of its own that records the access before it shows
/// anything (CP-IS058, CP-IS067). The access recorder (src/cpis/recorder.rs) reads what the tab
/// shows, with the other tabs opened meanwhile, records the access, and answers with the history
/// once the access is durable. Nothing is recorded when there is nothing to show.
pub async fn open_alert_tab(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    SignedIn(principal): SignedIn,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let role = principal.require(Permission::ViewAlerts)?.clone();
    // Opening the tab records an access and notifies the LA: another site must not trigger it.
    refuse_cross_site(&req)?;
    let number = valid_number(&path)?;
    let viewer = principal.viewer(&role);
    let unborn = role.may_see_unborn_plans();
    let actor = viewer.user_id.map_or(Actor::Anonymous, Actor::User);
    let opening = Opening {
        nhs_number: number,
        history_of: Vec::new(),
        viewer,
        actor,
        at: Utc::now(),
        exchange: None,
        read_ahead: None,
    };
    let (patient, tab) = match state.recorder.open_tab(opening, unborn).await? {
        TabAnswer::Opened { patient, tab } => (patient, tab),
        TabAnswer::Moved { current } => return Ok(see_other(&format!("/patients/{current}/child-care-alert"))),
        TabAnswer::NotFound => return Err(no_patient()),
        TabAnswer::NothingToShow => {
            return Err(AppError::NotFound("There is no child protection information to show for this patient.".into()))
        }
    };
    let page = AlertPage {
        layout: Layout::new("Child Care Alert", Some(&principal), &session),
        banner: Banner::new(&patient),
        tabs: tabs(&patient, true),
        authorities: authority_views(&tab),
        history: history_views(&tab),
    };
    render(&page)
}

fn authority_views(tab: &AlertTab) -> Vec<AuthorityView> {
    tab.authorities
        .iter()
        .map(|b| AuthorityView {
            name: b.authority.name().to_owned(),
            code: b.authority.code.clone(),
            href: format!("/local-authorities/{}", b.authority.code),
            emergency_phone: b.authority.emergency_phone.clone().unwrap_or_else(|| "Not provided".into()),
            office_hours_phone: b.authority.office_hours_phone.clone().unwrap_or_else(|| "Not provided".into()),
            items: b
                .items
                .iter()
                .map(|i| {
                    (
                        i.kind.display_name().to_owned(),
                        format_date(i.start),
                        i.end.map(format_date).unwrap_or_else(|| "None".into()),
                    )
                })
                .collect(),
        })
        .collect()
}

fn history_views(tab: &AlertTab) -> Vec<HistoryView> {
    tab.history
        .iter()
        .map(|h| {
            // Neither for a disabled account (CP-IS059).
            let (email, telephone) = h.contact().unwrap_or_default();
            HistoryView {
                at: format_uk_datetime(h.accessed_at),
                name: h.viewer_name.clone(),
                job_role: h.job_role_name.as_deref().unwrap_or(&h.job_role_code).to_owned(),
                organisation: h
                    .organisation_name
                    .as_deref()
                    .map(readable_org_name)
                    .unwrap_or_else(|| h.organisation_code.clone()),
                email: email.map(str::to_owned),
                telephone: telephone.map(str::to_owned),
            }
        })
        .collect()
}

/// Refuses a request a browser says came from another site (Fetch Metadata).
pub fn refuse_cross_site(req: &HttpRequest) -> Result<(), AppError> {
    match req.headers().get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(AppError::Forbidden(
            "For the patient's safety the Child Care Alert tab can only be opened from within this service.".into(),
        )),
    }
}
