//! The `enclave-builder` command line on its own, without a log: the dev CA
//! keeps its keys private and refuses to be overwritten, `measure` moves
//! exactly the PCR whose input changed, and malformed command lines exit 2.
//! The whole flow with a log server lives in the workspace's `tests/` crate.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

const BUILDER: &str = env!("CARGO_BIN_EXE_enclave-builder");
const KEY_A: &str = "cli.attestlog/log+0e7d3c4a+AcJZ2mRiPp7kMzQyUz2R2xMXuhUSJ6gGxT4GqF0y5U7x";
const KEY_B: &str = "cli.attestlog/log+5b2b1c1e+AVl0hqDjKxNE2o5bdK4a3qT1ZuMHgDqZ5JkqO0P2xYlB";

fn run(args: &[&str]) -> Output {
    Command::new(BUILDER).args(args).output().unwrap()
}

fn pcrs(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["measure", "--log", "http://127.0.0.1:1"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("PCR").map(|r| r[2..].to_string()))
        .collect()
}

#[test]
fn dev_ca_keys_are_private_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let out = run(&["dev-ca", "init", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--trust-root") && text.contains("extra_roots"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let keys: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".key.pem"))
        .collect();
    assert!(!keys.is_empty(), "no private keys written");
    for key in &keys {
        assert_eq!(mode(key), 0o600, "{}", key.display());
    }
    let root = std::fs::read(dir.join("root.pem")).unwrap();
    let again = run(&["dev-ca", "init", dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(dir.join("root.pem")).unwrap(), root);
}

#[test]
fn measure_moves_only_the_pcr_whose_input_changed() {
    let base = pcrs(&["--log-key", KEY_A]);
    assert_eq!(base.len(), 3);
    assert!(base.iter().all(|p| p.len() == 96));
    assert_eq!(pcrs(&["--log-key", KEY_A]), base, "measure is not stable");

    let timeout = pcrs(&["--log-key", KEY_A, "--timeout", "61"]);
    assert_eq!((&timeout[0], &timeout[2]), (&base[0], &base[2]));
    assert_ne!(timeout[1], base[1]);

    let unsandboxed = pcrs(&["--log-key", KEY_A, "--sandbox", "none"]);
    assert_ne!(unsandboxed[1], base[1]);

    let other_key = pcrs(&["--log-key", KEY_B]);
    assert_eq!((&other_key[0], &other_key[1]), (&base[0], &base[1]));
    assert_ne!(other_key[2], base[2]);
}

#[test]
fn malformed_command_lines_exit_2() {
    for args in [
        &["build", "--repo", "x"][..],
        &["measure"][..],
        &["frobnicate"][..],
        &[
            "host", "--log", "http://x", "--out", "o", "--eif", "e", "--", "cmd",
        ][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
