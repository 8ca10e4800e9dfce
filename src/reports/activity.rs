//! CP-IS081: who viewed or changed which records, from which organisation, and when. One list,
//! newest first, merges
//! - *views*: every opening of the Child Care Alert tab (`access_events`, screens and FHIR API):
//!   when, who (viewer name and user), role, organisation, channel, the child's NHS number and
//!   whether the access is shown in the child's access history (CP-IS047);
//! - *changes*: every change to child protection information in the audit trail (`audit_log`
//!   entries whose action starts `cp.`): when, who (a local authority, the service or a user), what,
//!   the child's NHS number and the local authority whose information changed.
//!
//! Filters: the period (required, the last 30 days by default), a user (a username, resolved to the
//! account's SDS user id, which is what an access records as its viewer id; or a raw viewer id such
//! as an NHSD-End-User-ID), an organisation (ODS or LA code), an NHS number and a local authority.
//!
//! Pages are read with a keyset, never an offset or a count: each source is read newest first
//! from the cursor `(time, kind, id)` with its own index (migrations 000010 and 000011) and stops
//! after a page, so a page costs the same on the first day as on the last of a national year.
//! At one instant, views come before changes, and higher ids before lower ones.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::PgConnection;
use serde::Deserialize;

use super::period::{Period, PeriodQuery};
use crate::audit::Actor;
use crate::domain::dates::format_uk_datetime;
use crate::domain::names::readable_org_name;
use crate::domain::nhs_number::NhsNumber;
use crate::error::AppError;
use crate::validation::FieldError;

/// The report's id in the standard.
pub const REPORT: &str = "CP-IS081";
/// Rows on a page.
pub const PAGE_SIZE: usize = 50;
/// The most rows a CSV download writes; a larger result is refused (narrow the filter).
pub const CSV_MAX_ROWS: usize = 200_000;
/// Rows read per step of a CSV download.
pub const CSV_CHUNK: usize = 5_000;
/// The longest user filter (a viewer id is at most 200 characters).
pub const MAX_USER: usize = 200;
/// The longest organisation or LA code.
pub const MAX_CODE: usize = 20;
/// The longest cursor.
const MAX_CURSOR: usize = 64;

/// What an entry is. The order is the list's order at one instant (newest first: views, then
/// changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Change,
    View,
}

impl Kind {
    fn code(self) -> char {
        match self {
            Kind::Change => 'c',
            Kind::View => 'v',
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Change => "Change",
            Kind::View => "View",
        }
    }
}

/// Where a page starts: after the entry `(at, kind, id)` in the list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub kind: Kind,
    pub id: i64,
}

impl Cursor {
    /// As it travels in `?after=`: microseconds since the epoch, the kind and the id,
    /// e.g. `1795327800123456.v.42`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.at.timestamp_micros(), self.kind.code(), self.id)
    }

    /// Reads [`Cursor::encode`]'s form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Cursor> {
        if s.len() > MAX_CURSOR {
            return None;
        }
        let mut parts = s.split('.');
        let (micros, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let digits = |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
        let unsigned = micros.strip_prefix('-').unwrap_or(micros);
        if !digits(unsigned) || !digits(id) {
            return None;
        }
        let at = DateTime::from_timestamp_micros(micros.parse().ok()?)
            .filter(|t| super::period::YEARS.contains(&t.year()))?;
        let kind = match kind {
            "v" => Kind::View,
            "c" => Kind::Change,
            _ => return None,
        };
        let id: i64 = id.parse().ok()?;
        Some(Cursor { at, kind, id })
    }

    #[cfg(test)]
    fn key(&self) -> (DateTime<Utc>, Kind, i64) {
        (self.at, self.kind, self.id)
    }
}

/// How a source's rows compare with a cursor, given that all its rows are of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyset {
    /// Same kind: `(time, id) < (cursor time, cursor id)`.
    RowBefore,
    /// This kind sorts after the cursor's at one instant: `time <= cursor time`.
    AtOrBefore,
    /// This kind sorts before the cursor's at one instant: `time < cursor time`.
    Before,
}

/// The condition that keeps a source's rows after the cursor (in the newest-first order).
pub fn keyset(source: Kind, after: &Cursor) -> Keyset {
    match source.cmp(&after.kind) {
        std::cmp::Ordering::Equal => Keyset::RowBefore,
        std::cmp::Ordering::Less => Keyset::AtOrBefore,
        std::cmp::Ordering::Greater => Keyset::Before,
    }
}

