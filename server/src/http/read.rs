//! The read API: C2SP tlog-tiles paths and the JSON endpoints.
//!
//! Tiles and entry bundles are served exactly at the C2SP paths. Every tile
//! and bundle, full or partial, is cacheable forever: a partial tile of width
//! W holds the first W hashes (entries) of its full tile and so is always the
//! same bytes (C2SP tlog-tiles: "this endpoint is immutable"); the checkpoint
//! is never cached. Entry bundles are gzip-compressed when the request's
//! `Accept-Encoding` admits gzip, with `Vary: Accept-Encoding`; hash tiles
//! (random hashes) are always served as they are.
//!
//! Full tiles and bundles (and full bundles' gzip encodings) come from the
//! log's read cache on the async thread when cached, as do proofs whose
//! tiles are all in memory; only misses leave it, through [`AppState::read`].

use std::collections::HashMap;
use std::sync::Arc;

use attestlog::claim::{Entry, Statement};
use attestlog::nitro::AttestationDocument;
use attestlog::tlog::tiles::{TileKind, TilePath};
use attestlog::tlog::Hash;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::storage::{LogStore, SearchKind};

/// `Cache-Control` of every tile, bundle and raw entry: they never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// At most this many indices per search answer; `after=<index>` pages on.
const SEARCH_LIMIT: usize = 1000;
/// Longest repository URI a search may name (a URI in a statement is bounded
/// only by the statement's 65,535 bytes; real ones are far shorter).
const MAX_REPOSITORY_LEN: usize = 4096;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The published checkpoint, from memory on the async thread: no hop to
/// another thread (the hop to tokio's blocking pool was half of this
/// request's CPU time).
pub async fn checkpoint(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let note = app
        .published_checkpoint()?
        .ok_or_else(|| ApiError::not_found("the log has no checkpoint yet"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

/// A tile or bundle. A full one in the log's read cache (a partial width of
/// a cached full one too) is answered on this thread; anything else is read
/// from the backend through [`AppState::read`], which fills the cache.
pub async fn tile(
    State(app): State<Arc<AppState>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let path = TilePath::parse(&format!("tile/{rest}"))
        .map_err(|e| ApiError::not_found(format!("not a C2SP tile path: {e}")))?;
    let gz = path.kind == TileKind::Entries && accepts_gzip(&headers);
    let hit = match path.kind {
        TileKind::Hashes { level } => app.store.try_cached_tile(level, path.index, path.width),
        TileKind::Entries if gz => path
            .width
            .is_none()
            .then(|| app.store.try_cached_bundle_gzip(path.index))
            .flatten(),
        TileKind::Entries => app.store.try_cached_bundle(path.index, path.width),
    };
    let body = match hit {
        Some(body) => body,
        None => {
            let store = Arc::clone(&app.store);
            app.read(move || read_tile(&store, path, gz))
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(format!("{} is beyond the tree", path.to_path()))
                })?
        }
    };
    let headers_out = [
        (header::CONTENT_TYPE, "application/octet-stream"),
        (header::CACHE_CONTROL, IMMUTABLE),
    ];
    if path.kind != TileKind::Entries {
        return Ok((headers_out, body).into_response());
    }
    let vary = (header::VARY, "accept-encoding");
    if !gz {
        return Ok((headers_out, [vary], body).into_response());
    }
    Ok((
        headers_out,
        [vary, (header::CONTENT_ENCODING, "gzip")],
        body,
    )
        .into_response())
}

/// A tile or bundle from the store (blocking); a bundle gzip-encoded when
/// `gz`, the encoding of a full one kept in the read cache. `None` when
/// beyond the tree.
fn read_tile(store: &LogStore, path: TilePath, gz: bool) -> Result<Option<Bytes>, ApiError> {
    if let TileKind::Hashes { level } = path.kind {
        return Ok(store.hash_tile(level, path.index, path.width)?);
    }
    let Some(bundle) = store.entry_bundle(path.index, path.width)? else {
        return Ok(None);
    };
    if !gz {
        return Ok(Some(bundle));
    }
    let body = Bytes::from(gzip(&bundle)?);
    if path.width.is_none() {
        store.keep_bundle_gzip(path.index, body.clone());
    }
    Ok(Some(body))
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a q-value other
/// than 0 (RFC 9110 12.5.3).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, ApiError> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .map_err(|e| ApiError::internal(format!("gzip: {e}")))
}

pub async fn log_info(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let note = app.published_checkpoint()?;
    let (size, root) = note
        .as_deref()
        .and_then(super::parse_checkpoint)
        .map_or((0, attestlog::tlog::merkle::empty_root()), |c| {
            (c.size, c.root_hash)
        });
    Ok(Json(json!({
        "origin": app.origin,
        "verifier_key": app.verifier_key,
        "tree_size": size,
        "root_hash": b64(&root),
    })))
}

type Params = Query<HashMap<String, String>>;

fn param_u64(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request("bad_parameter", format!("{name} must be a decimal u64"))
            })
        })
        .transpose()
}

