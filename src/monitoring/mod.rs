//! CP-IS078: what the service measures about itself for the performance report. Every request is
//! counted per area with its latency and status ([`metrics`], fed by the outermost middleware), and
//! every minute each instance probes its database and writes its counts ([`probe`], a task the
//! server spawns). The report reads both tables (src/reports/performance.rs).

pub mod metrics;
pub mod probe;

use std::sync::OnceLock;

/// This process's name in `health_probes` and `request_minutes`: the host's name, the process id
/// and a random suffix (a process id is reused across containers), at most 100 characters.
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')).collect())
            .filter(|h: &String| !h.is_empty())
            .unwrap_or_else(|| "cpis".into());
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let host: String = host.chars().take(80).collect();
        format!("{host}-{}-{suffix}", std::process::id())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_instance_id_is_stable_within_a_process_and_fits_the_column() {
        let id = super::instance_id();
        assert_eq!(id, super::instance_id());
        assert!(!id.is_empty() && id.len() <= 100);
        assert!(id.contains(&std::process::id().to_string()));
    }
}
