//! GitHub release assets over the documented REST API (version
//! 2022-11-28): get the release by tag, else create it; list its assets;
//! upload each missing file to the release's `upload_url` with `?name=`.
//!
//! Every request sends `Authorization: Bearer`, `Accept:
//! application/vnd.github+json`, `X-GitHub-Api-Version` and a
//! `User-Agent`, and has deadlines. Rate limits are honoured as GitHub
//! documents them: `retry-after` first, else `x-ratelimit-remaining: 0`
//! until `x-ratelimit-reset`, waiting at most [`MAX_RATE_WAIT`]; transport
//! errors and 5xx answers are retried with exponential backoff, at most
//! [`MAX_ATTEMPTS`] tries. The token goes only to the API and uploads bases.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::github_http::{answer, Github};
use super::PublishError;

pub const DEFAULT_API: &str = "https://api.github.com";
pub const DEFAULT_UPLOADS: &str = "https://uploads.github.com";
pub const API_VERSION: &str = "2022-11-28";
/// Tries per request (transport errors, 5xx, rate limits).
pub const MAX_ATTEMPTS: u32 = 5;
/// First backoff; doubled after each failed try.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest rate-limit wait this run accepts; beyond it the publish fails
/// (`github_rate_limited`) and can be retried later.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(120);
/// Deadline for API calls; uploads get [`UPLOAD_TIMEOUT`].
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A release to publish to.
pub struct GithubTarget {
    /// API base, `https://api.github.com` unless overridden (tests).
    pub api: Url,
    /// Uploads base; the release's `upload_url` must be on it.
    pub uploads: Url,
    pub owner: String,
    pub repo: String,
    pub tag: String,
    pub token: String,
}

impl GithubTarget {
    pub fn new(
        api: &str,
        uploads: &str,
        owner_repo: &str,
        tag: &str,
        token: String,
    ) -> Result<Self, PublishError> {
        let parse = |u: &str| {
            Url::parse(u.trim_end_matches('/'))
                .map_err(|e| PublishError::Target(format!("GitHub base URL {u:?}: {e}")))
        };
        let (owner, repo) = owner_repo
            .split_once('/')
            .filter(|(o, r)| valid_owner(o) && valid_repo(r))
            .ok_or_else(|| {
                PublishError::Target(format!("--github-repo {owner_repo:?} is not OWNER/NAME"))
            })?;
        if tag.is_empty() || tag.len() > 255 || tag.chars().any(|c| c.is_control() || c == ' ') {
            return Err(PublishError::Target(format!(
                "--release-tag {tag:?} is not a tag name"
            )));
        }
        if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(PublishError::Token("empty or not printable ASCII".into()));
        }
        Ok(GithubTarget {
            api: parse(api)?,
            uploads: parse(uploads)?,
            owner: owner.into(),
            repo: repo.into(),
            tag: tag.into(),
            token,
        })
    }
}

fn valid_owner(o: &str) -> bool {
    (1..=39).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_repo(r: &str) -> bool {
    (1..=100).contains(&r.len())
        && r != "."
        && r != ".."
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A name GitHub keeps as is.
fn valid_asset_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('.')
        && !n.ends_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Uploads `artifact` and `bundle` as assets of the release tagged
/// `target.tag`, creating the release if needed.
pub fn publish(
    target: &GithubTarget,
    artifact: &Path,
    bundle: &Path,
) -> Result<Vec<String>, PublishError> {
    let files = [artifact, bundle];
    let mut named = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !valid_asset_name(&name) {
            return Err(PublishError::AssetName(name));
        }
        named.push((name, path));
    }
    let gh = Github::new(target)?;
    let release = gh.release()?;
    let upload_base = gh.upload_url(&release)?;
    let id = release["id"]
        .as_u64()
        .ok_or_else(|| answer("release", "no numeric id"))?;
    let assets = gh.assets(id)?;
    let mut lines = Vec::new();
    for (name, path) in named {
        let (sha256, size) =
            attestlog::download::sha256_file(path).map_err(|source| PublishError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(existing) = assets.iter().find(|a| a["name"].as_str() == Some(&name)) {
            if existing["state"].as_str() == Some("uploaded") {
                if gh.same_bytes(existing, &sha256, size)? {
                    lines.push(format!("github: {name} already in release {}", target.tag));
                    continue;
                }
                return Err(PublishError::AssetConflict {
                    tag: target.tag.clone(),
                    name,
                });
            }
            // A failed earlier upload leaves an asset that is not
            // "uploaded"; GitHub requires deleting it before re-uploading.
            gh.delete_asset(existing)?;
        }
        gh.upload(&upload_base, &name, path, size)?;
        lines.push(format!("github: uploaded {name} to release {}", target.tag));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_targets() {
        assert!(valid_asset_name("hello.attestlog.json"));
        assert!(!valid_asset_name(".hidden"));
        assert!(!valid_asset_name("a b"));
        let t = |r: &str, tag: &str| {
            GithubTarget::new(DEFAULT_API, DEFAULT_UPLOADS, r, tag, "t".into()).map(|_| ())
        };
        assert!(t("octo-cat/hello.world", "v1.0").is_ok());
        assert!(t("octo/..", "v1").is_err());
        assert!(t("octo", "v1").is_err());
        assert!(t("o/r", "bad tag").is_err());
        assert!(
            GithubTarget::new(DEFAULT_API, DEFAULT_UPLOADS, "o/r", "v", "a\nb".into()).is_err()
        );
    }
}
