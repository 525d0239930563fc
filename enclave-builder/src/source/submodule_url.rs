//! Which transports git may use, and which submodule URLs a build accepts.
//!
//! Contract: only the repository the operator names may be a local path
//! (or `file://`). Every git command runs with `protocol.allow=never` and
//! `https` as the one allowed transport; `file` is added only to the
//! commands that read the operator-named local repository or the enclave's
//! own bundle files ([`protocol_config`]). A submodule URL from
//! `.gitmodules` is accepted only when it is, or resolves to, an
//! `https://` URL ([`resolve`]): `file://`, plain paths, `ext::`, `ssh`,
//! `git://` and `http://` are refused, and a relative URL (`../lib`)
//! resolves against the URL of the repository that declares it, so it is
//! refused when that one is local.

use std::collections::BTreeMap;

/// The only scheme a submodule URL may have: TLS authenticates the server,
/// and a remote server cannot read the builder's local files.
pub const SUBMODULE_SCHEME: &str = "https://";

/// Transports named explicitly as refused, besides `protocol.allow=never`:
/// a per-protocol setting in the user's git configuration would otherwise
/// override the default.
const REFUSED_PROTOCOLS: &[&str] = &["ext", "ssh", "git", "http", "fd"];

/// The `-c key=value` pairs every git command gets. `local` adds `file`,
/// for the one command reading the operator-named local repository (or a
/// bundle file); git hands `-c` settings on to the git processes it starts
/// through `GIT_CONFIG_PARAMETERS`, so those must never recurse into
/// submodules.
pub fn protocol_config(local: bool) -> Vec<String> {
    let mut c = vec![
        "protocol.allow=never".to_string(),
        "protocol.https.allow=always".to_string(),
    ];
    c.extend(
        REFUSED_PROTOCOLS
            .iter()
            .map(|p| format!("protocol.{p}.allow=never")),
    );
    let file = if local { "always" } else { "never" };
    c.push(format!("protocol.file.allow={file}"));
    c
}

/// Whether `repo` (as the operator gave it) is read from the local disk.
pub fn is_local(repo: &str) -> bool {
    repo.starts_with("file://") || !(repo.contains("://") || repo.contains("::"))
}

/// Why a submodule URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmoduleUrlError {
    #[error("{0:?} contains whitespace or control characters")]
    Characters(String),
    #[error("{url:?} is {kind}; submodule URLs must be https://")]
    NotHttps { url: String, kind: &'static str },
    #[error("{0:?} has no host, or carries credentials in it")]
    Host(String),
    #[error(
        "{url:?} is relative to {base:?}, which is not an https:// URL \
         (a local superproject may only have absolute https:// submodules)"
    )]
    RelativeToLocal { url: String, base: String },
    #[error("{url:?} climbs above the host of {base:?}")]
    AboveHost { url: String, base: String },
    #[error("no url in .gitmodules")]
    Missing,
}

/// The absolute URL for the submodule URL `url` declared by the repository
/// at `base`, or why it is refused.
pub fn resolve(base: &str, url: &str) -> Result<String, SubmoduleUrlError> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SubmoduleUrlError::Characters(url.to_string()));
    }
    if url.starts_with("./") || url.starts_with("../") {
        return resolve_relative(base, url);
    }
    check_absolute(url)?;
    Ok(url.to_string())
}

fn check_absolute(url: &str) -> Result<(), SubmoduleUrlError> {
    let Some(rest) = url.strip_prefix(SUBMODULE_SCHEME) else {
        let kind = if url.contains("::") {
            "a remote helper (ext:: and the like)"
        } else if let Some((scheme, _)) = url.split_once("://") {
            match scheme {
                "file" => "a local file:// URL",
                _ => "not https://",
            }
        } else {
            "a local path or an ssh address"
        };
        return Err(SubmoduleUrlError::NotHttps {
            url: url.to_string(),
            kind,
        });
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(SubmoduleUrlError::Host(url.to_string()));
    }
    Ok(())
}

