//! Which ref of the named repository contains the commit.
//!
//! A commit id fetched through a repository's URL may live only in a fork
//! (hosting services serve a fork network's objects through every member).
//! So after the checkout the builder asks the repository for every branch
//! and tag it advertises, fetching them into a private namespace of the
//! clone, and keeps those whose history contains the commit (`git
//! for-each-ref --contains`). It records one, chosen deterministically:
//!
//! 1. the requested `--ref` (as `refs/heads/NAME`, then `refs/tags/NAME`,
//!    or a full `refs/...` name) when it contains the commit;
//! 2. else the repository's default branch (its advertised `HEAD`) when it does;
//! 3. else the first branch in byte order, then the first tag.
//!
//! When none contains the commit the build is refused (`unreferenced_commit`)
//! unless the operator opted in, which the statement then records
//! ([`SourceRef::Unreferenced`]). Other refs (`refs/pull/*`, notes, ...) never
//! count: anyone can create them.

use std::path::Path;

use attestlog::claim::{is_recordable_ref, SourceRef};

use crate::error::BuildError;
use crate::source::git_net;

/// Where the advertised branches and tags are fetched to in the clone, so
/// they cannot mix with the clone's own remote-tracking refs.
pub const ADVERTISED: &str = "refs/attestlog-advertised/";

/// How a build learns the ref it records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefSource {
    /// Ask the repository the clone came from (`build`, the host, and the
    /// enclave in relay mode). `allow_unreferenced` is the operator's opt-in
    /// to build a commit no branch or tag contains.
    Advertised { allow_unreferenced: bool },
    /// Already decided by someone else (the enclave in host-bundle mode
    /// records the host's word, as it records the host's repository URI).
    Given(SourceRef),
}

/// Full ref names (`refs/heads/...`, `refs/tags/...`) the clone's origin
/// advertises whose history contains `commit`, branches first, each group
/// in byte order, and the default branch if the origin names one.
pub fn advertised_containing(
    dest: &Path,
    commit: &str,
    net: &[(String, String)],
    local: bool,
) -> Result<(Vec<String>, Option<String>), BuildError> {
    let heads = format!("+refs/heads/*:{ADVERTISED}heads/*");
    let tags = format!("+refs/tags/*:{ADVERTISED}tags/*");
    git_net(
        net,
        Some(dest),
        &["fetch", "--quiet", "--no-tags", "origin", &heads, &tags],
        local,
    )?;
    let listing = git_net(
        &[],
        Some(dest),
        &[
            "for-each-ref",
            "--format=%(refname)",
            "--contains",
            commit,
            ADVERTISED,
        ],
        false,
    )?;
    let mut heads = Vec::new();
    let mut tags = Vec::new();
    for name in listing.lines() {
        let Some(rest) = name.strip_prefix(ADVERTISED) else {
            continue;
        };
        if let Some(b) = rest.strip_prefix("heads/") {
            heads.push(format!("refs/heads/{b}"));
        } else if let Some(t) = rest.strip_prefix("tags/") {
            tags.push(format!("refs/tags/{t}"));
        }
    }
    heads.sort();
    tags.sort();
    heads.extend(tags);
    // `git clone` points refs/remotes/origin/HEAD at the remote's default branch.
    let default = git_net(
        &[],
        Some(dest),
        &["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"],
        false,
    )
    .ok()
    .and_then(|r| {
        r.strip_prefix("refs/remotes/origin/")
            .map(|b| format!("refs/heads/{b}"))
    });
    Ok((heads, default))
}

