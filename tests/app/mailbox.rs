//! The mailbox API and message 01 processing, against messages.md: every file and record code,
//! malformed input of every kind, resubmission, the sequence rule, replacement per (NHS number,
//! LA), the inbox and read receipts, and the transmission log (CP-IS002, CP-IS017 to CP-IS024,
//! CP-IS061 to CP-IS063, CP-SC014, CP-SC016, CP-SC017, CP-SC025).

use cpis::domain::codes::{FileCode, RecordCode};
use cpis::seed::demo::fixtures::*;
use reqwest::StatusCode;

use crate::support::uploads::{file, new_id, record, record_for, Mailbox, KENT};
use crate::support::{Template, TestApp};

const CPP: &str = "<ChildProtectionPlan start=\"2026-01-10\"/>";

fn items_of(app: &TestApp, nhs: &str, la: &str) -> Vec<String> {
    use cpis::schema::cp_items::dsl::*;
    use diesel::prelude::*;
    cp_items
        .filter(nhs_number.eq(nhs))
        .filter(la_code.eq(la))
        .filter(deleted_at.is_null())
        .order(item_type)
        .select(item_type)
        .load(&mut app.conn())
        .unwrap()
}

fn current_items(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM cp_items WHERE deleted_at IS NULL")
}

#[tokio::test]
async fn every_record_code_in_one_file_and_counts_that_add_up() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let mut conn = app.conn();
    let unknown = cpis::seed::demo::test_number(60_000);
    let records = vec![
        record_for(&mut conn, NOAH_WILLIAMS, "K-1", CPP),                // CPR06
        record("1234567890", "K-2", "A", "Bee", "2015-01-01", CPP),      // CPR04
        record(&unknown, "K-3", "A", "Bee", "2015-01-01", CPP),          // CPR01
        record_for(&mut conn, OLIVER_OLD_NUMBER, "K-4", CPP),            // CPR05
        record_for(&mut conn, AVA_HALL, "K-5", CPP),                     // CPR02
        record(JACK_ROBINSON, "K-6", "Zed", "Quill", "1999-12-31", CPP), // CPR03
        record_for(&mut conn, ALFIE_MOORE, "K-7", ""),                   // CPR07: no item
        record(LEO_BAKER, "K-8", "Leo", "Baker", "2021-01-01", CPP),     // CPR01: invalidated
    ];
    let id = new_id();
    let ack = mb.upload(file(&id, 1, KENT, &records)).await;
    assert_eq!(ack.in_response_to.map(|u| u.to_string()), Some(id), "CP-IS019: correlates to the upload");
    assert_eq!(ack.file_code, FileCode::Cpf02);
    assert_eq!((ack.received, ack.accepted, ack.rejected), (8, 1, 7), "CP-IS018");
    let codes: Vec<RecordCode> = ack.records.iter().map(|r| r.code).collect();
    use RecordCode::*;
    assert_eq!(codes, vec![Cpr06, Cpr04, Cpr01, Cpr05, Cpr02, Cpr03, Cpr07, Cpr01]);
    assert_eq!(ack.records[3].new_nhs_number.as_deref(), Some(OLIVER_BENNETT), "CPR05 carries the new number");
    assert!(ack.records[6].text.contains("Unsuccessful"), "{}", ack.records[6].text);
    assert_eq!(ack.records.iter().map(|r| r.index).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    assert_eq!(items_of(&app, NOAH_WILLIAMS, KENT), vec!["CPP"]);
    assert_eq!(items_of(&app, NOAH_WILLIAMS, "E08000035"), vec!["CPP", "LAC"], "CP-IS021: Leeds's items untouched");
}

#[tokio::test]
async fn all_accepted_is_cpf01_and_all_rejected_is_cpf06() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let ok = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let ack = mb.upload(file(&new_id(), 1, KENT, &[ok])).await;
    assert_eq!(ack.file_code, FileCode::Cpf01);
    let bad = record("1234567890", "K-2", "A", "Bee", "2015-01-01", CPP);
    let ack = mb.upload(file(&new_id(), 2, KENT, &[bad])).await;
    assert_eq!(ack.file_code, FileCode::Cpf06);
    assert_eq!((ack.received, ack.accepted, ack.rejected), (1, 0, 1));
}

