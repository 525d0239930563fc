//! A local stand-in for GitHub's release REST API that checks every request
//! against the documented contract (docs.github.com/en/rest/releases,
//! API version 2022-11-28) and records each violation:
//!
//! - API and upload requests carry `Authorization: Bearer <token>`, one
//!   `Accept` (`application/vnd.github+json`, or `application/octet-stream`
//!   to download an asset), `X-GitHub-Api-Version: 2022-11-28` and a
//!   `User-Agent`;
//! - `GET /repos/{o}/{r}/releases/tags/{tag}`: 200 or 404;
//!   `POST /repos/{o}/{r}/releases` with a JSON `tag_name`: 201, or 422
//!   `already_exists`; `GET /repos/{o}/{r}/releases/{id}/assets` with
//!   `per_page` <= 100 and `page`; `GET|DELETE /repos/{o}/{r}/releases/assets/{id}`
//!   (a download answers 302 to storage, as GitHub does);
//! - `POST <upload_url>?name=` with `Content-Type` and the exact
//!   `Content-Length`: 201, or 422 `already_exists` for a taken name;
//! - `GET /{o}/{r}/releases/download/{tag}/{name}` (browser_download_url,
//!   no auth): 302 to storage.
//!
//! Faults can be queued (a 502, a 429 with `retry-after`, a 403 with
//! `x-ratelimit-remaining: 0`) and a download can be made to answer other
//! bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const API_VERSION: &str = "2022-11-28";

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    BadGateway,
    RetryAfter,
    RateLimitReset,
}

pub struct Asset {
    pub id: u64,
    pub name: String,
    pub bytes: Vec<u8>,
}

pub struct Release {
    pub id: u64,
    pub tag: String,
    pub assets: Vec<Asset>,
}

#[derive(Default)]
pub struct State {
    pub base: String,
    pub token: String,
    pub owner_repo: String,
    pub releases: Vec<Release>,
    pub next_id: u64,
    pub violations: Vec<String>,
    /// "METHOD /path" of every request.
    pub requests: Vec<String>,
    /// (request prefix, fault) answered once, in order.
    pub faults: VecDeque<(String, Fault)>,
    /// Asset name whose downloads answer these bytes instead.
    pub serve_other: Option<(String, Vec<u8>)>,
    /// An `upload_url` base to hand out instead of this server's.
    pub upload_base: Option<String>,
}

pub struct ContractServer {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl ContractServer {
    pub fn start(owner_repo: &str, token: &str) -> ContractServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", std_listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            base: url.clone(),
            token: token.into(),
            owner_repo: owner_repo.into(),
            next_id: 1,
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let app = axum::Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let st = shared.clone();
                        async move { handle(&st, method, uri, headers, body) }
                    },
                );
                axum::serve(listener, app).await.expect("serve");
            });
        });
        ContractServer { url, state }
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        let st = self.state.lock().unwrap();
        st.requests.iter().filter(|r| r.starts_with(prefix)).count()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

fn already_exists(resource: &str, field: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"message": "Validation Failed",
            "errors": [{"resource": resource, "code": "already_exists", "field": field}]})),
    )
        .into_response()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [("location", to)]).into_response()
}

fn asset_json(st: &State, tag: &str, a: &Asset) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "size": a.bytes.len(),
        "state": "uploaded",
        "content_type": "application/octet-stream",
        "digest": format!("sha256:{}", hex::encode(Sha256::digest(&a.bytes))),
        "url": format!("{}/repos/{}/releases/assets/{}", st.base, st.owner_repo, a.id),
        "browser_download_url": format!("{}/{}/releases/download/{tag}/{}", st.base, st.owner_repo, a.name),
    })
}

fn release_json(st: &State, r: &Release) -> Value {
    json!({
        "id": r.id,
        "tag_name": r.tag,
        "name": r.tag,
        "upload_url": format!(
            "{}/uploads/repos/{}/releases/{}/assets{{?name,label}}",
            st.upload_base.as_deref().unwrap_or(&st.base),
            st.owner_repo,
            r.id
        ),
        "assets": r.assets.iter().map(|a| asset_json(st, &r.tag, a)).collect::<Vec<_>>(),
    })
}

fn query(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// Checks the headers every API and upload request must carry.
fn check_headers(st: &mut State, what: &str, headers: &HeaderMap, accept: &str) -> bool {
    let one = |name: &str| {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok().map(str::to_string),
            _ => None,
        }
    };
    let mut ok = true;
    if one("authorization") != Some(format!("Bearer {}", st.token)) {
        st.violations
            .push(format!("{what}: Authorization is not `Bearer <token>`"));
        ok = false;
    }
    if one("accept").as_deref() != Some(accept) {
        st.violations.push(format!(
            "{what}: Accept is {:?}, not one {accept}",
            one("accept")
        ));
        ok = false;
    }
    if one("x-github-api-version").as_deref() != Some(API_VERSION) {
        st.violations.push(format!(
            "{what}: X-GitHub-Api-Version missing or not {API_VERSION}"
        ));
        ok = false;
    }
    if one("user-agent").is_none_or(|u| u.is_empty()) {
        st.violations.push(format!("{what}: no User-Agent"));
        ok = false;
    }
    ok
}

