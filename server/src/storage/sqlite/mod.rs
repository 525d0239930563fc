//! The embedded SQLite backend: one file, the schema of `migrations/`.
//!
//! # Contract (as [`Backend`] requires)
//! - [`Backend::append`] is one `BEGIN IMMEDIATE` transaction: check that
//!   the latest row of `checkpoints` is `batch.previous` (size and root),
//!   then insert `entries`, `leaf_index`, `claim_index`, `search` rows,
//!   upsert the grown `tiles` (`hashes` and `mid` in one statement) and
//!   insert the new `checkpoints` row, then COMMIT. IMMEDIATE takes
//!   SQLite's write lock first, so the check and the writes are one atomic
//!   step even against another process on the same file. Primary keys on
//!   `entries.idx` and `checkpoints.size` refuse any overwrite. The dedup
//!   indexes store 16-byte key prefixes and answer exactly (`dedup.rs`).
//! - Crash safety: WAL with `synchronous=FULL` makes COMMIT durable before
//!   it returns; a crash before it leaves the file at the previous batch.
//!   [`SqliteBackend::open`] checks that the entries are exactly those the
//!   latest checkpoint covers.
//! - Reads use a small pool of read-only connections (WAL readers never
//!   block the writer); the writer connection is behind a mutex.
//! - WAL checkpoints run on a thread of their own, not in the COMMIT
//!   (`checkpointer.rs`).

mod checkpointer;
mod conn;
mod dedup;
mod export;
mod moved;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub use conn::SCHEMA_VERSION;
pub use moved::MovedMark;

use super::{Backend, Hash, SearchKind, SequencedBatch, SignedCheckpoint, StorageError};
use super::{LogStore, StoredTile};
use dedup::Index;

/// Read-only connections kept for concurrent readers: at most this many
/// SQLite reads run at once. The server's read threads are no more.
pub const READERS: usize = 4;

/// The log in one SQLite file. See the module documentation.
pub struct SqliteBackend {
    writer: Mutex<Connection>,
    readers: conn::ReaderPool,
    checkpointer: checkpointer::Checkpointer,
}

impl LogStore {
    /// Opens or creates the SQLite log at `path` (a real file: WAL needs
    /// one) and the log on it, to serve and append to: a log that
    /// `migrate` moved elsewhere is refused ([`StorageError::LogMoved`]).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let backend = SqliteBackend::open(path)?;
        if let Some(mark) = backend.moved()? {
            return Err(StorageError::LogMoved {
                destination: mark.destination,
                size: mark.size,
                moved_at: mark.moved_at,
            });
        }
        let log = Self::with_backend(Box::new(backend))?;
        tracing::info!(size = log.tree_size(), path = %path.display(), "opened log store");
        Ok(log)
    }
}

fn to_i64(n: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::Corrupt(format!("{what} {n} is over i64")))
}

fn hash_of(bytes: Vec<u8>, what: &str) -> Result<Hash, StorageError> {
    bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what} is not 32 bytes")))
}

fn checkpoint_row(
    c: &Connection,
    sql: &str,
    arg: impl rusqlite::Params,
) -> Result<Option<SignedCheckpoint>, StorageError> {
    let row: Option<(i64, Vec<u8>, String)> = c
        .prepare_cached(sql)?
        .query_row(arg, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(size, root, note)| {
        Ok(SignedCheckpoint {
            size: size as u64,
            root: hash_of(root, "checkpoint root")?,
            note,
        })
    })
    .transpose()
}

const LATEST_CHECKPOINT: &str =
    "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1";

