//! `/cpis/FHIR/R4`: messages 03 and 04 for NHS systems, after NHS England's CP-IS FHIR API
//! (messages.md, "03/04 NHS Query and Response"; CP-IS013, CP-IS040, CP-NHS002, CP-NHS010).
//!
//! Every search: the bearer token of an NHS system (CP-NHS018) -> the per-token rate limit -> the
//! end-user headers (CP-NHS006, CP-NHS019; the organisation must be the token's) -> the patient
//! identifier -> PDS (a superseded number leads to the current record, whose linked numbers are
//! all searched; an invalidated one is refused) -> what the end user's role may see today.
//! Answers are `application/fhir+json`; errors are OperationOutcome; `TraceID` is echoed on every
//! answer. Nothing personal is logged: the request log names the route pattern, never the query.

pub mod auditevent;
pub mod careteam;
pub mod headers;
pub mod metadata;
pub mod outcome;
pub mod rate_limit;

use std::time::Instant;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use self::headers::EndUser;
use self::outcome::{ApiError, FHIR_JSON};
use super::bearer_token;
use crate::app::AppState;
use crate::audit::Actor;
use crate::auth::session_cache::SessionCache;
use crate::cpis::access::{Channel, Viewer};
use crate::cpis::alert;
use crate::cpis::items::{self, HeldItem};
use crate::cpis::recorder::{self, FhirExchange, TabAnswer};
use crate::db;
use crate::domain::{dates, nhs_number, roles};
use crate::mailbox::tokens::{self, Endpoint};
use crate::pds::patient::{self, Lookup};
use crate::pds::Patient;

/// Where the API lives.
pub const BASE: &str = "/cpis/FHIR/R4";
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const SNOMED: &str = "http://snomed.info/sct";
/// The search parameter both resources take.
pub const PATIENT_IDENTIFIER: &str = "patient:identifier";

/// A search that passed every check but the patient's.
#[derive(Clone)]
struct Search {
    token_id: i64,
    ods_code: String,
    user: EndUser,
    unscheduled: bool,
    nhs_number: String,
}

/// Who the number names, as PDS knows it.
enum Subject {
    /// PDS does not know the number: an empty answer.
    Unknown,
    /// The number (or the record it was superseded into) is invalidated: 400.
    Invalidated,
    Known {
        patient: Box<Patient>,
        linked: Vec<String>,
    },
}

/// What a search asks, read from the request before the database is: the token, and each header
/// and parameter as read. Their refusals are given in [`check`]'s order, the token's first.
struct Asked {
    /// The token's hash ([`tokens::hash`]): the token itself is not kept.
    token: Vec<u8>,
    user: Result<EndUser, ApiError>,
    unscheduled: Result<bool, ApiError>,
    nhs_number: Result<String, ApiError>,
}

fn asked(req: &HttpRequest) -> Result<Asked, ApiError> {
    let Some(token) = bearer_token(req).map(tokens::hash) else {
        return Err(ApiError::unauthenticated("Send the NHS system's endpoint token as Authorization: Bearer <token>"));
    };
    Ok(Asked {
        token,
        user: headers::end_user(req),
        unscheduled: headers::unscheduled(req),
        nhs_number: patient_identifier(req),
    })
}

/// Every check before the database is asked about the patient, on the connection of the search
/// itself (no checkout of its own; no round trip at all when this instance remembers the token,
/// [`tokens::authenticate_remembered`]): [`admit`]'s. A refusal is the inner error.
fn check(
    conn: &mut diesel::PgConnection,
    sessions: Option<&SessionCache>,
    asked: &Asked,
) -> Result<Result<Search, ApiError>, crate::error::AppError> {
    Ok(admit(tokens::authenticate_remembered(conn, sessions, &asked.token)?, asked))
}

/// The checks of a search whose token was found (or not), in this order: the token (401, or 403
/// for a local authority's), its rate (429), then [`search_of`]'s.
fn admit(endpoint: Option<Endpoint>, asked: &Asked) -> Result<Search, ApiError> {
    let (token_id, ods_code) = match endpoint {
        Some(Endpoint::NhsSystem { token_id, ods_code }) => (token_id, ods_code),
        Some(Endpoint::LocalAuthority { .. }) => {
            return Err(ApiError::forbidden(
                "This is a local authority's mailbox token; the FHIR API needs an NHS system's endpoint token",
            ))
        }
        None => return Err(ApiError::unauthenticated("The endpoint token is not valid or has been revoked")),
    };
    if let Err(wait) = rate_limit::take(&asked.token, Instant::now()) {
        return Err(ApiError::throttled(rate_limit::retry_after_secs(wait)));
    }
    search_of(asked, token_id, ods_code)
}

