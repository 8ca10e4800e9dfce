//! CP-IS079, the data protection (subject access) report: "Based on an individual NHS Number
//! (child) and outlining all data stored against that particular NHS number. This will include all
//! historic information about the Child Protection Information ... This MUST be available as per
//! current Spine Subject access reporting capability."
//!
//! Everything held against one NHS number, as stored (this is a data protection report, not the
//! clinical view: LA child ids, delete dates and logically deleted items are shown):
//! the demographic details, current and logically deleted items, every change from the audit trail
//! with who made it and what was held before and after, the timeline of what was held when
//! (CP-IS075, [`super::held_on`]), every access event (CP-IS073, whether shown in the history or
//! not), the notices to LAs that the number became inactive (message 06), and any other audit
//! entry about the number.
//!
//! [`sections`] turns the report into the tables the page shows and the CSV carries, so the two
//! cannot differ.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date, Nullable, Text, Timestamptz};
use serde_json::Value;

use super::held_on::{self, Change, HeldItem, Timeline, END_DATED, EXPIRED, REPLACED};
use crate::domain::dates::{format_date, format_uk_datetime};
use crate::domain::nhs_number::NhsNumber;
use crate::error::AppError;
use crate::pds::patient::{self, Patient};
use crate::schema::{endpoint_tokens, patient_names, patients, users};

pub const INACTIVE_NOTIFIED: &str = "cp.number_inactive_notified";

/// An item as stored in `cp_items`, current or logically deleted.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StoredItem {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub la_code: String,
    #[diesel(sql_type = Text)]
    pub la_name: String,
    #[diesel(sql_type = Text)]
    pub item_type: String,
    #[diesel(sql_type = Text)]
    pub la_child_id: String,
    #[diesel(sql_type = Date)]
    pub start_date: NaiveDate,
    #[diesel(sql_type = Nullable<Date>)]
    pub end_date: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Date>)]
    pub delete_date: Option<NaiveDate>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub upload_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub deleted_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub deleted_reason: Option<String>,
}

/// One access event, with readable names where the reference data has them.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct AccessRow {
    #[diesel(sql_type = Timestamptz)]
    pub accessed_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub viewer_name: String,
    #[diesel(sql_type = Text)]
    pub viewer_id: String,
    #[diesel(sql_type = Text)]
    pub job_role_code: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub job_role_name: Option<String>,
    #[diesel(sql_type = Text)]
    pub organisation_code: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub organisation_name: Option<String>,
    #[diesel(sql_type = Text)]
    pub channel: String,
    #[diesel(sql_type = Bool)]
    pub shown: bool,
}

/// Who the audit's actors are, by name.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// LA code -> name.
    pub las: HashMap<String, String>,
    /// User id -> (display name, username).
    pub users: HashMap<i64, (String, String)>,
    /// Endpoint token id -> its organisation's code.
    pub tokens: HashMap<i64, String>,
}

impl Names {
    /// "Kent County Council (E10000016)", or the code alone when the LA is unknown.
    pub fn la(&self, code: &str) -> String {
        match self.las.get(code) {
            Some(name) => format!("{name} ({code})"),
            None => code.to_owned(),
        }
    }

