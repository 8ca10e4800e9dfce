//! The national-scale benchmark (issue 8): `./scripts/bench national` (add `--soak` for the
//! 15-minute soak, `--sweep` for the pool-size and worker sweep, `--rebuild` to build the dataset
//! again).
//!
//! 1. Builds, or reuses when the marker table names the same generator version, a national-scale
//!    dataset in a private database on the bench cluster (benches/national/dataset.rs), kept as
//!    built in `cpis_bench_national_built`; each run measures a fresh copy of it (`--keep-dataset`
//!    measures the copy the last run left instead).
//! 2. Starts the real service (`target/release/cpis serve`, scheduler off) and, in the same run, a
//!    baseline (benches/national/baseline.rs), both on 127.0.0.1 with the same worker and pool counts.
//! 3. Drives them with a load generator written here (benches/national/loadgen.rs): closed loop at N
//!    users, and open loop at a fixed rate with latency from each request's intended send time.
//! 4. Prints a table (workload, target, throughput, p50, p99, ratio to the baseline, pass/fail) and
//!    writes target/bench/national.json.
//!
//! Absolute figures depend on the machine and on whatever else runs on it; the gate is the ratio
//! to the baseline measured in the same run. Each gated workload is measured in three rounds, each
//! right after a round of the baseline at the same number of users, and its ratio is the median
//! round's (`paired`); the baseline rows are its runs at the start and the end (their mean).

#[path = "national/baseline.rs"]
mod baseline;
#[path = "national/common.rs"]
mod common;
#[path = "national/cpu.rs"]
mod cpu;
#[path = "national/dataset.rs"]
mod dataset;
#[path = "national/loadgen.rs"]
mod loadgen;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Text};
use serde_json::json;

use common::{admin_url, exec, median, url_for, wait_until_chained};
use loadgen::{MakeReq, Req, Stats, Target};

/// The allocator the service runs with (src/main.rs), for the baseline and the load generator too,
/// and, as the service, without transparent huge pages (`main`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DB: &str = "cpis_bench_national";
/// The dataset as built, which each run copies into [`DB`] (`copy_database`).
const BUILT: &str = "cpis_bench_national_built";
const USERS_LOW: usize = 16;
const USERS_HIGH: usize = 160;
const WARM_UP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(8);
const MAX_REQUESTS: u64 = 500_000;
/// Rounds of (baseline, workload) for each gated ratio; the gate is the median round's ratio.
const ROUNDS: usize = 3;
const OPEN_RATE: f64 = 1000.0;
/// 40 s at `OPEN_RATE`: long enough to meet the kernel's writeback (30 s expiry) of the pages the
/// open loop itself dirties.
const OPEN_COUNT: u64 = 40_000;
const SOAK: Duration = Duration::from_secs(15 * 60);
/// NHS systems' tokens the FHIR workload spreads its searches over: each may send 20 a second
/// (src/api/fhir/rate_limit.rs), so these allow 20,000 a second, far above what is measured, and
/// no search is refused for its rate (200 allowed 4,000, which the service reached).
const FHIR_TOKENS: usize = 1_000;

#[derive(QueryableByName)]
struct S {
    #[diesel(sql_type = Text)]
    s: String,
}

#[derive(QueryableByName, Clone)]
struct Demo {
    #[diesel(sql_type = Text)]
    family_name: String,
    #[diesel(sql_type = Date)]
    birth_date: NaiveDate,
}

fn strings(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql).load::<S>(conn).unwrap().into_iter().map(|s| s.s).collect()
}

/// A server process this bench started; killed (by its own pid) when dropped.
struct Server {
    child: Child,
    target: Target,
    name: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// A number from a process's `/proc/<pid>/status` (`VmRSS:` in KiB, `Threads:`), while it runs.
fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    workers: usize,
    pool: u32,
    /// `--users N`: the closed loop's users in an `--only` run (16 unless given).
    only_users: usize,
}

fn cpis_binary() -> std::path::PathBuf {
    let dir =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into());
    std::path::Path::new(&dir).join("release/cpis")
}

async fn wait_healthy(target: &Target, child: &mut Child, name: &str) {
    let client = loadgen::client();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited before answering: {status}");
        }
        if let Ok((200, _)) = loadgen::send(&client, target, &Req::get("/health".into())).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not answer /health within 120 s");
}

