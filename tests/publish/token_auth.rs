//! A token server for CNCF Distribution's `token` auth: a P-256 key and a
//! self-signed certificate (the registry's `rootcertbundle`), and `GET
//! /token?service=&scope=` answering `{"token": <JWT>}` signed ES256 with
//! the certificate in `x5c`. Anonymous requests get `pull` only, as on a
//! public registry; HTTP Basic [`PUSHER`] gets what the scope asks. The
//! registry verifies every token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::extract::Query;
use base64::Engine;
use serde_json::json;

pub const SERVICE: &str = "e2e-registry";
pub const ISSUER: &str = "e2e-token-issuer";
/// `USER:SECRET` that may push.
pub const PUSHER: &str = "pusher:s3cret-push-token";

pub struct TokenServer {
    /// The realm URL (`http://127.0.0.1:PORT/token`).
    pub realm: String,
    /// PEM of the signing certificate, for `rootcertbundle`.
    pub root_pem: String,
    /// Tokens handed out.
    pub issued: Arc<AtomicUsize>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenServer {
    pub fn start() -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec![ISSUER.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let signer = Arc::new(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
                .expect("pkcs8"),
        );
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let issued = Arc::new(AtomicUsize::new(0));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let realm = format!("http://{}/token", std_listener.local_addr().expect("addr"));
        let count = issued.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let app = axum::Router::new().route(
                    "/token",
                    axum::routing::get(
                        move |headers: axum::http::HeaderMap,
                              Query(q): Query<std::collections::HashMap<String, String>>| {
                            let signer = signer.clone();
                            let x5c = x5c.clone();
                            count.fetch_add(1, Ordering::SeqCst);
                            let basic = format!(
                                "Basic {}",
                                base64::engine::general_purpose::STANDARD.encode(PUSHER)
                            );
                            let pusher = headers
                                .get("authorization")
                                .is_some_and(|v| v.as_bytes() == basic.as_bytes());
                            async move {
                                axum::Json(json!({"token": token(&signer, &x5c, &q, pusher)}))
                            }
                        },
                    ),
                );
                axum::serve(listener, app).await.expect("serve");
            });
        });
        TokenServer {
            realm,
            root_pem: cert.pem(),
            issued,
        }
    }
}

/// A JWT granting the `repository:NAME:ACTIONS` scope asked for (only
/// its `pull` unless `pusher`).
fn token(
    signer: &EcdsaKeyPair,
    x5c: &str,
    q: &std::collections::HashMap<String, String>,
    pusher: bool,
) -> String {
    let access: Vec<_> = q
        .get("scope")
        .and_then(|s| {
            let mut parts = s.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .map(|(kind, name, actions)| {
            let granted: Vec<_> = actions
                .split(',')
                .filter(|a| pusher || *a == "pull")
                .collect();
            json!({"type": kind, "name": name, "actions": granted})
        })
        .into_iter()
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = json!({"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300,
        "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()), "access": access});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = signer
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign");
    format!("{signing_input}.{}", b64url(sig.as_ref()))
}
