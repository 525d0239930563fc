//! The log read by an independent client: Go's `golang.org/x/mod/sumdb/tlog`
//! and `sumdb/note` (`common/go_tlog.rs`) follow a SQLite log through the
//! server's C2SP tlog-tiles paths, across a full entry bundle and as the log
//! grows: the checkpoint's signature, its consistency with the last one the
//! client saw, and every entry's inclusion; and a log forked under the same
//! key is refused. The cluster log is read by the same client in
//! `failover/`, through a frontend and straight from the bucket, across
//! kills and outages.

mod common;
#[path = "common/go_tlog.rs"]
mod go_tlog;

use attestlog::tlog::note::NoteSigner;
use common::*;

#[test]
fn go_sumdb_tlog_follows_a_sqlite_log_and_refuses_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    let data = dir.path().join("log");
    write_key(&data, &signer);
    // One full bundle and a partial one.
    let first: Vec<Vec<u8>> = (0..300).map(|n| entry(&nsm, n)).collect();
    smuggle(&data, &signer, &first);
    let server = Server::start(&data, &root, &[]);
    let state = dir.path().join("go-state");
    assert_eq!(
        go_tlog::check(&server.url, &server.verifier_key, &state),
        300
    );

    // The log grows through the HTTP API; the client proves the new
    // checkpoint consistent with the one it kept.
    let client = reqwest::blocking::Client::new();
    for n in 300..305 {
        let (status, answer) = submit_to(&client, &server.url, &entry(&nsm, n)).unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(
        go_tlog::check(&server.url, &server.verifier_key, &state),
        305
    );
    let kept = std::fs::read(&state).unwrap();

    // Another log of the same size under the same key: a fork.
    let forked = dir.path().join("fork");
    write_key(&forked, &signer);
    let other: Vec<Vec<u8>> = (1000..1305).map(|n| entry(&nsm, n)).collect();
    smuggle(&forked, &signer, &other);
    let fork = Server::start(&forked, &root, &[]);
    let out = go_tlog::run(&fork.url, &server.verifier_key, &state, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the fork was accepted");
    assert!(
        stderr.contains("consistency: two roots at size 305"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), kept, "state unchanged");
    // Under another key, the checkpoint is refused.
    let stranger = NoteSigner::generate(TEST_ORIGIN)
        .unwrap()
        .verifier_key_text();
    let out = go_tlog::run(&server.url, &stranger, &dir.path().join("none"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("checkpoint signature"),
        "{stderr}"
    );
    // On its own (no state), the fork is a valid log of its own.
    let fresh = dir.path().join("fresh-state");
    assert_eq!(go_tlog::check(&fork.url, &fork.verifier_key, &fresh), 305);
}