/// The filters as typed (`?from=&to=&user=&organisation=&nhs_number=&la=&after=`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActivityQuery {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub organisation: Option<String>,
    #[serde(default)]
    pub nhs_number: Option<String>,
    #[serde(default)]
    pub la: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
}

/// The filters, checked for shape (no database needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub period: Period,
    pub user: Option<String>,
    pub organisation: Option<String>,
    pub nhs_number: Option<String>,
    pub la: Option<String>,
    pub after: Option<Cursor>,
}

fn field(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A code as the service writes them: letters and digits, upper case, at most [`MAX_CODE`].
fn code(input: &str) -> Option<String> {
    (input.len() <= MAX_CODE && input.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| input.to_ascii_uppercase())
}

/// Checks every filter's shape; each problem is reported against its field.
pub fn check(q: &ActivityQuery, today: NaiveDate) -> Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    let period = Period::parse_field(&PeriodQuery { from: q.from.clone(), to: q.to.clone() }, today)
        .map_err(|e| errors.push(e))
        .ok();
    let user = match field(&q.user) {
        None => None,
        Some(u) if u.chars().count() > MAX_USER => {
            errors.push(FieldError::new(
                "user",
                format!("The user is longer than {MAX_USER} characters: enter a username or a viewer id"),
            ));
            None
        }
        Some(u) if u.chars().any(char::is_control) => {
            errors.push(FieldError::new("user", "The user contains a character that is not allowed"));
            None
        }
        Some(u) => Some(u.to_owned()),
    };
    let organisation = match field(&q.organisation) {
        None => None,
        Some(o) => match code(o) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError::new(
                    "organisation",
                    format!(
                        "Enter an ODS code like RJZ or a local authority code like E10000016 (letters and digits, at most {MAX_CODE})"
                    ),
                ));
                None
            }
        },
    };
    let nhs_number = match field(&q.nhs_number) {
        None => None,
        Some(n) if n.len() > 40 => {
            errors.push(FieldError::new("nhs_number", "An NHS number is 10 digits long"));
            None
        }
        Some(n) => match NhsNumber::parse(n) {
            Ok(n) => Some(n.as_str().to_owned()),
            Err(e) => {
                errors.push(FieldError::new("nhs_number", e.to_string()));
                None
            }
        },
    };
    let la = match field(&q.la) {
        None => None,
        Some(l) => match code(l) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError::new("la", "Enter a local authority code like E10000016"));
                None
            }
        },
    };
    let after = match field(&q.after) {
        None => None,
        Some(a) => match Cursor::parse(a) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError::new(
                    "after",
                    "The link to the next page is not valid (it may have been cut short): start again from the first page",
                ));
                None
            }
        },
    };
    match period {
        Some(period) if errors.is_empty() => Ok(Checked { period, user, organisation, nhs_number, la, after }),
        _ => Err(errors),
    }
}

/// Whose activity: an account (its views carry its SDS user id; its changes its `user:<id>`), or a
/// viewer id that is no account's (an NHSD-End-User-ID from an NHS system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFilter {
    Account { id: i64, username: String, viewer_id: String },
    Viewer(String),
}

/// The filters, resolved against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub period: Period,
    pub user: Option<UserFilter>,
    pub organisation: Option<String>,
    pub nhs_number: Option<String>,
    pub la: Option<String>,
}

#[derive(QueryableByName)]
struct AccountRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    viewer_id: String,
}

