//! The read cache (`storage/cache.rs`) through a real server: full tiles and
//! bundles (and full bundles' gzip encodings) are served from memory after
//! the first read, byte-identical to what the backend holds; partial tiles
//! and bundles are never cached; proofs are the same with the cache on and
//! with `--read-cache-mib 0`, and read their tiles through the cache; the
//! byte bound holds whatever is read.
//!
//! "Served from the cache" is observed by changing the database under a
//! running server: a cached tile keeps its original bytes, anything not
//! cached shows the change (or fails), and a server without a cache always
//! shows it.

mod common;

use std::io::Read;
use std::path::Path;

use attestlog::tlog::merkle::{
    consistency_proof_from_leaves, inclusion_proof_from_leaves, leaf_hash,
};
use attestlog::tlog::note::NoteSigner;
use attestlog_server::storage::LogStore;
use common::*;
use rusqlite::Connection;

/// Entries in the test log: one full level-1 tile (256 full level-0 tiles)
/// and 44 more, so level 0 and the bundles end in a partial one of 44.
const N: u64 = 256 * 256 + 44;

fn entries() -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| format!("entry {i} {}", "x".repeat((i % 40) as usize)).into_bytes())
        .collect()
}

fn leaves(entries: &[Vec<u8>]) -> Vec<[u8; 32]> {
    entries.iter().map(|e| leaf_hash(e)).collect()
}

fn bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|e| [&(e.len() as u16).to_be_bytes()[..], e].concat())
        .collect()
}

/// A log of `entries()` at `dir/log`, and the dev root to start servers with.
fn log(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<Vec<u8>>) {
    let (_, dev_root) = dev_nsm(dir);
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    let data = dir.join("log");
    write_key(&data, &signer);
    let entries = entries();
    smuggle(&data, &signer, &entries);
    (data, dev_root, entries)
}

/// GET with an optional `Accept-Encoding`: status, `Content-Encoding`, body.
fn get(client: &reqwest::blocking::Client, url: &str, gzip: bool) -> (u16, String, Vec<u8>) {
    let mut req = client.get(url);
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let enc = resp
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, enc, resp.bytes().unwrap().to_vec())
}

