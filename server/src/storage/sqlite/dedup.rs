//! The SQLite side of dedup: `leaf_index(leaf_prefix, idx)` maps a leaf hash
//! to its index and `claim_index(claim_prefix, idx)` a claim id to the index
//! of its first entry. The dedup decisions are made above the backend
//! (`storage/log.rs`); this module holds the lookups, the keys as stored and
//! the backfill.
//!
//! # Keys are prefixes, answers are exact
//! Since schema version 6 each index stores the first [`KEY_PREFIX`] bytes
//! of its 32-byte key, which saves 16 bytes per entry and per index. A
//! prefix alone does not identify an entry, so [`lookup`] reads every entry
//! whose row carries the prefix, lowest index first, recomputes its full
//! leaf hash or claim id, and answers with the first that equals the key
//! asked for. A prefix collision (probability 2^-128 per pair by chance,
//! about 2^64 hashes to find one) therefore costs one more entry read and
//! never a wrong index; the answer is the same as a lookup by the full key.
//!
//! # Backfill
//! Entries logged before schema version 4 get their claim rows at migration
//! time, in the migration's transaction ([`backfill_claim_index`]), in index
//! order with `INSERT OR IGNORE`: if an old log already holds several copies
//! of one claim, the lowest index is the one later submissions get. At
//! migration rather than lazily on open, so a database at version 4 always
//! has a complete `claim_index` and no append can race a half-done backfill.
//! (Version 4's `claim_index` still has the full claim id as its primary
//! key; version 6 cuts it.)

use attestlog::claim::entry_claim_id;
use attestlog::tlog::merkle;
use rusqlite::{params, Connection};

use crate::storage::{Hash, StorageError};

/// Bytes of a leaf hash or claim id stored as the key of `leaf_index` and
/// `claim_index` (schema version 6 and later).
pub(super) const KEY_PREFIX: usize = 16;

/// One of the two dedup indexes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Index {
    /// `leaf_index`: the RFC 9162 leaf hash of the entry bytes.
    Leaf,
    /// `claim_index`: the claim id (spec/entry.md, "Claim identity").
    Claim,
}

impl Index {
    /// The stored part of `key`.
    pub(super) fn prefix(key: &Hash) -> &[u8] {
        &key[..KEY_PREFIX]
    }

    /// `INSERT` of one row: `?1` the prefix, `?2` the index.
    pub(super) fn insert_sql(self) -> &'static str {
        match self {
            Index::Leaf => "INSERT INTO leaf_index (leaf_prefix, idx) VALUES (?1, ?2)",
            Index::Claim => "INSERT INTO claim_index (claim_prefix, idx) VALUES (?1, ?2)",
        }
    }

    /// The candidates for one prefix `?1`, lowest index first, with their entries.
    fn candidates_sql(self) -> &'static str {
        match self {
            Index::Leaf => {
                "SELECT k.idx, e.data FROM leaf_index k JOIN entries e ON e.idx = k.idx \
                 WHERE k.leaf_prefix = ?1 ORDER BY k.idx"
            }
            Index::Claim => {
                "SELECT k.idx, e.data FROM claim_index k JOIN entries e ON e.idx = k.idx \
                 WHERE k.claim_prefix = ?1 ORDER BY k.idx"
            }
        }
    }

    /// Every row with its entry, for `migrate`'s export.
    pub(super) fn all_rows_sql(self) -> &'static str {
        match self {
            Index::Leaf => {
                "SELECT k.idx, e.data, k.leaf_prefix FROM leaf_index k \
                 JOIN entries e ON e.idx = k.idx"
            }
            Index::Claim => {
                "SELECT k.idx, e.data, k.claim_prefix FROM claim_index k \
                 JOIN entries e ON e.idx = k.idx"
            }
        }
    }

    /// The full key of entry bytes, recomputed; `None` where the entry has
    /// none (not an attestlog entry with a decodable COSE_Sign1, for claims).
    pub(super) fn key_of(self, bytes: &[u8]) -> Option<Hash> {
        match self {
            Index::Leaf => Some(merkle::leaf_hash(bytes)),
            Index::Claim => entry_claim_id(bytes).ok(),
        }
    }
}

/// Column `col` of `row` as the bytes of entry `idx`; not a blob is corrupt.
pub(super) fn entry_blob<'r>(
    row: &'r rusqlite::Row<'_>,
    col: usize,
    idx: i64,
) -> Result<&'r [u8], StorageError> {
    row.get_ref(col)?
        .as_blob()
        .map_err(|e| StorageError::Corrupt(format!("entry {idx} is not a blob: {e}")))
}

/// The index of the entry whose full key is each of `keys`, or `None`.
pub(super) fn lookup(
    c: &Connection,
    index: Index,
    keys: &[Hash],
) -> Result<Vec<Option<u64>>, StorageError> {
    let mut st = c.prepare_cached(index.candidates_sql())?;
    keys.iter()
        .map(|k| {
            let mut rows = st.query([Index::prefix(k)])?;
            while let Some(row) = rows.next()? {
                let idx: i64 = row.get(0)?;
                if index.key_of(entry_blob(row, 1, idx)?).as_ref() == Some(k) {
                    return Ok(Some(idx as u64));
                }
            }
            Ok(None)
        })
        .collect()
}

/// Fills `claim_index` for every logged entry, in index order, keeping the first index
/// of each claim. Runs inside the migration transaction to schema version 4 (whose
/// `claim_index` is keyed by the full claim id). Returns the number of rows added.
pub(super) fn backfill_claim_index(c: &Connection) -> Result<u64, StorageError> {
    let mut read = c.prepare("SELECT idx, data FROM entries ORDER BY idx")?;
    let mut insert =
        c.prepare("INSERT OR IGNORE INTO claim_index (claim_id, idx) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    let mut added = 0;
    while let Some(row) = rows.next()? {
        let idx: i64 = row.get(0)?;
        if let Some(claim_id) = Index::Claim.key_of(entry_blob(row, 1, idx)?) {
            added += insert.execute(params![&claim_id[..], idx])? as u64;
        }
    }
    Ok(added)
}
