//! Witnessed checkpoints: sends each new checkpoint to the configured
//! c2sp.org/tlog-witness witnesses and keeps it only if at least `quorum` of
//! them cosigned it.
//!
//! Each witness gets `add-checkpoint` with a consistency proof from the size
//! it last cosigned (kept in memory, 0 after a restart). A 409 names the size
//! the witness holds; the request is retried once from that size. All
//! witnesses are asked concurrently, each with [`WITNESS_TIMEOUT`] and an
//! answer of at most [`MAX_BODY`] bytes. Every
//! cosignature line returned is verified against that witness's key before
//! it is appended to the note. One round runs at a time (a mutex), so the
//! sizes sent to a witness never go backwards.

use std::sync::Arc;
use std::time::Duration;

use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::cosignature::{CosignatureError, CosignatureVerifierKey};
use attestlog::tlog::note::NoteVerifierKey;
use attestlog::witness::{AddCheckpointRequest, MAX_BODY};

use crate::storage::{LogStore, StorageError};

/// How long one witness has to answer one add-checkpoint request.
pub const WITNESS_TIMEOUT: Duration = Duration::from_secs(5);

/// One configured witness.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// Base URL; requests go to `<url>/add-checkpoint`.
    pub url: String,
    pub key: CosignatureVerifierKey,
}

impl WitnessConfig {
    /// Parses `URL=VKEY` (split at the first `=`).
    pub fn parse(text: &str) -> Result<Self, WitnessConfigError> {
        let (url, vkey) = text
            .split_once('=')
            .ok_or_else(|| WitnessConfigError::Syntax(text.to_string()))?;
        let key = CosignatureVerifierKey::parse(vkey.trim()).map_err(|source| {
            WitnessConfigError::Key {
                url: url.to_string(),
                source,
            }
        })?;
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WitnessConfigError::Scheme(url));
        }
        Ok(WitnessConfig { url, key })
    }

    /// The witness's name (its key's name).
    pub fn name(&self) -> &str {
        self.key.name()
    }
}

/// Why the witness configuration was refused (at startup).
#[derive(Debug, thiserror::Error)]
pub enum WitnessConfigError {
    #[error("--witness {0:?}: expected URL=VKEY")]
    Syntax(String),
    #[error("--witness {url}: verifier key: {source}")]
    Key {
        url: String,
        source: CosignatureError,
    },
    #[error("--witness {0}: URL must be http(s)")]
    Scheme(String),
    #[error("--witness-quorum {quorum} is more than the {count} witnesses given")]
    Quorum { quorum: usize, count: usize },
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why one witness did not cosign a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness holds size {held}, beyond this checkpoint's {size}")]
    Ahead { held: u64, size: u64 },
    #[error("consistency proof: {0}")]
    Proof(StorageError),
    #[error("consistency proof task: {0}")]
    ProofTask(tokio::task::JoinError),
    #[error("unreachable: {0}")]
    Unreachable(reqwest::Error),
    #[error("reading the answer: {0}")]
    Answer(reqwest::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("409 with a bad size {0:?}")]
    BadConflictSize(String),
    #[error("409: witness holds size {0}, a different tree at that size")]
    Fork(u64),
    #[error("409 again: witness holds size {0}")]
    ConflictAgain(u64),
    #[error("answer holds no valid cosignature by its key")]
    NoCosignature,
    #[error("answer is over {limit} bytes")]
    AnswerTooLarge { limit: usize },
}

/// One witness that did not cosign, and why.
#[derive(Debug)]
pub struct FailedWitness {
    pub name: String,
    pub url: String,
    pub why: WitnessError,
}

impl std::fmt::Display for FailedWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.url, self.why)
    }
}

/// Why a checkpoint could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "witness quorum not met: {have} of {need} required cosignatures; failed witnesses: {}",
        list(.failed)
    )]
    Quorum {
        have: usize,
        need: usize,
        failed: Vec<FailedWitness>,
    },
    #[error("storing the cosigned checkpoint failed: {0}")]
    Store(StorageError),
    #[error("storing the cosigned checkpoint failed: {0}")]
    StoreTask(tokio::task::JoinError),
}

