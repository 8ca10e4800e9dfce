//! Issue 8: a batch of tab openings is read outside any transaction and stored in one statement
//! that first takes the children's locks and checks, under them, that what the first-access
//! decisions rest on still holds (`cpis_claim_children`, migration 000034). These tests hold that
//! check to the rule (CP-IS047): a batch whose basis changed is decided again, locked; one whose
//! basis held is stored as decided, and decided as `access_history::decide_in_order` decides.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::PgConnection;
use proptest::prelude::*;

use cpis::cpis::access::{NewAccess, Recorded};
use cpis::cpis::alert::{record_openings, record_openings_alone, AccessOpening};
use cpis::cpis::items::lookup_held_reading_ahead;
use cpis::cpis::recent::Recent;
use cpis::cpis::recorder::{record_all, Opening, ReadAheadAt};
use cpis::domain::access_history::{decide_in_order, window_start};
use cpis::mailbox::transmissions::Log;
use cpis::seed::demo::fixtures::*;

use crate::support::db::{count, execute};
use crate::support::{api_viewer, Template, TestDatabase};

/// Records one opening alone (the recorder's way) on a thread of its own, with the child's history.
fn open_on_thread(
    url: String,
    who: &'static str,
    at: DateTime<Utc>,
) -> std::thread::JoinHandle<(Recorded, Vec<String>)> {
    std::thread::spawn(move || {
        use diesel::Connection;
        let mut conn = PgConnection::establish(&url).unwrap();
        let viewer = api_viewer(who);
        let opening =
            AccessOpening { nhs_number: NOAH_WILLIAMS, viewer: &viewer, actor: cpis::audit::Actor::Anonymous, at };
        let child = [NOAH_WILLIAMS.to_owned()];
        let (mut recorded, histories) =
            record_openings_alone(&mut conn, &Default::default(), &[opening], &[&child], None, Log::default()).unwrap();
        (recorded.remove(0), histories[0].iter().map(|h| h.viewer_name.clone() + "/" + &h.id.to_string()).collect())
    })
}

/// The history lines of the tests' viewers (`api_viewer`), leaving out the demo data's.
fn ours(history: &[String]) -> Vec<String> {
    history.iter().filter(|h| h.starts_with("Dr Api/")).cloned().collect()
}

/// Waits (up to ten seconds) until some session waits for an advisory lock: the opening on its
/// thread has read, decided, and reached its store's claim.
fn until_a_claim_waits(conn: &mut PgConnection) {
    for _ in 0..1_000 {
        if count(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no opening came to wait for its child's lock");
}

/// What a race left: the opening recorded elsewhere, the one recorded alone on its thread with its
/// history, and the database to look in.
struct Race {
    db: TestDatabase,
    elsewhere: Recorded,
    recorded: Recorded,
    history: Vec<String>,
}

/// `elsewhere_viewer` opens Noah's record in a transaction left open (so holding his lock); then
/// `viewer` opens it alone on a thread a second later, which reads, decides and comes to wait for
/// that lock in its store; then the first commits and the second is let through.
fn race(elsewhere_viewer: &str, viewer: &'static str) -> Race {
    let db = TestDatabase::new(Template::Demo);
    let (mut elsewhere, mut conn) = (db.conn(), db.conn());
    let now = Utc::now();
    execute(&mut elsewhere, "BEGIN");
    let first_viewer = api_viewer(elsewhere_viewer);
    let first = AccessOpening {
        nhs_number: NOAH_WILLIAMS,
        viewer: &first_viewer,
        actor: cpis::audit::Actor::Anonymous,
        at: now,
    };
    let first = record_openings(&mut elsewhere, &[first]).unwrap()[0];
    assert!(first.shown);
    let racing = open_on_thread(db.url.clone(), viewer, now + TimeDelta::seconds(1));
    until_a_claim_waits(&mut conn);
    execute(&mut elsewhere, "COMMIT");
    let (recorded, history) = racing.join().unwrap();
    Race { db, elsewhere: first, recorded, history }
}

/// CP-IS047: the same viewer's opening of the child, recorded elsewhere after this batch was read
/// (here: decided and held uncommitted under the child's lock, then committed while this batch's
/// store waits for that lock), changes what this batch's decision rests on. Its store fails and
/// stores nothing, and the batch is decided again under the lock: not shown, one shown in all.
#[test]
fn an_opening_whose_viewer_was_recorded_meanwhile_is_decided_again_under_the_lock() {
    let Race { db, elsewhere: first, recorded, history } = race("racer", "racer");
    let mut conn = db.conn();
    assert!(!recorded.shown, "decided again after the other opening: within its 24 hours");
    assert_eq!(ours(&history), [format!("Dr Api/{}", first.id)], "read again, the history has the first");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id = 'racer'"), 2);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id = 'racer' AND shown"), 1);
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) FROM access_events WHERE viewer_id = 'racer' AND id = {}", recorded.id)
        ),
        1,
        "the answer names the access stored"
    );
    // Two openings, two audit entries: the failed store's was not kept.
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'access.alert_tab_opened'"), 2);
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

