//! Starting and stopping the enclave, one per job. A fresh enclave for every
//! build means nothing one build leaves behind (files, processes, a
//! compromised toolchain's state) can reach the next, and the enclave's PCRs
//! always describe the image that built it.
//!
//! Lifecycle, driven by [`run_job`]: the host prepares the job first (a bad
//! repository never boots an enclave), then [`EnclaveLauncher::start`], then
//! waits for the enclave to connect (giving up after a deadline, or at once
//! when a local enclave process exits), serves the job, and always stops the
//! enclave, whatever the outcome.
//!
//! Two launchers: [`NitroCli`] runs `nitro-cli run-enclave` (never with
//! `--debug-mode`, whose attestations carry zeroed PCRs) and
//! `nitro-cli terminate-enclave`; [`LocalCommand`] runs the enclave half as
//! a child process on this machine, for development and tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::BuildError;
use crate::hostsplit::{self, HostOutcome};
use crate::transport::{self, Job, Listener};

/// Starts one enclave.
pub trait EnclaveLauncher: Send + Sync {
    fn start(&self) -> Result<Box<dyn RunningEnclave>, BuildError>;
}

/// An enclave that was started and must be stopped.
pub trait RunningEnclave: Send {
    /// `Some(reason)` once the enclave is known to have ended (a local
    /// process that exited); `None` while it may still connect.
    fn ended(&mut self) -> Option<String>;
    /// Stops the enclave; called once, after the job.
    fn stop(self: Box<Self>) -> Result<(), BuildError>;
}

/// `nitro-cli run-enclave` for each job.
#[derive(Clone, Debug)]
pub struct NitroCli {
    /// The `nitro-cli` executable.
    pub program: PathBuf,
    pub eif: PathBuf,
    pub cpu_count: u32,
    pub memory_mib: u64,
    /// The enclave's CID; nitro-cli picks one when absent.
    pub cid: Option<u32>,
}

impl NitroCli {
    /// The `run-enclave` arguments. There is deliberately no way to add
    /// `--debug-mode`.
    pub fn run_args(&self) -> Vec<String> {
        let mut args = vec![
            "run-enclave".to_string(),
            "--eif-path".into(),
            self.eif.to_string_lossy().into_owned(),
            "--cpu-count".into(),
            self.cpu_count.to_string(),
            "--memory".into(),
            self.memory_mib.to_string(),
        ];
        if let Some(cid) = self.cid {
            args.extend(["--enclave-cid".into(), cid.to_string()]);
        }
        args
    }
}

/// What `nitro-cli run-enclave` says about the enclave it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    pub enclave_id: String,
    /// True when the enclave runs in debug mode.
    pub debug: bool,
}

/// Why `nitro-cli run-enclave` output does not describe an enclave.
#[derive(Debug, thiserror::Error)]
pub enum RunOutputError {
    #[error("nitro-cli printed no JSON description of the enclave")]
    NoJson,
    #[error("nitro-cli output is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("nitro-cli output has no EnclaveID")]
    NoEnclaveId,
}

/// Reads `nitro-cli run-enclave` output: progress lines, then one JSON object.
pub fn parse_run_output(stdout: &str) -> Result<RunInfo, RunOutputError> {
    let start = stdout.find('{').ok_or(RunOutputError::NoJson)?;
    let v: serde_json::Value =
        serde_json::from_str(&stdout[start..]).map_err(RunOutputError::NotJson)?;
    let enclave_id = v["EnclaveID"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or(RunOutputError::NoEnclaveId)?
        .to_string();
    // describe-enclaves reports "NONE" or "DEBUG_MODE"; AWS's docs say "Debug".
    let debug = v["Flags"]
        .as_str()
        .is_some_and(|f| f.to_ascii_lowercase().contains("debug"));
    Ok(RunInfo { enclave_id, debug })
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

struct NitroEnclave {
    program: PathBuf,
    id: String,
}

impl EnclaveLauncher for NitroCli {
    fn start(&self) -> Result<Box<dyn RunningEnclave>, BuildError> {
        let out = Command::new(&self.program)
            .args(self.run_args())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                BuildError::EnclaveStart(format!("cannot run {}: {e}", self.program.display()))
            })?;
        if !out.status.success() {
            return Err(BuildError::EnclaveStart(format!(
                "nitro-cli run-enclave failed ({}): {}",
                out.status,
                last_line(&out.stderr)
            )));
        }
        let info = parse_run_output(&String::from_utf8_lossy(&out.stdout))
            .map_err(|e| BuildError::EnclaveStart(e.to_string()))?;
        let enclave = Box::new(NitroEnclave {
            program: self.program.clone(),
            id: info.enclave_id,
        });
        if info.debug {
            let _ = enclave.stop();
            return Err(BuildError::EnclaveStart(
                "the enclave started in debug mode, whose attestations carry zeroed PCRs; terminated it"
                    .into(),
            ));
        }
        tracing::info!(enclave_id = %enclave.id, "enclave started");
        Ok(enclave)
    }
}

impl RunningEnclave for NitroEnclave {
    fn ended(&mut self) -> Option<String> {
        None
    }

