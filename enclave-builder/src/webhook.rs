//! GitHub webhook intake for the host: `POST /webhook` with
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, checked
//! in constant time before the body is even parsed. `push` and
//! `workflow_job` events queue a build; anything unsigned or badly signed
//! gets 401 with a JSON error and queues nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// GitHub caps payloads at 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// A build the webhook asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedBuild {
    pub repo: String,
    pub commit: String,
    pub git_ref: Option<String>,
    pub event: String,
}

/// Checks `X-Hub-Signature-256` against the raw body. The comparison is
/// constant-time (`Mac::verify_slice`).
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), String> {
    let header = header.ok_or("missing X-Hub-Signature-256")?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or("X-Hub-Signature-256 does not start with sha256=")?;
    let sig = hex::decode(hex_sig).map_err(|_| "signature is not hex".to_string())?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "unusable secret".to_string())?;
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| "signature does not match".to_string())
}

fn is_zero_commit(c: &str) -> bool {
    !c.is_empty() && c.bytes().all(|b| b == b'0')
}

/// Turns a verified event into a build, if it asks for one.
pub fn parse_event(event: &str, body: &[u8]) -> Result<Option<QueuedBuild>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let repo = || {
        v["repository"]["clone_url"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no repository.clone_url".to_string())
    };
    match event {
        "push" => {
            let after = v["after"].as_str().ok_or("push without `after`")?;
            if is_zero_commit(after) {
                return Ok(None); // a deleted branch: nothing to build
            }
            // The commit id alone is built: the branch may have moved on
            // by the time the host clones.
            Ok(Some(QueuedBuild {
                repo: repo()?,
                commit: after.to_ascii_lowercase(),
                git_ref: None,
                event: "push".into(),
            }))
        }
        "workflow_job" => {
            let sha = v["workflow_job"]["head_sha"]
                .as_str()
                .ok_or("workflow_job without workflow_job.head_sha")?;
            Ok(Some(QueuedBuild {
                repo: repo()?,
                commit: sha.to_ascii_lowercase(),
                git_ref: None,
                event: "workflow_job".into(),
            }))
        }
        _ => Ok(None),
    }
}

/// A request as far as the webhook cares.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub event: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// Decides the answer (status, JSON body) and the build to queue.
pub fn handle(secret: &[u8], req: &Request) -> (u16, Value, Option<QueuedBuild>) {
    if req.path != "/webhook" {
        return (404, json!({"error": "not found"}), None);
    }
    if req.method != "POST" {
        return (405, json!({"error": "POST only"}), None);
    }
    if let Err(e) = verify_signature(secret, req.body, req.signature) {
        return (401, json!({"error": e}), None);
    }
    match parse_event(req.event.unwrap_or(""), req.body) {
        Ok(Some(b)) => {
            let answer = json!({"queued": {"repo": b.repo, "commit": b.commit, "event": b.event}});
            (202, answer, Some(b))
        }
        Ok(None) => (200, json!({"ignored": req.event.unwrap_or("")}), None),
        Err(e) => (400, json!({ "error": e }), None),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Error",
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
}

fn serve_one(mut stream: TcpStream, secret: &[u8], queue: &Sender<QueuedBuild>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut len, mut event, mut signature) = (0usize, None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().unwrap_or(usize::MAX),
                "x-github-event" => event = Some(v),
                "x-hub-signature-256" => signature = Some(v),
                _ => {}
            }
        }
    }
    if len > MAX_BODY {
        respond(&mut stream, 413, &json!({"error": "body too large"}));
        return;
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        respond(&mut stream, 400, &json!({"error": "short body"}));
        return;
    }
    let (status, answer, build) = handle(
        secret,
        &Request {
            method: &method,
            path: &path,
            event: event.as_deref(),
            signature: signature.as_deref(),
            body: &body,
        },
    );
    if let Some(b) = build {
        tracing::info!(repo = %b.repo, commit = %b.commit, event = %b.event, "build queued");
        let _ = queue.send(b);
    }
    respond(&mut stream, status, &answer);
}

