//! The bucket's copy of the hot edge: [`PostgresBackend::flush_bucket`].
//!
//! An integration writes only the tiles and bundles it completes to the
//! object store; the head's partial tiles live in PostgreSQL (`hot_tiles`,
//! committed with the head) and its partial bundle in `entries`. So that
//! the bucket alone stays a complete C2SP tlog-tiles log, the lease holder
//! copies them there at most once per [`FLUSH_EVERY`] (and at once when it
//! takes the lease, stops, or finishes a migration):
//!
//! 1. ONE statement reads the head's checkpoint and every `hot_tiles` row,
//!    so the rows are exactly the partial tiles of that head (both change
//!    in the same transaction). A row whose width does not match the head
//!    is [`StorageError::Corrupt`]. A level whose partial tile has no row
//!    was written as an object by a schema-2 integrator and is there.
//! 2. The partial tiles and the partial bundle (entries
//!    `[size - size % 256, size)`), create-only at their width paths.
//! 3. Then the `checkpoint` object (`Objects::publish_checkpoint`: only
//!    ever larger). A bucket reader that sees a checkpoint therefore finds
//!    every tile and bundle it needs; the bucket lags PostgreSQL by at most
//!    about [`FLUSH_EVERY`] while an integrator runs.
//!
//! 4. Then the partial objects under tiles and bundles that are full by now
//!    are deleted ([`Objects::delete_partials`]; C2SP tlog-tiles allows it
//!    once the full object exists, which the integration wrote before the
//!    head named it): those of every partial this process flushed before,
//!    and on its first flush those of the newest full tile of each level
//!    and the newest full bundle (a previous lease holder's last ones).
//!    Without this, a log growing by one entry per flush would keep 255
//!    partial bundles of 1..255 entries beside each full one.
//!
//! A flush is idempotent (same bytes at the same paths) and may be run by
//! any process; a failure is reported and retried at the next call (a
//! failed delete leaves garbage for the next flush to retry, never a
//! missing object).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use attestlog::tlog::tiles::{encode_entry_bundle, TileKind};

use super::append::object_path;
use super::sequence::hash_of;
use super::PostgresBackend;
use crate::storage::tiles::{hashes_at_level, tile_is_full, TILE_WIDTH};
use crate::storage::{Cluster, SignedCheckpoint, StorageError};

/// A `hot_tiles` row: level, index, hashes, mid.
pub(super) type HotRow = (u8, u64, Vec<u8>, Vec<u8>);

/// What [`PostgresBackend::hot_edge`] reads in one statement.
pub(super) struct HotEdge {
    pub head: SignedCheckpoint,
    pub tiles: Vec<HotRow>,
    /// The latest cosigned checkpoint `(size, note)`.
    pub cosigned: Option<(u64, String)>,
}

/// How often at most the bucket's partial tiles, partial bundle and
/// checkpoint are rewritten while the log grows.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Most tiles and bundles whose partial objects wait to be deleted.
const MAX_PENDING_PARTIALS: usize = 64;

/// What the flushes of this process wrote.
#[derive(Default)]
pub struct Flusher {
    /// Held for a whole flush, so two never interleave.
    state: Mutex<FlushState>,
}

#[derive(Default)]
struct FlushState {
    /// The size and time of the last flush.
    last: Option<(u64, Instant)>,
    /// Tiles and bundles whose partial objects were written and not yet
    /// deleted (deleted once the tile is full).
    partials: Vec<(TileKind, u64)>,
    /// Whether the first flush's sweep ran.
    swept: bool,
}

impl Flusher {
    /// The next flush runs whatever the time (a new lease holder's first).
    pub fn reset(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).last = None;
    }
}

/// Whether tile or bundle `(kind, index)` is full in a tree of `size` (a
/// bundle is full when the level-0 tile of the same index is).
fn is_full(kind: TileKind, index: u64, size: u64) -> bool {
    let level = match kind {
        TileKind::Hashes { level } => level,
        TileKind::Entries => 0,
    };
    tile_is_full(size, level, index)
}

