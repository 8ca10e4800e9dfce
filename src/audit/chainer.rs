//! The background chainer: links a large action's pending audit entries into the chain after the
//! action has been answered (issue 8).
//!
//! An upload writes its per-record entries to `audit_pending` in its own transaction ([`pend`]):
//! they are stored, durably, with the file or not at all. Linking them into the hash chain
//! (CP-IS074) takes the chain's lock a chunk at a time ([`chain_pending`]); for a national file
//! that is 60,000 entries and close to two seconds, which the local authority used to wait for
//! before its acknowledgement. Now the upload links at most one chunk itself (all of an ordinary
//! file's entries) and wakes this thread for the rest, so the answer waits for the file's storage
//! alone.
//!
//! Entries stay pending only until this thread has moved them, a few seconds for a national file.
//! Should it fail (the database gone meanwhile), they are linked by the next upload's wake, the
//! hourly checkpoint job, or the next start of the service, and always before a checkpoint is
//! signed or the expiry job records its own changes (src/audit/checkpoint.rs,
//! src/jobs/expiry.rs). Several instances may chain at once: each chunk is moved under the
//! chain's lock, and entries another instance moved meanwhile are simply not found again.
//!
//! [`pend`]: super::pend
//! [`chain_pending`]: super::chain_pending

use std::sync::mpsc::{self, SyncSender};

use crate::db::DbPool;

/// Wakes the chaining thread; cheap, never blocks.
#[derive(Clone)]
pub struct Chainer {
    wake: SyncSender<()>,
}

impl Chainer {
    /// Starts the thread. It holds a connection of `pool` only while it chains.
    pub fn start(pool: DbPool) -> Chainer {
        // One wake may wait while the thread chains: any number of wakes meanwhile are one more
        // pass, which finds everything pending by then.
        let (wake, wakes) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("cpis-audit-chainer".into())
            .spawn(move || {
                while wakes.recv().is_ok() {
                    chain(&pool);
                }
            })
            .expect("start the audit chaining thread");
        Chainer { wake }
    }

    /// Asks the thread to chain whatever is pending.
    pub fn wake(&self) {
        // Full: a pass is already due, which will find these entries too.
        let _ = self.wake.try_send(());
    }
}

/// One pass. A failure is logged and left for the next pass (see the module's documentation); a
/// panic is caught so that the thread goes on serving later wakes.
fn chain(pool: &DbPool) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        super::chain_pending(&mut conn).map_err(|e| e.to_string())
    }));
    match outcome {
        Ok(Ok(chunks)) => tracing::debug!(chunks, "pending audit entries chained"),
        Ok(Err(error)) => tracing::error!(%error, "pending audit entries stay pending until the next chaining"),
        Err(_) => tracing::error!("the audit chainer panicked; pending entries wait for the next chaining"),
    }
}
