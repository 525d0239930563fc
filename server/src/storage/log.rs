//! [`Log`]: the log logic above a [`Backend`] — opening, sequencing a batch,
//! signing, and the in-memory state. Reads are in `read.rs`.
//!
//! # Write order of one batch ([`Log::append_batch`])
//! 1. Check every entry (length; the leaf hash unless the entry is
//!    [`NewEntry::verified`]); compute the claim ids not given. No lock.
//! 2. Take the writer lock (one writer per `Log`), copy the in-memory edge.
//! 3. Look the batch's leaf hashes and claim ids up in the backend (one call
//!    each), then dedup in order against the batch so far and those hits;
//!    new entries get the next dense indices and grow the copied edge.
//! 4. Nothing new: return the latest checkpoint; nothing is written or
//!    signed.
//! 5. Sign `(new size, new root)` with the caller's [`CheckpointSigner`].
//! 6. [`Backend::append`]: entries, dedup rows, search rows, grown tiles,
//!    checkpoint — atomically, conditional on the previous checkpoint.
//! 7. Only then publish the new edge and checkpoint in memory.
//!
//! A failure at 1–6 changes nothing (the backend write is all or nothing)
//! and the in-memory state still equals the backend's. A crash at any point
//! leaves the backend at the last committed batch; at open the edge is
//! reloaded and its root checked against the latest checkpoint.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use attestlog::claim::entry_claim_id;
use attestlog::tlog::merkle;

use super::cache::{ReadCache, DEFAULT_READ_CACHE_BYTES};
use super::dedup::{assign, Assigned};
use super::growth::TreeEdge;
use super::tiles::UpperTileCache;
use super::{
    Backend, BatchOutcome, CheckpointSigner, Hash, NewEntry, SequencedBatch, SignedCheckpoint,
    StorageError, MAX_ENTRY_LEN,
};

pub(super) struct State {
    pub tree: TreeEdge,
    pub checkpoint: Option<SignedCheckpoint>,
    /// The latest witnessed checkpoint: (size, cosigned note).
    pub cosigned: Option<(u64, String)>,
}

/// A transparency log on backend `B`. `Send + Sync`; share it in an `Arc`
/// and call it from tokio through `spawn_blocking` (methods block on the
/// backend), except the in-memory ones that say they never block
/// (`tree_size`, `latest_checkpoint`, the `try_*` reads). See the module
/// documentation of [`crate::storage`].
pub struct Log<B> {
    pub(super) backend: B,
    /// Serialises writers of this process; the backend's compare-and-swap
    /// stops writers of other processes.
    pub(super) writer: Mutex<()>,
    pub(super) state: RwLock<State>,
    pub(super) upper_tiles: UpperTileCache,
    /// Full tiles and bundles (`read.rs`); [`Log::with_read_cache_bytes`].
    pub(super) read_cache: ReadCache,
    /// [`Log::refresh`]'s single flight: refreshes started so far, and the
    /// number of the latest one that completed.
    pub(super) refresh_started: AtomicU64,
    pub(super) refresh_gate: Mutex<u64>,
}

impl<B: Backend> Log<B> {
    /// Opens the log held by `backend`: loads the edge for the latest
    /// checkpoint and checks its root.
    pub fn with_backend(backend: B) -> Result<Self, StorageError> {
        let checkpoint = backend.latest_checkpoint()?;
        let size = checkpoint.as_ref().map_or(0, |c| c.size);
        let tree = TreeEdge::load(size, &backend)?;
        if let Some(cp) = &checkpoint {
            if cp.root != tree.root() {
                return Err(StorageError::Corrupt(format!(
                    "the tiles' root at size {size} differs from the latest checkpoint's"
                )));
            }
        }
        let cosigned = backend.latest_cosigned()?;
        Ok(Log {
            backend,
            writer: Mutex::new(()),
            state: RwLock::new(State {
                tree,
                checkpoint,
                cosigned,
            }),
            upper_tiles: UpperTileCache::default(),
            read_cache: ReadCache::new(DEFAULT_READ_CACHE_BYTES),
            refresh_started: AtomicU64::new(0),
            refresh_gate: Mutex::new(0),
        })
    }

