//! RFC 6962 / RFC 9162 section 2.1 Merkle tree hashing, proof verification
//! and proof generation.
//!
//! Verification wraps `tlog_tiles::check_record` / `check_tree` (Go
//! `sumdb/tlog`'s RFC 6962 algorithms). Those functions recurse, copy the
//! proof slice per level and `assert!` their preconditions, so every input is
//! bounded first: proofs longer than [`MAX_PROOF_LEN`] are rejected, and the
//! `index < size` / `0 < first < second` preconditions are checked here, which
//! makes the crate's asserts unreachable.
//!
//! Consistency edge cases (RFC 9162 2.1.4.2 only covers `0 < first < second`):
//! - `first == second`: valid iff the proof is empty and the roots are equal.
//! - `first == 0`: the empty tree is a prefix of every tree, so it is valid iff
//!   the proof is empty and `first_root` is the empty-tree root SHA-256("").
//! - `first > second`: rejected.
//!
//! Sizes above 2^63 can need 64 proof hashes and are therefore not supported;
//! tlog-witness caps consistency proofs at 63 lines too.

use sha2::{Digest, Sha256};
use tlog_tiles::Hash as TlogHash;

use super::Hash;
pub use super::{ProofError, ProveError};

/// Longest proof accepted: a tree of up to 2^63 leaves has depth at most 63.
pub const MAX_PROOF_LEN: usize = 63;

/// RFC 6962 leaf hash: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

fn to_tlog(hashes: &[Hash]) -> Vec<TlogHash> {
    hashes.iter().copied().map(TlogHash).collect()
}

/// Verifies that `leaf` is the leaf hash at `index` in the tree of
/// `tree_size` leaves with root `root` (RFC 9162 2.1.3.2). Proof hashes are
/// ordered deepest first; the proof must have exactly the right length.
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::ProofTooLong { len: proof.len() });
    }
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    // Preconditions of check_record (n < t, bounded proof) hold here.
    tlog_tiles::check_record(
        &to_tlog(proof),
        tree_size,
        TlogHash(*root),
        index,
        TlogHash(*leaf),
    )
    .map_err(|_| ProofError::InclusionMismatch)
}

/// Verifies that the tree of size `second` with root `second_root` extends
/// the tree of size `first` with root `first_root` (RFC 9162 2.1.4.2; see the
/// module doc for the `first == 0` and `first == second` cases).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::ProofTooLong { len: proof.len() });
    }
    if first > second {
        return Err(ProofError::SizeOrder { first, second });
    }
    if first == 0 || first == second {
        if !proof.is_empty() {
            return Err(ProofError::UnexpectedProof);
        }
        if first == 0 && *first_root != empty_root() {
            return Err(ProofError::EmptyRootMismatch);
        }
        if first == second && first_root != second_root {
            return Err(ProofError::ConsistencyMismatch);
        }
        return Ok(());
    }
    // Preconditions of check_tree (1 <= n <= t, bounded proof) hold here.
    tlog_tiles::check_tree(
        &to_tlog(proof),
        second,
        TlogHash(*second_root),
        first,
        TlogHash(*first_root),
    )
    .map_err(|_| ProofError::ConsistencyMismatch)
}

/// Streaming root computation over leaf hashes: keeps the compact range (one
/// complete-subtree root per set bit of `size`), so memory is O(log n).
///
/// Invariant: `stack[i]` is the root of the i-th complete subtree from the
/// left, and their sizes are the set bits of `size` in decreasing order.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    stack: Vec<Hash>,
    size: u64,
}

