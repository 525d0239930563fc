//! Cases of the cluster backend (PostgreSQL + object store), where several
//! `Log`s share one storage: a failed signing leaves the entries sequenced
//! for the next integration, two writers build one dense tree (also when
//! they race on the same entries), a stale
//! integrator is fenced off, and the object store holds exactly what the
//! log serves, at the C2SP paths.

use super::*;
use attestlog_server::storage::objects::CHECKPOINT;

fn cluster_of<B: Backend>(log: &Log<B>) -> &dyn attestlog_server::storage::Cluster {
    log.backend().cluster().expect("a cluster backend")
}

pub fn failing_sign_publishes_nothing_and_the_entries_wait<
    H: Harness<Backend = PostgresBackend>,
>() {
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
        Err(e @ StorageError::Sign(_)) => assert!(e.to_string().contains("HSM offline"), "{e}"),
        other => panic!("expected Sign error, got {other:?}"),
    }
    // Nothing is published: not the size, the checkpoint, a tile or a
    // search hit beyond it.
    let check = |store: &Log<H::Backend>| {
        assert_eq!((store.tree_size(), store.root_hash()), (size, root));
        assert_eq!(store.latest_checkpoint().unwrap(), cp);
        assert_eq!(store.entry(200).unwrap(), None);
        assert_eq!(store.checkpoint_at(300).unwrap(), None);
        assert_eq!(store.hash_tile(0, 0, Some(201)).unwrap(), None);
        let key = (200u64 % 7).to_be_bytes();
        let hits = store.search(SearchKind::Commit, &key, 1000).unwrap();
        assert!(hits.iter().all(|&i| i < 200), "{hits:?}");
    };
    check(&store);
    drop(store);
    let store = H::open(&path);
    check(&store);
    // The entries were sequenced durably at 200..300: the same batch again
    // is all duplicates at those indices, published by this append.
    let out = store.append_batch(&batch, &sign).unwrap();
    for (k, a) in out.entries.iter().enumerate() {
        assert_eq!((a.index, a.duplicate), (200 + k as u64, true));
    }
    assert_eq!(out.tree_size, 300);
    let leaves: Vec<Hash> = (0..300).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    assert_eq!(store.root_hash(), ref_root(&leaves));
    check_tiles(&store, &leaves);
}

pub fn two_writers_share_one_dense_tree<H: Harness<Backend = PostgresBackend>>() {
    let (_dir, path, a) = tmp_store::<H>();
    let b = H::open(&path);
    a.ensure_checkpoint(&sign).unwrap();
    b.ensure_checkpoint(&sign).unwrap();
    assert_eq!(
        a.latest_checkpoint().unwrap(),
        b.latest_checkpoint().unwrap()
    );
    let (a, b) = (Arc::new(a), Arc::new(b));
    let writers: Vec<_> = [(Arc::clone(&a), 0u64), (Arc::clone(&b), 1000u64)]
        .into_iter()
        .map(|(log, base)| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for round in 0..8u64 {
                    let batch: Vec<NewEntry> =
                        (0..25).map(|k| new_entry(base + round * 25 + k)).collect();
                    let out = log.append_batch(&batch, &sign).unwrap();
                    let cp = out.checkpoint.unwrap();
                    for (e, a) in batch.iter().zip(&out.entries) {
                        assert!(!a.duplicate);
                        assert!(a.index < cp.size);
                        let p = log.inclusion_proof(a.index, cp.size).unwrap();
                        assert!(verify_inclusion(a.index, cp.size, e.leaf_hash, &p, cp.root));
                        got.push((a.index, e.bytes.clone()));
                    }
                }
                // Let the other writer integrate at once instead of after
                // the lease expires.
                cluster_of(&log).release_lease();
                got
            })
        })
        .collect();
    let mut all: Vec<(u64, Vec<u8>)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort();
    // Dense, each entry once, and one tree that both see.
    for (i, (index, _)) in all.iter().enumerate() {
        assert_eq!(*index, i as u64);
    }
    let leaves: Vec<Hash> = all.iter().map(|(_, bytes)| rfc_leaf(bytes)).collect();
    a.refresh().unwrap();
    b.refresh().unwrap();
    for log in [&a, &b] {
        assert_eq!((log.tree_size(), log.root_hash()), (400, ref_root(&leaves)));
        assert_eq!(log.entry(399).unwrap().as_ref(), Some(&all[399].1));
    }
    // No two checkpoints of the same size differ (the table has one per size),
    // and each is consistent with the final tree.
    let final_root = ref_root(&leaves);
    for size in 1..=400u64 {
        if let Some(cp) = a.checkpoint_at(size).unwrap() {
            assert_eq!(cp.root, ref_root(&leaves[..size as usize]));
            let p = a.consistency_proof(size, 400).unwrap();
            assert!(verify_consistency(size, 400, cp.root, final_root, &p));
        }
    }
}

