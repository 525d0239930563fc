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
//! On the wire that is two pipelined round trips: `BEGIN` with 1 and 2,
//! then 3 with `NOTIFY` and `COMMIT` (a failed statement turns the `COMMIT`
//! into a rollback). The statements are prepared once per connection.
//!
//! A failure anywhere rolls the whole batch back (the connection is dropped
//! on an I/O error, which PostgreSQL treats as a rollback). Primary keys
//! refuse a duplicate index or dedup key, so even a bug cannot overwrite.

use std::collections::HashMap;

use attestlog::tlog::merkle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::conn::Conn;

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

/// Dedup lookups, one row `(key, idx)` per key found. Each key is a
/// correlated scalar subquery, which PostgreSQL runs as a primary-key
/// lookup whatever its statistics say: the obvious `key = ANY($1)` is
/// planned as a sequential scan while the table is young and unanalyzed,
/// which is exactly when a new log takes its first heavy load.
pub const FIND_LEAVES: &str = "SELECT k, i FROM (SELECT k, \
     (SELECT idx FROM leaf_index WHERE leaf_hash = k) AS i \
     FROM UNNEST($1::bytea[]) AS u(k) OFFSET 0) s WHERE i IS NOT NULL";
/// As [`FIND_LEAVES`], for claim ids.
pub const FIND_CLAIMS: &str = "SELECT k, i FROM (SELECT k, \
     (SELECT idx FROM claim_index WHERE claim_id = k) AS i \
     FROM UNNEST($1::bytea[]) AS u(k) OFFSET 0) s WHERE i IS NOT NULL";

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
        // Two subjects of one statement may name the same digest.
        for (n, (kind, key)) in e.search_keys.iter().enumerate() {
            if e.search_keys[..n]
                .iter()
                .any(|(k, v)| k == kind && v == key)
            {
                continue;
            }
            c.search_kind.push(kind.code() as i16);
            c.search_key.push(key);
            c.search_idx.push(idx);
        }
    }
    Ok(c)
}

/// The claim lookup of a sequencing transaction: `(claim id, idx, data)`
/// of the entry logged under each claim id found (its bytes give the
/// logged leaf hash). Correlated scalar subqueries, as [`FIND_LEAVES`].
const FIND_CLAIM_ENTRIES: &str = "SELECT k, i, (SELECT data FROM entries WHERE idx = i) \
     FROM (SELECT k, (SELECT idx FROM claim_index WHERE claim_id = k) AS i \
           FROM UNNEST($1::bytea[]) AS u(k) OFFSET 0) s WHERE i IS NOT NULL";
const LOCK_SEQ_HEAD: &str = "SELECT next_idx FROM seq_head FOR UPDATE";
const INSERT_ENTRIES: &str =
    "INSERT INTO entries (idx, data) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])";
const INSERT_LEAVES: &str =
    "INSERT INTO leaf_index (leaf_hash, idx) SELECT * FROM UNNEST($1::bytea[], $2::bigint[])";
const INSERT_CLAIMS: &str =
    "INSERT INTO claim_index (claim_id, idx) SELECT * FROM UNNEST($1::bytea[], $2::bigint[])";
/// A plain insert: the rows are distinct (`columns` drops an entry's
/// repeated keys) and their indices new, so no conflict is possible and
/// none is checked for (`ON CONFLICT` costs a second index search per row).
const INSERT_SEARCH: &str = "INSERT INTO search (kind, key, idx) \
     SELECT * FROM UNNEST($1::smallint[], $2::bytea[], $3::bigint[])";
const MOVE_SEQ_HEAD: &str = "UPDATE seq_head SET next_idx = $1";

