//! Storage of the attestlog log server: the log logic written once, above a
//! narrow storage interface with one module per backend (spec/storage.md).
//!
//! # Layers
//! - [`Log`] (`log.rs`, `read.rs`) is the log: it sequences batches
//!   (dedup, dense indices), keeps the right edge of the tree and the
//!   partial tiles in memory, grows the C2SP hash tiles (with their `mid`
//!   hashes), asks a [`CheckpointSigner`] given by the caller to sign the new
//!   tree head, and serves proofs, tiles, bundles and checkpoints. All
//!   Merkle arithmetic is `attestlog::tlog::merkle`, the client's: there is
//!   one Merkle implementation in the workspace.
//! - [`Backend`] (`backend.rs`) is what a storage engine provides: one
//!   transactional write ([`Backend::append`], a whole sequenced batch with
//!   a compare-and-swap on the previous checkpoint) and immutable reads. It
//!   knows nothing about Merkle trees: it stores the bytes it is given.
//! - [`SqliteBackend`] (`sqlite/`) is the embedded default: one SQLite file,
//!   WAL with `synchronous=FULL`, `migrations/*.sql`.
//! - [`PostgresBackend`] (`postgres/`) holds the log in a PostgreSQL
//!   database (`migrations/postgres/*.sql`), one transaction per append
//!   behind a compare-and-swap on the `log_head` row.
//!
//! A [`SignedCheckpoint`] (size, root, note) travels between the layers and
//! to the sequencer and HTTP layers, so no note text is parsed back.
//!
//! # Lifecycle
//! 1. [`Log::with_backend`] (or [`LogStore::open`] for SQLite) reads the
//!    latest checkpoint, loads the right edge (O(log n) subtree hashes from
//!    the tiles) and the partial tile of each tile level, and checks the
//!    recomputed root against the checkpoint.
//! 2. [`Log::append_batch`] dedups the batch (same bytes or same claim id,
//!    within the batch and against the log), computes the new tree and
//!    tiles in memory, signs the new head, and hands everything to
//!    [`Backend::append`] in ONE atomic write conditional on the previous
//!    checkpoint. The in-memory state is updated only after that write
//!    returns, so readers never see a size the backend lacks. After a crash
//!    the backend holds a prefix of committed batches, and every checkpoint
//!    ever returned to a caller is in it.
//! 3. Reads are relative to [`Log::tree_size`]. Everything below that size
//!    is immutable except partial tiles, which only grow, so no read
//!    transaction is needed. A proof at exactly the current size takes the
//!    right-edge nodes from memory; every other subtree comes from the tiles.
//!    Full tiles and bundles, immutable forever, are kept in a byte-bounded
//!    [`ReadCache`] (`cache.rs`); the `try_*` reads answer from memory alone
//!    and never block, for async handlers.
//!
//! # Why tiles, not one row per node
//! A tile holds 256 level-8L hashes (8 KiB): ~32 bytes per entry for the
//! whole tree. A proof needs one tile per tile level it touches (at most ~3
//! at 10M entries); hashes at levels 8L+1..8L+7 are recomputed from the
//! tile. Each tile also carries its level-8L+4 hashes (`mid`, 512 bytes per
//! full tile), so that costs at most 7 node hashes per proof hash instead of
//! 127. The hashes are exactly what the C2SP read API serves.
//!
//! # Dedup
//! The same entry bytes always get the same index, and an entry whose claim
//! id (`attestlog::claim::entry_claim_id`: everything but the COSE
//! signature) is logged gets that entry's index and is not appended. A
//! duplicate is answered with the index and the leaf hash of the logged
//! entry (`duplicate = true`); its search keys are not added again.

mod backend;
mod cache;
pub mod cluster;
pub mod copy;
mod dedup;
mod error;
mod growth;
mod log;
pub mod objects;
pub mod postgres;
mod read;
mod signer;
pub mod sqlite;
mod tiles;

pub use backend::{Backend, BatchEntry, SequencedBatch, StoredTile, TileWrite};
pub use cache::{CacheKey, ReadCache, DEFAULT_READ_CACHE_BYTES, ENTRY_OVERHEAD};
pub use cluster::{Cluster, Event};
pub use error::StorageError;
pub use log::Log;
pub use postgres::PostgresBackend;
pub use signer::{CheckpointSigner, SignError};
pub use sqlite::{SqliteBackend, SCHEMA_VERSION};
pub use tiles::{TILE_HEIGHT, TILE_WIDTH};

