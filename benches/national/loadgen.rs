//! The load generator: closed loop (N users, each sending its next request when the previous one
//! is answered, with an optional think time) and open loop (a fixed rate, latency measured from
//! each request's intended send time, so a stall is not hidden: coordinated-omission correction).
//!
//! It only ever talks to 127.0.0.1: a [`Target`] can only be made from a loopback http URL and
//! every request is built from one, with redirects off. Every loop is bounded in count and in time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;

/// A server on this machine.
#[derive(Clone, Debug)]
pub struct Target {
    base: String,
}

impl Target {
    /// Refuses anything but `http://127.0.0.1:PORT`.
    pub fn new(base: &str) -> Target {
        let url = reqwest::Url::parse(base).expect("a URL");
        assert_eq!(url.scheme(), "http", "load only over plain http on loopback");
        assert_eq!(url.host_str(), Some("127.0.0.1"), "the load generator only targets 127.0.0.1, never {base}");
        assert!(url.port().is_some() && url.path() == "/" && url.query().is_none(), "a bare http://127.0.0.1:PORT");
        Target { base: format!("http://127.0.0.1:{}", url.port().unwrap()) }
    }

    /// The absolute URL of a path on this target (the path must start with '/').
    pub fn url(&self, path: &str) -> String {
        assert!(path.starts_with('/') && !path.starts_with("//"), "a path on the target, not {path}");
        format!("{}{}", self.base, path)
    }
}

/// One request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl Req {
    pub fn get(path: String) -> Req {
        Req { method: Method::GET, path, headers: Vec::new(), body: None }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req {
        self.headers.push((name, value.into()));
        self
    }
}

/// Makes user `u`'s `n`th request.
pub type MakeReq = Arc<dyn Fn(usize, u64) -> Req + Send + Sync>;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .unwrap()
}

pub async fn send(client: &reqwest::Client, target: &Target, req: &Req) -> Result<(u16, String), String> {
    let mut b = client.request(req.method.clone(), target.url(&req.path));
    for (k, v) in &req.headers {
        b = b.header(*k, v);
    }
    if let Some(body) = &req.body {
        b = b.body(body.clone());
    }
    let res = b.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let text = res.text().await.map_err(|e| e.to_string())?;
    Ok((status, text))
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub sent: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds, sorted.
    pub latencies: Vec<u64>,
    pub first_error: Option<String>,
    /// Open loop only: each request's intended send time (microseconds from the start) and its
    /// latency, in send order, to see when slow answers happened.
    pub timeline: Vec<(u64, u64)>,
    /// Open loop only: when it started by the wall clock, to line slow answers up with `vmstat -t`
    /// and PostgreSQL's log.
    pub began: Option<chrono::DateTime<chrono::Utc>>,
}

impl Stats {
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[i] as f64 / 1000.0
    }
    /// Several runs' statistics as one: their latencies together, their times and counts summed.
    pub fn together(runs: Vec<Stats>) -> Stats {
        let sent = runs.iter().map(|r| r.sent).sum();
        let elapsed = runs.iter().map(|r| r.elapsed).sum();
        Stats::merge(runs.into_iter().map(|r| (r.latencies, r.errors, r.first_error)).collect(), sent, elapsed)
    }
    fn merge(parts: Vec<(Vec<u64>, u64, Option<String>)>, sent: u64, elapsed: Duration) -> Stats {
        let mut latencies = Vec::new();
        let mut errors = 0;
        let mut first_error = None;
        for (l, e, fe) in parts {
            latencies.extend(l);
            errors += e;
            if first_error.is_none() {
                first_error = fe;
            }
        }
        let timeline = Vec::new();
        latencies.sort_unstable();
        Stats { sent, errors, elapsed, latencies, first_error, timeline, began: None }
    }
}

