//! Reads of a [`Log`]: tree head, checkpoints, entries, proofs, tiles,
//! bundles, dedup lookups and search. Every read is bounded by the size the
//! log has published ([`Log::tree_size`]); below it the backend's data is
//! immutable (partial tiles only grow), so no read transaction is needed.
//! Proofs are `attestlog::tlog::merkle`'s subtree provers over a [`TileReader`].
//!
//! Full tiles and bundles go through the log's [`ReadCache`]: the blocking
//! reads fill it, and the `try_*` methods answer from it (and the in-memory
//! edge) alone, never calling the backend, so an async handler can serve a
//! hit on its own thread and send only misses to the blocking pool.

use attestlog::tlog::merkle::{self, compact_range_subtrees, RootBuilder};
use attestlog::tlog::ProveError;
use bytes::Bytes;

use super::cache::{CacheKey, ReadCache};
use super::tiles::{
    full_tile_hashes, full_tile_value, hashes_at_level, tile_end, tile_is_full, TileReader,
    TILE_WIDTH,
};
use super::{Backend, Hash, Log, SearchKind, SignedCheckpoint, StorageError};

/// Why a proof from memory alone stopped: a tile no cache holds (the
/// blocking proof will read it), or a real error.
#[derive(Debug, thiserror::Error)]
enum FromMemory {
    #[error("a tile the proof needs is not in memory")]
    NotCached,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A proof from memory: `None` when it needs the backend.
fn from_memory(
    proof: Result<Vec<Hash>, ProveError<FromMemory>>,
) -> Option<Result<Vec<Hash>, StorageError>> {
    match proof {
        Ok(p) => Some(Ok(p)),
        Err(ProveError::Source(FromMemory::NotCached)) => None,
        Err(ProveError::Source(FromMemory::Storage(e))) => Some(Err(e)),
        Err(ProveError::Input(e)) => Some(Err(StorageError::Corrupt(format!("prover: {e}")))),
    }
}

fn cached<B: Backend + ?Sized>(
    reader: &mut TileReader<'_, B>,
    level: u8,
    index: u64,
) -> Result<Hash, FromMemory> {
    reader
        .cached_subtree(level, index)?
        .ok_or(FromMemory::NotCached)
}

/// The first `width` entries of a full entry bundle (each a 2-byte
/// big-endian length and its bytes), without copying; `None` if the bundle
/// holds fewer.
fn bundle_prefix(bundle: &Bytes, width: usize) -> Option<Bytes> {
    let mut at = 0usize;
    for _ in 0..width {
        let len = bundle.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    (at <= bundle.len()).then(|| bundle.slice(..at))
}

/// A prover failure: the hash source's own error, or (never expected, the
/// inputs are checked first) the prover rejecting its input.
fn prove_error(e: ProveError<StorageError>) -> StorageError {
    match e {
        ProveError::Source(e) => e,
        ProveError::Input(e) => StorageError::Corrupt(format!("prover: {e}")),
    }
}

impl<B: Backend> Log<B> {
    /// Current tree size (entries committed and published). From memory;
    /// never blocks.
    pub fn tree_size(&self) -> u64 {
        self.state().tree.size()
    }

    /// Current root hash; SHA-256("") for the empty log. From memory.
    pub fn root_hash(&self) -> Hash {
        self.state().tree.root()
    }

    /// The latest signed checkpoint (for [`Self::tree_size`]), from memory
    /// (never blocks); `None` while the log has none.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StorageError> {
        Ok(self.state().checkpoint.clone())
    }

    /// The checkpoint signed for exactly `size`, if one was.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StorageError> {
        self.backend.checkpoint_at(size)
    }

    /// Index of the entry with this leaf hash.
    pub fn find_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StorageError> {
        Ok(self
            .backend
            .find_leaves(std::slice::from_ref(leaf_hash))?
            .first()
            .copied()
            .flatten())
    }

    /// Index of the first entry with this claim id
    /// (`attestlog::claim::entry_claim_id`).
    pub fn find_claim(&self, claim_id: &Hash) -> Result<Option<u64>, StorageError> {
        Ok(self
            .backend
            .find_claims(std::slice::from_ref(claim_id))?
            .first()
            .copied()
            .flatten())
    }

