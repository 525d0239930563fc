//! Importing a whole log's rows at their original indices
//! ([`PostgresBackend::import`]), for `attestlog-server migrate`
//! (spec/storage.md, "Moving a log").
//!
//! # Contract
//! One transaction, all or nothing:
//! 1. `SELECT ... FROM seq_head FOR UPDATE` (no frontend can sequence
//!    meanwhile); the destination must be empty: `next_idx = 0`, no
//!    `log_head`, no entries, no checkpoint. Otherwise nothing is written
//!    and the answer is `Ok(None)`.
//! 2. Every row of the [`RawSource`] goes in as it is: entries at their
//!    stored indices (checked ascending and dense from 0), the leaf-hash,
//!    claim-id and search rows unchanged. No dedup, so a legacy log's two
//!    entries of one claim id both arrive.
//! 3. Checks: every index row names an imported entry, and every entry's
//!    leaf hash (`sha256(0x00 || data)`, computed by PostgreSQL) is in the
//!    leaf index naming an entry with the same bytes.
//! 4. `seq_head.next_idx` = the number of entries; COMMIT.
//!
//! After COMMIT the entries are sequenced, not integrated: `log_head` is
//! still empty, so the destination has no checkpoint and cannot look like a
//! complete log. The caller integrates them (the one tile implementation,
//! [`Log::integrate`](crate::storage::Log::integrate)). A crash before COMMIT
//! leaves the destination empty.

use super::PostgresBackend;
use crate::storage::copy::{RawRows, RawSource};
use crate::storage::{SignedCheckpoint, StorageError};

/// What [`PostgresBackend::heads`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Entries sequenced (`seq_head.next_idx`).
    pub sequenced: u64,
    /// The integrated size (`log_head.size`), `None` before any checkpoint.
    pub integrated: Option<u64>,
}

impl PostgresBackend {
    /// The sequencing and integration heads.
    pub fn heads(&self) -> Result<Heads, StorageError> {
        let c = self.readers.get(&self.connector)?;
        let r = self.connector.block_on(c.query_one(
            "SELECT (SELECT next_idx FROM seq_head), (SELECT size FROM log_head)",
            &[],
        ))?;
        let (next, head): (i64, Option<i64>) = (r.try_get(0)?, r.try_get(1)?);
        Ok(Heads {
            sequenced: next as u64,
            integrated: head.map(|h| h as u64),
        })
    }

    /// Copies every row of `source` into this empty log; see the module
    /// documentation. `Ok(None)`: the log was not empty, nothing written;
    /// `Ok(Some(checkpoint))`: the source snapshot's latest checkpoint,
    /// whose size is the number of entries imported.
    pub fn import(
        &self,
        source: &dyn RawSource,
    ) -> Result<Option<Option<SignedCheckpoint>>, StorageError> {
        self.with_writer(|client| {
            let cn = &self.connector;
            let tx = cn.block_on(client.transaction())?;
            let r = cn.block_on(tx.query_one(
                "SELECT (SELECT next_idx FROM seq_head FOR UPDATE), \
                        (SELECT size FROM log_head), \
                        EXISTS (SELECT 1 FROM entries), EXISTS (SELECT 1 FROM checkpoints)",
                &[],
            ))?;
            let (next, head, any_entry, any_cp): (i64, Option<i64>, bool, bool) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            if next != 0 || head.is_some() || any_entry || any_cp {
                return Ok(None);
            }
            let mut expected: i64 = 0;
            let snapshot = source.export(&mut |rows| match rows {
                RawRows::Entries(v) => {
                    let idx: Vec<i64> = v.iter().map(|(i, _)| *i).collect();
                    for (k, i) in idx.iter().enumerate() {
                        if *i != expected + k as i64 {
                            return Err(StorageError::Corrupt(format!(
                                "source entry {} is missing (found {i} in its place)",
                                expected + k as i64
                            )));
                        }
                    }
                    expected += idx.len() as i64;
                    let data: Vec<&[u8]> = v.iter().map(|(_, d)| d.as_slice()).collect();
                    cn.block_on(tx.execute(
                        "INSERT INTO entries (idx, data) \
                         SELECT * FROM UNNEST($1::bigint[], $2::bytea[])",
                        &[&idx, &data],
                    ))?;
                    Ok(())
                }
                RawRows::Leaves(v) => insert_pairs(cn, &tx, "leaf_index (leaf_hash, idx)", &v),
                RawRows::Claims(v) => insert_pairs(cn, &tx, "claim_index (claim_id, idx)", &v),
                RawRows::Search(v) => {
                    let kind: Vec<i16> = v.iter().map(|r| r.0).collect();
                    let key: Vec<&[u8]> = v.iter().map(|r| r.1.as_slice()).collect();
                    let idx: Vec<i64> = v.iter().map(|r| r.2).collect();
                    cn.block_on(tx.execute(
                        "INSERT INTO search (kind, key, idx) \
                         SELECT * FROM UNNEST($1::smallint[], $2::bytea[], $3::bigint[])",
                        &[&kind, &key, &idx],
                    ))?;
                    Ok(())
                }
            })?;
            let size = snapshot.as_ref().map_or(0, |c| c.size as i64);
            if size != expected {
                return Err(StorageError::Corrupt(format!(
                    "the source's latest checkpoint covers {size} entries but it holds {expected}"
                )));
            }
            check_rows(cn, &tx, size)?;
            cn.block_on(tx.execute("UPDATE seq_head SET next_idx = $1", &[&size]))?;
            cn.block_on(tx.commit())?;
            Ok(Some(snapshot))
        })
    }
}

fn insert_pairs(
    cn: &super::conn::Connector,
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    rows: &[(Vec<u8>, i64)],
) -> Result<(), StorageError> {
    let key: Vec<&[u8]> = rows.iter().map(|r| r.0.as_slice()).collect();
    let idx: Vec<i64> = rows.iter().map(|r| r.1).collect();
    cn.block_on(tx.execute(
        &format!("INSERT INTO {table} SELECT * FROM UNNEST($1::bytea[], $2::bigint[])"),
        &[&key, &idx],
    ))?;
    Ok(())
}

/// Step 3 of the module documentation, inside the import transaction.
fn check_rows(
    cn: &super::conn::Connector,
    tx: &tokio_postgres::Transaction<'_>,
    size: i64,
) -> Result<(), StorageError> {
    let r = cn.block_on(tx.query_one(
        "SELECT \
           (SELECT count(*) FROM leaf_index WHERE idx < 0 OR idx >= $1) \
         + (SELECT count(*) FROM claim_index WHERE idx < 0 OR idx >= $1) \
         + (SELECT count(*) FROM search WHERE idx < 0 OR idx >= $1), \
           (SELECT count(*) FROM entries e LEFT JOIN leaf_index l \
              ON l.leaf_hash = sha256('\\x00'::bytea || e.data) \
            LEFT JOIN entries o ON o.idx = l.idx \
            WHERE o.data IS DISTINCT FROM e.data)",
        &[&size],
    ))?;
    let (dangling, unindexed): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    if dangling != 0 || unindexed != 0 {
        return Err(StorageError::Corrupt(format!(
            "the source's indices do not match its entries: {dangling} index rows name no entry, \
             {unindexed} entries are missing from the leaf index"
        )));
    }
    Ok(())
}
