//! The backends the conformance suite runs on: how each opens a log kept in
//! a test directory ([`Harness`]), and cleans up after it.

use super::*;

/// How the conformance suite opens a backend: `open(dir)` opens the log
/// kept in `dir`, creating it the first time; opening it again is a restart
/// (or, while the first is open, a second writer on the same storage). A
/// new backend adds one impl and one `conformance!` line at the end.
pub trait Harness {
    type Backend: Backend + 'static;
    fn open(dir: &Path) -> Log<Self::Backend>;
    /// Frees what `open` created outside `dir`; runs when the test's
    /// [`Guard`] drops, after the logs of the test.
    fn cleanup(_dir: &Path) {}
}

/// Keeps a test's storage alive: its directory, and whatever
/// [`Harness::cleanup`] frees when it drops.
pub struct Guard {
    dir: tempfile::TempDir,
    cleanup: fn(&Path),
}

impl Drop for Guard {
    fn drop(&mut self) {
        (self.cleanup)(self.dir.path());
    }
}

/// The embedded SQLite backend: `dir/log.db`.
pub struct Sqlite;

impl Harness for Sqlite {
    type Backend = SqliteBackend;
    fn open(dir: &Path) -> Log<SqliteBackend> {
        Log::with_backend(SqliteBackend::open(&dir.join("log.db")).unwrap()).unwrap()
    }
}

/// PostgreSQL at 127.0.0.1:5432 in cluster mode: the log of `dir` is the
/// database `attestlog_test_<hash of dir>`, created by the first `open` and
/// dropped with the test's [`Guard`], with its objects in `O`'s store.
/// Fails (never skips) if PostgreSQL or SeaweedFS is unavailable.
pub struct Postgres<O>(std::marker::PhantomData<O>);

/// Where a [`Postgres`] log of `dir` keeps its objects.
pub trait ObjectsAt {
    fn url(dir: &Path) -> String;
}

/// A folder inside the test directory: `file://DIR/objects`.
pub struct InFolder;
impl ObjectsAt for InFolder {
    fn url(dir: &Path) -> String {
        format!("file://{}/objects", dir.display())
    }
}

/// A prefix of this test process's SeaweedFS bucket.
pub struct InS3;
impl ObjectsAt for InS3 {
    fn url(dir: &Path) -> String {
        static ENV: std::sync::Once = std::sync::Once::new();
        let weed = seaweed::shared();
        ENV.call_once(|| weed.set_env());
        format!("s3://{}/{}", seaweed::BUCKET, db_name(dir))
    }
}

pub type PgFile = Postgres<InFolder>;
pub type PgS3 = Postgres<InS3>;

pub fn db_name(dir: &Path) -> String {
    let h = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("attestlog_test_{}", &hex::encode(h)[..24])
}

impl<O: ObjectsAt> Postgres<O> {
    fn backend(dir: &Path) -> PostgresBackend {
        let name = db_name(dir);
        let marker = dir.join("postgres-db");
        if !marker.exists() {
            postgres_common::admin(&format!("CREATE DATABASE {name}"));
            std::fs::write(&marker, &name).unwrap();
        }
        PostgresBackend::open(&postgres_common::url_of(&name), &O::url(dir), false).unwrap()
    }
}

impl<O: ObjectsAt + 'static> Harness for Postgres<O> {
    type Backend = PostgresBackend;
    fn open(dir: &Path) -> Log<PostgresBackend> {
        Log::with_backend(Self::backend(dir)).unwrap()
    }
    fn cleanup(dir: &Path) {
        if dir.join("postgres-db").exists() {
            let name = db_name(dir);
            postgres_common::admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// A fresh log of backend `H`: its storage guard, the directory, the log.
pub fn tmp_store<H: Harness>() -> (Guard, PathBuf, Log<H::Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let guard = Guard {
        dir,
        cleanup: H::cleanup,
    };
    let store = H::open(&path);
    (guard, path, store)
}
