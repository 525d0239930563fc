//! RFC 6962 / RFC 9162 Merkle tree arithmetic over perfect subtrees.
//!
//! Own code rather than `tlog_tiles`' `prove_record`/`prove_tree`: those ask a
//! `HashReader` for Go "stored hash" indices one level at a time and `assert!`
//! on bad reader results. Here every proof hash is asked for as a *perfect
//! subtree* `(level k, index p)` = the root over leaves `[p·2^k, (p+1)·2^k)`,
//! which maps onto one tile read (see `tiles.rs`), and every failure is an
//! error value. Tests check the results against `rs_merkle` and `tlog_tiles`.
//!
//! Invariant used throughout: every range `[lo, hi)` the RFC 9162 recursion
//! visits has `lo` a multiple of the smallest power of two `>= hi - lo`, so it
//! splits into perfect subtrees along the binary decomposition of `hi - lo`.

use sha2::{Digest, Sha256};

use super::{Hash, StorageError};

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// RFC 6962 leaf hash: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(entry)
        .finalize()
        .into()
}

/// RFC 6962 interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Root of a perfect subtree given its 2^r (r <= 7) bottom hashes as
/// concatenated 32-byte values.
pub fn perfect_root(bytes: &[u8]) -> Hash {
    debug_assert!(bytes.len() & 31 == 0 && (bytes.len() / 32).is_power_of_two());
    let n = bytes.len() / 32;
    let at = |i: usize| -> Hash { bytes[32 * i..32 * i + 32].try_into().expect("32 bytes") };
    if n == 1 {
        return at(0);
    }
    let mut buf = [[0u8; 32]; 128];
    let mut width = n / 2;
    for (i, slot) in buf.iter_mut().enumerate().take(width) {
        *slot = node_hash(&at(2 * i), &at(2 * i + 1));
    }
    while width > 1 {
        width /= 2;
        for i in 0..width {
            buf[i] = node_hash(&buf[2 * i], &buf[2 * i + 1]);
        }
    }
    buf[0]
}

/// Source of perfect-subtree hashes for trees already stored.
pub trait SubtreeSource {
    /// Root of the perfect subtree at `level` (2^level leaves), `index`.
    fn subtree(&mut self, level: u8, index: u64) -> Result<Hash, StorageError>;
}

/// The right edge ("compact range") of a tree of `size` leaves: the roots of
/// the perfect subtrees of the binary decomposition of `size`, largest
/// (leftmost) first. Invariant: `nodes.len() == size.count_ones()` and
/// `nodes[i]` has the level of the i-th highest set bit of `size`.
#[derive(Clone, Debug, Default)]
pub struct RightEdge {
    size: u64,
    nodes: Vec<Hash>,
}

impl RightEdge {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Loads the right edge of a stored tree of `size` leaves: O(log n)
    /// subtree reads.
    pub fn load(size: u64, src: &mut impl SubtreeSource) -> Result<Self, StorageError> {
        let nodes = perfect_subtrees(src, 0, size)?;
        Ok(RightEdge { size, nodes })
    }

    /// Appends a leaf. `on_node(level, index, hash)` is called for the leaf
    /// (level 0) and for every perfect subtree this leaf completes, bottom up.
    pub fn push(&mut self, leaf: Hash, mut on_node: impl FnMut(u8, u64, &Hash)) {
        let new_size = self.size + 1;
        let mut h = leaf;
        on_node(0, self.size, &h);
        let mut level = 0u8;
        while self.size >> level & 1 == 1 {
            let left = self.nodes.pop().expect("invariant: one node per set bit");
            h = node_hash(&left, &h);
            level += 1;
            on_node(level, (new_size >> level) - 1, &h);
        }
        self.nodes.push(h);
        self.size = new_size;
    }

    /// The tree root: the edge nodes folded right to left.
    pub fn root(&self) -> Hash {
        fold_right(&self.nodes)
    }

    /// The edge node that is perfect subtree `(level, index)`, if any: the
    /// one for set bit `level` of `size`, whose index is `(size >> level) - 1`.
    pub fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let above = self.size.checked_shr(u32::from(level))?;
        if above & 1 == 0 || index != above - 1 {
            return None;
        }
        // Nodes are largest first: one per set bit above `level`.
        let pos = (above >> 1).count_ones() as usize;
        self.nodes.get(pos).copied()
    }
}

/// A [`SubtreeSource`] that answers the right-edge nodes of `edge` from
/// memory and asks `inner` for everything else. Only for proofs within
/// `edge.size()` leaves: the edge nodes are perfect subtrees, so they are
/// final and equal what `inner` would return.
pub struct WithEdge<'e, S> {
    pub edge: Option<&'e RightEdge>,
    pub inner: S,
}

impl<S: SubtreeSource> SubtreeSource for WithEdge<'_, S> {
    fn subtree(&mut self, level: u8, index: u64) -> Result<Hash, StorageError> {
        match self.edge.and_then(|e| e.node(level, index)) {
            Some(h) => Ok(h),
            None => self.inner.subtree(level, index),
        }
    }
}

/// RFC 6962 root over consecutive perfect subtrees, largest first: folded
/// right to left; SHA-256("") for none.
fn fold_right(parts: &[Hash]) -> Hash {
    match parts.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Roots of the perfect subtrees along the binary decomposition of
/// `[lo, hi)`, largest first (module invariant: `lo` aligned).
fn perfect_subtrees(
    src: &mut impl SubtreeSource,
    lo: u64,
    hi: u64,
) -> Result<Vec<Hash>, StorageError> {
    let size = hi - lo;
    let mut parts = Vec::with_capacity(size.count_ones() as usize);
    let mut start = lo;
    for level in (0..64u8).rev() {
        if size >> level & 1 == 1 {
            if start & ((1u64 << level) - 1) != 0 {
                return Err(StorageError::Corrupt(format!(
                    "internal: unaligned range [{lo}, {hi})"
                )));
            }
            parts.push(src.subtree(level, start >> level)?);
            start += 1 << level;
        }
    }
    Ok(parts)
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]) for a range satisfying the module invariant (lo < hi).
pub fn range_hash(src: &mut impl SubtreeSource, lo: u64, hi: u64) -> Result<Hash, StorageError> {
    Ok(fold_right(&perfect_subtrees(src, lo, hi)?))
}

/// RFC 9162 §2.1.3 inclusion proof of leaf `index` in the tree of `size`,
/// deepest hash first. Requires `index < size` (checked by the caller).
pub fn inclusion_proof(
    src: &mut impl SubtreeSource,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, StorageError> {
    debug_assert!(index < size);
    let mut proof = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(src.subtree(k.trailing_zeros() as u8, lo >> k.trailing_zeros())?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.4 consistency proof between sizes `first` and `second`,
/// deepest hash first. Requires `0 < first < second` (checked by the caller).
pub fn consistency_proof(
    src: &mut impl SubtreeSource,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, StorageError> {
    debug_assert!(0 < first && first < second);
    let mut proof = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, second);
    let mut whole_old_tree = true; // RFC 9162's `b`
    loop {
        let (size, m) = (hi - lo, first - lo);
        if m == size {
            if !whole_old_tree {
                proof.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = split(size);
        if m <= k {
            proof.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(src.subtree(k.trailing_zeros() as u8, lo >> k.trailing_zeros())?);
            lo += k;
            whole_old_tree = false;
        }
    }
    proof.reverse();
    Ok(proof)
}
