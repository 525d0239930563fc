//! [`RawSource`] for SQLite: the rows `attestlog-server migrate` copies.
//!
//! The export runs inside one `BEGIN IMMEDIATE` transaction on the writer
//! connection: it is one snapshot, and it holds SQLite's write lock, so a
//! server still running on the file cannot append while the copy runs
//! (its batches wait, then fail with `storage_io`). It writes nothing.

use rusqlite::Connection;

use super::dedup::{entry_blob, Index};
use super::{checkpoint_row, SqliteBackend, LATEST_CHECKPOINT};
use crate::storage::copy::{RawRows, RawSource, RAW_CHUNK, RAW_CHUNK_BYTES};
use crate::storage::{SignedCheckpoint, StorageError};

impl RawSource for SqliteBackend {
    fn export(
        &self,
        sink: &mut dyn FnMut(RawRows) -> Result<(), StorageError>,
    ) -> Result<Option<SignedCheckpoint>, StorageError> {
        let mut writer = self.writer();
        let tx = writer.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let latest = checkpoint_row(&tx, LATEST_CHECKPOINT, [])?;
        export_entries(&tx, sink)?;
        export_keys(&tx, Index::Leaf, sink, RawRows::Leaves)?;
        export_keys(&tx, Index::Claim, sink, RawRows::Claims)?;
        export_search(&tx, sink)?;
        // Read only: the rollback on drop ends the transaction.
        drop(tx);
        Ok(latest)
    }
}

fn export_entries(
    c: &Connection,
    sink: &mut dyn FnMut(RawRows) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut st = c.prepare("SELECT idx, data FROM entries ORDER BY idx")?;
    let mut rows = st.query([])?;
    let (mut chunk, mut bytes) = (Vec::new(), 0usize);
    while let Some(r) = rows.next()? {
        let data: Vec<u8> = r.get(1)?;
        bytes += data.len();
        chunk.push((r.get::<_, i64>(0)?, data));
        if chunk.len() >= RAW_CHUNK || bytes >= RAW_CHUNK_BYTES {
            sink(RawRows::Entries(std::mem::take(&mut chunk)))?;
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        sink(RawRows::Entries(chunk))?;
    }
    Ok(())
}

/// The rows of a dedup index with their full keys, recomputed from the
/// entries they name (SQLite stores 16-byte prefixes, the destination the
/// whole key); a row whose entry does not give its prefix is `storage_corrupt`.
fn export_keys(
    c: &Connection,
    index: Index,
    sink: &mut dyn FnMut(RawRows) -> Result<(), StorageError>,
    wrap: fn(Vec<(Vec<u8>, i64)>) -> RawRows,
) -> Result<(), StorageError> {
    let mut st = c.prepare(index.all_rows_sql())?;
    let mut rows = st.query([])?;
    let mut chunk = Vec::new();
    while let Some(r) = rows.next()? {
        let idx: i64 = r.get(0)?;
        let stored = r.get_ref(2)?.as_blob().ok();
        let key = index
            .key_of(entry_blob(r, 1, idx)?)
            .filter(|k| Some(Index::prefix(k)) == stored)
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "the {index:?} index row of entry {idx} does not match the entry"
                ))
            })?;
        chunk.push((key.to_vec(), idx));
        if chunk.len() >= RAW_CHUNK {
            sink(wrap(std::mem::take(&mut chunk)))?;
        }
    }
    if !chunk.is_empty() {
        sink(wrap(chunk))?;
    }
    Ok(())
}

fn export_search(
    c: &Connection,
    sink: &mut dyn FnMut(RawRows) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut st = c.prepare("SELECT kind, key, idx FROM search")?;
    let mut rows = st.query([])?;
    let mut chunk = Vec::new();
    while let Some(r) = rows.next()? {
        let kind = i16::try_from(r.get::<_, i64>(0)?)
            .map_err(|_| StorageError::Corrupt("a search kind is over i16".into()))?;
        chunk.push((kind, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?));
        if chunk.len() >= RAW_CHUNK {
            sink(RawRows::Search(std::mem::take(&mut chunk)))?;
        }
    }
    if !chunk.is_empty() {
        sink(RawRows::Search(chunk))?;
    }
    Ok(())
}
