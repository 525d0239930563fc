//! The build split in two over a [`transport`](crate::transport) channel:
//! the host (network, untrusted) clones the source, bundles the commit and
//! relays the log submission; the enclave (no network) clones the bundle,
//! runs the unchanged [`pipeline`], verifies the log's
//! answer against its own `--log-key`, and returns artifacts and bundles.
//!
//! The build definition is never the host's: a job with `cmd` or `outputs`
//! set is refused (`host_build_definition`) before anything is fetched or
//! built. The ref containing the commit is the repository's answer in relay
//! mode and the host's word in host-bundle mode (as the URI is there).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use attestlog::bundle::BUNDLE_SUFFIX;

use crate::error::BuildError;
use crate::measure::SourceMode;
use crate::nsm::Nsm;
use crate::pipeline::{self, BuildRequest};
use crate::refs::{self, RefSource};
use crate::sandbox::SandboxConfig;
use crate::source::{self, SourceRequest};
use crate::submit::{self, LogClient};
use crate::transport::{
    ArtifactMsg, Channel, Endpoint, Job, JobResult, Message, Stream, SubmoduleBundle, MAX_MESSAGE,
};

fn chan_err(e: std::io::Error) -> BuildError {
    if crate::transport::is_timeout(&e) {
        return BuildError::Transport("the other side sent nothing within the idle timeout".into());
    }
    BuildError::Transport(e.to_string())
}

/// What the host is asked to build. There is no command or outputs: the
/// enclave builds what the repository's `attestlog-build.toml` declares.
#[derive(Clone, Debug)]
pub struct HostJob {
    pub source: SourceRequest,
    /// Build a commit that no advertised branch or tag contains (recorded).
    pub allow_unreferenced: bool,
    pub timeout_secs: Option<u64>,
    pub memory_mb: Option<u64>,
}

/// Host: a fresh clone of the repository with every source check, then a
/// `git bundle` of the commit and one of each submodule commit (nested ones
/// too), packed into a job. Bundles that cannot fit in one message are
/// refused here (`transport`), before any enclave is waiting.
pub fn prepare_job(req: &HostJob) -> Result<Job, BuildError> {
    let work = tempfile::Builder::new()
        .prefix("enclave-host-")
        .tempdir()
        .map_err(|e| BuildError::io(std::env::temp_dir(), e))?;
    let src = work.path().join("src");
    let checked = source::fetch(&req.source, &src)?;
    let source_ref = refs::source_ref(
        &src,
        &checked.commit,
        req.source.git_ref.as_deref(),
        &req.source.net_config,
        source::is_local(&req.source.repo),
        req.allow_unreferenced,
    )?;
    let file = work.path().join("job.bundle");
    source::bundle(&src, &checked.commit, checked.git_ref.as_deref(), &file)?;
    let git_bundle = std::fs::read(&file).map_err(|e| BuildError::io(&file, e))?;
    let mut total = git_bundle.len();
    let mut submodules = Vec::new();
    for (commit, file) in source::bundle_submodules(&src, work.path())? {
        let git_bundle = std::fs::read(&file).map_err(|e| BuildError::io(&file, e))?;
        total += git_bundle.len();
        submodules.push(SubmoduleBundle { commit, git_bundle });
    }
    // A lower bound of the encoded size; the channel enforces the exact one.
    if total > MAX_MESSAGE as usize {
        return Err(BuildError::Transport(format!(
            "the job's git bundles ({} for submodules) take {total} bytes, over the \
             {MAX_MESSAGE}-byte message limit",
            submodules.len()
        )));
    }
    Ok(Job {
        git_bundle,
        uri: checked.uri,
        commit: checked.commit,
        git_ref: checked.git_ref,
        cmd: None,
        outputs: Vec::new(),
        source_ref: source_ref.name().map(str::to_string),
        allow_unreferenced: req.allow_unreferenced,
        timeout_secs: req.timeout_secs,
        memory_mb: req.memory_mb,
        submodules,
    })
}

/// What the host wrote.
#[derive(Clone, Debug)]
pub struct HostOutcome {
    pub commit: String,
    pub index: u64,
    pub written: Vec<(PathBuf, PathBuf)>,
}

