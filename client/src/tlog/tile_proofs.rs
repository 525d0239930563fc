//! Merkle node hashes read from C2SP tlog-tiles hash tiles, so that
//! inclusion and consistency proofs can be computed from a log's static
//! tiles alone (no proof endpoint), with [`super::merkle::inclusion_proof`]
//! and [`super::merkle::consistency_proof`].
//!
//! Contract: [`TileHashes::hash_at`]`(level, n)` returns the root of the
//! complete subtree of 2^level leaves starting at leaf `n * 2^level` in the
//! tree of `size` leaves the reader was made for. A node at tree level
//! `8L + k` is hashed up from the 2^k consecutive level-`8L` hashes of tile
//! level `L`. Each tile is fetched at most once per reader (the full tile, or
//! the partial tile of the width a checkpoint of `size` obliges the log to
//! serve) and must hold exactly `width * 32` bytes. Nothing here is trusted:
//! a proof computed from tiles is only as good as its verification against a
//! signed root, which the caller must do.

use std::cell::RefCell;
use std::collections::HashMap;

use super::merkle::RootBuilder;
use super::tiles::{TileKind, TilePath, TILE_HEIGHT, TILE_WIDTH};
use super::Hash;

/// Bytes in a full hash tile: 256 hashes of 32 bytes.
pub const MAX_TILE_BYTES: usize = TILE_WIDTH as usize * 32;

/// Why a node hash could not be read from the tiles.
#[derive(Debug, thiserror::Error)]
pub enum TileProofError<E: std::fmt::Display + std::fmt::Debug> {
    #[error(
        "node (level {level}, index {index}) is not a complete subtree of the tree of size {size}"
    )]
    NodeBeyondTree { level: u8, index: u64, size: u64 },
    #[error("{path}: {len} bytes, expected {expected}")]
    TileSize {
        path: String,
        len: usize,
        expected: usize,
    },
    #[error("{0}")]
    Fetch(E),
}

impl<E: std::fmt::Display + std::fmt::Debug> TileProofError<E> {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NodeBeyondTree { .. } => "node_beyond_tree",
            Self::TileSize { .. } => "tile_size",
            Self::Fetch(_) => "tile_fetch",
        }
    }
}

/// Reads node hashes of the tree of `size` leaves from hash tiles returned
/// by `fetch` (the tile's raw bytes), caching every tile it reads.
pub struct TileHashes<F> {
    size: u64,
    fetch: F,
    cache: RefCell<HashMap<TilePath, Vec<Hash>>>,
}

impl<F, E> TileHashes<F>
where
    F: Fn(&TilePath) -> Result<Vec<u8>, E>,
    E: std::fmt::Display + std::fmt::Debug,
{
    pub fn new(size: u64, fetch: F) -> Self {
        Self {
            size,
            fetch,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The hashes of one tile, fetched once.
    fn tile(&self, tile: TilePath) -> Result<Vec<Hash>, TileProofError<E>> {
        if let Some(h) = self.cache.borrow().get(&tile) {
            return Ok(h.clone());
        }
        let bytes = (self.fetch)(&tile).map_err(TileProofError::Fetch)?;
        let expected = usize::try_from(tile.count()).unwrap_or(usize::MAX) * 32;
        if bytes.len() != expected {
            return Err(TileProofError::TileSize {
                path: tile.to_path(),
                len: bytes.len(),
                expected,
            });
        }
        let hashes: Vec<Hash> = bytes
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        self.cache.borrow_mut().insert(tile, hashes.clone());
        Ok(hashes)
    }

    /// The root of the complete subtree `(level, n)`; see the module doc.
    pub fn hash_at(&self, level: u8, n: u64) -> Result<Hash, TileProofError<E>> {
        let beyond = || TileProofError::NodeBeyondTree {
            level,
            index: n,
            size: self.size,
        };
        // The subtree must end within the tree: (n + 1) * 2^level <= size.
        let span = 1u64.checked_shl(u32::from(level)).ok_or_else(beyond)?;
        let end = n
            .checked_add(1)
            .and_then(|m| m.checked_mul(span))
            .ok_or_else(beyond)?;
        if end > self.size {
            return Err(beyond());
        }
        let tile_level = level / TILE_HEIGHT;
        let k = level % TILE_HEIGHT;
        // Hashes at tree level 8L that the node covers: [first, first + 2^k).
        let count = 1u64 << k;
        let first = n * count;
        let index = first / TILE_WIDTH;
        let offset = (first % TILE_WIDTH) as usize;
        // Number of level-8L hashes in the tree, and so the tile's width.
        let shift = u32::from(tile_level) * u32::from(TILE_HEIGHT);
        let level_hashes = self.size.checked_shr(shift).unwrap_or(0);
        let width = if index < level_hashes / TILE_WIDTH {
            None
        } else {
            u16::try_from(level_hashes % TILE_WIDTH).ok()
        };
        let hashes = self.tile(TilePath {
            kind: TileKind::Hashes { level: tile_level },
            index,
            width,
        })?;
        let covered = hashes
            .get(offset..offset + count as usize)
            .ok_or_else(beyond)?;
        let mut b = RootBuilder::new();
        covered.iter().for_each(|h| b.push(*h));
        Ok(b.root())
    }

    /// How many distinct tiles were read.
    pub fn tiles_read(&self) -> usize {
        self.cache.borrow().len()
    }
}
