//! Test support: a real `attestlog-server` process on a loopback port, and
//! valid entries from the simulated NSM.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use attestlog::claim::{
    statement_user_data, Entry, SourceDependency, Statement, StatementParams, Subject,
};
use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use sha2::{Digest, Sha256};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub verifier_key: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts the server on a free port with the dev root trusted.
    pub fn start(data_dir: &Path, dev_root: &Path, extra: &[&str]) -> Server {
        Self::start_env(data_dir, dev_root, extra, &[])
    }

    /// The server command every test starts: the log in `data_dir` on a
    /// free loopback port, origin [`TEST_ORIGIN`], `dev_root` trusted,
    /// warnings logged.
    pub fn command(data_dir: &Path, dev_root: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_attestlog-server"));
        c.arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--origin", TEST_ORIGIN])
            .arg("--trust-root")
            .arg(dev_root)
            .env("RUST_LOG", "warn");
        c
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(
        data_dir: &Path,
        dev_root: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        let mut child = Self::command(data_dir, dev_root)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start attestlog-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut verifier_key = String::new();
        let mut url = String::new();
        for line in lines.by_ref() {
            let line = line.expect("server stdout");
            if let Some(k) = line.strip_prefix("verifier key: ") {
                verifier_key = k.to_string();
            }
            if let Some(u) = line.strip_prefix("listening on ") {
                url = u.to_string();
                break;
            }
        }
        assert!(!url.is_empty(), "server did not start");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            verifier_key,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the graceful shutdown.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A simulated NSM whose root is saved at `<dir>/root.pem`.
pub fn dev_nsm(dir: &Path) -> (SimulatedNsm, PathBuf) {
    let nsm = SimulatedNsm::generate(now_ms() / 1000 - 3600).expect("nsm");
    let root = dir.join("root.pem");
    std::fs::write(&root, nsm.root_pem()).expect("root.pem");
    (nsm, root)
}

pub fn pcrs(seed: u8) -> BTreeMap<u8, Vec<u8>> {
    (0u8..16)
        .map(|i| {
            (
                i,
                if i < 3 {
                    vec![seed.wrapping_add(i); 48]
                } else {
                    vec![0; 48]
                },
            )
        })
        .collect()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A valid entry for artifact `n`, attested now (or at `timestamp_ms`).
pub fn entry_at(
    nsm: &SimulatedNsm,
    n: u64,
    pcrs: &BTreeMap<u8, Vec<u8>>,
    timestamp_ms: u64,
) -> Vec<u8> {
    let definition = attestlog::claim::BuildDefinition::Repository {
        path: "attestlog-build.toml".into(),
        sha256: sha256(b"command = \"make\"\noutputs = [\"hello\"]\n"),
    };
    entry_with_definition(nsm, n, pcrs, timestamp_ms, definition)
}

/// [`entry_at`] recording `build_definition`.
pub fn entry_with_definition(
    nsm: &SimulatedNsm,
    n: u64,
    pcrs: &BTreeMap<u8, Vec<u8>>,
    timestamp_ms: u64,
    build_definition: attestlog::claim::BuildDefinition,
) -> Vec<u8> {
    let artifact = format!("artifact {n}");
    let (_, statement) = Statement::build(&StatementParams {
        subjects: vec![Subject {
            name: format!("bin-{n}"),
            sha256: sha256(artifact.as_bytes()),
        }],
        source: SourceDependency {
            uri: "git+https://example.com/repo.git".into(),
            git_commit: hex::encode(&sha256(&n.to_be_bytes())[..20]),
        },
        source_ref: attestlog::claim::SourceRef::Ref("refs/heads/main".into()),
        build_definition,
        builder_id: "https://attestlog.test/builder".into(),
        builder_version: "0.1.0".into(),
        command: vec!["make".into()],
        started_on: "2026-11-19T00:00:00Z".into(),
        finished_on: "2026-11-19T00:01:00Z".into(),
        internal_parameters: serde_json::json!({}),
        submodules: Vec::new(),
    })
    .expect("statement");
    let doc = nsm
        .attest(
            &AttestationRequest {
                user_data: Some(statement_user_data(&statement).to_vec()),
                nonce: None,
                public_key: None,
            },
            pcrs,
            timestamp_ms,
        )
        .expect("attest");
    Entry::encode(&statement, &doc).expect("entry")
}

pub fn entry(nsm: &SimulatedNsm, n: u64) -> Vec<u8> {
    entry_at(nsm, n, &pcrs(1), now_ms())
}

/// A base64 JSON string as a 32-byte hash.
pub fn b64d(s: &serde_json::Value) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().expect("string"))
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// POSTs an entry; the status and the JSON answer.
pub fn submit_to(
    client: &reqwest::blocking::Client,
    url: &str,
    body: &[u8],
) -> Result<(u16, serde_json::Value), String> {
    let resp = client
        .post(format!("{url}/v1/entries"))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec())
        .send()
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let answer = resp.json().map_err(|e| e.to_string())?;
    Ok((status, answer))
}

/// GET a URL's body as bytes.
pub fn get_bytes(client: &reqwest::blocking::Client, url: String) -> Vec<u8> {
    let resp = client.get(url).send().expect("GET");
    resp.bytes().expect("bytes").to_vec()
}

/// GET a URL's body as text.
pub fn get_text(client: &reqwest::blocking::Client, url: String) -> String {
    client.get(url).send().expect("GET").text().expect("text")
}

/// The origin every test server runs with (`Server::start`).
pub const TEST_ORIGIN: &str = "test.attestlog/log";

/// The `attestlog` binary, built beside this test (cargo builds it when a
/// test binary runs before it exists).
pub fn attestlog_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("attestlog");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-p", "attestlog", "--bin", "attestlog"])
            .status()
            .expect("cargo build");
        assert!(ok.success());
    }
    bin
}

