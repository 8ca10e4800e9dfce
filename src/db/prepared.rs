//! Hand-written SQL that PostgreSQL plans once per connection, not on every execution.
//!
//! diesel keeps a prepared statement per connection for the queries its DSL builds, but never for
//! `sql_query` (its SQL could be built at run time, so diesel marks it unsafe to cache). The hot
//! statements that the DSL cannot express (the session with its principal, the access history,
//! the audit outbox) were therefore parsed and planned on every request: planning the session's
//! statement took longer than running it. [`sql`] takes a `'static` SQL text (so it cannot be
//! built from input) with `$1`, `$2`... placeholders, and is cached by diesel like a DSL query.
//!
//! Written here because diesel offers no cacheable raw query; it is a small adapter over diesel's
//! public `AstPass::push_bind_param`, which writes each placeholder itself, so the text is sent
//! with its placeholders renumbered in order of appearance and a value bound once per appearance.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// A raw statement cached as a prepared statement on each connection. See the module's documentation.
pub fn sql(text: &'static str) -> Prepared {
    Prepared { text, binds: Vec::new() }
}

pub struct Prepared {
    text: &'static str,
    binds: Vec<Box<dyn BindValue>>,
}

impl Prepared {
    /// Binds the next placeholder (`$1`, then `$2`...), as `sql_query(..).bind` does.
    pub fn bind<ST, T>(mut self, value: T) -> Prepared
    where
        Pg: HasSqlType<ST>,
        T: ToSql<ST, Pg> + Send + 'static,
        ST: Send + 'static,
    {
        self.binds.push(Box::new(Bind::<ST, T> { value, _type: std::marker::PhantomData }));
        self
    }
}

trait BindValue: Send {
    fn push<'b>(&'b self, pass: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Bind<ST, T> {
    value: T,
    _type: std::marker::PhantomData<fn() -> ST>,
}

impl<ST, T> BindValue for Bind<ST, T>
where
    Pg: HasSqlType<ST>,
    T: ToSql<ST, Pg> + Send,
    ST: Send,
{
    fn push<'b>(&'b self, pass: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        pass.push_bind_param::<ST, T>(&self.value)
    }
}

/// The text split at its placeholders: literal pieces and 1-based placeholder numbers, in order.
/// An iterator, not a list: diesel walks a query several times per execution (on the hot path).
fn pieces(text: &str) -> Pieces<'_> {
    Pieces { text, at: 0 }
}

struct Pieces<'a> {
    text: &'a str,
    /// Where the next piece starts; past the end once the last piece is out.
    at: usize,
}

/// Whether a placeholder (`$` and a digit) starts at `i`.
fn placeholder_at(bytes: &[u8], i: usize) -> bool {
    bytes.get(i) == Some(&b'$') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        if start > bytes.len() {
            return None;
        }
        if placeholder_at(bytes, start) {
            let digits = bytes[start + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
            self.at = start + 1 + digits;
            return Some(Piece::Param(self.text[start + 1..self.at].parse().unwrap_or(0)));
        }
        // The next `$` found by `str::find` (a fast byte search), then checked for a digit.
        let mut end = bytes.len();
        let mut from = start;
        while let Some(i) = self.text[from..].find('$').map(|i| from + i) {
            if placeholder_at(bytes, i) {
                end = i;
                break;
            }
            from = i + 1;
        }
        self.at = if end == bytes.len() { end + 1 } else { end };
        Some(Piece::Text(&self.text[start..end]))
    }
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Param(usize),
}

impl QueryFragment<Pg> for Prepared {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for piece in pieces(self.text) {
            match piece {
                Piece::Text(t) => out.push_sql(t),
                Piece::Param(n) => match n.checked_sub(1).and_then(|k| self.binds.get(k)) {
                    Some(bind) => bind.push(&mut out)?,
                    None => {
                        return Err(diesel::result::Error::QueryBuilderError(
                            format!("${n} has no bound value ({} bound)", self.binds.len()).into(),
                        ))
                    }
                },
            }
        }
        Ok(())
    }
}

impl QueryId for Prepared {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Prepared {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_in_order_and_may_repeat() {
        assert_eq!(
            pieces("SELECT $1, $12 WHERE a = $1").collect::<Vec<_>>(),
            vec![
                Piece::Text("SELECT "),
                Piece::Param(1),
                Piece::Text(", "),
                Piece::Param(12),
                Piece::Text(" WHERE a = "),
                Piece::Param(1),
                Piece::Text(""),
            ]
        );
        assert_eq!(pieces("SELECT 1").collect::<Vec<_>>(), vec![Piece::Text("SELECT 1")]);
        assert_eq!(pieces("a$b$").collect::<Vec<_>>(), vec![Piece::Text("a$b$")]);
        assert_eq!(pieces("$$1 x").collect::<Vec<_>>(), vec![Piece::Text("$"), Piece::Param(1), Piece::Text(" x")]);
    }
}
