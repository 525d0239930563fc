//! The distribution-spec calls attestlog makes, each with a deadline and
//! a size cap, and each answer checked against the digest asked for.

use std::io::Write;
use std::path::Path;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use std::sync::atomic::Ordering;

use super::{is_sha256_digest, sha256_digest, OciError, Reference, MAX_MANIFEST_SIZE};
use crate::download::{self, copy_bounded, DownloadError, Received};

/// One repository of one registry.
pub struct Registry {
    base: String,
    repository: String,
    small: Client,
    large: Client,
    /// The last bearer token the registry's realm gave.
    token: std::sync::Mutex<Option<String>>,
    credentials: Option<super::Credentials>,
    /// The registry asked for HTTP Basic (and credentials may go to it).
    basic: std::sync::atomic::AtomicBool,
}

/// A manifest or index as fetched: its bytes, their digest and the
/// `Content-Type` the registry gave.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

impl Registry {
    pub fn new(reference: &Reference) -> Result<Registry, OciError> {
        let client = |t| {
            download::client(t).map_err(|e| OciError::Transport {
                url: reference.base_url(),
                reason: e.to_string(),
            })
        };
        Ok(Registry {
            base: reference.base_url(),
            repository: reference.repository.clone(),
            small: client(download::API_TIMEOUT)?,
            large: client(download::ARTIFACT_TIMEOUT)?,
            token: std::sync::Mutex::new(None),
            credentials: None,
            basic: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Uses `credentials` for the registry's token realm, or for the
    /// registry itself when it asks for HTTP Basic (`super::auth`).
    pub fn with_credentials(mut self, credentials: Option<super::Credentials>) -> Registry {
        self.credentials = credentials;
        self
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repository)
    }

    /// Sends the request `make` builds, with the bearer token if there is
    /// one; a 401 with a `Bearer` challenge gets a fresh anonymous token
    /// ([`super::auth`]) and one retry.
    fn send(
        &self,
        url: &str,
        make: &dyn Fn() -> Result<RequestBuilder, OciError>,
    ) -> Result<Response, OciError> {
        let transport = |e: reqwest::Error| OciError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let with_token = |req: RequestBuilder| {
            let token = self.token.lock().map(|t| t.clone()).unwrap_or_default();
            match (token, &self.credentials) {
                (Some(t), _) => req.bearer_auth(t),
                (None, Some(c)) if self.basic.load(Ordering::Relaxed) => c.apply(req),
                _ => req,
            }
        };
        let resp = with_token(make()?).send().map_err(transport)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(challenge) = super::auth::parse_challenge(&header) {
            let token =
                super::auth::fetch_token(&self.small, &challenge, self.credentials.as_ref())?;
            if let Ok(mut t) = self.token.lock() {
                *t = Some(token);
            }
        } else if header.to_ascii_lowercase().starts_with("basic")
            && self.credentials.is_some()
            && !self.basic.load(Ordering::Relaxed)
        {
            let base = reqwest::Url::parse(&self.base).map_err(|e| OciError::Transport {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
            if !super::auth::may_send_credentials(&base) {
                return Err(OciError::Credentials(format!(
                    "{} asks for Basic auth but is neither HTTPS nor loopback; credentials not sent",
                    self.base
                )));
            }
            self.basic.store(true, Ordering::Relaxed);
        } else {
            return Ok(resp);
        }
        with_token(make()?).send().map_err(transport)
    }

    /// GETs the manifest or index `reference` (tag or digest); `None` on
    /// 404. A digest reference must match the bytes received.
    pub fn get_manifest(&self, reference: &str) -> Result<Option<Fetched>, OciError> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = format!(
            "{}, {}",
            super::MANIFEST_MEDIA_TYPE,
            super::INDEX_MEDIA_TYPE
        );
        let resp = self.send(&url, &|| {
            Ok(self.small.get(&url).header(ACCEPT, accept.as_str()))
        })?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect(resp, &url, &[StatusCode::OK])?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut bytes = Vec::new();
        copy_bounded(resp, &url, MAX_MANIFEST_SIZE as u64, &mut bytes)
            .map_err(|e| from_download(e, &url))?;
        let digest = sha256_digest(&bytes);
        if is_sha256_digest(reference) && digest != reference {
            return Err(OciError::DigestMismatch {
                url,
                want: reference.to_string(),
                got: digest,
            });
        }
        Ok(Some(Fetched {
            bytes,
            digest,
            media_type,
        }))
    }

    /// GETs blob `digest` of at most `limit` bytes into `sink`; the bytes
    /// must hash to `digest` and number exactly `size`.
    pub fn get_blob(
        &self,
        digest: &str,
        size: u64,
        limit: u64,
        sink: &mut dyn Write,
    ) -> Result<(), OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        if !is_sha256_digest(digest) {
            return Err(OciError::Manifest(format!(
                "blob digest {digest:?} is not sha256"
            )));
        }
        if size > limit {
            return Err(OciError::TooLarge { url, limit });
        }
        let resp = self.send(&url, &|| Ok(self.large.get(&url)))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(OciError::NotFound(url));
        }
        let resp = expect(resp, &url, &[StatusCode::OK])?;
        let Received { sha256, size: got } =
            copy_bounded(resp, &url, size, sink).map_err(|e| from_download(e, &url))?;
        let got_digest = format!("sha256:{}", hex::encode(sha256));
        if got_digest != digest || got != size {
            return Err(OciError::DigestMismatch {
                url,
                want: format!("{digest} ({size} bytes)"),
                got: format!("{got_digest} ({got} bytes)"),
            });
        }
        Ok(())
    }

    /// HEAD of blob `digest`: whether the registry has it.
    pub fn has_blob(&self, digest: &str) -> Result<bool, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send(&url, &|| Ok(self.small.head(&url)))?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => expect(resp, &url, &[StatusCode::OK]).map(|_| false),
        }
    }

    /// Pushes a blob monolithically (POST to open an upload, then PUT with
    /// `?digest=`), unless the registry already has it.
    pub fn push_blob(&self, digest: &str, body: BlobBody<'_>) -> Result<(), OciError> {
        if self.has_blob(digest)? {
            return Ok(());
        }
        let url = self.url("blobs/uploads/");
        let resp = self.send(&url, &|| {
            Ok(self.small.post(&url).header(CONTENT_LENGTH, "0"))
        })?;
        let resp = expect(resp, &url, &[StatusCode::ACCEPTED])?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::Manifest(format!("{url}: 202 without a Location")))?;
        let upload = self.same_origin(location)?;
        let sep = if upload.contains('?') { '&' } else { '?' };
        let put_url = format!("{upload}{sep}digest={digest}");
        let len = match body {
            BlobBody::Bytes(b) => b.len() as u64,
            BlobBody::File(_, len) => len,
        };
        let resp = self.send(&put_url, &|| {
            let body = match body {
                BlobBody::Bytes(b) => reqwest::blocking::Body::from(b.to_vec()),
                BlobBody::File(path, len) => {
                    let f = std::fs::File::open(path).map_err(|source| OciError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                    reqwest::blocking::Body::sized(f, len)
                }
            };
            Ok(self
                .large
                .put(&put_url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len.to_string())
                .body(body))
        })?;
        expect(resp, &put_url, &[StatusCode::CREATED])?;
        Ok(())
    }

    /// PUTs a manifest or index under `reference`; returns the
    /// `OCI-Subject` header (distribution-spec: a registry that processed
    /// `subject` for the referrers API says so with it).
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Option<String>, OciError> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.send(&url, &|| {
            Ok(self
                .small
                .put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(bytes.to_vec()))
        })?;
        let resp = expect(resp, &url, &[StatusCode::CREATED])?;
        let digest = sha256_digest(bytes);
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if d != digest {
                return Err(OciError::DigestMismatch {
                    url,
                    want: digest,
                    got: d.to_string(),
                });
            }
        }
        Ok(resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// GETs the referrers API's index for `digest`; `None` when the
    /// registry answers 404 (no referrers API: use the tag schema).
    pub fn referrers(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        let url = self.url(&format!("referrers/{digest}"));
        let resp = self.send(&url, &|| {
            Ok(self.small.get(&url).header(ACCEPT, super::INDEX_MEDIA_TYPE))
        })?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = expect(resp, &url, &[StatusCode::OK])?;
        let mut bytes = Vec::new();
        copy_bounded(resp, &url, MAX_MANIFEST_SIZE as u64, &mut bytes)
            .map_err(|e| from_download(e, &url))?;
        Ok(Some(bytes))
    }

    /// An upload `Location`, absolute or relative, resolved against the
    /// registry; one on another origin is refused.
    fn same_origin(&self, location: &str) -> Result<String, OciError> {
        if location.starts_with('/') {
            return Ok(format!("{}{location}", self.base));
        }
        if location.starts_with(&format!("{}/", self.base)) {
            return Ok(location.to_string());
        }
        Err(OciError::Manifest(format!(
            "upload Location {location:?} is not on {}",
            self.base
        )))
    }
}

/// A blob to push: bytes in memory, or a file of known length.
#[derive(Clone, Copy)]
pub enum BlobBody<'a> {
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

/// The response when its status is one of `ok`, else the status error with
/// the registry's first error code (distribution-spec error body).
fn expect(resp: Response, url: &str, ok: &[StatusCode]) -> Result<Response, OciError> {
    let status = resp.status();
    if ok.contains(&status) {
        return Ok(resp);
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(OciError::Unauthorized {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    let _ = copy_bounded(resp, url, 4096, &mut body);
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(|c| format!(" ({c})")))
        .unwrap_or_default();
    Err(OciError::Status {
        url: url.to_string(),
        status: status.as_u16(),
        detail: detail.chars().take(80).collect(),
    })
}

fn from_download(e: DownloadError, url: &str) -> OciError {
    match e {
        DownloadError::TooLarge { limit, .. } => OciError::TooLarge {
            url: url.to_string(),
            limit,
        },
        DownloadError::Write { source, .. } => OciError::Io {
            path: url.to_string(),
            source,
        },
        other => OciError::Transport {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}
