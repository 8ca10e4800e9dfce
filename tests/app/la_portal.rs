//! The LA portal over HTTP, as a browser session would use it (cookies, CSRF tokens read from the
//! pages, multipart uploads): uploading a file and reading its acknowledgement as a table, the
//! inbox with messages 05 and 06, read receipts, XML downloads, and who may see what
//! (CP-IS017 to CP-IS020, CP-IS023, CP-IS025, CP-IS062, CP-IS063, CP-SC014, CP-SC025).

use chrono::{Duration, TimeZone, Utc};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use uuid::Uuid;

use cpis::domain::codes::{FileCode, RecordCode};
use cpis::mailbox::inbox::{self, NewMessage};
use cpis::messages::access_notification::{parse_access_notification, AccessEntry, AccessNotification};
use cpis::messages::ack::parse_ack;
use cpis::messages::inactive::{parse_inactive, InactiveNotice, InactiveReason, InactiveRecord};
use cpis::seed::demo::fixtures::*;
use cpis::seed::demo::LEEDS;

use crate::support::uploads::{file, new_id, record_for, Mailbox, KENT};
use crate::support::{between, Client, Template, TestApp};

const CPP: &str = "<ChildProtectionPlan start=\"2026-01-10\"/>";

/// The CSRF token of the form on a page the client can read.
async fn token_from(c: &Client, path: &str) -> String {
    let page = c.text(path).await;
    between(&page, "name=\"csrf_token\" value=\"", "\"").unwrap_or_else(|| panic!("a CSRF token on {path}: {page}"))
}

/// A file part as a browser sends it.
fn file_part(bytes: Vec<u8>, name: &str) -> Part {
    Part::bytes(bytes).file_name(name.to_owned()).mime_str("text/xml").unwrap()
}

/// Posts the portal's upload form: any token, any file part (either may be left out).
async fn post_upload(c: &Client, token: Option<&str>, file: Option<Part>) -> reqwest::Response {
    let mut form = Form::new();
    if let Some(t) = token {
        form = form.text("csrf_token", t.to_owned());
    }
    if let Some(f) = file {
        form = form.part("file", f);
    }
    c.http.post(format!("{}/la/uploads", c.base)).multipart(form).send().await.expect("POST /la/uploads")
}

/// Signs in as kent.social and uploads `xml` through the portal; returns the upload page's path.
async fn upload_through_portal(c: &Client, xml: &str) -> String {
    let token = token_from(c, "/la").await;
    let res = post_upload(c, Some(&token), Some(file_part(xml.as_bytes().to_vec(), "upload.xml"))).await;
    let status = res.status();
    let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", res.text().await.unwrap_or_default());
    let location = location.expect("a Location header");
    assert!(location.starts_with("/la/uploads/"), "{location}");
    location
}

/// One number from the database (an id, say).
fn one_i64(app: &TestApp, sql: &str) -> i64 {
    app.count(sql)
}

/// The rows of the table with this id, as raw HTML.
fn table_rows(page: &str, table_id: &str) -> Vec<String> {
    let start = page.find(&format!("id=\"{table_id}\"")).unwrap_or_else(|| panic!("no #{table_id}: {page}"));
    let rest = &page[start..];
    let body = &rest[..rest.find("</table>").expect("the table ends")];
    body.split("<tr class=\"nhsuk-table__row\">").skip(1).map(str::to_owned).collect()
}

/// What a portal write might have stored, to show that a refused one stored nothing.
fn stored(app: &TestApp) -> (i64, i64, i64, i64, i64) {
    (
        app.count("SELECT count(*) FROM uploads"),
        app.count("SELECT count(*) FROM mailbox_messages"),
        app.count("SELECT count(*) FROM transmissions"),
        app.count("SELECT count(*) FROM cp_items"),
        app.count("SELECT count(*) FROM audit_log WHERE action LIKE 'upload.%' OR action LIKE 'cp.%'"),
    )
}

