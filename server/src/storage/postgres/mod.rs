//! The PostgreSQL backend, in cluster mode: PostgreSQL holds what must be
//! transactional, an object store ([`Objects`]) what is immutable and
//! public. Several `attestlog-server` processes may open the same database
//! and bucket (spec/cluster.md; `migrations/postgres/`).
//!
//! # Contract
//! - PostgreSQL: sequencing (`seq_head`, locked by every sequencing
//!   transaction), entries (integrated and not yet), the leaf-hash and
//!   claim-id dedup index, the search index, `log_head` (the integrated
//!   size and root, moved by compare-and-swap), every checkpoint,
//!   cosignatures, and the integrator `lease`.
//! - The object store: hash tiles, entry bundles (C2SP paths, create-only)
//!   and the published `checkpoint`.
//! - [`Cluster::sequence`] (`sequence.rs`) is any frontend's write; the
//!   integrator's is [`Backend::append`] (`append.rs`): objects first, then
//!   the head CAS fenced by the lease epoch (`lease.rs`), then the bucket
//!   checkpoint. A reader's view is `log_head` and the objects it names,
//!   which exist before the head names them.
//! - Reads: checkpoints, entries, dedup and search from PostgreSQL; tiles
//!   and bundles from the object store at the width of the size asked
//!   (cached in memory: every object is immutable).
//! - Reads share one connection (tokio-postgres pipelines concurrent
//!   queries on it); sequencing, the integrator's commit and cosignatures
//!   use a second one behind a mutex; a third `LISTEN`s. A closed
//!   connection is replaced on next use, so the process recovers by itself
//!   once PostgreSQL is back; until then calls fail with a typed error that
//!   HTTP answers with 503.
//! - A read-only backend (`--read-only`) never migrates and never writes.
//!
//! # Driver: tokio-postgres
//! The maintained pure-Rust driver under both `postgres` and `sqlx`'s
//! PostgreSQL support, with no macros, no build-time database and few
//! dependencies (sqlx would add its query macros and its own pool for
//! nothing: the queries here are fixed and few). The synchronous `postgres`
//! wrapper is not usable here because its calls panic inside a tokio
//! runtime, and the backend is also called from async code; instead the
//! connections run on a private runtime (`conn.rs`). TLS by rustls with
//! `sslmode=verify-full&sslrootcert=FILE` only (`tls.rs`).

mod append;
mod conn;
mod flush;
mod import;
mod lease;
mod read;
mod recent;
mod sequence;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

pub use conn::{describe_url, CONNECT_TIMEOUT, PG_SCHEMA_VERSION, QUERY_TIMEOUT};
pub use flush::FLUSH_EVERY;
pub use import::Heads;
pub use lease::{LEASE_TTL, RENEW_AFTER};
pub use sequence::LOCK_WAIT;

use super::objects::Objects;
use super::{
    Appended, Backend, Cluster, Event, Hash, LogStore, NewEntry, SearchKind, SequencedBatch,
    SignedCheckpoint, StorageError, StoredTile,
};

/// How often a dropped listener connection is retried at most.
const LISTENER_RETRY: Duration = Duration::from_secs(1);

/// A log in one PostgreSQL database and one object store. See the module
/// documentation.
pub struct PostgresBackend {
    // Field order: the clients drop before the runtime their I/O runs on.
    writer: Mutex<Option<conn::Conn>>,
    readers: conn::Slot,
    /// The `LISTEN` connection and when it was last (re)opened.
    listener: Mutex<(Option<Client>, Option<Instant>)>,
    connector: conn::Connector,
    objects: Arc<Objects>,
    tile_cache: read::TileCache,
    /// Entries this process sequenced, for its integrations.
    recent: recent::RecentEntries,
    /// When the bucket's copy of the hot edge was last written.
    flusher: flush::Flusher,
    /// The latest cosigned checkpoint read with the head, for the one
    /// [`Backend::latest_cosigned`] call that follows it (`refresh`).
    cosigned_read: Mutex<Option<Option<(u64, String)>>>,
    lease: lease::Lease,
    events: Arc<lease::Events>,
    /// The sequenced size this process's own last sequencing committed
    /// (with [`lease::Events::hint`]: [`Cluster::sequenced_size`]).
    own_sequenced: AtomicU64,
    read_only: bool,
}

impl LogStore {
    /// Opens the log in the PostgreSQL database at `url` with its objects
    /// in `objects` (`s3://...` or `file:///...`), creating the schema the
    /// first time unless `read_only`.
    pub fn open_postgres(url: &str, objects: &str, read_only: bool) -> Result<Self, StorageError> {
        let backend = PostgresBackend::open(url, objects, read_only)?;
        let target = backend.connector.target().to_string();
        let log = Self::with_backend(Box::new(backend))?;
        tracing::info!(size = log.tree_size(), %target, objects, read_only, "opened PostgreSQL log store");
        Ok(log)
    }
}

