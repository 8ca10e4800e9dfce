//! A running service on 127.0.0.1 with its own database, and an HTTP client that behaves like a
//! browser session (cookies, CSRF tokens read from the pages).

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::ServerHandle;
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use super::db::{Template, TestDatabase};
use cpis::app::{self, AppState};
use cpis::config::Config;

pub const PASSWORD: &str = cpis::seed::demo::DEMO_PASSWORD;

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDatabase,
    /// The sessions the service remembers (src/auth/session_cache.rs), when it does.
    pub sessions: Option<std::sync::Arc<cpis::auth::session_cache::SessionCache>>,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestApp {
    pub fn spawn(t: Template) -> TestApp {
        Self::spawn_with(t, |_| {})
    }

    pub fn spawn_with(t: Template, configure: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDatabase::new(t);
        let mut config = Config::for_database(&db.url);
        config.db_pool_size = 4;
        config.workers = 1;
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                let state = AppState::new(cpis::db::pool(&config), config);
                let sessions = state.sessions.clone();
                let server = app::server(state, listener).expect("start the server");
                tx.send((server.handle(), sessions)).unwrap();
                let _ = server.await;
            });
        });
        let (handle, sessions) = rx.recv().expect("the server starts");
        TestApp { addr, db, sessions, handle, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap(),
            base: format!("http://{}", self.addr),
        }
    }

    /// A client signed in as a demo persona; with several role profiles, the first one chosen.
    pub async fn signed_in(&self, username: &str) -> Client {
        let c = self.client();
        let res = c.sign_in(username, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "demo sign-in for {username}");
        if res.headers()["location"] == "/select-role" {
            let page = c.text("/select-role").await;
            let role = between(&page, "name=\"role\" type=\"radio\" value=\"", "\"").expect("a role to choose");
            let res = c.post_form("/select-role", &[("role", &role)]).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        }
        c
    }

    pub fn conn(&self) -> diesel::PgConnection {
        self.db.conn()
    }

    pub fn count(&self, sql: &str) -> i64 {
        super::db::count(&mut self.conn(), sql)
    }

    /// Runs `sql`, a change to the account `user_id`, on a connection of its own, as another
    /// instance would, and waits (at most 10 s) until this instance remembers no session of the
    /// account, nor its contact details. What is remembered is forgotten as the announcement of
    /// its change arrives (CP-IS059): a fraction of a millisecond after the commit on one host,
    /// longer on a busy one. The service's own handlers forget at once, without waiting for it.
    pub async fn change_account_elsewhere(&self, user_id: i64, sql: &str) {
        super::db::execute(&mut self.conn(), sql);
        let Some(cache) = self.sessions.as_ref() else { return };
        let start = std::time::Instant::now();
        while cache.remembers_user(user_id) || cache.remembers_contact(user_id) {
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "waited 10 s for the announcement of {sql}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The test's handle on the remembered sessions goes first; the service's own goes with its
        // thread, below, before the database is dropped.
        self.sessions.take();
        let handle = self.handle.clone();
        // Stop the server from outside its runtime, then wait for its thread.
        let _ = std::thread::spawn(move || futures_lite_block_on(handle.stop(false))).join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The text between two markers, first occurrence.
pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

/// The text of an HTML fragment: tags removed, askama's escapes undone, trimmed.
pub fn html_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#38;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{}", self.base, path)).send().await.expect("GET")
    }

    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// The page's CSRF token (every page carries the session's token).
    pub async fn csrf(&self) -> String {
        let page = self.text("/sign-in").await;
        between(&page, "name=\"csrf_token\" value=\"", "\"").expect("a CSRF token on the page")
    }

    /// Posts a form with the session's CSRF token added.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf().await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        self.http.post(format!("{}{}", self.base, path)).form(&form).send().await.expect("POST")
    }

    pub async fn sign_in(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_form("/sign-in", &[("username", username), ("password", password)]).await
    }
}
