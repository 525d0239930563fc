//! Hash tiles (C2SP tlog-tiles, height 8) on top of the `tiles` table.
//!
//! Tile `(L, N)` holds the Merkle hashes at tree level `8L` with indices
//! `[256N, 256N + W)`, concatenated, 32 bytes each (column `hashes`, exactly
//! what the C2SP tile API serves). Column `mid` holds the roots of its
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
//! bytes (512 for a full tile) matching `hashes`; it is rewritten with
//! `hashes` in the same statement of the batch transaction. A `mid` of any
//! other length is [`StorageError::Corrupt`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rusqlite::{params, Connection, OptionalExtension};

use super::tree::{node_hash, perfect_root, SubtreeSource};
use super::{Hash, StorageError};

/// Hashes per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
/// Tile hashes under one `mid` hash (tree level `8L + MID_LEVEL`).
const MID_GROUP: usize = 16;
/// Tree level of the `mid` hashes above the tile's level.
const MID_LEVEL: u8 = 4;

/// Number of hashes at tile level `level` (tree level 8·level) in a tree of
/// `size` leaves; 0 when the level is above the tree.
pub fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(TILE_HEIGHT * u32::from(level))
        .unwrap_or(0)
}

/// Reads one stored tile's bytes.
pub fn read_tile(
    conn: &Connection,
    level: u8,
    index: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    let index =
        i64::try_from(index).map_err(|_| StorageError::Corrupt("tile index > i64".into()))?;
    let mut stmt = conn.prepare_cached("SELECT hashes FROM tiles WHERE level = ?1 AND idx = ?2")?;
    Ok(stmt
        .query_row(params![level, index], |r| r.get(0))
        .optional()?)
}

/// One tile row as proofs read it: `hashes` and, when stored, `mid`.
struct TileRow {
    hashes: Vec<u8>,
    /// Invariant (checked by [`read_tile_row`]): `32 * (W / 16)` bytes for
    /// `W = hashes.len() / 32`.
    mid: Option<Vec<u8>>,
}

/// Reads one stored tile's `hashes` and `mid` in one query. A `mid` of the
/// wrong length is [`StorageError::Corrupt`]: it is derived data that a
/// correct writer never gets wrong, so a mismatch means the file is damaged
/// and is reported rather than papered over.
fn read_tile_row(
    conn: &Connection,
    level: u8,
    index: u64,
) -> Result<Option<TileRow>, StorageError> {
    let idx = i64::try_from(index).map_err(|_| StorageError::Corrupt("tile index > i64".into()))?;
    let mut stmt =
        conn.prepare_cached("SELECT hashes, mid FROM tiles WHERE level = ?1 AND idx = ?2")?;
    let Some(row) = stmt
        .query_row(params![level, idx], |r| {
            Ok(TileRow {
                hashes: r.get(0)?,
                mid: r.get(1)?,
            })
        })
        .optional()?
    else {
        return Ok(None);
    };
    let want = 32 * (row.hashes.len() / 32 / MID_GROUP);
    match &row.mid {
        Some(mid) if mid.len() != want => Err(StorageError::Corrupt(format!(
            "tile level {level} index {index}: mid is {} bytes, expected {want}",
            mid.len()
        ))),
        _ => Ok(Some(row)),
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
            let below = levels.last().expect("non-empty");
            let up = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        ExpandedTile {
            count: bytes.len() / 32,
            levels,
        }
    }
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

/// [`SubtreeSource`] reading tiles through one connection. It keeps the few
/// level-0 tiles one proof touches, so each is read at most once per proof,
/// and uses the shared [`UpperTileCache`] (if given) for higher levels.
pub struct TileReader<'c> {
    conn: &'c Connection,
    upper: Option<&'c UpperTileCache>,
    cache: Vec<((u8, u64), TileRow)>,
}

impl<'c> TileReader<'c> {
    pub fn new(conn: &'c Connection, upper: Option<&'c UpperTileCache>) -> Self {
        TileReader {
            conn,
            upper,
            cache: Vec::new(),
        }
    }

    fn missing(tile_level: u8, tile: u64) -> StorageError {
        StorageError::Corrupt(format!("missing tile level {tile_level} index {tile}"))
    }

    fn short(tile_level: u8, tile: u64, have: usize, need: usize) -> StorageError {
        StorageError::Corrupt(format!(
            "tile level {tile_level} index {tile} has {have} hashes, need {need}"
        ))
    }
}