impl PostgresBackend {
    /// Connects to `url` and opens `objects`, applies migrations (unless
    /// `read_only`: then the schema must be current) and checks that the
    /// sequencing and integration heads agree with the entries.
    pub fn open(url: &str, objects: &str, read_only: bool) -> Result<Self, StorageError> {
        let connector = conn::Connector::new(url)?;
        let objects = Arc::new(Objects::open(objects)?);
        let mut writer = connector.connect()?;
        if read_only {
            conn::check_schema(&connector, &writer)?;
        } else {
            conn::migrate(&connector, &mut writer)?;
        }
        let readers = conn::Slot::new(connector.connect()?);
        let backend = PostgresBackend {
            writer: Mutex::new(Some(writer)),
            readers,
            listener: Mutex::new((None, None)),
            connector,
            flusher: flush::Flusher::default(),
            cosigned_read: Mutex::new(None),
            objects,
            tile_cache: read::TileCache::default(),
            recent: recent::RecentEntries::default(),
            lease: lease::Lease::new(),
            events: Arc::new(lease::Events::default()),
            own_sequenced: AtomicU64::new(0),
            read_only,
        };
        backend.check_consistent()?;
        backend.ensure_listener();
        Ok(backend)
    }

    /// The object store (for tools and tests).
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// One statement, so one snapshot: other processes may be writing.
    fn check_consistent(&self) -> Result<(), StorageError> {
        let c = self.readers.get(&self.connector)?;
        type Row = (i64, i64, Option<i64>, Option<i64>);
        let (entries, next, head, latest): Row = self.connector.block_on(async {
            let r = c
                .query_one(
                    "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM entries), \
                            (SELECT next_idx FROM seq_head), (SELECT size FROM log_head), \
                            (SELECT size FROM checkpoints \
                             WHERE size = (SELECT size FROM log_head))",
                    &[],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>((r.get(0), r.get(1), r.get(2), r.get(3)))
        })?;
        if entries != next || latest != head || head.unwrap_or(0) > next {
            return Err(StorageError::Corrupt(format!(
                "{entries} entries, seq_head {next}, log_head {head:?}, its checkpoint {latest:?}"
            )));
        }
        Ok(())
    }

    /// Runs `f` with the writer connection, reconnecting first if it is
    /// gone; drops the connection on an I/O failure or timeout so an
    /// interrupted transaction can never be continued.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut conn::Conn) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        let mut slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(self.connector.connect()?);
        }
        let r = f(slot.as_mut().expect("just set"));
        if matches!(r, Err(StorageError::Timeout(_) | StorageError::Postgres(_))) {
            *slot = None;
        }
        r
    }

    /// (Re)opens the `LISTEN` connection if it is gone, at most once per
    /// [`LISTENER_RETRY`]; without it waits fall back to polling.
    fn ensure_listener(&self) {
        let mut l = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if l.0.as_ref().is_some_and(|c| !c.is_closed()) {
            return;
        }
        if l.1.is_some_and(|at| at.elapsed() < LISTENER_RETRY) {
            return;
        }
        l.1 = Some(Instant::now());
        let channels = [sequence::SEQUENCED_CHANNEL, lease::INTEGRATED_CHANNEL];
        match self
            .connector
            .connect_listener(&channels, Arc::clone(&self.events))
        {
            Ok(c) => l.0 = Some(c),
            Err(e) => {
                l.0 = None;
                tracing::warn!(error = %e, "cannot LISTEN for log notifications; polling");
            }
        }
    }
}

impl Backend for PostgresBackend {
    fn append(&self, batch: &SequencedBatch<'_>) -> Result<(), StorageError> {
        self.publish(batch)
    }

    /// The head's checkpoint, read with the `hot_tiles` rows and the latest
    /// cosigned checkpoint in one statement; the rows go in the tile cache
    /// under the paths of their widths at that size, and the cosigned one
    /// answers the next [`Backend::latest_cosigned`], so a follower's
    /// refresh costs one round trip.
    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StorageError> {
        let Some(edge) = self.hot_edge()? else {
            return Ok(None);
        };
        self.cache_hot_rows(edge.head.size, edge.tiles);
        *self.cosigned_read.lock().unwrap_or_else(|e| e.into_inner()) = Some(edge.cosigned);
        Ok(Some(edge.head))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StorageError> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.checkpoint_row(
            "SELECT size, root, note FROM checkpoints WHERE size = $1",
            Some(size),
        )
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_entry(index)
    }

    fn entry_bundle(
        &self,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<(Vec<u8>, usize), StorageError> {
        self.read_bundle(start, end, tree_size)
    }

    fn tile(&self, level: u8, index: u64, tree_size: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .read_tile(level, index, tree_size)?
            .map(|t| t.hashes.clone()))
    }

