//! The signed-in person and their selected role, loaded once per request by the authorisation
//! middleware and handed to handlers through the [`SignedIn`] extractor.

use std::future::{ready, Ready};

use actix_session::Session;
use actix_web::{dev::Payload, FromRequest, HttpMessage, HttpRequest};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::permission::{Decision, Permission};
use super::users::{Account, RoleProfile};
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
    /// One query: the account's rows as `user_principal` builds them (migration 000024), the
    /// same rows the session store reads with the session.
    pub fn load(conn: &mut PgConnection, user_id: i64, role_id: Option<i64>) -> diesel::QueryResult<Option<Principal>> {
        #[derive(QueryableByName)]
        struct Rows {
            #[diesel(sql_type = Text)]
            rows: String,
        }
        let found: Rows =
            diesel::sql_query("SELECT user_principal($1) AS rows").bind::<BigInt, _>(user_id).get_result(conn)?;
        let rows: Vec<PrincipalRow> =
            serde_json::from_str(&found.rows).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
        Ok(Principal::from_rows(rows, role_id))
    }

    /// The principal the session store read with the session itself (the same rows as [`load`],
    /// in the same statement as the session: one round trip per page). `None` when the session
    /// does not carry them (then [`load`] them); `Some(None)` for an unknown or disabled account.
    /// The rows are used only when they are the session user's own.
    ///
    /// [`load`]: Principal::load
    pub fn from_session(session: &Session, user_id: i64, role_id: Option<i64>) -> Option<Option<Principal>> {
        Principal::from_json(session.entries().get(PRINCIPAL_KEY)?, user_id, role_id)
    }

    /// [`from_session`](Principal::from_session) from the entry's text (a JSON array of rows).
    pub fn from_json(rows: &str, user_id: i64, role_id: Option<i64>) -> Option<Option<Principal>> {
        let rows: Vec<PrincipalRow> = serde_json::from_str(rows).ok()?;
        if rows.first().is_some_and(|r| r.id != user_id) {
            return None;
        }
        Some(Principal::from_rows(rows, role_id))
    }

    /// The principal from the rows of `user_principal` (one per role profile, or one without).
    fn from_rows(rows: Vec<PrincipalRow>, role_id: Option<i64>) -> Option<Principal> {
        let first = rows.first()?;
        if first.disabled_at.is_some() {
            return None;
        }
        let account = Account {
            id: first.id,
            username: first.username.clone(),
            sds_user_id: first.sds_user_id,
            display_name: first.display_name.clone(),
            must_change_password: first.must_change_password,
            disabled_at: first.disabled_at,
        };
        let profiles: Vec<RoleProfile> = rows
            .into_iter()
            .filter_map(|r| {
                Some(RoleProfile {
                    id: r.profile_id?,
                    nhs_org_code: r.nhs_org_code,
                    la_code: r.la_code,
                    organisation_name: r.organisation_name?,
                    job_role_code: r.job_role_code?,
                    job_role_name: r.job_role_name?,
                    activity_codes: r.activity_codes,
                })
            })
            .collect();
        let profile_count = profiles.len();
        let role = role_id.and_then(|rid| profiles.into_iter().find(|p| p.id == rid));
        Some(Principal { account, role, profile_count })
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

/// The session entry under which the session store hands over the principal's rows, read in the
/// same statement as the session (src/auth/session_store.rs). The store never saves it.
pub const PRINCIPAL_KEY: &str = "_principal";

/// One row of `user_principal`'s array (migration 000024): the account, and one role profile.
#[derive(serde::Deserialize)]
struct PrincipalRow {
    id: i64,
    username: String,
    sds_user_id: uuid::Uuid,
    display_name: String,
    must_change_password: bool,
    disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    profile_id: Option<i64>,
    nhs_org_code: Option<String>,
    la_code: Option<String>,
    organisation_name: Option<String>,
    job_role_code: Option<String>,
    job_role_name: Option<String>,
    activity_codes: Vec<String>,
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
