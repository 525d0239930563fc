//! Whole-build limits, with real bubblewrap, cgroups and processes: the
//! process count, the size of `/tmp`, the memory of all processes together
//! (each one under its own `RLIMIT_AS`), the size of each output and of all
//! of them, and the refusal to build without a usable cgroup. Every refused
//! build leaves the log at size 0 and writes nothing.
//!
//! Needs `git`, `bwrap`, `cc`, the `attestlog-server` binary and a writable
//! cgroup (v1 memory and pids hierarchies, or v2 with both controllers
//! delegated); without them the tests print why and skip.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::*;

/// Allocates and touches 48 MiB, holds it for two seconds, and exits 0:
/// one of these fits a 128 MiB build; three together do not.
const HOG_C: &[u8] = b"#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n\
int main(void){size_t n=48u<<20;char*p=malloc(n);if(!p)return 3;memset(p,1,n);\
sleep(2);return p[n-1]==1?0:4;}\n";

/// Commits `toml` as the build configuration (and `files`); returns the commit.
fn commit_build(w: &World, toml: &str, files: &[(&str, &[u8])]) -> String {
    let mut all: Vec<(&str, &[u8])> = vec![("attestlog-build.toml", toml.as_bytes())];
    all.extend_from_slice(files);
    commit(&w.repo, &all)
}

/// Whether this machine gives the builder a cgroup (prints why not).
fn have_cgroup(w: &World) -> bool {
    let c = commit_build(w, "command = \"true > ok\"\noutputs = [\"ok\"]\n", &[]);
    let out = w.build(&c, "probe", &[]);
    let err = stderr(&out);
    if err.contains("error: cgroup_unavailable: ") {
        skip(&format!("no usable cgroup here: {err}"));
        return false;
    }
    assert!(out.status.success(), "the probe build failed: {err}");
    true
}

/// Runs `w.build` and checks it failed with `code`, nothing logged and no
/// artifact written.
fn refused(w: &World, commit: &str, out: &str, extra: &[&str], code: &str) -> Output {
    let before = tree_size(&w.server.url);
    let output = w.build(commit, out, extra);
    assert_fails_with(&output, code);
    assert_eq!(
        tree_size(&w.server.url),
        before,
        "{code}: something was logged"
    );
    let dir = w.tmp.path().join(out);
    let written = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(written, 0, "{code}: {} is not empty", dir.display());
    output
}

