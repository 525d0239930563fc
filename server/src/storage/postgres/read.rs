//! The reads of the PostgreSQL backend. They run on the shared reader
//! connection outside any explicit transaction: everything below the size
//! [`Log`](crate::storage::Log) has published is immutable (partial tiles
//! only grow), so each single-statement read is consistent on its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use attestlog::tlog::tiles::{encode_entry_bundle, parse_entry_bundle, TileKind};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::append::object_path;
use super::sequence::{self, hash_of};
use super::PostgresBackend;
use crate::storage::tiles::{hashes_at_level, mid_hashes, TILE_WIDTH};
use crate::storage::{Hash, SearchKind, SignedCheckpoint, StorageError, StoredTile, TileWrite};

/// Most tile objects kept in memory (at most 8.7 KiB each with `mid`,
/// ~36 MiB); past that the cache is simply cleared.
const TILE_CACHE_MAX: usize = 4096;

/// Tile objects read from the object store, by path. They never change.
#[derive(Default)]
pub struct TileCache {
    map: RwLock<HashMap<String, Arc<StoredTile>>>,
}

impl TileCache {
    fn get(&self, path: &str) -> Option<Arc<StoredTile>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(path).cloned()
    }

    fn put(&self, path: String, tile: Arc<StoredTile>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TILE_CACHE_MAX {
            map.clear();
        }
        map.insert(path, tile);
    }
}

impl PostgresBackend {
    /// One read on the shared reader connection, as a prepared statement.
    fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StorageError> {
        let c = self.readers.get(&self.connector)?;
        self.connector.block_on(async {
            let statement = c.prepare(sql).await?;
            c.query(&statement, params).await
        })
    }

    pub(super) fn checkpoint_row(
        &self,
        sql: &'static str,
        size: Option<i64>,
    ) -> Result<Option<SignedCheckpoint>, StorageError> {
        let rows = match &size {
            Some(s) => self.query(sql, &[s])?,
            None => self.query(sql, &[])?,
        };
        rows.into_iter()
            .next()
            .map(|r| {
                let size: i64 = r.try_get(0)?;
                Ok(SignedCheckpoint {
                    size: size as u64,
                    root: hash_of(r.try_get(1)?, "checkpoint root")?,
                    note: r.try_get(2)?,
                })
            })
            .transpose()
    }

