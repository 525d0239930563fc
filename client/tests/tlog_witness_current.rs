//! `attestlog witness serve` against the current c2sp.org/tlog-witness text
//! (not only v1.0.0), over real HTTP on 127.0.0.1: an ML-DSA-44 witness key,
//! the 422 answers, the monitoring endpoint
//! `GET /<hex SHA-256(origin)>/checkpoint`, and a log whose origin is not its
//! key name (a real sum.golang.org checkpoint, origin `go.sum database
//! tree`), checked with `attestlog checkpoint verify --origin/--policy`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use attestlog::tlog::checkpoint::{verify_checkpoint_for_origin, Checkpoint};
use attestlog::tlog::cosignature::{CosignatureKind, CosignatureVerifierKey};
use attestlog::tlog::merkle::{consistency_proof_from_leaves, leaf_hash, RootBuilder};
use attestlog::tlog::note::NoteSigner;
use attestlog::tlog::Hash;
use attestlog::witness::{origin_hash, AddCheckpointRequest};
use sha2::Digest;

const SUMDB_NOTE: &str = "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n\u{2014} sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n";
/// A later real checkpoint of the same log.
const SUMDB_NOTE_LATER: &str = "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n\u{2014} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n";
const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_ORIGIN: &str = "go.sum database tree";

struct WitnessProc {
    child: Child,
    url: String,
    vkey: String,
}

impl WitnessProc {
    fn start(state: &Path, logs: &Path, key_type: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_attestlog"))
            .args(["witness", "serve", "--listen", "127.0.0.1:0"])
            .args(["--name", "witness.test/pq", "--key-type", key_type])
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
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

fn post(url: &str, body: String) -> (u16, String, String) {
    let resp = client()
        .post(format!("{url}/add-checkpoint"))
        .body(body)
        .send()
        .unwrap();
    answer(resp)
}

fn get(url: &str, path: &str) -> (u16, String, String) {
    answer(client().get(format!("{url}{path}")).send().unwrap())
}

fn answer(resp: reqwest::blocking::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().unwrap())
}

/// A log whose key name may differ from its origin.
struct TestLog {
    origin: String,
    signer: NoteSigner,
    leaves: Vec<Hash>,
}

impl TestLog {
    fn new(origin: &str, key_name: &str, n: usize) -> Self {
        TestLog {
            origin: origin.into(),
            signer: NoteSigner::from_seed(key_name, [1; 32]).unwrap(),
            leaves: (0..n)
                .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
                .collect(),
        }
    }

    fn note_with_root(&self, size: u64, root_hash: Hash) -> String {
        let body = Checkpoint {
            origin: self.origin.clone(),
            size,
            root_hash,
            extensions: vec![],
        }
        .to_body();
        self.signer.sign(&body).unwrap()
    }