fn list(failed: &[FailedWitness]) -> String {
    let parts: Vec<String> = failed.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// The witnesses of a log and what each last cosigned.
pub struct Witnesses {
    witnesses: Vec<WitnessConfig>,
    quorum: usize,
    log_key: NoteVerifierKey,
    client: reqwest::Client,
    /// Per witness, the size it last cosigned as far as we know; held for a
    /// whole round so rounds never interleave.
    last: tokio::sync::Mutex<Vec<u64>>,
}

impl Witnesses {
    pub fn new(
        witnesses: Vec<WitnessConfig>,
        quorum: usize,
        log_key: NoteVerifierKey,
    ) -> Result<Self, WitnessConfigError> {
        if quorum > witnesses.len() {
            return Err(WitnessConfigError::Quorum {
                quorum,
                count: witnesses.len(),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(WITNESS_TIMEOUT)
            .build()?;
        let n = witnesses.len();
        Ok(Witnesses {
            witnesses,
            quorum,
            log_key,
            client,
            last: tokio::sync::Mutex::new(vec![0; n]),
        })
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The witnesses' cosignature verifier keys, as configured.
    pub fn keys(&self) -> impl Iterator<Item = &CosignatureVerifierKey> {
        self.witnesses.iter().map(|w| &w.key)
    }

    /// Makes sure the checkpoint `(size, note)` is cosigned: if the store
    /// already holds a cosigned checkpoint of at least `size`, returns it;
    /// otherwise asks the witnesses, stores the cosigned note and returns
    /// it. Returns the (size, note) published.
    pub async fn publish(
        &self,
        store: &Arc<LogStore>,
        size: u64,
        note: &str,
    ) -> Result<(u64, String), PublishError> {
        let mut last = self.last.lock().await;
        if let Ok(Some((s, n))) = store.latest_cosigned() {
            if s >= size {
                return Ok((s, n));
            }
        }
        let asks = self.witnesses.iter().enumerate().map(|(i, w)| {
            let old = last[i];
            self.ask(store, w, old, size, note)
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut lines = String::new();
        let mut have = 0;
        let mut failed = Vec::new();
        for (i, (w, answer)) in self.witnesses.iter().zip(answers).enumerate() {
            match answer {
                Ok(line) => {
                    last[i] = size;
                    lines.push_str(&line);
                    have += 1;
                }
                Err((why, known_size)) => {
                    if let Some(s) = known_size {
                        last[i] = s;
                    }
                    tracing::warn!(witness = w.name(), url = %w.url, size, reason = %why, "witness did not cosign");
                    failed.push(FailedWitness {
                        name: w.name().to_string(),
                        url: w.url.clone(),
                        why,
                    });
                }
            }
        }
        if have < self.quorum {
            return Err(PublishError::Quorum {
                have,
                need: self.quorum,
                failed,
            });
        }
        let cosigned = format!("{note}{lines}");
        let st = Arc::clone(store);
        let stored = cosigned.clone();
        tokio::task::spawn_blocking(move || st.store_cosigned(size, &stored))
            .await
            .map_err(PublishError::StoreTask)?
            .map_err(PublishError::Store)?;
        Ok((size, cosigned))
    }

    /// Asks one witness, retrying once from the size a 409 reports. On
    /// failure: the reason and, if learned, the size the witness holds.
    async fn ask(
        &self,
        store: &Arc<LogStore>,
        w: &WitnessConfig,
        old: u64,
        size: u64,
        note: &str,
    ) -> Result<String, (WitnessError, Option<u64>)> {
        match self.ask_once(store, w, old, size, note).await {
            Err(Attempt::Conflict(held)) if held != old => {
                match self.ask_once(store, w, held, size, note).await {
                    Ok(line) => Ok(line),
                    Err(Attempt::Conflict(again)) => {
                        Err((WitnessError::ConflictAgain(again), Some(again)))
                    }
                    Err(Attempt::Failed(why)) => Err((why, Some(held))),
                }
            }
            Err(Attempt::Conflict(held)) => Err((WitnessError::Fork(held), Some(held))),
            Err(Attempt::Failed(why)) => Err((why, None)),
            Ok(line) => Ok(line),
        }
    }

    async fn ask_once(
        &self,
        store: &Arc<LogStore>,
        w: &WitnessConfig,
        old: u64,
        size: u64,
        note: &str,
    ) -> Result<String, Attempt> {
        if old > size {
            return Err(Attempt::Failed(WitnessError::Ahead { held: old, size }));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let st = Arc::clone(store);
            tokio::task::spawn_blocking(move || st.consistency_proof(old, size))
                .await
                .map_err(|e| Attempt::Failed(WitnessError::ProofTask(e)))?
                .map_err(|e| Attempt::Failed(WitnessError::Proof(e)))?
        };
        let body = AddCheckpointRequest {
            old_size: old,
            proof,
            note: note.to_string(),
        }
        .to_body();
        let resp = self
            .client
            .post(format!("{}/add-checkpoint", w.url))
            .body(body)
            .send()
            .await
            .map_err(|e| Attempt::Failed(WitnessError::Unreachable(e)))?;
        let status = resp.status().as_u16();
        let text = read_answer(resp).await.map_err(Attempt::Failed)?;
        match status {
            200 => self
                .check_cosignature(w, note, &text)
                .map_err(Attempt::Failed),
            409 => text
                .trim_end_matches('\n')
                .parse::<u64>()
                .map(Attempt::Conflict)
                .map_or_else(
                    |_| Err(Attempt::Failed(WitnessError::BadConflictSize(text.clone()))),
                    Err,
                ),
            other => Err(Attempt::Failed(WitnessError::Status {
                status: other,
                body: text.trim_end().chars().take(200).collect(),
            })),
        }
    }

    /// Keeps the answer's signature lines that are valid cosignatures by
    /// `w` of `note`; an answer with none is a failure.
    fn check_cosignature(
        &self,
        w: &WitnessConfig,
        note: &str,
        body: &str,
    ) -> Result<String, WitnessError> {
        let mut good = String::new();
        for line in body.lines().filter(|l| !l.is_empty()) {
            let candidate = format!("{note}{line}\n");
            if verify_checkpoint(&candidate, &self.log_key, std::slice::from_ref(&w.key), 1).is_ok()
            {
                good.push_str(line);
                good.push('\n');
                break;
            }
        }
        if good.is_empty() {
            return Err(WitnessError::NoCosignature);
        }
        Ok(good)
    }
}

/// The body of a witness's answer as text (UTF-8, lossy), read up to
/// [`MAX_BODY`]: an answer is a size or a few cosignature lines, and the
/// witness, not this log, decides how much it sends.
async fn read_answer(mut resp: reqwest::Response) -> Result<String, WitnessError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(WitnessError::Answer)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(WitnessError::AnswerTooLarge { limit: MAX_BODY });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

enum Attempt {
    Conflict(u64),
    Failed(WitnessError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestlog::tlog::cosignature::CosignatureSigner;

    #[test]
    fn parses_url_equals_vkey() {
        let vkey = CosignatureSigner::from_seed("witness.test/w1", [7; 32])
            .unwrap()
            .verifier_key_text();
        let w = WitnessConfig::parse(&format!("http://127.0.0.1:7380/={vkey}")).unwrap();
        assert_eq!(w.url, "http://127.0.0.1:7380");
        assert_eq!(w.name(), "witness.test/w1");
        assert_eq!(w.key.to_text(), vkey);
        assert!(WitnessConfig::parse("http://127.0.0.1:7380").is_err());
        assert!(WitnessConfig::parse("http://127.0.0.1:7380=not-a-key").is_err());
        assert!(WitnessConfig::parse(&format!("ftp://x={vkey}")).is_err());
    }

    /// ML-DSA-44 witness keys (c2sp.org/tlog-cosignature type 0x06) are
    /// accepted beside Ed25519 ones, and their cosignatures count.
    #[test]
    fn mldsa44_witness_cosignatures_count() {
        use attestlog::tlog::cosignature::CosignatureKind;
        use attestlog::tlog::note::NoteSigner;
        let pq =
            CosignatureSigner::from_seed_kind("witness.test/pq", CosignatureKind::MlDsa44, [7; 32])
                .unwrap();
        let ed = CosignatureSigner::from_seed("witness.test/ed", [8; 32]).unwrap();
        let w = WitnessConfig::parse(&format!("http://127.0.0.1:7380={}", pq.verifier_key_text()))
            .unwrap();
        assert_eq!(w.key.to_text(), pq.verifier_key_text());
        let log = NoteSigner::from_seed("log.test/log", [9; 32]).unwrap();
        let body = "log.test/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let note = log.sign(body).unwrap();
        let ws = Witnesses::new(vec![w.clone()], 1, log.verifier_key().unwrap()).unwrap();
        let line = pq.cosign(body, 1_700_000_000).unwrap();
        let other = ed.cosign(body, 1_700_000_000).unwrap();
        assert_eq!(
            ws.check_cosignature(&w, &note, &format!("{other}{line}"))
                .unwrap(),
            line
        );
        assert!(ws.check_cosignature(&w, &note, &other).is_err());
    }
}
