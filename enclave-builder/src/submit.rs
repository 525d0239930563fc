//! Log submission: POST the entry, then verify the answer with the library
//! before anything is written: the checkpoint against the log key given on
//! the command line (never one learned from the log), the leaf hash, and the
//! inclusion proof against that checkpoint.

use std::time::Duration;

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_inclusion};
use attestlog::tlog::note::NoteVerifierKey;
use attestlog::tlog::proof::TlogProof;
use base64::Engine;
use serde::Deserialize;

use crate::error::BuildError;

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
        post_entry_http(&self.url, entry).map_err(|reason| BuildError::LogUnreachable {
            url: self.url.clone(),
            reason,
        })
    }
}

/// POSTs `entry` to `<url>/v1/entries`; errors are reasons the log was unreachable.
pub fn post_entry_http(url: &str, entry: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let endpoint = format!("{}/v1/entries", url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(&endpoint)
        .header("content-type", "application/octet-stream")
        .body(entry.to_vec())
        .send()
        .map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    let body = response.bytes().map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
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
