//! PDS-style search (domain.md, "PDS emulation"): by NHS number, or by family name and birth date
//! (or range) with optional given name, gender and postcode; `Smi*` wildcards of at least 3 letters;
//! an optional similar-names search (Soundex and swapped names). Results are scored, best first,
//! at most 50; more than that asks for more detail.

use chrono::NaiveDate;
use diesel::prelude::*;

use super::patient::{Gender, Patient};
use crate::domain::names::{normalise_name, normalise_postcode, soundex};
use crate::validation::FieldError;

pub const MAX_RESULTS: usize = 50;
/// The widest birth-date range a search may use.
pub const MAX_RANGE_DAYS: i64 = 366 * 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    Exact(String),
    /// `Smi*`: the letters before the star, at least three.
    Prefix(String),
}

impl NamePattern {
    /// Parses a name as typed; `None` when empty.
    pub fn parse(input: &str, field: &str) -> Result<Option<NamePattern>, FieldError> {
        let s = normalise_name(input);
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > 100 {
            return Err(FieldError::new(field, "Names are at most 100 characters"));
        }
        if let Some(stem) = s.strip_suffix('*') {
            if stem.contains('*') || stem.chars().filter(|c| c.is_alphabetic()).count() < 3 {
                return Err(FieldError::new(
                    field,
                    "A wildcard search needs at least 3 letters before the *, like Smi*",
                ));
            }
            return Ok(Some(NamePattern::Prefix(stem.to_owned())));
        }
        if s.contains('*') {
            return Err(FieldError::new(field, "A * can only go at the end of a name, like Smi*"));
        }
        Ok(Some(NamePattern::Exact(s)))
    }

    fn matches(&self, key: &str) -> bool {
        match self {
            NamePattern::Exact(s) => key == s,
            NamePattern::Prefix(p) => key.starts_with(p.as_str()),
        }
    }

    fn stem(&self) -> &str {
        match self {
            NamePattern::Exact(s) | NamePattern::Prefix(s) => s,
        }
    }
}

/// A checked demographic search.
#[derive(Debug, Clone, PartialEq)]
pub struct DemographicQuery {
    pub family: NamePattern,
    pub given: Option<NamePattern>,
    pub birth_from: NaiveDate,
    pub birth_to: NaiveDate,
    pub gender: Option<Gender>,
    pub postcode: Option<String>,
    pub similar: bool,
}

/// The demographic fields as typed into the form.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DemographicInput {
    #[serde(default)]
    pub family_name: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub gender: String,
    #[serde(default)]
    pub postcode: String,
    #[serde(default)]
    pub dob_day: String,
    #[serde(default)]
    pub dob_month: String,
    #[serde(default)]
    pub dob_year: String,
    #[serde(default)]
    pub dob_to_day: String,
    #[serde(default)]
    pub dob_to_month: String,
    #[serde(default)]
    pub dob_to_year: String,
    #[serde(default)]
    pub similar: Option<String>,
}

impl DemographicQuery {
    /// Checks the form; every problem is reported at once, each against its field.
    pub fn parse(input: &DemographicInput, today: NaiveDate) -> Result<DemographicQuery, Vec<FieldError>> {
        let mut errors = Vec::new();
        let family = match NamePattern::parse(&input.family_name, "family_name") {
            Ok(Some(f)) => Some(f),
            Ok(None) => {
                errors.push(FieldError::new("family_name", "Enter the family name"));
                None
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let given = NamePattern::parse(&input.given_name, "given_name").unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        let from = match parse_date(&input.dob_day, &input.dob_month, &input.dob_year) {
            DateField::Valid(d) if d > today => {
                errors.push(FieldError::new("dob", "Date of birth must be today or in the past"));
                None
            }
            DateField::Valid(d) => Some(d),
            DateField::Empty => {
                errors.push(FieldError::new("dob", "Enter the date of birth"));
                None
            }
            DateField::Invalid => {
                errors.push(FieldError::new("dob", "Date of birth must be a real date, like 22 10 2010"));
                None
            }
        };
        let to = match parse_date(&input.dob_to_day, &input.dob_to_month, &input.dob_to_year) {
            DateField::Valid(d) => Some(d),
            DateField::Empty => from,
            DateField::Invalid => {
                errors.push(FieldError::new("dob_to", "The end of the range must be a real date"));
                None
            }
        };
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                errors.push(FieldError::new("dob_to", "The end of the range must be on or after its start"));
            } else if (t - f).num_days() > MAX_RANGE_DAYS {
                errors.push(FieldError::new("dob_to", "A date of birth range can be at most 5 years"));
            }
        }
        let gender = match input.gender.trim() {
            "" => None,
            g => Gender::parse(g).or_else(|| {
                errors.push(FieldError::new("gender", "Choose a gender from the list"));
                None
            }),
        };
        let postcode = match normalise_postcode(&input.postcode) {
            p if p.is_empty() => None,
            p if (5..=7).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()) => Some(p),
            _ => {
                errors.push(FieldError::new("postcode", "Enter a full UK postcode, like LS1 6AE"));
                None
            }
        };
        match (family, from, to) {
            (Some(family), Some(birth_from), Some(birth_to)) if errors.is_empty() => Ok(DemographicQuery {
                family,
                given,
                birth_from,
                birth_to,
                gender,
                postcode,
                similar: input.similar.as_deref().is_some_and(|s| !s.is_empty()),
            }),
            _ => Err(errors),
        }
    }
}

