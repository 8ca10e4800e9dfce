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
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::PgConnection;

use super::access::HistoryEntry;
use crate::schema::{job_roles, nhs_organisations};

/// Names held longer than this are read again at their next use.
pub const FRESH_FOR: Duration = Duration::from_secs(300);

/// A code not held is looked for again at most this often.
pub const MISSING_RETRY: Duration = Duration::from_secs(60);

/// One instance's names (in `AppState`, handed to the access recorder).
pub struct ReferenceNames {
    held: Mutex<Option<Held>>,
    fresh_for: Duration,
    missing_retry: Duration,
}

struct Held {
    job_roles: HashMap<String, String>,
    organisations: HashMap<String, String>,
    read_at: Instant,
}

impl Default for ReferenceNames {
    fn default() -> ReferenceNames {
        ReferenceNames::new(FRESH_FOR, MISSING_RETRY)
    }
}

impl ReferenceNames {
    pub fn new(fresh_for: Duration, missing_retry: Duration) -> ReferenceNames {
        ReferenceNames { held: Mutex::new(None), fresh_for, missing_retry }
    }

    /// Sets each entry's job role and organisation name, reading the names first when none are
    /// held, they are stale, or an entry names a code not held (see the module's documentation).
    pub fn name(&self, conn: &mut PgConnection, entries: &mut [HistoryEntry]) -> QueryResult<()> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let read_again = match held.as_ref() {
            None => true,
            Some(h) => {
                let age = h.read_at.elapsed();
                age >= self.fresh_for
                    || (age >= self.missing_retry
                        && entries.iter().any(|e| {
                            !h.job_roles.contains_key(&e.job_role_code)
                                || !h.organisations.contains_key(&e.organisation_code)
                        }))
            }
        };
        if read_again {
            *held = Some(Held::read(conn)?);
        }
        let Some(h) = held.as_ref() else { return Ok(()) };
        for e in entries {
            e.job_role_name = h.job_roles.get(&e.job_role_code).cloned();
            e.organisation_name = h.organisations.get(&e.organisation_code).cloned();
        }
        Ok(())
    }
}

impl Held {
    fn read(conn: &mut PgConnection) -> QueryResult<Held> {
        let job_roles = job_roles::table.select((job_roles::code, job_roles::name)).load(conn)?.into_iter().collect();
        let organisations = nhs_organisations::table
            .select((nhs_organisations::ods_code, nhs_organisations::name))
            .load(conn)?
            .into_iter()
            .collect();
        Ok(Held { job_roles, organisations, read_at: Instant::now() })
    }
}
