//! Source: a fresh clone with the real `git`, a detached checkout of the
//! exact commit, and the checks that HEAD is that commit, the tree is clean
//! and submodules sit at their recorded commits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use attestlog::claim::{is_full_commit_id, SubmoduleDependency};

use crate::error::BuildError;

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
    git_net(&[], dir, args)
}

/// [`git`] with `-c key=value` for each of `net`; git hands these on to the
/// git processes it starts (submodule clones) through the environment.
pub(crate) fn git_net(
    net: &[(String, String)],
    dir: Option<&Path>,
    args: &[&str],
) -> Result<String, BuildError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    for (key, value) in net {
        cmd.arg("-c").arg(format!("{key}={value}"));
    }
    // TLS verification cannot be switched off from the environment.
    cmd.env_remove("GIT_SSL_NO_VERIFY");
    // No prompts, no system config, no hooks: the clone is data, not code.
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.file.allow=always",
    ])
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
    )
    .map_err(|e| BuildError::MissingRepo {
        repo: req.repo.clone(),
        reason: match e {
            BuildError::Git { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;

    let commit = match &req.git_ref {
        Some(name) => resolve_ref(dest, name, req.commit.as_deref())?,
        None => {
            let c = req.commit.clone().unwrap_or_default().to_ascii_lowercase();
            ensure_commit(dest, &c, &req.net_config)?;
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
        match bundles {
            None => git_net(
                &req.net_config,
                Some(dest),
                &["submodule", "update", "--init", "--recursive", "--checkout"],
            )
            .map(|_| ())
            .map_err(|e| BuildError::Submodules(e.to_string()))?,
            Some(bundles) => update_from_bundles(dest, "", bundles)?,
        }
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

/// The lines of `git submodule status` output flagged `-` (not checked
/// out), `+` (another commit) or `U` (conflicts). A good line starts with a
/// space, which the trimmed output loses on the first line, so good is
/// "no flag" rather than "a leading space".
fn unsettled_submodules(status: &str) -> Vec<&str> {
    status
        .lines()
        .filter(|l| l.starts_with(['-', '+', 'U']))
        .collect()
}

/// One gitlink of a checked-out tree: a submodule at its recorded commit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Gitlink {
    /// The submodule's name in `.gitmodules`.
    name: String,
    /// Its path relative to the repository holding it.
    path: String,
    /// The commit the superproject records for it (lowercase).
    commit: String,
}

/// `(path, commit)` of each gitlink (mode 160000) in `git ls-tree -r -z` output.
fn parse_gitlinks(listing: &str) -> Vec<(String, String)> {
    listing
        .split('\0')
        .filter_map(|entry| {
            let (meta, path) = entry.trim_start_matches('\n').split_once('\t')?;
            let mut parts = meta.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("160000"), Some("commit"), Some(id)) => {
                    Some((path.to_string(), id.to_ascii_lowercase()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Path -> name from `git config -z --get-regexp 'submodule\..*\.path'` output
/// (`submodule.<name>.path\n<path>\0`; a name may itself contain dots).
fn parse_module_paths(config: &str) -> BTreeMap<String, String> {
    config
        .split('\0')
        .filter_map(|entry| {
            let (key, path) = entry.trim_start_matches('\n').split_once('\n')?;
            let name = key.strip_prefix("submodule.")?.strip_suffix(".path")?;
            Some((path.trim_end_matches('/').to_string(), name.to_string()))
        })
        .collect()
}

/// The gitlinks of HEAD in the repository at `dir`, each with its name from
/// `.gitmodules`. A gitlink that `.gitmodules` does not declare is refused,
/// as `git submodule update` refuses it; without `.gitmodules` there are
/// none to check out (the same rule as [`fetch`]).
fn gitlinks(dir: &Path) -> Result<Vec<Gitlink>, BuildError> {
    if !dir.join(".gitmodules").exists() {
        return Ok(Vec::new());
    }
    let links = parse_gitlinks(&git(
        Some(dir),
        &["ls-tree", "-r", "-z", "--full-tree", "HEAD"],
    )?);
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let config = git(
        Some(dir),
        &[
            "config",
            "-f",
            ".gitmodules",
            "-z",
            "--get-regexp",
            r"^submodule\..*\.path$",
        ],
    )
    .unwrap_or_default();
    let names = parse_module_paths(&config);
    links
        .into_iter()
        .map(|(path, commit)| match names.get(&path) {
            Some(name) => Ok(Gitlink {
                name: name.clone(),
                path,
                commit,
            }),
            None => Err(BuildError::Submodules(format!(
                "{path} (at {commit}) has no entry in .gitmodules"
            ))),
        })
        .collect()
}

/// Appends the submodules of the checkout at `dir` (paths prefixed with
/// `prefix`), then theirs. The URL is the one `.gitmodules` declares, kept
/// only when absolute: a relative one names nothing on its own.
fn submodule_dependencies(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<SubmoduleDependency>,
) -> Result<(), BuildError> {
    for link in gitlinks(dir)? {
        let key = format!("submodule.{}.url", link.name);
        let uri = git(Some(dir), &["config", "-f", ".gitmodules", "--get", &key])
            .ok()
            .filter(|u| u.contains("://"));
        let path = format!("{prefix}{}", link.path);
        out.push(SubmoduleDependency {
            path: path.clone(),
            uri,
            git_commit: link.commit.clone(),
        });
        submodule_dependencies(&dir.join(&link.path), &format!("{path}/"), out)?;
    }
    Ok(())
}

/// Checks out each submodule of the repository at `dir` from the bundle
/// holding its recorded commit, then the submodules inside it. Setting
/// `submodule.<name>.url` to the bundle (instead of `git submodule init`,
/// which copies the URL from `.gitmodules`) and updating one level at a
/// time keeps every clone local. `shown` prefixes paths in errors.
fn update_from_bundles(
    dir: &Path,
    shown: &str,
    bundles: &SubmoduleBundles,
) -> Result<(), BuildError> {
    for link in gitlinks(dir)? {
        let path = format!("{shown}{}", link.path);
        let file = bundles.get(&link.commit).ok_or_else(|| {
            BuildError::Submodules(format!(
                "{path}: no bundle holds its recorded commit {}",
                link.commit
            ))
        })?;
        let key = format!("submodule.{}.url", link.name);
        git(Some(dir), &["config", &key, &file.to_string_lossy()])?;
        git(
            Some(dir),
            &["submodule", "update", "--checkout", "--", &link.path],
        )
        .map_err(|e| BuildError::Submodules(format!("{path} at {}: {e}", link.commit)))?;
        update_from_bundles(&dir.join(&link.path), &format!("{path}/"), bundles)?;
    }
    Ok(())
}

/// Host: writes one `git bundle` per distinct submodule commit (nested ones
/// too) of the checked-out clone at `dest` into `out_dir`, each made from
/// the submodule's own checkout, and returns `(commit, file)` pairs.
pub fn bundle_submodules(
    dest: &Path,
    out_dir: &Path,
) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    let mut pending = vec![dest.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for link in gitlinks(&dir)? {
            let sub = dir.join(&link.path);
            if seen.insert(link.commit.clone()) {
                let file = out_dir.join(format!("submodule-{}.bundle", files.len()));
                bundle(&sub, &link.commit, Some("attestlog-submodule"), &file)?;
                files.push((link.commit, file));
            }
            pending.push(sub);
        }
    }
    Ok(files)
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
fn ensure_commit(dest: &Path, commit: &str, net: &[(String, String)]) -> Result<(), BuildError> {
    let spec = format!("{commit}^{{commit}}");
    if git(Some(dest), &["cat-file", "-e", &spec]).is_ok() {
        return Ok(());
    }
    let _ = git_net(net, Some(dest), &["fetch", "--quiet", "origin", commit]);
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

    #[test]
    fn flags_only_unsettled_submodules() {
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        // As `git()` returns it: trimmed, so the first good line has no space.
        let good = format!("{a} lib (heads/main)\n {b} lib/inner (heads/main)");
        assert!(unsettled_submodules(&good).is_empty());
        let bad = format!("-{a} lib\n+{b} lib/inner (x)\nU{a} other\n {b} fine");
        assert_eq!(unsettled_submodules(&bad).len(), 3);
    }

    #[test]
    fn parses_gitlinks_and_module_paths() {
        let c = "A".repeat(40);
        let listing = format!(
            "100644 blob {b}\t.gitmodules\x00160000 commit {c}\tvendor/my lib\x00\
             040000 tree {b}\tsrc\x00",
            b = "b".repeat(40)
        );
        assert_eq!(
            parse_gitlinks(&listing),
            vec![("vendor/my lib".to_string(), c.to_ascii_lowercase())]
        );
        let config = "submodule.my.lib.path\nvendor/my lib\x00submodule.x.url\nu\x00\
                      submodule.inner.path\ninner/\x00";
        let names = parse_module_paths(config);
        assert_eq!(
            names.get("vendor/my lib").map(String::as_str),
            Some("my.lib")
        );
        assert_eq!(names.get("inner").map(String::as_str), Some("inner"));
        assert_eq!(names.len(), 2);
    }
}
