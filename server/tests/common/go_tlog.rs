//! An independent tlog-tiles client in Go: `go_tlog/main.go` on Go's
//! `golang.org/x/mod/sumdb/tlog` and `sumdb/note` (Debian's `golang-go` and
//! `golang-golang-x-mod-dev`; scripts/test.sh installs them). Built once per
//! test process into the target's test folder, with `GO111MODULE=off` and
//! Debian's GOPATH, so no network is needed. If `go` is missing or the build
//! fails, the test fails: nothing here skips.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where Debian puts the Go sources of its `golang-*-dev` packages.
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-tlog");
        std::fs::create_dir_all(&work).expect("go-tlog folder");
        // One build per process: concurrent test binaries each write their
        // own file, then rename it into place.
        let bin = work.join("tlogcheck");
        let fresh = work.join(format!("tlogcheck.{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_tlog/main.go");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&fresh)
            .arg(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", DEBIAN_GOPATH)
            .env("GOCACHE", work.join("cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("run `go build` (scripts/test.sh installs golang-go)");
        assert!(
            out.status.success(),
            "go build tests/go_tlog/main.go: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&fresh, &bin).expect("place tlogcheck");
        bin
    })
}

/// Runs the Go client against the tlog-tiles log at `url` (a server, or a
/// bucket prefix over HTTP) with the log's note verifier key `vkey`,
/// following `state` (the last checkpoint it verified there, if any): it
/// checks the checkpoint's signature, consistency with `state`, and every
/// entry's inclusion. Panics with its error unless it all verifies; returns
/// the size it checked.
pub fn check(url: &str, vkey: &str, state: &Path) -> u64 {
    check_with(url, vkey, state, &[])
}

/// [`check`] of a bucket that is not public: every GET signed with AWS
/// SigV4 from `env` (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`).
pub fn check_signed(url: &str, vkey: &str, state: &Path, env: &[(&str, String)]) -> u64 {
    check_with(url, vkey, state, env)
}

fn check_with(url: &str, vkey: &str, state: &Path, env: &[(&str, String)]) -> u64 {
    let out = run(url, vkey, state, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Go sumdb/tlog client against {url}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("tlogcheck printed {stdout:?}"))
}

/// The Go client's run, whatever its outcome; with `env`, signed.
pub fn run(url: &str, vkey: &str, state: &Path, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(binary());
    cmd.args(["-url", url, "-key", vkey, "-state"]).arg(state);
    if !env.is_empty() {
        cmd.arg("-sigv4")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    }
    cmd.output().expect("run tlogcheck")
}
