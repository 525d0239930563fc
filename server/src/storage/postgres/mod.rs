//! The PostgreSQL backend: the log in one PostgreSQL database, the schema
//! of `migrations/postgres/` (spec/storage.md, "PostgreSQL backend").
//!
//! # Contract (as [`Backend`] requires)
//! - [`Backend::append`] is one READ COMMITTED transaction that starts with
//!   a compare-and-swap on the one-row `log_head` table and then inserts
//!   the whole batch (`append.rs`); a writer whose `batch.previous` is no
//!   longer the head gets [`StorageError::CheckpointConflict`] and writes
//!   nothing. Primary keys refuse any overwrite of an entry, dedup key or
//!   checkpoint.
//! - Crash safety: COMMIT returns after PostgreSQL flushed its WAL
//!   (`synchronous_commit` on, the default), and [`Log`](super::Log)
//!   answers a submitter only after `append` returned. A crash of either
//!   side before COMMIT leaves the database at the previous batch.
//!   [`PostgresBackend::open`] checks the entries are exactly those the
//!   latest checkpoint covers and that `log_head` agrees with it.
//! - Reads share one connection (tokio-postgres pipelines concurrent
//!   queries on it); appends and cosignatures use a second one behind a
//!   mutex. A closed connection is replaced on next use, so the server
//!   recovers once PostgreSQL is back.
//!
//! # Driver: tokio-postgres
//! The maintained pure-Rust driver under both `postgres` and `sqlx`'s
//! PostgreSQL support, with no macros, no build-time database and few
//! dependencies (sqlx would add its query macros and its own pool for
//! nothing: the queries here are fixed and few). The synchronous `postgres`
//! wrapper is not usable here because its calls panic inside a tokio
//! runtime, and the backend is also called from async code; instead the
//! connections run on a private runtime (`conn.rs`). Plain TCP only
//! (`NoTls`): `sslmode=require` fails to connect; TLS comes with the
//! object-storage session.

mod append;
mod conn;
mod read;

use std::sync::Mutex;

use tokio_postgres::Client;

pub use conn::{CONNECT_TIMEOUT, PG_SCHEMA_VERSION, QUERY_TIMEOUT};

use super::StoredTile;
use super::{Backend, Hash, LogStore, SearchKind, SequencedBatch, SignedCheckpoint, StorageError};

/// The log in one PostgreSQL database. See the module documentation.
pub struct PostgresBackend {
    // Field order: the clients drop before the runtime their I/O runs on.
    writer: Mutex<Option<Client>>,
    readers: conn::Slot,
    connector: conn::Connector,
}

impl LogStore {
    /// Opens the log in the PostgreSQL database at `url`, creating its
    /// schema the first time.
    pub fn open_postgres(url: &str) -> Result<Self, StorageError> {
        let backend = PostgresBackend::open(url)?;
        let target = backend.connector.target().to_string();
        let log = Self::with_backend(Box::new(backend))?;
        tracing::info!(size = log.tree_size(), %target, "opened PostgreSQL log store");
        Ok(log)
    }
}

impl PostgresBackend {
    /// Connects to `url`, applies migrations and checks that the entries
    /// are exactly the ones the latest checkpoint covers.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let connector = conn::Connector::new(url)?;
        let mut writer = connector.connect()?;
        conn::migrate(&connector, &mut writer)?;
        let readers = conn::Slot::new(connector.connect()?);
        let backend = PostgresBackend {
            writer: Mutex::new(Some(writer)),
            readers,
            connector,
        };
        backend.check_consistent()?;
        Ok(backend)
    }

    fn check_consistent(&self) -> Result<(), StorageError> {
        let c = self.readers.get(&self.connector)?;
        let (entries, head): (i64, Option<i64>) = self.connector.block_on(async {
            let e = c
                .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", &[])
                .await?
                .get(0);
            let h = c.query_one("SELECT size FROM log_head", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>((e, h))
        })?;
        let latest = self.latest_checkpoint()?.map(|c| c.size as i64);
        let fine = latest == head
            && match latest {
                None => entries == 0,
                Some(size) => size == entries,
            };
        if !fine {
            return Err(StorageError::Corrupt(format!(
                "{entries} entries, latest checkpoint {latest:?}, log_head {head:?}"
            )));
        }
        Ok(())
    }

    /// Runs `f` with the writer connection, reconnecting first if it is
    /// gone; drops the connection on an I/O failure or timeout so an
    /// interrupted transaction can never be continued.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(self.connector.connect()?);
        }
        let r = f(slot.as_mut().expect("just set"));
        if matches!(r, Err(StorageError::Timeout(_) | StorageError::Postgres(_))) {
            *slot = None;
        }
        r
    }
}

impl Backend for PostgresBackend {
    fn append(&self, batch: &SequencedBatch<'_>) -> Result<(), StorageError> {
        self.with_writer(|c| self.connector.block_on(append::append(c, batch)))
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StorageError> {
        self.checkpoint_row(
            "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1",
            None,
        )
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StorageError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.checkpoint_row(
            "SELECT size, root, note FROM checkpoints WHERE size = $1",
            Some(size),
        )
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_entry(index)
    }

    fn entry_bundle(&self, start: u64, end: u64) -> Result<(Vec<u8>, usize), StorageError> {
        self.read_bundle(start, end)
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read_tile(level, index)?.map(|t| t.hashes))
    }

    fn tile_with_mid(&self, level: u8, index: u64) -> Result<Option<StoredTile>, StorageError> {
        self.read_tile(level, index)
    }

    fn find_leaves(&self, leaf_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.lookup(
            "SELECT leaf_hash, idx FROM leaf_index WHERE leaf_hash = ANY($1)",
            leaf_hashes,
        )
    }

    fn find_claims(&self, claim_ids: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.lookup(
            "SELECT claim_id, idx FROM claim_index WHERE claim_id = ANY($1)",
            claim_ids,
        )
    }

    fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.read_search(kind, key, after, limit)
    }

    fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError> {
        let size = i64::try_from(size)
            .map_err(|_| StorageError::Corrupt(format!("size {size} is over i64")))?;
        self.with_writer(|c| {
            self.connector.block_on(c.execute(
                "INSERT INTO cosigned (size, note) VALUES ($1, $2) \
                 ON CONFLICT (size) DO UPDATE SET note = excluded.note",
                &[&size, &note],
            ))
        })?;
        Ok(())
    }

    fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        self.read_latest_cosigned()
    }
}
