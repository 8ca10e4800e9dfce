//! The machine interfaces: the mailbox API for local authorities (messages 01, 02, 05, 06) and,
//! the FHIR API for NHS systems (messages 03 and 04). Callers authenticate with an
//! endpoint token, not a session.

pub mod fhir;
pub mod mailbox;

use actix_web::http::header;
use actix_web::HttpRequest;

/// The bearer token of a request, if it carries one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty() && t.len() <= 200)
}