    fn stop(self: Box<Self>) -> Result<(), BuildError> {
        let out = Command::new(&self.program)
            .args(["terminate-enclave", "--enclave-id", &self.id])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BuildError::EnclaveStart(format!("cannot run nitro-cli: {e}")))?;
        if !out.status.success() {
            return Err(BuildError::EnclaveStart(format!(
                "nitro-cli terminate-enclave --enclave-id {} failed: {}",
                self.id,
                last_line(&out.stderr)
            )));
        }
        Ok(())
    }
}

/// The enclave half as a local child process (`argv[0]` and its arguments).
#[derive(Clone, Debug)]
pub struct LocalCommand {
    pub argv: Vec<String>,
}

struct LocalEnclave {
    child: Child,
}

impl EnclaveLauncher for LocalCommand {
    fn start(&self) -> Result<Box<dyn RunningEnclave>, BuildError> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| BuildError::EnclaveStart("empty enclave command".into()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| BuildError::EnclaveStart(format!("cannot run {program}: {e}")))?;
        Ok(Box::new(LocalEnclave { child }))
    }
}

/// How long a finished local enclave gets to exit by itself after the job.
const LOCAL_EXIT_GRACE: Duration = Duration::from_secs(10);

impl RunningEnclave for LocalEnclave {
    fn ended(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("the enclave process exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for the enclave process: {e}")),
        }
    }

    fn stop(mut self: Box<Self>) -> Result<(), BuildError> {
        let deadline = Instant::now() + LOCAL_EXIT_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

/// How long the host waits for an enclave.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// From start until the enclave connects.
    pub connect: Duration,
    /// Between two messages from a connected enclave; must exceed the
    /// enclave's own build time limit, since a build is silent.
    pub idle: Duration,
}

/// Starts an enclave, waits for it to connect, serves `job`, and stops the
/// enclave. Errors from the job win over an error stopping the enclave,
/// which is only logged then.
pub fn run_job(
    launcher: &dyn EnclaveLauncher,
    listener: &dyn Listener,
    deadlines: Deadlines,
    job: Job,
    log_url: &str,
    out_dir: &Path,
) -> Result<HostOutcome, BuildError> {
    let mut enclave = launcher.start()?;
    let served = accept(listener, enclave.as_mut(), deadlines.connect)
        .and_then(|stream| hostsplit::serve_job(stream, job, log_url, out_dir, deadlines.idle));
    let stopped = enclave.stop();
    match (served, stopped) {
        (Err(e), Err(stop)) => {
            tracing::warn!("stopping the enclave: {stop}");
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
        (Ok(_), Err(stop)) => Err(stop),
        (Ok(outcome), Ok(())) => Ok(outcome),
    }
}

fn accept(
    listener: &dyn Listener,
    enclave: &mut dyn RunningEnclave,
    timeout: Duration,
) -> Result<Box<dyn transport::Stream>, BuildError> {
    let deadline = Instant::now() + timeout;
    loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if let Some(stream) = transport::accept_within(listener, slice)
            .map_err(|e| BuildError::Transport(format!("accepting the enclave: {e}")))?
        {
            return Ok(stream);
        }
        if let Some(reason) = enclave.ended() {
            return Err(BuildError::EnclaveStart(format!(
                "{reason} before connecting"
            )));
        }
        if Instant::now() >= deadline {
            return Err(BuildError::EnclaveStart(format!(
                "the enclave did not connect within {} s",
                timeout.as_secs()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_args_never_ask_for_debug_mode() {
        let n = NitroCli {
            program: "nitro-cli".into(),
            eif: "/srv/builder.eif".into(),
            cpu_count: 2,
            memory_mib: 4096,
            cid: Some(16),
        };
        assert_eq!(
            n.run_args().join(" "),
            "run-enclave --eif-path /srv/builder.eif --cpu-count 2 --memory 4096 --enclave-cid 16"
        );
        assert!(!NitroCli { cid: None, ..n }
            .run_args()
            .iter()
            .any(|a| a.contains("debug") || a == "--enclave-cid"));
    }

    #[test]
    fn parses_run_enclave_output() {
        let out = "Start allocating memory...\nStarted enclave with enclave-cid: 16, memory: 4096 MiB, cpu-ids: [1, 3]\n\
                   {\n  \"EnclaveName\": \"builder\",\n  \"EnclaveID\": \"i-0abc-enc123\",\n  \"ProcessID\": 7077,\n  \
                   \"EnclaveCID\": 16,\n  \"NumberOfCPUs\": 2,\n  \"CPUIDs\": [1, 3],\n  \"MemoryMiB\": 4096\n}\n";
        let info = parse_run_output(out).unwrap();
        assert_eq!(info.enclave_id, "i-0abc-enc123");
        assert!(!info.debug);
        assert!(matches!(
            parse_run_output("Started enclave\n"),
            Err(RunOutputError::NoJson)
        ));
        assert!(matches!(
            parse_run_output("{\"EnclaveCID\": 16}"),
            Err(RunOutputError::NoEnclaveId)
        ));
        assert!(matches!(
            parse_run_output("{not json"),
            Err(RunOutputError::NotJson(_))
        ));
        for (flags, debug) in [("DEBUG_MODE", true), ("Debug", true), ("NONE", false)] {
            let text = format!("{{\"EnclaveID\": \"i-1\", \"Flags\": \"{flags}\"}}");
            assert_eq!(parse_run_output(&text).unwrap().debug, debug, "{flags}");
        }
    }
}
