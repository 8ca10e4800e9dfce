//! Synchronizer tokens for every state-changing form, sign-in included (OWASP ASVS 4.2.2). The token
//! lives in the server-side session; forms carry it in a hidden `csrf_token` field, and
//! [`CsrfForm`] refuses a form whose token does not match. The middleware adds an Origin and
//! Sec-Fetch-Site check on every unsafe method.

use std::future::Future;
use std::pin::Pin;

use actix_session::{Session, SessionExt};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::error::AppError;

const CSRF_KEY: &str = "csrf";

/// The session's token, created on first use.
pub fn token(session: &Session) -> String {
    if let Ok(Some(t)) = session.get::<String>(CSRF_KEY) {
        return t;
    }
    let t = super::random_key();
    let _ = session.insert(CSRF_KEY, &t);
    t
}

pub fn verify(session: &Session, submitted: &str) -> Result<(), AppError> {
    let expected = session.get::<String>(CSRF_KEY).ok().flatten().unwrap_or_default();
    if !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "This form has expired or did not come from this service. Go back, reload the page and try again.".into(),
        ))
    }
}

/// A form that carries a CSRF token.
pub trait HasCsrfToken {
    fn csrf_token(&self) -> &str;
}

/// Extractor: a urlencoded form whose CSRF token has been checked against the session.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + HasCsrfToken + 'static> FromRequest for CsrfForm<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<CsrfForm<T>, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = req.get_session();
        let form = web::Form::<T>::from_request(req, payload);
        Box::pin(async move {
            let form = form.await.map_err(|e| {
                AppError::BadRequest(format!("The form could not be read: {e}. Go back and try again."))
            })?;
            verify(&session, form.csrf_token())?;
            Ok(CsrfForm(form.into_inner()))
        })
    }
}

/// A form that carries nothing but its CSRF token (a button: sign out, disable, revoke...).
#[derive(serde::Deserialize)]
pub struct ButtonForm {
    csrf_token: String,
}

impl HasCsrfToken for ButtonForm {
    fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
}

/// Declares a form struct's CSRF field.
#[macro_export]
macro_rules! csrf_form {
    ($t:ty) => {
        impl $crate::auth::csrf::HasCsrfToken for $t {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        }
    };
}
