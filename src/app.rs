//! The application state and the HTTP server.

use std::sync::Arc;

use actix_session::config::{BrowserSession, TtlExtensionPolicy};
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration, Key, SameSite};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::audit::chainer::Chainer;
use crate::auth::session_cache::SessionCache;
use crate::auth::session_store::PgSessionStore;
use crate::config::Config;
use crate::cpis::recorder::AccessRecorder;
use crate::cpis::reference_names::ReferenceNames;
use crate::db::DbPool;
use crate::monitoring::{self, metrics::Metrics};
use crate::routes::{self, RouteTable};
use crate::web::{home, middleware};

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
    pub config: Config,
    pub routes: RouteTable,
    /// Request counts per area since the monitor last wrote them (CP-IS078).
    pub metrics: Arc<Metrics>,
    /// Records openings of the alert tab in batches, with connections of its own.
    pub recorder: AccessRecorder,
    /// The job role and organisation names the access history shows, held by this instance.
    pub names: Arc<ReferenceNames>,
    /// The sessions this instance remembers, kept true by PostgreSQL's announcements
    /// (`CPIS_SESSION_CACHE`, src/auth/session_cache.rs).
    pub sessions: Option<Arc<SessionCache>>,
    /// Links a large upload's pending audit entries into the chain after it has been answered,
    /// with a connection of its own.
    pub chainer: Chainer,
}

impl AppState {
    pub fn new(pool: DbPool, config: Config) -> AppState {
        let threads = config.recorder_threads.max(1);
        let names = Arc::new(ReferenceNames::default());
        let sessions = config.session_cache.then(|| SessionCache::start(&config.database_url));
        // Connections of its own for each recording thread and the tab thread, and one for its flusher.
        let recorder = AccessRecorder::start(&config, threads, names.clone(), sessions.clone());
        let chainer = Chainer::start(crate::db::pool_of(&config, 1));
        AppState {
            pool,
            config,
            routes: RouteTable::new(),
            metrics: Arc::new(Metrics::new()),
            recorder,
            names,
            sessions,
            chainer,
        }
    }

    /// Runs `f`, a change to the account `user_id` ([`crate::db::run`]), then forgets the account's
    /// sessions here, without waiting for PostgreSQL's announcement (src/auth/session_cache.rs):
    /// CP-IS059's disabled account is signed out at its very next request on this instance.
    /// Forgotten whatever `f` returned: a change that did not commit changed nothing, and the
    /// sessions are read again.
    pub async fn change_account<T, F>(&self, user_id: i64, f: F) -> Result<T, crate::error::AppError>
    where
        F: FnMut(&mut diesel::PgConnection) -> Result<T, crate::error::AppError> + Send + 'static,
        T: Send + 'static,
    {
        let changed = crate::db::run(&self.pool, f).await;
        if let Some(sessions) = &self.sessions {
            sessions.forget_user(user_id);
        }
        changed
    }

    /// Forgets an endpoint token this instance revoked, without waiting for PostgreSQL's
    /// announcement (src/auth/session_cache.rs): CP-NHS018's revoked token is refused at its very
    /// next use on this instance.
    pub fn forget_token(&self, token_id: i64) {
        if let Some(sessions) = &self.sessions {
            sessions.forget_token(token_id);
        }
    }
}

/// The session cookie: HttpOnly, SameSite=Strict; Secure and `__Host-` prefixed under TLS.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-cpis-session"
    } else {
        "cpis-session"
    }
}

/// Builds and starts the server on an already-bound listener (so tests can bind port 0), with the
/// monitor that probes the database and writes the request counts (CP-IS078). Call it inside an
/// actix system.
pub fn server(state: AppState, listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let cookie_key = cookie_key(&state.config);
    let workers = state.config.workers;
    let blocking = blocking_threads(state.config.db_pool_size);
    monitoring::probe::spawn(state.pool.clone(), state.metrics.clone(), state.config.monitor_interval);
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let config = &data.config;
        let store = PgSessionStore::new(data.pool.clone(), config.session_absolute, config.session_idle)
            .remembering(data.sessions.clone());
        let sessions = SessionMiddleware::builder(store, cookie_key.clone())
            .cookie_name(session_cookie_name(config.secure_cookies).into())
            .cookie_secure(config.secure_cookies)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Strict)
            .cookie_path("/".into())
            .cookie_content_security(actix_session::config::CookieContentSecurity::Signed)
            .session_lifecycle(
                BrowserSession::default()
                    .state_ttl(Duration::seconds(config.session_idle.as_secs() as i64))
                    // Loading a session extends its idle expiry (src/auth/session_store.rs), so an
                    // unchanged request needs no second write.
                    .state_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
            )
            .build();
        App::new()
            .app_data(data.clone())
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .app_data(web::PathConfig::default().error_handler(|_, _| {
                crate::error::AppError::NotFound("The page you asked for does not exist.".into()).into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                crate::error::AppError::BadRequest(format!("The address could not be read: {e}")).into()
            }))
            .wrap(from_fn(middleware::authorize))
            .wrap(sessions)
            .wrap(from_fn(middleware::security_and_logging))
            .configure(routes::configure)
            .service(home::static_files(&config.static_dir))
            .default_service(web::to(home::not_found))
    });
    let server = if workers > 0 { server.workers(workers) } else { server };
    let server = server.worker_max_blocking_threads(blocking);
    let server = server.listen(listener)?.shutdown_timeout(5).run();
    Ok(server)
}

/// How many threads each worker may run its blocking work on (`db::run`, the session store): as
/// many as the pool has connections, since nearly all of that work holds one (static files are
/// read on the worker, `home::static_files`). actix's default (512 shared out among the workers)
/// let 160 users arriving together start about 140 threads, each waiting for one of 16
/// connections and each keeping memory of its own; beyond this many, work waits in the worker's
/// queue instead, in the order it came, and the pool's timeout counts from when it was queued
/// (`db::checkout_deadline`), so an outage is still a 503 within that timeout. The cap is per
/// worker: with several workers, more threads than connections can wait.
pub fn blocking_threads(pool_size: u32) -> usize {
    (pool_size as usize).max(4)
}

/// The key that signs the session cookie. The cookie carries only a random 256-bit session key
/// whose hash the server looks up, so the signature is a second line, not the secret: every
/// instance must share it, so it comes from `CPIS_COOKIE_KEY` or, when unset, is derived from the
/// database URL (instances on one database then agree).
fn cookie_key(config: &Config) -> Key {
    use sha2::{Digest, Sha512};
    let master = match &config.cookie_key {
        Some(k) => Sha512::digest(k.as_bytes()),
        None => Sha512::digest(format!("cpis-session-cookie:{}", config.database_url).as_bytes()),
    };
    Key::derive_from(&master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_runs_blocking_work_on_as_many_threads_as_the_pool_has_connections() {
        assert_eq!(blocking_threads(16), 16);
        assert_eq!(blocking_threads(40), 40);
        // A tiny pool still gets a few.
        assert_eq!(blocking_threads(1), 4);
    }
}
