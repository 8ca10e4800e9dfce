//! CPU time per request, of the service and of PostgreSQL, read from `/proc` around an `--only`
//! run (issue 8). Throughput against the baseline moves with the machine's hour (one build gave
//! 0.24 to 0.37 of its baseline within an hour); the CPU each request costs moves far less, so a
//! change to a request's path is best judged by it, in alternating rounds.
//!
//! PostgreSQL's is every process of the bench cluster's postmaster (its backends, the WAL writer,
//! the checkpointer, autovacuum): what the requests cost the database, wherever it is spent. A
//! process that ends during the run takes its CPU with it (the service's pool keeps its
//! connections, so its backends live through the run).

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
        let service = seconds(service)?;
        let mut postgres = seconds(postmaster)?;
        for pid in children_of(postmaster) {
            postgres += seconds(pid).unwrap_or(0.0);
        }
        Some(Used { service, postgres })
    }

    /// Microseconds of CPU per request, service and PostgreSQL, from `self` to `later`.
    pub fn per_request(&self, later: &Used, requests: usize) -> (f64, f64) {
        let n = requests.max(1) as f64;
        ((later.service - self.service) * 1e6 / n, (later.postgres - self.postgres) * 1e6 / n)
    }
}

/// A process's user and system CPU time in seconds (`/proc/<pid>/stat`, fields 14 and 15).
fn seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (utime, stime) = times(&stat)?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// The user and system time (in clock ticks) of a `/proc/<pid>/stat` line, and its parent's pid:
/// the fields after the command's closing parenthesis (the command may hold spaces and `)`).
fn fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn times(stat: &str) -> Option<(u64, u64)> {
    let f = fields(stat)?;
    // After the command: state (field 3) is f[0], so field n is f[n - 3].
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

fn parent(stat: &str) -> Option<u32> {
    fields(stat)?.get(1)?.parse().ok()
}

/// The pids whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parent(&s)) == Some(ppid))
        .collect()
}

/// The cluster's postmaster: the parent of the backend serving `pid_of_backend` (a connection's
/// `pg_backend_pid()`).
pub fn postmaster_of(backend: u32) -> Option<u32> {
    parent(&std::fs::read_to_string(format!("/proc/{backend}/stat")).ok()?)
}
