//! Errors as FHIR OperationOutcome resources, with the Spine error codes the contract names
//! (messages.md, 03/04: INVALID_SEARCH_DATA, PRECONDITION_FAILED, ACCESS_DENIED).

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use serde_json::json;

use crate::error::AppError;

/// The code system of the Spine error codes carried in `issue[0].details.coding[0]`.
pub const SPINE_ERROR_CODES: &str = "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode";
/// The media type of every answer of the FHIR API.
pub const FHIR_JSON: &str = "application/fhir+json";

/// A refusal or failure, ready to become an OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The FHIR issue type (`invalid`, `security`, `forbidden`, `throttled`, ...).
    pub issue_code: &'static str,
    /// The Spine error code and its display.
    pub spine_code: &'static str,
    pub spine_display: &'static str,
    /// What the integrator should do, in a sentence. Never personal data.
    pub diagnostics: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        issue_code: &'static str,
        spine_code: &'static str,
        spine_display: &'static str,
        diagnostics: impl Into<String>,
    ) -> ApiError {
        ApiError { status, issue_code, spine_code, spine_display, diagnostics: diagnostics.into(), retry_after: None }
    }

    /// 400 INVALID_SEARCH_DATA: the patient identifier is missing, malformed or not a usable number.
    pub fn invalid_search(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", "INVALID_SEARCH_DATA", "Invalid search data", diagnostics)
    }

    /// 400 PRECONDITION_FAILED: a header is missing or bad.
    pub fn precondition(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", "PRECONDITION_FAILED", "Precondition failed", diagnostics)
    }

    /// 401 ACCESS_DENIED: no token, or one that is unknown or revoked.
    pub fn unauthenticated(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "security", "ACCESS_DENIED", "Access has been denied", diagnostics)
    }

    /// 403 ACCESS_DENIED: a valid token that may not do this.
    pub fn forbidden(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "ACCESS_DENIED", "Access has been denied", diagnostics)
    }

    /// 429: the token's rate limit is spent; try again after `retry_after` seconds.
    pub fn throttled(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "TOO_MANY_REQUESTS",
                "Too many requests",
                format!(
                    "This endpoint token has sent more requests than its rate limit allows; wait {retry_after} \
                     second(s) (the Retry-After header) and send the request again"
                ),
            )
        }
    }

    /// A failure of the service itself. Logged once at the boundary (without content) by
    /// `AppError`'s own response; the integrator reads a sentence only.
    pub fn from_app(e: &AppError) -> ApiError {
        use actix_web::ResponseError;
        match e {
            AppError::Unavailable => {
                let _ = e.error_response();
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "SERVICE_UNAVAILABLE",
                    "Service unavailable",
                    "The service cannot reach its database just now; try again shortly and, in an emergency, \
                     follow your local child safeguarding procedure",
                )
            }
            AppError::BadRequest(m) => ApiError::invalid_search(m.clone()),
            AppError::Forbidden(m) => ApiError::forbidden(m.clone()),
            _ => {
                let _ = e.error_response();
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "INTERNAL_SERVER_ERROR",
                    "Internal server error",
                    "The service could not process this request; try again, and if it keeps failing tell the \
                     CP-IS service desk",
                )
            }
        }
    }

    /// The OperationOutcome resource.
    pub fn outcome(&self) -> serde_json::Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": self.issue_code,
                "details": {
                    "coding": [{
                        "system": SPINE_ERROR_CODES,
                        "code": self.spine_code,
                        "display": self.spine_display,
                    }]
                },
                "diagnostics": self.diagnostics,
            }]
        })
    }

    pub fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store")).content_type(FHIR_JSON).body(self.outcome().to_string())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        ApiError::from_app(&e)
    }
}
