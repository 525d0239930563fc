//! The witness's log list: which logs it cosigns for, and their keys.
//!
//! Text, one log per line, in either form:
//!
//! - `<verifier key> [<origin>]`: the log's signed-note Ed25519 verifier key
//!   (`name+hexid+base64`), then, after whitespace, the origin as the rest of
//!   the line (it may hold spaces, as `go.sum database tree` does); without
//!   an origin, the key's name is the origin. tlog-checkpoint only says the
//!   key name SHOULD equal the origin, so they may differ.
//! - `<origin> <verifier key>` (the older form, still read): exactly two
//!   fields, and the key's name must equal the origin.
//!
//! A line whose first field contains '+' is the first form: a vkey always
//! holds '+', while an older-form origin equals a key name, which cannot.
//! Surrounding whitespace is trimmed, so an origin cannot start or end with
//! whitespace. Blank lines and lines starting with `#` are ignored. An
//! origin may be listed with several keys (key rotation); a signature by
//! any of them is accepted.

use std::collections::BTreeMap;

use crate::tlog::note::NoteVerifierKey;

#[derive(Debug, thiserror::Error)]
pub enum LogListError {
    #[error("log list line {line}: expected \"<verifier key> [<origin>]\" or \"<origin> <verifier key>\"")]
    Syntax { line: usize },
    #[error("log list line {line}: verifier key: {reason}")]
    Key { line: usize, reason: String },
    #[error("log list line {line}: key name {name:?} is not the origin {origin:?} (list the key first to give another origin)")]
    NameMismatch {
        line: usize,
        name: String,
        origin: String,
    },
    #[error("log list names no log")]
    Empty,
}

impl LogListError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax { .. } => "log_list_syntax",
            Self::Key { .. } => "log_list_key",
            Self::NameMismatch { .. } => "log_list_name_mismatch",
            Self::Empty => "log_list_empty",
        }
    }
}

/// Trusted logs by origin.
#[derive(Debug, Clone, Default)]
pub struct LogList {
    logs: BTreeMap<String, Vec<NoteVerifierKey>>,
    /// Lowercase hex SHA-256 of each origin, for the monitoring endpoint
    /// (computed once, not per request).
    by_hash: BTreeMap<String, String>,
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
            let (first, rest) = trimmed
                .split_once(char::is_whitespace)
                .map_or((trimmed, ""), |(f, r)| (f, r.trim()));
            let parse_key = |text: &str| {
                NoteVerifierKey::parse(text).map_err(|e| LogListError::Key {
                    line,
                    reason: e.to_string(),
                })
            };
            let (origin, key) = if first.contains('+') {
                let key = parse_key(first)?;
                let origin = if rest.is_empty() { key.name() } else { rest };
                (origin.to_string(), key)
            } else {
                let mut fields = rest.split_whitespace();
                let (Some(key), None) = (fields.next(), fields.next()) else {
                    return Err(LogListError::Syntax { line });
                };
                let key = parse_key(key)?;
                if key.name() != first {
                    return Err(LogListError::NameMismatch {
                        line,
                        name: key.name().to_string(),
                        origin: first.to_string(),
                    });
                }
                (first.to_string(), key)
            };
            logs.entry(origin).or_default().push(key);
        }
        if logs.is_empty() {
            return Err(LogListError::Empty);
        }
        let by_hash = logs
            .keys()
            .map(|o| (super::origin_hash(o), o.clone()))
            .collect();
        Ok(Self { logs, by_hash })
    }

    /// The keys trusted for `origin`, if it is listed.
    pub fn keys(&self, origin: &str) -> Option<&[NoteVerifierKey]> {
        self.logs.get(origin).map(Vec::as_slice)
    }

    /// The listed origin whose lowercase hex SHA-256 is `hash`.
    pub fn origin_by_hash(&self, hash: &str) -> Option<&str> {
        self.by_hash.get(hash).map(String::as_str)
    }

    /// The listed origins.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }
}
