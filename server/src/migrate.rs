//! `attestlog-server migrate`: moves a log from SQLite to PostgreSQL and an
//! object store (spec/storage.md, "Moving a log"; docs/operating.md).
//!
//! # Contract
//! - **Source**: `sqlite:DIR` (`DIR/log.db`, which must exist and hold at
//!   least one checkpoint). It is read in one snapshot that holds SQLite's
//!   write lock, so nothing is appended while it is copied.
//! - **Key**: the source's key file (`--key-file`, default `DIR/log.key`),
//!   checked as the server checks it at start (`keys::load_or_create`,
//!   which never creates a key for a log that has signed): mode 0600, named
//!   after the origin of the source's latest checkpoint, and the key that
//!   signed that checkpoint (`log_key_mismatch` otherwise). The moved log
//!   has the same origin and key.
//! - **Destination**: must be empty: no sequenced entry, no checkpoint in
//!   PostgreSQL, no object in the store (`destination_not_empty`), except a
//!   destination this command left half-done (below).
//! - **Copy**: every entry at exactly its index, and the leaf-hash,
//!   claim-id and search rows as stored, in ONE PostgreSQL transaction
//!   ([`PostgresBackend::import`]): nothing is deduped or recomputed.
//! - **Tree**: the entries are then integrated by [`Log::integrate`], the
//!   same code (one tile implementation) a cluster server runs, holding the
//!   integrator lease: tiles and bundles create-only to the object store,
//!   checkpoints signed with the key, `log_head` moved by CAS. A lease
//!   left by a killed earlier run is waited for (it expires within
//!   `LEASE_TTL`); one still held after twice that is `lease_held`.
//! - **Proof**: the moved log must hold a checkpoint at the source's size
//!   whose root is the source's latest root (`migrated_root_mismatch`);
//!   its latest checkpoint must verify under the key; and for the source's
//!   latest size and every power of two below it, the root recomputed from
//!   the SOURCE's tiles must be proved consistent with the moved log's
//!   latest checkpoint by a consistency proof from the moved log, checked
//!   with the client's verifier (`attestlog::tlog::merkle`).
//! - **Mark**: once proved, the source is marked as moved
//!   ([`SqliteBackend::mark_moved`]: the destination without any password,
//!   the size and root moved), and a server refuses to open it again
//!   (`log_moved`): two logs growing under one key fork. A rerun keeps the
//!   mark. `--undo` removes it only while the moved log's latest checkpoint
//!   is still the moved one (`destination_grew` otherwise): it signed
//!   nothing the old log lacks, so going back forks nothing as long as the
//!   moved log's servers stay stopped.
//! - **Crash safety: resumable.** The copy is all or nothing; integration
//!   steps are each atomic. A destination whose entries are all copied but
//!   not yet all integrated has a published size below the source's (or no
//!   checkpoint at all), so it never looks complete; running the same
//!   command again checks that its entries are the source's (same root)
//!   and finishes. Only a run that printed `migrated` is complete.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{self, RootBuilder};
use attestlog::tlog::note::NoteVerifierKey;

use crate::keys::{self, KeyError, SignedHistory};
use crate::storage::postgres::{describe_url, Heads, LEASE_TTL};
use crate::storage::{
    Backend, Log, PostgresBackend, SignedCheckpoint, SqliteBackend, StorageError,
};

/// Entries read at once when checking a half-done destination.
const CHECK_CHUNK: u64 = 4096;
/// How often a held lease is asked for again.
const LEASE_POLL: Duration = Duration::from_millis(250);

