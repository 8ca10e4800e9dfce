//! A PDS patient: plain methods first, then the database methods.

use chrono::NaiveDate;
use diesel::prelude::*;

use crate::domain::dates;
use crate::domain::names::{format_postcode, normalise_name, soundex};
use crate::schema::patients;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
    Other,
    Unknown,
}

impl Gender {
    pub fn code(self) -> &'static str {
        match self {
            Gender::Male => "male",
            Gender::Female => "female",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        }
    }
    /// Accepts the FHIR codes and the single letters M, F, O, U, any case.
    pub fn parse(s: &str) -> Option<Gender> {
        match s.trim().to_ascii_lowercase().as_str() {
            "male" | "m" => Some(Gender::Male),
            "female" | "f" => Some(Gender::Female),
            "other" | "o" => Some(Gender::Other),
            "unknown" | "u" => Some(Gender::Unknown),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Gender::Male => "Male",
            Gender::Female => "Female",
            Gender::Other => "Other",
            Gender::Unknown => "Not known",
        }
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, PartialEq)]
#[diesel(table_name = patients, check_for_backend(diesel::pg::Pg))]
pub struct Patient {
    pub nhs_number: String,
    pub given_name: String,
    pub family_name: String,
    pub gender: String,
    pub birth_date: NaiveDate,
    pub death_date: Option<NaiveDate>,
    pub postcode: Option<String>,
    pub address: Option<String>,
    pub gp_ods: Option<String>,
    pub restricted: bool,
    pub superseded_by: Option<String>,
    pub invalidated: bool,
}

impl Patient {
    /// "Amelia HART", the way SCRa shows a name.
    pub fn display_name(&self) -> String {
        let family = self.family_name.to_uppercase();
        if self.given_name.is_empty() {
            family
        } else {
            format!("{} {}", self.given_name, family)
        }
    }
    pub fn gender_label(&self) -> &'static str {
        Gender::parse(&self.gender).unwrap_or(Gender::Unknown).label()
    }
    pub fn age_on(&self, on: NaiveDate) -> i32 {
        dates::age_in_years(self.birth_date, self.death_date.map_or(on, |d| d.min(on)))
    }
    /// A restricted (S-flag) patient's address and GP are never shown.
    pub fn shown_address(&self) -> Option<String> {
        if self.restricted {
            return None;
        }
        match (&self.address, &self.postcode) {
            (Some(a), Some(p)) => Some(format!("{a}, {}", format_postcode(p))),
            (Some(a), None) => Some(a.clone()),
            (None, Some(p)) => Some(format_postcode(p)),
            (None, None) => None,
        }
    }
    pub fn shown_gp(&self) -> Option<&str> {
        if self.restricted {
            None
        } else {
            self.gp_ods.as_deref()
        }
    }
}

/// What looking up an NHS number finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Found(Patient),
    /// The number was superseded; this is the current record.
    Superseded {
        old_number: String,
        current: Patient,
    },
    NotFound,
}

/// A patient as imported; the search keys are derived here, in one place.
#[derive(Debug, Clone, Insertable, AsChangeset, PartialEq)]
#[diesel(table_name = patients, treat_none_as_null = true)]
pub struct NewPatient {
    pub nhs_number: String,
    pub given_name: String,
    pub family_name: String,
    pub gender: String,
    pub birth_date: NaiveDate,
    pub death_date: Option<NaiveDate>,
    pub postcode: Option<String>,
    pub address: Option<String>,
    pub gp_ods: Option<String>,
    pub restricted: bool,
    pub superseded_by: Option<String>,
    pub invalidated: bool,
    pub family_key: String,
    pub given_key: String,
    pub family_soundex: String,
    pub given_soundex: String,
}

impl NewPatient {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nhs_number: &str,
        given_name: &str,
        family_name: &str,
        gender: Gender,
        birth_date: NaiveDate,
    ) -> NewPatient {
        NewPatient {
            nhs_number: nhs_number.to_owned(),
            given_name: given_name.trim().to_owned(),
            family_name: family_name.trim().to_owned(),
            gender: gender.code().to_owned(),
            birth_date,
            death_date: None,
            postcode: None,
            address: None,
            gp_ods: None,
            restricted: false,
            superseded_by: None,
            invalidated: false,
            family_key: normalise_name(family_name),
            given_key: normalise_name(given_name),
            family_soundex: soundex(family_name),
            given_soundex: soundex(given_name),
        }
    }
}

// Database methods.

pub fn find(conn: &mut PgConnection, nhs_number: &str) -> QueryResult<Option<Patient>> {
    patients::table.find(nhs_number).select(Patient::as_select()).first(conn).optional()
}

/// Looks a number up as PDS would: a superseded number leads to the current record (following a
/// chain of supersessions), an invalidated one is not found.
pub fn lookup(conn: &mut PgConnection, nhs_number: &str) -> QueryResult<Lookup> {
    let Some(first) = find(conn, nhs_number)? else {
        return Ok(Lookup::NotFound);
    };
    if first.invalidated {
        return Ok(Lookup::NotFound);
    }
    let mut current = first;
    for _ in 0..10 {
        let Some(next) = current.superseded_by.clone() else {
            break;
        };
        match find(conn, &next)? {
            Some(p) if !p.invalidated => current = p,
            _ => return Ok(Lookup::NotFound),
        }
    }
    if current.superseded_by.is_some() {
        return Ok(Lookup::NotFound);
    }
    if current.nhs_number == nhs_number {
        Ok(Lookup::Found(current))
    } else {
        Ok(Lookup::Superseded { old_number: nhs_number.to_owned(), current })
    }
}