fn required_u64(params: &HashMap<String, String>, name: &'static str) -> Result<u64, ApiError> {
    param_u64(params, name)?
        .ok_or_else(|| ApiError::bad_request("bad_parameter", format!("{name} is required")))
}

/// A 32-byte hash given in hex or standard base64.
fn param_hash(value: &str, name: &str) -> Result<Hash, ApiError> {
    let bytes = if value.len() == 64 {
        hex::decode(value).ok()
    } else {
        base64::engine::general_purpose::STANDARD.decode(value).ok()
    };
    bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
        ApiError::bad_request(
            "bad_parameter",
            format!("{name} must be 32 bytes in hex or base64"),
        )
    })
}

fn check_known(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(
            "bad_parameter",
            format!("unknown parameter {k:?}"),
        )),
        None => Ok(()),
    }
}

pub async fn inclusion_proof(
    State(app): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_known(&params, &["index", "leaf_hash", "tree_size"])?;
    let tree_size = required_u64(&params, "tree_size")?;
    let by_index = param_u64(&params, "index")?;
    let by_leaf = params
        .get("leaf_hash")
        .map(|v| param_hash(v, "leaf_hash"))
        .transpose()?;
    // By index, with every tile it needs in memory: answered on this thread.
    if let (Some(index), None) = (by_index, by_leaf) {
        if let Some(proof) = app.store.try_inclusion_proof(index, tree_size) {
            return Ok(inclusion_answer(index, tree_size, &proof?));
        }
    }
    let store = Arc::clone(&app.store);
    let (index, proof) = app
        .read(move || {
            let index = match (by_index, by_leaf) {
                (Some(i), None) => i,
                (None, Some(leaf)) => store
                    .find_leaf(&leaf)?
                    .ok_or_else(|| ApiError::not_found("no entry has that leaf hash"))?,
                _ => {
                    return Err(ApiError::bad_request(
                        "bad_parameter",
                        "give exactly one of index and leaf_hash",
                    ))
                }
            };
            Ok((index, store.inclusion_proof(index, tree_size)?))
        })
        .await?;
    Ok(inclusion_answer(index, tree_size, &proof))
}

fn inclusion_answer(index: u64, tree_size: u64, proof: &[Hash]) -> Response {
    proof_answer(("index", index), proof, ("tree_size", tree_size))
}

/// `{"<a>":A,"proof":[base64...],"<b>":B}`, byte for byte what `serde_json`
/// writes for that object (keys in order), written straight into one
/// string: base64 needs no escaping, and a proof is answered per request.
fn proof_answer(a: (&str, u64), proof: &[Hash], b: (&str, u64)) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        proof_json(a, proof, b),
    )
        .into_response()
}

fn proof_json(a: (&str, u64), proof: &[Hash], b: (&str, u64)) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64 + 47 * proof.len());
    // Writing to a String cannot fail.
    let _ = write!(out, "{{\"{}\":{},\"proof\":[", a.0, a.1);
    for (i, h) in proof.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(h, &mut out);
        out.push('"');
    }
    let _ = write!(out, "],\"{}\":{}}}", b.0, b.1);
    out
}

pub async fn consistency_proof(
    State(app): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_known(&params, &["first", "second"])?;
    let first = required_u64(&params, "first")?;
    let second = required_u64(&params, "second")?;
    let proof = match app.store.try_consistency_proof(first, second) {
        Some(proof) => proof?,
        None => {
            let store = Arc::clone(&app.store);
            app.read(move || Ok(store.consistency_proof(first, second)?))
                .await?
        }
    };
    Ok(proof_answer(("first", first), &proof, ("second", second)))
}

