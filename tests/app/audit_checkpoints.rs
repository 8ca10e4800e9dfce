//! Signed checkpoints of the audit trail and the verification page (CP-IS074).
//!
//! The hash chain alone does not show a chain rewritten with every hash recomputed; checkpoints
//! signed with a key kept outside the database do. These tests tamper as the database superuser,
//! bypassing the append-only triggers, and expect the verifier to name what was changed.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel::prelude::*;
use reqwest::StatusCode;

use cpis::audit::chain::{self, EntryFields, GENESIS};
use cpis::audit::checkpoint::{self, Checkpoint};
use cpis::audit::verify::{verify, verify_all, Checkpoints, Report, Verdict};
use cpis::audit::{Actor, Event};
use cpis::config::AuditKey;
use cpis::jobs::queue::{self, Status};
use cpis::jobs::{Context, Kind};
use cpis::schema::audit_log;

use crate::support::db::{count, execute};
use crate::support::{between, Template, TestApp, TestDatabase};

const KEY_HEX: &str = "6b6579206f6620746865206175646974207472616c20666f722074686520746573747321";
const OTHER_KEY_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn key() -> AuditKey {
    AuditKey::from_hex(KEY_HEX).unwrap()
}

fn other_key() -> AuditKey {
    AuditKey::from_hex(OTHER_KEY_HEX).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn append(conn: &mut PgConnection, action: &'static str) {
    cpis::audit::record(conn, Event::new(Actor::Operator, action)).unwrap();
}

fn sign_now(conn: &mut PgConnection, key: &AuditKey) -> Checkpoint {
    conn.transaction(|c| checkpoint::write(c, key, now())).unwrap().expect("a checkpoint")
}

fn id_of(conn: &mut PgConnection, action: &str) -> i64 {
    count(conn, &format!("SELECT id FROM audit_log WHERE action = '{action}'"))
}

/// As the database superuser: the append-only triggers do not fire for this session's changes.
fn bypass_triggers(conn: &mut PgConnection) {
    execute(conn, "SET session_replication_role = replica");
}

fn restore_triggers(conn: &mut PgConnection) {
    execute(conn, "SET session_replication_role = origin");
}

fn broken(report: &Report) -> &cpis::audit::verify::Broken {
    report.broken.as_ref().unwrap_or_else(|| panic!("expected a broken trail: {report:?}"))
}

/// Rewrites every entry's `prev_hash` and `hash` from the first, as someone who can write the
/// database but does not hold the key would after altering an entry.
fn recompute_whole_chain(conn: &mut PgConnection) {
    type Row = (i64, DateTime<Utc>, String, String, Option<String>, serde_json::Value);
    let rows: Vec<Row> = audit_log::table
        .order(audit_log::id)
        .select((
            audit_log::id,
            audit_log::occurred_at,
            audit_log::actor,
            audit_log::action,
            audit_log::nhs_number,
            audit_log::details,
        ))
        .load(conn)
        .unwrap();
    let mut prev = GENESIS.to_vec();
    for (id, occurred_at, actor, action, nhs_number, details) in rows {
        let fields = EntryFields {
            occurred_at,
            actor: &actor,
            action: &action,
            nhs_number: nhs_number.as_deref(),
            details: &details,
        };
        let hash = chain::entry_hash(&prev, &fields).to_vec();
        diesel::update(audit_log::table.find(id))
            .set((audit_log::prev_hash.eq(&prev), audit_log::hash.eq(&hash)))
            .execute(conn)
            .unwrap();
        prev = hash;
    }
}

#[test]
fn a_checkpoint_signs_the_head_and_verifies_with_its_key() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    append(&mut conn, "test.before");
    let head = id_of(&mut conn, "test.before");
    let first = sign_now(&mut conn, &key());
    assert_eq!(first.entry_id, head, "the chain's head when signed");
    assert_eq!(first.prev_signature, checkpoint::GENESIS_SIGNATURE.to_vec());
    assert_eq!(first.key_id, checkpoint::key_id(&key()));
    assert!(checkpoint::signature_valid(&key(), &first.fields(), &first.signature));
    assert!(!checkpoint::signature_valid(&other_key(), &first.fields(), &first.signature));
    // The key is never stored: neither its hex nor its bytes appear in the row.
    assert!(!first.key_id.contains(&KEY_HEX[..16]));
    // Its own audit entry names it, after the head it signed.
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_log WHERE action = 'audit.checkpointed'"), 1);
    append(&mut conn, "test.after");
    let second = sign_now(&mut conn, &key());
    assert_eq!(second.prev_signature, first.signature, "checkpoints form a chain");

    let report = verify_all(&mut conn, Some(&key())).unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.checkpoints, Checkpoints::Checked(2));
    assert_eq!(Verdict::Intact { entries: report.entries, purged: 0 }, verify(&mut conn).unwrap());
    // Without a key the chain is still checked, and the report says the checkpoints were not.
    let unkeyed = verify_all(&mut conn, None).unwrap();
    assert!(unkeyed.intact());
    assert_eq!(unkeyed.checkpoints, Checkpoints::NotChecked);
    assert!(unkeyed.summary().contains("not checked"), "{}", unkeyed.summary());
}

