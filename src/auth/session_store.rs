//! Sessions kept in PostgreSQL, so that every `cpis serve` instance shares them and an
//! administrator can end all of a user's sessions at once (CP-IS059). Rows are keyed by the
//! SHA-256 of the session key: the cookie value itself is never stored.
//!
//! At most one round trip per request (issue 8), and usually none: a session this instance has read
//! is remembered ([`SessionCache`], src/auth/session_cache.rs) until PostgreSQL announces a change to
//! it or its idle expiry would need extending; otherwise the store reads it. Loading a session also
//! extends its idle expiry, in the same statement, so the server extends a session only on state changes (`update`), never with a
//! separate `update_ttl` after an unchanged request (src/app.rs). The expiry only moves when it would move by more than [`slack`] (a minute,
//! or a tenth of a short idle limit): an active session's row is written about once a minute, not
//! on every page, and a session left idle still ends within the idle limit (up to that slack
//! sooner, never later). The extension is committed without waiting for the WAL flush
//! (`synchronous_commit = off` for that statement only): losing it in a crash only ends a session
//! a little earlier. Everything else the store writes (a new session, a changed state, a deletion)
//! is committed durably as before.
//!
//! The same statement reads the signed-in person's account and role profiles, handed to the
//! authorisation middleware under [`PRINCIPAL_KEY`] (never saved: `save` and `update` drop it), so a
//! signed-in page costs one statement before its handler, not two. It is the array the account
//! keeps (`users.principal`), rebuilt when anything in it changes, as that change commits
//! (migration 000024). A change to it or to the session is announced as it commits (migrations
//! 000025 and 000026), and each instance forgets the session as the announcement reaches it (a
//! fraction of a millisecond on one host; the instance that made the change forgets at once), so a
//! disabled account still loses its session at once (CP-IS059), on every instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use chrono::Utc;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::principal::PRINCIPAL_KEY;
use super::session_cache::{fresh_until, SessionCache};
use crate::db::DbPool;
use crate::schema::sessions;

/// The session key that holds the signed-in user's id.
pub const USER_ID_KEY: &str = "uid";

/// Set (alone) in the state `load` hands over when the database could not be asked: the
/// authorisation middleware answers with the 503 page, inside the outer middleware, so the answer
/// carries the security headers, the request log line and the CP-IS078 count like any other
/// (actix-session turns a store's error into a response no middleware of ours can add to). Never
/// saved: `save` and `update` drop it.
pub const UNAVAILABLE_KEY: &str = "_store_unavailable";

#[derive(Clone)]
pub struct PgSessionStore {
    pool: DbPool,
    /// The sessions this instance remembers (src/auth/session_cache.rs), when it does.
    cache: Option<Arc<SessionCache>>,
    absolute: StdDuration,
    /// The idle limit in seconds (the session middleware's state TTL), by which `load` extends
    /// the expiry.
    idle_secs: i64,
}

/// A longer idle limit than this (a century) is taken as this, so expiry arithmetic cannot overflow.
const MAX_IDLE_SECS: u64 = 100 * 366 * 24 * 3600;

impl PgSessionStore {
    pub fn new(pool: DbPool, absolute: StdDuration, idle: StdDuration) -> PgSessionStore {
        PgSessionStore { pool, cache: None, absolute, idle_secs: idle.as_secs().min(MAX_IDLE_SECS) as i64 }
    }

    /// The store, remembering the sessions it loads in `cache` (src/auth/session_cache.rs).
    pub fn remembering(self, cache: Option<Arc<SessionCache>>) -> PgSessionStore {
        PgSessionStore { cache, ..self }
    }

    /// Forgets a session this store has just changed or ended: the next load reads it. (Its
    /// announcement would do the same a moment later; until then another request of the same
    /// browser could still be answered from memory.)
    fn forget(&self, session_key: &SessionKey) {
        if let Some(cache) = &self.cache {
            cache.forget_session(&key_hash(session_key.as_ref()));
        }
    }
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    state: serde_json::Value,
    /// The session user's principal rows as a JSON array, `NULL` for a session without a user.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    principal: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    user_id: Option<i64>,
    /// The idle expiry once this load has extended it (when it did).
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    expires_at: chrono::DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    absolute_expires_at: chrono::DateTime<Utc>,
}

