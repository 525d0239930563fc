//! `POST /v1/entries`: verify, sequence, and answer with the proof.
//!
//! The answer comes only after the entry is durably committed and covered by
//! a signed checkpoint. The same entry bytes, or the same claim in other
//! bytes (see `attestlog::claim::claim_id`), always get the same index;
//! resubmissions are answered with `"duplicate": true` and the logged leaf,
//! always with a checkpoint that covers the entry (one racing its own
//! batch's commit waits for it).
//!
//! A submission leaves the async handler twice: once for its checks (one
//! job on the sequencer's verifier pool, [`check`]) and once to its batch;
//! the inclusion proof comes back with the batch ([`Sequenced`]).
//!
//! [`Sequenced`]: crate::sequencer::Sequenced

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use attestlog::claim::{verify_entry, VerifiedClaim, MAX_ENTRY_SIZE};
use attestlog::tlog::merkle::leaf_hash;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::sequencer::SequenceError;
use crate::storage::{Hash, NewEntry, SearchKind};

/// With witnesses: the latest cosigned checkpoint if it covers `index`;
/// otherwise the latest signed checkpoint is sent to the witnesses again
/// (an entry whose batch missed the quorum is published by a retry), and a
/// 503 `witness_quorum` is the answer if they still cannot cosign it.
///
/// Both checkpoints come from the log's in-memory state, as in
/// [`AppState::published_checkpoint`], so they are read on this thread.
async fn cosigned_covering(app: &Arc<AppState>, index: u64) -> Result<(u64, String), ApiError> {
    let (cosigned, latest) = (app.store.latest_cosigned()?, app.store.latest_checkpoint()?);
    if let Some((size, note)) = cosigned {
        if index < size {
            return Ok((size, note));
        }
    }
    let (size, latest) = latest.map(|c| (c.size, c.note)).unwrap_or_default();
    let witnesses = app
        .witnesses
        .as_ref()
        .ok_or_else(|| ApiError::internal("no witnesses configured"))?;
    witnesses
        .publish(&app.store, size, &latest)
        .await
        .map_err(|e| sequence_error(e.into()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The answer to a submission. Fields in the order the answer has always
/// had (alphabetical, as `serde_json`'s maps print them).
#[derive(Debug, Serialize)]
pub struct Answer {
    checkpoint: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
    inclusion_proof: Vec<String>,
    index: u64,
    leaf_hash: String,
    tree_size: u64,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

pub async fn submit(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let result = submit_inner(&app, &headers, body, started).await;
    match &result {
        Ok(answer) if answer.duplicate => app.metrics.submission("duplicate"),
        Ok(_) => app.metrics.submission("accepted"),
        Err(e) => app.metrics.submission(e.code),
    }
    result
}

/// A submission after its checks, before the sequencer.
enum Checked {
    /// Refused by a check, but the same bytes are logged at `index`: the
    /// first submission passed them.
    Logged { index: u64, leaf: Hash },
    /// A verified entry within the policy, to sequence.
    New(NewEntry),
}

/// Everything a submission needs before the sequencer, in one job on the
/// verifier pool: the leaf hash, the verification, the policy and the entry
/// with its search keys. An entry that passes is looked up by its batch
/// (`Log::append_batch` dedups the whole batch in one query), not here:
/// only a refused one is looked up on its own, so that logged bytes are
/// answered as a duplicate even once their attestation no longer passes
/// the policy (clock skew) or the roots changed.
fn check(app: &AppState, bytes: Bytes) -> Result<Checked, ApiError> {
    let leaf = leaf_hash(&bytes);
    let verified = verify_entry(&bytes, &app.nitro)
        .map_err(ApiError::from)
        .and_then(|claim| check_submission_policy(app, &claim).map(|()| claim));
    match verified {
        Ok(claim) => {
            let keys = search_keys(&claim);
            Ok(Checked::New(NewEntry::verified(
                Vec::from(bytes),
                leaf,
                claim.claim_id,
                keys,
            )))
        }
        Err(refusal) => match app.store.find_leaf(&leaf)? {
            Some(index) => Ok(Checked::Logged { index, leaf }),
            None => Err(refusal),
        },
    }
}

async fn submit_inner(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Answer, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            format!("Content-Type must be application/octet-stream, not {content_type:?}"),
        ));
    }
    let Some(sequencer) = &app.sequencer else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this server is a read-only reader; submit to a frontend",
        ));
    };
    let bytes = read_body(body).await?;
    // From here the open batch waits for this submission (up to its age).
    let ticket = sequencer.ticket();
    let checker = Arc::clone(app);
    let checked = sequencer.verify(move || check(&checker, bytes)).await??;
    let entry = match checked {
        Checked::New(entry) => entry,
        Checked::Logged { index, leaf } => {
            // A duplicate holds no batch open, even while it waits for one.
            drop(ticket);
            return answer_duplicate(app, sequencer, index, leaf, started).await;
        }
    };
    let sequenced = sequencer
        .submit(ticket, entry)
        .await
        .map_err(sequence_error)?;
    app.metrics.answered_with_checkpoint(started.elapsed());
    // A duplicate claim in other bytes is answered with the logged entry's leaf.
    Ok(answer(
        sequenced.appended.index,
        sequenced.appended.duplicate,
        &sequenced.appended.leaf_hash,
        sequenced.tree_size,
        sequenced.checkpoint,
        &sequenced.inclusion_proof?,
    ))
}

