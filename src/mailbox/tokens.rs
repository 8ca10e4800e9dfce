//! Endpoint tokens (CP-SC025, CP-NHS018): printed once when issued; only a SHA-256 is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor, Event};
use crate::auth::session_cache::{SessionCache, Ticket};
use crate::error::AppError;
use crate::schema::{endpoint_tokens, local_authorities, nhs_organisations};

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    LocalAuthority { token_id: i64, la_code: String },
    NhsSystem { token_id: i64, ods_code: String },
}

impl Endpoint {
    pub fn token_id(&self) -> i64 {
        match self {
            Endpoint::LocalAuthority { token_id, .. } | Endpoint::NhsSystem { token_id, .. } => *token_id,
        }
    }
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token(prefix: &str) -> String {
    format!("{prefix}_{}", crate::auth::random_key())
}

/// Issues a mailbox token for an LA and returns it (the only time it is seen).
pub fn issue_la(conn: &mut PgConnection, actor: Actor, la_code: &str, label: &str) -> Result<String, AppError> {
    issue(conn, actor, Holder::LocalAuthority(la_code), label)
}

/// Issues a FHIR API token for an NHS system at an organisation.
pub fn issue_nhs(conn: &mut PgConnection, actor: Actor, ods_code: &str, label: &str) -> Result<String, AppError> {
    issue(conn, actor, Holder::NhsOrganisation(ods_code), label)
}

/// Whom a token is issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    LocalAuthority(&'a str),
    NhsOrganisation(&'a str),
}

fn issue(conn: &mut PgConnection, actor: Actor, holder: Holder<'_>, label: &str) -> Result<String, AppError> {
    conn.transaction(|conn| {
        let (kind, prefix, la_code, ods_code, known) = match holder {
            Holder::LocalAuthority(code) => (
                "la",
                "cpisla",
                Some(code),
                None,
                diesel::select(diesel::dsl::exists(local_authorities::table.find(code))).get_result::<bool>(conn)?,
            ),
            Holder::NhsOrganisation(code) => (
                "nhs",
                "cpisnhs",
                None,
                Some(code),
                diesel::select(diesel::dsl::exists(nhs_organisations::table.find(code))).get_result::<bool>(conn)?,
            ),
        };
        if !known {
            return Err(AppError::NotFound(match (la_code, ods_code) {
                (Some(code), _) => format!("There is no local authority with code {code}."),
                (_, code) => format!("There is no NHS organisation with ODS code {}.", code.unwrap_or_default()),
            }));
        }
        let token = new_token(prefix);
        let id: i64 = diesel::insert_into(endpoint_tokens::table)
            .values((
                endpoint_tokens::kind.eq(kind),
                endpoint_tokens::la_code.eq(la_code),
                endpoint_tokens::ods_code.eq(ods_code),
                endpoint_tokens::label.eq(label),
                endpoint_tokens::token_hash.eq(hash(&token)),
            ))
            .returning(endpoint_tokens::id)
            .get_result(conn)?;
        audit::record(
            conn,
            Event::new(actor, "token.issued").details(serde_json::json!({
                "token_id": id, "kind": kind, "la_code": la_code, "ods_code": ods_code, "label": label
            })),
        )?;
        Ok(token)
    })
}

/// Revokes a live token of this holder; another holder's token, or one already revoked, is not
/// found (so one admin page cannot revoke another's tokens).
pub fn revoke_held(
    conn: &mut PgConnection,
    actor: Actor,
    holder: Holder<'_>,
    token_id: i64,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let live = endpoint_tokens::table
            .filter(endpoint_tokens::id.eq(token_id))
            .filter(endpoint_tokens::revoked_at.is_null())
            .select(endpoint_tokens::id);
        let found: Option<i64> = match holder {
            Holder::LocalAuthority(code) => live
                .filter(endpoint_tokens::kind.eq("la"))
                .filter(endpoint_tokens::la_code.eq(code))
                .for_update()
                .first(conn)
                .optional()?,
            Holder::NhsOrganisation(code) => live
                .filter(endpoint_tokens::kind.eq("nhs"))
                .filter(endpoint_tokens::ods_code.eq(code))
                .for_update()
                .first(conn)
                .optional()?,
        };
        if found.is_none() {
            return Err(AppError::NotFound(match holder {
                Holder::LocalAuthority(_) => "This local authority has no live token with that id.".into(),
                Holder::NhsOrganisation(_) => "This organisation has no live system token with that id.".into(),
            }));
        }
        revoke(conn, actor, token_id, now)
    })
}

