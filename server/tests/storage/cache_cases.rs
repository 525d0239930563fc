//! Conformance cases for the log's read cache: on every backend, reads
//! through the cache (a miss that fills it, then hits, then after the tree
//! grows) answer exactly what the backend holds, only full tiles and
//! bundles are kept, and proofs from memory equal the blocking ones.

use super::*;

pub fn cached_reads_match_the_backend_as_the_tree_grows<H: Harness>() {
    let (_dir, _path, store) = tmp_store::<H>();
    let leaves: Vec<Hash> = (0..800).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    let uncached = |store: &Log<H::Backend>, s: u64| {
        // What a log without the cache answers is `check_tiles`' reference;
        // here: every tile, bundle and sample proof, read twice.
        for _ in 0..2 {
            check_tiles(store, &leaves[..s as usize]);
            for i in [0, 1, 255, 256, 300, s / 2, s - 1] {
                let p = store.inclusion_proof(i, s).unwrap();
                assert!(verify_inclusion(
                    i,
                    s,
                    leaves[i as usize],
                    &p,
                    ref_root(&leaves[..s as usize])
                ));
                // Once the blocking proof has read its tiles, the one from
                // memory is answered, and equal, unless it needs the
                // partial tile (never cached).
                match store.try_inclusion_proof(i, s) {
                    Some(q) => assert_eq!(q.unwrap(), p),
                    None => assert!(i >= s / 256 * 256, "{i} of {s} not from memory"),
                }
            }
            for m in [1, 255, 256, 513, s] {
                let p = store.consistency_proof(m, s).unwrap();
                let q = store.try_consistency_proof(m, s);
                assert!(q.is_none() || q.unwrap().unwrap() == p, "{m} -> {s}");
            }
        }
    };
    append_range(&store, 0, 600);
    uncached(&store, 600);
    // Tiles 0 and 1 are full and cached; tile 2 is partial and is not.
    assert!(store.try_cached_tile(0, 1, None).is_some());
    assert!(store.try_cached_bundle(1, None).is_some());
    assert!(store.try_cached_tile(0, 2, Some(88)).is_none());
    assert!(store.try_cached_bundle(2, Some(88)).is_none());

    // Tile 2 fills: read through the cache, every answer follows the tree.
    append_range(&store, 600, 800);
    uncached(&store, 800);
    assert_eq!(
        &store.try_cached_tile(0, 2, None).unwrap()[..],
        &leaves[512..768].concat()[..]
    );
    assert!(store.try_cached_tile(0, 3, Some(32)).is_none());
    // Past sizes still prove from the cached full tiles.
    let p = store.inclusion_proof(700, 750).unwrap();
    assert!(verify_inclusion(
        700,
        750,
        leaves[700],
        &p,
        ref_root(&leaves[..750])
    ));
}
