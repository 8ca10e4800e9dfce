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