/// A SHA-256 Merkle hash.
pub type Hash = [u8; 32];

/// The log as the server runs it, on whichever backend `--storage` names
/// ([`LogStore::open`]: SQLite, the default; [`LogStore::open_postgres`]).
/// One virtual call per backend call, against a SQLite statement or a
/// PostgreSQL round trip: negligible.
pub type LogStore = Log<Box<dyn Backend>>;

/// Largest entry: bundles prefix entries with a 2-byte length.
pub use attestlog::tlog::tiles::MAX_ENTRY_LEN;

/// Kinds of search key stored with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SearchKind {
    /// SHA-256 of a built artifact.
    ArtifactSha256,
    /// Source commit (e.g. git commit hash).
    Commit,
    /// Enclave image measurement PCR0.
    Pcr0,
    /// SHA-256 of the source repository URI, normalized as policies compare
    /// it (`attestlog::policy::normalize_repo`).
    Repository,
}

impl SearchKind {
    /// The stored code of the kind (the `search.kind` column).
    pub fn code(self) -> i64 {
        match self {
            SearchKind::ArtifactSha256 => 1,
            SearchKind::Commit => 2,
            SearchKind::Pcr0 => 3,
            SearchKind::Repository => 4,
        }
    }
}

/// One entry to append.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Entry bytes, at most [`MAX_ENTRY_LEN`].
    pub bytes: Vec<u8>,
    /// Must equal `merkle::leaf_hash(&bytes)`: checked by
    /// [`Log::append_batch`] unless the entry was made by
    /// `NewEntry::verified`.
    pub leaf_hash: Hash,
    /// `(kind, key)` rows to index this entry under.
    pub search_keys: Vec<(SearchKind, Vec<u8>)>,
    /// Set only by [`NewEntry::verified`]: the claim id its caller computed
    /// while verifying the entry, which also vouches for `leaf_hash`. `None`:
    /// `append_batch` checks the leaf hash and derives the claim id itself.
    verified_claim: Option<Hash>,
}

impl NewEntry {
    /// An entry with its leaf hash computed.
    pub fn new(bytes: Vec<u8>, search_keys: Vec<(SearchKind, Vec<u8>)>) -> Self {
        let leaf_hash = attestlog::tlog::merkle::leaf_hash(&bytes);
        NewEntry {
            bytes,
            leaf_hash,
            search_keys,
            verified_claim: None,
        }
    }

    /// An entry its caller has verified (`attestlog::claim::verify_entry`),
    /// with the leaf hash and claim id it computed on the way, so neither
    /// is computed again. The caller vouches for both (checked in debug
    /// builds only).
    pub(crate) fn verified(
        bytes: Vec<u8>,
        leaf_hash: Hash,
        claim_id: Hash,
        search_keys: Vec<(SearchKind, Vec<u8>)>,
    ) -> Self {
        debug_assert_eq!(leaf_hash, attestlog::tlog::merkle::leaf_hash(&bytes));
        debug_assert_eq!(
            attestlog::claim::entry_claim_id(&bytes).ok(),
            Some(claim_id)
        );
        NewEntry {
            bytes,
            leaf_hash,
            search_keys,
            verified_claim: Some(claim_id),
        }
    }

    /// The claim id [`NewEntry::verified`] was given, if it was made so.
    pub(crate) fn verified_claim(&self) -> Option<Hash> {
        self.verified_claim
    }
}

/// Where one input of a batch ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    /// The same bytes, or the same claim, were already in the log (or earlier
    /// in the batch).
    pub duplicate: bool,
    /// Leaf hash of the entry logged at `index`: the input's own, except for
    /// a duplicate of the same claim in other bytes.
    pub leaf_hash: Hash,
}

/// A signed tree head: the size and root the signer was given and the
/// signed note it returned. Built only by [`Log`] (from a signer's answer)
/// or read back from a backend that stored one, so `size` and `root` are
/// never parsed out of `note`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The signed note, verbatim.
    pub note: String,
}

/// Result of [`Log::append_batch`].
#[derive(Clone, Debug)]
pub struct BatchOutcome {
    /// One per input, in input order.
    pub entries: Vec<Appended>,
    pub tree_size: u64,
    pub root: Hash,
    /// Signed checkpoint covering `tree_size`; `None` only while the log is
    /// empty.
    pub checkpoint: Option<SignedCheckpoint>,
}