    /// The backend (for tools that inspect it).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub(super) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the entries not already present (same bytes or same claim id,
    /// within the batch and against the log), signs the new tree head with
    /// `signer` and commits it all in one backend append. If nothing new
    /// remains, nothing is written or signed and the latest checkpoint is
    /// returned. Any error (including from `signer`) writes nothing.
    pub fn append_batch(
        &self,
        batch: &[NewEntry],
        signer: &dyn CheckpointSigner,
    ) -> Result<BatchOutcome, StorageError> {
        for (position, e) in batch.iter().enumerate() {
            if e.bytes.len() > MAX_ENTRY_LEN {
                return Err(StorageError::EntryTooLarge {
                    position,
                    len: e.bytes.len(),
                });
            }
            // A verified entry's caller computed its leaf hash and claim id.
            if e.verified_claim().is_none() && merkle::leaf_hash(&e.bytes) != e.leaf_hash {
                return Err(StorageError::LeafHashMismatch { position });
            }
        }
        // Before taking the writer lock: decoding the envelopes needs no backend.
        let claims: Vec<Option<Hash>> = batch
            .iter()
            .map(|e| e.verified_claim().or_else(|| entry_claim_id(&e.bytes).ok()))
            .collect();
        if let Some(cluster) = self.backend.cluster() {
            return self.append_shared(cluster, batch, &claims, signer);
        }
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // Only this method changes the tree, and it holds the writer lock.
        let (mut tree, previous) = {
            let st = self.state();
            (st.tree.clone(), st.checkpoint.clone())
        };
        let leaves: Vec<Hash> = batch.iter().map(|e| e.leaf_hash).collect();
        let leaf_hits = self.backend.find_leaves(&leaves)?;
        let claim_ids: Vec<Hash> = claims.iter().flatten().copied().collect();
        let claim_hits: HashMap<Hash, u64> = claim_ids
            .iter()
            .zip(self.backend.find_claims(&claim_ids)?)
            .filter_map(|(c, hit)| Some((*c, hit?)))
            .collect();

        let Assigned { out, new } = assign(
            batch,
            &claims,
            tree.size(),
            leaf_hits,
            &claim_hits,
            |index| self.leaf_hash_at(index),
        )?;
        if new.is_empty() {
            let st = self.state();
            return Ok(BatchOutcome {
                entries: out,
                tree_size: st.tree.size(),
                root: st.tree.root(),
                checkpoint: st.checkpoint.clone(),
            });
        }
        let tiles = tree.append(new.iter().map(|e| *e.leaf_hash));
        let checkpoint = Self::sign(signer, &tree)?;
        self.backend.append(&SequencedBatch {
            previous: previous.as_ref(),
            entries: new,
            tiles,
            checkpoint: &checkpoint,
        })?;
        let (tree_size, root) = (tree.size(), tree.root());
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.tree = tree;
            st.checkpoint = Some(checkpoint.clone());
        }
        Ok(BatchOutcome {
            entries: out,
            tree_size,
            root,
            checkpoint: Some(checkpoint),
        })
    }

    /// Signs and stores a checkpoint for the empty tree when the log has
    /// none yet, so a new log has a checkpoint to serve before its first
    /// entry. Does nothing once any checkpoint exists.
    /// On a cluster backend the lease holder signs it; any other process
    /// waits until it is published.
    pub fn ensure_checkpoint(&self, signer: &dyn CheckpointSigner) -> Result<(), StorageError> {
        if let Some(cluster) = self.backend.cluster() {
            self.refresh()?;
            return self.wait_integrated(cluster, 0, Some(signer));
        }
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tree = {
            let st = self.state();
            if st.checkpoint.is_some() {
                return Ok(());
            }
            st.tree.clone()
        };
        let checkpoint = Self::sign(signer, &tree)?;
        self.backend.append(&SequencedBatch {
            previous: None,
            entries: Vec::new(),
            tiles: Vec::new(),
            checkpoint: &checkpoint,
        })?;
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .checkpoint = Some(checkpoint);
        Ok(())
    }

    pub(super) fn sign(
        signer: &dyn CheckpointSigner,
        tree: &TreeEdge,
    ) -> Result<SignedCheckpoint, StorageError> {
        let (size, root) = (tree.size(), tree.root());
        let note = signer.sign_checkpoint(size, &root)?;
        Ok(SignedCheckpoint { size, root, note })
    }

    /// The leaf hash of the logged entry at `index`.
    fn leaf_hash_at(&self, index: u64) -> Result<Hash, StorageError> {
        let data = self.backend.entry(index)?.ok_or_else(|| {
            StorageError::Corrupt(format!("claim index names entry {index}, which is missing"))
        })?;
        Ok(merkle::leaf_hash(&data))
    }

    /// The latest witnessed checkpoint stored with [`Self::store_cosigned`]:
    /// its size and the note with the cosignature lines; `None` if none yet.
    pub fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        Ok(self.state().cosigned.clone())
    }

    /// Stores `note`, the checkpoint signed for `size` with cosignatures
    /// appended, and makes it the latest cosigned checkpoint unless a larger
    /// one is already stored. `size` must be a checkpointed size.
    pub fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError> {
        self.backend.store_cosigned(size, note)?;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.cosigned.as_ref().is_none_or(|(s, _)| *s <= size) {
            st.cosigned = Some((size, note.to_string()));
        }
        Ok(())
    }
}
