//! The access history shown with a child's record (CP-IS047, CP-IS048).
//!
//! Every access is stored; an access is *shown* (on the Child Care Alert tab, in message 04's
//! AuditEvents and in message 05) when no shown access by the same viewer to the same NHS number
//! happened in the 24 hours before it (CP-IS047, the first access rule). At most
//! [`HISTORY_LIMIT`] shown accesses are listed, newest first (CP-IS048).

use std::collections::HashMap;
use std::hash::Hash;

use chrono::{DateTime, TimeDelta, Utc};

/// The most accesses the history lists (CP-IS048).
pub const HISTORY_LIMIT: usize = 25;

/// The first access rule's window: an access within this time after the same viewer's last shown
/// access to the same NHS number is not shown (CP-IS047).
pub const FIRST_ACCESS_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Whether an access at `at` is shown, given the time of the latest *shown* access by the same
/// viewer to the same NHS number before it (CP-IS047). Shown when there is none, or when it was
/// at least 24 hours earlier: exactly 24:00:00 later is shown, 23:59:59 later is not.
pub fn is_shown(at: DateTime<Utc>, latest_shown_by_same_viewer: Option<DateTime<Utc>>) -> bool {
    match latest_shown_by_same_viewer {
        None => true,
        Some(latest) => at - latest >= FIRST_ACCESS_WINDOW,
    }
}

/// Applies the first access rule (CP-IS047) to accesses to one NHS number, given in chronological
/// order as (viewer key, time): one flag per event, true when it is shown.
///
/// The rule chains on shown accesses, not on every access: one viewer's accesses at 0h, 23h and
/// 25h are shown, hidden, shown (25h is 25 hours after the last shown one, at 0h).
pub fn first_access_flags<K: Eq + Hash + Clone>(events: &[(K, DateTime<Utc>)]) -> Vec<bool> {
    let mut latest_shown: HashMap<K, DateTime<Utc>> = HashMap::new();
    events
        .iter()
        .map(|(viewer, at)| {
            let shown = is_shown(*at, latest_shown.get(viewer).copied());
            if shown {
                latest_shown.insert(viewer.clone(), *at);
            }
            shown
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap()
    }

    fn h(hours: i64) -> DateTime<Utc> {
        t0() + TimeDelta::hours(hours)
    }

    fn s(seconds: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(seconds)
    }

    #[test]
    fn constants() {
        assert_eq!(HISTORY_LIMIT, 25);
        assert_eq!(FIRST_ACCESS_WINDOW, TimeDelta::hours(24));
        assert_eq!(FIRST_ACCESS_WINDOW.num_seconds(), 86_400);
    }

    #[test]
    fn first_ever_access_is_shown() {
        assert!(is_shown(t0(), None));
    }

    #[test]
    fn window_edges() {
        assert!(!is_shown(s(86_399), Some(t0())));
        assert!(is_shown(s(86_400), Some(t0())));
        assert!(is_shown(s(86_401), Some(t0())));
        assert!(!is_shown(t0(), Some(t0())));
        assert!(!is_shown(s(1), Some(t0())));
    }

    #[test]
    fn out_of_order_time_is_not_shown() {
        // A latest shown access after `at` means `at` is inside the window.
        assert!(!is_shown(t0(), Some(h(1))));
    }

    #[test]
    fn window_is_24_real_hours_across_clock_change() {
        // 2026-03-29 is the UK spring change day: 24 hours is still 86,400 seconds.
        let before = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 3, 29, 12, 0, 0).unwrap();
        assert!(is_shown(after, Some(before)));
        assert!(!is_shown(after - TimeDelta::seconds(1), Some(before)));
    }

    #[test]
    fn chains_on_shown_accesses() {
        let events = [("a", h(0)), ("a", h(23)), ("a", h(25))];
        assert_eq!(first_access_flags(&events), vec![true, false, true]);
    }

    #[test]
    fn hidden_accesses_do_not_extend_the_window() {
        // Every 12 hours for three days: shown at 0, 24, 48, 72.
        let events: Vec<_> = (0..=6).map(|i| ("a", h(i * 12))).collect();
        assert_eq!(first_access_flags(&events), vec![true, false, true, false, true, false, true]);
    }

    #[test]
    fn exactly_24_hours_and_one_second_less() {
        let events = [("a", s(0)), ("a", s(86_399)), ("a", s(86_400))];
        assert_eq!(first_access_flags(&events), vec![true, false, true]);
        let events = [("a", s(0)), ("a", h(23) + TimeDelta::minutes(59))];
        assert_eq!(first_access_flags(&events), vec![true, false]);
        let events = [("a", s(0)), ("a", h(24))];
        assert_eq!(first_access_flags(&events), vec![true, true]);
    }

    #[test]
    fn viewers_are_independent() {
        let events = [
            ("alice", h(0)),
            ("bob", h(1)),
            ("alice", h(2)),
            ("bob", h(24)),
            ("alice", h(23) + TimeDelta::minutes(59)),
            ("alice", h(24)),
            ("bob", h(25)),
            ("carol", h(25)),
        ];
        assert_eq!(first_access_flags(&events), vec![true, true, false, false, false, true, true, true]);
    }

    #[test]
    fn same_instant_by_two_viewers() {
        let events = [(1u32, h(0)), (2u32, h(0)), (1u32, h(0))];
        assert_eq!(first_access_flags(&events), vec![true, true, false]);
    }

    #[test]
    fn owned_keys() {
        let events = vec![
            (("user-1".to_string(), "RJZ".to_string()), h(0)),
            (("user-1".to_string(), "RJZ".to_string()), h(5)),
            (("user-1".to_string(), "RJ1".to_string()), h(5)),
        ];
        assert_eq!(first_access_flags(&events), vec![true, false, true]);
    }

    #[test]
    fn empty_input() {
        let events: [(u8, DateTime<Utc>); 0] = [];
        assert!(first_access_flags(&events).is_empty());
    }
}
