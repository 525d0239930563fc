//! Storage-layer tests through the public API only. The independent
//! RFC 6962 computation is `rs_merkle` with an RFC 6962 hasher (checked
//! against the shared reference vectors); proofs are verified with the
//! RFC 9162 verifiers below and cross-checked with `tlog_tiles`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use attestlog::tlog::merkle;
use attestlog_server::storage::{
    Backend, Hash, Log, LogStore, NewEntry, SearchKind, SqliteBackend, StorageError, SCHEMA_VERSION,
};
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};

// ---------- independent RFC 6962 computation ----------

#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => Sha256::new()
                .chain_update([1u8])
                .chain_update(left)
                .chain_update(r)
                .finalize()
                .into(),
            None => *left, // RFC 6962: a lone node is promoted unchanged
        }
    }
}

fn rfc_leaf(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(entry)
        .finalize()
        .into()
}

fn ref_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    MerkleTree::<Rfc6962>::from_leaves(leaves).root().unwrap()
}

fn node(l: &Hash, r: &Hash) -> Hash {
    Rfc6962::concat_and_hash(l, Some(r))
}

/// RFC 9162 §2.1.3.2 inclusion verification.
fn verify_inclusion(index: u64, size: u64, leaf: Hash, proof: &[Hash], root: Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == root
}

/// RFC 9162 §2.1.4.2 consistency verification (0 < first <= second).
fn verify_consistency(
    first: u64,
    second: u64,
    first_root: Hash,
    second_root: Hash,
    proof: &[Hash],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_root);
    }
    if path.is_empty() {
        return false;
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == first_root && sr == second_root && s_n == 0
}

fn tl(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h)
}

// ---------- helpers ----------

fn shared_dir() -> PathBuf {
    std::env::var_os("ATTESTLOG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn sign(size: u64, root: Hash) -> Result<String, String> {
    Ok(format!(
        "test.example/log\n{size}\n{}\n\n\u{2014} test.example/log c2lnbmF0dXJl\n",
        hex::encode(root)
    ))
}

/// Parses (size, root) back out of a note made by [`sign`].
fn parse_note(note: &str) -> (u64, Hash) {
    let mut lines = note.lines().skip(1);
    let size = lines.next().unwrap().parse().unwrap();
    let root = hex::decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (size, root)
}

fn entry_bytes(i: u64) -> Vec<u8> {
    // Varying lengths, including the empty entry for i = 0.
    let len = (i % 97) as usize;
    let mut v = i.to_be_bytes()[..].repeat(1 + len / 8);
    v.truncate(len.max(8).min(v.len()));
    if i == 0 {
        v.clear();
    }
    v
}

fn new_entry(i: u64) -> NewEntry {
    NewEntry::new(
        entry_bytes(i),
        vec![(SearchKind::Commit, (i % 7).to_be_bytes().to_vec())],
    )
}

/// Appends entries `from..to` (by `entry_bytes`) in batches of at most 256.
fn append_range<B: Backend>(store: &Log<B>, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let end = (i + 256).min(to);
        let batch: Vec<NewEntry> = (i..end).map(new_entry).collect();
        let out = store.append_batch(&batch, &sign).unwrap();
        for (k, a) in out.entries.iter().enumerate() {
            assert_eq!(a.index, i + k as u64);
            assert!(!a.duplicate);
        }
        assert_eq!(out.tree_size, end);
        i = end;
    }
}

// ---------- backends under test ----------

/// How the conformance suite opens a backend: `open(dir)` opens the log
/// kept in `dir`, creating it the first time; opening it again is a restart
/// (or, while the first is open, a second writer on the same storage). A
/// new backend adds one impl and one `conformance!` line at the end.
trait Harness {
    type Backend: Backend + 'static;
    fn open(dir: &Path) -> Log<Self::Backend>;
}

/// The embedded SQLite backend: `dir/log.db`.
struct Sqlite;

