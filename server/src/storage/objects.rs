//! The object store of a clustered log (`--objects s3://BUCKET[/PREFIX]` or
//! `--objects file:///DIR`): hash tiles, entry bundles and the published
//! `checkpoint`, at exactly the C2SP tlog-tiles paths, so any tlog-tiles
//! client can read the bucket directly.
//!
//! # Contract
//! - [`Objects::put_immutable`] writes a tile or bundle **create-only**
//!   (`PutMode::Create`: S3 `If-None-Match: *`, a local file by an exclusive
//!   link). An object already there is success only if its bytes are
//!   identical (read back and compared): tiles and bundles are a function of
//!   the dense sequence, so a retried or stale integrator writes the same
//!   bytes; different bytes are [`StorageError::Corrupt`] and nothing is
//!   overwritten. Partial tiles have their width in the path, so every
//!   object is immutable once written.
//! - [`Objects::publish_checkpoint`] replaces `checkpoint` only by a larger
//!   tree: it reads the object and its ETag, stops if the stored size is
//!   already as large, and otherwise writes with `If-Match: <etag>`
//!   (`PutMode::Update`; `PutMode::Create` when there is none), retrying on
//!   a lost race. `LocalFileSystem` has no `PutMode::Update`, so for
//!   `file://` the same compare-then-write runs under an exclusive `flock`
//!   on `DIR/.checkpoint.lock`, writing a temporary file and renaming it
//!   over `checkpoint` (atomic on POSIX).
//! - [`Objects::delete_partials`] removes the partial objects under a tile
//!   or bundle whose full object exists, as C2SP tlog-tiles allows; nothing
//!   else is ever deleted.
//! - Every call has a deadline: the HTTP client's connect and request
//!   timeouts and an overall [`OBJECT_TIMEOUT`] around each call. A failure
//!   is [`StorageError::Objects`] (or `ObjectsTimeout`), which the HTTP layer
//!   answers with 503 `storage_unavailable`.
//!
//! S3 settings come from the usual environment variables
//! (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true` for a plain-HTTP
//! endpoint); conditional puts use `S3ConditionalPut::ETagMatch`.
//!
//! The calls are synchronous, like [`Backend`](super::Backend): they run the
//! async client on a private runtime with `futures_executor::block_on`.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};
use tokio::runtime::Runtime;

use super::StorageError;

/// Deadline of one object-store call (one GET or PUT, with its retries).
pub const OBJECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of one HTTP request inside a call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of one TCP/TLS connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the client retries a failed request (2 retries at most).
const RETRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of the checkpoint's read-compare-write before giving up.
const CHECKPOINT_ATTEMPTS: usize = 8;
/// Largest checkpoint object read back (a note with many cosignatures).
const MAX_CHECKPOINT_BYTES: usize = 1 << 16;

/// The largest object read: a full bundle of 256 entries of 65,535 bytes,
/// each with its 2-byte length (a tile is 8 KiB). Larger is refused before
/// its body is read.
const MAX_OBJECT_BYTES: u64 = attestlog::tlog::tiles::MAX_BUNDLE_BYTES as u64;

/// The name of the published checkpoint object.
pub const CHECKPOINT: &str = "checkpoint";

enum Kind {
    S3,
    /// The folder, for the flock-guarded checkpoint write.
    File(PathBuf),
}

/// A bucket or folder holding a log's public, immutable objects.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    kind: Kind,
    /// `s3://bucket/prefix` or `file:///dir`, for messages.
    target: String,
    runtime: Option<Runtime>,
}

/// The tree size of a checkpoint note (its second line); `None` if absent.
pub fn note_size(note: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(note).ok()?;
    text.lines().nth(1)?.parse().ok()
}

