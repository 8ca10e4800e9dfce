//! Headless Chromium for the browser tests, driven over WebDriver by `/usr/bin/chromedriver`,
//! which the test starts on a free 127.0.0.1 port and kills when it is done.
//!
//! The WebDriver calls go over plain HTTP with reqwest (already a dev-dependency): fantoccini is
//! in Cargo.toml with `default-features = false` and no TLS feature, which leaves it with no
//! connector this crate can name (hyper-util is not a dependency), so it cannot connect.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long to wait for an element to appear or a page to load.
const WAIT: Duration = Duration::from_secs(10);

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one Chromium session. Dropping it ends the session and kills
/// the driver; `quit` does the same and reports errors.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    http: reqwest::Client,
    profile: PathBuf,
}

/// An element on the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile. Fails the test (never
    /// skips it) when Chromium or chromedriver is missing.
    pub async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "the browser tests need {path}: apt-get install chromium chromium-driver (missing: {package})"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let profile = std::env::temp_dir().join(format!("cpis-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("create a Chromium profile directory");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client for chromedriver");
        let mut browser = Browser { driver, port, session: String::new(), http, profile };
        browser.wait_until_driver_ready().await;
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": { "implicit": WAIT.as_millis() as u64, "pageLoad": 30_000, "script": 10_000 },
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--no-proxy-server",
                            "--window-size=1280,1000",
                            format!("--user-data-dir={}", browser.profile.display()),
                        ]
                    }
                }
            }
        });
        let created = browser.command(reqwest::Method::POST, "/session", Some(capabilities)).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver gave no session id: {created}"))
            .to_owned();
        browser
    }

    async fn wait_until_driver_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("{CHROMEDRIVER} exited at once ({status}) on port {}", self.port);
            }
            let url = format!("http://127.0.0.1:{}/status", self.port);
            if let Ok(res) = self.http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if let Ok(v) = res.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return;
                    }
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "{CHROMEDRIVER} did not answer on 127.0.0.1:{} within {WAIT:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One WebDriver command; returns its `value`, panics with the driver's message on error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{}", self.port, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = res.status();
        let v: Value = res.json().await.unwrap_or_else(|e| panic!("WebDriver {method} {path}: unreadable answer: {e}"));
        if !status.is_success() {
            panic!(
                "WebDriver {method} {path} failed ({status}): {} {}",
                v["value"]["error"].as_str().unwrap_or(""),
                v["value"]["message"].as_str().unwrap_or(&v.to_string())
            );
        }
        v["value"].clone()
    }

    async fn session_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{}", self.session, path), body).await
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session_command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn current_url(&self) -> String {
        self.session_command(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The current URL's path and query.
    pub async fn current_path(&self) -> String {
        let url = self.current_url().await;
        match url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned())) {
            Some(p) => p,
            None => url,
        }
    }

    /// Waits until the current path (without the query) is `path`: clicks that navigate return
    /// before the next page has always loaded.
    pub async fn wait_for_path(&self, path: &str) {
        self.wait_for_location(path, |current| current.split('?').next() == Some(path)).await
    }

    /// Waits until the current path and query contain `needle`: for a form that submits to the
    /// page it is on, where the path alone does not change.
    pub async fn wait_for_path_containing(&self, needle: &str) {
        self.wait_for_location(needle, |current| current.contains(needle)).await
    }

    async fn wait_for_location(&self, wanted: &str, reached: impl Fn(&str) -> bool) {
        let started = Instant::now();
        loop {
            let current = self.current_path().await;
            if reached(&current) && self.ready_state().await == "complete" {
                return;
            }
            if started.elapsed() > WAIT {
                let page =
                    self.script("return document.querySelector('main')?.innerText ?? document.body.innerText").await;
                panic!("expected to reach {wanted}, still on {current}, which shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready_state(&self) -> String {
        self.script("return document.readyState").await
    }

    /// Runs a script in the page; its result as text.
    pub async fn script(&self, script: &str) -> String {
        let v = self
            .session_command(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] })))
            .await;
        match v {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// The first element matching a CSS selector (waiting up to the implicit wait).
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .session_command(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css })))
            .await;
        Element(v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element for {css}: {v}")).to_owned())
    }

    /// Types into a field, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.session_command(reqwest::Method::POST, &format!("/element/{}/clear", e.0), None).await;
        self.session_command(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({ "text": text })))
            .await;
    }

    /// Chooses a file in an `<input type=file>`: chromedriver takes the file's absolute path as
    /// the keys sent to the input (no clearing first, which file inputs refuse).
    pub async fn choose_file(&self, css: &str, path: &Path) {
        let path = path.canonicalize().unwrap_or_else(|e| panic!("choose {}: {e}", path.display()));
        let e = self.find(css).await;
        self.session_command(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": path.display().to_string() })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.click_element(&e).await;
    }

    pub async fn click_element(&self, e: &Element) {
        self.session_command(reqwest::Method::POST, &format!("/element/{}/click", e.0), None).await;
    }

    /// The first link whose visible text is exactly `text` (waiting up to the implicit wait).
    pub async fn find_link(&self, text: &str) -> Element {
        let v = self
            .session_command(reqwest::Method::POST, "/element", Some(json!({ "using": "link text", "value": text })))
            .await;
        Element(v[ELEMENT].as_str().unwrap_or_else(|| panic!("no link reading {text:?}: {v}")).to_owned())
    }

    /// Clicks the first link whose visible text is exactly `text`.
    pub async fn click_link(&self, text: &str) {
        let e = self.find_link(text).await;
        self.click_element(&e).await;
    }

    /// The rendered text of the first element matching a CSS selector.
    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.element_text(&e).await
    }

    pub async fn element_text(&self, e: &Element) -> String {
        let v = self.session_command(reqwest::Method::GET, &format!("/element/{}/text", e.0), None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The cookies the browser holds for the current page, as WebDriver describes them
    /// (`name`, `value`, `secure`, `httpOnly`, `sameSite`, ...).
    pub async fn cookies(&self) -> Vec<Value> {
        self.session_command(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the whole page (not just the window), creating the directory.
    pub async fn screenshot_full_page(&self, path: &Path) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let (w, h) = (size["width"].as_f64().unwrap_or(1280.0), size["height"].as_f64().unwrap_or(1000.0));
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 }
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("a screenshot"))
            .expect("the screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.session_command(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({ "cmd": cmd, "params": params })))
            .await
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let session = std::mem::take(&mut self.session);
        if !session.is_empty() {
            self.command(reqwest::Method::DELETE, &format!("/session/{session}"), None).await;
        }
        // Drop kills chromedriver and removes the profile.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failed assertion: end the session so Chromium exits, with a blocking request
        // (no runtime here), then kill the driver by its handle.
        if !self.session.is_empty() {
            delete_session_blocking(self.port, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn delete_session_blocking(port: u16, session: &str) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_ok() {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
}

/// A loopback port nobody is listening on (bound, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// Where the browser tests save screenshots: `target/screenshots/NAME.png`.
pub fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots").join(format!("{name}.png"))
}
