//! Hand-written SQL that PostgreSQL plans once per connection, not on every execution.
//!
//! diesel keeps a prepared statement per connection for the queries its DSL builds, but never for
//! `sql_query` (its SQL could be built at run time, so diesel marks it unsafe to cache). The hot
//! statements that the DSL cannot express (the session with its principal, the access history,
//! the audit outbox) were therefore parsed and planned on every request: planning the session's
//! statement took longer than running it. [`sql!`] takes a constant SQL text (so it cannot be
//! built from input) with `$1`, `$2`... placeholders, and is cached by diesel like a DSL query.
//!
//! Each use of [`sql!`] gives its statement a type of its own, by which diesel finds the prepared
//! statement, as it does a DSL query's: found by its text instead, every execution wrote the whole
//! text out again and hashed it (issue 8: 7.5% of the tab thread, whose statements run to several
//! kilobytes). The text is a constant of that use, so one type never stands for two texts. diesel
//! finds the statement by its type alone, not by the types of the values bound, so a use must
//! bind the same SQL types every time (no `.bind` left out on some executions, no use inside a
//! function generic over a bound value's SQL type): PostgreSQL keeps the parameter types of the
//! statement's first execution. Texts chosen at run time are each their own `sql!`, their values
//! bound by one function generic over the statement (`pds::search::candidates`).
//!
//! Written here because diesel offers no cacheable raw query; it is a small adapter over diesel's
//! public `AstPass::push_bind_param`, which writes each placeholder itself, so the text is sent
//! with its placeholders renumbered in order of appearance and a value bound once per appearance.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// A raw statement cached as a prepared statement on each connection, found by a type of its own
/// (declared here, at the use). The text must be a constant (a literal, `concat!` of literals and
/// macros), which the `const` below enforces: text read at run time does not compile. See the
/// module's documentation.
#[macro_export]
macro_rules! prepared_sql {
    ($text:expr $(,)?) => {{
        /// This statement's own type, by which diesel finds its prepared statement.
        struct Statement;
        const TEXT: &str = $text;
        $crate::db::prepared::Prepared::<Statement>::of_its_own(TEXT)
    }};
}
pub use crate::prepared_sql as sql;

/// A statement of [`sql!`], `S` being the type of its own that diesel finds it by.
pub struct Prepared<S> {
    text: &'static str,
    binds: Vec<Box<dyn BindValue>>,
    _statement: PhantomData<fn() -> S>,
}

impl<S> Prepared<S> {
    /// For [`sql!`] alone, which declares `S` for the one constant `text` it is given: called with
    /// any other type or text, it would break the rule that one type is one text.
    #[doc(hidden)]
    pub fn of_its_own(text: &'static str) -> Prepared<S> {
        Prepared { text, binds: Vec::new(), _statement: PhantomData }
    }

    /// Binds the next placeholder (`$1`, then `$2`...), as `sql_query(..).bind` does.
    pub fn bind<ST, T>(mut self, value: T) -> Prepared<S>
    where
        Pg: HasSqlType<ST>,
        T: ToSql<ST, Pg> + Send + 'static,
        ST: Send + 'static,
    {
        self.binds.push(Box::new(Bind::<ST, T> { value, _type: PhantomData }));
        self
    }
}

trait BindValue: Send {
    fn push<'b>(&'b self, pass: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Bind<ST, T> {
    value: T,
    _type: PhantomData<fn() -> ST>,
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

impl<S> QueryFragment<Pg> for Prepared<S> {
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

impl<S: 'static> QueryId for Prepared<S> {
    type QueryId = S;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S> Query for Prepared<S> {
    type SqlType = Untyped;
}

impl<S, Conn> RunQueryDsl<Conn> for Prepared<S> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of<S: 'static>(_: &Prepared<S>) -> Option<std::any::TypeId> {
        <Prepared<S> as QueryId>::query_id()
    }

    /// Each `sql!` is found by a type of its own, even for one text written twice.
    #[test]
    fn each_statement_is_found_by_its_own_type() {
        let (a, b) = (sql!("SELECT 1"), sql!("SELECT 1"));
        assert!(id_of(&a).is_some() && id_of(&b).is_some());
        assert_ne!(id_of(&a), id_of(&b));
        let statement = || sql!("SELECT 2");
        assert_eq!(id_of(&statement()), id_of(&statement()), "one use, one type");
    }

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