/// Resolves the user (a username, or an account's SDS user id, is that account; anything else is a
/// raw viewer id) and checks the LA code is one (an unknown one is a field error).
pub fn resolve(conn: &mut PgConnection, c: &Checked) -> QueryResult<Result<Filter, Vec<FieldError>>> {
    let user = match &c.user {
        None => None,
        Some(u) => {
            let found: Option<AccountRow> = diesel::sql_query(
                "SELECT id, username, sds_user_id::text AS viewer_id FROM users \
                 WHERE username = lower($1) OR sds_user_id::text = lower($1) ORDER BY (username = lower($1)) DESC LIMIT 1",
            )
            .bind::<Text, _>(u)
            .get_result(conn)
            .optional()?;
            Some(match found {
                Some(a) => UserFilter::Account { id: a.id, username: a.username, viewer_id: a.viewer_id },
                None => UserFilter::Viewer(u.clone()),
            })
        }
    };
    if let Some(la) = &c.la {
        if crate::cpis::local_authority::find(conn, la)?.is_none() {
            return Ok(Err(vec![FieldError::new(
                "la",
                format!("There is no local authority with the code {la}: check the code, like E10000016"),
            )]));
        }
    }
    Ok(Ok(Filter {
        period: c.period,
        user,
        organisation: c.organisation.clone(),
        nhs_number: c.nhs_number.clone(),
        la: c.la.clone(),
    }))
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub kind: Kind,
    pub id: i64,
    /// The viewer's name; for a change, the local authority, the service or the user.
    pub who: String,
    /// The username (or, without an account, the viewer id).
    pub user: String,
    /// The viewer's job role, code and name.
    pub role: String,
    /// The viewer's organisation, or the local authority that made a change.
    pub organisation_code: String,
    pub organisation_name: String,
    /// SCRa (screens) or FHIR, for a view.
    pub channel: String,
    pub action: String,
    pub nhs_number: String,
    /// The local authority whose information changed (changes only).
    pub la_code: String,
    pub la_name: String,
    /// Whether a view is shown in the child's access history (CP-IS047).
    pub shown: Option<bool>,
}

impl Entry {
    pub fn cursor(&self) -> Cursor {
        Cursor { at: self.at, kind: self.kind, id: self.id }
    }

    /// A stable reference to the row it came from: `view-<access id>` or `change-<audit id>`.
    pub fn reference(&self) -> String {
        format!("{}-{}", self.kind.label().to_lowercase(), self.id)
    }

    fn key(&self) -> (DateTime<Utc>, Kind, i64) {
        (self.at, self.kind, self.id)
    }
}

/// What a change's action means.
pub fn action_label(action: &str) -> String {
    match action {
        "cp.record_replaced" => "Information replaced by an upload".into(),
        "cp.item_end_dated" => "End date set by the service (CP-IS030)".into(),
        "cp.item_expired" => "Item expired or reached its delete date".into(),
        "cp.number_inactive_notified" => "Local authority told the NHS number is inactive".into(),
        other => other.to_owned(),
    }
}

/// Merges the newest-first rows of both sources into the first `n` of the list.
pub fn merge(mut a: Vec<Entry>, b: Vec<Entry>, n: usize) -> Vec<Entry> {
    a.extend(b);
    a.sort_by_key(|e| std::cmp::Reverse(e.key()));
    a.truncate(n);
    a
}

/// Statement text with its parameters, numbered as they are added.
#[derive(Default)]
struct Sql {
    text: String,
    params: Vec<Param>,
}

enum Param {
    Ts(DateTime<Utc>),
    Text(String),
    Int(i64),
}

impl Sql {
    fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    fn load<T: QueryableByName<Pg> + 'static>(self, conn: &mut PgConnection) -> QueryResult<Vec<T>> {
        let mut q = diesel::sql_query(self.text).into_boxed::<Pg>();
        for p in self.params {
            q = match p {
                Param::Ts(t) => q.bind::<Timestamptz, _>(t),
                Param::Text(s) => q.bind::<Text, _>(s),
                Param::Int(i) => q.bind::<BigInt, _>(i),
            };
        }
        q.load(conn)
    }
}

/// The keyset condition on `time_col`/`id_col` for a source of `kind`.
fn keyset_sql(sql: &mut Sql, kind: Kind, after: &Cursor, time_col: &str, id_col: &str) -> String {
    let t = sql.param(Param::Ts(after.at));
    match keyset(kind, after) {
        Keyset::RowBefore => {
            let i = sql.param(Param::Int(after.id));
            format!(" AND ({time_col}, {id_col}) < ({t}, {i})")
        }
        Keyset::AtOrBefore => format!(" AND {time_col} <= {t}"),
        Keyset::Before => format!(" AND {time_col} < {t}"),
    }
}

#[derive(QueryableByName)]
struct ViewRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamptz)]
    accessed_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    nhs_number: String,
    #[diesel(sql_type = Text)]
    viewer_id: String,
    #[diesel(sql_type = Text)]
    viewer_name: String,
    #[diesel(sql_type = Text)]
    job_role_code: String,
    #[diesel(sql_type = Nullable<Text>)]
    role_name: Option<String>,
    #[diesel(sql_type = Text)]
    organisation_code: String,
    #[diesel(sql_type = Nullable<Text>)]
    nhs_org_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    la_org_name: Option<String>,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Bool)]
    shown: bool,
    #[diesel(sql_type = Nullable<Text>)]
    username: Option<String>,
}

