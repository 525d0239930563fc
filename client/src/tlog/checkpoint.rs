//! C2SP tlog-checkpoint bodies and verification of signed checkpoints with a
//! k-of-n witness quorum.
//!
//! The body parser is written here rather than wrapping
//! `tlog_tiles::Checkpoint::from_bytes`: that parser agrees on the grammar
//! (tests check both agree), but its error is a unit struct, so it cannot name
//! the failed check as this crate's errors must, and it reads through a 1 MB
//! `take()`, so an over-long body cut at a line boundary parses as its prefix.
//!
//! Body grammar (every line ends in "\n"): origin (non-empty), tree size
//! (ASCII decimal, no leading zeroes unless "0"), root hash (canonical base64
//! of 32 bytes), then zero or more non-empty extension lines.

use base64::Engine;

use super::cosignature::{timestamp_of, CosignatureVerifierKey};
use super::note::{parse_note, verify_parsed, NoteVerifierKey};
pub use super::CheckpointError;
use super::{b64, parse_canonical_u64, Hash, NoteError};

/// The three mandatory lines of a checkpoint and its extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root_hash: Hash,
    /// Extension lines without their newlines; each non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Parses a checkpoint body (the note text, without signatures).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("does not end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("origin line is empty"));
        }
        let size = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing tree size line"))?;
        let size = parse_canonical_u64(size).ok_or(CheckpointError::Malformed(
            "tree size is not a decimal without leading zeroes",
        ))?;
        let root = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing root hash line"))?;
        let root_hash: Hash = b64()
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "root hash is not base64 of 32 bytes",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Malformed("extension line is empty"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root_hash,
            extensions,
        })
    }

    /// The body text; inverse of `parse_body` for valid checkpoints.
    pub fn to_body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            b64().encode(self.root_hash)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }
}

/// A checkpoint whose log signature and witness quorum verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The signed note as given.
    pub note: String,
    /// (witness name, cosignature timestamp) for each witness key whose
    /// cosignature verified, in note order.
    pub cosigners: Vec<(String, u64)>,
}

/// Verifies a signed checkpoint whose origin must equal the log key's name
/// (attestlog's own logs, whose key name is their origin): see
/// [`verify_checkpoint_for_origin`].
pub fn verify_checkpoint(
    note: &str,
    log_key: &NoteVerifierKey,
    witnesses: &[CosignatureVerifierKey],
    quorum: usize,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    verify_checkpoint_for_origin(
        note,
        log_key.name(),
        std::slice::from_ref(log_key),
        witnesses,
        quorum,
    )
}

/// Verifies a signed checkpoint: note syntax, body grammar, the origin line
/// equal to `origin` (which the verifier knows from its policy; tlog-checkpoint
/// only says the log's key name SHOULD equal the origin, so a log such as
/// `go.sum database tree` signed by `sum.golang.org` verifies), a signature
/// by one of `log_keys`, then Ed25519 (0x04) or ML-DSA-44 (0x06) cosignatures
/// by the trusted `witnesses`, requiring `quorum` distinct witness keys (0 =
/// no witnesses needed). Unknown signature lines are ignored; a line by a
/// known key (log or witness) that fails to verify rejects the whole
/// checkpoint, as signed-note prescribes.
pub fn verify_checkpoint_for_origin(
    note: &str,
    origin: &str,
    log_keys: &[NoteVerifierKey],
    witnesses: &[CosignatureVerifierKey],
    quorum: usize,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    if log_keys.is_empty() {
        return Err(CheckpointError::NoLogKey);
    }
    let parsed = parse_note(note).map_err(CheckpointError::Note)?;
    let text = std::str::from_utf8(parsed.text())
        .map_err(|_| CheckpointError::Note(NoteError::Malformed))?;
    let checkpoint = Checkpoint::parse_body(text)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::OriginMismatch {
            origin: checkpoint.origin,
            key_name: origin.to_owned(),
        });
    }

    let mut logs: Vec<&NoteVerifierKey> = Vec::new();
    for k in log_keys {
        if !logs.contains(&k) {
            logs.push(k);
        }
    }
    let mut unique: Vec<&CosignatureVerifierKey> = Vec::new();
    for w in witnesses {
        if !unique.contains(&w) {
            unique.push(w);
        }
    }
    let mut verifiers: Vec<Box<dyn signed_note::Verifier>> =
        logs.iter().map(|k| k.boxed()).collect();
    for w in &unique {
        verifiers.push(Box::new((*w).clone()));
    }
    let is_log = |name: &str, id: u32| logs.iter().any(|k| name == k.name() && id == k.key_id());
    let verified = verify_parsed(&parsed, verifiers).map_err(|e| match e {
        NoteError::InvalidSignature { name, key_id } if is_log(&name, key_id) => {
            CheckpointError::InvalidLogSignature { name, key_id }
        }
        NoteError::InvalidSignature { name, key_id } => {
            CheckpointError::InvalidCosignature { name, key_id }
        }
        NoteError::NoKnownSignature => CheckpointError::MissingLogSignature,
        other => CheckpointError::Note(other),
    })?;
    if !verified.iter().any(|s| is_log(&s.name, s.key_id)) {
        return Err(CheckpointError::MissingLogSignature);
    }

    // signed_note yields at most one verified signature per (name, key ID).
    let cosigners: Vec<(String, u64)> = verified
        .iter()
        .filter(|s| !is_log(&s.name, s.key_id))
        .filter_map(|s| Some((s.name.clone(), timestamp_of(&s.signature)?)))
        .collect();
    if cosigners.len() < quorum {
        return Err(CheckpointError::QuorumNotMet {
            have: cosigners.len(),
            need: quorum,
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        note: note.to_owned(),
        cosigners,
    })
}