    pub(super) fn read_entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let Ok(index) = i64::try_from(index) else {
            return Ok(None);
        };
        let rows = self.query("SELECT data FROM entries WHERE idx = $1", &[&index])?;
        Ok(rows.first().map(|r| r.try_get(0)).transpose()?)
    }

    /// Entries `[start, end)` of a tree of `tree_size`, as a bundle: from
    /// the full bundle object, or, for the partial bundle of that size,
    /// from `entries` (the bucket's copy of it may not be flushed yet).
    pub(super) fn read_bundle(
        &self,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<(Vec<u8>, usize), StorageError> {
        let index = start / TILE_WIDTH;
        let count = tree_size.saturating_sub(index * TILE_WIDTH).min(TILE_WIDTH);
        if count == 0 || end <= start {
            return Ok((Vec::new(), 0));
        }
        let end = end.min(index * TILE_WIDTH + count);
        if count < TILE_WIDTH {
            let c = self.readers.get(&self.connector)?;
            let rows = self.connector.block_on(sequence::entries(&c, start, end))?;
            let picked: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
            let out = encode_entry_bundle(&picked)
                .map_err(|e| StorageError::Corrupt(format!("entries [{start}, {end}): {e}")))?;
            return Ok((out, picked.len()));
        }
        let path = object_path(TileKind::Entries, index, count);
        let Some(bytes) = self.objects.get(&path)? else {
            return Ok((Vec::new(), 0));
        };
        let all = parse_entry_bundle(&bytes)
            .map_err(|e| StorageError::Corrupt(format!("object {path}: {e}")))?;
        let lo = (start - index * TILE_WIDTH) as usize;
        let hi = ((end - index * TILE_WIDTH) as usize).min(all.len());
        let picked = all.get(lo..hi).unwrap_or_default();
        let out = encode_entry_bundle(picked)
            .map_err(|e| StorageError::Corrupt(format!("object {path}: {e}")))?;
        Ok((out, picked.len()))
    }

    /// Puts tiles the integrator computed and wrote in the cache under
    /// their object paths.
    pub(super) fn cache_tiles(&self, tiles: &[TileWrite]) {
        for t in tiles {
            let count = (t.hashes.len() / 32) as u64;
            let path = object_path(TileKind::Hashes { level: t.level }, t.index, count);
            let tile = StoredTile {
                hashes: t.hashes.clone(),
                mid: Some(t.mid.clone()),
            };
            self.tile_cache.put(path, Arc::new(tile));
        }
    }

    /// Caches the `hot_tiles` rows read with the checkpoint of `size`
    /// under the paths of their widths at that size (rows of another width
    /// are skipped: the reads check them).
    pub(super) fn cache_hot_rows(&self, size: u64, rows: Vec<super::flush::HotRow>) {
        for (level, index, hashes, mid) in rows {
            let count = hashes_at_level(size, level);
            let width = count % TILE_WIDTH;
            if width == 0 || index != count / TILE_WIDTH || hashes.len() as u64 != 32 * width {
                continue;
            }
            let path = object_path(TileKind::Hashes { level }, index, width);
            let tile = StoredTile {
                hashes,
                mid: Some(mid),
            };
            self.tile_cache.put(path, Arc::new(tile));
        }
    }

    /// Tile `(level, index)` of a tree of `tree_size`, with its `mid`, at
    /// least as wide as that tree has it. A full tile is an object, read
    /// through the in-memory cache. A partial one is, in order: the
    /// `hot_tiles` row while it is the head's partial tile (it may have
    /// grown since: wider is allowed); the full object once the tile is
    /// complete (its row is deleted in the transaction that completes it,
    /// after the object was written); the object at that width (flushed,
    /// or written by a schema-2 integrator).
    pub(super) fn read_tile(
        &self,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<Arc<StoredTile>>, StorageError> {
        let count = hashes_at_level(tree_size, level)
            .saturating_sub(index.saturating_mul(TILE_WIDTH))
            .min(TILE_WIDTH);
        if count == 0 {
            return Ok(None);
        }
        if count < TILE_WIDTH {
            let path = object_path(TileKind::Hashes { level }, index, count);
            if let Some(t) = self.tile_cache.get(&path) {
                return Ok(Some(t));
            }
            if let Some(t) = self.hot_tile(level, index, count)? {
                // Under the path of this width: its first `count` hashes
                // never change, and wider is allowed.
                let t = Arc::new(t);
                self.tile_cache.put(path, Arc::clone(&t));
                return Ok(Some(t));
            }
            if let Some(t) = self.tile_object(level, index, TILE_WIDTH)? {
                return Ok(Some(t));
            }
        }
        self.tile_object(level, index, count)
    }

    /// The `hot_tiles` row of `(level, index)` if it holds `count` hashes
    /// or more.
    fn hot_tile(
        &self,
        level: u8,
        index: u64,
        count: u64,
    ) -> Result<Option<StoredTile>, StorageError> {
        let (lvl, idx) = (i16::from(level), i64::try_from(index).unwrap_or(i64::MAX));
        let rows = self.query(
            "SELECT hashes, mid FROM hot_tiles WHERE level = $1 AND idx = $2",
            &[&lvl, &idx],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let hashes: Vec<u8> = r.try_get(0)?;
        if (hashes.len() as u64) < 32 * count {
            return Ok(None);
        }
        Ok(Some(StoredTile {
            hashes,
            mid: Some(r.try_get(1)?),
        }))
    }

    /// The tile object of `count` hashes, through the cache.
    fn tile_object(
        &self,
        level: u8,
        index: u64,
        count: u64,
    ) -> Result<Option<Arc<StoredTile>>, StorageError> {
        let path = object_path(TileKind::Hashes { level }, index, count);
        if let Some(t) = self.tile_cache.get(&path) {
            return Ok(Some(t));
        }
        let Some(hashes) = self.objects.get(&path)? else {
            return Ok(None);
        };
        if hashes.len() as u64 != 32 * count {
            return Err(StorageError::Corrupt(format!(
                "object {path} is {} bytes, expected {}",
                hashes.len(),
                32 * count
            )));
        }
        let tile = Arc::new(StoredTile {
            mid: Some(mid_hashes(&hashes)),
            hashes,
        });
        self.tile_cache.put(path, Arc::clone(&tile));
        Ok(Some(tile))
    }

    /// Runs a `SELECT key, idx` lookup (`sequence::FIND_*`) for all `keys` in
    /// one round trip and answers in the order of `keys`.
    pub(super) fn lookup(
        &self,
        sql: &'static str,
        keys: &[Hash],
    ) -> Result<Vec<Option<u64>>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let arg: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let mut found = HashMap::new();
        for r in self.query(sql, &[&arg])? {
            let key: Vec<u8> = r.try_get(0)?;
            let idx: i64 = r.try_get(1)?;
            found.insert(hash_of(&key, "dedup key")?, idx as u64);
        }
        Ok(keys.iter().map(|k| found.get(k).copied()).collect())
    }

    pub(super) fn read_search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let (after, limit) = crate::storage::backend::search_bounds(after, limit);
        let kind = kind.code() as i16;
        let rows = self.query(
            "SELECT idx FROM search WHERE kind = $1 AND key = $2 AND idx > $3 \
             ORDER BY idx LIMIT $4",
            &[&kind, &key, &after, &limit],
        )?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, i64>(0)? as u64))
            .collect()
    }

    pub(super) fn read_latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        let rows = self.query(
            "SELECT size, note FROM cosigned ORDER BY size DESC LIMIT 1",
            &[],
        )?;
        rows.first()
            .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
            .transpose()
    }
}
