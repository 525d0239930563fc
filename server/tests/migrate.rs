//! `attestlog-server migrate` with real processes: a SQLite log filled over
//! HTTP with simulated-NSM entries (plus a legacy pair of entries of one
//! claim id) is moved into PostgreSQL and SeaweedFS, served by the postgres
//! backend, and `attestlog monitor`, which followed the SQLite log, accepts
//! the moved log as consistent. Interrupted moves and refused cases are in
//! `migrate_resume.rs`.

mod common;
#[path = "common/migrate_cli.rs"]
mod migrate_cli;
mod postgres_common;
#[path = "common/seaweed.rs"]
mod seaweed;

use std::path::Path;
use std::process::Command;

use attestlog::claim::{entry_claim_id, Entry};
use attestlog::nitro::CoseParts;
use attestlog::tlog::note::NoteSigner;
use attestlog_server::storage::{PostgresBackend, SqliteBackend};
use common::*;
use migrate_cli::migrate;
use postgres_common::TestDb;
use reqwest::blocking::Client;

/// The order n of the P-384 group, big-endian.
const P384_N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// `entry` with its signature (r, s) replaced by (r, n - s): another valid
/// entry of the same claim, which only a log from before claim dedup holds.
fn twin(entry: &[u8]) -> Vec<u8> {
    let e = Entry::decode(entry).expect("entry");
    let mut parts = CoseParts::from_nsm_bytes(e.attestation).expect("NSM encoding");
    let s = &mut parts.signature[48..];
    let mut borrow = 0i16;
    for i in (0..48).rev() {
        let d = i16::from(P384_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = d.rem_euclid(256) as u8;
    }
    Entry::encode(e.statement, &parts.encode().expect("encode")).expect("entry")
}

/// Starts `attestlog-server` on the SQLite log in `dir`, expecting it to
/// refuse at once: (exit code, stderr); (-1, ..) if it was still running
/// after 30 s (it is then killed).
fn serve_once(dir: &Path, root: &Path) -> (i32, String) {
    use std::io::Read;
    let mut child = Server::command(dir, root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run attestlog-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (-1, "still serving after 30 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    (code, err)
}

/// `attestlog monitor --once`: the exit code and its JSON reports.
fn monitor(url: &str, vkey: &str, state: &Path, root: &Path) -> (i32, Vec<serde_json::Value>) {
    let out = Command::new(attestlog_bin())
        .args(["monitor", "--once", "--log", url, "--key", vkey, "--state"])
        .arg(state)
        .arg("--root")
        .arg(root)
        .output()
        .expect("monitor");
    eprintln!("monitor: {}", String::from_utf8_lossy(&out.stderr));
    let reports = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out.status.code().unwrap_or(-1), reports)
}

/// What a reader fetches: checkpoint, every bundle and level-0 tile, and
/// a search, for a log of `size` entries.
fn snapshot(client: &Client, url: &str, size: u64) -> Vec<(String, Vec<u8>)> {
    let mut paths = vec!["checkpoint".to_string()];
    for n in 0..size.div_ceil(256) {
        let w = (size - n * 256).min(256);
        let suffix = if w == 256 {
            String::new()
        } else {
            format!(".p/{w}")
        };
        paths.push(format!("tile/entries/{n:03}{suffix}"));
        paths.push(format!("tile/0/{n:03}{suffix}"));
    }
    let artifact = hex::encode(sha256(b"artifact 7"));
    paths.push(format!("v1/search?artifact_sha256={artifact}"));
    paths
        .into_iter()
        .map(|p| {
            let body = get_bytes(client, format!("{url}/{p}"));
            (p, body)
        })
        .collect()
}

#[test]
fn a_sqlite_log_moves_to_postgres_and_s3_and_the_monitor_finds_it_consistent() {
    let weed = seaweed::shared();
    weed.set_env();
    let dir = tempfile::tempdir().unwrap();
    let (nsm, root) = dev_nsm(dir.path());
    let src = dir.path().join("sqlite");
    let signer = NoteSigner::generate(TEST_ORIGIN).unwrap();
    write_key(&src, &signer);
    let key_file = src.join("log.key");
    let client = Client::new();

    // 300 real entries over HTTP from 4 submitters (two bundles, a partial).
    let mut server = Server::start(&src, &root, &["--batch-max-age", "5"]);
    let vkey = server.verifier_key.clone();
    let entries: Vec<Vec<u8>> = (0..300).map(|n| entry(&nsm, n)).collect();
    std::thread::scope(|s| {
        for part in entries.chunks(75) {
            let (client, url) = (&client, &server.url);
            s.spawn(move || {
                for e in part {
                    let (status, answer) = submit_to(client, url, e).unwrap();
                    assert_eq!(status, 200, "{answer}");
                }
            });
        }
    });
    let state = dir.path().join("monitor");
    let (code, _) = monitor(&server.url, &vkey, &state, &root);
    assert_eq!(code, 0, "the monitor follows the SQLite log");
    server.terminate();

    // A legacy log: the twin of entry 7 logged beside it, as before claim
    // dedup (its claim-index row removed, then appended straight).
    let logged_7 = {
        let conn = rusqlite::Connection::open(src.join("log.db")).unwrap();
        let (idx, data): (i64, Vec<u8>) = conn
            .query_row(
                "SELECT idx, data FROM entries WHERE data = ?1",
                [&entries[7]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        conn.execute("DELETE FROM claim_index WHERE idx = ?1", [idx])
            .unwrap();
        data
    };
    let twin_7 = twin(&logged_7);
    assert_eq!(
        entry_claim_id(&twin_7).unwrap(),
        entry_claim_id(&logged_7).unwrap()
    );
    smuggle(&src, &signer, std::slice::from_ref(&twin_7));
    let size = 301;
    let server = Server::start(&src, &root, &[]);
    let before = snapshot(&client, &server.url, size);
    let (code, _) = monitor(&server.url, &vkey, &state, &root);
    assert_eq!(code, 0, "the monitor follows the SQLite log to {size}");
    drop(server);

    let db = TestDb::create();
    let objects = weed.url();
    let to = ["--to", db.url.as_str(), "--objects", objects.as_str()];
    let from_arg = format!("sqlite:{}", src.display());
    let from = ["--from", from_arg.as_str()];

    // Refused: a key that did not sign the source's checkpoints.
    let other = dir.path().join("other");
    write_key(&other, &NoteSigner::generate(TEST_ORIGIN).unwrap());
    let other_key = other.join("log.key");
    let (code, _, err) = migrate(
        &[
            &from[..],
            &to[..],
            &["--key-file", other_key.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: log_key_mismatch: "), "{err}");
    // Refused: a destination some server already wrote to.
    let used = TestDb::create();
    let used_objects = format!("file://{}/used", dir.path().display());
    {
        let pg = Server::start(
            &dir.path().join("used-key"),
            &root,
            &["--storage", &used.url, "--objects", &used_objects],
        );
        assert_eq!(
            submit_to(&client, &pg.url, &entry(&nsm, 999)).unwrap().0,
            200
        );
    }
    let (code, _, err) =
        migrate(&[&from[..], &["--to", &used.url, "--objects", &used_objects]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: destination_not_empty: "), "{err}");
    // Refused: an empty database but a store holding another log's objects.
    let fresh = TestDb::create();
    let (code, _, err) =
        migrate(&[&from[..], &["--to", &fresh.url, "--objects", &used_objects]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: destination_not_empty: "), "{err}");
    // Refused: the source is not sqlite:DIR.
    let (code, _, err) = migrate(&[&["--from", "postgres://x/y"][..], &to[..]].concat());
    assert_eq!(code, 1);
    assert!(err.starts_with("error: source_url_invalid: "), "{err}");

    // The move.
    let (code, out, err) = migrate(&[&from[..], &to[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("migrated {size} entries")),
        "{out}"
    );
    // Again: nothing left to do, and nothing changes.
    let (code, out, err) = migrate(&[&from[..], &to[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(resumed)"), "{out}");
    // The old log is retired: a server refuses to open it (a second writer
    // under the same key would fork the log), and the mark names the
    // destination without its password.
    let (code, err) = serve_once(&src, &root);
    assert_ne!(code, 0);
    assert!(err.contains("log_moved"), "{err}");
    let mark = SqliteBackend::open(&src.join("log.db"))
        .unwrap()
        .moved()
        .unwrap()
        .expect("the source is marked");
    assert_eq!(mark.size, size);
    assert!(mark.destination.contains(&objects), "{mark:?}");
    assert!(!mark.destination.contains("postgres@"), "{mark:?}");
    // --undo while the moved log is still at the moved size takes it back.
    let undo = ["--undo"];
    let (code, out, err) = migrate(&[&from[..], &to[..], &undo[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("unmarked "), "{out}");
    drop(Server::start(&src, &root, &[]));
    let (code, _, err) = migrate(&[&from[..], &to[..], &undo[..]].concat());
    assert_eq!(code, 1);
    assert!(err.starts_with("error: not_moved: "), "{err}");
    let (code, _, err) = migrate(&[&from[..], &to[..]].concat());
    assert_eq!(code, 0, "moved again: {err}");
    // A mark whose root is not the moved log's at that size (the mark
    // edited, or another log at that destination): --undo refuses, and the
    // source stays retired.
    let set_mark_root = |root: &[u8]| {
        rusqlite::Connection::open(src.join("log.db"))
            .unwrap()
            .execute("UPDATE moved SET root = ?1", [root])
            .unwrap();
    };
    set_mark_root(&[7; 32]);
    let (code, _, err) = migrate(&[&from[..], &to[..], &undo[..]].concat());
    assert_eq!(code, 1);
    assert!(err.starts_with("error: migrated_root_mismatch: "), "{err}");
    assert_eq!(serve_once(&src, &root).0, 1, "still retired");
    set_mark_root(&mark.root[..]);

    // Served by the postgres backend: byte for byte what SQLite served
    // (the checkpoint too: Ed25519 signing is deterministic), and the
    // monitor that followed the SQLite log accepts it.
    let key_arg = key_file.to_str().unwrap();
    let pg_args = [
        "--storage",
        &db.url,
        "--objects",
        &objects,
        "--key-file",
        key_arg,
    ];
    let pg = Server::start(&dir.path().join("pg"), &root, &pg_args);
    assert_eq!(pg.verifier_key, vkey);
    assert_eq!(snapshot(&client, &pg.url, size), before);
    let (code, reports) = monitor(&pg.url, &vkey, &state, &root);
    assert_eq!(code, 0, "{reports:?}");
    // The moved log grows, and the monitor follows it there.
    let (status, answer) = submit_to(&client, &pg.url, &entry(&nsm, 1000)).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["index"], size);
    let (code, reports) = monitor(&pg.url, &vkey, &state, &root);
    assert_eq!(code, 0, "{reports:?}");
    // Once the moved log has grown, the move cannot be taken back.
    let (code, _, err) = migrate(&[&from[..], &to[..], &undo[..]].concat());
    assert_eq!(code, 1);
    assert!(err.starts_with("error: destination_grew: "), "{err}");
    assert_eq!(serve_once(&src, &root).0, 1, "still retired");
    // Straight from the bucket: the same bundle as the SQLite log served.
    let bucket = PostgresBackend::open(&db.url, &objects, true).unwrap();
    assert_eq!(
        bucket.objects().get("tile/entries/000").unwrap().unwrap(),
        before[1].1
    );
}