impl Harness for Sqlite {
    type Backend = SqliteBackend;
    fn open(dir: &Path) -> LogStore {
        LogStore::open(&dir.join("log.db")).unwrap()
    }
}

/// A fresh log of backend `H`: its directory guard, the directory, the log.
fn tmp_store<H: Harness>() -> (tempfile::TempDir, PathBuf, Log<H::Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let store = H::open(&path);
    (dir, path, store)
}

// ---------- tests ----------

fn rs_merkle_reference_matches_rfc6962_vectors<H: Harness>() {
    let file = shared_dir().join("vectors/rfc6962.json");
    let Ok(text) = std::fs::read_to_string(&file) else {
        println!(
            "SKIPPED: {} not found (set ATTESTLOG_SHARED)",
            file.display()
        );
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let leaves: Vec<Vec<u8>> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect();
    let hashes: Vec<Hash> = leaves.iter().map(|l| rfc_leaf(l)).collect();
    let (_dir, _path, store) = tmp_store::<H>();
    for (size, root) in v["roots_by_size"].as_object().unwrap() {
        let size: usize = size.parse().unwrap();
        let want: Hash = hex::decode(root.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            ref_root(&hashes[..size]),
            want,
            "rs_merkle root at size {size}"
        );
    }
    // The store reproduces the vectors too, including their proofs.
    let batch: Vec<NewEntry> = leaves
        .iter()
        .map(|l| NewEntry::new(l.clone(), vec![]))
        .collect();
    for (i, e) in batch.iter().enumerate() {
        store.append_batch(std::slice::from_ref(e), &sign).unwrap();
        let want = v["roots_by_size"][(i + 1).to_string()].as_str().unwrap();
        assert_eq!(hex::encode(store.root_hash()), want);
    }
    let dec = |a: &serde_json::Value| -> Vec<Hash> {
        a.as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect()
    };
    for case in v["inclusion"].as_array().unwrap() {
        let (i, n) = (
            case["leaf_index"].as_u64().unwrap(),
            case["tree_size"].as_u64().unwrap(),
        );
        assert_eq!(
            store.inclusion_proof(i, n).unwrap(),
            dec(&case["proof"]),
            "inclusion {i} in {n}"
        );
    }
    for case in v["consistency"].as_array().unwrap() {
        let (m, n) = (
            case["first"].as_u64().unwrap(),
            case["second"].as_u64().unwrap(),
        );
        assert_eq!(
            store.consistency_proof(m, n).unwrap(),
            dec(&case["proof"]),
            "consistency {m} {n}"
        );
    }
}

fn empty_log<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    assert_eq!(store.tree_size(), 0);
    assert_eq!(store.root_hash(), <[u8; 32]>::from(Sha256::digest([])));
    assert_eq!(store.latest_checkpoint().unwrap(), None);
    assert_eq!(store.hash_tile(0, 0, Some(1)).unwrap(), None);
    assert_eq!(store.entry_bundle(0, Some(1)).unwrap(), None);
    assert_eq!(store.consistency_proof(0, 0).unwrap(), Vec::<Hash>::new());
    assert_eq!(store.root_at(0).unwrap(), store.root_hash());
    let out = store.append_batch(&[], &sign).unwrap();
    assert_eq!((out.tree_size, out.checkpoint), (0, None));
}