    /// The audit's actor ("la:E10000016", "user:5", "service", ...) as a person reads it.
    pub fn who(&self, actor: &str) -> String {
        let (kind, id) = actor.split_once(':').unwrap_or((actor, ""));
        match kind {
            "la" => format!("Local authority {} (mailbox)", self.la(id)),
            "user" => match id.parse().ok().and_then(|n: i64| self.users.get(&n)) {
                Some((name, username)) => format!("{name} ({username}, user {id})"),
                None => format!("User {id}"),
            },
            "nhs-system" => match id.parse().ok().and_then(|n: i64| self.tokens.get(&n)) {
                Some(ods) => format!("NHS system of {ods} (token {id})"),
                None => format!("NHS system (token {id})"),
            },
            "service" => "The CP-IS service (scheduled job)".into(),
            "operator" => "An operator (command line or data load)".into(),
            "anonymous" => "Not signed in".into(),
            _ => actor.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SubjectAccess {
    pub nhs_number: NhsNumber,
    pub patient: Option<Patient>,
    /// Other names the demographic store holds (earlier or alternative names).
    pub other_names: Vec<String>,
    /// Numbers superseded by this one (the same person's earlier numbers).
    pub earlier_numbers: Vec<String>,
    pub current: Vec<StoredItem>,
    pub deleted: Vec<StoredItem>,
    /// Every audit entry about the number, in the chain's order.
    pub audit: Vec<Change>,
    pub timeline: Timeline,
    pub accesses: Vec<AccessRow>,
    pub names: Names,
}

impl SubjectAccess {
    /// True when nothing at all is held against the number.
    pub fn nothing_held(&self) -> bool {
        self.patient.is_none()
            && self.other_names.is_empty()
            && self.earlier_numbers.is_empty()
            && self.current.is_empty()
            && self.deleted.is_empty()
            && self.audit.is_empty()
            && self.accesses.is_empty()
    }

    /// True when child protection information is or was held (items, or changes in the audit).
    pub fn any_information(&self) -> bool {
        !self.current.is_empty() || !self.deleted.is_empty() || !self.timeline.spans.is_empty()
    }

    /// True when what the audit trail says is held now is exactly what is stored now (CP-IS075:
    /// the history is only as good as the trail; a difference means information came in some
    /// other way, or entries were purged, and the report says so).
    pub fn trail_matches_store(&self) -> bool {
        let mut from_trail: Vec<(&str, HeldItem)> =
            self.timeline.current().map(|s| (s.la_code.as_str(), s.item.clone())).collect();
        let mut stored: Vec<(&str, HeldItem)> = self
            .current
            .iter()
            .map(|i| {
                (
                    i.la_code.as_str(),
                    HeldItem {
                        item_type: i.item_type.clone(),
                        la_child_id: i.la_child_id.clone(),
                        start: i.start_date,
                        end: i.end_date,
                        delete: i.delete_date,
                    },
                )
            })
            .collect();
        from_trail.sort();
        stored.sort();
        from_trail == stored
    }
}

/// Reads everything held against the number.
pub fn load(conn: &mut PgConnection, nhs_number: &NhsNumber) -> Result<SubjectAccess, AppError> {
    let n = nhs_number.as_str();
    let patient = patient::find(conn, n)?;
    let mut other_names: Vec<String> = patient_names::table
        .filter(patient_names::nhs_number.eq(n))
        .order((patient_names::family_name, patient_names::given_name))
        .select((patient_names::given_name, patient_names::family_name))
        .load::<(String, String)>(conn)?
        .into_iter()
        .filter(|(g, f)| patient.as_ref().is_none_or(|p| !(p.given_name == *g && p.family_name == *f)))
        .map(|(g, f)| format!("{g} {f}").trim().to_owned())
        .collect();
    other_names.dedup();
    let earlier_numbers: Vec<String> = patients::table
        .filter(patients::superseded_by.eq(n))
        .order(patients::nhs_number)
        .select(patients::nhs_number)
        .load(conn)?;
    let items: Vec<StoredItem> = diesel::sql_query(
        "SELECT i.id, i.la_code, coalesce(l.display_name, l.reference_name, i.la_code) AS la_name, i.item_type, \
                i.la_child_id, i.start_date, i.end_date, i.delete_date, i.created_at, i.upload_id, i.deleted_at, \
                i.deleted_reason \
         FROM cp_items i LEFT JOIN local_authorities l ON l.code = i.la_code \
         WHERE i.nhs_number = $1 ORDER BY i.la_code, i.item_type, i.id",
    )
    .bind::<Text, _>(n)
    .load(conn)?;
    let (current, deleted): (Vec<StoredItem>, Vec<StoredItem>) =
        items.into_iter().partition(|i| i.deleted_at.is_none());
    let audit = held_on::load_changes(conn, n)?;
    let timeline = held_on::fold(&audit);
    let accesses: Vec<AccessRow> = diesel::sql_query(
        "SELECT e.accessed_at, e.viewer_name, e.viewer_id, e.job_role_code, r.name AS job_role_name, \
                e.organisation_code, o.name AS organisation_name, e.channel, e.shown \
         FROM access_events e \
         LEFT JOIN job_roles r ON r.code = e.job_role_code \
         LEFT JOIN nhs_organisations o ON o.ods_code = e.organisation_code \
         WHERE e.nhs_number = $1 ORDER BY e.accessed_at, e.id",
    )
    .bind::<Text, _>(n)
    .load(conn)?;
    let names = names_for(conn, &audit, &timeline)?;
    Ok(SubjectAccess {
        nhs_number: nhs_number.clone(),
        patient,
        other_names,
        earlier_numbers,
        current,
        deleted,
        audit,
        timeline,
        accesses,
        names,
    })
}

/// The names of the LAs, users and NHS systems the audit entries and timeline mention.
fn names_for(conn: &mut PgConnection, audit: &[Change], timeline: &Timeline) -> Result<Names, AppError> {
    let mut las: BTreeSet<String> = timeline.spans.iter().map(|s| s.la_code.clone()).collect();
    let (mut user_ids, mut token_ids) = (BTreeSet::new(), BTreeSet::new());
    for c in audit {
        if let Some(la) = c.details.get("la_code").and_then(Value::as_str) {
            las.insert(la.to_owned());
        }
        match c.actor.split_once(':') {
            Some(("la", code)) => {
                las.insert(code.to_owned());
            }
            Some(("user", id)) => user_ids.extend(id.parse::<i64>().ok()),
            Some(("nhs-system", id)) => token_ids.extend(id.parse::<i64>().ok()),
            _ => {}
        }
    }
    let las: Vec<String> = las.into_iter().collect();
    let user_ids: Vec<i64> = user_ids.into_iter().collect();
    let token_ids: Vec<i64> = token_ids.into_iter().collect();
    let las = crate::cpis::local_authority::find_many(conn, &las)?
        .into_iter()
        .map(|l| {
            let name = l.name().to_owned();
            (l.code, name)
        })
        .collect();
    let users = users::table
        .filter(users::id.eq_any(&user_ids))
        .select((users::id, users::display_name, users::username))
        .load::<(i64, String, String)>(conn)?
        .into_iter()
        .map(|(id, name, username)| (id, (name, username)))
        .collect();
    let tokens = endpoint_tokens::table
        .filter(endpoint_tokens::id.eq_any(&token_ids))
        .select((endpoint_tokens::id, endpoint_tokens::ods_code, endpoint_tokens::la_code))
        .load::<(i64, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .map(|(id, ods, la)| (id, ods.or(la).unwrap_or_default()))
        .collect();
    Ok(Names { las, users, tokens })
}

fn date_or(d: Option<NaiveDate>, none: &str) -> String {
    d.map_or_else(|| none.to_owned(), format_date)
}

/// An item as the audit records it, in one line.
pub fn describe(item: &HeldItem) -> String {
    format!(
        "{}, LA child id {}, start {}, end {}, delete date {}",
        item.item_type,
        item.la_child_id,
        format_date(item.start),
        date_or(item.end, "none"),
        date_or(item.delete, "none")
    )
}

fn describe_list(v: Option<&Value>) -> String {
    match HeldItem::list_from_json(v) {
        Some(items) if items.is_empty() => "Nothing".into(),
        Some(items) => items.iter().map(describe).collect::<Vec<_>>().join("; "),
        None => "Not recorded".into(),
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn date_text(v: Option<&Value>) -> String {
    match v.and_then(Value::as_str).and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()) {
        Some(d) => format_date(d),
        None => "none".into(),
    }
}

/// What a change did: (change, before, after), as a person reads them.
pub fn change_text(c: &Change) -> (String, String, String) {
    let kind = text_of(c.details.get("type"));
    let rule = text_of(c.details.get("rule"));
    let rule = if rule.is_empty() { String::new() } else { format!(" ({rule})") };
    match c.action.as_str() {
        REPLACED => {
            let upload = match c.details.get("upload_id").and_then(Value::as_i64) {
                Some(id) => format!("Record replaced by upload {id} (CP-IS020)"),
                None => "Record loaded (no upload)".into(),
            };
            (upload, describe_list(c.details.get("before")), describe_list(c.details.get("after")))
        }
        END_DATED => (
            format!("{kind} end-dated by the service{rule}"),
            format!("{kind} end {}", date_text(c.details.get("before").and_then(|b| b.get("end")))),
            format!("{kind} end {}", date_text(c.details.get("after").and_then(|a| a.get("end")))),
        ),
        EXPIRED => (
            format!("{kind} logically deleted by the service{rule}"),
            format!("{kind} held"),
            format!(
                "{kind} no longer held (reason: {})",
                text_of(c.details.get("after").and_then(|a| a.get("deleted_reason")))
            ),
        ),
        other => (other.to_owned(), String::new(), String::new()),
    }
}

/// One table of the report, as the page shows it and the CSV carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The table's HTML id and the CSV's `section` value.
    pub id: &'static str,
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// Shown instead of an empty table.
    pub empty: &'static str,
}

fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.into()
}

fn named(name: &Option<String>, code: &str) -> String {
    match name {
        Some(n) => format!("{n} ({code})"),
        None => code.to_owned(),
    }
}

fn item_cells(i: &StoredItem) -> Vec<String> {
    vec![
        i.la_name.clone(),
        i.la_code.clone(),
        i.item_type.clone(),
        i.la_child_id.clone(),
        format_date(i.start_date),
        date_or(i.end_date, ""),
        date_or(i.delete_date, ""),
        format_uk_datetime(i.created_at),
    ]
}

/// The report's tables, in the order the page shows them.
pub fn sections(r: &SubjectAccess) -> Vec<Section> {
    let names = &r.names;
    let mut pds = Vec::new();
    if let Some(p) = &r.patient {
        let mut field = |k: &str, v: String| pds.push(vec![k.to_owned(), v]);
        field("NHS number", r.nhs_number.formatted());
        field("Given name", p.given_name.clone());
        field("Family name", p.family_name.clone());
        field("Other names", r.other_names.join("; "));
        field("Gender", p.gender_label().to_owned());
        field("Date of birth", format_date(p.birth_date));
        field("Date of death", date_or(p.death_date, ""));
        field("Address", p.address.clone().unwrap_or_default());
        field("Postcode", p.postcode.clone().unwrap_or_default());
        field("GP practice", p.gp_ods.clone().unwrap_or_default());
        field("Restricted (S-flag)", yes_no(p.restricted));
        field("Superseded by", p.superseded_by.clone().unwrap_or_default());
        field("Earlier numbers (superseded by this one)", r.earlier_numbers.join("; "));
        field("Invalidated", yes_no(p.invalidated));
    } else if !r.earlier_numbers.is_empty() || !r.other_names.is_empty() {
        pds.push(vec!["Other names".into(), r.other_names.join("; ")]);
        pds.push(vec!["Earlier numbers (superseded by this one)".into(), r.earlier_numbers.join("; ")]);
    }
    let item_columns =
        vec!["Local authority", "LA code", "Type", "LA child id", "Start", "End", "Delete date", "Stored since"];
    let mut deleted_columns = item_columns.clone();
    deleted_columns.extend(["Deleted at", "Reason"]);
    let mut current_columns = item_columns;
    current_columns.push("Upload");
    let changes: Vec<Vec<String>> = r
        .audit
        .iter()
        .filter(|c| held_on::CHANGES.contains(&c.action.as_str()))
        .map(|c| {
            let (what, before, after) = change_text(c);
            vec![
                format_uk_datetime(c.at),
                names.who(&c.actor),
                names.la(&text_of(c.details.get("la_code"))),
                what,
                before,
                after,
            ]
        })
        .collect();
    let inactive: Vec<Vec<String>> = r
        .audit
        .iter()
        .filter(|c| c.action == INACTIVE_NOTIFIED)
        .map(|c| {
            vec![
                format_uk_datetime(c.at),
                names.la(&text_of(c.details.get("la_code"))),
                text_of(c.details.get("reason")),
                text_of(c.details.get("new_nhs_number")),
                text_of(c.details.get("message_id")),
            ]
        })
        .collect();
    let other: Vec<Vec<String>> = r
        .audit
        .iter()
        .filter(|c| !held_on::CHANGES.contains(&c.action.as_str()) && c.action != INACTIVE_NOTIFIED)
        .map(|c| vec![format_uk_datetime(c.at), names.who(&c.actor), c.action.clone(), c.details.to_string()])
        .collect();
    vec![
        Section {
            id: "pds",
            title: "Personal details held (the demographic store)",
            columns: vec!["Detail", "Value"],
            rows: pds,
            empty: "The demographic store holds no record for this NHS number.",
        },
        Section {
            id: "current-items",
            title: "Child protection information held now",
            columns: current_columns,
            rows: r
                .current
                .iter()
                .map(|i| {
                    let mut row = item_cells(i);
                    row.push(i.upload_id.map(|u| u.to_string()).unwrap_or_default());
                    row
                })
                .collect(),
            empty: "No child protection information is held now.",
        },
        Section {
            id: "deleted-items",
            title: "Logically deleted information (kept, no longer shown to anyone)",
            columns: deleted_columns,
            rows: r
                .deleted
                .iter()
                .map(|i| {
                    let mut row = item_cells(i);
                    row.push(i.deleted_at.map(format_uk_datetime).unwrap_or_default());
                    row.push(i.deleted_reason.clone().unwrap_or_default());
                    row
                })
                .collect(),
            empty: "No logically deleted information is kept.",
        },
        Section {
            id: "changes",
            title: "History of changes (from the audit trail)",
            columns: vec!["When", "Who", "Local authority", "Change", "Before", "After"],
            rows: changes,
            empty: "The audit trail records no change to child protection information for this number.",
        },
        Section {
            id: "timeline",
            title: "What was held when (CP-IS075)",
            columns: vec![
                "Local authority",
                "LA code",
                "Type",
                "LA child id",
                "Start",
                "End",
                "Delete date",
                "Held from",
                "Held until",
            ],
            rows: r
                .timeline
                .spans
                .iter()
                .map(|s| {
                    vec![
                        names.las.get(&s.la_code).cloned().unwrap_or_else(|| s.la_code.clone()),
                        s.la_code.clone(),
                        s.item.item_type.clone(),
                        s.item.la_child_id.clone(),
                        format_date(s.item.start),
                        date_or(s.item.end, ""),
                        date_or(s.item.delete, ""),
                        format_uk_datetime(s.from),
                        s.until.map_or_else(|| "Still held".into(), format_uk_datetime),
                    ]
                })
                .collect(),
            empty: "The audit trail records nothing held for this number.",
        },
        Section {
            id: "accesses",
            title: "Every access (CP-IS073)",
            columns: vec![
                "When",
                "Who",
                "Viewer id",
                "Job role",
                "Organisation",
                "Channel",
                "Shown in the access history",
            ],
            rows: r
                .accesses
                .iter()
                .map(|a| {
                    vec![
                        format_uk_datetime(a.accessed_at),
                        a.viewer_name.clone(),
                        a.viewer_id.clone(),
                        named(&a.job_role_name, &a.job_role_code),
                        named(&a.organisation_name, &a.organisation_code),
                        a.channel.clone(),
                        yes_no(a.shown),
                    ]
                })
                .collect(),
            empty: "Nobody has accessed information about this number.",
        },
        Section {
            id: "inactive",
            title: "Notices to local authorities that the number is inactive (message 06)",
            columns: vec!["When", "Local authority", "Reason", "New NHS number", "Message id"],
            rows: inactive,
            empty: "No notice has been sent.",
        },
        Section {
            id: "other-audit",
            title: "Other audit entries about this number",
            columns: vec!["When", "Who", "Action", "Details"],
            rows: other,
            empty: "No other audit entry names this number.",
        },
    ]
}

/// The CSV's header: one line per cell of every table, in the page's order.
pub const CSV_HEADER: [&str; 4] = ["section", "row", "column", "value"];

/// The CSV's rows: (section id, row number from 1, column heading, value) for every cell.
pub fn csv_rows(sections: &[Section]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for s in sections {
        for (i, row) in s.rows.iter().enumerate() {
            for (column, value) in s.columns.iter().zip(row) {
                out.push(vec![s.id.to_owned(), (i + 1).to_string(), (*column).to_owned(), value.clone()]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(action: &str, actor: &str, details: Value) -> Change {
        Change {
            id: 1,
            at: DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().with_timezone(&Utc),
            actor: actor.into(),
            action: action.into(),
            details,
        }
    }

    fn names() -> Names {
        Names {
            las: HashMap::from([("E10000016".to_owned(), "Kent".to_owned())]),
            users: HashMap::from([(5, ("Priya Das".to_owned(), "kent.social".to_owned()))]),
            tokens: HashMap::from([(7, "RJZ".to_owned())]),
        }
    }

    #[test]
    fn actors_are_named() {
        let n = names();
        assert_eq!(n.who("la:E10000016"), "Local authority Kent (E10000016) (mailbox)");
        assert_eq!(n.who("user:5"), "Priya Das (kent.social, user 5)");
        assert_eq!(n.who("user:6"), "User 6");
        assert_eq!(n.who("nhs-system:7"), "NHS system of RJZ (token 7)");
        assert_eq!(n.who("service"), "The CP-IS service (scheduled job)");
        assert_eq!(n.who("operator"), "An operator (command line or data load)");
        assert_eq!(n.la("E99999999"), "E99999999");
    }

    #[test]
    fn changes_read_as_before_and_after() {
        let item =
            json!({"type": "CPP", "la_child_id": "K-1", "start": "2026-01-10", "end": null, "delete": "2027-01-01"});
        let (what, before, after) = change_text(&change(
            REPLACED,
            "la:E10000016",
            json!({"la_code": "E10000016", "upload_id": 3, "before": [], "after": [item]}),
        ));
        assert_eq!(what, "Record replaced by upload 3 (CP-IS020)");
        assert_eq!(before, "Nothing");
        assert_eq!(after, "CPP, LA child id K-1, start 10/01/2026, end none, delete date 01/01/2027");
        let (what, before, after) = change_text(&change(
            END_DATED,
            "service",
            json!({"la_code": "E10000016", "type": "LAC", "rule": "CP-IS030", "before": {"end": null}, "after": {"end": "2026-11-22"}}),
        ));
        assert_eq!(what, "LAC end-dated by the service (CP-IS030)");
        assert_eq!((before.as_str(), after.as_str()), ("LAC end none", "LAC end 22/11/2026"));
        let (what, _, after) = change_text(&change(
            EXPIRED,
            "service",
            json!({"la_code": "E10000016", "type": "CPP", "rule": "CP-IS009", "after": {"deleted_reason": "delete_date"}}),
        ));
        assert_eq!(what, "CPP logically deleted by the service (CP-IS009)");
        assert_eq!(after, "CPP no longer held (reason: delete_date)");
    }

    fn stored(la: &str, kind: &str, end: Option<NaiveDate>) -> StoredItem {
        StoredItem {
            id: 1,
            la_code: la.into(),
            la_name: "Kent".into(),
            item_type: kind.into(),
            la_child_id: "K-1".into(),
            start_date: NaiveDate::from_ymd_opt(2026, 1, 10).unwrap(),
            end_date: end,
            delete_date: None,
            created_at: Utc::now(),
            upload_id: None,
            deleted_at: None,
            deleted_reason: None,
        }
    }

    #[test]
    fn the_trail_is_checked_against_what_is_stored() {
        let item = json!({"type": "CPP", "la_child_id": "K-1", "start": "2026-01-10", "end": null, "delete": null});
        let audit =
            vec![change(REPLACED, "la:E10000016", json!({"la_code": "E10000016", "before": [], "after": [item]}))];
        let mut r = SubjectAccess {
            nhs_number: NhsNumber::parse("9990000042").unwrap(),
            patient: None,
            other_names: vec![],
            earlier_numbers: vec![],
            current: vec![stored("E10000016", "CPP", None)],
            deleted: vec![],
            timeline: held_on::fold(&audit),
            audit,
            accesses: vec![],
            names: names(),
        };
        assert!(r.trail_matches_store());
        assert!(!r.nothing_held() && r.any_information());
        // Stored without the trail knowing (loaded some other way): flagged.
        r.current.push(stored("E08000035", "LAC", None));
        assert!(!r.trail_matches_store());
        // Dates differ: flagged too.
        r.current = vec![stored("E10000016", "CPP", NaiveDate::from_ymd_opt(2026, 5, 1))];
        assert!(!r.trail_matches_store());
    }

    #[test]
    fn the_csv_carries_every_cell_of_every_table() {
        let sections = vec![
            Section {
                id: "a",
                title: "A",
                columns: vec!["x", "y"],
                rows: vec![vec!["1".into(), "2".into()]],
                empty: "",
            },
            Section { id: "b", title: "B", columns: vec!["z"], rows: vec![], empty: "" },
            Section {
                id: "c",
                title: "C",
                columns: vec!["z"],
                rows: vec![vec!["3".into()], vec!["4".into()]],
                empty: "",
            },
        ];
        let rows = csv_rows(&sections);
        assert_eq!(
            rows,
            vec![
                vec!["a", "1", "x", "1"],
                vec!["a", "1", "y", "2"],
                vec!["c", "1", "z", "3"],
                vec!["c", "2", "z", "4"],
            ]
        );
    }
}
