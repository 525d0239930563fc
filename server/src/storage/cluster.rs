//! Cluster mode: several processes write one log (spec/cluster.md). A backend that supports it ([`Backend::cluster`])
//! separates the two halves of an append:
//!
//! 1. **Sequencing** ([`Cluster::sequence`]): any frontend dedups a batch
//!    and gives its new entries the next dense indices, in ONE transaction
//!    that commits them durably (entries, dedup and search rows). Nothing of
//!    the tree is computed.
//! 2. **Integration** ([`Log::integrate`]): the one process holding the
//!    integrator lease ([`Cluster::lease`]) reads the sequenced entries in
//!    index order, grows the tiles with `TreeEdge::append` (the same code
//!    as the single-writer path), signs the new head, and hands the result
//!    to [`Backend::append`], which writes tiles and bundles create-only to
//!    the object store and then moves the head by a compare-and-swap fenced
//!    by the lease epoch.
//!
//! [`Log::append_batch`] on such a backend sequences, then integrates
//! itself if it holds the lease, else wakes the integrator and waits (a
//! notification, with a short poll as fallback) until the published tree
//! covers every index of its batch: zero merge delay, bounded by
//! [`INTEGRATION_WAIT`]. Readers and non-integrating frontends keep their
//! in-memory head current with [`Log::refresh`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use attestlog::tlog::merkle;

use super::growth::TreeEdge;
use super::{
    Appended, Backend, BatchEntry, BatchOutcome, CheckpointSigner, Hash, Log, NewEntry,
    SequencedBatch, SignedCheckpoint, StorageError,
};

/// How long a submitter waits for its entries to be integrated before the
/// answer is 503 `integration_timeout` (the entries stay sequenced and are
/// integrated later; a resubmission is answered as a duplicate). Below the
/// HTTP request timeout.
pub const INTEGRATION_WAIT: Duration = Duration::from_secs(20);
/// Most entries one integration takes (later ones go in the next).
pub const MAX_INTEGRATE: u64 = 65_536;
/// Most entry bytes one integration holds in memory: it stops after the
/// bundle-sized chunk that reaches this (so at most this plus one chunk of
/// 256 entries of at most `MAX_ENTRY_LEN` bytes, 80 MiB). Without it, a
/// backlog of large entries would load `MAX_INTEGRATE` × 64 KiB (4 GiB).
pub const MAX_INTEGRATE_BYTES: usize = 64 << 20;
/// Entries read per step of an integration.
const INTEGRATE_CHUNK: u64 = super::tiles::TILE_WIDTH;
/// The poll fallback when no notification arrives.
pub const POLL: Duration = Duration::from_millis(100);

/// What a process can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A frontend committed a sequencing transaction.
    Sequenced,
    /// The integrator moved the published head.
    Integrated,
}

/// The shared-sequencing operations of a cluster backend.
pub trait Cluster: Send + Sync {
    /// Dedups `batch` (claim ids by position in `claims`) against the log,
    /// including entries sequenced but not integrated yet, and within the
    /// batch (`dedup::assign`), and commits its new entries at the next
    /// dense indices in one transaction, which also wakes the integrator
    /// ([`Event::Sequenced`]). One [`Appended`] per input.
    fn sequence(
        &self,
        batch: &[NewEntry],
        claims: &[Option<Hash>],
    ) -> Result<Vec<Appended>, StorageError>;

    /// The largest sequenced size this process knows of without a round
    /// trip (notifications, its own sequencing; 0: none): above the
    /// published size, more is waiting to be integrated.
    fn sequenced_hint(&self) -> u64;

    /// How many entries are sequenced (the next index to assign), or a
    /// smaller size above `beyond`: a size that a committed sequencing
    /// transaction reached, known without a round trip (PostgreSQL: the
    /// `attestlog_sequenced` notifications' payloads and this process's own
    /// sequencing). It may lag the true size, never exceed it; when nothing
    /// known is above `beyond`, the size is read from the store, so a
    /// missed notification costs a caller at most one wait (`POLL`).
    fn sequenced_size(&self, beyond: u64) -> Result<u64, StorageError>;

    /// The bytes of the sequenced entries `[from, to)`, in index order;
    /// [`StorageError::Corrupt`] if any is missing.
    fn sequenced_entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StorageError>;

    /// Acquires or renews the integrator lease; `true` while this process
    /// holds it. The epoch it holds fences [`Backend::append`]. While
    /// another process holds it, a backend may answer `false` from memory
    /// for a short while after asking (PostgreSQL: `ASK_EVERY`), so calling
    /// this at every wake-up costs no round trip each time.
    fn lease(&self) -> Result<bool, StorageError>;

    /// Whether this process holds a lease it has not seen expire (no round
    /// trip).
    fn holds_lease(&self) -> bool;

    /// Gives the lease up (graceful shutdown), so another process takes
    /// over at once rather than after the lease expires.
    fn release_lease(&self);

    /// A counter of `event` notifications received so far.
    fn events(&self, event: Event) -> u64;

