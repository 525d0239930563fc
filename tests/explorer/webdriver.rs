//! A minimal W3C WebDriver client for the browser tests: it starts the
//! Debian `chromedriver` on a free loopback port, opens one headless
//! `/usr/bin/chromium` session, and drives it over HTTP (navigate, run
//! scripts, screenshots). Every call has a deadline. A missing browser or
//! driver is a test failure naming the package, never a skip.

#![allow(dead_code)] // each test binary uses a subset

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Browser {
    /// A browser whose downloads go to `downloads`.
    pub fn start(downloads: &Path) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).is_file(),
                "{path} is missing: install the Debian package {package} (scripts/test.sh does)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser
            .http
            .get(format!("{}/status", browser.base))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .and_then(|v| v["value"]["ready"].as_bool())
            != Some(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,1400"],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false
                }
            }
        }}});
        let v = browser.call("POST", "/session", caps);
        let id = v["sessionId"].as_str().expect("session id").to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let res = req
            .send()
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let status = res.status();
        let v: Value = res.json().expect("webdriver answers JSON");
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` as an async function body: it gets `arguments` and
    /// must call `arguments[arguments.length - 1]` with its result.
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": args }),
        )
    }

    /// Runs `script` (a function body that `return`s) synchronously.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
    }

    /// Polls `expr` (a JS expression) until it is truthy; returns its value.
    pub fn wait(&self, expr: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.exec(&format!("return ({expr}) || null;"), json!([]));
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.exec("return document.body.innerText;", json!([]));
                panic!(
                    "timed out waiting for {what}; page text:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot base64"))
            .expect("screenshot decodes");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
