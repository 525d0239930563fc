//! Hash tiles (C2SP tlog-tiles, height 8): their layout, reading subtree
//! hashes from them through any [`Backend`], and building their `mid`.
//!
//! Tile `(L, N)` holds the Merkle hashes at tree level `8L` with indices
//! `[256N, 256N + W)`, concatenated, 32 bytes each (`hashes`, exactly
//! what the C2SP tile API serves). `mid` holds the roots of its
//! complete 16-hash groups: the tree-level-`(8L+4)` hashes with indices
//! `[16N, 16N + W/16)`. A perfect subtree at level `k = 8L + r` (r < 8) is
//! the root over `2^r` consecutive `hashes` of one level-`L` tile, or, for
//! r >= 4 when `mid` is stored, over `2^(r-4)` consecutive `mid` hashes: one
//! tile read plus at most 7 node hashes (127 without `mid`). Other levels
//! are never stored.
//!
//! Storage invariant, for tree size `n`: for every level `L` with
//! `c = n >> 8L > 0`, tiles `(L, 0..c/256)` are full (8,192 bytes) and, if
//! `c % 256 != 0`, tile `(L, c/256)` holds exactly `c % 256` hashes. No other
//! tiles exist. Every tile's `mid` is either NULL (written before schema
//! version 3; readers recompute from `hashes`) or exactly `32 * (W / 16)`
//! bytes (512 for a full tile) matching `hashes`; it is written with
//! `hashes` in the same [`Backend::append`]. A `mid` of any other length is
//! [`StorageError::Corrupt`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use attestlog::tlog::merkle::{node_hash, perfect_root, RootBuilder};
use bytes::Bytes;

use super::cache::{CacheKey, ReadCache};
use super::{Backend, Hash, StorageError, StoredTile};

/// Hashes per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
/// Tile hashes under one `mid` hash (tree level `8L + MID_LEVEL`).
pub const MID_GROUP: usize = 16;
/// Tree level of the `mid` hashes above the tile's level.
const MID_LEVEL: u8 = 4;

/// Number of hashes at tile level `level` (tree level 8·level) in a tree of
/// `size` leaves; 0 when the level is above the tree.
pub fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(TILE_HEIGHT * u32::from(level))
        .unwrap_or(0)
}

/// Checks a stored tile's `mid` length. A `mid` of the wrong length is
/// [`StorageError::Corrupt`]: it is derived data that a correct writer never
/// gets wrong, so a mismatch means the store is damaged and is reported
/// rather than papered over.
fn check_mid(level: u8, index: u64, tile: &StoredTile) -> Result<(), StorageError> {
    let want = 32 * (tile.hashes.len() / 32 / MID_GROUP);
    match &tile.mid {
        Some(mid) if mid.len() != want => Err(StorageError::Corrupt(format!(
            "tile level {level} index {index}: mid is {} bytes, expected {want}",
            mid.len()
        ))),
        _ => Ok(()),
    }
}

/// A tile prefix with all its interior nodes: `levels[r]` holds the complete
/// nodes at tree level `8L + r` over the tile's first `count` hashes.
pub struct ExpandedTile {
    count: usize,
    levels: Vec<Vec<Hash>>,
}

impl ExpandedTile {
    fn new(bytes: &[u8]) -> Self {
        let bottom: Vec<Hash> = bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        let mut levels = vec![bottom];
        for _ in 1..TILE_HEIGHT {
            let up = parents(levels.last().expect("non-empty"));
            levels.push(up);
        }
        ExpandedTile {
            count: bytes.len() / 32,
            levels,
        }
    }
}

/// The complete nodes one level above `below`: the hash of each pair (an
/// odd last node has no parent yet).
fn parents(below: &[Hash]) -> Vec<Hash> {
    below
        .chunks_exact(2)
        .map(|p| node_hash(&p[0], &p[1]))
        .collect()
}

/// Most tiles kept by [`UpperTileCache`] (each at most ~16 KiB expanded).
/// 2,048 tiles cover 2^27 entries; past that the cache is simply cleared
/// when full.
const UPPER_CACHE_MAX: usize = 2048;

/// Expanded tiles of tile levels >= 1, shared by all readers. They are only
/// 1/256 of the tree (153 tiles at 10M entries), but every proof touches
/// them, and expanding saves up to 247 node hashes per tile per proof. A
/// cached partial tile is a prefix whose hashes are final (complete
/// subtrees), so it stays valid; it is replaced by a re-read when a wider
/// prefix is needed.
#[derive(Default)]
pub struct UpperTileCache {
    map: RwLock<HashMap<(u8, u64), Arc<ExpandedTile>>>,
}