    /// The largest published size an [`Event::Integrated`] notification
    /// named (0: none). A lower bound of the published size that lags when
    /// notifications are missed.
    fn integrated_hint(&self) -> u64;

    /// For [`Log::refresh_to`]: if an [`Event::Integrated`] notification
    /// arrived since the counter read `since`, the largest published size
    /// one named; `None` after a wake-up by timeout (the poll must ask).
    fn notified_size(&self, since: u64) -> Option<u64> {
        (self.events(Event::Integrated) != since)
            .then(|| self.integrated_hint())
            .filter(|&size| size > 0)
    }

    /// Blocks until the counter of `event` differs from `seen` or `timeout`
    /// has passed (the poll fallback: a missed notification costs at most
    /// `timeout`).
    fn wait(&self, event: Event, seen: u64, timeout: Duration);

    /// Copies the published head's partial tiles, partial bundle and
    /// checkpoint to the object store, so that it alone is a complete
    /// tlog-tiles log (`postgres/flush.rs`); unless `force`, at most once
    /// per [`FLUSH_EVERY`](super::postgres::FLUSH_EVERY). For the lease
    /// holder: while it holds the lease, after it stops, after a migration.
    fn flush(&self, force: bool) -> Result<(), StorageError>;

    /// A read-only process never sequences nor integrates.
    fn read_only(&self) -> bool;
}

impl<B: Backend> Log<B> {
    /// [`Log::append_batch`] on a cluster backend: sequence, then integrate
    /// or wait until the published tree covers every index of the batch.
    pub(super) fn append_shared(
        &self,
        cluster: &dyn Cluster,
        batch: &[NewEntry],
        claims: &[Option<Hash>],
        signer: &dyn CheckpointSigner,
    ) -> Result<BatchOutcome, StorageError> {
        if cluster.read_only() {
            return Err(StorageError::ReadOnly);
        }
        let out = match batch.is_empty() {
            true => Vec::new(),
            false => cluster.sequence(batch, claims)?,
        };
        if !out.is_empty() {
            let need = out.iter().map(|a| a.index + 1).max().unwrap_or(0);
            self.wait_integrated(cluster, need, Some(signer))?;
        }
        let st = self.state();
        Ok(BatchOutcome {
            entries: out,
            tree_size: st.tree.size(),
            root: st.tree.root(),
            checkpoint: st.checkpoint.clone(),
        })
    }

    /// Returns once the published tree holds `need` entries: integrating
    /// them itself while it holds the lease (with a signer), else waiting
    /// for the integrator's notification or the poll.
    pub(super) fn wait_integrated(
        &self,
        cluster: &dyn Cluster,
        need: u64,
        signer: Option<&dyn CheckpointSigner>,
    ) -> Result<(), StorageError> {
        let deadline = Instant::now() + INTEGRATION_WAIT;
        loop {
            let seen = cluster.events(Event::Integrated);
            if self.tree_size() >= need && self.state().checkpoint.is_some() {
                return Ok(());
            }
            if let Some(signer) = signer {
                if cluster.lease()? {
                    match self.integrate(signer) {
                        // Another integrator moved the head, or took the
                        // lease: catch up and look again.
                        Err(
                            StorageError::CheckpointConflict { .. }
                            | StorageError::LeaseLost { .. },
                        ) => {}
                        Err(e) => {
                            // Leave the lease to a process that may reach
                            // the services; the entries stay sequenced.
                            cluster.release_lease();
                            return Err(e);
                        }
                        Ok(_) => continue,
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StorageError::IntegrationTimeout {
                    index: need.saturating_sub(1),
                    waited: INTEGRATION_WAIT,
                });
            }
            cluster.wait(Event::Integrated, seen, POLL.min(deadline - now));
            // Woken by a notification: load the head it names, unless the
            // worker already did; woken by the poll: ask.
            self.refresh_to(cluster.notified_size(seen))?;
        }
    }

    /// Integrates the sequenced entries not yet in the tree (at most
    /// [`MAX_INTEGRATE`] and about [`MAX_INTEGRATE_BYTES`]): grows the
    /// tiles, signs, and commits through [`Backend::append`] (objects, then the fenced head CAS). For the
    /// lease holder; anyone else's append is refused by the fence. Returns
    /// the published size. On an empty log with no checkpoint, signs the
    /// empty tree first.
    pub fn integrate(&self, signer: &dyn CheckpointSigner) -> Result<u64, StorageError> {
        let cluster = self
            .backend
            .cluster()
            .ok_or_else(|| StorageError::Corrupt("integrate needs a cluster backend".into()))?;
        if cluster.read_only() {
            return Err(StorageError::ReadOnly);
        }
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // An integrator that has a head works from it: if another one moved
        // the head meanwhile, the CAS below refuses and this catches up.
        if self.state().checkpoint.is_none() {
            self.refresh()?;
        }
        let (mut tree, previous) = {
            let st = self.state();
            (st.tree.clone(), st.checkpoint.clone())
        };
        let from = tree.size();
        let next = cluster.sequenced_size(from)?;
        if next <= from && previous.is_some() {
            return Ok(from);
        }
        let (data, to) = Self::read_sequenced(cluster, from, next.min(from + MAX_INTEGRATE))?;
        let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
        let tiles = tree.append(leaves.iter().copied());
        let checkpoint = Self::sign(signer, &tree)?;
        let entries = data
            .iter()
            .zip(&leaves)
            .enumerate()
            .map(|(i, (bytes, leaf_hash))| BatchEntry {
                index: from + i as u64,
                bytes,
                leaf_hash,
                claim_id: None,
                search_keys: &[],
            })
            .collect();
        let appended = self.backend.append(&SequencedBatch {
            previous: previous.as_ref(),
            entries,
            tiles,
            checkpoint: &checkpoint,
        });
        if let Err(e @ StorageError::CheckpointConflict { .. }) = appended {
            self.refresh()?;
            return Err(e);
        }
        appended?;
        self.publish(tree, checkpoint);
        Ok(to)
    }

    /// The sequenced entries from `from`, up to `to` or until they hold
    /// [`MAX_INTEGRATE_BYTES`], with where they end.
    fn read_sequenced(
        cluster: &dyn Cluster,
        from: u64,
        to: u64,
    ) -> Result<(Vec<Vec<u8>>, u64), StorageError> {
        let (mut data, mut bytes, mut at) = (Vec::new(), 0usize, from);
        while at < to && bytes < MAX_INTEGRATE_BYTES {
            let end = to.min(at + INTEGRATE_CHUNK);
            let chunk = cluster.sequenced_entries(at, end)?;
            bytes += chunk.iter().map(Vec::len).sum::<usize>();
            data.extend(chunk);
            at = end;
        }
        Ok((data, at))
    }

    /// Makes `tree` and `checkpoint` the published state unless a larger one
    /// is already published (a refresh may have run meanwhile).
    fn publish(&self, tree: TreeEdge, checkpoint: SignedCheckpoint) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st
            .checkpoint
            .as_ref()
            .is_none_or(|c| c.size < checkpoint.size)
        {
            st.tree = tree;
            st.checkpoint = Some(checkpoint);
        }
    }

