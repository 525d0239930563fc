//! What the publishing tests share: running `attestlog verify` and
//! `enclave-builder publish`, and reading their output. Each of the two
//! publishing test binaries uses a subset.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

/// A process's standard output, lossily as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `attestlog verify --policy POLICY ARGS...`.
pub fn verify(cli: &Path, policy: &Path, args: &[OsString]) -> Output {
    Command::new(cli)
        .arg("verify")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .output()
        .unwrap()
}

/// Arguments of mixed types as `OsString`s.
pub fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// `enclave-builder publish ARGS...`, with `GITHUB_TOKEN` set to `token` or unset.
pub fn publish(args: &[OsString], token: Option<&str>) -> Output {
    let mut cmd = Command::new(builder_bin());
    cmd.arg("publish").args(args).env_remove("GITHUB_TOKEN");
    if let Some(t) = token {
        cmd.env("GITHUB_TOKEN", t);
    }
    cmd.output().unwrap()
}
