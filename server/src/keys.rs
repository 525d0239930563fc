//! The log's checkpoint signing key: created on first start in Go/C2SP
//! `PRIVATE+KEY+...` text with mode 0600, or loaded from a file.
//!
//! A key file readable by group or others is refused rather than used, as
//! ssh does, because anyone who reads it can sign checkpoints for the log.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use attestlog::tlog::note::NoteSigner;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} is readable by group or others (mode {1:o}); chmod 600 it")]
    Permissions(String, u32),
    #[error("key file {0}: {1}")]
    Malformed(String, String),
    #[error("key file {path} names key {name:?}, but the log's origin is {origin:?}")]
    WrongName {
        path: String,
        name: String,
        origin: String,
    },
}

/// Loads the signing key at `path`, or creates one named `origin` there if
/// the file does not exist. Returns the signer and whether it was created.
pub fn load_or_create(path: &Path, origin: &str) -> Result<(NoteSigner, bool), KeyError> {
    let shown = path.display().to_string();
    let io = |source| KeyError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions(shown, mode));
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            let signer = NoteSigner::from_private_key_text(text.trim_end())
                .map_err(|e| KeyError::Malformed(shown.clone(), e.to_string()))?;
            if signer.name() != origin {
                return Err(KeyError::WrongName {
                    path: shown,
                    name: signer.name().to_string(),
                    origin: origin.to_string(),
                });
            }
            Ok((signer, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = NoteSigner::generate(origin)
                .map_err(|e| KeyError::Malformed(shown.clone(), e.to_string()))?;
            // create_new: never overwrite a key another process just wrote.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(format!("{}\n", signer.private_key_text()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok((signer, true))
        }
        Err(e) => Err(io(e)),
    }
}