async fn start_service(url: &str, s: Settings) -> Server {
    let port = free_port();
    let mut child = Command::new(cpis_binary())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("CPIS_SCHEDULER", "false")
        .env("CPIS_LOG", std::env::var("CPIS_LOG").unwrap_or_else(|_| "warn".into()))
        .env("CPIS_SIGN_IN_LIMIT", "1000000")
        .env("CPIS_WORKERS", s.workers.to_string())
        .env("CPIS_DB_POOL_SIZE", s.pool.to_string())
        .env("CPIS_STATIC_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
        .env("CPIS_MAIL_DIR", std::env::temp_dir().join("cpis-bench-mail"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (scripts/bench builds it)", cpis_binary().display()));
    let target = Target::new(&format!("http://127.0.0.1:{port}/"));
    wait_healthy(&target, &mut child, "cpis serve").await;
    Server { child, target, name: "cpis serve" }
}

async fn start_baseline(url: &str, s: Settings) -> Server {
    let port = free_port();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(baseline::ROLE_ENV, format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", url)
        .env("CPIS_WORKERS", s.workers.to_string())
        .env("CPIS_DB_POOL_SIZE", s.pool.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let target = Target::new(&format!("http://127.0.0.1:{port}/"));
    wait_healthy(&target, &mut child, "baseline").await;
    Server { child, target, name: "baseline" }
}

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("cpis-session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn csrf_token(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf_token\" value=\"")? + "name=\"csrf_token\" value=\"".len();
    Some(html[i..].split('"').next()?.to_owned())
}

/// Signs in through the form (GET for the CSRF token, POST with argon2id on the server); returns
/// the session cookie.
async fn sign_in(client: &reqwest::Client, target: &Target, username: &str, password: &str) -> Result<String, String> {
    let res = client.get(target.url("/sign-in")).send().await.map_err(|e| e.to_string())?;
    let cookie = session_cookie(&res).ok_or("no session cookie from GET /sign-in")?;
    let html = res.text().await.map_err(|e| e.to_string())?;
    let token = csrf_token(&html).ok_or("no CSRF token on the sign-in page")?;
    let body =
        serde_urlencoded::to_string([("username", username), ("password", password), ("csrf_token", &token)]).unwrap();
    let res = client
        .post(target.url("/sign-in"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().as_u16() != 303 {
        return Err(format!("sign-in of {username} answered {}", res.status()));
    }
    session_cookie(&res).ok_or_else(|| "no session cookie after sign-in".into())
}

/// One line of the table.
#[derive(Clone, Debug, Default)]
struct Row {
    workload: String,
    target: String,
    throughput: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    ratio: Option<f64>,
    pass: Option<bool>,
    note: String,
}

impl Row {
    fn from_stats(workload: &str, target: &str, s: &Stats) -> Row {
        let mut note = format!("{} ok of {} sent", s.latencies.len(), s.sent);
        if s.errors > 0 {
            note.push_str(&format!(", {} errors (first: {})", s.errors, s.first_error.clone().unwrap_or_default()));
        }
        Row {
            workload: workload.into(),
            target: target.into(),
            throughput: Some(s.throughput()),
            p50_ms: Some(s.quantile_ms(0.5)),
            p99_ms: Some(s.quantile_ms(0.99)),
            ratio: None,
            pass: None,
            note,
        }
    }
    fn json(&self) -> serde_json::Value {
        json!({
            "workload": self.workload, "target": self.target, "throughput_per_s": self.throughput,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "ratio_to_baseline": self.ratio, "pass": self.pass,
            "note": self.note,
        })
    }
}

fn ok200(s: u16) -> bool {
    s == 200
}
fn ok303(s: u16) -> bool {
    s == 303
}

/// A closed-loop run: a short warm-up (discarded), then the measured part.
async fn closed_run(target: &Target, users: usize, make: MakeReq, ok: fn(u16) -> bool) -> Stats {
    loadgen::closed(target, users, MAX_REQUESTS, WARM_UP, Duration::ZERO, make.clone(), ok).await;
    loadgen::closed(target, users, MAX_REQUESTS, MEASURE, Duration::ZERO, make, ok).await
}

/// A workload measured against the baseline in `ROUNDS` adjacent pairs (the baseline at the same
/// number of users just before each round of the workload), so that the machine's drift over a
/// run, which moved identical builds' single-pair ratios from 0.18 to 0.25, falls on both sides of
/// each pair. The workload's rounds together (its latencies, all of them), and each round's ratio.
async fn paired(
    baseline: &Target,
    base_req: &MakeReq,
    target: &Target,
    users: usize,
    make: MakeReq,
    ok: fn(u16) -> bool,
) -> Paired {
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let b = closed_run(baseline, users, base_req.clone(), ok200).await;
        let w = closed_run(target, users, make.clone(), ok).await;
        ratios.push(w.throughput() / b.throughput());
        rounds.push(w);
    }
    Paired { stats: Stats::together(rounds), ratios }
}

/// A workload measured in rounds against the baseline ([`paired`]).
struct Paired {
    stats: Stats,
    ratios: Vec<f64>,
}

impl Paired {
    fn ratio(&self) -> f64 {
        median_f64(&self.ratios)
    }
}

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// When an open loop's slow answers (over 5 ms) were asked for: how many and the worst, per
/// `bucket_us` of the run (empty buckets left out).
fn print_slow_answers(stats: &Stats, bucket_us: u64) {
    let mut slow: std::collections::BTreeMap<u64, (usize, u64)> = Default::default();
    for &(at, latency) in &stats.timeline {
        if latency > 5_000 {
            let e = slow.entry(at / bucket_us).or_default();
            e.0 += 1;
            e.1 = e.1.max(latency);
        }
    }
    for (bucket, (n, worst)) in slow {
        let offset = bucket * bucket_us;
        let clock = stats.began.map(|b| b + chrono::TimeDelta::microseconds(offset as i64));
        eprintln!(
            "national:   at {:5.1} s ({}): {n:4} over 5 ms, worst {:.1} ms",
            offset as f64 / 1e6,
            clock.map(|c| c.format("%H:%M:%S%.3f UTC").to_string()).unwrap_or_default(),
            worst as f64 / 1000.0
        );
    }
}

/// The open loop: `OPEN_RATE` requests a second, at most `OPEN_COUNT` and 60 s, once the page
/// cache the workloads before left dirty is on disk ([`write_out_page_cache`]).
async fn open_run(target: &Target, make: MakeReq) -> Stats {
    write_out_page_cache();
    loadgen::open(target, OPEN_RATE, OPEN_COUNT, Duration::from_secs(60), 4096, make, ok200).await
}

/// Writes out what the page cache holds dirty (`sync`), and says how much that was.
///
/// PostgreSQL 15 grows a table or index by writing a page of zeros through the page cache; at
/// the 160-user rounds' 4,000 to 5,000 openings a second that left about 100 MB dirty, which the
/// kernel wrote back in one burst 30 s later (its dirty expiry), three seconds into the open loop
/// that followed: the WAL's flush waited behind it, and 50 to 80 answers in that second took 5 to
/// 70 ms (2026-11-25: `vmstat` 104,840 kB out in that second, `Dirty` from 94,828 kB to 2,092 kB,
/// the tab thread's backend `pwrite`ing relation files, `pg_stat_bgwriter` no buffers written).
/// The open loop is to meet the writeback its own rate causes, not the one of the rounds before.
fn write_out_page_cache() {
    let dirty = || {
        std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines().find(|l| l.starts_with("Dirty:")).map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
    };
    let before = dirty();
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    eprintln!(
        "national: before the open loop, {} kB of the page cache dirty, written out: {synced}",
        before.unwrap_or_else(|| "?".into())
    );
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<52} {:<22} {:>10} {:>9} {:>9} {:>7} {:>6}",
        "workload", "target", "req/s", "p50 ms", "p99 ms", "ratio", "pass"
    );
    for r in rows {
        println!(
            "{:<52} {:<22} {:>10} {:>9} {:>9} {:>7} {:>6}",
            r.workload,
            r.target,
            fmt(r.throughput, 0),
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            fmt(r.ratio, 2),
            match r.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "-",
            }
        );
    }
    println!();
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("  {}: {}", r.workload, r.note);
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu, "memory_gib": (mem_kib as f64 / 1_048_576.0).round(), "kernel": kernel,
    })
}

/// Replaces database `to` with a copy of `from`, file by file (PostgreSQL 15's `FILE_COPY`: a
/// checkpoint and a copy of the files, where the default strategy would write the whole dataset
/// to the WAL). Nothing may be connected to `from`.
fn copy_database(admin: &mut PgConnection, from: &str, to: &str) {
    let started = Instant::now();
    exec(admin, &format!("DROP DATABASE IF EXISTS {to} WITH (FORCE)"));
    exec(admin, &format!("CREATE DATABASE {to} TEMPLATE {from} STRATEGY FILE_COPY"));
    eprintln!("national: copied {from} to {to} in {:.0} s", started.elapsed().as_secs_f64());
}

