//! Local authority administration and the transmission log for CP-IS owners: endpoint tokens shown
//! once and stored as a hash (CP-SC025), the sending switch (CP-SC014), the notification address
//! (message 05), and the log of transmissions (CP-IS061).

use reqwest::StatusCode;

use crate::support::db::execute;
use crate::support::{between, Client, Template, TestApp};

const KENT: &str = "E10000016";
const HARTLEPOOL: &str = "E06000001";

fn la_path(code: &str) -> String {
    format!("/admin/local-authorities/{code}")
}

/// Issues a token through the admin page and returns it as the page shows it.
async fn issue(owner: &Client, code: &str, label: &str) -> String {
    let res = owner.post_form(&format!("{}/tokens", la_path(code)), &[("label", label)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("will not be shown again"), "the page says the token is shown once");
    between(&page, "id=\"issued-token\" style=\"word-break: break-all\">", "</p>").expect("the new token is shown")
}

fn token_id(app: &TestApp, label: &str) -> i64 {
    app.count(&format!("SELECT id FROM endpoint_tokens WHERE label = '{label}'"))
}

fn audits(app: &TestApp, action: &str) -> i64 {
    app.count(&format!("SELECT count(*) FROM audit_log WHERE action = '{action}'"))
}

/// How many text, JSON or bytea columns of the database hold the text in some row.
fn columns_containing(app: &TestApp, text: &str) -> i64 {
    app.count(&format!(
        "SELECT count(*) FROM information_schema.columns c, LATERAL ( \
           SELECT (xpath('/row/n/text()', query_to_xml(format( \
             CASE WHEN c.data_type = 'bytea' \
                  THEN 'SELECT count(*) AS n FROM %I.%I WHERE strpos(encode(%I, ''escape''), %L) > 0' \
                  ELSE 'SELECT count(*) AS n FROM %I.%I WHERE strpos(%I::text, %L) > 0' END, \
             c.table_schema, c.table_name, c.column_name, '{text}'), \
           false, true, '')))[1]::text::bigint AS n) x \
         WHERE c.table_schema = 'public' \
           AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea') AND x.n > 0"
    ))
}

#[tokio::test]
async fn an_issued_token_is_shown_once_and_only_its_hash_is_stored() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let page = owner.text(&la_path(KENT)).await;
    assert!(page.contains("<h1>Kent</h1>"));
    assert!(page.contains("No token has been issued"));

    let token = issue(&owner, KENT, "Kent case management system").await;
    assert!(token.len() > 40, "a long random token: {token}");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM endpoint_tokens WHERE kind = 'la' AND la_code = '{KENT}' \
             AND label = 'Kent case management system' AND revoked_at IS NULL \
             AND token_hash = sha256(convert_to('{token}', 'UTF8'))"
        )),
        1
    );
    assert_eq!(columns_containing(&app, &token), 0, "the token is stored nowhere in the clear");
    // The check does find what is there.
    assert!(columns_containing(&app, "Kent case management system") >= 1);
    assert_eq!(audits(&app, "token.issued"), 1);

    // It works for Kent's mailbox, and is never shown again.
    let endpoint = cpis::mailbox::tokens::authenticate(&mut app.conn(), &token).unwrap();
    assert!(
        matches!(endpoint, Some(cpis::mailbox::tokens::Endpoint::LocalAuthority { ref la_code, .. }) if la_code == KENT)
    );
    let page = owner.text(&la_path(KENT)).await;
    assert!(page.contains("Kent case management system"));
    assert!(page.contains("Live"));
    assert!(!page.contains(&token));
    let list = owner.text(&format!("/admin/local-authorities?q={KENT}")).await;
    assert!(list.contains("<td class=\"nhsuk-table__cell\">1</td>"), "one live token in the list");

    // A label longer than 200 characters is refused, and nothing is issued.
    let res = owner.post_form(&format!("{}/tokens", la_path(KENT)), &[("label", &"x".repeat(201))]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("200 characters or fewer"));
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens"), 1);
    // An unknown LA has no page and gets no token.
    assert_eq!(owner.get(&la_path("E10999999")).await.status(), StatusCode::NOT_FOUND);
    let res = owner.post_form(&format!("{}/tokens", la_path("E10999999")), &[("label", "x")]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens"), 1);
}

