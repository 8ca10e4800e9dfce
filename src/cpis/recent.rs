//! What the access recorder remembers of the accesses it recorded lately (issue 8).
//!
//! A tab's record is read together with what recording its opening needs (the viewer's latest
//! shown access, the child's history, the access's id: `items::lookup_held_reading_ahead`), so
//! that the recorder stores it without reading first. But between that read and the store, other
//! batches of openings may be recorded, by this instance's recorder (often: a batch is read while
//! the one before is stored) or by another instance (rarely). Another instance's are caught by the
//! store's check of what the decisions rest on (`cpis_claim_children`, migration 000034). This
//! instance's are remembered here, each batch numbered as it is remembered: a read ahead takes the
//! number of batches remembered so far ([`Recent::mark`]) before it reads, and the recorder adds
//! to it the shown accesses of every batch remembered after that mark ([`Recent::since`]); those
//! the read saw already are counted once (`access::BeforeRecording::from_read_aheads`).

use std::collections::VecDeque;
use std::sync::Mutex;

use super::access::RecentAccess;

/// How many batches are remembered. A read ahead older than that is not used: its openings are
/// read again before they are recorded, as they would be without it.
const KEPT: usize = 256;

/// The shown accesses of the batches this instance recorded lately.
#[derive(Debug, Default)]
pub struct Recent {
    inner: Mutex<Batches>,
}

#[derive(Debug, Default)]
struct Batches {
    /// How many batches were remembered in all.
    remembered: u64,
    /// The latest of them, each with its number (from 1), oldest first.
    kept: VecDeque<(u64, Vec<RecentAccess>)>,
}

impl Recent {
    /// How many batches are remembered so far: taken before a read ahead, so that the batches
    /// recorded after (which the read may not have seen) can be told apart ([`Recent::since`]).
    pub fn mark(&self) -> u64 {
        self.lock().remembered
    }

    /// Remembers a batch's shown accesses, once they are committed. A batch with none changes
    /// nothing a read ahead could lack.
    pub fn remember(&self, shown: Vec<RecentAccess>) {
        if shown.is_empty() {
            return;
        }
        let mut batches = self.lock();
        batches.remembered += 1;
        let number = batches.remembered;
        batches.kept.push_back((number, shown));
        while batches.kept.len() > KEPT {
            batches.kept.pop_front();
        }
    }

    /// The shown accesses of the batches remembered after `mark`, or `None` when some of those
    /// are no longer kept.
    pub fn since(&self, mark: u64) -> Option<Vec<RecentAccess>> {
        let batches = self.lock();
        let oldest = batches.kept.front().map_or(batches.remembered + 1, |(n, _)| *n);
        if mark + 1 < oldest {
            return None;
        }
        Some(batches.kept.iter().filter(|(n, _)| *n > mark).flat_map(|(_, shown)| shown.iter().cloned()).collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batches> {
        // Nothing is left half-changed by a panic under the lock: a push, then pops.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpis::access::HistoryEntry;

    fn shown(id: i64) -> Vec<RecentAccess> {
        let line = HistoryEntry::unnamed(id, chrono::Utc::now(), None, "Dr A".into(), "R8000".into(), "RX1".into());
        vec![RecentAccess { nhs_number: "9434765919".into(), viewer_id: "v".into(), line }]
    }

    fn ids(accesses: Option<Vec<RecentAccess>>) -> Option<Vec<i64>> {
        accesses.map(|a| a.iter().map(|r| r.line.id).collect())
    }

    #[test]
    fn a_read_gets_the_batches_remembered_after_its_mark() {
        let recent = Recent::default();
        let before = recent.mark();
        recent.remember(shown(1));
        let between = recent.mark();
        recent.remember(Vec::new());
        recent.remember(shown(2));
        assert_eq!(ids(recent.since(before)), Some(vec![1, 2]));
        assert_eq!(ids(recent.since(between)), Some(vec![2]));
        assert_eq!(ids(recent.since(recent.mark())), Some(vec![]));
    }

    #[test]
    fn a_read_older_than_what_is_kept_gets_nothing_to_go_on() {
        let recent = Recent::default();
        let old = recent.mark();
        for id in 0..=KEPT as i64 {
            recent.remember(shown(id));
        }
        assert_eq!(recent.since(old), None, "the first batch after it is forgotten");
        assert_eq!(recent.since(old + 1).map(|a| a.len()), Some(KEPT));
    }
}
