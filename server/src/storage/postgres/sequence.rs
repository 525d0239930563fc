//! Sequencing on PostgreSQL: [`sequence`], run by any frontend.
//!
//! 1. The dedup lookups of the batch's leaf hashes and claim ids (logged
//!    or only sequenced entries alike), each its own statement outside any
//!    transaction, and `dedup::assign` with PROVISIONAL indices: the k-th
//!    new entry of the batch gets [`PROVISIONAL`] + k.
//! 2. One READ COMMITTED transaction: `SELECT next_idx FROM seq_head FOR
//!    UPDATE` (the row lock serializes the sequencing transactions of all
//!    frontends; waited for at most [`LOCK_WAIT`]); one multi-row `INSERT
//!    ... UNNEST` per table (entries, leaf_index, claim_index, search) whose
//!    indices PostgreSQL computes as `next_idx + k`; `UPDATE seq_head` by the number of new entries;
//!    `pg_notify('attestlog_sequenced', next_idx)` (delivered at COMMIT) to
//!    wake the integrator; COMMIT. Each index is then `next_idx + k`.
//! 3. The lock is held until COMMIT, so transactions commit dense index
//!    ranges in index order: no reader ever sees index n+1 committed
//!    without n. It is held for one pipelined round trip, never while a
//!    frontend's thread waits for a core to read the lookups' answers.
//!
//! Dedup stays exact although the lookups run before the lock: the
//! primary keys of `leaf_index` and `claim_index` refuse a leaf hash or
//! claim id that another frontend committed in between (a unique
//! violation, which rolls the whole transaction back), and the batch is
//! then looked up and sequenced again, at most [`ATTEMPTS`] times; the
//! second lookup finds the other frontend's entry, so the input is answered
//! as its duplicate.
//!
//! On the wire that is two round trips: the lookups, then `BEGIN`, every
//! statement of 2 and `COMMIT` in one pipeline (a failed statement turns
//! the `COMMIT` into a rollback). The statements are prepared once per
//! connection. A failure anywhere rolls the whole batch back (the
//! connection is dropped on an I/O error, which PostgreSQL treats as a
//! rollback). Primary keys refuse a duplicate index or dedup key, so even a
//! bug cannot overwrite.

use std::collections::HashMap;
use std::time::Duration;

use attestlog::tlog::merkle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::conn::{Conn, QUERY_TIMEOUT};

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

/// Column vectors of the new entries, ready to bind as PostgreSQL arrays;
/// `idx`, `claim_idx` and `search_idx` are places `k` among them.
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
        // The entry's place in the batch's new entries (`PROVISIONAL + k`).
        let idx = i64_of(e.index - PROVISIONAL, "entry index")?;
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
const INSERT_ENTRIES: &str = "INSERT INTO entries (idx, data) SELECT h.next_idx + u.k, u.d \
     FROM seq_head h, UNNEST($1::bigint[], $2::bytea[]) AS u(k, d)";
const INSERT_LEAVES: &str = "INSERT INTO leaf_index (leaf_hash, idx) SELECT u.h, s.next_idx + u.k \
     FROM seq_head s, UNNEST($1::bytea[], $2::bigint[]) AS u(h, k)";
const INSERT_CLAIMS: &str = "INSERT INTO claim_index (claim_id, idx) SELECT u.c, h.next_idx + u.k \
     FROM seq_head h, UNNEST($1::bytea[], $2::bigint[]) AS u(c, k)";
/// A plain insert: the rows are distinct (`columns` drops an entry's
/// repeated keys) and their indices new, so no conflict is possible and
/// none is checked for (`ON CONFLICT` costs a second index search per row).
const INSERT_SEARCH: &str = "INSERT INTO search (kind, key, idx) \
     SELECT u.t, u.v, h.next_idx + u.k \
     FROM seq_head h, UNNEST($1::smallint[], $2::bytea[], $3::bigint[]) AS u(t, v, k)";
