//! Witnessed checkpoints: a server with 3 real `attestlog witness serve`
//! processes and a quorum of 2 keeps publishing with one witness down,
//! refuses with 503 `witness_quorum` naming the failed witnesses with two
//! down, and publishes the refused entry once a witness is back; then
//! `attestlog bundle refresh` upgrades a bundle to the latest cosigned
//! checkpoint.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use attestlog::bundle::Bundle;
use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::cosignature::CosignatureVerifierKey;
use attestlog::tlog::merkle::{leaf_hash, verify_inclusion};
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use attestlog::tlog::proof::TlogProof;
use common::{b64d, dev_nsm, entry, submit_to, write_key, Server};
use serde_json::Value;

const ORIGIN: &str = "test.attestlog/log";

/// The `attestlog` binary, built next to the server by `cargo test --workspace`.
fn attestlog_bin() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_BIN_EXE_attestlog-server")).with_file_name("attestlog");
    path.exists().then_some(path)
}

struct WitnessProc {
    child: Child,
    url: String,
    vkey: String,
}

impl WitnessProc {
    /// Starts `attestlog witness serve` on `listen` (port 0: a free port).
    fn start(bin: &Path, name: &str, state: &Path, logs: &Path, listen: &str) -> Self {
        let mut child = Command::new(bin)
            .args(["witness", "serve", "--listen", listen, "--name", name])
            .arg("--state")
            .arg(state)
            .arg("--logs")
            .arg(logs)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn witness");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let vkey = lines.next().unwrap().unwrap();
        let vkey = vkey.strip_prefix("witness key: ").unwrap().to_string();
        let url = lines.next().unwrap().unwrap();
        let url = url.strip_prefix("listening on ").unwrap().to_string();
        std::thread::spawn(move || for _ in lines {});
        WitnessProc { child, url, vkey }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn checkpoint_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// Checks an accepted answer: quorum-2 checkpoint and inclusion proof.
fn check_answer(
    answer: &Value,
    body: &[u8],
    log_key: &NoteVerifierKey,
    witnesses: &[CosignatureVerifierKey],
) -> Vec<String> {
    let note = answer["checkpoint"].as_str().expect("checkpoint");
    let verified = verify_checkpoint(note, log_key, witnesses, 2).expect("quorum-2 checkpoint");
    let size = answer["tree_size"].as_u64().unwrap();
    assert_eq!(verified.checkpoint.size, size);
    let index = answer["index"].as_u64().unwrap();
    let proof: Vec<[u8; 32]> = answer["inclusion_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(b64d)
        .collect();
    verify_inclusion(
        index,
        size,
        &leaf_hash(body),
        &proof,
        &verified.checkpoint.root_hash,
    )
    .expect("inclusion proof against the published checkpoint");
    verified.cosigners.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn quorum_of_two_out_of_three_witnesses() {
    let Some(bin) = attestlog_bin() else {
        let _ = writeln!(
            std::io::stderr(),
            "skipping: the attestlog binary is not built next to attestlog-server \
             (run `cargo test --workspace` or `cargo build -p attestlog` first)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());

    // The log's key, so the witnesses' log list can name it before it starts.
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    write_key(dir.path(), &signer);
    let key_file = dir.path().join("log.key");
    let log_key = signer.verifier_key().unwrap();
    let logs = dir.path().join("logs.txt");
    std::fs::write(&logs, format!("{ORIGIN} {}\n", signer.verifier_key_text())).unwrap();

    let names = ["witness.test/w1", "witness.test/w2", "witness.test/w3"];
    let states: Vec<PathBuf> = (1..=3).map(|i| dir.path().join(format!("w{i}"))).collect();
    let mut witnesses: Vec<WitnessProc> = names
        .iter()
        .zip(&states)
        .map(|(n, s)| WitnessProc::start(&bin, n, s, &logs, "127.0.0.1:0"))
        .collect();
    let wkeys: Vec<CosignatureVerifierKey> = witnesses
        .iter()
        .map(|w| CosignatureVerifierKey::parse(&w.vkey).unwrap())
        .collect();

    let mut extra: Vec<String> = vec![
        "--key-file".into(),
        key_file.display().to_string(),
        "--witness-quorum".into(),
        "2".into(),
    ];
    for w in &witnesses {
        extra.push("--witness".into());
        extra.push(format!("{}={}", w.url, w.vkey));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &root, &extra);
    assert_eq!(server.verifier_key, signer.verifier_key_text());
    let client = reqwest::blocking::Client::new();
    let published = || -> String {
        client
            .get(format!("{}/checkpoint", server.url))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };

    // All three up: published with all three cosignatures.
    let e0 = entry(&nsm, 0);
    let (status, answer) = submit_to(&client, &server.url, &e0).unwrap();
    assert_eq!(status, 200, "{answer}");
    let cosigners = check_answer(&answer, &e0, &log_key, &wkeys);
    assert_eq!(cosigners.len(), 3, "{cosigners:?}");
    // Kept as an offline bundle, refreshed at the end.
    let bundle_file = dir.path().join("e0.attestlog.json");
    std::fs::write(&bundle_file, bundle_of(&e0, &answer).to_json()).unwrap();
    let note = published();
    verify_checkpoint(&note, &log_key, &wkeys, 3).expect("/checkpoint cosigned by all 3");
    assert!(checkpoint_size(&note) >= 1);

    // One down: still published, with the two others' cosignatures.
    witnesses[0].kill();
    let e1 = entry(&nsm, 1);
    let (status, answer) = submit_to(&client, &server.url, &e1).unwrap();
    assert_eq!(status, 200, "{answer}");
    let cosigners = check_answer(&answer, &e1, &log_key, &wkeys);
    assert_eq!(cosigners, vec![names[1].to_string(), names[2].to_string()]);
    let cosigned_size = answer["tree_size"].as_u64().unwrap();
    assert_eq!(checkpoint_size(&published()), cosigned_size);

    // Two down: 503 naming both; /checkpoint stays at the last cosigned one.
    witnesses[1].kill();
    let e2 = entry(&nsm, 2);
    let (status, answer) = submit_to(&client, &server.url, &e2).unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "witness_quorum", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(names[0]) && message.contains(names[1]),
        "{message}"
    );
    assert!(!message.contains(names[2]), "{message}");
    let note = published();
    assert_eq!(checkpoint_size(&note), cosigned_size);
    verify_checkpoint(&note, &log_key, &wkeys, 2).expect("still the cosigned checkpoint");
    // A retry while the quorum is still missing is refused the same way.
    let (status, answer) = submit_to(&client, &server.url, &e2).unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "witness_quorum", "{answer}");

    // w2 back on its old address with its old state: the retry gets the
    // entry as a duplicate, with a cosigned checkpoint covering it.
    let listen = witnesses[1]
        .url
        .strip_prefix("http://")
        .unwrap()
        .to_string();
    witnesses[1] = WitnessProc::start(&bin, names[1], &states[1], &logs, &listen);
    assert_eq!(witnesses[1].vkey, wkeys[1].to_text());
    let (status, answer) = submit_to(&client, &server.url, &e2).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], true, "{answer}");
    assert_eq!(answer["index"], 2, "{answer}");
    let cosigners = check_answer(&answer, &e2, &log_key, &wkeys);
    assert_eq!(cosigners, vec![names[1].to_string(), names[2].to_string()]);
    assert!(answer["tree_size"].as_u64().unwrap() > 2);
    assert_eq!(
        checkpoint_size(&published()),
        answer["tree_size"].as_u64().unwrap()
    );

    // New submissions are published again.
    let e3 = entry(&nsm, 3);
    let (status, answer) = submit_to(&client, &server.url, &e3).unwrap();
    assert_eq!(status, 200, "{answer}");
    check_answer(&answer, &e3, &log_key, &wkeys);

    // `attestlog bundle refresh` moves the size-1 bundle to the latest
    // cosigned checkpoint, after checking consistency.
    let refresh = |key: &str| {
        let mut cmd = Command::new(&bin);
        cmd.args(["bundle", "refresh", "--bundle"])
            .arg(&bundle_file)
            .args(["--log", &server.url, "--key", key, "--quorum", "2"]);
        for k in &wkeys {
            cmd.args(["--witness", &k.to_text()]);
        }
        cmd.output().unwrap()
    };
    let before = std::fs::read(&bundle_file).unwrap();
    let other_key = NoteSigner::generate(ORIGIN).unwrap().verifier_key_text();
    let out = refresh(&other_key);
    assert!(
        !out.status.success(),
        "refresh with a wrong log key succeeded"
    );
    assert_eq!(std::fs::read(&bundle_file).unwrap(), before);
    let out = refresh(&signer.verifier_key_text());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refreshed = Bundle::parse(&std::fs::read(&bundle_file).unwrap()).unwrap();
    assert_eq!(refreshed.entry, e0);
    assert_eq!(refreshed.proof.index, 0);
    let verified = refreshed
        .proof
        .verify(&leaf_hash(&e0), &log_key, &wkeys, 2)
        .expect("refreshed bundle verifies with quorum 2");
    assert_eq!(verified.checkpoint.size, checkpoint_size(&published()));
    assert!(verified.checkpoint.size > 1);
    let last_cosigned = published();

    // A restarted server serves the stored cosigned checkpoint, and starts
    // from old size 0 for every witness: their 409s give the sizes to retry
    // from.
    server.terminate();
    let server = Server::start(&data, &root, &extra);
    let note = client
        .get(format!("{}/checkpoint", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(checkpoint_size(&note), checkpoint_size(&last_cosigned));
    verify_checkpoint(&note, &log_key, &wkeys, 2).expect("stored cosigned checkpoint");
    let e4 = entry(&nsm, 4);
    let (status, answer) = submit_to(&client, &server.url, &e4).unwrap();
    assert_eq!(status, 200, "{answer}");
    let cosigners = check_answer(&answer, &e4, &log_key, &wkeys);
    assert_eq!(cosigners, vec![names[1].to_string(), names[2].to_string()]);
}

/// An offline bundle from a submission answer.
fn bundle_of(entry: &[u8], answer: &Value) -> Bundle {
    Bundle {
        entry: entry.to_vec(),
        proof: TlogProof {
            extra: None,
            index: answer["index"].as_u64().unwrap(),
            hashes: answer["inclusion_proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(b64d)
                .collect(),
            checkpoint: answer["checkpoint"].as_str().unwrap().to_string(),
        },
        dsse_envelope: None,
    }
}

/// A witness whose cosignature does not verify under the key the server was
/// given counts as failed: its line is never published.
#[test]
fn cosignature_under_the_wrong_key_is_not_counted() {
    let Some(bin) = attestlog_bin() else {
        let _ = writeln!(
            std::io::stderr(),
            "skipping: the attestlog binary is not built next to attestlog-server"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    write_key(dir.path(), &signer);
    let key_file = dir.path().join("log.key");
    let logs = dir.path().join("logs.txt");
    std::fs::write(&logs, format!("{ORIGIN} {}\n", signer.verifier_key_text())).unwrap();
    let w1 = WitnessProc::start(
        &bin,
        "witness.test/w1",
        &dir.path().join("w1"),
        &logs,
        "127.0.0.1:0",
    );
    let w2 = WitnessProc::start(
        &bin,
        "witness.test/w2",
        &dir.path().join("w2"),
        &logs,
        "127.0.0.1:0",
    );
    // w2 is configured with another key of the same name.
    let impostor = attestlog::tlog::cosignature::CosignatureSigner::generate("witness.test/w2")
        .unwrap()
        .verifier_key_text();
    let key_arg = key_file.display().to_string();
    let w1_arg = format!("{}={}", w1.url, w1.vkey);
    let w2_arg = format!("{}={impostor}", w2.url);
    let server = Server::start(
        &dir.path().join("data"),
        &root,
        &[
            "--key-file",
            &key_arg,
            "--witness",
            &w1_arg,
            "--witness",
            &w2_arg,
        ],
    );
    let client = reqwest::blocking::Client::new();
    let (status, answer) = submit_to(&client, &server.url, &entry(&nsm, 0)).unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "witness_quorum");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("witness.test/w2"), "{message}");
    assert!(message.contains("no valid cosignature"), "{message}");
    assert!(!message.contains("witness.test/w1 "), "{message}");
    // No checkpoint was ever cosigned, so none is published.
    let resp = client
        .get(format!("{}/checkpoint", server.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

/// A witness that answers with more than `MAX_BODY` bytes is not read past
/// the limit: it counts as failed with that reason, and nothing is published.
#[test]
fn an_oversized_witness_answer_is_refused() {
    use std::io::Read;
    use std::net::TcpListener;

    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let signer = NoteSigner::generate(ORIGIN).unwrap();
    write_key(dir.path(), &signer);
    let key_file = dir.path().join("log.key");
    // A fake witness: reads each request whole, answers 200 with 1 MiB of
    // text lines.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let body_len = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    break Some(end + 4 + len);
                }
            };
            let Some(total) = body_len else { continue };
            while request.len() < total {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = "— witness.test/big AAAA\n".repeat(1 << 20 >> 5);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let vkey = attestlog::tlog::cosignature::CosignatureSigner::generate("witness.test/big")
        .unwrap()
        .verifier_key_text();
    let key_arg = key_file.display().to_string();
    let witness_arg = format!("{url}={vkey}");
    let server = Server::start(
        &dir.path().join("data"),
        &root,
        &["--key-file", &key_arg, "--witness", &witness_arg],
    );
    let client = reqwest::blocking::Client::new();
    let (status, answer) = submit_to(&client, &server.url, &entry(&nsm, 0)).unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "witness_quorum");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("witness.test/big"), "{message}");
    assert!(message.contains("answer is over 65536 bytes"), "{message}");
    let resp = client
        .get(format!("{}/checkpoint", server.url))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
