//! The growing edge of the tree, in memory: the compact range (one hash per
//! set bit of the size, `attestlog::tlog::merkle::RootBuilder`) and, per
//! tile level, the hashes of its partial tile. Appending leaves to a copy
//! yields exactly the tiles a batch must write, with no read of the backend.
//!
//! Invariant, for tree size `n` and tile level `L` with `c = n >> 8L`:
//! `partial[L]` holds the last `c % 256` level-8L hashes (`32 * (c % 256)`
//! bytes), i.e. the content of tile `(L, c / 256)`, which the backend holds
//! identically; the tiles before it are full.

use attestlog::tlog::merkle::{compact_range_subtrees, RootBuilder};

use super::tiles::{hashes_at_level, mid_hashes, TileReader, TILE_HEIGHT, TILE_WIDTH};
use super::{Backend, Hash, StorageError, TileWrite};

/// Bytes of a full tile.
const FULL_TILE_BYTES: usize = 32 * TILE_WIDTH as usize;

#[derive(Clone, Debug, Default)]
pub struct TreeEdge {
    pub edge: RootBuilder,
    partial: Vec<Vec<u8>>,
}

impl TreeEdge {
    /// Loads the edge of a stored tree of `size` leaves: O(log n) subtree
    /// hashes and one partial tile per tile level.
    pub fn load<B: Backend + ?Sized>(size: u64, backend: &B) -> Result<Self, StorageError> {
        let mut reader = TileReader::new(backend, None, None, size);
        let range = compact_range_subtrees(size)
            .map(|(level, index)| reader.subtree(level, index))
            .collect::<Result<Vec<Hash>, _>>()?;
        let edge = RootBuilder::from_compact_range(size, range)
            .ok_or_else(|| StorageError::Corrupt(format!("compact range of {size}")))?;
        let mut partial = Vec::new();
        for level in 0u8.. {
            let count = hashes_at_level(size, level);
            if count == 0 {
                break;
            }
            let have = (count % TILE_WIDTH) as usize;
            let bytes = if have == 0 {
                Vec::new()
            } else {
                // At least `have` hashes: a shared backend's partial tile
                // may have grown since `size` was published.
                let mut tile = backend
                    .tile(level, count / TILE_WIDTH, size)?
                    .unwrap_or_default();
                if tile.len() < 32 * have {
                    return Err(StorageError::Corrupt(format!(
                        "partial tile level {level} index {} has {} bytes, expected {}",
                        count / TILE_WIDTH,
                        tile.len(),
                        32 * have
                    )));
                }
                tile.truncate(32 * have);
                tile
            };
            partial.push(bytes);
        }
        Ok(TreeEdge { edge, partial })
    }

    pub fn size(&self) -> u64 {
        self.edge.size()
    }

    pub fn root(&self) -> Hash {
        self.edge.root()
    }

    /// Appends leaves; returns every tile they changed (completed tiles and
    /// the grown partial tile of each level touched); order is irrelevant,
    /// they are written in one atomic append.
    pub fn append(&mut self, leaves: impl IntoIterator<Item = Hash>) -> Vec<TileWrite> {
        let mut full = Vec::new();
        let mut touched: Vec<bool> = Vec::new();
        let TreeEdge { edge, partial } = self;
        for leaf in leaves {
            edge.push_with(leaf, |level, index, hash| {
                if u32::from(level) % TILE_HEIGHT != 0 {
                    return;
                }
                let l = (u32::from(level) / TILE_HEIGHT) as usize;
                if partial.len() <= l {
                    partial.resize_with(l + 1, Vec::new);
                }
                if touched.len() <= l {
                    touched.resize(l + 1, false);
                }
                let tile = &mut partial[l];
                tile.extend_from_slice(hash);
                touched[l] = true;
                if tile.len() == FULL_TILE_BYTES {
                    let hashes = std::mem::take(tile);
                    full.push(TileWrite {
                        level: l as u8,
                        index: index / TILE_WIDTH,
                        mid: mid_hashes(&hashes),
                        hashes,
                    });
                }
            });
        }
        let size = edge.size();
        for (l, _) in touched.iter().enumerate().filter(|(_, t)| **t) {
            let hashes = &partial[l];
            if !hashes.is_empty() {
                full.push(TileWrite {
                    level: l as u8,
                    index: hashes_at_level(size, l as u8) / TILE_WIDTH,
                    mid: mid_hashes(hashes),
                    hashes: hashes.clone(),
                });
            }
        }
        full
    }
}
