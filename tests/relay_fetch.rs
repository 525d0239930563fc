//! `enclave --source relay`: the enclave clones the repository itself, over
//! the host's CONNECT relay, with TLS checked inside the enclave. The
//! repository is served over HTTPS by `openssl s_server -WWW` (git's dumb
//! HTTP protocol, hence `GIT_SMART_HTTP=0`) with a certificate made for the
//! test, on a loopback port the relay dials only because the host is told
//! `--relay-allow 127.0.0.1:PORT`. The enclave half runs in its own network
//! namespace (`bwrap --unshare-net`), so the relay is its only way to the
//! server; the host cannot hand it another repository, and a certificate
//! the enclave does not trust stops the build.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use attestlog::bundle::Bundle;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use common::https::{certificate, have_openssl, HttpsGit};
use common::*;
use sha2::{Digest, Sha256};

/// Serves `repo` as `repo.git` over HTTPS: (server, URL).
fn serve_https(repo: &Path, dir: &Path) -> (HttpsGit, String) {
    let https = HttpsGit::start(dir);
    let url = https.publish(repo, "repo");
    (https, url)
}

/// Whether this machine can run the test: openssl, and bwrap allowed to
/// make a network namespace.
fn can_isolate() -> bool {
    if !have_openssl() {
        return false;
    }
    let netns = Command::new("bwrap")
        .args(["--dev-bind", "/", "/", "--unshare-net", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !netns {
        skip("bwrap cannot make a network namespace here");
    }
    netns
}

/// The enclave's measured arguments for relay mode with `roots`.
fn relay_args(w: &World, roots: &Path) -> Vec<String> {
    let mut args = w.measured_args();
    args.extend(["--source".into(), "relay".into(), "--tls-roots".into()]);
    args.push(roots.display().to_string());
    args
}

/// The host's `--relay-allow` for the test server at `url`.
fn allow(url: &str) -> Vec<String> {
    let port = url
        .trim_start_matches("https://127.0.0.1:")
        .split('/')
        .next()
        .unwrap();
    vec!["--relay-allow".into(), format!("127.0.0.1:{port}")]
}

/// Runs `host` (with `host_args`) for `repo` at `commit` with a local
/// enclave in its own network namespace. Only the host trusts the server
/// through the environment; the enclave has just its `--tls-roots`.
#[allow(clippy::too_many_arguments)]
fn relay_build(
    w: &World,
    name: &str,
    repo: &str,
    commit: &str,
    server_cert: &Path,
    roots: &Path,
    host_args: &[String],
) -> Output {
    let sock = w.tmp.path().join(format!("{name}.sock"));
    let out = w.tmp.path().join(name);
    let mut enclave: Vec<String> = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--"]
        .iter()
        .chain(&["env", "-u", "GIT_SSL_CAINFO", "GIT_SMART_HTTP=0"])
        .map(|s| s.to_string())
        .collect();
    enclave.push(builder_bin().display().to_string());
    enclave.extend(["enclave".into(), "--connect-unix".into()]);
    enclave.push(sock.display().to_string());
    enclave.extend(["--nsm".into(), "simulated".into(), "--dev-ca".into()]);
    enclave.push(w.ca.display().to_string());
    enclave.extend(relay_args(w, roots));
    Command::new(builder_bin())
        .arg("host")
        .arg("--listen-unix")
        .arg(&sock)
        .args([
            "--log",
            &w.server.url,
            "--repo",
            repo,
            "--commit",
            commit,
            "--out",
        ])
        .arg(&out)
        .args(host_args)
        .arg("--")
        .args(enclave)
        .env("GIT_SSL_CAINFO", server_cert)
        .env("GIT_SMART_HTTP", "0")
        .output()
        .unwrap()
}

#[test]
fn the_enclave_fetches_its_source_over_the_relay_with_tls() {
    if !can_isolate() {
        return;
    }
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let (https, url) = serve_https(&w.repo, w.tmp.path());
    let host = relay_build(
        &w,
        "relay-out",
        &url,
        &c1,
        &https.cert,
        &https.cert,
        &allow(&url),
    );
    assert!(host.status.success(), "host: {}", stderr(&host));

    let out = w.tmp.path().join("relay-out");
    let artifact = std::fs::read(out.join("hello")).unwrap();
    let bundle = Bundle::parse(&std::fs::read(out.join("hello.attestlog.json")).unwrap()).unwrap();
    let pcrs = w.pcrs_of(&relay_args(&w, &https.cert));
    let policy = w.policy("relay.toml", &pcrs, &w.server.key, false);
    let digest: [u8; 32] = Sha256::digest(&artifact).into();
    let verdict = BundleVerifier::new(Policy::load(&policy).unwrap())
        .expect_commit(&c1)
        .verify(&bundle, &digest)
        .unwrap();
    // The recorded repository is the URL the enclave itself reached, and
    // the ref the branch that repository advertised containing the commit.
    assert_eq!(verdict.statement.source.uri, url);
    assert_eq!(
        verdict.statement.source_ref,
        Some(attestlog::claim::SourceRef::Ref("refs/heads/main".into()))
    );
    // A policy for host-bundle enclaves does not accept it: the mode is measured.
    let other = w.policy("bundle.toml", &w.enclave_pcrs(), &w.server.key, false);
    assert_eq!(
        verify_code(&other, &bundle, &artifact).unwrap_err(),
        "measurement_not_endorsed"
    );
}

/// Without `--relay-allow` the relay dials only port 443 on public
/// addresses: the enclave's fetch of the loopback test server is refused
/// with a 403 (`relay_refused`), the host logs why, and nothing is logged;
/// an allow entry for another port does not open this one.
#[test]
fn the_relay_refuses_loopback_targets_unless_allowed() {
    if !can_isolate() {
        return;
    }
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let (https, url) = serve_https(&w.repo, w.tmp.path());
    let other = vec![
        "--relay-allow".to_string(),
        format!("127.0.0.1:{}", https.port.wrapping_add(1)),
    ];
    for (name, args) in [("no-allow", Vec::new()), ("other-port", other)] {
        let host = relay_build(&w, name, &url, &c1, &https.cert, &https.cert, &args);
        assert_fails_with(&host, "relay_refused");
        let err = stderr(&host);
        assert!(err.contains("403"), "{name}: {err}");
        assert!(
            err.contains(&format!("127.0.0.1:{}", https.port)) && err.contains("port"),
            "{name}: the host names the refused target and why: {err}"
        );
        assert!(!w.tmp.path().join(name).join("hello").exists());
    }
    assert_eq!(tree_size(&w.server.url), 0);
    // The same build with the target allowed goes through.
    let host = relay_build(
        &w,
        "allowed",
        &url,
        &c1,
        &https.cert,
        &https.cert,
        &allow(&url),
    );
    assert!(host.status.success(), "host: {}", stderr(&host));
    assert_eq!(tree_size(&w.server.url), 1);
}

#[test]
fn untrusted_certificates_and_unauthenticated_sources_are_refused() {
    if !can_isolate() {
        return;
    }
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let (https, url) = serve_https(&w.repo, w.tmp.path());
    let (stranger, _) = certificate(w.tmp.path(), "stranger");

    let untrusted = relay_build(
        &w,
        "untrusted",
        &url,
        &c1,
        &https.cert,
        &stranger,
        &allow(&url),
    );
    assert_fails_with(&untrusted, "missing_repo");
    assert!(
        stderr(&untrusted)
            .to_ascii_lowercase()
            .contains("certificate"),
        "{}",
        stderr(&untrusted)
    );

    let local = w.repo.display().to_string();
    let plain = relay_build(
        &w,
        "plain",
        &local,
        &c1,
        &https.cert,
        &https.cert,
        &allow(&url),
    );
    assert_fails_with(&plain, "unauthenticated_source");

    assert_eq!(tree_size(&w.server.url), 0);
    assert!(!w.tmp.path().join("untrusted/hello").exists());
}

/// The host speaks HTTPS to the log, checking the log's certificate against
/// the system's roots: the test server's self-signed one is refused.
#[test]
fn https_logs_are_reached_and_their_certificates_checked() {
    if !can_isolate() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    commit(&repo, &[("README", b"log\n")]);
    let (https, _) = serve_https(&repo, tmp.path());
    let err = enclave_builder::submit::post_entry_http(&https.base, b"entry").unwrap_err();
    assert!(
        err.to_string().to_ascii_lowercase().contains("certificate"),
        "{err}"
    );
}

/// Submodules in relay mode come through the relay too: a relative
/// submodule of the https:// superproject (same server, allowed) is
/// fetched and built; an absolute one on another loopback server the
/// relay was not told about is refused (`relay_refused`, naming the
/// submodule), with nothing logged.
#[test]
fn submodules_are_fetched_through_the_relay_and_its_policy_applies() {
    if !can_isolate() {
        return;
    }
    let Some(w) = World::new() else { return };
    let a = HttpsGit::start(&w.tmp.path().join("a"));
    let b = HttpsGit::start(&w.tmp.path().join("b"));
    // One roots file trusted by the host (environment) and the enclave
    // (--tls-roots): both servers' certificates.
    let roots = w.tmp.path().join("roots.pem");
    let mut pem = std::fs::read(&a.cert).unwrap();
    pem.extend(std::fs::read(&b.cert).unwrap());
    std::fs::write(&roots, pem).unwrap();

    let lib = w.tmp.path().join("lib");
    let lib_commit = commit(&lib, &[("greet.txt", b"hello through the relay\n")]);
    a.publish(&lib, "lib");
    b.publish(&lib, "lib");
    let toml: &[u8] = b"command = \"cp lib/greet.txt out\"\noutputs = [\"out\"]\n";
    let superproject = |name: &str, url: &str| {
        let dir = w.tmp.path().join(name);
        commit(&dir, &[("attestlog-build.toml", toml)]);
        common::https::add_gitlink(&dir, "lib", url, &lib_commit);
        let c = commit(&dir, &[]);
        (a.publish(&dir, name), c)
    };

    let (url, c) = superproject("relative", "../lib.git");
    let host = relay_build(&w, "rel-out", &url, &c, &roots, &roots, &allow(&url));
    assert!(host.status.success(), "host: {}", stderr(&host));
    let out = std::fs::read(w.tmp.path().join("rel-out/out")).unwrap();
    assert_eq!(out, b"hello through the relay\n");
    assert_eq!(tree_size(&w.server.url), 1);

    let (url, c) = superproject("elsewhere", &b.url("lib"));
    let host = relay_build(&w, "else-out", &url, &c, &roots, &roots, &allow(&url));
    assert_fails_with(&host, "relay_refused");
    let err = stderr(&host);
    assert!(err.contains("submodule lib from"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", b.port)), "{err}");
    assert_eq!(tree_size(&w.server.url), 1);
    assert!(!w.tmp.path().join("else-out/out").exists());
}

/// In relay mode the ref is the repository's answer, not the host's: a
/// host that names a branch for a commit only a pull-request ref reaches
/// (as a fork's commit fetched through the parent's URL) is refused with
/// `unreferenced_commit`, and for a commit on `main` the enclave records
/// `refs/heads/main` whatever ref the host names. Nothing is logged for the
/// refused job.
#[test]
fn the_relay_enclave_asks_the_repository_for_the_ref() {
    use enclave_builder::transport::{self, Channel, Endpoint, Job, JobResult, Message};

    if !can_isolate() {
        return;
    }
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    git(&w.repo, &["checkout", "-q", "-b", "fork-work"]);
    let c2 = commit(&w.repo, &[("README", b"fork\n")]);
    git(&w.repo, &["update-ref", "refs/pull/1/head", &c2]);
    git(&w.repo, &["checkout", "-q", "main"]);
    git(&w.repo, &["branch", "-q", "-D", "fork-work"]);
    let (https, url) = serve_https(&w.repo, w.tmp.path());

    // The test is the host: the channel, the real CONNECT relay, and a
    // real enclave half in its own network namespace.
    let run = |name: &str, commit: &str, claimed_ref: &str| -> JobResult {
        let sock = w.tmp.path().join(format!("{name}.sock"));
        let ep = Endpoint::Unix(sock.clone());
        let listener = transport::listen(&ep).unwrap();
        let relay = transport::listen(&enclave_builder::relay::endpoint_for(&ep).unwrap()).unwrap();
        let policy = std::sync::Arc::new(enclave_builder::relay::RelayPolicy {
            allowed: vec![allow(&url)[1].parse().unwrap()],
        });
        std::thread::spawn(move || enclave_builder::relay::serve(relay, policy));
        let mut enclave = Command::new("bwrap")
            .args(["--dev-bind", "/", "/", "--unshare-net", "--"])
            .args(["env", "-u", "GIT_SSL_CAINFO", "GIT_SMART_HTTP=0"])
            .arg(builder_bin())
            .args(["enclave", "--connect-unix"])
            .arg(&sock)
            .args(["--nsm", "simulated", "--dev-ca"])
            .arg(&w.ca)
            .args(relay_args(&w, &https.cert))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stream = transport::accept_within(listener.as_ref(), Duration::from_secs(60))
            .unwrap()
            .expect("the enclave connected");
        transport::set_idle_timeout(stream.as_ref(), Duration::from_secs(120)).unwrap();
        let mut ch = Channel::new(stream);
        ch.send(&Message::Job(Box::new(Job {
            git_bundle: Vec::new(),
            uri: url.clone(),
            commit: commit.to_string(),
            git_ref: None,
            cmd: None,
            outputs: Vec::new(),
            source_ref: Some(claimed_ref.to_string()),
            allow_unreferenced: false,
            timeout_secs: None,
            memory_mb: None,
            submodules: Vec::new(),
        })))
        .unwrap();
        let result = loop {
            match ch.recv().unwrap() {
                Message::LogSubmit { entry } => {
                    let (status, body) =
                        enclave_builder::submit::post_entry_http(&w.server.url, &entry).unwrap();
                    ch.send(&Message::LogAnswer {
                        status,
                        body,
                        error: None,
                    })
                    .unwrap();
                }
                Message::Result(r) => break r,
                other => panic!("unexpected {other:?}"),
            }
        };
        let _ = enclave.wait();
        result
    };

    match run("fork", &c2, "refs/heads/main") {
        JobResult::Err { code, .. } => assert_eq!(code, "unreferenced_commit"),
        JobResult::Ok { .. } => panic!("the enclave built a commit no branch contains"),
    }
    assert_eq!(tree_size(&w.server.url), 0);

    let JobResult::Ok { artifacts, .. } = run("main", &c1, "refs/tags/evil") else {
        panic!("the honest commit did not build")
    };
    let hello = artifacts.iter().find(|a| a.name == "hello").unwrap();
    let bundle = Bundle::parse(&hello.bundle).unwrap();
    let entry = attestlog::claim::Entry::decode(&bundle.entry).unwrap();
    let statement = attestlog::claim::Statement::parse(entry.statement).unwrap();
    assert_eq!(
        statement.source_ref,
        Some(attestlog::claim::SourceRef::Ref("refs/heads/main".into()))
    );
}
