//! Submodules, with real processes: a C program whose headers live in a
//! submodule served over HTTPS on 127.0.0.1 (absolute `https://` URL) and
//! a nested submodule inside it (relative URL, resolved against the
//! submodule's own https:// URL). The one-process build fetches them from
//! their URLs; the split build ships them to the enclave as git bundles
//! keyed by the recorded commit, and the enclave builds with the original
//! repositories gone. A submodule URL that is not (or does not resolve to)
//! https:// is refused before anything is fetched (`submodule_url`), so a
//! `file://` submodule cannot carry another local repository's secret into
//! a build.
//!
//! Needs `git`, `bwrap`, `cc`, `openssl` and the `attestlog-server`
//! binary; without them the tests print why and skip.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use attestlog::bundle::Bundle;
use common::https::{add_gitlink, have_openssl, HttpsGit};
use common::*;
use enclave_builder::hostsplit::{prepare_job, serve_job, HostJob};
use enclave_builder::transport::{Job, SubmoduleBundle, MAX_MESSAGE};
use enclave_builder::BuildError;

/// The host's idle deadline on the enclave channel in these tests.
const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

const MAIN_C: &[u8] =
    b"#include <stdio.h>\n#include \"lib/greet.h\"\n#include \"lib/inner/name.h\"\n\
int main(void){puts(GREETING \" and \" NAME);return 0;}\n";
const GREETING: &str = "hello from lib and inner\n";

/// s_server speaks only git's dumb HTTP protocol. Set once for the whole
/// test binary, before any git runs (the builder's git inherits it).
fn dumb_http() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("GIT_SMART_HTTP", "0"));
}

/// The superproject at `w.repo` (local), `lib` served as `lib.git` and
/// added by its absolute https:// URL, and `inner` served as `inner.git`
/// and added to `lib` as `../inner.git`.
struct Repos {
    https: HttpsGit,
    commit: String,
    lib_url: String,
    lib_commit: String,
    inner_commit: String,
}

/// A world whose prerequisites (openssl too) are all here.
fn world() -> Option<World> {
    if !have_openssl() {
        return None;
    }
    dumb_http();
    World::new()
}

fn repos(w: &World) -> Repos {
    let https = HttpsGit::start(w.tmp.path());
    let inner = w.tmp.path().join("inner");
    let inner_commit = commit(&inner, &[("name.h", b"#define NAME \"inner\"\n")]);
    https.publish(&inner, "inner");
    let lib = w.tmp.path().join("lib");
    commit(
        &lib,
        &[("greet.h", b"#define GREETING \"hello from lib\"\n")],
    );
    add_gitlink(&lib, "inner", "../inner.git", &inner_commit);
    let lib_commit = commit(&lib, &[]);
    let lib_url = https.publish(&lib, "lib");
    commit(
        &w.repo,
        &[("hello.c", MAIN_C), ("attestlog-build.toml", BUILD_TOML)],
    );
    add_gitlink(&w.repo, "lib", &lib_url, &lib_commit);
    let commit = commit(&w.repo, &[]);
    let tree = git(&w.repo, &["ls-tree", "HEAD"]);
    assert!(
        tree.contains(&format!("160000 commit {lib_commit}\tlib")),
        "{tree}"
    );
    Repos {
        https,
        commit,
        lib_url,
        lib_commit,
        inner_commit,
    }
}

/// `enclave-builder build` of `repo` at `commit`, trusting the test
/// server's certificate.
fn build(w: &World, r: &Repos, repo: &str, commit: &str, out: &str) -> Output {
    Command::new(builder_bin())
        .arg("build")
        .args(["--repo", repo, "--commit", commit])
        .args(["--nsm", "simulated", "--dev-ca"])
        .arg(&w.ca)
        .arg("--out")
        .arg(w.tmp.path().join(out))
        .args(w.measured_args())
        .env("GIT_SSL_CAINFO", &r.https.cert)
        .output()
        .unwrap()
}

