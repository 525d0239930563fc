//! Reads of a [`Log`]: tree head, checkpoints, entries, proofs, tiles,
//! bundles, dedup lookups and search. Every read is bounded by the size the
//! log has published ([`Log::tree_size`]); below it the backend's data is
//! immutable (partial tiles only grow), so no read transaction is needed.
//! Proofs are `attestlog::tlog::merkle`'s subtree provers over a [`TileReader`].

use attestlog::tlog::merkle::{self, compact_range_subtrees, RootBuilder};
use attestlog::tlog::ProveError;

use super::tiles::{hashes_at_level, tile_end, TileReader, TILE_WIDTH};
use super::{Backend, Hash, Log, SearchKind, SignedCheckpoint, StorageError};

/// A prover failure: the hash source's own error, or (never expected, the
/// inputs are checked first) the prover rejecting its input.
fn prove_error(e: ProveError<StorageError>) -> StorageError {
    match e {
        ProveError::Source(e) => e,
        ProveError::Input(e) => StorageError::Corrupt(format!("prover: {e}")),
    }
}

impl<B: Backend> Log<B> {
    /// Current tree size (entries committed and published).
    pub fn tree_size(&self) -> u64 {
        self.state().tree.size()
    }

    /// Current root hash; SHA-256("") for the empty log.
    pub fn root_hash(&self) -> Hash {
        self.state().tree.root()
    }

    /// The latest signed checkpoint (for [`Self::tree_size`]); `None` while
    /// the log has none.
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
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(StorageError::IndexOutOfRange {
                index,
                size: tree_size,
            });
        }
        let edge = self.edge_if(tree_size);
        let mut reader = self.tiles(edge.as_ref());
        merkle::inclusion_proof(index, tree_size, |l, n| reader.subtree(l, n)).map_err(prove_error)
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
    /// from a tile that has grown since). `None` when beyond the tree.
    pub fn hash_tile(
        &self,
        level: u8,
        index: u64,
        width: Option<u16>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let size = self.tree_size();
        let Some(end) = tile_end(hashes_at_level(size, level), index, width)? else {
            return Ok(None);
        };
        let mut tile = self.backend.tile(level, index, size)?.unwrap_or_default();
        if tile.len() < 32 * end {
            return Err(StorageError::Corrupt(format!(
                "tile level {level} index {index} has {} hashes, tree needs {end}",
                tile.len() / 32
            )));
        }
        tile.truncate(32 * end);
        Ok(Some(tile))
    }

    /// C2SP entry bundle `tile/entries/<index>[.p/<width>]`: each entry as a
    /// 2-byte big-endian length and its bytes. Same width rules as
    /// [`Self::hash_tile`].
    pub fn entry_bundle(
        &self,
        index: u64,
        width: Option<u16>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let size = self.tree_size();
        let Some(end) = tile_end(size, index, width)? else {
            return Ok(None);
        };
        let lo = index * TILE_WIDTH;
        let (out, n) = self.backend.entry_bundle(lo, lo + end as u64, size)?;
        if n != end {
            return Err(StorageError::Corrupt(format!(
                "bundle {index}: {n} of {end} entries"
            )));
        }
        Ok(Some(out))
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
