//! The signed-in person and their selected role, loaded once per request by the authorisation
//! middleware and handed to handlers through the [`SignedIn`] extractor.

use std::future::{ready, Ready};

use actix_session::Session;
use actix_web::{dev::Payload, FromRequest, HttpMessage, HttpRequest};
use diesel::PgConnection;

use super::permission::{Decision, Permission};
use super::users::{self, Account, RoleProfile};
use crate::cpis::access::{Channel, Viewer};
use crate::error::AppError;

/// Session keys.
pub const ROLE_KEY: &str = "rid";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account: Account,
    pub role: Option<RoleProfile>,
    pub profile_count: usize,
}

impl Principal {
    /// Loads the account and the selected role; `None` for an unknown or disabled account (CP-IS059).
    pub fn load(conn: &mut PgConnection, user_id: i64, role_id: Option<i64>) -> diesel::QueryResult<Option<Principal>> {
        let Some(account) = users::account(conn, user_id)? else {
            return Ok(None);
        };
        if account.disabled_at.is_some() {
            return Ok(None);
        }
        let profiles = users::profiles(conn, user_id)?;
        let profile_count = profiles.len();
        let role = role_id.and_then(|rid| profiles.into_iter().find(|p| p.id == rid));
        Ok(Some(Principal { account, role, profile_count }))
    }

    /// Checks a permission again inside a handler (defence in depth beside the middleware).
    pub fn require(&self, permission: Permission) -> Result<&RoleProfile, AppError> {
        match permission.decide(Some(self)) {
            Decision::Allow => self.role.as_ref().ok_or_else(|| AppError::Forbidden("Choose a role first".into())),
            Decision::SignIn => Err(AppError::SignInRequired),
            Decision::ChooseRole => Err(AppError::Forbidden("Choose a role first".into())),
            Decision::Deny => Err(AppError::Forbidden(
                "Your selected role does not allow this. Change role if you have another one that does.".into(),
            )),
        }
    }

    /// The person as an access event records them (screens: the account's SDS user id).
    pub fn viewer(&self, role: &RoleProfile) -> Viewer {
        Viewer {
            viewer_id: self.account.sds_user_id.to_string(),
            user_id: Some(self.account.id),
            name: self.account.display_name.clone(),
            job_role_code: role.job_role_code.clone(),
            organisation_code: role.organisation_code().to_owned(),
            channel: Channel::Scra,
        }
    }
}

/// Extractor: the signed-in principal, or a redirect to sign in.
pub struct SignedIn(pub Principal);

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Ready<Result<SignedIn, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<Principal>().cloned().map(SignedIn).ok_or(AppError::SignInRequired))
    }
}

/// The user id and role id a session carries.
pub fn session_ids(session: &Session) -> (Option<i64>, Option<i64>) {
    let uid = session.get::<i64>(super::session_store::USER_ID_KEY).ok().flatten();
    let rid = session.get::<i64>(ROLE_KEY).ok().flatten();
    (uid, rid)
}
