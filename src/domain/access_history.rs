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
/// at least 24 hours earlier: exactly 24:00:00 later is shown, 23:59:59 later is not. A latest
/// shown access stamped after `at` (decided first, stamped later) is within the window: not shown.
pub fn is_shown(at: DateTime<Utc>, latest_shown_by_same_viewer: Option<DateTime<Utc>>) -> bool {
    match latest_shown_by_same_viewer {
        None => true,
        Some(latest) => at - latest >= FIRST_ACCESS_WINDOW,
    }
}

/// The window's exclusive lower bound for an access at `at`: a shown access by the same viewer
/// stamped at or before it is 24 hours or more earlier, so [`is_shown`] answers as if there were
/// none; only one stamped after it can hide the access. The
/// record reads only the shown accesses after it (a child's shown accesses of the last day, at
/// most one per viewer), not the viewer's whole history.
pub fn window_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at - FIRST_ACCESS_WINDOW
}

/// Applies the first access rule (CP-IS047) to accesses to one NHS number, given in chronological
/// order as (viewer key, time): one flag per event, true when it is shown.
///
/// The rule chains on shown accesses, not on every access: one viewer's accesses at 0h, 23h and
/// 25h are shown, hidden, shown (25h is 25 hours after the last shown one, at 0h).
pub fn first_access_flags<K: Eq + Hash + Clone>(events: &[(K, DateTime<Utc>)]) -> Vec<bool> {
    decide_in_order(HashMap::new(), events)
}

