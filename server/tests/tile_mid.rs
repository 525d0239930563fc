//! The `mid` column of `tiles` (level-8L+4 hashes, schema version 3) through
//! the public API: proofs read with it equal an independent computation
//! (`attestlog::tlog::merkle`, i.e. Go sumdb's algorithm via `tlog_tiles`,
//! over in-memory subtree hashes), proofs read without it (NULL, or a
//! database from before the migration) are identical, and a `mid` of the
//! wrong length is an error, never a panic or a wrong proof.

mod common;

use std::path::Path;

use attestlog::tlog::merkle;
use attestlog_server::storage::{Hash, LogStore, NewEntry, StorageError};
use rusqlite::Connection;

fn sign(size: u64, root: Hash) -> Result<String, String> {
    Ok(format!("test.example/log\n{size}\n{}\n", hex::encode(root)))
}

fn entry(i: u64) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.resize(8 + (i % 41) as usize, 0xa5);
    v
}

/// Every perfect subtree hash of the first `n` leaves, level by level,
/// computed pairwise from the leaf hashes (no tiles involved).
struct Reference {
    levels: Vec<Vec<Hash>>,
}

/// The reference's hashes by Go `sumdb/tlog`'s "stored hash index".
impl tlog_tiles::HashReader for Reference {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let (level, n) = tlog_tiles::split_stored_hash_index(i);
                self.at(level, n)
                    .map(tlog_tiles::Hash)
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Reference {
    fn new(n: u64) -> Self {
        let mut levels = vec![(0..n)
            .map(|i| merkle::leaf_hash(&entry(i)))
            .collect::<Vec<_>>()];
        while levels.last().unwrap().len() > 1 {
            let up = levels
                .last()
                .unwrap()
                .chunks_exact(2)
                .map(|p| merkle::node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        Reference { levels }
    }

    fn at(&self, level: u8, n: u64) -> Result<Hash, String> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(n as usize))
            .copied()
            .ok_or_else(|| format!("no subtree ({level}, {n})"))
    }

    /// `tlog_tiles::prove_record` (Go `sumdb/tlog`), an independent prover.
    fn inclusion(&self, i: u64, size: u64) -> Vec<Hash> {
        let proof = tlog_tiles::prove_record(size, i, self).unwrap();
        proof.into_iter().map(|h| h.0).collect()
    }

    /// `tlog_tiles::prove_tree`; empty for `m` 0 or `n`, as RFC 9162 says.
    fn consistency(&self, m: u64, n: u64) -> Vec<Hash> {
        if m == 0 || m == n {
            return Vec::new();
        }
        let proof = tlog_tiles::prove_tree(n, m, self).unwrap();
        proof.into_iter().map(|h| h.0).collect()
    }

    fn root(&self, size: u64) -> Hash {
        let mut b = merkle::RootBuilder::new();
        self.levels[0][..size as usize]
            .iter()
            .for_each(|h| b.push(*h));
        b.root()
    }
}

fn append(store: &LogStore, from: u64, to: u64) {
    let batch: Vec<NewEntry> = (from..to)
        .map(|i| NewEntry::new(entry(i), vec![]))
        .collect();
    let out = store.append_batch(&batch, &sign).unwrap();
    assert_eq!(out.tree_size, to);
}

/// Uneven batches crossing 16-hash groups, tiles and the level-1 tile
/// boundary (65,536); calls `after(store, size)` after each batch and
/// returns the sizes.
fn build_checked(store: &LogStore, mut after: impl FnMut(&LogStore, u64)) -> Vec<u64> {
    let steps = [
        1, 14, 1, 1, 240, 15, 2, 300, 4_000, 777, 16, 4_096, 9_999, 12_345, 21_000, 12_700, 1_530,
        3_000,
    ];
    let mut sizes = Vec::new();
    for s in steps {
        let n = store.tree_size();
        append(store, n, n + s);
        sizes.push(n + s);
        after(store, n + s);
    }
    assert!(*sizes.last().unwrap() > 70_000);
    sizes
}

const FINAL_SIZE: u64 = 70_037;

fn build(store: &LogStore) -> Vec<u64> {
    build_checked(store, |_, _| {})
}

fn rng(mut x: u64) -> impl FnMut(u64) -> u64 {
    move |m| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    }
}