/// Someone else's opening of the child recorded meanwhile changes no decision of the batch: it is
/// stored as decided, without reading again. So its history is as read, a moment before the other
/// opening (`record_openings_alone`'s documentation); the next read has both.
#[test]
fn an_opening_by_someone_else_recorded_meanwhile_leaves_the_batch_as_decided() {
    let Race { db, elsewhere: other, recorded, history } = race("someone-else", "this-one");
    let mut conn = db.conn();
    assert!(recorded.shown);
    assert_eq!(ours(&history), [format!("Dr Api/{}", recorded.id)], "as read before the other was committed");
    let after = cpis::cpis::access::history(&mut conn, &Default::default(), &[NOAH_WILLIAMS.to_owned()]).unwrap();
    let ids: Vec<i64> = after.iter().take(2).map(|h| h.id).collect();
    assert_eq!(ids, [recorded.id, other.id]);
}

/// One prior access of a property case: which child, which viewer, how long before now, shown.
#[derive(Debug, Clone)]
struct Prior {
    child: usize,
    viewer: usize,
    minutes_before: i64,
    shown: bool,
}

/// One opening of a property case's batch: which child, which viewer, seconds after now (the
/// batch's order is the order decided, not the order of these times).
#[derive(Debug, Clone)]
struct Batched {
    child: usize,
    viewer: usize,
    seconds_after: i64,
}

const CHILDREN: [&str; 2] = [NOAH_WILLIAMS, MIA_THOMPSON];

fn prior() -> impl Strategy<Value = Prior> {
    // Up to two and a half days back: either side of each opening's window.
    (0..2usize, 0..3usize, 0..3_600i64, any::<bool>()).prop_map(|(child, viewer, minutes_before, shown)| Prior {
        child,
        viewer,
        minutes_before,
        shown,
    })
}

fn batched() -> impl Strategy<Value = Batched> {
    (0..2usize, 0..3usize, -30..30i64).prop_map(|(child, viewer, seconds_after)| Batched {
        child,
        viewer,
        seconds_after,
    })
}

/// CP-IS047 through the two-round-trip path: whatever shown and hidden accesses the children had
/// in the last days, a batch's openings are decided as `decide_in_order` decides them from the
/// latest shown access per (child, viewer) after the window's start, and the claim finds the basis
/// unchanged (nothing else was recorded), so the batch is stored as first decided: its ids are the
/// ones its one read drew, next in the sequence (a read again would have drawn more).
#[test]
fn a_batch_stored_in_two_round_trips_is_decided_as_the_rule_decides() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = Utc::now();
    let (case, conn) = (std::cell::Cell::new(0), std::cell::RefCell::new(&mut conn));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 40, ..ProptestConfig::default() });
    runner
        .run(&(prop::collection::vec(prior(), 0..12), prop::collection::vec(batched(), 1..7)), |(priors, batch)| {
            case.set(case.get() + 1);
            let viewer_id = |v: usize| format!("case-{}-{v}", case.get());
            let mut conn = conn.borrow_mut();
            for p in &priors {
                execute(
                    &mut conn,
                    &format!(
                        "INSERT INTO access_events (nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
                         organisation_code, channel, shown) VALUES ('{}', '{}'::timestamptz, '{}', 'Dr Prior', 'R8000', \
                         'RJZ', 'FHIR', {})",
                        CHILDREN[p.child],
                        (now - TimeDelta::minutes(p.minutes_before)).to_rfc3339(),
                        viewer_id(p.viewer),
                        p.shown
                    ),
                );
            }
            let viewers: Vec<_> = (0..3).map(|v| api_viewer(&viewer_id(v))).collect();
            let at = |b: &Batched| now + TimeDelta::seconds(b.seconds_after);
            let openings: Vec<AccessOpening<'_>> = batch
                .iter()
                .map(|b| AccessOpening {
                    nhs_number: CHILDREN[b.child],
                    viewer: &viewers[b.viewer],
                    actor: cpis::audit::Actor::Anonymous,
                    at: at(b),
                })
                .collect();
            // The rule's inputs, from the priors alone: per (child, viewer), the latest shown
            // access after the earliest window start of that pair's openings.
            let mut starts: HashMap<(usize, usize), DateTime<Utc>> = HashMap::new();
            for b in &batch {
                let start = window_start(at(b));
                starts.entry((b.child, b.viewer)).and_modify(|s| *s = (*s).min(start)).or_insert(start);
            }
            let mut latest: HashMap<(usize, usize), DateTime<Utc>> = HashMap::new();
            for p in priors.iter().filter(|p| p.shown) {
                let t = now - TimeDelta::minutes(p.minutes_before);
                if starts.get(&(p.child, p.viewer)).is_some_and(|s| t > *s) {
                    let l = latest.entry((p.child, p.viewer)).or_insert(t);
                    *l = (*l).max(t);
                }
            }
            let keyed: Vec<((usize, usize), DateTime<Utc>)> = batch.iter().map(|b| ((b.child, b.viewer), at(b))).collect();
            let expected = decide_in_order(latest, &keyed);
            let before = count(
                &mut conn,
                "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM access_events_id_seq",
            );
            let (recorded, _) =
                record_openings_alone(&mut conn, &Default::default(), &openings, &[], None, Log::default()).unwrap();
            let shown: Vec<bool> = recorded.iter().map(|r| r.shown).collect();
            prop_assert_eq!(&shown, &expected);
            let ids: Vec<i64> = recorded.iter().map(|r| r.id).collect();
            let drawn: Vec<i64> = (1..=batch.len() as i64).map(|i| before + i).collect();
            prop_assert_eq!(ids, drawn, "stored as first read and decided, not read again");
            Ok(())
        })
        .unwrap();
}

