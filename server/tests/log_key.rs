//! The log's signing key against what the log already signed (issue 9
//! item 5), with the real server binary: a key is created only for an empty
//! log; a missing or different key for a log that has signed checkpoints is
//! refused with a one-line error naming the key that signed them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{dev_nsm, entry, submit_to, Server};

/// Runs the server on `data_dir` expecting it to refuse to start.
fn start_refused(data_dir: &Path, root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attestlog-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--origin", "test.attestlog/log"])
        .arg("--trust-root")
        .arg(root)
        .env("RUST_LOG", "error")
        .output()
        .expect("run attestlog-server")
}

/// `name+keyid` of a verifier key `name+keyid+base64`.
fn key_label(verifier_key: &str) -> String {
    let parts: Vec<&str> = verifier_key.splitn(3, '+').collect();
    format!("{}+{}", parts[0], parts[1])
}

/// The one `error:` line on stderr (nothing else is printed on refusal).
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    lines[0].to_string()
}

#[test]
fn missing_or_wrong_key_for_a_signed_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let key = data.join("log.key");

    // An empty log gets a new key, mode 0600.
    let mut server = Server::start(&data, &root, &[]);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = reqwest::blocking::Client::new();
    for n in 0..3 {
        let (status, answer) = submit_to(&client, &server.url, &entry(&nsm, n)).unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    assert!(server.terminate().success());
    let signed_by = key_label(&server.verifier_key);

    // The key moved away: refused, and no new key is written.
    let moved = dir.path().join("log.key.moved");
    std::fs::rename(&key, &moved).unwrap();
    let out = start_refused(&data, &root);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.starts_with("error: log_key_missing: the log has 3 entries signed by key "),
        "{line}"
    );
    assert!(line.contains(&signed_by), "{line} should name {signed_by}");
    assert!(line.contains(&key.display().to_string()), "{line}");
    assert!(!key.exists(), "a key was created for a non-empty log");

    // Another log's key (same origin) in its place: refused too.
    let other = dir.path().join("other");
    let mut other_server = Server::start(&other, &root, &[]);
    assert!(other_server.terminate().success());
    std::fs::copy(other.join("log.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = start_refused(&data, &root);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.starts_with("error: log_key_mismatch: key file "),
        "{line}"
    );
    assert!(
        line.contains(&key_label(&other_server.verifier_key)),
        "{line}"
    );
    assert!(line.contains(&signed_by), "{line} should name {signed_by}");

    // The right key back: the log serves again, with the same key.
    std::fs::rename(&moved, &key).unwrap();
    let server = Server::start(&data, &root, &[]);
    assert_eq!(key_label(&server.verifier_key), signed_by);
    let info: serde_json::Value = client
        .get(format!("{}/v1/log", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["tree_size"], 3, "{info}");
}

#[test]
fn a_log_that_signed_only_its_empty_checkpoint_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &root, &[]);
    assert!(server.terminate().success());
    std::fs::remove_file(data.join("log.key")).unwrap();
    let out = start_refused(&data, &root);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(line.starts_with("error: log_key_missing: the log has 0 entries signed by key "));
    assert!(line.contains(&key_label(&server.verifier_key)), "{line}");
}
