//! Test databases on the real PostgreSQL at 127.0.0.1:5432 (trust auth,
//! user `postgres`; scripts/test.sh starts it). Every test gets its own
//! database, dropped (`WITH (FORCE)`, so open connections do not keep it)
//! when its [`TestDb`] drops. If PostgreSQL is unreachable the test fails:
//! nothing here skips.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// The maintenance database the tests create and drop theirs from.
pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of database `name` on the test server.
pub fn url_of(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Runs `sql` on the maintenance database.
pub fn admin(sql: &str) {
    query_on(ADMIN_URL, sql);
}

/// Runs the statements `sql` on the database at `url` and returns the
/// first column of every row they return, as text, panicking with a clear
/// message if PostgreSQL is not reachable.
pub fn query_on(url: &str, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {url} is not reachable ({e}); start it with \
                     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
                )
            });
        let task = tokio::spawn(conn);
        let rows = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(client);
        let _ = task.await;
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .collect()
    })
}

/// A database of its own for one test, dropped with this value.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A new empty database with a name no other test uses.
    pub fn create() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "attestlog_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Self::named(&name)
    }

    /// Creates database `name` (lower-case ASCII, digits and `_`).
    pub fn named(name: &str) -> Self {
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        admin(&format!("CREATE DATABASE {name}"));
        TestDb {
            name: name.to_string(),
            url: url_of(name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
