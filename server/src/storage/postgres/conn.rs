//! PostgreSQL plumbing: the URL, the private runtime the connections run
//! on, blocking calls with a deadline, reconnection, schema migrations.
//!
//! # Blocking over an async driver
//! [`Backend`](crate::storage::Backend) is synchronous and is called both
//! from tokio's blocking pool and, briefly, from async code (startup in
//! `main`, the witness publisher). `tokio_postgres` connections therefore
//! run on a private one-thread tokio runtime owned by the backend, and a
//! call waits for its future with `futures_executor::block_on`, which is
//! legal on any thread (tokio's own `block_on` panics inside a runtime).
//! Every call is bounded by [`QUERY_TIMEOUT`], every connect by
//! [`CONNECT_TIMEOUT`]: no socket waits forever.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Socket, Statement};

use super::lease::Events;
use super::tls::{split_url, PgTls, RustlsConnect, RustlsStream};

use crate::storage::StorageError;

/// Deadline of one connection attempt (TCP and startup). A server that is
/// down answers at once; one that does not answer within this is treated as
/// down rather than hanging the caller.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Deadline of one backend call (one query, or a whole append transaction).
/// Generous for a batch of 65,536 entries on a slow disk; an append that
/// times out is rolled back by PostgreSQL when the connection drops, or
/// committed: either way the log logic treats it as failed and a later
/// append gets `checkpoint_conflict` until restart (never a fork).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Schema migrations, in order; migration `i` brings the schema to version
/// `i + 1` (tracked in the `schema_version` table).
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../../migrations/postgres/0002_cluster.sql"),
    include_str!("../../../../migrations/postgres/0003_hot_edge.sql"),
];

/// The newest PostgreSQL schema version this build knows.
pub const PG_SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Key of the transaction-scoped advisory lock that serializes migrations
/// of servers starting at once on one database ("attestlg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6174_7465_7374_6c67;

/// A parsed `postgres://` URL and the runtime its connections run on.
pub struct Connector {
    config: Config,
    tls: PgTls,
    /// Where, for error messages: `host:port/db`, never the password.
    target: String,
    runtime: Option<Runtime>,
}

impl Connector {
    /// Parses `url` (any libpq-style `postgres://` URL `tokio_postgres`
    /// accepts, with `sslmode` and `sslrootcert` as `tls.rs` says) and
    /// starts the private runtime.
    pub fn new(url: &str) -> Result<Self, StorageError> {
        let (url, tls) = split_url(url)?;
        let mut config = Config::from_str(&url).map_err(|e| StorageError::BadUrl(e.to_string()))?;
        config.ssl_mode(match tls {
            PgTls::Disabled => SslMode::Disable,
            PgTls::VerifyFull(_) => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("attestlog-server");
        let target = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("attestlog-pg")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Unreachable {
                target: target.clone(),
                reason: format!("cannot start the client runtime: {e}"),
            })?;
        Ok(Connector {
            config,
            tls,
            target,
            runtime: Some(runtime),
        })
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("present until drop")
    }

    /// Runs `fut` to completion on the calling thread with the private
    /// runtime's I/O and timers, failing after [`QUERY_TIMEOUT`].
    pub fn block_on<T, E>(&self, fut: impl Future<Output = Result<T, E>>) -> Result<T, StorageError>
    where
        StorageError: From<E>,
    {
        let _enter = self.runtime().enter();
        match futures_executor::block_on(tokio::time::timeout(QUERY_TIMEOUT, fut)) {
            Ok(r) => r.map_err(StorageError::from),
            Err(_) => Err(StorageError::Timeout(QUERY_TIMEOUT)),
        }
    }

    /// Opens one connection; its I/O task runs on the private runtime.
    pub fn connect(&self) -> Result<Conn, StorageError> {
        let (client, io) = self.open()?;
        self.runtime().spawn(async move {
            if let Err(e) = io.run().await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(Conn::new(client))
    }

    /// Connects (TLS as the URL asks), within the URL's connect timeout.
    fn open(&self) -> Result<(Client, Io), StorageError> {
        let _enter = self.runtime().enter();
        let unreachable = |reason: String| StorageError::Unreachable {
            target: self.target.clone(),
            reason,
        };
        // Set: `new` puts CONNECT_TIMEOUT in when the URL has none. The
        // driver applies it per address; this bounds the whole attempt.
        let deadline = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let attempt = async {
            match &self.tls {
                PgTls::Disabled => (self.config.connect(NoTls).await)
                    .map(|(client, io)| (client, Io::Plain(Box::new(io)))),
                PgTls::VerifyFull(config) => {
                    (self.config.connect(RustlsConnect(Arc::clone(config))).await)
                        .map(|(client, io)| (client, Io::Tls(Box::new(io))))
                }
            }
        };
        futures_executor::block_on(tokio::time::timeout(deadline, attempt))
            .map_err(|_| unreachable(format!("no answer within {deadline:?}")))?
            .map_err(|e| unreachable(with_causes(&e)))
    }

    /// Opens a connection that `LISTEN`s on `channels` and counts each
    /// notification in `events`; when it closes, everyone waiting is woken
    /// (they poll, and the listener is reconnected on next use).
    pub fn connect_listener(
        &self,
        channels: &[&str],
        events: Arc<Events>,
    ) -> Result<Client, StorageError> {
        let (client, mut connection) = self.open()?;
        self.runtime().spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        events.notified(n.channel(), n.payload())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "PostgreSQL listener connection closed");
                        break;
                    }
                    None => break,
                }
            }
            events.notified("", "");
        });
        let listen: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
        self.block_on(client.batch_execute(&listen))?;
        Ok(client)
    }

    /// `host:port/db` of the URL.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The I/O half of a connection, plain or TLS (boxed: a connection's