impl UpperTileCache {
    fn get(&self, key: (u8, u64), need: usize) -> Option<Arc<ExpandedTile>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(&key).filter(|t| t.count >= need).cloned()
    }

    fn put(&self, key: (u8, u64), tile: Arc<ExpandedTile>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= UPPER_CACHE_MAX {
            map.clear();
        }
        map.insert(key, tile);
    }
}

/// Bytes of the hashes of a full tile.
const FULL_HASHES: usize = 32 * TILE_WIDTH as usize;

/// A full tile as [`ReadCache`] keeps it: its 256 hashes, then its `mid`
/// (the 16 roots of its 16-hash groups, tree level `8L + 4`), then its
/// `top`: the 8, 4 and 2 roots at levels `8L + 5`, `+ 6` and `+ 7`, 14 node
/// hashes over `mid`. 9,152 bytes. A proof takes a subtree of the tile at
/// level `8L + r` from at most 8 of its hashes (7 node hashes) for `r < 4`,
/// and as it is for `r >= 4` ([`full_tile_subtree`]). `mid` is the stored one
/// when given (checked for length by the caller, as every stored `mid` is
/// before a proof uses it), else computed (240 node hashes: tiles written
/// before schema 3, and the backends whose tile reads carry no `mid`).
/// Keeping the stored `mid` instead of expanding all interior levels (12,224
/// bytes, 254 node hashes per read) made random proofs at 10M entries
/// cheaper: the expansion was 14% of their CPU time, and 40% more tiles fit.
/// `top` costs 14 node hashes per read and 5% of the space, and saves a
/// proof 11 node hashes per full tile it passes through.
pub(super) fn full_tile_value(hashes: &[u8], mid: Option<&[u8]>) -> Bytes {
    let mut v = Vec::with_capacity(FULL_VALUE);
    v.extend_from_slice(hashes);
    match mid {
        Some(mid) => v.extend_from_slice(mid),
        None => v.extend_from_slice(&mid_hashes(hashes)),
    }
    let mut level: Vec<Hash> = v[FULL_HASHES..]
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or_default())
        .collect();
    while level.len() > 2 {
        level = parents(&level);
        level.iter().for_each(|h| v.extend_from_slice(h));
    }
    Bytes::from(v)
}

/// Bytes of a full tile's `mid`.
const FULL_MID: usize = 32 * (TILE_WIDTH as usize / MID_GROUP);
/// Bytes of a [`full_tile_value`]: hashes, `mid`, and 8 + 4 + 2 `top` hashes.
const FULL_VALUE: usize = FULL_HASHES + FULL_MID + 32 * 14;

/// The 256 hashes of a [`full_tile_value`] (`None` if it is not one).
pub(super) fn full_tile_hashes(value: &Bytes) -> Option<Bytes> {
    (value.len() == FULL_VALUE).then(|| value.slice(..FULL_HASHES))
}

/// The hashes, the `mid` and the `top` of a [`full_tile_value`] (`None` if
/// it is not one).
fn full_tile_parts(value: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    if value.len() != FULL_VALUE {
        return None;
    }
    let (hashes, rest) = value.split_at(FULL_HASHES);
    let (mid, top) = rest.split_at(FULL_MID);
    Some((hashes, mid, top))
}

/// [`tile_subtree`] of a [`full_tile_value`]'s parts: for `r >= 4` one of its
/// `mid` or `top` hashes as it is, below that over its hashes.
fn full_tile_subtree(parts: (&[u8], &[u8], &[u8]), r: u8, off: usize) -> Option<Hash> {
    let (hashes, mid, top) = parts;
    let at = |level: &[u8], i: usize| -> Option<Hash> {
        level.get(32 * i..32 * (i + 1))?.try_into().ok()
    };
    match r {
        0..MID_LEVEL => tile_subtree(hashes, Some(mid), r, off),
        MID_LEVEL => at(mid, off / MID_GROUP),
        // Level 8L + r holds 8 >> (r - 5) hashes, after the levels below it.
        5..8 => {
            let start = 32 * (16 - (16 >> (r - 5)));
            at(&top[start..start + 32 * (8 >> (r - 5))], off >> r)
        }
        _ => None,
    }
}

/// Root of the perfect subtree over the `2^r` (r < 8) hashes of a tile
/// starting at hash `off`, from a stored row or a [`full_tile_value`]'s
/// parts: over `2^(r-4)` hashes of `mid` when `r >= 4` and `mid` is given,
/// else over the hashes themselves. `None` when the tile holds too few.
/// Subtrees of 16+ hashes start on a group boundary (alignment), and the
/// `mid` invariant gives `have/16 >= end/16` groups.
fn tile_subtree(hashes: &[u8], mid: Option<&[u8]>, r: u8, off: usize) -> Option<Hash> {
    let end = off + (1usize << r);
    let want = match (mid, r >= MID_LEVEL) {
        (Some(mid), true) => mid.get(32 * (off / MID_GROUP)..32 * (end / MID_GROUP)),
        _ => hashes.get(32 * off..32 * end),
    };
    want.and_then(perfect_root)
}

