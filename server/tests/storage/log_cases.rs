//! Backend-generic cases about the log: dedup, reopen, signing failures,
//! invalid entries, search, out-of-range requests, a second writer.

use super::*;

pub fn dedup_within_batch_and_across_reopen<H: Harness>() {
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

pub fn reopen_keeps_size_root_and_checkpoints<H: Harness>() {
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

pub fn failing_sign_rolls_back_the_whole_batch<H: Harness>() {
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

pub fn invalid_entries_are_rejected_and_change_nothing<H: Harness>() {
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

pub fn search_by_kind_and_key<H: Harness>() {
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
                        // Two subjects with one digest: one row, no error.
                        (SearchKind::ArtifactSha256, b"art2"),
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
    // Paging: `after` continues where a full page stopped.
    let after = |a, limit| {
        store
            .search_after(SearchKind::Commit, b"c1", a, limit)
            .unwrap()
    };
    assert_eq!(after(None, 1), vec![0]);
    assert_eq!(after(Some(0), 1), vec![1]);
    assert_eq!(after(Some(1), 1), Vec::<u64>::new());
    assert_eq!(after(Some(u64::MAX), 10), Vec::<u64>::new());
}

pub fn out_of_range_requests_are_errors_not_panics<H: Harness>() {
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

/// Two writers on the same storage (two `Log`s, as two processes would be):
/// the one that sequenced on a stale checkpoint gets `checkpoint_conflict`
/// and writes nothing, so the log never forks; the same for two writers
/// racing to sign the first checkpoint of an empty log.
pub fn second_writer_cannot_fork<H: Harness>() {
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
