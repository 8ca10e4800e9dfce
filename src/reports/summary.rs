//! CP-IS077, the service information report: which local authorities have provided child
//! protection information, the current totals, the totals over a period, the NHS Query messages
//! received and the organisations that sent them, and the current items of every local authority.
//!
//! Each figure is one plain query function; [`build`] gathers them for the page and the CSV, which
//! both present the one [`Summary`] (so they cannot disagree), and [`run`] reads it and audits the
//! run in one transaction.
//!
//! Definitions (shown on the page too):
//! - *current*: a `cp_items` row not logically deleted (`deleted_at IS NULL`);
//! - *within the period*: an item whose `[start, end]` overlaps the period's dates (an open end
//!   runs on); the rows counted are those still in `cp_items`, current and logically deleted
//!   (expired) alike. An item replaced by a later upload is removed from `cp_items` (its content
//!   stays in the audit trail), so a plan is not counted twice for being sent twice;
//! - *provided information*: a local authority with an upload that had an accepted record, or with
//!   any item in `cp_items`.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date, Nullable, Text, Timestamptz};
use diesel::PgConnection;

use super::chart::Bar;
use super::Period;
use crate::audit::Actor;
use crate::domain::dates::{format_date, format_uk_datetime};
use crate::domain::names::readable_org_name;
use crate::error::AppError;

/// The report's id in the standard.
pub const REPORT: &str = "CP-IS077";
/// How many local authorities the "records per LA" chart shows.
pub const CHART_TOP_LAS: usize = 30;

/// One local authority with its uploads and current items (CP-IS077: "which children's social care
/// teams have provided CPP/LAC information" and "CPP/LAC/Unborn CPPs per Local Authority").
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct LaFigures {
    #[diesel(sql_type = Text)]
    pub code: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub first_upload: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_upload: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    pub provided: bool,
    #[diesel(sql_type = BigInt)]
    pub cpp: i64,
    #[diesel(sql_type = BigInt)]
    pub ucpp: i64,
    #[diesel(sql_type = BigInt)]
    pub lac: i64,
}

impl LaFigures {
    /// Current items of every type.
    pub fn current_items(&self) -> i64 {
        self.cpp + self.ucpp + self.lac
    }
}

/// Current totals: unique NHS numbers and LAs, and items of each type (CP-IS077).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct CurrentTotals {
    #[diesel(sql_type = BigInt)]
    pub nhs_numbers: i64,
    #[diesel(sql_type = BigInt)]
    pub las: i64,
    #[diesel(sql_type = BigInt)]
    pub cpp: i64,
    #[diesel(sql_type = BigInt)]
    pub ucpp: i64,
    #[diesel(sql_type = BigInt)]
    pub lac: i64,
}

/// Items of each type whose dates overlap a period (CP-IS077: "within a definable period").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct PeriodItems {
    #[diesel(sql_type = BigInt)]
    pub cpp: i64,
    #[diesel(sql_type = BigInt)]
    pub ucpp: i64,
    #[diesel(sql_type = BigInt)]
    pub lac: i64,
}

/// An organisation and how many messages (or tab openings) came from it in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgCount {
    pub code: String,
    pub name: String,
    pub count: i64,
}

#[derive(QueryableByName)]
struct OrgRow {
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Nullable<Text>)]
    nhs_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    la_name: Option<String>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl OrgRow {
    fn into_count(self) -> OrgCount {
        let name = match (self.nhs_name, self.la_name) {
            (Some(n), _) => readable_org_name(&n),
            (None, Some(la)) => la,
            (None, None) => String::new(),
        };
        OrgCount { code: self.code, name, count: self.n }
    }
}