/// Why a migration stopped. Nothing it wrote makes the destination look
/// complete (see the module documentation).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--from must be sqlite:DIR, got {0:?}")]
    SourceUrl(String),
    #[error("no SQLite log at {0}")]
    SourceMissing(String),
    #[error("the source log has no checkpoint: nothing to move")]
    SourceEmpty,
    #[error("the source log changed while it was read (size {expected}, then {found})")]
    SourceChanged { expected: u64, found: u64 },
    #[error("the destination is not empty ({0}); migrate only into a new database and bucket")]
    DestinationNotEmpty(String),
    #[error("another process has held the destination's integrator lease for over twice its TTL")]
    LeaseHeld,
    #[error("the moved log's root at size {size} differs from the source's")]
    RootMismatch { size: u64 },
    #[error("consistency from size {first} to the moved log's {second} does not verify: {reason}")]
    Inconsistent {
        first: u64,
        second: u64,
        reason: String,
    },
    #[error("the log at {0} was not moved: nothing to undo")]
    NotMoved(String),
    #[error(
        "the moved log is at size {size}, not the moved size {moved}: it has been served since, \
         so the old log must stay retired"
    )]
    DestinationGrew { size: u64, moved: u64 },
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

impl MigrateError {
    /// Stable snake_case code naming the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            MigrateError::SourceUrl(_) => "source_url_invalid",
            MigrateError::SourceMissing(_) => "source_missing",
            MigrateError::SourceEmpty => "source_empty",
            MigrateError::SourceChanged { .. } => "source_changed",
            MigrateError::DestinationNotEmpty(_) => "destination_not_empty",
            MigrateError::LeaseHeld => "lease_held",
            MigrateError::RootMismatch { .. } => "migrated_root_mismatch",
            MigrateError::Inconsistent { .. } => "consistency_proof_invalid",
            MigrateError::NotMoved(_) => "not_moved",
            MigrateError::DestinationGrew { .. } => "destination_grew",
            MigrateError::Key(e) => e.code(),
            MigrateError::Storage(e) => e.code(),
        }
    }
}

/// What to move where.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `sqlite:DIR`.
    pub from: String,
    /// `postgres://...`.
    pub to: String,
    /// `s3://BUCKET[/PREFIX]` or `file:///DIR`.
    pub objects: String,
    /// Default `DIR/log.key`.
    pub key_file: Option<PathBuf>,
}

/// A finished migration.
#[derive(Clone, Debug)]
pub struct Moved {
    pub entries: u64,
    /// The source's latest checkpoint.
    pub source: SignedCheckpoint,
    /// The moved log's latest checkpoint (size `entries`, same root).
    pub checkpoint: SignedCheckpoint,
    /// The copy was done by an earlier, interrupted run.
    pub resumed: bool,
}

/// The source's folder and database file (which must exist).
fn source_db(plan: &Plan) -> Result<(PathBuf, PathBuf), MigrateError> {
    let dir = match plan.from.strip_prefix("sqlite:") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => return Err(MigrateError::SourceUrl(plan.from.clone())),
    };
    let db = dir.join("log.db");
    if !db.is_file() {
        return Err(MigrateError::SourceMissing(db.display().to_string()));
    }
    Ok((dir, db))
}

/// How the mark names the destination: no password.
fn destination(plan: &Plan) -> Result<String, MigrateError> {
    Ok(format!(
        "postgres://{} with {}",
        describe_url(&plan.to)?,
        plan.objects
    ))
}