/// Checks every hash tile and (sampled) entry bundle of the current tree.
fn check_tiles<B: Backend>(store: &Log<B>, leaves: &[Hash]) {
    let n = leaves.len() as u64;
    for level in 0u8..3 {
        let count = n >> (8 * level);
        let span = 1usize << (8 * level); // leaves per hash at this level
        for t in 0..=(count / 256) {
            let full = (t + 1) * 256 <= count;
            let w = if full { 256 } else { count % 256 };
            if level == 0 && t % 17 != 0 && t != count / 256 && t != 1 {
                continue; // sample the bottom level
            }
            let got_full = store.hash_tile(level, t, None).unwrap();
            assert_eq!(
                got_full.is_some(),
                full,
                "full tile {level}/{t} at size {n}"
            );
            if w == 0 {
                assert_eq!(store.hash_tile(level, t, Some(1)).unwrap(), None);
                continue;
            }
            let tile = match got_full {
                Some(b) => b,
                None => store.hash_tile(level, t, Some(w as u16)).unwrap().unwrap(),
            };
            assert_eq!(tile.len() as u64, 32 * w);
            for j in 0..w as usize {
                let first = (t as usize * 256 + j) * span;
                let want = ref_root(&leaves[first..first + span]);
                assert_eq!(
                    &tile[32 * j..32 * j + 32],
                    &want[..],
                    "tile {level}/{t} hash {j} at size {n}"
                );
            }
            // A narrower partial request gets a prefix; a wider one does not exist.
            if w > 1 {
                let p = store.hash_tile(level, t, Some(1)).unwrap().unwrap();
                assert_eq!(&p[..], &tile[..32]);
            }
            if w < 255 {
                assert_eq!(store.hash_tile(level, t, Some(w as u16 + 1)).unwrap(), None);
            }
            if level == 0 {
                let bundle = match full {
                    true => store.entry_bundle(t, None).unwrap().unwrap(),
                    false => store.entry_bundle(t, Some(w as u16)).unwrap().unwrap(),
                };
                let mut rest = &bundle[..];
                for j in 0..w {
                    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    assert_eq!(&rest[2..2 + len], &entry_bytes(t * 256 + j)[..]);
                    rest = &rest[2 + len..];
                }
                assert!(rest.is_empty());
            }
        }
        assert_eq!(
            store.hash_tile(level, count / 256 + 1, Some(1)).unwrap(),
            None
        );
    }
}

fn tree_sizes_crossing_tile_boundaries<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    let mut sizes: Vec<u64> = vec![
        0, 1, 2, 3, 7, 8, 255, 256, 257, 511, 513, 4_097, 65_535, 65_536, 65_537,
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    for _ in 0..4 {
        sizes.push(rand(70_000));
    }
    sizes.push(70_001);
    sizes.sort_unstable();
    sizes.dedup();
    let final_size = *sizes.last().unwrap();
    let leaves: Vec<Hash> = (0..final_size).map(|i| rfc_leaf(&entry_bytes(i))).collect();

    let mut roots = std::collections::BTreeMap::new();
    for &s in &sizes {
        append_range(&store, store.tree_size(), s);
        assert_eq!(store.tree_size(), s);
        let root = ref_root(&leaves[..s as usize]);
        assert_eq!(store.root_hash(), root, "root at size {s}");
        if s > 0 {
            let cp = store.latest_checkpoint().unwrap().unwrap();
            assert_eq!((cp.size, cp.root), (s, root));
            assert_eq!(parse_note(&cp.note), (s, root));
        }
        if [1, 255, 256, 257, 65_535, 65_536, 65_537].contains(&s) {
            check_tiles(&store, &leaves[..s as usize]);
        }
        roots.insert(s, root);
    }
    check_tiles(&store, &leaves);

    // Every checkpoint is kept and roots of past sizes are recomputable.
    for (&s, root) in &roots {
        if s > 0 {
            let cp = store.checkpoint_at(s).unwrap().unwrap();
            assert_eq!((cp.size, cp.root), (s, *root));
            assert_eq!(parse_note(&cp.note), (s, *root));
        }
        assert_eq!(store.root_at(s).unwrap(), *root);
    }

    // Inclusion proofs at past sizes, verified with the RFC 9162 verifier
    // and tlog_tiles; at the final size also equal to rs_merkle's proof.
    let final_tree = MerkleTree::<Rfc6962>::from_leaves(&leaves);
    for (&s, root) in roots.iter().filter(|(s, _)| **s > 0) {
        let mut idx = vec![0, s - 1, s / 2, s / 3, rand(s), rand(s)];
        idx.extend([255, 256, 65_535, 65_536].into_iter().filter(|&i| i < s));
        for i in idx {
            let p = store.inclusion_proof(i, s).unwrap();
            assert!(
                verify_inclusion(i, s, leaves[i as usize], &p, *root),
                "inclusion {i} in {s}"
            );
            let tp: Vec<_> = p.iter().map(tl).collect();
            tlog_tiles::check_record(&tp, s, tl(root), i, tl(&leaves[i as usize])).unwrap();
            if s == final_size {
                assert_eq!(
                    p,
                    final_tree.proof(&[i as usize]).proof_hashes().to_vec(),
                    "rs_merkle proof {i}"
                );
            }
        }
    }
    for i in (0..final_size).step_by(1013) {
        let p = store.inclusion_proof(i, final_size).unwrap();
        assert!(verify_inclusion(
            i,
            final_size,
            leaves[i as usize],
            &p,
            roots[&final_size]
        ));
    }

    // Consistency proofs between all pairs of recorded sizes.
    for (&m, rm) in &roots {
        for (&n, rn) in roots.range(m..) {
            let p = store.consistency_proof(m, n).unwrap();
            if m == 0 {
                assert!(p.is_empty());
                continue;
            }
            assert!(
                verify_consistency(m, n, *rm, *rn, &p),
                "consistency {m} -> {n}"
            );
            if m < n {
                let tp: Vec<_> = p.iter().map(tl).collect();
                tlog_tiles::check_tree(&tp, n, tl(rn), m, tl(rm)).unwrap();
            }
            // A proof for the wrong old root must not verify.
            assert!(!verify_consistency(m, n, *rn, *rn, &p) || rm == rn);
        }
    }
}