enum DateField {
    Empty,
    Invalid,
    Valid(NaiveDate),
}

fn parse_date(day: &str, month: &str, year: &str) -> DateField {
    let (d, m, y) = (day.trim(), month.trim(), year.trim());
    if d.is_empty() && m.is_empty() && y.is_empty() {
        return DateField::Empty;
    }
    let (Ok(d), Ok(m), Ok(y)) = (d.parse::<u32>(), m.parse::<u32>(), y.parse::<i32>()) else {
        return DateField::Invalid;
    };
    if !(1900..=9999).contains(&y) {
        return DateField::Invalid;
    }
    NaiveDate::from_ymd_opt(y, m, d).map_or(DateField::Invalid, DateField::Valid)
}

/// How well a patient matches: 1.0 when every criterion given matches exactly; wildcards, ranges,
/// sound-alike and swapped names score lower so that exact matches come first.
pub fn score(q: &DemographicQuery, p: &Patient) -> f32 {
    let family_key = normalise_name(&p.family_name);
    let given_key = normalise_name(&p.given_name);
    let name_score = |pattern: &NamePattern, key: &str, other_key: &str| -> f32 {
        match pattern {
            NamePattern::Exact(s) if s == key => 1.0,
            NamePattern::Prefix(_) if pattern.matches(key) => 0.9,
            _ if q.similar && soundex(pattern.stem()) == soundex(key) => 0.8,
            _ if q.similar && pattern.matches(other_key) => 0.7,
            _ => 0.0,
        }
    };
    let mut s = name_score(&q.family, &family_key, &given_key);
    if let Some(g) = &q.given {
        s *= name_score(g, &given_key, &family_key);
    }
    if q.birth_from != q.birth_to {
        s *= 0.95;
    }
    (s * 100.0).round() / 100.0
}

#[derive(Debug, Clone, PartialEq)]
pub enum SearchOutcome {
    Matches(Vec<(Patient, f32)>),
    TooMany,
}

