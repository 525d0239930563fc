//! Why a build was refused. Every variant names one failed check with a
//! stable code, so the command line can print `error: <code>: <reason>`.

use std::path::PathBuf;

/// The one check that stopped a build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("commit {0:?} is not a full 40- or 64-hex commit id (abbreviated ids and branch names need --ref)")]
    AbbreviatedCommit(String),
    #[error("repository {repo} could not be cloned: {reason}")]
    MissingRepo { repo: String, reason: String },
    #[error("commit {0} is not in the repository")]
    CommitNotFound(String),
    #[error("ref {name:?} could not be resolved: {reason}")]
    RefNotFound { name: String, reason: String },
    #[error("ref {name:?} resolves to {resolved}, not to the given commit {commit}")]
    RefMismatch {
        name: String,
        resolved: String,
        commit: String,
    },
    #[error("repository {0:?} is not an https:// URL, so the enclave cannot authenticate it (use --source host-bundle to build what the host sends)")]
    UnauthenticatedSource(String),
    #[error("HEAD is {head} after checkout, expected {expected}")]
    HeadMismatch { head: String, expected: String },
    #[error("working tree is not clean after checkout: {0}")]
    DirtyTree(String),
    #[error("submodules are not at their recorded commits: {0}")]
    Submodules(String),
    #[error("git {args}: {reason}")]
    Git { args: String, reason: String },
    #[error("attestlog-build.toml: {0}")]
    Config(String),
    #[error("no build command: give --cmd or declare `command` in attestlog-build.toml")]
    NoCommand,
    #[error("no outputs: give --output or declare `outputs` in attestlog-build.toml")]
    NoOutputs,
    #[error("the host sent a build command or outputs; the enclave takes the build definition only from the repository's attestlog-build.toml at the commit")]
    HostBuildDefinition,
    #[error("output names collide: {0}")]
    OutputNameCollision(String),
    #[error("no branch or tag of the repository contains commit {0} (it may exist only in a fork); pass --allow-unreferenced-commit to build it anyway, which the statement records")]
    UnreferencedCommit(String),
    #[error("source ref {0:?} is not a full branch or tag name (refs/heads/..., refs/tags/...)")]
    BadSourceRef(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("build command failed: {0}")]
    BuildFailed(String),
    #[error("build timed out after {0} s and was killed")]
    BuildTimeout(u64),
    #[error("declared output {0:?} was not produced by the build")]
    MissingOutput(String),
    #[error("output {0:?} is not a regular file inside the build directory")]
    BadOutput(String),
    #[error("statement: {0}")]
    Statement(String),
    #[error("attestation: {0}")]
    Attestation(String),
    #[error("log {url} unreachable: {reason}")]
    LogUnreachable { url: String, reason: String },
    #[error("log refused the entry: {0}")]
    LogRefused(String),
    #[error("log answer fails verification: {0}")]
    LogAnswer(String),
    #[error("log key: {0}")]
    LogKey(String),
    #[error("host/enclave channel: {0}")]
    Transport(String),
    #[error("enclave start: {0}")]
    EnclaveStart(String),
    #[error("the enclave refused the build: {code}: {message}")]
    Enclave { code: String, message: String },
    // What a build can reach (issue 9 items 2, 10, 11).
    #[error("submodule URL refused: {submodule}: {reason}")]
    SubmoduleUrl {
        submodule: String,
        #[source]
        reason: crate::source::SubmoduleUrlError,
    },
    #[error("the host's relay refused the connection: {0}")]
    RelayRefused(String),
    #[error("no usable cgroup to bound the whole build: {0} (pass --cgroup none to build without whole-build limits)")]
    CgroupUnavailable(String),
    #[error("the build's processes together exceeded the memory limit of {0} MiB and were killed")]
    BuildMemory(u64),
    #[error("the build tried to run more than {0} processes at once and failed")]
    BuildPids(u64),
    #[error("output too large: {0}")]
    OutputTooLarge(String),
    #[error("webhook: {0}")]
    Webhook(#[from] crate::webhook::WebhookError),
    #[error("publish: {0}")]
    Publish(#[from] crate::publish::PublishError),
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BuildError {
    /// A stable, machine-readable name for the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::AbbreviatedCommit(_) => "abbreviated_commit",
            BuildError::MissingRepo { .. } => "missing_repo",
            BuildError::CommitNotFound(_) => "commit_not_found",
            BuildError::RefNotFound { .. } => "ref_not_found",
            BuildError::RefMismatch { .. } => "ref_mismatch",
            BuildError::UnauthenticatedSource(_) => "unauthenticated_source",
            BuildError::HeadMismatch { .. } => "head_mismatch",
            BuildError::DirtyTree(_) => "dirty_tree",
            BuildError::Submodules(_) => "submodules",
            BuildError::Git { .. } => "git",
            BuildError::Config(_) => "bad_build_config",
            BuildError::NoCommand => "no_command",
            BuildError::NoOutputs => "no_outputs",
            BuildError::HostBuildDefinition => "host_build_definition",
            BuildError::OutputNameCollision(_) => "output_name_collision",
            BuildError::UnreferencedCommit(_) => "unreferenced_commit",
            BuildError::BadSourceRef(_) => "bad_source_ref",
            BuildError::Sandbox(_) => "sandbox",
            BuildError::BuildFailed(_) => "build_failed",
            BuildError::BuildTimeout(_) => "build_timeout",
            BuildError::MissingOutput(_) => "missing_output",
            BuildError::BadOutput(_) => "bad_output",
            BuildError::Statement(_) => "statement",
            BuildError::Attestation(_) => "attestation",
            BuildError::LogUnreachable { .. } => "log_unreachable",
            BuildError::LogRefused(_) => "log_refused",
            BuildError::LogAnswer(_) => "log_answer_invalid",
            BuildError::LogKey(_) => "bad_log_key",
            BuildError::Transport(_) => "transport",
            BuildError::EnclaveStart(_) => "enclave_start",
            BuildError::Enclave { .. } => "enclave_failed",
            BuildError::SubmoduleUrl { .. } => "submodule_url",
            BuildError::RelayRefused(_) => "relay_refused",
            BuildError::CgroupUnavailable(_) => "cgroup_unavailable",
            BuildError::BuildMemory(_) => "build_memory_exceeded",
            BuildError::BuildPids(_) => "build_pids_exceeded",
            BuildError::OutputTooLarge(_) => "output_too_large",
            BuildError::Webhook(e) => e.code(),
            BuildError::Publish(e) => e.code(),
            BuildError::Io { .. } => "io",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }
}