/// git's rule: each leading `./` is dropped, each leading `../` removes
/// the last path component of `base` (a trailing `/` of `base` ignored).
fn resolve_relative(base: &str, url: &str) -> Result<String, SubmoduleUrlError> {
    if check_absolute(base).is_err() {
        return Err(SubmoduleUrlError::RelativeToLocal {
            url: url.to_string(),
            base: base.to_string(),
        });
    }
    let authority_end = SUBMODULE_SCHEME.len()
        + base[SUBMODULE_SCHEME.len()..]
            .find('/')
            .unwrap_or(base.len() - SUBMODULE_SCHEME.len());
    let mut resolved = base.trim_end_matches('/').to_string();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            match resolved.rfind('/') {
                Some(i) if i >= authority_end => resolved.truncate(i),
                _ => {
                    return Err(SubmoduleUrlError::AboveHost {
                        url: url.to_string(),
                        base: base.to_string(),
                    })
                }
            }
            rest = r;
        } else {
            break;
        }
    }
    let joined = format!("{resolved}/{rest}");
    check_absolute(&joined)?;
    Ok(joined)
}

/// Name -> URL from `git config -z --get-regexp 'submodule\..*\.url'`
/// output (`submodule.<name>.url\n<url>\0`).
pub fn parse_module_urls(config: &str) -> BTreeMap<String, String> {
    config
        .split('\0')
        .filter_map(|entry| {
            let (key, url) = entry.trim_start_matches('\n').split_once('\n')?;
            let name = key.strip_prefix("submodule.")?.strip_suffix(".url")?;
            Some((name.to_string(), url.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://git.example:8443/group/repo.git";

    #[test]
    fn absolute_urls_must_be_https() {
        let ok = "https://github.com/a/b.git";
        assert_eq!(resolve("/local/repo", ok).as_deref(), Ok(ok));
        for bad in [
            "file:///home/op/secret",
            "/home/op/secret",
            "secret",
            "ext::sh -c touch% /tmp/pwned",
            "fd::17",
            "ssh://git@github.com/a/b",
            "git@github.com:a/b.git",
            "git://github.com/a/b",
            "http://github.com/a/b",
            "HTTPS://github.com/a/b",
            "https:///a/b",
            "https://user:pw@github.com/a/b",
            "https://github.com/a b",
            "https://github.com/a\nb",
            "-uhttps://x",
        ] {
            assert!(resolve(BASE, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_urls_resolve_like_git_and_only_against_https() {
        assert_eq!(
            resolve(BASE, "../lib.git").unwrap(),
            "https://git.example:8443/group/lib.git"
        );
        assert_eq!(
            resolve(&format!("{BASE}/"), "./sub").unwrap(),
            format!("{BASE}/sub")
        );
        assert_eq!(
            resolve(BASE, "../../other/x").unwrap(),
            "https://git.example:8443/other/x"
        );
        assert_eq!(
            resolve("https://h/repo", "./../lib").unwrap(),
            "https://h/lib"
        );
        assert!(matches!(
            resolve(BASE, "../../../x"),
            Err(SubmoduleUrlError::AboveHost { .. })
        ));
        for local in ["/srv/repo", "file:///srv/repo", "repo", "http://h/repo"] {
            let err = resolve(local, "../lib").unwrap_err();
            assert!(
                matches!(err, SubmoduleUrlError::RelativeToLocal { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("not an https:// URL"), "{err}");
        }
    }

    #[test]
    fn protocol_config_allows_file_only_when_local() {
        let remote = protocol_config(false);
        assert!(remote.contains(&"protocol.allow=never".to_string()));
        assert!(remote.contains(&"protocol.https.allow=always".to_string()));
        assert!(remote.contains(&"protocol.file.allow=never".to_string()));
        assert!(remote.contains(&"protocol.ext.allow=never".to_string()));
        assert!(protocol_config(true).contains(&"protocol.file.allow=always".to_string()));
        assert!(is_local("/srv/repo") && is_local("file:///srv/repo") && is_local("repo"));
        assert!(!is_local("https://h/r") && !is_local("ext::sh"));
    }

    #[test]
    fn parses_module_urls() {
        let config = "submodule.my.lib.url\n../lib\x00submodule.x.path\np\x00\
                      submodule.inner.url\nhttps://h/i\x00";
        let urls = parse_module_urls(config);
        assert_eq!(urls.get("my.lib").map(String::as_str), Some("../lib"));
        assert_eq!(urls.get("inner").map(String::as_str), Some("https://h/i"));
        assert_eq!(urls.len(), 2);
    }
}