/// buffers and TLS session are large, and this moves into the task that
/// drives it).
enum Io {
    Plain(Box<Connection<Socket, NoTlsStream>>),
    Tls(Box<Connection<Socket, RustlsStream>>),
}

impl Io {
    async fn run(self) -> Result<(), tokio_postgres::Error> {
        match self {
            Io::Plain(c) => (*c).await,
            Io::Tls(c) => (*c).await,
        }
    }

    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>> {
        match self {
            Io::Plain(c) => c.poll_message(cx),
            Io::Tls(c) => c.poll_message(cx),
        }
    }
}

/// An error with its causes, `: `-separated (the driver's own message for
/// a failed handshake leaves the reason to its source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// `host:port/db` of a `postgres://` URL, without its password: how a
/// database is named in messages and in the mark `migrate` leaves.
pub fn describe_url(url: &str) -> Result<String, StorageError> {
    let (url, _) = split_url(url)?;
    let config = Config::from_str(&url).map_err(|e| StorageError::BadUrl(e.to_string()))?;
    Ok(describe(&config))
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("{host}:{port}/{db}")
}

/// A connection with its prepared statements. The fixed statements of the
/// hot paths are prepared once per connection ([`Conn::prepare`]) and then
/// only bound and executed: one round trip and no parsing or planning per
/// execution, where an unprepared query costs a prepare round trip (its own
/// implicit transaction) and a fresh plan every time. The cache is keyed by
/// the SQL text, which is a `&'static str`: a bounded set.
pub struct Conn {
    client: Client,
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl Conn {
    pub fn new(client: Client) -> Self {
        Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// `sql` prepared on this connection (prepared now the first time).
    pub async fn prepare(&self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cached(sql) {
            return Ok(s);
        }
        let s = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql, s.clone());
        Ok(s)
    }

    fn cached(&self, sql: &'static str) -> Option<Statement> {
        let map = self.statements.lock().unwrap_or_else(|e| e.into_inner());
        map.get(sql).cloned()
    }
}

impl Conn {
    /// Sends `NOTIFY channel, 'size'` and `COMMIT` behind the statements of
    /// `last`, in one pipeline. If a statement of `last` fails, PostgreSQL
    /// turns the `COMMIT` into a rollback and its error is returned; the
    /// notification is delivered only with the commit. `size` (the payload,
    /// a decimal number) is what the transaction made true: the sequenced or
    /// the published size ([`Events::hint`]).
    pub async fn commit_with<T>(
        &self,
        channel: &str,
        size: u64,
        last: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        let end = format!("NOTIFY {channel}, '{size}'; COMMIT");
        let (out, _) = tokio::try_join!(last, self.client.batch_execute(&end))?;
        Ok(out)
    }

    /// Ends the open transaction without writing anything.
    pub async fn rollback(&self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute("ROLLBACK").await
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// A connection that is replaced by a new one when it has closed (the
/// server restarted or the network dropped), so the backend recovers by
/// itself once PostgreSQL is back.
pub struct Slot {
    client: Mutex<Arc<Conn>>,
}

impl Slot {
    pub fn new(client: Conn) -> Self {
        Slot {
            client: Mutex::new(Arc::new(client)),
        }
    }

    /// The live connection, reconnecting first if it closed.
    pub fn get(&self, connector: &Connector) -> Result<Arc<Conn>, StorageError> {
        let mut c = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_closed() {
            *c = Arc::new(connector.connect()?);
        }
        Ok(Arc::clone(&c))
    }
}

/// Applies the migrations newer than `schema_version`, all in one
/// transaction under [`MIGRATION_LOCK`]; refuses a newer schema.
pub fn migrate(connector: &Connector, client: &mut Client) -> Result<(), StorageError> {
    connector.block_on(async {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            .await?;
        let found: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        if found > PG_SCHEMA_VERSION {
            return Err(StorageError::SchemaTooNew {
                found: found.into(),
                supported: PG_SCHEMA_VERSION.into(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            tx.batch_execute(sql).await?;
            let version = i as i32 + 1;
            tx.execute("DELETE FROM schema_version", &[]).await?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await?;
            tracing::info!(version, "applied PostgreSQL storage migration");
        }
        tx.commit().await?;
        Ok::<_, StorageError>(())
    })
}

/// For a read-only process: the schema must exist at exactly this build's
/// version (a reader never migrates).
pub fn check_schema(connector: &Connector, client: &Client) -> Result<(), StorageError> {
    let found: i32 = connector.block_on(async {
        let rows = client
            .query("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await?;
        Ok::<_, tokio_postgres::Error>(rows.first().map_or(0, |r| r.get(0)))
    })?;
    if found > PG_SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found: found.into(),
            supported: PG_SCHEMA_VERSION.into(),
        });
    }
    if found < PG_SCHEMA_VERSION {
        return Err(StorageError::Corrupt(format!(
            "schema version {found}: a read-only server needs version {PG_SCHEMA_VERSION}; \
             start a writing server once to migrate"
        )));
    }
    Ok(())
}