#[tokio::test]
async fn malformed_files_are_cpf03_and_store_nothing() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let good_record = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let valid = file(&new_id(), 1, KENT, std::slice::from_ref(&good_record));
    let before = current_items(&app);
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
         <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><LAUpload xmlns=\"urn:cpis:messages:1\" messageId=\"{}\" \
         sequence=\"1\"><Sender odsCode=\"{KENT}\" name=\"&lol3;\" emergencyPhone=\"1\"/>{good_record}</LAUpload>",
        new_id()
    );
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("not XML", b"this is not xml at all".to_vec(), false),
        ("empty", vec![], false),
        ("wrong namespace", valid.replace("urn:cpis:messages:1", "urn:other").into_bytes(), true),
        ("wrong root", valid.replace("LAUpload", "Upload").into_bytes(), true),
        ("truncated", valid.as_bytes()[..valid.len() / 2].to_vec(), true),
        (
            "invalid UTF-8",
            {
                let mut v = valid.clone().into_bytes();
                v.insert(200, 0xff);
                v
            },
            true,
        ),
        (
            "invalid UTF-8 early",
            {
                let mut v = valid.clone().into_bytes();
                v.insert(3, 0xff);
                v
            },
            false,
        ),
        ("entity bomb", bomb.into_bytes(), false),
        ("no messageId", valid.replacen(" messageId=", " x=", 1).into_bytes(), false),
        ("bad sequence", valid.replace("sequence=\"1\"", "sequence=\"-1\"").into_bytes(), true),
        ("no Sender", valid.replace("<Sender", "<Sendr").into_bytes(), true),
        ("no Record", file(&new_id(), 1, KENT, &[]).into_bytes(), true),
        (
            "huge attribute",
            valid.replace("name=\"Kent", &format!("name=\"{}", "K".repeat(2_000_000))).into_bytes(),
            true,
        ),
        (
            "a Sender name too long to store",
            valid.replace("name=\"Kent", &format!("name=\"{}", "K".repeat(300))).into_bytes(),
            true,
        ),
        (
            "a telephone number too long to store",
            valid
                .replace("emergencyPhone=\"01632 960001", &format!("emergencyPhone=\"{}", "1".repeat(60)))
                .into_bytes(),
            true,
        ),
    ];
    for (what, body, has_id) in cases {
        let ack = mb.upload(body).await;
        assert_eq!(ack.file_code, FileCode::Cpf03, "{what}: {}", ack.file_text);
        assert_eq!(ack.in_response_to.is_some(), has_id, "{what}: inResponseTo empty only when unreadable");
        assert_eq!((ack.received, ack.accepted, ack.rejected), (0, 0, 0), "{what}");
        assert!(!ack.file_text.is_empty(), "{what}: the text says what is wrong");
    }
    assert_eq!(current_items(&app), before, "nothing stored");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM local_authorities WHERE code = '{KENT}' AND last_sequence IS NOT NULL"
        )),
        0
    );
}

#[tokio::test]
async fn the_wrong_sender_or_switched_off_sending_is_cpf04() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let ack = mb.upload(file(&new_id(), 1, "E08000035", std::slice::from_ref(&r))).await;
    assert_eq!(ack.file_code, FileCode::Cpf04);
    crate::support::db::execute(
        &mut app.conn(),
        &format!("UPDATE local_authorities SET sending_enabled = false WHERE code = '{KENT}'"),
    );
    let ack = mb.upload(file(&new_id(), 1, KENT, std::slice::from_ref(&r))).await;
    assert_eq!(ack.file_code, FileCode::Cpf04, "CP-SC014");
    assert!(items_of(&app, ALFIE_MOORE, KENT).is_empty());
}