#[test]
fn one_rewritten_row_is_named() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    append(&mut conn, "test.a");
    append(&mut conn, "test.b");
    sign_now(&mut conn, &key());
    append(&mut conn, "test.c");
    let a = id_of(&mut conn, "test.a");
    bypass_triggers(&mut conn);
    execute(&mut conn, &format!("UPDATE audit_log SET actor = 'user:999' WHERE id = {a}"));
    restore_triggers(&mut conn);
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    let b = broken(&report);
    assert_eq!(b.entry_id, a);
    assert_eq!(b.checkpoint_id, None);
    assert!(b.reason.contains("altered"), "{}", b.reason);
    assert!(report.summary().contains(&format!("entry {a}")));
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Broken { entry_id, .. } if entry_id == a));
}

#[test]
fn a_whole_chain_rewritten_with_recomputed_hashes_passes_the_chain_but_not_the_checkpoints() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    append(&mut conn, "test.a");
    append(&mut conn, "test.b");
    let signed = sign_now(&mut conn, &key());
    append(&mut conn, "test.c");
    let a = id_of(&mut conn, "test.a");
    assert!(verify_all(&mut conn, Some(&key())).unwrap().intact());

    bypass_triggers(&mut conn);
    execute(&mut conn, &format!("UPDATE audit_log SET actor = 'user:999' WHERE id = {a}"));
    recompute_whole_chain(&mut conn);
    restore_triggers(&mut conn);

    // The chain alone cannot tell.
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Intact { .. }), "the hashes were all recomputed");
    assert!(verify_all(&mut conn, None).unwrap().intact(), "nor can a verification without the key");
    // The signed head no longer matches.
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    let b = broken(&report);
    assert_eq!((b.entry_id, b.checkpoint_id), (signed.entry_id, Some(signed.id)));
    assert!(b.reason.contains("rewritten"), "{}", b.reason);

    // Nor can the rewriter fix the checkpoint's hash without the key.
    let head_hash: Vec<u8> = audit_log::table.find(signed.entry_id).select(audit_log::hash).first(&mut conn).unwrap();
    bypass_triggers(&mut conn);
    diesel::update(cpis::schema::audit_checkpoints::table.find(signed.id))
        .set(cpis::schema::audit_checkpoints::entry_hash.eq(&head_hash))
        .execute(&mut conn)
        .unwrap();
    restore_triggers(&mut conn);
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    let b = broken(&report);
    assert_eq!(b.checkpoint_id, Some(signed.id));
    assert!(b.reason.contains("does not match its signature"), "{}", b.reason);
}

