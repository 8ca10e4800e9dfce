//! Structured logs. Nothing personal is logged anywhere: requests are logged by route pattern,
//! never by path or query, and errors by kind (docs/LOGGING.md).

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("CPIS_LOG").unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let builder = fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