#[test]
fn a_build_forking_beyond_the_pid_limit_fails() {
    let Some(w) = World::new() else { return };
    if !have_cgroup(&w) {
        return;
    }
    let c = commit_build(
        &w,
        "command = \"for i in $(seq 1 40); do sleep 3 & done; wait; true > done\"\n\
         outputs = [\"done\"]\n",
        &[],
    );
    let out = refused(&w, &c, "pids", &["--pids", "16"], "build_pids_exceeded");
    assert!(stderr(&out).contains("16 processes"), "{}", stderr(&out));
    // The same build within the default limit succeeds.
    let ok = w.build(&c, "pids-ok", &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn a_build_filling_tmp_beyond_its_size_fails() {
    let Some(w) = World::new() else { return };
    if !have_cgroup(&w) {
        return;
    }
    let c = commit_build(
        &w,
        "command = \"head -c 3145728 /dev/zero > /tmp/fill && cp /tmp/fill out\"\n\
         outputs = [\"out\"]\n",
        &[],
    );
    let out = refused(&w, &c, "tmp", &["--tmp-size", "2"], "build_failed");
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    let ok = w.build(&c, "tmp-ok", &["--tmp-size", "4"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn processes_together_over_the_memory_limit_are_killed() {
    let Some(w) = World::new() else { return };
    if !have_cgroup(&w) {
        return;
    }
    // The hog is compiled outside the sandbox (a compiler may need more
    // than the test's limit) and committed.
    let hog_c = w.tmp.path().join("hog.c");
    std::fs::write(&hog_c, HOG_C).unwrap();
    let hog = w.tmp.path().join("hog");
    let cc = Command::new("cc")
        .arg("-O0")
        .arg("-o")
        .arg(&hog)
        .arg(&hog_c)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", stderr(&cc));
    std::fs::create_dir_all(&w.repo).unwrap();
    std::fs::copy(&hog, w.repo.join("hog")).unwrap();
    std::fs::set_permissions(w.repo.join("hog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let memory = ["--memory", "128"];
    // One hog fits: RLIMIT_AS alone would let each of them run.
    let one = commit_build(
        &w,
        "command = \"./hog && cp hog out\"\noutputs = [\"out\"]\n",
        &[],
    );
    let ok = w.build(&one, "one-hog", &memory);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Three at once exceed the build's memory; the shell's `wait` hides
    // their deaths, the cgroup's OOM count does not.
    let three = commit_build(
        &w,
        "command = \"./hog & ./hog & ./hog & wait; cp hog out\"\noutputs = [\"out\"]\n",
        &[],
    );
    let out = refused(&w, &three, "three-hogs", &memory, "build_memory_exceeded");
    assert!(stderr(&out).contains("128 MiB"), "{}", stderr(&out));
}

#[test]
fn outputs_over_their_size_limits_are_refused() {
    let Some(w) = World::new() else { return };
    if !have_cgroup(&w) {
        return;
    }
    let c = commit_build(
        &w,
        "command = \"head -c 1572864 /dev/zero > a && head -c 1572864 /dev/zero > b\"\n\
         outputs = [\"a\", \"b\"]\n",
        &[],
    );
    let out = refused(&w, &c, "one", &["--output-limit", "1"], "output_too_large");
    assert!(
        stderr(&out).contains("a is over 1048576 bytes"),
        "{}",
        stderr(&out)
    );
    let both = ["--output-limit", "2", "--outputs-total-limit", "2"];
    let out = refused(&w, &c, "total", &both, "output_too_large");
    assert!(stderr(&out).contains("together"), "{}", stderr(&out));
    let ok = w.build(&c, "ok", &["--output-limit", "2"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let a = std::fs::read(w.tmp.path().join("ok/a")).unwrap();
    assert_eq!(a.len(), 1572864);
}

/// With the cgroup file systems hidden (a tmpfs over /sys/fs/cgroup in a
/// mount namespace of the builder's own) the build is refused, unless the
/// measured `--cgroup none` says to build without whole-build limits.
#[test]
fn no_usable_cgroup_refuses_unless_cgroup_none_is_measured() {
    let Some(w) = World::new() else { return };
    let c = w.commit_hello();
    let hidden = |out: &str, extra: &[&str]| {
        let mut cmd = Command::new("bwrap");
        cmd.args(["--dev-bind", "/", "/", "--tmpfs", "/sys/fs/cgroup", "--"])
            .arg(builder_bin())
            .arg("build")
            .arg("--repo")
            .arg(&w.repo)
            .args(["--commit", &c, "--nsm", "simulated", "--dev-ca"])
            .arg(&w.ca)
            .arg("--out")
            .arg(w.tmp.path().join(out))
            .args(w.measured_args())
            .args(extra);
        cmd.output().unwrap()
    };
    let probe = Command::new("bwrap")
        .args(["--dev-bind", "/", "/", "--tmpfs", "/sys/fs/cgroup", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        return skip("bwrap cannot mount a tmpfs over /sys/fs/cgroup here");
    }
    let out = hidden("refused", &[]);
    assert_fails_with(&out, "cgroup_unavailable");
    assert!(stderr(&out).contains("--cgroup none"), "{}", stderr(&out));
    assert_eq!(tree_size(&w.server.url), 0);
    assert!(!w.tmp.path().join("refused/hello").exists());

    let out = hidden("unbounded", &["--cgroup", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: --cgroup none"));
    // The choice is measured: its PCR1 differs from the default's.
    let mut none = w.measured_args();
    none.extend(["--cgroup".into(), "none".into()]);
    assert_ne!(w.pcrs_of(&none)[1], w.pcrs()[1]);
    let bundle = std::fs::read_to_string(w.tmp.path().join("unbounded/hello.attestlog.json"));
    assert!(bundle.is_ok());
}
