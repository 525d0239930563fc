//! Log submission: POST the entry, then verify the answer with the library
//! before anything is written: the checkpoint against the log key given on
//! the command line (never one learned from the log), the leaf hash, and the
//! inclusion proof against that checkpoint.

use std::time::Duration;

use attestlog::bounded::{read_bounded, BoundedReadError};
use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_inclusion};
use attestlog::tlog::note::NoteVerifierKey;
use attestlog::tlog::proof::TlogProof;
use base64::Engine;
use serde::Deserialize;

use crate::error::BuildError;

/// Most bytes of a log's answer read: a checkpoint with its cosignatures
/// and a proof of at most 63 hashes take a few KiB; the log (or the
/// network) does not choose how much memory the builder spends.
pub const MAX_ANSWER: u64 = 1 << 20;
/// How long a submission may take, the answer included.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The server's answer to `POST /v1/entries` (spec/server-api.md).
#[derive(Debug, Deserialize)]
pub struct SubmitAnswer {
    pub index: u64,
    pub leaf_hash: String,
    pub tree_size: u64,
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
}

/// Parses a log verifier key.
pub fn parse_key(text: &str) -> Result<NoteVerifierKey, BuildError> {
    NoteVerifierKey::parse(text.trim()).map_err(|e| BuildError::LogKey(e.to_string()))
}

/// Posts an entry to a log and hands back the raw HTTP answer; the
/// answer is checked by [`submit_with`], never by the poster, so a relay
/// (the untrusted enclave host) can carry it.
pub trait LogClient {
    /// The log's base URL, for messages.
    fn url(&self) -> &str;
    /// POSTs `entry` to `/v1/entries`; returns (HTTP status, body).
    fn post_entry(&self, entry: &[u8]) -> Result<(u16, Vec<u8>), BuildError>;
}

/// Talks to the log directly over HTTP.
pub struct HttpLog {
    pub url: String,
}

impl LogClient for HttpLog {
    fn url(&self) -> &str {
        &self.url
    }
    fn post_entry(&self, entry: &[u8]) -> Result<(u16, Vec<u8>), BuildError> {
        post_entry_http(&self.url, entry).map_err(|e| match e {
            PostError::TooLarge => BuildError::LogAnswer(e.to_string()),
            e => BuildError::LogUnreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            },
        })
    }
}

/// Why an entry could not be POSTed to the log, or its answer not read:
/// the reason in `log_unreachable` (and in the host's relayed answer).
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{}", error_chain(.0))]
    Send(#[source] reqwest::Error),
    #[error("reading the answer: {0}")]
    Body(#[source] std::io::Error),
    #[error("the answer is over {MAX_ANSWER} bytes")]
    TooLarge,
}

/// POSTs `entry` to `<url>/v1/entries`; errors are reasons the log was unreachable.
pub fn post_entry_http(url: &str, entry: &[u8]) -> Result<(u16, Vec<u8>), PostError> {
    let endpoint = format!("{}/v1/entries", url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(SUBMIT_TIMEOUT)
        .build()
        .map_err(PostError::Client)?;
    let response = client
        .post(&endpoint)
        .header("content-type", "application/octet-stream")
        .body(entry.to_vec())
        .send()
        .map_err(PostError::Send)?;
    let status = response.status().as_u16();
    let body = read_bounded(response, MAX_ANSWER).map_err(|e| match e {
        BoundedReadError::Io(e) => PostError::Body(e),
        BoundedReadError::TooLarge { .. } => PostError::TooLarge,
    })?;
    Ok((status, body))
}

/// Sends `entry` to the log at `url` and returns the verified proof.
pub fn submit(url: &str, key: &NoteVerifierKey, entry: &[u8]) -> Result<TlogProof, BuildError> {
    submit_with(
        &HttpLog {
            url: url.to_string(),
        },
        key,
        entry,
    )
}

/// Sends `entry` through `log` and verifies the answer against `key`.
pub fn submit_with(
    log: &dyn LogClient,
    key: &NoteVerifierKey,
    entry: &[u8],
) -> Result<TlogProof, BuildError> {
    let (status, body) = log.post_entry(entry)?;
    let body = String::from_utf8_lossy(&body);
    if !(200..300).contains(&status) {
        let first: String = body
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        return Err(BuildError::LogRefused(format!("HTTP {status}: {first}")));
    }
    let answer: SubmitAnswer = serde_json::from_str(&body)
        .map_err(|e| BuildError::LogAnswer(format!("not a submission answer: {e}")))?;
    verify_answer(&answer, key, entry)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Checks a submission answer for `entry` and turns it into a tlog-proof.
pub fn verify_answer(
    answer: &SubmitAnswer,
    key: &NoteVerifierKey,
    entry: &[u8],
) -> Result<TlogProof, BuildError> {
    let bad = |m: String| BuildError::LogAnswer(m);
    let b64 = base64::engine::general_purpose::STANDARD;
    let ours = leaf_hash(entry);
    let theirs = b64
        .decode(&answer.leaf_hash)
        .map_err(|_| bad("leaf_hash is not base64".into()))?;
    if theirs != ours {
        return Err(bad(
            "leaf_hash is not the hash of the submitted entry".into()
        ));
    }
    let checkpoint = verify_checkpoint(&answer.checkpoint, key, &[], 0)
        .map_err(|e| bad(format!("checkpoint: {e}")))?;
    if checkpoint.checkpoint.size != answer.tree_size {
        return Err(bad(format!(
            "tree_size {} differs from the checkpoint's {}",
            answer.tree_size, checkpoint.checkpoint.size
        )));
    }
    let hashes = answer
        .inclusion_proof
        .iter()
        .map(|h| {
            b64.decode(h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| bad("inclusion_proof hash is not 32 bytes of base64".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(
        answer.index,
        checkpoint.checkpoint.size,
        &ours,
        &hashes,
        &checkpoint.checkpoint.root_hash,
    )
    .map_err(|e| bad(format!("inclusion proof: {e}")))?;
    Ok(TlogProof {
        extra: None,
        index: answer.index,
        hashes,
        checkpoint: answer.checkpoint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A log answering 200 with more than [`MAX_ANSWER`] bytes: the builder
    /// stops reading there and says so (`log_answer_invalid`), instead of
    /// holding whatever the log sends.
    #[test]
    fn an_oversized_answer_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                let len = MAX_ANSWER as usize * 2;
                let _ = write!(conn, "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..len / chunk.len() {
                    if conn.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
        });
        let e = post_entry_http(&url, b"entry").unwrap_err();
        assert!(matches!(e, PostError::TooLarge), "{e}");
        let e = HttpLog { url }.post_entry(b"entry").unwrap_err();
        assert_eq!(e.code(), "log_answer_invalid", "{e}");
        assert!(e.to_string().contains("over 1048576 bytes"), "{e}");
        server.join().unwrap();
    }
}