impl SubtreeSource for TileReader<'_> {
    fn subtree(&mut self, level: u8, index: u64) -> Result<Hash, StorageError> {
        let tile_level = level / TILE_HEIGHT as u8;
        let r = level % TILE_HEIGHT as u8;
        let first = index << r; // index at tree level 8·tile_level
        let (tile, off, count) = (
            first / TILE_WIDTH,
            (first % TILE_WIDTH) as usize,
            1usize << r,
        );
        if let (Some(upper), true) = (self.upper, tile_level > 0) {
            let key = (tile_level, tile);
            let expanded = match upper.get(key, off + count) {
                Some(t) => t,
                None => {
                    let bytes = read_tile(self.conn, tile_level, tile)?
                        .ok_or_else(|| Self::missing(tile_level, tile))?;
                    let t = Arc::new(ExpandedTile::new(&bytes));
                    upper.put(key, t.clone());
                    t
                }
            };
            if expanded.count < off + count {
                return Err(Self::short(tile_level, tile, expanded.count, off + count));
            }
            return Ok(expanded.levels[r as usize][off >> r]);
        }
        let pos = match self
            .cache
            .iter()
            .position(|(k, _)| *k == (tile_level, tile))
        {
            Some(pos) => pos,
            None => {
                let row = read_tile_row(self.conn, tile_level, tile)?
                    .ok_or_else(|| Self::missing(tile_level, tile))?;
                self.cache.push(((tile_level, tile), row));
                self.cache.len() - 1
            }
        };
        let row = &self.cache[pos].1;
        let (have, end) = (row.hashes.len() / 32, off + count);
        if have < end {
            return Err(Self::short(tile_level, tile, have, end));
        }
        // Subtrees of 16+ hashes start on a group boundary (alignment), and
        // the mid invariant gives have/16 >= end/16 groups.
        let want = match (&row.mid, r >= MID_LEVEL) {
            (Some(mid), true) => mid.get(32 * (off / MID_GROUP)..32 * (end / MID_GROUP)),
            _ => row.hashes.get(32 * off..32 * end),
        };
        let want = want.ok_or_else(|| Self::short(tile_level, tile, have, end))?;
        Ok(perfect_root(want))
    }
}

/// Hashes newly added at one tile level during an append: tree-level-8L
/// hashes with indices `start..start + hashes.len()`.
#[derive(Default)]
pub struct LevelAppend {
    pub start: u64,
    pub hashes: Vec<Hash>,
}

/// Roots of the complete 16-hash groups of a tile's `hashes` (tree level
/// `8L + 4`), concatenated: the `mid` column value for that tile. 15 node
/// hashes per group, 240 for a full tile.
fn mid_hashes(hashes: &[u8]) -> Vec<u8> {
    hashes
        .chunks_exact(32 * MID_GROUP)
        .flat_map(perfect_root)
        .collect()
}

/// Writes the new hashes of one tile level into its tiles: extends the
/// partial tile (if any) and creates the following ones, each with its `mid`
/// hashes recomputed from the whole new `hashes` value in the same statement.
/// Must run inside the batch transaction, so a tile and its `mid` commit (or
/// roll back) together.
pub fn write_level(conn: &Connection, level: u8, add: &LevelAppend) -> Result<(), StorageError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO tiles (level, idx, hashes, mid) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes, mid = excluded.mid",
    )?;
    let mut pos = add.start;
    let mut rest = &add.hashes[..];
    while !rest.is_empty() {
        let tile = pos / TILE_WIDTH;
        let off = (pos % TILE_WIDTH) as usize;
        let take = rest.len().min(TILE_WIDTH as usize - off);
        let mut blob = if off == 0 {
            Vec::with_capacity(32 * take)
        } else {
            let old = read_tile(conn, level, tile)?.unwrap_or_default();
            if old.len() != 32 * off {
                return Err(StorageError::Corrupt(format!(
                    "partial tile level {level} index {tile} has {} bytes, expected {}",
                    old.len(),
                    32 * off
                )));
            }
            old
        };
        blob.reserve(32 * take);
        for h in &rest[..take] {
            blob.extend_from_slice(h);
        }
        let mid = mid_hashes(&blob);
        upsert.execute(params![level, tile as i64, blob, mid])?;
        pos += take as u64;
        rest = &rest[take..];
    }
    Ok(())
}