/// Proofs at sizes `sizes`: inclusion for boundary and random indices,
/// consistency for all pairs. Returned for comparison across reopenings.
fn proofs(store: &LogStore, sizes: &[u64]) -> Vec<Vec<Hash>> {
    let mut rand = rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    for &s in sizes {
        let mut idx = vec![0, 15, 16, 255, 256, 4_095, 65_535, 65_536, s - 1, s / 2];
        idx.extend((0..40).map(|_| rand(s)));
        for i in idx.into_iter().filter(|&i| i < s) {
            out.push(store.inclusion_proof(i, s).unwrap());
        }
        for &m in sizes.iter().filter(|&&m| m <= s) {
            out.push(store.consistency_proof(m, s).unwrap());
        }
        for _ in 0..10 {
            out.push(store.consistency_proof(1 + rand(s), s).unwrap());
        }
        out.push(vec![store.root_at(s).unwrap()]);
    }
    out
}

/// The same requests as [`proofs`], answered by the reference.
fn reference_proofs(r: &Reference, sizes: &[u64]) -> Vec<Vec<Hash>> {
    let mut rand = rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    for &s in sizes {
        let mut idx = vec![0, 15, 16, 255, 256, 4_095, 65_535, 65_536, s - 1, s / 2];
        idx.extend((0..40).map(|_| rand(s)));
        for i in idx.into_iter().filter(|&i| i < s) {
            out.push(r.inclusion(i, s));
        }
        for &m in sizes.iter().filter(|&&m| m <= s) {
            out.push(if m == s { vec![] } else { r.consistency(m, s) });
        }
        for _ in 0..10 {
            let m = 1 + rand(s);
            out.push(if m == s { vec![] } else { r.consistency(m, s) });
        }
        out.push(vec![r.root(s)]);
    }
    out
}

/// Checks the `mid` column against the reference: every tile's `mid` is
/// NULL or exactly the level-8L+4 hashes of its complete 16-hash groups.
fn check_mid_column(path: &Path, r: &Reference, allow_null: bool) -> usize {
    let conn = Connection::open(path).unwrap();
    let mut st = conn
        .prepare("SELECT level, idx, hashes, mid FROM tiles ORDER BY level, idx")
        .unwrap();
    let rows = st
        .query_map([], |row| {
            Ok((
                row.get::<_, u8>(0)?,
                row.get::<_, u64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, Option<Vec<u8>>>(3)?,
            ))
        })
        .unwrap();
    let mut with_mid = 0;
    for row in rows {
        let (level, idx, hashes, mid) = row.unwrap();
        let Some(mid) = mid else {
            assert!(allow_null, "tile {level}/{idx} has no mid");
            continue;
        };
        with_mid += 1;
        let groups = hashes.len() / 32 / 16;
        assert_eq!(mid.len(), 32 * groups, "mid length of tile {level}/{idx}");
        for g in 0..groups {
            let want = r.at(8 * level + 4, 16 * idx + g as u64).unwrap();
            assert_eq!(
                &mid[32 * g..32 * g + 32],
                &want[..],
                "mid {g} of {level}/{idx}"
            );
        }
    }
    with_mid
}

