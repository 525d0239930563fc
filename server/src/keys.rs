//! The log's checkpoint signing key: created on first start in Go/C2SP
//! `PRIVATE+KEY+...` text with mode 0600, or loaded from a file.
//!
//! # Contract
//! - A key is generated only for an empty log: no entries and no stored
//!   checkpoint. A log that has signed anything keeps its key forever, so a
//!   missing key file for such a log is refused (`log_key_missing`) instead
//!   of being replaced, which would make `/v1/log` advertise a key that did
//!   not sign `/checkpoint`.
//! - A key file that did not sign the latest stored checkpoint is refused
//!   (`log_key_mismatch`). Both errors name the key (name and 4-byte signed
//!   note key id, in hex) that the stored checkpoints were signed with.
//! - A key file readable by group or others is refused rather than used, as
//!   ssh does, because anyone who reads it can sign checkpoints for the log.
//! - Nothing is written unless a key is created.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use attestlog::tlog::note::{verify_note, NoteSigner, SignedNote};

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
    #[error(
        "the log has {size} entries signed by key {signed_by}; restore {path} \
         (a new key is only created for an empty log)"
    )]
    Missing {
        path: String,
        size: u64,
        signed_by: String,
    },
    #[error(
        "key file {path} holds key {found}, but the log's checkpoints are signed by key \
         {signed_by}; restore that key"
    )]
    Mismatch {
        path: String,
        found: String,
        signed_by: String,
    },
}

impl KeyError {
    /// A stable snake_case code for the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Io { .. } => "log_key_unreadable",
            KeyError::Permissions(..) => "log_key_permissions",
            KeyError::Malformed(..) => "log_key_malformed",
            KeyError::WrongName { .. } => "log_key_wrong_name",
            KeyError::Missing { .. } => "log_key_missing",
            KeyError::Mismatch { .. } => "log_key_mismatch",
        }
    }
}

/// What the log has already signed: its size and its latest stored
/// checkpoint note (`None` for a log that never signed one).
#[derive(Clone, Copy, Debug)]
pub struct SignedHistory<'a> {
    pub size: u64,
    pub latest_checkpoint: Option<&'a str>,
}

impl SignedHistory<'_> {
    fn is_empty(&self) -> bool {
        self.size == 0 && self.latest_checkpoint.is_none()
    }

    /// `name+hex id` of the key that signed the latest checkpoint: its
    /// signature line named `origin`, else its first one.
    fn signed_by(&self, origin: &str) -> String {
        let Some(note) = self.latest_checkpoint else {
            return "(none)".into();
        };
        match SignedNote::parse(note) {
            Ok(parsed) => parsed
                .signatures
                .iter()
                .find(|s| s.name == origin)
                .or(parsed.signatures.first())
                .map_or_else(
                    || "(unsigned checkpoint)".into(),
                    |s| key_label(&s.name, s.key_id),
                ),
            Err(e) => format!("(unreadable checkpoint: {e})"),
        }
    }
}

/// How keys are shown in errors: `name+8 hex digits of the key id`.
fn key_label(name: &str, key_id: u32) -> String {
    format!("{name}+{key_id:08x}")
}

/// Loads the signing key at `path` for a log that has signed `history`, or
/// creates one named `origin` there if the file does not exist and the log
/// is empty. Returns the signer and whether it was created.
pub fn load_or_create(
    path: &Path,
    origin: &str,
    history: SignedHistory<'_>,
) -> Result<(NoteSigner, bool), KeyError> {
    let shown = path.display().to_string();
    let io = |source| KeyError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let signer = load(path, &shown, meta.permissions().mode(), origin)?;
            if let Some(note) = history.latest_checkpoint {
                let key = signer
                    .verifier_key()
                    .map_err(|e| KeyError::Malformed(shown.clone(), e.to_string()))?;
                if verify_note(note, &[key]).is_err() {
                    return Err(KeyError::Mismatch {
                        path: shown,
                        found: key_label(signer.name(), signer.key_id()),
                        signed_by: history.signed_by(origin),
                    });
                }
            }
            Ok((signer, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !history.is_empty() {
                return Err(KeyError::Missing {
                    path: shown,
                    size: history.size,
                    signed_by: history.signed_by(origin),
                });
            }
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

/// Reads an existing key file, refusing loose permissions and a key whose
/// name is not the log's origin.
fn load(path: &Path, shown: &str, mode: u32, origin: &str) -> Result<NoteSigner, KeyError> {
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions(shown.to_string(), mode));
    }
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: shown.to_string(),
        source,
    })?;
    let signer = NoteSigner::from_private_key_text(text.trim_end())
        .map_err(|e| KeyError::Malformed(shown.to_string(), e.to_string()))?;
    if signer.name() != origin {
        return Err(KeyError::WrongName {
            path: shown.to_string(),
            name: signer.name().to_string(),
            origin: origin.to_string(),
        });
    }
    Ok(signer)
}
