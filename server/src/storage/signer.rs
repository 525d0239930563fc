//! Checkpoint signing, as the log asks for it.
//!
//! [`Log`](super::Log) calls a [`CheckpointSigner`] given by its caller once
//! per batch, after the new tree is computed and before the backend write,
//! so a signing failure writes nothing. The log server's signer is the log's
//! [`NoteSigner`]: a C2SP checkpoint body (origin = key name, size, root, no
//! extension lines) signed as a note. Any `Fn(u64, Hash) -> Result<String,
//! E>` is a signer too (tools and tests).

use attestlog::tlog::checkpoint::Checkpoint;
use attestlog::tlog::note::NoteSigner;
use attestlog::tlog::NoteError;

use super::Hash;

/// Why a checkpoint was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("note signing failed: {0}")]
    Note(#[from] NoteError),
    #[error("signer refused: {0}")]
    Refused(String),
}

/// Signs the tree head `(size, root)` and returns the signed note.
pub trait CheckpointSigner {
    fn sign_checkpoint(&self, size: u64, root: &Hash) -> Result<String, SignError>;
}

impl CheckpointSigner for NoteSigner {
    fn sign_checkpoint(&self, size: u64, root: &Hash) -> Result<String, SignError> {
        let body = Checkpoint {
            origin: self.name().to_string(),
            size,
            root_hash: *root,
            extensions: Vec::new(),
        }
        .to_body();
        Ok(self.sign(&body)?)
    }
}

impl<F, E> CheckpointSigner for F
where
    F: Fn(u64, Hash) -> Result<String, E>,
    E: std::fmt::Display,
{
    fn sign_checkpoint(&self, size: u64, root: &Hash) -> Result<String, SignError> {
        self(size, *root).map_err(|e| SignError::Refused(e.to_string()))
    }
}