impl RootBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one leaf hash (already `leaf_hash`ed). Merges the complete
    /// subtrees that the new leaf closes: one per trailing 1 bit of `size`.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// [`RootBuilder::push`] that also reports every complete subtree the
    /// leaf closes: `on_node(level, index, hash)` is called for the leaf
    /// itself (level 0, index = old size) and then bottom up for each merged
    /// subtree `(level, index)` covering leaves `[index·2^level,
    /// (index+1)·2^level)`. A log server uses it to grow its hash tiles.
    pub fn push_with(&mut self, leaf: Hash, mut on_node: impl FnMut(u8, u64, &Hash)) {
        let mut h = leaf;
        let mut n = self.size;
        on_node(0, self.size, &h);
        let mut level = 0u8;
        while n & 1 == 1 {
            match self.stack.pop() {
                Some(left) => h = node_hash(&left, &h),
                None => break, // unreachable by the invariant
            }
            n >>= 1;
            level += 1;
            on_node(level, n, &h);
        }
        self.stack.push(h);
        // 2^64 pushes are not reachable; saturate rather than wrap.
        self.size = self.size.saturating_add(1);
    }

    /// The compact-range hash that is the complete subtree `(level, index)`,
    /// if it is one: the subtree for set bit `level` of `size`, whose index
    /// is `(size >> level) - 1`. `None` for every other subtree.
    pub fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let above = self.size.checked_shr(u32::from(level))?;
        if above & 1 == 0 || index != above - 1 {
            return None;
        }
        // Largest first: one hash per set bit above `level`.
        let pos = (above >> 1).count_ones() as usize;
        self.stack.get(pos).copied()
    }

    /// Rebuilds a builder from a saved compact range (as returned by
    /// [`RootBuilder::compact_range`]); `None` if the number of hashes does
    /// not equal the number of set bits of `size`.
    pub fn from_compact_range(size: u64, range: Vec<Hash>) -> Option<Self> {
        (range.len() == size.count_ones() as usize).then_some(Self { stack: range, size })
    }

    /// The complete-subtree roots, left to right (one per set bit of size).
    pub fn compact_range(&self) -> &[Hash] {
        &self.stack
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// RFC 6962 root of the leaves pushed so far (folding the compact range
    /// right to left); the empty-tree root for no leaves.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The complete subtrees `(level, index)` whose roots form the compact range
/// of a tree of `size` leaves (one per set bit of `size`), largest (leftmost)
/// first: what [`RootBuilder::from_compact_range`] needs, e.g. read from
/// stored tiles.
pub fn compact_range_subtrees(size: u64) -> impl Iterator<Item = (u8, u64)> {
    (0..64u8)
        .rev()
        .filter(move |&level| size >> level & 1 == 1)
        .map(move |level| (level, (size >> level) - 1))
}

/// Root of the complete subtree over `hashes`, concatenated 32-byte node
/// hashes of one level whose count is a power of two; `None` otherwise.
/// Folds the halves recursively (depth log2 of the count), without an
/// allocation: servers call this for every step of every proof.
pub fn perfect_root(hashes: &[u8]) -> Option<Hash> {
    let n = hashes.len() / 32;
    if !hashes.len().is_multiple_of(32) || !n.is_power_of_two() {
        return None;
    }
    Some(fold_perfect(hashes))
}

/// [`perfect_root`] of a checked input: 32 · 2^k bytes.
fn fold_perfect(hashes: &[u8]) -> Hash {
    if hashes.len() == 32 {
        let mut leaf = [0u8; 32];
        leaf.copy_from_slice(hashes);
        return leaf;
    }
    let (left, right) = hashes.split_at(hashes.len() / 2);
    node_hash(&fold_perfect(left), &fold_perfect(right))
}

/// Largest power of two strictly less than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH over leaves `[lo, hi)` (`lo < hi`) from the complete subtrees of the
/// binary decomposition of `hi - lo`, folded from the right. Every range the
/// RFC 9162 recursion visits has `lo` aligned to those subtrees; anything
/// else is reported as [`ProofError::ProverInternal`].
fn range_root<E, F>(hash_at: &mut F, lo: u64, hi: u64) -> Result<Hash, ProveError<E>>
where
    E: std::fmt::Display + std::fmt::Debug,
    F: FnMut(u8, u64) -> Result<Hash, E>,
{
    let size = hi - lo;
    let mut start = hi;
    let mut acc: Option<Hash> = None;
    for level in 0..64u8 {
        if size >> level & 1 == 0 {
            continue;
        }
        start -= 1 << level;
        if start & ((1u64 << level) - 1) != 0 {
            return Err(ProveError::Input(ProofError::ProverInternal));
        }
        let h = hash_at(level, start >> level).map_err(ProveError::Source)?;
        acc = Some(match acc {
            None => h,
            Some(right) => node_hash(&h, &right),
        });
    }
    acc.ok_or(ProveError::Input(ProofError::ProverInternal))
}

/// Inclusion proof for leaf `index` in the tree of `size` leaves (RFC 9162
/// 2.1.3.1), deepest hash first. `hash_at(level, n)` must return the root of
/// the complete subtree of 2^level leaves starting at leaf `n * 2^level`
/// (level 0 = leaf hashes), e.g. read from tiles or a database. Every hash
/// is asked for once, deepest first (the proof's own order), so a source
/// that can fail fast, such as a cache that lacks a leaf-level tile, fails
/// before any hashing above it; a failing source is [`ProveError::Source`].
/// The tests check the proofs against `tlog_tiles`' `prove_record` (Go
/// `sumdb/tlog`) and `rs_merkle`.
pub fn inclusion_proof<E, F>(
    index: u64,
    size: u64,
    mut hash_at: F,
) -> Result<Vec<Hash>, ProveError<E>>
where
    E: std::fmt::Display + std::fmt::Debug,
    F: FnMut(u8, u64) -> Result<Hash, E>,
{
    if index >= size {
        return Err(ProveError::Input(ProofError::IndexOutOfRange {
            index,
            size,
        }));
    }
    // The RFC 9162 recursion, from the root down: one range per proof hash.
    let mut ranges = Vec::with_capacity(MAX_PROOF_LEN);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
        }
    }
    deepest_first(&ranges, &mut hash_at)
}