pub fn revoke(conn: &mut PgConnection, actor: Actor, token_id: i64, now: DateTime<Utc>) -> Result<(), AppError> {
    conn.transaction(|conn| {
        let n = diesel::update(endpoint_tokens::table.find(token_id).filter(endpoint_tokens::revoked_at.is_null()))
            .set(endpoint_tokens::revoked_at.eq(Some(now)))
            .execute(conn)?;
        if n == 0 {
            return Err(AppError::NotFound("There is no live token with that id.".into()));
        }
        audit::record(conn, Event::new(actor, "token.revoked").details(serde_json::json!({"token_id": token_id})))
    })
}

/// The endpoint a presented token belongs to, if it is live.
pub fn authenticate(conn: &mut PgConnection, token: &str) -> QueryResult<Option<Endpoint>> {
    authenticate_hashed(conn, &hash(token))
}

/// What this instance knows of a token (by its hash, [`hash`]) without asking the database.
pub enum Recalled {
    /// Remembered live ([`SessionCache::endpoint`]).
    Live(Endpoint),
    /// To be read ([`read_remembering`]), with the ticket for remembering what is read; none
    /// while nothing may be remembered.
    Unknown(Option<Ticket>),
}

pub fn recall(cache: Option<&SessionCache>, hashed: &[u8]) -> Recalled {
    match cache.and_then(|c| c.endpoint(hashed)) {
        Some((Some(endpoint), _)) => Recalled::Live(endpoint),
        Some((None, ticket)) => Recalled::Unknown(Some(ticket)),
        None => Recalled::Unknown(None),
    }
}

/// The endpoint a token not recalled belongs to, read from the database; remembered if it is
/// live and `ticket` allows. A token not found is never remembered, so one just issued works at
/// once.
pub fn read_remembering(
    conn: &mut PgConnection,
    cache: Option<&SessionCache>,
    ticket: Option<Ticket>,
    hashed: &[u8],
) -> QueryResult<Option<Endpoint>> {
    let found = authenticate_hashed(conn, hashed)?;
    if let (Some(cache), Some(ticket), Some(endpoint)) = (cache, ticket, &found) {
        cache.put_endpoint(ticket, hashed.to_vec(), endpoint.clone());
    }
    Ok(found)
}

/// The endpoint a token (by its hash) belongs to, if it is live: from what this instance
/// remembers when it can ([`recall`], issue 8: a statement fewer per FHIR search and mailbox
/// call), from the database otherwise ([`read_remembering`]).
pub fn authenticate_remembered(
    conn: &mut PgConnection,
    cache: Option<&SessionCache>,
    hashed: &[u8],
) -> QueryResult<Option<Endpoint>> {
    match recall(cache, hashed) {
        Recalled::Live(endpoint) => Ok(Some(endpoint)),
        Recalled::Unknown(ticket) => read_remembering(conn, cache, ticket, hashed),
    }
}

/// The endpoint a token's hash belongs to, read from the database, if it is live.
fn authenticate_hashed(conn: &mut PgConnection, hashed: &[u8]) -> QueryResult<Option<Endpoint>> {
    let row: Option<(i64, String, Option<String>, Option<String>)> = endpoint_tokens::table
        .filter(endpoint_tokens::token_hash.eq(hashed))
        .filter(endpoint_tokens::revoked_at.is_null())
        .select((endpoint_tokens::id, endpoint_tokens::kind, endpoint_tokens::la_code, endpoint_tokens::ods_code))
        .first(conn)
        .optional()?;
    Ok(row.and_then(|(id, kind, la, ods)| match (kind.as_str(), la, ods) {
        ("la", Some(la_code), _) => Some(Endpoint::LocalAuthority { token_id: id, la_code }),
        ("nhs", _, Some(ods_code)) => Some(Endpoint::NhsSystem { token_id: id, ods_code }),
        _ => None,
    }))
}

/// A token as the admin page lists it (never the token itself).
#[derive(Debug, Clone, Queryable)]
pub struct TokenInfo {
    pub id: i64,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub fn list_for_la(conn: &mut PgConnection, la_code: &str) -> QueryResult<Vec<TokenInfo>> {
    endpoint_tokens::table
        .filter(endpoint_tokens::la_code.eq(la_code))
        .order(endpoint_tokens::id.desc())
        .select((endpoint_tokens::id, endpoint_tokens::label, endpoint_tokens::created_at, endpoint_tokens::revoked_at))
        .load(conn)
}
