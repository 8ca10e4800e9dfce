//! Checking a username and password (standing in for the smartcard), with a lock-out after
//! repeated failures counted in PostgreSQL so that every instance shares the count.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;

use super::password;
use crate::audit::{self, Actor, Event};
use crate::error::AppError;
use crate::schema::users;

pub const MAX_FAILURES: i32 = 5;
pub const LOCK_MINUTES: i64 = 15;

/// The one answer for every failure, so it says nothing about which usernames exist.
pub const FAILURE_MESSAGE: &str = "The username or password is not right, or the account cannot be used \
     just now. Check them and try again; after 5 failed attempts an account is locked for 15 minutes.";

/// id, password hash, disabled at, locked until.
type Credentials = (i64, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    SignedIn { user_id: i64 },
    Failed,
}

/// Checks the credentials and records the outcome in the audit trail.
pub fn sign_in(conn: &mut PgConnection, username: &str, pw: &str, now: DateTime<Utc>) -> Result<Outcome, AppError> {
    let username = username.trim().to_lowercase();
    let found: Option<Credentials> = users::table
        .filter(users::username.eq(&username))
        .select((users::id, users::password_hash, users::disabled_at, users::locked_until))
        .first(conn)
        .optional()?;
    let Some((user_id, hash, disabled_at, locked_until)) = found else {
        password::verify_dummy(pw);
        audit::record(
            conn,
            Event::new(Actor::Anonymous, "auth.sign_in_failed").details(serde_json::json!({"reason": "unknown_user"})),
        )?;
        return Ok(Outcome::Failed);
    };
    // The password is checked in every case, so every answer takes as long.
    let password_ok = password::verify(&hash, pw);
    let refusal = if disabled_at.is_some() {
        Some("disabled")
    } else if locked_until.is_some_and(|t| t > now) {
        Some("locked")
    } else if !password_ok {
        Some("wrong_password")
    } else {
        None
    };
    // A hash stored at other parameters is replaced now that its password is known (the new hash
    // made before the transaction, so that no lock is held while it is computed).
    let rehashed = (refusal.is_none() && password::needs_rehash(&hash)).then(|| password::hash(pw));
    conn.transaction(|conn| match refusal {
        None => {
            diesel::update(users::table.find(user_id))
                .set((users::failed_sign_ins.eq(0), users::locked_until.eq(None::<DateTime<Utc>>)))
                .execute(conn)?;
            if let Some(new_hash) = &rehashed {
                // Unless the password was changed meanwhile: the newer hash stands.
                diesel::update(users::table.find(user_id).filter(users::password_hash.eq(&hash)))
                    .set(users::password_hash.eq(new_hash))
                    .execute(conn)?;
            }
            audit::record(conn, Event::new(Actor::User(user_id), "auth.sign_in_succeeded"))?;
            Ok(Outcome::SignedIn { user_id })
        }
        Some("wrong_password") => {
            let failures: i32 = diesel::update(users::table.find(user_id))
                .set(users::failed_sign_ins.eq(users::failed_sign_ins + 1))
                .returning(users::failed_sign_ins)
                .get_result(conn)?;
            audit::record(
                conn,
                Event::new(Actor::User(user_id), "auth.sign_in_failed")
                    .details(serde_json::json!({"reason": "wrong_password", "consecutive": failures})),
            )?;
            if failures >= MAX_FAILURES {
                diesel::update(users::table.find(user_id))
                    .set((
                        users::failed_sign_ins.eq(0),
                        users::locked_until.eq(Some(now + TimeDelta::minutes(LOCK_MINUTES))),
                    ))
                    .execute(conn)?;
                audit::record(
                    conn,
                    Event::new(Actor::User(user_id), "auth.account_locked")
                        .details(serde_json::json!({"minutes": LOCK_MINUTES})),
                )?;
            }
            Ok(Outcome::Failed)
        }
        Some(reason) => {
            audit::record(
                conn,
                Event::new(Actor::User(user_id), "auth.sign_in_failed").details(serde_json::json!({"reason": reason})),
            )?;
            Ok(Outcome::Failed)
        }
    })
}

/// Counts a sign-in attempt from an address; false once the address has used up its allowance for
/// the current window (OWASP ASVS 2.2.1). The count is in PostgreSQL, shared by every instance.
pub fn allow_attempt(
    conn: &mut PgConnection,
    address: &str,
    now: DateTime<Utc>,
    limit: u32,
    window: TimeDelta,
) -> QueryResult<bool> {
    use diesel::sql_types::{Text, Timestamptz};
    #[derive(QueryableByName)]
    struct Attempts {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
    }
    let row: Attempts = diesel::sql_query(
        "INSERT INTO sign_in_throttle (address, window_start, attempts) VALUES ($1, $2, 1) \
         ON CONFLICT (address) DO UPDATE SET \
           window_start = CASE WHEN sign_in_throttle.window_start <= $3 THEN $2 ELSE sign_in_throttle.window_start END, \
           attempts = CASE WHEN sign_in_throttle.window_start <= $3 THEN 1 ELSE sign_in_throttle.attempts + 1 END \
         RETURNING attempts",
    )
    .bind::<Text, _>(address)
    .bind::<Timestamptz, _>(now)
    .bind::<Timestamptz, _>(now - window)
    .get_result(conn)?;
    Ok(row.attempts as u32 <= limit)
}
