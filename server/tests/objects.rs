//! The object-store module against a real SeaweedFS S3 server and a local
//! folder: create-only tiles (identical bytes are success, different bytes
//! are refused and not overwritten), the published checkpoint only ever
//! grows, and an unreachable endpoint fails within the deadline.

#[path = "common/seaweed.rs"]
mod seaweed;

use std::time::{Duration, Instant};

use attestlog_server::storage::objects::{Objects, CHECKPOINT};
use attestlog_server::storage::StorageError;

/// Serializes the tests' changes of the AWS_* variables with the opens
/// that read them.
static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_s3(url: &str) -> Objects {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    seaweed::shared().set_env();
    Objects::open(url).unwrap()
}

fn note(size: u64) -> String {
    format!("test/log\n{size}\nAAAA\n\n\u{2014} test/log c2ln\n")
}

fn create_only_and_checkpoint(objects: &Objects) {
    let tile = "tile/0/x001/234.p/5".to_string();
    objects
        .put_immutable(vec![(tile.clone(), b"hashes".to_vec())])
        .unwrap();
    // The same bytes again (a retried or stale integrator): success.
    objects
        .put_immutable(vec![(tile.clone(), b"hashes".to_vec())])
        .unwrap();
    // Different bytes: refused, and the object keeps its first bytes.
    match objects.put_immutable(vec![(tile.clone(), b"other".to_vec())]) {
        Err(e @ StorageError::Corrupt(_)) => {
            assert!(
                e.to_string()
                    .contains("already exists with different bytes"),
                "{e}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(objects.get(&tile).unwrap().as_deref(), Some(&b"hashes"[..]));
    assert_eq!(objects.get("tile/0/000").unwrap(), None);

    // The checkpoint grows and never shrinks.
    assert_eq!(objects.get(CHECKPOINT).unwrap(), None);
    objects.publish_checkpoint(5, &note(5)).unwrap();
    objects.publish_checkpoint(9, &note(9)).unwrap();
    objects.publish_checkpoint(7, &note(7)).unwrap();
    assert_eq!(objects.get(CHECKPOINT).unwrap(), Some(note(9).into_bytes()));
    // Writers racing: the largest wins.
    std::thread::scope(|s| {
        for size in 10..18 {
            s.spawn(move || objects.publish_checkpoint(size, &note(size)).unwrap());
        }
    });
    assert_eq!(
        objects.get(CHECKPOINT).unwrap(),
        Some(note(17).into_bytes())
    );
}

#[test]
fn local_folder_objects_are_create_only_and_the_checkpoint_only_grows() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::open(&format!("file://{}", dir.path().display())).unwrap();
    create_only_and_checkpoint(&objects);
    // At the C2SP path, as plain files.
    assert_eq!(
        std::fs::read(dir.path().join("tile/0/x001/234.p/5")).unwrap(),
        b"hashes"
    );
}

#[test]
fn seaweedfs_objects_are_create_only_and_the_checkpoint_only_grows() {
    let objects = open_s3(&seaweed::shared().url());
    create_only_and_checkpoint(&objects);
}

#[test]
fn unreachable_object_store_is_a_typed_error_within_the_deadline() {
    // A bucket on a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        seaweed::shared().set_env();
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
        let dead = Objects::open(&format!("s3://{}/x", seaweed::BUCKET)).unwrap();
        seaweed::shared().set_env();
        dead
    };
    let started = Instant::now();
    match dead.put_immutable(vec![("tile/0/000".into(), vec![1; 32])]) {
        Err(e @ (StorageError::Objects { .. } | StorageError::ObjectsTimeout(_))) => {
            assert!(e.is_unavailable(), "{e}");
        }
        other => panic!("expected an object-store error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(dead.get("tile/0/000").is_err());
}

#[test]
fn bad_objects_urls_are_refused() {
    for url in ["gs://x", "s3://", "file://relative/dir", ""] {
        match Objects::open(url) {
            Err(e @ StorageError::BadUrl(_)) => assert_eq!(e.code(), "storage_url_invalid"),
            Err(e) => panic!("{url}: wrong error {e}"),
            Ok(_) => panic!("{url}: accepted"),
        }
    }
}
