//! `attestlog-server`: the append-only log of attested builds.
//!
//! With no arguments it runs on the embedded default: SQLite under
//! `./attestlog-data/`, listening on 127.0.0.1:8080, trusting only the AWS
//! Nitro root.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use attestlog::nitro::{NitroVerifier, TrustRoots};
use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::note::NoteVerifierKey;
use attestlog_server::cluster::Worker;
use attestlog_server::http::{router, serve, AppState, ServeConfig, SubmitPolicy};
use attestlog_server::keys;
use attestlog_server::metrics::Metrics;
use attestlog_server::pool::{self, WorkerPool};
use attestlog_server::sequencer::{BatchConfig, Sequencer};
use attestlog_server::storage::{LogStore, DEFAULT_READ_CACHE_BYTES};
use attestlog_server::witnessing::{WitnessConfig, Witnesses};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "attestlog-server",
    version,
    about = "An append-only transparency log of attested builds"
)]
struct Args {
    /// Folder for the SQLite log (log.db) and, by default, the signing key.
    #[arg(long, default_value = "attestlog-data")]
    data_dir: PathBuf,
    /// Where the log lives: `sqlite:DIR` (the same as --data-dir DIR) or a
    /// PostgreSQL URL `postgres://USER@HOST:PORT/DB` (cluster mode, needs
    /// --objects); with PostgreSQL, --data-dir holds only the default
    /// --key-file. Default: sqlite:<data-dir>.
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// With --storage postgres://...: where tiles, entry bundles and the
    /// published checkpoint live: `s3://BUCKET[/PREFIX]` (endpoint, region
    /// and credentials from the AWS_* environment variables) or
    /// `file:///DIR`.
    #[arg(long, value_name = "URL")]
    objects: Option<String>,
    /// Serve the read API only (cluster mode): no signing key, POST
    /// /v1/entries answers 403 `read_only`. Needs --verifier-key.
    #[arg(long)]
    read_only: bool,
    /// The log's verifier key (as a writing server prints it), which a
    /// --read-only server checks the published checkpoint against.
    #[arg(long, value_name = "VKEY")]
    verifier_key: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The log's origin: the first checkpoint line and the signing key's name.
    #[arg(long, default_value = "localhost/attestlog")]
    origin: String,
    /// The checkpoint signing key (PRIVATE+KEY+... text, mode 0600). Created on
    /// first start of an empty log if missing; for a log that has signed
    /// anything it must be the key that did. Default: <data-dir>/log.key.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Also trust this root certificate (PEM), e.g. the simulated NSM's dev
    /// root. Repeatable. The AWS Nitro root is always trusted.
    #[arg(long = "trust-root", value_name = "PEM")]
    trust_roots: Vec<PathBuf>,
    /// Accept debug-mode attestations (PCR0-2 all zero).
    #[arg(long)]
    allow_debug: bool,
    /// Refuse attestations whose timestamp is further than this from the
    /// server clock, in seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    max_clock_skew: u64,
    /// Close a batch when it holds this many entries...
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// ...or, when nothing verified is queued behind it, wait up to this
    /// many milliseconds for submissions still being verified (0: commit
    /// what is queued at once; the next batch forms during the commit).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    batch_max_age: u64,
    /// A c2sp.org/tlog-witness witness to cosign every checkpoint, as
    /// URL=VKEY (VKEY: the witness's cosignature/v1 verifier key).
    /// Repeatable. With witnesses, only checkpoints cosigned by the quorum
    /// are published.
    #[arg(long = "witness", value_name = "URL=VKEY")]
    witnesses: Vec<String>,
    /// How many witnesses must cosign a checkpoint before it is published
    /// (default: all of them).
    #[arg(long, value_name = "K")]
    witness_quorum: Option<usize>,
    /// Serve at most this many connections at once; one more gets a 503
    /// `too_many_connections`. Lowered to fit `ulimit -n` (minus
    /// descriptors kept for the database and refusals).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// Close a connection whose request head has not fully arrived this many
    /// seconds after the server started waiting for it.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    header_timeout: u64,
    /// Close a connection on which no byte has moved for this many seconds
    /// while the server waits on the client (before a request, or while it
    /// sends a body or reads an answer).
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    idle_timeout: u64,
    /// Keep up to this many MiB of full hash tiles and entry bundles (and
    /// bundles' gzip encodings) in memory, served without a database read:
    /// they never change. 0 disables the cache.
    #[arg(long, default_value_t = DEFAULT_READ_CACHE_BYTES >> 20, value_name = "MIB")]
    read_cache_mib: usize,
}

