//! Firefox for the browser tests, driven over Marionette: Debian packages
//! Firefox ESR (`firefox-esr`) but not geckodriver, and Marionette is the
//! protocol geckodriver itself speaks to Firefox: length-prefixed JSON over
//! one loopback TCP connection, carrying the W3C WebDriver commands
//! (`WebDriver:Navigate`, `WebDriver:ExecuteScript`, ...) with the same
//! arguments and results. Every read has a deadline.
//!
//! Firefox is kept on loopback: the profile points every proxy at a closed
//! loopback port (loopback itself excepted), and turns off the services
//! that call out on start (updates, telemetry, safe browsing, remote
//! settings, captive-portal and connectivity checks, DNS over HTTPS,
//! prefetching), so no request can leave 127.0.0.0/8.

#![allow(dead_code)] // each test binary uses a subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::webdriver::free_port;

pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// How long one command may take (a script may wait for the page).
const COMMAND_DEADLINE: Duration = Duration::from_secs(90);

pub struct Marionette {
    firefox: Child,
    stream: BufReader<TcpStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// The profile's preferences: Marionette on `port`, downloads to
/// `downloads`, and nothing that reaches beyond loopback.
fn user_js(port: u16, downloads: &Path, blackhole: u16) -> String {
    let s = |v: &str| serde_json::to_string(v).expect("string");
    let prefs: Vec<(&str, String)> = vec![
        ("marionette.port", port.to_string()),
        ("browser.download.dir", s(&downloads.display().to_string())),
        ("browser.download.folderList", "2".into()),
        ("browser.download.useDownloadDir", "true".into()),
        (
            "browser.download.always_ask_before_handling_new_types",
            "false".into(),
        ),
        ("network.proxy.type", "1".into()),
        ("network.proxy.http", s("127.0.0.1")),
        ("network.proxy.http_port", blackhole.to_string()),
        ("network.proxy.ssl", s("127.0.0.1")),
        ("network.proxy.ssl_port", blackhole.to_string()),
        ("network.proxy.no_proxies_on", s("localhost, 127.0.0.1")),
        ("network.proxy.allow_hijacking_localhost", "false".into()),
        ("network.trr.mode", "5".into()),
        ("network.dns.disablePrefetch", "true".into()),
        ("network.prefetch-next", "false".into()),
        ("network.http.speculative-parallel-limit", "0".into()),
        ("network.captive-portal-service.enabled", "false".into()),
        ("network.connectivity-service.enabled", "false".into()),
        ("app.update.disabledForTesting", "true".into()),
        ("app.normandy.enabled", "false".into()),
        ("browser.safebrowsing.malware.enabled", "false".into()),
        ("browser.safebrowsing.phishing.enabled", "false".into()),
        ("browser.safebrowsing.downloads.enabled", "false".into()),
        ("browser.safebrowsing.update.enabled", "false".into()),
        ("browser.shell.checkDefaultBrowser", "false".into()),
        ("browser.startup.homepage_override.mstone", s("ignore")),
        ("browser.startup.page", "0".into()),
        ("browser.newtabpage.enabled", "false".into()),
        ("browser.search.update", "false".into()),
        ("datareporting.policy.dataSubmissionEnabled", "false".into()),
        ("datareporting.healthreport.uploadEnabled", "false".into()),
        ("toolkit.telemetry.enabled", "false".into()),
        ("toolkit.telemetry.server", s("http://127.0.0.1:1/")),
        ("services.settings.server", s("http://127.0.0.1:1/")),
        ("extensions.update.enabled", "false".into()),
        ("extensions.blocklist.enabled", "false".into()),
        ("dom.push.connection.enabled", "false".into()),
        ("media.gmp-manager.url", s("http://127.0.0.1:1/")),
        ("geo.provider.network.url", s("http://127.0.0.1:1/")),
    ];
    prefs
        .iter()
        .map(|(k, v)| format!("user_pref({}, {v});\n", s(k)))
        .collect()
}

impl Marionette {
    /// A headless Firefox ESR whose downloads go to `downloads`.
    pub fn start(downloads: &Path) -> Marionette {
        assert!(
            Path::new(FIREFOX).is_file(),
            "{FIREFOX} is missing: install the Debian package firefox-esr (scripts/test.sh does)"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        std::fs::write(
            profile.path().join("user.js"),
            user_js(port, downloads, free_port()),
        )
        .expect("write user.js");
        let firefox = Command::new(FIREFOX)
            .args(["--headless", "--marionette", "--no-remote", "--profile"])
            .arg(profile.path())
            .args(["--window-size", "1100,1400"])
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start firefox-esr");
        let deadline = Instant::now() + Duration::from_secs(60);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "Marionette did not listen: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        stream
            .set_read_timeout(Some(COMMAND_DEADLINE))
            .expect("read timeout");
        let mut m = Marionette {
            firefox,
            stream: BufReader::new(stream),
            next_id: 0,
            _profile: profile,
        };
        let hello = m.read_message();
        assert_eq!(hello["marionetteProtocol"], 3, "Marionette hello: {hello}");
        m.command(
            "WebDriver:NewSession",
            json!({"capabilities": {"alwaysMatch": {"acceptInsecureCerts": false}}}),
        );
        m.command(
            "WebDriver:SetTimeouts",
            json!({"script": 60_000, "pageLoad": 60_000}),
        );
        m
    }

    fn read_message(&mut self) -> Value {
        let mut len = Vec::new();
        self.stream
            .read_until(b':', &mut len)
            .expect("Marionette message length");
        let len: usize = std::str::from_utf8(&len[..len.len().saturating_sub(1)])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad Marionette length {len:?}"));
        assert!(len <= 64 << 20, "Marionette message of {len} bytes");
        let mut body = vec![0; len];
        self.stream
            .read_exact(&mut body)
            .expect("Marionette message");
        serde_json::from_slice(&body).expect("Marionette sends JSON")
    }

    /// Sends one command and returns its result (`value` unwrapped where
    /// the result is `{"value": ...}`, as the WebDriver HTTP API does).
    pub fn command(&mut self, name: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::to_string(&json!([0, id, name, params])).expect("encode");
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{}:{msg}", msg.len()).as_bytes())
            .unwrap_or_else(|e| panic!("Marionette {name}: {e}"));
        let reply = self.read_message();
        assert_eq!(reply[0], 1, "{name}: not a response: {reply}");
        assert_eq!(reply[1], id, "{name}: response to another command: {reply}");
        assert!(reply[2].is_null(), "{name}: {}", reply[2]);
        let result = reply[3].clone();
        match result.get("value") {
            Some(v) if result.as_object().is_some_and(|o| o.len() == 1) => v.clone(),
            _ => result,
        }
    }
}

impl Drop for Marionette {
    fn drop(&mut self) {
        let _ = self.firefox.kill();
        let _ = self.firefox.wait();
    }
}