#[test]
fn a_removed_checkpoint_is_detected() {
    for which in ["middle", "last"] {
        let db = TestDatabase::new(Template::Demo);
        let mut conn = db.conn();
        let mut signed = Vec::new();
        for action in ["test.a", "test.b", "test.c"] {
            append(&mut conn, action);
            signed.push(sign_now(&mut conn, &key()));
        }
        assert_eq!(verify_all(&mut conn, Some(&key())).unwrap().checkpoints, Checkpoints::Checked(3));
        let removed = if which == "middle" { &signed[1] } else { &signed[2] };
        bypass_triggers(&mut conn);
        execute(&mut conn, &format!("DELETE FROM audit_checkpoints WHERE id = {}", removed.id));
        restore_triggers(&mut conn);
        let report = verify_all(&mut conn, Some(&key())).unwrap();
        let b = broken(&report);
        assert_eq!(b.checkpoint_id, Some(removed.id), "{which}: {b:?}");
        assert!(b.reason.contains("removed"), "{which}: {}", b.reason);
        // The entry named is the one that recorded the checkpoint.
        let recorded = count(
            &mut conn,
            &format!(
                "SELECT id FROM audit_log WHERE action = 'audit.checkpointed' AND (details->>'checkpoint_id')::bigint = {}",
                removed.id
            ),
        );
        assert_eq!(b.entry_id, recorded, "{which}");
    }
}

#[test]
fn entries_cut_from_the_end_are_detected() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    append(&mut conn, "test.a");
    let signed = sign_now(&mut conn, &key());
    // Everything from the signed head on is removed: what is left is a valid, shorter chain.
    bypass_triggers(&mut conn);
    execute(&mut conn, &format!("DELETE FROM audit_log WHERE id >= {}", signed.entry_id));
    restore_triggers(&mut conn);
    assert!(matches!(verify(&mut conn).unwrap(), Verdict::Intact { .. }));
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    let b = broken(&report);
    assert_eq!((b.entry_id, b.checkpoint_id), (signed.entry_id, Some(signed.id)));
    assert!(b.reason.contains("no longer in the chain"), "{}", b.reason);
}

#[test]
fn a_checkpoint_under_another_key_is_reported_as_such() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let foreign = sign_now(&mut conn, &other_key());
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    let b = broken(&report);
    assert_eq!(b.checkpoint_id, Some(foreign.id));
    assert!(b.reason.contains("another key"), "{}", b.reason);
    assert!(b.reason.contains(&checkpoint::key_id(&other_key())), "names the key id it was signed under");
    assert!(b.reason.contains("cannot be verified with this key"), "{}", b.reason);
    // Under its own key it holds.
    assert!(verify_all(&mut conn, Some(&other_key())).unwrap().intact());
}

/// A job of `kind` due at `at`, put in the queue by hand.
fn one_job(conn: &mut PgConnection, kind: Kind, at: DateTime<Utc>) {
    let key = cpis::jobs::schedule::key(at);
    execute(
        conn,
        &format!(
            "INSERT INTO jobs (kind, key, scheduled_for, run_after) VALUES ('{}', '{key}', '{at:?}', '{at:?}')",
            kind.code()
        ),
    );
}

fn summary_of(status: &Status) -> serde_json::Value {
    match status {
        Status::Done { summary } => summary.clone(),
        other => panic!("the job did not succeed: {other:?}"),
    }
}

#[test]
fn the_hourly_job_signs_once_per_occurrence_and_not_without_a_key() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let t = now();
    let keyed = Context { audit_key: Some(key()) };

    // Without a key: done, nothing signed.
    one_job(&mut conn, Kind::AuditCheckpoint, t - Duration::hours(3));
    let o = queue::run_one(&mut conn, &Context::default(), t).unwrap().expect("due");
    assert_eq!(summary_of(&o.status)["signed"], false);
    assert!(summary_of(&o.status)["note"].as_str().unwrap().contains("no audit key"));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_checkpoints"), 0);

    // Two occurrences caught up at once: the first signs, the second finds it and signs nothing.
    one_job(&mut conn, Kind::AuditCheckpoint, t - Duration::hours(2));
    one_job(&mut conn, Kind::AuditCheckpoint, t - Duration::hours(1));
    let first = queue::run_one(&mut conn, &keyed, t).unwrap().expect("due");
    let s = summary_of(&first.status);
    assert_eq!(s["signed"], true, "{s}");
    assert_eq!(s["key_id"], checkpoint::key_id(&key()).as_str());
    let second = queue::run_one(&mut conn, &keyed, t).unwrap().expect("due");
    assert_eq!(summary_of(&second.status)["signed"], false);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_checkpoints"), 1);

    // The next hour's occurrence signs again, chained to the first.
    let later = t + Duration::hours(1);
    one_job(&mut conn, Kind::AuditCheckpoint, later);
    let third = queue::run_one(&mut conn, &keyed, later).unwrap().expect("due");
    assert_eq!(summary_of(&third.status)["signed"], true);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_checkpoints"), 2);
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.checkpoints, Checkpoints::Checked(2));
}

