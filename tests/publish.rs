//! Publishing where users download, and verifying from there (issue 12),
//! with real processes: a host/enclave build publishes to a real CNCF
//! Distribution registry (`docker-registry`, started here on a loopback
//! port), `enclave-builder publish` uploads to a local server that checks
//! every request against GitHub's documented release API, and `attestlog
//! verify --oci` / `--url` accept what was published. Then a swapped
//! artifact, a swapped bundle, a bundle of another build and a registry or
//! release answering other bytes are each refused with their code, and
//! `--output` is never written for a refused artifact.
//!
//! Needs git, bwrap, cc and docker-registry (scripts/test.sh installs them).

mod common;
#[path = "publish/github_contract.rs"]
mod github_contract;
#[path = "publish/registry.rs"]
mod registry;
#[path = "publish/support.rs"]
mod support;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use attestlog::bundle::Bundle;
use attestlog::oci::Reference;
use common::*;
use github_contract::{ContractServer, Fault};
use registry::LocalRegistry;
use support::*;

const TOKEN: &str = "ghp_test_token_0123456789";
const GH_REPO: &str = "octo/hello";

/// A host and enclave build of `commit` into `<tmp>/<name>`, the host
/// getting `extra` arguments.
fn host_build(w: &World, commit: &str, name: &str, extra: &[&str]) -> Output {
    let (host, enclave) = w.split_build_with(commit, name, extra);
    assert!(
        enclave.status.success() || !host.status.success(),
        "enclave: {}",
        stderr(&enclave)
    );
    host
}

fn github_args(gh: &ContractServer, artifact: &Path) -> Vec<OsString> {
    os(&[
        &"--artifact",
        &artifact,
        &"--github",
        &GH_REPO,
        &"--release-tag",
        &"v1",
        &"--github-api",
        &gh.url,
        &"--github-uploads",
        &format!("{}/uploads", gh.url),
    ])
}

/// `<dir>/hello` with `bytes` and a copy of `bundle` beside it.
fn stage(dir: &Path, bytes: &[u8], bundle: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let a = dir.join("hello");
    std::fs::write(&a, bytes).unwrap();
    std::fs::write(dir.join("hello.attestlog.json"), bundle).unwrap();
    a
}

/// Publishes `artifact` with `bundle` to `REG/<repo>:v1` straight through
/// the library, as someone with push access to the registry could.
fn push_pair(reg: &LocalRegistry, repo: &str, artifact: &Path, bundle: &[u8]) -> String {
    let r = format!("{}/{repo}:v1", reg.addr);
    attestlog::oci::publish(&Reference::parse(&r).unwrap(), artifact, bundle, None).unwrap();
    r
}

fn no_partial_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("attestlog-partial"))
        .collect();
    assert!(left.is_empty(), "staging files left: {left:?}");
}

