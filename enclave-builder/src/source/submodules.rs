//! Submodules: the gitlinks of a checkout, the URL check of every
//! `.gitmodules` entry before anything of that level is fetched, the update
//! one level at a time from checked `https://` URLs or from the enclave's
//! bundles, and the host's bundles of every submodule commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use attestlog::claim::SubmoduleDependency;

use super::submodule_url::{self, SubmoduleUrlError};
use super::{bundle, git, git_net, refused_by_relay, SubmoduleBundles};
use crate::error::BuildError;

/// The lines of `git submodule status` output flagged `-` (not checked
/// out), `+` (another commit) or `U` (conflicts). A good line starts with a
/// space, which the trimmed output loses on the first line, so good is
/// "no flag" rather than "a leading space".
pub(super) fn unsettled_submodules(status: &str) -> Vec<&str> {
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
pub(super) fn submodule_dependencies(
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

/// Where submodules are fetched from.
pub(super) enum SubmoduleSource<'a> {
    /// Their checked `https://` URLs, with this network configuration.
    Urls(&'a [(String, String)]),
    /// Only the local bundle holding each recorded commit (the enclave).
    Bundles(&'a SubmoduleBundles),
}

/// Every `.gitmodules` URL of the checkout at `dir`, resolved against
/// `base` (the URL of `dir`'s own repository) and checked: name -> URL.
/// `shown` prefixes paths in errors.
fn checked_submodule_urls(
    dir: &Path,
    base: &str,
    shown: &str,
) -> Result<BTreeMap<String, String>, BuildError> {
    let config = git(
        Some(dir),
        &[
            "config",
            "-f",
            ".gitmodules",
            "-z",
            "--get-regexp",
            r"^submodule\..*\.url$",
        ],
    )
    .unwrap_or_default();
    submodule_url::parse_module_urls(&config)
        .into_iter()
        .map(|(name, url)| {
            submodule_url::resolve(base, &url)
                .map(|resolved| (name.clone(), resolved))
                .map_err(|reason| BuildError::SubmoduleUrl {
                    submodule: format!("{shown}{name}"),
                    reason,
                })
        })
        .collect()
}

/// Checks every `.gitmodules` URL of the checkout at `dir`, then checks out
/// each submodule at its recorded commit, then the submodules inside it
/// (their relative URLs resolved against the submodule's own URL).
/// Setting `submodule.<name>.url` (instead of `git submodule init`, which
/// copies the URL from `.gitmodules`) to the checked URL or to the bundle
/// and updating one level at a time means git fetches exactly what was
/// checked, with `file` allowed only for a bundle. `shown` prefixes paths
/// in errors.
pub(super) fn update_submodules(
    dir: &Path,
    base: &str,
    shown: &str,
    from: &SubmoduleSource,
) -> Result<(), BuildError> {
    let urls = checked_submodule_urls(dir, base, shown)?;
    for link in gitlinks(dir)? {
        let path = format!("{shown}{}", link.path);
        let url = urls
            .get(&link.name)
            .ok_or_else(|| BuildError::SubmoduleUrl {
                submodule: path.clone(),
                reason: SubmoduleUrlError::Missing,
            })?;
        let (fetch_from, net, local) = match from {
            SubmoduleSource::Urls(net) => (url.clone(), *net, false),
            SubmoduleSource::Bundles(bundles) => {
                let file = bundles.get(&link.commit).ok_or_else(|| {
                    BuildError::Submodules(format!(
                        "{path}: no bundle holds its recorded commit {}",
                        link.commit
                    ))
                })?;
                (file.to_string_lossy().to_string(), &[][..], true)
            }
        };
        let key = format!("submodule.{}.url", link.name);
        git(Some(dir), &["config", &key, &fetch_from])?;
        git_net(
            net,
            Some(dir),
            &["submodule", "update", "--checkout", "--", &link.path],
            local,
        )
        .map_err(|e| match e {
            BuildError::Git { reason, .. } if refused_by_relay(&reason) => {
                BuildError::RelayRefused(format!("submodule {path} from {url}: {reason}"))
            }
            e => BuildError::Submodules(format!("{path} at {}: {e}", link.commit)),
        })?;
        update_submodules(&dir.join(&link.path), url, &format!("{path}/"), from)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