impl ViewRow {
    fn into_entry(self) -> Entry {
        Entry {
            at: self.accessed_at,
            kind: Kind::View,
            id: self.id,
            who: self.viewer_name,
            user: self.username.unwrap_or(self.viewer_id),
            role: match self.role_name {
                Some(name) => format!("{name} ({})", self.job_role_code),
                None => self.job_role_code,
            },
            organisation_name: match (self.nhs_org_name, self.la_org_name) {
                (Some(n), _) => readable_org_name(&n),
                (None, Some(la)) => la,
                (None, None) => String::new(),
            },
            organisation_code: self.organisation_code,
            channel: self.channel,
            action: "Opened the Child Care Alert tab".into(),
            nhs_number: self.nhs_number,
            la_code: String::new(),
            la_name: String::new(),
            shown: Some(self.shown),
        }
    }
}

/// Views after the cursor, newest first, at most `n`.
fn views(conn: &mut PgConnection, f: &Filter, after: Option<&Cursor>, n: usize) -> QueryResult<Vec<Entry>> {
    let mut sql = Sql::default();
    let (from, to) = f.period.bounds();
    let (a, b) = (sql.param(Param::Ts(from)), sql.param(Param::Ts(to)));
    let mut cond = format!("ae.accessed_at >= {a} AND ae.accessed_at < {b}");
    if let Some(c) = after {
        cond.push_str(&keyset_sql(&mut sql, Kind::View, c, "ae.accessed_at", "ae.id"));
    }
    match &f.user {
        Some(UserFilter::Account { viewer_id, .. }) | Some(UserFilter::Viewer(viewer_id)) => {
            let p = sql.param(Param::Text(viewer_id.clone()));
            cond.push_str(&format!(" AND ae.viewer_id = {p}"));
        }
        None => {}
    }
    if let Some(o) = &f.organisation {
        let p = sql.param(Param::Text(o.clone()));
        cond.push_str(&format!(" AND ae.organisation_code = {p}"));
    }
    if let Some(nhs) = &f.nhs_number {
        let p = sql.param(Param::Text(nhs.clone()));
        cond.push_str(&format!(" AND ae.nhs_number = {p}"));
    }
    let limit = sql.param(Param::Int(n as i64));
    let newest = match &f.la {
        None => format!(
            "SELECT ae.* FROM access_events ae WHERE {cond} ORDER BY ae.accessed_at DESC, ae.id DESC LIMIT {limit}"
        ),
        // Views of children the LA holds or held information about (any row in cp_items, current
        // or expired): the newest views of each of its children, then the newest of those. Its
        // cost follows how many children the LA has, never how many views the period holds (a
        // scan by time would read the whole period for an LA whose children are rarely viewed).
        Some(la) => {
            let p = sql.param(Param::Text(la.clone()));
            format!(
                "SELECT x.* FROM (SELECT DISTINCT ci.nhs_number FROM cp_items ci WHERE ci.la_code = {p}) k \
                 CROSS JOIN LATERAL (SELECT ae.* FROM access_events ae WHERE ae.nhs_number = k.nhs_number AND {cond} \
                                     ORDER BY ae.accessed_at DESC, ae.id DESC LIMIT {limit}) x \
                 ORDER BY x.accessed_at DESC, x.id DESC LIMIT {limit}"
            )
        }
    };
    sql.text = format!(
        "SELECT e.id, e.accessed_at, e.nhs_number, e.viewer_id, e.viewer_name, e.job_role_code, jr.name AS role_name, \
                e.organisation_code, o.name AS nhs_org_name, coalesce(la.display_name, la.reference_name) AS la_org_name, \
                e.channel, e.shown, u.username \
         FROM ({newest}) e \
         LEFT JOIN users u ON u.id = e.user_id \
         LEFT JOIN job_roles jr ON jr.code = e.job_role_code \
         LEFT JOIN nhs_organisations o ON o.ods_code = e.organisation_code \
         LEFT JOIN local_authorities la ON la.code = e.organisation_code \
         ORDER BY e.accessed_at DESC, e.id DESC"
    );
    Ok(sql.load::<ViewRow>(conn)?.into_iter().map(ViewRow::into_entry).collect())
}