/// Two writers submit the same entries at the same moment (each batch also
/// holds entries of its own): their lookups both miss, one commits first,
/// the other's insert meets the unique leaf hash, and its whole batch is
/// looked up and sequenced again. Each entry is logged once, both writers
/// answer it with the same index (one of them as a duplicate), and the log
/// stays dense.
pub fn two_writers_racing_on_the_same_entries_log_each_once<
    H: Harness<Backend = PostgresBackend>,
>() {
    let (_dir, path, a) = tmp_store::<H>();
    let b = H::open(&path);
    a.ensure_checkpoint(&sign).unwrap();
    b.ensure_checkpoint(&sign).unwrap();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let start = Arc::new(std::sync::Barrier::new(2));
    const ROUNDS: u64 = 12;
    let writers: Vec<_> = [(Arc::clone(&a), 5000u64), (Arc::clone(&b), 6000u64)]
        .into_iter()
        .map(|(log, own)| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for round in 0..ROUNDS {
                    // 10 entries both submit, then 3 of this writer's own.
                    let batch: Vec<NewEntry> = (0..10)
                        .map(|k| new_entry(round * 10 + k))
                        .chain((0..3).map(|k| new_entry(own + round * 3 + k)))
                        .collect();
                    start.wait();
                    let out = log.append_batch(&batch, &sign).unwrap();
                    let cp = out.checkpoint.unwrap();
                    for (e, a) in batch.iter().zip(&out.entries) {
                        assert_eq!(a.leaf_hash, e.leaf_hash);
                        let p = log.inclusion_proof(a.index, cp.size).unwrap();
                        assert!(verify_inclusion(a.index, cp.size, e.leaf_hash, &p, cp.root));
                        got.push((e.bytes.clone(), a.index, a.duplicate));
                    }
                }
                cluster_of(&log).release_lease();
                got
            })
        })
        .collect();
    let answers: Vec<(Vec<u8>, u64, bool)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    // Each distinct entry has one index, whoever answered it, and was
    // sequenced (answered not as a duplicate) exactly once.
    let mut by_bytes: std::collections::BTreeMap<Vec<u8>, (u64, usize)> = Default::default();
    for (bytes, index, duplicate) in &answers {
        let slot = by_bytes.entry(bytes.clone()).or_insert((*index, 0));
        assert_eq!(slot.0, *index, "one entry answered at two indices");
        slot.1 += usize::from(!duplicate);
    }
    assert_eq!(by_bytes.len() as u64, ROUNDS * (10 + 2 * 3));
    assert!(by_bytes.values().all(|&(_, sequenced)| sequenced == 1));
    // Dense: the distinct entries are exactly indices 0..n, and the log
    // (as both see it once they follow its head) holds each at its index.
    let mut at: Vec<(u64, Vec<u8>)> = by_bytes.into_iter().map(|(b, (i, _))| (i, b)).collect();
    at.sort();
    let leaves: Vec<Hash> = at.iter().map(|(_, bytes)| rfc_leaf(bytes)).collect();
    a.refresh().unwrap();
    b.refresh().unwrap();
    for log in [&a, &b] {
        assert_eq!(
            (log.tree_size(), log.root_hash()),
            (leaves.len() as u64, ref_root(&leaves))
        );
    }
    for (i, (index, bytes)) in at.iter().enumerate() {
        assert_eq!(*index, i as u64);
        assert_eq!(b.entry(*index).unwrap().as_ref(), Some(bytes));
    }
}

