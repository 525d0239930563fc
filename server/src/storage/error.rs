//! Errors of the storage layer.

use super::{SignError, MAX_ENTRY_LEN};

/// Everything [`Log`](super::Log) and its backends can fail with.
///
/// Request-validation errors (`IndexOutOfRange`, `SizeOutOfRange`, ...) mean
/// the caller asked for something the log cannot answer; `Corrupt` means the
/// database contradicts itself; `Sqlite`/`Postgres` an I/O or database failure;
/// `Unreachable`/`Timeout` a PostgreSQL server that cannot be reached or
/// does not answer in time.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),

    #[error("cannot reach PostgreSQL at {target}: {reason}")]
    Unreachable { target: String, reason: String },

    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(std::time::Duration),

    #[error("bad --storage URL: {0}")]
    BadUrl(String),

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
    Sign(#[from] SignError),

    #[error(
        "the batch was sequenced on checkpoint size {expected:?} \
         but the log's latest is {found:?}; nothing was written"
    )]
    CheckpointConflict {
        expected: Option<u64>,
        found: Option<u64>,
    },

    #[error("database is inconsistent: {0}")]
    Corrupt(String),

    #[error("object store {target}: {reason}")]
    Objects { target: String, reason: String },

    #[error("the object store did not answer within {0:?}")]
    ObjectsTimeout(std::time::Duration),

    #[error("the integrator lease (epoch {epoch}) was lost; nothing was published")]
    LeaseLost { epoch: i64 },

    #[error("entries up to index {index} were sequenced but not integrated within {waited:?}")]
    IntegrationTimeout {
        index: u64,
        waited: std::time::Duration,
    },

    #[error("this server is read-only")]
    ReadOnly,

    #[error("could not start the {name} thread: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },

    #[error(
        "this log was moved to {destination} at size {size} ({moved_at}); serve the moved log: \
         appending here too would fork it under the same key (`attestlog-server migrate --undo` \
         takes the move back while the moved log has signed nothing new)"
    )]
    LogMoved {
        destination: String,
        size: u64,
        moved_at: String,
    },
}

impl StorageError {
    /// Stable snake_case code naming the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::Sqlite(_) | StorageError::Postgres(_) => "storage_io",
            StorageError::Unreachable { .. } => "storage_unreachable",
            StorageError::Timeout(_) => "storage_timeout",
            StorageError::BadUrl(_) => "storage_url_invalid",
            StorageError::SchemaTooNew { .. } => "schema_too_new",
            StorageError::EntryTooLarge { .. } => "entry_too_large",
            StorageError::LeafHashMismatch { .. } => "leaf_hash_mismatch",
            StorageError::IndexOutOfRange { .. } => "index_out_of_range",
            StorageError::SizeOutOfRange { .. } => "size_out_of_range",
            StorageError::SizesOutOfOrder { .. } => "sizes_out_of_order",
            StorageError::BadTileWidth(_) => "bad_tile_width",
            StorageError::Sign(_) => "checkpoint_signing",
            StorageError::CheckpointConflict { .. } => "checkpoint_conflict",
            StorageError::Corrupt(_) => "storage_corrupt",
            StorageError::Objects { .. } => "objects_unavailable",
            StorageError::ObjectsTimeout(_) => "objects_timeout",
            StorageError::LeaseLost { .. } => "lease_lost",
            StorageError::IntegrationTimeout { .. } => "integration_timeout",
            StorageError::ReadOnly => "read_only",
            StorageError::Thread { .. } => "storage_thread",
            StorageError::LogMoved { .. } => "log_moved",
        }
    }

    /// A service (PostgreSQL, the object store, the integrator) is down or
    /// slow: the request may succeed when retried (HTTP 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Postgres(_)
                | StorageError::Unreachable { .. }
                | StorageError::Timeout(_)
                | StorageError::Objects { .. }
                | StorageError::ObjectsTimeout(_)
                | StorageError::LeaseLost { .. }
                | StorageError::IntegrationTimeout { .. }
        )
    }
}