/// The `host` and `enclave` commands over a Unix socket for `commit` of
/// `w.repo`, the host trusting the test server; (host, enclave) output.
fn split_build(w: &World, cert: &Path, commit: &str, name: &str) -> (Output, Output) {
    let sock = w.tmp.path().join(format!("{name}.sock"));
    let host = w
        .host_command(&sock, commit, &w.tmp.path().join(name))
        .env("GIT_SSL_CAINFO", cert)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !sock.exists() {
        if t.elapsed().as_secs() >= 60 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let enclave = if sock.exists() {
        w.enclave_command(&sock).output().unwrap()
    } else {
        // The host refused before listening; the enclave never ran.
        Command::new("true").output().unwrap()
    };
    (host.wait_with_output().unwrap(), enclave)
}

/// A host job for `commit` of `w.repo`, its git trusting the test server.
fn host_job(w: &World, r: &Repos, commit: &str) -> HostJob {
    let mut job = w.host_job(commit);
    job.source.net_config = vec![("http.sslCAInfo".into(), r.https.cert.display().to_string())];
    job
}

/// Moves the submodules' repositories (and the superproject) out of reach.
fn remove_sources(w: &World, r: &Repos) {
    r.https.unpublish("lib");
    r.https.unpublish("inner");
    for p in [
        w.tmp.path().join("lib"),
        w.tmp.path().join("inner"),
        w.repo.clone(),
    ] {
        std::fs::remove_dir_all(p).unwrap();
    }
}

/// Runs the artifact in `out` and verifies its bundle; returns the commit named.
/// Also checks that the statement lists both submodules after the source.
fn run_and_verify(w: &World, r: &Repos, out: &Path, policy: &str, pcrs: &[String]) -> String {
    let run = Command::new(out.join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), GREETING);
    let artifact = std::fs::read(out.join("hello")).unwrap();
    let bundle = Bundle::parse(&std::fs::read(out.join("hello.attestlog.json")).unwrap()).unwrap();
    let entry = attestlog::claim::Entry::decode(&bundle.entry).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(entry.statement).unwrap();
    let deps = &statement["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(deps[0]["digest"]["gitCommit"], r.commit.as_str());
    assert_eq!(
        deps[1],
        serde_json::json!({"name": "lib", "uri": r.lib_url,
                           "digest": {"gitCommit": r.lib_commit}})
    );
    assert_eq!(
        deps[2],
        serde_json::json!({"name": "lib/inner", "digest": {"gitCommit": r.inner_commit}}),
        "a relative submodule URL is not recorded"
    );
    assert_eq!(deps.as_array().map(Vec::len), Some(3));
    let good = w.policy(policy, pcrs, &w.server.key, false);
    verify_code(&good, &bundle, &artifact).unwrap()
}

#[test]
fn one_process_build_checks_out_nested_submodules() {
    let Some(w) = world() else { return };
    let r = repos(&w);
    let out = build(&w, &r, &w.repo.to_string_lossy(), &r.commit, "out");
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    assert_eq!(
        run_and_verify(&w, &r, &w.tmp.path().join("out"), "one.toml", &w.pcrs()),
        r.commit
    );
    // The submodules really came from their server: without the nested one
    // the build is refused, and nothing is logged.
    let before = tree_size(&w.server.url);
    r.https.unpublish("inner");
    let out = build(&w, &r, &w.repo.to_string_lossy(), &r.commit, "refused");
    assert_fails_with(&out, "submodules");
    // The cause, not nested git's summary: the repository that is gone.
    assert!(stderr(&out).contains("inner.git"), "{}", stderr(&out));
    assert_eq!(tree_size(&w.server.url), before);
    assert!(!w.tmp.path().join("refused/hello").exists());
}

/// A superproject served over HTTPS may name its submodules relative to
/// itself: `../lib.git` resolves to the server's lib.git.
#[test]
fn relative_submodules_of_an_https_superproject_resolve_against_it() {
    let Some(w) = world() else { return };
    let r = repos(&w);
    let relative = w.tmp.path().join("relative");
    commit(
        &relative,
        &[("hello.c", MAIN_C), ("attestlog-build.toml", BUILD_TOML)],
    );
    add_gitlink(&relative, "lib", "../lib.git", &r.lib_commit);
    let c = commit(&relative, &[]);
    let url = r.https.publish(&relative, "relative");
    let out = build(&w, &r, &url, &c, "relative-out");
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    let run = Command::new(w.tmp.path().join("relative-out/hello"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), GREETING);
}

/// A superproject whose submodule is a `file://` URL of another local
/// repository holding a secret (the reproduction), the build
/// printing it into its artifact. Returns the superproject's commit.
fn secret_leaking_repo(w: &World, url_of: impl Fn(&Path) -> String) -> String {
    let secret = w.tmp.path().join("secret");
    let secret_commit = commit(&secret, &[("key.txt", b"TOP-SECRET-KEY\n")]);
    commit(
        &w.repo,
        &[(
            "attestlog-build.toml",
            b"command = \"cat vendor/key.txt > leaked\"\noutputs = [\"leaked\"]\n",
        )],
    );
    add_gitlink(&w.repo, "vendor", &url_of(&secret), &secret_commit);
    commit(&w.repo, &[])
}

/// The reproduction: refused (`submodule_url`) before anything is
/// fetched, in the one-process build and in the split host/enclave build,
/// and nothing is logged.
#[test]
fn a_file_submodule_cannot_pull_a_local_secret_into_a_build() {
    let Some(w) = world() else { return };
    let https = HttpsGit::start(w.tmp.path());
    let c = secret_leaking_repo(&w, |p| format!("file://{}", p.display()));
    let repo = w.repo.to_string_lossy().to_string();
    let one = Command::new(builder_bin())
        .arg("build")
        .args(["--repo", &repo, "--commit", &c])
        .args(["--nsm", "simulated", "--dev-ca"])
        .arg(&w.ca)
        .arg("--out")
        .arg(w.tmp.path().join("one"))
        .args(w.measured_args())
        .output()
        .unwrap();
    assert_fails_with(&one, "submodule_url");
    assert!(stderr(&one).contains("vendor: "), "{}", stderr(&one));
    assert!(stderr(&one).contains("file://"), "{}", stderr(&one));

    let (host, _enclave) = split_build(&w, &https.cert, &c, "split");
    assert_fails_with(&host, "submodule_url");
    assert_eq!(tree_size(&w.server.url), 0);
    for out in ["one", "split"] {
        assert!(!w.tmp.path().join(out).join("leaked").exists());
    }
}

/// Every other non-https submodule URL is refused the same way, as is a
/// relative one under a local superproject (it would resolve to a local
/// path beside it).
#[test]
fn non_https_and_local_relative_submodule_urls_are_refused() {
    let Some(w) = world() else { return };
    let https = HttpsGit::start(w.tmp.path());
    /// A case's name and its submodule URL for the secret repository's path.
    type Case = (&'static str, fn(&Path) -> String);
    let cases: [Case; 6] = [
        ("plain path", |p| p.display().to_string()),
        ("relative", |_| "../secret".to_string()),
        ("ext", |_| "ext::sh -c cat% /etc/passwd".to_string()),
        ("ssh", |_| "ssh://127.0.0.1/secret".to_string()),
        ("git", |_| "git://127.0.0.1/secret".to_string()),
        ("http", |_| "http://127.0.0.1:9/secret.git".to_string()),
    ];
    for (i, (name, url_of)) in cases.into_iter().enumerate() {
        let _ = std::fs::remove_dir_all(&w.repo);
        let _ = std::fs::remove_dir_all(w.tmp.path().join("secret"));
        let c = secret_leaking_repo(&w, url_of);
        let out = Command::new(builder_bin())
            .arg("build")
            .args(["--repo", &w.repo.to_string_lossy(), "--commit", &c])
            .args(["--nsm", "simulated", "--dev-ca"])
            .arg(&w.ca)
            .arg("--out")
            .arg(w.tmp.path().join(format!("out-{i}")))
            .args(w.measured_args())
            .env("GIT_SSL_CAINFO", &https.cert)
            .output()
            .unwrap();
        assert_fails_with(&out, "submodule_url");
        assert!(
            stderr(&out).contains("vendor: "),
            "{name}: {}",
            stderr(&out)
        );
    }
    assert_eq!(tree_size(&w.server.url), 0);
}

/// Runs `job` through a library host and a real enclave process.
fn run_split(w: &World, job: Job, name: &str) -> (Result<PathBuf, BuildError>, String) {
    let (enclave, stream) = w.connect_enclave(name);
    let out = w.tmp.path().join(name);
    let result = serve_job(Box::new(stream), job, &w.server.url, &out, IDLE).map(|_| out);
    let enclave = enclave.wait_with_output().unwrap();
    (result, stderr(&enclave))
}

/// The `host` and `enclave` commands over a Unix socket, as in end_to_end.rs.
#[test]
fn host_and_enclave_commands_build_submodules() {
    let Some(w) = world() else { return };
    let r = repos(&w);
    let (host, enclave) = split_build(&w, &r.https.cert, &r.commit, "split-out");
    let out = w.tmp.path().join("split-out");
    assert!(enclave.status.success(), "enclave: {}", stderr(&enclave));
    assert!(host.status.success(), "host: {}", stderr(&host));
    assert_eq!(
        run_and_verify(&w, &r, &out, "split.toml", &w.enclave_pcrs()),
        r.commit
    );
}

/// The host bundles every submodule commit; the enclave builds from those
/// alone, with every original repository deleted after the job was made.
#[test]
fn enclave_builds_from_the_shipped_bundles_alone() {
    let Some(w) = world() else { return };
    let r = repos(&w);
    let job = prepare_job(&host_job(&w, &r, &r.commit)).unwrap();
    let mut shipped: Vec<&str> = job.submodules.iter().map(|s| s.commit.as_str()).collect();
    shipped.sort_unstable();
    let mut recorded = vec![r.lib_commit.as_str(), r.inner_commit.as_str()];
    recorded.sort_unstable();
    assert_eq!(shipped, recorded);
    remove_sources(&w, &r);
    let (result, enclave) = run_split(&w, job, "offline");
    let out = result.unwrap_or_else(|e| panic!("{e}; enclave: {enclave}"));
    assert_eq!(
        run_and_verify(&w, &r, &out, "offline.toml", &w.enclave_pcrs()),
        r.commit
    );
}

/// A job missing a submodule's bundle, or whose bundles are labelled with
/// the wrong commits, is refused by the enclave (`submodules`), not fetched.
#[test]
fn enclave_refuses_missing_or_mislabelled_submodule_bundles() {
    let Some(w) = world() else { return };
    let r = repos(&w);
    let job = prepare_job(&host_job(&w, &r, &r.commit)).unwrap();
    let before = tree_size(&w.server.url);
    let without = |commit: &str| {
        let mut j = job.clone();
        j.submodules.retain(|s| s.commit != commit);
        j
    };
    let mut swapped = job.clone();
    for s in &mut swapped.submodules {
        s.commit = if s.commit == r.lib_commit {
            r.inner_commit.clone()
        } else {
            r.lib_commit.clone()
        };
    }
    let cases = [
        (
            "no-inner",
            without(&r.inner_commit),
            Some(("lib/inner", &r.inner_commit)),
        ),
        (
            "no-lib",
            without(&r.lib_commit),
            Some(("lib", &r.lib_commit)),
        ),
        ("swapped", swapped, None),
    ];
    for (name, job, names) in cases {
        let (result, enclave) = run_split(&w, job, name);
        match result {
            Err(BuildError::Enclave { code, message }) => {
                assert_eq!(code, "submodules", "{name}: {message}");
                if let Some((path, commit)) = names {
                    let want = format!("{path}: no bundle holds its recorded commit {commit}");
                    assert!(message.contains(&want), "{name}: {message}");
                }
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
        assert!(enclave.contains("error: submodules: "), "{name}: {enclave}");
    }
    assert_eq!(tree_size(&w.server.url), before);
}

/// A job too large for one message is a `transport` error, not a panic:
/// refused by `prepare_job` for a submodule holding more than the limit,
/// and by the channel for a job built by hand.
#[test]
fn oversized_jobs_are_transport_errors() {
    if !have("git") || !have_openssl() {
        return skip("`git` or `openssl` is not installed");
    }
    dumb_http();
    let tmp = tempfile::tempdir().unwrap();
    let https = HttpsGit::start(tmp.path());
    let big = tmp.path().join("big");
    // Incompressible bytes (xorshift), a little over the limit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..MAX_MESSAGE as usize / 8 + 1024)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let big_commit = commit(&big, &[("noise.bin", &noise)]);
    drop(noise);
    let big_url = https.publish(&big, "big");
    let repo = tmp.path().join("repo");
    commit(&repo, &[("hello.c", HELLO_C)]);
    add_gitlink(&repo, "big", &big_url, &big_commit);
    let c = commit(&repo, &[]);
    let mut job = host_job_for(&repo, &c);
    job.source.net_config = vec![("http.sslCAInfo".into(), https.cert.display().to_string())];
    let err = prepare_job(&job).unwrap_err();
    assert_eq!(err.code(), "transport", "{err}");
    assert!(err.to_string().contains("message limit"), "{err}");

    // Without the big submodule the job is small, and an oversized bundle
    // added by hand is refused by the channel before anything is sent.
    git(&repo, &["rm", "-q", "big"]);
    job.source.commit = Some(commit(&repo, &[]));
    let mut small = prepare_job(&job).unwrap();
    assert!(small.submodules.is_empty());
    small.submodules.push(SubmoduleBundle {
        commit: c,
        git_bundle: vec![0; MAX_MESSAGE as usize],
    });
    let (host, _enclave) = UnixStream::pair().unwrap();
    let err = serve_job(
        Box::new(host),
        small,
        "http://127.0.0.1:1",
        tmp.path(),
        IDLE,
    )
    .unwrap_err();
    assert_eq!(err.code(), "transport", "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
}
