//! Transparency-log formats: RFC 6962/9162 Merkle proofs, C2SP signed notes,
//! checkpoints, Ed25519 and ML-DSA-44 witness cosignatures, tlog-tiles paths and entry
//! bundles, and the c2sp.org/tlog-proof@v1 offline proof text.
//!
//! Dependency choices (checked against the C2SP specs, see each module doc):
//! - `signed_note` (Cloudflare's port of Go's `sumdb/note`) does note parsing,
//!   Ed25519 (type 0x01) signing and verification; cosignatures (Ed25519
//!   type 0x04, ML-DSA-44 type 0x06 through aws-lc-rs) plug into its
//!   `Verifier` trait.
//! - `tlog_tiles` provides the RFC 6962 proof checks and provers (Go's
//!   `sumdb/tlog` algorithms), wrapped with input bounds so that its internal
//!   `assert!`s are unreachable.
//! - Checkpoint bodies, tile paths, entry bundles and tlog-proof text are
//!   written here: the crate's versions either use Go sumdb paths (not C2SP),
//!   or cannot name the check that failed.

pub mod checkpoint;
pub mod cosignature;
mod error;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tile_proofs;
pub mod tiles;

pub use error::{
    CheckpointError, CosignatureError, NoteError, ProofError, ProofTextError, ProveError, TileError,
};

/// A SHA-256 hash: a Merkle tree leaf, node or root.
pub type Hash = [u8; 32];

/// Standard base64 (RFC 4648 section 4, padded, canonical), as every C2SP
/// text format uses.
pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Parses an ASCII decimal with no leading zeroes (except "0" itself), as the
/// checkpoint tree size, tlog-proof index and tile widths require.
pub(crate) fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}
