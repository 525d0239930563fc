//! Storage-layer tests through the public API only: the conformance suite
//! every backend runs (`conformance!` at the end; cases in `tree_cases.rs`
//! and `log_cases.rs`), then SQLite-only cases. The independent RFC 6962
//! computation is `rs_merkle` with an RFC 6962 hasher (checked against the
//! shared reference vectors); proofs are verified with the RFC 9162
//! verifiers in `reference.rs` and cross-checked with `tlog_tiles`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use attestlog::tlog::merkle;

use attestlog_server::storage::{
    postgres::{LOCK_WAIT, PG_SCHEMA_VERSION, QUERY_TIMEOUT},
    Backend, Hash, Log, LogStore, NewEntry, PostgresBackend, SearchKind, SqliteBackend,
    StorageError, SCHEMA_VERSION,
};
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};

mod cache_cases;
mod cluster_cases;
mod harness;
mod log_cases;
#[path = "../postgres_common/mod.rs"]
mod postgres_common;
mod reference;
#[path = "../common/seaweed.rs"]
mod seaweed;
mod tree_cases;

use cache_cases::*;
use cluster_cases::*;
use harness::*;
use log_cases::*;
use reference::*;
use tree_cases::*;

// ---------- helpers ----------

fn shared_dir() -> PathBuf {
    std::env::var_os("ATTESTLOG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn sign(size: u64, root: Hash) -> Result<String, String> {
    Ok(format!(
        "test.example/log\n{size}\n{}\n\n\u{2014} test.example/log c2lnbmF0dXJl\n",
        hex::encode(root)
    ))
}

/// Parses (size, root) back out of a note made by [`sign`].
fn parse_note(note: &str) -> (u64, Hash) {
    let mut lines = note.lines().skip(1);
    let size = lines.next().unwrap().parse().unwrap();
    let root = hex::decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (size, root)
}

fn entry_bytes(i: u64) -> Vec<u8> {
    // Varying lengths, including the empty entry for i = 0.
    let len = (i % 97) as usize;
    let mut v = i.to_be_bytes()[..].repeat(1 + len / 8);
    v.truncate(len.max(8).min(v.len()));
    if i == 0 {
        v.clear();
    }
    v
}

fn new_entry(i: u64) -> NewEntry {
    NewEntry::new(
        entry_bytes(i),
        vec![(SearchKind::Commit, (i % 7).to_be_bytes().to_vec())],
    )
}

/// Appends entries `from..to` (by `entry_bytes`) in batches of at most 256.
fn append_range<B: Backend>(store: &Log<B>, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let end = (i + 256).min(to);
        let batch: Vec<NewEntry> = (i..end).map(new_entry).collect();
        let out = store.append_batch(&batch, &sign).unwrap();
        for (k, a) in out.entries.iter().enumerate() {
            assert_eq!(a.index, i + k as u64);
            assert!(!a.duplicate);
        }
        assert_eq!(out.tree_size, end);
        i = end;
    }
}

// ---------- SQLite only ----------