#[derive(QueryableByName)]
struct ChangeRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Timestamptz)]
    occurred_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    nhs_number: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    la_code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    la_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_la_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_username: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_display_name: Option<String>,
}

impl ChangeRow {
    fn into_entry(self) -> Entry {
        let (who, user, org_code, org_name) = if let Some(code) = self.actor.strip_prefix("la:") {
            let name = self.actor_la_name.clone().unwrap_or_default();
            (if name.is_empty() { code.to_owned() } else { name.clone() }, String::new(), code.to_owned(), name)
        } else if self.actor.starts_with("user:") {
            (
                self.actor_display_name.clone().unwrap_or_else(|| self.actor.clone()),
                self.actor_username.clone().unwrap_or_default(),
                String::new(),
                String::new(),
            )
        } else if self.actor == "service" {
            ("CP-IS service".into(), String::new(), String::new(), String::new())
        } else {
            (self.actor.clone(), String::new(), String::new(), String::new())
        };
        Entry {
            at: self.occurred_at,
            kind: Kind::Change,
            id: self.id,
            who,
            user,
            role: String::new(),
            organisation_code: org_code,
            organisation_name: org_name,
            channel: String::new(),
            action: action_label(&self.action),
            nhs_number: self.nhs_number.unwrap_or_default(),
            la_code: self.la_code.unwrap_or_default(),
            la_name: self.la_name.unwrap_or_default(),
            shown: None,
        }
    }
}

/// Changes after the cursor, newest first, at most `n`.
fn changes(conn: &mut PgConnection, f: &Filter, after: Option<&Cursor>, n: usize) -> QueryResult<Vec<Entry>> {
    let mut sql = Sql::default();
    let (from, to) = f.period.bounds();
    let (a, b) = (sql.param(Param::Ts(from)), sql.param(Param::Ts(to)));
    // The predicate is written as the partial indexes' own, so they apply.
    let mut cond = format!("al.action LIKE 'cp.%' AND al.occurred_at >= {a} AND al.occurred_at < {b}");
    if let Some(c) = after {
        cond.push_str(&keyset_sql(&mut sql, Kind::Change, c, "al.occurred_at", "al.id"));
    }
    match &f.user {
        Some(UserFilter::Account { id, .. }) => {
            let p = sql.param(Param::Text(Actor::User(*id).to_string()));
            cond.push_str(&format!(" AND al.actor = {p}"));
        }
        // A viewer id without an account changes nothing.
        Some(UserFilter::Viewer(_)) => return Ok(Vec::new()),
        None => {}
    }
    if let Some(o) = &f.organisation {
        let p = sql.param(Param::Text(Actor::LocalAuthority(o.clone()).to_string()));
        cond.push_str(&format!(" AND al.actor = {p}"));
    }
    if let Some(nhs) = &f.nhs_number {
        let p = sql.param(Param::Text(nhs.clone()));
        cond.push_str(&format!(" AND al.nhs_number = {p}"));
    }
    if let Some(la) = &f.la {
        let p = sql.param(Param::Text(la.clone()));
        cond.push_str(&format!(" AND (al.details->>'la_code') = {p}"));
    }
    let limit = sql.param(Param::Int(n as i64));
    sql.text = format!(
        "SELECT c.id, c.occurred_at, c.actor, c.action, c.nhs_number, c.la_code, \
                coalesce(la.display_name, la.reference_name) AS la_name, \
                coalesce(ala.display_name, ala.reference_name) AS actor_la_name, \
                u.username AS actor_username, u.display_name AS actor_display_name \
         FROM (SELECT al.id, al.occurred_at, al.actor, al.action, al.nhs_number, al.details->>'la_code' AS la_code \
               FROM audit_log al WHERE {cond} \
               ORDER BY al.occurred_at DESC, al.id DESC LIMIT {limit}) c \
         LEFT JOIN local_authorities la ON la.code = c.la_code \
         LEFT JOIN local_authorities ala ON ala.code = CASE WHEN c.actor LIKE 'la:%' THEN substr(c.actor, 4) END \
         LEFT JOIN users u ON u.id = CASE WHEN c.actor ~ '^user:[0-9]{{1,18}}$' THEN substr(c.actor, 6)::bigint END \
         ORDER BY c.occurred_at DESC, c.id DESC"
    );
    Ok(sql.load::<ChangeRow>(conn)?.into_iter().map(ChangeRow::into_entry).collect())
}

