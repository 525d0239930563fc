//! Helpers shared by the browser tests: base64, the screenshot folder, and
//! opening the page fresh.

#![allow(dead_code)] // each test binary uses a subset

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;

use super::webdriver::Browser;

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn shots_dir() -> PathBuf {
    let dir = match std::env::var_os("ATTESTLOG_SCREENSHOTS") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("attestlog-explorer-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let _ = writeln!(std::io::stderr(), "screenshots in {}", dir.display());
    dir
}

/// Opens `url` fresh and waits until the page has verified its head.
pub fn open(b: &Browser, url: &str) {
    b.goto("about:blank");
    b.goto(url);
    b.wait(
        "document.body.dataset.ready === 'true'",
        "the page to start",
    );
}
