//! The daily Access to Service Notification (message 05) and its e-mail, per LA per UK day
//! (messages.md, "05 Access to Service Notification"; CP-IS022, CP-IS023, CP-IS025, CP-IS029,
//! CP-IS037, CP-IS070).
//!
//! The occurrence scheduled for 00:30 UK time on day D+1 covers UK day D, the period
//! `[start of D, start of D+1)`: 23 hours on the spring change day, 25 on the autumn one. Every LA
//! that held retrievable information at any time during D gets one message 05 in its inbox,
//! listing the day's shown accesses to its children (or `<NoAccess/>`), and one e-mail to its
//! notification address, queued in `outbound_emails` for [`crate::mail::send_due`]. What each LA is
//! told is decided by [`crate::domain::notifications`]; this file reads and writes.
//!
//! Exactly once per LA per day, whatever happens (two instances, a crash mid-run, a rerun): the
//! inbox message's id is a UUID v5 of the LA and the day and the e-mail's key and Message-ID are
//! fixed per LA and day, both inserted with `ON CONFLICT DO NOTHING`, all in the caller's
//! transaction; the transmission log and the audit entry are written only for rows this run
//! inserted. The reads are set-based (a handful of queries whatever the number of LAs); only the
//! building and inserting of each LA's message is per LA.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Days, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Integer, Text};
use uuid::Uuid;

use crate::audit::{self, Actor, Event};
use crate::domain::dates::{uk_date, uk_day_bounds};
use crate::domain::names::readable_org_name;
use crate::domain::notifications::{self, Access, Child, HeldItem, Notice, Seen};
use crate::domain::retrieval::{ItemDates, ItemKind};
use crate::error::AppError;
use crate::mail::access_notification as email;
use crate::mailbox::inbox::{self, NewMessage};
use crate::mailbox::transmissions;
use crate::messages::access_notification::{AccessEntry, AccessNotification};
use crate::schema::{
    access_events, cp_items, job_roles, local_authorities, mailbox_messages, nhs_organisations, outbound_emails,
    patients,
};

/// The UUID v5 namespace of the service's deterministic message ids.
const MESSAGE_NAMESPACE: Uuid = Uuid::from_u128(0x6370_6973_2d6d_6573_7361_6765_732d_0001);

/// The inbox message id of the LA's notification for UK day `day`: the same whoever makes it.
pub fn message_id(la_code: &str, day: NaiveDate) -> Uuid {
    Uuid::new_v5(&MESSAGE_NAMESPACE, format!("cpis-05/{la_code}/{day}").as_bytes())
}

/// The UK day an occurrence covers: the day before the one it is scheduled on.
pub fn day_covered(scheduled_for: DateTime<Utc>) -> NaiveDate {
    uk_date(scheduled_for).pred_opt().unwrap_or(NaiveDate::MIN)
}