#[tokio::test]
async fn sequences_must_rise_and_gaps_are_mentioned() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    assert_eq!(mb.upload(file(&new_id(), 17, KENT, std::slice::from_ref(&r))).await.file_code, FileCode::Cpf01);
    let stale = mb.upload(file(&new_id(), 17, KENT, std::slice::from_ref(&r))).await;
    assert_eq!(stale.file_code, FileCode::Cpf05);
    assert!(stale.file_text.contains("17"));
    assert_eq!(mb.upload(file(&new_id(), 3, KENT, std::slice::from_ref(&r))).await.file_code, FileCode::Cpf05);
    let gap = mb.upload(file(&new_id(), 20, KENT, std::slice::from_ref(&r))).await;
    assert_eq!(gap.file_code, FileCode::Cpf01);
    assert!(gap.file_text.contains("sequence 20 follows 17"), "{}", gap.file_text);
    // A rejected file's sequence does not count: 21 is still next.
    let bad = record("1234567890", "K-2", "A", "Bee", "2015-01-01", CPP);
    assert_eq!(mb.upload(file(&new_id(), 21, KENT, &[bad])).await.file_code, FileCode::Cpf06);
    assert_eq!(
        mb.upload(file(&new_id(), 21, KENT, std::slice::from_ref(&r))).await.file_code,
        FileCode::Cpf05,
        "CPF06 passed the file checks"
    );
}

#[tokio::test]
async fn a_resubmitted_message_id_changes_nothing_and_gets_the_same_acknowledgement() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let id = new_id();
    let body = file(&id, 5, KENT, &[r]);
    let (_, first) = mb.send(body.clone()).await;
    let ack_id = first["messageId"].as_str().unwrap().to_owned();
    assert_eq!(mb.acknowledge(&ack_id).await, StatusCode::OK);
    assert!(mb.inbox().await.is_empty(), "read receipt: the message leaves the list");
    let items = current_items(&app);
    let (status, again) = mb.send(body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["messageId"].as_str().unwrap(), ack_id, "the same acknowledgement");
    assert_eq!(current_items(&app), items, "nothing changed");
    let inbox = mb.inbox().await;
    assert_eq!(inbox.len(), 1, "the inbox holds it once, unread again");
    assert_eq!(inbox[0]["id"], ack_id.as_str());
    assert_eq!(app.count("SELECT count(*) FROM uploads"), 1);
}

#[tokio::test]
async fn a_record_replaces_everything_this_la_held_for_the_child() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let mut conn = app.conn();
    let both = record_for(
        &mut conn,
        MIA_THOMPSON,
        "K-9",
        "<ChildProtectionPlan start=\"2025-01-01\"/><LookedAfterChild start=\"2025-02-01\"/>",
    );
    assert_eq!(mb.upload(file(&new_id(), 1, KENT, &[both])).await.file_code, FileCode::Cpf01);
    assert_eq!(items_of(&app, MIA_THOMPSON, KENT), vec!["CPP", "LAC"]);
    let lac_only =
        record_for(&mut conn, MIA_THOMPSON, "K-9", "<LookedAfterChild start=\"2025-02-01\" end=\"2026-02-01\"/>");
    assert_eq!(mb.upload(file(&new_id(), 2, KENT, &[lac_only])).await.file_code, FileCode::Cpf01);
    assert_eq!(items_of(&app, MIA_THOMPSON, KENT), vec!["LAC"], "CP-IS020: the CPP left out is removed");
    assert_eq!(items_of(&app, MIA_THOMPSON, "E08000003"), vec!["LAC"], "Manchester's item untouched");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'cp.record_replaced' AND nhs_number = '{MIA_THOMPSON}' \
             AND jsonb_array_length(details->'before') = 2 AND jsonb_array_length(details->'after') = 1"
        )),
        1,
        "each change is audited with before and after"
    );
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

