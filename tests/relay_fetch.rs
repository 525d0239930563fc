//! `enclave --source relay`: the enclave clones the repository itself, over
//! the host's CONNECT relay, with TLS checked inside the enclave. The
//! repository is served over HTTPS by `openssl s_server -WWW` (git's dumb
//! HTTP protocol, hence `GIT_SMART_HTTP=0`) with a certificate made for the
//! test. The enclave half runs in its own network namespace (`bwrap
//! --unshare-net`), so the relay is its only way to the server; the host
//! cannot hand it another repository, and a certificate the enclave does
//! not trust stops the build.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use attestlog::bundle::Bundle;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use common::*;
use sha2::{Digest, Sha256};

struct HttpsGit {
    child: Child,
    url: String,
    cert: PathBuf,
}

impl Drop for HttpsGit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert, key).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

/// Serves a bare copy of `repo` at `https://127.0.0.1:PORT/repo.git`.
fn serve_https(repo: &Path, dir: &Path) -> HttpsGit {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    run_ok(
        Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(repo)
            .arg(www.join("repo.git")),
    );
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(www.join("repo.git"))
            .arg("update-server-info"),
    );
    let (cert, key) = certificate(dir, "server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(&www)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "s_server never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    HttpsGit {
        child,
        url: format!("https://127.0.0.1:{port}/repo.git"),
        cert,
    }
}

/// Whether this machine can run the test: openssl, and bwrap allowed to
/// make a network namespace.
fn can_isolate() -> bool {
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !openssl {
        skip("`openssl` is not installed");
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

/// Runs `host` for `repo` at `commit` with a local enclave in its own
/// network namespace. Only the host trusts the server through the
/// environment; the enclave has just its `--tls-roots`.
fn relay_build(
    w: &World,
    name: &str,
    repo: &str,
    commit: &str,
    server_cert: &Path,
    roots: &Path,
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
    let https = serve_https(&w.repo, w.tmp.path());
    let host = relay_build(&w, "relay-out", &https.url, &c1, &https.cert, &https.cert);
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
    assert_eq!(verdict.statement.source.uri, https.url);
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

#[test]
fn untrusted_certificates_and_unauthenticated_sources_are_refused() {
    if !can_isolate() {
        return;
    }
    let Some(w) = World::new() else { return };
    let c1 = w.commit_hello();
    let https = serve_https(&w.repo, w.tmp.path());
    let (stranger, _) = certificate(w.tmp.path(), "stranger");

    let untrusted = relay_build(&w, "untrusted", &https.url, &c1, &https.cert, &stranger);
    assert_fails_with(&untrusted, "missing_repo");
    assert!(
        stderr(&untrusted)
            .to_ascii_lowercase()
            .contains("certificate"),
        "{}",
        stderr(&untrusted)
    );

    let local = w.repo.display().to_string();
    let plain = relay_build(&w, "plain", &local, &c1, &https.cert, &https.cert);
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
    let https = serve_https(&repo, tmp.path());
    let base = https.url.trim_end_matches("/repo.git");
    let err = enclave_builder::submit::post_entry_http(base, b"entry").unwrap_err();
    assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
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
    let https = serve_https(&w.repo, w.tmp.path());

    // The test is the host: the channel, the real CONNECT relay, and a
    // real enclave half in its own network namespace.
    let run = |name: &str, commit: &str, claimed_ref: &str| -> JobResult {
        let sock = w.tmp.path().join(format!("{name}.sock"));
        let ep = Endpoint::Unix(sock.clone());
        let listener = transport::listen(&ep).unwrap();
        let relay = transport::listen(&enclave_builder::relay::endpoint_for(&ep).unwrap()).unwrap();
        std::thread::spawn(move || enclave_builder::relay::serve(relay));
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
            uri: https.url.clone(),
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
