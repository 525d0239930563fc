//! `POST /v1/entries`: verify, sequence, and answer with the proof.
//!
//! The answer comes only after the entry is durably committed and covered by
//! a signed checkpoint. The same entry bytes, or the same claim in other
//! bytes (see `attestlog::claim::claim_id`), always get the same index;
//! resubmissions are answered with `"duplicate": true` and the logged leaf.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use attestlog::claim::{verify_entry, VerifiedClaim, MAX_ENTRY_SIZE};
use attestlog::tlog::merkle::leaf_hash;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::sequencer::SequenceError;
use crate::storage::{NewEntry, SearchKind};

/// With witnesses: the latest cosigned checkpoint if it covers `index`;
/// otherwise the latest signed checkpoint is sent to the witnesses again
/// (an entry whose batch missed the quorum is published by a retry), and a
/// 503 `witness_quorum` is the answer if they still cannot cosign it.
async fn cosigned_covering(app: &Arc<AppState>, index: u64) -> Result<(u64, String), ApiError> {
    let store = Arc::clone(&app.store);
    let (cosigned, latest) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::storage::StorageError>((
            store.latest_cosigned()?,
            store.latest_checkpoint()?,
        ))
    })
    .await??;
    if let Some((size, note)) = cosigned {
        if index < size {
            return Ok((size, note));
        }
    }
    let latest = latest.unwrap_or_default();
    let size = super::checkpoint_size(&latest);
    let witnesses = app
        .witnesses
        .as_ref()
        .ok_or_else(|| ApiError::internal("no witnesses configured"))?;
    witnesses
        .publish(&app.store, size, &latest)
        .await
        .map_err(|f| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "witness_quorum", f))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn submit(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let result = submit_inner(&app, &headers, body, started).await;
    match &result {
        Ok(answer) if answer.get("duplicate") == Some(&Value::Bool(true)) => {
            app.metrics.submission("duplicate")
        }
        Ok(_) => app.metrics.submission("accepted"),
        Err(e) => app.metrics.submission(e.code),
    }
    result.map(Json)
}

async fn submit_inner(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Value, ApiError> {
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
    let bytes = read_body(body).await?;
    // From here the open batch waits for this submission (up to its age).
    let ticket = app.sequencer.ticket();
    let leaf = leaf_hash(&bytes);

    // A resubmission of logged bytes: the first submission was verified.
    let store = Arc::clone(&app.store);
    if let Some(index) = tokio::task::spawn_blocking(move || store.find_leaf(&leaf)).await?? {
        let published = match &app.witnesses {
            Some(_) => Some(cosigned_covering(app, index).await?),
            None => None,
        };
        return answer(app, index, true, leaf, published, started).await;
    }

    let verifier = Arc::clone(app);
    let entry_bytes = bytes.clone();
    let claim =
        tokio::task::spawn_blocking(move || verify_entry(&entry_bytes, &verifier.nitro)).await??;
    check_submission_policy(app, &claim)?;

    let sequenced = app
        .sequencer
        .submit(ticket, NewEntry::new(bytes.to_vec(), search_keys(&claim)))
        .await
        .map_err(|e| match e {
            SequenceError::WitnessQuorum(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "witness_quorum", m)
            }
            SequenceError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
        })?;
    // A duplicate claim in other bytes is answered with the logged entry's leaf.
    answer(
        app,
        sequenced.appended.index,
        sequenced.appended.duplicate,
        sequenced.appended.leaf_hash,
        Some((sequenced.tree_size, sequenced.checkpoint)),
        started,
    )
    .await
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

/// What users search by: each artifact digest, the commit, and PCR0.
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
    keys
}

/// The answer: index, leaf hash, the checkpoint and the inclusion proof
/// against it. Without a fresh checkpoint (a duplicate), the latest is used.
async fn answer(
    app: &Arc<AppState>,
    index: u64,
    duplicate: bool,
    leaf: [u8; 32],
    sequenced: Option<(u64, String)>,
    started: Instant,
) -> Result<Value, ApiError> {
    let store = Arc::clone(&app.store);
    let (size, checkpoint, proof) = tokio::task::spawn_blocking(move || {
        let (size, checkpoint) = match sequenced {
            Some(s) => s,
            None => {
                let note = store.latest_checkpoint()?.unwrap_or_default();
                // The size the note signs, not tree_size(): a batch may
                // commit between the two reads.
                (super::checkpoint_size(&note), note)
            }
        };
        let proof = store.inclusion_proof(index, size)?;
        Ok::<_, crate::storage::StorageError>((size, checkpoint, proof))
    })
    .await??;
    app.metrics.answered_with_checkpoint(started.elapsed());
    let mut out = json!({
        "index": index,
        "leaf_hash": b64(&leaf),
        "tree_size": size,
        "checkpoint": checkpoint,
        "inclusion_proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    });
    if duplicate {
        out["duplicate"] = Value::Bool(true);
    }
    Ok(out)
}