#[tokio::test]
async fn an_la_user_uploads_a_file_and_reads_its_acknowledgement() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("kent.social").await;
    let home = c.get("/").await;
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()["location"], "/la", "an LA user lands on the portal");
    let portal = c.text("/la").await;
    assert!(portal.contains("Upload a file"), "{portal}");
    assert!(portal.contains("(E10000016)"), "the portal names the LA's code: {portal}");
    assert!(portal.contains("enctype=\"multipart/form-data\""), "{portal}");

    let mut conn = app.conn();
    let records = vec![
        record_for(&mut conn, ALFIE_MOORE, "KCC-000201", CPP), // CPR06
        record_for(&mut conn, OLIVER_OLD_NUMBER, "KCC-000202", CPP), // CPR05
    ];
    let message_id = new_id();
    let location = upload_through_portal(&c, &file(&message_id, 1, KENT, &records)).await;
    let upload_id: i64 = location.trim_start_matches("/la/uploads/").parse().expect("an upload number");

    // The acknowledgement, as a page.
    let res = c.get(&location).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains(&message_id), "the page names the file's message id: {page}");
    assert!(page.contains("CPF02"), "{page}");
    assert!(page.contains(FileCode::Cpf02.meaning()), "the file code is explained: {page}");
    assert!(page.contains("1 of 2 records accepted"), "{page}");
    assert!(page.contains("2 received, 1 accepted, 1 rejected"), "CP-IS018: {page}");
    let rows = table_rows(&page, "ack-table");
    assert_eq!(rows.len(), 2, "one row a record: {rows:?}");
    assert!(rows[0].contains("KCC-000201") && rows[0].contains(ALFIE_MOORE), "{}", rows[0]);
    assert!(rows[0].contains("CPR06") && rows[0].contains(RecordCode::Cpr06.explanation()), "{}", rows[0]);
    assert!(rows[1].contains("KCC-000202") && rows[1].contains(OLIVER_OLD_NUMBER), "{}", rows[1]);
    assert!(rows[1].contains("<strong>CPR05</strong>"), "a rejection stands out: {}", rows[1]);
    assert!(rows[1].contains(RecordCode::Cpr05.text()), "{}", rows[1]);
    assert!(rows[1].contains(RecordCode::Cpr05.explanation()), "{}", rows[1]);
    assert!(rows[1].contains(OLIVER_BENNETT), "CPR05 shows the new NHS number: {}", rows[1]);
    assert!(!rows[0].contains(OLIVER_BENNETT), "{}", rows[0]);

    // The download link gives the acknowledgement's XML.
    let href = between(&page, "<a href=\"", "\" download>").expect("a download link");
    assert!(href.starts_with("/la/messages/") && href.ends_with("/xml"), "{href}");
    let ack_id = href.trim_start_matches("/la/messages/").trim_end_matches("/xml").to_owned();
    let res = c.get(&href).await;
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/xml"), "{content_type}");
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains(&format!("cpis-02-{ack_id}.xml")), "{disposition}");
    let ack = parse_ack(&res.text().await.unwrap()).expect("a well-formed acknowledgement");
    assert_eq!(ack.message_id.to_string(), ack_id);
    assert_eq!(ack.in_response_to.map(|u| u.to_string()), Some(message_id.clone()), "CP-IS019");
    assert_eq!(ack.file_code, FileCode::Cpf02);
    assert_eq!((ack.received, ack.accepted, ack.rejected), (2, 1, 1));
    assert_eq!(ack.records.iter().map(|r| r.code).collect::<Vec<_>>(), vec![RecordCode::Cpr06, RecordCode::Cpr05]);
    assert_eq!(ack.records[1].new_nhs_number.as_deref(), Some(OLIVER_BENNETT));

    // The portal lists the upload, and the acknowledgement in the inbox, unread; the inbox's link
    // to a 02 leads to its upload page.
    let portal = c.text("/la").await;
    let uploads = table_rows(&portal, "uploads-table");
    let row = uploads.iter().find(|r| r.contains(&location)).unwrap_or_else(|| panic!("{uploads:?}"));
    assert!(row.contains("CPF02") && row.contains("1 of 2 accepted, 1 rejected"), "{row}");
    assert!(row.contains(&message_id), "{row}");
    let messages = table_rows(&portal, "inbox-table");
    let row = messages.iter().find(|r| r.contains(&ack_id)).unwrap_or_else(|| panic!("{messages:?}"));
    assert!(row.contains("Acknowledgement (02)") && row.contains("<strong>New</strong>"), "{row}");
    let res = c.get(&format!("/la/messages/{ack_id}")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], location.as_str());

    // Stored: the accepted record only, attributed to the person, through the portal.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM cp_items WHERE la_code = '{KENT}' AND nhs_number = '{ALFIE_MOORE}' \
             AND deleted_at IS NULL AND upload_id = {upload_id}"
        )),
        1
    );
    assert_eq!(app.count(&format!("SELECT count(*) FROM cp_items WHERE upload_id = {upload_id}")), 1);
    let user_id = one_i64(&app, "SELECT id FROM users WHERE username = 'kent.social'");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'upload.processed' AND actor = 'user:{user_id}' \
             AND details->>'upload_id' = '{upload_id}' AND details->>'channel' = 'portal' \
             AND details->>'file_code' = 'CPF02' AND details->>'message_id' = '{message_id}'"
        )),
        1,
        "the upload is attributed to the person who made it"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'cp.record_replaced' AND actor = 'user:{user_id}' \
             AND nhs_number = '{ALFIE_MOORE}'"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM uploads WHERE id = {upload_id} AND la_code = '{KENT}' AND channel = 'portal' \
             AND message_id = '{message_id}' AND ack_message_id = '{ack_id}' AND file_code = 'CPF02'"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM transmissions WHERE channel = 'portal' AND direction = 'in' \
             AND message_type = '01' AND origin = '{KENT}' AND message_id = '{message_id}'"
        )),
        1,
        "CP-IS061: the file in"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM transmissions WHERE channel = 'portal' AND direction = 'out' \
             AND message_type = '02' AND destination = '{KENT}' AND message_id = '{ack_id}'"
        )),
        1,
        "CP-IS061: the acknowledgement out"
    );
}

