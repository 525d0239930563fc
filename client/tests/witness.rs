//! `attestlog witness serve` over HTTP: every tlog-witness status and body,
//! persistence across restarts, and no inconsistent cosignatures when the
//! witness is SIGKILLed while answering.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attestlog::tlog::checkpoint::{verify_checkpoint, Checkpoint};
use attestlog::tlog::cosignature::CosignatureVerifierKey;
use attestlog::tlog::merkle::{consistency_proof_from_leaves, leaf_hash, RootBuilder};
use attestlog::tlog::note::NoteSigner;
use attestlog::tlog::Hash;
use attestlog::witness::AddCheckpointRequest;

struct WitnessProc {
    child: Child,
    url: String,
    vkey: String,
}

impl WitnessProc {
    fn start(state: &Path, logs: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_attestlog"))
            .args(["witness", "serve", "--listen", "127.0.0.1:0", "--name"])
            .arg("witness.test/w1")
            .arg("--state")
            .arg(state)
            .arg("--logs")
            .arg(logs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn witness");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let vkey = lines.next().unwrap().unwrap();
        let vkey = vkey.strip_prefix("witness key: ").unwrap().to_string();
        let url = lines.next().unwrap().unwrap();
        let url = url.strip_prefix("listening on ").unwrap().to_string();
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

/// A log kept in memory: leaves and a signing key.
struct TestLog {
    signer: NoteSigner,
    leaves: Vec<Hash>,
}

impl TestLog {
    fn new(origin: &str, seed: u8, n: usize) -> Self {
        TestLog {
            signer: NoteSigner::from_seed(origin, [seed; 32]).unwrap(),
            leaves: (0..n)
                .map(|i| leaf_hash(format!("{origin} entry {i}").as_bytes()))
                .collect(),
        }
    }

    fn root(&self, size: u64) -> Hash {
        let mut b = RootBuilder::new();
        for l in &self.leaves[..size as usize] {
            b.push(*l);
        }
        b.root()
    }

    fn body(&self, size: u64) -> String {
        Checkpoint {
            origin: self.signer.name().to_string(),
            size,
            root_hash: self.root(size),
            extensions: vec![],
        }
        .to_body()
    }

    fn note(&self, size: u64) -> String {
        self.signer.sign(&self.body(size)).unwrap()
    }

    fn request(&self, old: u64, size: u64) -> String {
        let proof = if old == 0 || old == size {
            vec![]
        } else {
            consistency_proof_from_leaves(&self.leaves, old, size).unwrap()
        };
        AddCheckpointRequest {
            old_size: old,
            proof,
            note: self.note(size),
        }
        .to_body()
    }

    fn vkey(&self) -> String {
        self.signer.verifier_key_text()
    }
}

fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    body: String,
) -> reqwest::Result<(u16, String, String)> {
    let resp = client
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Ok((status, ct, resp.text()?))
}

fn write_logs(dir: &Path, logs: &[&TestLog]) -> PathBuf {
    let path = dir.join("logs.txt");
    let mut text = String::from("# test logs\n\n");
    for l in logs {
        text.push_str(&format!("{} {}\n", l.signer.name(), l.vkey()));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_status_and_body() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new("example.com/log", 1, 40);
    let other = TestLog::new("example.com/other", 2, 10);
    let logs = write_logs(dir.path(), &[&log, &other]);
    let state = dir.path().join("state");
    let mut w = WitnessProc::start(&state, &logs);
    let client = reqwest::blocking::Client::new();

    // Key file: signed-note private key text, mode 0600, printed verifier key.
    let key_path = state.join("witness.key");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_text = std::fs::read_to_string(&key_path).unwrap();
    assert!(key_text.starts_with("PRIVATE+KEY+witness.test/w1+"));
    let wkey = CosignatureVerifierKey::parse(&w.vkey).unwrap();
    let log_key = log.signer.verifier_key().unwrap();

    // 200: first checkpoint, old 0.
    let (status, ct, body) = post(&client, &w.url, log.request(0, 5)).unwrap();
    assert_eq!(
        (status, ct.as_str()),
        (200, "text/plain; charset=utf-8"),
        "{body}"
    );
    assert!(body.starts_with("\u{2014} witness.test/w1 ") && body.ends_with('\n'));
    let cosigned = format!("{}{body}", log.note(5));
    let v = verify_checkpoint(&cosigned, &log_key, std::slice::from_ref(&wkey), 1).unwrap();
    assert_eq!(v.cosigners.len(), 1);

    // 409: old size is not what the witness last cosigned.
    let (status, ct, body) = post(&client, &w.url, log.request(0, 8)).unwrap();
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "5\n")
    );
    let (status, ct, body) = post(&client, &w.url, log.request(3, 8)).unwrap();
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "5\n")
    );

    // 422: bad consistency proof.
    let mut req = AddCheckpointRequest::parse(log.request(5, 8).as_bytes()).unwrap();
    req.proof[0][0] ^= 1;
    let (status, _, _) = post(&client, &w.url, req.to_body()).unwrap();
    assert_eq!(status, 422);
    // 422: a proof of the wrong length.
    let mut req = AddCheckpointRequest::parse(log.request(5, 8).as_bytes()).unwrap();
    req.proof.pop();
    assert_eq!(post(&client, &w.url, req.to_body()).unwrap().0, 422);

    // 400: old size larger than the checkpoint size.
    let (status, _, _) =
        post(&client, &w.url, log.request(0, 4).replace("old 0", "old 9")).unwrap();
    assert_eq!(status, 400);
    // 400: malformed bodies.
    for bad in [
        "hello".to_string(),
        "old 05\n\n".to_string() + &log.note(8),
        "old 5\nnot-base64\n\n".to_string() + &log.note(8),
        "old 5\n".to_string() + &log.note(8),
        format!(
            "old 5\n{}\n{}",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64),
            log.note(8)
        ),
    ] {
        let (status, ct, _) = post(&client, &w.url, bad.clone()).unwrap();
        assert_eq!(
            (status, ct.as_str()),
            (400, "text/plain; charset=utf-8"),
            "{bad:?}"
        );
    }

    // 404: unknown origin.
    let stranger = TestLog::new("example.com/stranger", 3, 10);
    assert_eq!(
        post(&client, &w.url, stranger.request(0, 4)).unwrap().0,
        404
    );

    // 403: the origin is known but signed by another key.
    let impostor = TestLog::new("example.com/log", 4, 10);
    assert_eq!(
        post(&client, &w.url, impostor.request(5, 8)).unwrap().0,
        403
    );
    // 403: a trusted key's signature that does not verify.
    let note = log.note(8);
    let forged = note.replace(&log.body(8), &log.body(8).replace("\n8\n", "\n9\n"));
    let req = format!("old 5\n\n{forged}");
    assert_eq!(post(&client, &w.url, req).unwrap().0, 403);

    // 422: same size, different root (a fork at the stored size). The
    // current tlog-witness text: "If the old size matches the checkpoint
    // size, the witness MUST check that the root hashes are also identical.
    // If they don't match, the witness MUST respond with a "422
    // Unprocessable Entity" HTTP status code." (v1.0.0 said 409.)
    let fork = TestLog {
        signer: NoteSigner::from_seed("example.com/log", [1; 32]).unwrap(),
        leaves: (0..10).map(|i| leaf_hash(&[i as u8])).collect(),
    };
    let (status, ct, _) = post(&client, &w.url, fork.request(5, 5)).unwrap();
    assert_eq!((status, ct.as_str()), (422, "text/plain; charset=utf-8"));
    // ... and a forked larger tree fails its proof.
    assert_eq!(post(&client, &w.url, fork.request(5, 8)).unwrap().0, 422);

    // 200: the same checkpoint again, and a consistent extension.
    assert_eq!(post(&client, &w.url, log.request(5, 5)).unwrap().0, 200);
    assert_eq!(post(&client, &w.url, log.request(5, 8)).unwrap().0, 200);

    // 422: old 0 with a proof for a new origin; then 200 without it.
    let mut req = AddCheckpointRequest::parse(other.request(0, 4).as_bytes()).unwrap();
    req.proof = vec![[0; 32]];
    assert_eq!(post(&client, &w.url, req.to_body()).unwrap().0, 422);
    assert_eq!(post(&client, &w.url, other.request(0, 4)).unwrap().0, 200);

    // State and key survive a restart.
    w.kill();
    let w2 = WitnessProc::start(&state, &logs);
    assert_eq!(w2.vkey, w.vkey);
    let (status, ct, body) = post(&client, &w2.url, log.request(5, 12)).unwrap();
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "8\n")
    );
    assert_eq!(post(&client, &w2.url, log.request(8, 12)).unwrap().0, 200);
    assert_eq!(post(&client, &w2.url, other.request(4, 10)).unwrap().0, 200);
}