/// The checks after the token's, in order: the end user's headers, their organisation against the
/// token's (403), the patient's number (400).
fn search_of(asked: &Asked, token_id: i64, ods_code: String) -> Result<Search, ApiError> {
    let user = asked.user.clone()?;
    let unscheduled = asked.unscheduled.clone()?;
    if !user.organisation.eq_ignore_ascii_case(&ods_code) {
        return Err(ApiError::forbidden(format!(
            "This endpoint token is registered for organisation {ods_code}; {} must name that organisation",
            headers::END_USER_ORGANISATION
        )));
    }
    let nhs_number = asked.nhs_number.clone()?;
    Ok(Search { token_id, ods_code, user, unscheduled, nhs_number })
}

/// The NHS number of `patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}`.
fn patient_identifier(req: &HttpRequest) -> Result<String, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|_| ApiError::invalid_search("The query string could not be read"))?
        .into_inner();
    let values: Vec<&String> = pairs.iter().filter(|(k, _)| k == PATIENT_IDENTIFIER).map(|(_, v)| v).collect();
    let example = format!("{PATIENT_IDENTIFIER}={NHS_NUMBER_SYSTEM}|9434765919");
    let value = match values.as_slice() {
        [one] => one.trim(),
        [] => return Err(ApiError::invalid_search(format!("The search needs the patient's NHS number: {example}"))),
        _ => return Err(ApiError::invalid_search(format!("Give {PATIENT_IDENTIFIER} once: {example}"))),
    };
    let Some((system, number)) = value.rsplit_once('|') else {
        return Err(ApiError::invalid_search(format!(
            "{PATIENT_IDENTIFIER} must name the identifier system and the NHS number: {example}"
        )));
    };
    if system != NHS_NUMBER_SYSTEM {
        return Err(ApiError::invalid_search(format!("The identifier system must be {NHS_NUMBER_SYSTEM}: {example}")));
    }
    if number.len() != 10 || !number.bytes().all(|b| b.is_ascii_digit()) || !nhs_number::is_valid(number) {
        return Err(ApiError::invalid_search(
            "The NHS number is not valid: it must be 10 digits with a correct modulus 11 check digit",
        ));
    }
    Ok(number.to_owned())
}

/// The subject of a search, and what its numbers hold before the role's rules
/// ([`items::lookup_held`]; nothing unless it is known).
fn resolve(conn: &mut diesel::PgConnection, number: &str) -> Result<(Subject, Vec<HeldItem>), crate::error::AppError> {
    Ok(match items::lookup_held(conn, number)? {
        (Lookup::Found(p) | Lookup::Superseded { current: p, .. }, linked, held) => {
            (Subject::Known { patient: Box::new(p), linked }, held)
        }
        (Lookup::NotFound, ..) if patient::find(conn, number)?.is_some() => (Subject::Invalidated, Vec::new()),
        (Lookup::NotFound, ..) => (Subject::Unknown, Vec::new()),
    })
}

/// The number an answer names: the current record's (a superseded number leads to it), or the
/// number asked about when PDS does not know it; an invalidated number is an error.
fn current_number(subject: &Subject, asked: &str) -> Result<String, ApiError> {
    match subject {
        Subject::Invalidated => Err(invalidated()),
        Subject::Known { patient, .. } => Ok(patient.nhs_number.clone()),
        Subject::Unknown => Ok(asked.to_owned()),
    }
}

fn invalidated() -> ApiError {
    ApiError::invalid_search(
        "This NHS number has been invalidated and names no patient; trace the patient again to find their \
         current NHS number",
    )
}

/// The absolute URL of this request, for the Bundle's self link.
fn self_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), req.uri())
}

fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn searchset(req: &HttpRequest, total: usize, entries: Vec<Value>, now: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "lastUpdated": now.to_rfc3339_opts(SecondsFormat::Secs, true) },
        "type": "searchset",
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "total": total,
        "link": [{ "relation": "self", "url": self_url(req) }],
        "entry": entries,
    })
}