fn dedup_within_batch_and_across_reopen<H: Harness>() {
    let (_dir, path, store) = tmp_store::<H>();
    let a = NewEntry::new(b"a".to_vec(), vec![(SearchKind::Pcr0, b"p".to_vec())]);
    let b = NewEntry::new(b"b".to_vec(), vec![]);
    let out = store
        .append_batch(&[a.clone(), b.clone(), a.clone()], &sign)
        .unwrap();
    let got: Vec<(u64, bool)> = out.entries.iter().map(|e| (e.index, e.duplicate)).collect();
    assert_eq!(got, vec![(0, false), (1, false), (0, true)]);
    assert_eq!(store.tree_size(), 2);
    assert_eq!(store.find_leaf(&a.leaf_hash).unwrap(), Some(0));
    assert_eq!(store.find_leaf(&rfc_leaf(b"zz")).unwrap(), None);

    // An all-duplicate batch writes and signs nothing.
    let cp = store.latest_checkpoint().unwrap();
    let refuse = |_: u64, _: Hash| -> Result<String, String> { panic!("must not sign") };
    let out = store
        .append_batch(std::slice::from_ref(&b), &refuse)
        .unwrap();
    assert_eq!(
        (
            out.entries[0].index,
            out.entries[0].duplicate,
            out.tree_size
        ),
        (1, true, 2)
    );
    assert_eq!(out.checkpoint, cp);

    drop(store);
    let store = H::open(&path);
    let c = NewEntry::new(b"c".to_vec(), vec![]);
    let out = store.append_batch(&[b, c, a], &sign).unwrap();
    let got: Vec<(u64, bool)> = out.entries.iter().map(|e| (e.index, e.duplicate)).collect();
    assert_eq!(got, vec![(1, true), (2, false), (0, true)]);
    assert_eq!(store.search(SearchKind::Pcr0, b"p", 10).unwrap(), vec![0]);
}

