//! The database: pool, migrations under an advisory lock, and the one blocking boundary.

pub mod flusher;
pub mod manager;
pub mod prepared;

use diesel::pg::PgConnection;
use diesel::r2d2::{Pool, PooledConnection};
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::Config;
use crate::error::AppError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x4350_4953_4d49_4752; // "CPISMIGR"

pub type DbPool = Pool<manager::Manager>;
pub type DbConn = PooledConnection<manager::Manager>;

/// Builds the pool without connecting, so the service starts (and answers 503) while the database is down.
/// Checking a connection out costs no round trip unless it was idle (see [`manager`]).
pub fn pool(config: &Config) -> DbPool {
    pool_of(config, config.db_pool_size)
}

/// [`pool`] with `size` connections at most.
pub fn pool_of(config: &Config, size: u32) -> DbPool {
    pool_managed(config, size, manager_of(config))
}

/// [`pool_of`], its connections committing without waiting for their WAL flush
/// ([`manager::Manager::committing_without_waiting`]).
pub fn pool_committing_without_waiting(config: &Config, size: u32) -> DbPool {
    pool_managed(config, size, manager_of(config).committing_without_waiting())
}

fn manager_of(config: &Config) -> manager::Manager {
    manager::Manager::with_idle_ping(&config.database_url, config.db_idle_ping)
        .with_random_page_cost(config.db_random_page_cost)
}

fn pool_managed(config: &Config, size: u32, manager: manager::Manager) -> DbPool {
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(config.db_timeout)
        // r2d2 asks the manager on every check-out; the manager pings only idle connections.
        .test_on_check_out(true)
        .build_unchecked(manager)
}

/// A connection asked `SELECT 1` first, for work that [`retrying`] cannot run twice.
pub use manager::checked;

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
///
/// `f` may run twice ([`retrying`]): the second time only when none of its statements succeeded
/// the first time, so nothing it did in the database is repeated. What it does outside the
/// database before its first statement is repeated, so it does nothing there that may not be
/// (sending, writing files, counting); work of that kind uses [`checked`] instead.
pub async fn run<T, F>(pool: &DbPool, mut f: F) -> Result<T, AppError>
where
    F: FnMut(&mut PgConnection) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    // The pool's timeout counts from here: work that waited for a blocking thread (each worker
    // has as many as the pool has connections, `app::blocking_threads`) waits the less for a
    // connection, so a request still fails by then when none can be had (an outage's 503).
    let deadline = checkout_deadline(&pool);
    actix_web::web::block(move || run_blocking_by(&pool, deadline, &mut f))
        .await
        .map_err(|_| AppError::Internal("blocking task failed".into()))?
}

/// When work handed to a blocking thread now must have its connection by: the pool's timeout
/// from now ([`run`], the session store; [`run_blocking`] from its own call).
pub fn checkout_deadline(pool: &DbPool) -> std::time::Instant {
    std::time::Instant::now() + pool.connection_timeout()
}

/// Whether the connection is inside a transaction that diesel began.
pub fn in_transaction(conn: &mut PgConnection) -> bool {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    matches!(AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth(), Ok(Some(_)))
}

/// [`run`] on the calling thread, for a thread of the service's own that may block (the access
/// recorder, src/cpis/recorder.rs): the same retry on a lost connection and the same wait for a
/// deferred commit's flush.
pub fn run_blocking<T>(pool: &DbPool, f: impl FnMut(&mut PgConnection) -> Result<T, AppError>) -> Result<T, AppError> {
    run_blocking_by(pool, checkout_deadline(pool), f)
}

/// [`run_blocking`], with a connection had by `deadline` or not at all.
fn run_blocking_by<T>(
    pool: &DbPool,
    deadline: std::time::Instant,
    mut f: impl FnMut(&mut PgConnection) -> Result<T, AppError>,
) -> Result<T, AppError> {
    let suspect = |e: &AppError| matches!(e, AppError::Internal(_) | AppError::Unavailable);
    retrying(pool, deadline, suspect, |conn| {
        let _scope = FlushScope::enter();
        let result = f(conn);
        if FlushScope::deferred() {
            // The deferred commit (and every commit before it in the WAL) is on disk before
            // the caller hears of it; if that cannot be confirmed, the answer is the outage's 503.
            if wait_for_flush(conn).is_err() {
                manager::mark_lost(conn);
                return Err(AppError::Unavailable);
            }
        }
        result
    })
    .unwrap_or_else(|Lost| Err(AppError::Unavailable))
}

/// The database could not be reached, or the connection was lost mid-work.
#[derive(Debug)]
pub struct Lost;