/// The answer, with `TraceID` echoed whatever happened.
fn finish(req: &HttpRequest, result: Result<Value, ApiError>) -> HttpResponse {
    let mut res = match result {
        Ok(body) => HttpResponse::build(StatusCode::OK)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type(FHIR_JSON)
            .body(body.to_string()),
        Err(e) => e.response(),
    };
    if let Some(trace) = headers::trace_id(req) {
        res.headers_mut().insert(headers::trace_id_name(), trace);
    }
    res
}

/// `GET /cpis/FHIR/R4/CareTeam?patient:identifier=...` (messages 03 and 04).
pub async fn search_care_team(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = care_team(&req, &state).await;
    finish(&req, result)
}

async fn care_team(req: &HttpRequest, state: &AppState) -> Result<Value, ApiError> {
    let (asked, trace, now) = (asked(req)?, trace(req), Utc::now());
    // The token remembered (as it is after a system's first search), the checks need no
    // connection, and an unscheduled search goes straight to the access recorder's tab thread,
    // which reads the record with the other tabs and searches queued, in one statement, then
    // records the access and logs the exchange in one transaction (CP-IS068, CP-IS073, CP-IS061;
    // src/cpis/recorder.rs; issue 8: a statement per search and one of the recorder's before).
    let admitted = match tokens::recall(state.sessions.as_deref(), &asked.token) {
        tokens::Recalled::Live(endpoint) => Some(admit(Some(endpoint), &asked)?),
        tokens::Recalled::Unknown(_) => None,
    };
    if let Some(search) = admitted.as_ref().filter(|s| s.unscheduled) {
        let opening = fhir_opening(search, search.nhs_number.clone(), trace.clone(), now);
        let exchange = opening.exchange.clone();
        let may_see_unborn = roles::may_see_unborn_plans(&search.user.job_role);
        match state.recorder.open_tab(opening, may_see_unborn).await? {
            TabAnswer::Opened { patient, tab } => {
                let entries = careteam::entries(Some(&tab), &patient.nhs_number, dates::uk_date(now));
                return Ok(searchset(req, entries.len(), entries, now));
            }
            // A current record holding nothing this role may see (most children searched): an
            // empty answer, its exchange logged (CP-IS061), nothing recorded (CP-IS068).
            TabAnswer::NothingToShow => {
                db::run(&state.pool, move |conn| {
                    exchange.iter().try_for_each(|e| e.log(conn, now)).map_err(Into::into)
                })
                .await?;
                return Ok(searchset(req, 0, Vec::new(), now));
            }
            // Nothing was recorded or logged (a superseded, unknown or invalidated number): the
            // search, its checks passed, is looked up below on a connection.
            TabAnswer::Moved { .. } | TabAnswer::NotFound => {}
        }
    }
    // Otherwise what the role may see is read here, then, if anything, the access recorder
    // records the access and logs the exchange in one transaction (CP-IS047 by the child's lock).
    let (names, sessions) = (state.names.clone(), state.sessions.clone());
    let looked = db::run(&state.pool, move |conn| {
        let search = match admitted.clone() {
            Some(search) => search,
            None => match check(conn, sessions.as_deref(), &asked)? {
                Ok(search) => search,
                Err(refused) => return Ok(Err(refused)),
            },
        };
        look_up(conn, &names, search, trace.as_deref(), now, Opening::Record)
    })
    .await??;
    let Found { search, subject, tab } = match looked {
        LookedUp::Answered(found) => found,
        LookedUp::ToRecord { found, authorities, opening } => {
            let tab = state.recorder.open(*opening).await?.into_tab(authorities);
            Found { tab: Some(tab), ..found }
        }
    };
    let current = current_number(&subject, &search.nhs_number)?;
    let entries = careteam::entries(tab.as_ref(), &current, dates::uk_date(now));
    Ok(searchset(req, entries.len(), entries, now))
}

/// `GET /cpis/FHIR/R4/AuditEvent?patient:identifier=...`: the access history; never an access.
pub async fn search_audit_event(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = audit_event(&req, &state).await;
    finish(&req, result)
}

