//! CP-IS078: the service performance report. Availability from the health probe each instance
//! records every minute (against the CP-IS072 target of 99.90%), requests and response times per
//! area from the per-minute histograms (src/monitoring/), the scheduled jobs that failed, and the
//! incident log CP-IS owners keep (severity 1, the worst, to 5).
//!
//! The figures are plain functions over what the database holds, unit-tested below; [`load`] reads
//! the rows and calls them.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, DurationRound, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Text, Timestamptz};
use serde_json::json;

use super::Period;
use crate::audit::{self, Actor, Event};
use crate::domain::dates::{uk_day_bounds, UK};
use crate::error::AppError;
use crate::monitoring::metrics::Area;
use crate::schema::{incidents, users};
use crate::validation::FieldError;

// ---------------------------------------------------------------------------------------------
// Latency histograms

/// The upper bounds, in milliseconds, of the latency buckets; one more bucket holds what is slower
/// than the last. `request_minutes.buckets` holds a count per bucket in this order.
pub const BUCKET_BOUNDS_MS: [u32; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
/// How many buckets a histogram has (the bounds and "slower than the last").
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// The bucket of a duration: the first whose upper bound it does not exceed.
pub fn bucket_index(ms: f64) -> usize {
    if ms.is_nan() || ms <= 0.0 {
        return 0;
    }
    BUCKET_BOUNDS_MS.iter().position(|b| ms <= f64::from(*b)).unwrap_or(BUCKETS - 1)
}

/// A count of requests per latency bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram(pub [u64; BUCKETS]);

/// A latency read from a histogram: at most a bucket's upper bound, or slower than the last bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    AtMost(u32),
    Over(u32),
}

impl Latency {
    /// As the page and the CSV show it, in milliseconds: "50" or "over 10000".
    pub fn text(self) -> String {
        match self {
            Latency::AtMost(ms) => ms.to_string(),
            Latency::Over(ms) => format!("over {ms}"),
        }
    }
}

impl Histogram {
    /// From stored counts (`request_minutes.buckets`): missing buckets count 0, counts beyond the
    /// last bucket (a longer array) go to the last one, and nulls or negatives count 0.
    pub fn from_counts(counts: &[Option<i64>]) -> Histogram {
        let mut h = Histogram::default();
        for (i, c) in counts.iter().enumerate() {
            let c = c.unwrap_or(0).max(0) as u64;
            h.0[i.min(BUCKETS - 1)] += c;
        }
        h
    }

    /// Counts one request of `ms` milliseconds.
    pub fn add(&mut self, ms: f64) {
        self.0[bucket_index(ms)] += 1;
    }

    /// Adds another histogram's counts (histograms of minutes, instances or areas merge exactly).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `p`th percentile (1 to 100): the upper bound of the first bucket whose cumulative count
    /// reaches `ceil(total * p / 100)` requests. `None` when the histogram is empty.
    pub fn percentile(&self, p: u32) -> Option<Latency> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let p = u64::from(p.clamp(1, 100));
        let rank = (total * p).div_ceil(100).max(1);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(match BUCKET_BOUNDS_MS.get(i) {
                    Some(bound) => Latency::AtMost(*bound),
                    None => Latency::Over(BUCKET_BOUNDS_MS[BUCKET_BOUNDS_MS.len() - 1]),
                });
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Percentages

/// The CP-IS072 availability target, in hundredths of a percent (99.90%).
pub const TARGET_HUNDREDTHS: i64 = 9990;

/// `numer / denom` as hundredths of a percent, rounded down (so an availability is never shown
/// as meeting a target it misses). `None` when there is nothing to divide by.
pub fn hundredths_floor(numer: i64, denom: i64) -> Option<i64> {
    (denom > 0).then(|| (i128::from(numer.max(0)) * 10_000 / i128::from(denom)) as i64)
}

/// `numer / denom` as hundredths of a percent, rounded to the nearest (halves up).
pub fn hundredths_rounded(numer: i64, denom: i64) -> Option<i64> {
    (denom > 0).then(|| ((i128::from(numer.max(0)) * 20_000 + i128::from(denom)) / (2 * i128::from(denom))) as i64)
}

/// Hundredths of a percent as shown: "99.95%".
pub fn format_percent(hundredths: i64) -> String {
    format!("{}.{:02}%", hundredths / 100, hundredths % 100)
}

// ---------------------------------------------------------------------------------------------
// Availability (CP-IS072, CP-IS078)

/// Minutes with at least one successful probe out of the minutes measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Availability {
    pub ok_minutes: i64,
    pub measured_minutes: i64,
}