#[tokio::test]
async fn a_repeated_record_is_rejected_after_its_first_occurrence() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let ack = mb.upload(file(&new_id(), 1, KENT, &[r.clone(), r])).await;
    assert_eq!(ack.records[0].code, RecordCode::Cpr06);
    assert_eq!(ack.records[1].code, RecordCode::Cpr07);
    assert!(ack.records[1].text.contains("same NHS number"), "{}", ack.records[1].text);
}

#[tokio::test]
async fn unborn_plans_go_on_the_mothers_number_and_need_an_end() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let mut conn = app.conn();
    let with_end = record_for(
        &mut conn,
        SARAH_COLLINS,
        "K-U1",
        "<UnbornChildProtectionPlan start=\"2026-09-01\" end=\"2027-01-15\"/>",
    );
    let without = record_for(&mut conn, AMELIA_HART, "K-U2", "<UnbornChildProtectionPlan start=\"2026-09-01\"/>");
    let ack = mb.upload(file(&new_id(), 1, KENT, &[with_end, without])).await;
    assert_eq!(ack.records[0].code, RecordCode::Cpr06, "a 29-year-old mother: no age limit (CP-IS003)");
    assert_eq!(ack.records[1].code, RecordCode::Cpr07, "CP-IS033: an unborn plan needs its due date");
    assert_eq!(items_of(&app, SARAH_COLLINS, KENT), vec!["UCPP"]);
}

#[tokio::test]
async fn ten_thousand_records_with_one_bad_one() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    use cpis::schema::patients::dsl::*;
    use diesel::prelude::*;
    let today = chrono::Utc::now().date_naive();
    let kids: Vec<(String, String, String, chrono::NaiveDate)> = patients
        .filter(restricted.eq(false))
        .filter(invalidated.eq(false))
        .filter(superseded_by.is_null())
        .filter(birth_date.gt(today - chrono::TimeDelta::days(365 * 17)))
        .order(nhs_number)
        .limit(10_000)
        .select((nhs_number, given_name, family_name, birth_date))
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(kids.len(), 10_000);
    let mut records: Vec<String> = kids
        .iter()
        .enumerate()
        .map(|(i, (n, g, f, b))| record(n, &format!("K-{i}"), g, f, &b.to_string(), CPP))
        .collect();
    records[5_000] = record(&kids[5_000].0, "K-bad", &kids[5_000].1, &kids[5_000].2, &kids[5_000].3.to_string(), "");
    let ack = mb.upload(file(&new_id(), 1, KENT, &records)).await;
    assert_eq!(ack.file_code, FileCode::Cpf02);
    assert_eq!((ack.received, ack.accepted, ack.rejected), (10_000, 9_999, 1));
    assert_eq!(ack.records[5_000].code, RecordCode::Cpr07);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM cp_items WHERE la_code = '{KENT}' AND deleted_at IS NULL AND upload_id IS NOT NULL"
        )),
        9_999
    );

    // Issue 8, CP-IS074: the answer did not wait for the file's 10,000 audit entries to be
    // chained; the background chainer, woken by the request, links them (without it they would
    // stay pending and this wait would time out).
    let waited = std::time::Instant::now();
    while app.count("SELECT count(*) FROM audit_pending") > 0 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(60), "the chainer never linked the entries");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut conn = app.conn();
    let chained: Vec<Option<String>> = {
        use cpis::schema::audit_log::dsl as a;
        a::audit_log
            .filter(a::action.eq("cp.record_replaced"))
            .filter(a::actor.eq(format!("la:{KENT}")))
            .order(a::id)
            .select(a::nhs_number)
            .load(&mut conn)
            .unwrap()
    };
    let accepted: Vec<Option<String>> =
        kids.iter().enumerate().filter(|(i, _)| *i != 5_000).map(|(_, k)| Some(k.0.clone())).collect();
    assert_eq!(chained, accepted, "one entry per accepted record, in the file's order");
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));

    // The same file again (sequence 2), stored directly: `process` leaves all of its entries
    // (9,999 record entries and the file's own) pending, for the chainer.
    let again = file(&new_id(), 2, KENT, &records);
    let done = cpis::cpis::upload::process(
        &mut conn,
        KENT,
        again.as_bytes(),
        cpis::cpis::upload::Channel::Mailbox,
        cpis::audit::Actor::LocalAuthority(KENT.into()),
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(done.file_code, FileCode::Cpf02);
    assert_eq!(done.pended.map(|p| p.count), Some(10_000));
    assert!(done.chaining_left, "the service wakes the chainer for the rest");
    assert_eq!(app.count("SELECT count(*) FROM audit_pending"), 10_000);
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
    assert_eq!(cpis::audit::chain_pending(&mut conn).unwrap(), 20, "500 at a time");
    assert_eq!(app.count("SELECT count(*) FROM audit_pending"), 0);
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));
}