/// The roots of `ranges`, listed from the root down, in reverse: the proof,
/// deepest hash first, with each hash asked for in that order.
fn deepest_first<E, F>(ranges: &[(u64, u64)], hash_at: &mut F) -> Result<Vec<Hash>, ProveError<E>>
where
    E: std::fmt::Display + std::fmt::Debug,
    F: FnMut(u8, u64) -> Result<Hash, E>,
{
    ranges
        .iter()
        .rev()
        .map(|&(lo, hi)| range_root(hash_at, lo, hi))
        .collect()
}

/// Consistency proof from size `first` to size `second` (RFC 9162 2.1.4.1);
/// empty when `first` is 0 or equals `second`. See [`inclusion_proof`] for
/// `hash_at`; the tests check the proofs against `tlog_tiles`' `prove_tree`.
pub fn consistency_proof<E, F>(
    first: u64,
    second: u64,
    mut hash_at: F,
) -> Result<Vec<Hash>, ProveError<E>>
where
    E: std::fmt::Display + std::fmt::Debug,
    F: FnMut(u8, u64) -> Result<Hash, E>,
{
    if first > second {
        return Err(ProveError::Input(ProofError::SizeOrder { first, second }));
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::with_capacity(MAX_PROOF_LEN);
    let (mut lo, mut hi) = (0u64, second);
    let mut whole_old_tree = true; // RFC 9162's `b`
    loop {
        let (size, m) = (hi - lo, first - lo);
        if m == size {
            if !whole_old_tree {
                ranges.push((lo, hi));
            }
            break;
        }
        let k = split_point(size);
        if m <= k {
            ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            ranges.push((lo, lo + k));
            lo += k;
            whole_old_tree = false;
        }
    }
    deepest_first(&ranges, &mut hash_at)
}

/// Root of the complete subtree `(level, n)` over in-memory leaf hashes.
fn subtree_from_leaves(leaves: &[Hash], level: u8, n: u64) -> Result<Hash, ProofError> {
    let out = ProofError::SubtreeOutOfRange { level, index: n };
    let width = 1u64.checked_shl(u32::from(level)).ok_or(out.clone())?;
    let start = n.checked_mul(width).ok_or(out.clone())?;
    let end = start.checked_add(width).ok_or(out.clone())?;
    let (start, end) = (
        usize::try_from(start).map_err(|_| out.clone())?,
        usize::try_from(end).map_err(|_| out.clone())?,
    );
    let slice = leaves.get(start..end).ok_or(out)?;
    let mut b = RootBuilder::new();
    slice.iter().for_each(|h| b.push(*h));
    Ok(b.root())
}

fn flatten(e: ProveError<ProofError>) -> ProofError {
    match e {
        ProveError::Input(e) | ProveError::Source(e) => e,
    }
}

fn check_leaves(leaves: &[Hash], size: u64) -> Result<(), ProofError> {
    if u64::try_from(leaves.len()).map_or(true, |have| have < size) {
        return Err(ProofError::NotEnoughLeaves {
            size,
            have: leaves.len(),
        });
    }
    Ok(())
}

/// Inclusion proof computed from in-memory leaf hashes (tests, tools); only
/// the first `size` leaves are used. O(size) time.
pub fn inclusion_proof_from_leaves(
    leaves: &[Hash],
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_leaves(leaves, size)?;
    inclusion_proof(index, size, |l, n| subtree_from_leaves(leaves, l, n)).map_err(flatten)
}

/// Consistency proof computed from in-memory leaf hashes (tests, tools).
pub fn consistency_proof_from_leaves(
    leaves: &[Hash],
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_leaves(leaves, second)?;
    consistency_proof(first, second, |l, n| subtree_from_leaves(leaves, l, n)).map_err(flatten)
}
