//! A minimal W3C WebDriver client for the browser tests: it starts the
//! Debian `chromedriver` on a free loopback port, opens one headless
//! `/usr/bin/chromium` session, and drives it over HTTP (navigate, run
//! scripts, screenshots); or it starts a headless Firefox ESR and sends the
//! same commands over Marionette (`marionette.rs`). Every call has a
//! deadline. A missing browser or driver is a test failure naming the
//! package, never a skip.

#![allow(dead_code)] // each test binary uses a subset

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::marionette::Marionette;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Which browser a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Debian's Chromium, through chromedriver.
    Chromium,
    /// Debian's Firefox ESR, through Marionette.
    Firefox,
}

pub struct Browser {
    transport: Transport,
}

enum Transport {
    WebDriver {
        driver: Child,
        base: String,
        http: reqwest::blocking::Client,
    },
    Marionette(Mutex<Marionette>),
}

/// A loopback port free now (for a driver or browser to listen on).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Browser {
    /// A Chromium whose downloads go to `downloads`.
    pub fn start(downloads: &Path) -> Browser {
        Self::start_engine(Engine::Chromium, downloads)
    }

    /// `engine` with its downloads going to `downloads`.
    pub fn start_engine(engine: Engine, downloads: &Path) -> Browser {
        match engine {
            Engine::Chromium => Self::chromium(downloads),
            Engine::Firefox => Browser {
                transport: Transport::Marionette(Mutex::new(Marionette::start(downloads))),
            },
        }
    }

    fn chromium(downloads: &Path) -> Browser {
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
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("{base}/status"))
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
        let mut browser = Browser {
            transport: Transport::WebDriver { driver, base, http },
        };
        let v = browser.call("POST", "/session", caps);
        let id = v["sessionId"].as_str().expect("session id").to_string();
        if let Transport::WebDriver { base, .. } = &mut browser.transport {
            *base = format!("{base}/session/{id}");
        }
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let Transport::WebDriver { base, http, .. } = &self.transport else {
            unreachable!("HTTP WebDriver call on Marionette");
        };
        let url = format!("{base}{path}");
        let req = match method {
            "GET" => http.get(&url),
            "DELETE" => http.delete(&url),
            _ => http.post(&url).json(&body),
        };
        let res = req
            .send()
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let status = res.status();
        let v: Value = res.json().expect("webdriver answers JSON");
        assert!(status.is_success(), "webdriver {path}: {status} {v}");
        v["value"].clone()
    }

    /// One command: the WebDriver HTTP route, or the Marionette command.
    fn command(&self, method: &str, path: &str, marionette: &str, body: Value) -> Value {
        match &self.transport {
            Transport::WebDriver { .. } => self.call(method, path, body),
            Transport::Marionette(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .command(marionette, body),
        }
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", "WebDriver:Navigate", json!({ "url": url }));
    }

    /// Runs `script` as an async function body: it gets `arguments` and
    /// must call `arguments[arguments.length - 1]` with its result.
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/async",
            "WebDriver:ExecuteAsyncScript",
            json!({ "script": script, "args": args }),
        )
    }

    /// Runs `script` (a function body that `return`s) synchronously.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            "WebDriver:ExecuteScript",
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
        let v = self.command(
            "GET",
            "/screenshot",
            "WebDriver:TakeScreenshot",
            json!({"full": false, "hash": false}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot base64"))
            .expect("screenshot decodes");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Transport::WebDriver { driver, base, http } = &mut self.transport {
            let _ = http.delete(base.as_str()).send();
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}
