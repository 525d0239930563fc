//! Publishing what a build wrote (`<artifact>` and `<artifact>.attestlog.json`
//! in `--out`) where users download it: GitHub release assets ([`github`])
//! or an OCI registry ([`attestlog::oci`]). Host side only: the enclave
//! never sees a token.
//!
//! Contract: publishing reads the two files and never changes them, so a
//! failed publish loses nothing and `enclave-builder publish` can retry it.
//! It is idempotent: what is already published with the same bytes is left
//! alone; the same name with other bytes is refused
//! (`github_asset_conflict`, `oci_conflict`), never overwritten. The bundle
//! is parsed before anything is sent, so a damaged bundle is not published.
//! `spec/publish.md` is normative.

pub mod github;
mod github_http;

use std::path::{Path, PathBuf};

use attestlog::bounded::{read_bounded, BoundedReadError};
use attestlog::bundle::{Bundle, BUNDLE_SUFFIX, MAX_BUNDLE_SIZE};
use attestlog::oci::{Credentials, OciError, Reference};

/// Where to publish.
pub enum Target {
    Github(github::GithubTarget),
    Oci {
        reference: Reference,
        credentials: Option<Credentials>,
    },
}

/// Why a publish failed. The build's files are untouched.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Target(String),
    #[error("GitHub token: {0}")]
    Token(String),
    #[error("token file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    TokenFileMode { path: PathBuf, mode: u32 },
    #[error("GitHub {what}: {reason}")]
    GithubTransport { what: String, reason: String },
    #[error("GitHub {what}: status {status}: {message}")]
    GithubStatus {
        what: String,
        status: u16,
        message: String,
    },
    #[error("GitHub {what}: rate limited for {wait_secs} s more, beyond the {max_secs} s this run waits")]
    GithubRateLimited {
        what: String,
        wait_secs: u64,
        max_secs: u64,
    },
    #[error("GitHub {what}: unexpected answer: {reason}")]
    GithubAnswer { what: String, reason: String },
    #[error("release {tag} already has an asset {name} with other bytes; refusing to replace it")]
    AssetConflict { tag: String, name: String },
    #[error("asset name {0:?} would be renamed by GitHub (use [A-Za-z0-9._-], no leading or trailing '.')")]
    AssetName(String),
    #[error("bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error("OCI: {0}")]
    Oci(#[from] OciError),
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PublishError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Target(_) => "publish_target",
            Self::Token(_) => "github_token",
            Self::TokenFileMode { .. } => "token_file_mode",
            Self::GithubTransport { .. } => "github_transport",
            Self::GithubStatus { .. } => "github_status",
            Self::GithubRateLimited { .. } => "github_rate_limited",
            Self::GithubAnswer { .. } => "github_answer",
            Self::AssetConflict { .. } => "github_asset_conflict",
            Self::AssetName(_) => "github_asset_name",
            Self::Bundle { .. } => "publish_bundle",
            Self::Oci(e) => e.code(),
            Self::Io { .. } => "io",
        }
    }
}

/// The bundle beside `artifact` (`<artifact>.attestlog.json`).
pub fn bundle_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_os_string();
    name.push(BUNDLE_SUFFIX);
    PathBuf::from(name)
}

/// Publishes `artifact` and `bundle` to `target`; returns one line per
/// thing published (or found already there) for the operator.
pub fn publish(
    target: &Target,
    artifact: &Path,
    bundle: &Path,
) -> Result<Vec<String>, PublishError> {
    let bytes = read_bundle(bundle)?;
    match target {
        Target::Github(t) => github::publish(t, artifact, bundle),
        Target::Oci {
            reference,
            credentials,
        } => {
            let p = attestlog::oci::publish(reference, artifact, &bytes, credentials.as_ref())?;
            Ok(vec![format!(
                "oci: {} bundle {} ({}){}",
                p.artifact,
                p.bundle_manifest,
                match p.referrers {
                    attestlog::oci::ReferrersPath::Api => "referrers API",
                    attestlog::oci::ReferrersPath::TagSchema => "referrers tag schema",
                },
                if p.unchanged {
                    ", already published"
                } else {
                    ""
                }
            )])
        }
    }
}

/// Reads and parses the bundle: a damaged one is never published.
fn read_bundle(path: &Path) -> Result<Vec<u8>, PublishError> {
    let file = std::fs::File::open(path).map_err(|source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = read_bounded(file, MAX_BUNDLE_SIZE as u64).map_err(|e| match e {
        BoundedReadError::Io(source) => PublishError::Io {
            path: path.to_path_buf(),
            source,
        },
        too_large => PublishError::Bundle {
            path: path.to_path_buf(),
            reason: format!("bundle is {too_large}"),
        },
    })?;
    Bundle::parse(&bytes).map_err(|e| PublishError::Bundle {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_bundle_file_is_refused_after_reading_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.attestlog.json");
        std::fs::write(&path, vec![b' '; MAX_BUNDLE_SIZE + 2]).unwrap();
        let err = read_bundle(&path).unwrap_err();
        assert_eq!(err.code(), "publish_bundle", "{err}");
        assert!(
            err.to_string()
                .contains("bundle is larger than 1048576 bytes"),
            "{err}"
        );
    }
}