fn main() {
    if let Err(e) = cpis::memory::no_transparent_huge_pages() {
        eprintln!("national: transparent huge pages stay on ({e})");
    }
    if let Ok(bind) = std::env::var(baseline::ROLE_ENV) {
        baseline::serve(&bind);
    }
    let args: Vec<String> = std::env::args().collect();
    let soak = args.iter().any(|a| a == "--soak");
    let sweep = args.iter().any(|a| a == "--sweep");
    let rebuild = args.iter().any(|a| a == "--rebuild");
    // `--keep-dataset`: measure the database as the last run left it instead of a fresh copy of
    // the dataset as built (quicker for repeated --only runs; their additions pile up).
    let keep_dataset = args.iter().any(|a| a == "--keep-dataset");
    // `--only tab|nhs|demo|fhir`: the baseline and that one workload at 16 users for a minute, for
    // profiling the service while it runs; `--only daily`: the daily run five times, rolled back;
    // `--only upload`: the 60,000-record upload twice; `--only upload-tab`: the tab at 16 users
    // alone and then while those two uploads run; `--only open`: the tab's open loop, with when its
    // slow answers came; `--only soak`: the 15-minute soak (nothing is written to target/bench).
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let settings = Settings {
        workers: std::env::var("CPIS_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(0),
        pool: std::env::var("CPIS_DB_POOL_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        only_users: args
            .iter()
            .position(|a| a == "--users")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().expect("--users takes a number of users"))
            .unwrap_or(USERS_LOW),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(settings, soak, sweep, rebuild, keep_dataset, only));
}

/// The bench cluster's postmaster, whose processes' CPU an `--only` run reports ([`cpu::Used`]).
fn postmaster_pid() -> Option<u32> {
    let mut conn = PgConnection::establish(&url_for(DB)).ok()?;
    let backend: Count = diesel::sql_query("SELECT pg_backend_pid()::bigint AS n").get_result(&mut conn).ok()?;
    cpu::postmaster_of(u32::try_from(backend.n).ok()?)
}

async fn run(settings: Settings, soak: bool, sweep: bool, rebuild: bool, keep_dataset: bool, only: Option<String>) {
    let mut admin = PgConnection::establish(&admin_url()).expect("connect to the bench cluster");
    if std::env::var("CPIS_BENCH_TUNE").is_ok() {
        // The private bench cluster only (scripts/bench sets this when it started it): room for the
        // dataset's WAL without a checkpoint every few seconds. Still durable (fsync on).
        exec(&mut admin, "ALTER SYSTEM SET max_wal_size = '8GB'");
        exec(&mut admin, "ALTER SYSTEM SET checkpoint_timeout = '30min'");
        exec(&mut admin, "SELECT pg_reload_conf()");
    }
    let pg_version = strings(&mut admin, "SELECT version() AS s").remove(0);
    let exists = |admin: &mut PgConnection, db: &str| {
        !strings(admin, &format!("SELECT datname AS s FROM pg_database WHERE datname = '{db}'")).is_empty()
    };
    let url = url_for(DB);
    // The dataset as built is kept in BUILT, and each run measures a fresh copy of it (DB): the
    // openings, uploads and audit entries a run adds would otherwise stay, and every later run
    // would measure a larger dataset than the one it names (it had grown from 5 to 19 million
    // accesses by 2026-11-24).
    let marker = if exists(&mut admin, BUILT) && !rebuild {
        let mut conn = PgConnection::establish(&url_for(BUILT)).unwrap();
        let m = dataset::marker(&mut conn);
        if m.is_some() {
            cpis::db::migrate(&mut conn).unwrap();
        }
        m
    } else {
        None
    };
    let marker = match marker {
        Some(m) => {
            eprintln!("national: the dataset built {} (generator {})", m.built_at, m.version);
            if keep_dataset && exists(&mut admin, DB) {
                eprintln!("national: measuring {DB} as earlier runs left it (--keep-dataset)");
            } else {
                copy_database(&mut admin, BUILT, DB);
            }
            m
        }
        None => {
            eprintln!("national: building the dataset in {DB} (several minutes, once)");
            exec(&mut admin, &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"));
            exec(&mut admin, &format!("CREATE DATABASE {DB}"));
            let mut conn = PgConnection::establish(&url).unwrap();
            let m = dataset::build(&mut conn, Utc::now());
            drop(conn);
            copy_database(&mut admin, DB, BUILT);
            m
        }
    };
    cpis::db::migrate(&mut PgConnection::establish(&url).unwrap()).unwrap();
    let mut conn = PgConnection::establish(&url).unwrap();
    let sizes = json!({
        "patients": dataset::count(&mut conn, "SELECT count(*) AS n FROM patients"),
        "children_with_information": dataset::count(&mut conn, "SELECT count(DISTINCT nhs_number) AS n FROM cp_items WHERE deleted_at IS NULL"),
        "local_authorities_holding": dataset::count(&mut conn, "SELECT count(DISTINCT la_code) AS n FROM cp_items WHERE deleted_at IS NULL"),
        "access_events": dataset::count(&mut conn, "SELECT count(*) AS n FROM access_events"),
        "audit_entries": dataset::count(&mut conn, "SELECT count(*) AS n FROM audit_log"),
        "accounts": dataset::count(&mut conn, "SELECT count(*) AS n FROM users"),
        "build_seconds": marker.build_seconds,
    });
    eprintln!("national: dataset {sizes}");

    // What the workloads ask for.
    let tab_targets = Arc::new(strings(
        &mut conn,
        "SELECT DISTINCT i.nhs_number AS s FROM cp_items i JOIN patients p ON p.nhs_number = i.nhs_number \
         WHERE i.deleted_at IS NULL AND i.item_type <> 'UCPP' AND i.la_child_id LIKE 'B%' \
           AND (i.end_date IS NULL OR i.end_date > current_date - 300) AND p.superseded_by IS NULL \
           AND NOT p.invalidated ORDER BY 1 LIMIT 20000",
    ));
    let search_numbers = Arc::new(strings(
        &mut conn,
        "SELECT nhs_number AS s FROM patients TABLESAMPLE SYSTEM (3) WHERE superseded_by IS NULL AND NOT invalidated \
         LIMIT 20000",
    ));
    let demographics: Arc<Vec<Demo>> = Arc::new(
        diesel::sql_query(
            "SELECT family_name, birth_date FROM patients TABLESAMPLE SYSTEM (3) \
             WHERE superseded_by IS NULL AND NOT invalidated LIMIT 20000",
        )
        .load(&mut conn)
        .unwrap(),
    );
    let trusts = strings(&mut conn, "SELECT ods_code AS s FROM nhs_organisations ORDER BY ods_code");

    let service = start_service(&url, settings).await;
    let base = start_baseline(&url, settings).await;
    let (svc, bl) = (service.target.clone(), base.target.clone());
    eprintln!("national: {} and {} up (workers {}, pool {})", service.name, base.name, settings.workers, settings.pool);

    // Sessions: USERS_HIGH clinicians signed in through the form, and helen.ward for the report.
    let client = loadgen::client();
    let mut cookies = Vec::new();
    for chunk in (1..=USERS_HIGH).collect::<Vec<_>>().chunks(8) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (client, svc) = (client.clone(), svc.clone());
            tasks.push(tokio::spawn(async move {
                sign_in(&client, &svc, &format!("clin{i:05}"), dataset::PASSWORD).await.unwrap()
            }));
        }
        for t in tasks {
            cookies.push(t.await.unwrap());
        }
    }
    let cookies = Arc::new(cookies);
    let helen = sign_in(&client, &svc, "helen.ward", cpis::seed::demo::DEMO_PASSWORD).await.unwrap();

    // FHIR tokens: one through the operator command, the rest through the same library call.
    let mut tokens: Vec<(String, String)> = Vec::new();
    let out = Command::new(cpis_binary())
        .args(["token", "nhs", &trusts[0]])
        .env("DATABASE_URL", &url)
        .env("CPIS_LOG", "warn")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "cpis token nhs");
    tokens.push((String::from_utf8(out.stdout).unwrap().trim().to_owned(), trusts[0].clone()));
    for k in 1..FHIR_TOKENS {
        let ods = trusts[k % trusts.len()].clone();
        let t = cpis::mailbox::tokens::issue_nhs(&mut conn, cpis::audit::Actor::Operator, &ods, "bench").unwrap();
        tokens.push((t, ods));
    }
    let tokens = Arc::new(tokens);

    // Request makers.
    let pick = |n: u64, len: usize| ((n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize) % len;
    let baseline_req: MakeReq = {
        let nums = search_numbers.clone();
        Arc::new(move |_, n| Req::get(format!("/patients/{}", nums[pick(n, nums.len())])))
    };
    let tab_req: MakeReq = {
        let (t, c) = (tab_targets.clone(), cookies.clone());
        Arc::new(move |u, n| {
            Req::get(format!("/patients/{}/child-care-alert", t[pick(n, t.len())]))
                .header("cookie", c[u % c.len()].clone())
        })
    };
    let nhs_req: MakeReq = {
        let (s, c) = (search_numbers.clone(), cookies.clone());
        Arc::new(move |u, n| {
            Req::get(format!("/search?by=nhs&nhs_number={}", s[pick(n, s.len())]))
                .header("cookie", c[u % c.len()].clone())
        })
    };
    let demo_req: MakeReq = {
        let (d, c) = (demographics.clone(), cookies.clone());
        Arc::new(move |u, n| {
            let p = &d[pick(n, d.len())];
            let q = serde_urlencoded::to_string([
                ("by", "demographics".to_owned()),
                ("family_name", p.family_name.clone()),
                ("dob_day", p.birth_date.day().to_string()),
                ("dob_month", p.birth_date.month().to_string()),
                ("dob_year", p.birth_date.year().to_string()),
            ])
            .unwrap();
            Req::get(format!("/search?{q}")).header("cookie", c[u % c.len()].clone())
        })
    };
    let fhir_req: MakeReq = {
        let (t, tk) = (tab_targets.clone(), tokens.clone());
        Arc::new(move |_, n| {
            let (token, ods) = &tk[(n as usize) % tk.len()];
            Req::get(format!(
                "/cpis/FHIR/R4/CareTeam?patient%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{}",
                t[pick(n, t.len())]
            ))
            .header("authorization", format!("Bearer {token}"))
            .header("NHSD-End-User-ID", format!("5{:011}", n % 5000))
            .header("NHSD-End-User-Name", "Bench Clinician")
            .header("NHSD-End-User-Role", "R8000")
            .header("NHSD-End-User-Organisation-ODS", ods.clone())
            .header("TraceID", format!("bench-{n}"))
        })
    };

    if only.as_deref() == Some("daily") {
        let day = marker.peak_day;
        let scheduled = cpis::domain::dates::uk_day_bounds(day).1 + TimeDelta::minutes(30);
        eprintln!("national: profiling the daily run (bench pid {})", std::process::id());
        for _ in 0..5 {
            let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
                let t0 = Instant::now();
                cpis::jobs::daily_notification::run(c, scheduled, Utc::now()).unwrap_or_else(|e| panic!("{e:?}"));
                eprintln!("national: daily run {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
                Err(diesel::result::Error::RollbackTransaction)
            });
        }
        return;
    }
    if only.as_deref() == Some("upload") {
        let row = upload_runs(&mut conn, &svc).await;
        eprintln!("national: upload {}", row.note);
        return;
    }
    if only.as_deref() == Some("upload-tab") {
        // What clinicians see while an LA's large file is stored: the tab at 16 users alone, then
        // the same load while the two 60,000-record uploads run. The upload appends its audit
        // entries under the chain's lock until it commits, and every opening's COMMIT needs that lock.
        let alone = loadgen::closed(
            &svc,
            USERS_LOW,
            MAX_REQUESTS,
            Duration::from_secs(20),
            Duration::ZERO,
            tab_req.clone(),
            ok200,
        );
        let alone = alone.await;
        let (svc2, make) = (svc.clone(), tab_req.clone());
        let during = tokio::spawn(async move {
            loadgen::closed(&svc2, USERS_LOW, MAX_REQUESTS, Duration::from_secs(30), Duration::ZERO, make, ok200).await
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let row = upload_runs(&mut conn, &svc).await;
        let during = during.await.unwrap();
        let show = |s: &Stats| {
            format!(
                "{:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms, {} errors",
                s.throughput(),
                s.quantile_ms(0.5),
                s.quantile_ms(0.99),
                s.quantile_ms(1.0),
                s.errors
            )
        };
        eprintln!("national: tab alone: {}", show(&alone));
        eprintln!("national: tab during the uploads ({}): {}", row.note.trim_end_matches("; "), show(&during));
        return;
    }
    if only.as_deref() == Some("signin") {
        let b = tab_with_sign_in_bursts(&client, &svc, tab_req.clone()).await;
        eprintln!(
            "national: tab p99 alone {:.1} ms, with sign-in bursts {:.1} ms ({:.2}x; {} sign-ins, {} failed)",
            b.alone.quantile_ms(0.99),
            b.bursts.quantile_ms(0.99),
            b.ratio(),
            b.signed_in,
            b.failed
        );
        return;
    }
    if only.as_deref() == Some("soak") {
        let row = soak_run(&service, nhs_req.clone(), tab_req.clone()).await;
        eprintln!("national: {} {}: {}", row.workload, if row.pass == Some(true) { "pass" } else { "FAIL" }, row.note);
        return;
    }
    if only.as_deref() == Some("open") {
        // Warmed as in the full run, where the closed runs come first.
        let _ = closed_run(&svc, USERS_LOW, tab_req.clone(), ok200).await;
        let _ = closed_run(&bl, USERS_LOW, baseline_req.clone(), ok200).await;
        let quantiles = |name: &str, stats: &Stats| {
            eprintln!(
                "national: {name} open loop {OPEN_RATE}/s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms, {} errors",
                stats.quantile_ms(0.5),
                stats.quantile_ms(0.9),
                stats.quantile_ms(0.99),
                stats.quantile_ms(0.999),
                stats.quantile_ms(1.0),
                stats.errors
            )
        };
        quantiles("baseline", &open_run(&bl, baseline_req.clone()).await);
        eprintln!("national: profiling the open loop (service pid {})", service.pid());
        let stats = open_run(&svc, tab_req.clone()).await;
        quantiles("tab", &stats);
        print_slow_answers(&stats, 100_000);
        return;
    }
    if let Some(name) = only {
        let (make, ok): (MakeReq, fn(u16) -> bool) = match name.as_str() {
            "tab" => (tab_req, ok200),
            "nhs" => (nhs_req, ok303),
            "demo" => (demo_req, ok200),
            "fhir" => (fhir_req, ok200),
            other => {
                panic!(
                    "--only takes tab, nhs, demo, fhir, open, soak, daily, upload, upload-tab or signin, not {other}"
                )
            }
        };
        let users = settings.only_users;
        let base = closed_run(&bl, users, baseline_req, ok200).await;
        let postmaster = postmaster_pid();
        eprintln!("national: profiling {name} for 60 s at {users} users (service pid {})", service.pid());
        let used = postmaster.and_then(|p| cpu::Used::now(service.pid(), p));
        let stats = loadgen::closed(&svc, users, MAX_REQUESTS, Duration::from_secs(60), Duration::ZERO, make, ok).await;
        let cpu = match (used, postmaster.and_then(|p| cpu::Used::now(service.pid(), p))) {
            (Some(before), Some(after)) => {
                let (service, postgres) = before.per_request(&after, stats.sent);
                format!("; CPU a request: service {service:.0} µs, PostgreSQL {postgres:.0} µs")
            }
            _ => String::new(),
        };
        eprintln!(
            "national: baseline {:.0}/s; {name} {:.0}/s (ratio {:.3}), p50 {:.1} ms, p99 {:.1} ms, {} errors{cpu}",
            base.throughput(),
            stats.throughput(),
            stats.throughput() / base.throughput(),
            stats.quantile_ms(0.5),
            stats.quantile_ms(0.99),
            stats.errors
        );
        return;
    }

    let mut rows: Vec<Row> = Vec::new();
    let mut extra = serde_json::Map::new();

    // The baseline, at the start (and again at the end).
    eprintln!("national: baseline");
    let b16a = closed_run(&bl, USERS_LOW, baseline_req.clone(), ok200).await;
    let b160a = closed_run(&bl, USERS_HIGH, baseline_req.clone(), ok200).await;

    eprintln!("national: Child Care Alert tab");
    let tab16 = paired(&bl, &baseline_req, &svc, USERS_LOW, tab_req.clone(), ok200).await;
    let tab160 = paired(&bl, &baseline_req, &svc, USERS_HIGH, tab_req.clone(), ok200).await;
    let tab_open = open_run(&svc, tab_req.clone()).await;
    // Where in its forty seconds the tab's slow answers fell, per second (it follows the closed runs
    // at 160 users; alone, `--only open` prints them per 100 ms).
    eprintln!("national: the tab's open loop, answers over 5 ms by second:");
    print_slow_answers(&tab_open, 1_000_000);
    // The same open loop on the baseline: what this machine's scheduling costs one round trip's
    // page at that rate, for reading the tab's p99 (informative, not a gate).
    let base_open = open_run(&bl, baseline_req.clone()).await;
    eprintln!("national: searches and FHIR");
    let nhs16 = paired(&bl, &baseline_req, &svc, USERS_LOW, nhs_req.clone(), ok303).await;
    let demo16 = paired(&bl, &baseline_req, &svc, USERS_LOW, demo_req.clone(), ok200).await;
    let fhir16 = paired(&bl, &baseline_req, &svc, USERS_LOW, fhir_req.clone(), ok200).await;

    eprintln!("national: sign-in bursts with tab traffic");
    let sign_ins = tab_with_sign_in_bursts(&client, &svc, tab_req.clone()).await;

    // CP-IS081 for the last full month, as helen.ward.
    eprintln!("national: CP-IS081");
    let today = cpis::domain::dates::uk_date(Utc::now());
    let first_this_month = today.with_day(1).unwrap();
    let last_month_end = first_this_month.pred_opt().unwrap();
    let last_month_start = last_month_end.with_day(1).unwrap();
    let report_path = format!("/reports/cp-is081?from={last_month_start}&to={last_month_end}");
    let mut report_times = Vec::new();
    let mut report_status = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = loadgen::send(&client, &svc, &Req::get(report_path.clone()).header("cookie", helen.clone())).await;
        report_status = r.map(|(s, _)| s).unwrap_or(0);
        report_times.push(t0.elapsed());
        if report_status != 200 {
            break;
        }
    }

    // The daily notification run for the peak day (in a transaction rolled back).
    eprintln!("national: daily notification run");
    let (day_start, day_end) = cpis::domain::dates::uk_day_bounds(marker.peak_day);
    let day_events: i64 =
        diesel::sql_query("SELECT count(*) AS n FROM access_events WHERE accessed_at >= $1 AND accessed_at < $2")
            .bind::<diesel::sql_types::Timestamptz, _>(day_start)
            .bind::<diesel::sql_types::Timestamptz, _>(day_end)
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n;
    let scheduled = day_end + TimeDelta::minutes(30);
    let mut daily_times = Vec::new();
    let mut daily_summary = serde_json::Value::Null;
    for _ in 0..3 {
        let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
            let t0 = Instant::now();
            let summary = cpis::jobs::daily_notification::run(c, scheduled, Utc::now())
                .unwrap_or_else(|e| panic!("daily run: {e:?}"));
            daily_times.push(t0.elapsed());
            daily_summary = summary;
            Err(diesel::result::Error::RollbackTransaction)
        });
    }

    // What the audit chain's append lock costs, measured on the database alone.
    eprintln!("national: audit append lock, A/B");
    let audit_ab = audit_lock_ab(&url);
    eprintln!("national: page preamble (session + principal), old and new round trips");
    let preamble = preamble_ab(&url);

    // The upload, last (its LA's new items are removed afterwards so later runs find the same data).
    eprintln!("national: 60,000-record upload");
    let upload = upload_runs(&mut conn, &svc).await;

    eprintln!("national: baseline again");
    let b16b = closed_run(&bl, USERS_LOW, baseline_req.clone(), ok200).await;
    let b160b = closed_run(&bl, USERS_HIGH, baseline_req.clone(), ok200).await;
    let b16 = (b16a.throughput() + b16b.throughput()) / 2.0;
    let b160 = (b160a.throughput() + b160b.throughput()) / 2.0;

    let mut base_row = Row::from_stats("baseline: patient by NHS number + template, 16 users", "-", &b16a);
    base_row.throughput = Some(b16);
    base_row.ratio = Some(1.0);
    base_row.note = format!("start {:.0}/s, end {:.0}/s; {}", b16a.throughput(), b16b.throughput(), base_row.note);
    rows.push(base_row);
    let mut base_row = Row::from_stats("baseline: same, 160 users", "-", &b160a);
    base_row.throughput = Some(b160);
    base_row.ratio = Some(1.0);
    base_row.note = format!("start {:.0}/s, end {:.0}/s; {}", b160a.throughput(), b160b.throughput(), base_row.note);
    rows.push(base_row);

    let ratio_row = |name: &str, target: &str, p: &Paired, min: f64| {
        let mut r = Row::from_stats(name, target, &p.stats);
        let ratio = p.ratio();
        r.ratio = Some(ratio);
        r.pass = Some(ratio >= min && p.stats.errors == 0);
        let each: Vec<String> = p.ratios.iter().map(|x| format!("{x:.3}")).collect();
        r.note =
            format!("median of {} rounds, each after its baseline: {}; {}", p.ratios.len(), each.join(", "), r.note);
        r
    };
    rows.push(ratio_row("alert tab (read, record, render), 16 users", ">= 0.30 x baseline", &tab16, 0.30));
    rows.push(ratio_row("alert tab, 160 users", ">= 0.30 x baseline", &tab160, 0.30));
    let mut r = Row::from_stats("alert tab, open loop 1,000/s (CO-corrected)", "p99 < 5 ms", &tab_open);
    r.pass = Some(tab_open.quantile_ms(0.99) < 5.0 && tab_open.errors == 0);
    rows.push(r);
    let mut r = Row::from_stats("baseline, open loop 1,000/s (CO-corrected)", "-", &base_open);
    r.note = format!("{}; the machine's floor for the row above", r.note);
    rows.push(r);
    rows.push(ratio_row("search by NHS number, 16 users", ">= 0.80 x baseline", &nhs16, 0.80));
    rows.push(ratio_row("search by family name + birth date, 16 users", ">= 0.65 x baseline", &demo16, 0.65));
    rows.push(ratio_row("FHIR CareTeam (records the access), 16 users", ">= 0.30 x baseline", &fhir16, 0.30));
    let mut r = Row::from_stats("alert tab, 16 users, with sign-in bursts", "p99 <= 2 x without", &sign_ins.bursts);
    r.ratio = Some(sign_ins.bursts.throughput() / b16);
    r.pass = Some(sign_ins.ratio() <= 2.0 && sign_ins.bursts.errors == 0 && sign_ins.alone.errors == 0);
    r.note = format!(
        "{}; {} sign-ins ({BURST} at once every second), {} failed; p99 without (adjacent rounds) {:.2} ms, {:.2}x",
        r.note,
        sign_ins.signed_in,
        sign_ins.failed,
        sign_ins.alone.quantile_ms(0.99),
        sign_ins.ratio()
    );
    rows.push(r);
    rows.push(upload.clone());
    let daily = median(daily_times.clone());
    rows.push(Row {
        workload: "daily notification run, 152 LAs, one day".into(),
        target: "< 5 s".into(),
        p50_ms: Some(daily.as_secs_f64() * 1e3),
        p99_ms: daily_times.iter().max().map(|d| d.as_secs_f64() * 1e3),
        pass: Some(daily < Duration::from_secs(5)),
        note: format!(
            "{day_events} access events that day; {} runs rolled back; summary {daily_summary}",
            daily_times.len()
        ),
        ..Default::default()
    });
    if report_status == 404 {
        rows.push(Row {
            workload: "CP-IS081, one month".into(),
            target: "< 1 s".into(),
            note: format!("not yet available: GET {report_path} answered 404"),
            ..Default::default()
        });
    } else {
        let m = median(report_times.clone());
        rows.push(Row {
            workload: "CP-IS081, one month".into(),
            target: "< 1 s".into(),
            p50_ms: Some(m.as_secs_f64() * 1e3),
            p99_ms: report_times.iter().max().map(|d| d.as_secs_f64() * 1e3),
            pass: Some(report_status == 200 && m < Duration::from_secs(1)),
            note: format!(
                "{} requests, status {report_status}, {last_month_start} to {last_month_end}",
                report_times.len()
            ),
            ..Default::default()
        });
    }
    extra.insert("audit_lock_ab".into(), audit_ab);
    extra.insert("page_preamble_ab".into(), preamble);

    if soak {
        eprintln!("national: soak, 15 minutes at 160 users with 1 s think time");
        let row = soak_run(&service, nhs_req.clone(), tab_req.clone()).await;
        rows.push(row);
    }

    if sweep {
        eprintln!("national: pool and worker sweep");
        drop(service);
        let mut results = Vec::new();
        for (workers, pool) in [(2, 4), (2, 8), (2, 16), (2, 32), (1, 16), (4, 16)] {
            let s = Settings { workers, pool, only_users: USERS_LOW };
            let server = start_service(&url, s).await;
            let tab = closed_run(&server.target, USERS_HIGH, tab_req.clone(), ok200).await;
            let nhs = closed_run(&server.target, USERS_LOW, nhs_req.clone(), ok303).await;
            eprintln!(
                "  workers {workers}, pool {pool}: tab@160 {:.0}/s p99 {:.1} ms; nhs@16 {:.0}/s p99 {:.1} ms",
                tab.throughput(),
                tab.quantile_ms(0.99),
                nhs.throughput(),
                nhs.quantile_ms(0.99)
            );
            results.push(json!({
                "workers": workers, "pool": pool,
                "tab_160": {"throughput": tab.throughput(), "p99_ms": tab.quantile_ms(0.99), "errors": tab.errors},
                "nhs_16": {"throughput": nhs.throughput(), "p99_ms": nhs.quantile_ms(0.99), "errors": nhs.errors},
            }));
        }
        extra.insert("sweep".into(), json!(results));
    }
    print_table(&rows);
    let summary = json!({
        "run_at": Utc::now().to_rfc3339(),
        "machine": machine(),
        "postgresql": pg_version,
        "settings": {"workers": if settings.workers == 0 { json!("one per core") } else { json!(settings.workers) }, "db_pool_size": settings.pool},
        "dataset": sizes,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "diagnostics": extra,
    });
    println!("{}", serde_json::to_string_pretty(&summary["diagnostics"]).unwrap());
    std::fs::create_dir_all("target/bench").unwrap();
    let file = "target/bench/national.json";
    std::fs::write(file, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    eprintln!("national: wrote {file}");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The soak: 160 users, each searching by NHS number then opening a tab, 1 s think time between
/// requests, for 15 minutes; the server's resident memory sampled from /proc every 10 s.
async fn soak_run(service: &Server, nhs_req: MakeReq, tab_req: MakeReq) -> Row {
    let make: MakeReq = Arc::new(move |u, n| if n % 2 == 0 { nhs_req(u, n) } else { tab_req(u, n) });
    let ok: fn(u16) -> bool = |s| s == 200 || s == 303;
    // The server's resident memory (KiB) and its number of threads.
    let pid = service.pid();
    let sampler = tokio::spawn(async move {
        let (mut samples, mut threads) = (Vec::new(), Vec::new());
        let started = Instant::now();
        while started.elapsed() < SOAK + Duration::from_secs(5) {
            samples.push((started.elapsed().as_secs(), proc_status(pid, "VmRSS:").unwrap_or(0)));
            threads.push(proc_status(pid, "Threads:").unwrap_or(0));
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        (samples, threads)
    });
    let s = loadgen::closed(&service.target, USERS_HIGH, 10_000_000, SOAK, Duration::from_secs(1), make, ok).await;
    let (samples, threads) = sampler.await.unwrap();
    let at = |secs: u64| samples.iter().find(|(t, _)| *t >= secs).map(|(_, r)| *r).unwrap_or(0);
    let (early, end) = (at(120), samples.last().map(|(_, r)| *r).unwrap_or(0));
    let max = samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    // Flat: at most 10% (and 16 MiB) above the RSS after the first two minutes.
    let flat = end <= early + (early / 10).max(16 * 1024);
    let mut r = Row::from_stats("soak: 160 users, 1 s think, 15 min (search + tab)", "no errors, flat RSS", &s);
    r.pass = Some(s.errors == 0 && flat);
    r.note = format!(
        "{}; RSS {} MiB at 2 min, {} MiB at the end, {} MiB max; samples (s, MiB, threads) {:?}",
        r.note,
        early / 1024,
        end / 1024,
        max / 1024,
        samples.iter().zip(&threads).map(|((t, r), n)| (*t, r / 1024, *n)).collect::<Vec<_>>()
    );
    r
}

/// The tab at 16 users alone and while, every second, [`BURST`] people sign in at once
/// (argon2id), in `ROUNDS` adjacent pairs as [`paired`] measures against the baseline: the
/// machine's drift over a run falls on both sides, where the run without sign-ins used to be taken
/// minutes earlier.
async fn tab_with_sign_in_bursts(client: &reqwest::Client, svc: &Target, tab_req: MakeReq) -> SignInBursts {
    let (mut alone, mut bursts) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
    let (mut signed_in, mut failed) = (0, 0);
    for pass in 0..ROUNDS {
        alone.push(closed_run(svc, USERS_LOW, tab_req.clone(), ok200).await);
        // Each pass signs in accounts of its own.
        let signing_in = tokio::spawn(sign_in_bursts(client.clone(), svc.clone(), 1000 + pass * BURSTS * BURST));
        bursts.push(closed_run(svc, USERS_LOW, tab_req.clone(), ok200).await);
        let (done, not) = signing_in.await.unwrap();
        signed_in += done;
        failed += not;
    }
    SignInBursts { alone: Stats::together(alone), bursts: Stats::together(bursts), signed_in, failed }
}

/// How many people sign in at once, every second, in [`sign_in_bursts`].
const BURST: usize = 8;
/// The most bursts [`sign_in_bursts`] sends.
const BURSTS: usize = 30;

/// Every second, for the length of a tab run (and at most [`BURSTS`] times), [`BURST`] clinicians
/// sign in at once, numbered on from `first_user`: how many succeeded and how many failed.
async fn sign_in_bursts(client: reqwest::Client, svc: Target, first_user: usize) -> (u32, u32) {
    let (mut done, mut failed) = (0u32, 0u32);
    let started = Instant::now();
    let mut round = 0usize;
    while started.elapsed() < WARM_UP + MEASURE && round < BURSTS {
        let tasks: Vec<_> = (0..BURST)
            .map(|k| {
                let (client, svc) = (client.clone(), svc.clone());
                let user = format!("clin{:05}", first_user + round * BURST + k);
                tokio::spawn(async move { sign_in(&client, &svc, &user, dataset::PASSWORD).await })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => done += 1,
                Err(_) => failed += 1,
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_secs(round as u64).saturating_sub(started.elapsed())).await;
    }
    (done, failed)
}

/// [`tab_with_sign_in_bursts`]: the tab's rounds without and with sign-ins, each side's latencies
/// together, and how many sign-ins succeeded and failed.
struct SignInBursts {
    alone: Stats,
    bursts: Stats,
    signed_in: u32,
    failed: u32,
}

impl SignInBursts {
    /// The gate's figure (at most 2): the tab's p99 with sign-in bursts over its p99 without.
    fn ratio(&self) -> f64 {
        self.bursts.quantile_ms(0.99) / self.alone.quantile_ms(0.99)
    }
}

/// The 60,000-record upload end to end (as benches/upload.rs, against the national dataset): two
/// files for Kent naming 60,000 children who hold no information; their new items are removed
/// afterwards.
async fn upload_runs(conn: &mut PgConnection, svc: &Target) -> Row {
    const RECORDS: i64 = 60_000;
    let la = "E10000016";
    #[derive(QueryableByName)]
    struct Child {
        #[diesel(sql_type = Text)]
        nhs_number: String,
        #[diesel(sql_type = Text)]
        given_name: String,
        #[diesel(sql_type = Text)]
        family_name: String,
        #[diesel(sql_type = Date)]
        birth_date: NaiveDate,
    }
    let children: Vec<Child> = diesel::sql_query(format!(
        "SELECT nhs_number, given_name, family_name, birth_date FROM patients p \
         WHERE birth_date BETWEEN current_date - interval '17 years' AND current_date - interval '1 year' \
           AND superseded_by IS NULL AND NOT invalidated AND NOT restricted AND given_name <> '' \
           AND NOT EXISTS (SELECT 1 FROM cp_items i WHERE i.nhs_number = p.nhs_number) \
         ORDER BY nhs_number LIMIT {RECORDS}"
    ))
    .load(conn)
    .unwrap();
    assert_eq!(children.len() as i64, RECORDS);
    let numbers: Vec<&str> = children.iter().map(|c| c.nhs_number.as_str()).collect();
    let token = cpis::mailbox::tokens::issue_la(conn, cpis::audit::Actor::Operator, la, "bench").unwrap();
    let today = Utc::now().date_naive();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut times = Vec::new();
    let mut note = String::new();
    for run in 0..2i64 {
        // Each run replaces the same 60,000 children's items, so their dead row versions pile up in
        // cp_items and its unique index from run to run (and bench to bench); in service,
        // autovacuum clears them between an LA's uploads.
        exec(conn, "VACUUM (ANALYZE) cp_items");
        let last: Option<i64> =
            diesel::sql_query("SELECT coalesce(last_sequence, 0) AS n FROM local_authorities WHERE code = $1")
                .bind::<Text, _>(la)
                .get_result::<Count>(conn)
                .ok()
                .map(|c| c.n);
        let sequence = last.unwrap_or(0) + 1;
        let mut s = String::with_capacity(children.len() * 330);
        s.push_str(&format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><LAUpload xmlns=\"urn:cpis:messages:1\" messageId=\"{}\" \
             sequence=\"{sequence}\" created=\"{}\"><Sender odsCode=\"{la}\" name=\"Kent\" \
             emergencyPhone=\"01632 960001\" officeHoursPhone=\"01632 960002\"/>",
            uuid::Uuid::new_v4(),
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ));
        for (i, c) in children.iter().enumerate() {
            let given = c.given_name.replace('&', "&amp;").replace('<', "&lt;");
            let family = c.family_name.replace('&', "&amp;").replace('<', "&lt;");
            s.push_str(&format!(
                "<Record laChildId=\"KCC-{i:06}\"><NhsNumber>{}</NhsNumber><GivenName>{given}</GivenName>\
                 <FamilyName>{family}</FamilyName><BirthDate>{}</BirthDate><ChildProtectionPlan start=\"{}\"/>\
                 <LookedAfterChild start=\"{}\" end=\"{}\"/></Record>",
                c.nhs_number,
                c.birth_date,
                (today - TimeDelta::days(30 + run)).max(c.birth_date),
                c.birth_date,
                today - TimeDelta::days(10),
            ));
        }
        s.push_str("</LAUpload>");
        let url = svc.url(&format!("/mesh/v1/{la}/outbox"));
        let t0 = Instant::now();
        let res = client.post(url).bearer_auth(&token).body(s).send().await.unwrap();
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        let elapsed = t0.elapsed();
        let chained = wait_until_chained(conn);
        let code: String = body["messageId"]
            .as_str()
            .and_then(|id| {
                diesel::sql_query(format!("SELECT file_code AS s FROM uploads WHERE ack_message_id = '{id}'"))
                    .get_result::<S>(conn)
                    .ok()
            })
            .map(|s| s.s)
            .unwrap_or_default();
        note.push_str(&format!(
            "run {}: {status} {code} in {:.2} s, its audit entries all chained {:.2} s later; ",
            run + 1,
            elapsed.as_secs_f64(),
            chained.as_secs_f64()
        ));
        if status == 202 && code == "CPF01" {
            times.push(elapsed);
        }
    }
    // Back to the dataset as built.
    diesel::sql_query("DELETE FROM cp_items WHERE la_code = $1 AND nhs_number = ANY($2)")
        .bind::<Text, _>(la)
        .bind::<diesel::sql_types::Array<Text>, _>(&numbers)
        .execute(conn)
        .unwrap();
    let m = median(times.clone());
    Row {
        workload: "upload, 60,000 records end to end".into(),
        target: "< 5 s".into(),
        p50_ms: (!times.is_empty()).then_some(m.as_secs_f64() * 1e3),
        p99_ms: times.iter().max().map(|d| d.as_secs_f64() * 1e3),
        pass: Some(times.len() == 2 && m < Duration::from_secs(5)),
        note,
        ..Default::default()
    }
}

/// Commits per second of 16 writers appending to a copy of the audit table: with the chain's
/// transaction-scoped advisory lock (as `cpis::audit::record` does) and without; each with the
/// durable commit and with `synchronous_commit = off`, to show what the lock serialises.
fn audit_lock_ab(url: &str) -> serde_json::Value {
    let mut conn = PgConnection::establish(url).unwrap();
    exec(&mut conn, "DROP TABLE IF EXISTS bench_audit_ab");
    // The audit table's columns and its indexes, less the uniqueness of the links (without the lock,
    // two writers read the same head: the chain forks, which is exactly what the lock prevents).
    exec(&mut conn, "CREATE TABLE bench_audit_ab (LIKE audit_log INCLUDING DEFAULTS)");
    exec(&mut conn, "ALTER TABLE bench_audit_ab ADD PRIMARY KEY (id)");
    exec(&mut conn, "CREATE INDEX ON bench_audit_ab (prev_hash)");
    exec(&mut conn, "CREATE INDEX ON bench_audit_ab (hash)");
    exec(&mut conn, "CREATE INDEX ON bench_audit_ab (nhs_number, occurred_at)");
    exec(&mut conn, "CREATE INDEX ON bench_audit_ab (occurred_at)");
    let mut out = serde_json::Map::new();
    for (name, lock, sync) in [
        ("lock, durable", true, true),
        ("no lock, durable", false, true),
        ("lock, sync off", true, false),
        ("no lock, sync off", false, false),
    ] {
        let deadline = Instant::now() + Duration::from_secs(3);
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let url = url.to_owned();
                std::thread::spawn(move || {
                    let mut c = PgConnection::establish(&url).unwrap();
                    if !sync {
                        exec(&mut c, "SET synchronous_commit = off");
                    }
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let committed = c.transaction::<_, diesel::result::Error, _>(|c| {
                            if lock {
                                diesel::sql_query("SELECT pg_advisory_xact_lock(4851235497)").execute(c)?;
                            }
                            diesel::sql_query(
                                "INSERT INTO bench_audit_ab (occurred_at, actor, action, nhs_number, details, prev_hash, hash) \
                                 SELECT now(), 'user:1', 'access.alert_tab_opened', '9990000042', '{}', \
                                   coalesce((SELECT hash FROM bench_audit_ab ORDER BY id DESC LIMIT 1), \
                                     sha256(random()::text::bytea)), sha256((random()::text || clock_timestamp())::bytea)",
                            )
                            .execute(c)?;
                            Ok(())
                        })
                        .is_ok();
                        if committed {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        out.insert(name.into(), json!({"commits_per_s": total as f64 / 3.0}));
        exec(&mut conn, "TRUNCATE bench_audit_ab");
    }
    exec(&mut conn, "DROP TABLE bench_audit_ab");
    json!(out)
}

/// The database work before every page, at 16 concurrent requests: as it was (pool check-out test,
/// session read; check-out, account, role profiles; check-out, idle extension committed durably)
/// and as it is now (check-out, session read and extended in one statement without waiting for the
/// flush; check-out, account with its profiles in one statement).
fn preamble_ab(url: &str) -> serde_json::Value {
    let mut conn = PgConnection::establish(url).unwrap();
    let uid: i64 = dataset::count(&mut conn, "SELECT min(id) AS n FROM users WHERE username LIKE 'clin%'");
    let rid: i64 = dataset::count(&mut conn, &format!("SELECT min(id) AS n FROM role_profiles WHERE user_id = {uid}"));
    exec(&mut conn, "DELETE FROM sessions WHERE state ? 'bench_preamble'");
    let mut out = serde_json::Map::new();
    for (name, variant) in [
        ("earlier: 7 statements, durable extension", 0),
        ("earlier: 4 statements", 1),
        ("now: 2 statements (check-out ping, session with its principal, prepared)", 2),
    ] {
        let deadline = Instant::now() + Duration::from_secs(3);
        let threads: Vec<_> = (0..16)
            .map(|k| {
                let url = url.to_owned();
                std::thread::spawn(move || {
                    let mut c = PgConnection::establish(&url).unwrap();
                    let hash = format!(
                        "decode('{}', 'hex')",
                        hex::encode(cpis::auth::session_store::key_hash(&format!("bench-preamble-{k}-{variant}")))
                    );
                    exec(
                        &mut c,
                        &format!(
                            "INSERT INTO sessions (key_hash, user_id, state, expires_at, absolute_expires_at) \
                             VALUES ({hash}, {uid}, '{{\"uid\":\"{uid}\",\"rid\":\"{rid}\",\"bench_preamble\":\"1\"}}', \
                             now() + interval '1 hour', now() + interval '2 hours')"
                        ),
                    );
                    let mut n = 0u64;
                    let key = cpis::auth::session_store::key_hash(&format!("bench-preamble-{k}-{variant}"));
                    while Instant::now() < deadline {
                        if variant == 2 {
                            exec(&mut c, "SELECT 1");
                            let loaded = cpis::auth::session_store::load_and_extend(&mut c, key.clone(), Utc::now(), 1800)
                                .unwrap()
                                .expect("the bench session");
                            assert!(loaded.principal.is_some());
                        } else if variant == 1 {
                            exec(&mut c, "SELECT 1");
                            exec(
                                &mut c,
                                &format!(
                                    "UPDATE sessions SET expires_at = now() + interval '30 minutes' \
                                     FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed \
                                     WHERE key_hash = {hash} AND expires_at > now() AND absolute_expires_at > now() \
                                     RETURNING sessions.state"
                                ),
                            );
                            exec(&mut c, "SELECT 1");
                            cpis::auth::Principal::load(&mut c, uid, Some(rid)).unwrap();
                        } else {
                            exec(&mut c, "SELECT 1");
                            exec(
                                &mut c,
                                &format!(
                                    "SELECT state FROM sessions WHERE key_hash = {hash} AND expires_at > now() \
                                     AND absolute_expires_at > now()"
                                ),
                            );
                            exec(&mut c, "SELECT 1");
                            cpis::auth::users::account(&mut c, uid).unwrap();
                            cpis::auth::users::profiles(&mut c, uid).unwrap();
                            exec(&mut c, "SELECT 1");
                            exec(
                                &mut c,
                                &format!("UPDATE sessions SET expires_at = now() + interval '30 minutes' WHERE key_hash = {hash}"),
                            );
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        out.insert(
            name.into(),
            json!({"pages_per_s": total as f64 / 3.0, "ms_per_page_at_16": 16.0 * 3000.0 / total.max(1) as f64}),
        );
    }
    exec(&mut conn, "DELETE FROM sessions WHERE state ? 'bench_preamble'");
    json!(out)
}