impl Availability {
    pub fn hundredths(&self) -> Option<i64> {
        hundredths_floor(self.ok_minutes, self.measured_minutes)
    }

    /// "99.95%", or "Not measured" when no minute of the period was measured.
    pub fn text(&self) -> String {
        self.hundredths().map(format_percent).unwrap_or_else(|| "Not measured".into())
    }

    /// Whether it meets the CP-IS072 target of 99.90% (exactly, not from the rounded figure).
    pub fn meets_target(&self) -> Option<bool> {
        (self.measured_minutes > 0).then(|| self.ok_minutes * 10_000 >= self.measured_minutes * TARGET_HUNDREDTHS)
    }
}

/// One UK day's availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayAvailability {
    pub day: NaiveDate,
    pub availability: Availability,
}

fn minute_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

/// The whole minutes of `[start, end)` that count towards availability: none before the minute of
/// the first probe ever recorded (a fresh install is not penalised for the time before it
/// existed) and none from the current minute on (it has not been probed yet).
pub fn measured_minutes(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    first_probe: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> i64 {
    let Some(first) = first_probe else {
        return 0;
    };
    let from = start.max(minute_floor(first));
    let to = end.min(minute_floor(now));
    if to <= from {
        0
    } else {
        (to - from).num_minutes()
    }
}

/// The period's availability and each day's, from the number of minutes of each UK day with at
/// least one successful probe. A minute without one (the service down, the database unreachable,
/// or no instance running) counts as unavailable.
pub fn availability(
    period: &Period,
    first_probe: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    ok_minutes_by_day: &BTreeMap<NaiveDate, i64>,
) -> (Availability, Vec<DayAvailability>) {
    let mut total = Availability::default();
    let days: Vec<DayAvailability> = period
        .days()
        .map(|day| {
            let (start, end) = uk_day_bounds(day);
            let measured = measured_minutes(start, end, first_probe, now);
            let ok = ok_minutes_by_day.get(&day).copied().unwrap_or(0).clamp(0, measured);
            total.ok_minutes += ok;
            total.measured_minutes += measured;
            DayAvailability { day, availability: Availability { ok_minutes: ok, measured_minutes: measured } }
        })
        .collect();
    (total, days)
}

// ---------------------------------------------------------------------------------------------
// Requests per area

/// One row of the per-area table (the page's table and the CSV are both [`AreaRow::cells`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaRow {
    pub area: String,
    pub requests: i64,
    pub client_errors: i64,
    pub server_errors: i64,
    pub histogram: Histogram,
}

/// The per-area table's columns.
pub const AREA_HEADER: [&str; 8] = [
    "Area",
    "Requests",
    "4xx responses",
    "5xx responses",
    "Error rate (5xx)",
    "p50 (ms, at most)",
    "p95 (ms, at most)",
    "p99 (ms, at most)",
];

/// The name of the totals row.
pub const ALL_AREAS: &str = "All areas";

impl AreaRow {
    /// Server errors as a share of requests (CP-IS078's error rate): "0.25%", or "" without requests.
    pub fn error_rate(&self) -> String {
        hundredths_rounded(self.server_errors, self.requests).map(format_percent).unwrap_or_default()
    }

    fn latency(&self, p: u32) -> String {
        self.histogram.percentile(p).map(Latency::text).unwrap_or_default()
    }