/// Runs a demographic search against the store. Superseded and invalidated records are never
/// results (their current record is); a search with a postcode never returns restricted patients.
pub fn search(conn: &mut PgConnection, q: &DemographicQuery) -> QueryResult<SearchOutcome> {
    let found = candidates(conn, q, MAX_RESULTS as i64 + 1)?;
    if found.len() > MAX_RESULTS {
        return Ok(SearchOutcome::TooMany);
    }
    let mut scored: Vec<(Patient, f32)> = found
        .into_iter()
        .map(|p| {
            let s = score(q, &p);
            (p, s)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    scored.sort_by(|(a, sa), (b, sb)| {
        sb.total_cmp(sa)
            .then_with(|| a.family_name.cmp(&b.family_name))
            .then_with(|| a.given_name.cmp(&b.given_name))
            .then_with(|| a.birth_date.cmp(&b.birth_date))
    });
    Ok(SearchOutcome::Matches(scored))
}

// `key` within the bound range [`from`, `until`).
macro_rules! in_range {
    ($key:literal, $from:literal, $until:literal) => {
        concat!("(", $key, " ~>=~ (SELECT ", $from, "::text) AND ", $key, " ~<~ (SELECT ", $until, "::text))")
    };
}
// A name in its own field, with similar names also by Soundex and in the other field.
macro_rules! or_similar {
    ($name:expr, $soundex:literal, $swapped:expr) => {
        concat!("(", $name, " OR ", $soundex, " OR ", $swapped, ")")
    };
}
// The statement around its family name's and given name's conditions.
macro_rules! search_sql {
    ($family:expr, $given:expr) => {
        concat!(
            "SELECT nhs_number, given_name, family_name, gender, birth_date, death_date, postcode, address, \
             gp_ods, restricted, superseded_by, invalidated FROM patients \
             WHERE superseded_by IS NULL AND NOT invalidated \
             AND birth_date BETWEEN (SELECT $1::date) AND (SELECT $2::date) AND ",
            $family,
            " AND ((SELECT $6::text) IS NULL OR ",
            $given,
            ") AND ((SELECT $8::text) IS NULL OR gender = (SELECT $8::text)) \
             AND ((SELECT $9::text) IS NULL OR (postcode = (SELECT $9::text) AND NOT restricted)) \
             LIMIT (SELECT $10::bigint)"
        )
    };
}
macro_rules! given_similar {
    () => {
        or_similar!(
            in_range!("given_key", "$6", "$7"),
            "given_soundex = (SELECT $11::text)",
            in_range!("family_key", "$6", "$7")
        )
    };
}

/// The search's statement for the family name's kind of pattern (`exact` or `prefix`), with or
/// without similar names (`similar`). Binds (each statement reads those it needs; all are sent, typed): $1 and $2 the birth dates;
/// $3 and $4 the family key's range ([`key_range`]); $5 its Soundex; $6 and $7 the given key's
/// range and $11 its Soundex (null without a given name); $8 the gender and $9 the postcode (null
/// when not asked); $10 the limit.
///
/// Hand-written rather than diesel's boxed query, which is sent as text and planned again on every
/// search (planning cost four times what running it did, measured under load). Prepared
/// ([`crate::db::prepared`]) with every value read through a sub-select, so that PostgreSQL keeps
/// one generic plan (a plan for the actual name would look cheaper each time, as in
/// `items::current_held`). An exact family name is an equality, so the index is entered at the name
/// and birth date together; `LIKE` with a bound pattern could not use the index in a generic plan.
macro_rules! statement {
    (exact) => {
        search_sql!("family_key = (SELECT $3::text)", in_range!("given_key", "$6", "$7"))
    };
    (prefix) => {
        search_sql!(in_range!("family_key", "$3", "$4"), in_range!("given_key", "$6", "$7"))
    };
    (exact, similar) => {
        search_sql!(
            or_similar!(
                "family_key = (SELECT $3::text)",
                "family_soundex = (SELECT $5::text)",
                "given_key = (SELECT $3::text)"
            ),
            given_similar!()
        )
    };
    (prefix, similar) => {
        search_sql!(
            or_similar!(
                in_range!("family_key", "$3", "$4"),
                "family_soundex = (SELECT $5::text)",
                in_range!("given_key", "$3", "$4")
            ),
            given_similar!()
        )
    };
}

/// The records a search's names, birth dates, gender and postcode select, unscored, at most
/// `limit`: current records only, and no restricted one when a postcode is given. One of four
/// statements ([`statement!`]), each prepared as its own (`sql!`), with the same values bound.
pub fn candidates(conn: &mut PgConnection, q: &DemographicQuery, limit: i64) -> QueryResult<Vec<Patient>> {
    use crate::db::prepared::sql;
    match (&q.family, q.similar) {
        (NamePattern::Exact(_), false) => bind(sql!(statement!(exact)), q, limit).load(conn),
        (NamePattern::Prefix(_), false) => bind(sql!(statement!(prefix)), q, limit).load(conn),
        (NamePattern::Exact(_), true) => bind(sql!(statement!(exact, similar)), q, limit).load(conn),
        (NamePattern::Prefix(_), true) => bind(sql!(statement!(prefix, similar)), q, limit).load(conn),
    }
}

/// Binds every value a search's statement may read ([`statement!`]), in its placeholders' order.
fn bind<S>(
    query: crate::db::prepared::Prepared<S>,
    q: &DemographicQuery,
    limit: i64,
) -> crate::db::prepared::Prepared<S> {
    use diesel::sql_types::{BigInt, Date, Nullable, Text};
    let (family_from, family_until) = key_range(&q.family);
    let given = q.given.as_ref().map(key_range);
    query
        .bind::<Date, _>(q.birth_from)
        .bind::<Date, _>(q.birth_to)
        .bind::<Text, _>(family_from)
        .bind::<Text, _>(family_until)
        .bind::<Text, _>(soundex(q.family.stem()))
        .bind::<Nullable<Text>, _>(given.as_ref().map(|g| g.0.clone()))
        .bind::<Nullable<Text>, _>(given.map(|g| g.1))
        .bind::<Nullable<Text>, _>(q.gender.map(|g| g.code().to_owned()))
        .bind::<Nullable<Text>, _>(q.postcode.clone())
        .bind::<BigInt, _>(limit)
        .bind::<Nullable<Text>, _>(q.given.as_ref().map(|g| soundex(g.stem())))
}

/// The keys a name pattern matches, as the half-open range `[from, until)` in byte order (the
/// order of the `text_pattern_ops` indexes): an exact name is followed only by a character no
/// name has (U+0001), a prefix by every character after it (before U+10FFFF). Exact names are
/// looked up by equality where the index is entered ([`statement!`]); the range serves prefixes,
/// and filters on the given name.
fn key_range(p: &NamePattern) -> (String, String) {
    match p {
        NamePattern::Exact(s) => (s.clone(), format!("{s}\u{1}")),
        NamePattern::Prefix(s) => (s.clone(), format!("{s}\u{10FFFF}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn input(family: &str, dob: (&str, &str, &str)) -> DemographicInput {
        DemographicInput {
            family_name: family.into(),
            dob_day: dob.0.into(),
            dob_month: dob.1.into(),
            dob_year: dob.2.into(),
            ..Default::default()
        }
    }

    fn patient(given: &str, family: &str) -> Patient {
        Patient {
            nhs_number: "9000000009".into(),
            given_name: given.into(),
            family_name: family.into(),
            gender: "female".into(),
            birth_date: d(2010, 10, 22),
            death_date: None,
            postcode: None,
            address: None,
            gp_ods: None,
            restricted: false,
            superseded_by: None,
            invalidated: false,
        }
    }

    #[test]
    fn wildcards_need_three_letters() {
        assert_eq!(NamePattern::parse("Smi*", "f").unwrap(), Some(NamePattern::Prefix("smi".into())));
        assert!(NamePattern::parse("Sm*", "f").is_err());
        assert!(NamePattern::parse("S*th", "f").is_err());
        assert_eq!(NamePattern::parse("  ", "f").unwrap(), None);
    }

    #[test]
    fn family_name_and_birth_date_are_required() {
        let errors = DemographicQuery::parse(&input("", ("", "", "")), d(2026, 11, 22)).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["family_name", "dob"]);
    }

    #[test]
    fn rejects_impossible_and_future_dates_and_backward_ranges() {
        let today = d(2026, 11, 22);
        assert!(DemographicQuery::parse(&input("Smith", ("31", "2", "2010")), today).is_err());
        assert!(DemographicQuery::parse(&input("Smith", ("23", "11", "2026")), today).is_err());
        let mut i = input("Smith", ("1", "1", "2011"));
        i.dob_to_day = "1".into();
        i.dob_to_month = "1".into();
        i.dob_to_year = "2010".into();
        assert!(DemographicQuery::parse(&i, today).is_err());
    }

    #[test]
    fn a_single_date_is_a_range_of_one_day() {
        let q = DemographicQuery::parse(&input("Smith", ("22", "10", "2010")), d(2026, 11, 22)).unwrap();
        assert_eq!((q.birth_from, q.birth_to), (d(2010, 10, 22), d(2010, 10, 22)));
    }

    #[test]
    fn exact_matches_score_one_and_fuzzier_ones_less() {
        let today = d(2026, 11, 22);
        let mut q = DemographicQuery::parse(&input("Smith", ("22", "10", "2010")), today).unwrap();
        assert_eq!(score(&q, &patient("Jane", "Smith")), 1.0);
        q.family = NamePattern::Prefix("smi".into());
        assert_eq!(score(&q, &patient("Jane", "Smith")), 0.9);
        q.family = NamePattern::Exact("smith".into());
        q.similar = true;
        assert_eq!(score(&q, &patient("Jane", "Smythe")), 0.8);
        q.family = NamePattern::Exact("jane".into());
        q.given = Some(NamePattern::Exact("smith".into()));
        assert!((score(&q, &patient("Jane", "Smith")) - 0.49).abs() < 0.001);
        q.similar = false;
        assert_eq!(score(&q, &patient("Jane", "Smith")), 0.0);
    }

    #[test]
    fn postcodes_are_checked() {
        let mut i = input("Smith", ("22", "10", "2010"));
        i.postcode = "ls1 6ae".into();
        let q = DemographicQuery::parse(&i, d(2026, 11, 22)).unwrap();
        assert_eq!(q.postcode.as_deref(), Some("LS16AE"));
        i.postcode = "not a postcode".into();
        assert!(DemographicQuery::parse(&i, d(2026, 11, 22)).is_err());
    }
}
