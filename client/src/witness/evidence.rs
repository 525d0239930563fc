//! Bounded evidence: validly signed requests the witness refused (a proof
//! that does not verify, or another root at the stored size), kept as
//! proof of a log's misbehaviour. Only configured origins get this far (an
//! unknown origin or a bad signature is refused earlier and stores
//! nothing), and whatever the number of requests, the table stays within
//! [`MAX_EVIDENCE_PER_ORIGIN`] rows per origin, [`MAX_EVIDENCE_ROWS`] rows
//! in all, and [`MAX_EVIDENCE_REQUEST`] stored bytes of request per row:
//!
//! - per origin, the first row (the first proof of misbehaviour) is kept
//!   for good and the other slots hold the latest rows: a new row evicts
//!   the origin's oldest row after the first;
//! - above the global cap, the oldest rows that are not an origin's first
//!   go, then (only with more origins than the cap) the newest rows;
//! - a request is stored whole up to [`MAX_EVIDENCE_REQUEST`] bytes, else
//!   cut there (at a character boundary); its full length and SHA-256 are
//!   always stored, so a cut is visible and the request identifiable.
//!
//! Deleted rows' pages are reused by SQLite, so once the caps are reached
//! the file stops growing.

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

/// Rows kept per origin: the first and the 15 latest.
pub const MAX_EVIDENCE_PER_ORIGIN: usize = 16;
/// Rows kept across all origins (16 origins' worth at the per-origin cap).
pub const MAX_EVIDENCE_ROWS: usize = 256;
/// Stored request bytes per row. An honest request (63 proof lines of 45
/// bytes, a checkpoint and a few signatures) is about 3.5 KiB, so this
/// keeps it whole, while the 64 KiB a request may have is cut; with the row
/// cap, the table holds at most 2 MiB of requests.
pub const MAX_EVIDENCE_REQUEST: usize = 8 * 1024;

/// Columns added to the original `evidence(id, origin, request, reason,
/// received_at)` table; added to an older database when it is opened.
const ADDED_COLUMNS: [(&str, &str); 2] = [
    ("request_len", "INTEGER NOT NULL DEFAULT 0"),
    ("request_sha256", "BLOB"),
];

/// Adds the columns an older `evidence` table lacks.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('evidence')")?;
    let present: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (name, decl) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE evidence ADD COLUMN {name} {decl}"))?;
        }
    }
    Ok(())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Inserts one row and evicts what the caps no longer allow; `conn` should
/// be inside a transaction so both happen or neither.
pub(super) fn record(
    conn: &Connection,
    origin: &str,
    request: &str,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let len = i64::try_from(request.len()).unwrap_or(i64::MAX);
    let digest = Sha256::digest(request.as_bytes()).to_vec();
    conn.execute(
        "INSERT INTO evidence (origin, request, reason, received_at, request_len, request_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            origin,
            prefix(request, MAX_EVIDENCE_REQUEST),
            reason,
            now,
            len,
            digest
        ],
    )?;
    // The origin's rows beyond its first and its latest.
    conn.execute(
        "DELETE FROM evidence WHERE origin = ?1
           AND id <> (SELECT MIN(id) FROM evidence WHERE origin = ?1)
           AND id NOT IN (SELECT id FROM evidence WHERE origin = ?1 ORDER BY id DESC LIMIT ?2)",
        params![origin, (MAX_EVIDENCE_PER_ORIGIN - 1) as i64],
    )?;
    // Above the global cap: the oldest rows that are not an origin's
    // first, then the newest.
    for order in ["ASC", "DESC"] {
        let keep_firsts = if order == "ASC" {
            "WHERE id NOT IN (SELECT MIN(id) FROM evidence GROUP BY origin)"
        } else {
            ""
        };
        conn.execute(
            &format!(
                "DELETE FROM evidence WHERE id IN (
                   SELECT id FROM evidence {keep_firsts} ORDER BY id {order}
                   LIMIT MAX(0, (SELECT COUNT(*) FROM evidence) - ?1))"
            ),
            params![MAX_EVIDENCE_ROWS as i64],
        )?;
    }
    Ok(())
}

/// What the evidence table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvidenceUsage {
    /// Rows in all.
    pub rows: u64,
    /// The most rows of any one origin.
    pub max_rows_per_origin: u64,
    /// Stored request bytes in all.
    pub request_bytes: u64,
}

pub(super) fn usage(conn: &Connection) -> rusqlite::Result<EvidenceUsage> {
    let (rows, request_bytes): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(request AS BLOB))), 0) FROM evidence",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let per_origin: i64 = conn.query_row(
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM evidence GROUP BY origin)",
        [],
        |r| r.get(0),
    )?;
    Ok(EvidenceUsage {
        rows: rows as u64,
        max_rows_per_origin: per_origin as u64,
        request_bytes: request_bytes as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE evidence (id INTEGER PRIMARY KEY, origin TEXT NOT NULL,
             request TEXT NOT NULL, reason TEXT NOT NULL, received_at INTEGER NOT NULL);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        migrate(&conn).unwrap(); // idempotent
        conn
    }

    fn requests(conn: &Connection, origin: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT request FROM evidence WHERE origin = ?1 ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([origin], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn per_origin_keeps_the_first_and_the_latest() {
        let conn = table();
        for i in 0..100 {
            record(&conn, "a", &format!("req {i}"), "why", 0).unwrap();
        }
        let kept = requests(&conn, "a");
        let mut want = vec!["req 0".to_string()];
        want.extend((85..100).map(|i| format!("req {i}")));
        assert_eq!(kept, want);
    }

    #[test]
    fn the_global_cap_spares_each_origins_first() {
        let conn = table();
        let origins = MAX_EVIDENCE_ROWS / MAX_EVIDENCE_PER_ORIGIN + 4;
        for round in 0..MAX_EVIDENCE_PER_ORIGIN {
            for o in 0..origins {
                record(&conn, &format!("o{o}"), &format!("{round}"), "why", 0).unwrap();
            }
        }
        let u = usage(&conn).unwrap();
        assert_eq!(u.rows, MAX_EVIDENCE_ROWS as u64);
        for o in 0..origins {
            assert_eq!(requests(&conn, &format!("o{o}"))[0], "0", "origin {o}");
        }
    }

    #[test]
    fn long_requests_are_cut_with_length_and_hash_kept() {
        let conn = table();
        let long = "é".repeat(MAX_EVIDENCE_REQUEST); // 2 bytes each
        record(&conn, "a", &long, "why", 0).unwrap();
        let (stored, len, digest): (String, i64, Vec<u8>) = conn
            .query_row(
                "SELECT request, request_len, request_sha256 FROM evidence",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(stored.len(), MAX_EVIDENCE_REQUEST);
        assert!(long.starts_with(&stored));
        assert_eq!(len as usize, long.len());
        assert_eq!(digest, Sha256::digest(long.as_bytes()).to_vec());
        assert_eq!(
            usage(&conn).unwrap().request_bytes,
            MAX_EVIDENCE_REQUEST as u64
        );
    }
}