    /// The row as the page and the CSV show it, in [`AREA_HEADER`]'s order.
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.area.clone(),
            self.requests.to_string(),
            self.client_errors.to_string(),
            self.server_errors.to_string(),
            self.error_rate(),
            self.latency(50),
            self.latency(95),
            self.latency(99),
        ]
    }
}

/// The areas in the order of [`Area::ALL`] (unknown names, from another version, after them by
/// name), followed by the totals row, which merges every area's histogram.
pub fn area_rows(mut rows: Vec<AreaRow>) -> Vec<AreaRow> {
    let rank = |name: &str| Area::from_label(name).map_or(usize::MAX, |a| a as usize);
    rows.sort_by(|a, b| rank(&a.area).cmp(&rank(&b.area)).then_with(|| a.area.cmp(&b.area)));
    let mut total = AreaRow {
        area: ALL_AREAS.into(),
        requests: 0,
        client_errors: 0,
        server_errors: 0,
        histogram: Histogram::default(),
    };
    for r in &rows {
        total.requests += r.requests;
        total.client_errors += r.client_errors;
        total.server_errors += r.server_errors;
        total.histogram.merge(&r.histogram);
    }
    rows.push(total);
    rows
}

// ---------------------------------------------------------------------------------------------
// Job failures and incidents

/// A scheduled job that failed in the period (for good, or an attempt that will be retried).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct JobFailure {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Timestamptz)]
    pub scheduled_for: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_attempt: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
}

/// An incident as the log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Incident {
    pub id: i64,
    pub severity: i16,
    pub title: String,
    pub description: String,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub recorded_by: String,
}

/// The severities, 1 the worst (the standard leaves their definitions to the service level
/// agreement: "Sev 1s - Sev 5s").
pub const SEVERITIES: [(i16, &str); 5] = [
    (1, "1 (the worst): the service is unavailable or unsafe for everyone"),
    (2, "2: a major part of the service is unavailable"),
    (3, "3: the service is degraded for some users"),
    (4, "4: a minor fault with a workaround"),
    (5, "5 (the least): no effect on users"),
];

/// An incident as typed into the form.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct IncidentInput {
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub resolved_at: String,
}

/// An incident ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    pub severity: i16,
    pub title: String,
    pub description: String,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

pub const TITLE_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 5000;
const TIME_EXAMPLE: &str = "YYYY-MM-DD HH:MM in UK time, like 2026-11-22 14:05";

/// A UK local time typed as "YYYY-MM-DD HH:MM" (or with a `T`, as a browser's date-time field
/// sends it). On the autumn clock change the hour that happens twice is read as its first
/// occurrence; a time in the spring gap does not exist and is refused.
pub fn parse_uk_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let local = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .filter(|t| super::period::YEARS.contains(&t.year()))
        .ok_or_else(|| format!("as {TIME_EXAMPLE}"))?;
    UK.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| "as a time that exists in the UK: the clocks went forward an hour at 01:00 that day".into())
}

fn bad_text(s: &str, newlines: bool) -> bool {
    s.chars().any(|c| c.is_control() && !(newlines && matches!(c, '\n' | '\r' | '\t')))
}

