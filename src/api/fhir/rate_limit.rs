//! A per-token rate limit for the FHIR API: a token bucket per endpoint token, per instance.
//!
//! Each token may send [`RATE_PER_SECOND`] requests a second on average, with bursts of up to
//! [`BURST`]; a request finding the bucket empty is answered 429 with `Retry-After`. Buckets are
//! keyed by the token's SHA-256 (never the token), so one system's burst leaves every other token
//! unaffected. The limit is counted per instance: behind N instances a token may reach N times it,
//! which is acceptable for its purpose (keeping one misbehaving system from starving the others).
//!
//! Written by hand rather than with a rate-limiting crate: a fixed-rate bucket is a few lines over a
//! `Mutex<HashMap>`, needs no configuration or background task, and adds no dependency to audit.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Average requests a second per token.
pub const RATE_PER_SECOND: f64 = 20.0;
/// The largest burst a token may send at once (a full bucket).
pub const BURST: f64 = 40.0;
/// Above this many buckets, full (idle) ones are dropped, so abandoned tokens cost nothing.
const PRUNE_ABOVE: usize = 10_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE_PER_SECOND).min(BURST);
        self.updated = now;
    }
}

fn buckets() -> &'static Mutex<HashMap<Vec<u8>, Bucket>> {
    static BUCKETS: OnceLock<Mutex<HashMap<Vec<u8>, Bucket>>> = OnceLock::new();
    BUCKETS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Takes one request from the bucket of the token with this hash; `Err` holds how long to wait.
pub fn take(token_hash: &[u8], now: Instant) -> Result<(), Duration> {
    let mut map = buckets().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if map.len() > PRUNE_ABOVE {
        map.retain(|_, b| {
            b.refill(now);
            b.tokens < BURST
        });
    }
    let bucket = map.entry(token_hash.to_vec()).or_insert(Bucket { tokens: BURST, updated: now });
    bucket.refill(now);
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / RATE_PER_SECOND))
    }
}

/// `Retry-After` in whole seconds (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_until_the_bucket_refills() {
        let key = b"unit-test-token-a".to_vec();
        let t0 = Instant::now();
        for _ in 0..BURST as usize {
            assert!(take(&key, t0).is_ok());
        }
        let wait = take(&key, t0).unwrap_err();
        assert!(wait > Duration::ZERO);
        assert_eq!(retry_after_secs(wait), 1);
        // Another token is unaffected.
        assert!(take(b"unit-test-token-b", t0).is_ok());
        // After a second, RATE_PER_SECOND more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..RATE_PER_SECOND as usize {
            assert!(take(&key, t1).is_ok());
        }
        assert!(take(&key, t1).is_err());
    }
}
