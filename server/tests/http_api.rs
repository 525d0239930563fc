//! The HTTP API of a real server process: submissions, duplicates across
//! restarts, every read endpoint, and refusals that change nothing.

mod common;

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use attestlog::tlog::note::NoteVerifierKey;
use attestlog::tlog::tiles::{parse_entry_bundle, MAX_ENTRY_LEN};
use base64::Engine;
use common::*;
use reqwest::blocking::Client;
use serde_json::Value;

fn get_json(client: &Client, url: String) -> (u16, Value) {
    let resp = client.get(url).send().expect("GET");
    (resp.status().as_u16(), resp.json().expect("JSON"))
}

/// Checks a submission answer: the checkpoint verifies under the log key and
/// the inclusion proof leads to its root.
fn check_answer(server: &Server, entry: &[u8], answer: &Value) -> (u64, u64) {
    let key = NoteVerifierKey::parse(&server.verifier_key).expect("vkey");
    let cp = verify_checkpoint(answer["checkpoint"].as_str().expect("cp"), &key, &[], 0)
        .expect("checkpoint verifies")
        .checkpoint;
    assert_eq!(b64d(&answer["leaf_hash"]), leaf_hash(entry));
    let proof: Vec<[u8; 32]> = answer["inclusion_proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(b64d)
        .collect();
    let index = answer["index"].as_u64().expect("index");
    verify_inclusion(index, cp.size, &leaf_hash(entry), &proof, &cp.root_hash)
        .expect("inclusion proof verifies");
    (index, cp.size)
}

fn submit(client: &Client, server: &Server, body: &[u8]) -> (u16, Value) {
    submit_to(client, &server.url, body).expect("JSON answer")
}

#[test]
fn submit_read_and_resubmit_across_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let client = Client::new();
    let entries: Vec<Vec<u8>> = (0..5).map(|n| entry(&nsm, n)).collect();

    let mut server = Server::start(&data, &root, &[]);
    // The empty log already has a signed checkpoint.
    let cp0 = client
        .get(format!("{}/checkpoint", server.url))
        .send()
        .expect("GET");
    assert_eq!(cp0.status(), 200);
    assert_eq!(cp0.headers()["content-type"], "text/plain; charset=utf-8");
    let cp0 = cp0.text().expect("text");
    assert!(cp0.starts_with("test.attestlog/log\n0\n"), "{cp0}");

    let mut checkpoints = vec![cp0];
    for (n, e) in entries.iter().enumerate() {
        let (status, answer) = submit(&client, &server, e);
        assert_eq!(status, 200, "{answer}");
        let (index, size) = check_answer(&server, e, &answer);
        assert_eq!(index, n as u64);
        assert_eq!(size, n as u64 + 1);
        assert!(answer.get("duplicate").is_none());
        checkpoints.push(answer["checkpoint"].as_str().expect("cp").to_string());
    }
    let (status, again) = submit(&client, &server, &entries[2]);
    assert_eq!(status, 200);
    assert_eq!(again["index"], 2);
    assert_eq!(again["duplicate"], true);
    check_answer(&server, &entries[2], &again);

    // The log survives a restart, duplicates included.
    assert!(server.terminate().success(), "graceful shutdown");
    let server = Server::start(&data, &root, &[]);
    let (status, again) = submit(&client, &server, &entries[4]);
    assert_eq!((status, again["index"].as_u64()), (200, Some(4)));
    assert_eq!(again["duplicate"], true);

    // /v1/log
    let (_, log) = get_json(&client, format!("{}/v1/log", server.url));
    assert_eq!(log["origin"], "test.attestlog/log");
    assert_eq!(log["verifier_key"], server.verifier_key.as_str());
    assert_eq!(log["tree_size"], 5);

    // Consistency between every signed checkpoint and the latest.
    let key = NoteVerifierKey::parse(&server.verifier_key).expect("vkey");
    let latest = verify_checkpoint(&checkpoints[5], &key, &[], 0)
        .expect("cp")
        .checkpoint;
    for cp in &checkpoints {
        let old = verify_checkpoint(cp, &key, &[], 0).expect("cp").checkpoint;
        let (status, p) = get_json(
            &client,
            format!(
                "{}/v1/proof/consistency?first={}&second=5",
                server.url, old.size
            ),
        );
        assert_eq!(status, 200);
        let proof: Vec<[u8; 32]> = p["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(b64d)
            .collect();
        verify_consistency(old.size, 5, &old.root_hash, &latest.root_hash, &proof)
            .expect("consistent");
    }

    // Inclusion by index and by leaf hash (hex and base64).
    let leaf = leaf_hash(&entries[3]);
    for q in [
        "index=3".to_string(),
        format!("leaf_hash={}", hex::encode(leaf)),
        format!(
            "leaf_hash={}",
            base64::engine::general_purpose::STANDARD
                .encode(leaf)
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        ),
    ] {
        let (status, p) = get_json(
            &client,
            format!("{}/v1/proof/inclusion?{q}&tree_size=5", server.url),
        );
        assert_eq!(status, 200, "{q}: {p}");
        let proof: Vec<[u8; 32]> = p["proof"]
            .as_array()
            .expect("proof")
            .iter()
            .map(b64d)
            .collect();
        verify_inclusion(3, 5, &leaf, &proof, &latest.root_hash).expect("inclusion");
    }

    // Entries: raw bytes and the decoded claim.
    let raw = client
        .get(format!("{}/v1/entries/1", server.url))
        .send()
        .expect("GET");
    assert_eq!(raw.headers()["content-type"], "application/octet-stream");
    assert_eq!(raw.bytes().expect("bytes").as_ref(), &entries[1][..]);
    let (status, decoded) = get_json(&client, format!("{}/v1/entries/1?format=json", server.url));
    assert_eq!(status, 200);
    assert_eq!(decoded["statement"]["subject"][0]["name"], "bin-1");
    assert_eq!(
        decoded["attestation"]["pcrs"]["0"],
        hex::encode(&pcrs(1)[&0])
    );

    // Tiles: the partial level-0 tile and entry bundle.
    let tile = client
        .get(format!("{}/tile/0/000.p/5", server.url))
        .send()
        .expect("GET");
    assert_eq!(tile.status(), 200);
    assert_eq!(
        tile.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let tile = tile.bytes().expect("bytes");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(&tile[i * 32..i * 32 + 32], &leaf_hash(e)[..]);
    }
    let bundle = client
        .get(format!("{}/tile/entries/000.p/5", server.url))
        .send()
        .expect("GET");
    let bundle = bundle.bytes().expect("bytes");
    let parsed = parse_entry_bundle(&bundle).expect("bundle");
    assert_eq!(parsed.len(), 5);
    assert_eq!(parsed[0], &entries[0][..]);
    for beyond in [
        "tile/0/000",
        "tile/0/000.p/6",
        "tile/0/001.p/1",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/0/00",
        "tile/0/x000/000.p/1",
        "tile/8/000",
    ] {
        let resp = client
            .get(format!("{}/{beyond}", server.url))
            .send()
            .expect("GET");
        assert_eq!(resp.status(), 404, "{beyond}");
    }

    // Search by artifact, commit and PCR0.
    let artifact = hex::encode(sha256(b"artifact 3"));
    let (_, found) = get_json(
        &client,
        format!("{}/v1/search?artifact_sha256={artifact}", server.url),
    );
    assert_eq!(found["indices"], serde_json::json!([3]));
    let commit = hex::encode(&sha256(&3u64.to_be_bytes())[..20]);
    let (_, found) = get_json(&client, format!("{}/v1/search?commit={commit}", server.url));
    assert_eq!(found["indices"], serde_json::json!([3]));
    let (_, found) = get_json(
        &client,
        format!(
            "{}/v1/search?pcr0={}",
            server.url,
            hex::encode(&pcrs(1)[&0])
        ),
    );
    assert_eq!(found["indices"], serde_json::json!([0, 1, 2, 3, 4]));

    // Health and metrics.
    assert_eq!(
        client
            .get(format!("{}/healthz", server.url))
            .send()
            .expect("GET")
            .status(),
        200
    );
    let metrics = get_text(&client, format!("{}/metrics", server.url));
    assert!(metrics.contains("attestlog_tree_size 5"), "{metrics}");
    assert!(
        metrics.contains("attestlog_submissions_total{result=\"duplicate\"} 1"),
        "{metrics}"
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let client = Client::new();
    let server = Server::start(&dir.path().join("data"), &root, &[]);
    let good = entry(&nsm, 1);
    assert_eq!(submit(&client, &server, &good).0, 200);
    let before_cp = get_text(&client, format!("{}/checkpoint", server.url));

    let other_nsm =
        attestlog::nitro::sim::SimulatedNsm::generate(now_ms() / 1000 - 3600).expect("nsm");
    let mut flipped = entry(&nsm, 2);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let zero_pcrs = pcrs(0)
        .into_iter()
        .map(|(i, v)| (i, if i < 3 { vec![0; 48] } else { v }))
        .collect();
    let parts = attestlog::claim::Entry::decode(&good).expect("decode");
    let other = entry(&nsm, 3);
    let other_parts = attestlog::claim::Entry::decode(&other).expect("decode");
    let mismatched =
        attestlog::claim::Entry::encode(other_parts.statement, parts.attestation).expect("encode");

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 10].to_vec(),
            400,
            "bad_entry_encoding",
        ),
        (
            "garbage",
            b"hello world".to_vec(),
            400,
            "bad_entry_encoding",
        ),
        ("empty", Vec::new(), 400, "bad_entry_encoding"),
        ("oversized", vec![0u8; MAX_ENTRY_LEN + 1], 413, "too_large"),
        (
            "untrusted root",
            entry(&other_nsm, 4),
            422,
            "untrusted_root",
        ),
        ("bad signature", flipped, 422, "cose_signature"),
        (
            "debug",
            entry_at(&nsm, 5, &zero_pcrs, now_ms()),
            422,
            "debug_refused",
        ),
        (
            "expired chain",
            entry_at(&nsm, 6, &pcrs(1), now_ms() - 40 * 86_400_000),
            422,
            "certificate_not_yet_valid",
        ),
        (
            "clock skew",
            entry_at(&nsm, 7, &pcrs(1), now_ms() - 3_000_000),
            422,
            "clock_skew",
        ),
        ("user_data mismatch", mismatched, 422, "user_data_mismatch"),
    ];
    for (name, body, status, code) in cases {
        let (got, answer) = submit(&client, &server, &body);
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }

    // A declared body far beyond the limit is refused from its header alone,
    // with the JSON answer and the connection closed (nothing is sent after
    // the header, so nothing unread can reset the answer).
    {
        use std::io::{Read, Write};
        let addr = server.url.trim_start_matches("http://");
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            tcp,
            "POST /v1/entries HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 2000000\r\n\r\n"
        )
        .expect("write");
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).expect("read until close");
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(answer.contains("\"too_large\""), "{answer}");
    }

    // Wrong content type.
    let resp = client
        .post(format!("{}/v1/entries", server.url))
        .header("content-type", "application/json")
        .body(good.clone())
        .send()
        .expect("POST");
    assert_eq!(resp.status(), 415);
    let answer: Value = resp.json().expect("json");
    assert_eq!(answer["error"], "wrong_content_type");

    // Garbage query parameters.
    for (path, status) in [
        ("v1/proof/inclusion?index=abc&tree_size=1", 400),
        ("v1/proof/inclusion?index=0&tree_size=99", 400),
        ("v1/proof/inclusion?index=5&tree_size=1", 400),
        ("v1/proof/inclusion?leaf_hash=zz&tree_size=1", 400),
        ("v1/proof/inclusion?leaf_hash=0000000000000000000000000000000000000000000000000000000000000000&tree_size=1", 404),
        ("v1/proof/inclusion?tree_size=1", 400),
        ("v1/proof/consistency?first=2&second=1", 400),
        ("v1/proof/consistency?first=1&second=18446744073709551615", 400),
        ("v1/proof/consistency?first=-1&second=1", 400),
        ("v1/entries/99", 404),
        ("v1/entries/-1", 400),
        ("v1/entries/0?format=xml", 400),
        ("v1/search?artifact_sha256=xyz", 400),
        ("v1/search?pcr0=00", 400),
        ("v1/search", 400),
        ("v1/search?commit=00&pcr0=00", 400),
        ("v1/proof/inclusion?index=0&tree_size=1&evil=1", 400),
        ("tile/x/000", 404),
        ("tile/0/000.p/0", 404),
        ("tile/0/000.p/256", 404),
        ("nonexistent", 404),
    ] {
        let (got, answer) = get_json(&client, format!("{}/{path}", server.url));
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer["error"].is_string(), "{path}: {answer}");
    }

    // Nothing changed.
    let after_cp = get_text(&client, format!("{}/checkpoint", server.url));
    assert_eq!(before_cp, after_cp);
    let (_, log) = get_json(&client, format!("{}/v1/log", server.url));
    assert_eq!(log["tree_size"], 1);
    let raw = get_bytes(&client, format!("{}/v1/entries/0", server.url));
    assert_eq!(&raw[..], &good[..]);
}