/// Checks the incident form field by field (CP-IS078). Every problem is reported, each with a
/// message naming its field.
pub fn validate_incident(input: &IncidentInput, now: DateTime<Utc>) -> Result<NewIncident, Vec<FieldError>> {
    let mut errors = Vec::new();
    let severity = match input.severity.trim().parse::<i16>() {
        Ok(s) if (1..=5).contains(&s) => Some(s),
        _ => {
            errors.push(FieldError::new("severity", "Choose the severity, from 1 (the worst) to 5"));
            None
        }
    };
    let title = input.title.trim();
    if title.is_empty() {
        errors.push(FieldError::new("title", "Enter a title for the incident"));
    } else if title.chars().count() > TITLE_MAX {
        errors.push(FieldError::new("title", format!("The title must be {TITLE_MAX} characters or fewer")));
    } else if bad_text(title, false) {
        errors.push(FieldError::new("title", "The title must not contain control characters such as tabs"));
    }
    let description = input.description.trim();
    if description.chars().count() > DESCRIPTION_MAX {
        errors.push(FieldError::new(
            "description",
            format!("The description must be {DESCRIPTION_MAX} characters or fewer"),
        ));
    } else if bad_text(description, true) {
        errors.push(FieldError::new("description", "The description must not contain control characters"));
    }
    let started_at = if input.started_at.trim().is_empty() {
        errors.push(FieldError::new("started_at", format!("Enter when the incident started, as {TIME_EXAMPLE}")));
        None
    } else {
        match parse_uk_time(&input.started_at) {
            Ok(t) if t > now => {
                errors.push(FieldError::new("started_at", "The start of the incident cannot be in the future"));
                None
            }
            Ok(t) => Some(t),
            Err(how) => {
                errors.push(FieldError::new("started_at", format!("Enter when the incident started {how}")));
                None
            }
        }
    };
    let resolved_at = if input.resolved_at.trim().is_empty() {
        None
    } else {
        match parse_uk_time(&input.resolved_at) {
            Ok(t) if t > now => {
                errors.push(FieldError::new("resolved_at", "The resolution cannot be in the future"));
                None
            }
            Ok(t) if started_at.is_some_and(|s| t < s) => {
                errors.push(FieldError::new("resolved_at", "The resolution must be on or after the start"));
                None
            }
            Ok(t) => Some(t),
            Err(how) => {
                errors.push(FieldError::new(
                    "resolved_at",
                    format!("Enter when the incident was resolved {how}, or leave it empty if it is still open"),
                ));
                None
            }
        }
    };
    match (errors.is_empty(), severity, started_at) {
        (true, Some(severity), Some(started_at)) => Ok(NewIncident {
            severity,
            title: title.to_owned(),
            description: description.to_owned(),
            started_at,
            resolved_at,
        }),
        _ => Err(errors),
    }
}

/// Stores an incident with its audit entry, in one transaction. Returns its id.
pub fn record_incident(conn: &mut PgConnection, user_id: i64, new: &NewIncident) -> Result<i64, AppError> {
    conn.transaction(|conn| {
        let id: i64 = diesel::insert_into(incidents::table)
            .values((
                incidents::severity.eq(new.severity),
                incidents::title.eq(&new.title),
                incidents::description.eq(&new.description),
                incidents::started_at.eq(new.started_at),
                incidents::resolved_at.eq(new.resolved_at),
                incidents::recorded_by.eq(user_id),
            ))
            .returning(incidents::id)
            .get_result(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(user_id), "incident.recorded").details(json!({
                "incident_id": id,
                "severity": new.severity,
                "started_at": new.started_at,
                "resolved_at": new.resolved_at,
            })),
        )?;
        Ok(id)
    })
}

/// What resolving an incident did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Now,
    Already,
}

/// Marks an open incident resolved at `now` (never before its start), with its audit entry, in one
/// transaction. An incident already resolved is left as it is.
pub fn resolve_incident(
    conn: &mut PgConnection,
    user_id: i64,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Resolved, AppError> {
    conn.transaction(|conn| {
        let found: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = incidents::table
            .find(id)
            .select((incidents::started_at, incidents::resolved_at))
            .for_update()
            .first(conn)
            .optional()?;
        let (started_at, resolved_at) =
            found.ok_or_else(|| AppError::NotFound("There is no incident with that number.".into()))?;
        if resolved_at.is_some() {
            return Ok(Resolved::Already);
        }
        let at = now.max(started_at);
        diesel::update(incidents::table.find(id)).set(incidents::resolved_at.eq(at)).execute(conn)?;
        audit::record(
            conn,
            Event::new(Actor::User(user_id), "incident.resolved")
                .details(json!({ "incident_id": id, "resolved_at": at })),
        )?;
        Ok(Resolved::Now)
    })
}

// ---------------------------------------------------------------------------------------------
// The report

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub period: Period,
    pub first_probe: Option<DateTime<Utc>>,
    pub availability: Availability,
    pub days: Vec<DayAvailability>,
    /// Per area, then the totals row.
    pub areas: Vec<AreaRow>,
    pub job_failures: Vec<JobFailure>,
    /// Incidents that started in the period, and every open one; newest first.
    pub incidents: Vec<Incident>,
}

