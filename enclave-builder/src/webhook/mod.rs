//! GitHub webhook intake for the host (`spec/builder.md`, "Webhook").
//!
//! Contract:
//! - only `POST /webhook`; `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
//!   the raw body>` is checked in constant time before the body is parsed;
//!   anything unsigned or badly signed gets 401 and queues nothing;
//! - `push` and `workflow_job` events queue a build (202); other events are
//!   answered 200 and ignored;
//! - every refusal is a JSON `{"error": "<stable code>", "message": ...}`
//!   (see [`WebhookError::code`]), except those hyper gives itself for a
//!   request head it cannot take (431 for one beyond [`MAX_HEAD_BYTES`],
//!   400 or 414 for a malformed one; none for one not sent in time);
//! - deliveries are served concurrently (at most [`MAX_CONNECTIONS`] at a
//!   time; one more gets 503 `too_many_connections`), each bounded: the request head must arrive within
//!   [`HEADER_READ_TIMEOUT`] and fit in [`MAX_HEAD_BYTES`], the body is at
//!   most [`MAX_BODY`] bytes and the whole exchange ends after
//!   [`REQUEST_DEADLINE`]; one connection serves one request;
//! - builds go to a bounded queue of [`QUEUE_CAPACITY`] read by the host's
//!   one-at-a-time build worker; a full queue is 503 and queues nothing;
//! - the secret has at least [`MIN_SECRET_LEN`] bytes, checked before the
//!   webhook listens ([`Secret::from_file_bytes`]).

mod event;
mod http;

use std::time::Duration;

pub use event::{parse_event, verify_signature, QueuedBuild, Secret};
pub use http::serve;

/// GitHub caps payloads at 25 MiB, but `push` and `workflow_job` payloads
/// are a few KiB to a few hundred KiB (a push lists at most 2048 commits'
/// metadata); 1 MiB takes them with room and bounds what one delivery can
/// make the host hold.
pub const MAX_BODY: usize = 1 << 20;
/// A declared body above [`MAX_BODY`] but up to this size is read and
/// discarded before the 413: closing a socket with unread data makes the
/// kernel send a reset, which can destroy the answer before the sender
/// reads it. Larger bodies are refused at once.
pub const DRAIN_LIMIT: usize = 2 * MAX_BODY;
/// Request line and headers together (hyper's read buffer; its minimum is
/// 8 KiB). GitHub sends about 1 KiB of headers.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// An idle or slow client must have sent its whole request head by then.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole exchange, head, body and answer, ends by then; GitHub itself
/// gives up on a delivery after 10 s.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once; one more is answered 503
/// `too_many_connections` and closed.
/// Each holds at most [`MAX_HEAD_BYTES`] + [`DRAIN_LIMIT`] bytes, so this
/// bounds the webhook's memory.
pub const MAX_CONNECTIONS: usize = 64;
/// Builds waiting for the worker. Builds take minutes, so a longer queue
/// would only hold deliveries GitHub has long reported as delivered.
pub const QUEUE_CAPACITY: usize = 16;
/// Shortest secret accepted (after trailing line ends are removed): an
/// empty or short secret makes every signature forgeable or guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a delivery (or the webhook itself) was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook secret is {0} bytes; at least {MIN_SECRET_LEN} are needed")]
    SecretTooShort(usize),
    #[error("missing X-Hub-Signature-256")]
    MissingSignature,
    #[error("X-Hub-Signature-256 {0}")]
    MalformedSignature(&'static str),
    #[error("X-Hub-Signature-256 does not match the body")]
    BadSignature,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("event has no {0}")]
    MissingField(&'static str),
    #[error("pushed tag {0:?} is not a tag name a build may publish under ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")]
    InvalidTag(String),
    #[error("body exceeds the {MAX_BODY}-byte limit")]
    TooLarge,
    #[error("the request was not received within {} s", REQUEST_DEADLINE.as_secs())]
    Timeout,
    #[error("reading the body: {0}")]
    Body(String),
    #[error("{QUEUE_CAPACITY} builds are already waiting; try again later")]
    QueueFull,
    #[error("the build worker has stopped")]
    QueueClosed,
    #[error("no such endpoint; POST /webhook")]
    NotFound,
    #[error("only POST is served")]
    MethodNotAllowed,
    #[error("webhook listener: {0}")]
    Listen(std::io::Error),
}

impl WebhookError {
    /// A stable, machine-readable name for the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::SecretTooShort(_) => "webhook_secret_too_short",
            WebhookError::MissingSignature => "missing_signature",
            WebhookError::MalformedSignature(_) => "malformed_signature",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::NotJson(_) => "not_json",
            WebhookError::MissingField(_) => "missing_field",
            WebhookError::InvalidTag(_) => "invalid_tag",
            WebhookError::TooLarge => "too_large",
            WebhookError::Timeout => "request_timeout",
            WebhookError::Body(_) => "bad_body",
            WebhookError::QueueFull => "queue_full",
            WebhookError::QueueClosed => "queue_closed",
            WebhookError::NotFound => "not_found",
            WebhookError::MethodNotAllowed => "method_not_allowed",
            WebhookError::Listen(_) => "webhook_listen",
        }
    }

    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::MissingSignature
            | WebhookError::MalformedSignature(_)
            | WebhookError::BadSignature => 401,
            WebhookError::NotJson(_)
            | WebhookError::MissingField(_)
            | WebhookError::InvalidTag(_)
            | WebhookError::Body(_) => 400,
            WebhookError::TooLarge => 413,
            WebhookError::Timeout => 408,
            WebhookError::NotFound => 404,
            WebhookError::MethodNotAllowed => 405,
            WebhookError::QueueFull | WebhookError::QueueClosed => 503,
            WebhookError::SecretTooShort(_) | WebhookError::Listen(_) => 500,
        }
    }
}
