//! Bounded HTTP GETs from a log (checkpoint, tiles, entry bundles, proofs).
//!
//! Contract: every request has a deadline ([`REQUEST_TIMEOUT`]) and sends
//! `Accept-Encoding: gzip, identity` (C2SP tlog-tiles: clients SHOULD); a
//! response with `Content-Encoding: gzip` is decoded on any resource (a log
//! MAY gzip with no negotiation), `identity` or none is taken as is, and any
//! other encoding is refused. Both the bytes received and the decoded bytes
//! are capped by the caller's limit, so neither a large answer nor a gzip
//! bomb can exhaust memory. A 404 is reported apart ([`FetchError::NotFound`])
//! so callers can fall back: to tile proofs, or, for a partial tile or entry
//! bundle the log has deleted since the full one exists (C2SP allows it), to
//! the full one's prefix.

use std::time::Duration;

use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING};

use crate::bounded::{read_bounded, BoundedReadError};
use crate::tlog::tile_proofs::MAX_TILE_BYTES;
use crate::tlog::tiles::TilePath;

/// Deadline for one request, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest hash tile: 256 hashes of 32 bytes.
pub const MAX_TILE: usize = MAX_TILE_BYTES;
/// Largest entry bundle: 256 entries, each a 2-byte length and at most
/// 65,535 bytes.
pub const MAX_ENTRY_BUNDLE: usize = crate::tlog::tiles::MAX_BUNDLE_BYTES;
/// Largest checkpoint: a signed note has at most 100 signature lines (see
/// `tlog::note`); 1 MiB is far above any real one.
pub const MAX_CHECKPOINT: usize = 1 << 20;
/// Largest JSON proof answer from `/v1/proof/*`: at most 2 * 64 hashes of
/// 44 base64 characters plus framing; 64 KiB leaves ample room.
pub const MAX_PROOF_JSON: usize = 64 << 10;
/// Compressed bytes accepted beyond the decoded limit: gzip framing and
/// incompressible data may make the compressed form slightly larger.
const GZIP_SLACK: usize = 4096;

/// A failed GET.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetch {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("fetch {url}: not found (404)")]
    NotFound { url: String },
    #[error("fetch {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("fetch {url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("fetch {url}: Content-Encoding {encoding:?} is not gzip or identity")]
    Encoding { url: String, encoding: String },
    #[error("fetch {url}: gzip body does not decode: {reason}")]
    Gzip { url: String, reason: String },
}

impl FetchError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "fetch_transport",
            Self::NotFound { .. } => "fetch_not_found",
            Self::Status { .. } => "fetch_status",
            Self::TooLarge { .. } => "fetch_too_large",
            Self::Encoding { .. } => "fetch_encoding",
            Self::Gzip { .. } => "fetch_gzip",
        }
    }
}

/// A log's base URL and an HTTP client with deadlines.
pub struct HttpLog {
    base: String,
    http: reqwest::blocking::Client,
}

impl HttpLog {
    pub fn new(base: &str) -> Result<Self, FetchError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Transport {
                url: base.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `<base>/<path>`, at most `limit` bytes once decoded.
    pub fn get(&self, path: &str, limit: usize) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}/{path}", self.base);
        let transport = |e: &dyn std::fmt::Display| FetchError::Transport {
            url: url.clone(),
            reason: e.to_string(),
        };
        let resp = self
            .http
            .get(&url)
            .header(ACCEPT_ENCODING, "gzip, identity")
            .send()
            .map_err(|e| transport(&e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound { url });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let encoding = resp.headers().get(CONTENT_ENCODING).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        });
        let too_large = || FetchError::TooLarge {
            url: url.clone(),
            limit,
        };
        let gzip = match encoding.as_deref() {
            None | Some("identity") | Some("") => false,
            Some("gzip") | Some("x-gzip") => true,
            Some(other) => {
                return Err(FetchError::Encoding {
                    url,
                    encoding: other.to_string(),
                })
            }
        };
        let raw_limit = if gzip { limit + GZIP_SLACK } else { limit };
        if resp.content_length().is_some_and(|n| n > raw_limit as u64) {
            return Err(too_large());
        }
        let raw = read_bounded(resp, raw_limit as u64).map_err(|e| match e {
            BoundedReadError::Io(e) => transport(&e),
            BoundedReadError::TooLarge { .. } => too_large(),
        })?;
        if !gzip {
            return Ok(raw);
        }
        read_bounded(
            flate2::read::MultiGzDecoder::new(raw.as_slice()),
            limit as u64,
        )
        .map_err(|e| match e {
            BoundedReadError::Io(e) => FetchError::Gzip {
                url: url.clone(),
                reason: e.to_string(),
            },
            BoundedReadError::TooLarge { .. } => too_large(),
        })
    }

    /// GETs a hash tile; a partial tile that is gone (404) is taken from
    /// the full tile's first `width` hashes, as C2SP tlog-tiles allows a log
    /// to delete partial tiles once the full tile exists.
    pub fn tile(&self, tile: &TilePath) -> Result<Vec<u8>, FetchError> {
        let want = usize::try_from(tile.count()).unwrap_or(usize::MAX) * 32;
        self.partial_or_full(tile, MAX_TILE, |full| full.get(..want))
    }

    /// GETs an entry bundle, with the same fallback as [`Self::tile`]: the
    /// full bundle's first `width` entries.
    pub fn entry_bundle(&self, tile: &TilePath) -> Result<Vec<u8>, FetchError> {
        let want = usize::try_from(tile.count()).unwrap_or(usize::MAX);
        self.partial_or_full(tile, MAX_ENTRY_BUNDLE, |full| {
            full.get(..bundle_prefix_len(full, want)?)
        })
    }

    /// The partial tile, or on 404 the prefix `prefix` picks from the full
    /// one. A full tile with no such prefix is returned whole: the caller's
    /// size check then names the mismatch.
    fn partial_or_full(
        &self,
        tile: &TilePath,
        limit: usize,
        prefix: impl Fn(&[u8]) -> Option<&[u8]>,
    ) -> Result<Vec<u8>, FetchError> {
        match self.get(&tile.to_path(), limit) {
            Err(FetchError::NotFound { url }) if tile.width.is_some() => {
                let full = TilePath {
                    width: None,
                    ..*tile
                };
                let bytes = match self.get(&full.to_path(), limit) {
                    Err(FetchError::NotFound { .. }) => return Err(FetchError::NotFound { url }),
                    other => other?,
                };
                Ok(prefix(&bytes).map_or_else(|| bytes.clone(), <[u8]>::to_vec))
            }
            other => other,
        }
    }
}

/// Length in bytes of the first `count` length-prefixed entries of a bundle.
fn bundle_prefix_len(bundle: &[u8], count: usize) -> Option<usize> {
    let mut offset = 0usize;
    for _ in 0..count {
        let len: [u8; 2] = bundle.get(offset..offset + 2)?.try_into().ok()?;
        offset = offset.checked_add(2 + usize::from(u16::from_be_bytes(len)))?;
    }
    (offset <= bundle.len()).then_some(offset)
}
