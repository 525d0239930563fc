//! Where inclusion and consistency proofs come from: the attestlog
//! `/v1/proof/*` endpoints, or hash tiles alone (any C2SP tlog-tiles log).
//!
//! Contract: [`ProofMode::Api`] only asks the endpoints; [`ProofMode::Tiles`]
//! only computes from tiles of the larger tree (`tile/<L>/<N>[.p/<W>]`,
//! through [`crate::tlog::tile_proofs::TileHashes`]); [`ProofMode::Auto`]
//! (the default) asks the endpoint and, on a 404, computes from tiles for
//! this and every later proof of the same [`ProofSource`]. No proof is
//! trusted here: callers verify every proof against signed roots.

use std::cell::Cell;

use base64::Engine;

use super::fetch::{FetchError, HttpLog, MAX_PROOF_JSON};
use crate::tlog::merkle::{consistency_proof, inclusion_proof};
use crate::tlog::tile_proofs::{TileHashes, TileProofError};
use crate::tlog::tiles::TilePath;
use crate::tlog::{b64, Hash, ProveError};

/// How to obtain proofs (`--proofs auto|api|tiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProofMode {
    #[default]
    Auto,
    Api,
    Tiles,
}

impl std::str::FromStr for ProofMode {
    type Err = ProofSourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "api" => Ok(Self::Api),
            "tiles" => Ok(Self::Tiles),
            other => Err(ProofSourceError::Mode(other.to_string())),
        }
    }
}

/// A proof could not be obtained (not: a proof did not verify).
#[derive(Debug, thiserror::Error)]
pub enum ProofSourceError {
    #[error("proof mode {0:?} is not auto, api or tiles")]
    Mode(String),
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("{path}: not a JSON proof answer with a \"proof\" array of 32-byte base64 hashes")]
    Json { path: String },
    #[error("proof from tiles: {0}")]
    Tiles(ProveError<TileProofError<FetchError>>),
}

impl ProofSourceError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Mode(_) => "proof_mode",
            Self::Fetch(e) => e.code(),
            Self::Json { .. } => "proof_json",
            Self::Tiles(ProveError::Source(e)) => e.code(),
            Self::Tiles(e) => e.code(),
        }
    }
}

/// Node hashes read from one log's tiles over HTTP.
type TileReader<'a> = TileHashes<Box<dyn Fn(&TilePath) -> Result<Vec<u8>, FetchError> + 'a>>;

/// Proofs from one log.
pub struct ProofSource<'a> {
    log: &'a HttpLog,
    mode: Cell<ProofMode>,
}

impl<'a> ProofSource<'a> {
    pub fn new(log: &'a HttpLog, mode: ProofMode) -> Self {
        Self {
            log,
            mode: Cell::new(mode),
        }
    }

    /// The mode in use now (`Tiles` once `Auto` fell back).
    pub fn mode(&self) -> ProofMode {
        self.mode.get()
    }

    /// Consistency proof from `first` to `second` leaves.
    pub fn consistency(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofSourceError> {
        if first == 0 || first == second {
            return Ok(Vec::new());
        }
        let path = format!("v1/proof/consistency?first={first}&second={second}");
        self.either(
            &path,
            |tiles| consistency_proof(first, second, |l, n| tiles.hash_at(l, n)),
            second,
        )
    }

    /// Inclusion proof for leaf `index` in the tree of `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofSourceError> {
        let path = format!("v1/proof/inclusion?index={index}&tree_size={size}");
        self.either(
            &path,
            |tiles| inclusion_proof(index, size, |l, n| tiles.hash_at(l, n)),
            size,
        )
    }

    fn either<P>(&self, path: &str, prove: P, size: u64) -> Result<Vec<Hash>, ProofSourceError>
    where
        P: FnOnce(&TileReader<'_>) -> Result<Vec<Hash>, ProveError<TileProofError<FetchError>>>,
    {
        if self.mode.get() != ProofMode::Tiles {
            match self.api(path) {
                Err(ProofSourceError::Fetch(FetchError::NotFound { .. }))
                    if self.mode.get() == ProofMode::Auto =>
                {
                    self.mode.set(ProofMode::Tiles);
                }
                other => return other,
            }
        }
        let log = self.log;
        let tiles = TileHashes::new(size, Box::new(move |t: &TilePath| log.tile(t)) as Box<_>);
        prove(&tiles).map_err(ProofSourceError::Tiles)
    }

    /// The `"proof"` array of a `/v1/proof/*` JSON answer.
    fn api(&self, path: &str) -> Result<Vec<Hash>, ProofSourceError> {
        let body = self.log.get(path, MAX_PROOF_JSON)?;
        let bad = || ProofSourceError::Json {
            path: path.to_string(),
        };
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| bad())?;
        v["proof"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|h| {
                h.as_str()
                    .and_then(|s| b64().decode(s).ok())
                    .and_then(|b| Hash::try_from(b).ok())
                    .ok_or_else(bad)
            })
            .collect()
    }
}
