//! Helpers of the `attestlog-server migrate` tests (`migrate.rs`,
//! `migrate_resume.rs`): running the subcommand.
//! Included with `#[path]`.
#![allow(dead_code)]

use std::process::Command;

/// Runs `attestlog-server migrate`; (exit code, stdout, stderr).
pub fn migrate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_attestlog-server"))
        .arg("migrate")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run migrate");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}