#[derive(QueryableByName)]
struct DayCount {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    minutes: i64,
}

#[derive(QueryableByName)]
struct AreaCounts {
    #[diesel(sql_type = Text)]
    area: String,
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    client_errors: i64,
    #[diesel(sql_type = BigInt)]
    server_errors: i64,
}

#[derive(QueryableByName)]
struct AreaBucket {
    #[diesel(sql_type = Text)]
    area: String,
    #[diesel(sql_type = BigInt)]
    i: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Reads the report for `period` as of `now`.
pub fn load(conn: &mut PgConnection, period: Period, now: DateTime<Utc>) -> Result<Report, AppError> {
    let (start, end) = period.bounds();
    // Availability: the first probe ever, and the minutes of each UK day with an OK probe, up to
    // the current minute (not yet complete).
    let first_probe: Option<DateTime<Utc>> =
        crate::schema::health_probes::table.select(diesel::dsl::min(crate::schema::health_probes::at)).first(conn)?;
    let upto = end.min(minute_floor(now));
    let ok_days: Vec<DayCount> = diesel::sql_query(
        "SELECT (date_trunc('minute', at) AT TIME ZONE 'Europe/London')::date AS day, \
                count(DISTINCT date_trunc('minute', at)) AS minutes \
         FROM health_probes WHERE ok AND at >= $1 AND at < $2 GROUP BY 1",
    )
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(upto)
    .load(conn)?;
    let ok_by_day: BTreeMap<NaiveDate, i64> = ok_days.into_iter().map(|d| (d.day, d.minutes)).collect();
    let (availability, days) = availability(&period, first_probe, now, &ok_by_day);

    // Requests per area: counts, and each bucket summed over every minute and instance.
    let counts: Vec<AreaCounts> = diesel::sql_query(
        "SELECT area, sum(requests)::bigint AS requests, sum(client_errors)::bigint AS client_errors, \
                sum(server_errors)::bigint AS server_errors \
         FROM request_minutes WHERE minute >= $1 AND minute < $2 GROUP BY area",
    )
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .load(conn)?;
    let buckets: Vec<AreaBucket> = diesel::sql_query(
        "SELECT area, u.i AS i, sum(coalesce(u.n, 0))::bigint AS n \
         FROM request_minutes, unnest(buckets) WITH ORDINALITY AS u(n, i) \
         WHERE minute >= $1 AND minute < $2 GROUP BY area, u.i",
    )
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .load(conn)?;
    let mut histograms: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
    for b in buckets {
        let slots = histograms.entry(b.area).or_default();
        let i = usize::try_from(b.i.max(1) - 1).unwrap_or(0);
        if slots.len() <= i {
            slots.resize(i + 1, None);
        }
        slots[i] = Some(b.n);
    }
    let areas = area_rows(
        counts
            .into_iter()
            .map(|c| AreaRow {
                histogram: Histogram::from_counts(histograms.get(&c.area).map(Vec::as_slice).unwrap_or(&[])),
                area: c.area,
                requests: c.requests,
                client_errors: c.client_errors,
                server_errors: c.server_errors,
            })
            .collect(),
    );

    // Jobs that failed in the period (by their last attempt), newest first.
    let job_failures: Vec<JobFailure> = diesel::sql_query(
        "SELECT id, kind, scheduled_for, status, attempts, finished_at AS last_attempt, last_error AS error \
         FROM jobs WHERE (status = 'failed' OR last_error IS NOT NULL) \
           AND coalesce(finished_at, scheduled_for) >= $1 AND coalesce(finished_at, scheduled_for) < $2 \
         ORDER BY coalesce(finished_at, scheduled_for) DESC, id DESC",
    )
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .load(conn)?;

    // The incident log: started in the period, and every open incident.
    let incidents: Vec<Incident> = incidents::table
        .inner_join(users::table)
        .filter(incidents::started_at.ge(start).and(incidents::started_at.lt(end)).or(incidents::resolved_at.is_null()))
        .order((incidents::started_at.desc(), incidents::id.desc()))
        .select((
            incidents::id,
            incidents::severity,
            incidents::title,
            incidents::description,
            incidents::started_at,
            incidents::resolved_at,
            users::display_name,
        ))
        .load(conn)?;

    Ok(Report { period, first_probe, availability, days, areas, job_failures, incidents })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn hist(counts: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        h.0[..counts.len()].copy_from_slice(counts);
        h
    }

    #[test]
    fn durations_fall_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(f64::NAN), 0);
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(1.01), 1);
        assert_eq!(bucket_index(50.0), 5);
        assert_eq!(bucket_index(10_000.0), 12);
        assert_eq!(bucket_index(10_000.5), 13);
        assert_eq!(bucket_index(f64::INFINITY), 13);
        assert_eq!(BUCKETS, 14);
    }

    #[test]
    fn histograms_merge_by_adding_each_bucket() {
        let mut a = hist(&[1, 0, 2]);
        a.merge(&hist(&[0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]));
        assert_eq!(a, hist(&[1, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]));
        assert_eq!(a.total(), 14);
        // Stored arrays: short ones pad with zeros, long ones fold into the last bucket, nulls count 0.
        let stored: Vec<Option<i64>> = vec![Some(1), None, Some(-5), Some(2)];
        assert_eq!(Histogram::from_counts(&stored), hist(&[1, 0, 0, 2]));
        let long: Vec<Option<i64>> = (0..16).map(|_| Some(1)).collect();
        assert_eq!(Histogram::from_counts(&long).0[13], 3);
    }

    #[test]
    fn a_percentile_is_the_upper_bound_of_the_bucket_that_reaches_it() {
        assert_eq!(Histogram::default().percentile(50), None);
        // 100 requests: 50 at <= 5 ms, 45 at <= 50 ms, 4 at <= 500 ms, 1 slower than 10 s.
        let mut h = Histogram::default();
        h.0[2] = 50;
        h.0[5] = 45;
        h.0[8] = 4;
        h.0[13] = 1;
        assert_eq!(h.percentile(50), Some(Latency::AtMost(5)));
        assert_eq!(h.percentile(51), Some(Latency::AtMost(50)));
        assert_eq!(h.percentile(95), Some(Latency::AtMost(50)));
        assert_eq!(h.percentile(96), Some(Latency::AtMost(500)));
        assert_eq!(h.percentile(99), Some(Latency::AtMost(500)));
        assert_eq!(h.percentile(100), Some(Latency::Over(10000)));
        assert_eq!(Latency::Over(10000).text(), "over 10000");
        // One request: every percentile is its bucket.
        let one = hist(&[0, 0, 0, 1]);
        assert_eq!(one.percentile(1), Some(Latency::AtMost(10)));
        assert_eq!(one.percentile(99), Some(Latency::AtMost(10)));
        // The rank rounds up: 3 requests, p50 is the 2nd.
        assert_eq!(hist(&[1, 1, 1]).percentile(50), Some(Latency::AtMost(2)));
    }

    #[test]
    fn percentages_have_two_decimals_and_availability_rounds_down() {
        assert_eq!(hundredths_floor(9989, 10_000), Some(9989));
        assert_eq!(hundredths_floor(99_899, 100_000), Some(9989));
        assert_eq!(hundredths_rounded(99_899, 100_000), Some(9990));
        assert_eq!(hundredths_rounded(1, 3), Some(3333));
        assert_eq!(hundredths_rounded(2, 3), Some(6667));
        assert_eq!(hundredths_floor(1, 0), None);
        assert_eq!(format_percent(9990), "99.90%");
        assert_eq!(format_percent(10_000), "100.00%");
        assert_eq!(format_percent(5), "0.05%");
        // CP-IS072: 99.90% is met exactly at 999 minutes in 1000, missed at 99.899%.
        assert_eq!(Availability { ok_minutes: 999, measured_minutes: 1000 }.meets_target(), Some(true));
        assert_eq!(Availability { ok_minutes: 99_899, measured_minutes: 100_000 }.meets_target(), Some(false));
        assert_eq!(Availability { ok_minutes: 99_899, measured_minutes: 100_000 }.text(), "99.89%");
        assert_eq!(Availability::default().meets_target(), None);
        assert_eq!(Availability::default().text(), "Not measured");
    }

    #[test]
    fn minutes_are_measured_from_the_first_probe_to_the_current_minute() {
        let (start, end) = uk_day_bounds(d("2026-11-20"));
        assert_eq!(measured_minutes(start, end, None, t("2026-11-22T00:00:00Z")), 0);
        // A whole day after the first probe: 1440 minutes.
        assert_eq!(measured_minutes(start, end, Some(t("2026-11-01T00:00:00Z")), t("2026-11-22T00:00:00Z")), 1440);
        // First probe at 10:00:30: that minute counts, those before do not.
        assert_eq!(measured_minutes(start, end, Some(t("2026-11-20T10:00:30Z")), t("2026-11-22T00:00:00Z")), 840);
        // Now 12:30:45: minutes up to 12:30 (the current one is not complete).
        assert_eq!(measured_minutes(start, end, Some(t("2026-11-20T10:00:30Z")), t("2026-11-20T12:30:45Z")), 150);
        // A day before the first probe, or after now, measures nothing.
        assert_eq!(measured_minutes(start, end, Some(t("2026-11-21T00:00:00Z")), t("2026-11-22T00:00:00Z")), 0);
        assert_eq!(measured_minutes(start, end, Some(t("2026-11-01T00:00:00Z")), t("2026-11-19T00:00:00Z")), 0);
        // The spring clock change day has 23 hours (BST starts 2026-03-29).
        let (s, e) = uk_day_bounds(d("2026-03-29"));
        assert_eq!(measured_minutes(s, e, Some(t("2026-01-01T00:00:00Z")), t("2026-04-01T00:00:00Z")), 23 * 60);
    }

    #[test]
    fn availability_adds_up_the_days_of_the_period() {
        let period = Period { from: d("2026-11-19"), to: d("2026-11-21") };
        let first = Some(t("2026-11-20T00:00:00Z"));
        let now = t("2026-11-21T12:00:00Z");
        let ok = BTreeMap::from([(d("2026-11-20"), 1439), (d("2026-11-21"), 720), (d("2026-11-25"), 5)]);
        let (total, days) = availability(&period, first, now, &ok);
        assert_eq!(days.len(), 3);
        assert_eq!(days[0].availability, Availability { ok_minutes: 0, measured_minutes: 0 });
        assert_eq!(days[1].availability, Availability { ok_minutes: 1439, measured_minutes: 1440 });
        assert_eq!(days[2].availability, Availability { ok_minutes: 720, measured_minutes: 720 });
        assert_eq!(total, Availability { ok_minutes: 2159, measured_minutes: 2160 });
        assert_eq!(total.text(), "99.95%");
        assert_eq!(days[1].availability.text(), "99.93%");
    }

    #[test]
    fn area_rows_follow_the_areas_order_and_end_with_the_totals() {
        let row = |area: &str, requests, server, h: Histogram| AreaRow {
            area: area.into(),
            requests,
            client_errors: 1,
            server_errors: server,
            histogram: h,
        };
        let rows = area_rows(vec![
            row("Zeta (old)", 1, 0, hist(&[1])),
            row(Area::Reports.label(), 4, 1, hist(&[0, 0, 0, 0, 0, 4])),
            row(Area::ChildCareAlert.label(), 3, 0, hist(&[0, 3])),
        ]);
        let names: Vec<&str> = rows.iter().map(|r| r.area.as_str()).collect();
        assert_eq!(names, ["Child Care Alert tab", "Reports", "Zeta (old)", "All areas"]);
        assert_eq!(rows[3].cells(), ["All areas", "8", "3", "1", "12.50%", "2", "50", "50"]);
        assert_eq!(rows[1].cells(), ["Reports", "4", "1", "1", "25.00%", "50", "50", "50"]);
        let empty = row("x", 0, 0, Histogram::default());
        assert_eq!(empty.cells()[4..], ["", "", "", ""]);
    }

    fn input(severity: &str, title: &str, started: &str, resolved: &str) -> IncidentInput {
        IncidentInput {
            severity: severity.into(),
            title: title.into(),
            description: "Details".into(),
            started_at: started.into(),
            resolved_at: resolved.into(),
        }
    }

    fn fields(r: Result<NewIncident, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn incidents_are_read_in_uk_time_and_checked_field_by_field() {
        let now = t("2026-11-22T12:00:00Z");
        let ok =
            validate_incident(&input("2", " Database failover ", "2026-11-22 09:30", "2026-11-22T10:15"), now).unwrap();
        assert_eq!(ok.severity, 2);
        assert_eq!(ok.title, "Database failover");
        assert_eq!(ok.started_at, t("2026-11-22T09:30:00Z"));
        assert_eq!(ok.resolved_at, Some(t("2026-11-22T10:15:00Z")));
        // Summer time: 09:30 BST is 08:30 UTC.
        let summer = validate_incident(&input("1", "x", "2026-07-01 09:30", ""), now).unwrap();
        assert_eq!(summer.started_at, t("2026-07-01T08:30:00Z"));
        assert_eq!(summer.resolved_at, None);
        // The autumn hour that happens twice is its first occurrence; the spring gap does not exist.
        assert_eq!(parse_uk_time("2026-10-25 01:30").unwrap(), t("2026-10-25T00:30:00Z"));
        assert!(parse_uk_time("2026-03-29 01:30").unwrap_err().contains("clocks went forward"));

        assert_eq!(fields(validate_incident(&input("0", "x", "2026-11-22 09:30", ""), now)), ["severity"]);
        assert_eq!(fields(validate_incident(&input("six", "x", "2026-11-22 09:30", ""), now)), ["severity"]);
        assert_eq!(fields(validate_incident(&input("3", "  ", "2026-11-22 09:30", ""), now)), ["title"]);
        let long = "x".repeat(TITLE_MAX + 1);
        assert_eq!(fields(validate_incident(&input("3", &long, "2026-11-22 09:30", ""), now)), ["title"]);
        assert_eq!(fields(validate_incident(&input("3", "a\u{0}b", "2026-11-22 09:30", ""), now)), ["title"]);
        assert_eq!(fields(validate_incident(&input("3", "x", "", ""), now)), ["started_at"]);
        assert_eq!(fields(validate_incident(&input("3", "x", "22/11/2026 09:30", ""), now)), ["started_at"]);
        assert_eq!(fields(validate_incident(&input("3", "x", "-5000-01-01 09:30", ""), now)), ["started_at"]);
        assert_eq!(fields(validate_incident(&input("3", "x", "2026-11-22 13:30", ""), now)), ["started_at"]);
        assert_eq!(
            fields(validate_incident(&input("3", "x", "2026-11-22 09:30", "2026-11-22 09:29"), now)),
            ["resolved_at"]
        );
        assert_eq!(fields(validate_incident(&input("3", "x", "2026-11-22 09:30", "soon"), now)), ["resolved_at"]);
        let mut too_long = input("3", "x", "2026-11-22 09:30", "");
        too_long.description = "y".repeat(DESCRIPTION_MAX + 1);
        assert_eq!(fields(validate_incident(&too_long, now)), ["description"]);
        // Several problems at once are all reported.
        assert_eq!(fields(validate_incident(&IncidentInput::default(), now)), ["severity", "title", "started_at"]);
        let msg = validate_incident(&input("3", "x", "yesterday", ""), now).unwrap_err()[0].message.clone();
        assert!(msg.contains("YYYY-MM-DD HH:MM"), "{msg}");
    }
}
