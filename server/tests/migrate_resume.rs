//! `attestlog-server migrate` interrupted and refused, with real processes:
//! a copy killed after its commit or midway through a large log is finished
//! by running the command again, a log holding only the empty checkpoint
//! moves, and an index row that does not match its entry stops the move.

mod common;
#[path = "common/migrate_cli.rs"]
mod migrate_cli;
mod postgres_common;
#[path = "common/seaweed.rs"]
mod seaweed;

use std::process::Command;

use attestlog::tlog::note::NoteSigner;
use attestlog_server::storage::{PostgresBackend, SqliteBackend};
use common::*;
use migrate_cli::migrate;
use postgres_common::TestDb;

#[test]
fn an_interrupted_copy_is_finished_by_running_migrate_again() {
    let weed = seaweed::shared();
    weed.set_env();
    let dir = tempfile::tempdir().unwrap();
    let (nsm, _) = dev_nsm(dir.path());
    let src = dir.path().join("sqlite");
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    write_key(&src, &signer);
    let entries: Vec<Vec<u8>> = (0..40).map(|n| entry(&nsm, n)).collect();
    smuggle(&src, &signer, &entries);

    // A run killed after the copy's COMMIT, before any integration: all
    // entries sequenced, no checkpoint, so it does not look complete.
    let db = TestDb::create();
    let objects = weed.url();
    {
        let dest = PostgresBackend::open(&db.url, &objects, false).unwrap();
        let source = SqliteBackend::open(&src.join("log.db")).unwrap();
        let snapshot = dest.import(&source).unwrap().expect("empty destination");
        assert_eq!(snapshot.unwrap().size, 40);
        let heads = dest.heads().unwrap();
        assert_eq!((heads.sequenced, heads.integrated), (40, None));
        // A second copy into it is refused: it is not empty any more.
        assert!(dest.import(&source).unwrap().is_none());
    }
    let from_arg = format!("sqlite:{}", src.display());
    let (code, out, err) = migrate(&["--from", &from_arg, "--to", &db.url, "--objects", &objects]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("migrated 40 entries") && out.contains("(resumed)"),
        "{out}"
    );
    let dest = PostgresBackend::open(&db.url, &objects, true).unwrap();
    let heads = dest.heads().unwrap();
    assert_eq!((heads.sequenced, heads.integrated), (40, Some(40)));

    // A half-done destination of ANOTHER log is refused.
    let other = dir.path().join("other");
    let other_signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    write_key(&other, &other_signer);
    smuggle(&other, &other_signer, &entries[..39]);
    smuggle(&other, &other_signer, &[entry(&nsm, 77)]);
    let other_arg = format!("sqlite:{}", other.display());
    let (code, _, err) = migrate(&["--from", &other_arg, "--to", &db.url, "--objects", &objects]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: destination_not_empty: "), "{err}");
}

/// A log larger than one integration step (`MAX_INTEGRATE`), and a
/// migrate process SIGKILLed at a seeded random point: the destination
/// never looks complete unless it is, and running migrate again finishes
/// the same copy.
#[test]
fn a_large_migration_killed_midway_is_finished_by_a_rerun() {
    use attestlog_server::storage::cluster::MAX_INTEGRATE;
    use attestlog_server::storage::Log;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sqlite");
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    write_key(&src, &signer);
    let n = MAX_INTEGRATE + 300;
    // Bytes no server would accept, appended straight: storage does not
    // care, and it is fast.
    for chunk in (0..n).collect::<Vec<u64>>().chunks(8192) {
        let entries: Vec<Vec<u8>> = chunk
            .iter()
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        smuggle(&src, &signer, &entries);
    }
    let store = attestlog_server::storage::LogStore::open(&src.join("log.db")).unwrap();
    assert_eq!(store.tree_size(), n);
    drop(store);
    let seed = std::env::var("ATTESTLOG_MIGRATE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ms);
    let kill_after = std::time::Duration::from_millis(200 + seed % 6000);
    eprintln!("seed {seed} (ATTESTLOG_MIGRATE_SEED replays it): SIGKILL after {kill_after:?}");

    let db = TestDb::create();
    let objects = format!("file://{}/objects", dir.path().display());
    let from_arg = format!("sqlite:{}", src.display());
    let args = [
        "migrate",
        "--from",
        &from_arg,
        "--to",
        &db.url,
        "--objects",
        &objects,
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_attestlog-server"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(kill_after);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    // What the killed run left: not complete-looking unless complete.
    let state = postgres_common::query_on(
        &db.url,
        "SELECT CASE WHEN to_regclass('seq_head') IS NULL THEN 'no schema' ELSE \
         (SELECT next_idx::text FROM seq_head) || ' ' || \
         COALESCE((SELECT size::text FROM log_head), 'none') END",
    );
    eprintln!("killed run (finished: {finished}) left: {state:?}");
    let published: Option<u64> = state[0].split(' ').nth(1).and_then(|s| s.parse().ok());
    if published == Some(n) {
        eprintln!("the killed run had finished integrating");
    } else {
        assert!(published.is_none_or(|p| p < n), "{state:?}");
    }

    let started = std::time::Instant::now();
    let (code, out, err) = migrate(&args[1..]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("migrated {n} entries")), "{out}");
    eprintln!("rerun: {:.1}s: {out}", started.elapsed().as_secs_f64());
    // Same entries, same tree, same checkpoint bytes.
    let source = Log::with_backend(SqliteBackend::open(&src.join("log.db")).unwrap()).unwrap();
    let moved = Log::with_backend(PostgresBackend::open(&db.url, &objects, true).unwrap()).unwrap();
    assert_eq!(moved.tree_size(), n);
    assert_eq!(
        moved.checkpoint_at(n).unwrap().unwrap(),
        source.latest_checkpoint().unwrap().unwrap()
    );
    for i in (0..n).step_by(4099).chain([n - 1]) {
        assert_eq!(
            moved.entry(i).unwrap(),
            source.entry(i).unwrap(),
            "entry {i}"
        );
    }
    for (index, width) in [
        (MAX_INTEGRATE / 256, None),
        (n / 256, Some((n % 256) as u16)),
    ] {
        assert_eq!(
            moved.entry_bundle(index, width).unwrap(),
            source.entry_bundle(index, width).unwrap()
        );
        assert_eq!(
            moved.hash_tile(0, index, width).unwrap(),
            source.hash_tile(0, index, width).unwrap()
        );
    }
}

/// A log that signed only its empty tree moves too (checkpoint at 0).
#[test]
fn a_log_with_only_the_empty_checkpoint_moves() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sqlite");
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    write_key(&src, &signer);
    let store = attestlog_server::storage::LogStore::open(&src.join("log.db")).unwrap();
    store.ensure_checkpoint(&signer).unwrap();
    let before = store.latest_checkpoint().unwrap().unwrap();
    drop(store);
    let db = TestDb::create();
    let objects = format!("file://{}/objects", dir.path().display());
    let from_arg = format!("sqlite:{}", src.display());
    let (code, out, err) = migrate(&["--from", &from_arg, "--to", &db.url, "--objects", &objects]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("migrated 0 entries"), "{out}");
    let moved = PostgresBackend::open(&db.url, &objects, true).unwrap();
    use attestlog_server::storage::Backend;
    assert_eq!(moved.latest_checkpoint().unwrap(), Some(before));
}

/// A SQLite index row that does not match the entry it names (the store
/// keeps 16-byte key prefixes; the export recomputes the full keys) stops
/// the move with `storage_corrupt` and writes nothing: once the row is
/// repaired, the same destination takes the log.
#[test]
fn an_index_row_that_does_not_match_its_entry_stops_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sqlite");
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    write_key(&src, &signer);
    let entries: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 40]).collect();
    smuggle(&src, &signer, &entries);
    let db_path = src.join("log.db");
    let set_prefix = |prefix: &[u8]| {
        rusqlite::Connection::open(&db_path)
            .unwrap()
            .execute(
                "UPDATE leaf_index SET leaf_prefix = ?1 WHERE idx = 1",
                [prefix],
            )
            .unwrap()
    };
    assert_eq!(set_prefix(&[0u8; 16]), 1);
    let db = TestDb::create();
    let objects = format!("file://{}/objects", dir.path().display());
    let from_arg = format!("sqlite:{}", src.display());
    let args = ["--from", &from_arg, "--to", &db.url, "--objects", &objects];
    let (code, _, err) = migrate(&args);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: storage_corrupt: "), "{err}");
    assert!(err.contains("does not match the entry"), "{err}");

    let leaf = attestlog::tlog::merkle::leaf_hash(&entries[1]);
    assert_eq!(set_prefix(&leaf[..16]), 1);
    let (code, out, err) = migrate(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("migrated 3 entries"), "{out}");
}
