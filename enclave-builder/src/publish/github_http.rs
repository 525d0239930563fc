//! The HTTP half of [`super::github`]: the documented headers on every
//! request, deadlines, and retries for transport errors, 5xx answers and
//! rate limits (see the parent module's contract).

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use attestlog::bounded::{read_bounded, BoundedReadError};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::github::{
    GithubTarget, API_TIMEOUT, API_VERSION, FIRST_BACKOFF, MAX_ATTEMPTS, MAX_RATE_WAIT,
    UPLOAD_TIMEOUT,
};
use super::PublishError;

/// Largest JSON answer read (a page of 100 assets is ~300 KiB).
const MAX_JSON: u64 = 8 << 20;
const PER_PAGE: usize = 100;
/// Most asset pages listed (GitHub allows 1000 assets per release).
const MAX_PAGES: usize = 10;

pub(super) struct Github<'a> {
    t: &'a GithubTarget,
    api: Client,
    upload: Client,
}

pub(super) fn answer(what: &str, reason: impl ToString) -> PublishError {
    PublishError::GithubAnswer {
        what: what.into(),
        reason: reason.to_string(),
    }
}

impl<'a> Github<'a> {
    pub(super) fn new(t: &'a GithubTarget) -> Result<Self, PublishError> {
        let client = |timeout| {
            Client::builder()
                .connect_timeout(Duration::from_secs(30))
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::limited(5))
                .build()
                .map_err(|e| PublishError::GithubTransport {
                    what: "client".into(),
                    reason: e.to_string(),
                })
        };
        Ok(Github {
            t,
            api: client(API_TIMEOUT)?,
            upload: client(UPLOAD_TIMEOUT)?,
        })
    }

    /// `<api>/repos/OWNER/REPO/<segments...>`.
    fn repo_url(&self, segments: &[&str]) -> Url {
        let mut url = self.t.api.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty()
                .extend(["repos", &self.t.owner, &self.t.repo])
                .extend(segments);
        }
        url
    }

    fn headers(&self, req: RequestBuilder, accept: &str) -> RequestBuilder {
        req.header(AUTHORIZATION, format!("Bearer {}", self.t.token))
            .header(ACCEPT, accept)
            .header("X-GitHub-Api-Version", API_VERSION)
            .header(
                USER_AGENT,
                concat!("attestlog-enclave-builder/", env!("CARGO_PKG_VERSION")),
            )
    }

    /// Sends with the documented headers, retrying as the module says.
    fn send(
        &self,
        what: &str,
        make: &dyn Fn() -> Result<RequestBuilder, PublishError>,
    ) -> Result<Response, PublishError> {
        self.send_accepting(what, "application/vnd.github+json", make)
    }

    fn send_accepting(
        &self,
        what: &str,
        accept: &str,
        make: &dyn Fn() -> Result<RequestBuilder, PublishError>,
    ) -> Result<Response, PublishError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = self.headers(make()?, accept).send();
            let wait = match &result {
                Err(e) => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(PublishError::GithubTransport {
                            what: what.into(),
                            reason: e.to_string(),
                        });
                    }
                    backoff
                }
                Ok(resp) => match rate_limit_wait(resp) {
                    Some(wait) if wait > MAX_RATE_WAIT => {
                        return Err(PublishError::GithubRateLimited {
                            what: what.into(),
                            wait_secs: wait.as_secs(),
                            max_secs: MAX_RATE_WAIT.as_secs(),
                        })
                    }
                    Some(wait) if attempt < MAX_ATTEMPTS => wait,
                    None if resp.status().is_server_error() && attempt < MAX_ATTEMPTS => backoff,
                    _ => return result.map_err(|_| unreachable_transport(what)),
                },
            };
            tracing::warn!("GitHub {what}: try {attempt} failed; retrying in {wait:?}");
            std::thread::sleep(wait);
            backoff = backoff.saturating_mul(2);
            attempt += 1;
        }
    }

    /// The answer's JSON when its status is one of `ok`.
    fn json(&self, what: &str, resp: Response, ok: &[StatusCode]) -> Result<Value, PublishError> {
        let status = resp.status();
        let body = read_bounded(resp, MAX_JSON).map_err(|e| match e {
            BoundedReadError::Io(e) => PublishError::GithubTransport {
                what: what.into(),
                reason: e.to_string(),
            },
            too_large => answer(what, too_large),
        })?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !ok.contains(&status) {
            let message = value["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            return Err(PublishError::GithubStatus {
                what: what.into(),
                status: status.as_u16(),
                message,
            });
        }
        if value.is_null() {
            return Err(answer(what, "not JSON"));
        }
        Ok(value)
    }

    /// The release for the tag, created (as a published release named
    /// after the tag) when there is none.
    pub(super) fn release(&self) -> Result<Value, PublishError> {
        let by_tag = self.repo_url(&["releases", "tags", &self.t.tag]);
        let get = || -> Result<Option<Value>, PublishError> {
            let resp = self.send("get release by tag", &|| Ok(self.api.get(by_tag.clone())))?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            self.json("get release by tag", resp, &[StatusCode::OK])
                .map(Some)
        };
        if let Some(r) = get()? {
            return Ok(r);
        }
        let body = serde_json::json!({"tag_name": self.t.tag, "name": self.t.tag}).to_string();
        let url = self.repo_url(&["releases"]);
        let resp = self.send("create release", &|| {
            Ok(self
                .api
                .post(url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone()))
        })?;
        if resp.status() == StatusCode::UNPROCESSABLE_ENTITY {
            // Someone created it meanwhile ("already_exists"): use theirs.
            let v = self.json("create release", resp, &[]).err();
            return match get()? {
                Some(r) => Ok(r),
                None => Err(v.unwrap_or_else(|| answer("create release", "422"))),
            };
        }
        self.json("create release", resp, &[StatusCode::CREATED])
    }

    /// The release's `upload_url` without its `{?name,label}` template,
    /// which must be on the uploads base.
    pub(super) fn upload_url(&self, release: &Value) -> Result<Url, PublishError> {
        let raw = release["upload_url"]
            .as_str()
            .ok_or_else(|| answer("release", "no upload_url"))?;
        let plain = raw.split('{').next().unwrap_or_default();
        let url = Url::parse(plain).map_err(|e| answer("release upload_url", e))?;
        let base = self.t.uploads.as_str().trim_end_matches('/');
        if url.origin() != self.t.uploads.origin() || !url.as_str().starts_with(base) {
            return Err(answer(
                "release",
                format!("upload_url {plain:?} is not on the uploads base {base}"),
            ));
        }
        Ok(url)
    }

    /// Every asset of release `id`, page by page.
    pub(super) fn assets(&self, id: u64) -> Result<Vec<Value>, PublishError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = self.repo_url(&["releases", &id.to_string(), "assets"]);
            url.query_pairs_mut()
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair("page", &page.to_string());
            let resp = self.send("list release assets", &|| Ok(self.api.get(url.clone())))?;
            let v = self.json("list release assets", resp, &[StatusCode::OK])?;
            let items = v
                .as_array()
                .ok_or_else(|| answer("list release assets", "not an array"))?;
            all.extend(items.iter().cloned());
            if items.len() < PER_PAGE {
                return Ok(all);
            }
        }
        Ok(all)
    }

    /// Whether an uploaded asset holds exactly these bytes: by its
    /// `digest` when GitHub gives one, else by downloading it.
    pub(super) fn same_bytes(
        &self,
        asset: &Value,
        sha256: &[u8; 32],
        size: u64,
    ) -> Result<bool, PublishError> {
        if asset["size"].as_u64() != Some(size) {
            return Ok(false);
        }
        if let Some(d) = asset["digest"].as_str() {
            return Ok(d == format!("sha256:{}", hex::encode(sha256)));
        }
        let id = asset["id"]
            .as_u64()
            .ok_or_else(|| answer("asset", "no numeric id"))?;
        let url = self.repo_url(&["releases", "assets", &id.to_string()]);
        let resp = self.send_accepting("download asset", "application/octet-stream", &|| {
            Ok(self.upload.get(url.clone()))
        })?;
        if resp.status() != StatusCode::OK {
            return self
                .json("download asset", resp, &[StatusCode::OK])
                .map(|_| false);
        }
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut body = resp.take(size + 1);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| PublishError::GithubTransport {
                    what: "download asset".into(),
                    reason: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            got += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok(got == size && <[u8; 32]>::from(hasher.finalize()) == *sha256)
    }

    pub(super) fn delete_asset(&self, asset: &Value) -> Result<(), PublishError> {
        let id = asset["id"]
            .as_u64()
            .ok_or_else(|| answer("asset", "no numeric id"))?;
        let url = self.repo_url(&["releases", "assets", &id.to_string()]);
        let resp = self.send("delete asset", &|| Ok(self.api.delete(url.clone())))?;
        if resp.status() != StatusCode::NO_CONTENT {
            self.json("delete asset", resp, &[StatusCode::NO_CONTENT])?;
        }
        Ok(())
    }

    pub(super) fn upload(
        &self,
        base: &Url,
        name: &str,
        path: &Path,
        size: u64,
    ) -> Result<(), PublishError> {
        let mut url = base.clone();
        url.query_pairs_mut().append_pair("name", name);
        let resp = self.send("upload asset", &|| {
            let file = std::fs::File::open(path).map_err(|source| PublishError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(self
                .upload
                .post(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size.to_string())
                .body(reqwest::blocking::Body::sized(file, size)))
        })?;
        self.json("upload asset", resp, &[StatusCode::CREATED])?;
        Ok(())
    }
}

fn unreachable_transport(what: &str) -> PublishError {
    PublishError::GithubTransport {
        what: what.into(),
        reason: "request failed".into(),
    }
}

/// How long GitHub asks to wait, when the answer is a rate limit (403 or
/// 429 with `retry-after`, or with `x-ratelimit-remaining: 0`).
fn rate_limit_wait(resp: &Response) -> Option<Duration> {
    let s = resp.status();
    if s != StatusCode::FORBIDDEN && s != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some(0) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let reset = header("x-ratelimit-reset").unwrap_or(now + 60);
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    // GitHub: a secondary limit without headers: wait at least a minute.
    (s == StatusCode::TOO_MANY_REQUESTS).then_some(Duration::from_secs(60))
}