fn reopen_keeps_size_root_and_checkpoints<H: Harness>() {
    let (_dir, path, store) = tmp_store::<H>();
    append_range(&store, 0, 300);
    let cp300 = store.latest_checkpoint().unwrap();
    append_range(&store, 300, 1_000);
    let (size, root, cp) = (
        store.tree_size(),
        store.root_hash(),
        store.latest_checkpoint().unwrap(),
    );
    drop(store);
    let store = H::open(&path);
    assert_eq!((store.tree_size(), store.root_hash()), (size, root));
    assert_eq!(store.latest_checkpoint().unwrap(), cp);
    assert_eq!(store.checkpoint_at(300).unwrap(), cp300);
    // Appending continues the same tree.
    append_range(&store, 1_000, 1_300);
    let leaves: Vec<Hash> = (0..1_300).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    assert_eq!(store.root_hash(), ref_root(&leaves));
    check_tiles(&store, &leaves);
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, dir, store) = tmp_store::<Sqlite>();
    drop(store);
    let path = dir.join("log.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    match LogStore::open(&path) {
        Err(e @ StorageError::SchemaTooNew { .. }) => {
            assert!(e.to_string().contains("newer than this build"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn schema_is_applied_and_versioned() {
    let (_dir, dir, store) = tmp_store::<Sqlite>();
    drop(store);
    let path = dir.join("log.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

fn failing_sign_rolls_back_the_whole_batch<H: Harness>() {
    let (_dir, path, store) = tmp_store::<H>();
    append_range(&store, 0, 200);
    let (size, root, cp) = (
        store.tree_size(),
        store.root_hash(),
        store.latest_checkpoint().unwrap(),
    );
    let batch: Vec<NewEntry> = (200..300).map(new_entry).collect();
    let fail = |_: u64, _: Hash| -> Result<String, String> { Err("HSM offline".into()) };
    match store.append_batch(&batch, &fail) {
        Err(e @ StorageError::Sign(_)) => {
            assert!(e.to_string().contains("HSM offline"), "{e}");
            assert_eq!(e.code(), "checkpoint_signing");
        }
        other => panic!("expected Sign error, got {other:?}"),
    }
    let check = |store: &Log<H::Backend>| {
        assert_eq!((store.tree_size(), store.root_hash()), (size, root));
        assert_eq!(store.latest_checkpoint().unwrap(), cp);
        assert_eq!(store.entry(200).unwrap(), None);
        assert_eq!(store.find_leaf(&batch[0].leaf_hash).unwrap(), None);
        assert_eq!(store.checkpoint_at(300).unwrap(), None);
        assert_eq!(store.hash_tile(0, 0, Some(201)).unwrap(), None);
        // Search rows of the rolled-back entries are gone too.
        let key = (200u64 % 7).to_be_bytes();
        let hits = store.search(SearchKind::Commit, &key, 1000).unwrap();
        assert_eq!(
            hits,
            (0..200).filter(|i| i % 7 == 200 % 7).collect::<Vec<u64>>()
        );
    };
    check(&store);
    drop(store);
    let store = H::open(&path);
    check(&store);
    // The same batch then goes in at the same indices.
    append_range(&store, 200, 300);
    let leaves: Vec<Hash> = (0..300).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    assert_eq!(store.root_hash(), ref_root(&leaves));
    check_tiles(&store, &leaves);
}

fn invalid_entries_are_rejected_and_change_nothing<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    append_range(&store, 0, 10);
    let root = store.root_hash();
    let big = NewEntry::new(vec![0; 65_536], vec![]);
    let ok = NewEntry::new(vec![0; 65_535], vec![]);
    assert!(matches!(
        store.append_batch(&[ok.clone(), big], &sign),
        Err(StorageError::EntryTooLarge {
            position: 1,
            len: 65_536
        })
    ));
    let mut bad = new_entry(77);
    bad.leaf_hash[0] ^= 1;
    assert!(matches!(
        store.append_batch(&[bad], &sign),
        Err(StorageError::LeafHashMismatch { position: 0 })
    ));
    assert_eq!((store.tree_size(), store.root_hash()), (10, root));
    // The largest entry is fine and round-trips through a bundle.
    assert_eq!(
        store
            .append_batch(std::slice::from_ref(&ok), &sign)
            .unwrap()
            .entries[0]
            .index,
        10
    );
    assert_eq!(store.entry(10).unwrap().unwrap(), ok.bytes);
    let bundle = store.entry_bundle(0, Some(11)).unwrap().unwrap();
    assert_eq!(
        &bundle[bundle.len() - 65_537..bundle.len() - 65_535],
        &[0xff, 0xff]
    );
}

fn search_by_kind_and_key<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    let e = |b: &[u8], keys: &[(SearchKind, &[u8])]| {
        NewEntry::new(
            b.to_vec(),
            keys.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
        )
    };
    store
        .append_batch(
            &[
                e(
                    b"x",
                    &[
                        (SearchKind::ArtifactSha256, b"art1"),
                        (SearchKind::Commit, b"c1"),
                    ],
                ),
                e(
                    b"y",
                    &[
                        (SearchKind::ArtifactSha256, b"art2"),
                        (SearchKind::Commit, b"c1"),
                    ],
                ),
                e(b"z", &[(SearchKind::Pcr0, b"c1")]),
            ],
            &sign,
        )
        .unwrap();
    assert_eq!(
        store.search(SearchKind::Commit, b"c1", 10).unwrap(),
        vec![0, 1]
    );
    assert_eq!(store.search(SearchKind::Commit, b"c1", 1).unwrap(), vec![0]);
    assert_eq!(
        store
            .search(SearchKind::ArtifactSha256, b"art2", 10)
            .unwrap(),
        vec![1]
    );
    assert_eq!(store.search(SearchKind::Pcr0, b"c1", 10).unwrap(), vec![2]);
    assert!(store
        .search(SearchKind::Pcr0, b"nope", 10)
        .unwrap()
        .is_empty());
}

fn out_of_range_requests_are_errors_not_panics<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    append_range(&store, 0, 300);
    use StorageError::*;
    assert!(matches!(
        store.inclusion_proof(300, 300),
        Err(IndexOutOfRange { .. })
    ));
    assert!(matches!(
        store.inclusion_proof(5, 3),
        Err(IndexOutOfRange { .. })
    ));
    assert!(matches!(
        store.inclusion_proof(0, 0),
        Err(IndexOutOfRange { .. })
    ));
    assert!(matches!(
        store.inclusion_proof(0, 301),
        Err(SizeOutOfRange { .. })
    ));
    assert!(matches!(
        store.inclusion_proof(u64::MAX, u64::MAX),
        Err(SizeOutOfRange { .. })
    ));
    assert!(matches!(
        store.consistency_proof(5, 3),
        Err(SizesOutOfOrder { .. })
    ));
    assert!(matches!(
        store.consistency_proof(1, 301),
        Err(SizeOutOfRange { .. })
    ));
    assert!(matches!(store.root_at(301), Err(SizeOutOfRange { .. })));
    assert!(matches!(
        store.hash_tile(0, 0, Some(0)),
        Err(BadTileWidth(0))
    ));
    assert!(matches!(
        store.hash_tile(0, 0, Some(256)),
        Err(BadTileWidth(256))
    ));
    assert!(matches!(
        store.entry_bundle(0, Some(300)),
        Err(BadTileWidth(300))
    ));
    assert_eq!(store.hash_tile(0, 1, None).unwrap(), None); // only 44 wide
    assert_eq!(store.hash_tile(0, 2, Some(1)).unwrap(), None);
    assert_eq!(store.hash_tile(1, 0, Some(1)).unwrap().unwrap().len(), 32);
    assert_eq!(store.hash_tile(2, 0, Some(1)).unwrap(), None);
    for level in [8u8, 63, 64, 200, 255] {
        assert_eq!(store.hash_tile(level, 0, Some(1)).unwrap(), None);
    }
    assert_eq!(store.hash_tile(0, u64::MAX, None).unwrap(), None);
    assert_eq!(store.entry_bundle(u64::MAX, Some(1)).unwrap(), None);
    assert_eq!(store.entry_bundle(1, None).unwrap(), None);
    assert_eq!(store.entry(300).unwrap(), None);
    assert_eq!(store.entry(u64::MAX).unwrap(), None);
    assert_eq!(store.checkpoint_at(u64::MAX).unwrap(), None);
    assert_eq!(store.checkpoint_at(299).unwrap(), None);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn arbitrary_requests_never_panic(a in any::<u64>(), b in 0u64..700, level in any::<u8>(), w in proptest::option::of(any::<u16>())) {
            static STORE: std::sync::OnceLock<(tempfile::TempDir, LogStore)> = std::sync::OnceLock::new();
            let (_, store) = STORE.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let store = LogStore::open(&dir.path().join("log.db")).unwrap();
                append_range(&store, 0, 600);
                (dir, store)
            });
            let small = a % 700;
            let _ = store.inclusion_proof(small, b);
            let _ = store.inclusion_proof(a, b);
            let _ = store.consistency_proof(small, b);
            let _ = store.consistency_proof(b, a);
            let _ = store.hash_tile(level, a, w);
            let _ = store.hash_tile(level % 3, small % 4, w);
            let _ = store.entry_bundle(small % 4, w);
            let _ = store.entry(a);
            let _ = store.root_at(b);
            if small < b && b <= 600 {
                let p = store.inclusion_proof(small, b).unwrap();
                let leaf = rfc_leaf(&entry_bytes(small));
                prop_assert!(verify_inclusion(small, b, leaf, &p, store.root_at(b).unwrap()));
            }
        }
    }
}

