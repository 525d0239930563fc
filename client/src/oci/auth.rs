//! Anonymous bearer tokens, as registries hand them out (the distribution
//! token flow that Docker Hub, ghcr.io and CNCF Distribution's `token`
//! auth use): a 401 with `WWW-Authenticate: Bearer realm="...",
//! service="...",scope="..."` is answered by `GET realm?service=&scope=`,
//! whose JSON `token` (or `access_token`) is then sent as `Authorization:
//! Bearer`. Without [`Credentials`] this gets what the registry grants
//! anonymously (public pulls); with them (a `USER:SECRET` file, e.g. a
//! ghcr.io token) they go to the realm as HTTP Basic, and to a registry
//! that asks for Basic itself, only over HTTPS or to a loopback host.

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Url;

use super::OciError;
use crate::bounded::read_bounded;

/// Largest token answer read.
const MAX_TOKEN_ANSWER: u64 = 64 << 10;

/// Registry credentials, `USER:SECRET`. Never printed.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:<redacted>)", self.user)
    }
}

impl Credentials {
    /// Parses the first line of a credentials file, `USER:SECRET`.
    pub fn parse(text: &str) -> Result<Credentials, OciError> {
        let line = text.lines().next().unwrap_or_default().trim();
        match line.split_once(':') {
            Some((u, s))
                if !u.is_empty() && !s.is_empty() && line.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Credentials {
                    user: u.into(),
                    secret: s.into(),
                })
            }
            _ => Err(OciError::Credentials(
                "the first line is not USER:SECRET (printable ASCII, no spaces)".into(),
            )),
        }
    }

    /// Adds HTTP Basic authorization to `req`.
    pub(super) fn apply(&self, req: RequestBuilder) -> RequestBuilder {
        req.basic_auth(&self.user, Some(&self.secret))
    }
}

/// Whether credentials may go to `url`: HTTPS, or HTTP to a loopback host.
pub(super) fn may_send_credentials(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// A `Bearer` challenge's parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Parses `Bearer k="v",k2="v2"`; `None` for other schemes or no realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service, mut scope) = (None, None, None);
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => v.extend(chars.next()),
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect()
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        service,
        scope,
    })
}

/// Asks the challenge's realm for a token, with `credentials` if given.
pub fn fetch_token(
    http: &Client,
    challenge: &Challenge,
    credentials: Option<&Credentials>,
) -> Result<String, OciError> {
    let mut url = Url::parse(&challenge.realm).map_err(|e| OciError::Transport {
        url: challenge.realm.clone(),
        reason: format!("token realm: {e}"),
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(OciError::Transport {
            url: challenge.realm.clone(),
            reason: "token realm is not http(s)".into(),
        });
    }
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &challenge.service {
            q.append_pair("service", s);
        }
        if let Some(s) = &challenge.scope {
            q.append_pair("scope", s);
        }
    }
    let url_text = url.to_string();
    let transport = |reason: String| OciError::Transport {
        url: url_text.clone(),
        reason,
    };
    let mut req = http.get(url.clone());
    if let Some(c) = credentials {
        if !may_send_credentials(&url) {
            return Err(OciError::Credentials(format!(
                "the token realm {url_text} is neither HTTPS nor loopback; credentials not sent"
            )));
        }
        req = c.apply(req);
    }
    let resp = req.send().map_err(|e| transport(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(OciError::Status {
            url: url_text.clone(),
            status: resp.status().as_u16(),
            detail: " (token realm)".into(),
        });
    }
    let body = read_bounded(resp, MAX_TOKEN_ANSWER)
        .map_err(|e| transport(format!("token answer: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| transport(format!("token answer: {e}")))?;
    v["token"]
        .as_str()
        .or(v["access_token"].as_str())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .ok_or_else(|| transport("token answer has no usable token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:library/ubuntu:pull,push")
        );
        let c = parse_challenge(r#"bearer realm="r""#).unwrap();
        assert_eq!((c.service, c.scope), (None, None));
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
        assert!(parse_challenge(r#"Bearer service="x""#).is_none());
        assert!(parse_challenge("Bearer").is_none());
        assert!(parse_challenge("Bearer realm").is_none());
    }

    #[test]
    fn credentials_and_where_they_may_go() {
        assert!(Credentials::parse("bot:ghp_x\n").is_ok());
        for bad in ["", "bot", ":x", "bot:", "b t:x"] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", Credentials::parse("u:s3cret").unwrap()).contains("s3cret"));
        let ok = |u: &str| may_send_credentials(&Url::parse(u).unwrap());
        assert!(ok("https://ghcr.io/token"));
        assert!(ok("http://127.0.0.1:5000/token"));
        assert!(ok("http://[::1]:5000/token"));
        assert!(!ok("http://ghcr.io/token"));
        assert!(!ok("http://10.0.0.1/token"));
    }
}