/// Every local authority (all 152, zeros included), by name, with its first and last upload,
/// whether it has provided information, and its current items of each type.
pub fn per_la(conn: &mut PgConnection) -> QueryResult<Vec<LaFigures>> {
    diesel::sql_query(
        "SELECT la.code, coalesce(la.display_name, la.reference_name) AS name, \
                u.first_upload, u.last_upload, \
                (coalesce(u.accepted, false) OR c.la_code IS NOT NULL) AS provided, \
                coalesce(c.cpp, 0) AS cpp, coalesce(c.ucpp, 0) AS ucpp, coalesce(c.lac, 0) AS lac \
         FROM local_authorities la \
         LEFT JOIN (SELECT la_code, min(received_at) AS first_upload, max(received_at) AS last_upload, \
                           bool_or(accepted > 0) AS accepted \
                    FROM uploads GROUP BY la_code) u ON u.la_code = la.code \
         LEFT JOIN (SELECT la_code, \
                           count(*) FILTER (WHERE deleted_at IS NULL AND item_type = 'CPP') AS cpp, \
                           count(*) FILTER (WHERE deleted_at IS NULL AND item_type = 'UCPP') AS ucpp, \
                           count(*) FILTER (WHERE deleted_at IS NULL AND item_type = 'LAC') AS lac \
                    FROM cp_items GROUP BY la_code) c ON c.la_code = la.code \
         ORDER BY lower(coalesce(la.display_name, la.reference_name)), la.code",
    )
    .load(conn)
}

/// The local authorities that have provided information, from [`per_la`].
pub fn providers(all: &[LaFigures]) -> Vec<&LaFigures> {
    all.iter().filter(|l| l.provided).collect()
}

/// The current totals (current = not logically deleted).
pub fn current_totals(conn: &mut PgConnection) -> QueryResult<CurrentTotals> {
    diesel::sql_query(
        "SELECT count(DISTINCT nhs_number) AS nhs_numbers, count(DISTINCT la_code) AS las, \
                count(*) FILTER (WHERE item_type = 'CPP') AS cpp, \
                count(*) FILTER (WHERE item_type = 'UCPP') AS ucpp, \
                count(*) FILTER (WHERE item_type = 'LAC') AS lac \
         FROM cp_items WHERE deleted_at IS NULL",
    )
    .get_result(conn)
}

/// Items of each type whose `[start, end]` overlaps the period, current and logically deleted
/// (expired) rows alike; an open end runs on.
pub fn items_in_period(conn: &mut PgConnection, period: &Period) -> QueryResult<PeriodItems> {
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE item_type = 'CPP') AS cpp, \
                count(*) FILTER (WHERE item_type = 'UCPP') AS ucpp, \
                count(*) FILTER (WHERE item_type = 'LAC') AS lac \
         FROM cp_items WHERE start_date <= $2 AND (end_date IS NULL OR end_date >= $1)",
    )
    .bind::<Date, _>(period.from)
    .bind::<Date, _>(period.to)
    .get_result(conn)
}

/// The organisations that sent NHS Query messages (type 03, in) in the period, most messages
/// first. Their counts add up to the messages received.
pub fn querying_organisations(conn: &mut PgConnection, period: &Period) -> QueryResult<Vec<OrgCount>> {
    org_counts(
        conn,
        period,
        "SELECT origin AS code, count(*) AS n FROM transmissions \
         WHERE message_type = '03' AND direction = 'in' AND at >= $1 AND at < $2 GROUP BY origin",
    )
}

/// `counts` (a query giving `code, n` for the instants `[$1, $2)`) with each code's name: the NHS
/// organisation's, else the local authority's. Most first, then by code.
fn org_counts(conn: &mut PgConnection, period: &Period, counts: &str) -> QueryResult<Vec<OrgCount>> {
    let (from, to) = period.bounds();
    let rows: Vec<OrgRow> = diesel::sql_query(format!(
        "SELECT t.code, o.name AS nhs_name, coalesce(la.display_name, la.reference_name) AS la_name, t.n \
         FROM ({counts}) t \
         LEFT JOIN nhs_organisations o ON o.ods_code = t.code \
         LEFT JOIN local_authorities la ON la.code = t.code \
         ORDER BY t.n DESC, t.code"
    ))
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)?;
    Ok(rows.into_iter().map(OrgRow::into_count).collect())
}

/// The period's openings of the Child Care Alert tab, read in one pass over them (a national month
/// is millions of rows): per organisation (either channel), per channel and per UK day.
pub struct Openings {
    /// The organisations whose users opened the tab, most openings first.
    pub viewing: Vec<OrgCount>,
    /// Per channel: the screens (SCRa) and the API (FHIR), both always listed.
    pub by_channel: Vec<(String, i64)>,
    /// Per UK day of the period, every day listed (zeros included).
    pub per_day: Vec<(NaiveDate, i64)>,
}

