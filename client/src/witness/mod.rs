//! A C2SP tlog-witness cosigner, without any HTTP stack, following the
//! current c2sp.org/tlog-witness text (not only v1.0.0).
//!
//! [`Witness::add_checkpoint`] takes a request body and returns the status,
//! content type and body to answer with; [`Witness::monitoring_checkpoint`]
//! answers `GET <prefix>/<hex SHA-256(origin)>/checkpoint`; the `attestlog
//! witness serve` command puts both behind HTTP. The add-checkpoint checks,
//! in this order:
//!
//! 1. the body parses ("old N\n", at most 63 base64 proof lines, "\n", a
//!    signed checkpoint), else 400 `"malformed request: <reason>"` (the
//!    reason is an [`AddCheckpointError`]);
//! 2. the origin is in the log list, else 404;
//! 3. a trusted key of that origin signed it (signed-note rules: a line that
//!    matches a trusted key's name and ID but fails to verify also rejects),
//!    else 403;
//! 4. old <= size, else 400;
//! 5. old equals the size this witness last cosigned (0 if never), else 409
//!    with `"<size>\n"` as `text/x.tlog.size`;
//! 6. when old = size, the roots must be equal, else 422 (v1.0.0 said 409);
//!    otherwise the consistency proof from the stored root (the empty-tree
//!    root when old is 0) to the new root verifies, else 422: the proof must
//!    be empty when old is 0 or old = size, and a size-0 checkpoint must
//!    carry the empty-tree root;
//! 7. the cosignature (Ed25519 or ML-DSA-44, by the witness's key type,
//!    timestamp now, never 0) is made, the new state and the cosigned
//!    checkpoint are committed, then the cosignature line is returned with 200.
//!
//! Steps 5 to 7 run in one SQLite `BEGIN IMMEDIATE` transaction, committed
//! with `synchronous=FULL` before the answer is sent, so the compare-and-swap
//! on (size, root) is atomic and durable: a witness killed at any point has
//! either answered nothing, or persisted what it cosigned.
//! Checkpoints that are validly signed but fail the proof are kept in the
//! `evidence` table (the spec allows logging them as proof of misbehaviour),
//! within fixed caps, so disk use does not grow with the number of requests
//! (see `evidence`).
//!
//! The stored checkpoint (served by the monitoring endpoint) is the note
//! text, the log signatures the witness verified, and the cosignature it
//! returned, in that order.

mod evidence;
mod loglist;
mod monitoring;
mod state;

use base64::Engine;

pub use evidence::{
    EvidenceUsage, MAX_EVIDENCE_PER_ORIGIN, MAX_EVIDENCE_REQUEST, MAX_EVIDENCE_ROWS,
};
pub use loglist::{LogList, LogListError};
pub use monitoring::origin_hash;
pub use state::{StateError, WitnessState, WitnessStore};

use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::cosignature::CosignatureSigner;
use crate::tlog::merkle::verify_consistency;
use crate::tlog::note::{signature_line, verify_note};
use crate::tlog::Hash;

/// Content type of a 409 answer's body.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// Content type of the other answers (and of the monitoring endpoint's
/// checkpoint).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// At most this many proof lines (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest body of a tlog-witness exchange: the `add-checkpoint` request a
/// witness reads, and the answer a log reads back.
pub const MAX_BODY: usize = 64 * 1024;

/// What the witness answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Answer {
            status,
            content_type: TEXT_CONTENT_TYPE,
            body,
        }
    }
}

/// A parsed add-checkpoint request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub note: String,
}

/// An add-checkpoint request body was malformed (the witness answers 400
/// `"malformed request: <message>"`). Each message names the failed check and
/// is part of the HTTP answer, so it does not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddCheckpointError {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("missing old size line")]
    MissingOldSize,
    #[error("first line is not \"old <size>\"")]
    BadOldLine,
    #[error("old size is not a decimal without leading zeroes")]
    NonCanonicalOldSize,
    #[error("missing empty line before the checkpoint")]
    MissingEmptyLine,
    #[error("more than {max} proof lines", max = MAX_PROOF_LINES)]
    TooManyProofLines,
    #[error("proof line is not base64 of 32 bytes")]
    BadProofLine,
}

