//! The headers a real server process puts on its answers, beyond their
//! bodies: CORS on the read API only (any origin may read a public log),
//! the preflight, and refusals that stay JSON and keep `Allow` on a 405
//! (RFC 9110, 15.5.6). The layers that add them wrap the whole router once
//! (`server/src/http/mod.rs`); this checks nothing was lost on the way.

mod common;

use attestlog::tlog::tiles::MAX_ENTRY_LEN;
use common::*;
use reqwest::blocking::{Client, Response};
use reqwest::Method;
use serde_json::Value;

const ORIGIN: &str = "https://explorer.example";

fn send(client: &Client, method: Method, url: String) -> Response {
    client
        .request(method, url)
        .header("origin", ORIGIN)
        .send()
        .expect("request")
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_string())
}

#[test]
fn reads_are_open_to_any_origin_and_refusals_keep_their_headers() {
    let dir = tempfile::tempdir().expect("tmp");
    let (nsm, root) = dev_nsm(dir.path());
    let server = Server::start(&dir.path().join("data"), &root, &[]);
    let client = Client::new();
    let (status, _) = submit_to(&client, &server.url, &entry(&nsm, 0)).expect("JSON");
    assert_eq!(status, 200);

    // Every read endpoint: any origin, GET and HEAD.
    for path in [
        "checkpoint",
        "tile/0/000.p/1",
        "tile/entries/000.p/1",
        "v1/log",
        "v1/proof/inclusion?index=0&tree_size=1",
        "v1/proof/consistency?first=1&second=1",
        "v1/entries/0",
    ] {
        for method in [Method::GET, Method::HEAD] {
            let resp = send(&client, method.clone(), format!("{}/{path}", server.url));
            assert_eq!(resp.status(), 200, "{method} {path}");
            assert_eq!(
                header(&resp, "access-control-allow-origin").as_deref(),
                Some("*"),
                "{method} {path}"
            );
        }
        // The preflight a page makes before a cross-origin read.
        let resp = client
            .request(Method::OPTIONS, format!("{}/{path}", server.url))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "GET")
            .send()
            .expect("OPTIONS");
        assert_eq!(resp.status(), 200, "preflight {path}");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some("*")
        );
        assert_eq!(
            header(&resp, "access-control-allow-methods").as_deref(),
            Some("GET,HEAD")
        );
        assert!(resp.bytes().expect("body").is_empty());
    }
    // A read that fails is still readable cross-origin (a page shows why).
    let resp = send(&client, Method::GET, format!("{}/v1/entries/9", server.url));
    assert_eq!(resp.status(), 404);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("*")
    );

    // Not the write endpoint, the page, health or metrics.
    for path in ["healthz", "metrics", ""] {
        let resp = send(&client, Method::GET, format!("{}/{path}", server.url));
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(header(&resp, "access-control-allow-origin"), None, "{path}");
    }
    let resp = client
        .post(format!("{}/v1/entries", server.url))
        .header("origin", ORIGIN)
        .header("content-type", "application/octet-stream")
        .body(b"not an entry".to_vec())
        .send()
        .expect("POST");
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "access-control-allow-origin"), None);

    // A wrong method: 405 in the JSON error form, with `Allow`.
    for (method, path, allow) in [
        (Method::POST, "checkpoint", "GET,HEAD"),
        (Method::DELETE, "tile/0/000.p/1", "GET,HEAD"),
        (Method::GET, "v1/entries", "POST"),
    ] {
        let resp = send(&client, method.clone(), format!("{}/{path}", server.url));
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(
            header(&resp, "allow").as_deref(),
            Some(allow),
            "{method} {path}"
        );
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("application/json")
        );
        let body: Value = resp.json().expect("JSON");
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }

    // An unknown path and an oversized body: JSON too, each with its code.
    let resp = send(&client, Method::GET, format!("{}/nope", server.url));
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().expect("JSON")["error"], "not_found");
    let resp = client
        .post(format!("{}/v1/entries", server.url))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; MAX_ENTRY_LEN + 1])
        .send()
        .expect("POST");
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().expect("JSON")["error"], "too_large");
}
