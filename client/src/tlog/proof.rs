//! c2sp.org/tlog-proof@v1: an offline-verifiable proof of inclusion.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional, unauthenticated)
//! index <decimal, no leading zeroes unless 0>
//! <base64 hash>             (zero or more, deepest first, RFC 6962 2.1.1)
//!
//! <checkpoint, verbatim, with signatures and cosignatures>
//! ```
//!
//! Written here (no crate implements it). Choices where the spec is silent:
//! "extra " with empty base64 is accepted as empty extra data (it round-trips
//! as such); at most 63 hashes (`MAX_PROOF_LEN`); the checkpoint must be
//! non-empty but is otherwise kept verbatim, to be checked with
//! `verify_checkpoint`. [`TlogProof::verify`] does both checks.

use base64::Engine;

use super::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use super::cosignature::CosignatureVerifierKey;
use super::merkle::{verify_inclusion, MAX_PROOF_LEN};
use super::note::NoteVerifierKey;
pub use super::ProofTextError;
use super::{b64, parse_canonical_u64, CheckpointError, Hash, ProofError};

/// The header line.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated application data.
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    /// Inclusion proof, deepest hash first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

/// Why a tlog-proof failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    #[error("{0}")]
    Checkpoint(CheckpointError),
    #[error("{0}")]
    Inclusion(ProofError),
}

impl TlogProofError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Checkpoint(e) => e.code(),
            Self::Inclusion(e) => e.code(),
        }
    }
}

impl TlogProof {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, ProofTextError> {
        let (header, mut rest) = text.split_once('\n').ok_or(ProofTextError::Truncated)?;
        if header != HEADER {
            return Err(ProofTextError::BadHeader);
        }
        let mut line;
        (line, rest) = rest.split_once('\n').ok_or(ProofTextError::Truncated)?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(b64().decode(e).map_err(|_| ProofTextError::BadExtra)?);
            (line, rest) = rest.split_once('\n').ok_or(ProofTextError::Truncated)?;
        } else if line.starts_with("extra") {
            return Err(ProofTextError::BadExtra);
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_canonical_u64)
            .ok_or(ProofTextError::BadIndex)?;
        let mut hashes = Vec::new();
        loop {
            (line, rest) = rest.split_once('\n').ok_or(ProofTextError::Truncated)?;
            if line.is_empty() {
                break;
            }
            if hashes.len() >= MAX_PROOF_LEN {
                return Err(ProofTextError::TooManyHashes);
            }
            let h: Hash = b64()
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(ProofTextError::BadHash {
                    line: hashes.len() + 1,
                })?;
            hashes.push(h);
        }
        if rest.is_empty() {
            return Err(ProofTextError::MissingCheckpoint);
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: rest.to_owned(),
        })
    }

    /// The text form; inverse of `parse`.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(e) = &self.extra {
            out.push_str(&format!("extra {}\n", b64().encode(e)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&b64().encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Verifies the checkpoint (log key, witness quorum) and then that
    /// `leaf_hash` is at `index` in the checkpointed tree.
    pub fn verify(
        &self,
        leaf_hash: &Hash,
        log_key: &NoteVerifierKey,
        witnesses: &[CosignatureVerifierKey],
        quorum: usize,
    ) -> Result<VerifiedCheckpoint, TlogProofError> {
        let vc = verify_checkpoint(&self.checkpoint, log_key, witnesses, quorum)
            .map_err(TlogProofError::Checkpoint)?;
        verify_inclusion(
            self.index,
            vc.checkpoint.size,
            leaf_hash,
            &self.hashes,
            &vc.checkpoint.root_hash,
        )
        .map_err(TlogProofError::Inclusion)?;
        Ok(vc)
    }
}