impl AddCheckpointError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotUtf8 => "request_not_utf8",
            Self::MissingOldSize => "request_missing_old_size",
            Self::BadOldLine => "request_bad_old_line",
            Self::NonCanonicalOldSize => "request_non_canonical_old_size",
            Self::MissingEmptyLine => "request_missing_empty_line",
            Self::TooManyProofLines => "request_too_many_proof_lines",
            Self::BadProofLine => "request_bad_proof_line",
        }
    }
}

impl AddCheckpointRequest {
    /// Parses a request body; the error names what is malformed.
    pub fn parse(body: &[u8]) -> Result<Self, AddCheckpointError> {
        let text = std::str::from_utf8(body).map_err(|_| AddCheckpointError::NotUtf8)?;
        let (first, mut rest) = text
            .split_once('\n')
            .ok_or(AddCheckpointError::MissingOldSize)?;
        let old = first
            .strip_prefix("old ")
            .ok_or(AddCheckpointError::BadOldLine)?;
        let old_size =
            crate::tlog::parse_canonical_u64(old).ok_or(AddCheckpointError::NonCanonicalOldSize)?;
        let mut proof = Vec::new();
        loop {
            let (line, after) = rest
                .split_once('\n')
                .ok_or(AddCheckpointError::MissingEmptyLine)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(AddCheckpointError::TooManyProofLines);
            }
            let hash: Hash = crate::tlog::b64()
                .decode(line)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or(AddCheckpointError::BadProofLine)?;
            proof.push(hash);
        }
        Ok(Self {
            old_size,
            proof,
            note: rest.to_string(),
        })
    }

    /// The request body text.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&crate::tlog::b64().encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }
}

/// A witness: its key, the logs it trusts and its state.
pub struct Witness {
    signer: CosignatureSigner,
    logs: LogList,
    store: WitnessStore,
}

impl Witness {
    pub fn new(signer: CosignatureSigner, logs: LogList, store: WitnessStore) -> Self {
        Self {
            signer,
            logs,
            store,
        }
    }

    /// The witness's signer.
    pub fn signer(&self) -> &CosignatureSigner {
        &self.signer
    }

    /// The state store.
    pub fn store(&self) -> &WitnessStore {
        &self.store
    }

    /// Handles one add-checkpoint request body.
    pub fn add_checkpoint(&self, body: &[u8]) -> Answer {
        self.add_checkpoint_at(body, now())
    }

