//! `attestlog-build.toml`: what a repository declares about its own build.
//!
//! ```toml
//! command = "cc -O2 -o hello hello.c"      # a string, run as /bin/sh -c STRING
//! # command = ["make", "hello"]           # or an argv list, run as is
//! outputs = ["hello"]                      # paths relative to the repository root
//! [env]                                    # the only variables besides the fixed ones
//! CFLAGS = "-O2"
//! ```
//! Unknown keys are errors. Command-line `--cmd` and `--output` win over the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::BuildError;

/// The file name looked for at the repository root.
pub const FILE_NAME: &str = "attestlog-build.toml";

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

/// Reads `attestlog-build.toml` from `repo_dir` if present and merges the
/// command-line `cmd` and `outputs` over it.
pub fn load(
    repo_dir: &Path,
    cmd: Option<&str>,
    outputs: &[String],
) -> Result<BuildConfig, BuildError> {
    let path = repo_dir.join(FILE_NAME);
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => Some(parse(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(BuildError::io(path, e)),
    };
    let mut config = file.unwrap_or_default();
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
    Ok(config)
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
    fn command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "command = \"make\"\noutputs = [\"a\"]\n",
        )
        .unwrap();
        let c = load(dir.path(), Some("cc x.c"), &["b".into()]).unwrap();
        assert_eq!(c.command, shell("cc x.c"));
        assert_eq!(c.outputs, vec!["b".to_string()]);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            load(empty.path(), None, &[]).unwrap_err().code(),
            "no_command"
        );
    }
}
