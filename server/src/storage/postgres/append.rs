//! The integrator's commit on PostgreSQL + object store:
//! [`PostgresBackend::publish`], what [`Backend::append`] does in cluster
//! mode. The batch's entries are already sequenced (durable in `entries`);
//! what is new is the tree that covers them.
//!
//! # Write order, and what a SIGKILL at each step leaves
//! 1. The tiles and entry bundles the batch COMPLETES (256 wide), create-
//!    only, to the object store. Killed here: some objects exist for a size
//!    no checkpoint names. They are a deterministic function of the dense
//!    sequence, so the next integrator writes the very same bytes
//!    (create-only accepts identical bytes) and nothing refers to them
//!    meanwhile.
//! 2. One transaction, its statements pipelined: lock the `lease` row
//!    `FOR SHARE` where holder and epoch are ours (0 rows: the lease moved
//!    on → `lease_lost`, rolled back); `UPDATE log_head` compare-and-swap
//!    from `batch.previous` (0 rows → `checkpoint_conflict`, rolled back);
//!    `INSERT` the checkpoint; upsert the batch's partial tiles into
//!    `hot_tiles` and delete the rows of the tiles it completed (the hot
//!    edge: exactly the partial tiles of the new head); `NOTIFY
//!    attestlog_integrated`; COMMIT. Killed before COMMIT: nothing moved,
//!    the next integrator redoes step 1 (same bytes) and 2.
//! 3. Nothing else: the bucket's partial tiles, partial bundle and
//!    `checkpoint` follow within [`FLUSH_EVERY`](super::flush::FLUSH_EVERY)
//!    (`flush.rs`), so a busy log writes O(1/256) objects per entry.
//!
//! Every checkpoint handed out is read from PostgreSQL after step 2, and
//! every tile it needs is either a full object written in step 1 or a
//! `hot_tiles` row committed with it: a crash never leaves a published
//! checkpoint without its tiles. The `FOR SHARE` lock makes a concurrent
//! lease takeover wait for this transaction (and vice versa), so an
//! integrator whose epoch is gone can never move the head; and the CAS on
//! the head alone already forbids two heads of the same size.

use attestlog::tlog::tiles::{encode_entry_bundle, TileKind, TilePath};

use tokio_postgres::types::ToSql;

use super::lease::INTEGRATED_CHANNEL;
use super::sequence::i64_of;
use super::PostgresBackend;
use crate::storage::tiles::TILE_WIDTH;
use crate::storage::{Cluster, SequencedBatch, StorageError, TileWrite};

/// The statements of the head transaction (prepared once per connection).
const FENCE: &str = "SELECT epoch FROM lease WHERE holder = $1 AND epoch = $2 FOR SHARE";
const MOVE_HEAD: &str = "UPDATE log_head SET size = $1, root = $2 \
     WHERE size IS NOT DISTINCT FROM $3 AND root IS NOT DISTINCT FROM $4";
/// A stale integrator's size may exist: its head UPDATE matched nothing and
/// the answer is `checkpoint_conflict`, not a unique violation.
const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (size, root, note) VALUES ($1, $2, $3) \
     ON CONFLICT (size) DO NOTHING";
const UPSERT_HOT: &str = "INSERT INTO hot_tiles (level, idx, hashes, mid) \
     SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[], $4::bytea[]) \
     ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes, mid = excluded.mid";
const DELETE_HOT: &str = "DELETE FROM hot_tiles WHERE (level, idx) IN \
     (SELECT * FROM UNNEST($1::smallint[], $2::bigint[]))";

/// The object path of a tile or bundle holding `count` items (1..=256).
pub fn object_path(kind: TileKind, index: u64, count: u64) -> String {
    TilePath {
        kind,
        index,
        width: (count < TILE_WIDTH).then_some(count as u16),
    }
    .to_path()
}

