//! A CP-IS owner opens every report from the reports index in headless Chromium (issue 6,
//! conformance criterion 1: "All reports CP-IS077 - CP-IS081 available"), sees each page render
//! without an error, downloads each CSV the page offers, and leaves a screenshot of each.

use crate::support::browser::{screenshot_path, Browser};
use crate::support::{Template, TestApp, PASSWORD};

/// Mia Thompson, who has a plan and a looked-after status in the demo data.
const CHILD: &str = "9990000042";

#[tokio::test(flavor = "multi_thread")]
async fn a_privacy_officer_opens_every_report_and_its_csv() {
    let app = TestApp::spawn(Template::Demo);
    let b = Browser::start().await;
    b.goto(&app.url("/sign-in")).await;
    b.fill("#username", "helen.ward").await;
    b.fill("#password", PASSWORD).await;
    b.click("form[action='/sign-in'] button[type=submit]").await;
    b.wait_for_path("/reports").await;
    let index = b.text("main").await;
    b.screenshot_full_page(&screenshot_path("reports-0-index")).await;

    let links: Vec<(String, String)> = cpis::web::reports::REPORTS
        .iter()
        .map(|r| {
            // The subject access report needs a child; the others open as they are.
            let href = if r.id == "CP-IS079" { format!("{}?nhs_number={CHILD}", r.href) } else { r.href.to_owned() };
            (r.id.to_owned(), href)
        })
        .collect();
    assert_eq!(links.len(), 6, "CP-IS077 to CP-IS081 and the audit verification");
    for (id, href) in &links {
        assert!(index.contains(id.as_str()), "the index lists {id}: {index}");
        b.goto(&app.url(href)).await;
        let path = href.split('?').next().unwrap_or(href);
        b.wait_for_path(path).await;
        let main = b.text("main").await;
        let heading = b.text("h1").await;
        assert!(!heading.contains("problem") && !heading.contains("not have access"), "{id}: {heading}");
        assert!(main.contains(id.as_str()), "{id} names itself: {main}");
        b.screenshot_full_page(&screenshot_path(&format!("reports-{}", id.to_lowercase()))).await;
        // Every CSV the page links to downloads as CSV with a header row.
        let csv = b
            .script(
                "return (async () => {
                 const links = [...document.querySelectorAll('a[href*=\".csv\"]')].map(a => a.href);
                 const out = [];
                 for (const href of links) {
                   const res = await fetch(href, {credentials: 'same-origin'});
                   const text = await res.text();
                   out.push(res.status + ' ' + res.headers.get('content-type') + ' ' + text.split('\\r\\n')[0]);
                 }
                 return JSON.stringify(out);
                 })();",
            )
            .await;
        let answers: Vec<String> = serde_json::from_str(&csv).unwrap_or_else(|_| panic!("{id}: {csv}"));
        if id != "CP-IS074" {
            assert!(!answers.is_empty(), "{id} offers a CSV download");
        }
        for a in answers {
            assert!(a.starts_with("200 text/csv"), "{id}: {a}");
        }
    }
    b.quit().await;
}