    /// The edge at `size` (published, with root `root`), loaded from the
    /// tiles: the full ones from the object store (cached: immutable), the
    /// partial ones from the backend's hot edge. A few small reads, where
    /// growing the current edge would read every new entry back and hash it
    /// again.
    fn follow(&self, size: u64, root: &Hash) -> Result<TreeEdge, StorageError> {
        let tree = TreeEdge::load(size, &self.backend)?;
        if tree.root() != *root {
            return Err(StorageError::Corrupt(format!(
                "the tree's root at size {size} differs from the published checkpoint's"
            )));
        }
        Ok(tree)
    }

    /// Catches the in-memory head up with the backend's published head (a
    /// cluster backend: another process may have integrated). Loads the
    /// right edge from the tiles of the new size and checks its root. Does
    /// nothing on a single-writer backend.
    ///
    /// Single flight: callers that arrive while a refresh runs wait for it,
    /// and one that finds a refresh *started after it arrived* completed
    /// returns without asking again (that refresh read a head at least as
    /// new as any this caller was told of). A follower's worker and its
    /// waiting submitters, woken by the same notification, ask once.
    pub fn refresh(&self) -> Result<(), StorageError> {
        self.refresh_to(None)
    }

    /// [`Log::refresh`], but with `told` (the size a notification said was
    /// published) it asks the backend only while the in-memory head is
    /// below `told`: a caller woken by the same notification as another
    /// thread that already loaded that head asks nothing.
    pub fn refresh_to(&self, told: Option<u64>) -> Result<(), StorageError> {
        if self.backend.cluster().is_none() {
            return Ok(());
        }
        let arrived = self.refresh_started.load(Ordering::Acquire);
        let mut completed = self.refresh_gate.lock().unwrap_or_else(|e| e.into_inner());
        if *completed > arrived || told.is_some_and(|size| self.tree_size() >= size) {
            return Ok(());
        }
        let id = self.refresh_started.fetch_add(1, Ordering::AcqRel) + 1;
        self.refresh_now()?;
        *completed = id;
        Ok(())
    }

    fn refresh_now(&self) -> Result<(), StorageError> {
        let Some(head) = self.backend.latest_checkpoint()? else {
            return Ok(());
        };
        let current = self.state().checkpoint.as_ref().map(|c| c.size);
        if current.is_some_and(|size| size >= head.size) {
            return Ok(());
        }
        let tree = self.follow(head.size, &head.root)?;
        let cosigned = self.backend.latest_cosigned()?;
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if cosigned.as_ref().map(|c| c.0) > st.cosigned.as_ref().map(|c| c.0) {
            st.cosigned = cosigned;
        }
        drop(st);
        self.publish(tree, head);
        Ok(())
    }
}