impl PostgresBackend {
    /// See the module documentation.
    pub(super) fn publish(&self, batch: &SequencedBatch<'_>) -> Result<(), StorageError> {
        let epoch = self
            .lease
            .epoch()
            .ok_or(StorageError::LeaseLost { epoch: -1 })?;
        let objects = self.objects_of(batch)?;
        if !objects.is_empty() {
            self.objects.put_immutable(objects)?;
        }
        // Written and immutable: proofs at the new size need not read them.
        self.cache_tiles(&batch.tiles);

        let cp = batch.checkpoint;
        let new_size = i64_of(cp.size, "size")?;
        let prev_size = batch.previous.map(|p| i64_of(p.size, "size")).transpose()?;
        let prev_root = batch.previous.map(|p| &p.root[..]);
        let hot = HotRows::of(&batch.tiles)?;
        let holder = self.lease.holder.clone();
        self.with_writer(|client| {
            self.connector.block_on(async {
                let root = &cp.root[..];
                let fence: [&(dyn ToSql + Sync); 2] = [&holder, &epoch];
                let head: [&(dyn ToSql + Sync); 4] = [&new_size, &root, &prev_size, &prev_root];
                let checkpoint: [&(dyn ToSql + Sync); 3] = [&new_size, &root, &cp.note];
                let upsert: [&(dyn ToSql + Sync); 4] =
                    [&hot.level, &hot.idx, &hot.hashes, &hot.mid];
                let delete: [&(dyn ToSql + Sync); 2] = [&hot.full_level, &hot.full_idx];
                let (q_fence, q_head, q_checkpoint, q_upsert, q_delete) = tokio::try_join!(
                    client.prepare(FENCE),
                    client.prepare(MOVE_HEAD),
                    client.prepare(INSERT_CHECKPOINT),
                    client.prepare(UPSERT_HOT),
                    client.prepare(DELETE_HOT),
                )?;
                // Two pipelines. First `BEGIN` and every statement
                // (tokio-postgres sends requests in the order their futures
                // are first polled, which `join!` does in order), every
                // answer awaited so that the error reported is the first in
                // statement order (see `sequence.rs`); after an error the
                // connection is dropped (`with_writer`) and PostgreSQL rolls
                // back. Then NOTIFY and COMMIT, or a rollback when the
                // answers say the lease or the head moved on.
                let (begin, fenced, moved, inserted, upserted, deleted) = tokio::join!(
                    client.batch_execute("BEGIN"),
                    client.query_opt(&q_fence, &fence),
                    client.execute(&q_head, &head),
                    client.execute(&q_checkpoint, &checkpoint),
                    client.execute(&q_upsert, &upsert),
                    client.execute(&q_delete, &delete),
                );
                begin?;
                let (fenced, moved, inserted) = (fenced?, moved?, inserted?);
                upserted?;
                deleted?;
                let refused = if fenced.is_none() {
                    Some(StorageError::LeaseLost { epoch })
                } else if moved != 1 {
                    let found: Option<i64> = client
                        .query_one("SELECT size FROM log_head", &[])
                        .await?
                        .get(0);
                    Some(StorageError::CheckpointConflict {
                        expected: batch.previous.map(|p| p.size),
                        found: found.map(|s| s as u64),
                    })
                } else if inserted != 1 {
                    Some(StorageError::Corrupt(format!(
                        "a checkpoint of size {new_size} was stored before the head reached it"
                    )))
                } else {
                    None
                };
                if let Some(e) = refused {
                    client.rollback().await?;
                    return Err(e);
                }
                client
                    .commit_with(INTEGRATED_CHANNEL, cp.size, std::future::ready(Ok(())))
                    .await?;
                Ok(())
            })
        })
        .inspect_err(|e| {
            if matches!(e, StorageError::LeaseLost { .. }) {
                self.lease.forget();
            }
        })?;
        self.recent.integrated(cp.size);
        Ok(())
    }

    /// The full tiles and full bundles `batch` completes, as
    /// `(path, bytes)`; its partial tiles go to `hot_tiles` instead.
    fn objects_of(
        &self,
        batch: &SequencedBatch<'_>,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut out: Vec<(String, Vec<u8>)> = batch
            .tiles
            .iter()
            .filter(|t| is_full(t))
            .map(|t| {
                let path = object_path(TileKind::Hashes { level: t.level }, t.index, TILE_WIDTH);
                (path, t.hashes.clone())
            })
            .collect();
        let (Some(first), Some(last)) = (batch.entries.first(), batch.entries.last()) else {
            return Ok(out);
        };
        let (from, to) = (first.index, last.index + 1);
        // The first bundle the batch touches starts before it; only bundles
        // that end inside the batch are written.
        let start = from / TILE_WIDTH * TILE_WIDTH;
        let full_end = to / TILE_WIDTH * TILE_WIDTH;
        if full_end <= start {
            return Ok(out);
        }
        let earlier = self.sequenced_entries(start, from)?;
        let all: Vec<&[u8]> = earlier
            .iter()
            .map(Vec::as_slice)
            .chain(batch.entries.iter().map(|e| e.bytes))
            .take((full_end - start) as usize)
            .collect();
        for (n, chunk) in all.chunks(TILE_WIDTH as usize).enumerate() {
            let index = start / TILE_WIDTH + n as u64;
            let bytes = encode_entry_bundle(chunk)
                .map_err(|e| StorageError::Corrupt(format!("bundle {index}: {e}")))?;
            out.push((object_path(TileKind::Entries, index, TILE_WIDTH), bytes));
        }
        Ok(out)
    }
}

/// The `hot_tiles` changes of one batch, as PostgreSQL arrays: the partial
/// tiles to upsert and the completed tiles whose rows go.
#[derive(Default)]
struct HotRows<'a> {
    level: Vec<i16>,
    idx: Vec<i64>,
    hashes: Vec<&'a [u8]>,
    mid: Vec<&'a [u8]>,
    full_level: Vec<i16>,
    full_idx: Vec<i64>,
}

impl<'a> HotRows<'a> {
    fn of(tiles: &'a [TileWrite]) -> Result<Self, StorageError> {
        let mut rows = HotRows::default();
        for t in tiles {
            let idx = i64_of(t.index, "tile index")?;
            if is_full(t) {
                rows.full_level.push(i16::from(t.level));
                rows.full_idx.push(idx);
            } else {
                rows.level.push(i16::from(t.level));
                rows.idx.push(idx);
                rows.hashes.push(&t.hashes);
                rows.mid.push(&t.mid);
            }
        }
        Ok(rows)
    }
}

/// A tile of 256 hashes: immutable, an object of its own.
pub fn is_full(t: &TileWrite) -> bool {
    t.hashes.len() as u64 == 32 * TILE_WIDTH
}