fn sequence_error(e: SequenceError) -> ApiError {
    match e {
        SequenceError::WitnessQuorum(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "witness_quorum", m)
        }
        SequenceError::Unavailable(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
        }
        SequenceError::Storage(e) => ApiError::storage(&e),
        SequenceError::Internal(m) => ApiError::internal(m),
    }
}

/// The answer to a resubmission of the entry at `index`. Its leaf was found,
/// so its batch has committed, but the store publishes the new size and
/// checkpoint a moment after the commit becomes visible: wait for that
/// (see [`crate::sequencer::Sequencer::covering`]), so the proof is against
/// a checkpoint that covers the entry.
async fn answer_duplicate(
    app: &Arc<AppState>,
    sequencer: &crate::sequencer::Sequencer,
    index: u64,
    leaf: Hash,
    started: Instant,
) -> Result<Answer, ApiError> {
    sequencer.covering(index).await.map_err(sequence_error)?;
    let published = match &app.witnesses {
        Some(_) => Some(cosigned_covering(app, index).await?),
        None => None,
    };
    let store = Arc::clone(&app.store);
    let (size, checkpoint, proof) = app
        .read(move || {
            let (size, checkpoint) = match published {
                Some(p) => p,
                // The size the checkpoint signs, not tree_size(): a batch may
                // commit between the two reads.
                None => store
                    .latest_checkpoint()?
                    .map(|c| (c.size, c.note))
                    .unwrap_or_default(),
            };
            let proof = store.inclusion_proof(index, size)?;
            Ok((size, checkpoint, proof))
        })
        .await?;
    app.metrics.answered_with_checkpoint(started.elapsed());
    Ok(answer(index, true, &leaf, size, checkpoint, &proof))
}

/// Reads at most [`MAX_ENTRY_SIZE`] bytes of body, or refuses with 413.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_ENTRY_SIZE)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("entry body over {MAX_ENTRY_SIZE} bytes or unreadable: {e}"),
            )
        })
}

fn check_submission_policy(app: &AppState, claim: &VerifiedClaim) -> Result<(), ApiError> {
    if claim.document.is_debug() && !app.submit_policy.allow_debug {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "debug_refused",
            "debug-mode attestation (PCR0-2 all zero) refused; start the server with --allow-debug to accept",
        ));
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let skew_ms = now_ms.abs_diff(claim.document.timestamp_ms);
    let max_ms = app.submit_policy.max_clock_skew.as_millis() as u64;
    if skew_ms > max_ms {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "clock_skew",
            format!(
                "attestation timestamp is {}s from the server clock, over the {}s allowed",
                skew_ms / 1000,
                max_ms / 1000
            ),
        ));
    }
    Ok(())
}

/// What users search by: each artifact digest, the commit, PCR0 and the
/// repository (the SHA-256 of its normalized URI).
fn search_keys(claim: &VerifiedClaim) -> Vec<(SearchKind, Vec<u8>)> {
    let mut keys: Vec<(SearchKind, Vec<u8>)> = claim
        .statement
        .subjects
        .iter()
        .map(|s| (SearchKind::ArtifactSha256, s.sha256.to_vec()))
        .collect();
    if let Ok(commit) = hex::decode(&claim.statement.source.git_commit) {
        keys.push((SearchKind::Commit, commit));
    }
    if let Some(pcr0) = claim.document.pcr(0) {
        keys.push((SearchKind::Pcr0, pcr0.to_vec()));
    }
    keys.push((
        SearchKind::Repository,
        repository_key(&claim.statement.source.uri),
    ));
    keys
}

/// The search key of a repository URI: SHA-256 of its normalized form, so
/// `git+https://h/r.git` and `https://h/r` find the same entries.
pub(super) fn repository_key(uri: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(attestlog::policy::normalize_repo(uri).as_bytes()).to_vec()
}