/// Picks the recorded ref among `containing` (ordered as
/// [`advertised_containing`] returns them): the requested one, else the
/// default branch, else the first. `None` when none contains the commit.
pub fn choose(
    containing: &[String],
    requested: Option<&str>,
    default: Option<&str>,
) -> Option<String> {
    let has = |name: &str| containing.iter().any(|c| c == name);
    if let Some(r) = requested {
        let candidates = if r.starts_with("refs/") {
            vec![r.to_string()]
        } else {
            vec![format!("refs/heads/{r}"), format!("refs/tags/{r}")]
        };
        if let Some(found) = candidates.into_iter().find(|c| has(c)) {
            return Some(found);
        }
    }
    if let Some(d) = default.filter(|d| has(d)) {
        return Some(d.to_string());
    }
    containing.iter().find(|c| is_recordable_ref(c)).cloned()
}

/// The ref to record for `commit` of the clone at `dest`, or the operator's
/// opt-in when none contains it; otherwise `unreferenced_commit`. `local`
/// (the operator named a local repository) allows git's `file` transport
/// for the one fetch from origin, as for the clone.
pub fn source_ref(
    dest: &Path,
    commit: &str,
    requested: Option<&str>,
    net: &[(String, String)],
    local: bool,
    allow_unreferenced: bool,
) -> Result<SourceRef, BuildError> {
    let (containing, default) = advertised_containing(dest, commit, net, local)?;
    let recordable: Vec<String> = containing
        .into_iter()
        .filter(|c| is_recordable_ref(c))
        .collect();
    match choose(&recordable, requested, default.as_deref()) {
        Some(name) => Ok(SourceRef::Ref(name)),
        None if allow_unreferenced => Ok(SourceRef::Unreferenced),
        None => Err(BuildError::UnreferencedCommit(commit.to_string())),
    }
}

/// The ref a host sent in a job, checked for form only (in host-bundle mode
/// it is the host's word): a recordable full ref name, or none with the
/// opt-in, else `unreferenced_commit`.
pub fn from_host(
    name: Option<&str>,
    commit: &str,
    allow_unreferenced: bool,
) -> Result<SourceRef, BuildError> {
    match name {
        Some(n) if is_recordable_ref(n) => Ok(SourceRef::Ref(n.to_string())),
        Some(n) => Err(BuildError::BadSourceRef(n.chars().take(200).collect())),
        None if allow_unreferenced => Ok(SourceRef::Unreferenced),
        None => Err(BuildError::UnreferencedCommit(commit.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chooses_requested_then_default_then_first() {
        let all = refs(&[
            "refs/heads/dev",
            "refs/heads/main",
            "refs/tags/main",
            "refs/tags/v1",
        ]);
        let main = Some("refs/heads/main");
        assert_eq!(
            choose(&all, Some("v1"), main).as_deref(),
            Some("refs/tags/v1")
        );
        assert_eq!(
            choose(&all, Some("main"), None).as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(
            choose(&all, Some("refs/tags/main"), main).as_deref(),
            Some("refs/tags/main")
        );
        // A requested ref that does not contain the commit falls through.
        assert_eq!(choose(&all, Some("gone"), main).as_deref(), main);
        assert_eq!(
            choose(&all, None, Some("refs/heads/other")).as_deref(),
            Some("refs/heads/dev")
        );
        assert_eq!(
            choose(&refs(&["refs/tags/v1"]), None, main).as_deref(),
            Some("refs/tags/v1")
        );
        assert_eq!(choose(&[], Some("main"), main), None);
    }

    #[test]
    fn host_refs_are_checked_for_form() {
        let c = "a".repeat(40);
        assert_eq!(
            from_host(Some("refs/tags/v1"), &c, false).unwrap(),
            SourceRef::Ref("refs/tags/v1".into())
        );
        for bad in ["main", "refs/pull/1/head", "refs/heads/a b", "refs/heads/"] {
            assert_eq!(
                from_host(Some(bad), &c, true).unwrap_err().code(),
                "bad_source_ref"
            );
        }
        assert_eq!(
            from_host(None, &c, false).unwrap_err().code(),
            "unreferenced_commit"
        );
        assert_eq!(from_host(None, &c, true).unwrap(), SourceRef::Unreferenced);
    }
}