/// Whether tile `(level, index)` is full in a tree of `size` leaves (and so
/// the same bytes forever).
pub(super) fn tile_is_full(size: u64, level: u8, index: u64) -> bool {
    hashes_at_level(size, level) / TILE_WIDTH > index
}

/// Reads perfect-subtree hashes from the tiles of one backend, and from the
/// in-memory right edge when given. It keeps the few level-0 tiles one proof
/// touches, so each is read at most once per proof; full ones come from and
/// go to the shared [`ReadCache`] (if given), and higher levels from the
/// shared [`UpperTileCache`] (if given). One reader per proof.
pub struct TileReader<'c, B: ?Sized> {
    backend: &'c B,
    upper: Option<&'c UpperTileCache>,
    read: Option<&'c ReadCache>,
    /// The tree whose compact range answers its own nodes; only for proofs
    /// within `edge.size()` leaves, where those nodes are final.
    edge: Option<&'c RootBuilder>,
    /// The committed tree size the tiles are read at (see [`Backend::tile`]).
    size: u64,
    /// The tiles this reader has used.
    cache: Vec<((u8, u64), Held)>,
}

/// A tile a [`TileReader`] holds: a full one as the read cache keeps it, or
/// a stored row.
enum Held {
    Full(Bytes),
    Stored(StoredTile),
}

impl<'c, B: Backend + ?Sized> TileReader<'c, B> {
    pub fn new(
        backend: &'c B,
        upper: Option<&'c UpperTileCache>,
        edge: Option<&'c RootBuilder>,
        size: u64,
    ) -> Self {
        TileReader {
            backend,
            upper,
            read: None,
            edge,
            size,
            cache: Vec::new(),
        }
    }

    /// Also takes full tiles from `cache` and keeps the full tiles it reads
    /// there. A cache of capacity 0 is not used.
    pub fn with_read_cache(mut self, cache: &'c ReadCache) -> Self {
        self.read = (cache.capacity() > 0).then_some(cache);
        self
    }

    fn missing(tile_level: u8, tile: u64) -> StorageError {
        StorageError::Corrupt(format!("missing tile level {tile_level} index {tile}"))
    }

    fn short(tile_level: u8, tile: u64, have: usize, need: usize) -> StorageError {
        StorageError::Corrupt(format!(
            "tile level {tile_level} index {tile} has {have} hashes, need {need}"
        ))
    }

    /// Root of the perfect subtree at `level` (2^level leaves), `index`.
    pub fn subtree(&mut self, level: u8, index: u64) -> Result<Hash, StorageError> {
        self.find(level, index, true)?
            .ok_or_else(|| StorageError::Corrupt(format!("subtree ({level}, {index}) not read")))
    }

    /// [`Self::subtree`] from memory only (the edge, the caches): `None`
    /// when it needs a tile no cache holds. Never calls the backend, so it
    /// may run on an async thread.
    pub fn cached_subtree(&mut self, level: u8, index: u64) -> Result<Option<Hash>, StorageError> {
        self.find(level, index, false)
    }

    fn find(&mut self, level: u8, index: u64, fetch: bool) -> Result<Option<Hash>, StorageError> {
        if let Some(h) = self.edge.and_then(|e| e.node(level, index)) {
            return Ok(Some(h));
        }
        let tile_level = level / TILE_HEIGHT as u8;
        let r = level % TILE_HEIGHT as u8;
        let first = index
            .checked_shl(u32::from(r))
            .filter(|f| f >> r == index)
            .ok_or_else(|| StorageError::Corrupt(format!("subtree ({level}, {index})")))?;
        let (tile, off, count) = (
            first / TILE_WIDTH,
            (first % TILE_WIDTH) as usize,
            1usize << r,
        );
        if let (Some(upper), true) = (self.upper, tile_level > 0) {
            let key = (tile_level, tile);
            let expanded = match upper.get(key, off + count) {
                Some(t) => t,
                None if !fetch => return Ok(None),
                None => {
                    let bytes = self
                        .backend
                        .tile(tile_level, tile, self.size)?
                        .ok_or_else(|| Self::missing(tile_level, tile))?;
                    let t = Arc::new(ExpandedTile::new(&bytes));
                    upper.put(key, t.clone());
                    t
                }
            };
            if expanded.count < off + count {
                return Err(Self::short(tile_level, tile, expanded.count, off + count));
            }
            return Ok(Some(expanded.levels[r as usize][off >> r]));
        }
        let pos = match self
            .cache
            .iter()
            .position(|(k, _)| *k == (tile_level, tile))
        {
            Some(pos) => pos,
            None => {
                let held = match self.cached_full(tile_level, tile) {
                    Some(value) => Held::Full(value),
                    None if !fetch => return Ok(None),
                    None => self.read_tile(tile_level, tile)?,
                };
                self.cache.push(((tile_level, tile), held));
                self.cache.len() - 1
            }
        };
        let end = off + count;
        let (hashes, mid) = match &self.cache[pos].1 {
            Held::Full(value) => {
                let parts = full_tile_parts(value)
                    .ok_or_else(|| Self::short(tile_level, tile, 256, end))?;
                return full_tile_subtree(parts, r, off)
                    .map(Some)
                    .ok_or_else(|| Self::short(tile_level, tile, 256, end));
            }
            Held::Stored(row) => (&row.hashes[..], row.mid.as_deref()),
        };
        let have = hashes.len() / 32;
        if have < end {
            return Err(Self::short(tile_level, tile, have, end));
        }
        tile_subtree(hashes, mid, r, off)
            .map(Some)
            .ok_or_else(|| Self::short(tile_level, tile, have, end))
    }

