//! The webhook over HTTP: axum for routing and answers, served by the
//! accept loop all attestlog servers share ([`attestlog_serve`]: the
//! connection cap with a 503 refusal, header-read and idle timeouts, the
//! head size and a hard deadline on every connection).

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use attestlog_serve::ServeConfig;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::event::{parse_event, verify_signature, QueuedBuild, Secret};
use super::{
    WebhookError, DRAIN_LIMIT, HEADER_READ_TIMEOUT, MAX_BODY, MAX_CONNECTIONS, MAX_HEAD_BYTES,
    REQUEST_DEADLINE,
};

/// Reading the body, once the head is in, takes at most this long (then
/// 408). With [`HEADER_READ_TIMEOUT`] it stays under [`REQUEST_DEADLINE`],
/// so a slow sender still gets the 408 before the connection is cut.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);

const _: () = assert!(
    HEADER_READ_TIMEOUT.as_secs() + BODY_READ_TIMEOUT.as_secs() < REQUEST_DEADLINE.as_secs()
);

struct Intake {
    secret: Secret,
    queue: SyncSender<QueuedBuild>,
}

/// Serves the webhook on `listener` (on a runtime of its own) and puts the
/// builds it accepts on `queue`. Returns only if the listener cannot be
/// used.
pub fn serve(
    listener: std::net::TcpListener,
    secret: Secret,
    queue: SyncSender<QueuedBuild>,
) -> Result<(), WebhookError> {
    listener
        .set_nonblocking(true)
        .map_err(WebhookError::Listen)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(WebhookError::Listen)?;
    let app = router(Arc::new(Intake { secret, queue }));
    let config = ServeConfig {
        max_connections: MAX_CONNECTIONS,
        header_timeout: HEADER_READ_TIMEOUT,
        // A connection that stops sending mid-body is cut at the body
        // timeout anyway; one that sends nothing after its head, sooner.
        idle_timeout: HEADER_READ_TIMEOUT,
        max_head_bytes: Some(MAX_HEAD_BYTES),
        connection_deadline: Some(REQUEST_DEADLINE),
        keep_alive: false,
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(WebhookError::Listen)?;
        attestlog_serve::serve(listener, app, config, std::future::pending()).await;
        Ok(())
    })
}

fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route(
            "/webhook",
            post(webhook).fallback(|| async { refusal(WebhookError::MethodNotAllowed) }),
        )
        .fallback(|| async { refusal(WebhookError::NotFound) })
        .with_state(intake)
}

fn refusal(e: WebhookError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": e.code(), "message": e.to_string()});
    (status, Json(body)).into_response()
}

async fn webhook(State(intake): State<Arc<Intake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, read_body(&parts.headers, body)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return refusal(e),
        Err(_) => return refusal(WebhookError::Timeout),
    };
    match accept(&intake, &parts.headers, &body) {
        Ok(response) => response,
        Err(e) => refusal(e),
    }
}

/// The body, at most [`MAX_BODY`] bytes.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, WebhookError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|len| *len > MAX_BODY as u64) {
        if len <= DRAIN_LIMIT as u64 {
            drain(body).await;
        }
        return Err(WebhookError::TooLarge);
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(WebhookError::TooLarge),
        Err(e) => Err(WebhookError::Body(e.to_string())),
    }
}

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`.
async fn drain(mut body: Body) {
    let mut left = DRAIN_LIMIT;
    while let Some(Ok(frame)) = body.frame().await {
        match frame.data_ref() {
            Some(data) if data.len() > left => return,
            Some(data) => left -= data.len(),
            None => {}
        }
    }
}

/// Checks the signature, then turns the event into a queued build.
fn accept(intake: &Intake, headers: &HeaderMap, body: &[u8]) -> Result<Response, WebhookError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify_signature(&intake.secret, body, text("x-hub-signature-256"))?;
    let event = text("x-github-event").unwrap_or("");
    let Some(build) = parse_event(event, body)? else {
        return Ok((StatusCode::OK, Json(json!({ "ignored": event }))).into_response());
    };
    let answer =
        json!({"queued": {"repo": build.repo, "commit": build.commit, "event": build.event}});
    let (repo, commit) = (build.repo.clone(), build.commit.clone());
    match intake.queue.try_send(build) {
        Ok(()) => {
            tracing::info!(%repo, %commit, event, "build queued");
            Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
        }
        Err(TrySendError::Full(_)) => Err(WebhookError::QueueFull),
        Err(TrySendError::Disconnected(_)) => Err(WebhookError::QueueClosed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    const SECRET: &[u8] = b"a webhook secret for the tests";

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn push_body(c: char) -> Vec<u8> {
        json!({"ref": "refs/heads/main", "after": c.to_string().repeat(40),
               "repository": {"clone_url": "https://github.com/o/r.git"}})
        .to_string()
        .into_bytes()
    }

    /// Starts the webhook with a queue of `capacity`; returns its URL.
    fn start(capacity: usize) -> (String, std::sync::mpsc::Receiver<QueuedBuild>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let secret = Secret::from_file_bytes(SECRET.to_vec()).unwrap();
        std::thread::spawn(move || serve(listener, secret, tx));
        (url, rx)
    }

    fn send(url: &str, event: &str, sig: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut req = reqwest::blocking::Client::new()
            .post(url)
            .header("x-github-event", event);
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        let resp = req.body(body).send().unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
    }

    #[test]
    fn refusals_are_json_with_codes_and_queue_nothing() {
        let (url, rx) = start(4);
        let hook = format!("{url}/webhook");
        let body = push_body('a');
        for (sig, code) in [
            (Some("sha256=00"), "bad_signature"),
            (Some("sha1=abcd"), "malformed_signature"),
            (None, "missing_signature"),
        ] {
            let (status, v) = send(&hook, "push", sig, body.clone());
            assert_eq!((status, v["error"].as_str()), (401, Some(code)), "{v}");
        }
        let (status, v) = send(&format!("{url}/other"), "push", None, vec![]);
        assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));
        let get = reqwest::blocking::get(&hook).unwrap();
        assert_eq!(get.status().as_u16(), 405);
        let v: serde_json::Value = serde_json::from_str(&get.text().unwrap()).unwrap();
        assert_eq!(v["error"], "method_not_allowed");
        let big = vec![b' '; MAX_BODY + 1];
        let (status, v) = send(&hook, "push", Some(&sign(&big)), big);
        assert_eq!((status, v["error"].as_str()), (413, Some("too_large")));
        let bad = b"{\"after\": 1}".to_vec();
        let (status, v) = send(&hook, "push", Some(&sign(&bad)), bad);
        assert_eq!((status, v["error"].as_str()), (400, Some("missing_field")));
        assert!(rx.try_recv().is_err(), "a refused delivery queued a build");
    }

    #[test]
    fn a_full_queue_is_503_and_queues_nothing_more() {
        let (url, rx) = start(1);
        let hook = format!("{url}/webhook");
        let first = push_body('a');
        let (status, v) = send(&hook, "push", Some(&sign(&first)), first);
        assert_eq!(status, 202, "{v}");
        let second = push_body('b');
        let (status, v) = send(&hook, "push", Some(&sign(&second)), second);
        assert_eq!((status, v["error"].as_str()), (503, Some("queue_full")));
        assert_eq!(rx.try_recv().unwrap().commit, "a".repeat(40));
        assert!(rx.try_recv().is_err());
        let ping = b"{}".to_vec();
        let (status, v) = send(&hook, "ping", Some(&sign(&ping)), ping);
        assert_eq!((status, v), (200, json!({"ignored": "ping"})));
    }
}