#[derive(QueryableByName)]
struct OpeningsRow {
    #[diesel(sql_type = Nullable<Text>)]
    code: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    nhs_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    la_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    channel: Option<String>,
    #[diesel(sql_type = Nullable<Date>)]
    day: Option<NaiveDate>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub fn openings(conn: &mut PgConnection, period: &Period) -> QueryResult<Openings> {
    let (from, to) = period.bounds();
    // One grouping set each; organisation_code and channel are NOT NULL and a day is never NULL,
    // so the one column a row has names its set.
    let rows: Vec<OpeningsRow> = diesel::sql_query(
        "WITH g AS ( \
             SELECT organisation_code AS code, channel, (accessed_at AT TIME ZONE 'Europe/London')::date AS day, \
                    count(*) AS n \
             FROM access_events WHERE accessed_at >= $1 AND accessed_at < $2 \
             GROUP BY GROUPING SETS ((organisation_code), (channel), ((accessed_at AT TIME ZONE 'Europe/London')::date)) \
         ) \
         SELECT g.code, o.name AS nhs_name, coalesce(la.display_name, la.reference_name) AS la_name, g.channel, g.day, g.n \
         FROM g LEFT JOIN nhs_organisations o ON o.ods_code = g.code LEFT JOIN local_authorities la ON la.code = g.code",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)?;
    let (mut viewing, mut channels, mut days) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        match (r.code, r.channel, r.day) {
            (Some(code), _, _) => {
                viewing.push(OrgRow { code, nhs_name: r.nhs_name, la_name: r.la_name, n: r.n }.into_count())
            }
            (None, Some(channel), _) => channels.push((channel, r.n)),
            (None, None, Some(day)) => days.push((day, r.n)),
            (None, None, None) => {}
        }
    }
    viewing.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(&b.code)));
    let mut by_channel: Vec<(String, i64)> = ["SCRa", "FHIR"]
        .iter()
        .map(|c| ((*c).to_owned(), channels.iter().find(|(ch, _)| ch == c).map_or(0, |(_, n)| *n)))
        .collect();
    // A channel the schema may one day allow, listed rather than lost.
    channels.sort();
    by_channel.extend(channels.into_iter().filter(|(c, _)| c != "SCRa" && c != "FHIR"));
    Ok(Openings { viewing, by_channel, per_day: fill_days(period, days) })
}

/// Every day of the period with its count (0 for a day not given).
pub fn fill_days(period: &Period, counts: impl IntoIterator<Item = (NaiveDate, i64)>) -> Vec<(NaiveDate, i64)> {
    let counts: std::collections::HashMap<NaiveDate, i64> = counts.into_iter().collect();
    period.days().map(|d| (d, counts.get(&d).copied().unwrap_or(0))).collect()
}

/// The `n` local authorities with the most current items (ties by name), none with zero.
pub fn top_las(all: &[LaFigures], n: usize) -> Vec<&LaFigures> {
    let mut v: Vec<&LaFigures> = all.iter().filter(|l| l.current_items() > 0).collect();
    v.sort_by(|a, b| b.current_items().cmp(&a.current_items()).then_with(|| a.name.cmp(&b.name)));
    v.truncate(n);
    v
}

/// One figure of the report, as the page and the CSV show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// A stable id (for the page's markup and tests).
    pub key: &'static str,
    pub section: &'static str,
    pub label: String,
    pub value: i64,
}

/// Everything CP-IS077 shows for a period.
#[derive(Debug, Clone)]
pub struct Summary {
    pub period: Period,
    pub current: CurrentTotals,
    pub in_period: PeriodItems,
    pub nhs_queries: i64,
    pub openings: Vec<(String, i64)>,
    pub querying: Vec<OrgCount>,
    pub viewing: Vec<OrgCount>,
    pub per_la: Vec<LaFigures>,
    pub per_day: Vec<(NaiveDate, i64)>,
}

pub const SECTION_CURRENT: &str = "Current totals";
pub const SECTION_PERIOD: &str = "Within the period";