#[tokio::test]
async fn tokens_are_checked_for_every_call() {
    let app = TestApp::spawn(Template::Demo);
    let kent = Mailbox::new(&app, KENT);
    let leeds = Mailbox::new(&app, "E08000035");
    let http = reqwest::Client::new();
    let res = http.post(kent.url("/outbox")).body("x").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("Bearer"));
    let res = http.get(kent.url("/inbox")).bearer_auth("cpisla_not-a-real-token").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = http.get(kent.url("/inbox")).bearer_auth(&leeds.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "another LA's token");
    // Used once, the token is remembered by the instance (issue 8); revoked by another connection,
    // it is refused once PostgreSQL has announced it (CP-NHS018, migration 000031).
    assert_eq!(http.get(kent.url("/inbox")).bearer_auth(&kent.token).send().await.unwrap().status(), StatusCode::OK);
    let cache = app.sessions.clone().expect("tokens are remembered by default");
    let hashed = cpis::mailbox::tokens::hash(&kent.token);
    if cache.is_listening() {
        assert!(cache.remembers_endpoint(&hashed), "a live token is remembered once used");
    }
    let token_id = app.count("SELECT max(id) FROM endpoint_tokens WHERE la_code = 'E10000016'");
    cpis::mailbox::tokens::revoke(&mut app.conn(), cpis::audit::Actor::Operator, token_id, chrono::Utc::now()).unwrap();
    let start = std::time::Instant::now();
    loop {
        let res = http.get(kent.url("/inbox")).bearer_auth(&kent.token).send().await.unwrap();
        if res.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "a revoked token still answered after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!cache.remembers_endpoint(&hashed), "a revoked token is forgotten");
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens WHERE token_hash = sha256(convert_to('x', 'UTF8'))"), 0);
}

#[tokio::test]
async fn a_file_over_the_limit_is_413_and_stores_nothing() {
    let app = TestApp::spawn_with(Template::Demo, |c| c.upload_limit_bytes = 64 * 1024);
    let mb = Mailbox::new(&app, KENT);
    let (status, json) = mb.send(vec![b'<'; 100 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json["error"].as_str().unwrap().contains("larger than the limit"));
    assert_eq!(app.count("SELECT count(*) FROM uploads"), 0);
}

#[tokio::test]
async fn the_inbox_lists_reads_and_acknowledges() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let (_, json) = mb.send("not xml").await;
    let id = json["messageId"].as_str().unwrap().to_owned();
    let inbox = mb.inbox().await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["type"], "02");
    assert!(inbox[0]["created"].as_str().unwrap().ends_with('Z'));
    assert!(mb.message(&id).await.contains("LAAcknowledgement"));
    let http = reqwest::Client::new();
    for bad in ["not-a-uuid", &new_id()] {
        let res = http.get(mb.url(&format!("/inbox/{bad}"))).bearer_auth(&mb.token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(mb.acknowledge(bad).await, StatusCode::NOT_FOUND);
    }
    // Another LA cannot read or acknowledge Kent's message.
    let leeds = Mailbox::new(&app, "E08000035");
    let res = http.get(leeds.url(&format!("/inbox/{id}"))).bearer_auth(&leeds.token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(mb.acknowledge(&id).await, StatusCode::OK);
    assert_eq!(mb.acknowledge(&id).await, StatusCode::OK, "acknowledging twice is harmless");
    assert!(mb.inbox().await.is_empty());
}

#[tokio::test]
async fn every_transmission_is_logged_without_content() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let id = new_id();
    let ack = mb.upload(file(&id, 1, KENT, &[r])).await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM transmissions WHERE direction = 'in' AND origin = '{KENT}' AND destination = 'CP-IS' \
             AND message_type = '01' AND message_id = '{id}'"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM transmissions WHERE direction = 'out' AND destination = '{KENT}' AND message_type = '02' \
             AND message_id = '{}'",
            ack.message_id
        )),
        1
    );
}

