//! Failure behaviour of a cluster log with real processes (issue 10): two
//! `attestlog-server` frontends on a PostgreSQL of the test's own
//! (`common/private_pg.rs`) and a SeaweedFS of its own
//! (`common/seaweed.rs`, `PrivateSeaweed`), under a write load of several
//! concurrent submitters posting real (simulated-NSM) entries, every answer
//! recorded.
//!
//! - SIGKILL of the integrator, of the other frontend, or of both, at
//!   seeded random points, each restarted;
//! - PostgreSQL stopped (immediate shutdown) and restarted under load;
//! - the object store stopped and restarted under load;
//! - two integrators started at once.
//!
//! Afterwards ([`check_log`]): every acknowledged entry is at its
//! acknowledged index with the same bytes and its inclusion proof verifies,
//! every checkpoint ever handed out verifies and is proved consistent with
//! the final one by the client's verifier, no two checkpoints of one size
//! differ, the log is dense, and every submission that got no answer is
//! either already logged or accepted when sent again.
//!
//! The seed is printed; set `ATTESTLOG_FAILOVER_SEED` to replay it. The
//! tests of this file run one at a time (each starts five processes).

mod common;
mod postgres_common;
#[path = "common/private_pg.rs"]
mod private_pg;
#[path = "common/seaweed.rs"]
mod seaweed;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use attestlog::nitro::sim::SimulatedNsm;
use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use attestlog::tlog::note::{NoteSigner, NoteVerifierKey};
use attestlog::tlog::tiles::parse_entry_bundle;
use attestlog_server::storage::objects::Objects;
use common::{b64d, dev_nsm, entry, get_bytes, get_text, write_key, Server, TEST_ORIGIN};
use postgres_common::query_on;
use private_pg::PrivatePg;
use reqwest::blocking::Client;
use seaweed::PrivateSeaweed;
use serde_json::Value;

