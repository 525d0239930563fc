//! The witness's log list: which logs it cosigns for, and their keys.
//!
//! Text, one log per line: `<origin> <verifier key>`, where the key is a
//! signed-note Ed25519 verifier key (`name+hexid+base64`) whose name is the
//! origin (a checkpoint's origin is its log key's name). Blank lines and
//! lines starting with `#` are ignored. An origin may be listed with several
//! keys (key rotation); a signature by any of them is accepted.

use std::collections::BTreeMap;

use crate::tlog::note::NoteVerifierKey;

#[derive(Debug, thiserror::Error)]
pub enum LogListError {
    #[error("log list line {line}: expected \"<origin> <verifier key>\"")]
    Syntax { line: usize },
    #[error("log list line {line}: verifier key: {reason}")]
    Key { line: usize, reason: String },
    #[error("log list line {line}: key name {name:?} is not the origin {origin:?}")]
    NameMismatch {
        line: usize,
        name: String,
        origin: String,
    },
    #[error("log list names no log")]
    Empty,
}

/// Trusted logs by origin.
#[derive(Debug, Clone, Default)]
pub struct LogList {
    logs: BTreeMap<String, Vec<NoteVerifierKey>>,
}

impl LogList {
    /// Parses the log list text.
    pub fn parse(text: &str) -> Result<Self, LogListError> {
        let mut logs: BTreeMap<String, Vec<NoteVerifierKey>> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = trimmed.split_whitespace();
            let (Some(origin), Some(key), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(LogListError::Syntax { line });
            };
            let key = NoteVerifierKey::parse(key).map_err(|e| LogListError::Key {
                line,
                reason: e.to_string(),
            })?;
            if key.name() != origin {
                return Err(LogListError::NameMismatch {
                    line,
                    name: key.name().to_string(),
                    origin: origin.to_string(),
                });
            }
            logs.entry(origin.to_string()).or_default().push(key);
        }
        if logs.is_empty() {
            return Err(LogListError::Empty);
        }
        Ok(Self { logs })
    }

    /// The keys trusted for `origin`, if it is listed.
    pub fn keys(&self, origin: &str) -> Option<&[NoteVerifierKey]> {
        self.logs.get(origin).map(Vec::as_slice)
    }

    /// The listed origins.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }
}