/// Up to `n` entries after the cursor (from the newest without one), and the cursor of the next
/// page when there are more.
pub fn page(
    conn: &mut PgConnection,
    f: &Filter,
    after: Option<&Cursor>,
    n: usize,
) -> QueryResult<(Vec<Entry>, Option<Cursor>)> {
    let n = n.max(1);
    let v = views(conn, f, after, n + 1)?;
    let c = changes(conn, f, after, n + 1)?;
    let mut rows = merge(v, c, n + 1);
    let next = if rows.len() > n {
        rows.truncate(n);
        rows.last().map(Entry::cursor)
    } else {
        None
    };
    Ok((rows, next))
}

/// A page of the report as shown.
#[derive(Debug, Clone)]
pub struct PageResult {
    pub filter: Filter,
    pub entries: Vec<Entry>,
    pub next: Option<Cursor>,
}

/// The details a run is audited with: the filters (the NHS number goes in the entry's own field).
fn run_details(c: &Checked, format: &str) -> serde_json::Value {
    serde_json::json!({
        "from": c.period.from, "to": c.period.to, "user": c.user, "organisation": c.organisation,
        "la": c.la, "after": c.after.map(|a| a.encode()), "format": format,
    })
}

/// Reads a page and audits the run in the same transaction (READ COMMITTED: the audit append must
/// see the chain's current head once it holds the append lock, which an older REPEATABLE READ
/// snapshot would not). An unknown LA code is
/// a field error (nothing is read or audited).
pub fn run_page(
    conn: &mut PgConnection,
    c: &Checked,
    actor: Actor,
) -> Result<Result<PageResult, Vec<FieldError>>, AppError> {
    conn.transaction(|conn| {
        let filter = match resolve(conn, c)? {
            Ok(f) => f,
            Err(errors) => return Ok(Err(errors)),
        };
        let (entries, next) = page(conn, &filter, c.after.as_ref(), PAGE_SIZE)?;
        super::record_run(conn, actor, REPORT, c.nhs_number.as_deref(), run_details(c, "page"))?;
        Ok(Ok(PageResult { filter, entries, next }))
    })
}

/// The CSV columns (the page's table, plus the row's reference).
pub const CSV_HEADER: [&str; 15] = [
    "Time",
    "Kind",
    "Who",
    "User",
    "Job role",
    "Organisation code",
    "Organisation",
    "Channel",
    "Action",
    "NHS number",
    "Local authority code",
    "Local authority",
    "Shown in access history",
    "Reference",
    "Time (UTC)",
];

/// An entry as a CSV row.
pub fn csv_row(e: &Entry) -> Vec<String> {
    vec![
        format_uk_datetime(e.at),
        e.kind.label().into(),
        e.who.clone(),
        e.user.clone(),
        e.role.clone(),
        e.organisation_code.clone(),
        e.organisation_name.clone(),
        e.channel.clone(),
        e.action.clone(),
        e.nhs_number.clone(),
        e.la_code.clone(),
        e.la_name.clone(),
        match e.shown {
            Some(true) => "Yes".into(),
            Some(false) => "No".into(),
            None => String::new(),
        },
        e.reference(),
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ]
}

/// Walks every entry of the filter from the newest, `chunk` at a time with the keyset, handing each
/// to `each`. More than `max` entries is refused before `each` sees any of the surplus (the caller
/// discards what it wrote).
pub fn walk(
    conn: &mut PgConnection,
    f: &Filter,
    max: usize,
    chunk: usize,
    mut each: impl FnMut(&Entry) -> Result<(), AppError>,
) -> Result<usize, AppError> {
    let mut after: Option<Cursor> = None;
    let mut written = 0usize;
    loop {
        // Read one more than still allowed, so a result of exactly `max` is not refused.
        let want = chunk.min(max - written + 1).max(1);
        let (rows, next) = page(conn, f, after.as_ref(), want)?;
        if written + rows.len() > max {
            return Err(too_many(max));
        }
        for r in &rows {
            each(r)?;
        }
        written += rows.len();
        match next {
            Some(c) => after = Some(c),
            None => return Ok(written),
        }
    }
}

fn too_many(max: usize) -> AppError {
    AppError::BadRequest(format!(
        "More than {max} rows match: the download would be too large. Narrow the filter (a shorter period, \
         or a user, organisation, NHS number or local authority) and download again."
    ))
}