/// After the inserts, which read `next_idx` (statements of one connection
/// run in order).
const MOVE_SEQ_HEAD: &str = "UPDATE seq_head SET next_idx = next_idx + $1";
/// `$1`: [`SEQUENCED_CHANNEL`]; the payload is the new `next_idx`.
const NOTIFY_SEQUENCED: &str = "SELECT pg_notify($1, next_idx::text) FROM seq_head";

/// The first provisional index: the k-th new entry of a batch is
/// `PROVISIONAL + k` until its transaction learns `next_idx`. Above every
/// index a log can hold (they are PostgreSQL `bigint`s, and a lookup that
/// answers one this large is refused as corrupt), so a provisional index
/// is never mistaken for a logged one.
const PROVISIONAL: u64 = 1 << 62;
/// The longest a sequencing transaction waits for the `seq_head` lock
/// (`SET LOCAL lock_timeout`), shorter than the client's [`QUERY_TIMEOUT`]:
/// the transaction's statements, COMMIT included, are sent in one pipeline,
/// so without it a transaction whose client had given up would still
/// commit once the lock came free. With it PostgreSQL refuses it first,
/// and the answer is `storage_timeout` with nothing written.
pub const LOCK_WAIT: Duration = Duration::from_secs(QUERY_TIMEOUT.as_secs() * 5 / 6);
/// How many times a batch is looked up and sequenced when another
/// frontend commits one of its leaf hashes or claim ids in between.
const ATTEMPTS: usize = 4;

/// Dedups and sequences `batch`; see the module doc.
pub async fn sequence(
    client: &Conn,
    batch: &[NewEntry],
    claims: &[Option<Hash>],
) -> Result<Vec<Appended>, StorageError> {
    let mut attempt = 1;
    loop {
        match sequence_once(client, batch, claims).await {
            Err(Attempt::Raced(e)) if attempt < ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "another frontend sequenced a key of this batch; again");
                attempt += 1;
            }
            Err(Attempt::Raced(e)) => return Err(e.into()),
            Err(Attempt::Failed(e)) => return Err(e),
            Ok(out) => return Ok(out),
        }
    }
}

/// How one attempt of [`sequence`] ended without sequencing.
enum Attempt {
    /// A unique violation: another frontend committed a leaf hash or
    /// claim id of the batch after its lookups. Rolled back; try again.
    Raced(tokio_postgres::Error),
    Failed(StorageError),
}

impl<E: Into<StorageError>> From<E> for Attempt {
    fn from(e: E) -> Self {
        Attempt::Failed(e.into())
    }
}