#[tokio::test]
async fn the_page_shows_the_last_verification_and_verify_now_records_one() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.audit_key = Some(key()));
    let signed = sign_now(&mut app.conn(), &key());
    let c = app.signed_in("helen.ward").await;
    let page = c.text("/reports/audit").await;
    assert!(page.contains(&format!("Configured (key id {})", checkpoint::key_id(&key()))), "{page}");
    assert!(page.contains("id=\"no-verification\""));
    assert!(between(&page, "id=\"last-checkpoint\">", "</dd>")
        .unwrap()
        .contains(&format!("Checkpoint {},", signed.id)));
    // An operator's run shows on the page too.
    {
        let mut conn = app.conn();
        cpis::audit::verify::verify_and_record(&mut conn, Some(&key()), Actor::Operator).unwrap();
    }
    let page = c.text("/reports/audit").await;
    assert_eq!(between(&page, "id=\"last-run-by\">", "</dd>").unwrap(), "An operator (cpis audit verify)");

    // Verify now, as helen.ward.
    let res = c.post_form("/reports/audit/verify", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/reports/audit");
    let helen = app.count("SELECT id FROM users WHERE username = 'helen.ward'");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_verifications WHERE run_by = 'user:{helen}' AND intact AND checkpoints = 1 \
             AND broken_entry_id IS NULL"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'audit.verified' AND actor = 'user:{helen}' \
             AND details->>'outcome' = 'intact' AND (details->>'checkpoints')::int = 1"
        )),
        1
    );
    let page = c.text("/reports/audit").await;
    assert_eq!(between(&page, "id=\"last-run-by\">", "</dd>").unwrap(), "Helen Ward");
    assert!(between(&page, "id=\"last-outcome\">", "</dd>").unwrap().contains("Intact"));
    assert_eq!(between(&page, "id=\"last-checkpoints\">", "</dd>").unwrap(), "1");
    assert!(page.contains("id=\"verifications-table\""));

    // Tampered: the next run names the entry.
    let first = {
        let mut conn = app.conn();
        let first = count(&mut conn, "SELECT min(id) FROM audit_log");
        bypass_triggers(&mut conn);
        execute(&mut conn, &format!("UPDATE audit_log SET actor = 'user:999' WHERE id = {first}"));
        first
    };
    let res = c.post_form("/reports/audit/verify", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = c.text("/reports/audit").await;
    assert!(between(&page, "id=\"last-outcome\">", "</dd>").unwrap().contains("Broken"));
    assert_eq!(between(&page, "id=\"last-broken-entry\">", "</dd>").unwrap(), first.to_string());
    assert!(between(&page, "id=\"last-reason\">", "</dd>").unwrap().contains("altered"));
    assert_eq!(app.count("SELECT count(*) FROM audit_verifications WHERE NOT intact"), 1);
}

#[tokio::test]
async fn without_a_key_the_page_says_so_and_verify_now_checks_the_chain() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("helen.ward").await;
    let page = c.text("/reports/audit").await;
    assert!(page.contains("Not configured"), "{page}");
    let res = c.post_form("/reports/audit/verify", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT count(*) FROM audit_verifications WHERE intact AND checkpoints = 0"), 1);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE action = 'audit.verified' AND details->>'checkpoints_checked' = 'false'"
        ),
        1
    );
}

