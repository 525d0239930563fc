//! What a delivery means, without any HTTP: the signature check and the
//! event-to-build rule. Every refusal is a [`WebhookError`] with a stable
//! code.

use attestlog::oci::valid_tag;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{WebhookError, MIN_SECRET_LEN};

/// A build the webhook asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedBuild {
    pub repo: String,
    pub commit: String,
    /// `refs/tags/<name>` for a tag push (the enclave checks the commit is
    /// in it); `None` otherwise.
    pub git_ref: Option<String>,
    pub event: String,
}

impl QueuedBuild {
    /// The pushed tag's name, for a tag push: what a webhook build
    /// publishes under (`--publish`).
    pub fn tag(&self) -> Option<&str> {
        self.git_ref.as_deref()?.strip_prefix("refs/tags/")
    }
}

/// The HMAC key shared with GitHub, at least [`MIN_SECRET_LEN`] bytes.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// The secret from a secret file's bytes: trailing `\n` and `\r` (an
    /// editor's line end) are removed, nothing else; fewer than
    /// [`MIN_SECRET_LEN`] bytes left is refused.
    pub fn from_file_bytes(mut bytes: Vec<u8>) -> Result<Self, WebhookError> {
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.len() < MIN_SECRET_LEN {
            return Err(WebhookError::SecretTooShort(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Checks `X-Hub-Signature-256` against the raw body. The comparison is
/// constant-time (`Mac::verify_slice`).
pub fn verify_signature(
    secret: &Secret,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MalformedSignature(
            "does not start with sha256=",
        ))?;
    let sig = hex::decode(hex_sig).map_err(|_| WebhookError::MalformedSignature("is not hex"))?;
    // HMAC takes a key of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| WebhookError::BadSignature)
}

fn is_zero_commit(c: &str) -> bool {
    !c.is_empty() && c.bytes().all(|b| b == b'0')
}

fn field<'a>(v: &'a Value, path: &[&str], what: &'static str) -> Result<&'a str, WebhookError> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .ok_or(WebhookError::MissingField(what))
}

/// Turns a verified event into a build, if it asks for one.
pub fn parse_event(event: &str, body: &[u8]) -> Result<Option<QueuedBuild>, WebhookError> {
    if event != "push" && event != "workflow_job" {
        return Ok(None);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let repo = || field(&v, &["repository", "clone_url"], "repository.clone_url");
    let mut git_ref = None;
    let commit = match event {
        "push" => {
            let after = field(&v, &["after"], "after")?;
            if is_zero_commit(after) {
                return Ok(None); // a deleted branch or tag: nothing to build
            }
            match v.get("ref").and_then(Value::as_str) {
                Some(r) if r.starts_with("refs/tags/") => {
                    let name = &r["refs/tags/".len()..];
                    if !valid_tag(name) {
                        return Err(WebhookError::InvalidTag(name.to_string()));
                    }
                    git_ref = Some(r.to_string());
                    // For an annotated tag `after` is the tag object; the
                    // tagged commit is `head_commit.id`. The host checks
                    // the commit is in the tag either way.
                    v.get("head_commit")
                        .and_then(|h| h.get("id"))
                        .and_then(Value::as_str)
                        .unwrap_or(after)
                }
                // A branch: the commit id alone is built, the branch may
                // have moved on by the time the host clones.
                _ => after,
            }
        }
        _ => field(&v, &["workflow_job", "head_sha"], "workflow_job.head_sha")?,
    };
    Ok(Some(QueuedBuild {
        repo: repo()?.to_string(),
        commit: commit.to_ascii_lowercase(),
        git_ref,
        event: event.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    // GitHub's documented example for this secret and body.
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secret(s: &[u8]) -> Secret {
        Secret::from_file_bytes(s.to_vec()).unwrap()
    }

    #[test]
    fn signature_good_bad_missing_wrong_prefix() {
        let s = secret(SECRET);
        assert!(verify_signature(&s, BODY, Some(SIG)).is_ok());
        let bad = SIG.replace("757", "758");
        let code = |r: Result<(), WebhookError>| r.unwrap_err().code();
        assert_eq!(
            code(verify_signature(&s, BODY, Some(&bad))),
            "bad_signature"
        );
        let other = secret(b"another secret of 16+ bytes");
        assert_eq!(
            code(verify_signature(&other, BODY, Some(SIG))),
            "bad_signature"
        );
        assert_eq!(
            code(verify_signature(&s, b"Hello, World?", Some(SIG))),
            "bad_signature"
        );
        assert_eq!(code(verify_signature(&s, BODY, None)), "missing_signature");
        let sha1 = SIG.replace("sha256=", "sha1=");
        assert_eq!(
            code(verify_signature(&s, BODY, Some(&sha1))),
            "malformed_signature"
        );
        let bare = SIG.trim_start_matches("sha256=");
        assert_eq!(
            code(verify_signature(&s, BODY, Some(bare))),
            "malformed_signature"
        );
        assert_eq!(
            code(verify_signature(&s, BODY, Some("sha256=zz"))),
            "malformed_signature"
        );
    }

    #[test]
    fn short_and_empty_secrets_are_refused() {
        for bad in [
            &b""[..],
            b"\n",
            b"\r\n",
            b"fifteen bytes!!",
            b"fifteen bytes!!\n\n",
        ] {
            let e = Secret::from_file_bytes(bad.to_vec()).unwrap_err();
            assert_eq!(e.code(), "webhook_secret_too_short", "{bad:?}");
        }
        let ok = Secret::from_file_bytes(b"sixteen bytes!!!\r\n".to_vec()).unwrap();
        assert_eq!(ok.as_bytes(), b"sixteen bytes!!!");
        // Leading and inner whitespace belong to the secret.
        let spaced = Secret::from_file_bytes(b" sixteen bytes!! \n".to_vec()).unwrap();
        assert_eq!(spaced.as_bytes(), b" sixteen bytes!! ");
    }

    #[test]
    fn push_and_workflow_job_queue_builds_other_events_do_not() {
        let push = json!({"ref": "refs/heads/main", "after": "A".repeat(40),
               "repository": {"clone_url": "https://github.com/o/r.git"}});
        let b = parse_event("push", push.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(b.repo, "https://github.com/o/r.git");
        assert_eq!(b.commit, "a".repeat(40));
        let wj = json!({"workflow_job": {"head_sha": "b".repeat(40)},
                        "repository": {"clone_url": "https://github.com/o/r.git"}});
        let b = parse_event("workflow_job", wj.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!((b.commit, b.event), ("b".repeat(40), "workflow_job".into()));
        let deleted = json!({"after": "0".repeat(40), "repository": {"clone_url": "x"}});
        assert_eq!(
            parse_event("push", deleted.to_string().as_bytes()).unwrap(),
            None
        );
        assert_eq!(parse_event("ping", b"not even json").unwrap(), None);
        assert_eq!(b.git_ref, None);
        // A tag push builds the tagged commit (head_commit.id, not the
        // annotated tag object in `after`) within the tag.
        let tag = json!({"ref": "refs/tags/v1.2", "after": "c".repeat(40),
            "head_commit": {"id": "D".repeat(40)},
            "repository": {"clone_url": "https://github.com/o/r.git"}});
        let t = parse_event("push", tag.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(t.commit, "d".repeat(40));
        assert_eq!(t.git_ref.as_deref(), Some("refs/tags/v1.2"));
        assert_eq!(t.tag(), Some("v1.2"));
        for bad in ["", "-x", "a/b", "a b", "t\u{7}", &"x".repeat(129)] {
            let body = json!({"ref": format!("refs/tags/{bad}"), "after": "c".repeat(40),
                "repository": {"clone_url": "x"}});
            let e = parse_event("push", body.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.code(), "invalid_tag", "{bad:?}");
        }
        let e = parse_event("push", b"{").unwrap_err();
        assert_eq!(e.code(), "not_json");
        let e = parse_event("push", br#"{"after": "abc"}"#).unwrap_err();
        assert_eq!(e.code(), "missing_field");
        assert!(e.to_string().contains("repository.clone_url"), "{e}");
    }
}