/// File descriptors kept out of `--max-connections`: SQLite (the database,
/// its WAL and shm files, for the writer and each reader), the listener,
/// stdio, refusals in progress, and outgoing witness requests.
const RESERVED_FDS: u64 = 64 + attestlog_server::http::MAX_REFUSALS as u64;

/// Where the log lives (`--storage`).
enum Storage {
    Sqlite(PathBuf),
    /// The URL as given (it may hold a password: never logged) and the
    /// object store's URL.
    Postgres(String, String),
}

impl Storage {
    fn parse(
        url: Option<&str>,
        objects: Option<&str>,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let postgres =
            url.is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        match (url, objects) {
            (Some(u), Some(o)) if postgres => return Ok(Storage::Postgres(u.into(), o.into())),
            (Some(_), None) if postgres => anyhow::bail!(
                "objects_required: --storage postgres://... needs --objects s3://BUCKET or file:///DIR"
            ),
            (_, Some(_)) => anyhow::bail!(
                "objects_unsupported: --objects goes only with --storage postgres://..."
            ),
            _ => {}
        }
        match url {
            None => Ok(Storage::Sqlite(data_dir.to_path_buf())),
            Some(u) => match u.strip_prefix("sqlite:") {
                Some(dir) if !dir.is_empty() => Ok(Storage::Sqlite(PathBuf::from(dir))),
                _ => anyhow::bail!(
                    "storage_url_invalid: --storage must be sqlite:DIR or postgres://..."
                ),
            },
        }
    }

