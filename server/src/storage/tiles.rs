//! Hash tiles (C2SP tlog-tiles, height 8) on top of the `tiles` table.
//!
//! Tile `(L, N)` holds the Merkle hashes at tree level `8L` with indices
//! `[256N, 256N + W)`, concatenated, 32 bytes each. A perfect subtree at
//! level `k = 8L + r` (r < 8) is the root over `2^r` consecutive hashes of
//! one level-`L` tile, so it costs one tile read plus `2^r - 1` node hashes;
//! levels `8L+1..8L+7` are never stored.
//!
//! Storage invariant, for tree size `n`: for every level `L` with
//! `c = n >> 8L > 0`, tiles `(L, 0..c/256)` are full (8,192 bytes) and, if
//! `c % 256 != 0`, tile `(L, c/256)` holds exactly `c % 256` hashes. No other
//! tiles exist.

use rusqlite::{params, Connection, OptionalExtension};

use super::tree::{perfect_root, SubtreeSource};
use super::{Hash, StorageError};

/// Hashes per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;

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

/// [`SubtreeSource`] reading tiles through one connection. It keeps the few
/// tiles one proof touches, so each is read at most once per proof.
pub struct TileReader<'c> {
    conn: &'c Connection,
    cache: Vec<((u8, u64), Vec<u8>)>,
}

impl<'c> TileReader<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        TileReader {
            conn,
            cache: Vec::new(),
        }
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
        let pos = match self
            .cache
            .iter()
            .position(|(k, _)| *k == (tile_level, tile))
        {
            Some(pos) => pos,
            None => {
                let bytes = read_tile(self.conn, tile_level, tile)?.ok_or_else(|| {
                    StorageError::Corrupt(format!("missing tile level {tile_level} index {tile}"))
                })?;
                self.cache.push(((tile_level, tile), bytes));
                self.cache.len() - 1
            }
        };
        let bytes = &self.cache[pos].1;
        let want = &bytes.get(32 * off..32 * (off + count)).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "tile level {tile_level} index {tile} has {} hashes, need {}",
                bytes.len() / 32,
                off + count
            ))
        })?;
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

/// Writes the new hashes of one tile level into its tiles: extends the
/// partial tile (if any) and creates the following ones. Must run inside the
/// batch transaction.
pub fn write_level(conn: &Connection, level: u8, add: &LevelAppend) -> Result<(), StorageError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO tiles (level, idx, hashes) VALUES (?1, ?2, ?3) \
         ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes",
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
        upsert.execute(params![level, tile as i64, blob])?;
        pos += take as u64;
        rest = &rest[take..];
    }
    Ok(())
}
