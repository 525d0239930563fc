//! Error types of the `tlog` module. Each variant's message names the check
//! that failed; `code()` gives a stable snake_case identifier for callers,
//! logs and tests (codes never change once published).

use thiserror::Error;

/// A Merkle inclusion or consistency proof did not verify, or its inputs are
/// out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("proof has {len} hashes, more than the maximum of 63")]
    ProofTooLong { len: usize },
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency: first size {first} is larger than second size {second}")]
    SizeOrder { first: u64, second: u64 },
    #[error("consistency: proof must be empty when first size is 0 or equals second size")]
    UnexpectedProof,
    #[error("consistency: first size is 0 but first root is not the empty-tree root")]
    EmptyRootMismatch,
    #[error("inclusion: proof does not lead from the leaf to the root")]
    InclusionMismatch,
    #[error("consistency: proof does not match both roots")]
    ConsistencyMismatch,
    #[error("prover: tree size {size} needs more leaves than the {have} given")]
    NotEnoughLeaves { size: u64, have: usize },
    #[error("prover: subtree at level {level} index {index} lies outside the tree")]
    SubtreeOutOfRange { level: u8, index: u64 },
    #[error("prover: internal error while assembling the proof")]
    ProverInternal,
}

impl ProofError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ProofTooLong { .. } => "proof_too_long",
            Self::IndexOutOfRange { .. } => "index_out_of_range",
            Self::SizeOrder { .. } => "size_order",
            Self::UnexpectedProof => "unexpected_proof",
            Self::EmptyRootMismatch => "empty_root_mismatch",
            Self::InclusionMismatch => "inclusion_mismatch",
            Self::ConsistencyMismatch => "consistency_mismatch",
            Self::NotEnoughLeaves { .. } => "not_enough_leaves",
            Self::SubtreeOutOfRange { .. } => "subtree_out_of_range",
            Self::ProverInternal => "prover_internal",
        }
    }
}

/// Building a proof failed: bad inputs, or the caller's hash source failed.
#[derive(Debug, Error)]
pub enum ProveError<E: std::fmt::Display + std::fmt::Debug> {
    #[error("{0}")]
    Input(ProofError),
    #[error("prover: hash source failed: {0}")]
    Source(E),
}

impl<E: std::fmt::Display + std::fmt::Debug> ProveError<E> {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Input(e) => e.code(),
            Self::Source(_) => "hash_source",
        }
    }
}

/// A signed note, note key or note signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("note: not well-formed signed-note syntax (text, blank line, signature lines)")]
    Malformed,
    #[error("note: {count} signature lines, more than the maximum of 100")]
    TooManySignatures { count: usize },
    #[error("note text: must be UTF-8 ending in newline, without control characters, under 1 MB")]
    InvalidText,
    #[error("key name: must be non-empty without spaces or '+'")]
    InvalidKeyName,
    #[error("verifier key: not of the form name+hexid+base64(type||key)")]
    MalformedVerifierKey,
    #[error("signer key: not of the form PRIVATE+KEY+name+hexid+base64(type||seed)")]
    MalformedSignerKey,
    #[error("key: signature type {0:#04x} is not Ed25519 (0x01)")]
    UnsupportedKeyType(u8),
    #[error("key: key ID does not match SHA-256(name || 0x0A || type || key)")]
    KeyIdMismatch,
    #[error("signature by known key {name}+{key_id:08x} does not verify")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("note: no signature by a known key")]
    NoKnownSignature,
    #[error("keys: two different keys share name {name} and key ID {key_id:08x}")]
    AmbiguousKey { name: String, key_id: u32 },
    #[error("signing failed")]
    SigningFailed,
}

impl NoteError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_note",
            Self::TooManySignatures { .. } => "too_many_signatures",
            Self::InvalidText => "invalid_note_text",
            Self::InvalidKeyName => "invalid_key_name",
            Self::MalformedVerifierKey => "malformed_verifier_key",
            Self::MalformedSignerKey => "malformed_signer_key",
            Self::UnsupportedKeyType(_) => "unsupported_key_type",
            Self::KeyIdMismatch => "key_id_mismatch",
            Self::InvalidSignature { .. } => "invalid_signature",
            Self::NoKnownSignature => "unverified_note",
            Self::AmbiguousKey { .. } => "ambiguous_key",
            Self::SigningFailed => "signing_failed",
        }
    }
}

/// A witness cosignature key or cosignature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CosignatureError {
    #[error("key name: must be non-empty without spaces or '+' (at most 255 bytes for ML-DSA-44)")]
    InvalidKeyName,
    #[error("cosigner verifier key: not of the form name+hexid+base64(type||key) with type 0x04 and a 32-byte key or 0x06 and a 1312-byte key")]
    MalformedVerifierKey,
    #[error("cosigner signer key: not of the form PRIVATE+KEY+name+hexid+base64(type||32-byte seed) with type 0x04 or 0x06")]
    MalformedSignerKey,
    #[error("cosigner key: signature type {0:#04x} is neither Ed25519 cosignature/v1 (0x04) nor ML-DSA-44 (0x06)")]
    UnsupportedKeyType(u8),
    #[error("cosigner key: key ID does not match SHA-256(name || 0x0A || type || key)")]
    KeyIdMismatch,
    #[error("cosignature: timestamp {0} is out of range (at most 2^63-1; not 0 for ML-DSA-44)")]
    TimestampOutOfRange(u64),
    #[error("cosignature: refusing to cosign a malformed checkpoint body: {0}")]
    InvalidCheckpoint(CheckpointError),
    #[error("cosignature: ML-DSA-44 cannot sign an origin longer than 255 bytes")]
    OriginTooLong,
    #[error("cosignature: signing failed")]
    SigningFailed,
}

