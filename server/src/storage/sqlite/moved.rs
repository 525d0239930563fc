//! The mark `attestlog-server migrate` leaves in a log it moved (schema
//! version 5, `migrations/0005_moved.sql`).
//!
//! # Contract
//! - [`SqliteBackend::mark_moved`] is written only after the moved log was
//!   proved consistent with this one, in one transaction that first checks
//!   that this log's latest checkpoint is still the one that was moved.
//! - [`LogStore::open`](crate::storage::LogStore::open), which every
//!   server start goes through, refuses a marked log with
//!   [`StorageError::LogMoved`]: the moved log carries on under the same
//!   origin and key, so a second writer here would fork it. Tools that only
//!   read (and `migrate` itself, to finish or undo) open the backend
//!   directly.
//! - [`SqliteBackend::unmark_moved`] removes the mark; `migrate --undo`
//!   calls it only after checking that the moved log signed nothing new.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{checkpoint_row, hash_of, to_i64, SqliteBackend, LATEST_CHECKPOINT};
use crate::storage::{Hash, SignedCheckpoint, StorageError};

/// Where and when a log was moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedMark {
    /// The destination, without any password.
    pub destination: String,
    /// The size and root this log had when it was moved.
    pub size: u64,
    pub root: Hash,
    /// UTC, RFC 3339.
    pub moved_at: String,
}

impl SqliteBackend {
    /// Marks this log as moved to `destination` at `moved` (its latest
    /// checkpoint, checked in the same transaction). Marking again with the
    /// same checkpoint keeps the first mark.
    pub fn mark_moved(
        &self,
        destination: &str,
        moved: &SignedCheckpoint,
    ) -> Result<(), StorageError> {
        let mut writer = self.writer();
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let latest = checkpoint_row(&tx, LATEST_CHECKPOINT, [])?;
        if latest.as_ref().map(|c| (c.size, c.root)) != Some((moved.size, moved.root)) {
            return Err(StorageError::CheckpointConflict {
                expected: Some(moved.size),
                found: latest.map(|c| c.size),
            });
        }
        let size = to_i64(moved.size, "size")?;
        tx.execute(
            "INSERT INTO moved (id, destination, size, root, moved_at) \
             VALUES (1, ?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')) \
             ON CONFLICT (id) DO NOTHING",
            params![destination, size, &moved.root[..]],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The mark, if this log was moved.
    pub fn moved(&self) -> Result<Option<MovedMark>, StorageError> {
        let row: Option<(String, i64, Vec<u8>, String)> = self
            .writer()
            .query_row(
                "SELECT destination, size, root, moved_at FROM moved WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(destination, size, root, moved_at)| {
            Ok(MovedMark {
                destination,
                size: size as u64,
                root: hash_of(root, "moved root")?,
                moved_at,
            })
        })
        .transpose()
    }

    /// Removes the mark (see the module documentation for when that is safe).
    pub fn unmark_moved(&self) -> Result<(), StorageError> {
        self.writer().execute("DELETE FROM moved", [])?;
        Ok(())
    }
}
