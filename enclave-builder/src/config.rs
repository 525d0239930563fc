//! `attestlog-build.toml`: what a repository declares about its own build.
//!
//! ```toml
//! command = "cc -O2 -o hello hello.c"      # a string, run as /bin/sh -c STRING
//! # command = ["make", "hello"]           # or an argv list, run as is
//! outputs = ["hello"]                      # paths relative to the repository root
//! [env]                                    # the only variables besides the fixed ones
//! CFLAGS = "-O2"
//! ```
//! Unknown keys are errors. Command-line `--cmd` and `--output` (only
//! `enclave-builder build`; the enclave refuses them from the host) win over
//! the file, and the statement then records the definition as an override
//! ([`BuildDefinition::Override`]); otherwise it records the file's path and
//! the SHA-256 of its bytes at the commit ([`BuildDefinition::Repository`]).
//!
//! Output names: each output is published as its base name beside
//! `<base name>.attestlog.json`, so no two outputs may share a base name and
//! no output's base name may be another's bundle name
//! ([`check_output_names`], `output_name_collision`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use attestlog::bundle::BUNDLE_SUFFIX;
use attestlog::claim::BuildDefinition;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::BuildError;

/// The file name looked for at the repository root.
pub const FILE_NAME: &str = "attestlog-build.toml";
/// Largest `attestlog-build.toml` read: a command, a list of outputs and a
/// few variables are far smaller, and the file is read into memory.
pub const MAX_FILE_SIZE: u64 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    command: Option<CommandSpec>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// The build a repository declares, merged with the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildConfig {
    /// The argv run in the sandbox.
    pub command: Vec<String>,
    /// Output paths relative to the repository root.
    pub outputs: Vec<String>,
    /// Declared environment.
    pub env: BTreeMap<String, String>,
}

/// A shell command line as an argv.
pub fn shell(cmd: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), cmd.into()]
}

/// Reads `attestlog-build.toml` from the checked-out `repo_dir` if present
/// (a regular file; the source checks already proved its bytes are the
/// commit's), merges the command-line `cmd` and `outputs` over it, and says
/// where the result came from. Output names are checked here, before any
/// build.
pub fn load(
    repo_dir: &Path,
    cmd: Option<&str>,
    outputs: &[String],
) -> Result<(BuildConfig, BuildDefinition), BuildError> {
    let path = repo_dir.join(FILE_NAME);
    let file = match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Err(BuildError::Config(format!(
                "{FILE_NAME} is not a regular file (a symlink or a directory)"
            )))
        }
        Ok(meta) if meta.len() > MAX_FILE_SIZE => {
            return Err(BuildError::Config(format!(
                "{FILE_NAME} is {} bytes, over the {MAX_FILE_SIZE}-byte limit",
                meta.len()
            )))
        }
        Ok(_) => {
            let bytes = std::fs::read(&path).map_err(|e| BuildError::io(&path, e))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| BuildError::Config(format!("{FILE_NAME} is not UTF-8")))?;
            Some((parse(text)?, Sha256::digest(&bytes).into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(BuildError::io(path, e)),
    };
    let overridden = cmd.is_some() || !outputs.is_empty();
    let (mut config, definition) = match file {
        Some((config, sha256)) => (
            config,
            BuildDefinition::Repository {
                path: FILE_NAME.to_string(),
                sha256,
            },
        ),
        None => (BuildConfig::default(), BuildDefinition::Override),
    };
    if let Some(c) = cmd {
        config.command = shell(c);
    }
    if !outputs.is_empty() {
        config.outputs = outputs.to_vec();
    }
    if config.command.is_empty() {
        return Err(BuildError::NoCommand);
    }
    if config.outputs.is_empty() {
        return Err(BuildError::NoOutputs);
    }
    check_output_names(&config.outputs)?;
    let definition = if overridden {
        BuildDefinition::Override
    } else {
        definition
    };
    Ok((config, definition))
}

/// The name an output is published under: its path's last component.
pub fn base_name(output: &str) -> Result<String, BuildError> {
    Path::new(output)
        .file_name()
        .map(|b| b.to_string_lossy().to_string())
        .ok_or_else(|| BuildError::BadOutput(output.to_string()))
}