impl CosignatureError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidKeyName => "invalid_key_name",
            Self::MalformedVerifierKey => "malformed_verifier_key",
            Self::MalformedSignerKey => "malformed_signer_key",
            Self::UnsupportedKeyType(_) => "unsupported_key_type",
            Self::KeyIdMismatch => "key_id_mismatch",
            Self::TimestampOutOfRange(_) => "timestamp_out_of_range",
            Self::InvalidCheckpoint(_) => "malformed_checkpoint",
            Self::OriginTooLong => "origin_too_long",
            Self::SigningFailed => "signing_failed",
        }
    }
}

/// A checkpoint body or signed checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error("checkpoint body: {0}")]
    Malformed(&'static str),
    /// `key_name` is the origin that was expected: the one given (policy,
    /// `--origin`), else the log key's name.
    #[error("checkpoint: origin {origin:?} is not the expected origin {key_name:?}")]
    OriginMismatch { origin: String, key_name: String },
    #[error("checkpoint: no log key given")]
    NoLogKey,
    #[error("checkpoint: {0}")]
    Note(NoteError),
    #[error("checkpoint: no valid signature by the log key")]
    MissingLogSignature,
    #[error("checkpoint: log signature by {name}+{key_id:08x} does not verify")]
    InvalidLogSignature { name: String, key_id: u32 },
    #[error("checkpoint: cosignature by witness {name}+{key_id:08x} does not verify")]
    InvalidCosignature { name: String, key_id: u32 },
    #[error("checkpoint: {have} valid witness cosignatures, quorum needs {need}")]
    QuorumNotMet { have: usize, need: usize },
}

impl CheckpointError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_checkpoint",
            Self::OriginMismatch { .. } => "origin_mismatch",
            Self::NoLogKey => "no_log_key",
            Self::Note(e) => e.code(),
            Self::MissingLogSignature => "missing_log_signature",
            Self::InvalidLogSignature { .. } => "invalid_log_signature",
            Self::InvalidCosignature { .. } => "invalid_cosignature",
            Self::QuorumNotMet { .. } => "witness_quorum",
        }
    }
}

/// A tile path or entry bundle was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TileError {
    #[error("tile path: {0}")]
    MalformedPath(&'static str),
    #[error("tile path: not in canonical form (expected {expected:?})")]
    NonCanonicalPath { expected: String },
    #[error("tile path: level {0} is above 63")]
    LevelOutOfRange(u64),
    #[error("tile path: partial width {0} is not in 1..=255")]
    WidthOutOfRange(u64),
    #[error("tile path: index does not fit in 64 bits")]
    IndexOverflow,
    #[error("entry bundle: truncated at byte {offset}")]
    TruncatedBundle { offset: usize },
    #[error(
        "entry bundle: entry of {len} bytes exceeds {}",
        super::tiles::MAX_ENTRY_LEN
    )]
    EntryTooLarge { len: usize },
    #[error("entry bundle: more than 256 entries")]
    TooManyEntries,
}

impl TileError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedPath(_) => "malformed_tile_path",
            Self::NonCanonicalPath { .. } => "non_canonical_tile_path",
            Self::LevelOutOfRange(_) => "tile_level_out_of_range",
            Self::WidthOutOfRange(_) => "tile_width_out_of_range",
            Self::IndexOverflow => "tile_index_overflow",
            Self::TruncatedBundle { .. } => "truncated_entry_bundle",
            Self::EntryTooLarge { .. } => "entry_too_large",
            Self::TooManyEntries => "too_many_entries",
        }
    }
}

/// A c2sp.org/tlog-proof@v1 text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofTextError {
    #[error("tlog-proof: first line is not \"c2sp.org/tlog-proof@v1\"")]
    BadHeader,
    #[error("tlog-proof: extra line is not \"extra <base64>\"")]
    BadExtra,
    #[error("tlog-proof: index line is not \"index <decimal without leading zeroes>\"")]
    BadIndex,
    #[error("tlog-proof: proof line {line} is not a base64 32-byte hash")]
    BadHash { line: usize },
    #[error("tlog-proof: more than 63 proof hashes")]
    TooManyHashes,
    #[error("tlog-proof: text ends before the blank line and checkpoint")]
    Truncated,
    #[error("tlog-proof: checkpoint after the blank line is empty")]
    MissingCheckpoint,
}

impl ProofTextError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadHeader => "bad_header",
            Self::BadExtra => "bad_extra",
            Self::BadIndex => "bad_index",
            Self::BadHash { .. } => "bad_hash",
            Self::TooManyHashes => "too_many_hashes",
            Self::Truncated => "truncated_proof",
            Self::MissingCheckpoint => "missing_checkpoint",
        }
    }
}
