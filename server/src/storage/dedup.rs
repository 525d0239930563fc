//! Deduplication: one index per entry bytes, and one index per claim.
//!
//! # Contract
//! - `leaf_index(leaf_hash)`: the same entry bytes always get the same index.
//! - `claim_index(claim_id)`: an entry whose claim id (spec/entry.md, "Claim identity":
//!   everything except the COSE signature) is already logged gets that entry's index and
//!   is not appended, so a re-signed twin of a logged attestation (ECDSA (r, n - s)) or
//!   another encoding of its envelope adds nothing. Bytes that are not an attestlog entry
//!   with a decodable COSE_Sign1 have no claim id and dedup by leaf hash only.
//! - A duplicate is answered with the index and the leaf hash of the entry that is
//!   logged, not of the bytes submitted, so the proof given with it verifies.
//! - Entries logged before schema version 4 get their claim rows at migration time, in
//!   the migration's transaction ([`backfill_claim_index`]), in index order with
//!   `INSERT OR IGNORE`: if an old log already holds several copies of one claim, the
//!   lowest index is the one later submissions get. At migration rather than lazily on
//!   open, so a database at version 4 always has a complete `claim_index` and no
//!   append can race a half-done backfill.

use std::collections::HashMap;

use attestlog::claim::entry_claim_id;
use rusqlite::{params, Connection, OptionalExtension};

use super::{tree, Hash, StorageError};

/// The claim id of entry bytes, if they are an attestlog entry with a decodable COSE_Sign1.
pub(super) fn claim_id_of(bytes: &[u8]) -> Option<Hash> {
    entry_claim_id(bytes).ok()
}

pub(super) fn lookup_leaf(c: &Connection, leaf_hash: &Hash) -> Result<Option<u64>, StorageError> {
    let mut st = c.prepare_cached("SELECT idx FROM leaf_index WHERE leaf_hash = ?1")?;
    Ok(st
        .query_row([&leaf_hash[..]], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|i| i as u64))
}

pub(super) fn lookup_claim(c: &Connection, claim_id: &Hash) -> Result<Option<u64>, StorageError> {
    let mut st = c.prepare_cached("SELECT idx FROM claim_index WHERE claim_id = ?1")?;
    Ok(st
        .query_row([&claim_id[..]], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|i| i as u64))
}

/// The leaf hash of the logged entry at `index`.
fn leaf_hash_at(c: &Connection, index: u64) -> Result<Hash, StorageError> {
    let mut st = c.prepare_cached("SELECT data FROM entries WHERE idx = ?1")?;
    let data: Option<Vec<u8>> = st.query_row([index as i64], |r| r.get(0)).optional()?;
    let data = data.ok_or_else(|| {
        StorageError::Corrupt(format!("claim_index names entry {index}, which is missing"))
    })?;
    Ok(tree::leaf_hash(&data))
}

/// Dedup state of one batch: what it appended so far, checked before the database.
#[derive(Default)]
pub(super) struct BatchDedup {
    leaves: HashMap<Hash, u64>,
    claims: HashMap<Hash, (u64, Hash)>,
}

impl BatchDedup {
    /// Index and leaf hash of the logged entry this one duplicates (same bytes, or
    /// same claim), in this batch or in the log.
    pub fn existing(
        &self,
        c: &Connection,
        leaf_hash: &Hash,
        claim_id: Option<&Hash>,
    ) -> Result<Option<(u64, Hash)>, StorageError> {
        let same_bytes = match self.leaves.get(leaf_hash) {
            Some(&i) => Some(i),
            None => lookup_leaf(c, leaf_hash)?,
        };
        if let Some(index) = same_bytes {
            return Ok(Some((index, *leaf_hash)));
        }
        let Some(claim_id) = claim_id else {
            return Ok(None);
        };
        if let Some(&found) = self.claims.get(claim_id) {
            return Ok(Some(found));
        }
        match lookup_claim(c, claim_id)? {
            Some(index) => Ok(Some((index, leaf_hash_at(c, index)?))),
            None => Ok(None),
        }
    }

    /// Records a newly appended entry, in the batch and in the dedup tables.
    pub fn record(
        &mut self,
        c: &Connection,
        index: u64,
        leaf_hash: &Hash,
        claim_id: Option<&Hash>,
    ) -> Result<(), StorageError> {
        let idx = index as i64;
        c.prepare_cached("INSERT INTO leaf_index (leaf_hash, idx) VALUES (?1, ?2)")?
            .execute(params![&leaf_hash[..], idx])?;
        self.leaves.insert(*leaf_hash, index);
        if let Some(claim_id) = claim_id {
            c.prepare_cached("INSERT INTO claim_index (claim_id, idx) VALUES (?1, ?2)")?
                .execute(params![&claim_id[..], idx])?;
            self.claims.insert(*claim_id, (index, *leaf_hash));
        }
        Ok(())
    }

    /// True when the batch appended nothing.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

/// Fills `claim_index` for every logged entry, in index order, keeping the first index
/// of each claim. Runs inside the migration transaction to schema version 4. Returns
/// the number of rows added.
pub(super) fn backfill_claim_index(c: &Connection) -> Result<u64, StorageError> {
    let mut read = c.prepare("SELECT idx, data FROM entries ORDER BY idx")?;
    let mut insert =
        c.prepare("INSERT OR IGNORE INTO claim_index (claim_id, idx) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    let mut added = 0;
    while let Some(row) = rows.next()? {
        let idx: i64 = row.get(0)?;
        let data = row
            .get_ref(1)?
            .as_blob()
            .map_err(|e| StorageError::Corrupt(format!("entry {idx} is not a blob: {e}")))?;
        if let Some(claim_id) = claim_id_of(data) {
            added += insert.execute(params![&claim_id[..], idx])? as u64;
        }
    }
    Ok(added)
}