#[test]
fn allow_debug_flag_accepts_debug_documents() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &root, &["--allow-debug"]);
    let zero_pcrs = pcrs(0)
        .into_iter()
        .map(|(i, v)| (i, if i < 3 { vec![0; 48] } else { v }))
        .collect();
    let debug = entry_at(&nsm, 1, &zero_pcrs, now_ms());
    let client = Client::new();
    let (status, answer) = submit(&client, &server, &debug);
    assert_eq!(status, 200, "{answer}");

    // Logged bytes stay a duplicate when the policy no longer admits them:
    // the refusal is checked against the log before it is given.
    assert!(server.terminate().success(), "graceful shutdown");
    let server = Server::start(&data, &root, &[]);
    let (status, again) = submit(&client, &server, &debug);
    assert_eq!(
        (status, again["index"].as_u64(), &again["duplicate"]),
        (200, Some(0), &Value::Bool(true)),
        "{again}"
    );
    check_answer(&server, &debug, &again);
    let other = entry_at(&nsm, 2, &zero_pcrs, now_ms());
    let (status, refused) = submit(&client, &server, &other);
    assert_eq!(
        (status, refused["error"].as_str()),
        (422, Some("debug_refused"))
    );
}

#[test]
fn dev_root_is_trusted_only_when_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, _) = dev_nsm(dir.path());
    let aws_pem = dir.path().join("other.pem");
    // Another simulated root, not the one that signed the entry.
    let (_, other_root) = dev_nsm(&{
        let d = dir.path().join("other");
        std::fs::create_dir(&d).expect("dir");
        d
    });
    std::fs::copy(&other_root, &aws_pem).expect("copy");
    let server = Server::start(&dir.path().join("data"), &aws_pem, &[]);
    let (status, answer) = submit(&Client::new(), &server, &entry(&nsm, 1));
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("untrusted_root"))
    );
}

#[test]
fn signing_key_is_created_private_and_loose_modes_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let (_, root) = dev_nsm(dir.path());
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &root, &[]);
    let key = data.join("log.key");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).expect("key");
    assert!(
        text.starts_with("PRIVATE+KEY+test.attestlog/log+"),
        "{text}"
    );
    let vkey = server.verifier_key.clone();
    assert!(server.terminate().success());

    // The same key is loaded again: same verifier key.
    let mut again = Server::start(&data, &root, &[]);
    assert_eq!(again.verifier_key, vkey);
    assert!(again.terminate().success());

    // A refused start: non-zero exit, and stderr names why.
    let refused = |origin: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestlog-server"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--origin", origin])
            .output()
            .expect("run");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // A key readable by others is refused, with one clear line.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let stderr = refused("test.attestlog/log");
    assert!(stderr.contains("readable by group or others"), "{stderr}");

    // A key for another origin is refused too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert!(refused("other.attestlog/log").contains("origin"));
}