    fn note(&self, size: u64) -> String {
        let mut b = RootBuilder::new();
        for l in &self.leaves[..size as usize] {
            b.push(*l);
        }
        self.note_with_root(size, b.root())
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
}

fn request(old: u64, note: &str) -> String {
    format!("old {old}\n\n{note}")
}

#[test]
fn mldsa_witness_422s_and_monitoring_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    // Origin with spaces, key named otherwise: the key-first log list line.
    let log = TestLog::new("example.com log with spaces", "example.com/log", 20);
    let logs = dir.path().join("logs.txt");
    std::fs::write(
        &logs,
        format!(
            "# key first, then the origin\n{} {}\n",
            log.signer.verifier_key_text(),
            log.origin
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let w = WitnessProc::start(&state, &logs, "mldsa44");
    let wkey = CosignatureVerifierKey::parse(&w.vkey).unwrap();
    assert_eq!(wkey.kind(), CosignatureKind::MlDsa44);
    assert!(std::fs::read_to_string(state.join("witness.key"))
        .unwrap()
        .starts_with("PRIVATE+KEY+witness.test/pq+"));
    let log_key = log.signer.verifier_key().unwrap();
    let hash_path = format!("/{}/checkpoint", origin_hash(&log.origin));
    // The path segment is the lowercase hex SHA-256 of the origin line.
    assert_eq!(
        origin_hash(&log.origin),
        hex::encode(sha2::Sha256::digest(log.origin.as_bytes()))
    );

    // 404 before anything was cosigned, and for unknown hashes.
    assert_eq!(get(&w.url, &hash_path).0, 404);
    assert_eq!(
        get(&w.url, &format!("/{}/checkpoint", "0".repeat(64))).0,
        404
    );
    assert_eq!(get(&w.url, "/not-hex/checkpoint").0, 404);

    // 422: a size-0 checkpoint must carry the empty-tree root.
    let (status, _, body) = post(&w.url, request(0, &log.note_with_root(0, [7; 32])));
    assert_eq!(status, 422, "{body}");
    // 200: cosigned with ML-DSA-44.
    let (status, ct, line) = post(&w.url, log.request(0, 5));
    assert_eq!(
        (status, ct.as_str()),
        (200, "text/plain; charset=utf-8"),
        "{line}"
    );
    let cosigned = format!("{}{line}", log.note(5));
    let v = verify_checkpoint_for_origin(
        &cosigned,
        &log.origin,
        std::slice::from_ref(&log_key),
        std::slice::from_ref(&wkey),
        1,
    )
    .unwrap();
    assert_eq!(v.cosigners[0].0, "witness.test/pq");
    assert_ne!(v.cosigners[0].1, 0);

    // GET: the checkpoint with the log signature and the same cosignature.
    let (status, ct, served) = get(&w.url, &hash_path);
    assert_eq!((status, ct.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(served, cosigned);

    // 422 (not 409 as in v1.0.0): same size, another root.
    let (status, ct, body) = post(&w.url, request(5, &log.note_with_root(5, [9; 32])));
    assert_eq!(
        (status, ct.as_str()),
        (422, "text/plain; charset=utf-8"),
        "{body}"
    );
    // 422: a non-empty proof at old size 0 is refused too (new origin case
    // is covered in witness.rs); here: old = size with a proof.
    let mut req = AddCheckpointRequest::parse(log.request(5, 5).as_bytes()).unwrap();
    req.proof = vec![[0; 32]];
    assert_eq!(post(&w.url, req.to_body()).0, 422);
    // 409 keeps its size body.
    let (status, ct, body) = post(&w.url, log.request(0, 9));
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "5\n")
    );
    // The refusals did not move the served checkpoint; a consistent
    // extension does.
    assert_eq!(get(&w.url, &hash_path).2, cosigned);
    let (status, _, line) = post(&w.url, log.request(5, 9));
    assert_eq!(status, 200);
    assert_eq!(get(&w.url, &hash_path).2, format!("{}{line}", log.note(9)));

    // The key type is fixed at first start.
    let again = Command::new(env!("CARGO_BIN_EXE_attestlog"))
        .args(["witness", "serve", "--listen", "127.0.0.1:0"])
        .args(["--key-type", "ed25519", "--state"])
        .arg(&state)
        .arg("--logs")
        .arg(&logs)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.starts_with("error: key: ") && stderr.contains("MlDsa44"),
        "{stderr}"
    );
}

#[test]
fn go_sumdb_checkpoint_witnessed_and_verified_by_origin() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs.txt");
    // Key first, origin (with spaces) after it; an older-form line beside it.
    let other = NoteSigner::from_seed("example.com/other", [2; 32]).unwrap();
    std::fs::write(
        &logs,
        format!(
            "{SUMDB_VKEY} {SUMDB_ORIGIN}\nexample.com/other {}\n",
            other.verifier_key_text()
        ),
    )
    .unwrap();
    let w = WitnessProc::start(&dir.path().join("state"), &logs, "mldsa44");

    let (status, _, line) = post(&w.url, request(0, SUMDB_NOTE));
    assert_eq!(status, 200, "{line}");
    // A later real checkpoint without the consistency proof: 422.
    assert_eq!(post(&w.url, request(31_700_353, SUMDB_NOTE_LATER)).0, 422);
    // The older-form line still works.
    let other_body = Checkpoint {
        origin: "example.com/other".into(),
        size: 0,
        root_hash: attestlog::tlog::merkle::empty_root(),
        extensions: vec![],
    }
    .to_body();
    assert_eq!(
        post(&w.url, request(0, &other.sign(&other_body).unwrap())).0,
        200
    );

    let (status, _, served) = get(
        &w.url,
        &format!("/{}/checkpoint", origin_hash(SUMDB_ORIGIN)),
    );
    assert_eq!(status, 200);
    assert_eq!(served, format!("{SUMDB_NOTE}{line}"));
    let file = dir.path().join("cp.txt");
    std::fs::write(&file, &served).unwrap();

