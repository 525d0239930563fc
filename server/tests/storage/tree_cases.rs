//! Backend-generic cases about the tree: RFC vectors, sizes across tile
//! boundaries, tiles and bundles, proofs, readers during appends.

use super::*;

pub fn rs_merkle_reference_matches_rfc6962_vectors<H: Harness>() {
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

pub fn empty_log<H: Harness>() {
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
pub fn check_tiles<B: Backend>(store: &Log<B>, leaves: &[Hash]) {
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

pub fn tree_sizes_crossing_tile_boundaries<H: Harness>() {
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

pub fn concurrent_readers_while_appending<H: Harness>() {
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