    /// The read threads of this storage (`AppState::reads`): SQLite reads
    /// local pages, bounded by the CPU and the page cache, so one thread per
    /// core, and no more than its reader connections; PostgreSQL and object
    /// storage wait on the network, on tokio's blocking pool.
    fn read_pool(&self) -> Option<WorkerPool> {
        match self {
            Storage::Sqlite(_) => Some(WorkerPool::start(
                "read",
                pool::cores().min(attestlog_server::storage::sqlite::READERS),
            )),
            Storage::Postgres(..) => None,
        }
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Sqlite(dir) => write!(f, "sqlite:{}", dir.display()),
            Storage::Postgres(_, objects) => write!(f, "postgres+{objects}"),
        }
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // `attestlog-server migrate ...`: the program name, then its own flags.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "migrate") {
        argv.remove(1);
        let args = argv;
        let code = tokio::task::spawn_blocking(move || attestlog_server::migrate::cli_main(args))
            .await
            .unwrap_or(1);
        std::process::exit(code);
    }
    if let Err(e) = run(Args::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch_size >= 1 && args.batch_size <= 65_536,
        "--batch-size must be 1..=65536"
    );
    anyhow::ensure!(
        args.max_connections >= 1,
        "--max-connections must be at least 1"
    );
    anyhow::ensure!(
        args.header_timeout >= 1 && args.idle_timeout >= 1,
        "--header-timeout and --idle-timeout must be at least 1 second"
    );
    let serve_config = ServeConfig::new(
        fit_to_fd_limit(args.max_connections),
        Duration::from_secs(args.header_timeout),
        Duration::from_secs(args.idle_timeout),
    );
    let storage = Storage::parse(
        args.storage.as_deref(),
        args.objects.as_deref(),
        &args.data_dir,
    )?;
    if args.read_only {
        anyhow::ensure!(
            matches!(storage, Storage::Postgres(..)),
            "read_only_needs_cluster: --read-only serves a log in --storage postgres://... --objects ..."
        );
        anyhow::ensure!(
            args.verifier_key.is_some() && args.key_file.is_none(),
            "verifier_key_required: --read-only takes the log's --verifier-key and no --key-file"
        );
        return run_reader(args, storage, serve_config).await;
    }
    // The folder of the SQLite log, or with PostgreSQL of the default key.
    let data_dir = match &storage {
        Storage::Sqlite(dir) => Some(dir),
        Storage::Postgres(..) => args.key_file.is_none().then_some(&args.data_dir),
    };
    if let Some(dir) = data_dir {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    }

    let roots = trust_roots(&args.trust_roots)?;

    let key_path = match (&args.key_file, &storage) {
        (Some(path), _) => path.clone(),
        (None, Storage::Sqlite(dir)) => dir.join("log.key"),
        (None, Storage::Postgres(..)) => args.data_dir.join("log.key"),
    };
    let store = open_store(&storage, false, args.read_cache_mib)?;
    // The key is checked against what the log already signed: a new key
    // only for an empty log, never a different one.
    let latest = store
        .latest_checkpoint()
        .context("reading the latest checkpoint")?
        .map(|c| c.note);
    let history = keys::SignedHistory {
        size: store.tree_size(),
        latest_checkpoint: latest.as_deref(),
    };
    let (signer, created) = keys::load_or_create(&key_path, &args.origin, history)
        .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
    if created {
        tracing::info!(path = %key_path.display(), "created a new checkpoint signing key");
    }
    let verifier_key = signer.verifier_key_text();
    let signer = Arc::new(signer);
    {
        let (store, signer) = (Arc::clone(&store), Arc::clone(&signer));
        tokio::task::spawn_blocking(move || store.ensure_checkpoint(&*signer))
            .await?
            .map_err(|e| anyhow::anyhow!("{}: signing the initial checkpoint: {e}", e.code()))?;
    }
    let worker = start_worker(&store, Some(Arc::clone(&signer)))?;

    let witnesses = if args.witnesses.is_empty() {
        anyhow::ensure!(
            args.witness_quorum.is_none(),
            "--witness-quorum needs at least one --witness"
        );
        None
    } else {
        let configs = args
            .witnesses
            .iter()
            .map(|w| WitnessConfig::parse(w))
            .collect::<Result<Vec<_>, _>>()?;
        let quorum = args.witness_quorum.unwrap_or(configs.len());
        let log_key = signer.verifier_key().context("the log's verifier key")?;
        Some(Arc::new(Witnesses::new(configs, quorum, log_key)?))
    };

    let metrics = Arc::new(Metrics::new());
    let (sequencer, sequencer_task) = Sequencer::start(
        Arc::clone(&store),
        Arc::clone(&signer),
        BatchConfig {
            max_entries: args.batch_size,
            max_age: Duration::from_millis(args.batch_max_age),
        },
        Arc::clone(&metrics),
        witnesses.clone(),
    );
    let app = Arc::new(AppState {
        store: Arc::clone(&store),
        nitro: NitroVerifier::new(roots),
        sequencer: Some(sequencer),
        origin: args.origin.clone(),
        verifier_key: verifier_key.clone(),
        submit_policy: args.submit_policy(),
        metrics,
        witnesses: witnesses.clone(),
        reads: storage.read_pool(),
    });
    if let Some(w) = witnesses {
        // Publish the latest checkpoint if it is not cosigned yet (a new log,
        // or a batch that missed the quorum before a restart).
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            if let Ok(Some(latest)) = store.latest_checkpoint() {
                if let Err(e) = w.publish(&store, latest.size, &latest.note).await {
                    tracing::warn!(error = %e, "the latest checkpoint is not cosigned yet");
                }
            }
        });
    }

    // Handlers are installed before anyone can know the address, so a
    // SIGTERM right after start is a graceful shutdown too.
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // Scripts and tests read these two lines.
    println!("verifier key: {verifier_key}");
    println!("listening on http://{}", listener.local_addr()?);
    tracing::info!(
        origin = %args.origin,
        size = store.tree_size(),
        storage = %storage,
        "attestlog-server started"
    );

    serve(listener, router(Arc::clone(&app)), serve_config, shutdown).await;
    // In-flight requests are done; let the sequencer commit what it holds.
    drop(app);
    sequencer_task.await.context("sequencer task")?;
    if let Some(w) = worker {
        tokio::task::spawn_blocking(move || w.stop()).await?;
    }
    tracing::info!(size = store.tree_size(), "stopped cleanly");
    Ok(())
}

