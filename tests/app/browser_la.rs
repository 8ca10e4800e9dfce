//! What an LA user sees, in headless Chromium: sign in, choose a file, upload it through the
//! portal and read its acknowledgement as a table.

use cpis::seed::demo::fixtures::*;

use crate::support::browser::{screenshot_path, Browser};
use crate::support::uploads::{file, new_id, record_for, KENT};
use crate::support::{Template, TestApp, PASSWORD};

const CPP: &str = "<ChildProtectionPlan start=\"2026-01-10\"/>";

#[tokio::test(flavor = "multi_thread")]
async fn an_la_user_uploads_through_the_portal_in_a_browser() {
    let app = TestApp::spawn(Template::Demo);
    let mut conn = app.conn();
    let records = vec![
        record_for(&mut conn, ALFIE_MOORE, "KCC-000201", CPP), // CPR06
        record_for(&mut conn, OLIVER_OLD_NUMBER, "KCC-000202", CPP), // CPR05
    ];
    let message_id = new_id();
    let dir = std::env::temp_dir().join(format!("cpis-la-upload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kent-upload.xml");
    std::fs::write(&path, file(&message_id, 1, KENT, &records)).unwrap();

    let b = Browser::start().await;
    b.goto(&app.url("/sign-in")).await;
    b.fill("#username", "kent.social").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/sign-in'] button[type=submit]").await;
    b.wait_for_path("/la").await;
    let header = b.text(".nhsuk-header__account").await;
    assert!(header.contains("Priya Das"), "the header names the signed-in user: {header:?}");
    let heading = b.text("main h1").await;
    assert!(heading.contains("E10000016"), "the portal names the LA: {heading:?}");

    // Choose the file and upload it.
    b.choose_file("#file", &path).await;
    let chosen = b.script("return document.querySelector('#file').files[0]?.name ?? ''").await;
    assert_eq!(chosen, "kent-upload.xml");
    b.click("form[action='/la/uploads'] button[type=submit]").await;
    let started = std::time::Instant::now();
    while !b.current_path().await.starts_with("/la/uploads/") {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "still on {}", b.current_url().await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let upload_path = b.current_path().await;
    b.wait_for_path(&upload_path).await;

    // The acknowledgement, as a table.
    assert_eq!(b.text("main h1").await, "Acknowledgement");
    let summary = b.text(".nhsuk-summary-list").await;
    assert!(summary.contains(&message_id), "{summary}");
    assert!(summary.contains("CPF02") && summary.contains("1 of 2 records accepted"), "{summary}");
    let first = b.text("#ack-table tbody tr:nth-child(1)").await;
    assert!(first.contains("CPR06") && first.contains(ALFIE_MOORE) && first.contains("KCC-000201"), "{first:?}");
    let second = b.text("#ack-table tbody tr:nth-child(2)").await;
    assert!(second.contains("CPR05") && second.contains(OLIVER_BENNETT), "{second:?}");
    assert!(second.contains("Send the record again under the new number"), "{second:?}");
    let link = b.find_link("Download the acknowledgement (XML)").await;
    assert!(!b.element_text(&link).await.is_empty());
    let shot = screenshot_path("la-upload");
    b.screenshot_full_page(&shot).await;

    // Back to the portal: the upload is listed.
    b.click_link("Portal").await;
    b.wait_for_path("/la").await;
    let uploads = b.text("#uploads-table tbody").await;
    assert!(uploads.contains(&message_id) && uploads.contains("1 of 2 accepted, 1 rejected"), "{uploads}");
    b.screenshot_full_page(&screenshot_path("la-portal")).await;
    b.quit().await;
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM uploads WHERE message_id = '{message_id}' AND channel = 'portal' AND file_code = 'CPF02'"
        )),
        1
    );
}