pub fn a_stale_integrator_is_fenced<H: Harness<Backend = PostgresBackend>>() {
    let (_dir, path, a) = tmp_store::<H>();
    append_range(&a, 0, 10); // a holds the lease
    let b = H::open(&path);
    // a pauses past its lease; b takes it over (a new epoch).
    postgres_common::query_on(&pg_url(&path), "UPDATE lease SET expires_at = '-infinity'");
    assert!(cluster_of(&b).lease().unwrap());
    let entry = new_entry(10);
    let out = cluster_of(&b)
        .sequence(std::slice::from_ref(&entry), &[None])
        .unwrap();
    assert_eq!(out[0].index, 10);
    // a still believes it holds the lease: its integration is refused by
    // the fence, and nothing moves.
    match a.integrate(&sign) {
        Err(e @ StorageError::LeaseLost { .. }) => assert_eq!(e.code(), "lease_lost"),
        other => panic!("expected lease_lost, got {other:?}"),
    }
    assert_eq!(b.latest_checkpoint().unwrap().unwrap().size, 10);
    assert_eq!(a.tree_size(), 10);
    // The holder integrates; a follows.
    assert_eq!(b.integrate(&sign).unwrap(), 11);
    a.refresh().unwrap();
    assert_eq!(
        a.latest_checkpoint().unwrap(),
        b.latest_checkpoint().unwrap()
    );
    let leaves: Vec<Hash> = (0..11).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    assert_eq!(a.root_hash(), ref_root(&leaves));
}

