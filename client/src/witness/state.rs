//! The witness's state in SQLite: per origin, the size, root and signed
//! checkpoint it last cosigned, and the bounded evidence (see
//! [`super::evidence`]).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::evidence::{self, EvidenceUsage};
use super::Rejection;
use crate::tlog::Hash;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored root for {0:?} is not 32 bytes")]
    Corrupt(String),
}

/// The last cosigned checkpoint of one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessState {
    pub size: u64,
    pub root: Hash,
    /// The cosigned checkpoint as the monitoring endpoint serves it: note
    /// text, the log signatures that verified, this witness's cosignature
    /// (states written by older versions hold the note as submitted).
    pub note: String,
}

/// Failure of a compare-and-swap.
#[derive(Debug)]
pub enum CasError {
    Rejected(Rejection),
    Store(StateError),
}

/// SQLite-backed witness state.
pub struct WitnessStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS witness_state (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    request TEXT NOT NULL,
    reason TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl WitnessStore {
    /// Opens (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Every commit reaches the disk before the witness answers.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        evidence::migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state of `origin`, if it was ever cosigned.
    pub fn get(&self, origin: &str) -> Result<Option<WitnessState>, StateError> {
        read(&self.lock(), origin)
    }

    /// Every origin's state.
    pub fn all(&self) -> Result<Vec<(String, WitnessState)>, StateError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT origin, size, root, checkpoint FROM witness_state ORDER BY origin")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (origin, size, root, note) = row?;
            let root: Hash = root
                .try_into()
                .map_err(|_| StateError::Corrupt(origin.clone()))?;
            out.push((
                origin,
                WitnessState {
                    size: size as u64,
                    root,
                    note,
                },
            ));
        }
        Ok(out)
    }

    /// In one immediate transaction: reads the state of `origin`, lets
    /// `decide` accept (returning the new state) or reject, and commits the
    /// new state. Returns only after the commit is durable.
    pub fn compare_and_swap(
        &self,
        origin: &str,
        decide: impl FnOnce(Option<&WitnessState>) -> Result<WitnessState, Rejection>,
    ) -> Result<(), CasError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| CasError::Store(e.into()))?;
        let current = read(&tx, origin).map_err(CasError::Store)?;
        let new = decide(current.as_ref()).map_err(CasError::Rejected)?;
        let size = i64::try_from(new.size)
            .map_err(|_| CasError::Store(StateError::Corrupt(origin.to_string())))?;
        tx.execute(
            "INSERT INTO witness_state (origin, size, root, checkpoint, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(origin) DO UPDATE SET size = ?2, root = ?3, checkpoint = ?4, updated_at = ?5",
            params![origin, size, new.root.as_slice(), new.note, unix_now()],
        )
        .map_err(|e| CasError::Store(e.into()))?;
        tx.commit().map_err(|e| CasError::Store(e.into()))?;
        Ok(())
    }

    /// Keeps a validly signed request that was refused, within the
    /// evidence caps: the insert and the evictions commit together.
    pub fn record_evidence(
        &self,
        origin: &str,
        request: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        evidence::record(&tx, origin, request, reason, unix_now())?;
        tx.commit()?;
        Ok(())
    }

    /// How much evidence is stored.
    pub fn evidence_usage(&self) -> Result<EvidenceUsage, StateError> {
        Ok(evidence::usage(&self.lock())?)
    }

    /// Number of evidence records.
    pub fn evidence_count(&self) -> Result<u64, StateError> {
        let n: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM evidence", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

fn read(conn: &Connection, origin: &str) -> Result<Option<WitnessState>, StateError> {
    let row = conn
        .query_row(
            "SELECT size, root, checkpoint FROM witness_state WHERE origin = ?1",
            params![origin],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    row.map(|(size, root, note)| {
        let root: Hash = root
            .try_into()
            .map_err(|_| StateError::Corrupt(origin.to_string()))?;
        Ok(WitnessState {
            size: size as u64,
            root,
            note,
        })
    })
    .transpose()
}