/// Applies the first access rule (CP-IS047) to accesses in the order they are decided, which need
/// not be the order of their times: `latest_shown` holds, per key (a viewer of one NHS number),
/// the latest shown access already recorded. One flag per event, true when it is shown. An access
/// decided after a later-stamped shown one is within the window ([`is_shown`]): not shown.
pub fn decide_in_order<K: Eq + Hash + Clone>(
    mut latest_shown: HashMap<K, DateTime<Utc>>,
    events: &[(K, DateTime<Utc>)],
) -> Vec<bool> {
    events
        .iter()
        .map(|(key, at)| {
            let shown = is_shown(*at, latest_shown.get(key).copied());
            if shown {
                // Shown means 24 hours or more after the latest: `at` is the new latest.
                latest_shown.insert(key.clone(), *at);
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
    fn a_shown_access_stamped_later_is_within_the_window() {
        // Decided second under the child's lock, but stamped a moment before the one decided first.
        assert!(!is_shown(t0(), Some(s(1))));
        assert!(!is_shown(t0(), Some(s(86_400))));
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
    fn decided_in_order_after_what_is_recorded() {
        // Already recorded: alice shown 23 hours before; bob shown long ago (outside the window,
        // so not read at all). A batch decides in arrival order, not time order.
        let seed = HashMap::from([("alice", h(-23))]);
        let events = [("alice", h(0)), ("bob", h(0)), ("alice", h(2)), ("bob", h(0) - TimeDelta::seconds(1))];
        assert_eq!(decide_in_order(seed, &events), vec![false, true, true, false]);
    }

    #[test]
    fn decided_in_order_equals_the_chronological_rule_for_chronological_input() {
        let events = [("a", h(0)), ("a", h(23)), ("b", h(24)), ("a", h(25))];
        assert_eq!(decide_in_order(HashMap::new(), &events), first_access_flags(&events));
    }

    #[test]
    fn empty_input() {
        let events: [(u8, DateTime<Utc>); 0] = [];
        assert!(first_access_flags(&events).is_empty());
    }
    /// Property tests of the first access rule (CP-IS047) over random access logs.
    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Accesses by up to four viewers over ten days, in chronological order (ties kept in
        /// generation order), at whole seconds.
        fn log() -> impl Strategy<Value = Vec<(u8, DateTime<Utc>)>> {
            prop::collection::vec((0u8..4, 0i64..864_000), 0..60).prop_map(|mut v| {
                v.sort_by_key(|&(_, at)| at);
                v.into_iter().map(|(viewer, at)| (viewer, s(at))).collect()
            })
        }

        /// The same, with every access at a distinct time.
        fn distinct_log() -> impl Strategy<Value = Vec<(u8, DateTime<Utc>)>> {
            log().prop_map(|mut v| {
                v.dedup_by_key(|(_, at)| *at);
                v
            })
        }

        fn shown_of<K: Clone>(events: &[(K, DateTime<Utc>)], flags: &[bool]) -> Vec<(K, DateTime<Utc>)> {
            events.iter().zip(flags).filter(|(_, shown)| **shown).map(|(e, _)| e.clone()).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// At most one shown access per viewer in any 24 hours: two shown accesses by the same
            /// viewer are at least 24 hours apart.
            #[test]
            fn at_most_one_shown_access_per_viewer_per_24_hours(events in log()) {
                let flags = first_access_flags(&events);
                prop_assert_eq!(flags.len(), events.len());
                let shown = shown_of(&events, &flags);
                for (i, (viewer, at)) in shown.iter().enumerate() {
                    for (other, earlier) in &shown[..i] {
                        if other == viewer {
                            prop_assert!(*at - *earlier >= FIRST_ACCESS_WINDOW, "{:?} and {:?}", earlier, at);
                        }
                    }
                }
            }

            /// A hidden access is hidden for a reason: the same viewer has a shown access less than
            /// 24 hours before it (so the rule hides nothing it need not).
            #[test]
            fn every_hidden_access_follows_a_shown_one_within_24_hours(events in log()) {
                let flags = first_access_flags(&events);
                for (i, ((viewer, at), shown)) in events.iter().zip(&flags).enumerate() {
                    if !shown {
                        let reason = events[..i].iter().zip(&flags[..i]).any(|((v, t), s)| {
                            *s && v == viewer && *at - *t < FIRST_ACCESS_WINDOW
                        });
                        prop_assert!(reason, "access {} by {} at {} hidden without reason", i, viewer, at);
                    }
                }
            }

            /// Reading only the shown accesses after [`window_start`] decides as reading them all
            /// would: an earlier one never hides an access, a later one may.
            #[test]
            fn accesses_before_the_window_never_change_the_decision(at in 0i64..1_000_000, latest in 0i64..1_000_000) {
                let (at, latest) = (s(at), s(latest));
                let windowed = if latest > window_start(at) { Some(latest) } else { None };
                prop_assert_eq!(is_shown(at, windowed), is_shown(at, Some(latest)));
            }

            /// The first access of each viewer is always shown.
            #[test]
            fn each_viewers_first_access_is_shown(events in log()) {
                let flags = first_access_flags(&events);
                for (i, (viewer, _)) in events.iter().enumerate() {
                    if events[..i].iter().all(|(v, _)| v != viewer) {
                        prop_assert!(flags[i]);
                    }
                }
            }

            /// The shown set is a fixed point: applying the rule to the shown accesses alone shows
            /// them all.
            #[test]
            fn the_shown_set_is_idempotent(events in log()) {
                let shown = shown_of(&events, &first_access_flags(&events));
                prop_assert!(first_access_flags(&shown).into_iter().all(|s| s));
            }

            /// Viewers are independent: one viewer's flags are the same with or without anyone
            /// else's accesses in the log.
            #[test]
            fn viewers_are_independent(events in log(), viewer in 0u8..4) {
                let flags = first_access_flags(&events);
                let own: Vec<_> = events.iter().filter(|(v, _)| *v == viewer).cloned().collect();
                let expected: Vec<bool> =
                    events.iter().zip(&flags).filter(|((v, _), _)| *v == viewer).map(|(_, f)| *f).collect();
                prop_assert_eq!(first_access_flags(&own), expected);
            }

            /// For accesses at distinct times, the order in which different viewers' accesses are
            /// interleaved does not change which are shown: any arrival order that keeps each
            /// viewer's own accesses in time order gives every access the same flag.
            #[test]
            fn interleaving_of_viewers_does_not_change_the_outcome(
                (events, order) in distinct_log().prop_flat_map(|events| {
                    let n = events.len();
                    (Just(events), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
                }),
            ) {
                let flags = first_access_flags(&events);
                // The shuffled positions, then each viewer's accesses put back in time order into
                // the positions that viewer holds.
                let mut arrival: Vec<usize> = order;
                for viewer in 0u8..4 {
                    let slots: Vec<usize> = (0..arrival.len()).filter(|&p| events[arrival[p]].0 == viewer).collect();
                    let mut own: Vec<usize> = slots.iter().map(|&p| arrival[p]).collect();
                    own.sort_unstable();
                    for (slot, index) in slots.into_iter().zip(own) {
                        arrival[slot] = index;
                    }
                }
                let reordered: Vec<_> = arrival.iter().map(|&i| events[i]).collect();
                let reordered_flags = first_access_flags(&reordered);
                for (pos, &i) in arrival.iter().enumerate() {
                    prop_assert_eq!(reordered_flags[pos], flags[i], "access {:?}", events[i]);
                }
            }

            /// The window's edge: a viewer's second access is shown exactly when it is 24 hours
            /// (86,400 seconds) or more after the first.
            #[test]
            fn the_second_access_is_shown_from_24_hours(gap in 0i64..200_000) {
                let flags = first_access_flags(&[("a", s(0)), ("a", s(gap))]);
                prop_assert_eq!(flags, vec![true, gap >= 86_400]);
            }

            /// However many times a viewer looks, the accesses shown for them over a span of time
            /// number at most one per started 24 hours of that span.
            #[test]
            fn shown_accesses_are_bounded_by_the_time_spanned(events in log()) {
                let flags = first_access_flags(&events);
                for viewer in 0u8..4 {
                    let own: Vec<_> = events.iter().filter(|(v, _)| *v == viewer).map(|(_, at)| *at).collect();
                    let (Some(first), Some(last)) = (own.first(), own.last()) else { continue };
                    let count = events.iter().zip(&flags).filter(|((v, _), s)| **s && *v == viewer).count() as i64;
                    let span = (*last - *first).num_seconds();
                    prop_assert!(count <= span / 86_400 + 1, "{} shown over {} seconds", count, span);
                }
            }
        }
    }
}
