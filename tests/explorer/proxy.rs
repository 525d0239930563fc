//! A loopback HTTP proxy in front of a real `attestlog-server` that can
//! tamper with one kind of answer, so the browser test sees what a lying or
//! compromised server would send: a changed entry, a forged checkpoint
//! signature, a wrong inclusion proof, or a page that pins other roots.
//! One request per connection (`Connection: close`), GET only.

#![allow(dead_code)] // each test binary uses a subset of the tampering modes

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// One hex digit of the first SHA-256 in the statement of every raw entry.
    Entry,
    /// One byte of the log's signature on `/checkpoint`.
    CheckpointSignature,
    /// One byte of the last signature line's signature on `/checkpoint` (a
    /// witness's cosignature when the log has witnesses).
    Cosignature,
    /// The last signature line of `/checkpoint` removed.
    DropCosignature,
    /// One byte of the first inclusion-proof hash (or an extra hash).
    InclusionProof,
    /// The page pins only the first configured root (AWS's), not the dev CA.
    Roots,
}

pub struct Proxy {
    pub url: String,
    pub mode: Arc<Mutex<Tamper>>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mode = Arc::new(Mutex::new(Tamper::None));
        let upstream = upstream.to_string();
        let m = Arc::clone(&mode);
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            for conn in listener.incoming().flatten() {
                let (http, upstream, m) = (http.clone(), upstream.clone(), Arc::clone(&m));
                std::thread::spawn(move || {
                    let _ = serve(conn, &http, &upstream, *m.lock().expect("mode"));
                });
            }
        });
        Proxy { url, mode }
    }

    pub fn set(&self, tamper: Tamper) {
        *self.mode.lock().expect("mode") = tamper;
    }
}

fn serve(
    mut conn: TcpStream,
    http: &reqwest::blocking::Client,
    upstream: &str,
    tamper: Tamper,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let res = http
        .get(format!("{upstream}{path}"))
        .send()
        .map_err(std::io::Error::other)?;
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = res.bytes().map_err(std::io::Error::other)?.to_vec();
    if status == 200 {
        body = tampered(tamper, &path, body);
    }
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(csp) = csp {
        head.push_str(&format!("content-security-policy: {csp}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(&body)
}

fn tampered(tamper: Tamper, path: &str, mut body: Vec<u8>) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match tamper {
        Tamper::Entry if path.starts_with("/v1/entries/") && !path.contains('?') => {
            let at = find(&body, b"\"sha256\":\"").expect("entry has a subject digest") + 10;
            body[at] = if body[at] == b'0' { b'1' } else { b'0' };
            body
        }
        Tamper::CheckpointSignature | Tamper::Cosignature | Tamper::DropCosignature
            if path == "/checkpoint" =>
        {
            let text = String::from_utf8(body).expect("checkpoint text");
            let (note, sigs) = text.split_once("\n\n").expect("signed note");
            let mut lines: Vec<String> = sigs.lines().map(str::to_string).collect();
            if tamper == Tamper::DropCosignature {
                lines.pop();
            } else {
                let at = if tamper == Tamper::Cosignature {
                    lines.len() - 1
                } else {
                    0
                };
                let (prefix, sig) = lines[at].rsplit_once(' ').expect("signature line");
                let mut raw = b64.decode(sig).expect("signature base64");
                let last = raw.len() - 1;
                raw[last] ^= 1;
                lines[at] = format!("{prefix} {}", b64.encode(raw));
            }
            format!("{note}\n\n{}\n", lines.join("\n")).into_bytes()
        }
        Tamper::InclusionProof if path.starts_with("/v1/proof/inclusion") => {
            let mut v: serde_json::Value = serde_json::from_slice(&body).expect("proof json");
            let proof = v["proof"].as_array_mut().expect("proof array");
            match proof.first_mut() {
                Some(h) => {
                    let mut raw = b64.decode(h.as_str().expect("hash")).expect("base64");
                    raw[0] ^= 1;
                    *h = b64.encode(raw).into();
                }
                None => proof.push(b64.encode([7u8; 32]).into()),
            }
            serde_json::to_vec(&v).expect("json")
        }
        Tamper::Roots if path == "/" || path.starts_with("/#") || path.starts_with("/?") => {
            let html = String::from_utf8(body).expect("html");
            let start = html.find("id=\"config\">").expect("config") + 12;
            let end = start + html[start..].find("</script>").expect("config end");
            let mut cfg: serde_json::Value =
                serde_json::from_str(&html[start..end]).expect("config json");
            let roots = cfg["roots"].as_array_mut().expect("roots");
            roots.truncate(1);
            format!("{}{}{}", &html[..start], cfg, &html[end..]).into_bytes()
        }
        _ => body,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