#[test]
fn publish_to_registry_and_release_then_verify_from_there() {
    let Some(w) = World::new() else { return };
    let cli =
        target_bin("attestlog").expect("the attestlog binary (cargo test --workspace builds it)");
    let reg = LocalRegistry::start(w.tmp.path());
    let gh = ContractServer::start(GH_REPO, TOKEN);
    let c1 = w.commit_hello();
    let policy = w.policy("good.toml", &w.enclave_pcrs(), &w.server.key, false);

    // The host builds in the enclave and publishes to the registry.
    let oci_ref = format!("{}/e2e/hello:v1", reg.addr);
    let host = host_build(
        &w,
        &c1,
        "out1",
        &["--publish", "oci", "--oci-ref", &oci_ref],
    );
    assert!(host.status.success(), "host: {}", stderr(&host));
    let said = stdout(&host);
    // Distribution 2.8 has no referrers API, so the tag schema is the path.
    assert!(said.contains("(referrers tag schema)"), "{said}");
    let artifact = w.tmp.path().join("out1/hello");
    let bundle_path = w.tmp.path().join("out1/hello.attestlog.json");
    let built = std::fs::read(&artifact).unwrap();
    let bundle = std::fs::read(&bundle_path).unwrap();

    // verify --oci accepts by tag and by digest, and writes --output.
    let dl = w.tmp.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let out = verify(
        &cli,
        &policy,
        &os(&[
            &"--oci",
            &oci_ref,
            &"--commit",
            &c1,
            &"--output",
            &dl.join("hello"),
        ]),
    );
    assert!(out.status.success(), "verify --oci: {}", stderr(&out));
    assert_eq!(std::fs::read(dl.join("hello")).unwrap(), built);
    let from = stdout(&out);
    let pinned = from
        .lines()
        .find_map(|l| l.strip_prefix("from: "))
        .and_then(|l| l.split(' ').next())
        .expect("from: line")
        .to_string();
    assert!(
        pinned.starts_with(&format!("{}/e2e/hello@sha256:", reg.addr)),
        "{pinned}"
    );
    let status = reqwest::blocking::get(format!(
        "http://{}/v2/e2e/hello/referrers/{}",
        reg.addr,
        pinned.rsplit('@').next().unwrap()
    ))
    .unwrap()
    .status();
    assert_eq!(
        status.as_u16(),
        404,
        "this registry has a referrers API now: test it"
    );
    let out = verify(&cli, &policy, &os(&[&"--oci", &pinned]));
    assert!(
        out.status.success(),
        "verify --oci by digest: {}",
        stderr(&out)
    );

    // Publishing again is a no-op; other bytes under the tag are refused.
    let again = publish(&os(&[&"--artifact", &artifact, &"--oci", &oci_ref]), None);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("already published"),
        "{}",
        stdout(&again)
    );
    let other = stage(
        &w.tmp.path().join("other"),
        b"not what was built\n",
        &bundle,
    );
    assert_fails_with(
        &publish(&os(&[&"--artifact", &other, &"--oci", &oci_ref]), None),
        "oci_conflict",
    );

    // GitHub: through a rate limit, a secondary rate limit and a 502.
    {
        let mut st = gh.state.lock().unwrap();
        st.faults
            .push_back(("POST /repos/octo/hello/releases".into(), Fault::RetryAfter));
        st.faults.push_back((
            "GET /repos/octo/hello/releases/1/assets".into(),
            Fault::RateLimitReset,
        ));
        st.faults
            .push_back(("POST /uploads/".into(), Fault::BadGateway));
    }
    assert_fails_with(&publish(&github_args(&gh, &artifact), None), "github_token");
    let out = publish(&github_args(&gh, &artifact), Some(TOKEN));
    assert!(out.status.success(), "publish github: {}", stderr(&out));
    assert_eq!(gh.violations(), Vec::<String>::new());
    assert_eq!(gh.count("POST /uploads/"), 3, "one 502, then two uploads");
    assert!(
        gh.state.lock().unwrap().faults.is_empty(),
        "every fault was met"
    );
    // Again, with a token file: nothing uploaded; a readable file refused.
    let token_file = w.tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut with_file = github_args(&gh, &artifact);
    with_file.extend(os(&[&"--github-token-file", &token_file]));
    assert_fails_with(&publish(&with_file, None), "token_file_mode");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = publish(&with_file, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("already in release"),
        "{}",
        stdout(&out)
    );
    assert_eq!(gh.count("POST /uploads/"), 3, "a re-run uploads nothing");
    assert_fails_with(
        &publish(&github_args(&gh, &other), Some(TOKEN)),
        "github_asset_conflict",
    );
    // An upload_url off the uploads base never gets the token.
    let lure = ContractServer::start(GH_REPO, TOKEN);
    gh.state.lock().unwrap().upload_base = Some(lure.url.clone());
    assert_fails_with(
        &publish(&github_args(&gh, &other), Some(TOKEN)),
        "github_answer",
    );
    assert_eq!(
        lure.count(""),
        0,
        "a request went to the foreign upload_url"
    );
    gh.state.lock().unwrap().upload_base = None;
    assert_eq!(gh.violations(), Vec::<String>::new());

    // verify --url accepts the release asset.
    let url = format!("{}/{GH_REPO}/releases/download/v1/hello", gh.url);
    let out = verify(
        &cli,
        &policy,
        &os(&[
            &"--url",
            &url,
            &"--commit",
            &c1,
            &"--output",
            &dl.join("hello2"),
        ]),
    );
    assert!(out.status.success(), "verify --url: {}", stderr(&out));
    assert_eq!(std::fs::read(dl.join("hello2")).unwrap(), built);

    // Publish settings are checked before anything is built.
    let before = tree_size(&w.server.url);
    let bad = w
        .host_command(
            &w.tmp.path().join("never.sock"),
            &c1,
            &w.tmp.path().join("never"),
        )
        .args(["--publish", "github"])
        .output()
        .unwrap();
    assert_fails_with(&bad, "publish_target");
    assert_eq!(
        tree_size(&w.server.url),
        before,
        "built despite bad publish settings"
    );

    // Another build: the same program from a later commit. Its publish
    // fails (nothing listens on port 1): the build is kept, and
    // `enclave-builder publish` publishes it later.
    let c3 = commit(&w.repo, &[("README", &b"docs\n"[..])]);
    let host = host_build(
        &w,
        &c3,
        "out3",
        &["--publish", "oci", "--oci-ref", "127.0.0.1:1/e2e/late:v1"],
    );
    assert_fails_with(&host, "oci_transport");
    assert_eq!(tree_size(&w.server.url), before + 1, "the build was logged");
    let late = format!("{}/e2e/late:v1", reg.addr);
    let out = publish(
        &os(&[
            &"--artifact",
            &w.tmp.path().join("out3/hello"),
            &"--oci",
            &late,
        ]),
        None,
    );
    assert!(out.status.success(), "retry: {}", stderr(&out));
    let out = verify(&cli, &policy, &os(&[&"--oci", &late, &"--commit", &c3]));
    assert!(
        out.status.success(),
        "verify the retried publish: {}",
        stderr(&out)
    );
    let bundle3 = std::fs::read(w.tmp.path().join("out3/hello.attestlog.json")).unwrap();
    assert_eq!(
        std::fs::read(w.tmp.path().join("out3/hello")).unwrap(),
        built
    );
    let mut tampered = Bundle::parse(&bundle).unwrap();
    let last = tampered.entry.len() - 1;
    tampered.entry[last] ^= 1;
    let tampered = tampered.to_json().into_bytes();

    let refused = |args: Vec<OsString>, code: &str| {
        let target = dl.join("refused");
        let mut args = args;
        args.extend(os(&[&"--output", &target]));
        let out = verify(&cli, &policy, &args);
        assert_fails_with(&out, code);
        assert!(!target.exists(), "--output written for a refused artifact");
        no_partial_files(&dl);
    };
    // A swapped artifact: the real bundle attached to other bytes.
    let r = push_pair(&reg, "e2e/swapped-artifact", &other, &bundle);
    refused(os(&[&"--oci", &r]), "artifact_not_in_subjects");
    // A swapped bundle: the real artifact with a tampered bundle.
    let r = push_pair(&reg, "e2e/swapped-bundle", &artifact, &tampered);
    refused(os(&[&"--oci", &r]), "cose_signature");
    // A bundle of another build (a valid claim for another commit).
    let r = push_pair(&reg, "e2e/other-build", &artifact, &bundle3);
    refused(os(&[&"--oci", &r, &"--commit", &c1]), "commit_mismatch");
    // The same three from the release.
    for (name, bytes, code) in [
        (
            "hello",
            &b"not what was built\n"[..],
            "artifact_not_in_subjects",
        ),
        ("hello.attestlog.json", &tampered[..], "cose_signature"),
        ("hello.attestlog.json", &bundle3[..], "commit_mismatch"),
    ] {
        gh.state.lock().unwrap().serve_other = Some((name.into(), bytes.to_vec()));
        refused(os(&[&"--url", &url, &"--commit", &c1]), code);
    }
    gh.state.lock().unwrap().serve_other = None;
    refused(
        os(&[&"--url", &format!("{url}-missing")]),
        "bundle_not_found",
    );
    // No bundle beside the artifact (a plain static server holding only
    // the artifact): refused without --log; with --log the artifact is
    // verified from the log instead.
    let bare = w.tmp.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::write(bare.join("hello"), &built).unwrap();
    let statics = StaticServer::start(&bare);
    let bare_url = format!("{}/hello", statics.url);
    refused(os(&[&"--url", &bare_url]), "bundle_not_found");
    let out = verify(
        &cli,
        &policy,
        &os(&[&"--url", &bare_url, &"--log", &w.server.url]),
    );
    assert!(out.status.success(), "--url with --log: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("verifying from the log") && said.contains("valid: hello"),
        "{said}"
    );
    drop(statics);

    // A registry answering other bytes for the artifact's blob.
    let manifest: serde_json::Value = serde_json::from_slice(
        &reqwest::blocking::Client::new()
            .get(format!("http://{}/v2/e2e/hello/manifests/v1", reg.addr))
            .header("accept", attestlog::oci::MANIFEST_MEDIA_TYPE)
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let mut swapped = built.clone();
    swapped[100] ^= 1;
    std::fs::write(reg.blob_file(layer), &swapped).unwrap();
    refused(os(&[&"--oci", &oci_ref]), "oci_digest_mismatch");
}

/// `python3 -m http.server` over one folder on a free loopback port: a
/// plain static host with no bundle beside the artifact. Stopped on drop.
struct StaticServer {
    child: std::process::Child,
    url: String,
}

impl StaticServer {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (scripts/test.sh installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        StaticServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