impl Summary {
    /// The figures, in the order of the standard's list (CP-IS077).
    pub fn figures(&self) -> Vec<Figure> {
        let f = |key, section, label: &str, value| Figure { key, section, label: label.to_owned(), value };
        let mut v = vec![
            f(
                "providers",
                SECTION_CURRENT,
                "Local authorities that have provided information",
                self.providers().len() as i64,
            ),
            f("current-nhs-numbers", SECTION_CURRENT, "Unique NHS numbers", self.current.nhs_numbers),
            f("current-las", SECTION_CURRENT, "Unique local authorities", self.current.las),
            f("current-cpp", SECTION_CURRENT, "Child protection plans (CPP)", self.current.cpp),
            f("current-ucpp", SECTION_CURRENT, "Unborn child protection plans (UCPP)", self.current.ucpp),
            f("current-lac", SECTION_CURRENT, "Looked after child statuses (LAC)", self.current.lac),
            f("period-cpp", SECTION_PERIOD, "Child protection plans (CPP)", self.in_period.cpp),
            f("period-ucpp", SECTION_PERIOD, "Unborn child protection plans (UCPP)", self.in_period.ucpp),
            f("period-lac", SECTION_PERIOD, "Looked after child statuses (LAC)", self.in_period.lac),
            f("period-nhs-queries", SECTION_PERIOD, "NHS Query messages received", self.nhs_queries),
            f(
                "period-querying-orgs",
                SECTION_PERIOD,
                "Unique NHS organisations submitting NHS Query messages",
                self.querying.len() as i64,
            ),
            f(
                "period-viewing-orgs",
                SECTION_PERIOD,
                "Unique organisations whose users opened the Child Care Alert tab",
                self.viewing.len() as i64,
            ),
        ];
        for (channel, n) in &self.openings {
            let key = match channel.as_str() {
                "SCRa" => "period-openings-scra",
                "FHIR" => "period-openings-fhir",
                _ => "period-openings-other",
            };
            v.push(f(key, SECTION_PERIOD, &format!("Child Care Alert tab openings ({})", channel_label(channel)), *n));
        }
        v
    }

    pub fn providers(&self) -> Vec<&LaFigures> {
        providers(&self.per_la)
    }

    /// The chart of tab openings per day.
    pub fn per_day_bars(&self) -> Vec<Bar> {
        self.per_day.iter().map(|(d, n)| Bar::new(format_date(*d), *n as f64)).collect()
    }

    /// The chart of current items for the local authorities holding the most.
    pub fn top_la_bars(&self) -> Vec<Bar> {
        top_las(&self.per_la, CHART_TOP_LAS).into_iter().map(|l| Bar::new(&l.name, l.current_items() as f64)).collect()
    }

    /// The CSV download: the figures, then one row per local authority (the page's tables).
    pub fn csv(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "Section",
            "Figure or local authority",
            "Code",
            "Value",
            "CPP",
            "Unborn CPP",
            "LAC",
            "Provided information",
            "First upload",
            "Last upload",
        ];
        let period = format!("{} ({} to {})", SECTION_PERIOD, self.period.from, self.period.to);
        let mut rows: Vec<Vec<String>> = self
            .figures()
            .into_iter()
            .map(|f| {
                let section = if f.section == SECTION_PERIOD { period.clone() } else { f.section.to_owned() };
                let mut row = vec![section, f.label, String::new(), f.value.to_string()];
                row.resize(header.len(), String::new());
                row
            })
            .collect();
        for l in &self.per_la {
            rows.push(vec![
                "Per local authority (current)".into(),
                l.name.clone(),
                l.code.clone(),
                l.current_items().to_string(),
                l.cpp.to_string(),
                l.ucpp.to_string(),
                l.lac.to_string(),
                if l.provided { "Yes" } else { "No" }.into(),
                l.first_upload.map(format_uk_datetime).unwrap_or_default(),
                l.last_upload.map(format_uk_datetime).unwrap_or_default(),
            ]);
        }
        (header, rows)
    }
}

/// The channel as people know it.
pub fn channel_label(channel: &str) -> &str {
    match channel {
        "SCRa" => "screens",
        "FHIR" => "FHIR API",
        other => other,
    }
}

/// Every figure of CP-IS077 for the period.
pub fn build(conn: &mut PgConnection, period: Period) -> QueryResult<Summary> {
    let querying = querying_organisations(conn, &period)?;
    let openings = openings(conn, &period)?;
    Ok(Summary {
        period,
        current: current_totals(conn)?,
        in_period: items_in_period(conn, &period)?,
        nhs_queries: querying.iter().map(|o| o.count).sum(),
        openings: openings.by_channel,
        querying,
        viewing: openings.viewing,
        per_la: per_la(conn)?,
        per_day: openings.per_day,
    })
}