fn concurrent_readers_while_appending<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    let store = Arc::new(store);
    append_range(&store, 0, 1);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|t| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut prev: Option<(u64, Hash)> = None;
                let mut checks = 0u64;
                let mut x: u64 = t + 1;
                while !done.load(Ordering::Relaxed) || checks < 20 {
                    let cp = store.latest_checkpoint().unwrap().unwrap();
                    let (size, root) = (cp.size, cp.root);
                    assert_eq!(parse_note(&cp.note), (size, root));
                    assert!(size <= store.tree_size());
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let i = (x >> 33) % size;
                    let p = store.inclusion_proof(i, size).unwrap();
                    assert!(verify_inclusion(
                        i,
                        size,
                        rfc_leaf(&entry_bytes(i)),
                        &p,
                        root
                    ));
                    let w = (size % 256) as u16;
                    if w > 0 {
                        let tile = store.hash_tile(0, size / 256, Some(w)).unwrap().unwrap();
                        assert_eq!(
                            &tile[tile.len() - 32..],
                            &rfc_leaf(&entry_bytes(size - 1))[..]
                        );
                    }
                    if let Some((m, rm)) = prev {
                        let p = store.consistency_proof(m, size).unwrap();
                        assert!(verify_consistency(m, size, rm, root, &p), "{m} -> {size}");
                    }
                    prev = Some((size, root));
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    let mut i = 1;
    for step in [1u64, 3, 255, 256, 100, 7].iter().cycle().take(60) {
        append_range(&store, i, i + step);
        i += step;
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 20);
    }
    let leaves: Vec<Hash> = (0..i).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    assert_eq!(store.root_hash(), ref_root(&leaves));
}

