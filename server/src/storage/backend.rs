//! The storage interface: what a backend must provide to hold a log.
//!
//! # Contract
//! A backend stores bytes; it does no Merkle arithmetic and never signs.
//! [`Log`](super::Log) computes everything and calls:
//! - [`Backend::append`], the only write of the log itself: one
//!   [`SequencedBatch`] (entries, leaf-hash and claim-id dedup rows, search
//!   rows, the grown tiles with their `mid` hashes, the new signed
//!   checkpoint) committed atomically — all of it or none of it — and only
//!   if the latest stored checkpoint is still `batch.previous` (a
//!   compare-and-swap on size and root). A second writer that sequenced
//!   against an older checkpoint gets [`StorageError::CheckpointConflict`]
//!   and nothing of its batch is written, so two writers can never fork the
//!   log. A backend must also refuse an entry index or dedup key that
//!   already exists (unique constraints) rather than overwrite it.
//! - Immutable reads. Whatever a read returns for an index, tile prefix or
//!   checkpoint size below the latest committed checkpoint never changes
//!   afterwards (partial tiles only grow), so reads need no transaction
//!   and may run concurrently with [`Backend::append`] and each other.
//!   A read may see rows of a batch whose `append` has not returned yet;
//!   [`Log`](super::Log) bounds every read by the size it has published.
//! - Cosigned checkpoints ([`Backend::store_cosigned`]): written after the
//!   batch they cover, outside the append, by the witnessing code.
//!
//! The write order inside `append` is free (it is atomic); what makes the
//! log crash-safe is that [`Log`](super::Log) answers a submitter only after
//! `append` returned, i.e. after the backend made the batch durable
//! (SQLite: COMMIT with WAL and `synchronous=FULL`).
//!
//! # Synchronous, on purpose
//! The trait is synchronous: the log logic is CPU work (hashing, tile
//! building) that runs on tokio's blocking pool (`spawn_blocking`), SQLite
//! is a blocking library, and the HTTP layer already calls the log from
//! blocking tasks. A backend over an async client (PostgreSQL, object
//! storage) implements these methods with `tokio::runtime::Handle::block_on`
//! on the blocking thread it is called from; the HTTP and sequencer layers
//! stay unchanged. One `append` is one transaction or one CAS either way.

use super::{Cluster, Hash, SearchKind, SignedCheckpoint, StorageError};

/// One new entry of a [`SequencedBatch`], with its assigned index.
#[derive(Clone, Copy, Debug)]
pub struct BatchEntry<'a> {
    pub index: u64,
    pub bytes: &'a [u8],
    /// Dedup key: `SHA-256(0x00 || bytes)`.
    pub leaf_hash: &'a Hash,
    /// Dedup key: the attestlog claim id, for entries that have one.
    pub claim_id: Option<&'a Hash>,
    /// Search rows `(kind, key) -> index`.
    pub search_keys: &'a [(SearchKind, Vec<u8>)],
}

/// The complete new content of one hash tile (C2SP `tile/<level>/<index>`):
/// `hashes` are the tile's level-8L hashes (a full tile is 8,192 bytes),
/// `mid` the roots of its complete 16-hash groups (see `tiles.rs`). A tile
/// written again by a later batch only ever gains hashes at its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileWrite {
    pub level: u8,
    pub index: u64,
    pub hashes: Vec<u8>,
    pub mid: Vec<u8>,
}

/// A stored tile as proofs read it.
#[derive(Clone, Debug)]
pub struct StoredTile {
    pub hashes: Vec<u8>,
    /// `None` for tiles written before `mid` existed (SQLite schema < 3).
    pub mid: Option<Vec<u8>>,
}

/// Everything one append writes. Entries have the dense indices
/// `previous.size..checkpoint.size`, in order; a batch with no entries
/// writes only its checkpoint (the first checkpoint of an empty log).
#[derive(Clone, Debug)]
pub struct SequencedBatch<'a> {
    /// The latest checkpoint the batch was sequenced on; `None` for a log
    /// that has none. The append fails unless it is still the latest.
    pub previous: Option<&'a SignedCheckpoint>,
    pub entries: Vec<BatchEntry<'a>>,
    pub tiles: Vec<TileWrite>,
    pub checkpoint: &'a SignedCheckpoint,
}

