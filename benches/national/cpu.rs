//! CPU time per request, of the service and of PostgreSQL, read from `/proc` around an `--only`
//! run (issue 8). Throughput against the baseline moves with the machine's hour (one build gave
//! 0.24 to 0.37 of its baseline within an hour); the CPU each request costs moves far less, so a
//! change to a request's path is best judged by it, in alternating rounds.
//!
//! PostgreSQL's is every process of the bench cluster's postmaster (its backends, the WAL writer,
//! the checkpointer, autovacuum's workers): what the requests cost the database, wherever it is
//! spent. A process that ends during the run is counted through the postmaster's reaped children's
//! time (`cutime`, `cstime`), so its CPU is neither lost nor taken away.

/// CPU seconds used so far by the service and by the cluster.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    service: f64,
    postgres: f64,
}

impl Used {
    /// What the service (`service`, its pid) and the cluster (`postmaster`, its pid) have used;
    /// `None` where `/proc` cannot tell (not Linux, or a process gone).
    pub fn now(service: u32, postmaster: u32) -> Option<Used> {
        let service = ticks_to_seconds(ticks(service)?.0)?;
        let (own, reaped) = ticks(postmaster)?;
        let mut postgres = ticks_to_seconds(own + reaped)?;
        for pid in children_of(postmaster) {
            postgres += ticks(pid).and_then(|(own, _)| ticks_to_seconds(own)).unwrap_or(0.0);
        }
        Some(Used { service, postgres })
    }

    /// Microseconds of CPU per request, service and PostgreSQL, from `self` to `later`.
    pub fn per_request(&self, later: &Used, requests: u64) -> (f64, f64) {
        let n = requests.max(1) as f64;
        ((later.service - self.service) * 1e6 / n, (later.postgres - self.postgres) * 1e6 / n)
    }
}

/// A process's own user and system time (`/proc/<pid>/stat` fields 14 and 15) and that of its
/// children that ended and were reaped (fields 16 and 17), in clock ticks. The fields are read
/// after the command's closing parenthesis (the command may hold spaces and `)`): the state,
/// field 3, is the first there, so field n is at n - 3.
fn ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(16)? + field(17)?))
}

/// Clock ticks as seconds.
fn ticks_to_seconds(ticks: u64) -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// The pids whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| super::proc_status(pid, "PPid:") == Some(u64::from(ppid)))
        .collect()
}

/// The cluster's postmaster: the parent of `backend` (a connection's `pg_backend_pid()`), when
/// both are PostgreSQL's processes on this machine. A server elsewhere, or in another pid
/// namespace, gives `None` rather than some other process's figures.
pub fn postmaster_of(backend: u32) -> Option<u32> {
    let is_postgres = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| matches!(c.trim(), "postgres" | "postmaster"))
    };
    let postmaster = u32::try_from(super::proc_status(backend, "PPid:")?).ok()?;
    (is_postgres(backend) && is_postgres(postmaster)).then_some(postmaster)
}
