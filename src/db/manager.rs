//! The pool's connection manager: checking a connection out costs no round trip.
//!
//! r2d2 with diesel's manager asks every checked-out connection `SELECT 1` first: half of the
//! round trips of a page that reads one row. Here a connection is asked only when it has been
//! idle for longer than [`IDLE_PING`] (a database restarted during a quiet spell is found before
//! anyone's request meets it), or when the caller asks for a tested connection ([`checked`]).
//! A connection that was cut while idle in the pool (`pg_terminate_backend`, a restart) is then
//! met by the request's first statement instead: [`super::retrying`] finds it dead, marks it lost
//! (so the pool drops it on its return) and runs the work again on a tested connection, but only
//! when no statement of the work had succeeded on the dead one, so nothing in the database is done
//! twice (the rule for what the work may do outside the database is on [`super::run`]).

use std::cell::Cell;
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ConnectionManager, ManageConnection, R2D2Connection};
use diesel::Connection;

/// By default, a connection idle for longer than this is pinged when checked out.
pub const IDLE_PING: Duration = Duration::from_secs(1);

/// By default, the planner's cost of a page read out of order on the service's connections,
/// against 1 for a page read in order. PostgreSQL's default, 4, is a spinning disk's, and with it
/// the planner reads a small table whole rather than through its index: the tab's read (and the
/// FHIR query's) then scanned all 152 local authorities for each item shown, the largest part of
/// that statement once the patient was found (22 of 64 µs). The service's reads are index lookups
/// on data held in memory or on solid-state storage, for which 1.1 is the usual setting
/// (issue 8).
pub const RANDOM_PAGE_COST: f64 = 1.1;

/// Connects, and keeps each connection's [`State`]; see the module documentation.
#[derive(Debug)]
pub struct Manager {
    inner: ConnectionManager<PgConnection>,
    /// A connection idle for longer than this is pinged when checked out.
    idle_ping: Duration,
    /// Set on each new connection when given ([`RANDOM_PAGE_COST`]).
    random_page_cost: Option<f64>,
    /// Whether each new connection commits without waiting for its WAL flush
    /// ([`Manager::committing_without_waiting`]).
    asynchronous_commit: bool,
}

impl Manager {
    pub fn new(database_url: &str) -> Manager {
        Manager::with_idle_ping(database_url, IDLE_PING)
    }
    pub fn with_idle_ping(database_url: &str, idle_ping: Duration) -> Manager {
        Manager {
            inner: ConnectionManager::new(database_url),
            idle_ping,
            random_page_cost: Some(RANDOM_PAGE_COST),
            asynchronous_commit: false,
        }
    }
    /// The planner's cost of a page read out of order on each new connection, or the server's.
    pub fn with_random_page_cost(self, random_page_cost: Option<f64>) -> Manager {
        Manager { random_page_cost, ..self }
    }
    /// Each new connection commits without waiting for its WAL flush (`synchronous_commit = off`):
    /// only for a pool whose user tells nobody of a commit before another connection's flush has
    /// covered it (the access recorder's, src/cpis/recorder.rs).
    pub fn committing_without_waiting(self) -> Manager {
        Manager { asynchronous_commit: true, ..self }
    }
}

/// What the pool knows of one connection, kept in the connection's diesel instrumentation (the
/// one per-connection slot diesel offers; it also sees every statement finish).
#[derive(Debug)]
pub struct State {
    /// When the connection was last returned to the pool.
    returned: Instant,
    /// Statements that succeeded, and that failed, since [`reset`] (at check-out, by
    /// [`super::retrying`]).
    succeeded: u32,
    failed: u32,
    /// Found not answering: the pool drops it when it comes back.
    lost: bool,
}

impl Instrumentation for State {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            match error {
                None => self.succeeded = self.succeeded.saturating_add(1),
                Some(_) => self.failed = self.failed.saturating_add(1),
            }
        }
    }
}

fn state(conn: &mut PgConnection) -> Option<&mut State> {
    conn.instrumentation().downcast_mut::<State>()
}

/// Starts counting the connection's statements from zero.
pub fn reset(conn: &mut PgConnection) {
    if let Some(s) = state(conn) {
        s.succeeded = 0;
        s.failed = 0;
    }
}

/// How many statements succeeded on the connection since [`reset`].
pub fn succeeded(conn: &mut PgConnection) -> u32 {
    state(conn).map_or(0, |s| s.succeeded)
}

/// How many statements failed on the connection since [`reset`].
pub fn failed(conn: &mut PgConnection) -> u32 {
    state(conn).map_or(0, |s| s.failed)
}

/// Marks the connection as not answering, so the pool drops it instead of handing it out again.
pub fn mark_lost(conn: &mut PgConnection) {
    if let Some(s) = state(conn) {
        s.lost = true;
    }
}

thread_local! {
    /// Set by [`checked`] around its check-out: every connection handed out is pinged first.
    static PING_ALL: Cell<bool> = const { Cell::new(false) };
}

/// Checks a connection out of the pool, asking each candidate `SELECT 1` first (dropping those
/// that do not answer): for work that cannot simply be run again, and for the retry after a
/// connection was found dead.
pub fn checked(pool: &r2d2::Pool<Manager>) -> Result<r2d2::PooledConnection<Manager>, r2d2::PoolError> {
    // r2d2 tests a connection in the thread that asked for it, inside `get`.
    PING_ALL.with(|p| p.set(true));
    let conn = pool.get();
    PING_ALL.with(|p| p.set(false));
    conn
}

impl ManageConnection for Manager {
    type Connection = PgConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<PgConnection, r2d2::Error> {
        let mut conn = self.inner.connect()?;
        // The settings in one round trip; a number formatted here, never text from outside.
        let mut settings = Vec::new();
        if let Some(cost) = self.random_page_cost.filter(|c| c.is_finite() && *c > 0.0) {
            settings.push(format!("SET random_page_cost = {cost}"));
        }
        if self.asynchronous_commit {
            settings.push("SET synchronous_commit = off".to_owned());
        }
        if !settings.is_empty() {
            use diesel::connection::SimpleConnection;
            conn.batch_execute(&settings.join("; ")).map_err(r2d2::Error::QueryError)?;
        }
        conn.set_instrumentation(State { returned: Instant::now(), succeeded: 0, failed: 0, lost: false });
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), r2d2::Error> {
        let idle = state(conn).is_none_or(|s| s.returned.elapsed() > self.idle_ping);
        if idle || PING_ALL.with(Cell::get) {
            conn.ping().map_err(r2d2::Error::QueryError)
        } else {
            Ok(())
        }
    }

    /// Called by r2d2 when a connection comes back; true drops it.
    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        let lost = match state(conn) {
            Some(s) => {
                s.returned = Instant::now();
                s.lost
            }
            None => false,
        };
        lost || self.inner.has_broken(conn)
    }
}
