//! The accept loop every attestlog server shares (the log, the witness and
//! the builder host's webhook): HTTP/1.1 over TCP with the connection
//! limits axum's `serve` lacks. Attacker bytes reach every server, so no
//! socket is served without a deadline.
//!
//! # Contract
//! - At most `max_connections` connections are served at once. One more is
//!   accepted and answered `503` with `{"error":"too_many_connections"}`,
//!   then closed, by a separate task within `REFUSAL_DEADLINE`: the accept
//!   loop never waits on a client. At most [`MAX_REFUSALS`] refusals run at
//!   once; past that a connection is closed unanswered.
//! - A request head must arrive within `header_timeout` of the server
//!   starting to wait for it (hyper starts that clock when the connection
//!   opens or finishes its previous answer), or the connection is closed.
//! - A connection on which no byte moves for `idle_timeout` while the server
//!   waits on the client is closed (`idle_io`).
//! - With `max_head_bytes`, a request head larger than that is refused by
//!   hyper (431); with `connection_deadline`, a connection is cut that long
//!   after it was accepted, whatever it is doing; without `keep_alive`, a
//!   connection serves one request.
//! - Accept errors (such as running out of file descriptors) pause the loop
//!   for `ACCEPT_ERROR_PAUSE` instead of ending it; a client's aborted
//!   handshake is skipped.
//! - When `shutdown` resolves, no new connection is accepted, idle ones are
//!   closed, and requests in flight are answered before [`serve`] returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

mod idle_io;

use idle_io::{Busy, IdleIo};

/// How the server treats its connections; see the module doc.
#[derive(Clone, Copy, Debug)]
pub struct ServeConfig {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// hyper's read buffer, which bounds a request head (its minimum is
    /// 8 KiB); `None` keeps hyper's default (about 400 KiB).
    pub max_head_bytes: Option<usize>,
    /// Every connection ends this long after it was accepted.
    pub connection_deadline: Option<Duration>,
    /// Serve further requests on a connection after the first.
    pub keep_alive: bool,
}

impl ServeConfig {
    /// Keep-alive connections with the given limits, no head-size or
    /// connection deadline beyond hyper's defaults.
    pub fn new(max_connections: usize, header_timeout: Duration, idle_timeout: Duration) -> Self {
        ServeConfig {
            max_connections,
            header_timeout,
            idle_timeout,
            max_head_bytes: None,
            connection_deadline: None,
            keep_alive: true,
        }
    }
}

/// Refusals answered at once beyond the connection limit. Each holds a file
/// descriptor for up to `REFUSAL_DEADLINE`, so they are capped too: a flood
/// must not use up the descriptors the served connections and SQLite need.
pub const MAX_REFUSALS: usize = 32;
/// The longest a refusal may take to be written and the client's request
/// drained (so closing does not reset the answer away).
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);
/// How long the accept loop rests after an accept error (e.g. EMFILE), so a
/// lack of descriptors does not become a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The most of a refused client's request read before the refusal.
const REFUSAL_DRAIN: usize = 64 * 1024;

const REFUSAL: &str = "{\"error\":\"too_many_connections\",\"message\":\"the server is at its connection limit; retry later\"}";

/// Serves `router` on `listener` until `shutdown` resolves and the requests
/// in flight are answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(config.keep_alive);
    if let Some(bytes) = config.max_head_bytes {
        http.max_buf_size(bytes);
    }
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // One client's failed handshake; nothing to wait out.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(stream, &refusals);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let busy = Busy::default();
        let io = TokioIo::new(IdleIo::new(stream, config.idle_timeout, busy.clone()));
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = busy.enter();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(guard);
                response
            }
        });
        let connection = graceful.watch(http.serve_connection(io, service));
        let deadline = config.connection_deadline;
        tokio::spawn(async move {
            // Timeouts and hang-ups end connections; nothing to report.
            match deadline {
                Some(d) => {
                    if tokio::time::timeout(d, connection).await.is_err() {
                        tracing::debug!("connection cut off at its deadline");
                    }
                }
                None => {
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Answers a connection over the limit with a 503 and closes it, off the
/// accept loop and within [`REFUSAL_DEADLINE`].
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return; // dropped: closed unanswered
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_DEADLINE, answer_refusal(stream)).await;
        drop(permit);
    });
}

async fn answer_refusal(mut stream: TcpStream) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{REFUSAL}",
        REFUSAL.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    // Read what the client sent until it hangs up, so that closing with
    // unread bytes does not reset the answer before the client reads it.
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN {
        match stream.read(&mut buf).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}