#[test]
fn proofs_with_mid_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = LogStore::open(&path).unwrap();
    let r = Reference::new(FINAL_SIZE);
    // At each size while it is the current one (right edge from memory)...
    let sizes = build_checked(&store, |store, s| {
        assert_eq!(store.root_hash(), r.root(s));
        assert_eq!(proofs(store, &[s]), reference_proofs(&r, &[s]), "at {s}");
    });
    let n = store.tree_size();
    assert_eq!(n, FINAL_SIZE);
    // ...and at all of them later (right edge from tiles, except the last).
    assert_eq!(proofs(&store, &sizes), reference_proofs(&r, &sizes));
    // Every inclusion proof in a whole level-1 tile span and past it.
    for i in (0..n).step_by(7) {
        assert_eq!(
            store.inclusion_proof(i, n).unwrap(),
            r.inclusion(i, n),
            "{i}"
        );
    }
    // Tiles still serve exactly the level-8L hashes.
    for (level, t) in [(0u8, 0u64), (0, 17), (0, 272), (1, 0)] {
        let tile = store.hash_tile(level, t, None).unwrap().unwrap();
        let want: Vec<u8> = (0..256)
            .flat_map(|j| r.at(8 * level, 256 * t + j).unwrap())
            .collect();
        assert_eq!(tile, want, "tile {level}/{t}");
    }
    assert!(check_mid_column(&path, &r, false) > 270);
}

#[test]
fn tiles_without_mid_give_identical_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = LogStore::open(&path).unwrap();
    let mut sizes = build(&store);
    let before = proofs(&store, &sizes);
    drop(store);

    let conn = Connection::open(&path).unwrap();
    assert!(conn.execute("UPDATE tiles SET mid = NULL", []).unwrap() > 270);
    drop(conn);
    let store = LogStore::open(&path).unwrap();
    assert_eq!(proofs(&store, &sizes), before);

    // Growing the old tiles: the partial tile gets its mid back, full ones
    // stay NULL, and proofs over both kinds agree with the reference.
    let n = store.tree_size();
    append(&store, n, n + 700);
    sizes.push(n + 700);
    let r = Reference::new(n + 700);
    assert_eq!(proofs(&store, &sizes), reference_proofs(&r, &sizes));
    assert!(check_mid_column(&path, &r, true) >= 3);
}

#[test]
fn database_from_before_the_migration_gets_identical_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = LogStore::open(&path).unwrap();
    let sizes = build(&store);
    let before = proofs(&store, &sizes);
    drop(store);

    // Turn the file into a schema-2 database: no `mid` column at all,
    // whole leaf hashes, no claim index and no `moved` table.
    common::to_schema_5(&path);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE tiles DROP COLUMN mid; DROP TABLE claim_index; DROP TABLE moved; \
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);
    let store = LogStore::open(&path).unwrap();
    assert_eq!(proofs(&store, &sizes), before);
    let r = Reference::new(store.tree_size());
    assert_eq!(check_mid_column(&path, &r, true), 0);
}

#[test]
fn mid_of_the_wrong_length_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let store = LogStore::open(&path).unwrap();
    append(&store, 0, 1_000);
    let tile0 = store.hash_tile(0, 0, None).unwrap();
    drop(store);

    let conn = Connection::open(&path).unwrap();
    for bad in [vec![7u8; 31], vec![], vec![0u8; 544]] {
        conn.execute(
            "UPDATE tiles SET mid = ?1 WHERE level = 0 AND idx = 0",
            [&bad],
        )
        .unwrap();
        // Leaf 5 is in tile 0; leaf 900 is not, but its proof needs tile 0's
        // 256-leaf root, which comes from level-1 data (not this mid).
        let store = LogStore::open(&path).unwrap();
        match store.inclusion_proof(5, 1_000) {
            Err(StorageError::Corrupt(msg)) => assert!(msg.contains("mid"), "{msg}"),
            other => panic!("mid {} bytes: {other:?}", bad.len()),
        }
        let r = Reference::new(1_000);
        assert_eq!(
            store.inclusion_proof(900, 1_000).unwrap(),
            r.inclusion(900, 1_000)
        );
        // The tile API never reads mid.
        assert_eq!(store.hash_tile(0, 0, None).unwrap(), tile0);
    }
    // Non-blob garbage is an SQLite type error, not a panic.
    conn.execute("UPDATE tiles SET mid = 42 WHERE level = 0 AND idx = 0", [])
        .unwrap();
    let store = LogStore::open(&path).unwrap();
    assert!(store.inclusion_proof(5, 1_000).is_err());
}

