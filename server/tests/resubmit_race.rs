//! Many identical submissions at once, against the real server: all get
//! `200`, one index, and an inclusion proof against a checkpoint covering
//! it (never `400 out_of_range`).
//!
//! The race this guards against: a batch's SQLite commit becomes visible to
//! the readers (a resubmission finds its leaf) a moment before the store
//! publishes the new size and checkpoint; a resubmission in that moment
//! asked for a proof at the old size. The moment is microseconds wide, so
//! this loop does not land in it in practice (it passed against the server
//! before the fix, also pinned to one CPU);
//! `http::write::tests::a_duplicate_found_before_its_commit_is_published_waits_for_it`
//! reproduces it deterministically. This test checks the whole path under
//! concurrency: submitters staggered so that some arrive during every
//! verification and commit.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_inclusion};
use attestlog::tlog::note::NoteVerifierKey;
use common::{b64d, dev_nsm, entry, submit_to, Server};

/// Rounds, each a fresh entry submitted by [`SUBMITTERS`] threads at once.
const ROUNDS: u64 = 10;
const SUBMITTERS: usize = 24;
/// Submitter `i` starts `i` times this late, to spread the resubmissions
/// over the first submission's verification and commit.
const STAGGER: Duration = Duration::from_micros(250);

#[test]
fn concurrent_identical_submissions_all_get_a_covering_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let server = Server::start(&dir.path().join("data"), &root, &[]);
    let key = NoteVerifierKey::parse(&server.verifier_key).unwrap();
    let clients: Vec<_> = (0..SUBMITTERS)
        .map(|_| reqwest::blocking::Client::new())
        .collect();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let body = Arc::new(entry(&nsm, round));
        let barrier = Arc::new(Barrier::new(SUBMITTERS));
        let threads: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let (client, url) = (client.clone(), server.url.clone());
                let (body, barrier) = (Arc::clone(&body), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    std::thread::sleep(STAGGER * i as u32);
                    submit_to(&client, &url, &body).expect("JSON answer")
                })
            })
            .collect();
        let mut indices = Vec::new();
        for t in threads {
            let (status, answer) = t.join().unwrap();
            if status != 200 {
                failures.push(format!("round {round}: {status} {answer}"));
                continue;
            }
            let cp = verify_checkpoint(answer["checkpoint"].as_str().unwrap(), &key, &[], 0)
                .expect("checkpoint verifies")
                .checkpoint;
            let proof: Vec<[u8; 32]> = answer["inclusion_proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(b64d)
                .collect();
            let index = answer["index"].as_u64().unwrap();
            assert_eq!(answer["tree_size"].as_u64(), Some(cp.size));
            verify_inclusion(index, cp.size, &leaf_hash(&body), &proof, &cp.root_hash)
                .expect("inclusion proof verifies");
            indices.push(index);
        }
        indices.dedup();
        assert!(
            indices.len() <= 1,
            "one entry, several indices: {indices:?}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
}
