//! The real `cpis serve` binary as a child process, for tests of what only a real process shows:
//! its logs, and what survives when it is killed.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::StatusCode;

use super::{Client, TestDatabase};

/// How long `cpis serve` may take to answer `/health` (it migrates first).
const STARTUP: Duration = Duration::from_secs(30);

/// `cpis serve` as a child process, logging JSON at debug level to a file. Dropping it kills the
/// process, so a failed assertion never leaves it running.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    dir: PathBuf,
}

impl Server {
    pub fn start(db: &TestDatabase) -> Server {
        Server::start_with(&db.url, &[])
    }

    /// Starts on the database at `database_url`, with `env` set after the defaults (so it may
    /// override them, e.g. `("CPIS_SCHEDULER", "true")`).
    pub fn start_with(database_url: &str, env: &[(&str, &str)]) -> Server {
        let dir = std::env::temp_dir().join(format!("cpis-logs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create a directory for the log");
        let log = dir.join("cpis.log");
        let file = File::create(&log).expect("create the log file");
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            listener.local_addr().unwrap()
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_cpis"));
        command
            .args(["serve", "--bind", &addr.to_string()])
            .env("DATABASE_URL", database_url)
            .env("CPIS_LOG", "debug")
            .env("CPIS_LOG_FORMAT", "json")
            .env("CPIS_STATIC_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
            .env("CPIS_SECURE_COOKIES", "false")
            .env("CPIS_WORKERS", "1")
            // Scheduled jobs would write to the database on their own; tests that want them start them.
            .env("CPIS_SCHEDULER", "false")
            .env("CPIS_DB_POOL_SIZE", "4")
            .env("CPIS_MAIL_DIR", dir.join("mail"))
            .env_remove("CPIS_COOKIE_KEY")
            .env_remove("CPIS_SESSION_IDLE_MINUTES")
            .env_remove("CPIS_SESSION_ABSOLUTE_HOURS")
            .env_remove("CPIS_SMTP_URL")
            .env_remove("CPIS_DB_TIMEOUT_SECS")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("share the log file"))
            .stderr(file);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start cpis serve");
        Server { child, addr, log, dir }
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://{}", self.addr),
        }
    }

    /// Waits until `/health` answers 200, failing with the log if the process exits or
    /// `STARTUP` passes.
    pub async fn wait_until_healthy(&mut self) {
        let started = Instant::now();
        let c = self.client();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cpis serve exited ({status}):\n{}", self.log());
            }
            let res = c.http.get(format!("{}/health", c.base)).timeout(Duration::from_secs(2)).send().await;
            if res.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                started.elapsed() < STARTUP,
                "cpis serve did not answer /health within {STARTUP:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process at once (SIGKILL: no graceful shutdown), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM: actix's graceful shutdown) and waits, bounded, for it to
    /// exit; returns whether it exited by itself.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while sent && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// Kills the process and returns everything it wrote.
    pub fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
