//! CSV downloads of the reports: the same rows the page shows, as a file.

use actix_web::http::header;
use actix_web::HttpResponse;

use crate::error::AppError;

/// A cell as written: a value that a spreadsheet would read as a formula (starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) is prefixed with `'` (OWASP "CSV injection"). Numbers are
/// written by the caller as numbers and never reach here with a sign.
pub fn cell(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    }
}

/// The CSV text of a header and rows (RFC 4180 quoting, CRLF line ends).
pub fn to_csv(header: &[&str], rows: &[Vec<String>]) -> Result<String, AppError> {
    let mut w = ::csv::WriterBuilder::new().terminator(::csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(header).map_err(AppError::internal)?;
    for row in rows {
        w.write_record(row.iter().map(|c| cell(c))).map_err(AppError::internal)?;
    }
    let bytes = w.into_inner().map_err(AppError::internal)?;
    String::from_utf8(bytes).map_err(AppError::internal)
}

/// A CSV download named `filename` (letters, digits, `-`, `_` and `.` only).
pub fn download(filename: &str, header: &[&str], rows: &[Vec<String>]) -> Result<HttpResponse, AppError> {
    Ok(attachment(filename, to_csv(header, rows)?))
}

/// CSV text already written, as a download named `filename` (letters, digits, `-`, `_` and `.`
/// only).
pub fn attachment(filename: &str, body: String) -> HttpResponse {
    let safe: String = filename.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{safe}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_quoting_follows_rfc_4180() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("Kent"), "Kent");
        let text =
            to_csv(&["a", "b"], &[vec!["x, y".into(), "say \"hi\"".into()], vec!["+1".into(), "".into()]]).unwrap();
        assert_eq!(text, "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n'+1,\r\n");
    }
}
