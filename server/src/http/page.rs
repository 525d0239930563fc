//! The explorer page: `server/web/` embedded in the binary and served at `/`
//! and `/assets/<name>`.
//!
//! Contract: the page is static except for one JSON block in `index.html`,
//! the trust configuration it verifies against, taken from the server's own
//! configuration at start: the log's origin and verifier key, the witnesses'
//! cosignature verifier keys and quorum, and the DER of every Nitro root the
//! server trusts. The page never trusts a server-side "valid" flag: it checks
//! the checkpoint, proofs, attestation and bindings itself with these pins
//! (spec/explorer.md). Every answer carries a strict Content-Security-Policy
//! (scripts and styles only from this origin, no inline script, no framing)
//! and `X-Content-Type-Options: nosniff`. Unknown asset names are 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::error::ApiError;
use super::AppState;

const INDEX_HTML: &str = include_str!("../../web/index.html");

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../web/app.js")),
    ("view.js", JS, include_str!("../../web/view.js")),
    ("verify.js", JS, include_str!("../../web/verify.js")),
    ("nitro.js", JS, include_str!("../../web/nitro.js")),
    ("cbor.js", JS, include_str!("../../web/cbor.js")),
    ("der.js", JS, include_str!("../../web/der.js")),
    ("note.js", JS, include_str!("../../web/note.js")),
    ("policy.js", JS, include_str!("../../web/policy.js")),
    ("bytes.js", JS, include_str!("../../web/bytes.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

/// The trust configuration the page pins, as JSON safe inside a
/// `<script type="application/json">` element (no `<`, so no `</script>`).
fn page_config(app: &AppState) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let roots: Vec<String> = app.nitro.roots().ders().map(|d| b64.encode(d)).collect();
    let (witnesses, quorum) = match &app.witnesses {
        Some(w) => (w.keys().map(|k| k.to_text()).collect(), w.quorum()),
        None => (Vec::new(), 0),
    };
    json!({
        "origin": app.origin,
        "log_key": app.verifier_key,
        "witnesses": witnesses,
        "quorum": quorum,
        "roots": roots,
    })
    .to_string()
    .replace('<', "\\u003c")
}

pub async fn index(State(app): State<Arc<AppState>>) -> Response {
    let html = INDEX_HTML.replace("{{CONFIG}}", &page_config(&app));
    (headers("text/html; charset=utf-8"), html).into_response()
}

pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no asset {name:?}")))?;
    Ok((headers(content_type), *body).into_response())
}