#[tokio::test]
async fn the_portal_refuses_a_form_without_the_csrf_token() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("kent.social").await;
    let other = app.signed_in("kent.social").await;
    let others_token = token_from(&other, "/la").await;
    let record = record_for(&mut app.conn(), ALFIE_MOORE, "KCC-000201", CPP);
    let xml = file(&new_id(), 1, KENT, &[record]);
    let before = stored(&app);
    for (what, token) in [
        ("no token", None),
        ("an empty token", Some("")),
        ("a wrong token", Some("not-the-token")),
        ("another session's token", Some(others_token.as_str())),
    ] {
        let res = post_upload(&c, token, Some(file_part(xml.clone().into_bytes(), "upload.xml"))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
        let page = res.text().await.unwrap();
        assert!(page.contains("did not come from this service"), "{what}: {page}");
        assert_eq!(stored(&app), before, "{what}: nothing stored");
    }
    // The same form with the session's token goes through.
    upload_through_portal(&c, &xml).await;
    assert_ne!(stored(&app), before);
}

#[tokio::test]
async fn an_empty_or_missing_file_is_a_clear_400() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("kent.social").await;
    let token = token_from(&c, "/la").await;
    let before = stored(&app);
    // A browser with no file chosen sends an empty part with an empty file name.
    for (what, part) in [
        ("an empty file", Some(file_part(vec![], "empty.xml"))),
        ("no file chosen", Some(Part::bytes(vec![]).file_name("").mime_str("application/octet-stream").unwrap())),
        ("no file field", None),
    ] {
        let res = post_upload(&c, Some(&token), part).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        let page = res.text().await.unwrap();
        assert!(page.contains("There is a problem"), "{what}: an error summary: {page}");
        assert!(page.contains("<a href=\"#file\">Choose a file to upload</a>"), "{what}: {page}");
        assert!(page.contains("<title>Error: Local authority portal"), "{what}: the title says so: {page}");
        assert!(page.contains("nhsuk-form-group--error"), "{what}: the field is marked: {page}");
        assert!(page.contains("id=\"file\""), "{what}: the form is shown again: {page}");
        assert_eq!(stored(&app), before, "{what}: nothing stored");
    }
}