/// Host: sends `job` over `stream`, relays log submissions to `log_url`,
/// and writes the returned artifacts and bundles to `out_dir`. The enclave
/// may stay silent for at most `idle` between messages (a build is silent,
/// so keep it above the enclave's build time limit).
pub fn serve_job(
    stream: Box<dyn Stream>,
    job: Job,
    log_url: &str,
    out_dir: &Path,
    idle: std::time::Duration,
) -> Result<HostOutcome, BuildError> {
    crate::transport::set_idle_timeout(stream.as_ref(), idle)
        .map_err(|e| BuildError::Transport(format!("setting the idle timeout: {e}")))?;
    let mut ch = Channel::new(stream);
    ch.send(&Message::Job(Box::new(job))).map_err(chan_err)?;
    loop {
        match ch.recv().map_err(chan_err)? {
            Message::LogSubmit { entry } => {
                let answer = match submit::post_entry_http(log_url, &entry) {
                    Ok((status, body)) => Message::LogAnswer {
                        status,
                        body,
                        error: None,
                    },
                    Err(e) => Message::LogAnswer {
                        status: 0,
                        body: Vec::new(),
                        error: Some(e.to_string()),
                    },
                };
                ch.send(&answer).map_err(chan_err)?;
            }
            Message::Result(JobResult::Err { code, message }) => {
                return Err(BuildError::Enclave { code, message })
            }
            Message::Result(JobResult::Ok {
                commit,
                index,
                artifacts,
            }) => {
                check_artifact_names(&artifacts)?;
                std::fs::create_dir_all(out_dir).map_err(|e| BuildError::io(out_dir, e))?;
                let mut written = Vec::new();
                for a in artifacts {
                    written.push(write_artifact(out_dir, &a)?);
                }
                return Ok(HostOutcome {
                    commit,
                    index,
                    written,
                });
            }
            other => {
                return Err(BuildError::Transport(format!(
                    "unexpected message from the enclave: {}",
                    kind(&other)
                )))
            }
        }
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Job(_) => "job",
        Message::LogSubmit { .. } => "log submission",
        Message::LogAnswer { .. } => "log answer",
        Message::Result(_) => "result",
    }
}

/// Checks every name the enclave returned before anything is written: each
/// a plain file name, none colliding with another or with another's bundle
/// name (`output_name_collision`).
fn check_artifact_names(artifacts: &[ArtifactMsg]) -> Result<(), BuildError> {
    for a in artifacts {
        if a.name.is_empty() || a.name.contains('/') || a.name == "." || a.name == ".." {
            return Err(BuildError::Transport(format!(
                "artifact name {:?} is not a plain file name",
                a.name
            )));
        }
    }
    let names: Vec<String> = artifacts.iter().map(|a| a.name.clone()).collect();
    crate::config::check_output_names(&names)
}

fn write_artifact(out_dir: &Path, a: &ArtifactMsg) -> Result<(PathBuf, PathBuf), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let artifact = out_dir.join(&a.name);
    let bundle = out_dir.join(format!("{}{BUNDLE_SUFFIX}", a.name));
    std::fs::write(&artifact, &a.bytes).map_err(|e| BuildError::io(&artifact, e))?;
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(a.mode & 0o777))
        .map_err(|e| BuildError::io(&artifact, e))?;
    std::fs::write(&bundle, &a.bundle).map_err(|e| BuildError::io(&bundle, e))?;
    Ok((artifact, bundle))
}

/// The enclave's own, measured settings; the host cannot change them.
#[derive(Clone, Debug)]
pub struct EnclaveSettings {
    pub log_url: String,
    pub log_key: String,
    pub sandbox: SandboxConfig,
    pub builder_id: String,
    pub hidden: Vec<PathBuf>,
    /// `Relay` or `HostBundle` (see [`SourceMode`]).
    pub source: SourceMode,
    /// Where the host's CONNECT relay listens (used by `Relay`).
    pub relay: Endpoint,
}

struct RelayLog<'a, S: Stream> {
    url: String,
    ch: RefCell<&'a mut Channel<S>>,
}

impl<S: Stream> LogClient for RelayLog<'_, S> {
    fn url(&self) -> &str {
        &self.url
    }
    fn post_entry(&self, entry: &[u8]) -> Result<(u16, Vec<u8>), BuildError> {
        let mut ch = self.ch.borrow_mut();
        ch.send(&Message::LogSubmit {
            entry: entry.to_vec(),
        })
        .map_err(chan_err)?;
        match ch.recv().map_err(chan_err)? {
            Message::LogAnswer {
                error: Some(reason),
                ..
            } => Err(BuildError::LogUnreachable {
                url: self.url.clone(),
                reason: format!("(relayed by the host) {reason}"),
            }),
            Message::LogAnswer { status, body, .. } => Ok((status, body)),
            other => Err(BuildError::Transport(format!(
                "expected a log answer, got a {}",
                kind(&other)
            ))),
        }
    }
}

/// Enclave: reads one job from `stream`, builds it with the existing
/// pipeline, and sends back the result (or the error and its code).
pub fn run_enclave<S: Stream>(
    stream: S,
    settings: &EnclaveSettings,
    nsm: &dyn Nsm,
) -> Result<pipeline::BuildOutcome, BuildError> {
    let mut ch = Channel::new(stream);
    let job = match ch.recv().map_err(chan_err)? {
        Message::Job(job) => job,
        other => {
            return Err(BuildError::Transport(format!(
                "expected a job, got a {}",
                kind(&other)
            )))
        }
    };
    let result = build_job(&mut ch, &job, settings, nsm);
    let msg = match &result {
        Ok((outcome, artifacts)) => JobResult::Ok {
            commit: outcome.commit.clone(),
            index: outcome.index,
            artifacts: artifacts.clone(),
        },
        Err(e) => JobResult::Err {
            code: e.code().to_string(),
            message: e.to_string(),
        },
    };
    ch.send(&Message::Result(msg)).map_err(chan_err)?;
    result.map(|(o, _)| o)
}