async fn sequence_once(
    client: &Conn,
    batch: &[NewEntry],
    claims: &[Option<Hash>],
) -> Result<Vec<Appended>, Attempt> {
    let (
        find_leaves,
        find_claims,
        lock,
        ins_entries,
        ins_leaves,
        ins_claims,
        ins_search,
        move_head,
        notify,
    ) = tokio::try_join!(
        client.prepare(FIND_LEAVES),
        client.prepare(FIND_CLAIM_ENTRIES),
        client.prepare(LOCK_SEQ_HEAD),
        client.prepare(INSERT_ENTRIES),
        client.prepare(INSERT_LEAVES),
        client.prepare(INSERT_CLAIMS),
        client.prepare(INSERT_SEARCH),
        client.prepare(MOVE_SEQ_HEAD),
        client.prepare(NOTIFY_SEQUENCED),
    )?;
    let leaves: Vec<&[u8]> = batch.iter().map(|e| &e.leaf_hash[..]).collect();
    let claim_keys: Vec<&[u8]> = claims.iter().flatten().map(|c| &c[..]).collect();
    let (p_leaves, p_claims): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
        ([&leaves], [&claim_keys]);
    let (leaf_rows, claim_rows) = tokio::try_join!(
        client.query(&find_leaves, &p_leaves),
        client.query(&find_claims, &p_claims),
    )?;
    let Assigned { out, new } = assign_rows(batch, claims, &leaf_rows, &claim_rows)?;
    if new.is_empty() {
        // Nothing new: every input is a logged (or sequenced) entry.
        return Ok(out);
    }
    let c = columns(&new)?;
    let count = new.len() as i64;
    // Empty arrays insert nothing: every statement can go in the pipeline.
    let p_entries: [&(dyn ToSql + Sync); 2] = [&c.idx, &c.data];
    let p_leaves: [&(dyn ToSql + Sync); 2] = [&c.leaf, &c.idx];
    let p_claims: [&(dyn ToSql + Sync); 2] = [&c.claim_id, &c.claim_idx];
    let p_search: [&(dyn ToSql + Sync); 3] = [&c.search_kind, &c.search_key, &c.search_idx];
    let p_head: [&(dyn ToSql + Sync); 1] = [&count];
    let begin_sql = format!("BEGIN; SET LOCAL lock_timeout = {}", LOCK_WAIT.as_millis());
    // One pipeline. Every answer is awaited (`join!`, not `try_join!`), so
    // that the error reported is the first in statement order: after a
    // failed statement PostgreSQL answers each later one "current
    // transaction is aborted", and `try_join!`, which polls its futures
    // from a rotating start, could return one of those instead of the
    // cause. After a failure the COMMIT is answered as a ROLLBACK.
    let (begin, head, entries, leaves, claims, search, moved, notified, commit) = tokio::join!(
        client.batch_execute(&begin_sql),
        client.query_one(&lock, &[]),
        client.execute(&ins_entries, &p_entries),
        client.execute(&ins_leaves, &p_leaves),
        client.execute(&ins_claims, &p_claims),
        client.execute(&ins_search, &p_search),
        client.execute(&move_head, &p_head),
        client.query_one(&notify, &[&SEQUENCED_CHANNEL]),
        client.batch_execute("COMMIT"),
    );
    let answer = (|| {
        begin?;
        let head = head?;
        entries?;
        leaves?;
        claims?;
        search?;
        moved?;
        notified?;
        commit?;
        Ok::<_, tokio_postgres::Error>(head)
    })();
    let head = match answer {
        Ok(head) => head,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(Attempt::Raced(e)),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            return Err(StorageError::Timeout(LOCK_WAIT).into())
        }
        Err(e) => return Err(e.into()),
    };
    let next = u64::try_from(head.try_get::<_, i64>(0)?)
        .map_err(|_| StorageError::Corrupt("seq_head.next_idx is negative".into()))?;
    Ok(out
        .into_iter()
        .map(|a| match a.index.checked_sub(PROVISIONAL) {
            Some(k) => Appended {
                index: next + k,
                ..a
            },
            None => a,
        })
        .collect())
}

/// `dedup::assign` over the answers of the lookups, the new entries at
/// [`PROVISIONAL`] indices.
fn assign_rows<'a>(
    batch: &'a [NewEntry],
    claims: &'a [Option<Hash>],
    leaf_rows: &[Row],
    claim_rows: &[Row],
) -> Result<Assigned<'a>, StorageError> {
    let logged = |r: &Row| -> Result<u64, StorageError> {
        let idx: i64 = r.try_get(1)?;
        u64::try_from(idx)
            .ok()
            .filter(|&i| i < PROVISIONAL)
            .ok_or_else(|| StorageError::Corrupt(format!("a dedup row names entry {idx}")))
    };
    let mut leaf_found: HashMap<Hash, u64> = HashMap::new();
    for r in leaf_rows {
        leaf_found.insert(hash_of(r.try_get(0)?, "leaf hash")?, logged(r)?);
    }
    let mut claim_hits: HashMap<Hash, u64> = HashMap::new();
    let mut claim_leaves: HashMap<u64, Hash> = HashMap::new();
    for r in claim_rows {
        let idx = logged(r)?;
        claim_hits.insert(hash_of(r.try_get(0)?, "claim id")?, idx);
        claim_leaves.insert(idx, merkle::leaf_hash(r.try_get::<_, &[u8]>(2)?));
    }
    let leaf_hits = batch
        .iter()
        .map(|e| leaf_found.get(&e.leaf_hash).copied())
        .collect();
    assign(
        batch,
        claims,
        PROVISIONAL,
        leaf_hits,
        &claim_hits,
        |index| {
            claim_leaves.get(&index).copied().ok_or_else(|| {
                StorageError::Corrupt(format!("claim index names entry {index}, which is missing"))
            })
        },
    )
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
