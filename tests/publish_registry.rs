//! Publishing to registries that ask for more than anonymous pushes, with
//! real processes (as `publish.rs`): a CNCF Distribution registry with
//! token auth (ES256 JWTs from a local token server), and webhook builds
//! that publish on tag pushes.
//!
//! Needs git, bwrap, cc and docker-registry (scripts/test.sh installs them).

mod common;
#[path = "publish/registry.rs"]
mod registry;
#[path = "publish/support.rs"]
mod support;
#[path = "publish/token_auth.rs"]
mod token_auth;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;
use registry::LocalRegistry;
use support::*;

/// A registry with token auth (CNCF Distribution verifying ES256 JWTs from
/// a local token server): publishing meets its `Bearer` challenges with a
/// token got with `--oci-credentials-file` (anonymous ones may only pull),
/// and `verify --oci` with anonymous tokens.
#[test]
fn publish_and_verify_through_registry_bearer_tokens() {
    let Some(w) = World::new() else { return };
    let cli =
        target_bin("attestlog").expect("the attestlog binary (cargo test --workspace builds it)");
    let tokens = token_auth::TokenServer::start();
    let root = w.tmp.path().join("token-root.pem");
    std::fs::write(&root, &tokens.root_pem).unwrap();
    let reg = LocalRegistry::start_with(
        w.tmp.path(),
        &format!(
            "  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            tokens.realm,
            token_auth::SERVICE,
            token_auth::ISSUER,
            root.display()
        ),
    );
    // Without a token the registry refuses, with a Bearer challenge.
    let r =
        reqwest::blocking::get(format!("http://{}/v2/e2e/auth/manifests/v1", reg.addr)).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm="));

    let c1 = w.commit_hello();
    let out = w.build(&c1, "out", &[]);
    assert!(out.status.success(), "build: {}", stderr(&out));
    let artifact = w.tmp.path().join("out/hello");
    let oci_ref = format!("{}/e2e/auth:v1", reg.addr);
    // Anonymous tokens may only pull.
    assert_fails_with(
        &publish(&os(&[&"--artifact", &artifact, &"--oci", &oci_ref]), None),
        "oci_unauthorized",
    );
    let creds = w.tmp.path().join("registry.creds");
    std::fs::write(&creds, format!("{}\n", token_auth::PUSHER)).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o640)).unwrap();
    let with_creds = os(&[
        &"--artifact",
        &artifact,
        &"--oci",
        &oci_ref,
        &"--oci-credentials-file",
        &creds,
    ]);
    assert_fails_with(&publish(&with_creds, None), "token_file_mode");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = publish(&with_creds, None);
    assert!(out.status.success(), "publish: {}", stderr(&out));
    let after_push = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after_push > 0, "no token was asked for");
    let policy = w.policy("good.toml", &w.pcrs(), &w.server.key, false);
    let out = verify(&cli, &policy, &os(&[&"--oci", &oci_ref, &"--commit", &c1]));
    assert!(out.status.success(), "verify --oci: {}", stderr(&out));
    assert!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) > after_push);
}

/// Webhook builds publish on tag pushes: a signed tag push builds the tagged
/// commit within the tag and publishes it to REGISTRY/REPO:<tag>; a branch
/// push only builds. A tag in --oci-ref stops the host before it serves.
#[test]
fn webhook_tag_pushes_publish_under_the_tag() {
    use common::webhook::{next_line_with, post, sign, webhook_url, SECRET};
    use std::io::{BufRead, BufReader};

    let Some(w) = World::new() else { return };
    let cli =
        target_bin("attestlog").expect("the attestlog binary (cargo test --workspace builds it)");
    let reg = LocalRegistry::start(w.tmp.path());
    let c1 = w.commit_hello();
    git(&w.repo, &["tag", "v1.0", &c1]);
    let secret_file = w.tmp.path().join("webhook.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let sock = w.tmp.path().join("hook.sock");
    let out = w.tmp.path().join("hook-out");
    let image = format!("{}/e2e/hook", reg.addr);
    let host = |oci_ref: &str, extra: &[&str]| {
        let mut cmd = Command::new(builder_bin());
        cmd.arg("host")
            .arg("--listen-unix")
            .arg(&sock)
            .args(["--log", &w.server.url, "--out"])
            .arg(&out)
            .args(["--webhook-listen", "127.0.0.1:0", "--webhook-secret-file"])
            .arg(&secret_file)
            .args(["--publish", "oci", "--oci-ref", oci_ref])
            .args(extra)
            .arg("--")
            .args(w.enclave_argv(&sock));
        cmd
    };
    let bad = host(&format!("{image}:v1"), &[]).output().unwrap();
    assert_fails_with(&bad, "publish_target");
    // The pushed tag is the release tag: a fixed one is refused too.
    let bad = host(&image, &["--release-tag", "v9"]).output().unwrap();
    assert_fails_with(&bad, "publish_target");
    assert!(!out.exists(), "a refused start built something");

    let mut child = host(&image, &[]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let hook = webhook_url(&mut lines);
    let repo = w.repo.display().to_string();
    let deliver = |body: serde_json::Value| {
        let body = body.to_string();
        let (status, answer) = post(&hook, "push", body.as_bytes(), &sign(body.as_bytes()));
        assert_eq!(status, 202, "{answer}");
    };
    deliver(serde_json::json!({"ref": "refs/heads/main", "after": c1,
        "repository": {"clone_url": repo}}));
    deliver(serde_json::json!({"ref": "refs/tags/v1.0", "after": c1,
        "head_commit": {"id": c1}, "repository": {"clone_url": repo}}));
    let prefixes = ["built ", "build of ", "published ", "publish of "];
    let said: Vec<String> = (0..3)
        .map(|_| next_line_with(&mut lines, &prefixes))
        .collect();
    assert_eq!(
        said,
        [
            format!("built {repo} {c1} -> log index 0"),
            format!("built {repo} {c1} -> log index 1"),
            format!("published {repo} tag v1.0"),
        ]
    );
    let _ = child.kill();
    let _ = child.wait();

    let policy = w.policy("good.toml", &w.enclave_pcrs(), &w.server.key, false);
    let tagged = format!("{image}:v1.0");
    let ok = verify(&cli, &policy, &os(&[&"--oci", &tagged, &"--commit", &c1]));
    assert!(ok.status.success(), "verify --oci: {}", stderr(&ok));
    assert!(
        stdout(&ok).contains("contained in refs/tags/v1.0"),
        "{}",
        stdout(&ok)
    );
}