/// Writes `signer` as `dir/log.key` (mode 0600), the key a server started
/// on `dir` signs with.
pub fn write_key(dir: &Path, signer: &attestlog::tlog::note::NoteSigner) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("log.key"))
        .expect("key file");
    writeln!(f, "{}", signer.private_key_text()).expect("write key");
}

/// Appends `entries` straight into the log stored in `dir`, without
/// verification (what only an old or broken log would hold), signed by
/// `signer` for [`TEST_ORIGIN`].
pub fn smuggle(dir: &Path, signer: &attestlog::tlog::note::NoteSigner, entries: &[Vec<u8>]) {
    use attestlog::tlog::checkpoint::Checkpoint;
    use attestlog_server::storage::{LogStore, NewEntry};
    let store = LogStore::open(&dir.join("log.db")).expect("open store");
    let sign = |size: u64, root: [u8; 32]| {
        let body = Checkpoint {
            origin: TEST_ORIGIN.into(),
            size,
            root_hash: root,
            extensions: vec![],
        }
        .to_body();
        signer.sign(&body).map_err(|e| e.to_string())
    };
    let batch: Vec<NewEntry> = entries
        .iter()
        .map(|e| NewEntry::new(e.clone(), vec![]))
        .collect();
    store.append_batch(&batch, &sign).expect("append");
}

/// Lowers the SQLite log at `path` to schema version 5: `leaf_index` and
/// `claim_index` keyed by the whole 32-byte leaf hash and claim id, as
/// versions 1 to 5 stored them, rebuilt from the entries (the first index of
/// each claim).
pub fn to_schema_5(path: &Path) {
    use attestlog::claim::entry_claim_id;
    use attestlog::tlog::merkle::leaf_hash;
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("begin");
    tx.execute_batch(
        "DROP TABLE leaf_index; DROP TABLE claim_index;
         CREATE TABLE leaf_index (leaf_hash BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE claim_index (claim_id BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;",
    )
    .expect("full-key tables");
    let rows: Vec<(i64, Vec<u8>)> = tx
        .prepare("SELECT idx, data FROM entries ORDER BY idx")
        .expect("select")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    for (idx, data) in rows {
        tx.execute(
            "INSERT INTO leaf_index (leaf_hash, idx) VALUES (?1, ?2)",
            rusqlite::params![&leaf_hash(&data)[..], idx],
        )
        .expect("leaf row");
        if let Ok(id) = entry_claim_id(&data) {
            tx.execute(
                "INSERT OR IGNORE INTO claim_index (claim_id, idx) VALUES (?1, ?2)",
                rusqlite::params![&id[..], idx],
            )
            .expect("claim row");
        }
    }
    tx.pragma_update(None, "user_version", 5).expect("version");
    tx.commit().expect("commit");
}