#[tokio::test]
async fn a_token_is_revoked_once_and_only_through_its_own_local_authority() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let kent_token = issue(&owner, KENT, "kent-system").await;
    let _ = issue(&owner, HARTLEPOOL, "hartlepool-system").await;
    let (kent_id, hartlepool_id) = (token_id(&app, "kent-system"), token_id(&app, "hartlepool-system"));
    let revoke = |code: &str, id: i64| format!("{}/tokens/{id}/revoke", la_path(code));

    // Not through another LA's page.
    assert_eq!(owner.post_form(&revoke(HARTLEPOOL, kent_id), &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(owner.post_form(&revoke(KENT, hartlepool_id), &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(owner.post_form(&revoke(KENT, 999_999), &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens WHERE revoked_at IS NOT NULL"), 0);
    assert_eq!(audits(&app, "token.revoked"), 0);

    // The token in use, so remembered by the instance (issue 8).
    let inbox = || async {
        reqwest::Client::new()
            .get(app.url(&format!("/mesh/v1/{KENT}/inbox")))
            .bearer_auth(&kent_token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(inbox().await, StatusCode::OK);

    let res = owner.post_form(&revoke(KENT, kent_id), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], la_path(KENT));
    // Refused at its very next call, without waiting for PostgreSQL's announcement (CP-NHS018).
    assert_eq!(inbox().await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM endpoint_tokens WHERE id = {kent_id} AND revoked_at IS NOT NULL")),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'token.revoked' \
             AND actor = 'user:' || (SELECT id FROM users WHERE username = 'helen.ward') \
             AND (details->>'token_id')::bigint = {kent_id}"
        )),
        1
    );
    assert_eq!(cpis::mailbox::tokens::authenticate(&mut app.conn(), &kent_token).unwrap(), None);
    // The other LA's token is untouched.
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM endpoint_tokens WHERE id = {hartlepool_id} AND revoked_at IS NULL")),
        1
    );

    // Not twice.
    assert_eq!(owner.post_form(&revoke(KENT, kent_id), &[]).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(audits(&app, "token.revoked"), 1);
    let page = owner.text(&la_path(KENT)).await;
    let row = between(&page, "kent-system</td>", "</tr>").expect("the token's row");
    assert!(!row.contains("Live") && !row.contains("Revoke"), "{row}");
}

#[tokio::test]
async fn sending_is_switched_off_and_on_with_before_and_after_audited() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let sending = || app.count(&format!("SELECT sending_enabled::int FROM local_authorities WHERE code = '{KENT}'"));
    assert_eq!(sending(), 1);
    assert!(owner.text(&la_path(KENT)).await.contains("Switch sending off"));

    let res = owner.post_form(&format!("{}/sending", la_path(KENT)), &[("enabled", "false")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(sending(), 0);
    let switched = |before: bool, after: bool| {
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'la.sending_switched' \
             AND details->>'la_code' = '{KENT}' \
             AND (details->'before'->>'sending_enabled')::boolean = {before} \
             AND (details->'after'->>'sending_enabled')::boolean = {after}"
        ))
    };
    assert_eq!(switched(true, false), 1);
    let page = owner.text(&la_path(KENT)).await;
    assert!(page.contains("Sending is off") && page.contains("Switch sending on"));
    let list = owner.text(&format!("/admin/local-authorities?q={KENT}")).await;
    assert!(list.contains("<td class=\"nhsuk-table__cell\">Off</td>"));

    // Switching it off again changes and records nothing.
    let res = owner.post_form(&format!("{}/sending", la_path(KENT)), &[("enabled", "false")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(audits(&app, "la.sending_switched"), 1);

    let res = owner.post_form(&format!("{}/sending", la_path(KENT)), &[("enabled", "true")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(sending(), 1);
    assert_eq!(switched(false, true), 1);
    assert_eq!(audits(&app, "la.sending_switched"), 2);

    // A value other than true or false, or an unknown LA, changes nothing.
    let res = owner.post_form(&format!("{}/sending", la_path(KENT)), &[("enabled", "maybe")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = owner.post_form(&format!("{}/sending", la_path("E10999999")), &[("enabled", "false")]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(sending(), 1);
    assert_eq!(audits(&app, "la.sending_switched"), 2);
    // Only Kent was ever switched.
    assert_eq!(app.count("SELECT count(*) FROM local_authorities WHERE NOT sending_enabled"), 0);
}

#[tokio::test]
async fn a_bad_notification_email_is_a_400_on_the_form_and_changes_nothing() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let path = format!("{}/notification-email", la_path(KENT));
    let email = || {
        app.count(&format!(
            "SELECT count(*) FROM local_authorities WHERE code = '{KENT}' \
             AND notification_email = 'cpis-alerts-e10000016@example.org'"
        ))
    };
    assert_eq!(email(), 1, "the demo address");

    // "a@b" would pass the column's CHECK; the form asks for a real address.
    for bad in ["not an email", "alerts@kent gov.uk", "alerts@@kent.gov.uk", "a@b", "tab\t@kent.gov.uk"] {
        let res = owner.post_form(&path, &[("email", bad)]).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let page = res.text().await.unwrap();
        assert!(page.contains("There is a problem"), "{bad:?}");
        assert!(page.contains("Enter an email address in the correct format"), "{bad:?}");
        assert!(page.contains("nhsuk-input--error"), "{bad:?}: the field is marked");
    }
    assert_eq!(email(), 1);
    assert_eq!(audits(&app, "la.notification_email_changed"), 0);

    let res = owner.post_form(&path, &[("email", " safeguarding@kent.example.org ")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM audit_log WHERE action = 'la.notification_email_changed' \
             AND details->>'la_code' = '{KENT}' \
             AND details->'before'->>'notification_email' = 'cpis-alerts-e10000016@example.org' \
             AND details->'after'->>'notification_email' = 'safeguarding@kent.example.org'"
        )),
        1
    );
    assert!(owner.text(&la_path(KENT)).await.contains("safeguarding@kent.example.org"));

    // Empty clears it.
    let res = owner.post_form(&path, &[("email", "")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM local_authorities WHERE code = '{KENT}' AND notification_email IS NULL"
        )),
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE action = 'la.notification_email_changed' \
             AND details->'after'->'notification_email' = 'null'::jsonb"
        ),
        1
    );
}

#[tokio::test]
async fn a_clinician_and_an_ra_manager_are_refused_every_new_route() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let _ = issue(&owner, KENT, "kent-system").await;
    let id = token_id(&app, "kent-system");
    let page = owner.text("/change-password").await;
    assert!(page.contains("href=\"/admin/local-authorities\"") && page.contains("href=\"/admin/transmissions\""));

    let gets = ["/admin/local-authorities".to_owned(), la_path(KENT), "/admin/transmissions".to_owned()];
    let posts: [(String, Vec<(&str, &str)>); 4] = [
        (format!("{}/sending", la_path(KENT)), vec![("enabled", "false")]),
        (format!("{}/notification-email", la_path(KENT)), vec![("email", "x@example.org")]),
        (format!("{}/tokens", la_path(KENT)), vec![("label", "sneaky")]),
        (format!("{}/tokens/{id}/revoke", la_path(KENT)), vec![]),
    ];
    for who in ["amy.patel", "ravi.shah"] {
        let c = app.signed_in(who).await;
        let audit_before = app.count("SELECT count(*) FROM audit_log");
        for path in &gets {
            assert_eq!(c.get(path).await.status(), StatusCode::FORBIDDEN, "{who} GET {path}");
        }
        for (path, fields) in &posts {
            assert_eq!(c.post_form(path, fields).await.status(), StatusCode::FORBIDDEN, "{who} POST {path}");
        }
        let page = c.text("/change-password").await;
        assert!(!page.contains("/admin/local-authorities") && !page.contains("/admin/transmissions"), "{who}");
        assert_eq!(app.count("SELECT count(*) FROM audit_log"), audit_before, "{who} changed nothing");
    }
    assert_eq!(app.count("SELECT count(*) FROM endpoint_tokens WHERE revoked_at IS NULL"), 1);
    assert_eq!(app.count("SELECT count(*) FROM local_authorities WHERE NOT sending_enabled"), 0);
    assert_eq!(app.count("SELECT count(*) FROM local_authorities WHERE notification_email = 'x@example.org'"), 0);
}

#[tokio::test]
async fn the_list_shows_every_local_authority_with_its_switch_tokens_and_last_upload() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    let _ = issue(&owner, KENT, "one").await;
    let _ = issue(&owner, KENT, "two").await;
    execute(
        &mut app.conn(),
        &format!(
            "INSERT INTO uploads (la_code, received_at, size_bytes, channel, file_code, received, accepted, \
             rejected, ack_message_id) VALUES \
             ('{KENT}', '2026-07-01T09:00:00Z', 100, 'mailbox', 'CPF01', 1, 1, 0, gen_random_uuid()), \
             ('{KENT}', '2026-07-02T09:30:00Z', 100, 'mailbox', 'CPF01', 1, 1, 0, gen_random_uuid())"
        ),
    );
    let all = owner.text("/admin/local-authorities").await;
    let las = app.count("SELECT count(*) FROM local_authorities");
    assert_eq!(las, 152);
    assert!(all.contains("152 local authorities"));
    assert_eq!(all.matches("href=\"/admin/local-authorities/E").count(), 152);

    let kent = owner.text("/admin/local-authorities?q=kent").await;
    assert!(kent.contains("1 local authority"));
    let row = between(&kent, &format!("<td class=\"nhsuk-table__cell\">{KENT}</td>"), "</tr>").unwrap();
    assert!(row.contains(">On<") && row.contains(">2<") && row.contains("02/07/2026 10:30:00 BST"), "{row}");
    let page = owner.text(&la_path(KENT)).await;
    assert!(page.contains("02/07/2026 10:30:00 BST"));
    assert!(page.contains("Emergency duty team") && page.contains("01632 960"), "the numbers are shown");
    let none = owner.text("/admin/local-authorities?q=%25").await;
    assert!(none.contains("0 local authorities"), "a % is searched for literally");
}

/// Inserts a transmission at an instant.
fn transmission(app: &TestApp, at: &str, direction: &str, origin: &str, destination: &str, t: &str, id: &str) {
    execute(
        &mut app.conn(),
        &format!(
            "INSERT INTO transmissions (at, direction, origin, destination, message_type, message_id, channel) \
             VALUES ('{at}', '{direction}', '{origin}', '{destination}', '{t}', '{id}', 'mailbox')"
        ),
    );
}

#[tokio::test]
async fn the_transmission_log_lists_filters_and_pages_without_content() {
    let app = TestApp::spawn(Template::Demo);
    let owner = app.signed_in("helen.ward").await;
    transmission(&app, "2026-07-01T08:00:00Z", "in", KENT, "CP-IS", "01", "msg-kent-upload");
    transmission(&app, "2026-07-01T08:00:01Z", "out", "CP-IS", KENT, "02", "msg-kent-ack");
    transmission(&app, "2026-07-02T22:30:00Z", "in", HARTLEPOOL, "CP-IS", "01", "msg-hartlepool-upload");
    transmission(&app, "2026-07-03T06:00:00Z", "out", "CP-IS", HARTLEPOOL, "05", "msg-hartlepool-05");

    let page = owner.text("/admin/transmissions").await;
    for column in ["Time", "Direction", "Origin", "Destination", "Type", "Message id", "Channel"] {
        assert!(page.contains(&format!("<th scope=\"col\">{column}</th>")), "{column}");
    }
    let header = between(&page, "<thead", "</thead>").unwrap();
    assert_eq!(header.matches("<th ").count(), 7, "no other column (no content, no body)");
    assert!(!page.to_lowercase().contains("body</th>") && !page.contains("Content</th>"));
    // Newest first, in UK time.
    let at = |id: &str| page.find(id).unwrap_or_else(|| panic!("{id} listed"));
    assert!(at("msg-hartlepool-05") < at("msg-hartlepool-upload"));
    assert!(at("msg-hartlepool-upload") < at("msg-kent-ack"));
    assert!(at("msg-kent-ack") < at("msg-kent-upload"));
    assert!(page.contains("01/07/2026 09:00:00 BST"));
    assert!(page.contains("01 Local Authority Upload"));
    assert!(!page.contains("older-link"), "one page only");

    // By party, either end, any case.
    let kent = owner.text(&format!("/admin/transmissions?party={}", KENT.to_lowercase())).await;
    assert!(kent.contains("msg-kent-upload") && kent.contains("msg-kent-ack"));
    assert!(!kent.contains("msg-hartlepool"));
    // By type.
    let uploads = owner.text("/admin/transmissions?type=01").await;
    assert!(uploads.contains("msg-kent-upload") && uploads.contains("msg-hartlepool-upload"));
    assert!(!uploads.contains("msg-kent-ack") && !uploads.contains("msg-hartlepool-05"));
    let both = owner.text(&format!("/admin/transmissions?party={HARTLEPOOL}&type=05")).await;
    assert!(both.contains("msg-hartlepool-05") && !both.contains("msg-hartlepool-upload"));
    // By UK day: 22:30Z on 2 July is 23:30 BST, still 2 July in the UK; 06:00Z on 3 July is 3 July.
    let day = owner.text("/admin/transmissions?from=2026-07-02&to=2026-07-02").await;
    assert!(day.contains("msg-hartlepool-upload"));
    assert!(!day.contains("msg-hartlepool-05") && !day.contains("msg-kent"));
    let since = owner.text("/admin/transmissions?from=2026-07-03&party=&type=").await;
    assert!(since.contains("msg-hartlepool-05") && !since.contains("msg-hartlepool-upload"));
    let none = owner.text("/admin/transmissions?to=2026-06-30").await;
    assert!(none.contains("No transmission matches"));

    // Bad filter values are 400 with the problem on the form.
    for (query, message) in [
        ("from=2026-02-30", "The from date must be a real date"),
        ("to=tomorrow", "The to date must be a real date"),
        ("from=2026-07-03&to=2026-07-01", "same as or after the from date"),
        ("type=07", "Choose a message type"),
        ("party=E1%27%3B--", "Enter a local authority or ODS code"),
        ("before=abc", "not valid"),
    ] {
        let res = owner.get(&format!("/admin/transmissions?{query}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        let page = res.text().await.unwrap();
        assert!(page.contains("There is a problem") && page.contains(message), "{query}: {message}");
    }

    // 100 a page, then "Older" from the last id shown.
    execute(
        &mut app.conn(),
        "INSERT INTO transmissions (at, direction, origin, destination, message_type, message_id, channel) \
         SELECT '2026-08-01T00:00:00Z'::timestamptz + n * interval '1 minute', 'in', 'E10000016', 'CP-IS', '01', \
                'bulk-' || lpad(n::text, 3, '0'), 'portal' \
         FROM generate_series(1, 120) AS n",
    );
    let first = owner.text("/admin/transmissions?party=E10000016").await;
    assert!(first.contains("100 transmissions, newest first"));
    assert!(first.contains("bulk-120") && first.contains("bulk-021") && !first.contains("bulk-020"));
    let (before_link, _) = first.split_once("\" id=\"older-link\"").expect("an Older link");
    let older = before_link.rsplit_once("href=\"").unwrap().1.replace("&#38;", "&").replace("&amp;", "&");
    let last_shown = app.count("SELECT id FROM transmissions WHERE message_id = 'bulk-021'");
    assert_eq!(older, format!("/admin/transmissions?party=E10000016&before={last_shown}"));
    let second = owner.text(&older).await;
    assert!(second.contains("22 transmissions"), "the other 20 and Kent's two");
    assert!(second.contains("bulk-020") && second.contains("bulk-001") && second.contains("msg-kent-upload"));
    assert!(!second.contains("bulk-021") && !second.contains("older-link"));
    assert!(second.contains("newest-link"));
}
