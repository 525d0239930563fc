//! `attestlog verify --log URL` (no bundle file): the artifact's entries
//! found in the log and each made into the bundle the log would have given.
//!
//! Contract: the log is asked only for bytes, never for a verdict. Every
//! request goes through the monitor's bounded fetcher (a deadline per
//! request, size limits, gzip decoded within them). The artifact's indices
//! come from `GET /v1/search?artifact_sha256=HEX` (at most
//! [`MAX_SEARCH_JSON`] bytes); for each, the raw entry
//! (`/v1/entries/<i>`, at most 65,535 bytes) and an inclusion proof for the
//! size of the one checkpoint fetched from `/checkpoint` (from the JSON API,
//! or computed from tiles when it answers 404) make a v1 bundle, which the
//! caller verifies exactly as a bundle file (spec/bundle.md). So a lying
//! log can make verification fail, never succeed.

use attestlog::bundle::Bundle;
use attestlog::claim::MAX_ENTRY_SIZE;
use attestlog::monitor::fetch::{HttpLog, MAX_CHECKPOINT};
use attestlog::monitor::proofs::{ProofMode, ProofSource};
use attestlog::tlog::checkpoint::Checkpoint;
use attestlog::tlog::proof::TlogProof;

use crate::Failure;

/// Largest search answer read: 1,000 indices of up to 20 digits and commas.
pub const MAX_SEARCH_JSON: usize = 64 << 10;
/// At most this many of an artifact's entries are fetched and checked.
pub const MAX_ENTRIES_CHECKED: usize = 100;

/// The log's entries for one artifact, with what is needed to build their
/// bundles against one checkpoint.
pub struct LogCandidates {
    log: HttpLog,
    pub indices: Vec<u64>,
    note: String,
    size: u64,
}

impl LogCandidates {
    /// Searches `url` for the artifact and fetches the log's checkpoint.
    pub fn find(url: &str, artifact: &[u8; 32]) -> Result<Self, Failure> {
        let fetch = |e: attestlog::monitor::fetch::FetchError| Failure::new(e.code(), e);
        let log = HttpLog::new(url).map_err(fetch)?;
        let path = format!("v1/search?artifact_sha256={}", hex::encode(artifact));
        let body = log.get(&path, MAX_SEARCH_JSON).map_err(fetch)?;
        let mut indices: Vec<u64> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["indices"]
                    .as_array()?
                    .iter()
                    .map(serde_json::Value::as_u64)
                    .collect()
            })
            .ok_or_else(|| {
                Failure::new(
                    "search_json",
                    format!("{path}: not {{\"indices\": [integers]}}"),
                )
            })?;
        indices.sort_unstable();
        indices.dedup();
        if indices.is_empty() {
            return Err(Failure::new(
                "artifact_not_in_log",
                format!(
                    "the log at {} holds no entry for sha256 {}",
                    log.base(),
                    hex::encode(artifact)
                ),
            ));
        }
        indices.truncate(MAX_ENTRIES_CHECKED);
        let note = log.get("checkpoint", MAX_CHECKPOINT).map_err(fetch)?;
        let note = String::from_utf8(note)
            .map_err(|_| Failure::new("checkpoint_utf8", "the log's checkpoint is not UTF-8"))?;
        // Unverified here: the bundle verifier checks the signature.
        let body = note.split_once("\n\n").map_or(note.as_str(), |(b, _)| b);
        let size = Checkpoint::parse_body(&format!("{body}\n"))
            .map_err(|e| Failure::new(e.code(), e))?
            .size;
        Ok(LogCandidates {
            log,
            indices,
            note,
            size,
        })
    }

    /// The v1 bundle of entry `index` against the fetched checkpoint.
    pub fn bundle(&self, index: u64) -> Result<Bundle, Failure> {
        if index >= self.size {
            return Err(Failure::new(
                "index_beyond_checkpoint",
                format!(
                    "entry {index} is not yet covered by the log's checkpoint of size {}",
                    self.size
                ),
            ));
        }
        let entry = self
            .log
            .get(&format!("v1/entries/{index}"), MAX_ENTRY_SIZE)
            .map_err(|e| Failure::new(e.code(), e))?;
        let hashes = ProofSource::new(&self.log, ProofMode::Auto)
            .inclusion(index, self.size)
            .map_err(|e| Failure::new(e.code(), e))?;
        Ok(Bundle {
            entry,
            proof: TlogProof {
                extra: None,
                index,
                hashes,
                checkpoint: self.note.clone(),
            },
            dsse_envelope: None,
        })
    }
}
