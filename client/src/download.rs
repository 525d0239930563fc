//! Bounded, deadlined HTTP downloads of artifacts and bundles (`attestlog
//! verify --url` and `--oci`).
//!
//! Contract: every request has a connect deadline ([`CONNECT_TIMEOUT`]) and
//! a whole-request deadline ([`API_TIMEOUT`] for small documents,
//! [`ARTIFACT_TIMEOUT`] for artifacts); at most [`MAX_REDIRECTS`] redirects
//! are followed; no answer is read past its cap ([`MAX_ARTIFACT_SIZE`] for
//! artifacts, `bundle::MAX_BUNDLE_SIZE` for bundles), whatever
//! `Content-Length` says; the bytes are hashed as they stream to their sink.
//! Nothing downloaded is trusted: callers verify it as they would a file.

use std::io::{Read, Write};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Largest artifact downloaded: 4 GiB.
pub const MAX_ARTIFACT_SIZE: u64 = 4 << 30;
/// Deadline to connect to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for a whole small request (bundles, manifests, API calls).
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for a whole artifact download (4 GiB at ~2.5 MB/s).
pub const ARTIFACT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Redirects followed (GitHub release downloads redirect once, to storage).
pub const MAX_REDIRECTS: usize = 5;

/// A failed download.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: not found (404)")]
    NotFound { url: String },
    #[error("{url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: cannot write what was received: {source}")]
    Write { url: String, source: std::io::Error },
}

impl DownloadError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "download_transport",
            Self::NotFound { .. } => "download_not_found",
            Self::Status { .. } => "download_status",
            Self::TooLarge { .. } => "download_too_large",
            Self::Write { .. } => "io",
        }
    }
}

/// What was received: its SHA-256 and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub sha256: [u8; 32],
    pub size: u64,
}

/// A blocking client with [`CONNECT_TIMEOUT`], `timeout` for each whole
/// request and [`MAX_REDIRECTS`].
pub fn client(timeout: Duration) -> Result<reqwest::blocking::Client, DownloadError> {
    reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("attestlog/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DownloadError::Transport {
            url: String::new(),
            reason: e.to_string(),
        })
}

/// GETs `url` into `sink`, at most `limit` bytes.
pub fn get(
    http: &reqwest::blocking::Client,
    url: &str,
    limit: u64,
    sink: &mut dyn Write,
) -> Result<Received, DownloadError> {
    let resp = http.get(url).send().map_err(|e| DownloadError::Transport {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(DownloadError::NotFound {
            url: url.to_string(),
        });
    }
    if !status.is_success() {
        return Err(DownloadError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    copy_bounded(resp, url, limit, sink)
}

/// Streams `body` into `sink`, hashing it, failing past `limit` bytes.
pub fn copy_bounded(
    body: impl Read,
    url: &str,
    limit: u64,
    sink: &mut dyn Write,
) -> Result<Received, DownloadError> {
    let mut body = body.take(limit.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DownloadError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                })
            }
        };
        size += n as u64;
        if size > limit {
            return Err(DownloadError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n])
            .map_err(|source| DownloadError::Write {
                url: url.to_string(),
                source,
            })?;
    }
    Ok(Received {
        sha256: hasher.finalize().into(),
        size,
    })
}

/// SHA-256 and length of a file, streamed.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<([u8; 32], u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().into(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_stops_past_the_limit() {
        let mut out = Vec::new();
        let r = copy_bounded(&[7u8; 100][..], "u", 100, &mut out).unwrap();
        assert_eq!(r.size, 100);
        assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest([7u8; 100])));
        let mut out = Vec::new();
        let e = copy_bounded(&[7u8; 101][..], "u", 100, &mut out).unwrap_err();
        assert_eq!(e.code(), "download_too_large");
        assert!(out.len() <= 100);
    }
}