pub fn objects_are_at_the_c2sp_paths<H: Harness<Backend = PostgresBackend>>() {
    let (_dir, path, store) = tmp_store::<H>();
    append_range(&store, 0, 300);
    append_range(&store, 300, 513);
    let objects = store.backend().objects();
    let get = |p: &str| {
        objects
            .get(p)
            .unwrap()
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    // An integration writes the tiles and bundles it completes.
    assert_eq!(
        get("tile/0/000"),
        store.hash_tile(0, 0, None).unwrap().unwrap()
    );
    assert_eq!(
        get("tile/0/001"),
        store.hash_tile(0, 1, None).unwrap().unwrap()
    );
    assert_eq!(
        get("tile/entries/001"),
        store.entry_bundle(1, None).unwrap().unwrap()
    );
    // The partial ones live in PostgreSQL (the hot edge) until a flush;
    // a second process reads them from there.
    for p in [
        "tile/0/002.p/1",
        "tile/1/000.p/2",
        "tile/entries/002.p/1",
        "tile/0/001.p/44",
    ] {
        assert_eq!(objects.get(p).unwrap(), None, "{p} before a flush");
    }
    let reader = H::open(&path);
    assert_eq!(reader.tree_size(), 513);
    for (level, index, width) in [(0, 2, 1), (1, 0, 2), (0, 1, 44), (1, 0, 1)] {
        assert_eq!(
            reader.hash_tile(level, index, Some(width)).unwrap(),
            store.hash_tile(level, index, Some(width)).unwrap(),
            "tile {level}/{index}.p/{width}"
        );
    }
    assert_eq!(
        reader.entry_bundle(2, Some(1)).unwrap(),
        store.entry_bundle(2, Some(1)).unwrap()
    );
    let leaves: Vec<Hash> = (0..513).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    check_tiles(&reader, &leaves);
    // A flush copies the head's partial tiles and bundle, then the
    // checkpoint, to the bucket.
    cluster_of(&store).flush(true).unwrap();
    assert_eq!(
        get("tile/0/002.p/1"),
        store.hash_tile(0, 2, Some(1)).unwrap().unwrap()
    );
    assert_eq!(
        get("tile/1/000.p/2"),
        store.hash_tile(1, 0, Some(2)).unwrap().unwrap()
    );
    assert_eq!(
        get("tile/entries/002.p/1"),
        store.entry_bundle(2, Some(1)).unwrap().unwrap()
    );
    let latest = store.latest_checkpoint().unwrap().unwrap().note;
    assert_eq!(
        objects.get(CHECKPOINT).unwrap().map(String::from_utf8),
        Some(Ok(latest))
    );
    // Not due again within FLUSH_EVERY unless forced; forced again it
    // writes the same bytes.
    append_range(&store, 513, 600);
    cluster_of(&store).flush(false).unwrap();
    assert_eq!(objects.get("tile/0/002.p/88").unwrap(), None);
    cluster_of(&store).flush(true).unwrap();
    cluster_of(&store).flush(true).unwrap();
    assert_eq!(
        get("tile/0/002.p/88"),
        store.hash_tile(0, 2, Some(88)).unwrap().unwrap()
    );
}

/// A flush deletes the partial objects under tiles and bundles that are
/// full by then (C2SP tlog-tiles allows it once the full object exists) and
/// keeps those of the head's partial tiles and bundle.
pub fn partial_objects_go_once_their_tile_is_full<H: Harness<Backend = PostgresBackend>>() {
    let (_dir, _path, store) = tmp_store::<H>();
    let objects = store.backend().objects();
    let old = [
        "tile/0/000.p/100",
        "tile/0/000.p/200",
        "tile/entries/000.p/100",
        "tile/entries/000.p/200",
    ];
    append_range(&store, 0, 100);
    cluster_of(&store).flush(true).unwrap();
    append_range(&store, 100, 200);
    cluster_of(&store).flush(true).unwrap();
    for p in old {
        assert!(
            objects.get(p).unwrap().is_some(),
            "{p} while its tile is partial"
        );
    }
    append_range(&store, 200, 300);
    cluster_of(&store).flush(true).unwrap();
    for p in old {
        assert_eq!(objects.get(p).unwrap(), None, "{p} once its tile is full");
    }
    for p in [
        "tile/0/000",
        "tile/entries/000",
        "tile/0/001.p/44",
        "tile/entries/001.p/44",
        "tile/1/000.p/1",
    ] {
        assert!(objects.get(p).unwrap().is_some(), "{p} is kept");
    }
    // The older sizes' partial tiles are the full tile's prefixes, which is
    // what a C2SP client falls back to.
    let full = objects.get("tile/0/000").unwrap().unwrap();
    assert_eq!(
        store.hash_tile(0, 0, Some(100)).unwrap().unwrap(),
        full[..32 * 100]
    );
    // The next tile's partials go the same way.
    append_range(&store, 300, 520);
    cluster_of(&store).flush(true).unwrap();
    for p in ["tile/0/001.p/44", "tile/entries/001.p/44"] {
        assert_eq!(objects.get(p).unwrap(), None, "{p} once its tile is full");
    }
    assert!(objects.get("tile/0/002.p/8").unwrap().is_some());
}

/// A backlog of large entries is integrated in steps that each hold about
/// `MAX_INTEGRATE_BYTES` (whole 256-entry chunks until they reach it), not
/// `MAX_INTEGRATE` entries of up to 64 KiB (4 GiB).
pub fn an_integration_holds_a_bounded_number_of_bytes<H: Harness<Backend = PostgresBackend>>() {
    use attestlog_server::storage::cluster::MAX_INTEGRATE_BYTES;
    let (_dir, path, a) = tmp_store::<H>();
    append_range(&a, 0, 1); // a holds the lease
    let b = H::open(&path);
    let big = |i: u64| {
        let mut v = vec![(i % 251) as u8; 60_000];
        v[..8].copy_from_slice(&i.to_be_bytes());
        v
    };
    // b only sequences (84 MB); a integrates.
    let total = 1_401u64;
    for start in (1..total).step_by(100) {
        let batch: Vec<NewEntry> = (start..start + 100)
            .map(|i| NewEntry::new(big(i), Vec::new()))
            .collect();
        cluster_of(&b)
            .sequence(&batch, &vec![None; batch.len()])
            .unwrap();
    }
    // a learns the sequenced size from b's notifications.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cluster_of(&a).sequenced_hint() < total {
        assert!(std::time::Instant::now() < deadline, "no notification");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let chunk = 256 * 60_000;
    let chunks = MAX_INTEGRATE_BYTES.div_ceil(chunk) as u64;
    assert!(1 + chunks * 256 < total, "the case must exceed the bound");
    assert_eq!(a.integrate(&sign).unwrap(), 1 + chunks * 256);
    assert_eq!(a.integrate(&sign).unwrap(), total);
    let leaves: Vec<Hash> = std::iter::once(rfc_leaf(&entry_bytes(0)))
        .chain((1..total).map(|i| rfc_leaf(&big(i))))
        .collect();
    assert_eq!(a.root_hash(), ref_root(&leaves));
    b.refresh().unwrap();
    assert_eq!(b.root_hash(), ref_root(&leaves));
}
