//! SQLite's dedup indexes keep 16-byte prefixes of leaf hashes and claim ids
//! (schema version 6, `migrations/0006_short_keys.sql`) and still answer
//! exactly: an upgraded log keeps its answers, and rows that share a prefix
//! cost reads but never give a wrong index.

mod common;

use std::path::Path;

use attestlog::claim::entry_claim_id;
use attestlog::tlog::merkle::leaf_hash;
use attestlog_server::storage::{Hash, LogStore, NewEntry, SCHEMA_VERSION};
use common::*;

fn sign(size: u64, root: Hash) -> Result<String, String> {
    Ok(format!("test\n{size}\n{}\n", hex::encode(root)))
}

/// (index, duplicate) of appending `bytes` alone.
fn append(store: &LogStore, bytes: &[u8]) -> (u64, bool) {
    let out = store
        .append_batch(&[NewEntry::new(bytes.to_vec(), vec![])], &sign)
        .expect("append");
    (out.entries[0].index, out.entries[0].duplicate)
}

/// The stored key lengths of `table` (column `key`), one per row.
fn key_lengths(path: &Path, table: &str, key: &str) -> Vec<usize> {
    let conn = rusqlite::Connection::open(path).expect("open");
    let sql = format!("SELECT length({key}) FROM {table} ORDER BY idx");
    let lengths: Vec<usize> = conn
        .prepare(&sql)
        .expect("select")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    lengths
}

#[test]
fn an_upgraded_log_keeps_its_dedup_answers_with_cut_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, _) = dev_nsm(dir.path());
    let path = dir.path().join("log.db");
    let (first, second) = (entry(&nsm, 1), entry(&nsm, 2));
    let store = LogStore::open(&path).expect("open");
    assert_eq!(append(&store, b"not an entry"), (0, false));
    assert_eq!(append(&store, &first), (1, false));
    assert_eq!(append(&store, &second), (2, false));
    drop(store);
    to_schema_5(&path);
    assert_eq!(key_lengths(&path, "leaf_index", "leaf_hash"), vec![32; 3]);
    assert_eq!(key_lengths(&path, "claim_index", "claim_id"), vec![32; 2]);

    let store = LogStore::open(&path).expect("migrate to 6");
    assert_eq!(key_lengths(&path, "leaf_index", "leaf_prefix"), vec![16; 3]);
    assert_eq!(
        key_lengths(&path, "claim_index", "claim_prefix"),
        vec![16; 2]
    );
    for (i, bytes) in [&b"not an entry"[..], &first, &second].iter().enumerate() {
        assert_eq!(
            store.find_leaf(&leaf_hash(bytes)).expect("find"),
            Some(i as u64)
        );
        assert_eq!(append(&store, bytes), (i as u64, true));
    }
    let id = |e: &[u8]| entry_claim_id(e).expect("claim id");
    assert_eq!(store.find_claim(&id(&first)).expect("find"), Some(1));
    assert_eq!(store.find_claim(&id(&second)).expect("find"), Some(2));
    let third = entry(&nsm, 3);
    assert_eq!(append(&store, &third), (3, false));
    assert_eq!(store.find_claim(&id(&third)).expect("find"), Some(3));
    assert_eq!(store.tree_size(), 4);
    let v: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION);
}

/// No two SHA-256 values sharing 16 bytes are known, so the collision is
/// made in the index: extra rows that carry a logged key's prefix but name
/// another entry. The lookup must read past them to the entry that really
/// has the key, and a key that only shares the prefix must find nothing.
#[test]
fn rows_sharing_a_prefix_cost_reads_but_never_a_wrong_index() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, _) = dev_nsm(dir.path());
    let path = dir.path().join("log.db");
    let (first, second) = (entry(&nsm, 1), entry(&nsm, 2));
    let store = LogStore::open(&path).expect("open");
    assert_eq!(append(&store, &first), (0, false));
    assert_eq!(append(&store, &second), (1, false));
    let (leaf, claim) = (leaf_hash(&second), entry_claim_id(&second).expect("id"));
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute(
            "INSERT INTO leaf_index (leaf_prefix, idx) VALUES (?1, 0)",
            [&leaf[..16]],
        )
        .expect("colliding leaf row");
        conn.execute(
            "INSERT INTO claim_index (claim_prefix, idx) VALUES (?1, 0)",
            [&claim[..16]],
        )
        .expect("colliding claim row");
    }
    // Entry 0 comes first among the candidates, and is passed over.
    assert_eq!(store.find_leaf(&leaf).expect("find"), Some(1));
    assert_eq!(store.find_claim(&claim).expect("find"), Some(1));
    assert_eq!(store.find_leaf(&leaf_hash(&first)).expect("find"), Some(0));
    // Same prefix, other suffix: found nowhere.
    let mut near = leaf;
    near[31] ^= 1;
    assert_eq!(store.find_leaf(&near).expect("find"), None);
    let mut near = claim;
    near[16] ^= 1;
    assert_eq!(store.find_claim(&near).expect("find"), None);
    // Appends still dedup to the right index.
    assert_eq!(append(&store, &second), (1, true));
    assert_eq!(append(&store, &first), (0, true));
    assert_eq!(store.tree_size(), 2);
}
