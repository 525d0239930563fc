//! `fill` and `read`: a log of synthetic entries made straight through the
//! storage layer, and proof and tile requests against a server on it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use attestlog::tlog::note::NoteSigner;
use attestlog::tlog::tiles::{TileKind, TilePath};
use attestlog_server::storage::{LogStore, NewEntry};

use crate::{dir_bytes, fold_wal, metric, ServerProcess};

/// Entries appended per batch while filling.
const FILL_BATCH: u64 = 4096;

/// Fills a log (SQLite at `dir/log.db`, or the PostgreSQL database and
/// object store of `cluster`) with `entries` synthetic entries directly through the storage
/// layer, signing with a new key at `dir/log.key` (mode 0600) that the
/// server will load. Prints the disk bytes per entry of a SQLite log.
pub fn fill(
    dir: &Path,
    cluster: Option<(String, String)>,
    entries: u64,
    entry_bytes: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let signer = NoteSigner::generate("loadgen.attestlog/log")?;
    let key_path = dir.join("log.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)?;
        writeln!(f, "{}", signer.private_key_text())?;
    }
    // A read-only replica pins the log's verifier key (scripts/bench.sh).
    crate::metric("verifier_key", signer.verifier_key_text());
    let store = match &cluster {
        Some((url, objects)) => LogStore::open_postgres(url, objects, false)?,
        None => LogStore::open(&dir.join("log.db"))?,
    };
    anyhow::ensure!(store.tree_size() == 0, "the log to fill is not empty");
    let started = Instant::now();
    let mut n = 0u64;
    let mut next_report = 1_000_000;
    while n < entries {
        let batch: Vec<NewEntry> = (n..(n + FILL_BATCH).min(entries))
            .map(|i| {
                let mut bytes = vec![0u8; entry_bytes.max(8)];
                bytes[..8].copy_from_slice(&i.to_be_bytes());
                NewEntry::new(bytes, Vec::new())
            })
            .collect();
        n += batch.len() as u64;
        store.append_batch(&batch, &signer)?;
        if n >= next_report {
            next_report += 1_000_000;
            eprintln!(
                "  {n} entries ({:.0}/s)",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    drop(store);
    println!(
        "fill: {entries} entries of {entry_bytes} bytes in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if cluster.is_none() {
        fold_wal(&dir.join("log.db"))?;
        let disk = dir_bytes(dir);
        println!(
            "  disk: {:.1} bytes per entry ({} MB total)",
            disk as f64 / entries.max(1) as f64,
            disk / 1_000_000
        );
        metric(
            "disk_bytes_per_entry",
            format!("{:.1}", disk as f64 / entries.max(1) as f64),
        );
    }
    Ok(())
}

pub async fn read_load(
    bin: &Path,
    dir: &Path,
    extra: &[String],
    entries: u64,
    concurrency: usize,
    seconds: u64,
    entry_bytes: usize,
) -> anyhow::Result<()> {
    let log = dir.join("log");
    if !log.join("log.db").exists() {
        eprintln!("populating {entries} entries of {entry_bytes} bytes...");
        let log = log.clone();
        tokio::task::spawn_blocking(move || fill(&log, None, entries, entry_bytes)).await??;
    }
    let server = ServerProcess::start(bin, &log, extra)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let full_tiles = (entries / 256).max(1);
    println!("read: {entries} entries, concurrency {concurrency}, {seconds}s per kind");
    for kind in ["inclusion", "consistency", "tile"] {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let (client, done, url) = (client.clone(), Arc::clone(&done), server.url.clone());
                tokio::spawn(async move {
                    let mut x = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    while Instant::now() < deadline {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let path = match kind {
                            "inclusion" => format!(
                                "v1/proof/inclusion?index={}&tree_size={entries}",
                                x % entries
                            ),
                            "consistency" => format!(
                                "v1/proof/consistency?first={}&second={entries}",
                                1 + x % entries
                            ),
                            _ => TilePath {
                                kind: TileKind::Hashes { level: 0 },
                                index: x % full_tiles,
                                width: None,
                            }
                            .to_path(),
                        };
                        let resp = client.get(format!("{url}/{path}")).send().await?;
                        if !resp.status().is_success() {
                            bail!("{path}: {}", resp.status());
                        }
                        resp.bytes().await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, anyhow::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let rate = done.load(Ordering::Relaxed) as f64 / seconds as f64;
        println!("  {kind} requests/s: {rate:.0}");
        metric(&format!("{kind}_per_s"), format!("{rate:.0}"));
    }
    let (rss, peak) = server.rss_mb();
    println!("  server RSS: {rss:.0} MB (peak {peak:.0} MB)");
    metric("read_rss_mb", format!("{rss:.0}"));
    Ok(())
}