#[tokio::test]
async fn the_senders_name_and_numbers_are_what_clinicians_see() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    assert_eq!(mb.upload(file(&new_id(), 1, KENT, &[r])).await.file_code, FileCode::Cpf01);
    let c = app.signed_in("amy.patel").await;
    let page = c.text(&format!("/patients/{ALFIE_MOORE}/child-care-alert")).await;
    assert!(page.contains("Kent County Council Children&#39;s Services"), "the name in the latest file");
    assert!(page.contains("01632 960001") && page.contains("01632 960002"));
    assert!(page.contains("10/01/2026"), "the plan's start date");
    assert!(!page.contains("K-1"), "never the LA's child id");
}

#[tokio::test]
async fn superseding_or_invalidating_a_held_number_sends_message_06_once() {
    let app = TestApp::spawn(Template::Demo);
    let kent = Mailbox::new(&app, KENT);
    let leeds = Mailbox::new(&app, "E08000035");
    let dir = std::env::temp_dir().join(format!("cpis-06-{}", new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("pds.csv");
    let new_number = cpis::seed::demo::test_number(60_001);
    std::fs::write(
        &csv,
        format!(
            "nhs_number,given_name,family_name,gender,birth_date,death_date,postcode,address,gp_ods,restricted,superseded_by,invalidated\n\
             {new_number},Alfie,Moore,male,2022-01-01,,,,,false,,false\n\
             {AMELIA_HART},Amelia,Hart,female,2009-10-13,,,,,false,{new_number},false\n\
             {MIA_THOMPSON},Mia,Thompson,female,2020-08-14,,,,,false,{new_number},false\n\
             {NOAH_WILLIAMS},Noah,Williams,male,2014-11-17,,,,,false,,true\n"
        ),
    )
    .unwrap();
    let import = |db_url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cpis"))
            .args(["pds", "import", csv.to_str().unwrap()])
            .env("DATABASE_URL", db_url)
            .env("CPIS_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = import(&app.db.url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kent_inbox = kent.inbox().await;
    assert_eq!(kent_inbox.len(), 1, "one message for the LA, listing both its numbers");
    assert_eq!(kent_inbox[0]["type"], "06");
    let kent_id = kent_inbox[0]["id"].as_str().unwrap().to_owned();
    let xml = kent.message(&kent_id).await;
    let notice = cpis::messages::inactive::parse_inactive(&xml).unwrap();
    let mut numbers: Vec<&str> = notice.records.iter().map(|r| r.nhs_number.as_str()).collect();
    numbers.sort();
    assert_eq!(numbers, vec![AMELIA_HART, MIA_THOMPSON]);
    assert!(notice.records.iter().all(|r| r.new_nhs_number.as_deref() == Some(new_number.as_str())));
    // CP-IS023: Mia's information is also held by Manchester, which is told too.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM mailbox_messages WHERE la_code = 'E08000003' AND message_type = '06' AND body LIKE '%{MIA_THOMPSON}%'"
        )),
        1
    );
    // CP-IS061: each 06 is in the transmission log.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM transmissions WHERE message_type = '06' AND direction = 'out' AND message_id = '{kent_id}'"
        )),
        1
    );
    let leeds_inbox = leeds.inbox().await;
    assert_eq!(leeds_inbox.len(), 1, "Leeds holds Noah's information");
    assert!(leeds.message(leeds_inbox[0]["id"].as_str().unwrap()).await.contains("reason=\"invalidated\""));
    // The information stays under the old number until the LA resubmits.
    assert_eq!(items_of(&app, AMELIA_HART, KENT), vec!["CPP", "UCPP"]);
    // Importing the same rows again sends nothing.
    assert!(import(&app.db.url).status.success());
    assert_eq!(app.count("SELECT count(*) FROM mailbox_messages WHERE message_type = '06'"), 3);
}