/// Closed loop: `users` users, at most `max_requests` requests in all and at most `max_time`;
/// `think` between a user's requests. `ok` decides whether a status is the expected answer.
pub async fn closed(
    target: &Target,
    users: usize,
    max_requests: u64,
    max_time: Duration,
    think: Duration,
    make: MakeReq,
    ok: fn(u16) -> bool,
) -> Stats {
    let client = client();
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max_time;
    let mut tasks = Vec::new();
    for u in 0..users {
        let (client, target, make, issued) = (client.clone(), target.clone(), make.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut sent = 0u64;
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests || Instant::now() >= deadline {
                    break;
                }
                sent += 1;
                let req = make(u, n);
                let t0 = Instant::now();
                match send(&client, &target, &req).await {
                    Ok((status, _)) if ok(status) => lat.push(t0.elapsed().as_micros() as u64),
                    Ok((status, body)) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{} {} -> {status}: {}", req.method, req.path, snippet(&body))
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                if !think.is_zero() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(think.min(left)).await;
                }
            }
            (lat, errors, first_error, sent)
        }));
    }
    let mut parts = Vec::new();
    let mut sent = 0;
    for t in tasks {
        let (lat, errors, first_error, n) = t.await.unwrap();
        sent += n;
        parts.push((lat, errors, first_error));
    }
    let elapsed = started.elapsed();
    Stats::merge(parts, sent, elapsed)
}

/// Open loop at `rate` requests a second: request `i` is due at `start + i / rate` and its latency
/// runs from then. At most `count` requests, dispatching stops after `max_time`, and at most
/// `max_in_flight` are outstanding (a request that would exceed it counts as an error).
///
/// The requests are paced on a thread of their own, sleeping with the operating system's
/// high-resolution timer: tokio's timer ticks in whole milliseconds, and paced by it each request
/// left up to a millisecond after it was due (1.3 ms at the median, measured at 1,000/s), which
/// the latency from the due time then counted against the service. How late they left is printed
/// with the run, so what remains of it is seen.
pub async fn open(
    target: &Target,
    rate: f64,
    count: u64,
    max_time: Duration,
    max_in_flight: usize,
    make: MakeReq,
    ok: fn(u16) -> bool,
) -> Stats {
    type Part = (Vec<u64>, u64, Option<String>);
    let client = client();
    let runtime = tokio::runtime::Handle::current();
    let target = target.clone();
    let late = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count.min(1 << 20) as usize)));
    let paced_late = late.clone();
    let began = chrono::Utc::now();
    let (started, tasks, dropped, sent) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
        let mut tasks: Vec<(u64, tokio::task::JoinHandle<Part>)> = Vec::new();
        let (mut dropped, mut sent) = (0u64, 0u64);
        for i in 0..count {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            if due.duration_since(started) >= max_time {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                dropped += 1;
                continue;
            };
            let (client, target, late) = (client.clone(), target.clone(), paced_late.clone());
            let req = make((i % 1_000_000) as usize, i);
            let at = due.duration_since(started).as_micros() as u64;
            tasks.push((
                at,
                runtime.spawn(async move {
                    late.lock().unwrap().push(due.elapsed().as_micros() as u64);
                    let r = send(&client, &target, &req).await;
                    let latency = due.elapsed().as_micros() as u64;
                    drop(permit);
                    match r {
                        Ok((status, _)) if ok(status) => (vec![latency], 0, None),
                        Ok((status, body)) => {
                            (vec![], 1, Some(format!("{} -> {status}: {}", req.path, snippet(&body))))
                        }
                        Err(e) => (vec![], 1, Some(e)),
                    }
                }),
            ));
        }
        (started, tasks, dropped, sent)
    })
    .await
    .unwrap();
    let mut parts: Vec<Part> =
        vec![(vec![], dropped, (dropped > 0).then(|| format!("{dropped} requests over the in-flight cap")))];
    let mut timeline = Vec::with_capacity(tasks.len());
    for (at, t) in tasks {
        let part = t.await.unwrap();
        if let Some(&latency) = part.0.first() {
            timeline.push((at, latency));
        }
        parts.push(part);
    }
    let elapsed = started.elapsed();
    let mut late = std::mem::take(&mut *late.lock().unwrap());
    late.sort_unstable();
    let q = |f: f64| late.get(((late.len().max(1) - 1) as f64 * f) as usize).copied().unwrap_or(0);
    eprintln!(
        "national: the open loop's requests left p50 {} µs, p99 {} µs, at most {} µs after they were due",
        q(0.5),
        q(0.99),
        late.last().copied().unwrap_or(0)
    );
    Stats { timeline, began: Some(began), ..Stats::merge(parts, sent, elapsed) }
}

fn snippet(body: &str) -> String {
    body.chars().filter(|c| !c.is_control()).take(160).collect()
}
