//! One error type for the service. It renders the error page, maps database outages to 503 and logs
//! once, here at the boundary, without personal data.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::web::layout::{ErrorPage, Layout};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in: pages send the person to sign in.
    #[error("You need to sign in")]
    SignInRequired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("The service cannot reach its database just now")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    fn heading(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "There is a problem with the request",
            AppError::SignInRequired => "Sign in to continue",
            AppError::Forbidden(_) => "You do not have access to this page",
            AppError::NotFound(_) => "Page not found",
            AppError::Conflict(_) => "That could not be done",
            AppError::TooManyRequests(_) => "Too many attempts",
            AppError::Unavailable => "Sorry, the service is unavailable",
            AppError::Internal(_) => "Sorry, there is a problem with the service",
        }
    }

    /// What the person reads: never internal detail.
    fn public_message(&self) -> String {
        match self {
            AppError::Unavailable => "The service cannot reach its database just now. Try again in a few minutes; \
                 in an emergency follow your local child safeguarding procedure."
                .into(),
            AppError::Internal(_) => {
                "Something went wrong on our side. Try again; if it keeps happening, tell the service desk.".into()
            }
            other => other.to_string(),
        }
    }
}

/// For the outermost middleware: an error that escaped every handler, as the answer it should
/// give. Handlers and extractors answer with responses; what still arrives as an error comes from
/// the session layer (actix-session), which turns any failure of its store into a bare, empty
/// 500. The store is PostgreSQL, and its only failures are the database's (it cannot be reached,
/// or the connection was cut mid-request), so such a 500 becomes [`AppError::Unavailable`]: the
/// 503 page with Retry-After, telling a person what is wrong and to try again (issue 8). Other
/// errors are returned as they are.
pub fn escaped_error(e: actix_web::Error) -> actix_web::Error {
    if e.as_response_error().status_code() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(error = %e, "the session store failed");
        AppError::Unavailable.into()
    } else {
        e
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> AppError {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => AppError::NotFound("Not found".into()),
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _) => AppError::Unavailable,
            // Text PostgreSQL cannot hold (a NUL character, bytes that are not UTF-8) came in.
            Error::DatabaseError(_, ref info)
                if info.message().contains("invalid byte sequence")
                    || info.message().contains("null character not permitted") =>
            {
                AppError::BadRequest(
                    "The request contains a character that is not allowed, such as a NUL character. Remove it and try again."
                        .into(),
                )
            }
            Error::DatabaseError(_, ref info)
                if info.message().contains("terminating connection")
                    || info.message().contains("server closed the connection") =>
            {
                AppError::Unavailable
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(_: diesel::r2d2::PoolError) -> AppError {
        AppError::Unavailable
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> AppError {
        AppError::Internal(format!("template: {e}"))
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::SignInRequired => StatusCode::SEE_OTHER,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AppError::SignInRequired => {
                return HttpResponse::SeeOther().insert_header((header::LOCATION, "/sign-in")).finish()
            }
            AppError::Internal(detail) => tracing::error!(error = %detail, "internal error"),
            AppError::Unavailable => tracing::warn!("database unavailable"),
            _ => {}
        }
        let status = self.status_code();
        let page = ErrorPage {
            layout: Layout::bare(self.heading()),
            heading: self.heading().into(),
            message: self.public_message(),
            status: status.as_u16(),
        };
        let body = page.render().unwrap_or_else(|_| self.public_message());
        let mut builder = HttpResponse::build(status);
        builder.content_type("text/html; charset=utf-8");
        match self {
            AppError::Unavailable => {
                builder.insert_header((header::RETRY_AFTER, "30"));
            }
            AppError::TooManyRequests(_) => {
                builder.insert_header((header::RETRY_AFTER, "600"));
            }
            _ => {}
        }
        builder.body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_store_failure_is_the_503_page() {
        // What actix-session returns when its store fails: an opaque 500.
        let e: actix_web::Error = actix_web::error::InternalError::from_response(
            "Failed to load the session state",
            HttpResponse::InternalServerError().finish(),
        )
        .into();
        let res = escaped_error(e).error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("30"));
    }

    #[test]
    fn other_escaped_errors_keep_their_status() {
        let e: actix_web::Error = actix_web::error::ErrorNotFound("no such thing");
        assert_eq!(escaped_error(e).error_response().status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn lost_connections_are_unavailable() {
        use diesel::result::{DatabaseErrorKind, Error};
        let closed = Error::DatabaseError(DatabaseErrorKind::ClosedConnection, Box::new("gone".to_owned()));
        assert!(matches!(AppError::from(closed), AppError::Unavailable));
        let terminated = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("terminating connection due to administrator command".to_owned()),
        );
        assert!(matches!(AppError::from(terminated), AppError::Unavailable));
        assert_eq!(AppError::Unavailable.status_code(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
