//! `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, the registry always explicit.

use super::{is_sha256_digest, OciError};

/// A parsed registry reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, as given.
    pub registry: String,
    /// The repository name (distribution-spec `<name>`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Longest reference accepted (distribution-spec bounds a name's
/// `<registry>/<name>` to 255 characters; a tag and a digest add ~200).
const MAX_REFERENCE_LEN: usize = 512;

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, OciError> {
        let bad = |why: &'static str| OciError::Reference(text.chars().take(80).collect(), why);
        if text.len() > MAX_REFERENCE_LEN {
            return Err(bad("too long"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                if !is_sha256_digest(d) {
                    return Err(bad("the digest is not sha256: and 64 lowercase hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("give REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST"))?;
        if !valid_registry(registry) {
            return Err(bad("the registry is not host[:port]"));
        }
        // As docker does: a first component without '.' or ':' that is not
        // localhost is a path component, and the registry is missing.
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad(
                "name the registry first (a host with '.' or ':', or localhost)",
            ));
        }
        // A ':' after the last '/' starts the tag.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        if !valid_repository(repository) {
            return Err(bad(
                "the repository is not lowercase path components [a-z0-9] joined by . _ __ or -",
            ));
        }
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad("the tag is not [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad("give a :TAG or an @DIGEST"));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Plain HTTP for loopback registries, HTTPS for all others.
    pub fn base_url(&self) -> String {
        let host = match self.registry.find(']') {
            Some(end) if self.registry.starts_with('[') => &self.registry[..=end],
            _ => self.registry.split(':').next().unwrap_or_default(),
        };
        let loopback = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}", self.registry)
    }

    /// The tag or digest a manifest GET asks for (the digest when both).
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or_default()
    }
}

fn valid_registry(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// distribution-spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

/// Whether `t` is a tag an OCI reference may carry:
/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (OCI distribution). Such a name is
/// also a valid git tag and GitHub release tag, so the builder admits a
/// pushed tag to publish under only if it passes this.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_digests_and_ports() {
        let r = Reference::parse("127.0.0.1:5000/team/hello:v1.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/hello");
        assert_eq!(r.tag.as_deref(), Some("v1.0"));
        assert_eq!(r.base_url(), "http://127.0.0.1:5000");
        let d = format!("sha256:{}", "0f".repeat(32));
        let r = Reference::parse(&format!("ghcr.io/o/r@{d}")).unwrap();
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.base_url(), "https://ghcr.io");
        assert_eq!(
            Reference::parse("localhost:5000/a:b").unwrap().base_url(),
            "http://localhost:5000"
        );
        assert_eq!(
            Reference::parse("[::1]:5000/a:b").unwrap().base_url(),
            "http://[::1]:5000"
        );
        assert_eq!(
            Reference::parse("127.evil.com/a:b").unwrap().base_url(),
            "https://127.evil.com"
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "hello:v1",
            "r.io/Upper:v1",
            "r.io/a:",
            "r.io/a",
            "r.io/a:-x",
            "r.io/a--:x",
            "r.io/a@sha256:00",
            "r.io/a//b:x",
            "r.io/a___b:x",
            "r.io/../x:y",
            "r e.io/a:b",
            "/a:b",
            "library/ubuntu:latest",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(Reference::parse(&"a".repeat(600)).is_err());
    }
}