/// The client's `RootBuilder`, which is the server's right edge now:
/// `push_with` reports exactly the completed subtrees, `node` answers exactly
/// the compact-range subtrees, and a builder rebuilt from those subtrees
/// (`compact_range_subtrees`, as the log loads its edge) has the same root.
#[test]
fn right_edge_nodes_are_exactly_the_edge_subtrees() {
    let r = Reference::new(1_100);
    let mut edge = merkle::RootBuilder::new();
    assert_eq!(edge.node(0, 0), None);
    for size in 1..=1_100u64 {
        let mut completed = Vec::new();
        edge.push_with(merkle::leaf_hash(&entry(size - 1)), |l, i, h| {
            completed.push((l, i, *h))
        });
        for (l, i, h) in completed {
            assert_eq!(Ok(h), r.at(l, i), "reported ({l}, {i}) at {size}");
            assert_eq!((i + 1) << l, size, "({l}, {i}) is completed by leaf {size}");
        }
        assert_eq!(edge.root(), r.root(size));
        for level in 0..12u8 {
            let count = size >> level; // complete subtrees at this level
            for index in count.saturating_sub(3)..count + 2 {
                let is_edge = size >> level & 1 == 1 && index + 1 == count;
                let want = is_edge.then(|| r.at(level, index).unwrap());
                assert_eq!(
                    edge.node(level, index),
                    want,
                    "({level}, {index}) of {size}"
                );
            }
        }
        assert_eq!(edge.node(64, 0), None);
        assert_eq!(edge.node(255, u64::MAX), None);
    }
    let range: Vec<Hash> = merkle::compact_range_subtrees(1_100)
        .map(|(l, i)| r.at(l, i).unwrap())
        .collect();
    let loaded = merkle::RootBuilder::from_compact_range(1_100, range).unwrap();
    assert_eq!(loaded.root(), edge.root());
}

#[test]
fn perfect_root_matches_the_reference_and_refuses_other_widths() {
    let r = Reference::new(256);
    let bytes: Vec<u8> = (0..256).flat_map(|i| r.at(0, i).unwrap()).collect();
    for k in 0..=8u8 {
        let n = 32usize << k;
        assert_eq!(merkle::perfect_root(&bytes[..n]), Some(r.at(k, 0).unwrap()));
    }
    assert_eq!(merkle::perfect_root(&bytes[..96]), None);
    assert_eq!(merkle::perfect_root(&bytes[..31]), None);
    assert_eq!(merkle::perfect_root(&[]), None);
}

/// The provers the log uses give exactly the proofs of `tlog_tiles` (Go
/// `sumdb/tlog`), for every index and pair of sizes up to 300, refuse bad
/// input by name, and report a failing source as the source's error.
#[test]
fn subtree_provers_match_the_tlog_tiles_provers() {
    let r = Reference::new(300);
    for size in 1..=300u64 {
        for i in 0..size {
            let got = merkle::inclusion_proof(i, size, |l, n| r.at(l, n)).unwrap();
            assert_eq!(got, r.inclusion(i, size), "inclusion {i} in {size}");
        }
        for m in 0..=size {
            let got = merkle::consistency_proof(m, size, |l, n| r.at(l, n)).unwrap();
            assert_eq!(got, r.consistency(m, size), "consistency {m} -> {size}");
        }
    }
    let at = |l: u8, n: u64| r.at(l, n);
    assert_eq!(
        merkle::inclusion_proof(5, 5, at).map_err(|e| e.code()),
        Err("index_out_of_range")
    );
    assert_eq!(
        merkle::consistency_proof(6, 5, at).map_err(|e| e.code()),
        Err("size_order")
    );
    let failing = |_: u8, _: u64| -> Result<Hash, String> { Err("tile gone".into()) };
    let err = merkle::inclusion_proof(3, 10, failing).unwrap_err();
    assert!(err.to_string().contains("tile gone"), "{err}");
}