#[tokio::test]
async fn verify_now_needs_the_csrf_token_and_the_reports_permission() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.audit_key = Some(key()));
    let helen = app.signed_in("helen.ward").await;
    let res = helen.http.post(app.url("/reports/audit/verify")).form(&[("x", "y")]).send().await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = helen.http.post(app.url("/reports/audit/verify")).form(&[("csrf_token", "forged")]).send().await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(app.count("SELECT count(*) FROM audit_verifications"), 0);

    let amy = app.signed_in("amy.patel").await;
    assert_eq!(amy.get("/reports/audit").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(amy.post_form("/reports/audit/verify", &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT count(*) FROM audit_verifications"), 0);
}

#[test]
fn a_signed_head_purged_by_retention_still_verifies_through_its_link() {
    // CP-IS076 with CP-IS074: the entry a checkpoint signed is purged; its link keeps the hash.
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let t = now();
    let adult = cpis::seed::demo::test_number(800_001);
    let born = cpis::domain::dates::anniversary(cpis::domain::dates::uk_date(t), -27);
    execute(
        &mut conn,
        &format!(
            "INSERT INTO patients (nhs_number, family_name, gender, birth_date, family_key, given_key, \
             family_soundex, given_soundex) VALUES ('{adult}', 'Retained', 'female', '{born}', 'retained', '', 'R353', '')"
        ),
    );
    cpis::audit::record(&mut conn, Event::new(Actor::Operator, "test.viewed").about(&adult)).unwrap();
    let signed = sign_now(&mut conn, &key());
    assert_eq!(count(&mut conn, &format!("SELECT id FROM audit_log WHERE nhs_number = '{adult}'")), signed.entry_id);
    let summary = conn.transaction(|c| cpis::jobs::retention::run(c, t, t)).unwrap();
    assert_eq!(summary["audit_entries_purged"], 1, "{summary}");
    assert_eq!(count(&mut conn, &format!("SELECT count(*) FROM audit_purged WHERE entry_id = {}", signed.entry_id)), 1);
    let report = verify_all(&mut conn, Some(&key())).unwrap();
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.purged, report.checkpoints), (1, Checkpoints::Checked(1)));
}

/// `n` entries as an upload writes them, numbered, marked `what`.
fn replaced_entries(n: usize, what: &str) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::new(Actor::LocalAuthority("E10000016".into()), "cp.record_replaced")
                .about("9990000050")
                .details(serde_json::json!({"n": i, "what": what}))
        })
        .collect()
}