fn ok(client: &reqwest::blocking::Client, url: &str) -> Vec<u8> {
    let (status, enc, body) = get(client, url, false);
    assert_eq!((status, enc.as_str()), (200, ""), "{url}");
    body
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Overwrites stored data under a running server: tile `(level, idx)`'s
/// hashes (with zeros unless given), or entry `idx`'s bytes with as many `!`.
fn zero_tile(db: &Path, level: u8, idx: u64) {
    set_tile(db, level, idx, None);
}

fn set_tile(db: &Path, level: u8, idx: u64, hashes: Option<&[u8]>) {
    let conn = Connection::open(db).unwrap();
    let n = match hashes {
        None => conn.execute(
            "UPDATE tiles SET hashes = zeroblob(length(hashes)) WHERE level = ?1 AND idx = ?2",
            (level, idx),
        ),
        Some(h) => conn.execute(
            "UPDATE tiles SET hashes = ?3 WHERE level = ?1 AND idx = ?2",
            (level, idx, h),
        ),
    }
    .unwrap();
    assert_eq!(n, 1);
}

fn scramble_entry(db: &Path, idx: u64) {
    let conn = Connection::open(db).unwrap();
    let n = conn
        .execute(
            "UPDATE entries SET data = CAST(replace(hex(zeroblob(length(data))), '00', '!') AS BLOB) \
             WHERE idx = ?1",
            [idx],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn full_tiles_and_bundles_are_served_from_the_cache_partial_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let (data, dev_root, entries) = log(dir.path());
    let leaves = leaves(&entries);
    let db = data.join("log.db");
    let client = reqwest::blocking::Client::new();
    let tile0 = |t: usize| leaves[256 * t..256 * (t + 1)].concat();

    let server = Server::start(&data, &dev_root, &[]);
    let url = |p: &str| format!("{}/{p}", server.url);
    // First read (from the backend, fills the cache) and second (a hit).
    for _ in 0..2 {
        assert_eq!(ok(&client, &url("tile/0/000")), tile0(0));
        assert_eq!(ok(&client, &url("tile/0/255")), tile0(255));
        assert_eq!(
            ok(&client, &url("tile/entries/001")),
            bundle(&entries[256..512])
        );
        let (status, enc, gz) = get(&client, &url("tile/entries/001"), true);
        assert_eq!((status, enc.as_str()), (200, "gzip"));
        assert_eq!(gunzip(&gz), bundle(&entries[256..512]));
    }
    let level1 = ok(&client, &url("tile/1/000"));
    assert_eq!(level1.len(), 8192);
    let partial = ok(&client, &url("tile/0/256.p/44"));
    assert_eq!(partial, leaves[256 * 256..].concat());
    let partial_bundle = ok(&client, &url("tile/entries/256.p/44"));
    assert_eq!(partial_bundle, bundle(&entries[256 * 256..]));

    // Change the database under the running server.
    for (level, idx) in [(0, 0), (0, 255), (0, 7), (1, 0), (0, 256)] {
        zero_tile(&db, level, idx);
    }
    for idx in [256, 300, 511, 7 * 256, 256 * 256 + 1] {
        scramble_entry(&db, idx);
    }
    // Cached full tiles and bundles keep their bytes, and so do prefixes of
    // them (partial widths of a full tile are the same bytes forever).
    assert_eq!(ok(&client, &url("tile/0/000")), tile0(0));
    assert_eq!(ok(&client, &url("tile/0/255")), tile0(255));
    assert_eq!(ok(&client, &url("tile/0/000.p/9")), leaves[..9].concat());
    assert_eq!(ok(&client, &url("tile/1/000")), level1);
    assert_eq!(
        ok(&client, &url("tile/entries/001")),
        bundle(&entries[256..512])
    );
    assert_eq!(
        ok(&client, &url("tile/entries/001.p/45")),
        bundle(&entries[256..301])
    );
    let (_, enc, gz) = get(&client, &url("tile/entries/001"), true);
    assert_eq!(enc, "gzip");
    assert_eq!(gunzip(&gz), bundle(&entries[256..512]));
    // A full tile or bundle never read before comes from the backend: the
    // changed bytes.
    assert_eq!(ok(&client, &url("tile/0/007")), vec![0u8; 8192]);
    let changed = ok(&client, &url("tile/entries/007"));
    assert_ne!(changed, bundle(&entries[7 * 256..8 * 256]));
    assert_eq!(changed.len(), bundle(&entries[7 * 256..8 * 256]).len());
    // Partial tiles and bundles were not kept: read again, changed.
    assert_eq!(ok(&client, &url("tile/0/256.p/44")), vec![0u8; 44 * 32]);
    assert_ne!(ok(&client, &url("tile/entries/256.p/44")), partial_bundle);
    drop(server);
    // (The edge is loaded from the partial tile at start: put it back.)
    set_tile(&db, 0, 256, Some(&partial));

    // Without a cache every read shows the database as it is now.
    let bare = Server::start(&data, &dev_root, &["--read-cache-mib", "0"]);
    let url = |p: &str| format!("{}/{p}", bare.url);
    for _ in 0..2 {
        assert_eq!(ok(&client, &url("tile/0/000")), vec![0u8; 8192]);
        assert_ne!(
            ok(&client, &url("tile/entries/001")),
            bundle(&entries[256..512])
        );
    }
    assert_eq!(ok(&client, &url("tile/0/001")), tile0(1));
    assert_eq!(
        ok(&client, &url("tile/entries/002")),
        bundle(&entries[512..768])
    );
}

#[test]
fn proofs_are_the_same_with_the_cache_on_and_off_and_read_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, dev_root, entries) = log(dir.path());
    let leaves = leaves(&entries);
    let client = reqwest::blocking::Client::new();
    // Indices in full tiles, in the partial one, at the edges; past sizes
    // and the current one.
    let cases: Vec<(u64, u64)> = [
        (0, N),
        (255, N),
        (256, N),
        (4_000, N),
        (65_535, N),
        (65_536, N),
        (N - 1, N),
        (3, 1_000),
        (999, 1_000),
        (40_000, 65_536),
        (40_000, 65_560),
    ]
    .into();
    let firsts: Vec<(u64, u64)> = [
        (1, N),
        (256, N),
        (1_000, N),
        (65_536, N),
        (N - 1, N),
        (17, 40_000),
    ]
    .into();
    type Answers = Vec<serde_json::Value>;
    let proofs = |base: &str| -> (Answers, Answers) {
        let inc = cases
            .iter()
            .map(|(i, s)| {
                let body = ok(
                    &client,
                    &format!("{base}/v1/proof/inclusion?index={i}&tree_size={s}"),
                );
                serde_json::from_slice(&body).unwrap()
            })
            .collect();
        let cons = firsts
            .iter()
            .map(|(a, b)| {
                let body = ok(
                    &client,
                    &format!("{base}/v1/proof/consistency?first={a}&second={b}"),
                );
                serde_json::from_slice(&body).unwrap()
            })
            .collect();
        (inc, cons)
    };
    let expect_inc: Vec<Vec<[u8; 32]>> = cases
        .iter()
        .map(|(i, s)| inclusion_proof_from_leaves(&leaves[..*s as usize], *i, *s).unwrap())
        .collect();
    let expect_cons: Vec<Vec<[u8; 32]>> = firsts
        .iter()
        .map(|(a, b)| consistency_proof_from_leaves(&leaves[..*b as usize], *a, *b).unwrap())
        .collect();
    let hashes = |v: &serde_json::Value| -> Vec<[u8; 32]> {
        v["proof"].as_array().unwrap().iter().map(b64d).collect()
    };

    let server = Server::start(&data, &dev_root, &[]);
    let cold = proofs(&server.url);
    let warm = proofs(&server.url);
    assert_eq!(cold, warm);
    for (got, want) in cold.0.iter().zip(&expect_inc) {
        assert_eq!(&hashes(got), want, "{got}");
    }
    for (got, want) in cold.1.iter().zip(&expect_cons) {
        assert_eq!(&hashes(got), want, "{got}");
    }
    let bare = Server::start(&data, &dev_root, &["--read-cache-mib", "0"]);
    assert_eq!(proofs(&bare.url), cold);
    drop(bare);

    // The full level-0 tiles the proofs read are cached: zeroed in the
    // database, the cached server still proves from the original hashes,
    // a server without a cache does not.
    zero_tile(&data.join("log.db"), 0, 4_000 / 256);
    assert_eq!(proofs(&server.url), cold);
    let bare = Server::start(&data, &dev_root, &["--read-cache-mib", "0"]);
    let url = format!("{}/v1/proof/inclusion?index=4000&tree_size={N}", bare.url);
    let changed: serde_json::Value = serde_json::from_slice(&ok(&client, &url)).unwrap();
    assert_ne!(hashes(&changed), expect_inc[3]);
}

