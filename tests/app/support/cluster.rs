//! A private PostgreSQL cluster for one test, for tests that stop the database: its own directory
//! (`.cpis/pg-<name>`) and a free loopback port, started and stopped by `scripts/pg-cluster` and
//! `scripts/pg-cluster-stop` (which run initdb and the server as the `postgres` user when root).
//! The shared test cluster (port 54330) is never touched. Dropping the cluster stops it and removes
//! its directory, so a failed assertion never leaves it running.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;

/// The shared test cluster's port: a private cluster never uses it.
const SHARED_PORT: u16 = 54330;

pub struct PrivateCluster {
    name: String,
    pub port: u16,
    dir: PathBuf,
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// A loopback port nobody listens on just now.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port").local_addr().unwrap().port();
        if port != SHARED_PORT {
            return port;
        }
    }
}

impl PrivateCluster {
    /// Creates and starts a fast (fsync off) cluster on a free loopback port.
    pub fn start() -> PrivateCluster {
        let name = format!("resilience-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cpis").join(format!("pg-{name}"));
        let cluster = PrivateCluster { name, port: free_port(), dir };
        cluster.run_start();
        cluster
    }

    fn run_start(&self) {
        assert_ne!(self.port, SHARED_PORT, "a private cluster never takes the shared cluster's port");
        let out = Command::new(script("pg-cluster"))
            .args([&self.name, &self.port.to_string(), "--fast"])
            .output()
            .expect("run scripts/pg-cluster");
        assert!(
            out.status.success(),
            "scripts/pg-cluster {} {} failed:\n{}",
            self.name,
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of `database` in this cluster (127.0.0.1 only).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database migrated and seeded with the reference data and the demo population.
    pub fn demo_database(&self, name: &str) -> String {
        let mut admin = PgConnection::establish(&self.url("postgres")).expect("connect to the private cluster");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).expect("create a database");
        let url = self.url(name);
        let mut conn = PgConnection::establish(&url).expect("connect to the new database");
        cpis::db::migrate(&mut conn).expect("migrations apply");
        cpis::seed::reference::load(&mut conn).expect("reference data loads");
        cpis::seed::demo::load(&mut conn, chrono::Utc::now()).expect("demo data loads");
        url
    }

    /// Whether the server accepts connections on its port.
    pub fn is_listening(&self) -> bool {
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_millis(500)).is_ok()
    }

    /// Stops the server at once (`pg_ctl -m fast`: open connections are terminated) and waits
    /// until it no longer listens.
    pub fn stop(&self) {
        let _ = Command::new(script("pg-cluster-stop")).arg(&self.name).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.is_listening() {
            assert!(Instant::now() < deadline, "the private cluster {} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn restart(&self) {
        self.run_start();
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(script("pg-cluster-stop")).arg(&self.name).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