/// The CSV text of every entry of the filter (at most [`CSV_MAX_ROWS`]), read chunk by chunk with the
/// keyset (rows added meanwhile are newer than the first chunk and so are not in it), with
/// the run audited in the same transaction. An unknown LA code is a 400.
pub fn run_csv(conn: &mut PgConnection, c: &Checked, actor: Actor) -> Result<String, AppError> {
    run_csv_with(conn, c, actor, CSV_MAX_ROWS, CSV_CHUNK)
}

pub fn run_csv_with(
    conn: &mut PgConnection,
    c: &Checked,
    actor: Actor,
    max: usize,
    chunk: usize,
) -> Result<String, AppError> {
    conn.transaction(|conn| {
        let filter = resolve(conn, c)?.map_err(|errors| {
            AppError::BadRequest(errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join(". "))
        })?;
        let mut w = ::csv::WriterBuilder::new().terminator(::csv::Terminator::CRLF).from_writer(Vec::new());
        w.write_record(CSV_HEADER).map_err(AppError::internal)?;
        walk(conn, &filter, max, chunk, |e| {
            w.write_record(csv_row(e).iter().map(|v| super::csv::cell(v))).map_err(AppError::internal)
        })?;
        let bytes = w.into_inner().map_err(AppError::internal)?;
        super::record_run(conn, actor, REPORT, c.nhs_number.as_deref(), run_details(c, "csv"))?;
        String::from_utf8(bytes).map_err(AppError::internal)
    })
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string of the checked filters, with `after` when given (for the next page and the
/// CSV link).
pub fn query_string(c: &Checked, after: Option<&Cursor>) -> String {
    let mut parts = vec![format!("from={}", c.period.from), format!("to={}", c.period.to)];
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", encode(v)));
        }
    };
    add("user", &c.user);
    add("organisation", &c.organisation);
    add("nhs_number", &c.nhs_number);
    add("la", &c.la);
    if let Some(a) = after {
        parts.push(format!("after={}", encode(&a.encode())));
    }
    parts.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn entry(at: DateTime<Utc>, kind: Kind, id: i64) -> Entry {
        Entry {
            at,
            kind,
            id,
            who: String::new(),
            user: String::new(),
            role: String::new(),
            organisation_code: String::new(),
            organisation_name: String::new(),
            channel: String::new(),
            action: String::new(),
            nhs_number: String::new(),
            la_code: String::new(),
            la_name: String::new(),
            shown: None,
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn q(pairs: &[(&str, &str)]) -> ActivityQuery {
        let mut q = ActivityQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "from" => q.from = v,
                "to" => q.to = v,
                "user" => q.user = v,
                "organisation" => q.organisation = v,
                "nhs_number" => q.nhs_number = v,
                "la" => q.la = v,
                "after" => q.after = v,
                _ => panic!("{k}"),
            }
        }
        q
    }

    #[test]
    fn cursors_round_trip_and_anything_else_is_refused() {
        let c = Cursor { at: Utc.timestamp_micros(1_795_327_800_123_456).unwrap(), kind: Kind::View, id: 42 };
        assert_eq!(c.encode(), "1795327800123456.v.42");
        assert_eq!(Cursor::parse(&c.encode()), Some(c));
        let change = Cursor { kind: Kind::Change, ..c };
        assert_eq!(Cursor::parse(&change.encode()), Some(change));
        for bad in [
            "",
            "1795327800123456.v",
            "1795327800123456.x.42",
            "1795327800123456.v.42.1",
            "+1795327800123456.v.42",
            "1795327800123456.v.-4",
            "abc.v.1",
            "1.v.99999999999999999999",
            // A time PostgreSQL cannot hold (year -6333).
            "-262000000000000000.c.1",
            &"9".repeat(70),
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_keyset_follows_the_order_views_then_changes_at_one_instant() {
        let at_view = Cursor { at: t(0), kind: Kind::View, id: 5 };
        let at_change = Cursor { at: t(0), kind: Kind::Change, id: 5 };
        assert_eq!(keyset(Kind::View, &at_view), Keyset::RowBefore);
        assert_eq!(keyset(Kind::Change, &at_view), Keyset::AtOrBefore);
        assert_eq!(keyset(Kind::View, &at_change), Keyset::Before);
        assert_eq!(keyset(Kind::Change, &at_change), Keyset::RowBefore);
    }

    #[test]
    fn merging_orders_by_time_then_views_then_id_and_walks_without_gaps() {
        let views = vec![entry(t(5), Kind::View, 9), entry(t(3), Kind::View, 8), entry(t(3), Kind::View, 2)];
        let changes = vec![entry(t(5), Kind::Change, 100), entry(t(3), Kind::Change, 50), entry(t(1), Kind::Change, 1)];
        let all = merge(views.clone(), changes.clone(), 10);
        let keys: Vec<String> = all.iter().map(Entry::reference).collect();
        assert_eq!(keys, ["view-9", "change-100", "view-8", "view-2", "change-50", "change-1"]);
        // Walking two at a time with the keyset conditions yields the same list.
        let mut walked = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let keep = |e: &&Entry| match &after {
                None => true,
                Some(c) => e.key() < c.key(),
            };
            let v: Vec<Entry> = views.iter().filter(keep).take(3).cloned().collect();
            let ch: Vec<Entry> = changes.iter().filter(keep).take(3).cloned().collect();
            let page = merge(v, ch, 2);
            if page.is_empty() {
                break;
            }
            after = page.last().map(Entry::cursor);
            walked.extend(page);
        }
        assert_eq!(walked, all);
    }

    #[test]
    fn filters_are_checked_with_a_reason_for_each() {
        let today = d("2026-11-22");
        let ok = check(&q(&[("nhs_number", "999 000 0042"), ("organisation", "rjz"), ("la", " e10000016 ")]), today)
            .unwrap();
        assert_eq!(ok.period, Period { from: d("2026-10-24"), to: d("2026-11-22") });
        assert_eq!(ok.nhs_number.as_deref(), Some("9990000042"));
        assert_eq!(ok.organisation.as_deref(), Some("RJZ"));
        assert_eq!(ok.la.as_deref(), Some("E10000016"));
        let fields = |pairs: &[(&str, &str)]| -> Vec<String> {
            check(&q(pairs), today).unwrap_err().into_iter().map(|e| e.field).collect()
        };
        assert_eq!(fields(&[("nhs_number", "9990000043")]), ["nhs_number"]);
        assert_eq!(fields(&[("nhs_number", &"1".repeat(41))]), ["nhs_number"]);
        assert_eq!(fields(&[("organisation", "RJZ; DROP")]), ["organisation"]);
        assert_eq!(fields(&[("organisation", &"A".repeat(21))]), ["organisation"]);
        assert_eq!(fields(&[("la", "E1000001-6")]), ["la"]);
        assert_eq!(fields(&[("user", &"u".repeat(201))]), ["user"]);
        assert_eq!(fields(&[("user", "a\u{0}b")]), ["user"]);
        assert_eq!(fields(&[("after", "nonsense")]), ["after"]);
        assert_eq!(fields(&[("from", "2026-13-01")]), ["from"]);
        assert_eq!(fields(&[("from", "2026-11-02"), ("to", "2026-11-01"), ("la", "?")]), ["from", "la"]);
        assert!(check(&q(&[("user", &"u".repeat(200))]), today).is_ok());
    }

    #[test]
    fn the_query_string_keeps_every_filter_and_encodes_values() {
        let c = check(
            &q(&[("from", "2026-11-01"), ("to", "2026-11-02"), ("user", "a b&c=d"), ("la", "E10000016")]),
            d("2026-11-22"),
        )
        .unwrap();
        let after = Cursor { at: t(0), kind: Kind::Change, id: 7 };
        assert_eq!(
            query_string(&c, Some(&after)),
            format!("from=2026-11-01&to=2026-11-02&user=a%20b%26c%3Dd&la=E10000016&after={}", after.encode())
        );
        assert_eq!(query_string(&c, None), "from=2026-11-01&to=2026-11-02&user=a%20b%26c%3Dd&la=E10000016");
    }

    #[test]
    fn csv_rows_carry_every_column() {
        let mut e = entry(t(0), Kind::View, 3);
        e.shown = Some(false);
        let row = csv_row(&e);
        assert_eq!(row.len(), CSV_HEADER.len());
        assert_eq!(row[12], "No");
        assert_eq!(row[13], "view-3");
        assert_eq!(action_label("cp.record_replaced"), "Information replaced by an upload");
        assert_eq!(action_label("cp.something_new"), "cp.something_new");
    }
}