#[tokio::test]
async fn a_file_over_the_limit_is_refused_with_a_clear_message() {
    const LIMIT: usize = 64 * 1024;
    let app = TestApp::spawn_with(Template::Demo, |c| c.upload_limit_bytes = LIMIT);
    let c = app.signed_in("kent.social").await;
    let record = record_for(&mut app.conn(), ALFIE_MOORE, "KCC-000201", CPP);
    let padded = |size: usize| {
        let xml = file(&new_id(), 1, KENT, std::slice::from_ref(&record));
        let pad = size - xml.len() - "<!--  -->".len();
        let xml = xml.replacen("<LAUpload", &format!("<!-- {} --><LAUpload", "x".repeat(pad)), 1);
        assert_eq!(xml.len(), size);
        xml
    };
    let before = stored(&app);
    for size in [LIMIT + 1, 4 * LIMIT, 1_048_576] {
        let token = token_from(&c, "/la").await;
        let res = post_upload(&c, Some(&token), Some(file_part(padded(size).into_bytes(), "big.xml"))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{size} bytes");
        let page = res.text().await.unwrap();
        assert!(page.contains("There is a problem"), "{size} bytes: {page}");
        assert!(page.contains("The file is larger than the limit"), "{size} bytes: {page}");
        assert!(page.contains("split it"), "{size} bytes: {page}");
        assert_eq!(stored(&app), before, "{size} bytes: nothing stored");
    }
    // A file at the limit is processed.
    let token = token_from(&c, "/la").await;
    let res = post_upload(&c, Some(&token), Some(file_part(padded(LIMIT).into_bytes(), "big.xml"))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = c.text(res.headers()["location"].to_str().unwrap()).await;
    assert!(page.contains("CPF01"), "{page}");
}

fn put(app: &TestApp, la: &str, id: Uuid, message_type: &str, created: chrono::DateTime<Utc>, body: &str) {
    inbox::put(
        &mut app.conn(),
        &NewMessage { id, la_code: la, message_type, created_at: created, body, upload_id: None },
    )
    .expect("a message in the inbox");
}

fn unread(app: &TestApp, id: Uuid) -> bool {
    app.count(&format!("SELECT count(*) FROM mailbox_messages WHERE id = '{id}' AND acknowledged_at IS NULL")) == 1
}

#[tokio::test]
async fn the_inbox_shows_06_and_05_readably() {
    let app = TestApp::spawn(Template::Demo);
    let created = Utc::now() - Duration::minutes(5);
    let notice = InactiveNotice {
        message_id: Uuid::new_v4(),
        la_ods_code: KENT.into(),
        created,
        records: vec![
            InactiveRecord {
                nhs_number: OLIVER_OLD_NUMBER.into(),
                la_child_id: "KCC-000124".into(),
                reason: InactiveReason::Superseded,
                new_nhs_number: Some(OLIVER_BENNETT.into()),
            },
            InactiveRecord {
                nhs_number: LEO_BAKER.into(),
                la_child_id: "KCC-000777".into(),
                reason: InactiveReason::Invalidated,
                new_nhs_number: None,
            },
        ],
    };
    let accessed = Utc.with_ymd_and_hms(2026, 1, 21, 14, 2, 11).unwrap();
    let entry = AccessEntry {
        nhs_number: NOAH_WILLIAMS.into(),
        la_child_id: "KCC-000123".into(),
        accessed_at: accessed,
        user_name: "Dr Amy Patel".into(),
        job_role: "R8000".into(),
        job_role_name: "Clinical Practitioner Access Role".into(),
        organisation_code: "RJZ".into(),
        organisation_name: "King's College Hospital NHS Foundation Trust".into(),
        channel: "SCRa".into(),
    };
    let access = AccessNotification {
        message_id: Uuid::new_v4(),
        la_ods_code: KENT.into(),
        period_start: Utc.with_ymd_and_hms(2026, 1, 21, 0, 0, 0).unwrap(),
        period_end: Utc.with_ymd_and_hms(2026, 1, 22, 0, 0, 0).unwrap(),
        created,
        accesses: vec![
            entry.clone(),
            AccessEntry {
                nhs_number: AMELIA_HART.into(),
                la_child_id: "KCC-000125".into(),
                user_name: "Sam Okafor".into(),
                organisation_code: "RRU".into(),
                organisation_name: "London Ambulance Service NHS Trust".into(),
                ..entry.clone()
            },
        ],
    };
    let none = AccessNotification {
        message_id: Uuid::new_v4(),
        accesses: vec![],
        created: created - Duration::days(1),
        ..access.clone()
    };
    let leeds = InactiveNotice { message_id: Uuid::new_v4(), la_ods_code: LEEDS.into(), ..notice.clone() };
    put(&app, KENT, notice.message_id, "06", notice.created, &notice.to_xml());
    put(&app, KENT, access.message_id, "05", access.created, &access.to_xml());
    put(&app, KENT, none.message_id, "05", none.created, &none.to_xml());
    put(&app, LEEDS, leeds.message_id, "06", leeds.created, &leeds.to_xml());

    let c = app.signed_in("kent.social").await;
    let portal = c.text("/la").await;
    let rows = table_rows(&portal, "inbox-table");
    assert!(!portal.contains(&leeds.message_id.to_string()), "only Kent's messages: {portal}");
    for (id, kind) in [
        (notice.message_id, "Inactive NHS Number Notification (06)"),
        (access.message_id, "Access to Service Notification (05)"),
        (none.message_id, "Access to Service Notification (05)"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("href=\"/la/messages/{id}\"")))
            .unwrap_or_else(|| panic!("{id} in the inbox: {rows:?}"));
        assert!(row.contains(kind), "{row}");
        assert!(row.contains("<strong>New</strong>"), "{row}");
    }

    // 06 as a table.
    let res = c.get(&format!("/la/messages/{}", notice.message_id)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>Inactive NHS Number Notification (06)</h1>"), "{page}");
    assert!(page.contains("no longer in use"), "{page}");
    for h in ["NHS number", "Your child id", "Reason", "New NHS number"] {
        assert!(page.contains(&format!("<th scope=\"col\">{h}</th>")), "{h}: {page}");
    }
    let rows = table_rows(&page, "message-table");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for cell in [OLIVER_OLD_NUMBER, "KCC-000124", "Superseded", OLIVER_BENNETT] {
        assert!(rows[0].contains(&format!(">{cell}</td>")), "{cell}: {}", rows[0]);
    }
    for cell in [LEO_BAKER, "KCC-000777", "Invalidated"] {
        assert!(rows[1].contains(&format!(">{cell}</td>")), "{cell}: {}", rows[1]);
    }
    let read_action = format!("action=\"/la/messages/{}/read\"", notice.message_id);
    assert!(page.contains(&read_action) && page.contains("Mark as read"), "{page}");

    // 05 as a table, with the time in UK time.
    let page = c.text(&format!("/la/messages/{}", access.message_id)).await;
    assert!(page.contains("<h1>Access to Service Notification (05)</h1>"), "{page}");
    assert!(page.contains("2 accesses to your authority"), "{page}");
    for h in ["Child id", "NHS number", "When", "Who", "Role", "Where"] {
        assert!(page.contains(&format!("<th scope=\"col\">{h}</th>")), "{h}: {page}");
    }
    let rows = table_rows(&page, "message-table");
    assert_eq!(rows.len(), 2, "{rows:?}");
    for cell in
        ["KCC-000123", NOAH_WILLIAMS, "21/01/2026 14:02:11 GMT", "Dr Amy Patel", "Clinical Practitioner Access Role"]
    {
        assert!(rows[0].contains(&format!(">{cell}</td>")), "{cell}: {}", rows[0]);
    }
    assert!(rows[0].contains("College Hospital NHS Foundation Trust</td>"), "{}", rows[0]);
    assert!(rows[1].contains(">Sam Okafor</td>") && rows[1].contains(">London Ambulance Service NHS Trust</td>"));
    // A day without accesses says so, with no table.
    let page = c.text(&format!("/la/messages/{}", none.message_id)).await;
    assert!(page.contains("No child of your authority"), "{page}");
    assert!(!page.contains("id=\"message-table\""), "{page}");

    // The XML downloads are the messages themselves.
    for (id, kind, want) in [
        (notice.message_id, "06", notice.to_xml()),
        (access.message_id, "05", access.to_xml()),
        (none.message_id, "05", none.to_xml()),
    ] {
        let res = c.get(&format!("/la/messages/{id}/xml")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
        let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert_eq!(disposition, format!("attachment; filename=\"cpis-{kind}-{id}.xml\""));
        assert_eq!(res.text().await.unwrap(), want);
    }
    let xml = c.text(&format!("/la/messages/{}/xml", notice.message_id)).await;
    assert_eq!(parse_inactive(&xml).unwrap(), notice);
    let xml = c.text(&format!("/la/messages/{}/xml", access.message_id)).await;
    assert_eq!(parse_access_notification(&xml).unwrap(), access);

    // Mark as read: not without the token; with it, the message is read here and in the mailbox.
    let path = format!("/la/messages/{}/read", notice.message_id);
    let res = c.http.post(format!("{}{path}", c.base)).form(&[("csrf_token", "wrong")]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(unread(&app, notice.message_id));
    let token = token_from(&c, &format!("/la/messages/{}", notice.message_id)).await;
    let res = c.http.post(format!("{}{path}", c.base)).form(&[("csrf_token", &token)]).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/la");
    assert!(!unread(&app, notice.message_id));
    assert!(unread(&app, access.message_id), "only that message");
    let portal = c.text("/la").await;
    let rows = table_rows(&portal, "inbox-table");
    let row = rows.iter().find(|r| r.contains(&notice.message_id.to_string())).unwrap();
    assert!(row.contains(">Read</td>") && !row.contains("New"), "{row}");
    let page = c.text(&format!("/la/messages/{}", notice.message_id)).await;
    assert!(!page.contains("Mark as read"), "{page}");
    let mailbox = Mailbox::new(&app, KENT).inbox().await;
    let listed: Vec<&str> = mailbox.iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(!listed.contains(&notice.message_id.to_string().as_str()), "CP-IS062: {listed:?}");
    assert!(listed.contains(&access.message_id.to_string().as_str()), "{listed:?}");

    // Another LA's message, an unknown id, and something that is not an id: 404.
    let leeds_id = leeds.message_id;
    let token = token_from(&c, "/la").await;
    for path in [
        format!("/la/messages/{leeds_id}"),
        format!("/la/messages/{leeds_id}/xml"),
        format!("/la/messages/{}", Uuid::new_v4()),
        format!("/la/messages/{}/xml", Uuid::new_v4()),
        "/la/messages/not-a-uuid".to_owned(),
        "/la/messages/not-a-uuid/xml".to_owned(),
        "/la/messages/1".to_owned(),
    ] {
        let res = c.get(&path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body = res.text().await.unwrap();
        assert!(!body.contains("KCC-000124"), "{path}: {body}");
    }
    for path in [format!("/la/messages/{leeds_id}/read"), "/la/messages/not-a-uuid/read".to_owned()] {
        let res = c.http.post(format!("{}{path}", c.base)).form(&[("csrf_token", &token)]).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert!(unread(&app, leeds_id), "Leeds's message is untouched");
}

#[tokio::test]
async fn only_la_staff_with_cpx03_reach_the_portal() {
    let app = TestApp::spawn(Template::Demo);
    // Signed out: to the sign-in page.
    let res = app.client().get("/la").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/sign-in");

    let record = record_for(&mut app.conn(), ALFIE_MOORE, "KCC-000201", CPP);
    let xml = file(&new_id(), 1, KENT, std::slice::from_ref(&record));
    for who in ["amy.patel", "helen.ward"] {
        let c = app.signed_in(who).await;
        assert_eq!(c.get("/la").await.status(), StatusCode::FORBIDDEN, "{who}");
        let before = stored(&app);
        let token = c.csrf().await;
        let res = post_upload(&c, Some(&token), Some(file_part(xml.clone().into_bytes(), "upload.xml"))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{who} cannot upload");
        assert_eq!(stored(&app), before, "{who}: nothing stored");
        assert_eq!(c.get("/la/uploads/1").await.status(), StatusCode::FORBIDDEN, "{who}");
        assert_eq!(c.get(&format!("/la/messages/{}", Uuid::new_v4())).await.status(), StatusCode::FORBIDDEN, "{who}");
    }

    // Leeds uploads through its mailbox; Kent's portal user cannot see it.
    let leeds = Mailbox::new(&app, LEEDS);
    let leeds_record = record_for(&mut app.conn(), NOAH_WILLIAMS, "LCC-1", CPP);
    let ack = leeds.upload(file(&new_id(), 1, LEEDS, &[leeds_record])).await;
    assert_eq!(ack.file_code, FileCode::Cpf01, "{}", ack.file_text);
    let leeds_upload = one_i64(&app, &format!("SELECT id FROM uploads WHERE ack_message_id = '{}'", ack.message_id));
    let kent = app.signed_in("kent.social").await;
    for path in [
        format!("/la/uploads/{leeds_upload}"),
        format!("/la/messages/{}", ack.message_id),
        format!("/la/messages/{}/xml", ack.message_id),
        "/la/uploads/999999".to_owned(),
        "/la/uploads/not-a-number".to_owned(),
    ] {
        let res = kent.get(&path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!res.text().await.unwrap().contains("LCC-1"), "{path}");
    }
    let portal = kent.text("/la").await;
    assert!(!portal.contains(&format!("/la/uploads/{leeds_upload}\"")), "{portal}");
    assert!(!portal.contains(&ack.message_id.to_string()), "{portal}");
}

#[tokio::test]
async fn a_rejected_file_reads_clearly_and_a_resubmission_leads_to_the_same_page() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("kent.social").await;

    // Not XML at all: CPF03, with no message id to correlate.
    let location = upload_through_portal(&c, "this is not xml").await;
    let page = c.text(&location).await;
    assert!(page.contains("CPF03") && page.contains(FileCode::Cpf03.meaning()), "{page}");
    assert!(page.contains("(unreadable)"), "{page}");
    assert!(page.contains("not well-formed XML"), "the details say what is wrong: {page}");
    assert!(page.contains("0 received, 0 accepted, 0 rejected"), "{page}");
    assert!(!page.contains("id=\"ack-table\""), "no record table: {page}");

    // Another LA as the sender: CPF04.
    let record = record_for(&mut app.conn(), ALFIE_MOORE, "KCC-000201", CPP);
    let location = upload_through_portal(&c, &file(&new_id(), 1, LEEDS, std::slice::from_ref(&record))).await;
    let page = c.text(&location).await;
    assert!(page.contains("CPF04") && page.contains("is not this mailbox"), "{page}");

    // The same file twice: the same upload and acknowledgement, nothing changed (CP-SC017).
    let xml = file(&new_id(), 1, KENT, std::slice::from_ref(&record));
    let first = upload_through_portal(&c, &xml).await;
    let before = (app.count("SELECT count(*) FROM uploads"), app.count("SELECT count(*) FROM cp_items"));
    let again = upload_through_portal(&c, &xml).await;
    assert_eq!(again, first);
    assert_eq!((app.count("SELECT count(*) FROM uploads"), app.count("SELECT count(*) FROM cp_items")), before);
    let user_id = one_i64(&app, "SELECT id FROM users WHERE username = 'kent.social'");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'upload.resubmitted' AND actor = 'user:{user_id}'"
        )),
        1
    );
    assert!(c.text(&first).await.contains("CPF01"));
}

#[tokio::test]
async fn an_acknowledgement_can_be_marked_read_from_its_page() {
    let app = TestApp::spawn(Template::Demo);
    let c = app.signed_in("kent.social").await;
    let xml = file(
        &new_id(),
        1,
        KENT,
        &[record_for(&mut app.conn(), ALFIE_MOORE, "K-1", "<ChildProtectionPlan start=\"2026-01-10\"/>")],
    );
    let upload_page = upload_through_portal(&c, &xml).await;
    let page = c.text(&upload_page).await;
    assert!(page.contains("Mark as read"));
    let action = between(&page, "<form method=\"post\" action=\"/la/messages/", "\"").unwrap();
    let res = c.post_form(&format!("/la/messages/{action}"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(!c.text(&upload_page).await.contains("Mark as read"));
    assert!(Mailbox::new(&app, KENT).inbox().await.is_empty(), "it left the mailbox's undelivered list too");
}
