//! Storage benchmark: appends N entries in batches of 256 to a fresh SQLite
//! log, then measures proof, tile and bundle reads (1 and 2 threads), RSS
//! and disk bytes per entry.
//!
//! Usage: storage-bench [N=1000000] [ENTRY_BYTES=512] [DIR=$TMPDIR] [FILL_BATCH=256]
//!
//! With FILL_BATCH > 256 the log is filled faster in bigger batches, then
//! 51,200 more entries are appended in batches of 256 and timed at that size.
//! Run with `cargo run --release -p attestlog-server --bin storage-bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use attestlog_server::storage::{LogStore, NewEntry, SearchKind};

const BATCH: u64 = 256;

/// A read operation: gets the store and a random source `r(m) in 0..m`.
type ReadOp = fn(&LogStore, &mut dyn FnMut(u64) -> u64);
const READS: u64 = 100_000;

fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed | 1;
    move |m| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    }
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn entry(i: u64, len: usize) -> NewEntry {
    let mut bytes = Vec::with_capacity(len);
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes[..8].copy_from_slice(&i.to_be_bytes()); // unique
    let keys = vec![
        (SearchKind::ArtifactSha256, bytes[8..40].to_vec()),
        (SearchKind::Commit, bytes[40..60].to_vec()),
        (SearchKind::Pcr0, bytes[60..108].to_vec()),
    ];
    NewEntry::new(bytes, keys)
}

/// Runs `op` READS times on `threads` threads; returns operations per second.
fn measure(
    store: &Arc<LogStore>,
    threads: u64,
    op: fn(&LogStore, &mut dyn FnMut(u64) -> u64),
) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut r = rng(0x1234_5678 + t);
                for _ in 0..READS / threads {
                    op(&store, &mut r);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("reader thread");
    }
    READS as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .map(|a| a.parse().expect("N"))
        .unwrap_or(1_000_000);
    let len: usize = args
        .get(2)
        .map(|a| a.parse().expect("ENTRY_BYTES"))
        .unwrap_or(512);
    let max = attestlog::tlog::tiles::MAX_ENTRY_LEN;
    assert!(
        (108..=max).contains(&len),
        "ENTRY_BYTES must be in 108..={max}"
    );
    let dir = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let fill: u64 = args
        .get(4)
        .map(|a| a.parse().expect("FILL_BATCH"))
        .unwrap_or(BATCH);
    let path = dir.join(format!("attestlog-bench-{}.db", std::process::id()));
    println!(
        "storage-bench: {n} entries of {len} bytes, fill batches of {fill}, db {}",
        path.display()
    );

    let store = Arc::new(LogStore::open(&path).expect("open"));
    let sign = |size: u64, root: [u8; 32]| -> Result<String, std::convert::Infallible> {
        Ok(format!(
            "bench.example/log\n{size}\n{root:02x?}\n\n\u{2014} bench sig\n"
        ))
    };
    let append = |from: u64, to: u64, batch_len: u64| {
        let start = Instant::now();
        let mut last = Instant::now();
        let mut i = from;
        while i < to {
            let end = (i + batch_len).min(to);
            let batch: Vec<NewEntry> = (i..end).map(|j| entry(j, len)).collect();
            store.append_batch(&batch, &sign).expect("append");
            i = end;
            if last.elapsed().as_secs() >= 30 {
                last = Instant::now();
                let s = start.elapsed().as_secs_f64();
                let rate = (i - from) as f64 / s;
                println!(
                    "  {i} appended, {rate:.0}/s so far, RSS {} kB",
                    status_kb("VmRSS:")
                );
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let count = to - from;
        println!(
            "append: {count} entries (tree {from} -> {to}) in batches of {batch_len}: {secs:.1} s = {:.0} entries/s",
            count as f64 / secs
        );
    };
    append(0, n, fill);
    if fill != BATCH {
        append(n, n + 200 * BATCH, BATCH);
    }
    println!(
        "RSS after appends: VmRSS {} kB, VmHWM {} kB",
        status_kb("VmRSS:"),
        status_kb("VmHWM:")
    );

    let ops: [(&str, ReadOp); 5] = [
        ("inclusion proof (latest size)", |s, r| {
            let size = s.tree_size();
            s.inclusion_proof(r(size), size).expect("proof");
        }),
        ("inclusion proof (random past size)", |s, r| {
            let size = 1 + r(s.tree_size());
            s.inclusion_proof(r(size), size).expect("proof");
        }),
        ("consistency proof (random sizes)", |s, r| {
            let size = s.tree_size();
            let a = 1 + r(size);
            s.consistency_proof(a, a + r(size - a + 1)).expect("proof");
        }),
        ("hash tile read (level 0, full)", |s, r| {
            let tiles = s.tree_size() / 256;
            s.hash_tile(0, r(tiles), None)
                .expect("tile")
                .expect("exists");
        }),
        ("entry bundle read (full)", |s, r| {
            let tiles = s.tree_size() / 256;
            s.entry_bundle(r(tiles), None)
                .expect("bundle")
                .expect("exists");
        }),
    ];
    for (name, op) in ops {
        for threads in [1, 2] {
            println!(
                "{name}: {:.0}/s with {threads} thread(s)",
                measure(&store, threads, op)
            );
        }
    }
    println!(
        "RSS after reads: VmRSS {} kB, VmHWM {} kB",
        status_kb("VmRSS:"),
        status_kb("VmHWM:")
    );

    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("reopen");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(conn);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "disk: {bytes} bytes = {:.1} bytes/entry ({:.1} beyond the {len}-byte payload)",
        bytes as f64 / n as f64,
        bytes as f64 / n as f64 - len as f64
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
