//! Every setting, read from the environment. Each has a default that works on a developer's machine.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the PostgreSQL database (required; the scripts start a private cluster when unset).
    pub database_url: String,
    /// `CPIS_DB_POOL_SIZE` (default 16): connections per `serve` instance.
    pub db_pool_size: u32,
    /// `CPIS_RECORDER_THREADS` (default 1): threads recording the FHIR API's openings in batches,
    /// each with a connection of its own besides the pool's (src/cpis/recorder.rs; the tab's
    /// openings have a thread of their own, which reads and records them). One records the most:
    /// its batches are the largest (measured, issue 8).
    pub recorder_threads: usize,
    /// `CPIS_DB_TIMEOUT_SECS` (default 3): how long a request waits for a connection before a 503.
    pub db_timeout: Duration,
    /// `CPIS_DB_IDLE_PING_MS` (default 1000): a pooled connection idle for longer is asked
    /// `SELECT 1` before use; one used more recently is used at once (src/db/manager.rs).
    pub db_idle_ping: Duration,
    /// `CPIS_DB_RANDOM_PAGE_COST` (default 1.1; `server` keeps the server's): the planner's cost of
    /// a page read out of order, set on each of the service's connections (src/db/manager.rs).
    pub db_random_page_cost: Option<f64>,
    /// `CPIS_SECURE_COOKIES` (default false): set when the service is reached over TLS (directly or
    /// behind a TLS-terminating proxy). Cookies then carry `Secure` and the `__Host-` prefix and
    /// responses carry HSTS. Plain http on 127.0.0.1 for local use works with it off.
    pub secure_cookies: bool,
    /// `CPIS_SESSION_IDLE_MINUTES` (default 30).
    pub session_idle: Duration,
    /// `CPIS_SESSION_ABSOLUTE_HOURS` (default 12).
    pub session_absolute: Duration,
    /// `CPIS_SESSION_CACHE` (default true): each instance remembers the sessions it has read and
    /// forgets them as PostgreSQL announces their changes (src/auth/session_cache.rs); false reads
    /// every session from the database on every request.
    pub session_cache: bool,
    /// `CPIS_LOG_FORMAT` (`text` or `json`, default `text`).
    pub log_json: bool,
    /// `CPIS_COOKIE_KEY`: secret for signing the session cookie, shared by every instance
    /// (default: derived from the database URL; see app.rs).
    pub cookie_key: Option<String>,
    /// `CPIS_SIGN_IN_LIMIT` (default 30): sign-in attempts allowed from one address in 10 minutes.
    pub sign_in_limit: u32,
    /// `CPIS_UPLOAD_LIMIT_MB` (default 100): the largest file an LA may upload; larger gets 413 from the
    /// mailbox API and a 400 page from the portal.
    pub upload_limit_bytes: usize,
    /// `CPIS_SCHEDULER` (default true): whether `serve` runs the job scheduler. Every instance may;
    /// exactly one runs each job.
    pub scheduler: bool,
    /// `CPIS_SMTP_URL` (default none): e.g. `smtp://127.0.0.1:2525` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://host:465`, with `user:password@` when the server wants them. When unset,
    /// e-mails are written as `.eml` files to `mail_dir`.
    pub smtp_url: Option<String>,
    /// `CPIS_MAIL_FROM` (default `cpis-notifications@example.org`).
    pub mail_from: String,
    /// `CPIS_MAIL_DIR` (default `.cpis/mail`): where `.eml` files go without SMTP.
    pub mail_dir: String,
    /// `CPIS_WORKERS` (default 0: one HTTP worker per core).
    pub workers: usize,
    /// `CPIS_STATIC_DIR` (default `static` beside the working directory).
    pub static_dir: String,
    /// `CPIS_AUDIT_KEY` (hex, at least 32 bytes) or `CPIS_AUDIT_KEY_FILE` (a file holding that hex):
    /// the key that signs the audit trail's checkpoints (CP-IS074). It lives in configuration,
    /// never in the database, so whoever can rewrite the database cannot re-sign a rewritten
    /// chain. Unset: no checkpoints are signed, and the verification page says so.
    pub audit_key: Option<AuditKey>,
    /// `CPIS_MONITOR_SECS` (default 60): how often each instance probes its database and writes
    /// its request counts (CP-IS078, src/monitoring/); 0 switches the monitor off.
    pub monitor_interval: Duration,
}

