//! The database: pool, migrations under an advisory lock, and the one blocking boundary.

pub mod prepared;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::Config;
use crate::error::AppError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x4350_4953_4d49_4752; // "CPISMIGR"

pub type DbPool = Pool<ConnectionManager<PgConnection>>;
pub type DbConn = PooledConnection<ConnectionManager<PgConnection>>;

/// Builds the pool without connecting, so the service starts (and answers 503) while the database is down.
pub fn pool(config: &Config) -> DbPool {
    Pool::builder()
        .max_size(config.db_pool_size)
        .min_idle(Some(1))
        .connection_timeout(config.db_timeout)
        .test_on_check_out(true)
        .build_unchecked(ConnectionManager::new(&config.database_url))
}

/// Applies pending migrations; several processes may call this at once.
pub fn migrate(conn: &mut PgConnection) -> anyhow::Result<usize> {
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(conn)?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.len())
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(conn)?;
    result
}

pub fn connect(database_url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::establish(database_url).map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
}

/// The one blocking boundary: runs `f` on the blocking thread pool with a pooled connection.
/// Handlers call this (through the domain functions' callers), never `web::block` themselves.
/// A commit that `f` let go without waiting for its WAL flush ([`defer_flush`]) is made durable
/// before this returns.
pub async fn run<T, F>(pool: &DbPool, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get().map_err(|_| AppError::Unavailable)?;
        let _scope = FlushScope::enter();
        let result = f(&mut conn);
        let result = outage_or(result, &mut conn);
        if FlushScope::deferred() {
            // The deferred commit (and every commit before it in the WAL) is on disk before the
            // caller hears of it; if that cannot be confirmed, the answer is the outage's 503.
            wait_for_flush(&mut conn).map_err(|_| AppError::Unavailable)?;
        }
        result
    })
    .await
    .map_err(|_| AppError::Internal("blocking task failed".into()))?
}

thread_local! {
    /// Inside [`run`]: `Some(false)`, or `Some(true)` once a commit's flush was deferred.
    static FLUSH_SCOPE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Marks the blocking thread as running [`run`]'s closure, until dropped.
struct FlushScope;

impl FlushScope {
    fn enter() -> FlushScope {
        FLUSH_SCOPE.with(|s| s.set(Some(false)));
        FlushScope
    }
    fn deferred() -> bool {
        FLUSH_SCOPE.with(|s| s.get() == Some(true))
    }
}

impl Drop for FlushScope {
    fn drop(&mut self) {
        FLUSH_SCOPE.with(|s| s.set(None));
    }
}

/// Whether the current transaction may commit without waiting for its WAL flush, and if so notes
/// that [`run`] must wait for it after the closure. True only inside [`run`]; the caller then
/// sets `synchronous_commit = off` for its transaction (SET LOCAL).
///
/// For a transaction that holds a lock others queue on until it commits (the audit chain's
/// append lock, src/audit/mod.rs): without this, every holder keeps the lock through its own
/// disk flush, so those transactions flush one at a time. Deferred, the lock is released at
/// commit and the flushes of many transactions are shared. Nothing is answered before the flush
/// (see [`run`]), and the WAL is written in order, so a crash can lose only commits nobody was
/// told of, and never an earlier one while keeping a later one.
pub fn defer_flush() -> bool {
    FLUSH_SCOPE.with(|s| match s.get() {
        Some(_) => {
            s.set(Some(true));
            true
        }
        None => false,
    })
}

/// Waits until everything committed so far is on disk: a transaction that wrote to the WAL,
/// committed with `synchronous_commit` on, waits for the WAL up to its commit record, which
/// follows every earlier commit. It writes an empty transactional logical message, the least a
/// transaction can write (one that only takes a transaction id writes nothing before its commit
/// record, and PostgreSQL then does not wait for the flush). One round trip.
fn wait_for_flush(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute("BEGIN; SELECT pg_logical_emit_message(true, 'cpis.flush', ''); COMMIT")
}

/// An error on a connection that no longer answers is an outage (503), not a fault (500): the
/// database was stopped, or the connection was cut (`pg_terminate_backend`, a restart, a
/// network failure) mid-request. libpq words this many ways ("server closed the connection",
/// "no connection to the server", "terminating connection", an error while rolling back), so
/// rather than read messages, the connection is asked: only when it fails a `SELECT 1` is the
/// error reclassified. A broken connection is then dropped by the pool (tested on check-out), so
/// the next request gets a working one.
fn outage_or<T>(result: Result<T, AppError>, conn: &mut PgConnection) -> Result<T, AppError> {
    match result {
        Err(AppError::Internal(_)) if !answers(conn) => {
            tracing::warn!("the database connection was lost mid-request");
            Err(AppError::Unavailable)
        }
        other => other,
    }
}

/// Whether the connection still answers a query.
fn answers(conn: &mut PgConnection) -> bool {
    diesel::sql_query("SELECT 1").execute(conn).is_ok()
}

/// Like [`run`], inside one transaction.
pub async fn transaction<T, F>(pool: &DbPool, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut PgConnection) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    run(pool, move |conn| conn.transaction(f)).await
}
