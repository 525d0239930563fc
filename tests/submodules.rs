//! Submodules, with real processes: a C program whose headers live in a
//! submodule (relative URL) and a nested submodule inside it (absolute
//! URL). The one-process build fetches them from their URLs; the split
//! build ships them to the enclave as git bundles keyed by the recorded
//! commit, and the enclave builds with the original repositories gone.
//!
//! Needs `git`, `bwrap`, `cc` and the `attestlog-server` binary; without
//! them the tests print why and skip.

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use attestlog::bundle::Bundle;
use common::*;
use enclave_builder::hostsplit::{prepare_job, serve_job};
use enclave_builder::transport::{Job, SubmoduleBundle, MAX_MESSAGE};
use enclave_builder::BuildError;

/// The host's idle deadline on the enclave channel in these tests.
const IDLE: std::time::Duration = std::time::Duration::from_secs(300);

const MAIN_C: &[u8] =
    b"#include <stdio.h>\n#include \"lib/greet.h\"\n#include \"lib/inner/name.h\"\n\
int main(void){puts(GREETING \" and \" NAME);return 0;}\n";
const GREETING: &str = "hello from lib and inner\n";

/// The superproject at `w.repo`, `lib` beside it (added as `../lib`) and
/// `inner` (added to `lib` by absolute path).
struct Repos {
    commit: String,
    lib: PathBuf,
    lib_commit: String,
    inner: PathBuf,
    inner_commit: String,
}

fn add_submodule(dir: &Path, url: &str, path: &str) {
    let allow = "protocol.file.allow=always";
    git(dir, &["-c", allow, "submodule", "add", "-q", url, path]);
}

fn repos(w: &World) -> Repos {
    let inner = w.tmp.path().join("inner");
    let inner_commit = commit(&inner, &[("name.h", b"#define NAME \"inner\"\n")]);
    let lib = w.tmp.path().join("lib");
    commit(
        &lib,
        &[("greet.h", b"#define GREETING \"hello from lib\"\n")],
    );
    add_submodule(&lib, &format!("file://{}", inner.display()), "inner");
    let lib_commit = commit(&lib, &[]);
    commit(
        &w.repo,
        &[("hello.c", MAIN_C), ("attestlog-build.toml", BUILD_TOML)],
    );
    add_submodule(&w.repo, "../lib", "lib");
    let commit = commit(&w.repo, &[]);
    let gitmodules = std::fs::read_to_string(w.repo.join(".gitmodules")).unwrap();
    assert!(gitmodules.contains("url = ../lib"), "{gitmodules}");
    Repos {
        commit,
        lib,
        lib_commit,
        inner,
        inner_commit,
    }
}

/// Moves the submodules' repositories (and the superproject) out of reach.
fn remove_sources(w: &World, r: &Repos) {
    for p in [&r.lib, &r.inner, &w.repo] {
        std::fs::remove_dir_all(p).unwrap();
    }
}

/// Runs `job` through a library host and a real enclave process.
fn run_split(w: &World, job: Job, name: &str) -> (Result<PathBuf, BuildError>, String) {
    let sock = w.tmp.path().join(format!("{name}.sock"));
    let listener = UnixListener::bind(&sock).unwrap();
    let enclave = w
        .enclave_command(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let out = w.tmp.path().join(name);
    let result = serve_job(Box::new(stream), job, &w.server.url, &out, IDLE).map(|_| out);
    let enclave = enclave.wait_with_output().unwrap();
    (result, stderr(&enclave))
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
        serde_json::json!({"name": "lib", "digest": {"gitCommit": r.lib_commit}}),
        "a relative submodule URL is not recorded"
    );
    let inner_uri = format!("file://{}", r.inner.display());
    assert_eq!(
        deps[2],
        serde_json::json!({"name": "lib/inner", "uri": inner_uri,
                           "digest": {"gitCommit": r.inner_commit}})
    );
    assert_eq!(deps.as_array().map(Vec::len), Some(3));
    let good = w.policy(policy, pcrs, &w.server.key, false);
    verify_code(&good, &bundle, &artifact).unwrap()
}

#[test]
fn one_process_build_checks_out_nested_submodules() {
    let Some(w) = World::new() else { return };
    let r = repos(&w);
    let out = w.build(&r.commit, "out", &[]);
    assert!(out.status.success(), "build failed: {}", stderr(&out));
    assert_eq!(
        run_and_verify(&w, &r, &w.tmp.path().join("out"), "one.toml", &w.pcrs()),
        r.commit
    );
    // The submodules really came from their repositories: without the nested
    // one the build is refused, and nothing is logged.
    let before = tree_size(&w.server.url);
    std::fs::rename(&r.inner, w.tmp.path().join("inner-gone")).unwrap();
    let out = w.build(&r.commit, "refused", &[]);
    assert_fails_with(&out, "submodules");
    // The cause, not nested git's summary: the repository that is gone.
    assert!(
        stderr(&out).contains("fatal: '") && stderr(&out).contains("/inner'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tree_size(&w.server.url), before);
}

/// The `host` and `enclave` commands over a Unix socket, as in end_to_end.rs.
#[test]
fn host_and_enclave_commands_build_submodules() {
    let Some(w) = World::new() else { return };
    let r = repos(&w);
    let (host, enclave) = w.split_build(&r.commit, "split-out");
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
    let Some(w) = World::new() else { return };
    let r = repos(&w);
    let job = prepare_job(&w.host_job(&r.commit)).unwrap();
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
    let Some(w) = World::new() else { return };
    let r = repos(&w);
    let job = prepare_job(&w.host_job(&r.commit)).unwrap();
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
    if !have("git") {
        return skip("`git` is not installed");
    }
    let tmp = tempfile::tempdir().unwrap();
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
    commit(&big, &[("noise.bin", &noise)]);
    let repo = tmp.path().join("repo");
    commit(&repo, &[("hello.c", HELLO_C)]);
    add_submodule(&repo, &big.to_string_lossy(), "big");
    let c = commit(&repo, &[]);
    let mut job = host_job_for(&repo, &c);
    let err = prepare_job(&job).unwrap_err();
    assert_eq!(err.code(), "transport", "{err}");
    assert!(err.to_string().contains("message limit"), "{err}");
    drop(noise);

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