impl PostgresBackend {
    /// Copies the head's partial tiles, partial bundle and checkpoint to
    /// the bucket (see the module documentation) unless the last flush was
    /// less than [`FLUSH_EVERY`] ago and `force` is false. Returns the size
    /// the bucket's checkpoint now has, `None` for a log without one or a
    /// flush not due.
    pub fn flush_bucket(&self, force: bool) -> Result<Option<u64>, StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        let mut st = self.flusher.state.lock().unwrap_or_else(|e| e.into_inner());
        if !force && st.last.is_some_and(|(_, at)| at.elapsed() < FLUSH_EVERY) {
            return Ok(None);
        }
        let Some(HotEdge { head, tiles, .. }) = self.hot_edge()? else {
            return Ok(None);
        };
        if st.last.is_some_and(|(size, _)| size == head.size) {
            st.last = Some((head.size, Instant::now()));
            return Ok(Some(head.size));
        }
        let mut written: Vec<(TileKind, u64)> = Vec::new();
        let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
        for (level, index, hashes, _) in tiles {
            let count = hashes_at_level(head.size, level);
            let width = count % TILE_WIDTH;
            if width == 0 || index != count / TILE_WIDTH || hashes.len() as u64 != 32 * width {
                return Err(StorageError::Corrupt(format!(
                    "hot tile level {level} index {index} holds {} bytes, not the partial tile of size {}",
                    hashes.len(),
                    head.size
                )));
            }
            objects.push((
                object_path(TileKind::Hashes { level }, index, width),
                hashes,
            ));
            written.push((TileKind::Hashes { level }, index));
        }
        let width = head.size % TILE_WIDTH;
        if width != 0 {
            let start = head.size - width;
            let entries = self.sequenced_entries(start, head.size)?;
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            let bundle = encode_entry_bundle(&refs)
                .map_err(|e| StorageError::Corrupt(format!("bundle at {start}: {e}")))?;
            objects.push((
                object_path(TileKind::Entries, start / TILE_WIDTH, width),
                bundle,
            ));
            written.push((TileKind::Entries, start / TILE_WIDTH));
        }
        if !objects.is_empty() {
            self.objects.put_immutable(objects)?;
        }
        self.objects.publish_checkpoint(head.size, &head.note)?;
        st.last = Some((head.size, Instant::now()));
        self.collect_partials(&mut st, head.size, written);
        Ok(Some(head.size))
    }

    /// Step 4 of the module documentation: deletes the partial objects of
    /// the tiles and bundles full at `size`, keeps the rest (and `written`)
    /// for a later flush. A failure is logged and retried then.
    fn collect_partials(&self, st: &mut FlushState, size: u64, written: Vec<(TileKind, u64)>) {
        let mut pending = std::mem::take(&mut st.partials);
        if !st.swept {
            st.swept = true;
            for level in 0u8.. {
                let full = hashes_at_level(size, level) / TILE_WIDTH;
                if full == 0 {
                    break;
                }
                pending.push((TileKind::Hashes { level }, full - 1));
            }
            if size >= TILE_WIDTH {
                pending.push((TileKind::Entries, size / TILE_WIDTH - 1));
            }
        }
        let mut keep = Vec::new();
        for (kind, index) in pending {
            if !is_full(kind, index, size) {
                keep.push((kind, index));
                continue;
            }
            match self
                .objects
                .delete_partials(&object_path(kind, index, TILE_WIDTH))
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(?kind, index, n, "deleted partial objects"),
                Err(e) => {
                    tracing::warn!(?kind, index, error = %e, "deleting partial objects failed; retried at the next flush");
                    keep.push((kind, index));
                }
            }
        }
        for w in written {
            if !keep.contains(&w) {
                keep.push(w);
            }
        }
        // A store that keeps refusing deletes (no delete permission) must
        // not grow this list forever: the oldest are given up (left as
        // garbage).
        let over = keep.len().saturating_sub(MAX_PENDING_PARTIALS);
        keep.drain(..over);
        st.partials = keep;
    }

    /// The published head, every `hot_tiles` row and the latest cosigned
    /// checkpoint, read in one statement (one snapshot).
    pub(super) fn hot_edge(&self) -> Result<Option<HotEdge>, StorageError> {
        let c = self.readers.get(&self.connector)?;
        let rows = self.connector.block_on(async {
            let statement = c
                .prepare(
                    "SELECT c.size, c.root, c.note, t.level, t.idx, t.hashes, t.mid, w.size, w.note \
             FROM checkpoints c LEFT JOIN hot_tiles t ON true \
             LEFT JOIN (SELECT size, note FROM cosigned ORDER BY size DESC LIMIT 1) w ON true \
             WHERE c.size = (SELECT size FROM log_head) ORDER BY t.level",
                )
                .await?;
            c.query(&statement, &[]).await
        })?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let head = SignedCheckpoint {
            size: first.try_get::<_, i64>(0)? as u64,
            root: hash_of(first.try_get(1)?, "checkpoint root")?,
            note: first.try_get(2)?,
        };
        let cosigned = match first.try_get::<_, Option<i64>>(7)? {
            Some(size) => Some((size as u64, first.try_get::<_, String>(8)?)),
            None => None,
        };
        let mut tiles = Vec::new();
        for r in &rows {
            let (Some(level), Some(index), Some(hashes), Some(mid)) = (
                r.try_get::<_, Option<i16>>(3)?,
                r.try_get::<_, Option<i64>>(4)?,
                r.try_get::<_, Option<Vec<u8>>>(5)?,
                r.try_get::<_, Option<Vec<u8>>>(6)?,
            ) else {
                continue;
            };
            let level = u8::try_from(level)
                .map_err(|_| StorageError::Corrupt(format!("hot tile level {level}")))?;
            tiles.push((level, index as u64, hashes, mid));
        }
        Ok(Some(HotEdge {
            head,
            tiles,
            cosigned,
        }))
    }
}