/// The claim's own answer, asked directly: a basis that is what the table holds is claimed; one
/// that differs in any pair (a shown access it did not see, or one it saw that is not the latest)
/// is a serialization failure, and nothing of the statement is kept. The batch's own accesses do
/// not count against it, whenever the statement inserts them.
#[test]
fn the_claim_refuses_a_basis_that_is_not_what_the_table_holds() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let now = Utc::now();
    let hours_ago = |h: i64| (now - TimeDelta::hours(h)).to_rfc3339();
    execute(
        &mut conn,
        &format!(
            "INSERT INTO access_events (id, nhs_number, accessed_at, viewer_id, viewer_name, job_role_code, \
             organisation_code, channel, shown) VALUES \
             (900001, '{NOAH_WILLIAMS}', '{}', 'claim-a', 'Dr A', 'R8000', 'RJZ', 'FHIR', true), \
             (900002, '{NOAH_WILLIAMS}', '{}', 'claim-a', 'Dr A', 'R8000', 'RJZ', 'FHIR', false), \
             (900003, '{NOAH_WILLIAMS}', '{}', 'claim-a', 'Dr A', 'R8000', 'RJZ', 'FHIR', true)",
            hours_ago(30),
            hours_ago(2),
            hours_ago(1)
        ),
    );
    let claim = |conn: &mut PgConnection, latest: &str, own: &str| {
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!(
                "SELECT cpis_claim_children(ARRAY[1]::bigint[], 2000, ARRAY['{NOAH_WILLIAMS}'], ARRAY['claim-a'], \
                 ARRAY['{}'::timestamptz], ARRAY[{latest}]::timestamptz[], ARRAY[{own}]::bigint[])",
                hours_ago(24)
            )),
            conn,
        )
    };
    let serialization = |r: Result<usize, diesel::result::Error>| {
        matches!(
            r,
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::SerializationFailure, _))
        )
    };
    let latest = format!("'{}'::timestamptz", hours_ago(1));
    assert_eq!(claim(&mut conn, &latest, "").unwrap(), 1, "the basis the table holds");
    assert!(serialization(claim(&mut conn, "NULL", "")), "a shown access it did not see");
    assert!(serialization(claim(&mut conn, &format!("'{}'::timestamptz", hours_ago(2)), "")), "not the latest");
    // Its own shown access (as if inserted before the claim asked) is not another opening's.
    assert_eq!(claim(&mut conn, "NULL", "900003").unwrap(), 1);
    // The lock timeout is set for the locks alone: after the claim it is the transaction's again.
    execute(&mut conn, "BEGIN");
    execute(&mut conn, "SET LOCAL lock_timeout = '7s'");
    assert_eq!(claim(&mut conn, &latest, "").unwrap(), 1);
    assert_eq!(crate::support::db::texts(&mut conn, "SELECT current_setting('lock_timeout') AS s"), ["7s"]);
    execute(&mut conn, "ROLLBACK");
}

/// A tab's opening as the access recorder gets it, with its read ahead when there is one.
fn tab_opening(who: &str, at: DateTime<Utc>, read_ahead: Option<ReadAheadAt>) -> Opening {
    Opening {
        nhs_number: NOAH_WILLIAMS.to_owned(),
        history_of: vec![NOAH_WILLIAMS.to_owned()],
        viewer: api_viewer(who),
        actor: cpis::audit::Actor::Anonymous,
        at,
        exchange: None,
        read_ahead,
    }
}