/// Dedups and sequences `batch` in one transaction; see the module doc.
/// Two pipelines: the lock and the lookups, then every write.
pub async fn sequence(
    client: &mut Conn,
    batch: &[NewEntry],
    claims: &[Option<Hash>],
) -> Result<Vec<Appended>, StorageError> {
    let (
        lock,
        find_leaves,
        find_claims,
        ins_entries,
        ins_leaves,
        ins_claims,
        ins_search,
        move_head,
    ) = tokio::try_join!(
        client.prepare(LOCK_SEQ_HEAD),
        client.prepare(FIND_LEAVES),
        client.prepare(FIND_CLAIM_ENTRIES),
        client.prepare(INSERT_ENTRIES),
        client.prepare(INSERT_LEAVES),
        client.prepare(INSERT_CLAIMS),
        client.prepare(INSERT_SEARCH),
        client.prepare(MOVE_SEQ_HEAD),
    )?;
    let leaves: Vec<&[u8]> = batch.iter().map(|e| &e.leaf_hash[..]).collect();
    let claim_keys: Vec<&[u8]> = claims.iter().flatten().map(|c| &c[..]).collect();
    // The lookups run after the lock is granted (statements of one
    // connection run in order), so under READ COMMITTED they see every
    // sequencing transaction committed before this one.
    let (p_leaves, p_claims): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
        ([&leaves], [&claim_keys]);
    let (head, leaf_rows, claim_rows) = client
        .begin_with(async {
            tokio::try_join!(
                client.query_one(&lock, &[]),
                client.query(&find_leaves, &p_leaves),
                client.query(&find_claims, &p_claims),
            )
        })
        .await?;
    let assigned = assign_rows(batch, claims, &head, &leaf_rows, &claim_rows);
    let (next, Assigned { out, new }) = match assigned {
        Ok(a) if !a.1.new.is_empty() => a,
        other => {
            // An error, or nothing new: nothing to write.
            client.rollback().await?;
            return other.map(|(_, a)| a.out);
        }
    };
    let c = columns(&new)?;
    let new_next = next + new.len() as i64;
    // Empty arrays insert nothing: every statement can go in the pipeline.
    let p_entries: [&(dyn ToSql + Sync); 2] = [&c.idx, &c.data];
    let p_leaves: [&(dyn ToSql + Sync); 2] = [&c.leaf, &c.idx];
    let p_claims: [&(dyn ToSql + Sync); 2] = [&c.claim_id, &c.claim_idx];
    let p_search: [&(dyn ToSql + Sync); 3] = [&c.search_kind, &c.search_key, &c.search_idx];
    let p_head: [&(dyn ToSql + Sync); 1] = [&new_next];
    client
        .commit_with(SEQUENCED_CHANNEL, new_next as u64, async {
            tokio::try_join!(
                client.execute(&ins_entries, &p_entries),
                client.execute(&ins_leaves, &p_leaves),
                client.execute(&ins_claims, &p_claims),
                client.execute(&ins_search, &p_search),
                client.execute(&move_head, &p_head),
            )
        })
        .await?;
    Ok(out)
}

/// `dedup::assign` over the answers of the lookups: the next index and
/// where each input goes.
fn assign_rows<'a>(
    batch: &'a [NewEntry],
    claims: &'a [Option<Hash>],
    head: &Row,
    leaf_rows: &[Row],
    claim_rows: &[Row],
) -> Result<(i64, Assigned<'a>), StorageError> {
    let next: i64 = head.try_get(0)?;
    let mut leaf_found: HashMap<Hash, u64> = HashMap::new();
    for r in leaf_rows {
        let idx: i64 = r.try_get(1)?;
        leaf_found.insert(hash_of(r.try_get(0)?, "leaf hash")?, idx as u64);
    }
    let mut claim_hits: HashMap<Hash, u64> = HashMap::new();
    let mut claim_leaves: HashMap<u64, Hash> = HashMap::new();
    for r in claim_rows {
        let idx = r.try_get::<_, i64>(1)? as u64;
        claim_hits.insert(hash_of(r.try_get(0)?, "claim id")?, idx);
        claim_leaves.insert(idx, merkle::leaf_hash(r.try_get::<_, &[u8]>(2)?));
    }
    let leaf_hits = batch
        .iter()
        .map(|e| leaf_found.get(&e.leaf_hash).copied())
        .collect();
    let assigned = assign(
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
    Ok((next, assigned))
}

/// The bytes of entries `[from, to)` in index order, checked dense.
pub async fn entries(client: &Conn, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StorageError> {
    if to <= from {
        return Ok(Vec::new());
    }
    let (lo, hi) = (i64_of(from, "index")?, i64_of(to, "index")?);
    let range = client
        .prepare("SELECT idx, data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx")
        .await?;
    let rows = client.query(&range, &[&lo, &hi]).await?;
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

/// Fills the `None`s of `found` (entries `from..`, some already known) with
/// the stored entries, in one statement; [`StorageError::Corrupt`] if any
/// of them is missing.
pub async fn fill_entries(
    client: &Conn,
    from: u64,
    mut found: Vec<Option<Vec<u8>>>,
) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut wanted = Vec::new();
    for (i, e) in found.iter().enumerate() {
        if e.is_none() {
            wanted.push(i64_of(from + i as u64, "index")?);
        }
    }
    if !wanted.is_empty() {
        let at = client
            .prepare("SELECT idx, data FROM entries WHERE idx = ANY($1)")
            .await?;
        for r in client.query(&at, &[&wanted]).await? {
            let idx: i64 = r.try_get(0)?;
            let slot = u64::try_from(idx)
                .ok()
                .and_then(|i| i.checked_sub(from))
                .and_then(|i| found.get_mut(usize::try_from(i).ok()?));
            if let Some(slot) = slot {
                *slot = Some(r.try_get(1)?);
            }
        }
    }
    found
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.ok_or_else(|| {
                StorageError::Corrupt(format!("sequenced entry {} is missing", from + i as u64))
            })
        })
        .collect()
}