/// The enclave clones `job.uri` itself through the host's relay. Only
/// `https://` is accepted: TLS, verified here, is what keeps the host from
/// substituting another repository.
fn relay_source(
    job: &Job,
    relay: &Endpoint,
    tls_roots: &Option<PathBuf>,
) -> Result<SourceRequest, BuildError> {
    if !job.uri.starts_with("https://") {
        return Err(BuildError::UnauthenticatedSource(job.uri.clone()));
    }
    let forwarder = crate::relay::Forwarder::start(relay.clone())
        .map_err(|e| BuildError::Transport(format!("starting the relay forwarder: {e}")))?;
    let mut net_config = vec![
        ("http.proxy".to_string(), forwarder.proxy_url()),
        ("http.sslVerify".to_string(), "true".to_string()),
    ];
    if let Some(roots) = tls_roots {
        net_config.push(("http.sslCAInfo".into(), roots.display().to_string()));
    }
    Ok(SourceRequest {
        repo: job.uri.clone(),
        commit: Some(job.commit.clone()),
        git_ref: job.git_ref.clone(),
        uri: None,
        net_config,
    })
}

/// The enclave builds the git bundle (and submodule bundles) the host sent,
/// written under `work`.
fn host_bundle_source(
    job: &Job,
    work: &Path,
) -> Result<(SourceRequest, source::SubmoduleBundles), BuildError> {
    let file = work.join("job.bundle");
    std::fs::write(&file, &job.git_bundle).map_err(|e| BuildError::io(&file, e))?;
    // Submodules come only from the job: files named by index (the host's
    // commit text never becomes a path), found by commit id.
    let mut submodules = source::SubmoduleBundles::new();
    for (i, sub) in job.submodules.iter().enumerate() {
        let commit = sub.commit.to_ascii_lowercase();
        if !attestlog::claim::is_full_commit_id(&commit) {
            return Err(BuildError::Submodules(format!(
                "the job's submodule bundle {i} names {:?}, not a full commit id",
                sub.commit
            )));
        }
        let path = work.join(format!("submodule-{i}.bundle"));
        std::fs::write(&path, &sub.git_bundle).map_err(|e| BuildError::io(&path, e))?;
        submodules.insert(commit, path);
    }
    let source = SourceRequest {
        repo: file.to_string_lossy().to_string(),
        commit: Some(job.commit.clone()),
        git_ref: job.git_ref.clone(),
        uri: Some(job.uri.clone()),
        net_config: Vec::new(),
    };
    Ok((source, submodules))
}

fn build_job<S: Stream>(
    ch: &mut Channel<S>,
    job: &Job,
    settings: &EnclaveSettings,
    nsm: &dyn Nsm,
) -> Result<(pipeline::BuildOutcome, Vec<ArtifactMsg>), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    if job.cmd.is_some() || !job.outputs.is_empty() {
        return Err(BuildError::HostBuildDefinition);
    }
    let work = tempfile::Builder::new()
        .prefix("enclave-job-")
        .tempdir()
        .map_err(|e| BuildError::io(std::env::temp_dir(), e))?;
    let (source, submodules, refs) = match &settings.source {
        SourceMode::Relay { tls_roots } => (
            relay_source(job, &settings.relay, tls_roots)?,
            None,
            RefSource::Advertised {
                allow_unreferenced: job.allow_unreferenced,
            },
        ),
        SourceMode::HostBundle | SourceMode::Direct => {
            let given = refs::from_host(
                job.source_ref.as_deref(),
                &job.commit,
                job.allow_unreferenced,
            )?;
            let (source, bundles) = host_bundle_source(job, work.path())?;
            (source, Some(bundles), RefSource::Given(given))
        }
    };
    let mut sandbox = settings.sandbox.clone();
    if let Some(t) = job.timeout_secs {
        sandbox.timeout_secs = sandbox.timeout_secs.min(t);
    }
    if let Some(m) = job.memory_mb {
        sandbox.memory_mb = sandbox.memory_mb.min(m);
    }
    let out_dir = work.path().join("out");
    let req = BuildRequest {
        source,
        refs,
        cmd: None,
        outputs: Vec::new(),
        log_url: settings.log_url.clone(),
        log_key: settings.log_key.clone(),
        sandbox,
        out_dir,
        builder_id: settings.builder_id.clone(),
        hidden: settings.hidden.clone(),
    };
    let relay = RelayLog {
        url: settings.log_url.clone(),
        ch: RefCell::new(ch),
    };
    let outcome = pipeline::build_with_submodules(&req, nsm, &relay, submodules.as_ref())?;
    let mut artifacts = Vec::new();
    for p in &outcome.published {
        let name = p
            .artifact
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let bytes = std::fs::read(&p.artifact).map_err(|e| BuildError::io(&p.artifact, e))?;
        let mode = std::fs::metadata(&p.artifact)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        let bundle = std::fs::read(&p.bundle).map_err(|e| BuildError::io(&p.bundle, e))?;
        artifacts.push(ArtifactMsg {
            name,
            bytes,
            mode,
            bundle,
        });
    }
    Ok((outcome, artifacts))
}