/// Runs `f` with a connection checked out without a round trip ([`manager`]), had by `deadline`
/// ([`checkout_deadline`]) or not at all ([`Lost`]). When a statement of
/// `f` failed, or `f` failed in a way `suspect` says may be the connection's, the connection is
/// asked `SELECT 1` (nothing more is asked of work whose statements all succeeded). If it does
/// not answer, it is marked for the pool to drop, and:
/// - when none of `f`'s statements had succeeded on it (nothing of `f` was done), `f` runs once
///   more on a tested connection, whatever it returned (work that turns a database error into a
///   form's error is run again too);
/// - otherwise a suspect failure is [`Lost`], and any other result stands.
pub fn retrying<T, E>(
    pool: &DbPool,
    deadline: std::time::Instant,
    suspect: impl Fn(&E) -> bool,
    mut f: impl FnMut(&mut PgConnection) -> Result<T, E>,
) -> Result<Result<T, E>, Lost> {
    let mut conn = pool.get_timeout(deadline.saturating_duration_since(std::time::Instant::now())).map_err(|_| Lost)?;
    let (first, health) = attempt(&mut conn, &suspect, &mut f);
    match health {
        Health::Fine => Ok(first),
        Health::LostAfterWork => lost_or(first, &suspect),
        Health::LostUntouched => {
            tracing::info!("a pooled database connection was found closed; running the work again on a tested one");
            drop(conn);
            let mut conn = checked(pool).map_err(|_| Lost)?;
            let (second, health) = attempt(&mut conn, &suspect, &mut f);
            match health {
                Health::Fine => Ok(second),
                Health::LostAfterWork | Health::LostUntouched => lost_or(second, &suspect),
            }
        }
    }
}

/// What became of the connection during one run of the work.
enum Health {
    Fine,
    /// Lost after at least one of the work's statements succeeded.
    LostAfterWork,
    /// Lost before any of the work's statements succeeded.
    LostUntouched,
}

fn attempt<T, E>(
    conn: &mut PgConnection,
    suspect: &impl Fn(&E) -> bool,
    f: &mut impl FnMut(&mut PgConnection) -> Result<T, E>,
) -> (Result<T, E>, Health) {
    manager::reset(conn);
    let result = f(conn);
    let (succeeded, failed) = (manager::succeeded(conn), manager::failed(conn));
    let doubtful = failed > 0 || matches!(&result, Err(e) if suspect(e));
    if !doubtful || answers(conn) {
        return (result, Health::Fine);
    }
    manager::mark_lost(conn);
    (result, if succeeded == 0 { Health::LostUntouched } else { Health::LostAfterWork })
}

/// On a lost connection: a suspect failure is the outage; any other result stands.
fn lost_or<T, E>(result: Result<T, E>, suspect: &impl Fn(&E) -> bool) -> Result<Result<T, E>, Lost> {
    match &result {
        Err(e) if suspect(e) => {
            tracing::warn!("the database connection was lost mid-request");
            Err(Lost)
        }
        _ => Ok(result),
    }
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

/// While held, commits wait for their own flush ([`defer_flush`] is false), even inside [`run`]:
/// for work that has nothing after its commit to carry the wait. A batch of openings commits so
/// (`alert::record_openings_alone`) on a connection that waits for its flush; the access
/// recorder's own connections do not wait at all, and its flusher waits for them, off the serial
/// path (src/db/flusher.rs). A flush owed before it is held is still owed after.
pub struct DurableCommits(Option<bool>);

impl DurableCommits {
    pub fn enter() -> DurableCommits {
        DurableCommits(FLUSH_SCOPE.with(|s| s.replace(None)))
    }
}

impl Drop for DurableCommits {
    fn drop(&mut self) {
        FLUSH_SCOPE.with(|s| s.set(self.0));
    }
}

/// Whether a commit's flush was deferred in this [`run`] and nobody has waited for it yet: [`run`]
/// then waits for it after the closure. False outside [`run`].
pub fn flush_owed() -> bool {
    FlushScope::deferred()
}

/// Waits until everything committed so far is on disk: a transaction that wrote to the WAL,
/// committed with `synchronous_commit` on, waits for the WAL up to its commit record, which
/// follows every earlier commit. It writes an empty transactional logical message, the least a
/// transaction can write (one that only takes a transaction id writes nothing before its commit
/// record, and PostgreSQL then does not wait for the flush). One round trip: the statement is its
/// own transaction (the caller's work has committed), prepared once per connection (as a
/// simple-protocol `BEGIN; ...; COMMIT` it was parsed and planned on every call).
pub(crate) fn wait_for_flush(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    prepared::sql!("SELECT pg_logical_emit_message(true, 'cpis.flush', '')").execute(conn)?;
    Ok(())
}

/// Whether the connection still answers a query (`SELECT 1`). libpq words a lost connection many
/// ways ("server closed the connection", "no connection to the server", "terminating connection",
/// an error while rolling back), so rather than read messages, [`retrying`] asks the connection.
pub(crate) fn answers(conn: &mut PgConnection) -> bool {
    use diesel::r2d2::R2D2Connection;
    conn.ping().is_ok()
}

/// Like [`run`], inside one transaction.
pub async fn transaction<T, F>(pool: &DbPool, mut f: F) -> Result<T, AppError>
where
    F: FnMut(&mut PgConnection) -> Result<T, AppError> + Send + 'static,
    T: Send + 'static,
{
    run(pool, move |conn| conn.transaction(&mut f)).await
}