/// The audit checkpoint key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl AuditKey {
    /// The shortest key accepted: 256 bits.
    pub const MIN_BYTES: usize = 32;

    /// A key from its hex form (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> anyhow::Result<AuditKey> {
        let bytes = hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("the audit key is not hexadecimal"))?;
        if bytes.len() < Self::MIN_BYTES {
            anyhow::bail!("the audit key is {} bytes; it must be at least {}", bytes.len(), Self::MIN_BYTES);
        }
        Ok(AuditKey(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

fn audit_key_from_env() -> anyhow::Result<Option<AuditKey>> {
    if let Some(hex) = std::env::var("CPIS_AUDIT_KEY").ok().filter(|k| !k.is_empty()) {
        return AuditKey::from_hex(&hex).map(Some).map_err(|e| anyhow::anyhow!("CPIS_AUDIT_KEY: {e}"));
    }
    if let Some(path) = std::env::var("CPIS_AUDIT_KEY_FILE").ok().filter(|k| !k.is_empty()) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("CPIS_AUDIT_KEY_FILE={path:?} cannot be read: {e}"))?;
        return AuditKey::from_hex(&text).map(Some).map_err(|e| anyhow::anyhow!("CPIS_AUDIT_KEY_FILE: {e}"));
    }
    Ok(None)
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let database_url = std::env::var("DATABASE_URL").map_err(|_| {
            anyhow::anyhow!("DATABASE_URL is not set: set it, or use ./scripts/run which starts a private PostgreSQL")
        })?;
        Ok(Config {
            database_url,
            db_pool_size: env_parse("CPIS_DB_POOL_SIZE", 16)?,
            recorder_threads: match env_parse("CPIS_RECORDER_THREADS", 1)? {
                0 => anyhow::bail!("CPIS_RECORDER_THREADS must be at least 1"),
                n => n,
            },
            db_timeout: Duration::from_secs(env_parse("CPIS_DB_TIMEOUT_SECS", 3)?),
            db_idle_ping: Duration::from_millis(env_parse("CPIS_DB_IDLE_PING_MS", 1000)?),
            db_random_page_cost: random_page_cost_from_env()?,
            secure_cookies: env_parse("CPIS_SECURE_COOKIES", false)?,
            session_idle: Duration::from_secs(env_scaled("CPIS_SESSION_IDLE_MINUTES", 30, 60)?),
            session_absolute: Duration::from_secs(env_scaled("CPIS_SESSION_ABSOLUTE_HOURS", 12, 3600)?),
            session_cache: env_parse("CPIS_SESSION_CACHE", true)?,
            log_json: std::env::var("CPIS_LOG_FORMAT").is_ok_and(|v| v == "json"),
            workers: env_parse("CPIS_WORKERS", 0)?,
            scheduler: env_parse("CPIS_SCHEDULER", true)?,
            smtp_url: std::env::var("CPIS_SMTP_URL").ok().filter(|s| !s.is_empty()),
            mail_from: std::env::var("CPIS_MAIL_FROM").unwrap_or_else(|_| "cpis-notifications@example.org".into()),
            mail_dir: std::env::var("CPIS_MAIL_DIR").unwrap_or_else(|_| ".cpis/mail".into()),
            sign_in_limit: env_parse("CPIS_SIGN_IN_LIMIT", 30)?,
            upload_limit_bytes: usize::try_from(env_scaled("CPIS_UPLOAD_LIMIT_MB", 100, 1_048_576)?)
                .map_err(|_| anyhow::anyhow!("CPIS_UPLOAD_LIMIT_MB is too large for this machine"))?,
            cookie_key: std::env::var("CPIS_COOKIE_KEY").ok().filter(|k| !k.is_empty()),
            static_dir: std::env::var("CPIS_STATIC_DIR").unwrap_or_else(|_| "static".into()),
            audit_key: audit_key_from_env()?,
            monitor_interval: Duration::from_secs(env_parse("CPIS_MONITOR_SECS", 60)?),
        })
    }

    /// A configuration for the given database with every other setting at its default.
    pub fn for_database(database_url: &str) -> Config {
        Config {
            database_url: database_url.to_owned(),
            db_pool_size: 16,
            recorder_threads: 1,
            db_timeout: Duration::from_secs(3),
            db_idle_ping: crate::db::manager::IDLE_PING,
            db_random_page_cost: Some(crate::db::manager::RANDOM_PAGE_COST),
            secure_cookies: false,
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 3600),
            session_cache: true,
            log_json: false,
            cookie_key: None,
            workers: 0,
            scheduler: false,
            smtp_url: None,
            mail_from: "cpis-notifications@example.org".into(),
            mail_dir: std::env::temp_dir().join("cpis-mail").to_string_lossy().into_owned(),
            sign_in_limit: 30,
            upload_limit_bytes: 100 * 1_048_576,
            static_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/static").into(),
            audit_key: None,
            monitor_interval: Duration::from_secs(60),
        }
    }
}