/// What the tab thread reads ahead for `who` opening Noah's tab at `at`, with the mark before it.
fn read_ahead(conn: &mut PgConnection, recent: &Recent, who: &str, at: DateTime<Utc>) -> ReadAheadAt {
    let mark = recent.mark();
    let viewer = api_viewer(who);
    let access = NewAccess { nhs_number: NOAH_WILLIAMS, viewer: &viewer, at };
    let (_, read) = lookup_held_reading_ahead(conn, &[access]).unwrap().remove(0);
    ReadAheadAt { mark, read: read.expect("a current record holding items is read ahead") }
}

/// Records one opening as a recorder thread does, remembering it in `recent`: whether it was
/// shown, its id, and its history's ids.
fn record(conn: &mut PgConnection, recent: &Recent, opening: Opening) -> (bool, i64, Vec<i64>) {
    let opened = record_all(conn, &Default::default(), None, Some(recent), &[opening]).unwrap().remove(0).unwrap();
    (opened.recorded.shown, opened.recorded.id, opened.history.iter().map(|h| h.id).collect())
}

/// Issue 8: what recording an opening reads is read ahead with its record, often while the batch
/// before is being recorded. That read lacks the openings this instance recorded after it; the
/// recorder adds them, and stores the opening as read: its id is the one read ahead (no second
/// read, no fallback), the first-access rule counts the openings recorded since (CP-IS047), and
/// the history lists them (CP-IS048).
#[test]
fn a_read_ahead_is_completed_with_what_this_instance_recorded_since() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let recent = Recent::default();
    let now = Utc::now();
    let first = read_ahead(&mut conn, &recent, "ahead-a", now);
    let again = read_ahead(&mut conn, &recent, "ahead-a", now + TimeDelta::seconds(1));
    assert_ne!(first.read.id, again.read.id);
    // Meanwhile someone else's opening (stamped a moment earlier) is recorded, read afresh.
    let (shown, other, _) = record(&mut conn, &recent, tab_opening("ahead-b", now - TimeDelta::seconds(1), None));
    assert!(shown);
    let (shown, id, history) = record(&mut conn, &recent, tab_opening("ahead-a", now, Some(first.clone())));
    assert!(shown);
    assert_eq!(id, first.read.id, "stored as read ahead");
    assert_eq!(&history[..2], [id, other], "the opening recorded since is listed");
    // The same viewer's second opening was read before the first was recorded: within its window.
    let (shown, id, history) =
        record(&mut conn, &recent, tab_opening("ahead-a", now + TimeDelta::seconds(1), Some(again.clone())));
    assert!(!shown, "CP-IS047: the first, recorded after this was read, counts");
    assert_eq!(id, again.read.id, "stored as read ahead, not read again");
    assert_eq!(&history[..2], [first.read.id, other]);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id = 'ahead-a' AND shown"), 1);
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

/// What another instance recorded after a read ahead is not remembered here: when it is the same
/// viewer's opening of the child, the store's check finds it (migration 000034) and the opening
/// is read again, locked, and decided on what the table holds (CP-IS047).
#[test]
fn a_read_ahead_overtaken_by_another_instance_is_read_again() {
    let db = TestDatabase::new(Template::Demo);
    let (mut conn, mut elsewhere) = (db.conn(), db.conn());
    let recent = Recent::default();
    let now = Utc::now();
    let stale = read_ahead(&mut conn, &recent, "ahead-c", now + TimeDelta::seconds(1));
    let viewer = api_viewer("ahead-c");
    let other =
        AccessOpening { nhs_number: NOAH_WILLIAMS, viewer: &viewer, actor: cpis::audit::Actor::Anonymous, at: now };
    execute(&mut elsewhere, "BEGIN");
    assert!(record_openings(&mut elsewhere, &[other]).unwrap()[0].shown);
    execute(&mut elsewhere, "COMMIT");
    let (shown, id, history) =
        record(&mut conn, &recent, tab_opening("ahead-c", now + TimeDelta::seconds(1), Some(stale.clone())));
    assert!(!shown, "decided again on the table: the other instance's opening is within its window");
    assert_ne!(id, stale.read.id, "read again, with an id of its own");
    assert_eq!(history.len(), history.iter().collect::<std::collections::HashSet<_>>().len());
    assert_eq!(count(&mut conn, &format!("SELECT count(*) FROM access_events WHERE id = {}", stale.read.id)), 0);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM access_events WHERE viewer_id = 'ahead-c'"), 2);
}