    fn tile_with_mid(
        &self,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Option<StoredTile>, StorageError> {
        Ok(self
            .read_tile(level, index, tree_size)?
            .map(|t| StoredTile::clone(&t)))
    }

    fn find_leaves(&self, leaf_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.lookup(sequence::FIND_LEAVES, leaf_hashes)
    }

    fn find_claims(&self, claim_ids: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.lookup(sequence::FIND_CLAIMS, claim_ids)
    }

    fn search(
        &self,
        kind: SearchKind,
        key: &[u8],
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StorageError> {
        self.read_search(kind, key, after, limit)
    }

    fn store_cosigned(&self, size: u64, note: &str) -> Result<(), StorageError> {
        let size = i64::try_from(size)
            .map_err(|_| StorageError::Corrupt(format!("size {size} is over i64")))?;
        self.with_writer(|c| {
            self.connector.block_on(c.execute(
                "INSERT INTO cosigned (size, note) VALUES ($1, $2) \
                 ON CONFLICT (size) DO UPDATE SET note = excluded.note",
                &[&size, &note],
            ))
        })?;
        Ok(())
    }

    fn latest_cosigned(&self) -> Result<Option<(u64, String)>, StorageError> {
        let read = self
            .cosigned_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(cosigned) = read {
            return Ok(cosigned);
        }
        self.read_latest_cosigned()
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }
}

impl Cluster for PostgresBackend {
    fn sequence(
        &self,
        batch: &[NewEntry],
        claims: &[Option<Hash>],
    ) -> Result<Vec<Appended>, StorageError> {
        let out = self.with_writer(|c| {
            self.connector
                .block_on(sequence::sequence(c, batch, claims))
        })?;
        let next = out.iter().map(|a| a.index + 1).max().unwrap_or(0);
        self.own_sequenced.fetch_max(next, Ordering::AcqRel);
        self.recent.insert(
            batch
                .iter()
                .zip(&out)
                .filter(|(_, a)| !a.duplicate)
                .map(|(e, a)| (a.index, e.bytes.clone())),
        );
        Ok(out)
    }

    fn sequenced_hint(&self) -> u64 {
        self.events
            .hint(Event::Sequenced)
            .max(self.own_sequenced.load(Ordering::Acquire))
    }

    fn sequenced_size(&self, beyond: u64) -> Result<u64, StorageError> {
        let hint = self.sequenced_hint();
        if hint > beyond {
            return Ok(hint);
        }
        let c = self.readers.get(&self.connector)?;
        let next: i64 = self
            .connector
            .block_on(async {
                let statement = c.prepare("SELECT next_idx FROM seq_head").await?;
                c.query_one(&statement, &[]).await
            })?
            .get(0);
        Ok(next as u64)
    }

    fn sequenced_entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        // This process's own entries, and those it read before, from
        // memory; only the rest (another frontend's the first time, or all
        // after a restart) from PostgreSQL.
        let found = self.recent.lookup(from, to);
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        let missing: Vec<bool> = found.iter().map(Option::is_none).collect();
        let c = self.readers.get(&self.connector)?;
        let all = if missing.iter().all(|m| *m) {
            self.connector.block_on(sequence::entries(&c, from, to))?
        } else {
            self.connector
                .block_on(sequence::fill_entries(&c, from, found))?
        };
        // Kept for the bundle they complete and the flushes of the partial
        // one, which would read them again.
        self.recent.insert(
            (from..)
                .zip(&all)
                .zip(missing)
                .filter(|(_, m)| *m)
                .map(|((i, b), _)| (i, b.clone())),
        );
        Ok(all)
    }

    fn lease(&self) -> Result<bool, StorageError> {
        if self.read_only {
            return Ok(false);
        }
        if self.lease.fresh().is_some() {
            return Ok(true);
        }
        let was = self.lease.epoch();
        if was.is_none() && self.lease.recently_refused() {
            return Ok(false);
        }
        let r = self.with_writer(|c| self.connector.block_on(self.lease.acquire(c)));
        let now = match r {
            Ok(epoch) => epoch,
            Err(e) => {
                self.lease.forget();
                return Err(e);
            }
        };
        if now.is_none() {
            self.lease.refused_now();
        }
        if now.is_some() && now != was {
            tracing::info!(epoch = now, holder = %self.lease.holder, "integrator lease acquired");
            // A predecessor may have died before flushing its last heads
            // to the bucket: the next flush runs at once.
            self.flusher.reset();
        }
        Ok(now.is_some())
    }

    fn holds_lease(&self) -> bool {
        !self.read_only && self.lease.epoch().is_some()
    }

    fn release_lease(&self) {
        if self.read_only || self.lease.epoch().is_none() {
            return;
        }
        if let Err(e) = self.with_writer(|c| self.connector.block_on(self.lease.release(c))) {
            tracing::warn!(error = %e, "could not release the integrator lease; it expires by itself");
        }
    }

    fn events(&self, event: Event) -> u64 {
        self.events.count(event)
    }

    fn integrated_hint(&self) -> u64 {
        self.events.hint(Event::Integrated)
    }

    fn wait(&self, event: Event, seen: u64, timeout: Duration) {
        self.ensure_listener();
        self.events.wait(event, seen, timeout);
    }

    fn flush(&self, force: bool) -> Result<(), StorageError> {
        self.flush_bucket(force).map(drop)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}
