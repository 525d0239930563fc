//! Dedup and dense index assignment of one batch, shared by every write
//! path ([`Log::append_batch`](super::Log::append_batch) on a single-writer
//! backend, the PostgreSQL sequencing transaction in cluster mode).
//!
//! In input order, an entry whose bytes (leaf hash) or claim id is already
//! logged, or appeared earlier in the batch, gets that entry's index
//! (`duplicate = true`, the logged entry's leaf hash); every other entry gets
//! the next index from `first` on. The caller must make the result exact:
//! SQLite's writer holds its lock from the lookups until the new entries are
//! committed; PostgreSQL's sequencing looks up before it takes the
//! `seq_head` lock, with provisional indices from `first`, and relies on
//! the unique dedup keys to refuse (and redo) a batch that another frontend
//! raced (`postgres/sequence.rs`).

use std::collections::HashMap;

use super::{Appended, BatchEntry, Hash, NewEntry, StorageError};

/// The batch's fate: one [`Appended`] per input, and the new entries.
pub struct Assigned<'a> {
    pub out: Vec<Appended>,
    pub new: Vec<BatchEntry<'a>>,
}

/// Assigns indices to `batch` (claims: its claim ids, by position).
/// `leaf_hits[i]`: the logged index of `batch[i]`'s leaf hash, if any;
/// `claim_hits`: the logged index of each claim id found; `leaf_at(index)`:
/// the leaf hash of the logged entry at `index` (asked only for a claim
/// duplicate in other bytes).
pub fn assign<'a>(
    batch: &'a [NewEntry],
    claims: &'a [Option<Hash>],
    first: u64,
    leaf_hits: Vec<Option<u64>>,
    claim_hits: &HashMap<Hash, u64>,
    mut leaf_at: impl FnMut(u64) -> Result<Hash, StorageError>,
) -> Result<Assigned<'a>, StorageError> {
    let mut out = Vec::with_capacity(batch.len());
    let mut new: Vec<BatchEntry<'a>> = Vec::new();
    let mut batch_leaves: HashMap<Hash, u64> = HashMap::new();
    let mut batch_claims: HashMap<Hash, (u64, Hash)> = HashMap::new();
    for ((e, claim), leaf_hit) in batch.iter().zip(claims).zip(leaf_hits) {
        let same_bytes = batch_leaves.get(&e.leaf_hash).copied().or(leaf_hit);
        let existing = match (same_bytes, claim) {
            (Some(index), _) => Some((index, e.leaf_hash)),
            (None, Some(c)) => match (batch_claims.get(c), claim_hits.get(c)) {
                (Some(&found), _) => Some(found),
                (None, Some(&index)) => Some((index, leaf_at(index)?)),
                (None, None) => None,
            },
            (None, None) => None,
        };
        if let Some((index, leaf_hash)) = existing {
            out.push(Appended {
                index,
                duplicate: true,
                leaf_hash,
            });
            continue;
        }
        let index = first + new.len() as u64;
        batch_leaves.insert(e.leaf_hash, index);
        if let Some(c) = claim {
            batch_claims.insert(*c, (index, e.leaf_hash));
        }
        new.push(BatchEntry {
            index,
            bytes: &e.bytes,
            leaf_hash: &e.leaf_hash,
            claim_id: claim.as_ref(),
            search_keys: &e.search_keys,
        });
        out.push(Appended {
            index,
            duplicate: false,
            leaf_hash: e.leaf_hash,
        });
    }
    Ok(Assigned { out, new })
}
