//! The failover tests' cluster: two frontends on a private PostgreSQL and
//! a private SeaweedFS, the submitters' load, and seeded randomness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use attestlog::nitro::sim::SimulatedNsm;
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use reqwest::blocking::Client;
use serde_json::Value;

use crate::common::{self, b64d, dev_nsm, entry, write_key, Server, TEST_ORIGIN};
use crate::postgres_common::query_on;
use crate::private_pg::PrivatePg;
use crate::seaweed::PrivateSeaweed;

/// splitmix64: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(test: &str) -> Rng {
        let seed = std::env::var("ATTESTLOG_FAILOVER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(common::now_ms);
        eprintln!("{test}: seed {seed} (ATTESTLOG_FAILOVER_SEED={seed} replays it)");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// What one submission got.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 200: the answer.
    Acked(Value),
    /// An HTTP error answer: status and code.
    Refused(u16, String),
    /// No answer (connection refused or reset: the frontend died).
    Lost(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub entry: Vec<u8>,
    pub outcome: Outcome,
}

/// Two frontends, their PostgreSQL and object store.
pub struct Cluster {
    // Field order: the servers stop before their services.
    pub frontends: Mutex<Vec<Option<Server>>>,
    pub pg: Mutex<PrivatePg>,
    pub pg_url: String,
    pub weed: Mutex<PrivateSeaweed>,
    pub weed_env: Vec<(&'static str, String)>,
    pub objects: String,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub nsm: SimulatedNsm,
    pub key: NoteVerifierKey,
    pub signer_vkey: String,
    /// The frontends' URLs for the submitters (`None` while down).
    pub urls: RwLock<Vec<Option<String>>>,
    pub client: Client,
    /// Submissions answered with an error so far.
    pub refusals: AtomicU64,
}

impl Cluster {
    pub fn start() -> Cluster {
        let pg = PrivatePg::start();
        let weed = PrivateSeaweed::start();
        let dir = tempfile::tempdir().unwrap();
        let (nsm, root) = dev_nsm(dir.path());
        let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
        for f in 0..2 {
            write_key(&dir.path().join(format!("f{f}")), &signer);
        }
        let c = Cluster {
            objects: weed.url("log"),
            pg_url: pg.url.clone(),
            pg: Mutex::new(pg),
            weed_env: weed.env(),
            weed: Mutex::new(weed),
            dir,
            root,
            nsm,
            key: NoteVerifierKey::parse(&signer.verifier_key_text()).unwrap(),
            signer_vkey: signer.verifier_key_text(),
            frontends: Mutex::new(vec![None, None]),
            urls: RwLock::new(vec![None, None]),
            refusals: AtomicU64::new(0),
            client: Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap(),
        };
        // Both at once: both compete for the lease on the empty log.
        let started: Vec<Server> = std::thread::scope(|s| {
            let c = &c;
            let hs: Vec<_> = (0..2).map(|f| s.spawn(move || c.spawn(f))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (f, server) in started.into_iter().enumerate() {
            c.set(f, Some(server));
        }
        c
    }

    pub fn spawn(&self, f: usize) -> Server {
        let data = self.dir.path().join(format!("f{f}"));
        let storage = ["--storage", &self.pg_url, "--objects", &self.objects];
        let extra = [&storage[..], &["--batch-max-age", "10"]].concat();
        Server::start_env(&data, &self.root, &extra, &self.weed_env)
    }

    /// A `--read-only` reader on the log, pinned to its key.
    pub fn reader(&self) -> Server {
        let data = self.dir.path().join("reader");
        let args = [
            "--storage",
            &self.pg_url,
            "--objects",
            &self.objects,
            "--read-only",
            "--verifier-key",
            &self.signer_vkey,
        ];
        Server::start_env(&data, &self.root, &args, &self.weed_env)
    }

    /// The bucket's prefix over HTTP (path-style), as a CDN or any
    /// tlog-tiles client reads it.
    pub fn bucket_url(&self) -> String {
        let path = self.objects.strip_prefix("s3://").expect("an s3:// bucket");
        format!("{}/{path}", self.weed.lock().unwrap().endpoint)
    }

    pub fn set(&self, f: usize, server: Option<Server>) {
        self.urls.write().unwrap()[f] = server.as_ref().map(|s| s.url.clone());
        self.frontends.lock().unwrap()[f] = server;
    }

    /// SIGKILL frontend `f`.
    pub fn kill(&self, f: usize) {
        self.urls.write().unwrap()[f] = None;
        let server = self.frontends.lock().unwrap()[f].take();
        if let Some(mut s) = server {
            s.kill();
        }
    }

    pub fn restart(&self, f: usize) {
        let server = self.spawn(f);
        self.set(f, Some(server));
    }

    pub fn url(&self, f: usize) -> String {
        self.urls.read().unwrap()[f].clone().expect("frontend up")
    }

    pub fn pid(&self, f: usize) -> Option<u32> {
        self.frontends.lock().unwrap()[f]
            .as_ref()
            .map(|s| s.child.id())
    }

    /// Which frontend holds the integrator lease (by the pid in `holder`).
    pub fn integrator(&self) -> Option<usize> {
        let holder = query_on(
            &self.pg_url,
            "SELECT holder FROM lease WHERE expires_at > now()",
        );
        let pid: u32 = holder.first()?.split('/').nth(1)?.parse().ok()?;
        (0..2).find(|f| self.pid(*f) == Some(pid))
    }

    pub fn entry(&self, n: u64) -> Vec<u8> {
        entry(&self.nsm, n)
    }

    /// Posts `e` to a live frontend (the `prefer`red one if up).
    pub fn submit(&self, e: &[u8], prefer: usize) -> Outcome {
        let url = loop {
            let urls = self.urls.read().unwrap();
            if let Some(u) = urls[prefer % 2]
                .clone()
                .or_else(|| urls[(prefer + 1) % 2].clone())
            {
                break u;
            }
            drop(urls);
            std::thread::sleep(Duration::from_millis(20));
        };
        submit_to(&self.client, &url, e)
    }

    /// `submitters` threads post entries `first..first + count` until done
    /// or `stop` is set.
    pub fn load(
        &self,
        first: u64,
        count: u64,
        submitters: usize,
        stop: &AtomicBool,
    ) -> Vec<Record> {
        let next = AtomicU64::new(first);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..submitters)
                .map(|t| {
                    let next = &next;
                    s.spawn(move || {
                        let mut out = Vec::new();
                        while !stop.load(Ordering::Acquire) {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            if n >= first + count {
                                break;
                            }
                            let e = self.entry(n);
                            let outcome = self.submit(&e, t + n as usize);
                            if matches!(outcome, Outcome::Refused(..)) {
                                self.refusals.fetch_add(1, Ordering::Relaxed);
                            }
                            if !matches!(outcome, Outcome::Acked(_)) {
                                // As a client would: back off before the next one.
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            out.push(Record { entry: e, outcome });
                        }
                        out
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }
}

pub fn submit_to(client: &Client, url: &str, e: &[u8]) -> Outcome {
    let resp = client
        .post(format!("{url}/v1/entries"))
        .header("content-type", "application/octet-stream")
        .body(e.to_vec())
        .send();
    let resp = match resp {
        Ok(r) => r,
        Err(err) => return Outcome::Lost(err.to_string()),
    };
    let status = resp.status().as_u16();
    match resp.json::<Value>() {
        Ok(v) if status == 200 => Outcome::Acked(v),
        Ok(v) => Outcome::Refused(status, v["error"].as_str().unwrap_or("?").to_string()),
        Err(err) => Outcome::Lost(format!("{status}: {err}")),
    }
}

/// `attestlog monitor --once` against frontend `f`, following `state`:
/// it must find the log consistent with what it saw before (exit 0).
pub fn monitor(c: &Cluster, f: usize, state: &std::path::Path) {
    let key = c.signer_vkey.as_str();
    let out = std::process::Command::new(common::attestlog_bin())
        .args([
            "monitor",
            "--once",
            "--log",
            &c.url(f),
            "--key",
            key,
            "--state",
        ])
        .arg(state)
        .arg("--root")
        .arg(&c.root)
        .output()
        .expect("run attestlog monitor");
    assert!(
        out.status.success(),
        "monitor: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn proof(v: &Value, field: &str) -> Vec<[u8; 32]> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .iter()
        .map(b64d)
        .collect()
}

pub fn count(records: &[Record]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        let k = match &r.outcome {
            Outcome::Acked(_) => "200".to_string(),
            Outcome::Refused(s, c) => format!("{s} {c}"),
            Outcome::Lost(why) => {
                format!("no answer ({})", why.chars().take(40).collect::<String>())
            }
        };
        *by.entry(k).or_default() += 1;
    }
    format!("{by:?}")
}
