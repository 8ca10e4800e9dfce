//! Access events: every access is stored (CP-IS036, CP-IS047); the first-access rule decides, as
//! each one is recorded, whether it is shown in the history, the API and message 05.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::domain::access_history::{self, HISTORY_LIMIT};
use crate::schema::access_events;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Scra,
    Fhir,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Channel::Scra => "SCRa",
            Channel::Fhir => "FHIR",
        }
    }
}

/// Who is looking, as the access history records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// "The same user" of CP-IS047: the account's SDS user id, or the API's NHSD-End-User-ID.
    pub viewer_id: String,
    pub user_id: Option<i64>,
    pub name: String,
    pub job_role_code: String,
    pub organisation_code: String,
    pub channel: Channel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub shown: bool,
}

/// Records an access at `at`. The caller holds the patient row's lock (`FOR NO KEY UPDATE`) so that two
/// accesses to one child are decided one after the other.
///
/// Every shown access of the viewer counts, even one stamped later than `at`: an opening takes its
/// time before it waits for the lock, so one that took its time first may get the lock second,
/// after a later-stamped opening was recorded as shown. That access is then within the window
/// ([`access_history::is_shown`]) and this one is not shown: at most one per 24 hours (CP-IS047).
pub fn record(conn: &mut PgConnection, nhs_number: &str, viewer: &Viewer, at: DateTime<Utc>) -> QueryResult<Recorded> {
    let latest_shown = latest_shown_in_window(conn, nhs_number, &viewer.viewer_id, at)?;
    let shown = access_history::is_shown(at, latest_shown);
    let id = diesel::insert_into(access_events::table)
        .values((
            access_events::nhs_number.eq(nhs_number),
            access_events::accessed_at.eq(at),
            access_events::viewer_id.eq(&viewer.viewer_id),
            access_events::user_id.eq(viewer.user_id),
            access_events::viewer_name.eq(&viewer.name),
            access_events::job_role_code.eq(&viewer.job_role_code),
            access_events::organisation_code.eq(&viewer.organisation_code),
            access_events::channel.eq(viewer.channel.code()),
            access_events::shown.eq(shown),
        ))
        .returning(access_events::id)
        .get_result(conn)?;
    Ok(Recorded { id, shown })
}

/// The latest shown access by `viewer_id` to the child after [`access_history::window_start`]:
/// only those can hide an access at `at`. They are read from the child's shown accesses of the
/// last day (the history index's newest range, at most one per viewer, which the tab reads next
/// anyway). The range is fenced off (`MATERIALIZED`) so that the planner does not go through the
/// viewer's own accesses of the day instead, which for a busy clinician are hundreds. The window's
/// start is read through a sub-select so that every plan estimates it alike and PostgreSQL keeps
/// one generic plan instead of planning the statement on every opening (as `lock_and_read_held`).
fn latest_shown_in_window(
    conn: &mut PgConnection,
    nhs_number: &str,
    viewer_id: &str,
    at: DateTime<Utc>,
) -> QueryResult<Option<DateTime<Utc>>> {
    use diesel::sql_types::{Nullable, Text, Timestamptz};
    #[derive(QueryableByName)]
    struct Latest {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        latest: Option<DateTime<Utc>>,
    }
    let row: Latest = crate::db::prepared::sql(
        "WITH day AS MATERIALIZED ( \
             SELECT accessed_at, viewer_id FROM access_events \
             WHERE nhs_number = $1 AND shown AND accessed_at > (SELECT $3::timestamptz) \
         ) SELECT max(accessed_at) AS latest FROM day WHERE viewer_id = $2",
    )
    .bind::<Text, _>(nhs_number.to_owned())
    .bind::<Text, _>(viewer_id.to_owned())
    .bind::<Timestamptz, _>(access_history::window_start(at))
    .get_result(conn)?;
    Ok(row.latest)
}

/// One line of the access history, with names in readable form where the reference data has them.
#[derive(Debug, Clone, QueryableByName, PartialEq)]
pub struct HistoryEntry {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub accessed_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub user_id: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub viewer_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub job_role_code: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub job_role_name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub organisation_code: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub organisation_name: Option<String>,
    /// The viewer's account contact details, when the viewer has an account here.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub contact_email: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub contact_telephone: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub viewer_disabled_at: Option<DateTime<Utc>>,
}

impl HistoryEntry {
    /// CP-IS059: a disabled account's contact details are shown to nobody.
    pub fn contact(&self) -> Option<(Option<&str>, Option<&str>)> {
        if self.user_id.is_none() || self.viewer_disabled_at.is_some() {
            return None;
        }
        Some((self.contact_email.as_deref(), self.contact_telephone.as_deref()))
    }
}

/// The shown accesses to any of the numbers: newest first, ties in insertion order, at most 25 (CP-IS048).
/// Each number's newest shown accesses are read from its own end of the history index (so the
/// cost follows 25, not how often the child was viewed), and the names are joined to those 25 only.
pub fn history(conn: &mut PgConnection, numbers: &[String]) -> QueryResult<Vec<HistoryEntry>> {
    use diesel::sql_types::{Array, BigInt, Text};
    crate::db::prepared::sql(
        "SELECT a.id, a.accessed_at, a.user_id, a.viewer_name, a.job_role_code, jr.name AS job_role_name, \
                a.organisation_code, o.name AS organisation_name, u.email AS contact_email, \
                u.telephone AS contact_telephone, u.disabled_at AS viewer_disabled_at \
         FROM ( \
             SELECT e.* FROM unnest($1::text[]) AS n(nhs_number) \
             CROSS JOIN LATERAL ( \
                 SELECT id, accessed_at, user_id, viewer_name, job_role_code, organisation_code \
                 FROM access_events \
                 WHERE access_events.nhs_number = n.nhs_number AND shown \
                 ORDER BY accessed_at DESC, id DESC LIMIT $2 \
             ) AS e \
             ORDER BY e.accessed_at DESC, e.id DESC LIMIT $2 \
         ) AS a \
         LEFT JOIN job_roles jr ON jr.code = a.job_role_code \
         LEFT JOIN nhs_organisations o ON o.ods_code = a.organisation_code \
         LEFT JOIN users u ON u.id = a.user_id \
         ORDER BY a.accessed_at DESC, a.id DESC",
    )
    .bind::<Array<Text>, _>(numbers.to_vec())
    .bind::<BigInt, _>(HISTORY_LIMIT as i64)
    .load(conn)
}
