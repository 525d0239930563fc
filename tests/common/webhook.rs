//! Driving the host's GitHub webhook (`--webhook-listen`) as GitHub does:
//! HMAC-SHA256-signed deliveries, and reading the host's job lines.

use std::io::{BufReader, Lines};
use std::process::ChildStdout;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secret the tests' webhook secret files hold.
pub const SECRET: &str = "webhook secret for the test";

/// `X-Hub-Signature-256` for `body` under [`SECRET`].
pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs one delivery; returns the status and the answer's body.
pub fn post(url: &str, event: &str, body: &[u8], signature: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .header("X-GitHub-Event", event)
        .header("X-Hub-Signature-256", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .expect("POST webhook");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// The next line of the host's output that starts with one of `prefixes`.
pub fn next_line_with(lines: &mut Lines<BufReader<ChildStdout>>, prefixes: &[&str]) -> String {
    for line in lines.by_ref() {
        let line = line.expect("host stdout");
        if prefixes.iter().any(|p| line.starts_with(p)) {
            return line;
        }
    }
    panic!("the host exited before printing a line starting with one of {prefixes:?}");
}

/// The next line of the host's job log that reports a finished job.
pub fn next_job_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    next_line_with(lines, &["built ", "build of "])
}

/// The webhook URL from the host's first line (`webhook on URL; ...`).
pub fn webhook_url(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    let first = lines.next().unwrap().unwrap();
    first
        .strip_prefix("webhook on ")
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("unexpected first line {first}"))
        .to_string()
}