/// Issue 8, migration 000021: a large action's entries commit with it in `audit_pending` and are
/// chained afterwards a chunk per transaction, so the chain's lock is never held for the whole
/// action. They end up in the chain in their order and the chain verifies; until then they cannot
/// be changed or removed; entries a crash left pending are chained before the next checkpoint
/// is signed, so the signed head covers them.
#[test]
fn a_large_actions_entries_are_chained_a_chunk_at_a_time() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let logged = |conn: &mut PgConnection| count(conn, "SELECT count(*) FROM audit_log");
    let before = logged(&mut conn);
    conn.transaction(|c| {
        cpis::audit::pend(c, replaced_entries(4_500, "file")).map_err(|_| diesel::result::Error::RollbackTransaction)
    })
    .unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_pending"), 4_500);
    assert_eq!(logged(&mut conn), before, "pending entries are not in the chain yet");
    // They cannot be changed nor removed other than by chaining them.
    for sql in
        ["UPDATE audit_pending SET actor = 'someone else'", "DELETE FROM audit_pending", "TRUNCATE audit_pending"]
    {
        assert!(diesel::sql_query(sql).execute(&mut conn).is_err(), "refused: {sql}");
    }
    assert_eq!(cpis::audit::chain_pending(&mut conn).unwrap(), 9, "500 at a time, each its own transaction");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_pending"), 0);
    assert_eq!(logged(&mut conn), before + 4_500);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) FROM (SELECT (details->>'n')::int AS n, row_number() OVER (ORDER BY id) - 1 AS k \
             FROM audit_log WHERE details->>'what' = 'file') t WHERE n = k"
        ),
        4_500,
        "in their order"
    );
    match verify(&mut conn).unwrap() {
        Verdict::Intact { .. } => {}
        broken => panic!("{broken:?}"),
    }
    // Left pending by a crash: the next checkpoint chains them first and signs a head after them.
    conn.transaction(|c| {
        cpis::audit::pend(c, replaced_entries(5, "left")).map_err(|_| diesel::result::Error::RollbackTransaction)
    })
    .unwrap();
    let signed = sign_now(&mut conn, &key());
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_pending"), 0);
    let last_left = count(&mut conn, "SELECT max(id) FROM audit_log WHERE details->>'what' = 'left'");
    assert!(signed.entry_id >= last_left, "the signed head covers the entries chained for it");
    assert!(verify_all(&mut conn, Some(&key())).unwrap().intact());
    // Without a key, the hourly job still chains what was left pending.
    conn.transaction(|c| {
        cpis::audit::pend(c, replaced_entries(3, "keyless")).map_err(|_| diesel::result::Error::RollbackTransaction)
    })
    .unwrap();
    conn.transaction(|c| cpis::jobs::audit_checkpoint::run(c, None, now(), now())).unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_pending"), 0, "chained without a key");
    // The expiry job chains anything pending before its own changes, which CP-IS075 replays
    // after the uploads they change. (The demo data has items for it to expire.)
    conn.transaction(|c| {
        cpis::audit::pend(c, replaced_entries(3, "before expiry"))
            .map_err(|_| diesel::result::Error::RollbackTransaction)
    })
    .unwrap();
    let day = Utc::now() + chrono::TimeDelta::days(3 * 365);
    conn.transaction(|c| cpis::jobs::expiry::run(c, day, day)).unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM audit_pending"), 0);
    let (last_pending, first_expiry) = (
        count(&mut conn, "SELECT max(id) FROM audit_log WHERE details->>'what' = 'before expiry'"),
        count(&mut conn, "SELECT min(id) FROM audit_log WHERE action IN ('cp.item_expired', 'cp.item_end_dated')"),
    );
    assert!(
        first_expiry > last_pending,
        "the expiry's entries ({first_expiry}) follow the pending ones ({last_pending})"
    );
    assert!(verify_all(&mut conn, Some(&key())).unwrap().intact());
}

/// Issue 8: an ordinary action's pending entries (up to 2,000) are chained when it is answered,
/// even behind another action's; a larger action's are left to the background chainer. Details of
/// every awkward kind come back from the chain exactly as written, and the chain verifies; an
/// entry `jsonb` would refuse (a NUL character) is refused with its action, not left to hold up
/// every chaining after it.
#[test]
fn an_actions_entries_are_chained_before_it_is_answered_even_behind_others() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let pend = |conn: &mut PgConnection, events: Vec<Event>| {
        conn.transaction(|c| {
            cpis::audit::pend(c, events).map_err(|e| {
                assert!(matches!(e, cpis::error::AppError::BadRequest(_)), "{e:?}");
                diesel::result::Error::RollbackTransaction
            })
        })
    };
    let pending = |conn: &mut PgConnection| count(conn, "SELECT count(*) FROM audit_pending");

    // A national file's backlog, then an ordinary file's entries behind it.
    let backlog = pend(&mut conn, replaced_entries(4_500, "backlog")).unwrap().unwrap();
    let awkward = serde_json::json!({
        "quote \" backslash \\ tab \t": ["é", "\u{1}", "\u{7f}", "😀", "\\u0000 as text"],
        "numbers": [0, -1, 1.5, 1e-7, 12345678901234_i64, 0.1],
        "empty": {"list": [], "object": {}, "text": ""},
        "null": null, "true": true,
    });
    let ordinary = pend(
        &mut conn,
        vec![Event::new(Actor::Service, "cp.record_replaced").about("9990000050").details(awkward.clone())],
    )
    .unwrap()
    .unwrap();
    assert_eq!((backlog.count, ordinary.count), (4_500, 1));
    assert!(cpis::audit::chain_pended(&mut conn, ordinary).unwrap(), "all of it chained");
    assert_eq!(pending(&mut conn), 0, "the backlog first, as the chain's order is the pending order");
    let stored: serde_json::Value = audit_log::table
        .filter(audit_log::actor.eq("service"))
        .order(audit_log::id.desc())
        .select(audit_log::details)
        .first(&mut conn)
        .unwrap();
    assert_eq!(stored, awkward);

    // The largest ordinary action is chained whole; a larger one is left for the chainer.
    let largest =
        pend(&mut conn, replaced_entries(cpis::audit::CHAINED_BEFORE_ANSWER, "largest ordinary")).unwrap().unwrap();
    assert!(cpis::audit::chain_pended(&mut conn, largest).unwrap());
    assert_eq!(pending(&mut conn), 0);
    let large = pend(&mut conn, replaced_entries(cpis::audit::CHAINED_BEFORE_ANSWER + 1, "large")).unwrap().unwrap();
    assert!(!cpis::audit::chain_pended(&mut conn, large).unwrap(), "left for the chainer");
    assert_eq!(pending(&mut conn), 2_001);
    assert_eq!(cpis::audit::chain_pending(&mut conn).unwrap(), 5);
    assert!(cpis::audit::chain_pended(&mut conn, large).unwrap(), "nothing left");
    match verify(&mut conn).unwrap() {
        Verdict::Intact { .. } => {}
        broken => panic!("{broken:?}"),
    }

    // A NUL character: refused with its action (the transaction above rolls back), nothing pending.
    let refused = pend(
        &mut conn,
        vec![Event::new(Actor::Service, "cp.record_replaced").details(serde_json::json!({"child": "a\u{0}b"}))],
    );
    assert!(refused.is_err());
    assert_eq!(pending(&mut conn), 0);
    // The same for an entry recorded with its action through the outbox: a clear refusal, not a
    // database error.
    let recorded = cpis::audit::record(
        &mut conn,
        Event::new(Actor::Service, "cp.record_replaced").details(serde_json::json!({"child": "a\u{0}b"})),
    );
    assert!(matches!(recorded, Err(cpis::error::AppError::BadRequest(_))), "{recorded:?}");
}