/// Refuses outputs whose base names collide with each other or with
/// another output's bundle name (`x` and `x.attestlog.json`).
pub fn check_output_names(outputs: &[String]) -> Result<(), BuildError> {
    let mut bases = BTreeSet::new();
    for o in outputs {
        let base = base_name(o)?;
        if !bases.insert(base.clone()) {
            return Err(BuildError::OutputNameCollision(format!(
                "two outputs are published as {base:?}"
            )));
        }
    }
    for base in &bases {
        let bundle = format!("{base}{BUNDLE_SUFFIX}");
        if bases.contains(&bundle) {
            return Err(BuildError::OutputNameCollision(format!(
                "output {bundle:?} would be overwritten by the bundle of output {base:?}"
            )));
        }
    }
    Ok(())
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<BuildConfig, BuildError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| BuildError::Config(one_line(&e)))?;
    let command = match file.command {
        Some(CommandSpec::Shell(s)) if !s.trim().is_empty() => shell(&s),
        Some(CommandSpec::Argv(v)) if !v.is_empty() => v,
        Some(_) => return Err(BuildError::Config("command is empty".into())),
        None => Vec::new(),
    };
    for name in file.env.keys() {
        let ok = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(BuildError::Config(format!(
                "bad env variable name {name:?}"
            )));
        }
    }
    Ok(BuildConfig {
        command,
        outputs: file.outputs,
        env: file.env,
    })
}

fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_string_and_argv_commands() {
        let c = parse("command = \"make\"\noutputs = [\"a\"]\n[env]\nX = \"1\"\n").unwrap();
        assert_eq!(c.command, shell("make"));
        assert_eq!(c.outputs, vec!["a".to_string()]);
        assert_eq!(c.env.get("X").map(String::as_str), Some("1"));
        let c = parse("command = [\"make\", \"all\"]\n").unwrap();
        assert_eq!(c.command, vec!["make".to_string(), "all".to_string()]);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_env() {
        assert!(parse("comand = \"make\"\n").is_err());
        assert!(parse("command = \"make\"\n[env]\n\"A B\" = \"1\"\n").is_err());
        assert!(parse("command = []\n").is_err());
    }

    #[test]
    fn command_line_wins_and_is_recorded_as_an_override() {
        let dir = tempfile::tempdir().unwrap();
        let text = "command = \"make\"\noutputs = [\"a\"]\n";
        std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        let (c, def) = load(dir.path(), None, &[]).unwrap();
        assert_eq!(c.command, shell("make"));
        assert_eq!(
            def,
            BuildDefinition::Repository {
                path: FILE_NAME.into(),
                sha256: Sha256::digest(text.as_bytes()).into(),
            }
        );
        let (c, def) = load(dir.path(), Some("cc x.c"), &["b".into()]).unwrap();
        assert_eq!(c.command, shell("cc x.c"));
        assert_eq!(c.outputs, vec!["b".to_string()]);
        assert_eq!(def, BuildDefinition::Override);
        // Either half alone is an override too.
        assert_eq!(
            load(dir.path(), None, &["b".into()]).unwrap().1,
            BuildDefinition::Override
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            load(empty.path(), None, &[]).unwrap_err().code(),
            "no_command"
        );
        assert_eq!(
            load(empty.path(), Some("make"), &["a".into()]).unwrap().1,
            BuildDefinition::Override
        );
    }

    #[test]
    fn refuses_a_symlinked_or_oversized_file() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.toml");
        std::fs::write(&elsewhere, "command = \"make\"\noutputs = [\"a\"]\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            load(dir.path(), None, &[]).unwrap_err().code(),
            "bad_build_config"
        );
        let big = tempfile::tempdir().unwrap();
        let text = format!("# {}\n", "x".repeat(MAX_FILE_SIZE as usize));
        std::fs::write(big.path().join(FILE_NAME), text).unwrap();
        assert_eq!(
            load(big.path(), None, &[]).unwrap_err().code(),
            "bad_build_config"
        );
    }

    #[test]
    fn refuses_colliding_output_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in [
            &["x", "x.attestlog.json"][..],
            &["x.attestlog.json", "sub/x"],
            &["a/x", "b/x"],
            &["x", "x"],
        ] {
            assert_eq!(
                check_output_names(&names(bad)).unwrap_err().code(),
                "output_name_collision",
                "{bad:?}"
            );
        }
        assert!(check_output_names(&names(&["x", "y.attestlog.json", "a/z"])).is_ok());
        assert_eq!(
            check_output_names(&names(&["x", ".."])).unwrap_err().code(),
            "bad_output"
        );
    }
}
