//! `attestlog witness serve`: a C2SP tlog-witness over HTTP. The logic is in
//! `attestlog::witness`; this file is the key file, the log list and axum,
//! served by the shared accept loop (`attestlog-serve`: connection cap,
//! header and idle deadlines).
//! Routes (submission and monitoring prefix are both the root):
//! `POST /add-checkpoint` and `GET /<hex SHA-256(origin)>/checkpoint`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use attestlog::tlog::cosignature::{CosignatureKind, CosignatureSigner};
use attestlog::witness::{LogList, Witness, WitnessStore, MAX_BODY};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Args;

use crate::{read_input, Failure};

#[derive(Args)]
pub struct WitnessServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Directory for the key (witness.key) and the state (witness.db).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// The log list: one "<verifier key> [<origin>]" (or "<origin> <verifier
    /// key>") per line.
    #[arg(long, value_name = "FILE")]
    logs: PathBuf,
    /// The witness's key name, used when the key is created (default
    /// "attestlog-witness"); must match the existing key otherwise.
    #[arg(long)]
    name: Option<String>,
    /// The key's algorithm when the key is created: ed25519 (cosignature/v1,
    /// 0x04) or mldsa44 (ML-DSA-44, 0x06); must match the existing key
    /// otherwise. Default ed25519.
    #[arg(long, value_name = "TYPE")]
    key_type: Option<String>,
    /// Connections served at once; one more is answered 503
    /// `too_many_connections` and closed.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds a connection may take to send a request head.
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a connection may move no byte while the witness waits on it.
    #[arg(long, default_value_t = DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
}

/// Logs push checkpoints over a few connections; 256 leaves room for many
/// logs and stays far below a default `ulimit -n` of 1024.
const DEFAULT_MAX_CONNECTIONS: u64 = 256;
/// A log sends its request at once; ten seconds covers a slow network.
const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
/// Between requests and while a body arrives, ten seconds of silence.
const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 10;

/// Loads DIR/witness.key, or creates it (mode 0600) when missing.
pub fn load_or_create_key(
    dir: &Path,
    name: Option<&str>,
    kind: Option<CosignatureKind>,
) -> Result<CosignatureSigner, Failure> {
    let path = dir.join("witness.key");
    let shown = path.display().to_string();
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Failure::new(
                    "key",
                    format!("{shown} is readable by group or others (mode {mode:o}); chmod 600 it"),
                ));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::new("key", format!("{shown}: {e}")))?;
            let signer = CosignatureSigner::from_private_key_text(text.trim_end())
                .map_err(|e| Failure::new("key", format!("{shown}: {e}")))?;
            if let Some(name) = name {
                if name != signer.name() {
                    return Err(Failure::new(
                        "key",
                        format!("{shown} is named {:?}, not {name:?}", signer.name()),
                    ));
                }
            }
            if let Some(kind) = kind {
                if kind != signer.kind() {
                    return Err(Failure::new(
                        "key",
                        format!("{shown} is a {:?} key, not {kind:?}", signer.kind()),
                    ));
                }
            }
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = CosignatureSigner::generate_kind(
                name.unwrap_or("attestlog-witness"),
                kind.unwrap_or(CosignatureKind::Ed25519),
            )
            .map_err(|e| Failure::new("key", e))?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Failure::new("key", format!("{shown}: {e}")))?;
            file.write_all(format!("{}\n", signer.private_key_text()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Failure::new("key", format!("{shown}: {e}")))?;
            Ok(signer)
        }
        Err(e) => Err(Failure::new("key", format!("{shown}: {e}"))),
    }
}

pub fn serve(args: WitnessServeArgs) -> Result<(), Failure> {
    std::fs::create_dir_all(&args.state)
        .map_err(|e| Failure::new("state", format!("{}: {e}", args.state.display())))?;
    let kind = args
        .key_type
        .as_deref()
        .map(|t| {
            CosignatureKind::parse(t)
                .ok_or_else(|| Failure::new("key_type", format!("{t:?} is not ed25519 or mldsa44")))
        })
        .transpose()?;
    let signer = load_or_create_key(&args.state, args.name.as_deref(), kind)?;
    let list = read_input(&args.logs, "logs", 1 << 20)?;
    let list = String::from_utf8(list).map_err(|_| Failure::new("logs", "not UTF-8"))?;
    let logs = LogList::parse(&list).map_err(|e| Failure::new("logs", e))?;
    let store =
        WitnessStore::open(&args.state.join("witness.db")).map_err(|e| Failure::new("state", e))?;
    let witness = Arc::new(Witness::new(signer, logs, store));
    let config = attestlog_serve::ServeConfig::new(
        usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        std::time::Duration::from_secs(args.header_timeout),
        std::time::Duration::from_secs(args.idle_timeout),
    );

    let runtime = tokio::runtime::Runtime::new().map_err(|e| Failure::new("runtime", e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| Failure::new("listen", format!("{}: {e}", args.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::new("listen", e))?;
        println!("witness key: {}", witness.signer().verifier_key_text());
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        let app = Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .route("/{origin_hash}/checkpoint", get(monitoring_checkpoint))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(witness);
        attestlog_serve::serve(listener, app, config, std::future::pending()).await;
        Ok(())
    })
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    respond(tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await)
}

async fn monitoring_checkpoint(
    State(witness): State<Arc<Witness>>,
    UrlPath(hash): UrlPath<String>,
) -> Response {
    respond(tokio::task::spawn_blocking(move || witness.monitoring_checkpoint(&hash)).await)
}

fn respond(answer: Result<attestlog::witness::Answer, tokio::task::JoinError>) -> Response {
    match answer {
        Ok(a) => (
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, a.content_type)],
            a.body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}