/// A count of units (minutes, hours, MiB) read as a number of smaller ones (seconds, bytes); a
/// value too large to hold is a clear start-up error, not an overflow.
fn env_scaled(name: &str, default: u64, unit: u64) -> anyhow::Result<u64> {
    env_parse::<u64>(name, default)?
        .checked_mul(unit)
        .ok_or_else(|| anyhow::anyhow!("{name} is too large: choose a smaller value"))
}

/// `CPIS_DB_RANDOM_PAGE_COST`: a positive number, or `server` for the server's own setting.
fn random_page_cost_from_env() -> anyhow::Result<Option<f64>> {
    random_page_cost(std::env::var("CPIS_DB_RANDOM_PAGE_COST").ok().as_deref())
}

fn random_page_cost(value: Option<&str>) -> anyhow::Result<Option<f64>> {
    match value {
        None => Ok(Some(crate::db::manager::RANDOM_PAGE_COST)),
        Some("server") => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(cost) if cost.is_finite() && cost > 0.0 => Ok(Some(cost)),
            _ => anyhow::bail!("CPIS_DB_RANDOM_PAGE_COST={v:?} is not a positive number nor `server`"),
        },
    }
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_page_cost_is_a_positive_number_or_the_servers() {
        assert_eq!(random_page_cost(None).unwrap(), Some(1.1));
        assert_eq!(random_page_cost(Some("server")).unwrap(), None);
        assert_eq!(random_page_cost(Some("2")).unwrap(), Some(2.0));
        for bad in ["0", "-1", "NaN", "inf", "", "1.1; DROP TABLE patients", "Server"] {
            assert!(random_page_cost(Some(bad)).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn a_scaled_setting_too_large_to_hold_is_an_error_not_an_overflow() {
        // A name no other test or setting uses, so setting it races with nothing.
        let name = "CPIS_TEST_ONLY_SCALED_SETTING";
        assert_eq!(env_scaled(name, 30, 60).unwrap(), 1800);
        std::env::set_var(name, u64::MAX.to_string());
        let err = env_scaled(name, 30, 60).unwrap_err().to_string();
        std::env::remove_var(name);
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn audit_keys_are_hex_of_at_least_256_bits_and_never_printed() {
        let key = AuditKey::from_hex(&format!(" {}\n", "ab".repeat(32))).unwrap();
        assert_eq!(key.bytes().len(), 32);
        assert_eq!(format!("{key:?}"), "AuditKey(..)");
        assert!(AuditKey::from_hex(&"ab".repeat(31)).is_err());
        assert!(AuditKey::from_hex("not hex at all, not hex at all, not hex at all, not hex").is_err());
    }
}