/// Reads the report and audits the run in the same transaction. `format` is "page" or "csv".
///
/// The transaction is READ COMMITTED on purpose: the audit append reads the chain's head after
/// taking its lock, which under a REPEATABLE READ snapshot taken earlier could be stale.
pub fn run(conn: &mut PgConnection, period: Period, actor: Actor, format: &str) -> Result<Summary, AppError> {
    conn.transaction(|conn| {
        let summary = build(conn, period)?;
        super::record_run(
            conn,
            actor,
            REPORT,
            None,
            serde_json::json!({ "from": period.from, "to": period.to, "format": format }),
        )?;
        Ok(summary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn la(code: &str, name: &str, cpp: i64, ucpp: i64, lac: i64, provided: bool) -> LaFigures {
        LaFigures {
            code: code.into(),
            name: name.into(),
            first_upload: None,
            last_upload: None,
            provided,
            cpp,
            ucpp,
            lac,
        }
    }

    fn summary(per_la: Vec<LaFigures>) -> Summary {
        Summary {
            period: Period { from: d("2026-11-01"), to: d("2026-11-03") },
            current: CurrentTotals { nhs_numbers: 5, las: 2, cpp: 3, ucpp: 1, lac: 2 },
            in_period: PeriodItems { cpp: 4, ucpp: 1, lac: 2 },
            nhs_queries: 7,
            openings: vec![("SCRa".into(), 3), ("FHIR".into(), 2)],
            querying: vec![OrgCount { code: "RJZ".into(), name: "King's".into(), count: 7 }],
            viewing: vec![],
            per_la,
            per_day: vec![],
        }
    }

    #[test]
    fn every_day_of_the_period_is_listed_with_zeros() {
        let p = Period { from: d("2026-10-24"), to: d("2026-10-27") };
        let days = fill_days(&p, vec![(d("2026-10-25"), 3), (d("2026-10-27"), 1)]);
        assert_eq!(days, vec![(d("2026-10-24"), 0), (d("2026-10-25"), 3), (d("2026-10-26"), 0), (d("2026-10-27"), 1)]);
    }

    #[test]
    fn the_chart_of_las_keeps_the_largest_and_skips_empty_ones() {
        let all = vec![
            la("E1", "Bath", 1, 0, 0, true),
            la("E2", "Avon", 2, 1, 0, true),
            la("E3", "Cork", 0, 0, 0, false),
            la("E4", "Dale", 1, 0, 0, true),
        ];
        let top: Vec<&str> = top_las(&all, 2).iter().map(|l| l.code.as_str()).collect();
        assert_eq!(top, vec!["E2", "E1"]);
        assert_eq!(top_las(&all, 30).len(), 3);
        assert_eq!(providers(&all).len(), 3);
    }

    #[test]
    fn the_figures_follow_the_standard_and_the_csv_holds_them_and_every_la() {
        // CP-IS077: each bullet of the requirement is a figure.
        let s = summary(vec![la("E1", "Bath", 1, 0, 2, true), la("E2", "Avon", 0, 0, 0, false)]);
        let figures = s.figures();
        let value = |k: &str| figures.iter().find(|f| f.key == k).unwrap().value;
        assert_eq!(value("providers"), 1);
        assert_eq!(value("current-nhs-numbers"), 5);
        assert_eq!(value("period-nhs-queries"), 7);
        assert_eq!(value("period-querying-orgs"), 1);
        assert_eq!(value("period-openings-scra"), 3);
        assert_eq!(value("period-openings-fhir"), 2);
        let (header, rows) = s.csv();
        assert_eq!(rows.len(), figures.len() + 2);
        assert!(rows.iter().all(|r| r.len() == header.len()));
        assert_eq!(rows[0][3], "1");
        assert!(rows[6][0].contains("2026-11-01 to 2026-11-03"));
        let bath = rows.iter().find(|r| r[2] == "E1").unwrap();
        assert_eq!(bath[3..8], ["3", "1", "0", "2", "Yes"].map(String::from));
        let avon = rows.iter().find(|r| r[2] == "E2").unwrap();
        assert_eq!(avon[3..8], ["0", "0", "0", "0", "No"].map(String::from));
    }
}
