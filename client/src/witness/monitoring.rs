//! The tlog-witness monitoring endpoint:
//! `GET <monitoring prefix>/<origin hash>/checkpoint`, where the origin hash
//! is the lowercase hex SHA-256 of the log's origin line (without its
//! newline).
//!
//! The answer is the latest checkpoint this witness cosigned for that log:
//! the note text, the log signatures the witness verified, and the
//! cosignature add-checkpoint returned (200, `text/plain; charset=utf-8`).
//! Any path segment that is not the hash of an origin in the log list with a
//! cosigned checkpoint gets 404. The stored checkpoint is served at once (the
//! spec allows a delay of up to an hour; there is none).
//!
//! A state written before the witness stored its cosignature with the
//! checkpoint holds the submitted note instead; it is served with the log
//! signatures that still verify and a cosignature made when asked (it is
//! still the latest tree the witness cosigned, which is what a cosignature
//! states).

use sha2::{Digest, Sha256};

use super::{now, Answer, Witness, TEXT_CONTENT_TYPE};
use crate::tlog::note::{signature_line, verify_note, SignedNote};

/// Lowercase hex SHA-256 of `origin`: the path segment of the monitoring
/// endpoint.
pub fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

impl Witness {
    /// Answers `GET <prefix>/<origin_hash>/checkpoint`.
    pub fn monitoring_checkpoint(&self, hash: &str) -> Answer {
        let Some(origin) = self.logs.origin_by_hash(hash) else {
            return Answer::text(404, "no log with that origin hash");
        };
        let state = match self.store.get(origin) {
            Ok(Some(state)) => state,
            Ok(None) => return Answer::text(404, "this witness never cosigned that log"),
            Err(e) => return Answer::text(500, format!("state: {e}")),
        };
        let ours = |n: &SignedNote| {
            n.signatures
                .iter()
                .any(|s| s.name == self.signer.name() && s.key_id == self.signer.key_id())
        };
        match SignedNote::parse(&state.note) {
            Ok(note) if ours(&note) => Answer {
                status: 200,
                content_type: TEXT_CONTENT_TYPE,
                body: state.note,
            },
            _ => self.legacy(origin, &state.note),
        }
    }

    /// A state stored without this witness's cosignature.
    fn legacy(&self, origin: &str, note: &str) -> Answer {
        let Some(keys) = self.logs.keys(origin) else {
            return Answer::text(404, "no log with that origin hash");
        };
        let Ok(signed) = verify_note(note, keys) else {
            return Answer::text(404, "the stored checkpoint no longer verifies");
        };
        let line = match self.signer.cosign(&signed.text, now()) {
            Ok(line) => line,
            Err(e) => return Answer::text(500, format!("cosigning failed: {e}")),
        };
        let mut body = format!("{}\n", signed.text);
        for sig in &signed.signatures {
            body.push_str(&signature_line(&sig.name, sig.key_id, &sig.signature));
        }
        body.push_str(&line);
        Answer {
            status: 200,
            content_type: TEXT_CONTENT_TYPE,
            body,
        }
    }
}