#[test]
fn leaf_hash_helper_is_rfc6962() {
    assert_eq!(merkle::leaf_hash(b"abc"), rfc_leaf(b"abc"));
}

/// Kills a writer process (storage-bench) mid-append with SIGKILL, then
/// reopens: the file must hold a prefix of whole batches whose tiles, root
/// and latest checkpoint agree (`LogStore::open` checks them) and whose
/// entries hash to that root.
#[test]
fn killed_writer_leaves_a_prefix_of_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storage-bench"))
        .args(["100000000", "200", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let db = dir
        .path()
        .join(format!("attestlog-bench-{}.db", child.id()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait until a few batches are in, then kill mid-run.
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let len = std::fs::metadata(format!("{}-wal", db.display()))
            .map(|m| m.len())
            .unwrap_or(0);
        if len > 2_000_000 || std::time::Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let store = LogStore::open(&db).unwrap();
    let size = store.tree_size();
    println!("killed at tree size {size}");
    assert!(size > 0, "no batch committed before the kill");
    assert_eq!(size % 256, 0, "a partial batch survived");
    let cp = store.latest_checkpoint().unwrap().unwrap();
    assert_eq!((cp.size, parse_bench_size(&cp.note)), (size, size));
    let leaves: Vec<Hash> = (0..size)
        .map(|i| rfc_leaf(&store.entry(i).unwrap().unwrap()))
        .collect();
    assert_eq!(store.root_hash(), ref_root(&leaves));
    assert_eq!(store.entry(size).unwrap(), None);
    // Every tile survived with its `mid` (written in the same statement of
    // the same transaction): the roots of its complete 16-hash groups.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut st = conn.prepare("SELECT hashes, mid FROM tiles").unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap();
    for row in rows {
        let (hashes, mid) = row.unwrap();
        let groups: Vec<u8> = hashes
            .chunks_exact(512)
            .flat_map(|g| {
                let hs: Vec<Hash> = g.chunks_exact(32).map(|c| c.try_into().unwrap()).collect();
                ref_root(&hs)
            })
            .collect();
        assert_eq!(mid, groups);
    }
}

fn parse_bench_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// Two writers on the same storage (two `Log`s, as two processes would be):
/// the one that sequenced on a stale checkpoint gets `checkpoint_conflict`
/// and writes nothing, so the log never forks; the same for two writers
/// racing to sign the first checkpoint of an empty log.
fn second_writer_cannot_fork<H: Harness>() {
    let (_dir, path, a) = tmp_store::<H>();
    let b = H::open(&path);
    a.ensure_checkpoint(&sign).unwrap();
    match b.ensure_checkpoint(&sign) {
        Err(e @ StorageError::CheckpointConflict { .. }) => {
            assert_eq!(e.code(), "checkpoint_conflict")
        }
        other => panic!("expected checkpoint_conflict, got {other:?}"),
    }
    drop(b);
    append_range(&a, 0, 10);
    let b = H::open(&path);
    assert_eq!(b.tree_size(), 10);
    append_range(&a, 10, 20);
    let fork = NewEntry::new(b"fork".to_vec(), vec![(SearchKind::Pcr0, b"f".to_vec())]);
    match b.append_batch(std::slice::from_ref(&fork), &sign) {
        Err(e @ StorageError::CheckpointConflict { .. }) => {
            assert_eq!(e.code(), "checkpoint_conflict");
            assert!(e.to_string().contains("size Some(10)"), "{e}");
        }
        other => panic!("expected checkpoint_conflict, got {other:?}"),
    }
    assert_eq!(b.tree_size(), 10);
    let leaves: Vec<Hash> = (0..20).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    let c = H::open(&path);
    assert_eq!((c.tree_size(), c.root_hash()), (20, ref_root(&leaves)));
    assert_eq!(c.find_leaf(&fork.leaf_hash).unwrap(), None);
    assert_eq!(c.checkpoint_at(11).unwrap(), None);
    assert!(c.search(SearchKind::Pcr0, b"f", 10).unwrap().is_empty());
    check_tiles(&c, &leaves);
    // The writer that is current goes on.
    append_range(&a, 20, 30);
}

/// Instantiates every backend-generic case above for one backend, as
/// `<backend>::<case>` tests.
macro_rules! conformance {
    ($backend:ident => $harness:ty: $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[test]
                fn $case() {
                    super::$case::<$harness>();
                }
            )*
        }
    };
}

conformance!(sqlite => Sqlite:
    rs_merkle_reference_matches_rfc6962_vectors,
    empty_log,
    tree_sizes_crossing_tile_boundaries,
    dedup_within_batch_and_across_reopen,
    reopen_keeps_size_root_and_checkpoints,
    failing_sign_rolls_back_the_whole_batch,
    invalid_entries_are_rejected_and_change_nothing,
    search_by_kind_and_key,
    out_of_range_requests_are_errors_not_panics,
    concurrent_readers_while_appending,
    second_writer_cannot_fork,
);