/// Serves the webhook on `listener` until the queue's receiver is gone.
pub fn serve(listener: TcpListener, secret: Vec<u8>, queue: Sender<QueuedBuild>) {
    for stream in listener.incoming().flatten() {
        serve_one(stream, &secret, &queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    // GitHub's documented example for this secret and body.
    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn signature_good_bad_missing_wrong_prefix() {
        assert!(verify_signature(SECRET, BODY, Some(SIG)).is_ok());
        let bad = SIG.replace("757", "758");
        assert!(verify_signature(SECRET, BODY, Some(&bad)).is_err());
        assert!(verify_signature(b"other", BODY, Some(SIG)).is_err());
        assert!(verify_signature(SECRET, b"Hello, World?", Some(SIG)).is_err());
        assert!(verify_signature(SECRET, BODY, None).is_err());
        let sha1 = SIG.replace("sha256=", "sha1=");
        assert!(verify_signature(SECRET, BODY, Some(&sha1)).is_err());
        let bare = SIG.trim_start_matches("sha256=");
        assert!(verify_signature(SECRET, BODY, Some(bare)).is_err());
        assert!(verify_signature(SECRET, BODY, Some("sha256=zz")).is_err());
    }

    fn sign(body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn push_body() -> Vec<u8> {
        json!({"ref": "refs/heads/main", "after": "a".repeat(40),
               "repository": {"clone_url": "https://github.com/o/r.git"}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn push_and_workflow_job_queue_builds() {
        let body = push_body();
        let sig = sign(&body);
        let req = Request {
            method: "POST",
            path: "/webhook",
            event: Some("push"),
            signature: Some(&sig),
            body: &body,
        };
        let (status, _, b) = handle(SECRET, &req);
        assert_eq!(status, 202);
        let b = b.unwrap();
        assert_eq!(b.repo, "https://github.com/o/r.git");
        assert_eq!(b.commit, "a".repeat(40));
        let wj = json!({"workflow_job": {"head_sha": "b".repeat(40)},
                        "repository": {"clone_url": "https://github.com/o/r.git"}})
        .to_string()
        .into_bytes();
        let sig = sign(&wj);
        let (status, _, b) = handle(
            SECRET,
            &Request {
                event: Some("workflow_job"),
                signature: Some(&sig),
                body: &wj,
                ..req
            },
        );
        assert_eq!(status, 202);
        assert_eq!(b.unwrap().commit, "b".repeat(40));
    }

    #[test]
    fn unsigned_requests_get_401_and_queue_nothing() {
        let body = push_body();
        for sig in [None, Some("sha256=00"), Some("sha1=abcd")] {
            let (status, answer, b) = handle(
                SECRET,
                &Request {
                    method: "POST",
                    path: "/webhook",
                    event: Some("push"),
                    signature: sig,
                    body: &body,
                },
            );
            assert_eq!(status, 401);
            assert!(answer["error"].is_string());
            assert!(b.is_none());
        }
    }

    #[test]
    fn over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || serve(listener, SECRET.to_vec(), tx));
        let client = reqwest::blocking::Client::new();
        let body = push_body();
        let bad = client
            .post(&url)
            .header("x-github-event", "push")
            .header("x-hub-signature-256", "sha256=00")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(bad.status().as_u16(), 401);
        let v: Value = serde_json::from_str(&bad.text().unwrap()).unwrap();
        assert!(v["error"].is_string());
        let missing = client
            .post(&url)
            .header("x-github-event", "push")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(missing.status().as_u16(), 401);
        assert!(rx.try_recv().is_err());
        let good = client
            .post(&url)
            .header("x-github-event", "push")
            .header("x-hub-signature-256", sign(&body))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(good.status().as_u16(), 202);
        let b = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(b.commit, "a".repeat(40));
    }
}
