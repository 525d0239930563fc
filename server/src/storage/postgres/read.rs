//! The reads of the PostgreSQL backend. They run on the shared reader
//! connection outside any explicit transaction: everything below the size
//! [`Log`](crate::storage::Log) has published is immutable (partial tiles
//! only grow), so each single-statement read is consistent on its own.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::PostgresBackend;
use crate::storage::{Hash, SearchKind, SignedCheckpoint, StorageError, StoredTile};

fn hash_of(bytes: Vec<u8>, what: &str) -> Result<Hash, StorageError> {
    bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what} is not 32 bytes")))
}

impl PostgresBackend {
    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StorageError> {
        let c = self.readers.get(&self.connector)?;
        self.connector.block_on(c.query(sql, params))
    }

    pub(super) fn checkpoint_row(
        &self,
        sql: &str,
        size: Option<i64>,
    ) -> Result<Option<SignedCheckpoint>, StorageError> {
        let rows = match &size {
            Some(s) => self.query(sql, &[s])?,
            None => self.query(sql, &[])?,
        };
        rows.into_iter()
            .next()
            .map(|r| {
                let size: i64 = r.try_get(0)?;
                Ok(SignedCheckpoint {
                    size: size as u64,
                    root: hash_of(r.try_get(1)?, "checkpoint root")?,
                    note: r.try_get(2)?,
                })
            })
            .transpose()
    }

    pub(super) fn read_entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let Ok(index) = i64::try_from(index) else {
            return Ok(None);
        };
        let rows = self.query("SELECT data FROM entries WHERE idx = $1", &[&index])?;
        Ok(rows.first().map(|r| r.try_get(0)).transpose()?)
    }

    pub(super) fn read_bundle(
        &self,
        start: u64,
        end: u64,
    ) -> Result<(Vec<u8>, usize), StorageError> {
        let (Ok(lo), Ok(hi)) = (i64::try_from(start), i64::try_from(end)) else {
            return Ok((Vec::new(), 0));
        };
        let rows = self.query(
            "SELECT data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            &[&lo, &hi],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            let data: &[u8] = r.try_get(0)?;
            let len = u16::try_from(data.len()).map_err(|_| {
                StorageError::Corrupt(format!("entry in bundle at {start} is over 65,535 bytes"))
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(data);
        }
        Ok((out, rows.len()))
    }

    pub(super) fn read_tile(
        &self,
        level: u8,
        index: u64,
    ) -> Result<Option<StoredTile>, StorageError> {
        let Ok(idx) = i64::try_from(index) else {
            return Ok(None);
        };
        let rows = self.query(
            "SELECT hashes, mid FROM tiles WHERE level = $1 AND idx = $2",
            &[&i16::from(level), &idx],
        )?;
        rows.first()
            .map(|r| {
                Ok(StoredTile {
                    hashes: r.try_get(0)?,
                    mid: Some(r.try_get(1)?),
                })
            })
            .transpose()
    }

    /// Runs a `SELECT key, idx ... WHERE key = ANY($1)` for all `keys` in
    /// one round trip and answers in the order of `keys`.
    pub(super) fn lookup(
        &self,
        sql: &str,
        keys: &[Hash],
    ) -> Result<Vec<Option<u64>>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let arg: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let mut found = HashMap::new();
        for r in self.query(sql, &[&arg])? {
            let key: Vec<u8> = r.try_get(0)?;
            let idx: i64 = r.try_get(1)?;
            found.insert(hash_of(key, "dedup key")?, idx as u64);
        }
        Ok(keys.iter().map(|k| found.get(k).copied()).collect())
    }

    pub(super) fn read_search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let kind = kind.code() as i16;
        let rows = self.query(
            "SELECT idx FROM search WHERE kind = $1 AND key = $2 AND idx > $3 \
             ORDER BY idx LIMIT $4",
            &[&kind, &key, &after, &limit],
        )?;
        rows.iter()
            .map(|r| Ok(r.try_get::<_, i64>(0)? as u64))
            .collect()
    }

    pub(super) fn read_latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        let rows = self.query(
            "SELECT size, note FROM cosigned ORDER BY size DESC LIMIT 1",
            &[],
        )?;
        rows.first()
            .map(|r| Ok((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
            .transpose()
    }
}
