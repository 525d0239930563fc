//! Source: a fresh clone with the real `git`, a detached checkout of the
//! exact commit, and the checks that HEAD is that commit, the tree is clean
//! and submodules sit at their recorded commits.
//!
//! Transports: `https` only, plus `file` for the operator-named local
//! repository and the enclave's own bundle files; every `.gitmodules` URL,
//! nested ones too, is checked before its submodule is fetched (see
//! `submodule_url`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use attestlog::claim::{is_full_commit_id, SubmoduleDependency};

use crate::error::BuildError;

mod submodule_url;
mod submodules;
pub use submodule_url::{is_local, resolve as resolve_submodule_url, SubmoduleUrlError};
pub use submodules::bundle_submodules;
use submodules::{
    submodule_dependencies, unsettled_submodules, update_submodules, SubmoduleSource,
};

/// What the user asked to build.
#[derive(Clone, Debug)]
pub struct SourceRequest {
    /// A URL or a local path, as given.
    pub repo: String,
    /// A commit id; abbreviated or symbolic only together with `git_ref`.
    pub commit: Option<String>,
    /// A branch or tag name to resolve.
    pub git_ref: Option<String>,
    /// The URI to record instead of [`repository_uri`] of `repo` (the
    /// enclave clones a git bundle but records the host's repository).
    pub uri: Option<String>,
    /// git configuration (`-c key=value`) for the commands that reach the
    /// network: clone, fetch and submodule update (the enclave's relay proxy
    /// and TLS roots). Empty for a direct fetch.
    pub net_config: Vec<(String, String)>,
}

/// The checked-out source.
#[derive(Clone, Debug)]
pub struct CheckedOut {
    /// The repository URI recorded in the statement.
    pub uri: String,
    /// The full, lowercase commit id.
    pub commit: String,
    /// The ref the commit was resolved from, if any.
    pub git_ref: Option<String>,
    /// The committer time, used as SOURCE_DATE_EPOCH.
    pub commit_time: u64,
    /// Every submodule checked out, nested ones too, outermost first.
    pub submodules: Vec<SubmoduleDependency>,
}

/// Local `git bundle` files by the full commit id each one holds. The
/// enclave fetches submodules only from these: commit ids are hashes and
/// the superproject's tree names them, so whoever made the files cannot
/// change what is checked out.
pub type SubmoduleBundles = BTreeMap<String, PathBuf>;

/// Checks the request before anything touches the network or the disk.
pub fn check_request(req: &SourceRequest) -> Result<(), BuildError> {
    match (&req.commit, &req.git_ref) {
        (Some(c), None) if !is_full_commit_id(&c.to_ascii_lowercase()) => {
            Err(BuildError::AbbreviatedCommit(c.clone()))
        }
        (None, None) => Err(BuildError::AbbreviatedCommit(String::new())),
        _ => Ok(()),
    }
}