impl Objects {
    /// Opens `s3://BUCKET[/PREFIX]` or `file:///DIR` (created if missing).
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| StorageError::BadUrl(format!("--objects {url}: {why}"));
        let (store, kind): (Arc<dyn ObjectStore>, Kind) =
            if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket name"));
                }
                // `with_client_options` would drop what the environment set
                // (AWS_ALLOW_HTTP): set the deadlines as config keys instead.
                let secs = |d: Duration| format!("{}s", d.as_secs());
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_conditional_put(S3ConditionalPut::ETagMatch)
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        secs(REQUEST_TIMEOUT),
                    )
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        secs(CONNECT_TIMEOUT),
                    )
                    .with_retry(RetryConfig {
                        backoff: BackoffConfig::default(),
                        max_retries: 2,
                        retry_timeout: RETRY_TIMEOUT,
                    })
                    .build()
                    .map_err(|e| bad(&e.to_string()))?;
                let store: Arc<dyn ObjectStore> = match prefix.trim_end_matches('/') {
                    "" => Arc::new(s3),
                    p => Arc::new(PrefixStore::new(s3, p)),
                };
                (store, Kind::S3)
            } else if let Some(dir) = url.strip_prefix("file://") {
                if !dir.starts_with('/') {
                    return Err(bad("file:// needs an absolute path (file:///DIR)"));
                }
                let dir = PathBuf::from(dir);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(&format!("cannot create {}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| bad(&e.to_string()))?;
                (Arc::new(fs), Kind::File(dir))
            } else {
                return Err(bad("must be s3://BUCKET[/PREFIX] or file:///DIR"));
            };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("attestlog-objects")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Objects {
                target: url.to_string(),
                reason: format!("cannot start the client runtime: {e}"),
            })?;
        Ok(Objects {
            store,
            kind,
            target: url.to_string(),
            runtime: Some(runtime),
        })
    }

    /// `s3://...` or `file://...` as configured.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("present until drop")
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Objects {
            target: self.target.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    /// Runs `fut` on the calling thread with the private runtime's I/O,
    /// failing after [`OBJECT_TIMEOUT`].
    fn block_on<T>(
        &self,
        fut: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let _enter = self.runtime().enter();
        futures_executor::block_on(tokio::time::timeout(OBJECT_TIMEOUT, fut))
            .map_err(|_| StorageError::ObjectsTimeout(OBJECT_TIMEOUT))?
    }

    /// The object at `path`, `None` if there is none.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.block_on(self.get_async(path))
    }

    async fn get_async(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let location = ObjectPath::from(path);
        match self.store.get(&location).await {
            Ok(r) if r.meta.size > MAX_OBJECT_BYTES => Err(StorageError::Corrupt(format!(
                "object {path} in {} is {} bytes, over the {MAX_OBJECT_BYTES} any tile or bundle can be",
                self.target, r.meta.size
            ))),
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| self.error(&format!("GET {path}"), e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(&format!("GET {path}"), e)),
        }
    }

    /// Writes each `(path, bytes)` create-only, concurrently; see the module
    /// documentation. Returns after all are written (or the first failure).
    pub fn put_immutable(&self, objects: Vec<(String, Vec<u8>)>) -> Result<(), StorageError> {
        self.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (path, bytes) in objects {
                let store = Arc::clone(&self.store);
                tasks.spawn(async move {
                    let location = ObjectPath::from(path.as_str());
                    let opts = PutOptions::from(PutMode::Create);
                    let r = store
                        .put_opts(&location, PutPayload::from(bytes.clone()), opts)
                        .await;
                    (path, bytes, r)
                });
            }
            while let Some(done) = tasks.join_next().await {
                let (path, bytes, r) = done.map_err(|e| self.error("put task", e))?;
                match r {
                    Ok(_) => {}
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        let stored = self.get_async(&path).await?;
                        if stored.as_deref() != Some(&bytes[..]) {
                            return Err(StorageError::Corrupt(format!(
                                "object {path} in {} already exists with different bytes; \
                                 not overwritten",
                                self.target
                            )));
                        }
                    }
                    Err(e) => return Err(self.error(&format!("PUT {path}"), e)),
                }
            }
            Ok(())
        })
    }

    /// Deletes every partial object of the tile or bundle at `full_path`
    /// (`<full_path>.p/<W>`, any width) and returns how many there were.
    /// Only for a tile or bundle whose full object exists: C2SP tlog-tiles
    /// lets a log delete a partial tile once the full one is available, and
    /// a reader that finds one gone falls back to the full one.
    pub fn delete_partials(&self, full_path: &str) -> Result<usize, StorageError> {
        self.block_on(async {
            let prefix = ObjectPath::from(format!("{full_path}.p"));
            let listed = self
                .store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| self.error(&format!("LIST {prefix}"), e))?;
            for object in &listed.objects {
                match self.store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.error(&format!("DELETE {}", object.location), e)),
                }
            }
            Ok(listed.objects.len())
        })
    }

    /// Makes `note` (for tree size `size`) the published `checkpoint` unless
    /// one at least as large is there; see the module documentation.
    pub fn publish_checkpoint(&self, size: u64, note: &str) -> Result<(), StorageError> {
        match &self.kind {
            Kind::File(dir) => self.publish_file(dir, size, note),
            Kind::S3 => self.block_on(self.publish_s3(size, note)),
        }
    }

    async fn publish_s3(&self, size: u64, note: &str) -> Result<(), StorageError> {
        let location = ObjectPath::from(CHECKPOINT);
        for _ in 0..CHECKPOINT_ATTEMPTS {
            let mode = match self.store.get(&location).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    if r.meta.size > MAX_CHECKPOINT_BYTES as u64 {
                        return Err(StorageError::Corrupt(format!(
                            "{CHECKPOINT} in {} is over {MAX_CHECKPOINT_BYTES} bytes",
                            self.target
                        )));
                    }
                    let bytes = r
                        .bytes()
                        .await
                        .map_err(|e| self.error("GET checkpoint", e))?;
                    if bytes.len() > MAX_CHECKPOINT_BYTES {
                        return Err(StorageError::Corrupt(format!(
                            "{CHECKPOINT} in {} is over {MAX_CHECKPOINT_BYTES} bytes",
                            self.target
                        )));
                    }
                    if note_size(&bytes).is_some_and(|s| s >= size) {
                        return Ok(());
                    }
                    PutMode::Update(version)
                }
                Err(object_store::Error::NotFound { .. }) => PutMode::Create,
                Err(e) => return Err(self.error("GET checkpoint", e)),
            };
            let payload = PutPayload::from(note.as_bytes().to_vec());
            match self
                .store
                .put_opts(&location, payload, PutOptions::from(mode))
                .await
            {
                Ok(_) => return Ok(()),
                // Someone else wrote it since we read it: read again.
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => continue,
                Err(e) => return Err(self.error("PUT checkpoint", e)),
            }
        }
        Err(self.error(
            "PUT checkpoint",
            format!("lost the conditional write {CHECKPOINT_ATTEMPTS} times in a row"),
        ))
    }

    fn publish_file(
        &self,
        dir: &std::path::Path,
        size: u64,
        note: &str,
    ) -> Result<(), StorageError> {
        use rustix::fs::{flock, FlockOperation};
        let io = |what: &str, e: std::io::Error| self.error(what, e);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".checkpoint.lock"))
            .map_err(|e| io("open .checkpoint.lock", e))?;
        // Released when `lock` is closed at the end of this function.
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| io("flock .checkpoint.lock", e.into()))?;
        let path = dir.join(CHECKPOINT);
        match std::fs::read(&path) {
            Ok(bytes) if note_size(&bytes).is_some_and(|s| s >= size) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read checkpoint", e)),
        }
        let tmp = dir.join(".checkpoint.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create .checkpoint.tmp", e))?;
        f.write_all(note.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write .checkpoint.tmp", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename checkpoint", e))?;
        Ok(())
    }
}

impl Drop for Objects {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Objects {
    /// True if the store holds no object at all (under its prefix):
    /// `attestlog-server migrate` moves a log only into an empty one.
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        self.block_on(async {
            let list = self
                .store
                .list_with_delimiter(None)
                .await
                .map_err(|e| self.error("LIST", e))?;
            Ok(list.objects.is_empty() && list.common_prefixes.is_empty())
        })
    }
}