    /// As [`Witness::add_checkpoint`], cosigning at `timestamp`.
    pub fn add_checkpoint_at(&self, body: &[u8], timestamp: u64) -> Answer {
        let req = match AddCheckpointRequest::parse(body) {
            Ok(r) => r,
            Err(e) => return Answer::text(400, format!("malformed request: {e}")),
        };
        // The origin is the first line of the note; parse the body fully
        // only after the signature verified.
        let origin = req.note.split('\n').next().unwrap_or_default();
        let Some(keys) = self.logs.keys(origin) else {
            return Answer::text(404, format!("unknown origin {origin:?}"));
        };
        let signed = match verify_note(&req.note, keys) {
            Ok(s) => s,
            Err(e) => {
                return Answer::text(403, format!("no valid signature by a trusted key: {e}"))
            }
        };
        let checkpoint = match Checkpoint::parse_body(&signed.text) {
            Ok(c) => c,
            Err(e) => return Answer::text(400, format!("malformed checkpoint: {e}")),
        };
        if req.old_size > checkpoint.size {
            return Answer::text(
                400,
                format!(
                    "old size {} is larger than the checkpoint size {}",
                    req.old_size, checkpoint.size
                ),
            );
        }
        // The note as stored and served: text, verified log signatures, then
        // this witness's cosignature.
        let mut served = format!("{}\n", signed.text);
        for sig in &signed.signatures {
            served.push_str(&signature_line(&sig.name, sig.key_id, &sig.signature));
        }
        let mut cosignature: Option<String> = None;
        let result = self.store.compare_and_swap(origin, |current| {
            let (cur_size, cur_root) = match current {
                Some(s) => (s.size, s.root),
                None => (0, crate::tlog::merkle::empty_root()),
            };
            if req.old_size != cur_size {
                return Err(Rejection::Conflict(cur_size));
            }
            if current.is_some()
                && req.old_size == checkpoint.size
                && cur_root != checkpoint.root_hash
            {
                // Same size, different root: a fork at this size (422 in the
                // current text; v1.0.0 said 409).
                return Err(Rejection::Evidence(
                    Answer::text(
                        422,
                        format!(
                            "checkpoint of size {cur_size} has another root than the one cosigned"
                        ),
                    ),
                    "same size, different root",
                ));
            }
            verify_consistency(
                cur_size,
                checkpoint.size,
                &cur_root,
                &checkpoint.root_hash,
                &req.proof,
            )
            .map_err(|e| {
                Rejection::Evidence(
                    Answer::text(422, format!("consistency proof: {e}")),
                    e.code(),
                )
            })?;
            let line = self
                .signer
                .cosign(&signed.text, timestamp)
                .map_err(Rejection::Cosign)?;
            let note = format!("{served}{line}");
            cosignature = Some(line);
            Ok(WitnessState {
                size: checkpoint.size,
                root: checkpoint.root_hash,
                note,
            })
        });
        match (result, cosignature) {
            (Ok(()), Some(line)) => Answer {
                status: 200,
                content_type: TEXT_CONTENT_TYPE,
                body: line,
            },
            (Ok(()), None) => Answer::text(500, "cosigning failed"),
            (Err(state::CasError::Rejected(Rejection::Conflict(size))), _) => Answer {
                status: 409,
                content_type: SIZE_CONTENT_TYPE,
                body: format!("{size}\n"),
            },
            (Err(state::CasError::Rejected(Rejection::Evidence(answer, why))), _) => {
                // Keep the validly signed checkpoint that failed.
                let _ = self.store.record_evidence(origin, &req.to_body(), why);
                answer
            }
            (Err(state::CasError::Rejected(Rejection::Cosign(e))), _) => {
                Answer::text(500, format!("cosigning failed: {e}"))
            }
            (Err(state::CasError::Store(e)), _) => Answer::text(500, format!("state: {e}")),
        }
    }
}

/// Why the compare-and-swap refused.
#[derive(Debug)]
pub enum Rejection {
    /// 409 with the stored size.
    Conflict(u64),
    /// The answer to give, and a reason kept with the evidence.
    Evidence(Answer, &'static str),
    /// The cosignature could not be made (500; nothing is stored).
    Cosign(crate::tlog::CosignatureError),
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{AddCheckpointError, AddCheckpointRequest};

    /// Each malformed body gives its variant, and the message the witness's
    /// 400 answers have always carried.
    #[test]
    fn parse_errors_keep_their_messages() {
        let hash = format!("{}\n", "A".repeat(43) + "=");
        let too_many = format!("old 1\n{}\nnote", hash.repeat(64));
        let cases: [(&[u8], AddCheckpointError, &str); 7] = [
            (
                b"old 1\n\xff\n",
                AddCheckpointError::NotUtf8,
                "body is not UTF-8",
            ),
            (
                b"old 1",
                AddCheckpointError::MissingOldSize,
                "missing old size line",
            ),
            (
                b"new 1\n\nnote",
                AddCheckpointError::BadOldLine,
                "first line is not \"old <size>\"",
            ),
            (
                b"old 01\n\nnote",
                AddCheckpointError::NonCanonicalOldSize,
                "old size is not a decimal without leading zeroes",
            ),
            (
                b"old 1\nnote",
                AddCheckpointError::MissingEmptyLine,
                "missing empty line before the checkpoint",
            ),
            (
                too_many.as_bytes(),
                AddCheckpointError::TooManyProofLines,
                "more than 63 proof lines",
            ),
            (
                b"old 1\nAAAA\n\nnote",
                AddCheckpointError::BadProofLine,
                "proof line is not base64 of 32 bytes",
            ),
        ];
        for (body, want, message) in cases {
            let err = AddCheckpointRequest::parse(body).unwrap_err();
            assert_eq!(err, want);
            assert_eq!(err.to_string(), message);
            assert!(err.code().starts_with("request_"));
        }
        let ok = format!("old 1\n{}\nnote", hash.repeat(63));
        assert_eq!(
            AddCheckpointRequest::parse(ok.as_bytes())
                .unwrap()
                .proof
                .len(),
            63
        );
    }
}
