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

/// The log's insert of transmissions each at its own time, in the order given, as SQL text with
/// the seven placeholders given (times, directions, origins, destinations, message types, message
/// ids, channels), for a statement that may store more with it: the access recorder stores a
/// batch's FHIR exchanges with its accesses (`cpis/alert.rs`). Bound by [`Log::bind`].
macro_rules! log_insert {
    ($at:literal, $dir:literal, $from:literal, $to:literal, $kind:literal, $id:literal, $channel:literal) => {
        concat!(
            "INSERT INTO transmissions (at, direction, origin, destination, message_type, message_id, channel) \
             SELECT a, d, o, t, m, i, c FROM unnest(",
            $at,
            "::timestamptz[], ",
            $dir,
            "::text[], ",
            $from,
            "::text[], ",
            $to,
            "::text[], ",
            $kind,
            "::text[], ",
            $id,
            "::text[], ",
            $channel,
            "::text[]) WITH ORDINALITY AS u(a, d, o, t, m, i, c, n) ORDER BY n"
        )
    };
}
pub(crate) use log_insert;

/// Transmissions to log, each at its own time, as the columns [`log_insert!`] takes; none when
/// empty (the insert then stores no row).
#[derive(Default, Clone)]
pub struct Log {
    at: Vec<DateTime<Utc>>,
    directions: Vec<String>,
    origins: Vec<String>,
    destinations: Vec<String>,
    message_types: Vec<String>,
    message_ids: Vec<Option<String>>,
    channels: Vec<String>,
}

impl Log {
    /// The transmissions, in the order given.
    pub fn of(ts: &[(Transmission<'_>, DateTime<Utc>)]) -> Log {
        let text = |f: for<'t> fn(&'t Transmission<'t>) -> &'t str| {
            ts.iter().map(|(t, _)| f(t).to_owned()).collect::<Vec<String>>()
        };
        Log {
            at: ts.iter().map(|(_, at)| *at).collect(),
            directions: text(|t| match t.direction {
                Direction::In => "in",
                Direction::Out => "out",
            }),
            origins: text(|t| t.origin),
            destinations: text(|t| t.destination),
            message_types: text(|t| t.message_type),
            message_ids: ts.iter().map(|(t, _)| t.message_id.clone()).collect(),
            channels: text(|t| t.channel),
        }
    }

    /// Binds the next seven placeholders, in [`log_insert!`]'s order.
    pub fn bind<S>(self, query: crate::db::prepared::Prepared<S>) -> crate::db::prepared::Prepared<S> {
        use diesel::sql_types::{Array, Nullable, Text, Timestamptz};
        query
            .bind::<Array<Timestamptz>, _>(self.at)
            .bind::<Array<Text>, _>(self.directions)
            .bind::<Array<Text>, _>(self.origins)
            .bind::<Array<Text>, _>(self.destinations)
            .bind::<Array<Text>, _>(self.message_types)
            .bind::<Array<Nullable<Text>>, _>(self.message_ids)
            .bind::<Array<Text>, _>(self.channels)
    }

    /// Logs them, in one statement of their own.
    pub fn execute(self, conn: &mut PgConnection) -> QueryResult<()> {
        self.bind(crate::db::prepared::sql!(log_insert!("$1", "$2", "$3", "$4", "$5", "$6", "$7"))).execute(conn)?;
        Ok(())
    }
}

/// Transmissions, each at its own time, in one statement (prepared once per connection) and in the
/// order given: every entry of the log is written here ([`Log`]).
pub fn log_each_at(conn: &mut PgConnection, ts: &[(Transmission<'_>, DateTime<Utc>)]) -> QueryResult<()> {
    if ts.is_empty() {
        return Ok(());
    }
    Log::of(ts).execute(conn)
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