#[tokio::test]
async fn names_are_checked_against_all_of_the_patients_current_names() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    use chrono::Datelike;
    use cpis::schema::patients::dsl::*;
    use diesel::prelude::*;
    let birth: chrono::NaiveDate = patients.find(ALFIE_MOORE).select(birth_date).first(&mut app.conn()).unwrap();
    // A birth date with its day wrong: verified only through the name rule (CP-IS002).
    let near = birth.with_day(if birth.day() == 1 { 2 } else { 1 }).unwrap().to_string();
    let other_name = record(ALFIE_MOORE, "K-1", "Zak", "Quinn", &near, CPP);
    let ack = mb.upload(file(&new_id(), 1, KENT, std::slice::from_ref(&other_name))).await;
    assert_eq!(ack.records[0].code, RecordCode::Cpr03, "Zak Quinn is not one of his names yet");
    crate::support::db::execute(
        &mut app.conn(),
        &format!(
            "INSERT INTO patient_names (nhs_number, given_name, family_name) VALUES ('{ALFIE_MOORE}', 'Zak', 'Quinn')"
        ),
    );
    let ack = mb.upload(file(&new_id(), 2, KENT, std::slice::from_ref(&other_name))).await;
    assert_eq!(ack.records[0].code, RecordCode::Cpr06, "verified against his other current name");
}

