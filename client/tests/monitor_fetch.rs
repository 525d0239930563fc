//! `attestlog::monitor::fetch::HttpLog` against a real HTTP server on
//! 127.0.0.1 that answers canned responses: gzip is decoded on any
//! resource, unknown codings, oversize bodies (plain, lying or gzip) and
//! corrupt gzip are refused by name, `Accept-Encoding: gzip, identity` is
//! sent, and a deleted partial tile or bundle is read from the full one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use attestlog::monitor::fetch::{HttpLog, MAX_ENTRY_BUNDLE, MAX_TILE};
use attestlog::tlog::tiles::{encode_entry_bundle, TileKind, TilePath};

type Routes = HashMap<String, (u16, Vec<(String, String)>, Vec<u8>)>;

/// Serves `routes` (path -> status, headers, body; 404 otherwise) and
/// records every request's Accept-Encoding.
fn serve(routes: Routes) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("accept-encoding:") {
                    seen2.lock().unwrap().push(v.trim().to_string());
                }
            }
            let (status, headers, body) =
                routes
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, vec![], b"no".to_vec()));
            let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
            let mut has_len = false;
            for (k, v) in &headers {
                // "X-Close-Delimited" or a length given: no Content-Length
                // added, the body ends when the connection closes.
                has_len |= k.eq_ignore_ascii_case("content-length")
                    || k.eq_ignore_ascii_case("x-close-delimited");
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            if !has_len {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (url, seen)
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn route(
    status: u16,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    (
        status,
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body,
    )
}

#[test]
fn encodings_limits_and_fallbacks() {
    let tile: Vec<u8> = (0..MAX_TILE).map(|i| i as u8).collect();
    let entries: Vec<Vec<u8>> = (0..256u32)
        .map(|i| vec![i as u8; (i % 7) as usize])
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let bundle = encode_entry_bundle(&refs).unwrap();
    let gzip = [("Content-Encoding", "gzip")];
    let mut routes = Routes::new();
    routes.insert("/plain".into(), route(200, &[], b"hello".to_vec()));
    routes.insert("/gz".into(), route(200, &gzip, gz(b"hello")));
    routes.insert(
        "/xgz".into(),
        route(200, &[("Content-Encoding", "x-gzip")], gz(b"hello")),
    );
    routes.insert(
        "/identity".into(),
        route(200, &[("Content-Encoding", "identity")], b"hi".to_vec()),
    );
    routes.insert(
        "/br".into(),
        route(200, &[("Content-Encoding", "br")], b"hello".to_vec()),
    );
    routes.insert(
        "/badgz".into(),
        route(200, &gzip, b"\x1f\x8bnot gzip".to_vec()),
    );
    routes.insert("/big".into(), route(200, &[], vec![0; MAX_TILE + 1]));
    routes.insert(
        "/bomb".into(),
        route(200, &gzip, gz(&vec![0; MAX_TILE + 1])),
    );
    // Announced too large: refused before the body is read.
    routes.insert(
        "/announced".into(),
        route(200, &[("Content-Length", "20000")], vec![0; 20000]),
    );
    // No length at all, the body runs to the close: read up to the limit.
    routes.insert(
        "/endless".into(),
        route(200, &[("X-Close-Delimited", "1")], vec![0; 4 << 20]),
    );
    routes.insert(
        "/endless-ok".into(),
        route(200, &[("X-Close-Delimited", "1")], b"short".to_vec()),
    );
    routes.insert("/err".into(), route(500, &[], b"oops".to_vec()));
    // Full tile and bundle 000; partial 000.p/7 gone (404).
    routes.insert("/tile/0/000".into(), route(200, &gzip, gz(&tile)));
    routes.insert("/tile/entries/000".into(), route(200, &gzip, gz(&bundle)));
    let (url, seen) = serve(routes);
    let log = HttpLog::new(&url).unwrap();

    assert_eq!(log.get("plain", 5).unwrap(), b"hello");
    assert_eq!(log.get("gz", 5).unwrap(), b"hello");
    assert_eq!(log.get("xgz", 5).unwrap(), b"hello");
    assert_eq!(log.get("identity", 5).unwrap(), b"hi");
    let code = |path: &str, limit: usize| log.get(path, limit).unwrap_err().code();
    assert_eq!(code("br", 5), "fetch_encoding");
    assert_eq!(code("badgz", 100), "fetch_gzip");
    assert_eq!(code("big", MAX_TILE), "fetch_too_large");
    assert_eq!(code("bomb", MAX_TILE), "fetch_too_large");
    assert_eq!(code("announced", MAX_TILE), "fetch_too_large");
    assert_eq!(code("endless", MAX_TILE), "fetch_too_large");
    assert_eq!(log.get("endless-ok", 5).unwrap(), b"short");
    assert_eq!(code("plain", 4), "fetch_too_large");
    assert_eq!(code("err", 5), "fetch_status");
    assert_eq!(code("missing", 5), "fetch_not_found");
    let e = log.get("err", 5).unwrap_err();
    assert!(e.to_string().contains("/err: status 500"), "{e}");

    // Deleted partials are read from the full tile and bundle.
    let partial = |kind| TilePath {
        kind,
        index: 0,
        width: Some(7),
    };
    assert_eq!(
        log.tile(&partial(TileKind::Hashes { level: 0 })).unwrap(),
        &tile[..7 * 32]
    );
    let first7: Vec<&[u8]> = refs[..7].to_vec();
    assert_eq!(
        log.entry_bundle(&partial(TileKind::Entries)).unwrap(),
        encode_entry_bundle(&first7).unwrap()
    );
    assert!(bundle.len() < MAX_ENTRY_BUNDLE);
    // Neither partial nor full: the partial's 404.
    let e = log.tile(&TilePath {
        kind: TileKind::Hashes { level: 1 },
        index: 0,
        width: Some(1),
    });
    let e = e.unwrap_err();
    assert_eq!(e.code(), "fetch_not_found");
    assert!(e.to_string().contains("tile/1/000.p/1"), "{e}");

    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|a| a == "gzip, identity"), "{seen:?}");
}