/// The answer: index, leaf hash, the checkpoint and the inclusion proof
/// against it.
fn answer(
    index: u64,
    duplicate: bool,
    leaf: &Hash,
    tree_size: u64,
    checkpoint: String,
    proof: &[Hash],
) -> Answer {
    Answer {
        checkpoint,
        duplicate,
        inclusion_proof: proof.iter().map(|h| b64(h)).collect(),
        index,
        leaf_hash: b64(leaf),
        tree_size,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use attestlog::nitro::{NitroVerifier, TrustRoots};
    use attestlog::tlog::note::NoteSigner;

    use super::*;
    use crate::http::SubmitPolicy;
    use crate::metrics::Metrics;
    use crate::sequencer::{BatchConfig, Sequencer};
    use crate::storage::LogStore;

    /// A storage error gets one answer whichever path met it: a read
    /// (`From<StorageError>`) or a submission whose batch failed
    /// (`SequenceError::Storage`). Before, a submission got 503
    /// `storage_failure` for the fault a read answered with 500 `internal`.
    #[test]
    fn a_storage_error_is_answered_alike_on_reads_and_submissions() {
        use crate::storage::StorageError as E;
        let cases = || {
            [
                E::Corrupt("a tile is missing".into()),
                E::EntryTooLarge {
                    position: 0,
                    len: 70_000,
                },
                E::Timeout(Duration::from_secs(30)),
                E::LeaseLost { epoch: 7 },
                E::IntegrationTimeout {
                    index: 3,
                    waited: Duration::from_secs(20),
                },
                E::ReadOnly,
            ]
        };
        let expected = [
            (500, "internal"),
            (500, "internal"),
            (503, "storage_unavailable"),
            (503, "storage_unavailable"),
            (503, "integration_timeout"),
            (403, "read_only"),
        ];
        for ((read, batch), (status, code)) in cases().into_iter().zip(cases()).zip(expected) {
            let read = ApiError::from(read);
            let submitted = sequence_error(SequenceError::Storage(Arc::new(batch)));
            assert_eq!((read.status.as_u16(), read.code), (status, code));
            assert_eq!(
                (submitted.status, submitted.code, &submitted.message),
                (read.status, read.code, &read.message)
            );
        }
    }

    /// A batch that fails in storage answers every submitter of it with
    /// the storage error's own answer (here an entry over the limit, which
    /// the HTTP layer refuses earlier: a fault of the server's, 500).
    #[tokio::test]
    async fn a_failed_batch_answers_with_the_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LogStore::open(&dir.path().join("log.db")).unwrap());
        let signer = Arc::new(NoteSigner::generate("test/log").unwrap());
        store.ensure_checkpoint(&*signer).unwrap();
        let config = BatchConfig {
            max_entries: 16,
            max_age: Duration::ZERO,
        };
        let (sequencer, task) =
            Sequencer::start(store, signer, config, Arc::new(Metrics::new()), None);
        let big = vec![7u8; crate::storage::MAX_ENTRY_LEN + 1];
        let e = sequencer
            .submit(sequencer.ticket(), NewEntry::new(big, Vec::new()))
            .await
            .expect_err("an oversized entry fails its batch");
        assert!(
            matches!(&e, SequenceError::Storage(s) if s.code() == "entry_too_large"),
            "{e:?}"
        );
        let answer = sequence_error(e);
        assert_eq!((answer.status.as_u16(), answer.code), (500, "internal"));
        drop(sequencer);
        task.await.unwrap();
    }

    /// The race, made deterministic: a resubmission has found its entry's
    /// index (the batch's rows are visible) before the store published a
    /// tree covering it. It must wait for the commit, then answer with a
    /// covering checkpoint; before the fix it was `out_of_range` at once.
    #[tokio::test]
    async fn a_duplicate_found_before_its_commit_is_published_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LogStore::open(&dir.path().join("log.db")).unwrap());
        let signer = Arc::new(NoteSigner::generate("test/log").unwrap());
        store.ensure_checkpoint(&*signer).unwrap();
        let metrics = Arc::new(Metrics::new());
        let config = BatchConfig {
            max_entries: 16,
            max_age: Duration::from_millis(10),
        };
        let (sequencer, task) = Sequencer::start(
            Arc::clone(&store),
            Arc::clone(&signer),
            config,
            Arc::clone(&metrics),
            None,
        );
        let app = Arc::new(AppState {
            store,
            nitro: NitroVerifier::new(TrustRoots::aws()),
            sequencer: Some(sequencer.clone()),
            origin: "test/log".into(),
            verifier_key: signer.verifier_key_text(),
            submit_policy: SubmitPolicy {
                allow_debug: false,
                max_clock_skew: Duration::from_secs(600),
            },
            metrics,
            witnesses: None,
            reads: None,
        });
        let bytes = b"entry zero".to_vec();
        let leaf = leaf_hash(&bytes);

        let duplicate = tokio::spawn({
            let app = Arc::clone(&app);
            async move {
                let seq = app.sequencer.clone().unwrap();
                answer_duplicate(&app, &seq, 0, leaf, Instant::now()).await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !duplicate.is_finished(),
            "answered before a checkpoint covered the entry: {:?}",
            duplicate.await
        );

        let first = sequencer
            .submit(sequencer.ticket(), NewEntry::new(bytes, Vec::new()))
            .await
            .unwrap();
        assert_eq!((first.appended.index, first.tree_size), (0, 1));
        let answer = tokio::time::timeout(Duration::from_secs(5), duplicate)
            .await
            .expect("answered once published")
            .unwrap()
            .expect("a duplicate's answer");
        assert_eq!((answer.index, answer.tree_size), (0, 1));
        assert!(answer.duplicate);
        assert_eq!(answer.checkpoint, first.checkpoint);
        assert_eq!(answer.leaf_hash, b64(&leaf));
        assert_eq!(first.inclusion_proof.unwrap(), Vec::<Hash>::new());

        drop((app, sequencer));
        task.await.unwrap();
    }
}