#[test]
fn key_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new("example.com/log", 1, 4);
    let logs = write_logs(dir.path(), &[&log]);
    let state = dir.path().join("state");
    drop(WitnessProc::start(&state, &logs));
    let key = state.join("witness.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_attestlog"))
        .args(["witness", "serve", "--listen", "127.0.0.1:0", "--state"])
        .arg(&state)
        .arg("--logs")
        .arg(&logs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: key: ") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Tiny deterministic PRNG for the test's choices.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn sigkill_while_answering_never_cosigns_a_fork() {
    const N: usize = 300;
    const SHARED: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    // Two views of one log (same key): equal for SHARED leaves, then not.
    let a = Arc::new(TestLog::new("example.com/log", 1, N));
    let mut b_log = TestLog::new("example.com/log", 1, N);
    for i in SHARED..N {
        b_log.leaves[i] = leaf_hash(format!("fork {i}").as_bytes());
    }
    let b = Arc::new(b_log);
    let logs = write_logs(dir.path(), &[&a]);
    let state = dir.path().join("state");
    let w = WitnessProc::start(&state, &logs);
    let vkey = w.vkey.clone();
    let url = Arc::new(Mutex::new(w.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    // (branch, size, cosignature line) of every 200.
    let cosigned = Arc::new(Mutex::new(Vec::<(usize, u64, String)>::new()));

    let mut threads = Vec::new();
    for t in 0..4usize {
        let (a, b, url, stop, cosigned) = (
            a.clone(),
            b.clone(),
            url.clone(),
            stop.clone(),
            cosigned.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let log = if t % 2 == 0 { &a } else { &b };
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 + t as u64;
            let mut known = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let target = (known + 1 + next(&mut rng) % 8).min(N as u64);
                let u = url.lock().unwrap().clone();
                match post(&client, &u, log.request(known, target)) {
                    Ok((200, _, line)) => {
                        cosigned.lock().unwrap().push((t % 2, target, line));
                        known = target;
                    }
                    Ok((409, _, size)) => known = size.trim().parse().unwrap(),
                    Ok((422, _, _)) => std::thread::sleep(Duration::from_millis(2)),
                    Ok((s, _, body)) => panic!("unexpected {s}: {body}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                if known == N as u64 {
                    known = 0; // learn the size again
                }
            }
        }));
    }

    let mut w = w;
    let mut rng = 12345u64;
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(80 + next(&mut rng) % 120));
        w.kill(); // SIGKILL, whatever it was doing
        w = WitnessProc::start(&state, &logs);
        assert_eq!(w.vkey, vkey);
        *url.lock().unwrap() = w.url.clone();
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    w.kill();

    // The persisted state, read directly.
    let store = attestlog::witness::WitnessStore::open(&state.join("witness.db")).unwrap();
    let st = store.get("example.com/log").unwrap().expect("state");
    let final_branch = if st.root == a.root(st.size) {
        &a
    } else {
        assert_eq!(st.root, b.root(st.size), "state root is on neither view");
        &b
    };

    let cosigned = cosigned.lock().unwrap();
    assert!(cosigned.len() > 10, "only {} cosignatures", cosigned.len());
    let wkey = CosignatureVerifierKey::parse(&vkey).unwrap();
    let log_key = a.signer.verifier_key().unwrap();
    for (branch, size, line) in cosigned.iter() {
        let log = if *branch == 0 { &a } else { &b };
        let note = format!("{}{line}", log.note(*size));
        verify_checkpoint(&note, &log_key, std::slice::from_ref(&wkey), 1).unwrap();
        // Every cosigned checkpoint is a prefix of the persisted chain.
        assert!(*size <= st.size, "cosigned {size} but state is {}", st.size);
        assert_eq!(
            log.root(*size),
            final_branch.root(*size),
            "cosigned size {size} of another view"
        );
    }
    eprintln!(
        "{} cosignatures, state size {}, 8 SIGKILLs",
        cosigned.len(),
        st.size
    );
}

