//! Sequencing on PostgreSQL: [`sequence`], one READ COMMITTED transaction
//! per batch, run by any frontend.
//!
//! 1. `SELECT next_idx FROM seq_head FOR UPDATE`: the row lock serializes
//!    the sequencing transactions of all frontends. Under READ COMMITTED
//!    every later statement of the transaction sees everything committed
//!    before the lock was granted, so the dedup lookups are current.
//! 2. Look the batch's leaf hashes and claim ids up (integrated or only
//!    sequenced entries alike), then `dedup::assign` from `next_idx`.
//! 3. One multi-row `INSERT ... UNNEST` per table (entries, leaf_index,
//!    claim_index, search), `UPDATE seq_head`, and `NOTIFY
//!    attestlog_sequenced` (delivered at COMMIT) to wake the integrator.
//! 4. COMMIT: the entries are durable at their indices. Because the lock is
//!    held until COMMIT, transactions commit dense index ranges in index
//!    order: no reader ever sees index n+1 committed without n.
//!
//! A failure anywhere rolls the whole batch back (the connection is dropped
//! on an I/O error, which PostgreSQL treats as a rollback). Primary keys
//! refuse a duplicate index or dedup key, so even a bug cannot overwrite.

use std::collections::HashMap;

use attestlog::tlog::merkle;
use tokio_postgres::Client;

use crate::storage::dedup::{assign, Assigned};
use crate::storage::{Appended, BatchEntry, Hash, NewEntry, StorageError};

/// The channel a sequencing commit notifies.
pub const SEQUENCED_CHANNEL: &str = "attestlog_sequenced";

pub fn i64_of(n: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::Corrupt(format!("{what} {n} is over i64")))
}

pub fn hash_of(bytes: &[u8], what: &str) -> Result<Hash, StorageError> {
    bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Column vectors of the new entries, ready to bind as PostgreSQL arrays.
#[derive(Default)]
struct Columns<'a> {
    idx: Vec<i64>,
    data: Vec<&'a [u8]>,
    leaf: Vec<&'a [u8]>,
    claim_id: Vec<&'a [u8]>,
    claim_idx: Vec<i64>,
    search_kind: Vec<i16>,
    search_key: Vec<&'a [u8]>,
    search_idx: Vec<i64>,
}

fn columns<'a>(entries: &[BatchEntry<'a>]) -> Result<Columns<'a>, StorageError> {
    let mut c = Columns::default();
    for e in entries {
        let idx = i64_of(e.index, "entry index")?;
        c.idx.push(idx);
        c.data.push(e.bytes);
        c.leaf.push(&e.leaf_hash[..]);
        if let Some(claim) = e.claim_id {
            c.claim_id.push(&claim[..]);
            c.claim_idx.push(idx);
        }
        for (kind, key) in e.search_keys {
            c.search_kind.push(kind.code() as i16);
            c.search_key.push(key);
            c.search_idx.push(idx);
        }
    }
    Ok(c)
}

/// Dedups and sequences `batch` in one transaction; see the module doc.
pub async fn sequence(
    client: &mut Client,
    batch: &[NewEntry],
    claims: &[Option<Hash>],
) -> Result<Vec<Appended>, StorageError> {
    let tx = client.transaction().await?;
    let next: i64 = tx
        .query_one("SELECT next_idx FROM seq_head FOR UPDATE", &[])
        .await?
        .get(0);
    let leaves: Vec<&[u8]> = batch.iter().map(|e| &e.leaf_hash[..]).collect();
    let mut leaf_found: HashMap<Hash, u64> = HashMap::new();
    for r in tx
        .query(
            "SELECT leaf_hash, idx FROM leaf_index WHERE leaf_hash = ANY($1)",
            &[&leaves],
        )
        .await?
    {
        let idx: i64 = r.try_get(1)?;
        leaf_found.insert(hash_of(r.try_get(0)?, "leaf hash")?, idx as u64);
    }
    let claim_keys: Vec<&[u8]> = claims.iter().flatten().map(|c| &c[..]).collect();
    let mut claim_hits: HashMap<Hash, u64> = HashMap::new();
    let mut claim_leaves: HashMap<u64, Hash> = HashMap::new();
    if !claim_keys.is_empty() {
        for r in tx
            .query(
                "SELECT c.claim_id, c.idx, e.data FROM claim_index c \
                 JOIN entries e ON e.idx = c.idx WHERE c.claim_id = ANY($1)",
                &[&claim_keys],
            )
            .await?
        {
            let idx = r.try_get::<_, i64>(1)? as u64;
            claim_hits.insert(hash_of(r.try_get(0)?, "claim id")?, idx);
            claim_leaves.insert(idx, merkle::leaf_hash(r.try_get::<_, &[u8]>(2)?));
        }
    }
    let leaf_hits = batch
        .iter()
        .map(|e| leaf_found.get(&e.leaf_hash).copied())
        .collect();
    let Assigned { out, new } = assign(
        batch,
        claims,
        next as u64,
        leaf_hits,
        &claim_hits,
        |index| {
            claim_leaves.get(&index).copied().ok_or_else(|| {
                StorageError::Corrupt(format!("claim index names entry {index}, which is missing"))
            })
        },
    )?;
    if new.is_empty() {
        // Nothing to write: the rollback on drop releases the lock.
        return Ok(out);
    }
    let c = columns(&new)?;
    tx.execute(
        "INSERT INTO entries (idx, data) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
        &[&c.idx, &c.data],
    )
    .await?;
    tx.execute(
        "INSERT INTO leaf_index (leaf_hash, idx) SELECT * FROM UNNEST($1::bytea[], $2::bigint[])",
        &[&c.leaf, &c.idx],
    )
    .await?;
    if !c.claim_id.is_empty() {
        tx.execute(
            "INSERT INTO claim_index (claim_id, idx) \
             SELECT * FROM UNNEST($1::bytea[], $2::bigint[])",
            &[&c.claim_id, &c.claim_idx],
        )
        .await?;
    }
    if !c.search_kind.is_empty() {
        tx.execute(
            "INSERT INTO search (kind, key, idx) \
             SELECT * FROM UNNEST($1::smallint[], $2::bytea[], $3::bigint[]) \
             ON CONFLICT DO NOTHING",
            &[&c.search_kind, &c.search_key, &c.search_idx],
        )
        .await?;
    }
    let new_next = next + new.len() as i64;
    tx.execute("UPDATE seq_head SET next_idx = $1", &[&new_next])
        .await?;
    tx.batch_execute(&format!("NOTIFY {SEQUENCED_CHANNEL}"))
        .await?;
    tx.commit().await?;
    Ok(out)
}

/// The bytes of entries `[from, to)` in index order, checked dense.
pub async fn entries(client: &Client, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StorageError> {
    if to <= from {
        return Ok(Vec::new());
    }
    let (lo, hi) = (i64_of(from, "index")?, i64_of(to, "index")?);
    let rows = client
        .query(
            "SELECT idx, data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            &[&lo, &hi],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let idx: i64 = r.try_get(0)?;
        if idx != lo + i as i64 {
            return Err(StorageError::Corrupt(format!(
                "sequenced entry {} is missing (found {idx} in its place)",
                lo + i as i64
            )));
        }
        out.push(r.try_get(1)?);
    }
    if out.len() as u64 != to - from {
        return Err(StorageError::Corrupt(format!(
            "entries [{from}, {to}) are sequenced but only {} are stored",
            out.len()
        )));
    }
    Ok(out)
}