/// What one load reads: the session's state and, for a signed-in session, its principal's rows.
pub struct Loaded {
    pub state: serde_json::Value,
    pub principal: Option<String>,
    pub user_id: Option<i64>,
    /// The idle expiry after this load (extended by it or not).
    pub expires_at: chrono::DateTime<Utc>,
    pub absolute_expires_at: chrono::DateTime<Utc>,
}

/// How far the idle expiry may lag behind before a load moves it: a minute, or a tenth of the idle
/// limit when that is shorter.
pub fn slack(idle_secs: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::milliseconds((idle_secs * 100).clamp(0, 60_000))
}

/// The statement of [`load_and_extend`] (prepared once per connection).
/// The principal is the array the account keeps (`users.principal`, rebuilt by triggers whenever
/// anything in it changes: migration 000024), or built afresh by `user_principal` when an account
/// has none; an account gone meanwhile reads as `[]` (no principal).
const LOAD_SQL: &str = "WITH live AS ( \
         SELECT key_hash, state, expires_at, absolute_expires_at, user_id FROM sessions \
         WHERE key_hash = $1 AND expires_at > $2 AND absolute_expires_at > $2 \
     ), extended AS ( \
         UPDATE sessions SET expires_at = $3 \
         FROM live, (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed \
         WHERE sessions.key_hash = live.key_hash AND live.expires_at < $4 \
         RETURNING 1 \
     ) SELECT live.state, \
         CASE WHEN live.user_id IS NULL THEN NULL ELSE coalesce( \
             (SELECT coalesce(u.principal, user_principal(u.id)) FROM users u WHERE u.id = live.user_id), \
             '[]') END AS principal, \
         live.user_id, \
         CASE WHEN live.expires_at < $4 THEN $3 ELSE live.expires_at END AS expires_at, \
         live.absolute_expires_at \
       FROM live";

/// Loads a live session and its user's principal rows and, when its idle expiry lags by more than
/// [`slack`], extends it, in one statement committed without waiting for the WAL flush (see the
/// module's documentation).
pub fn load_and_extend(
    conn: &mut PgConnection,
    hash: Vec<u8>,
    now: chrono::DateTime<Utc>,
    idle_secs: i64,
) -> QueryResult<Option<Loaded>> {
    use diesel::sql_types::{Bytea, Timestamptz};
    let expires = now + chrono::TimeDelta::seconds(idle_secs);
    let row: Option<StateRow> = crate::db::prepared::sql!(LOAD_SQL)
        .bind::<Bytea, _>(hash)
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(expires)
        .bind::<Timestamptz, _>(expires - slack(idle_secs))
        .get_result(conn)
        .optional()?;
    Ok(row.map(|r| Loaded {
        state: r.state,
        principal: r.principal,
        user_id: r.user_id,
        expires_at: r.expires_at,
        absolute_expires_at: r.absolute_expires_at,
    }))
}

pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn new_key() -> SessionKey {
    super::random_key().try_into().expect("a 43-character key is a valid session key")
}

fn user_id(state: &HashMap<String, String>) -> Option<i64> {
    state.get(USER_ID_KEY).and_then(|v| v.parse().ok())
}

fn expiry(ttl: &Duration) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::TimeDelta::seconds(ttl.whole_seconds().max(0))
}

/// Runs `f` on the blocking pool; like [`crate::db::run`], once more on a tested connection when
/// the first was found closed before any statement succeeded.
async fn blocking<T: Send + 'static>(
    pool: &DbPool,
    f: impl FnMut(&mut PgConnection) -> QueryResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let pool = pool.clone();
    let deadline = crate::db::checkout_deadline(&pool);
    actix_web::web::block(move || {
        let result = crate::db::retrying(&pool, deadline, |_| true, f)
            .map_err(|_| anyhow::anyhow!("the database could not be reached"))?;
        result.map_err(anyhow::Error::from)
    })
    .await?
}