/// The URI recorded for `repo`: URLs as given, local paths as absolute `file://` URIs.
pub fn repository_uri(repo: &str) -> String {
    if repo.contains("://") || repo.starts_with("git@") {
        return repo.to_string();
    }
    let path = Path::new(repo);
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file://{}", abs.display())
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, BuildError> {
    git_net(&[], dir, args, false)
}

/// [`git`] with `-c key=value` for each of `net`; git hands these on to the
/// git processes it starts (submodule clones) through the environment.
/// `local` allows the `file` transport (see [`submodule_url::protocol_config`]).
pub(crate) fn git_net(
    net: &[(String, String)],
    dir: Option<&Path>,
    args: &[&str],
    local: bool,
) -> Result<String, BuildError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    for (key, value) in net {
        cmd.arg("-c").arg(format!("{key}={value}"));
    }
    for setting in submodule_url::protocol_config(local) {
        cmd.arg("-c").arg(setting);
    }
    // TLS verification cannot be switched off from the environment, nor
    // the transport allow list replaced.
    cmd.env_remove("GIT_SSL_NO_VERIFY");
    cmd.env_remove("GIT_ALLOW_PROTOCOL");
    // Configured TLS roots (the enclave's measured --tls-roots) are the only
    // ones: git lets GIT_SSL_CAINFO and GIT_SSL_CAPATH override them.
    if net
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("http.sslCAInfo"))
    {
        cmd.env_remove("GIT_SSL_CAINFO")
            .env_remove("GIT_SSL_CAPATH");
    }
    // No prompts, no system config, no hooks: the clone is data, not code.
    cmd.args(["-c", "core.hooksPath=/dev/null"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ASKPASS", "true");
    let out = cmd.output().map_err(|e| BuildError::Git {
        args: args.join(" "),
        reason: format!("cannot run git: {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(BuildError::Git {
            args: args.join(" "),
            reason: format!("{} ({})", git_failure_line(&stderr), out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The one line of git's stderr that says why it failed: the first `fatal:`
/// line (nested commands such as `submodule update` end with a summary that
/// hides the cause), else the last non-empty line.
fn git_failure_line(stderr: &str) -> &str {
    let mut lines = stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines
        .clone()
        .find(|l| l.starts_with("fatal:"))
        .or_else(|| lines.next_back())
        .unwrap_or("")
}

/// Whether git's failure line is the HTTP proxy (the host's CONNECT relay,
/// see [`crate::relay`]) answering 403: a target the relay refuses.
fn refused_by_relay(reason: &str) -> bool {
    reason.contains("CONNECT tunnel failed, response 403")
        || reason.contains("Received HTTP code 403 from proxy after CONNECT")
}

/// Clones `req.repo` into `dest` (which must not exist), checks out the commit
/// detached, and verifies HEAD, the tree and submodules (fetched from the
/// URLs `.gitmodules` records).
pub fn fetch(req: &SourceRequest, dest: &Path) -> Result<CheckedOut, BuildError> {
    fetch_with_submodule_bundles(req, dest, None)
}

/// [`fetch`], but with `Some(bundles)` every submodule, nested ones too, is
/// cloned from the bundle holding its recorded commit and never from its
/// URL (the enclave has no network); a recorded commit without a bundle is
/// refused (`submodules`). The checks afterwards are the same.
pub fn fetch_with_submodule_bundles(
    req: &SourceRequest,
    dest: &Path,
    bundles: Option<&SubmoduleBundles>,
) -> Result<CheckedOut, BuildError> {
    check_request(req)?;
    let dest_str = dest.to_string_lossy().to_string();
    // `file` only for this clone (and the fetch of a commit from the same
    // repository): it never recurses, so no submodule inherits it.
    let local = is_local(&req.repo);
    git_net(
        &req.net_config,
        None,
        &[
            "clone",
            "--quiet",
            "--no-checkout",
            "--",
            &req.repo,
            &dest_str,
        ],
        local,
    )
    .map_err(|e| match e {
        BuildError::Git { reason, .. } if refused_by_relay(&reason) => {
            BuildError::RelayRefused(format!("cloning {}: {reason}", req.repo))
        }
        BuildError::Git { reason, .. } => BuildError::MissingRepo {
            repo: req.repo.clone(),
            reason,
        },
        other => BuildError::MissingRepo {
            repo: req.repo.clone(),
            reason: other.to_string(),
        },
    })?;

    let commit = match &req.git_ref {
        Some(name) => resolve_ref(dest, name, req.commit.as_deref())?,
        None => {
            let c = req.commit.clone().unwrap_or_default().to_ascii_lowercase();
            ensure_commit(dest, &c, &req.net_config, local)?;
            c
        }
    };

    git(Some(dest), &["checkout", "--quiet", "--detach", &commit])?;
    let head = git(Some(dest), &["rev-parse", "HEAD"])?;
    if head != commit {
        return Err(BuildError::HeadMismatch {
            head,
            expected: commit,
        });
    }
    if dest.join(".gitmodules").exists() {
        // Relative submodule URLs resolve against the repository's own URL
        // (the recorded one when the enclave clones the host's bundle).
        let base = req.uri.as_deref().unwrap_or(&req.repo);
        let from = match bundles {
            None => SubmoduleSource::Urls(&req.net_config),
            Some(bundles) => SubmoduleSource::Bundles(bundles),
        };
        update_submodules(dest, base, "", &from)?;
        let status = git(Some(dest), &["submodule", "status", "--recursive"])?;
        let bad = unsettled_submodules(&status);
        if !bad.is_empty() {
            return Err(BuildError::Submodules(bad.join("; ")));
        }
    }
    let dirty = git(
        Some(dest),
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignore-submodules=none",
        ],
    )?;
    if !dirty.is_empty() {
        let first = dirty.lines().next().unwrap_or("").trim().to_string();
        return Err(BuildError::DirtyTree(first));
    }
    // Content check, independent of the index's stat cache and of
    // attributes: every tracked file must hold exactly the committed bytes.
    raw_matches_commit(dest)?;
    let commit_time = git(Some(dest), &["log", "-1", "--format=%ct", "HEAD"])?
        .parse()
        .unwrap_or(0);
    let mut submodules = Vec::new();
    submodule_dependencies(dest, "", &mut submodules)?;
    Ok(CheckedOut {
        uri: req.uri.clone().unwrap_or_else(|| repository_uri(&req.repo)),
        commit,
        git_ref: req.git_ref.clone(),
        commit_time,
        submodules,
    })
}

/// Writes a `git bundle` of `commit` from the checked-out clone at `dir`
/// to `file`. The commit travels as `refs/heads/<git_ref>` (or
/// `refs/heads/attestlog-build`), so a clone of the bundle resolves the
/// same ref to the same commit.
pub fn bundle(
    dir: &Path,
    commit: &str,
    git_ref: Option<&str>,
    file: &Path,
) -> Result<(), BuildError> {
    let name = format!("refs/heads/{}", git_ref.unwrap_or("attestlog-build"));
    git(Some(dir), &["update-ref", &name, commit])?;
    let file = file.to_string_lossy().to_string();
    git(Some(dir), &["bundle", "create", "--quiet", &file, &name])?;
    Ok(())
}

/// Checks that each regular file of HEAD's tree holds, byte for byte, the
/// blob the commit records (`git hash-object --no-filters`), so end-of-line
/// conversion, smudge filters or anything else between the object store and
/// the build is refused as a dirty tree.
fn raw_matches_commit(dest: &Path) -> Result<(), BuildError> {
    let listing = git(Some(dest), &["ls-tree", "-r", "--full-tree", "HEAD"])?;
    let mut paths = Vec::new();
    let mut blobs = Vec::new();
    for line in listing.lines() {
        let Some((meta, path)) = line.split_once('\t') else {
            continue;
        };
        let mut parts = meta.split_whitespace();
        let (mode, kind, id) = (parts.next(), parts.next(), parts.next());
        if kind == Some("blob") && matches!(mode, Some("100644") | Some("100755")) {
            paths.push(path.to_string());
            blobs.push(id.unwrap_or_default().to_string());
        }
    }
    if paths.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dest)
        .args(["hash-object", "--no-filters", "--stdin-paths"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BuildError::Git {
            args: "hash-object".into(),
            reason: e.to_string(),
        })?;
    let input = paths.join("\n") + "\n";
    let mut stdin = child.stdin.take().ok_or_else(|| BuildError::Git {
        args: "hash-object".into(),
        reason: "no stdin".into(),
    })?;
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(input.as_bytes())
    });
    let out = child.wait_with_output().map_err(|e| BuildError::Git {
        args: "hash-object".into(),
        reason: e.to_string(),
    })?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(BuildError::DirtyTree(format!(
            "cannot hash the checked-out files: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for ((path, blob), got) in paths.iter().zip(&blobs).zip(text.lines()) {
        if got != blob {
            return Err(BuildError::DirtyTree(format!(
                "{path} differs from the committed blob (line-ending conversion or a filter?)"
            )));
        }
    }
    Ok(())
}

/// Makes sure the full id `commit` names a commit object in the clone,
/// fetching it by id when no ref reaches it.
fn ensure_commit(
    dest: &Path,
    commit: &str,
    net: &[(String, String)],
    local: bool,
) -> Result<(), BuildError> {
    let spec = format!("{commit}^{{commit}}");
    if git(Some(dest), &["cat-file", "-e", &spec]).is_ok() {
        return Ok(());
    }
    let _ = git_net(
        net,
        Some(dest),
        &[
            "fetch",
            "--quiet",
            "--no-recurse-submodules",
            "origin",
            commit,
        ],
        local,
    );
    git(Some(dest), &["cat-file", "-e", &spec])
        .map(|_| ())
        .map_err(|_| BuildError::CommitNotFound(commit.to_string()))
}

/// Resolves a branch or tag name in the clone; a given commit (full or
/// abbreviated) must agree with it.
fn resolve_ref(dest: &Path, name: &str, commit: Option<&str>) -> Result<String, BuildError> {
    let candidates = [
        format!("refs/remotes/origin/{name}^{{commit}}"),
        format!("refs/tags/{name}^{{commit}}"),
        format!("{name}^{{commit}}"),
    ];
    let resolved = candidates
        .iter()
        .find_map(|c| git(Some(dest), &["rev-parse", "--verify", "--quiet", c]).ok())
        .filter(|r| is_full_commit_id(r))
        .ok_or_else(|| BuildError::RefNotFound {
            name: name.to_string(),
            reason: "no branch or tag of that name".into(),
        })?;
    if let Some(c) = commit {
        let c = c.to_ascii_lowercase();
        let agrees = c == name.to_ascii_lowercase()
            || (c.len() >= 7
                && c.bytes().all(|b| b.is_ascii_hexdigit())
                && resolved.starts_with(&c));
        if !agrees {
            return Err(BuildError::RefMismatch {
                name: name.to_string(),
                resolved,
                commit: c,
            });
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_failure_line_prefers_the_cause() {
        let nested = "Cloning into '/b/lib'...\nfatal: repository '/a/lib' does not exist\n\
                      fatal: clone of '/a/lib' into submodule path '/b/lib' failed\n\
                      Failed to clone 'lib'. Retry scheduled\n";
        assert_eq!(
            git_failure_line(nested),
            "fatal: repository '/a/lib' does not exist"
        );
        assert_eq!(git_failure_line("warning: x\n  error: y  \n\n"), "error: y");
        assert_eq!(git_failure_line(""), "");
    }

    #[test]
    fn refuses_abbreviated_and_branch_without_ref() {
        for c in ["abc1234", "main", "HEAD", &"a".repeat(39), &"g".repeat(40)] {
            let req = SourceRequest {
                repo: "x".into(),
                commit: Some(c.to_string()),
                git_ref: None,
                uri: None,
                net_config: Vec::new(),
            };
            assert_eq!(
                check_request(&req).unwrap_err().code(),
                "abbreviated_commit"
            );
        }
        let ok = SourceRequest {
            repo: "x".into(),
            commit: Some("a".repeat(40)),
            git_ref: None,
            uri: None,
            net_config: Vec::new(),
        };
        assert!(check_request(&ok).is_ok());
        let ok64 = SourceRequest {
            commit: Some("b".repeat(64)),
            ..ok.clone()
        };
        assert!(check_request(&ok64).is_ok());
        let with_ref = SourceRequest {
            commit: Some("main".into()),
            git_ref: Some("main".into()),
            ..ok
        };
        assert!(check_request(&with_ref).is_ok());
    }
}
