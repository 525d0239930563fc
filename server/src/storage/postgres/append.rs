//! The integrator's commit on PostgreSQL + object store:
//! [`PostgresBackend::publish`], what [`Backend::append`] does in cluster
//! mode. The batch's entries are already sequenced (durable in `entries`);
//! what is new is the tree that covers them.
//!
//! # Write order, and what a SIGKILL at each step leaves
//! 1. Tiles and entry bundles of the new size, create-only, to the object
//!    store. Killed here: some objects exist for a size no checkpoint
//!    names. They are a deterministic function of the dense sequence, so
//!    the next integrator writes the very same bytes (create-only accepts
//!    identical bytes) and nothing refers to them meanwhile.
//! 2. One transaction: lock the `lease` row `FOR SHARE` where holder and
//!    epoch are ours (0 rows: the lease moved on → `lease_lost`, nothing
//!    written); `UPDATE log_head` compare-and-swap from `batch.previous`
//!    (0 rows → `checkpoint_conflict`); `INSERT` the checkpoint; `NOTIFY
//!    attestlog_integrated`; COMMIT. Killed before COMMIT: the head did not
//!    move, the next integrator redoes step 1 (same bytes) and 2.
//! 3. Queue the bucket's `checkpoint` object for the publisher thread
//!    (`recent.rs`: conditional, only ever larger, retried). Killed before
//!    it is written: PostgreSQL already serves the new head; the object
//!    catches up at the next integration, or when a process takes the
//!    lease (it queues the head's checkpoint).
//!
//! Every checkpoint handed out is read from PostgreSQL after step 2, and
//! every object it needs was written in step 1: a crash never leaves a
//! published checkpoint without its tiles. The `FOR SHARE` lock makes a
//! concurrent lease takeover wait for this transaction (and vice versa), so
//! an integrator whose epoch is gone can never move the head; and the CAS
//! on the head alone already forbids two heads of the same size.

use attestlog::tlog::tiles::{encode_entry_bundle, TileKind, TilePath};

use super::lease::INTEGRATED_CHANNEL;
use super::sequence::i64_of;
use super::PostgresBackend;
use crate::storage::tiles::TILE_WIDTH;
use crate::storage::{Cluster, SequencedBatch, StorageError};

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
        self.objects.put_immutable(objects)?;
        // Written and immutable: proofs at the new size need not GET them.
        self.cache_tiles(&batch.tiles);

        let cp = batch.checkpoint;
        let new_size = i64_of(cp.size, "size")?;
        let prev_size = batch.previous.map(|p| i64_of(p.size, "size")).transpose()?;
        let prev_root = batch.previous.map(|p| &p.root[..]);
        let holder = self.lease.holder.clone();
        self.with_writer(|client| {
            self.connector.block_on(async {
                let tx = client.transaction().await?;
                let fenced = tx
                    .query_opt(
                        "SELECT epoch FROM lease WHERE holder = $1 AND epoch = $2 FOR SHARE",
                        &[&holder, &epoch],
                    )
                    .await?;
                if fenced.is_none() {
                    return Err(StorageError::LeaseLost { epoch });
                }
                let moved = tx
                    .execute(
                        "UPDATE log_head SET size = $1, root = $2 \
                         WHERE size IS NOT DISTINCT FROM $3 AND root IS NOT DISTINCT FROM $4",
                        &[&new_size, &&cp.root[..], &prev_size, &prev_root],
                    )
                    .await?;
                if moved != 1 {
                    let found: Option<i64> =
                        tx.query_one("SELECT size FROM log_head", &[]).await?.get(0);
                    return Err(StorageError::CheckpointConflict {
                        expected: batch.previous.map(|p| p.size),
                        found: found.map(|s| s as u64),
                    });
                }
                tx.execute(
                    "INSERT INTO checkpoints (size, root, note) VALUES ($1, $2, $3)",
                    &[&new_size, &&cp.root[..], &cp.note],
                )
                .await?;
                tx.batch_execute(&format!("NOTIFY {INTEGRATED_CHANNEL}"))
                    .await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .inspect_err(|e| {
            if matches!(e, StorageError::LeaseLost { .. }) {
                self.lease.forget();
            }
        })?;
        self.recent.integrated(cp.size);
        if let Some(p) = &self.publisher {
            p.publish(cp.size, &cp.note);
        }
        Ok(())
    }

    /// The tiles and bundles `batch` creates, as `(path, bytes)`.
    fn objects_of(
        &self,
        batch: &SequencedBatch<'_>,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut out: Vec<(String, Vec<u8>)> = batch
            .tiles
            .iter()
            .map(|t| {
                let count = (t.hashes.len() / 32) as u64;
                let path = object_path(TileKind::Hashes { level: t.level }, t.index, count);
                (path, t.hashes.clone())
            })
            .collect();
        let (Some(first), Some(last)) = (batch.entries.first(), batch.entries.last()) else {
            return Ok(out);
        };
        let (from, to) = (first.index, last.index + 1);
        // The partial bundle the batch extends starts before it.
        let start = from / TILE_WIDTH * TILE_WIDTH;
        let earlier = self.sequenced_entries(start, from)?;
        let all: Vec<&[u8]> = earlier
            .iter()
            .map(Vec::as_slice)
            .chain(batch.entries.iter().map(|e| e.bytes))
            .collect();
        for (n, chunk) in all.chunks(TILE_WIDTH as usize).enumerate() {
            let index = start / TILE_WIDTH + n as u64;
            let bytes = encode_entry_bundle(chunk)
                .map_err(|e| StorageError::Corrupt(format!("bundle {index}: {e}")))?;
            out.push((
                object_path(TileKind::Entries, index, chunk.len() as u64),
                bytes,
            ));
        }
        debug_assert_eq!(start + all.len() as u64, to);
        Ok(out)
    }
}