/// Validly signed failing requests (each a 40 KiB checkpoint with a bad
/// proof) keep at most the capped evidence: the row count and the stored
/// bytes stay under the caps and the database stops growing, however many
/// arrive. Unknown origins and bad signatures store nothing at all.
#[test]
fn evidence_stays_bounded_whatever_the_number_of_requests() {
    use attestlog::witness::{
        WitnessStore, MAX_EVIDENCE_PER_ORIGIN, MAX_EVIDENCE_REQUEST, MAX_EVIDENCE_ROWS,
    };
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new("example.com/log", 1, 40);
    let stranger = TestLog::new("example.com/stranger", 3, 40);
    let logs = write_logs(dir.path(), &[&log]);
    let state = dir.path().join("state");
    let w = WitnessProc::start(&state, &logs);
    let client = reqwest::blocking::Client::new();
    assert_eq!(post(&client, &w.url, log.request(0, 5)).unwrap().0, 200);

    // A checkpoint at size 8 padded with 500 extension lines (all signed),
    // with a broken consistency proof from 5.
    let padded = |n: usize| {
        let cp = Checkpoint {
            origin: log.signer.name().to_string(),
            size: 8,
            root_hash: log.root(8),
            extensions: (0..500)
                .map(|i| format!("pad {n} {i} {}", "x".repeat(64)))
                .collect(),
        };
        let mut proof = consistency_proof_from_leaves(&log.leaves, 5, 8).unwrap();
        proof[0][0] ^= 1;
        AddCheckpointRequest {
            old_size: 5,
            proof,
            note: log.signer.sign(&cp.to_body()).unwrap(),
        }
        .to_body()
    };
    assert!(padded(0).len() > 4 * MAX_EVIDENCE_REQUEST);
    let db = state.join("witness.db");
    let store = WitnessStore::open(&db).unwrap();
    let pages = || -> i64 {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
    };
    let send = |from: usize, to: usize| {
        for n in from..to {
            let (status, _, body) = post(&client, &w.url, padded(n)).unwrap();
            assert_eq!(status, 422, "{body}");
        }
    };

    send(0, 100);
    let first = (store.evidence_usage().unwrap(), pages());
    send(100, 300);
    let usage = store.evidence_usage().unwrap();
    assert_eq!(usage.rows, MAX_EVIDENCE_PER_ORIGIN as u64);
    assert!(usage.rows <= MAX_EVIDENCE_ROWS as u64);
    assert_eq!(usage.max_rows_per_origin, MAX_EVIDENCE_PER_ORIGIN as u64);
    assert!(usage.request_bytes <= (MAX_EVIDENCE_PER_ORIGIN * MAX_EVIDENCE_REQUEST) as u64);
    assert_eq!(usage, first.0, "the evidence changed size after the caps");
    assert!(
        pages() <= first.1,
        "the database grew from {} to {} pages",
        first.1,
        pages()
    );
    // The write-ahead log is checkpointed at 1000 pages, so it is bounded
    // too; the database file holds no more than its pages.
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    assert!(size(&db) <= 4096 * first.1 as u64, "{}", size(&db));
    assert!(size(&state.join("witness.db-wal")) < 5 << 20);

    // Nothing is stored for an origin not in the list, nor for a request
    // not signed by the log's key.
    let (status, _, _) = post(&client, &w.url, stranger.request(0, 5)).unwrap();
    assert_eq!(status, 404);
    let forged = padded(0).replace(log.signer.name(), stranger.signer.name());
    assert!(matches!(
        post(&client, &w.url, forged).unwrap().0,
        403 | 404
    ));
    let mut unsigned = padded(1);
    unsigned.truncate(unsigned.rfind('\u{2014}').unwrap());
    assert_eq!(post(&client, &w.url, unsigned).unwrap().0, 403);
    assert_eq!(store.evidence_usage().unwrap(), usage);
}
