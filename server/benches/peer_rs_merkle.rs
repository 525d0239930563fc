//! The same append workload through rs_merkle's in-memory tree and through
//! attestlog's SQLite log: 200,000 leaves in batches of 1,000, each batch
//! committed (rs_merkle: `commit()`, which recomputes over the whole tree;
//! attestlog: one durable transaction with a signed checkpoint).
//!
//!     cargo bench -p attestlog-server --bench peer_rs_merkle [-- LEAVES BATCH]

use std::time::Instant;

use attestlog::tlog::merkle as tree;
use attestlog::tlog::note::NoteSigner;
use attestlog_server::storage::{LogStore, NewEntry};
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};

/// RFC 6962 interior nodes; a lone node is promoted, as RFC 6962 does.
#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => tree::node_hash(left, r),
            None => *left,
        }
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let leaves = args.first().copied().unwrap_or(200_000);
    let batch = args.get(1).copied().unwrap_or(1_000);
    let entries: Vec<Vec<u8>> = (0..leaves).map(|i| i.to_be_bytes().repeat(64)).collect();

    let started = Instant::now();
    let mut memory = MerkleTree::<Rfc6962>::new();
    for chunk in entries.chunks(batch as usize) {
        let mut hashes: Vec<[u8; 32]> = chunk.iter().map(|e| tree::leaf_hash(e)).collect();
        memory.append(&mut hashes);
        memory.commit();
    }
    let rs_root = memory.root().unwrap_or_default();
    let rs_time = started.elapsed();

    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(&dir.path().join("log.db")).expect("open");
    let signer = NoteSigner::generate("bench.attestlog/log").expect("key");
    let started = Instant::now();
    for chunk in entries.chunks(batch as usize) {
        let batch: Vec<NewEntry> = chunk
            .iter()
            .map(|e| NewEntry::new(e.clone(), Vec::new()))
            .collect();
        store.append_batch(&batch, &signer).expect("append");
    }
    let ours = started.elapsed();
    assert_eq!(
        store.root_hash(),
        rs_root,
        "both trees have the same RFC 6962 root"
    );

    println!("{leaves} leaves in batches of {batch}, committing each batch:");
    println!(
        "  rs_merkle (in memory, commit recomputes the tree): {:.2} s ({:.0} leaves/s)",
        rs_time.as_secs_f64(),
        leaves as f64 / rs_time.as_secs_f64()
    );
    println!(
        "  attestlog LogStore (SQLite, fsync, signed checkpoint per batch): {:.2} s ({:.0} leaves/s)",
        ours.as_secs_f64(),
        leaves as f64 / ours.as_secs_f64()
    );
}
