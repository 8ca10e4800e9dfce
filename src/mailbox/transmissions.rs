//! The transmission log (CP-IS061): time, origin, destination, message type and id of every
//! message in or out, never its content.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::transmissions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// The service's own name in the log.
pub const SERVICE: &str = "CP-IS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission<'a> {
    pub direction: Direction,
    pub origin: &'a str,
    pub destination: &'a str,
    pub message_type: &'a str,
    pub message_id: Option<String>,
    pub channel: &'a str,
}

pub fn log(conn: &mut PgConnection, t: &Transmission<'_>, at: DateTime<Utc>) -> QueryResult<()> {
    log_all(conn, std::slice::from_ref(t), at)
}

/// Several transmissions at one time, in one statement ([`log_each_at`]).
pub fn log_all(conn: &mut PgConnection, ts: &[Transmission<'_>], at: DateTime<Utc>) -> QueryResult<()> {
    let each: Vec<(Transmission<'_>, DateTime<Utc>)> = ts.iter().map(|t| (t.clone(), at)).collect();
    log_each_at(conn, &each)
}

/// A message in from `party` (an LA or ODS code) and the service's answer out to it: the pair an
/// upload (01 and its acknowledgement 02) or a FHIR query (03 and its response 04) leaves.
pub fn log_exchange(
    conn: &mut PgConnection,
    party: &str,
    inbound: (&str, Option<String>),
    outbound: (&str, Option<String>),
    channel: &str,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    log_all(conn, &exchange(party, inbound, outbound, channel), at)
}

/// The pair [`log_exchange`] logs: `inbound` (type and id) from `party`, `outbound` to it.
pub fn exchange<'a>(
    party: &'a str,
    inbound: (&'a str, Option<String>),
    outbound: (&'a str, Option<String>),
    channel: &'a str,
) -> [Transmission<'a>; 2] {
    let (in_type, in_id) = inbound;
    let (out_type, out_id) = outbound;
    [
        Transmission {
            direction: Direction::In,
            origin: party,
            destination: SERVICE,
            message_type: in_type,
            message_id: in_id,
            channel,
        },
        Transmission {
            direction: Direction::Out,
            origin: SERVICE,
            destination: party,
            message_type: out_type,
            message_id: out_id,
            channel,
        },
    ]
}

/// Transmissions, each at its own time, in one statement (prepared once per connection) and in the
/// order given: every entry of the log is written here. The FHIR queries a batch of tab openings
/// answers are logged together (src/cpis/recorder.rs): one statement per query made as many round
/// trips inside the access recorder's transaction.
pub fn log_each_at(conn: &mut PgConnection, ts: &[(Transmission<'_>, DateTime<Utc>)]) -> QueryResult<()> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamptz};
    if ts.is_empty() {
        return Ok(());
    }
    let text = |f: for<'t> fn(&'t Transmission<'t>) -> &'t str| {
        ts.iter().map(|(t, _)| f(t).to_owned()).collect::<Vec<String>>()
    };
    crate::db::prepared::sql(
        "INSERT INTO transmissions (at, direction, origin, destination, message_type, message_id, channel) \
         SELECT a, d, o, t, m, i, c FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[]) WITH ORDINALITY AS u(a, d, o, t, m, i, c, n) \
         ORDER BY n",
    )
    .bind::<Array<Timestamptz>, _>(ts.iter().map(|(_, at)| *at).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(text(|t| match t.direction {
        Direction::In => "in",
        Direction::Out => "out",
    }))
    .bind::<Array<Text>, _>(text(|t| t.origin))
    .bind::<Array<Text>, _>(text(|t| t.destination))
    .bind::<Array<Text>, _>(text(|t| t.message_type))
    .bind::<Array<Nullable<Text>>, _>(ts.iter().map(|(t, _)| t.message_id.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(text(|t| t.channel))
    .execute(conn)?;
    Ok(())
}

/// A message from the service to `destination` (an LA or ODS code).
pub fn log_out(
    conn: &mut PgConnection,
    destination: &str,
    message_type: &str,
    message_id: Option<String>,
    channel: &str,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    let t = Transmission { direction: Direction::Out, origin: SERVICE, destination, message_type, message_id, channel };
    log(conn, &t, at)
}

#[derive(Debug, Clone, Queryable, PartialEq)]
pub struct Row {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub direction: String,
    pub origin: String,
    pub destination: String,
    pub message_type: String,
    pub message_id: Option<String>,
    pub channel: String,
}

/// A filter for browsing the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// An origin or destination (an LA or ODS code).
    pub party: Option<String>,
    pub message_type: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Keyset pagination: rows older than this id.
    pub before_id: Option<i64>,
}

pub fn search(conn: &mut PgConnection, f: &Filter, limit: i64) -> QueryResult<Vec<Row>> {
    let mut q = transmissions::table
        .select((
            transmissions::id,
            transmissions::at,
            transmissions::direction,
            transmissions::origin,
            transmissions::destination,
            transmissions::message_type,
            transmissions::message_id,
            transmissions::channel,
        ))
        .order(transmissions::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(p) = &f.party {
        q = q.filter(transmissions::origin.eq(p.clone()).or(transmissions::destination.eq(p.clone())));
    }
    if let Some(t) = &f.message_type {
        q = q.filter(transmissions::message_type.eq(t.clone()));
    }
    if let Some(from) = f.from {
        q = q.filter(transmissions::at.ge(from));
    }
    if let Some(to) = f.to {
        q = q.filter(transmissions::at.lt(to));
    }
    if let Some(b) = f.before_id {
        q = q.filter(transmissions::id.lt(b));
    }
    q.load(conn)
}
