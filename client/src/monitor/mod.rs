//! A log monitor: follows a log's checkpoints, proves each new one
//! consistent with the last it verified, re-derives the tree from the C2SP
//! tiles and entry bundles, and checks every entry.
//!
//! State (`<dir>/monitor.json`, replaced atomically: write, fsync, rename):
//! the last verified signed checkpoint, the checkpoint being caught up to
//! (`target`), the number of entries checked (`cursor`) and the compact range
//! of their leaf hashes, and the highest index reported. Progress is saved
//! after every entry bundle and every report, so a killed monitor resumes at
//! the first bundle it had not finished without printing a report again.
//!
//! Reports are JSON objects, one per line, with an `event` field:
//! `inconsistent`, `bad_entry`, `watched`, `progress` (see spec/monitor.md).
//!
//! Only C2SP resources are required (`checkpoint`, `tile/...`): consistency
//! proofs come from the attestlog `/v1/proof/*` endpoint or, where it is
//! absent, from hash tiles ([`proofs`]); every response may be gzipped and
//! every download is bounded ([`fetch`]).

pub mod fetch;
pub mod proofs;

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::claim::verify_entry;
use crate::nitro::NitroVerifier;
use crate::policy::Policy;
use crate::tlog::checkpoint::{
    verify_checkpoint, verify_checkpoint_for_origin, VerifiedCheckpoint,
};
use crate::tlog::cosignature::CosignatureVerifierKey;
use crate::tlog::merkle::{leaf_hash, verify_consistency, RootBuilder};
use crate::tlog::note::NoteVerifierKey;
use crate::tlog::tiles::{parse_entry_bundle, TileKind, TilePath, TILE_WIDTH};
use crate::tlog::{b64, Hash};
use crate::verify::BundleVerifier;
use fetch::{FetchError, HttpLog, MAX_CHECKPOINT};
use proofs::{ProofMode, ProofSource, ProofSourceError};

/// What the monitor checks against.
pub struct MonitorConfig {
    pub log_url: String,
    pub log_key: NoteVerifierKey,
    pub witnesses: Vec<CosignatureVerifierKey>,
    pub quorum: usize,
    pub state_dir: PathBuf,
    pub nitro: NitroVerifier,
    pub policy: Option<Policy>,
    pub watch_repos: Vec<String>,
    pub watch_pcr0: Vec<Vec<u8>>,
    /// Where consistency proofs come from.
    pub proofs: ProofMode,
}

/// What one round found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundOutcome {
    pub inconsistent: bool,
    pub bad_entries: u64,
    pub checked: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Last verified signed checkpoint.
    verified: Option<String>,
    /// Checkpoint being caught up to (consistency already proven).
    target: Option<String>,
    /// Entries checked and pushed into `range`.
    cursor: u64,
    /// Compact range of the first `cursor` leaf hashes, base64.
    range: Vec<String>,
    /// The highest index whose `bad_entry` or `watched` report was printed,
    /// so a monitor resumed inside a bundle does not print it again.
    #[serde(default)]
    reported_through: Option<u64>,
}

/// Monitor error (not a finding: network, state, protocol).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Proof(#[from] ProofSourceError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("state: {0}")]
    State(String),
    #[error("log data: {0}")]
    Data(String),
}

impl MonitorError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.code(),
            Self::Proof(e) => e.code(),
            Self::Checkpoint(_) => "checkpoint",
            Self::State(_) => "state",
            Self::Data(_) => "log_data",
        }
    }
}

/// The monitor.
pub struct Monitor<W: FnMut(&Value)> {
    cfg: MonitorConfig,
    /// The policy's verdict on a claim, the one `attestlog verify` applies.
    verdict: Option<BundleVerifier>,
    log: HttpLog,
    emit: W,
}

fn hashes_to_b64(h: &[Hash]) -> Vec<String> {
    h.iter().map(|h| b64().encode(h)).collect()
}

fn decode_hash(s: &str) -> Option<Hash> {
    b64().decode(s).ok()?.try_into().ok()
}