pub async fn entry(
    State(app): State<Arc<AppState>>,
    Path(index): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    check_known(&params, &["format"])?;
    let index: u64 = index
        .parse()
        .map_err(|_| ApiError::bad_request("bad_parameter", "index must be a decimal u64"))?;
    let json_format = match params.get("format").map(String::as_str) {
        None | Some("raw") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("format must be raw or json, not {other:?}"),
            ))
        }
    };
    let store = Arc::clone(&app.store);
    let bytes = app
        .read(move || Ok(store.entry(index)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no entry {index}")))?;
    if !json_format {
        return Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, IMMUTABLE),
            ],
            bytes,
        )
            .into_response());
    }
    Ok(Json(decode_entry(index, &bytes)?).into_response())
}

/// The decoded claim of a logged entry. An entry the log accepted under
/// older, laxer rules (before the one-encoding rule of entry.md, say) is
/// still served, as `{"index", "leaf_hash", "decode_error": {"error",
/// "message"}}` naming today's refusal, never as a server error.
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Value, ApiError> {
    let leaf = b64(&attestlog::tlog::merkle::leaf_hash(bytes));
    let undecodable = |code: &str, message: String| {
        Ok(json!({
            "index": index,
            "leaf_hash": leaf,
            "decode_error": {"error": code, "message": message},
        }))
    };
    let entry = match Entry::decode(bytes) {
        Ok(e) => e,
        Err(e) => return undecodable(e.code(), e.to_string()),
    };
    let statement = match Statement::parse(entry.statement) {
        Ok(s) => s,
        Err(e) => return undecodable(e.code(), e.to_string()),
    };
    let doc = match AttestationDocument::parse(entry.attestation) {
        Ok(d) => d,
        Err(e) => return undecodable(e.code(), e.to_string()),
    };
    let pcrs: serde_json::Map<String, Value> = doc
        .pcrs
        .iter()
        .map(|(i, v)| (i.to_string(), hex::encode(v).into()))
        .collect();
    let opt = |v: &Option<Vec<u8>>| v.as_ref().map(hex::encode);
    Ok(json!({
        "index": index,
        "leaf_hash": leaf,
        "statement": statement.json,
        "attestation": {
            "module_id": doc.module_id,
            "timestamp_ms": doc.timestamp_ms,
            "debug": doc.is_debug(),
            "pcrs": pcrs,
            "user_data": opt(&doc.user_data),
            "nonce": opt(&doc.nonce),
            "public_key": opt(&doc.public_key),
        },
    }))
}

pub async fn search(
    State(app): State<Arc<AppState>>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    const KINDS: &str = "artifact_sha256, commit, pcr0 and repository";
    check_known(
        &params,
        &["artifact_sha256", "commit", "pcr0", "repository", "after"],
    )?;
    let after = param_u64(&params, "after")?;
    let mut params = params;
    params.remove("after");
    if params.len() != 1 {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("give exactly one of {KINDS}"),
        ));
    }
    let (name, value) = params
        .iter()
        .next()
        .ok_or_else(|| ApiError::internal("no parameter"))?;
    let (kind, lengths): (SearchKind, &[usize]) = match name.as_str() {
        "artifact_sha256" => (SearchKind::ArtifactSha256, &[32]),
        "commit" => (SearchKind::Commit, &[20, 32]),
        "repository" => (SearchKind::Repository, &[]),
        _ => (SearchKind::Pcr0, &[32, 48, 64]),
    };
    let key = if kind == SearchKind::Repository {
        if value.is_empty() || value.len() > MAX_REPOSITORY_LEN {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("repository must be 1 to {MAX_REPOSITORY_LEN} bytes"),
            ));
        }
        super::write::repository_key(value)
    } else {
        hex::decode(value.to_ascii_lowercase())
            .ok()
            .filter(|k| lengths.contains(&k.len()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_parameter",
                    format!("{name} must be hex of {lengths:?} bytes"),
                )
            })?
    };
    let store = Arc::clone(&app.store);
    let indices = app
        .read(move || Ok(store.search_after(kind, &key, after, SEARCH_LIMIT)?))
        .await?;
    // A full page may have a next one: it starts after this page's last index.
    let next_after = (indices.len() == SEARCH_LIMIT)
        .then(|| indices.last().copied())
        .flatten();
    Ok(Json(
        json!({ "indices": indices, "next_after": next_after }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_json_is_what_serde_json_writes() {
        for n in [0usize, 1, 17] {
            let proof: Vec<Hash> = (0..n).map(|i| [i as u8 * 9; 32]).collect();
            let want = json!({
                "index": 12345,
                "tree_size": u64::MAX,
                "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
            });
            let got = proof_json(("index", 12345), &proof, ("tree_size", u64::MAX));
            assert_eq!(got, serde_json::to_string(&want).unwrap());
        }
    }
}