/// One test at a time: each runs PostgreSQL, SeaweedFS and two servers.
static SERIAL: Mutex<()> = Mutex::new(());

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("ATTESTLOG_FAILOVER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(common::now_ms);
        eprintln!("{test}: seed {seed} (ATTESTLOG_FAILOVER_SEED={seed} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// What one submission got.
#[derive(Clone, Debug)]
enum Outcome {
    /// 200: the answer.
    Acked(Value),
    /// An HTTP error answer: status and code.
    Refused(u16, String),
    /// No answer (connection refused or reset: the frontend died).
    Lost(String),
}

#[derive(Clone, Debug)]
struct Record {
    entry: Vec<u8>,
    outcome: Outcome,
}

/// Two frontends, their PostgreSQL and object store.
struct Cluster {
    // Field order: the servers stop before their services.
    frontends: Mutex<Vec<Option<Server>>>,
    pg: Mutex<PrivatePg>,
    pg_url: String,
    weed: Mutex<PrivateSeaweed>,
    weed_env: Vec<(&'static str, String)>,
    objects: String,
    dir: tempfile::TempDir,
    root: PathBuf,
    nsm: SimulatedNsm,
    key: NoteVerifierKey,
    signer_vkey: String,
    /// The frontends' URLs for the submitters (`None` while down).
    urls: RwLock<Vec<Option<String>>>,
    client: Client,
}

impl Cluster {
    fn start() -> Cluster {
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

    fn spawn(&self, f: usize) -> Server {
        let data = self.dir.path().join(format!("f{f}"));
        let storage = ["--storage", &self.pg_url, "--objects", &self.objects];
        let extra = [&storage[..], &["--batch-max-age", "10"]].concat();
        Server::start_env(&data, &self.root, &extra, &self.weed_env)
    }

    fn set(&self, f: usize, server: Option<Server>) {
        self.urls.write().unwrap()[f] = server.as_ref().map(|s| s.url.clone());
        self.frontends.lock().unwrap()[f] = server;
    }

    /// SIGKILL frontend `f`.
    fn kill(&self, f: usize) {
        self.urls.write().unwrap()[f] = None;
        let server = self.frontends.lock().unwrap()[f].take();
        if let Some(mut s) = server {
            s.kill();
        }
    }

    fn restart(&self, f: usize) {
        let server = self.spawn(f);
        self.set(f, Some(server));
    }

    fn url(&self, f: usize) -> String {
        self.urls.read().unwrap()[f].clone().expect("frontend up")
    }

    fn pid(&self, f: usize) -> Option<u32> {
        self.frontends.lock().unwrap()[f]
            .as_ref()
            .map(|s| s.child.id())
    }

    /// Which frontend holds the integrator lease (by the pid in `holder`).
    fn integrator(&self) -> Option<usize> {
        let holder = query_on(
            &self.pg_url,
            "SELECT holder FROM lease WHERE expires_at > now()",
        );
        let pid: u32 = holder.first()?.split('/').nth(1)?.parse().ok()?;
        (0..2).find(|f| self.pid(*f) == Some(pid))
    }

    fn entry(&self, n: u64) -> Vec<u8> {
        entry(&self.nsm, n)
    }

    /// Posts `e` to a live frontend (the `prefer`red one if up).
    fn submit(&self, e: &[u8], prefer: usize) -> Outcome {
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
    fn load(&self, first: u64, count: u64, submitters: usize, stop: &AtomicBool) -> Vec<Record> {
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

fn submit_to(client: &Client, url: &str, e: &[u8]) -> Outcome {
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
fn monitor(c: &Cluster, f: usize, state: &std::path::Path) {
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

fn proof(v: &Value, field: &str) -> Vec<[u8; 32]> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {v}"))
        .iter()
        .map(b64d)
        .collect()
}

fn count(records: &[Record]) -> String {
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

/// Sends every submission that got no 200 again (all services are up):
/// each must now be accepted; returns the new records.
fn resubmit_unacked(c: &Cluster, records: &[Record]) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if matches!(r.outcome, Outcome::Acked(_)) {
            continue;
        }
        let outcome = c.submit(&r.entry, i);
        assert!(
            matches!(outcome, Outcome::Acked(_)),
            "resubmission after recovery: {outcome:?}"
        );
        out.push(Record {
            entry: r.entry.clone(),
            outcome,
        });
    }
    let duplicates = out
        .iter()
        .filter(|r| matches!(&r.outcome, Outcome::Acked(a) if a["duplicate"] == true))
        .count();
    eprintln!(
        "resubmitted {} unanswered: {duplicates} were already logged",
        out.len()
    );
    out
}

/// The checks of the module documentation, against frontend `f`.
fn check_log(c: &Cluster, f: usize, records: &[Record]) {
    let url = c.url(f);
    // Everything sequenced is integrated (the integrator catches up).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (size, root) = loop {
        let next: u64 = query_on(&c.pg_url, "SELECT next_idx FROM seq_head")[0]
            .parse()
            .unwrap();
        let note = get_text(&c.client, format!("{url}/checkpoint"));
        let cp = verify_checkpoint(&note, &c.key, &[], 0)
            .expect("final checkpoint verifies")
            .checkpoint;
        if cp.size == next {
            break (cp.size, cp.root_hash);
        }
        assert!(Instant::now() < deadline, "stuck at {} of {next}", cp.size);
        std::thread::sleep(Duration::from_millis(200));
    };
    // Dense: the bundles hold exactly `size` entries; so does PostgreSQL.
    let mut logged: Vec<Vec<u8>> = Vec::new();
    for n in 0..size.div_ceil(256) {
        let w = (size - n * 256).min(256);
        let path = match w {
            256 => format!("tile/entries/{n:03}"),
            w => format!("tile/entries/{n:03}.p/{w}"),
        };
        let bundle = get_bytes(&c.client, format!("{url}/{path}"));
        let entries = parse_entry_bundle(&bundle).expect("bundle parses");
        assert_eq!(entries.len() as u64, w, "{path}");
        logged.extend(entries.into_iter().map(|e| e.to_vec()));
    }
    let rows = query_on(
        &c.pg_url,
        "SELECT count(*)::text || ' ' || COALESCE(max(idx) + 1, 0)::text FROM entries",
    );
    assert_eq!(rows[0], format!("{size} {size}"), "entries in PostgreSQL");

    let mut handed: BTreeMap<u64, String> = BTreeMap::new();
    let mut acked = 0;
    for r in records {
        let Outcome::Acked(answer) = &r.outcome else {
            continue;
        };
        acked += 1;
        let index = answer["index"].as_u64().expect("index");
        assert_eq!(
            logged.get(index as usize),
            Some(&r.entry),
            "acknowledged entry at index {index}"
        );
        let note = answer["checkpoint"].as_str().expect("checkpoint");
        let cp = verify_checkpoint(note, &c.key, &[], 0)
            .expect("handed-out checkpoint verifies")
            .checkpoint;
        verify_inclusion(
            index,
            cp.size,
            &leaf_hash(&r.entry),
            &proof(answer, "inclusion_proof"),
            &cp.root_hash,
        )
        .expect("inclusion proof of an answer");
        let seen = handed.entry(cp.size).or_insert_with(|| note.to_string());
        assert_eq!(seen, note, "two checkpoints of size {}", cp.size);
    }
    for (s, note) in &handed {
        let cp = verify_checkpoint(note, &c.key, &[], 0).unwrap().checkpoint;
        let p: Value = c
            .client
            .get(format!(
                "{url}/v1/proof/consistency?first={s}&second={size}"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        verify_consistency(*s, size, &cp.root_hash, &root, &proof(&p, "proof"))
            .unwrap_or_else(|e| panic!("checkpoint {s} inconsistent with {size}: {e}"));
        let stored = query_on(
            &c.pg_url,
            &format!("SELECT note FROM checkpoints WHERE size = {s}"),
        );
        assert_eq!(stored, vec![note.clone()], "the stored checkpoint of {s}");
    }
    // Straight from the bucket: its checkpoint is one the log signed, and
    // the last bundle is the one served.
    for (k, v) in &c.weed_env {
        std::env::set_var(k, v); // one test at a time (SERIAL)
    }
    let bucket = Objects::open(&c.objects).expect("bucket");
    let note = String::from_utf8(
        bucket
            .get("checkpoint")
            .unwrap()
            .expect("bucket checkpoint"),
    )
    .unwrap();
    let cp = verify_checkpoint(&note, &c.key, &[], 0)
        .expect("bucket checkpoint verifies")
        .checkpoint;
    let stored = query_on(
        &c.pg_url,
        &format!("SELECT note FROM checkpoints WHERE size = {}", cp.size),
    );
    assert_eq!(stored, vec![note], "the bucket's checkpoint");
    if let Some(n) = size.checked_sub(1).map(|last| last / 256) {
        let w = size - n * 256;
        let path = match w {
            256 => format!("tile/entries/{n:03}"),
            w => format!("tile/entries/{n:03}.p/{w}"),
        };
        assert_eq!(
            bucket.get(&path).unwrap().as_deref(),
            Some(get_bytes(&c.client, format!("{url}/{path}")).as_slice()),
            "{path} in the bucket"
        );
    }
    eprintln!(
        "checked: {size} entries, {acked} acknowledged answers, {} checkpoint sizes handed out",
        handed.len()
    );
}

/// SIGKILL the integrator, the other frontend, or both, at seeded random
/// points during the load, and restart them.
#[test]
fn sigkill_of_frontends_and_the_integrator_under_load_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng::seeded("sigkill");
    let c = Cluster::start();
    let stop = AtomicBool::new(false);
    let mut kills = Vec::new();
    let state = c.dir.path().join("monitor");
    let records = std::thread::scope(|s| {
        let load = s.spawn(|| c.load(0, 100_000, 3, &stop));
        for round in 0..5 {
            std::thread::sleep(Duration::from_millis(rng.between(300, 1500)));
            // After a kill the dead holder's lease must expire first.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut integrator = c.integrator();
            while integrator.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                integrator = c.integrator();
            }
            let victims: Vec<usize> = match (rng.next() % 3, integrator) {
                (0, Some(i)) => vec![i],
                (1, Some(i)) => vec![1 - i],
                _ => vec![0, 1],
            };
            eprintln!("round {round}: integrator {integrator:?}, SIGKILL {victims:?}");
            for &f in &victims {
                c.kill(f);
            }
            std::thread::sleep(Duration::from_millis(rng.between(50, 700)));
            for &f in &victims {
                c.restart(f);
            }
            if round % 2 == 1 {
                monitor(&c, round % 2, &state);
            }
            kills.push((integrator, victims));
        }
        std::thread::sleep(Duration::from_millis(rng.between(300, 1000)));
        stop.store(true, Ordering::Release);
        load.join().unwrap()
    });
    eprintln!("load: {} submissions: {}", records.len(), count(&records));
    assert!(
        kills.iter().any(|(i, v)| i.is_some_and(|i| v.contains(&i))),
        "the integrator was killed at least once: {kills:?}"
    );
    for r in &records {
        if let Outcome::Refused(status, code) = &r.outcome {
            assert_eq!(*status, 503, "only unavailability: {code}");
        }
    }
    let again = resubmit_unacked(&c, &records);
    check_log(&c, 0, &[records, again].concat());
    // The monitor that followed the log across the kills finds it consistent.
    monitor(&c, 1, &state);
}

/// Runs the load, takes a service away at a seeded random point for a
/// while, brings it back, and lets the load run on. While it is away every
/// refusal is a 503 with a stable code; afterwards the servers, never
/// restarted, accept submissions again, and everything checks out.
fn outage(test: &str, stop: fn(&Cluster), resume: fn(&Cluster)) {
    let mut rng = Rng::seeded(test);
    let c = Cluster::start();
    let stop_load = AtomicBool::new(false);
    let (records, down_for) = std::thread::scope(|s| {
        let load = s.spawn(|| c.load(0, 100_000, 3, &stop_load));
        std::thread::sleep(Duration::from_millis(rng.between(500, 2000)));
        stop(&c);
        let down_for = Duration::from_millis(rng.between(1000, 4000));
        std::thread::sleep(down_for);
        resume(&c);
        recovers(&c, 500_000);
        std::thread::sleep(Duration::from_millis(rng.between(500, 1500)));
        stop_load.store(true, Ordering::Release);
        (load.join().unwrap(), down_for)
    });
    eprintln!("{test}: down {down_for:?}; load: {}", count(&records));
    for r in &records {
        match &r.outcome {
            Outcome::Acked(_) => {}
            Outcome::Refused(503, code) => assert!(
                ["storage_unavailable", "integration_timeout"].contains(&code.as_str()),
                "{code}"
            ),
            other => panic!("{test}: {other:?}"),
        }
    }
    assert!(
        records
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Refused(..))),
        "some submission met the outage"
    );
    let again = resubmit_unacked(&c, &records);
    check_log(&c, 1, &[records, again].concat());
}

/// PostgreSQL stopped (as a crash: immediate shutdown) during the load.
#[test]
fn postgres_stopped_under_load_gives_503_and_recovers_by_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    outage(
        "postgres",
        |c| c.pg.lock().unwrap().stop(),
        |c| c.pg.lock().unwrap().resume(),
    );
}

/// The object store stopped during the load: entries are still sequenced
/// in PostgreSQL but cannot be integrated; the integrator catches up by
/// itself when the store is back.
#[test]
fn object_store_stopped_under_load_gives_503_and_recovers_by_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    outage(
        "objects",
        |c| c.weed.lock().unwrap().stop(),
        |c| c.weed.lock().unwrap().resume(),
    );
}

/// After a service came back, a new submission to each frontend succeeds
/// within 30 s without restarting anything.
fn recovers(c: &Cluster, first: u64) {
    let started = Instant::now();
    for f in 0..2 {
        let mut n = first + f as u64 * 100;
        loop {
            match c.submit(&c.entry(n), f) {
                Outcome::Acked(_) => break,
                other => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "frontend {f} did not recover: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            n += 1;
        }
    }
    eprintln!("recovered in {:.1}s", started.elapsed().as_secs_f64());
}

/// Two integrators started at once on an empty log: one takes the lease
/// and publishes every checkpoint, the other only sequences and waits.
#[test]
fn two_integrators_started_at_once_never_fork() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::start();
    let never = AtomicBool::new(false);
    let records = c.load(0, 60, 4, &never);
    assert!(
        records
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Acked(_))),
        "{}",
        count(&records)
    );
    // Only one process ever held the lease (epoch 1), so only it signed.
    let lease = query_on(&c.pg_url, "SELECT epoch::text || ' ' || holder FROM lease");
    assert!(lease[0].starts_with("1 "), "lease changed hands: {lease:?}");
    assert!(
        c.integrator().is_some(),
        "the holder is one of the two: {lease:?}"
    );
    check_log(&c, 1, &records);
    // The other frontend follows the same head.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let heads: Vec<String> = (0..2)
            .map(|f| get_text(&c.client, format!("{}/checkpoint", c.url(f))))
            .collect();
        if heads[0] == heads[1] {
            break;
        }
        assert!(Instant::now() < deadline, "frontends disagree: {heads:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