    let verify = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_attestlog"))
            .args(["checkpoint", "verify"])
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // --origin: the key name need not equal the origin.
    let (ok, stdout, stderr) = verify(&[
        "--key",
        SUMDB_VKEY,
        "--origin",
        SUMDB_ORIGIN,
        "--witness",
        &w.vkey,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("valid: go.sum database tree size 31700353 "));
    assert!(stdout.contains("cosigned by witness.test/pq at "));
    // Without an origin, the origin must be the key name: refused.
    let (ok, _, stderr) = verify(&["--key", SUMDB_VKEY]);
    assert!(!ok);
    assert!(stderr.starts_with("error: origin_mismatch: "), "{stderr}");
    // Another origin: refused.
    let (ok, _, stderr) = verify(&["--key", SUMDB_VKEY, "--origin", "sum.golang.org"]);
    assert!(!ok && stderr.contains("origin_mismatch"), "{stderr}");

    // The origin and keys from a policy.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "log_keys = [\"{SUMDB_VKEY}\"]\nlog_origin = \"{SUMDB_ORIGIN}\"\n\n[witnesses]\nkeys = [\"{}\"]\nquorum = 1\n",
            w.vkey
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = verify(&["--policy", policy.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cosigned by witness.test/pq"));
    // The policy's quorum is enforced: the log signature alone is not enough.
    std::fs::write(&file, SUMDB_NOTE).unwrap();
    let (ok, _, stderr) = verify(&["--policy", policy.to_str().unwrap()]);
    assert!(
        !ok && stderr.starts_with("error: witness_quorum: "),
        "{stderr}"
    );
    // A changed cosignature byte is refused by the CLI.
    let mut tampered = served.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&file, &tampered).unwrap();
    let (ok, _, stderr) = verify(&["--policy", policy.to_str().unwrap()]);
    assert!(!ok && stderr.contains("invalid_cosignature"), "{stderr}");
}

#[test]
fn monitoring_serves_a_state_stored_before_cosignatures_were_kept() {
    use attestlog::tlog::cosignature::CosignatureSigner;
    use attestlog::witness::{LogList, Witness, WitnessState, WitnessStore};
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new("example.com/log", "example.com/log", 4);
    let store = WitnessStore::open(&dir.path().join("witness.db")).unwrap();
    // What an older witness stored: the submitted note, without its
    // cosignature.
    let mut b = RootBuilder::new();
    for l in &log.leaves[..4] {
        b.push(*l);
    }
    store
        .compare_and_swap("example.com/log", |_| {
            Ok(WitnessState {
                size: 4,
                root: b.root(),
                note: log.note(4),
            })
        })
        .unwrap();
    let signer =
        CosignatureSigner::from_seed_kind("witness.test/pq", CosignatureKind::MlDsa44, [5; 32])
            .unwrap();
    let wkey = signer.verifier_key();
    let list = LogList::parse(&format!("{}\n", log.signer.verifier_key_text())).unwrap();
    let witness = Witness::new(signer, list, store);
    let a = witness.monitoring_checkpoint(&origin_hash("example.com/log"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.starts_with(&log.note(4)));
    verify_checkpoint_for_origin(
        &a.body,
        "example.com/log",
        &[log.signer.verifier_key().unwrap()],
        &[wkey],
        1,
    )
    .unwrap();
}

#[test]
fn policy_log_origin_and_mldsa_witness_keys() {
    use attestlog::policy::Policy;
    use attestlog::tlog::cosignature::CosignatureSigner;
    let pq =
        CosignatureSigner::from_seed_kind("witness.test/pq", CosignatureKind::MlDsa44, [6; 32])
            .unwrap()
            .verifier_key_text();
    let base = format!("log_keys = [\"{SUMDB_VKEY}\"]\n");
    let p = Policy::from_toml(
        &format!("{base}log_origin = \"{SUMDB_ORIGIN}\"\n[witnesses]\nkeys = [\"{pq}\"]\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(p.log_origin.as_deref(), Some(SUMDB_ORIGIN));
    assert_eq!(p.witnesses[0].kind(), CosignatureKind::MlDsa44);
    assert_eq!(p.witness_quorum, 1);
    assert_eq!(
        Policy::from_toml(&base, Path::new(".")).unwrap().log_origin,
        None
    );
    for bad in ["", "two\\nlines"] {
        let err = Policy::from_toml(&format!("{base}log_origin = \"{bad}\"\n"), Path::new("."))
            .err()
            .unwrap();
        assert_eq!(err.code(), "bad_policy");
        assert!(err.to_string().contains("log_origin"), "{err}");
    }
}