/// Runs the migration; see the module documentation.
pub fn migrate(plan: &Plan) -> Result<Moved, MigrateError> {
    let (dir, db) = source_db(plan)?;
    let source = Log::with_backend(SqliteBackend::open(&db)?)?;
    let latest = source
        .latest_checkpoint()?
        .ok_or(MigrateError::SourceEmpty)?;
    let origin = latest.note.lines().next().unwrap_or_default().to_string();
    let key_path = plan.key_file.clone().unwrap_or_else(|| dir.join("log.key"));
    let history = SignedHistory {
        size: latest.size,
        latest_checkpoint: Some(&latest.note),
    };
    let (signer, _) = keys::load_or_create(&key_path, &origin, history)?;
    let key = signer
        .verifier_key()
        .map_err(|e| KeyError::Malformed(key_path.display().to_string(), e.to_string()))?;

    let dest = PostgresBackend::open(&plan.to, &plan.objects, false)?;
    let resumed = match dest.heads()? {
        Heads {
            sequenced: 0,
            integrated: None,
        } => {
            if !dest.objects().is_empty()? {
                return Err(MigrateError::DestinationNotEmpty(format!(
                    "{} holds objects",
                    dest.objects().target()
                )));
            }
            let snapshot = dest.import(source.backend())?.ok_or_else(|| {
                MigrateError::DestinationNotEmpty("another process wrote to it".into())
            })?;
            let found = snapshot.map_or(0, |c| c.size);
            if found != latest.size {
                return Err(MigrateError::SourceChanged {
                    expected: latest.size,
                    found,
                });
            }
            false
        }
        heads => {
            check_half_done(&dest, heads, &latest)?;
            true
        }
    };

    let log = Log::with_backend(dest)?;
    let cluster = log.backend().cluster().ok_or_else(|| {
        StorageError::Corrupt("the PostgreSQL backend has no cluster half".into())
    })?;
    // A lease left by a killed earlier run expires within LEASE_TTL.
    let lease_wait = Instant::now() + LEASE_TTL + LEASE_TTL;
    while log.tree_size() < latest.size || log.latest_checkpoint()?.is_none() {
        if !cluster.lease()? {
            if Instant::now() >= lease_wait {
                return Err(MigrateError::LeaseHeld);
            }
            std::thread::sleep(LEASE_POLL);
            continue;
        }
        let size = log.integrate(&signer)?;
        tracing::info!(size, of = latest.size, "integrated");
    }
    let moved = prove(&source, &log, &latest, &key)?;
    // The bucket's partial tiles and checkpoint follow integrations within
    // a second; here they must be there before the move is declared done.
    cluster.flush(true)?;
    cluster.release_lease();
    source.backend().mark_moved(&destination(plan)?, &latest)?;
    Ok(Moved {
        entries: latest.size,
        source: latest,
        checkpoint: moved,
        resumed,
    })
}

/// `migrate --undo`: removes the source's moved mark, only while the moved
/// log's latest checkpoint is still the one moved (same size and root).
/// Returns the size the old log is back at.
pub fn undo(plan: &Plan) -> Result<u64, MigrateError> {
    let (_, db) = source_db(plan)?;
    let source = SqliteBackend::open(&db)?;
    let mark = source
        .moved()?
        .ok_or_else(|| MigrateError::NotMoved(plan.from.clone()))?;
    let dest = PostgresBackend::open(&plan.to, &plan.objects, true)?;
    let head = dest
        .latest_checkpoint()?
        .ok_or(MigrateError::RootMismatch { size: mark.size })?;
    if head.size != mark.size {
        return Err(MigrateError::DestinationGrew {
            size: head.size,
            moved: mark.size,
        });
    }
    if head.root != mark.root {
        return Err(MigrateError::RootMismatch { size: mark.size });
    }
    source.unmark_moved()?;
    Ok(mark.size)
}

/// A destination this command may finish: exactly the source's number of
/// entries sequenced, at most that many integrated, and the sequenced
/// entries' root equal to the source's.
fn check_half_done(
    dest: &PostgresBackend,
    heads: Heads,
    latest: &SignedCheckpoint,
) -> Result<(), MigrateError> {
    let n = latest.size;
    if heads.sequenced != n || heads.integrated.is_some_and(|s| s > n) {
        return Err(MigrateError::DestinationNotEmpty(format!(
            "{} entries sequenced, {:?} integrated; the source has {n}",
            heads.sequenced, heads.integrated
        )));
    }
    let cluster = dest.cluster().ok_or_else(|| {
        StorageError::Corrupt("the PostgreSQL backend has no cluster half".into())
    })?;
    let mut root = RootBuilder::default();
    let mut from = 0;
    while from < n {
        let to = n.min(from + CHECK_CHUNK);
        for data in cluster.sequenced_entries(from, to)? {
            root.push(merkle::leaf_hash(&data));
        }
        from = to;
    }
    if root.root() != latest.root {
        return Err(MigrateError::DestinationNotEmpty(format!(
            "it holds {n} entries that are not the source's"
        )));
    }
    Ok(())
}

