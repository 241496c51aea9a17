//! A small WebDriver (W3C) client for the console's browser tests: Debian's `chromedriver`
//! driving headless `chromium`, over HTTP/1.1 on loopback. Only the commands the tests use.
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a test waits for the page to show something before it fails.
pub const PAGE_WAIT: Duration = Duration::from_secs(15);

/// A chromedriver process with one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// One HTTP request to chromedriver; returns the JSON body's `value`.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .map_err(|e| format!("write to chromedriver: {e}"))?;
    // chromedriver keeps the connection open whatever we ask: read by Content-Length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let (head, body) = loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read from chromedriver: {e}"))?;
        if n == 0 {
            return Err(format!(
                "chromedriver closed: {:?}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| format!("no Content-Length from chromedriver: {head}"))?;
        if raw.len() >= end + 4 + length {
            let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
            break (head, body);
        }
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 {
        return Err(format!("{method} {path}: {status} {}", v["value"]));
    }
    Ok(v["value"].clone())
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile. Panics, naming the
    /// packages, when they are missing: CI installs them (`.ci/run`).
    pub fn start(output: &Path) -> Browser {
        let driver_bin = find_program(&["chromedriver"]).expect(
            "chromedriver not found: install Debian's chromium and chromium-driver (.ci/run does)",
        );
        let chromium = find_program(&["chromium", "chromium-browser"])
            .expect("chromium not found: install Debian's chromium (.ci/run does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        std::fs::create_dir_all(output).expect("output folder");
        let log = std::fs::File::create(output.join("chromedriver.log")).expect("driver log");
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn chromedriver");
        let profile =
            std::env::temp_dir().join(format!("login-node-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match request(addr, "GET", "/status", None) {
                Ok(v) if v["ready"] == true => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                other => panic!("chromedriver not ready within 20 s: {other:?}"),
            }
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,860", "--hide-scrollbars",
                    format!("--user-data-dir={}", browser.profile.display()),
                ],
            },
        }}});
        let v = request(addr, "POST", "/session", Some(&caps)).expect("a browser session");
        browser.session = v["sessionId"].as_str().expect("session id").to_string();
        browser
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let full = format!("/session/{}{path}", self.session);
        request(self.addr, method, &full, body.as_ref())
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .expect("navigate");
    }

    fn find_now(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// The element matching `css`, waiting for it to appear.
    pub fn find(&self, css: &str) -> String {
        self.wait_for(&format!("element {css:?}"), || self.find_now(css))
    }

    /// Retries `probe` until it gives a value, or fails the test after [`PAGE_WAIT`].
    pub fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "the console did not show {what} within {PAGE_WAIT:?}; page text:\n{}",
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The visible text of the element matching `css` (now; empty if absent).
    pub fn text_now(&self, css: &str) -> String {
        self.find_now(css)
            .and_then(|id| self.cmd("GET", &format!("/element/{id}/text"), None).ok())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits until the element matching `css` shows text containing `needle`.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_for(&format!("{needle:?} in {css:?}"), || {
            let t = self.text_now(css);
            t.contains(needle).then_some(t)
        })
    }

    /// The whole page's visible text.
    pub fn page_text(&self) -> String {
        self.text_now("body")
    }

    /// Clicks the element matching `css` (waiting for it).
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// Types `text` into the element matching `css`, after clearing it.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})))
            .unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    /// Whether the element matching `css` is enabled (now).
    pub fn enabled(&self, css: &str) -> bool {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/enabled"), None)
            .map(|v| v == true)
            .unwrap_or(false)
    }

    /// Runs a script in the page; returns what it returns.
    pub fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .unwrap_or_else(|e| panic!("script {js:?}: {e}"))
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", None).expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// The browser console's messages since the last call (chromedriver's log endpoint).
    pub fn console_log(&self) -> Vec<String> {
        match self.cmd("POST", "/se/log", Some(json!({"type": "browser"}))) {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| format!("{} {}", e["level"], e["message"]))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.cmd("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