impl SessionStore for PgSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let hash = key_hash(session_key.as_ref());
        let cache = self.cache.as_deref();
        if let Some(state) = cache.and_then(|c| c.get(&hash, Utc::now())) {
            return Ok(Some(state));
        }
        let ticket = cache.and_then(SessionCache::ticket);
        let idle = self.idle_secs;
        let read = hash.clone();
        let loaded = match blocking(&self.pool, move |conn| load_and_extend(conn, read.clone(), Utc::now(), idle)).await
        {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "the session store failed");
                return Ok(Some(HashMap::from([(UNAVAILABLE_KEY.to_owned(), "1".to_owned())])));
            }
        };
        let Some(loaded) = loaded else { return Ok(None) };
        let mut state: HashMap<String, String> =
            serde_json::from_value(loaded.state).map_err(|e| LoadError::Deserialization(e.into()))?;
        match loaded.principal {
            Some(rows) => state.insert(PRINCIPAL_KEY.to_owned(), rows),
            None => state.remove(PRINCIPAL_KEY),
        };
        if let Some(cache) = cache {
            let fresh = fresh_until(loaded.expires_at, loaded.absolute_expires_at, idle, slack(idle));
            cache.put(ticket, hash, state.clone(), loaded.user_id, fresh);
        }
        Ok(Some(state))
    }

    async fn save(&self, mut state: HashMap<String, String>, ttl: &Duration) -> Result<SessionKey, SaveError> {
        state.remove(PRINCIPAL_KEY);
        state.remove(UNAVAILABLE_KEY);
        let key = new_key();
        let hash = key_hash(key.as_ref());
        let uid = user_id(&state);
        let json = serde_json::to_value(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let (expires, absolute) =
            (expiry(ttl), Utc::now() + chrono::TimeDelta::from_std(self.absolute).unwrap_or_default());
        blocking(&self.pool, move |conn| {
            diesel::insert_into(sessions::table)
                .values((
                    sessions::key_hash.eq(&hash),
                    sessions::user_id.eq(uid),
                    sessions::state.eq(&json),
                    sessions::expires_at.eq(expires),
                    sessions::absolute_expires_at.eq(absolute),
                ))
                .execute(conn)
        })
        .await
        .map_err(SaveError::Other)?;
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        mut state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        state.remove(PRINCIPAL_KEY);
        state.remove(UNAVAILABLE_KEY);
        let hash = key_hash(session_key.as_ref());
        let uid = user_id(&state);
        let json = serde_json::to_value(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let expires = expiry(ttl);
        let updated = blocking(&self.pool, move |conn| {
            diesel::update(sessions::table.find(&hash))
                .filter(sessions::absolute_expires_at.gt(Utc::now()))
                .set((sessions::user_id.eq(uid), sessions::state.eq(&json), sessions::expires_at.eq(expires)))
                .execute(conn)
        })
        .await
        .map_err(UpdateError::Other);
        // Whatever happened to the write, the state remembered before it is not used again.
        self.forget(&session_key);
        if updated? == 1 {
            return Ok(session_key);
        }
        // The session was ended meanwhile (signed out, disabled, expired): never bring it back.
        // Start an empty one instead.
        self.save(HashMap::new(), ttl).await.map_err(|e| UpdateError::Other(anyhow::anyhow!("{e}")))
    }

    async fn update_ttl(&self, session_key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        let hash = key_hash(session_key.as_ref());
        let expires = expiry(ttl);
        blocking(&self.pool, move |conn| {
            diesel::update(sessions::table.find(&hash)).set(sessions::expires_at.eq(expires)).execute(conn)
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let hash = key_hash(session_key.as_ref());
        let deleted = blocking(&self.pool, move |conn| diesel::delete(sessions::table.find(&hash)).execute(conn)).await;
        // Whatever happened to the deletion, the session is read again if it is asked for.
        self.forget(session_key);
        deleted?;
        Ok(())
    }
}

/// Ends every session of a user (disabling an account, CP-IS059). Call inside the transaction.
pub fn delete_user_sessions(conn: &mut PgConnection, user_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_expiry_lags_by_at_most_a_minute_or_a_tenth_of_the_idle_limit() {
        assert_eq!(slack(30 * 60), chrono::TimeDelta::seconds(60));
        assert_eq!(slack(2), chrono::TimeDelta::milliseconds(200));
        assert_eq!(slack(0), chrono::TimeDelta::zero());
        assert_eq!(slack(-5), chrono::TimeDelta::zero());
    }
}