/// Issue 8: the background chainer links what is pending when woken, and a pass that fails is
/// tried again without another wake. Here an entry `jsonb` refuses (written behind the service's
/// back) fails every pass until it is removed; then the retry chains the rest.
#[test]
fn the_chainer_chains_when_woken_and_tries_a_failed_pass_again() {
    let db = TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let config = cpis::config::Config::for_database(&db.url);
    let chainer = cpis::audit::chainer::Chainer::start(cpis::db::pool_of(&config, 1));
    let pending = |conn: &mut PgConnection| count(conn, "SELECT count(*) FROM audit_pending");
    let wait_until = |conn: &mut PgConnection, want: i64, within: std::time::Duration| {
        let started = std::time::Instant::now();
        while pending(conn) != want {
            assert!(started.elapsed() < within, "still {} pending, not {want}", pending(conn));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let entries = |n: usize| -> Vec<Event> {
        (0..n).map(|i| Event::new(Actor::Service, "cp.record_replaced").details(serde_json::json!({"n": i}))).collect()
    };
    conn.transaction(|c| cpis::audit::pend(c, entries(2_500)).map_err(|_| diesel::result::Error::RollbackTransaction))
        .unwrap();
    chainer.wake();
    wait_until(&mut conn, 0, std::time::Duration::from_secs(30));

    execute(
        &mut conn,
        r#"INSERT INTO audit_pending (occurred_at, actor, action, canonical)
           VALUES (now(), 'service', 'cp.record_replaced', '[0,"service","cp.record_replaced",null,{"x":"\u0000"}]')"#,
    );
    conn.transaction(|c| cpis::audit::pend(c, entries(10)).map_err(|_| diesel::result::Error::RollbackTransaction))
        .unwrap();
    chainer.wake();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(pending(&mut conn), 11, "the refused entry holds up the pass");
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        "BEGIN; SELECT set_config('cpis.audit_chaining', 'on', true); \
         DELETE FROM audit_pending WHERE canonical LIKE '%\"x\"%'; COMMIT",
    )
    .unwrap();
    wait_until(&mut conn, 0, cpis::audit::chainer::RETRY * 3);
    match verify(&mut conn).unwrap() {
        Verdict::Intact { .. } => {}
        broken => panic!("{broken:?}"),
    }
}
