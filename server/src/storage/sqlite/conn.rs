//! SQLite plumbing: connection settings, schema migrations, the reader pool.
//! File format: WAL, `synchronous=FULL`, `migrations/0001..0006`.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::storage::StorageError;

/// Schema migrations, in order; migration `i` brings the schema to version
/// `i + 1` (tracked in `PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/0001_init.sql"),
    include_str!("../../../../migrations/0002_cosigned.sql"),
    include_str!("../../../../migrations/0003_tile_mid.sql"),
    include_str!("../../../../migrations/0004_claim_id.sql"),
    include_str!("../../../../migrations/0005_moved.sql"),
    include_str!("../../../../migrations/0006_short_keys.sql"),
];

/// The schema version that adds `claim_index`; after its script the rows for
/// the entries already logged are computed in Rust, in the same transaction.
const CLAIM_INDEX_VERSION: i64 = 4;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's page cache per connection, the writer's and each reader's, in
/// KiB (`PRAGMA cache_size = -N`). At 10M entries the interior pages of
/// `leaf_index` are 2.2 MB (SQLite's `dbstat`), so 8 MiB keeps most of the
/// random-key indexes' upper levels, and an insert or lookup reads little
/// more than its leaf page from the OS page cache. A larger writer cache
/// does not pay: at 64 MiB it held mostly entry pages written once, SQLite
/// swept it at every commit (`pcache1TruncateUnsafe`, 2.7% of the write
/// CPU), and submissions took 5-15 µs more CPU each, on a fresh log and on
/// a 10M-entry one alike (docs/performance.md, "The writer's page cache").
const CACHE_KIB: u32 = 8192;

/// Opens (creating if needed) the writer connection: WAL, synchronous=FULL,
/// SQLite's automatic checkpoint replaced by the WAL hook of
/// `checkpointer.rs`, then applies pending migrations in one transaction.
pub fn open_writer(path: &Path) -> Result<Connection, StorageError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Corrupt(format!(
            "could not enable WAL (journal_mode is {mode}); is {} a real file?",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA cache_size = -{CACHE_KIB};"
    ))?;
    // Checkpoints run off the commit path (`checkpointer.rs`).
    super::checkpointer::install(&conn);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies the migrations newer than the database's `user_version`, all in
/// one IMMEDIATE transaction; refuses a database newer than this build.
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.execute_batch(sql)?;
        if i as i64 + 1 == CLAIM_INDEX_VERSION {
            let rows = super::dedup::backfill_claim_index(&tx)?;
            tracing::info!(rows, "backfilled claim ids of logged entries");
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tracing::info!(version = i + 1, "applied storage migration");
    }
    tx.commit()?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB};"))?;
    Ok(conn)
}

/// A bounded pool of read-only connections, opened lazily.
pub struct ReaderPool {
    path: PathBuf,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

impl ReaderPool {
    pub fn new(path: PathBuf, max: usize) -> Self {
        ReaderPool {
            path,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Runs `f` with a pooled reader, waiting if all `max` are busy.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let conn = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(c) = st.idle.pop() {
                    break c;
                }
                if st.open < self.max {
                    st.open += 1;
                    drop(st);
                    match open_reader(&self.path) {
                        Ok(c) => break c,
                        Err(e) => {
                            self.state.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
                            return Err(e);
                        }
                    }
                }
                st = self.returned.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        // Returned to the pool on drop, so a panic in `f` loses no slot.
        let guard = Checkout {
            pool: self,
            conn: Some(conn),
        };
        f(guard.conn.as_ref().expect("present until drop"))
    }
}

struct Checkout<'p> {
    pool: &'p ReaderPool,
    conn: Option<Connection>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut st = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
            st.idle.push(conn);
            drop(st);
            self.pool.returned.notify_one();
        }
    }
}