fn handle(
    st: &Mutex<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = st.lock().unwrap();
    let line = format!("{method} {}", uri.path());
    st.requests.push(line.clone());
    if let Some(pos) = st
        .faults
        .iter()
        .position(|(p, _)| line.starts_with(p.as_str()))
    {
        let (_, fault) = st.faults.remove(pos).unwrap();
        return match fault {
            Fault::BadGateway => error(StatusCode::BAD_GATEWAY, "Server Error"),
            Fault::RetryAfter => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"message": "You have exceeded a secondary rate limit"})),
            )
                .into_response(),
            Fault::RateLimitReset => {
                let reset = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 1;
                (
                    StatusCode::FORBIDDEN,
                    [
                        ("x-ratelimit-remaining", "0".to_string()),
                        ("x-ratelimit-reset", reset.to_string()),
                    ],
                    axum::Json(json!({"message": "API rate limit exceeded"})),
                )
                    .into_response()
            }
        };
    }
    let segs: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let repo_ok = |o: &str, r: &str, st: &State| format!("{o}/{r}") == st.owner_repo;
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["storage", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let found = st
                .releases
                .iter()
                .flat_map(|r| &r.assets)
                .find(|a| a.id == id)
                .map(|a| (a.name.clone(), a.bytes.clone()));
            match found {
                Some((name, bytes)) => match &st.serve_other {
                    Some((n, other)) if *n == name => other.clone().into_response(),
                    _ => bytes.into_response(),
                },
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        ("GET", [o, r, "releases", "download", tag, name]) if repo_ok(o, r, &st) => {
            let id = st
                .releases
                .iter()
                .filter(|rel| rel.tag == *tag)
                .flat_map(|rel| &rel.assets)
                .find(|a| a.name == *name)
                .map(|a| a.id);
            match id {
                Some(id) => redirect(format!("{}/storage/{id}", st.base)),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (_, ["repos", o, r, rest @ ..]) if repo_ok(o, r, &st) => {
            let download = method == Method::GET && matches!(rest, ["releases", "assets", _]);
            let accept = if download {
                "application/octet-stream"
            } else {
                "application/vnd.github+json"
            };
            if !check_headers(&mut st, &line, &headers, accept) {
                return error(StatusCode::UNAUTHORIZED, "Bad credentials");
            }
            api(&mut st, &method, &uri, &headers, &body, rest)
        }
        ("POST", ["uploads", "repos", o, r, "releases", id, "assets"]) if repo_ok(o, r, &st) => {
            if !check_headers(&mut st, &line, &headers, "application/vnd.github+json") {
                return error(StatusCode::UNAUTHORIZED, "Bad credentials");
            }
            upload(&mut st, &uri, &headers, &body, id)
        }
        _ => {
            st.violations
                .push(format!("{line}: not a documented endpoint"));
            error(StatusCode::NOT_FOUND, "Not Found")
        }
    }
}

fn api(
    st: &mut State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    rest: &[&str],
) -> Response {
    match (method.as_str(), rest) {
        ("GET", ["releases", "tags", tag]) => match st.releases.iter().find(|r| r.tag == *tag) {
            Some(r) => axum::Json(release_json(st, r)).into_response(),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        },
        ("POST", ["releases"]) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(tag) = v["tag_name"]
                .as_str()
                .filter(|_| ct.starts_with("application/json"))
            else {
                st.violations
                    .push("create release: body is not JSON with tag_name".into());
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
            };
            if st.releases.iter().any(|r| r.tag == tag) {
                return already_exists("Release", "tag_name");
            }
            let id = st.next_id;
            st.next_id += 1;
            st.releases.push(Release {
                id,
                tag: tag.into(),
                assets: Vec::new(),
            });
            let json = release_json(st, st.releases.last().unwrap());
            (StatusCode::CREATED, axum::Json(json)).into_response()
        }
        ("GET", ["releases", id, "assets"]) => {
            let per_page: usize = query(uri, "per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(30);
            let page: usize = query(uri, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            if per_page > 100 || page == 0 {
                st.violations
                    .push(format!("list assets: per_page {per_page} page {page}"));
            }
            let Some(r) = st.releases.iter().find(|r| r.id.to_string() == *id) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let list: Vec<Value> = r
                .assets
                .iter()
                .skip(per_page * page.saturating_sub(1))
                .take(per_page)
                .map(|a| asset_json(st, &r.tag, a))
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        ("GET", ["releases", "assets", id]) => redirect(format!("{}/storage/{id}", st.base)),
        ("DELETE", ["releases", "assets", id]) => {
            for r in &mut st.releases {
                r.assets.retain(|a| a.id.to_string() != *id);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => {
            st.violations.push(format!(
                "{method} {}: not a documented endpoint",
                uri.path()
            ));
            error(StatusCode::NOT_FOUND, "Not Found")
        }
    }
}

fn upload(st: &mut State, uri: &Uri, headers: &HeaderMap, body: &[u8], id: &str) -> Response {
    let Some(name) = query(uri, "name").filter(|n| !n.is_empty()) else {
        st.violations.push("upload: no name query parameter".into());
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    if headers.get("content-type").is_none() {
        st.violations.push("upload: no Content-Type".into());
    }
    let len = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if len != Some(body.len()) {
        st.violations.push(format!(
            "upload: Content-Length {len:?} for {} bytes",
            body.len()
        ));
    }
    let next = st.next_id;
    let base = st.base.clone();
    let owner_repo = st.owner_repo.clone();
    let Some(r) = st.releases.iter_mut().find(|r| r.id.to_string() == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if r.assets.iter().any(|a| a.name == name) {
        return already_exists("ReleaseAsset", "name");
    }
    r.assets.push(Asset {
        id: next,
        name: name.clone(),
        bytes: body.to_vec(),
    });
    let tag = r.tag.clone();
    st.next_id += 1;
    let tmp = State {
        base,
        owner_repo,
        ..State::default()
    };
    let a = Asset {
        id: next,
        name,
        bytes: body.to_vec(),
    };
    (StatusCode::CREATED, axum::Json(asset_json(&tmp, &tag, &a))).into_response()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
