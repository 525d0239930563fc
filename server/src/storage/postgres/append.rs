//! The one write of the log on PostgreSQL: [`append`], a whole
//! [`SequencedBatch`] in one transaction behind the `log_head` CAS.
//!
//! Order inside the transaction: first the conditional `UPDATE log_head`
//! (the compare-and-swap: it row-locks the head, and 0 rows means another
//! writer moved it → [`StorageError::CheckpointConflict`], roll back), then
//! one multi-row `INSERT ... SELECT FROM UNNEST(...)` per table (entries,
//! leaf_index, claim_index, search, tiles upsert, checkpoints), then COMMIT.
//! Each table is one statement whatever the batch size, so an append costs
//! a fixed number of round trips.
//!
//! READ COMMITTED is enough: the only read the decision depends on is the
//! head row, and the UPDATE re-checks its WHERE on the newest committed
//! version after waiting for the row lock, so two appends on the same head
//! cannot both match. Everything else is inserts that primary keys refuse
//! to duplicate. SERIALIZABLE would add predicate locks and retries for
//! nothing.

use tokio_postgres::Client;

use crate::storage::{SequencedBatch, StorageError};

fn i64_of(n: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::Corrupt(format!("{what} {n} is over i64")))
}

/// Column vectors of a batch, ready to bind as PostgreSQL arrays.
struct Columns<'a> {
    idx: Vec<i64>,
    data: Vec<&'a [u8]>,
    leaf: Vec<&'a [u8]>,
    claim_id: Vec<&'a [u8]>,
    claim_idx: Vec<i64>,
    search_kind: Vec<i16>,
    search_key: Vec<&'a [u8]>,
    search_idx: Vec<i64>,
    tile_level: Vec<i16>,
    tile_idx: Vec<i64>,
    tile_hashes: Vec<&'a [u8]>,
    tile_mid: Vec<&'a [u8]>,
}

fn columns<'a>(batch: &'a SequencedBatch<'a>) -> Result<Columns<'a>, StorageError> {
    let n = batch.entries.len();
    let mut c = Columns {
        idx: Vec::with_capacity(n),
        data: Vec::with_capacity(n),
        leaf: Vec::with_capacity(n),
        claim_id: Vec::with_capacity(n),
        claim_idx: Vec::with_capacity(n),
        search_kind: Vec::new(),
        search_key: Vec::new(),
        search_idx: Vec::new(),
        tile_level: Vec::with_capacity(batch.tiles.len()),
        tile_idx: Vec::with_capacity(batch.tiles.len()),
        tile_hashes: Vec::with_capacity(batch.tiles.len()),
        tile_mid: Vec::with_capacity(batch.tiles.len()),
    };
    for e in &batch.entries {
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
    for t in &batch.tiles {
        c.tile_level.push(t.level.into());
        c.tile_idx.push(i64_of(t.index, "tile index")?);
        c.tile_hashes.push(&t.hashes);
        c.tile_mid.push(&t.mid);
    }
    Ok(c)
}

/// Commits `batch` in one transaction if `log_head` still holds
/// `batch.previous`; see the module documentation.
pub async fn append(client: &mut Client, batch: &SequencedBatch<'_>) -> Result<(), StorageError> {
    let c = columns(batch)?;
    let prev_size = batch.previous.map(|p| i64_of(p.size, "size")).transpose()?;
    let prev_root = batch.previous.map(|p| &p.root[..]);
    let cp = batch.checkpoint;
    let new_size = i64_of(cp.size, "size")?;

    let tx = client.transaction().await?;
    let moved = tx
        .execute(
            "UPDATE log_head SET size = $1, root = $2 \
             WHERE size IS NOT DISTINCT FROM $3 AND root IS NOT DISTINCT FROM $4",
            &[&new_size, &&cp.root[..], &prev_size, &prev_root],
        )
        .await?;
    if moved != 1 {
        let found: Option<i64> = tx.query_one("SELECT size FROM log_head", &[]).await?.get(0);
        // Dropping `tx` rolls back.
        return Err(StorageError::CheckpointConflict {
            expected: batch.previous.map(|p| p.size),
            found: found.map(|s| s as u64),
        });
    }
    if !c.idx.is_empty() {
        tx.execute(
            "INSERT INTO entries (idx, data) SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
            &[&c.idx, &c.data],
        )
        .await?;
        tx.execute(
            "INSERT INTO leaf_index (leaf_hash, idx) \
             SELECT * FROM UNNEST($1::bytea[], $2::bigint[])",
            &[&c.leaf, &c.idx],
        )
        .await?;
    }
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
    if !c.tile_level.is_empty() {
        tx.execute(
            "INSERT INTO tiles (level, idx, hashes, mid) \
             SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[], $4::bytea[]) \
             ON CONFLICT (level, idx) DO UPDATE SET hashes = excluded.hashes, mid = excluded.mid",
            &[&c.tile_level, &c.tile_idx, &c.tile_hashes, &c.tile_mid],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO checkpoints (size, root, note) VALUES ($1, $2, $3)",
        &[&new_size, &&cp.root[..], &cp.note],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
