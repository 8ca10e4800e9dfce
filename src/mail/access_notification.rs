//! The e-mail that carries an LA's daily Access to Service Notification (message 05): a plain-text
//! and an HTML body from the askama templates `templates/email/access_notification.{txt,html}`,
//! opening with the "patterns worth a look", then each accessed child (the LA's child id and NHS
//! number) with when, who, role and where, or a plain statement that no child was accessed; the
//! message's XML goes with it as an attachment.

use std::collections::HashMap;

use askama::Template;
use chrono::NaiveDate;

use crate::domain::dates::{format_date, format_uk_datetime, uk_day_bounds};
use crate::domain::notifications::{pattern_window, Pattern};
use crate::error::AppError;
use crate::messages::access_notification::AccessNotification;

/// The e-mail's unique key in `outbound_emails`: one per LA per UK day.
pub fn message_key(la_code: &str, day: NaiveDate) -> String {
    format!("05:{la_code}:{day}")
}

/// The fixed Message-ID of the LA's e-mail for the day: a resend after a crash carries the same
/// one, so a receiving system can drop the duplicate.
pub fn message_id(la_code: &str, day: NaiveDate) -> String {
    format!("<cpis-05-{la_code}-{day}@cpis.example.org>")
}

/// The attachment's file name.
pub fn attachment_name(la_code: &str, day: NaiveDate) -> String {
    format!("cpis-05-{la_code}-{day}.xml")
}

/// What the e-mail is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub la_name: &'a str,
    pub day: NaiveDate,
    /// The message 05 sent to the LA's inbox: its accesses are the e-mail's list.
    pub notification: &'a AccessNotification,
    pub patterns: &'a [Pattern],
    /// Readable organisation names by ODS code, for the patterns.
    pub organisation_names: &'a HashMap<String, String>,
    /// The message's XML, attached.
    pub xml: &'a str,
}

/// A composed e-mail, as stored in `outbound_emails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub message_key: String,
    pub message_id: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachment_name: String,
    pub attachment: String,
}

struct PatternView {
    la_child_id: String,
    nhs_number: String,
    accesses: usize,
    organisation_count: usize,
    organisations: String,
}

struct AccessView {
    when: String,
    who: String,
    role: String,
    role_code: String,
    place: String,
    organisation_code: String,
    channel: String,
}

struct ChildView {
    la_child_id: String,
    nhs_number: String,
    accesses: Vec<AccessView>,
}

#[derive(Template)]
#[template(path = "email/access_notification.txt")]
struct TextBody<'a> {
    la_name: &'a str,
    day: &'a str,
    period: &'a str,
    window: &'a str,
    patterns: &'a [PatternView],
    children: &'a [ChildView],
    total: usize,
    attachment_name: &'a str,
}

#[derive(Template)]
#[template(path = "email/access_notification.html")]
struct HtmlBody<'a> {
    la_name: &'a str,
    day: &'a str,
    period: &'a str,
    window: &'a str,
    patterns: &'a [PatternView],
    children: &'a [ChildView],
    total: usize,
    attachment_name: &'a str,
}

