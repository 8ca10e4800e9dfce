//! Shared flushes for a serial writer: its connections commit without waiting for the disk, and
//! what it answers waits here instead, for one flush that covers every commit before it (issue 8).
//!
//! The access recorder records the tab's openings a batch at a time, and every batch takes the
//! audit chain's lock, which PostgreSQL holds until the commit's WAL flush is done. With each
//! batch waiting for its own flush, the recorder's thread and the chain stood idle through every
//! fsync (measured: the tab at 16 users gave 0.28 of the baseline with each batch's flush on the
//! path, 0.32 with no flush at all). Its connections now commit with
//! `synchronous_commit = off` ([`super::pool_committing_without_waiting`]), so the lock is
//! released at commit and the thread goes on to the next batch, and the batch's answers are handed
//! to the flusher: a thread that takes whatever answers wait, asks PostgreSQL for a flush of
//! everything committed so far ([`super::wait_for_flush`], on a connection that commits as the
//! server is configured to), and only then delivers them. The WAL is written in order, so that one
//! flush covers every batch committed before it was asked for; a crash loses only batches nobody
//! was told of, and never an earlier one while keeping a later one.

use std::sync::mpsc::{self, Receiver, Sender};

use super::DbPool;

/// What is delivered once the flush is known: `true` when everything committed before it was
/// handed over is on disk, `false` when that could not be confirmed (the database could not be
/// reached: the outage's 503 is the answer).
pub type Delivery = Box<dyn FnOnce(bool) + Send>;

/// The handle writers use; the thread stops once every handle is dropped.
#[derive(Clone)]
pub struct Flusher {
    queue: Sender<Delivery>,
}

impl Flusher {
    /// Starts the flushing thread, with a connection of `pool` (which must commit as the server is
    /// configured to: [`super::pool_of`]).
    pub fn start(pool: DbPool) -> Flusher {
        let (queue, waiting) = mpsc::channel::<Delivery>();
        std::thread::Builder::new()
            .name("cpis-flusher".into())
            .spawn(move || flush_loop(&pool, &waiting))
            .expect("start the flushing thread");
        Flusher { queue }
    }

    /// Runs `deliver` once everything this thread committed before the call is on disk, with
    /// whether that is known ([`Delivery`]).
    pub fn after_flush(&self, deliver: impl FnOnce(bool) + Send + 'static) {
        if let Err(mpsc::SendError(deliver)) = self.queue.send(Box::new(deliver)) {
            // The thread has stopped: nothing can confirm the flush.
            deliver(false);
        }
    }
}

/// Waits for a delivery, takes whatever else waits, flushes once for them all and delivers them.
fn flush_loop(pool: &DbPool, waiting: &Receiver<Delivery>) {
    while let Ok(first) = waiting.recv() {
        let mut all = vec![first];
        all.extend(waiting.try_iter());
        let flushed = super::run_blocking(pool, |conn| Ok(super::wait_for_flush(conn)?)).is_ok();
        if !flushed {
            tracing::error!(batches = all.len(), "the WAL flush could not be confirmed; answering unavailable");
        }
        for deliver in all {
            // A delivery that panics is its own request's loss, not every later batch's.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(flushed))).is_err() {
                tracing::error!("a delivery after the WAL flush panicked");
            }
        }
    }
}