/// The checks of "Proof" in the module documentation; returns the moved
/// log's latest checkpoint.
fn prove<S: Backend>(
    source: &Log<S>,
    moved: &Log<PostgresBackend>,
    latest: &SignedCheckpoint,
    key: &NoteVerifierKey,
) -> Result<SignedCheckpoint, MigrateError> {
    let n = latest.size;
    let at_n = moved
        .checkpoint_at(n)?
        .ok_or(MigrateError::RootMismatch { size: n })?;
    if at_n.root != latest.root {
        return Err(MigrateError::RootMismatch { size: n });
    }
    let head = moved
        .latest_checkpoint()?
        .ok_or(MigrateError::RootMismatch { size: n })?;
    verify_checkpoint(&head.note, key, &[], 0).map_err(|e| MigrateError::Inconsistent {
        first: n,
        second: head.size,
        reason: format!("the moved checkpoint does not verify under the key: {e}"),
    })?;
    let sizes = std::iter::successors(Some(1u64), |s| s.checked_mul(2))
        .take_while(|s| *s < n)
        .chain([n])
        .filter(|s| *s > 0);
    for first in sizes {
        let old_root = source.root_at(first)?;
        let proof = moved.consistency_proof(first, head.size)?;
        merkle::verify_consistency(first, head.size, &old_root, &head.root, &proof).map_err(
            |e| MigrateError::Inconsistent {
                first,
                second: head.size,
                reason: e.to_string(),
            },
        )?;
    }
    Ok(head)
}

/// The `migrate` subcommand's arguments.
#[derive(clap::Parser, Debug)]
#[command(
    name = "attestlog-server migrate",
    about = "Copy a SQLite log into PostgreSQL and an object store (same origin, same key)"
)]
pub struct MigrateArgs {
    /// The source log: sqlite:DIR (DIR/log.db).
    #[arg(long, value_name = "URL")]
    from: String,
    /// The destination database: postgres://USER@HOST:PORT/DB, empty.
    #[arg(long, value_name = "URL")]
    to: String,
    /// The destination object store: s3://BUCKET[/PREFIX] or file:///DIR, empty.
    #[arg(long, value_name = "URL")]
    objects: String,
    /// The source log's signing key. Default: DIR/log.key.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Take a finished move back: let servers open the source again. Only
    /// while the moved log has signed nothing new; stop its servers first.
    #[arg(long)]
    undo: bool,
}

/// `attestlog-server migrate ...` (`args` without the program name's
/// `migrate`): one line on stdout when done, or `error: CODE: ...` on
/// stderr and exit status 1.
pub fn cli_main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args = <MigrateArgs as clap::Parser>::parse_from(args);
    let plan = Plan {
        from: args.from,
        to: args.to,
        objects: args.objects,
        key_file: args.key_file,
    };
    if args.undo {
        return match undo(&plan) {
            Ok(size) => {
                println!(
                    "unmarked {}: servers may open it again at size {size}; \
                     never start the moved log's servers again",
                    plan.from
                );
                0
            }
            Err(e) => {
                eprintln!("error: {}: {e}", e.code());
                1
            }
        };
    }
    match migrate(&plan) {
        Ok(m) => {
            println!(
                "migrated {} entries from {} to postgres+{}{}: checkpoint {} root {} \
                 (the source's latest, proved consistent)",
                m.entries,
                plan.from,
                plan.objects,
                if m.resumed { " (resumed)" } else { "" },
                m.checkpoint.size,
                hex::encode(m.checkpoint.root),
            );
            0
        }
        Err(e) => {
            eprintln!("error: {}: {e}", e.code());
            1
        }
    }
}
