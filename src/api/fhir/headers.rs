//! The request headers of the FHIR API (messages.md, 03/04; CP-NHS006, CP-NHS019): the end user as
//! the calling system's own access control knows them, `IsUnscheduledAccessEvent` and `TraceID`.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::HttpRequest;

use super::outcome::ApiError;

pub const END_USER_ID: &str = "NHSD-End-User-ID";
pub const END_USER_NAME: &str = "NHSD-End-User-Name";
pub const END_USER_ROLE: &str = "NHSD-End-User-Role";
pub const END_USER_ORGANISATION: &str = "NHSD-End-User-Organisation-ODS";
pub const UNSCHEDULED: &str = "IsUnscheduledAccessEvent";
pub const TRACE_ID: &str = "TraceID";

/// The longest user id and name the access history stores.
const MAX_TEXT: usize = 200;
/// The longest job role (an SDS triple such as "S8000:G8000:R8001") and ODS code accepted.
const MAX_CODE: usize = 20;

/// The person at the calling system, from the four mandatory headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    pub id: String,
    pub name: String,
    /// The job role code alone ("R8000"), also when the header held an SDS triple.
    pub job_role: String,
    /// As sent; the caller checks it is the token's organisation.
    pub organisation: String,
}

/// A header's value as text: `None` when absent; `Err` when it is not text.
fn text(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(name) else {
        return Ok(None);
    };
    let s = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::precondition(format!("The {name} header is not valid UTF-8 text")))?;
    Ok(Some(s.trim().to_owned()))
}

fn mandatory(req: &HttpRequest, name: &str, max: usize) -> Result<String, ApiError> {
    let value = text(req, name)?.unwrap_or_default();
    if value.is_empty() {
        return Err(ApiError::precondition(format!(
            "The {name} header is missing or empty; every request must name its end user with NHSD-End-User-ID, \
             NHSD-End-User-Name, NHSD-End-User-Role and NHSD-End-User-Organisation-ODS"
        )));
    }
    if value.chars().count() > max {
        return Err(ApiError::precondition(format!("The {name} header is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::precondition(format!("The {name} header contains control characters")));
    }
    Ok(value)
}

/// "R8000", or an SDS triple whose last part is the job role ("S8000:G8000:R8000").
fn job_role_code(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.split(':').collect();
    let code_like =
        |p: &str| p.len() == 5 && p.as_bytes()[0].is_ascii_uppercase() && p.bytes().skip(1).all(|b| b.is_ascii_digit());
    let last = *parts.last()?;
    (parts.len() <= 3 && parts.iter().all(|p| code_like(p)) && last.starts_with('R')).then(|| last.to_owned())
}

/// The four end-user headers, all mandatory.
pub fn end_user(req: &HttpRequest) -> Result<EndUser, ApiError> {
    let id = mandatory(req, END_USER_ID, MAX_TEXT)?;
    let name = mandatory(req, END_USER_NAME, MAX_TEXT)?;
    let role = mandatory(req, END_USER_ROLE, MAX_CODE)?;
    let organisation = mandatory(req, END_USER_ORGANISATION, MAX_CODE)?;
    let job_role = job_role_code(&role).ok_or_else(|| {
        ApiError::precondition(format!(
            "The {END_USER_ROLE} header must be the end user's SDS job role code, e.g. R8000 (or an SDS role \
             such as S8000:G8000:R8000)"
        ))
    })?;
    if !organisation.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::precondition(format!(
            "The {END_USER_ORGANISATION} header must be an ODS organisation code, e.g. RJZ"
        )));
    }
    Ok(EndUser { id, name, job_role, organisation })
}

/// `IsUnscheduledAccessEvent`: `true` (the default) or `false`, nothing else.
pub fn unscheduled(req: &HttpRequest) -> Result<bool, ApiError> {
    match text(req, UNSCHEDULED)?.as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(ApiError::precondition(format!(
            "The {UNSCHEDULED} header must be true or false (it defaults to true when absent)"
        ))),
    }
}

/// The `TraceID` to echo on the answer, whatever it is.
pub fn trace_id(req: &HttpRequest) -> Option<HeaderValue> {
    req.headers().get(TRACE_ID).cloned()
}

/// The header name `TraceID` on answers.
pub fn trace_id_name() -> HeaderName {
    HeaderName::from_static("traceid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_roles_are_bare_codes_or_sds_triples() {
        assert_eq!(job_role_code("R8000").as_deref(), Some("R8000"));
        assert_eq!(job_role_code("S8000:G8000:R0680").as_deref(), Some("R0680"));
        assert_eq!(job_role_code("R800"), None);
        assert_eq!(job_role_code("doctor"), None);
        assert_eq!(job_role_code("S8000:G8000"), None);
    }
}
