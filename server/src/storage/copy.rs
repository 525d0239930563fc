//! Raw rows of a log, as `attestlog-server migrate` moves them from one
//! backend to another (spec/storage.md, "Moving a log").
//!
//! # Contract
//! A [`RawSource`] hands out every sequenced row it holds, at its stored
//! index, in chunks of at most [`RAW_CHUNK`] rows (or [`RAW_CHUNK_BYTES`]
//! of entry bytes): entries in ascending index order first, then the
//! leaf-hash, claim-id and search rows in any order. Nothing is deduped or
//! recomputed: a legacy log holding two entries of one claim id (written
//! before claim dedup) hands out both, and the destination stores both at
//! their indices. The source reads one snapshot and returns the latest
//! checkpoint of that snapshot, which covers exactly the entries handed out.

use super::{SignedCheckpoint, StorageError};

/// Most rows in one chunk.
pub const RAW_CHUNK: usize = 4096;
/// Most entry bytes in one chunk of [`RawRows::Entries`].
pub const RAW_CHUNK_BYTES: usize = 8 << 20;

/// One chunk of rows of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawRows {
    /// `(index, entry bytes)`, ascending and dense across chunks from 0.
    Entries(Vec<(i64, Vec<u8>)>),
    /// `(leaf hash, index)`: the leaf-hash dedup index.
    Leaves(Vec<(Vec<u8>, i64)>),
    /// `(claim id, index)`: the claim-id dedup index.
    Claims(Vec<(Vec<u8>, i64)>),
    /// `(kind code, key, index)`: the search index.
    Search(Vec<(i16, Vec<u8>, i64)>),
}

/// A backend whose rows can be copied out.
pub trait RawSource {
    /// Hands every row to `sink` (see the module documentation) from one
    /// snapshot, and returns that snapshot's latest checkpoint.
    fn export(
        &self,
        sink: &mut dyn FnMut(RawRows) -> Result<(), StorageError>,
    ) -> Result<Option<SignedCheckpoint>, StorageError>;
}
