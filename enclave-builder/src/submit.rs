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

/// Sends `entry` to the log at `url` and returns the verified proof.
pub fn submit(url: &str, key: &NoteVerifierKey, entry: &[u8]) -> Result<TlogProof, BuildError> {
    let endpoint = format!("{}/v1/entries", url.trim_end_matches('/'));
    let unreachable = |reason: String| BuildError::LogUnreachable {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .post(&endpoint)
        .header("content-type", "application/octet-stream")
        .body(entry.to_vec())
        .send()
        .map_err(|e| unreachable(error_chain(&e)))?;
    let status = response.status();
    let body = response.text().map_err(|e| unreachable(e.to_string()))?;
    if !status.is_success() {
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
