//! Real processes in cluster mode: two `attestlog-server` frontends started
//! at once (two integrators competing for the lease) and one `--read-only`
//! reader, on the real PostgreSQL (a database of its own) and a real
//! SeaweedFS bucket (a prefix of its own). Submissions go to both
//! frontends; every answer's proof verifies against its checkpoint, the log
//! is dense, no two checkpoints of one size differ, the reader serves
//! consistent checkpoints and proofs, and a tile fetched straight from the
//! bucket equals the reader's.

mod common;
mod postgres_common;
#[path = "common/seaweed.rs"]
mod seaweed;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use attestlog_server::storage::objects::Objects;
use common::{
    b64d, dev_nsm, entry, get_bytes, get_text, submit_to, write_key, Server, TEST_ORIGIN,
};
use postgres_common::TestDb;
use reqwest::blocking::Client;
use serde_json::Value;

fn proof(v: &Value, field: &str) -> Vec<[u8; 32]> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .iter()
        .map(b64d)
        .collect()
}

#[test]
fn two_frontends_and_a_reader_share_one_log() {
    let weed = seaweed::shared();
    let db = TestDb::create();
    let bucket = weed.url();
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    let key = NoteVerifierKey::parse(&signer.verifier_key_text()).unwrap();
    let storage = ["--storage", db.url.as_str(), "--objects", bucket.as_str()];

    // Two frontends with the log's key, started at once on the empty log:
    // both compete for the lease, one signs the first checkpoint.
    let env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    weed.set_env(); // inherited by the servers
    let frontends: Vec<Server> = std::thread::scope(|s| {
        let starts: Vec<_> = ["a", "b"]
            .iter()
            .map(|name| {
                let data = dir.path().join(name);
                write_key(&data, &signer);
                let (root, storage) = (&root, &storage);
                s.spawn(move || Server::start(&data, root, storage))
            })
            .collect();
        starts.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(env);
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Submissions to both frontends at once.
    let per = 12u64;
    let answers: Vec<(Vec<u8>, Value)> = std::thread::scope(|s| {
        let workers: Vec<_> = frontends
            .iter()
            .enumerate()
            .map(|(f, server)| {
                let (nsm, client) = (&nsm, &client);
                s.spawn(move || {
                    (0..per)
                        .map(|n| {
                            let e = entry(nsm, f as u64 * 1000 + n);
                            let (status, answer) = submit_to(client, &server.url, &e).unwrap();
                            assert_eq!(status, 200, "{answer}");
                            (e, answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let mut by_size: BTreeMap<u64, String> = BTreeMap::new();
    let mut indices = Vec::new();
    for (e, answer) in &answers {
        let note = answer["checkpoint"].as_str().unwrap();
        let cp = verify_checkpoint(note, &key, &[], 0)
            .expect("checkpoint verifies")
            .checkpoint;
        let index = answer["index"].as_u64().unwrap();
        verify_inclusion(
            index,
            cp.size,
            &leaf_hash(e),
            &proof(answer, "inclusion_proof"),
            &cp.root_hash,
        )
        .expect("inclusion proof verifies");
        // No fork: one note per size.
        let seen = by_size.entry(cp.size).or_insert_with(|| note.to_string());
        assert_eq!(seen, note, "two checkpoints of size {}", cp.size);
        indices.push(index);
    }
    indices.sort();
    assert_eq!(
        indices,
        (0..2 * per).collect::<Vec<_>>(),
        "the log is dense"
    );
    let total = 2 * per;

    // The reader: no key, the pinned verifier key; it follows the head.
    let reader_dir = dir.path().join("reader");
    let vkey = signer.verifier_key_text();
    let mut reader_args: Vec<&str> = storage.to_vec();
    reader_args.extend(["--read-only", "--verifier-key", vkey.as_str()]);
    let reader = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        Server::start(&reader_dir, &root, &reader_args)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let latest = loop {
        let note = get_text(&client, format!("{}/checkpoint", reader.url));
        let cp = verify_checkpoint(&note, &key, &[], 0)
            .expect("reader's checkpoint")
            .checkpoint;
        if cp.size == total {
            break cp;
        }
        assert!(Instant::now() < deadline, "reader stuck at {}", cp.size);
        std::thread::sleep(Duration::from_millis(100));
    };
    // Every checkpoint handed out is consistent with the reader's.
    for (size, note) in &by_size {
        let cp = verify_checkpoint(note, &key, &[], 0).unwrap().checkpoint;
        let p: Value = client
            .get(format!(
                "{}/v1/proof/consistency?first={size}&second={total}",
                reader.url
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        verify_consistency(
            *size,
            total,
            &cp.root_hash,
            &latest.root_hash,
            &proof(&p, "proof"),
        )
        .expect("consistent");
    }
    // Inclusion from the reader, for an entry of each frontend.
    for (e, answer) in [&answers[0], &answers[answers.len() - 1]] {
        let index = answer["index"].as_u64().unwrap();
        let p: Value = client
            .get(format!(
                "{}/v1/proof/inclusion?index={index}&tree_size={total}",
                reader.url
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        verify_inclusion(
            index,
            total,
            &leaf_hash(e),
            &proof(&p, "proof"),
            &latest.root_hash,
        )
        .expect("reader's inclusion proof");
    }
    // The bucket holds what the reader serves, at the C2SP paths.
    let objects = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        weed.set_env();
        Objects::open(&bucket).unwrap()
    };
    // The bucket's partial tiles and checkpoint are flushed off the
    // submission path (within a second), the checkpoint last.
    let served = get_bytes(&client, format!("{}/checkpoint", reader.url));
    let deadline = Instant::now() + Duration::from_secs(10);
    while objects.get("checkpoint").unwrap().as_ref() != Some(&served) {
        assert!(
            Instant::now() < deadline,
            "the bucket's checkpoint is stale"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let path = format!("tile/0/000.p/{total}");
    assert_eq!(
        objects.get(&path).unwrap().expect("tile in the bucket"),
        get_bytes(&client, format!("{}/{path}", reader.url))
    );
    let path = format!("tile/entries/000.p/{total}");
    assert_eq!(
        objects.get(&path).unwrap().expect("bundle in the bucket"),
        get_bytes(&client, format!("{}/{path}", reader.url))
    );
    // The reader refuses submissions.
    let (status, answer) = submit_to(&client, &reader.url, &entry(&nsm, 99)).unwrap();
    assert_eq!(
        (status, answer["error"].as_str()),
        (403, Some("read_only")),
        "{answer}"
    );
    // A resubmission to the other frontend is a duplicate at its index.
    let (e, first) = &answers[0];
    let (status, again) = submit_to(&client, &frontends[1].url, e).unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["index"], &again["duplicate"]),
        (&first["index"], &Value::Bool(true))
    );
    // The log grows after the reader started: its /metrics follows (the
    // reader commits no batch of its own).
    let (status, answer) = submit_to(&client, &frontends[1].url, &entry(&nsm, 99)).unwrap();
    assert_eq!(status, 200, "{answer}");
    let grown = total + 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = get_text(&client, format!("{}/metrics", reader.url));
        if metrics.contains(&format!("attestlog_tree_size {grown}\n")) {
            break;
        }
        assert!(Instant::now() < deadline, "reader's /metrics: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(frontends);
    drop(reader);
}

#[test]
fn a_reader_needs_the_verifier_key_and_a_cluster_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestlog-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let objects = format!("file://{}/o", dir.path().display());
    let line = run(&["--read-only", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(
        line.starts_with("error: read_only_needs_cluster: "),
        "{line}"
    );
    let line = run(&[
        "--read-only",
        "--storage",
        "postgres://postgres@127.0.0.1:5432/postgres",
        "--objects",
        &objects,
    ]);
    assert!(line.starts_with("error: verifier_key_required: "), "{line}");
}

/// A frontend whose object store is unreachable keeps answering while the
/// tree's new tiles are partial (the hot edge is in PostgreSQL), and
/// answers 503 `storage_unavailable` once an integration must write a
/// completed tile; the entry stays sequenced, and a frontend that reaches
/// the bucket integrates it: nothing is lost, and a resubmission is
/// answered as a duplicate at the same index.
#[test]
fn an_unreachable_object_store_is_503_and_a_healthy_frontend_takes_over() {
    let weed = seaweed::shared();
    let db = TestDb::create();
    let bucket = weed.url();
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    let storage = ["--storage", db.url.as_str(), "--objects", bucket.as_str()];
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let data = dir.path().join("broken");
    write_key(&data, &signer);
    let mut args: Vec<&str> = storage.to_vec();
    let endpoint = format!("http://127.0.0.1:{dead_port}");
    let broken = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        weed.set_env();
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        args.extend(["--batch-max-age", "5"]);
        let s = Server::start(&data, &root, &args);
        weed.set_env();
        s
    };
    let client = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for n in 0..255 {
        let (status, answer) = submit_to(&client, &broken.url, &entry(&nsm, 1000 + n)).unwrap();
        assert_eq!(
            (status, &answer["index"]),
            (200, &Value::from(n)),
            "{answer}"
        );
    }
    // Entry 255 completes tile 0 and bundle 0: objects the bucket must hold
    // before the head may move.
    let e = entry(&nsm, 7);
    let (status, answer) = submit_to(&client, &broken.url, &e).unwrap();
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("storage_unavailable")),
        "{answer}"
    );

    let data = dir.path().join("healthy");
    write_key(&data, &signer);
    let healthy = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        weed.set_env();
        Server::start(&data, &root, &storage)
    };
    let (status, answer) = submit_to(&client, &healthy.url, &e).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["index"], &answer["duplicate"]),
        (&Value::from(255), &Value::Bool(true)),
        "{answer}"
    );
    let (status, answer) = submit_to(&client, &healthy.url, &entry(&nsm, 8)).unwrap();
    assert_eq!(
        (status, &answer["index"]),
        (200, &Value::from(256)),
        "{answer}"
    );
    drop(broken);
    drop(healthy);
}

/// Serializes changes of the AWS_* variables with the server starts that
/// inherit them.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