impl Args {
    /// What the server refuses beyond what the library verifies (a
    /// read-only replica refuses every submission before it applies).
    fn submit_policy(&self) -> SubmitPolicy {
        SubmitPolicy {
            allow_debug: self.allow_debug,
            max_clock_skew: Duration::from_secs(self.max_clock_skew),
        }
    }
}

fn trust_roots(paths: &[PathBuf]) -> anyhow::Result<TrustRoots> {
    let mut roots = TrustRoots::aws();
    for path in paths {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read trust root {}", path.display()))?;
        roots
            .add_pem(&pem)
            .with_context(|| format!("trust root {}", path.display()))?;
        tracing::warn!(root = %path.display(), "trusting an extra root besides AWS's");
    }
    Ok(roots)
}

fn open_store(
    storage: &Storage,
    read_only: bool,
    cache_mib: usize,
) -> anyhow::Result<Arc<LogStore>> {
    let cache_bytes = cache_mib
        .checked_mul(1 << 20)
        .context("--read-cache-mib is too large")?;
    Ok(Arc::new(
        match storage {
            Storage::Sqlite(dir) => {
                let db = dir.join("log.db");
                LogStore::open(&db)
                    .map_err(|e| anyhow::anyhow!("{}: {}: {e}", e.code(), db.display()))?
            }
            Storage::Postgres(url, objects) => LogStore::open_postgres(url, objects, read_only)
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?,
        }
        .with_read_cache_bytes(cache_bytes),
    ))
}

/// `--read-only`: the read API of a cluster log, no key, no sequencer. The
/// published checkpoint must verify under the pinned --verifier-key.
async fn run_reader(args: Args, storage: Storage, serve_config: ServeConfig) -> anyhow::Result<()> {
    let verifier_key = args.verifier_key.clone().unwrap_or_default();
    let key = NoteVerifierKey::parse(&verifier_key)
        .map_err(|e| anyhow::anyhow!("verifier_key_invalid: --verifier-key: {e}"))?;
    let store = open_store(&storage, true, args.read_cache_mib)?;
    if let Some(cp) = store
        .latest_checkpoint()
        .context("reading the latest checkpoint")?
    {
        verify_checkpoint(&cp.note, &key, &[], 0).map_err(|e| {
            anyhow::anyhow!("log_key_mismatch: the published checkpoint does not verify under --verifier-key: {e}")
        })?;
    }
    let worker = start_worker(&store, None)?;
    let metrics = Arc::new(Metrics::new());
    let app = Arc::new(AppState {
        store: Arc::clone(&store),
        nitro: NitroVerifier::new(trust_roots(&args.trust_roots)?),
        sequencer: None,
        origin: args.origin.clone(),
        verifier_key: verifier_key.clone(),
        submit_policy: args.submit_policy(),
        metrics,
        witnesses: None,
        reads: storage.read_pool(),
    });
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("verifier key: {verifier_key}");
    println!("listening on http://{}", listener.local_addr()?);
    tracing::info!(origin = %args.origin, size = store.tree_size(), storage = %storage, "attestlog-server started read-only");
    serve(listener, router(Arc::clone(&app)), serve_config, shutdown).await;
    drop(app);
    if let Some(w) = worker {
        tokio::task::spawn_blocking(move || w.stop()).await?;
    }
    Ok(())
}

/// `wanted` connections, or fewer if the soft `ulimit -n` cannot hold them
/// besides [`RESERVED_FDS`]: past the limit, accept fails and even the
/// database cannot open a file, while a refusal keeps the server answering.
fn fit_to_fd_limit(wanted: usize) -> usize {
    use rustix::process::{getrlimit, Resource};
    let Some(limit) = getrlimit(Resource::Nofile).current else {
        return wanted;
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if fits < wanted {
        tracing::warn!(
            wanted,
            serving = fits,
            fd_limit = limit,
            "--max-connections lowered to fit the open file limit"
        );
    }
    wanted.min(fits)
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed when called.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing the batch in flight");
    })
}

/// [`Worker::start`], its failure as a startup error.
fn start_worker(
    store: &Arc<LogStore>,
    signer: Option<Arc<attestlog::tlog::note::NoteSigner>>,
) -> anyhow::Result<Option<Worker>> {
    Worker::start(Arc::clone(store), signer)
        .map_err(|e| anyhow::anyhow!("storage_thread: cannot start the cluster worker thread: {e}"))
}
