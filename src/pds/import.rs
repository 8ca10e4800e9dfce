//! `cpis pds import FILE.csv`: loads or updates patients in the PDS stand-in (messages.md, operator
//! commands). The whole file is checked first; one bad row rejects the file and nothing is stored.

use std::collections::HashSet;
use std::io::Read;

use chrono::NaiveDate;

use super::patient::{Gender, NewPatient};
use crate::domain::names::normalise_postcode;
use crate::domain::nhs_number;

pub const COLUMNS: [&str; 12] = [
    "nhs_number",
    "given_name",
    "family_name",
    "gender",
    "birth_date",
    "death_date",
    "postcode",
    "address",
    "gp_ods",
    "restricted",
    "superseded_by",
    "invalidated",
];

/// A problem with one line of the file, numbered as a spreadsheet would (header = line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses and checks a whole file. Returns every row, or every problem found (at most 100).
pub fn parse_csv(input: impl Read) -> Result<Vec<NewPatient>, Vec<RowError>> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| vec![RowError { line: 1, message: format!("cannot read the header: {e}") }])?
        .clone();
    let found: Vec<&str> = headers.iter().collect();
    if found != COLUMNS {
        return Err(vec![RowError { line: 1, message: format!("the header must be exactly: {}", COLUMNS.join(",")) }]);
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let result = record.map_err(|e| format!("cannot read the row: {e}")).and_then(|r| parse_row(&r));
        match result {
            Ok(p) => {
                if !seen.insert(p.nhs_number.clone()) {
                    errors.push(RowError {
                        line,
                        message: format!("NHS number {} appears more than once in the file", p.nhs_number),
                    });
                } else {
                    rows.push(p);
                }
            }
            Err(message) => errors.push(RowError { line, message }),
        }
        if errors.len() >= 100 {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if rows.is_empty() {
        return Err(vec![RowError { line: 2, message: "the file holds no patients".into() }]);
    }
    Ok(rows)
}

fn parse_row(r: &csv::StringRecord) -> Result<NewPatient, String> {
    let field = |i: usize| r.get(i).unwrap_or("");
    let optional = |i: usize| Some(field(i)).filter(|s| !s.is_empty());
    let nhs = field(0);
    if !nhs_number::is_valid(nhs) {
        return Err(format!("nhs_number {nhs:?} is not a valid 10-digit NHS number"));
    }
    let family = field(2);
    if family.is_empty() || family.chars().count() > 100 {
        return Err("family_name is required (at most 100 characters)".into());
    }
    if field(1).chars().count() > 100 {
        return Err("given_name is longer than 100 characters".into());
    }
    let gender = Gender::parse(field(3))
        .ok_or_else(|| format!("gender {:?} must be male, female, other or unknown", field(3)))?;
    let birth = date(field(4), "birth_date")?.ok_or("birth_date is required (YYYY-MM-DD)")?;
    let mut p = NewPatient::new(nhs, field(1), family, gender, birth);
    p.death_date = date(field(5), "death_date")?;
    if p.death_date.is_some_and(|d| d < birth) {
        return Err("death_date is before birth_date".into());
    }
    if let Some(pc) = optional(6) {
        let pc = normalise_postcode(pc);
        if !(5..=7).contains(&pc.len()) || !pc.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("postcode {:?} is not a UK postcode", field(6)));
        }
        p.postcode = Some(pc);
    }
    p.address = optional(7).map(str::to_owned);
    if p.address.as_ref().is_some_and(|a| a.chars().count() > 300) {
        return Err("address is longer than 300 characters".into());
    }
    if let Some(gp) = optional(8) {
        if !(3..=6).contains(&gp.len()) || !gp.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("gp_ods {gp:?} is not an ODS code"));
        }
        p.gp_ods = Some(gp.to_ascii_uppercase());
    }
    p.restricted = boolean(field(9), "restricted")?;
    if let Some(s) = optional(10) {
        if !nhs_number::is_valid(s) || s == nhs {
            return Err(format!("superseded_by {s:?} must be another valid NHS number"));
        }
        p.superseded_by = Some(s.to_owned());
    }
    p.invalidated = boolean(field(11), "invalidated")?;
    if p.invalidated && p.superseded_by.is_some() {
        return Err("a number cannot be both superseded and invalidated".into());
    }
    Ok(p)
}

fn date(s: &str, name: &str) -> Result<Option<NaiveDate>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("{name} {s:?} is not a date in the form YYYY-MM-DD"))
}

