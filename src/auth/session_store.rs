//! Sessions kept in PostgreSQL, so that every `cpis serve` instance shares them and an
//! administrator can end all of a user's sessions at once (CP-IS059). Rows are keyed by the
//! SHA-256 of the session key: the cookie value itself is never stored.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use chrono::Utc;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::DbPool;
use crate::schema::sessions;

/// The session key that holds the signed-in user's id.
pub const USER_ID_KEY: &str = "uid";

#[derive(Clone)]
pub struct PgSessionStore {
    pool: DbPool,
    absolute: StdDuration,
}

impl PgSessionStore {
    pub fn new(pool: DbPool, absolute: StdDuration) -> PgSessionStore {
        PgSessionStore { pool, absolute }
    }
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

async fn blocking<T: Send + 'static>(
    pool: &DbPool,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T> + Send + 'static,
) -> anyhow::Result<T> {
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get()?;
        f(&mut conn).map_err(anyhow::Error::from)
    })
    .await?
}

impl SessionStore for PgSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let hash = key_hash(session_key.as_ref());
        let state: Option<serde_json::Value> = blocking(&self.pool, move |conn| {
            let now = Utc::now();
            sessions::table
                .find(hash)
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .select(sessions::state)
                .first(conn)
                .optional()
        })
        .await
        .map_err(LoadError::Other)?;
        state.map(|s| serde_json::from_value(s).map_err(|e| LoadError::Deserialization(e.into()))).transpose()
    }

    async fn save(&self, state: HashMap<String, String>, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let key = new_key();
        let hash = key_hash(key.as_ref());
        let uid = user_id(&state);
        let json = serde_json::to_value(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let (expires, absolute) =
            (expiry(ttl), Utc::now() + chrono::TimeDelta::from_std(self.absolute).unwrap_or_default());
        blocking(&self.pool, move |conn| {
            diesel::insert_into(sessions::table)
                .values((
                    sessions::key_hash.eq(hash),
                    sessions::user_id.eq(uid),
                    sessions::state.eq(json),
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
        state: HashMap<String, String>,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let hash = key_hash(session_key.as_ref());
        let uid = user_id(&state);
        let json = serde_json::to_value(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let expires = expiry(ttl);
        let updated = blocking(&self.pool, move |conn| {
            diesel::update(sessions::table.find(hash))
                .filter(sessions::absolute_expires_at.gt(Utc::now()))
                .set((sessions::user_id.eq(uid), sessions::state.eq(json), sessions::expires_at.eq(expires)))
                .execute(conn)
        })
        .await
        .map_err(UpdateError::Other)?;
        if updated == 1 {
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
            diesel::update(sessions::table.find(hash)).set(sessions::expires_at.eq(expires)).execute(conn)
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let hash = key_hash(session_key.as_ref());
        blocking(&self.pool, move |conn| diesel::delete(sessions::table.find(hash)).execute(conn)).await?;
        Ok(())
    }
}

/// Ends every session of a user (disabling an account, CP-IS059). Call inside the transaction.
pub fn delete_user_sessions(conn: &mut PgConnection, user_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}
