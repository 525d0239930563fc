//! The real `attestlog-server` binary on the real PostgreSQL at
//! 127.0.0.1:5432 (`--storage postgres://...`), each test on a database of
//! its own: submissions with the simulated NSM, a restart that serves the
//! same checkpoint, tiles, bundles and proofs, the log-key checks, and a
//! PostgreSQL that cannot be reached at start.

mod common;
mod postgres_common;

use std::process::{Command, Output};

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use attestlog::tlog::note::NoteVerifierKey;
use common::{b64d, dev_nsm, entry, get_bytes, get_text, submit_to, Server};
use postgres_common::TestDb;
use reqwest::blocking::Client;
use serde_json::Value;

fn get_json(client: &Client, url: String) -> Value {
    let resp = client.get(url).send().expect("GET");
    assert_eq!(resp.status(), 200);
    resp.json().expect("JSON")
}

fn proof_of(v: &Value) -> Vec<[u8; 32]> {
    v["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(b64d)
        .collect()
}

/// The one `error:` line of a server that refused to start.
fn refused(args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_attestlog-server"))
        .args(["--listen", "127.0.0.1:0", "--origin", "test.attestlog/log"])
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run attestlog-server");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    lines[0].to_string()
}

/// Everything a reader can fetch about the first 5 entries.
fn snapshot(client: &Client, url: &str) -> Vec<Vec<u8>> {
    let mut out = vec![get_text(client, format!("{url}/checkpoint")).into_bytes()];
    for path in [
        "tile/0/000.p/5",
        "tile/entries/000.p/5",
        "v1/proof/inclusion?index=3&tree_size=5",
        "v1/proof/consistency?first=2&second=5",
    ] {
        out.push(get_bytes(client, format!("{url}/{path}")));
    }
    out
}

#[test]
fn server_on_postgres_accepts_submissions_and_serves_the_same_log_after_restart() {
    let db = TestDb::create();
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let objects = format!("file://{}/objects", dir.path().display());
    let storage = ["--storage", db.url.as_str(), "--objects", objects.as_str()];
    let client = Client::new();
    let entries: Vec<Vec<u8>> = (0..5).map(|n| entry(&nsm, n)).collect();

    let mut server = Server::start(&data, &root, &storage);
    let vkey = server.verifier_key.clone();
    let key = NoteVerifierKey::parse(&vkey).expect("vkey");
    let mut checkpoints = Vec::new();
    for (n, e) in entries.iter().enumerate() {
        let (status, answer) = submit_to(&client, &server.url, e).unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["index"], n as u64, "{answer}");
        let cp = verify_checkpoint(answer["checkpoint"].as_str().unwrap(), &key, &[], 0)
            .expect("checkpoint verifies")
            .checkpoint;
        let proof: Vec<[u8; 32]> = answer["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(b64d)
            .collect();
        verify_inclusion(n as u64, cp.size, &leaf_hash(e), &proof, &cp.root_hash)
            .expect("inclusion proof verifies");
        checkpoints.push(cp);
    }
    // The log is in PostgreSQL: no SQLite file, only the key in --data-dir.
    assert!(!data.join("log.db").exists());
    assert!(data.join("log.key").exists());

    let before = snapshot(&client, &server.url);
    let latest = verify_checkpoint(std::str::from_utf8(&before[0]).unwrap(), &key, &[], 0)
        .expect("checkpoint")
        .checkpoint;
    assert_eq!(latest.size, 5);
    let p = get_json(
        &client,
        format!("{}/v1/proof/consistency?first=2&second=5", server.url),
    );
    verify_consistency(
        2,
        5,
        &checkpoints[1].root_hash,
        &latest.root_hash,
        &proof_of(&p),
    )
    .expect("consistent");
    assert!(server.terminate().success());

    // Restarted on the same database: the same log, byte for byte.
    let server = Server::start(&data, &root, &storage);
    assert_eq!(server.verifier_key, vkey);
    assert_eq!(snapshot(&client, &server.url), before);
    // A resubmission is a duplicate at its old index; a new entry goes on.
    let (status, answer) = submit_to(&client, &server.url, &entries[2]).unwrap();
    assert_eq!(
        (status, &answer["index"]),
        (200, &Value::from(2)),
        "{answer}"
    );
    assert_eq!(answer["duplicate"], true, "{answer}");
    let (status, answer) = submit_to(&client, &server.url, &entry(&nsm, 5)).unwrap();
    assert_eq!(
        (status, &answer["index"]),
        (200, &Value::from(5)),
        "{answer}"
    );
    drop(server);

    // The log-key checks hold on PostgreSQL too: a missing key for a log
    // that signed is refused, and no key is created.
    let missing = dir.path().join("missing.key");
    let line = refused(&[
        "--storage",
        &db.url,
        "--objects",
        &objects,
        "--key-file",
        missing.to_str().unwrap(),
    ]);
    assert!(
        line.starts_with("error: log_key_missing: the log has 6 entries signed by key "),
        "{line}"
    );
    assert!(!missing.exists());
}

#[test]
fn unreachable_postgres_at_start_is_a_one_line_error() {
    // A port nobody listens on: bound, then closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let objects = format!("file://{}/objects", dir.path().display());
    let line = refused(&[
        "--storage",
        &url,
        "--objects",
        &objects,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(
        line.starts_with(&format!(
            "error: storage_unreachable: cannot reach PostgreSQL at 127.0.0.1:{port}/nowhere: "
        )),
        "{line}"
    );
    assert!(
        !key.exists(),
        "a key was written for a log that never opened"
    );

    // Something that accepts TCP and never answers: the connect deadline
    // (here `connect_timeout=1` in the URL) ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
    let url = format!("postgres://postgres@127.0.0.1:{port}/silent?connect_timeout=1");
    let started = std::time::Instant::now();
    let line = refused(&[
        "--storage",
        &url,
        "--objects",
        &objects,
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(
        line.starts_with(&format!(
            "error: storage_unreachable: cannot reach PostgreSQL at 127.0.0.1:{port}/silent: "
        )),
        "{line}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{line}"
    );
    drop(held.join().unwrap());

    // Not a URL the server knows: refused before anything is touched.
    let line = refused(&["--storage", "mysql://x"]);
    assert!(line.starts_with("error: storage_url_invalid: "), "{line}");
    // PostgreSQL needs an object store, and only PostgreSQL takes one.
    let line = refused(&["--storage", &url]);
    assert!(line.starts_with("error: objects_required: "), "{line}");
    let line = refused(&["--objects", &objects]);
    assert!(line.starts_with("error: objects_unsupported: "), "{line}");
    let line = refused(&["--objects", "gs://x", "--storage", &url]);
    assert!(line.starts_with("error: storage_url_invalid: "), "{line}");
}