fn boolean(s: &str, name: &str) -> Result<bool, String> {
    match s {
        "" | "false" => Ok(false),
        "true" => Ok(true),
        other => Err(format!("{name} {other:?} must be true, false or empty")),
    }
}

/// Stores a checked file in one transaction, with its audit entry.
pub fn store(conn: &mut diesel::PgConnection, rows: &[NewPatient]) -> Result<usize, crate::error::AppError> {
    use diesel::prelude::*;
    conn.transaction(|conn| {
        // A superseded_by must name a patient in this file or already in the store.
        let in_file: HashSet<&str> = rows.iter().map(|r| r.nhs_number.as_str()).collect();
        let wanted: Vec<&str> =
            rows.iter().filter_map(|r| r.superseded_by.as_deref()).filter(|n| !in_file.contains(n)).collect();
        let known: Vec<String> = crate::schema::patients::table
            .filter(crate::schema::patients::nhs_number.eq_any(&wanted))
            .select(crate::schema::patients::nhs_number)
            .load(conn)?;
        if let Some(missing) = wanted.iter().find(|n| !known.iter().any(|k| k == *n)) {
            return Err(crate::error::AppError::BadRequest(format!(
                "superseded_by {missing} names no patient in the file or the store; nothing was imported"
            )));
        }
        // The states before the import, to send message 06 once per change of state (CP-IS012).
        let numbers: Vec<&str> = rows.iter().map(|r| r.nhs_number.as_str()).collect();
        let mut before = std::collections::BTreeMap::new();
        for chunk in numbers.chunks(20_000) {
            let states: Vec<(String, Option<String>, bool)> = crate::schema::patients::table
                .filter(crate::schema::patients::nhs_number.eq_any(chunk))
                .select((
                    crate::schema::patients::nhs_number,
                    crate::schema::patients::superseded_by,
                    crate::schema::patients::invalidated,
                ))
                .load(conn)?;
            before.extend(states.into_iter().map(|(n, s, i)| (n, (s, i))));
        }
        let n = super::patient::upsert(conn, rows)?;
        let after: Vec<(String, Option<String>, bool)> =
            rows.iter().map(|r| (r.nhs_number.clone(), r.superseded_by.clone(), r.invalidated)).collect();
        let changed = crate::cpis::inactive::changes(&before, &after);
        let notices =
            crate::cpis::inactive::notify(conn, &changed, &crate::audit::Actor::Operator, chrono::Utc::now())?;
        crate::audit::record(
            conn,
            crate::audit::Event::new(crate::audit::Actor::Operator, "pds.imported").details(serde_json::json!({
                "rows": rows.len(), "became_inactive": changed.len(), "inactive_notices": notices
            })),
        )?;
        Ok(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "nhs_number,given_name,family_name,gender,birth_date,death_date,postcode,address,gp_ods,restricted,superseded_by,invalidated\n";

    #[test]
    fn reads_a_full_row() {
        let csv = format!(
            "{HEADER}9000000009,Jane,Smith,female,2010-10-22,,ls1 6ae,1 Trevelyan Square,Y12345,false,,false\n"
        );
        let rows = parse_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].postcode.as_deref(), Some("LS16AE"));
        assert_eq!(rows[0].family_key, "smith");
        assert_eq!(rows[0].family_soundex, "S530");
    }

    #[test]
    fn rejects_bad_rows_with_their_line_numbers() {
        let csv = format!(
            "{HEADER}9000000009,Jane,Smith,female,2010-10-22,,,,,false,,false\n\
             1234567890,A,B,female,2010-10-22,,,,,false,,false\n\
             9990000018,A,B,robot,2010-10-22,,,,,false,,false\n\
             9990000026,A,B,male,22/10/2010,,,,,false,,false\n\
             9990000034,A,B,male,2010-10-22,,,,,maybe,,false\n\
             9000000009,Jane,Smith,female,2010-10-22,,,,,false,,false\n"
        );
        let errors = parse_csv(csv.as_bytes()).unwrap_err();
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn rejects_a_wrong_header_and_an_empty_file() {
        assert_eq!(parse_csv("nhs,name\n".as_bytes()).unwrap_err()[0].line, 1);
        assert!(parse_csv(HEADER.as_bytes()).is_err());
    }

    #[test]
    fn superseded_and_invalidated_are_exclusive() {
        let csv = format!("{HEADER}9990000026,A,B,male,2010-10-22,,,,,false,9990000034,true\n");
        assert!(parse_csv(csv.as_bytes()).is_err());
    }
}