    /// Entry bytes at `index`; `None` beyond the tree.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        if index >= self.tree_size() {
            return Ok(None);
        }
        self.backend
            .entry(index)?
            .map(Some)
            .ok_or_else(|| StorageError::Corrupt(format!("entry {index} missing")))
    }

    /// RFC 9162 inclusion proof (deepest first) of leaf `index` in the tree
    /// of `tree_size`, for any past size. Needs `index < tree_size <= size`.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StorageError> {
        self.check_inclusion(index, tree_size)?;
        let edge = self.edge_if(tree_size);
        let mut reader = self.tiles(edge.as_ref());
        merkle::inclusion_proof(index, tree_size, |l, n| reader.subtree(l, n)).map_err(prove_error)
    }

    /// [`Self::inclusion_proof`] from memory alone (the edge and the
    /// caches): never calls the backend, so it may run on an async thread.
    /// `None` when a tile it needs is in no cache: then ask
    /// [`Self::inclusion_proof`] (through `spawn_blocking`).
    pub fn try_inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Option<Result<Vec<Hash>, StorageError>> {
        if let Err(e) = self.check_inclusion(index, tree_size) {
            return Some(Err(e));
        }
        let edge = self.edge_if(tree_size);
        let mut reader = self.tiles(edge.as_ref());
        from_memory(merkle::inclusion_proof(index, tree_size, |l, n| {
            cached(&mut reader, l, n)
        }))
    }

    fn check_inclusion(&self, index: u64, tree_size: u64) -> Result<(), StorageError> {
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(StorageError::IndexOutOfRange {
                index,
                size: tree_size,
            });
        }
        Ok(())
    }

    /// RFC 9162 consistency proof (deepest first) from `first` to `second`,
    /// both any sizes with `first <= second <= size`. Empty when
    /// `first == second` or `first == 0` (everything extends the empty tree).
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, StorageError> {
        self.check_size(second)?;
        if first > second {
            return Err(StorageError::SizesOutOfOrder { first, second });
        }
        let edge = self.edge_if(second);
        let mut reader = self.tiles(edge.as_ref());
        merkle::consistency_proof(first, second, |l, n| reader.subtree(l, n)).map_err(prove_error)
    }

    /// [`Self::consistency_proof`] from memory alone, as
    /// [`Self::try_inclusion_proof`]: `None` when it needs the backend.
    pub fn try_consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Option<Result<Vec<Hash>, StorageError>> {
        if let Err(e) = self.check_size(second) {
            return Some(Err(e));
        }
        if first > second {
            return Some(Err(StorageError::SizesOutOfOrder { first, second }));
        }
        let edge = self.edge_if(second);
        let mut reader = self.tiles(edge.as_ref());
        from_memory(merkle::consistency_proof(first, second, |l, n| {
            cached(&mut reader, l, n)
        }))
    }

    /// Root hash of the tree at any past `size` (recomputed from tiles).
    pub fn root_at(&self, size: u64) -> Result<Hash, StorageError> {
        self.check_size(size)?;
        let mut reader = self.tiles(None);
        let range = compact_range_subtrees(size)
            .map(|(level, index)| reader.subtree(level, index))
            .collect::<Result<Vec<Hash>, _>>()?;
        RootBuilder::from_compact_range(size, range)
            .map(|b| b.root())
            .ok_or_else(|| StorageError::Corrupt(format!("compact range of {size}")))
    }

    /// A copy of the in-memory compact range if the tree has exactly `size`
    /// leaves now. Proofs at the current size (the usual request) then take
    /// its nodes from memory instead of re-reading the partial tiles.
    fn edge_if(&self, size: u64) -> Option<RootBuilder> {
        let st = self.state();
        (st.tree.size() == size).then(|| st.tree.edge.clone())
    }

    fn tiles<'a>(&'a self, edge: Option<&'a RootBuilder>) -> TileReader<'a, B> {
        TileReader::new(
            &self.backend,
            Some(&self.upper_tiles),
            edge,
            self.tree_size(),
        )
        .with_read_cache(&self.read_cache)
    }

    fn check_size(&self, requested: u64) -> Result<(), StorageError> {
        let current = self.tree_size();
        if requested > current {
            return Err(StorageError::SizeOutOfRange { requested, current });
        }
        Ok(())
    }

    /// C2SP hash tile `tile/<level>/<index>[.p/<width>]` relative to the
    /// current tree: `width = None` is the full tile (`None` unless it holds
    /// 256 hashes); `Some(w)`, `w` in 1..=255, is the first `w` hashes (also
    /// from a tile that has grown since). `None` when beyond the tree. A
    /// full tile read from the backend is kept in the read cache.
    pub fn hash_tile(
        &self,
        level: u8,
        index: u64,
        width: Option<u16>,
    ) -> Result<Option<Bytes>, StorageError> {
        let size = self.tree_size();
        let Some(end) = tile_end(hashes_at_level(size, level), index, width)? else {
            return Ok(None);
        };
        if let Some(hit) = self.try_cached_tile(level, index, width) {
            return Ok(Some(hit));
        }
        let mut tile = self.backend.tile(level, index, size)?.unwrap_or_default();
        if tile.len() < 32 * end {
            return Err(StorageError::Corrupt(format!(
                "tile level {level} index {index} has {} hashes, tree needs {end}",
                tile.len() / 32
            )));
        }
        if self.read_cache.capacity() > 0
            && tile_is_full(size, level, index)
            && tile.len() == 32 * TILE_WIDTH as usize
        {
            let value = full_tile_value(&tile, None);
            self.read_cache
                .insert(CacheKey::Tile { level, index }, value.clone());
            return Ok(Some(value.slice(..32 * end)));
        }
        tile.truncate(32 * end);
        Ok(Some(Bytes::from(tile)))
    }

    /// [`Self::hash_tile`] from the read cache alone (never calls the
    /// backend): `Some` only if the full tile is cached; a partial width is
    /// its prefix.
    pub fn try_cached_tile(&self, level: u8, index: u64, width: Option<u16>) -> Option<Bytes> {
        let end = 32 * width.map_or(TILE_WIDTH as usize, usize::from);
        let hashes = full_tile_hashes(&self.read_cache.get(&CacheKey::Tile { level, index })?)?;
        (end <= hashes.len()).then(|| hashes.slice(..end))
    }

    /// C2SP entry bundle `tile/entries/<index>[.p/<width>]`: each entry as a
    /// 2-byte big-endian length and its bytes. Same width rules as
    /// [`Self::hash_tile`]. A full bundle is kept in the read cache.
    pub fn entry_bundle(
        &self,
        index: u64,
        width: Option<u16>,
    ) -> Result<Option<Bytes>, StorageError> {
        let size = self.tree_size();
        let Some(end) = tile_end(size, index, width)? else {
            return Ok(None);
        };
        if let Some(hit) = self.try_cached_bundle(index, width) {
            return Ok(Some(hit));
        }
        let lo = index * TILE_WIDTH;
        let (out, n) = self.backend.entry_bundle(lo, lo + end as u64, size)?;
        if n != end {
            return Err(StorageError::Corrupt(format!(
                "bundle {index}: {n} of {end} entries"
            )));
        }
        let out = Bytes::from(out);
        if width.is_none() {
            self.read_cache.insert(CacheKey::Bundle(index), out.clone());
        }
        Ok(Some(out))
    }

    /// [`Self::entry_bundle`] from the read cache alone (never calls the
    /// backend): `Some` only if the full bundle is cached; a partial width is
    /// its prefix.
    pub fn try_cached_bundle(&self, index: u64, width: Option<u16>) -> Option<Bytes> {
        let bundle = self.read_cache.get(&CacheKey::Bundle(index))?;
        match width {
            None => Some(bundle),
            Some(w) => bundle_prefix(&bundle, usize::from(w)),
        }
    }

    /// The gzip encoding of full bundle `index` as kept by
    /// [`Self::keep_bundle_gzip`], from the read cache alone.
    pub fn try_cached_bundle_gzip(&self, index: u64) -> Option<Bytes> {
        self.read_cache.get(&CacheKey::BundleGzip(index))
    }

    /// Keeps `gzip`, which must be the gzip encoding of the full entry bundle
    /// `index` (as [`Self::entry_bundle`] returned it), in the read cache;
    /// ignored unless that bundle is full.
    pub fn keep_bundle_gzip(&self, index: u64, gzip: Bytes) {
        if tile_is_full(self.tree_size(), 0, index) {
            self.read_cache.insert(CacheKey::BundleGzip(index), gzip);
        }
    }

    /// The read cache of full tiles and bundles (see [`ReadCache`]).
    pub fn read_cache(&self) -> &ReadCache {
        &self.read_cache
    }

    /// This log with a read cache of `bytes` bytes instead of
    /// [`DEFAULT_READ_CACHE_BYTES`](super::DEFAULT_READ_CACHE_BYTES); 0
    /// disables it (every tile and bundle is read from the backend).
    pub fn with_read_cache_bytes(mut self, bytes: usize) -> Self {
        self.read_cache = ReadCache::new(bytes);
        self
    }

    /// Indices stored under `(kind, key)`, ascending, at most `limit`.
    pub fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.search_after(kind, key, None, limit)
    }

    /// Indices stored under `(kind, key)` above `after`, ascending, at most
    /// `limit`: the next page of a search.
    pub fn search_after(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        // A shared-sequencing backend also indexes entries sequenced but not
        // integrated yet: answer only what the published tree holds.
        let size = self.tree_size();
        let mut found = self.backend.search(kind, key, after, limit)?;
        found.retain(|&i| i < size);
        Ok(found)
    }
}
