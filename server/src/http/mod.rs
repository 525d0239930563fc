//! The HTTP API: the write endpoint, the C2SP tlog-tiles read API, the JSON
//! read API, `/healthz` and `/metrics`. `spec/server-api.md` documents it.

mod cors;
mod error;
mod page;
mod read;
mod write;

use std::sync::Arc;
use std::time::Duration;

use attestlog::nitro::NitroVerifier;
use attestlog::tlog::checkpoint::Checkpoint;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use attestlog_serve::{serve, ServeConfig, MAX_REFUSALS};
pub use error::ApiError;

use crate::metrics::Metrics;
use crate::pool::WorkerPool;
use crate::sequencer::Sequencer;
use crate::storage::LogStore;
use crate::witnessing::Witnesses;

/// What the server refuses beyond what the library verifies.
#[derive(Clone, Copy, Debug)]
pub struct SubmitPolicy {
    pub allow_debug: bool,
    pub max_clock_skew: Duration,
}

pub struct AppState {
    pub store: Arc<LogStore>,
    pub nitro: NitroVerifier,
    /// `None` on a read-only server: submissions get 403 `read_only`.
    pub sequencer: Option<Sequencer>,
    pub origin: String,
    pub verifier_key: String,
    pub submit_policy: SubmitPolicy,
    pub metrics: Arc<Metrics>,
    /// With witnesses, only checkpoints cosigned by the quorum are published.
    pub witnesses: Option<Arc<Witnesses>>,
    /// Where reads that miss the in-memory caches run: a [`WorkerPool`] of
    /// one thread per core (at most [`crate::storage::sqlite::READERS`]) for
    /// a backend read from local files (SQLite),
    /// `None` for one read over the network (PostgreSQL, object storage),
    /// whose waits need tokio's growing blocking pool instead.
    pub reads: Option<WorkerPool>,
}

impl AppState {
    /// The checkpoint to publish: the latest signed one, or with witnesses
    /// the latest cosigned one. Read from the log's in-memory state (a lock
    /// held for a clone, never across I/O), so async handlers call it
    /// directly.
    pub fn published_checkpoint(&self) -> Result<Option<String>, crate::storage::StorageError> {
        if self.witnesses.is_some() {
            Ok(self.store.latest_cosigned()?.map(|(_, note)| note))
        } else {
            Ok(self.store.latest_checkpoint()?.map(|c| c.note))
        }
    }

    /// Runs a blocking read of the store off the async threads (see
    /// [`Self::reads`]).
    pub async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        match &self.reads {
            Some(pool) => pool.run(job).await?,
            None => tokio::task::spawn_blocking(job).await?,
        }
    }
}

/// A request body larger than this is cut off before any handler runs: no
/// request takes more than an entry.
const BODY_LIMIT: usize = crate::storage::MAX_ENTRY_LEN;
/// An oversized body up to this size is read and discarded before the 413,
/// so the client, still sending, gets the answer instead of a reset.
const DRAIN_LIMIT: usize = 1 << 20;
/// The longest that drain may take: a client sending slower than
/// [`DRAIN_LIMIT`] bytes in this time gets the 413 now and the connection
/// is closed, so a slow sender cannot hold a task.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Submissions wait for a batch commit; reads should never take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(app: Arc<AppState>) -> Router {
    let read = Router::new()
        .route("/checkpoint", get(read::checkpoint))
        .route("/tile/{*path}", get(read::tile))
        .route("/v1/log", get(read::log_info))
        .route("/v1/proof/inclusion", get(read::inclusion_proof))
        .route("/v1/proof/consistency", get(read::consistency_proof))
        .route("/v1/entries/{index}", get(read::entry))
        .route("/v1/search", get(read::search))
        .layer(cors::AnyOriginReads);
    let routes = Router::new()
        .route("/v1/entries", post(write::submit))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(page::index))
        .route("/assets/{name}", get(page::asset))
        .route("/metrics", get(metrics))
        .merge(read)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(app);
    // The layers every request passes, outermost first, wrapped around the
    // routes once: `Router::layer` would box each layer around each route,
    // and axum clones a route's boxed layers for every request.
    let stack = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        // Outside the limit and timeout layers, so their refusals become JSON too.
        .layer(middleware::from_fn(json_refusals))
        .layer(middleware::from_fn(drain_oversized))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(DefaultBodyLimit::disable())
        .service(routes);
    Router::new().fallback_service(stack)
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(app.store.tree_size()),
    )
        .into_response()
}

/// Refuses a declared `Content-Length` above [`BODY_LIMIT`] with 413. Up to
/// [`DRAIN_LIMIT`] the body is read first, within [`DRAIN_DEADLINE`]:
/// closing a connection with unread data makes the kernel send a reset,
/// which can destroy the 413 before the client reads it. Larger bodies, and
/// bodies not drained in time, are refused at once and the connection
/// closed.
async fn drain_oversized(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(len) if len > BODY_LIMIT => {
            let mut response = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body of {len} bytes exceeds the {BODY_LIMIT}-byte limit"),
            )
            .into_response();
            let drained = len <= DRAIN_LIMIT
                && tokio::time::timeout(
                    DRAIN_DEADLINE,
                    axum::body::to_bytes(request.into_body(), DRAIN_LIMIT),
                )
                .await
                .is_ok_and(|read| read.is_ok());
            if !drained {
                response.headers_mut().insert(
                    header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            response
        }
        _ => next.run(request).await,
    }
}

/// Turns the plain-text refusals that axum and tower-http produce (body too
/// large, bad method, timeout) into the API's JSON error form.
async fn json_refusals(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::SERVICE_UNAVAILABLE => "timeout",
        StatusCode::NOT_FOUND => "not_found",
        _ => "bad_request",
    };
    let reason = status.canonical_reason().unwrap_or("refused");
    let mut refusal = ApiError::new(status, code, reason).into_response();
    // A 405 names the methods the resource allows (RFC 9110, 15.5.6).
    if let Some(allow) = response.headers().get(header::ALLOW) {
        refusal.headers_mut().insert(header::ALLOW, allow.clone());
    }
    refusal
}

/// The checkpoint body of a signed note.
pub fn parse_checkpoint(note: &str) -> Option<Checkpoint> {
    let (body, _) = note.split_once("\n\n")?;
    Checkpoint::parse_body(&format!("{body}\n")).ok()
}

/// The tree size a signed checkpoint note commits to (0 if unparseable).
pub fn checkpoint_size(note: &str) -> u64 {
    parse_checkpoint(note).map_or(0, |c| c.size)
}
