//! The SQLite side of dedup: `leaf_index(leaf_hash PRIMARY KEY)` maps a leaf
//! hash to its index and `claim_index(claim_id PRIMARY KEY)` a claim id to the
//! index of its first entry. The dedup decisions are made above the backend
//! (`storage/log.rs`); this module holds the lookups and the backfill.
//!
//! Entries logged before schema version 4 get their claim rows at migration
//! time, in the migration's transaction ([`backfill_claim_index`]), in index
//! order with `INSERT OR IGNORE`: if an old log already holds several copies
//! of one claim, the lowest index is the one later submissions get. At
//! migration rather than lazily on open, so a database at version 4 always
//! has a complete `claim_index` and no append can race a half-done backfill.

use attestlog::claim::entry_claim_id;
use rusqlite::{params, Connection, OptionalExtension};

use crate::storage::{Hash, StorageError};

/// The claim id of entry bytes, if they are an attestlog entry with a decodable COSE_Sign1.
fn claim_id_of(bytes: &[u8]) -> Option<Hash> {
    entry_claim_id(bytes).ok()
}

/// Runs the one-key `SELECT idx ...` query `sql` for each key.
pub(super) fn lookup(
    c: &Connection,
    sql: &str,
    keys: &[Hash],
) -> Result<Vec<Option<u64>>, StorageError> {
    let mut st = c.prepare_cached(sql)?;
    keys.iter()
        .map(|k| {
            Ok(st
                .query_row([&k[..]], |r| r.get::<_, i64>(0))
                .optional()?
                .map(|i| i as u64))
        })
        .collect()
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