impl SqliteBackend {
    /// Opens or creates the file, applies migrations and checks that its
    /// entries are exactly the ones its latest checkpoint covers.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let conn = conn::open_writer(path)?;
        let entries: i64 =
            conn.query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| {
                r.get(0)
            })?;
        let latest = checkpoint_row(&conn, LATEST_CHECKPOINT, [])?;
        match &latest {
            None if entries == 0 => {}
            Some(cp) if cp.size == entries as u64 => {}
            other => {
                return Err(StorageError::Corrupt(format!(
                    "{entries} entries but latest checkpoint is {:?}",
                    other.as_ref().map(|c| c.size)
                )))
            }
        }
        Ok(SqliteBackend {
            writer: Mutex::new(conn),
            readers: conn::ReaderPool::new(path.to_path_buf(), READERS),
            checkpointer: checkpointer::Checkpointer::start(path)?,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for SqliteBackend {
    fn append(&self, batch: &SequencedBatch<'_>) -> Result<(), StorageError> {
        let mut writer = self.writer();
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = checkpoint_row(&tx, LATEST_CHECKPOINT, [])?;
        let expected = batch.previous;
        if found.as_ref().map(|c| (c.size, c.root)) != expected.map(|c| (c.size, c.root)) {
            return Err(StorageError::CheckpointConflict {
                expected: expected.map(|c| c.size),
                found: found.map(|c| c.size),
            });
        }
        {
            let mut ins_entry =
                tx.prepare_cached("INSERT INTO entries (idx, data) VALUES (?1, ?2)")?;
            let mut ins_leaf = tx.prepare_cached(Index::Leaf.insert_sql())?;
            let mut ins_claim = tx.prepare_cached(Index::Claim.insert_sql())?;
            let mut ins_search = tx.prepare_cached(
                "INSERT OR IGNORE INTO search (kind, key, idx) VALUES (?1, ?2, ?3)",
            )?;
            for e in &batch.entries {
                let idx = to_i64(e.index, "entry index")?;
                ins_entry.execute(params![idx, e.bytes])?;
                ins_leaf.execute(params![Index::prefix(e.leaf_hash), idx])?;
                if let Some(claim_id) = e.claim_id {
                    ins_claim.execute(params![Index::prefix(claim_id), idx])?;
                }
                for (kind, key) in e.search_keys {
                    ins_search.execute(params![kind.code(), key, idx])?;
                }
            }
            let mut upsert = tx.prepare_cached(
                "INSERT INTO tiles (level, idx, hashes, mid) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes, mid = excluded.mid",
            )?;
            for t in &batch.tiles {
                upsert.execute(params![
                    t.level,
                    to_i64(t.index, "tile index")?,
                    t.hashes,
                    t.mid
                ])?;
            }
            let cp = batch.checkpoint;
            tx.prepare_cached("INSERT INTO checkpoints (size, root, note) VALUES (?1, ?2, ?3)")?
                .execute(params![to_i64(cp.size, "size")?, &cp.root[..], cp.note])?;
        }
        tx.commit()?;
        self.checkpointer.after_commit(&writer);
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StorageError> {
        self.readers
            .with(|c| checkpoint_row(c, LATEST_CHECKPOINT, []))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StorageError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.readers.with(|c| {
            checkpoint_row(
                c,
                "SELECT size, root, note FROM checkpoints WHERE size = ?1",
                [size],
            )
        })
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let Ok(index) = i64::try_from(index) else {
            return Ok(None);
        };
        self.readers.with(|c| {
            let mut st = c.prepare_cached("SELECT data FROM entries WHERE idx = ?1")?;
            Ok(st.query_row([index], |r| r.get(0)).optional()?)
        })
    }

    fn entry_bundle(
        &self,
        start: u64,
        end: u64,
        _tree_size: u64,
    ) -> Result<(Vec<u8>, usize), StorageError> {
        let (lo, hi) = (to_i64(start, "index")?, to_i64(end, "index")?);
        self.readers.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT data FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
            )?;
            let mut rows = st.query(params![lo, hi])?;
            let (mut out, mut n) = (Vec::new(), 0usize);
            while let Some(row) = rows.next()? {
                let data = row.get_ref(0)?.as_blob().map_err(|e| {
                    StorageError::Corrupt(format!("entry in bundle at {start} is not a blob: {e}"))
                })?;
                let len = u16::try_from(data.len()).map_err(|_| {
                    StorageError::Corrupt(format!(
                        "entry in bundle at {start} is over 65,535 bytes"
                    ))
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(data);
                n += 1;
            }
            Ok((out, n))
        })
    }

    fn tile(&self, level: u8, index: u64, _: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let idx = to_i64(index, "tile index")?;
        self.readers.with(|c| {
            let mut st =
                c.prepare_cached("SELECT hashes FROM tiles WHERE level = ?1 AND idx = ?2")?;
            Ok(st.query_row(params![level, idx], |r| r.get(0)).optional()?)
        })
    }

    fn tile_with_mid(
        &self,
        level: u8,
        index: u64,
        _: u64,
    ) -> Result<Option<StoredTile>, StorageError> {
        let idx = to_i64(index, "tile index")?;
        self.readers.with(|c| {
            let mut st =
                c.prepare_cached("SELECT hashes, mid FROM tiles WHERE level = ?1 AND idx = ?2")?;
            Ok(st
                .query_row(params![level, idx], |r| {
                    Ok(StoredTile {
                        hashes: r.get(0)?,
                        mid: r.get(1)?,
                    })
                })
                .optional()?)
        })
    }

    fn find_leaves(&self, leaf_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.readers
            .with(|c| dedup::lookup(c, Index::Leaf, leaf_hashes))
    }

    fn find_claims(&self, claim_ids: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.readers
            .with(|c| dedup::lookup(c, Index::Claim, claim_ids))
    }

    fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let (after, limit) = super::backend::search_bounds(after, limit);
        self.readers.with(|c| {
            let mut st = c.prepare_cached(
                "SELECT idx FROM search WHERE kind = ?1 AND key = ?2 AND idx > ?3 \
                 ORDER BY idx LIMIT ?4",
            )?;
            let rows = st.query_map(params![kind.code(), key, after, limit], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(rows
                .map(|r| r.map(|i| i as u64))
                .collect::<Result<_, _>>()?)
        })
    }

    fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError> {
        self.writer().execute(
            "INSERT OR REPLACE INTO cosigned (size, note) VALUES (?1, ?2)",
            params![to_i64(size, "size")?, note],
        )?;
        Ok(())
    }

    fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        let row: Option<(i64, String)> = self.readers.with(|c| {
            Ok(
                c.prepare_cached("SELECT size, note FROM cosigned ORDER BY size DESC LIMIT 1")?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?,
            )
        })?;
        Ok(row.map(|(s, n)| (s as u64, n)))
    }
}