    /// A full tile from the read cache, as [`full_tile_value`].
    fn cached_full(&self, level: u8, tile: u64) -> Option<Bytes> {
        let cache = self.read.filter(|_| tile_is_full(self.size, level, tile))?;
        cache
            .get(&CacheKey::Tile { level, index: tile })
            .filter(|v| full_tile_hashes(v).is_some())
    }

    /// Reads a tile from the backend; a full one is kept in the read cache.
    fn read_tile(&self, level: u8, tile: u64) -> Result<Held, StorageError> {
        let row = self
            .backend
            .tile_with_mid(level, tile, self.size)?
            .ok_or_else(|| Self::missing(level, tile))?;
        check_mid(level, tile, &row)?;
        match self.read {
            Some(cache)
                if tile_is_full(self.size, level, tile) && row.hashes.len() == FULL_HASHES =>
            {
                let value = full_tile_value(&row.hashes, row.mid.as_deref());
                cache.insert(CacheKey::Tile { level, index: tile }, value.clone());
                Ok(Held::Full(value))
            }
            _ => Ok(Held::Stored(row)),
        }
    }
}

/// Roots of the complete 16-hash groups of a tile's `hashes` (tree level
/// `8L + 4`), concatenated: the tile's `mid`. 15 node hashes per group, 240
/// for a full tile.
pub fn mid_hashes(hashes: &[u8]) -> Vec<u8> {
    hashes
        .chunks_exact(32 * MID_GROUP)
        .filter_map(perfect_root)
        .flatten()
        .collect()
}

/// Number of items (hashes or entries) a tile or bundle request returns, given
/// `count` items at its level in the current tree; `None` if it does not exist.
pub fn tile_end(count: u64, index: u64, width: Option<u16>) -> Result<Option<usize>, StorageError> {
    let want = match width {
        None => TILE_WIDTH,
        Some(w) if (1..TILE_WIDTH as u16).contains(&w) => u64::from(w),
        Some(w) => return Err(StorageError::BadTileWidth(w)),
    };
    let Some(start) = index.checked_mul(TILE_WIDTH) else {
        return Ok(None);
    };
    Ok((count.saturating_sub(start) >= want).then_some(want as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_tile_value_holds_every_interior_node() {
        let hashes: Vec<u8> = (0..FULL_HASHES).map(|i| (i * 7 % 251) as u8).collect();
        let value = full_tile_value(&hashes, None);
        assert_eq!(value.len(), FULL_VALUE);
        assert_eq!(full_tile_value(&hashes, Some(&mid_hashes(&hashes))), value);
        assert_eq!(full_tile_hashes(&value).unwrap(), hashes);
        assert_eq!(full_tile_parts(&value[..FULL_VALUE - 1]), None);
        let parts = full_tile_parts(&value).unwrap();
        let (h, mid, _) = parts;
        for r in 0..TILE_HEIGHT as u8 {
            let span = 32usize << r;
            for j in 0..(TILE_WIDTH as usize >> r) {
                let want = perfect_root(&hashes[span * j..span * (j + 1)]).unwrap();
                let off = j << r;
                assert_eq!(full_tile_subtree(parts, r, off), Some(want), "r {r} j {j}");
                assert_eq!(
                    tile_subtree(h, Some(mid), r, off),
                    Some(want),
                    "r {r} j {j}"
                );
                assert_eq!(tile_subtree(h, None, r, off), Some(want), "r {r} j {j}");
            }
            assert_eq!(full_tile_subtree(parts, r, TILE_WIDTH as usize), None);
            assert_eq!(tile_subtree(h, Some(mid), r, TILE_WIDTH as usize), None);
        }
        assert_eq!(full_tile_subtree(parts, 8, 0), None);
    }
}