#[tokio::test]
async fn sending_switched_off_on_the_admin_page_refuses_the_next_file() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let owner = app.signed_in("helen.ward").await;
    let res = owner.post_form(&format!("/admin/local-authorities/{KENT}/sending"), &[("enabled", "false")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let r = record_for(&mut app.conn(), ALFIE_MOORE, "K-1", CPP);
    let ack = mb.upload(file(&new_id(), 1, KENT, std::slice::from_ref(&r))).await;
    assert_eq!(ack.file_code, FileCode::Cpf04, "CP-SC014");
    let res = owner.post_form(&format!("/admin/local-authorities/{KENT}/sending"), &[("enabled", "true")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(mb.upload(file(&new_id(), 2, KENT, &[r])).await.file_code, FileCode::Cpf01);
}

/// Whether the server holds a transaction open that has written to cp_items (mid-file).
fn upload_in_flight(conn: &mut diesel::PgConnection) -> bool {
    crate::support::db::count(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_xid IS NOT NULL",
    ) > 0
}

#[tokio::test]
async fn a_server_killed_mid_file_leaves_the_service_as_it_was() {
    use crate::support::server::Server;
    use cpis::schema::patients::dsl::*;
    use diesel::prelude::*;
    let db = crate::support::TestDatabase::new(Template::Demo);
    let mut conn = db.conn();
    let token = cpis::mailbox::tokens::issue_la(&mut conn, cpis::audit::Actor::Operator, KENT, "t").unwrap();
    let before = (
        crate::support::db::count(&mut conn, "SELECT count(*) FROM cp_items"),
        crate::support::db::count(&mut conn, "SELECT count(*) FROM uploads"),
        crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log"),
    );
    let kids: Vec<(String, String, String, chrono::NaiveDate)> = patients
        .filter(restricted.eq(false))
        .filter(invalidated.eq(false))
        .filter(superseded_by.is_null())
        .filter(birth_date.gt(chrono::Utc::now().date_naive() - chrono::TimeDelta::days(365 * 17)))
        .order(nhs_number)
        .limit(10_000)
        .select((nhs_number, given_name, family_name, birth_date))
        .load(&mut conn)
        .unwrap();
    let records: Vec<String> = kids.iter().map(|(n, g, f, b)| record(n, "K-1", g, f, &b.to_string(), CPP)).collect();
    let body = file(&new_id(), 1, KENT, &records);

    let mut server = Server::start(&db);
    server.wait_until_healthy().await;
    let url = format!("http://{}/mesh/v1/{KENT}/outbox", server.addr);
    let sending = tokio::spawn({
        let (url, token, body) = (url.clone(), token.clone(), body.clone());
        async move { reqwest::Client::new().post(url).bearer_auth(token).body(body).send().await }
    });
    // Kill it while the file's transaction is open and has written (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !upload_in_flight(&mut conn) {
        assert!(std::time::Instant::now() < deadline, "the upload never started writing");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill();
    assert!(sending.await.unwrap().is_err(), "the client sees the connection drop, not an answer");
    // PostgreSQL rolls the open transaction back when its connection goes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while upload_in_flight(&mut conn) {
        assert!(std::time::Instant::now() < deadline, "the killed server's transaction never ended");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = (
        crate::support::db::count(&mut conn, "SELECT count(*) FROM cp_items"),
        crate::support::db::count(&mut conn, "SELECT count(*) FROM uploads"),
        crate::support::db::count(&mut conn, "SELECT count(*) FROM audit_log"),
    );
    assert_eq!(after, before, "nothing of the file is stored");
    assert!(matches!(cpis::audit::verify::verify(&mut conn).unwrap(), cpis::audit::verify::Verdict::Intact { .. }));

    // The LA sends it again (CP-SC017) to a restarted service, which processes it in full.
    let mut server = Server::start(&db);
    server.wait_until_healthy().await;
    let url = format!("http://{}/mesh/v1/{KENT}/outbox", server.addr);
    let res = reqwest::Client::new().post(url).bearer_auth(&token).body(body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(
        crate::support::db::count(
            &mut conn,
            "SELECT count(*) FROM cp_items WHERE upload_id IS NOT NULL AND deleted_at IS NULL"
        ),
        10_000
    );
}

#[tokio::test]
async fn a_change_of_the_las_contact_numbers_is_audited_with_before_and_after() {
    let app = TestApp::spawn(Template::Demo);
    let mb = Mailbox::new(&app, KENT);
    let r = record_for(&mut app.conn(), NOAH_WILLIAMS, "K-1", CPP);
    let audited = |app: &TestApp| app.count("SELECT count(*) FROM audit_log WHERE action = 'la.contacts_changed'");
    assert_eq!(mb.upload(file(&new_id(), 1, KENT, std::slice::from_ref(&r))).await.file_code, FileCode::Cpf01);
    let first = audited(&app);
    // The same Sender again: nothing changed, nothing more to audit.
    assert_eq!(mb.upload(file(&new_id(), 2, KENT, std::slice::from_ref(&r))).await.file_code, FileCode::Cpf01);
    assert_eq!(audited(&app), first);
    let other_sender = file(&new_id(), 3, KENT, std::slice::from_ref(&r)).replace("01632 960001", "01632 960999");
    assert_ne!(other_sender, file(&new_id(), 3, KENT, std::slice::from_ref(&r)), "the fixture's number changed");
    assert_eq!(mb.upload(other_sender).await.file_code, FileCode::Cpf01);
    assert_eq!(audited(&app), first + 1);
    let details: serde_json::Value = {
        use diesel::prelude::*;
        cpis::schema::audit_log::table
            .filter(cpis::schema::audit_log::action.eq("la.contacts_changed"))
            .order(cpis::schema::audit_log::id.desc())
            .select(cpis::schema::audit_log::details)
            .first(&mut app.conn())
            .unwrap()
    };
    assert_eq!(details["la_code"], KENT);
    assert_ne!(details["before"], details["after"]);
    assert_eq!(details["after"]["emergency_phone"], "01632 960999");
}
