//! Concurrency and crash safety of a real server process.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestlog::tlog::checkpoint::{verify_checkpoint, Checkpoint};
use attestlog::tlog::merkle::{leaf_hash, verify_consistency};
use attestlog::tlog::note::NoteVerifierKey;
use common::*;
use reqwest::blocking::Client;
use serde_json::Value;

/// The answer of an accepted submission, or why not.
fn post(client: &Client, url: &str, body: &[u8]) -> Result<Value, String> {
    match submit_to(client, url, body)? {
        (200, answer) => Ok(answer),
        (status, answer) => Err(format!("{status}: {answer}")),
    }
}

#[test]
fn concurrent_clients_get_dense_distinct_indices() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let server = Server::start(&dir.path().join("data"), &root, &["--batch-size", "16"]);
    const CLIENTS: u64 = 64;
    const EACH: u64 = 6;
    let entries: Vec<Vec<u8>> = (0..CLIENTS * EACH).map(|n| entry(&nsm, n)).collect();
    let shared = entry(&nsm, 10_000);
    let entries = Arc::new(entries);
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (entries, results, url, shared) = (
                Arc::clone(&entries),
                Arc::clone(&results),
                server.url.clone(),
                shared.clone(),
            );
            std::thread::spawn(move || {
                let client = Client::new();
                for i in 0..EACH {
                    let n = (c * EACH + i) as usize;
                    let answer = post(&client, &url, &entries[n]).expect("submit");
                    results
                        .lock()
                        .expect("lock")
                        .push((Some(n), answer["index"].as_u64().expect("index")));
                }
                // Every client also submits the same entry.
                let answer = post(&client, &url, &shared).expect("submit shared");
                results
                    .lock()
                    .expect("lock")
                    .push((None, answer["index"].as_u64().expect("index")));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let results = results.lock().expect("lock");
    let shared_indices: Vec<u64> = results
        .iter()
        .filter(|(n, _)| n.is_none())
        .map(|(_, i)| *i)
        .collect();
    assert_eq!(shared_indices.len() as u64, CLIENTS);
    assert!(
        shared_indices.iter().all(|i| *i == shared_indices[0]),
        "one index for the shared entry"
    );
    let mut all: Vec<u64> = results
        .iter()
        .filter(|(n, _)| n.is_some())
        .map(|(_, i)| *i)
        .collect();
    all.push(shared_indices[0]);
    all.sort_unstable();
    let expected: Vec<u64> = (0..CLIENTS * EACH + 1).collect();
    assert_eq!(all, expected, "indices are distinct and dense");
    // And each index holds the entry that was told it.
    let client = Client::new();
    for (n, index) in results
        .iter()
        .filter_map(|(n, i)| n.map(|n| (n, *i)))
        .take(40)
    {
        let raw = get_bytes(&client, format!("{}/v1/entries/{index}", server.url));
        assert_eq!(&raw[..], &entries[n][..]);
    }
}

/// SIGKILL during a stream of submissions, then restart: every acknowledged
/// entry is where it was acknowledged, the new checkpoint is consistent with
/// every checkpoint handed out before, and every unacknowledged entry is
/// wholly present or absent.
#[test]
fn crash_during_submissions_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let mut server = Server::start(
        &data,
        &root,
        &["--batch-size", "32", "--batch-max-age", "20"],
    );
    const WRITERS: usize = 16;
    const EACH: usize = 60;
    let entries: Arc<Vec<Vec<u8>>> =
        Arc::new((0..WRITERS * EACH).map(|n| entry(&nsm, n as u64)).collect());
    let acked: Arc<Mutex<BTreeMap<usize, (u64, String)>>> = Arc::default();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (entries, acked, url) =
                (Arc::clone(&entries), Arc::clone(&acked), server.url.clone());
            std::thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                for i in 0..EACH {
                    let n = w * EACH + i;
                    match post(&client, &url, &entries[n]) {
                        Ok(answer) => {
                            let cp = answer["checkpoint"].as_str().expect("cp").to_string();
                            acked
                                .lock()
                                .expect("lock")
                                .insert(n, (answer["index"].as_u64().expect("i"), cp));
                        }
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Let a few hundred entries through, then pull the plug.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill(); // SIGKILL
    for t in threads {
        t.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 200,
        "only {} acknowledged before the kill",
        acked.len()
    );
    assert!(
        acked.len() < WRITERS * EACH,
        "the kill came too late to test anything"
    );

    let server = Server::start(&data, &root, &[]);
    let client = Client::new();
    let key = NoteVerifierKey::parse(&server.verifier_key).expect("vkey");
    let latest = get_text(&client, format!("{}/checkpoint", server.url));
    let latest = verify_checkpoint(&latest, &key, &[], 0)
        .expect("latest verifies")
        .checkpoint;

    // Acknowledged entries are at their acknowledged indices.
    for (n, (index, _)) in &acked {
        let raw = get_bytes(&client, format!("{}/v1/entries/{index}", server.url));
        assert_eq!(&raw[..], &entries[*n][..], "entry {n} at {index}");
    }
    // Every checkpoint handed out is consistent with the new one.
    let mut seen: HashMap<u64, Checkpoint> = HashMap::new();
    for (_, cp) in acked.values() {
        let cp = verify_checkpoint(cp, &key, &[], 0)
            .expect("acked checkpoint verifies")
            .checkpoint;
        seen.insert(cp.size, cp);
    }
    for old in seen.values() {
        let p: Value = client
            .get(format!(
                "{}/v1/proof/consistency?first={}&second={}",
                server.url, old.size, latest.size
            ))
            .send()
            .expect("GET")
            .json()
            .expect("json");
        let proof: Vec<[u8; 32]> = p["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(b64d)
            .collect();
        verify_consistency(
            old.size,
            latest.size,
            &old.root_hash,
            &latest.root_hash,
            &proof,
        )
        .unwrap_or_else(|e| panic!("checkpoint at {} inconsistent: {e}", old.size));
    }
    // Unacknowledged entries are wholly present (and then byte-equal) or absent.
    let mut present = 0;
    for (n, e) in entries
        .iter()
        .enumerate()
        .filter(|(n, _)| !acked.contains_key(n))
    {
        let resp = client
            .get(format!(
                "{}/v1/proof/inclusion?leaf_hash={}&tree_size={}",
                server.url,
                hex::encode(leaf_hash(e)),
                latest.size
            ))
            .send()
            .expect("GET");
        match resp.status().as_u16() {
            404 => {}
            200 => {
                let index = resp.json::<Value>().expect("json")["index"]
                    .as_u64()
                    .expect("index");
                let raw = get_bytes(&client, format!("{}/v1/entries/{index}", server.url));
                assert_eq!(&raw[..], &e[..], "unacknowledged entry {n} half-written");
                present += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // The log is dense: acknowledged plus present-unacknowledged is its size.
    assert_eq!(acked.len() as u64 + present, latest.size);
}
