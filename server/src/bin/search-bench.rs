//! Search and page latency at scale: fills a fresh SQLite log with N
//! synthetic entries straight through the storage layer (each with an
//! artifact key, and one of 1,000 repository keys, so each repository has
//! N/1,000 entries), starts `attestlog-server` (beside this program) on it,
//! and times, one request at a time over loopback HTTP: `GET /` (the
//! explorer page), `/v1/search?artifact_sha256=` (one hit), a full
//! 1,000-index `?repository=` page, and the next page by `after=`.
//! Prints p50/p99/max per kind. Never targets another host.
//!
//! Usage: search-bench [N=1000000] [REQUESTS=2000]
//! Run with `cargo run --release -p attestlog-server --bin search-bench`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attestlog::policy::normalize_repo;
use attestlog::tlog::note::NoteSigner;
use attestlog_server::storage::{LogStore, NewEntry, SearchKind};
use sha2::{Digest, Sha256};

fn repository(i: u64) -> String {
    format!("https://example.com/repo-{}", i % 1000)
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn populate(dir: &std::path::Path, n: u64) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let signer = NoteSigner::generate("bench.attestlog/log")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join("log.key"))?;
    writeln!(f, "{}", signer.private_key_text())?;
    let store = LogStore::open(&dir.join("log.db"))?;
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<NewEntry> = (i..(i + 4096).min(n))
            .map(|j| {
                let keys = vec![
                    (SearchKind::ArtifactSha256, sha(&j.to_be_bytes())),
                    (
                        SearchKind::Repository,
                        sha(normalize_repo(&repository(j)).as_bytes()),
                    ),
                ];
                NewEntry::new(j.to_be_bytes().repeat(8), keys)
            })
            .collect();
        i += batch.len() as u64;
        store.append_batch(&batch, &signer)?;
    }
    println!(
        "filled {n} entries in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn report(kind: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{kind}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let requests: u64 = args.get(2).map_or(Ok(2000), |a| a.parse())?;
    anyhow::ensure!(n >= 2000, "N must be at least 2000");
    let tmp = tempfile::tempdir()?;
    populate(tmp.path(), n)?;
    let bin = std::env::current_exe()?.with_file_name("attestlog-server");
    let mut server = Command::new(bin)
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--listen", "127.0.0.1:0", "--origin", "bench.attestlog/log"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = server
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        .ok_or_else(|| anyhow::anyhow!("the server did not start"))?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let time = |path: String, expect: usize| -> anyhow::Result<Duration> {
        let t = Instant::now();
        let body = client
            .get(format!("{url}{path}"))
            .send()?
            .error_for_status()?
            .bytes()?;
        let elapsed = t.elapsed();
        if expect > 0 {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let got = v["indices"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(got == expect, "{path}: {got} indices, expected {expect}");
        }
        Ok(elapsed)
    };
    let per_repo = n / 1000;
    let page = per_repo.min(1000) as usize;
    let kinds = [
        "GET / (explorer page)",
        "search artifact_sha256 (1 hit)",
        "search repository (first page)",
        "search repository (after the middle)",
    ];
    for (k, kind) in kinds.iter().enumerate() {
        let mut times = Vec::new();
        for _ in 0..requests {
            let r = rand(1000);
            let (path, expect) = match k {
                0 => ("/".to_string(), 0),
                1 => (
                    format!(
                        "/v1/search?artifact_sha256={}",
                        hex::encode(sha(&rand(n).to_be_bytes()))
                    ),
                    1,
                ),
                2 => (format!("/v1/search?repository={}", repository(r)), page),
                _ => {
                    // Repository r holds indices r, r + 1000, ...: after the middle one.
                    let after = r + 1000 * (per_repo / 2);
                    let left = (per_repo - per_repo / 2 - 1).min(1000) as usize;
                    (
                        format!("/v1/search?repository={}&after={after}", repository(r)),
                        left,
                    )
                }
            };
            times.push(time(path, expect)?);
        }
        report(kind, times);
    }
    let _ = server.kill();
    let _ = server.wait();
    Ok(())
}