#[test]
fn newer_schema_is_refused() {
    let (_dir, dir, store) = tmp_store::<Sqlite>();
    drop(store);
    let path = dir.join("log.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    match LogStore::open(&path) {
        Err(e @ StorageError::SchemaTooNew { .. }) => {
            assert!(e.to_string().contains("newer than this build"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

#[test]
fn schema_is_applied_and_versioned() {
    let (_dir, dir, store) = tmp_store::<Sqlite>();
    drop(store);
    let path = dir.join("log.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

// ---------- PostgreSQL only ----------

/// The URL of the database of a [`Postgres`] harness directory.
fn pg_url(dir: &Path) -> String {
    postgres_common::url_of(&db_name(dir))
}

#[test]
fn postgres_schema_is_applied_and_versioned() {
    let (_guard, dir, store) = tmp_store::<PgFile>();
    drop(store);
    let url = pg_url(&dir);
    let version = postgres_common::query_on(&url, "SELECT version FROM schema_version");
    assert_eq!(version, vec![PG_SCHEMA_VERSION.to_string()]);
    // The head row exists from the start, empty, and opening again does not
    // migrate twice.
    drop(PgFile::open(&dir));
    let head = postgres_common::query_on(&url, "SELECT count(*) FROM log_head WHERE size IS NULL");
    assert_eq!(head, vec!["1"]);
}

#[test]
fn postgres_newer_schema_is_refused() {
    let (_guard, dir, store) = tmp_store::<PgFile>();
    drop(store);
    let url = pg_url(&dir);
    postgres_common::query_on(
        &url,
        &format!(
            "UPDATE schema_version SET version = {}",
            PG_SCHEMA_VERSION + 1
        ),
    );
    match PostgresBackend::open(&url, &InFolder::url(&dir), false) {
        Err(e @ StorageError::SchemaTooNew { .. }) => {
            assert_eq!(e.code(), "schema_too_new");
            assert!(e.to_string().contains("newer than this build"), "{e}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a newer schema"),
    }
}

/// PostgreSQL drops every connection of the log (as on a server restart):
/// the backend replaces them on next use and the log goes on, with
/// nothing lost or duplicated.
#[test]
fn postgres_backend_reconnects_after_its_connections_are_killed() {
    let (_guard, dir, store) = tmp_store::<PgFile>();
    append_range(&store, 0, 10);
    let killed = postgres_common::query_on(
        postgres_common::ADMIN_URL,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            db_name(&dir)
        ),
    );
    assert_eq!(
        killed,
        vec!["t", "t", "t"],
        "the writer, the reader and the listener connection"
    );
    // Each connection's task notices the close; at most one call per
    // connection can fail while it does.
    std::thread::sleep(std::time::Duration::from_millis(300));
    append_range(&store, 10, 20);
    assert_eq!(store.entry(3).unwrap(), Some(entry_bytes(3)));
    let leaves: Vec<Hash> = (0..20).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    let again = PgFile::open(&dir);
    assert_eq!(
        (again.tree_size(), again.root_hash()),
        (20, ref_root(&leaves))
    );
}

/// An append stuck behind a lock on the sequencing row held by another session
/// fails with `storage_timeout` after `LOCK_WAIT`, before the client's own
/// `QUERY_TIMEOUT` (it never waits forever), writes nothing, also once the
/// lock is free, and the log goes on.
#[test]
fn postgres_append_stuck_past_its_deadline_is_storage_timeout() {
    let (_guard, dir, store) = tmp_store::<PgFile>();
    append_range(&store, 0, 5);
    let url = pg_url(&dir);
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let tx = client.transaction().await.unwrap();
            tx.execute("SELECT 1 FROM seq_head FOR UPDATE", &[])
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            tokio::task::spawn_blocking(move || release_rx.recv())
                .await
                .unwrap()
                .unwrap();
            tx.rollback().await.unwrap();
        });
    });
    locked.recv().unwrap();
    let started = std::time::Instant::now();
    match store.append_batch(&[new_entry(5)], &sign) {
        Err(e @ StorageError::Timeout(_)) => assert_eq!(e.code(), "storage_timeout"),
        other => panic!("expected storage_timeout, got {other:?}"),
    }
    // PostgreSQL gives up the lock wait first (the statements after it,
    // COMMIT included, were already sent): nothing of the batch commits
    // when the lock comes free.
    assert!(started.elapsed() >= LOCK_WAIT && started.elapsed() < QUERY_TIMEOUT);
    assert_eq!(store.tree_size(), 5);
    release.send(()).unwrap();
    holder.join().unwrap();
    append_range(&store, 5, 10);
    let leaves: Vec<Hash> = (0..10).map(|i| rfc_leaf(&entry_bytes(i))).collect();
    let again = PgFile::open(&dir);
    assert_eq!(
        (again.tree_size(), again.root_hash()),
        (10, ref_root(&leaves))
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn arbitrary_requests_never_panic(a in any::<u64>(), b in 0u64..700, level in any::<u8>(), w in proptest::option::of(any::<u16>())) {
            static STORE: std::sync::OnceLock<(tempfile::TempDir, LogStore)> = std::sync::OnceLock::new();
            let (_, store) = STORE.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let store = LogStore::open(&dir.path().join("log.db")).unwrap();
                append_range(&store, 0, 600);
                (dir, store)
            });
            let small = a % 700;
            let _ = store.inclusion_proof(small, b);
            let _ = store.inclusion_proof(a, b);
            let _ = store.consistency_proof(small, b);
            let _ = store.consistency_proof(b, a);
            let _ = store.hash_tile(level, a, w);
            let _ = store.hash_tile(level % 3, small % 4, w);
            let _ = store.entry_bundle(small % 4, w);
            let _ = store.entry(a);
            let _ = store.root_at(b);
            if small < b && b <= 600 {
                let p = store.inclusion_proof(small, b).unwrap();
                let leaf = rfc_leaf(&entry_bytes(small));
                prop_assert!(verify_inclusion(small, b, leaf, &p, store.root_at(b).unwrap()));
            }
        }
    }
}

#[test]
fn leaf_hash_helper_is_rfc6962() {
    assert_eq!(merkle::leaf_hash(b"abc"), rfc_leaf(b"abc"));
}

/// Kills a writer process (storage-bench) mid-append with SIGKILL, then
/// reopens: the file must hold a prefix of whole batches whose tiles, root
/// and latest checkpoint agree (`LogStore::open` checks them) and whose
/// entries hash to that root.
#[test]
fn killed_writer_leaves_a_prefix_of_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storage-bench"))
        .args(["100000000", "200", dir.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let db = dir
        .path()
        .join(format!("attestlog-bench-{}.db", child.id()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Wait until a few batches are in, then kill mid-run.
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let len = std::fs::metadata(format!("{}-wal", db.display()))
            .map(|m| m.len())
            .unwrap_or(0);
        if len > 2_000_000 || std::time::Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let store = LogStore::open(&db).unwrap();
    let size = store.tree_size();
    println!("killed at tree size {size}");
    assert!(size > 0, "no batch committed before the kill");
    assert_eq!(size % 256, 0, "a partial batch survived");
    let cp = store.latest_checkpoint().unwrap().unwrap();
    assert_eq!((cp.size, parse_bench_size(&cp.note)), (size, size));
    let leaves: Vec<Hash> = (0..size)
        .map(|i| rfc_leaf(&store.entry(i).unwrap().unwrap()))
        .collect();
    assert_eq!(store.root_hash(), ref_root(&leaves));
    assert_eq!(store.entry(size).unwrap(), None);
    // Every tile survived with its `mid` (written in the same statement of
    // the same transaction): the roots of its complete 16-hash groups.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut st = conn.prepare("SELECT hashes, mid FROM tiles").unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap();
    for row in rows {
        let (hashes, mid) = row.unwrap();
        let groups: Vec<u8> = hashes
            .chunks_exact(512)
            .flat_map(|g| {
                let hs: Vec<Hash> = g.chunks_exact(32).map(|c| c.try_into().unwrap()).collect();
                ref_root(&hs)
            })
            .collect();
        assert_eq!(mid, groups);
    }
}

fn parse_bench_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// Instantiates every backend-generic case above for one backend, as
/// `<backend>::<case>` tests.
macro_rules! conformance {
    ($backend:ident => $harness:ty: $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[test]
                fn $case() {
                    super::$case::<$harness>();
                }
            )*
        }
    };
}

conformance!(sqlite => Sqlite:
    rs_merkle_reference_matches_rfc6962_vectors,
    empty_log,
    tree_sizes_crossing_tile_boundaries,
    dedup_within_batch_and_across_reopen,
    reopen_keeps_size_root_and_checkpoints,
    failing_sign_rolls_back_the_whole_batch,
    invalid_entries_are_rejected_and_change_nothing,
    search_by_kind_and_key,
    out_of_range_requests_are_errors_not_panics,
    concurrent_readers_while_appending,
    second_writer_cannot_fork,
    cached_reads_match_the_backend_as_the_tree_grows,
);

conformance!(postgres_file => PgFile:
    rs_merkle_reference_matches_rfc6962_vectors,
    empty_log,
    tree_sizes_crossing_tile_boundaries,
    dedup_within_batch_and_across_reopen,
    reopen_keeps_size_root_and_checkpoints,
    invalid_entries_are_rejected_and_change_nothing,
    search_by_kind_and_key,
    out_of_range_requests_are_errors_not_panics,
    concurrent_readers_while_appending,
    failing_sign_publishes_nothing_and_the_entries_wait,
    two_writers_share_one_dense_tree,
    two_writers_racing_on_the_same_entries_log_each_once,
    a_stale_integrator_is_fenced,
    an_integration_holds_a_bounded_number_of_bytes,
    objects_are_at_the_c2sp_paths,
    partial_objects_go_once_their_tile_is_full,
    cached_reads_match_the_backend_as_the_tree_grows,
);

conformance!(postgres_s3 => PgS3:
    rs_merkle_reference_matches_rfc6962_vectors,
    empty_log,
    tree_sizes_crossing_tile_boundaries,
    dedup_within_batch_and_across_reopen,
    reopen_keeps_size_root_and_checkpoints,
    invalid_entries_are_rejected_and_change_nothing,
    search_by_kind_and_key,
    out_of_range_requests_are_errors_not_panics,
    concurrent_readers_while_appending,
    failing_sign_publishes_nothing_and_the_entries_wait,
    two_writers_share_one_dense_tree,
    two_writers_racing_on_the_same_entries_log_each_once,
    a_stale_integrator_is_fenced,
    objects_are_at_the_c2sp_paths,
    partial_objects_go_once_their_tile_is_full,
    cached_reads_match_the_backend_as_the_tree_grows,
);
