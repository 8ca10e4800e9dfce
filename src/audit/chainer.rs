//! The background chainer: links a large action's pending audit entries into the chain after the
//! action has been answered (issue 8).
//!
//! An upload writes its per-record entries to `audit_pending` in its own transaction ([`pend`]):
//! they are stored, durably, with the file or not at all. Linking them into the hash chain
//! (CP-IS074) takes the chain's lock a chunk at a time ([`chain_pending`]); for a national file
//! that is 60,000 entries and close to two seconds, which the local authority used to wait for
//! before its acknowledgement. Now an upload with at most 2,000 entries (any ordinary file)
//! still chains them before it answers, while a larger one wakes this thread for them
//! ([`chain_pended`], [`process_then_wake`]), so its answer waits for the file's storage alone.
//!
//! Entries stay pending only until this thread has moved them, a few seconds for a national file.
//! It chains with a connection of its own (requests holding every connection of the service's
//! pool never keep it waiting), through [`db::run_blocking`]: a connection found dead is replaced
//! and the work run again, and the chain's lock is not held through each chunk's disk flush. A
//! pass that fails (the database gone meanwhile) is tried again every [`RETRY`] until one
//! succeeds; entries left pending are also chained when the service starts, by the hourly
//! checkpoint job, before a checkpoint is signed and before the expiry job records its own changes
//! (src/audit/checkpoint.rs, src/jobs/expiry.rs). Several instances may chain at once: each chunk
//! is moved under the chain's lock, and entries another instance moved meanwhile are simply not
//! found again.
//!
//! [`pend`]: super::pend
//! [`chain_pending`]: super::chain_pending
//! [`chain_pended`]: super::chain_pended
//! [`process_then_wake`]: crate::cpis::upload::process_then_wake

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use crate::db::{self, DbPool};

/// How soon a failed pass is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// Wakes the chaining thread; cheap, never blocks.
#[derive(Clone)]
pub struct Chainer {
    wake: SyncSender<()>,
}

impl Chainer {
    /// Starts the thread, chaining with connections of `pool` (a pool of its own).
    pub fn start(pool: DbPool) -> Chainer {
        // One wake may wait while the thread chains: any number of wakes meanwhile are one more
        // pass, which finds everything pending by then.
        let (wake, wakes) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("cpis-audit-chainer".into())
            .spawn(move || {
                let mut failed = false;
                loop {
                    let next = if failed { wakes.recv_timeout(RETRY) } else { wakes.recv().map_err(Into::into) };
                    if let Err(RecvTimeoutError::Disconnected) = next {
                        return; // the service's state is gone
                    }
                    failed = !chain(&pool);
                }
            })
            .expect("start the audit chaining thread");
        Chainer { wake }
    }

    /// Asks the thread to chain whatever is pending.
    pub fn wake(&self) {
        match self.wake.try_send(()) {
            // Full: a pass is already due, which will find these entries too.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::error!("the audit chainer has stopped; pending entries wait for the next chaining")
            }
        }
    }
}

/// One pass; whether it chained everything pending. A failure is logged and the pass tried again
/// (see the module's documentation); a panic is caught so that the thread goes on.
fn chain(pool: &DbPool) -> bool {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db::run_blocking(pool, |conn| Ok(super::chain_pending(conn)?))
    }));
    match outcome {
        Ok(Ok(chunks)) => {
            tracing::debug!(chunks, "pending audit entries chained");
            true
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "pending audit entries stay pending; chaining is tried again");
            false
        }
        Err(_) => {
            tracing::error!("the audit chainer panicked; chaining is tried again");
            false
        }
    }
}
