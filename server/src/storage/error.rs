//! Errors of the storage layer.

use super::MAX_ENTRY_LEN;

/// Everything [`LogStore`](super::LogStore) can fail with.
///
/// Request-validation errors (`IndexOutOfRange`, `SizeOutOfRange`, ...) mean
/// the caller asked for something the log cannot answer; `Corrupt` means the
/// database contradicts itself; `Sqlite` is an I/O or SQLite failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error(
        "database schema version {found} is newer than this build knows ({supported}); \
         refusing to open it: use a newer attestlog-server"
    )]
    SchemaTooNew { found: i64, supported: i64 },

    #[error("batch entry {position} is {len} bytes; entries are at most {MAX_ENTRY_LEN} bytes")]
    EntryTooLarge { position: usize, len: usize },

    #[error("batch entry {position}: leaf_hash is not SHA-256(0x00 || bytes)")]
    LeafHashMismatch { position: usize },

    #[error("index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },

    #[error("tree size {requested} is larger than the log's tree size {current}")]
    SizeOutOfRange { requested: u64, current: u64 },

    #[error("consistency proof from size {first} to smaller size {second}")]
    SizesOutOfOrder { first: u64, second: u64 },

    #[error("partial tile width {0} is not in 1..=255")]
    BadTileWidth(u16),

    #[error("signing the checkpoint failed, batch rolled back: {0}")]
    Sign(String),

    #[error("database is inconsistent: {0}")]
    Corrupt(String),
}