/// [`Backend::search`]'s `after` and `limit` as SQL integers: `idx > after`
/// (`-1` for no `after`) and `LIMIT limit`. Indices are below 2^63, so an
/// `after` beyond that leaves nothing and a larger limit means all.
pub(crate) fn search_bounds(after: Option<u64>, limit: usize) -> (i64, i64) {
    (
        after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)),
        i64::try_from(limit).unwrap_or(i64::MAX),
    )
}

/// A storage engine for one log. See the module documentation.
pub trait Backend: Send + Sync {
    /// Commits `batch` atomically if the latest stored checkpoint is still
    /// `batch.previous`; otherwise writes nothing and returns
    /// [`StorageError::CheckpointConflict`].
    fn append(&self, batch: &SequencedBatch<'_>) -> Result<(), StorageError>;

    /// The checkpoint with the largest size; `None` for a new log.
    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StorageError>;

    /// The checkpoint signed for exactly `size`, if one was.
    fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StorageError>;

    /// Entry bytes at `index`, if stored.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError>;

    /// The stored entries with indices in `[start, end)`, in order, as a
    /// C2SP entry bundle (each a 2-byte big-endian length and its bytes),
    /// and how many it holds: fewer than asked if some are missing (the
    /// caller treats that as corrupt). `tree_size` is a size the log has
    /// committed with `end <= tree_size`: a backend that stores bundles
    /// per width (an object store) reads the one of that size.
    fn entry_bundle(
        &self,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<(Vec<u8>, usize), StorageError>;

    /// The stored `hashes` of tile `(level, index)`, at least as many as a
    /// tree of `tree_size` (a committed size) has in it; a backend that
    /// keeps one object per width reads the one of that size.
    fn tile(&self, level: u8, index: u64, tree_size: u64) -> Result<Option<Vec<u8>>, StorageError>;

    /// The stored `hashes` and `mid` of tile `(level, index)`, as
    /// [`Backend::tile`].
    fn tile_with_mid(
        &self,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<StoredTile>, StorageError>;

    /// For each leaf hash, the index of the entry with it, if any.
    fn find_leaves(&self, leaf_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StorageError>;

    /// For each claim id, the index of the first entry with it, if any.
    fn find_claims(&self, claim_ids: &[Hash]) -> Result<Vec<Option<u64>>, StorageError>;

    /// Indices stored under `(kind, key)` greater than `after` (all when
    /// `None`), ascending, at most `limit`.
    fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError>;

    /// Stores `note`, the checkpoint for `size` with cosignature lines.
    fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError>;

    /// The cosigned checkpoint with the largest size: `(size, note)`.
    fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError>;

    /// The shared-sequencing half of a backend that several processes
    /// write at once (PostgreSQL with an object store); `None` for a
    /// single-process backend (SQLite).
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn append(&self, batch: &SequencedBatch<'_>) -> Result<(), StorageError> {
        (**self).append(batch)
    }
    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StorageError> {
        (**self).latest_checkpoint()
    }
    fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StorageError> {
        (**self).checkpoint_at(size)
    }
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).entry(index)
    }
    fn entry_bundle(
        &self,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<(Vec<u8>, usize), StorageError> {
        (**self).entry_bundle(start, end, tree_size)
    }
    fn tile(&self, level: u8, index: u64, tree_size: u64) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).tile(level, index, tree_size)
    }
    fn tile_with_mid(
        &self,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<StoredTile>, StorageError> {
        (**self).tile_with_mid(level, index, tree_size)
    }
    fn find_leaves(&self, leaf_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        (**self).find_leaves(leaf_hashes)
    }
    fn find_claims(&self, claim_ids: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        (**self).find_claims(claim_ids)
    }
    fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        (**self).search(kind, key, after, limit)
    }
    fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError> {
        (**self).store_cosigned(size, note)
    }
    fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        (**self).latest_cosigned()
    }
    fn cluster(&self) -> Option<&dyn Cluster> {
        (**self).cluster()
    }
}