async fn audit_event(req: &HttpRequest, state: &AppState) -> Result<Value, ApiError> {
    let (asked, trace, now) = (asked(req)?, trace(req), Utc::now());
    let (names, sessions) = (state.names.clone(), state.sessions.clone());
    let looked = db::run(&state.pool, move |conn| match check(conn, sessions.as_deref(), &asked)? {
        Ok(search) => look_up(conn, &names, search, trace.as_deref(), now, Opening::ReadOnly),
        Err(refused) => Ok(Err(refused)),
    })
    .await??;
    let LookedUp::Answered(Found { search, subject, tab }) = looked else {
        return Err(ApiError::from(crate::error::AppError::Internal("a read-only search asked to record".into())));
    };
    let current = current_number(&subject, &search.nhs_number)?;
    // Same rules as CareTeam: nothing this role may see, no history either.
    let history = tab.map(|t| t.history).unwrap_or_default();
    let entries = auditevent::entries(&history, &current);
    Ok(searchset(req, history.len(), entries, now))
}

/// The caller's TraceID, as text, for the transmission log.
fn trace(req: &HttpRequest) -> Option<String> {
    headers::trace_id(req).and_then(|t| t.to_str().ok().map(str::to_owned))
}

/// Whether a search may record an access (CareTeam) or only reads (AuditEvent).
#[derive(Clone, Copy, PartialEq)]
enum Opening {
    Record,
    ReadOnly,
}

/// A search as checked, on one connection: the patient, and what the tab holds for this role.
/// When `opening` allows it and the search is unscheduled, an access is to be recorded if the
/// role may see anything: that is handed back ([`LookedUp::ToRecord`]) for the access recorder,
/// which logs the exchange with it. Otherwise the exchange is logged here (CP-IS061).
fn look_up(
    conn: &mut diesel::PgConnection,
    names: &crate::cpis::reference_names::ReferenceNames,
    search: Search,
    trace: Option<&str>,
    now: DateTime<Utc>,
    opening: Opening,
) -> Result<Result<LookedUp, ApiError>, crate::error::AppError> {
    let may_see_unborn = roles::may_see_unborn_plans(&search.user.job_role);
    let (subject, held) = resolve(conn, &search.nhs_number)?;
    let tab = match &subject {
        Subject::Known { patient, .. } if search.unscheduled && opening == Opening::Record => {
            let authorities = alert::authorities(held, patient, may_see_unborn, now);
            if !authorities.is_empty() {
                let opening = fhir_opening(&search, patient.nhs_number.clone(), trace.map(str::to_owned), now);
                let found = Found { search, subject, tab: None };
                return Ok(Ok(LookedUp::ToRecord { found, authorities, opening: Box::new(opening) }));
            }
            None
        }
        Subject::Known { patient, linked } => alert::read(conn, names, patient, linked, held, may_see_unborn, now)?,
        _ => None,
    };
    let exchange = FhirExchange { ods_code: search.ods_code.clone(), trace_id: trace.map(str::to_owned) };
    exchange.log(conn, now)?;
    Ok(Ok(LookedUp::Answered(Found { search, subject, tab })))
}

/// The access a CareTeam search records of the child `nhs_number`, with its exchange (logged
/// with it, CP-IS061).
fn fhir_opening(search: &Search, nhs_number: String, trace: Option<String>, now: DateTime<Utc>) -> recorder::Opening {
    let viewer = Viewer {
        viewer_id: search.user.id.clone(),
        user_id: None,
        name: search.user.name.clone(),
        job_role_code: search.user.job_role.clone(),
        organisation_code: search.ods_code.clone(),
        channel: Channel::Fhir,
    };
    recorder::Opening {
        nhs_number,
        // CareTeam shows no access history: none is read.
        history_of: Vec::new(),
        viewer,
        actor: Actor::NhsSystem(search.token_id),
        at: now,
        exchange: Some(FhirExchange { ods_code: search.ods_code.clone(), trace_id: trace }),
        // Read by the recorder with the rest of its batch.
        read_ahead: None,
    }
}

/// What [`look_up`] found: the search as checked, the patient, and what the tab holds for the role.
struct Found {
    search: Search,
    subject: Subject,
    tab: Option<alert::AlertTab>,
}

/// A search answered on its connection, or an access still to be recorded before the answer.
enum LookedUp {
    Answered(Found),
    ToRecord { found: Found, authorities: Vec<alert::AuthorityBlock>, opening: Box<recorder::Opening> },
}

/// `GET /cpis/FHIR/R4/metadata`: the CapabilityStatement; public.
pub async fn capability_statement(req: HttpRequest) -> HttpResponse {
    let body = metadata::capability_statement(&base_url(&req));
    finish(&req, Ok(body))
}