pub fn run(
    conn: &mut PgConnection,
    scheduled_for: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<serde_json::Value, AppError> {
    let day = day_covered(scheduled_for);
    let (start, end) = uk_day_bounds(day);
    if now < end {
        // A notification is sent once and never corrected: it waits for the day to be over.
        return Err(AppError::Internal(format!("the UK day {day} is not over yet")));
    }

    let children = children_on(conn, day, start)?;
    let numbers: Vec<String> =
        children.iter().flat_map(|c| c.numbers.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect();
    let day_accesses = shown_accesses(conn, &numbers, start, end)?;
    let (window_start, window_end) = notifications::pattern_window(day);
    let window = window_accesses(conn, &numbers, window_start, window_end)?;
    let notices = notifications::notices(day, &children, &day_accesses, &window);

    let codes: Vec<&str> = notices.keys().map(String::as_str).collect();
    let authorities: HashMap<String, (String, Option<String>)> = local_authorities::table
        .filter(local_authorities::code.eq_any(&codes))
        .select((
            local_authorities::code,
            local_authorities::reference_name,
            local_authorities::display_name,
            local_authorities::notification_email,
        ))
        .load::<(String, String, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .map(|(code, reference, display, address)| (code, (display.unwrap_or(reference), address)))
        .collect();
    let pattern_orgs: Vec<&str> = notices
        .values()
        .flat_map(|n| n.patterns.iter().flat_map(|p| p.organisations.iter().map(String::as_str)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let organisation_names: HashMap<String, String> = nhs_organisations::table
        .filter(nhs_organisations::ods_code.eq_any(&pattern_orgs))
        .select((nhs_organisations::ods_code, nhs_organisations::name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(|(code, name)| (code, readable_org_name(&name)))
        .collect();

    // What an earlier run already did (a rerun, or a catch-up after a crash) is not built again;
    // the inserts below are what guarantee once, even against a runner racing this one.
    let ids: Vec<Uuid> = notices.keys().map(|la| message_id(la, day)).collect();
    let existing_messages: HashSet<Uuid> = mailbox_messages::table
        .filter(mailbox_messages::id.eq_any(&ids))
        .select(mailbox_messages::id)
        .load::<Uuid>(conn)?
        .into_iter()
        .collect();
    let keys: Vec<String> = notices.keys().map(|la| email::message_key(la, day)).collect();
    let existing_emails: HashSet<String> = outbound_emails::table
        .filter(outbound_emails::message_key.eq_any(&keys))
        .select(outbound_emails::message_key)
        .load::<String>(conn)?
        .into_iter()
        .collect();

    let mut summary = Summary::default();
    let mut events = Vec::new();
    for (la_code, notice) in &notices {
        let (la_name, address) = authorities.get(la_code).cloned().unwrap_or_else(|| (la_code.clone(), None));
        let address = address.as_deref().map(str::trim).filter(|a| is_storable_address(a));
        let has_message = existing_messages.contains(&message_id(la_code, day));
        let has_email = existing_emails.contains(&email::message_key(la_code, day));
        let sent = if has_message && (has_email || address.is_none()) {
            Sent {
                message_created: false,
                email: if has_email { EmailOutcome::AlreadyQueued } else { EmailOutcome::NoAddress },
            }
        } else {
            send_one(conn, notice, &la_name, address, day, start, end, now, &organisation_names)?
        };
        summary.authorities += 1;
        summary.accesses_listed += notice.entries.len();
        summary.patterns += notice.patterns.len();
        if notice.entries.is_empty() {
            summary.without_access += 1;
        }
        match sent.email {
            EmailOutcome::Queued => summary.emails_queued += 1,
            EmailOutcome::AlreadyQueued => summary.emails_already_queued += 1,
            EmailOutcome::NoAddress => summary.without_email_address.push(la_code.clone()),
        }
        if sent.message_created {
            summary.messages_created += 1;
            events.push(Event::new(Actor::Service, "notification.access_sent").details(serde_json::json!({
                "la_code": la_code,
                "day": day.to_string(),
                "message_id": message_id(la_code, day),
                "accesses": notice.entries.len(),
                "children_accessed": notice.entries.iter().map(|e| &e.nhs_number).collect::<BTreeSet<_>>().len(),
                "patterns": notice.patterns.len(),
                "email": match sent.email {
                    EmailOutcome::Queued => "queued",
                    EmailOutcome::AlreadyQueued => "already_queued",
                    EmailOutcome::NoAddress => "no_address",
                },
            })));
        } else {
            summary.messages_already_sent += 1;
        }
    }
    audit::record_many(conn, events)?;
    tracing::info!(
        day = %day,
        authorities = summary.authorities,
        messages_created = summary.messages_created,
        emails_queued = summary.emails_queued,
        "daily access notifications"
    );
    Ok(serde_json::json!({
        "day": day.to_string(),
        "period_start": start,
        "period_end": end,
        "authorities": summary.authorities,
        "messages_created": summary.messages_created,
        "messages_already_sent": summary.messages_already_sent,
        "without_access": summary.without_access,
        "accesses_listed": summary.accesses_listed,
        "patterns": summary.patterns,
        "emails_queued": summary.emails_queued,
        "emails_already_queued": summary.emails_already_queued,
        "without_email_address": summary.without_email_address,
    }))
}

#[derive(Debug, Default)]
struct Summary {
    authorities: usize,
    messages_created: usize,
    messages_already_sent: usize,
    without_access: usize,
    accesses_listed: usize,
    patterns: usize,
    emails_queued: usize,
    emails_already_queued: usize,
    without_email_address: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmailOutcome {
    Queued,
    AlreadyQueued,
    NoAddress,
}

struct Sent {
    message_created: bool,
    email: EmailOutcome,
}

/// Puts one LA's message 05 in its inbox and queues its e-mail (when it has a usable address),
/// each unless already there.
#[allow(clippy::too_many_arguments)]
fn send_one(
    conn: &mut PgConnection,
    notice: &Notice,
    la_name: &str,
    address: Option<&str>,
    day: NaiveDate,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
    organisation_names: &HashMap<String, String>,
) -> Result<Sent, AppError> {
    let la_code = notice.la_code.as_str();
    let message = AccessNotification {
        message_id: message_id(la_code, day),
        la_ods_code: la_code.to_owned(),
        period_start: start,
        period_end: end,
        created: now,
        accesses: notice
            .entries
            .iter()
            .map(|e| AccessEntry {
                nhs_number: e.nhs_number.clone(),
                la_child_id: e.la_child_id.clone(),
                accessed_at: e.access.accessed_at,
                user_name: e.access.viewer_name.clone(),
                job_role: e.access.job_role_code.clone(),
                job_role_name: e.access.job_role_name.clone(),
                organisation_code: e.access.organisation_code.clone(),
                organisation_name: e.access.organisation_name.clone(),
                channel: e.access.channel.clone(),
            })
            .collect(),
    };
    let xml = message.to_xml();
    let message_created = inbox::put_once(
        conn,
        &NewMessage {
            id: message.message_id,
            la_code,
            message_type: "05",
            created_at: now,
            body: &xml,
            upload_id: None,
        },
    )?;
    if message_created {
        transmissions::log_out(conn, la_code, "05", Some(message.message_id.to_string()), "mailbox", now)?;
    }

    let Some(address) = address else {
        return Ok(Sent { message_created, email: EmailOutcome::NoAddress });
    };
    let composed = email::compose(&email::Input {
        la_name,
        day,
        notification: &message,
        patterns: &notice.patterns,
        organisation_names,
        xml: &xml,
    })?;
    let queued = diesel::insert_into(outbound_emails::table)
        .values((
            outbound_emails::message_key.eq(&composed.message_key),
            outbound_emails::message_id.eq(&composed.message_id),
            outbound_emails::la_code.eq(la_code),
            outbound_emails::to_address.eq(address),
            outbound_emails::subject.eq(&composed.subject),
            outbound_emails::body_text.eq(&composed.text),
            outbound_emails::body_html.eq(&composed.html),
            outbound_emails::attachment_name.eq(&composed.attachment_name),
            outbound_emails::attachment.eq(&composed.attachment),
            outbound_emails::next_attempt_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    if queued == 1 {
        transmissions::log_out(conn, la_code, "05", Some(composed.message_id.clone()), "email", now)?;
        Ok(Sent { message_created, email: EmailOutcome::Queued })
    } else {
        Ok(Sent { message_created, email: EmailOutcome::AlreadyQueued })
    }
}

/// The table's own rule for an address (`^[^@\s]+@[^@\s]+$`): anything else is treated as none.
fn is_storable_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !a.chars().any(|c| c.is_whitespace() || c == '\u{b}')
        }
        None => false,
    }
}

type ItemRow = (i64, String, String, String, String, NaiveDate, Option<NaiveDate>, Option<NaiveDate>, bool, NaiveDate);

/// The children each LA held retrievable items for on `day`, from the items it held at any time
/// during it: not logically deleted before the day began (an item replaced or expired later that
/// day, or since, still counts for the day).
fn children_on(conn: &mut PgConnection, day: NaiveDate, start: DateTime<Utc>) -> Result<Vec<Child>, AppError> {
    // A coarse filter first; the retrieval rules decide below. No item whose end is more than
    // 365 days before the day is retrievable on it (an unborn plan's grace is 28 days).
    let oldest_end = day.checked_sub_days(Days::new(365)).unwrap_or(NaiveDate::MIN);
    let rows: Vec<ItemRow> = cp_items::table
        .inner_join(patients::table)
        .filter(cp_items::deleted_at.is_null().or(cp_items::deleted_at.ge(start)))
        .filter(cp_items::delete_date.is_null().or(cp_items::delete_date.gt(day)))
        .filter(cp_items::end_date.is_null().or(cp_items::end_date.ge(oldest_end)))
        .select((
            cp_items::id,
            cp_items::la_code,
            cp_items::nhs_number,
            cp_items::la_child_id,
            cp_items::item_type,
            cp_items::start_date,
            cp_items::end_date,
            cp_items::delete_date,
            cp_items::deleted_at.is_null(),
            patients::birth_date,
        ))
        .load(conn)?;
    let items: Vec<HeldItem> = rows
        .into_iter()
        .filter_map(|(id, la_code, nhs_number, la_child_id, item_type, start, end, delete, current, birth_date)| {
            Some(HeldItem {
                id,
                la_code,
                nhs_number,
                la_child_id,
                kind: ItemKind::from_code(&item_type)?,
                dates: ItemDates { start, end, delete },
                birth_date,
                current,
            })
        })
        .collect();
    let held: Vec<String> = items.iter().map(|i| i.nhs_number.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let successors = successors(conn, &held)?;
    Ok(notifications::children_on(&items, day, &successors))
}

#[derive(QueryableByName)]
struct Link {
    #[diesel(sql_type = Text)]
    origin: String,
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Integer)]
    depth: i32,
}

/// For each superseded number among `numbers`, the numbers it was superseded into, nearest first
/// (PDS links an old number to its current one; accesses are recorded under the current one).
fn successors(conn: &mut PgConnection, numbers: &[String]) -> QueryResult<HashMap<String, Vec<String>>> {
    let links: Vec<Link> = diesel::sql_query(
        "WITH RECURSIVE chain(origin, nhs_number, depth) AS ( \
             SELECT p.nhs_number, p.superseded_by, 1 FROM patients p \
             WHERE p.nhs_number = ANY($1) AND p.superseded_by IS NOT NULL \
             UNION ALL \
             SELECT c.origin, p.superseded_by, c.depth + 1 FROM chain c JOIN patients p ON p.nhs_number = c.nhs_number \
             WHERE p.superseded_by IS NOT NULL AND c.depth < 10 \
         ) SELECT origin, nhs_number, depth FROM chain ORDER BY origin, depth",
    )
    .bind::<Array<Text>, _>(numbers)
    .load(conn)?;
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for link in links {
        debug_assert!(link.depth >= 1);
        out.entry(link.origin).or_default().push(link.nhs_number);
    }
    Ok(out)
}

type AccessRow = (i64, String, DateTime<Utc>, String, String, Option<String>, String, Option<String>, String);

/// The shown accesses of the period to any of the numbers, with names in readable form.
fn shown_accesses(
    conn: &mut PgConnection,
    numbers: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> QueryResult<Vec<Access>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<AccessRow> = access_events::table
        .left_join(job_roles::table.on(job_roles::code.eq(access_events::job_role_code)))
        .left_join(nhs_organisations::table.on(nhs_organisations::ods_code.eq(access_events::organisation_code)))
        .filter(access_events::shown.eq(true))
        .filter(access_events::accessed_at.ge(start))
        .filter(access_events::accessed_at.lt(end))
        .filter(access_events::nhs_number.eq_any(numbers))
        .select((
            access_events::id,
            access_events::nhs_number,
            access_events::accessed_at,
            access_events::viewer_name,
            access_events::job_role_code,
            job_roles::name.nullable(),
            access_events::organisation_code,
            nhs_organisations::name.nullable(),
            access_events::channel,
        ))
        .load(conn)?;
    // A national day lists about a hundred thousand accesses from a few hundred organisations:
    // each organisation's readable name is worked out once.
    let mut readable: HashMap<String, String> = HashMap::new();
    Ok(rows
        .into_iter()
        .map(|(id, nhs_number, accessed_at, viewer_name, role, role_name, org, org_name, channel)| Access {
            id,
            nhs_number,
            accessed_at,
            shown: true,
            viewer_name,
            job_role_name: role_name.unwrap_or_else(|| role.clone()),
            job_role_code: role,
            organisation_name: match org_name {
                Some(name) => readable.entry(name).or_insert_with_key(|name| readable_org_name(name)).clone(),
                None => org.clone(),
            },
            organisation_code: org,
            channel,
        })
        .collect())
}

/// Every access (shown or not) of the pattern window to any of the numbers.
fn window_accesses(
    conn: &mut PgConnection,
    numbers: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> QueryResult<Vec<Seen>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(String, DateTime<Utc>, String)> = access_events::table
        .filter(access_events::accessed_at.ge(start))
        .filter(access_events::accessed_at.lt(end))
        .filter(access_events::nhs_number.eq_any(numbers))
        .select((access_events::nhs_number, access_events::accessed_at, access_events::organisation_code))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(nhs_number, accessed_at, organisation_code)| Seen { nhs_number, accessed_at, organisation_code })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_occurrence_covers_the_previous_uk_day() {
        // 00:30 UK time on 22 November (GMT) and on 26 October (the day after the 25-hour day).
        assert_eq!(day_covered(utc("2026-11-22T00:30:00Z")), NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
        assert_eq!(day_covered(utc("2026-10-26T00:30:00Z")), NaiveDate::from_ymd_opt(2026, 10, 25).unwrap());
        // 00:30 BST on 30 March is 23:30Z on the 29th: it covers the 23-hour 29 March.
        assert_eq!(day_covered(utc("2026-03-29T23:30:00Z")), NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
    }

    #[test]
    fn message_ids_are_fixed_per_la_and_day() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(message_id("E10000016", d), message_id("E10000016", d));
        assert_ne!(message_id("E10000016", d), message_id("E08000003", d));
        assert_ne!(message_id("E10000016", d), message_id("E10000016", d.succ_opt().unwrap()));
        assert_eq!(message_id("E10000016", d).get_version_num(), 5);
    }

    #[test]
    fn addresses_follow_the_tables_rule() {
        assert!(is_storable_address("cpis-alerts-e10000016@example.org"));
        assert!(!is_storable_address(""));
        assert!(!is_storable_address("no-at-sign"));
        assert!(!is_storable_address("a@b@c"));
        assert!(!is_storable_address("a b@example.org"));
        assert!(!is_storable_address("@example.org"));
    }
}