#[test]
fn the_cache_stays_within_its_bound_and_answers_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, entries) = log(dir.path());
    let leaves = leaves(&entries);
    // Room for about 20 full tiles: far fewer than are read.
    let bound = 20 * (12_224 + 96);
    let store = LogStore::open(&data.join("log.db"))
        .unwrap()
        .with_read_cache_bytes(bound);
    let cache = store.read_cache();
    assert_eq!(cache.capacity(), bound);
    // The same log without a cache: the reference for proofs.
    let off = LogStore::open(&data.join("log.db"))
        .unwrap()
        .with_read_cache_bytes(0);
    for i in [17, 256 * 100 + 17, 256 * 256 + 17] {
        assert_eq!(
            off.inclusion_proof(i, N).unwrap(),
            inclusion_proof_from_leaves(&leaves, i, N).unwrap()
        );
    }
    for round in 0..2 {
        for t in 0..257u64 {
            let tile = store.hash_tile(0, t, None).unwrap();
            let want = (t < 256).then(|| leaves[256 * t as usize..256 * (t + 1) as usize].concat());
            assert_eq!(tile.map(|b| b.to_vec()), want, "round {round} tile {t}");
            let b = store.entry_bundle(t, None).unwrap();
            let want =
                (t < 256).then(|| bundle(&entries[256 * t as usize..256 * (t + 1) as usize]));
            assert_eq!(b.map(|b| b.to_vec()), want, "round {round} bundle {t}");
            let i = 256 * t + 17;
            assert_eq!(
                store.inclusion_proof(i, N).unwrap(),
                off.inclusion_proof(i, N).unwrap()
            );
            assert!(
                cache.used_bytes() <= bound,
                "{} > {bound}",
                cache.used_bytes()
            );
        }
        assert!(!cache.is_empty());
    }
    // Partial tiles and bundles never go in.
    let before = cache.len();
    let p = store.hash_tile(0, 256, Some(44)).unwrap().unwrap();
    assert_eq!(p, leaves[256 * 256..].concat());
    assert!(store.try_cached_tile(0, 256, Some(44)).is_none());
    assert!(store.try_cached_bundle(256, Some(44)).is_none());
    store.keep_bundle_gzip(256, vec![1, 2, 3].into());
    assert!(store.try_cached_bundle_gzip(256).is_none());
    assert!(cache.len() <= before);

    // A disabled cache keeps nothing and answers the same.
    for t in [0u64, 100, 255] {
        assert_eq!(
            off.hash_tile(0, t, None).unwrap(),
            store.hash_tile(0, t, None).unwrap()
        );
        assert_eq!(
            off.inclusion_proof(256 * t, N).unwrap(),
            store.inclusion_proof(256 * t, N).unwrap()
        );
    }
    assert!(off.read_cache().is_empty());
    assert!(off.try_cached_tile(0, 0, None).is_none());
    assert!(off.try_inclusion_proof(5, N).is_none());
}

#[test]
fn proofs_from_memory_need_every_tile_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, entries) = log(dir.path());
    let leaves = leaves(&entries);
    let store = LogStore::open(&data.join("log.db")).unwrap();
    // Cold: tile 10 of level 0 is not in memory.
    assert!(store.try_inclusion_proof(2_600, N).is_none());
    assert!(store.try_consistency_proof(2_600, N).is_none());
    let want = inclusion_proof_from_leaves(&leaves, 2_600, N).unwrap();
    assert_eq!(store.inclusion_proof(2_600, N).unwrap(), want);
    // Now it is (the level-1 tile too): answered from memory, the same.
    assert_eq!(store.try_inclusion_proof(2_600, N).unwrap().unwrap(), want);
    assert_eq!(
        store.try_consistency_proof(2_600, N).unwrap().unwrap(),
        consistency_proof_from_leaves(&leaves, 2_600, N).unwrap()
    );
    // Requests the log cannot answer are refused from memory too.
    assert!(matches!(store.try_inclusion_proof(N, N), Some(Err(_))));
    assert!(matches!(store.try_inclusion_proof(0, N + 1), Some(Err(_))));
    assert!(matches!(store.try_consistency_proof(5, 4), Some(Err(_))));
    // Trivial proofs need no tile at all.
    assert!(store
        .try_consistency_proof(0, N)
        .unwrap()
        .unwrap()
        .is_empty());
}