/// The recursive step of "every number superseded into this one" (at most ten links deep), shared by
/// [`linked_numbers`] and [`lookup_linked`]: a macro so that both statements stay constant text (`db::prepared::sql!`).
macro_rules! linked_step {
    () => {
        "SELECT q.nhs_number, l.depth + 1 FROM patients q JOIN linked l ON q.superseded_by = l.nhs_number \
         WHERE l.depth < 10"
    };
}
pub(crate) use linked_step;

/// [`lookup`] with the [`linked_numbers`] of the record it finds: one statement when the number
/// asked is itself the current record (the common case: opening the tab, the patient page, a FHIR
/// query), the separate lookups otherwise. `linked` is empty when nothing is found.
pub fn lookup_linked(conn: &mut PgConnection, nhs_number: &str) -> QueryResult<(Lookup, Vec<String>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(embed)]
        patient: Patient,
        #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Text>)]
        linked: Vec<String>,
    }
    let row: Option<Row> = crate::db::prepared::sql!(concat!(
        "SELECT p.nhs_number, p.given_name, p.family_name, p.gender, p.birth_date, p.death_date, p.postcode, \
                p.address, p.gp_ods, p.restricted, p.superseded_by, p.invalidated, \
                ARRAY(WITH RECURSIVE linked(nhs_number, depth) AS (SELECT p.nhs_number, 0 UNION ",
        linked_step!(),
        ") SELECT DISTINCT nhs_number FROM linked) AS linked \
         FROM patients p WHERE p.nhs_number = $1"
    ))
    .bind::<diesel::sql_types::Text, _>(nhs_number.to_owned())
    .get_result(conn)
    .optional()?;
    match row {
        None => Ok((Lookup::NotFound, Vec::new())),
        Some(Row { patient, mut linked }) if !patient.invalidated && patient.superseded_by.is_none() => {
            linked.sort_by_key(|n| n != &patient.nhs_number);
            Ok((Lookup::Found(patient), linked))
        }
        Some(_) => lookup_then_linked(conn, nhs_number),
    }
}

/// [`lookup`], then the [`linked_numbers`] of the record it finds, as separate reads: for a
/// number already known not to be the current record itself (superseded or invalidated).
pub fn lookup_then_linked(conn: &mut PgConnection, nhs_number: &str) -> QueryResult<(Lookup, Vec<String>)> {
    let found = lookup(conn, nhs_number)?;
    let linked = match &found {
        Lookup::Found(p) | Lookup::Superseded { current: p, .. } => linked_numbers(conn, &p.nhs_number)?,
        Lookup::NotFound => Vec::new(),
    };
    Ok((found, linked))
}

/// The current number and every number superseded into it: they name the same person, and an LA's
/// information stays under an old number until it resubmits (messages.md, superseded numbers).
pub fn linked_numbers(conn: &mut PgConnection, current: &str) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Num {
        #[diesel(sql_type = diesel::sql_types::Text)]
        nhs_number: String,
    }
    let rows: Vec<Num> = crate::db::prepared::sql!(concat!(
        "WITH RECURSIVE linked(nhs_number, depth) AS (SELECT $1::text, 0 UNION ",
        linked_step!(),
        ") SELECT DISTINCT nhs_number FROM linked"
    ))
    .bind::<diesel::sql_types::Text, _>(current.to_owned())
    .load(conn)?;
    let mut numbers: Vec<String> = rows.into_iter().map(|r| r.nhs_number).collect();
    numbers.sort_by_key(|n| n != current);
    Ok(numbers)
}

/// Inserts or updates patients, in chunks that stay under PostgreSQL's bind-parameter limit.
pub fn upsert(conn: &mut PgConnection, rows: &[NewPatient]) -> QueryResult<usize> {
    use diesel::upsert::excluded;
    let mut n = 0;
    for chunk in rows.chunks(3000) {
        n += diesel::insert_into(patients::table)
            .values(chunk)
            .on_conflict(patients::nhs_number)
            .do_update()
            .set((
                patients::given_name.eq(excluded(patients::given_name)),
                patients::family_name.eq(excluded(patients::family_name)),
                patients::gender.eq(excluded(patients::gender)),
                patients::birth_date.eq(excluded(patients::birth_date)),
                patients::death_date.eq(excluded(patients::death_date)),
                patients::postcode.eq(excluded(patients::postcode)),
                patients::address.eq(excluded(patients::address)),
                patients::gp_ods.eq(excluded(patients::gp_ods)),
                patients::restricted.eq(excluded(patients::restricted)),
                patients::superseded_by.eq(excluded(patients::superseded_by)),
                patients::invalidated.eq(excluded(patients::invalidated)),
                patients::family_key.eq(excluded(patients::family_key)),
                patients::given_key.eq(excluded(patients::given_key)),
                patients::family_soundex.eq(excluded(patients::family_soundex)),
                patients::given_soundex.eq(excluded(patients::given_soundex)),
                patients::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)?;
    }
    Ok(n)
}

/// Inserts patients that are not there yet and leaves existing ones alone (demo seeding).
pub fn insert_missing(conn: &mut PgConnection, rows: &[NewPatient]) -> QueryResult<usize> {
    let mut n = 0;
    for chunk in rows.chunks(3000) {
        n += diesel::insert_into(patients::table).values(chunk).on_conflict_do_nothing().execute(conn)?;
    }
    Ok(n)
}