/// Composes the LA's e-mail for the day.
pub fn compose(input: &Input<'_>) -> Result<Email, AppError> {
    let la_code = input.notification.la_ods_code.as_str();
    let day = format_date(input.day);
    let (start, end) = uk_day_bounds(input.day);
    let period = format!("{} to {}", format_uk_datetime(start), format_uk_datetime(end));
    let (window_start, _) = pattern_window(input.day);
    let window = format!("{} to {}", format_date(crate::domain::dates::uk_date(window_start)), day);
    let patterns: Vec<PatternView> = input
        .patterns
        .iter()
        .map(|p| PatternView {
            la_child_id: p.la_child_id.clone(),
            nhs_number: p.nhs_number.clone(),
            accesses: p.accesses,
            organisation_count: p.organisations.len(),
            organisations: p
                .organisations
                .iter()
                .map(|code| match input.organisation_names.get(code) {
                    Some(name) => format!("{name} ({code})"),
                    None => code.clone(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    // One block per child, in child id order; each child's accesses oldest first.
    let mut children: Vec<ChildView> = Vec::new();
    let mut sorted: Vec<_> = input.notification.accesses.iter().collect();
    sorted.sort_by(|a, b| (&a.la_child_id, &a.nhs_number).cmp(&(&b.la_child_id, &b.nhs_number)));
    for a in sorted {
        let view = AccessView {
            when: format_uk_datetime(a.accessed_at),
            who: a.user_name.clone(),
            role: a.job_role_name.clone(),
            role_code: a.job_role.clone(),
            place: a.organisation_name.clone(),
            organisation_code: a.organisation_code.clone(),
            channel: a.channel.clone(),
        };
        match children.last_mut() {
            Some(c) if c.la_child_id == a.la_child_id && c.nhs_number == a.nhs_number => c.accesses.push(view),
            _ => children.push(ChildView {
                la_child_id: a.la_child_id.clone(),
                nhs_number: a.nhs_number.clone(),
                accesses: vec![view],
            }),
        }
    }
    let attachment_name = attachment_name(la_code, input.day);
    let total = input.notification.accesses.len();
    let text = TextBody {
        la_name: input.la_name,
        day: &day,
        period: &period,
        window: &window,
        patterns: &patterns,
        children: &children,
        total,
        attachment_name: &attachment_name,
    }
    .render()?;
    let html = HtmlBody {
        la_name: input.la_name,
        day: &day,
        period: &period,
        window: &window,
        patterns: &patterns,
        children: &children,
        total,
        attachment_name: &attachment_name,
    }
    .render()?;
    Ok(Email {
        message_key: message_key(la_code, input.day),
        message_id: message_id(la_code, input.day),
        subject: format!("CP-IS access notification for {}, {}", input.la_name, day),
        text,
        html,
        attachment_name,
        attachment: input.xml.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::access_notification::AccessEntry;
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn notification(accesses: Vec<AccessEntry>) -> AccessNotification {
        AccessNotification {
            message_id: Uuid::nil(),
            la_ods_code: "E10000016".into(),
            period_start: utc("2026-10-24T23:00:00Z"),
            period_end: utc("2026-10-26T00:00:00Z"),
            created: utc("2026-10-26T00:30:00Z"),
            accesses,
        }
    }

    fn entry(child: &str, nhs: &str, at: &str, who: &str) -> AccessEntry {
        AccessEntry {
            nhs_number: nhs.into(),
            la_child_id: child.into(),
            accessed_at: utc(at),
            user_name: who.into(),
            job_role: "R8000".into(),
            job_role_name: "Clinical Practitioner Access Role".into(),
            organisation_code: "RJZ".into(),
            organisation_name: "King's College Hospital NHS Foundation Trust".into(),
            channel: "SCRa".into(),
        }
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()
    }

    #[test]
    fn no_access_is_said_plainly() {
        let n = notification(vec![]);
        let names = HashMap::new();
        let e = compose(&Input {
            la_name: "Kent County Council",
            day: day(),
            notification: &n,
            patterns: &[],
            organisation_names: &names,
            xml: "<xml/>",
        })
        .unwrap();
        assert_eq!(e.subject, "CP-IS access notification for Kent County Council, 25/10/2026");
        assert_eq!(e.message_key, "05:E10000016:2026-10-25");
        assert_eq!(e.message_id, "<cpis-05-E10000016-2026-10-25@cpis.example.org>");
        assert_eq!(e.attachment_name, "cpis-05-E10000016-2026-10-25.xml");
        for body in [&e.text, &e.html] {
            assert!(body.contains("No child of yours was accessed on 25/10/2026"), "{body}");
            assert!(body.contains("None: no child of yours was accessed from 3 or more organisations"), "{body}");
            assert!(body.contains("25/10/2026 00:00:00 BST to 26/10/2026 00:00:00 GMT"), "{body}");
            assert!(body.contains("19/10/2026 to 25/10/2026"), "{body}");
        }
        assert!(e.text.find("PATTERNS WORTH A LOOK").unwrap() < e.text.find("ACCESSES ON").unwrap());
    }

    #[test]
    fn lists_each_child_with_when_who_role_and_where() {
        let n = notification(vec![
            entry("K-2", "9990000042", "2026-10-25T00:30:00Z", "Dr Amy <Patel>"),
            entry("K-1", "9990000018", "2026-10-25T09:00:00Z", "Sam Okafor"),
            entry("K-2", "9990000042", "2026-10-25T23:30:00Z", "Grace Hughes"),
        ]);
        let patterns = vec![Pattern {
            nhs_number: "9990000042".into(),
            la_child_id: "K-2".into(),
            accesses: 4,
            organisations: vec!["RJZ".into(), "RRU".into(), "XYZ".into()],
        }];
        let names = HashMap::from([
            ("RJZ".to_owned(), "King's College Hospital NHS Foundation Trust".to_owned()),
            ("RRU".to_owned(), "Barts Health NHS Trust".to_owned()),
        ]);
        let e = compose(&Input {
            la_name: "Kent County Council",
            day: day(),
            notification: &n,
            patterns: &patterns,
            organisation_names: &names,
            xml: "<xml/>",
        })
        .unwrap();
        let t = &e.text;
        assert!(t.contains("Child id K-2, NHS number 9990000042: 4 accesses from 3 organisations: King's College Hospital NHS Foundation Trust (RJZ); Barts Health NHS Trust (RRU); XYZ"), "{t}");
        assert!(t.contains("3 accesses to 2 children of yours"), "{t}");
        assert!(
            t.find("Child id K-1, NHS number 9990000018").unwrap()
                < t.find("Child id K-2, NHS number 9990000042\n").unwrap(),
            "{t}"
        );
        assert!(t.contains("When:  25/10/2026 01:30:00 BST"), "{t}");
        assert!(t.contains("When:  25/10/2026 23:30:00 GMT"), "{t}");
        assert!(t.contains("Who:   Dr Amy <Patel>"), "{t}");
        assert!(t.contains("Role:  Clinical Practitioner Access Role (R8000)"), "{t}");
        assert!(t.contains("Where: King's College Hospital NHS Foundation Trust (RJZ), by SCRa"), "{t}");
        assert!(!t.contains("No child of yours was accessed"));
        let h = &e.html;
        assert!(h.contains("Dr Amy &#60;Patel&#62;") || h.contains("Dr Amy &lt;Patel&gt;"), "escaped: {h}");
        assert!(h.contains("<h3>Child id K-2, NHS number 9990000042</h3>"), "{h}");
        assert!(h.find("Patterns worth a look").unwrap() < h.find("Accesses on").unwrap());
    }
}
