//! The names of job roles and NHS organisations, held in memory by each instance for the tab's
//! access history (issue 8). Joined in the history's statement, they were read and hashed whole on
//! every opening (the generic plan expects ten rows; looked up row by row instead, the planner
//! scans the small tables for each row): under pgbench the history statement ran 12,800 to
//! 15,000 times a second with the two joins, 19,000 to 25,000 without.
//!
//! The reference data only grows (`cpis seed` adds what is missing and changes nothing), so names
//! held are read again only when older than [`FRESH_FOR`], or sooner, at most every
//! [`MISSING_RETRY`], when a code is named that is not held (a new organisation, or one the
//! reference data does not know, such as a FHIR caller's). A code not known is shown as the code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::PgConnection;

use super::access::HistoryEntry;
use crate::schema::{job_roles, nhs_organisations};

/// Names held longer than this are read again at their next use.
pub const FRESH_FOR: Duration = Duration::from_secs(300);

/// A code not held is looked for again at most this often.
pub const MISSING_RETRY: Duration = Duration::from_secs(60);

/// A failed read of the names is tried again after this long at the soonest.
const FAILED_RETRY: Duration = Duration::from_secs(5);

/// One instance's names (in `AppState`, handed to the access recorder).
pub struct ReferenceNames {
    state: Mutex<State>,
    fresh_for: Duration,
    missing_retry: Duration,
}

#[derive(Default)]
struct State {
    held: Option<Arc<Held>>,
    /// When the last read failed, if it did.
    failed_at: Option<Instant>,
    /// A read is under way: others use the names held meanwhile.
    reading: bool,
}

/// The names by code, each shared with the history lines that show it.
struct Held {
    job_roles: HashMap<String, Arc<str>>,
    organisations: HashMap<String, Arc<str>>,
    read_at: Instant,
}

impl Default for ReferenceNames {
    fn default() -> ReferenceNames {
        ReferenceNames::new(FRESH_FOR, MISSING_RETRY)
    }
}

impl ReferenceNames {
    pub fn new(fresh_for: Duration, missing_retry: Duration) -> ReferenceNames {
        ReferenceNames { state: Mutex::new(State::default()), fresh_for, missing_retry }
    }

    /// Sets each entry's job role and organisation name from the names held, reading them first
    /// when none are held, they are stale, or an entry names a code not held (see the module's
    /// documentation). The read is made without holding the lock, by one caller at a time; the
    /// others use the names held meanwhile. A read that fails is logged and changes nothing (the
    /// names held, or none, are used; codes show for names not held) and is tried again after
    /// [`FAILED_RETRY`] at the soonest: a history never fails for its names.
    pub fn name(&self, conn: &mut PgConnection, entries: &mut [HistoryEntry]) {
        let (mut held, read_now) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let read_now = !state.reading
                && state.failed_at.is_none_or(|t| t.elapsed() >= FAILED_RETRY)
                && match state.held.as_deref() {
                    None => true,
                    Some(h) => {
                        let age = h.read_at.elapsed();
                        age >= self.fresh_for || (age >= self.missing_retry && names_missing(h, entries))
                    }
                };
            if read_now {
                state.reading = true;
            }
            (state.held.clone(), read_now)
        };
        if read_now {
            let reading = Reading(&self.state);
            let read = Held::read(conn);
            drop(reading);
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match read {
                Ok(fresh) => {
                    state.failed_at = None;
                    let fresh = Arc::new(fresh);
                    state.held = Some(fresh.clone());
                    held = Some(fresh);
                }
                Err(e) => {
                    state.failed_at = Some(Instant::now());
                    tracing::warn!(error = %e, "the job role and organisation names could not be read");
                }
            }
        }
        for e in entries {
            e.job_role_name = held.as_ref().and_then(|h| h.job_roles.get(&e.job_role_code).cloned());
            e.organisation_name = held.as_ref().and_then(|h| h.organisations.get(&e.organisation_code).cloned());
        }
    }
}

/// A read under way, until dropped (also when the read panics, so that names are read again).
struct Reading<'a>(&'a Mutex<State>);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).reading = false;
    }
}

/// Whether an entry names a job role or organisation not held.
fn names_missing(h: &Held, entries: &[HistoryEntry]) -> bool {
    entries
        .iter()
        .any(|e| !h.job_roles.contains_key(&e.job_role_code) || !h.organisations.contains_key(&e.organisation_code))
}

impl Held {
    fn read(conn: &mut PgConnection) -> QueryResult<Held> {
        let shared = |(code, name): (String, String)| (code, Arc::from(name));
        let job_roles =
            job_roles::table.select((job_roles::code, job_roles::name)).load(conn)?.into_iter().map(shared).collect();
        let organisations = nhs_organisations::table
            .select((nhs_organisations::ods_code, nhs_organisations::name))
            .load(conn)?
            .into_iter()
            .map(shared)
            .collect();
        Ok(Held { job_roles, organisations, read_at: Instant::now() })
    }
}
