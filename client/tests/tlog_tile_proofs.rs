//! Proofs computed from C2SP hash tiles (`tlog::tile_proofs`) equal the
//! proofs `tlog_tiles` (the port of Go's sumdb/tlog) computes from all leaf
//! hashes, verify against the roots, and read only the tiles a checkpoint
//! obliges a log to serve; short tiles and nodes beyond the tree are
//! refused by name.

use std::collections::HashMap;

use attestlog::tlog::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
    RootBuilder,
};
use attestlog::tlog::tile_proofs::{TileHashes, TileProofError};
use attestlog::tlog::tiles::{TileKind, TilePath};
use attestlog::tlog::Hash;

/// Every tile of the tree of `size` leaves, as a static log would hold
/// them: full tiles and the partial tiles for this size.
fn tiles(leaves: &[Hash]) -> HashMap<TilePath, Vec<u8>> {
    let mut out = HashMap::new();
    let mut level_hashes: Vec<Hash> = leaves.to_vec();
    let mut level = 0u8;
    while !level_hashes.is_empty() {
        for (i, chunk) in level_hashes.chunks(256).enumerate() {
            let width = (chunk.len() < 256).then_some(chunk.len() as u16);
            out.insert(
                TilePath {
                    kind: TileKind::Hashes { level },
                    index: i as u64,
                    width,
                },
                chunk.concat(),
            );
        }
        level_hashes = level_hashes
            .chunks_exact(256)
            .map(|c| {
                let mut b = RootBuilder::new();
                c.iter().for_each(|h| b.push(*h));
                b.root()
            })
            .collect();
        level += 1;
    }
    out
}

fn root(leaves: &[Hash]) -> Hash {
    let mut b = RootBuilder::new();
    leaves.iter().for_each(|h| b.push(*h));
    b.root()
}

#[derive(Debug)]
struct Missing(String);
impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "missing {}", self.0)
    }
}

/// All leaf hashes, read by Go `sumdb/tlog`'s "stored hash index", so
/// `tlog_tiles` (its port) proves from them independently of attestlog.
struct Leaves<'a>(&'a [Hash]);

impl tlog_tiles::HashReader for Leaves<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let (level, n) = tlog_tiles::split_stored_hash_index(i);
                let width = 1usize << level;
                let start = n as usize * width;
                let leaves = self
                    .0
                    .get(start..start + width)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                Ok(tlog_tiles::Hash(root(leaves)))
            })
            .collect()
    }
}

fn go_inclusion(leaves: &[Hash], index: u64, size: u64) -> Vec<Hash> {
    let proof = tlog_tiles::prove_record(size, index, &Leaves(leaves)).unwrap();
    proof.into_iter().map(|h| h.0).collect()
}

fn go_consistency(leaves: &[Hash], first: u64, second: u64) -> Vec<Hash> {
    if first == 0 || first == second {
        return Vec::new();
    }
    let proof = tlog_tiles::prove_tree(second, first, &Leaves(leaves)).unwrap();
    proof.into_iter().map(|h| h.0).collect()
}

#[test]
fn tile_proofs_equal_leaf_proofs_and_verify() {
    let leaves: Vec<Hash> = (0u32..70_000)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect();
    let sizes = [
        1u64, 2, 5, 255, 256, 257, 511, 512, 1000, 65_535, 65_536, 65_537, 70_000,
    ];
    for &second in &sizes {
        let all = tiles(&leaves[..second as usize]);
        let fetch = |t: &TilePath| all.get(t).cloned().ok_or_else(|| Missing(t.to_path()));
        let reader = TileHashes::new(second, fetch);
        let second_root = root(&leaves[..second as usize]);
        for &first in sizes.iter().filter(|&&f| f <= second) {
            let from_tiles = consistency_proof(first, second, |l, n| reader.hash_at(l, n))
                .unwrap_or_else(|e| panic!("{first}->{second}: {e}"));
            let expected = go_consistency(&leaves, first, second);
            assert_eq!(from_tiles, expected, "{first}->{second}");
            verify_consistency(
                first,
                second,
                &root(&leaves[..first as usize]),
                &second_root,
                &from_tiles,
            )
            .unwrap();
        }
        for index in [0, second / 3, second / 2, second - 1] {
            let from_tiles = inclusion_proof(index, second, |l, n| reader.hash_at(l, n)).unwrap();
            assert_eq!(from_tiles, go_inclusion(&leaves, index, second));
            verify_inclusion(
                index,
                second,
                &leaves[index as usize],
                &from_tiles,
                &second_root,
            )
            .unwrap();
        }
        // Only tiles of this tree size were read, each once.
        assert!(reader.tiles_read() <= all.len());
    }
}

#[test]
fn short_tiles_and_nodes_beyond_the_tree_are_refused() {
    let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut all = tiles(&leaves);
    let reader = TileHashes::new(300, |t: &TilePath| {
        all.get(t).cloned().ok_or_else(|| Missing(t.to_path()))
    });
    let e = reader.hash_at(1, 150).unwrap_err();
    assert_eq!(e.code(), "node_beyond_tree", "{e}");
    let e = reader.hash_at(63, 1).unwrap_err();
    assert_eq!(e.code(), "node_beyond_tree", "{e}");
    let e = reader.hash_at(9, 0).unwrap_err();
    assert_eq!(e.code(), "node_beyond_tree", "{e}");
    // A truncated partial tile: named, not a panic.
    let partial = TilePath {
        kind: TileKind::Hashes { level: 0 },
        index: 1,
        width: Some(44),
    };
    all.get_mut(&partial).unwrap().truncate(40);
    let reader = TileHashes::new(300, |t: &TilePath| {
        all.get(t).cloned().ok_or_else(|| Missing(t.to_path()))
    });
    let e = inclusion_proof(299, 300, |l, n| reader.hash_at(l, n)).unwrap_err();
    assert_eq!(e.code(), "hash_source", "{e}");
    assert!(e.to_string().contains("tile/0/001.p/44"), "{e}");
    let e = reader.hash_at(0, 299).unwrap_err();
    assert!(
        matches!(
            e,
            TileProofError::TileSize {
                len: 40,
                expected: 1408,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), "tile_size");
    // A missing tile is the fetcher's error.
    let reader = TileHashes::new(600, |t: &TilePath| {
        all.get(t).cloned().ok_or_else(|| Missing(t.to_path()))
    });
    let e = reader.hash_at(0, 599).unwrap_err();
    assert_eq!(e.code(), "tile_fetch");
}