impl<W: FnMut(&Value)> Monitor<W> {
    pub fn new(cfg: MonitorConfig, emit: W) -> Result<Self, MonitorError> {
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| MonitorError::State(format!("{}: {e}", cfg.state_dir.display())))?;
        let log = HttpLog::new(&cfg.log_url)?;
        let verdict = cfg.policy.clone().map(BundleVerifier::new);
        Ok(Self {
            cfg,
            verdict,
            log,
            emit,
        })
    }

    fn state_path(&self) -> PathBuf {
        self.cfg.state_dir.join("monitor.json")
    }

    fn load(&self) -> Result<State, MonitorError> {
        match std::fs::read(self.state_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| MonitorError::State(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(MonitorError::State(e.to_string())),
        }
    }

    fn save(&self, state: &State) -> Result<(), MonitorError> {
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| MonitorError::State(e.to_string()))?;
        write_atomic(&self.state_path(), &bytes).map_err(|e| MonitorError::State(e.to_string()))
    }

    /// Saves the state by an atomic rename without fsync: it survives the
    /// monitor being killed, which is what `reported_through` is for, at the
    /// cost of one small write per report rather than one fsync (a watched
    /// PCR0 can match every entry of a log).
    fn save_unsynced(&self, state: &State) -> Result<(), MonitorError> {
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| MonitorError::State(e.to_string()))?;
        let path = self.state_path();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| MonitorError::State(e.to_string()))
    }

    fn verify(&self, note: &str) -> Result<VerifiedCheckpoint, MonitorError> {
        // A policy's `log_origin` names the origin when it is not the key name.
        match self
            .cfg
            .policy
            .as_ref()
            .and_then(|p| p.log_origin.as_deref())
        {
            Some(origin) => verify_checkpoint_for_origin(
                note,
                origin,
                std::slice::from_ref(&self.cfg.log_key),
                &self.cfg.witnesses,
                self.cfg.quorum,
            ),
            None => verify_checkpoint(
                note,
                &self.cfg.log_key,
                &self.cfg.witnesses,
                self.cfg.quorum,
            ),
        }
        .map_err(|e| MonitorError::Checkpoint(format!("{}: {e}", e.code())))
    }

    /// Reports a split view and saves its evidence.
    fn inconsistent(
        &mut self,
        reason: &str,
        old: &str,
        new: &str,
        proof: Option<&[Hash]>,
        roots: Option<(Hash, Hash)>,
    ) {
        let mut report = json!({
            "event": "inconsistent",
            "reason": reason,
            "old_checkpoint": old,
            "new_checkpoint": new,
        });
        if let Some(p) = proof {
            report["proof"] = json!(hashes_to_b64(p));
        }
        if let Some((a, b)) = roots {
            report["roots"] = json!([b64().encode(a), b64().encode(b)]);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = self
            .cfg
            .state_dir
            .join(format!("inconsistent-{nanos}.json"));
        if let Ok(bytes) = serde_json::to_vec_pretty(&report) {
            let _ = write_atomic(&path, &bytes);
            report["evidence_file"] = json!(path.display().to_string());
        }
        (self.emit)(&report);
    }

    /// One round: fetch the checkpoint, prove consistency, catch up.
    pub fn round(&mut self) -> Result<RoundOutcome, MonitorError> {
        let mut out = RoundOutcome::default();
        let mut state = self.load()?;
        if state.target.is_none() {
            let note = String::from_utf8(self.log.get("checkpoint", MAX_CHECKPOINT)?)
                .map_err(|_| MonitorError::Checkpoint("not UTF-8".into()))?;
            let new = self.verify(&note)?;
            match &state.verified {
                None => state.target = Some(note),
                Some(old_note) => {
                    let old = self.verify(old_note)?;
                    let (o, n) = (&old.checkpoint, &new.checkpoint);
                    if n.size == o.size {
                        if n.root_hash != o.root_hash {
                            self.inconsistent(
                                "two roots at one size",
                                old_note,
                                &note,
                                None,
                                Some((o.root_hash, n.root_hash)),
                            );
                            out.inconsistent = true;
                        }
                    } else {
                        let (first, second) = if n.size > o.size { (o, n) } else { (n, o) };
                        let proof = self.consistency_proof(first.size, second.size)?;
                        if verify_consistency(
                            first.size,
                            second.size,
                            &first.root_hash,
                            &second.root_hash,
                            &proof,
                        )
                        .is_err()
                        {
                            self.inconsistent(
                                "consistency proof does not verify",
                                old_note,
                                &note,
                                Some(&proof),
                                None,
                            );
                            out.inconsistent = true;
                        } else if n.size > o.size {
                            state.target = Some(note);
                        }
                    }
                }
            }
            self.save(&state)?;
        }
        if let Some(target_note) = state.target.clone() {
            let target = self.verify(&target_note)?;
            self.catch_up(&mut state, &target, &mut out)?;
        }
        Ok(out)
    }

    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, MonitorError> {
        Ok(ProofSource::new(&self.log, self.cfg.proofs).consistency(first, second)?)
    }

    fn catch_up(
        &mut self,
        state: &mut State,
        target: &VerifiedCheckpoint,
        out: &mut RoundOutcome,
    ) -> Result<(), MonitorError> {
        let size = target.checkpoint.size;
        let range: Vec<Hash> = state
            .range
            .iter()
            .map(|h| decode_hash(h))
            .collect::<Option<_>>()
            .ok_or_else(|| MonitorError::State("bad compact range".into()))?;
        let mut builder = RootBuilder::from_compact_range(state.cursor, range)
            .ok_or_else(|| MonitorError::State("compact range does not match cursor".into()))?;
        while state.cursor < size {
            let n = state.cursor / TILE_WIDTH;
            let width = if n < size / TILE_WIDTH {
                None
            } else {
                Some((size % TILE_WIDTH) as u16)
            };
            let bundle_tile = TilePath {
                kind: TileKind::Entries,
                index: n,
                width,
            };
            let hash_tile = TilePath {
                kind: TileKind::Hashes { level: 0 },
                index: n,
                width,
            };
            let (bundle_path, tile_path) = (bundle_tile.to_path(), hash_tile.to_path());
            let bundle = self.log.entry_bundle(&bundle_tile)?;
            let tile = self.log.tile(&hash_tile)?;
            let entries = parse_entry_bundle(&bundle)
                .map_err(|e| MonitorError::Data(format!("{bundle_path}: {e}")))?;
            let count = width.map_or(TILE_WIDTH as usize, usize::from);
            if entries.len() != count || tile.len() != count * 32 {
                let reason = format!(
                    "{bundle_path} has {} entries and {tile_path} {} bytes; expected {count}",
                    entries.len(),
                    tile.len()
                );
                self.inconsistent(&reason, &target.note, &target.note, None, None);
                out.inconsistent = true;
                return Ok(());
            }
            let start = (state.cursor % TILE_WIDTH) as usize;
            for (i, entry) in entries.iter().enumerate().skip(start) {
                let index = n * TILE_WIDTH + i as u64;
                let lh = leaf_hash(entry);
                if tile[i * 32..i * 32 + 32] != lh {
                    let reason = format!("leaf {index}: tile hash is not the hash of the entry");
                    self.inconsistent(&reason, &target.note, &target.note, None, None);
                    out.inconsistent = true;
                    return Ok(());
                }
                self.check_entry(index, entry, state, out)?;
                builder.push(lh);
            }
            out.checked += (count - start) as u64;
            state.cursor = builder.size();
            state.range = hashes_to_b64(builder.compact_range());
            self.save(state)?;
            (self.emit)(&json!({"event": "progress", "checked": state.cursor, "tree_size": size}));
        }
        let root = builder.root();
        if root != target.checkpoint.root_hash {
            let old = state.verified.clone().unwrap_or_default();
            self.inconsistent(
                "root recomputed from the tiles differs from the signed root",
                &old,
                &target.note,
                None,
                Some((root, target.checkpoint.root_hash)),
            );
            out.inconsistent = true;
            return Ok(());
        }
        state.verified = state.target.take();
        self.save(state)
    }

    /// Prints a finding about entry `index` unless it was printed before a
    /// restart, then records that it was (at least once: a kill between the
    /// two repeats it).
    fn report(
        &mut self,
        index: u64,
        report: &Value,
        state: &mut State,
    ) -> Result<(), MonitorError> {
        if state.reported_through.is_some_and(|r| index <= r) {
            return Ok(());
        }
        (self.emit)(report);
        state.reported_through = Some(index);
        self.save_unsynced(state)
    }

    fn check_entry(
        &mut self,
        index: u64,
        entry: &[u8],
        state: &mut State,
        out: &mut RoundOutcome,
    ) -> Result<(), MonitorError> {
        let claim = match verify_entry(entry, &self.cfg.nitro) {
            Ok(c) => c,
            Err(e) => {
                out.bad_entries += 1;
                let report = json!({"event": "bad_entry", "index": index, "check": e.code(), "reason": e.to_string()});
                return self.report(index, &report, state);
            }
        };
        let st = &claim.statement;
        let doc = &claim.document;
        let pcr = |i: u8| doc.pcr(i).unwrap_or_default().to_vec();
        let (p0, p1, p2) = (pcr(0), pcr(1), pcr(2));
        let repo_watched = self
            .cfg
            .watch_repos
            .iter()
            .any(|r| same_repo(r, &st.source.uri));
        let pcr_watched = self.cfg.watch_pcr0.contains(&p0);
        if !(repo_watched || pcr_watched) {
            return Ok(());
        }
        // Endorsed only if the policy would accept the claim: debug mode,
        // revocation, validity window and repository included.
        let refusal = self
            .verdict
            .as_ref()
            .map(|v| v.check_policy(st, doc).err().map(|e| e.code()));
        let endorsed = matches!(refusal, Some(None));
        let artifacts: Vec<Value> = st
            .subjects
            .iter()
            .map(|s| json!({"name": s.name, "sha256": hex::encode(s.sha256)}))
            .collect();
        let mut report = json!({
            "event": "watched",
            "index": index,
            "repository": st.source.uri,
            "commit": st.source.git_commit,
            "artifacts": artifacts,
            "pcrs": {"0": hex::encode(&p0), "1": hex::encode(&p1), "2": hex::encode(&p2)},
            "timestamp": doc.timestamp_unix(),
            "endorsed": endorsed,
        });
        if let Some(Some(code)) = refusal {
            report["not_endorsed"] = json!(code);
        }
        self.report(index, &report, state)
    }
}

fn same_repo(a: &str, b: &str) -> bool {
    crate::policy::normalize_repo(a) == crate::policy::normalize_repo(b)
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync
/// of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
