//! The monitor (CP-IS078): every `CPIS_MONITOR_SECS` (default 60) each instance probes its database
//! (`SELECT 1` through the pool, timed), records the probe in `health_probes`, and writes the
//! request counts gathered since the last time into `request_minutes`, adding to what the minute
//! already holds. While the database is down nothing can be written: the failed probes and the
//! counts are kept in memory (bounded) and written once it answers again. A minute without a
//! successful probe counts as unavailable either way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Text, Timestamptz};

use super::metrics::{Area, AreaCounts, Metrics};
use crate::db::{self, DbPool};
use crate::error::AppError;
use crate::reports::performance::Histogram;

/// At most this many probes wait in memory for the database (a week of one a minute); older ones
/// are dropped first.
const MAX_PENDING_PROBES: usize = 7 * 24 * 60;
/// At most this many (minute, area) counts wait in memory.
const MAX_PENDING_MINUTES: usize = 7 * 24 * 60;

/// One probe of the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub latency_ms: f64,
}

/// One area's counts in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MinuteCounts {
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub histogram: Histogram,
}

impl MinuteCounts {
    fn add(&mut self, c: &AreaCounts) {
        self.requests += c.requests;
        self.client_errors += c.client_errors;
        self.server_errors += c.server_errors;
        self.histogram.merge(&c.histogram);
    }
}

/// What one instance has measured and not yet written.
pub struct Monitor {
    pool: DbPool,
    metrics: Arc<Metrics>,
    instance: String,
    probes: Vec<Probe>,
    minutes: BTreeMap<(DateTime<Utc>, Area), MinuteCounts>,
}

fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Monitor {
    pub fn new(pool: DbPool, metrics: Arc<Metrics>, instance: &str) -> Monitor {
        Monitor {
            pool,
            metrics,
            instance: instance.chars().take(100).collect(),
            probes: Vec::new(),
            minutes: BTreeMap::new(),
        }
    }

    /// Probes and measurements not yet written (for tests and logs).
    pub fn pending(&self) -> (usize, usize) {
        (self.probes.len(), self.minutes.len())
    }

    /// Moves the aggregator's counts into the minute of `now`.
    fn gather(&mut self, now: DateTime<Utc>) {
        let minute = minute_of(now);
        for c in self.metrics.take() {
            self.minutes.entry((minute, c.area)).or_default().add(&c);
        }
        while self.minutes.len() > MAX_PENDING_MINUTES {
            self.minutes.pop_first();
        }
    }

    /// One round: gather the counts, probe, and (when the database answered) write everything
    /// pending. Returns whether the probe succeeded.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> bool {
        self.gather(now);
        let started = Instant::now();
        let ok = db::run(&self.pool, |conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
        .is_ok();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if !ok {
            tracing::warn!(latency_ms, "health probe failed: the database did not answer");
        }
        self.probes.push(Probe { at: now, ok, latency_ms });
        if self.probes.len() > MAX_PENDING_PROBES {
            let extra = self.probes.len() - MAX_PENDING_PROBES;
            self.probes.drain(..extra);
        }
        if ok {
            self.flush().await;
        }
        ok
    }

    /// Writes what is pending in one transaction; on failure keeps it for the next round.
    async fn flush(&mut self) {
        let probes = self.probes.clone();
        let minutes: Vec<((DateTime<Utc>, Area), MinuteCounts)> =
            self.minutes.iter().map(|(k, v)| (*k, v.clone())).collect();
        let instance = self.instance.clone();
        let written = db::transaction(&self.pool, move |conn| write(conn, &instance, &probes, &minutes)).await;
        match written {
            Ok(()) => {
                self.probes.clear();
                self.minutes.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, "health probe and request counts not written; kept for the next round")
            }
        }
    }
}

/// Inserts the probes and adds each minute's counts to its row.
fn write(
    conn: &mut PgConnection,
    instance: &str,
    probes: &[Probe],
    minutes: &[((DateTime<Utc>, Area), MinuteCounts)],
) -> Result<(), AppError> {
    if !probes.is_empty() {
        diesel::sql_query(
            "INSERT INTO health_probes (at, instance, ok, latency_ms) \
             SELECT a, $1, o, l FROM unnest($2::timestamptz[], $3::boolean[], $4::float8[]) AS u(a, o, l)",
        )
        .bind::<Text, _>(instance)
        .bind::<Array<Timestamptz>, _>(probes.iter().map(|p| p.at).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(probes.iter().map(|p| p.ok).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(probes.iter().map(|p| p.latency_ms.max(0.0)).collect::<Vec<_>>())
        .execute(conn)?;
    }
    for ((minute, area), c) in minutes {
        diesel::sql_query(
            "INSERT INTO request_minutes (minute, instance, area, requests, client_errors, server_errors, buckets) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (minute, instance, area) DO UPDATE SET \
               requests = request_minutes.requests + EXCLUDED.requests, \
               client_errors = request_minutes.client_errors + EXCLUDED.client_errors, \
               server_errors = request_minutes.server_errors + EXCLUDED.server_errors, \
               buckets = ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) \
                               FROM unnest(request_minutes.buckets, EXCLUDED.buckets) WITH ORDINALITY AS u(a, b, i) \
                               ORDER BY i)",
        )
        .bind::<Timestamptz, _>(*minute)
        .bind::<Text, _>(instance)
        .bind::<Text, _>(area.label())
        .bind::<BigInt, _>(as_i64(c.requests))
        .bind::<BigInt, _>(as_i64(c.client_errors))
        .bind::<BigInt, _>(as_i64(c.server_errors))
        .bind::<Array<BigInt>, _>(c.histogram.0.iter().map(|n| as_i64(*n)).collect::<Vec<_>>())
        .execute(conn)?;
    }
    Ok(())
}

/// Writes what the service counted since the monitor's last round, once the server has stopped
/// taking requests, so a graceful stop (SIGTERM, SIGINT) loses no counts (CP-IS078). Counts that a
/// round could not write (the database was down) and were kept for the next are lost with the
/// process. `every` of zero (no monitor) writes nothing.
pub async fn flush_on_stop(pool: DbPool, metrics: Arc<Metrics>, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut monitor = Monitor::new(pool, metrics, super::instance_id());
    monitor.gather(Utc::now());
    if monitor.pending() != (0, 0) {
        monitor.flush().await;
    }
}

/// Starts the monitor on the current actix system (the server calls it); `every` of zero starts
/// none. The first round runs one interval after the start, then every interval, without drift.
pub fn spawn(pool: DbPool, metrics: Arc<Metrics>, every: Duration) {
    if every.is_zero() {
        return;
    }
    actix_web::rt::spawn(async move {
        let mut monitor = Monitor::new(pool, metrics, super::instance_id());
        let mut next = actix_web::rt::time::Instant::now() + every;
        loop {
            actix_web::rt::time::sleep_until(next).await;
            monitor.tick(Utc::now()).await;
            next += every;
            let now = actix_web::rt::time::Instant::now();
            if next < now {
                // A round took longer than the interval: carry on from now rather than catch up.
                next = now + every;
            }
        }
    });
}
