//! The build sandbox: bubblewrap with no network, a read-only system, write
//! access only to the build directory, a fresh `/tmp` (a tmpfs of at most
//! `tmp_mb`) and `/proc`, a minimal `/dev`, an emptied environment, no
//! capabilities, an unprivileged uid, and limits on time (the whole
//! sandbox is killed), on the whole build's memory and process count (a
//! fresh cgroup per build, see [`cgroup`], joined before exec, killed and
//! removed afterwards) and on each process's address space (`RLIMIT_AS`,
//! set with `setrlimit` in the child before `bwrap` runs, inherited by the
//! build). Without a usable cgroup the build is refused
//! (`cgroup_unavailable`) unless the measured setting `cgroup` is `none`.
//!
//! What the build can see is exactly what [`bwrap_args`] lists; the NSM
//! device, the builder's keys and the dev CA are never mounted, and
//! [`check_hidden`] refuses to start when a path that must stay hidden lies
//! under something that is mounted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::BuildError;

pub mod cgroup;

/// Where the build directory is mounted inside the sandbox.
pub const BUILD_MOUNT: &str = "/build";
/// The unprivileged user and group the build runs as.
pub const SANDBOX_UID: u32 = 1000;
/// System directories mounted read-only.
pub const RO_SYSTEM: &[&str] = &["/usr"];
/// Single files and directories of /etc the toolchain needs, mounted read-only when present.
pub const RO_ETC: &[&str] = &[
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
];
/// Top-level names that are usually symlinks into /usr (merged /usr).
pub const TOP_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/// The fixed PATH inside the sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How the build is isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    Bwrap,
    /// No isolation at all: for debugging only.
    None,
}

/// Whether the whole build is bounded by a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// A fresh cgroup per build; no usable cgroup refuses the build.
    Required,
    /// No cgroup: memory is bounded per process only and the process count
    /// not at all. An explicit, measured choice for machines without one.
    None,
}

/// Default `pids_max`: enough for a parallel compiler and its shells, far
/// below what exhausts the host's pid space.
pub const DEFAULT_PIDS_MAX: u64 = 1024;
/// Default `tmp_mb`: the sandbox's `/tmp` is memory (and counts against
/// `memory_mb` too), so it gets a bound of its own well under it.
pub const DEFAULT_TMP_MB: u64 = 1024;
/// Default `output_mb`: each output is hashed and copied (and, split,
/// sent to the host) in full; a release binary or archive fits.
pub const DEFAULT_OUTPUT_MB: u64 = 1024;
/// Default `outputs_total_mb`: all outputs of one build together.
pub const DEFAULT_OUTPUTS_TOTAL_MB: u64 = 2048;

/// The sandbox settings; all of them are measured into PCR1 and recorded in
/// the statement's `internalParameters.sandbox`.
#[derive(Clone, Debug, Serialize)]
pub struct SandboxConfig {
    pub kind: SandboxKind,
    pub timeout_secs: u64,
    /// The whole build's memory (cgroup, swap included) and each process's
    /// address space (`RLIMIT_AS`), in MiB.
    pub memory_mb: u64,
    /// The most processes (threads included) the build may run at once.
    pub pids_max: u64,
    /// Size of the sandbox's `/tmp` tmpfs in MiB.
    pub tmp_mb: u64,
    /// Largest single output in MiB.
    pub output_mb: u64,
    /// Largest total of all outputs in MiB.
    pub outputs_total_mb: u64,
    pub cgroup: CgroupMode,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            kind: SandboxKind::Bwrap,
            timeout_secs: 600,
            memory_mb: 4096,
            pids_max: DEFAULT_PIDS_MAX,
            tmp_mb: DEFAULT_TMP_MB,
            output_mb: DEFAULT_OUTPUT_MB,
            outputs_total_mb: DEFAULT_OUTPUTS_TOTAL_MB,
            cgroup: CgroupMode::Required,
        }
    }
}

/// MiB to bytes, saturating.
pub fn mib(n: u64) -> u64 {
    n.saturating_mul(1024 * 1024)
}

/// The environment every build gets, before the declared variables.
pub fn base_env(source_date_epoch: u64, home: &str) -> BTreeMap<String, String> {
    [
        ("PATH", SANDBOX_PATH.to_string()),
        ("HOME", home.to_string()),
        ("TMPDIR", "/tmp".to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("SOURCE_DATE_EPOCH", source_date_epoch.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The bwrap arguments up to and including `--`, for a build directory on the host.
pub fn bwrap_args(
    config: &SandboxConfig,
    build_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "1000",
        "--gid",
        "1000",
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "attestlog-build",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for dir in RO_SYSTEM {
        a.extend(["--ro-bind".into(), dir.to_string(), dir.to_string()]);
    }
    for top in TOP_LINKS {
        match std::fs::read_link(top) {
            Ok(target) => a.extend([
                "--symlink".into(),
                target.display().to_string(),
                top.to_string(),
            ]),
            Err(_) if Path::new(top).is_dir() => {
                a.extend(["--ro-bind".into(), top.to_string(), top.to_string()])
            }
            Err(_) => {}
        }
    }
    for p in RO_ETC {
        a.extend(["--ro-bind-try".into(), p.to_string(), p.to_string()]);
    }
    a.extend(
        ["--proc", "/proc", "--dev", "/dev", "--size"]
            .iter()
            .map(|s| s.to_string()),
    );
    a.extend([
        mib(config.tmp_mb).to_string(),
        "--tmpfs".into(),
        "/tmp".into(),
    ]);
    a.extend([
        "--bind".into(),
        build_dir.display().to_string(),
        BUILD_MOUNT.into(),
        "--chdir".into(),
        BUILD_MOUNT.into(),
        "--clearenv".into(),
    ]);
    for (k, v) in env {
        a.extend(["--setenv".into(), k.clone(), v.clone()]);
    }
    a.push("--".into());
    a
}

/// Refuses to run when a path that must stay hidden from the build (the
/// NSM, keys, the dev CA) is inside something the sandbox mounts.
pub fn check_hidden(build_dir: &Path, hidden: &[PathBuf]) -> Result<(), BuildError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let build = canon(build_dir);
    let mut mounted: Vec<PathBuf> = RO_SYSTEM.iter().chain(RO_ETC).map(PathBuf::from).collect();
    mounted.push(build.clone());
    for h in hidden {
        let h = canon(h);
        if let Some(m) = mounted
            .iter()
            .find(|m| h.starts_with(m) || m.starts_with(&h))
        {
            return Err(BuildError::Sandbox(format!(
                "{} must stay hidden from the build but overlaps the mounted {}",
                h.display(),
                m.display()
            )));
        }
    }
    Ok(())
}

/// Runs `command` in `build_dir` under the sandbox. The build's stdout and
/// stderr go to `log`; on failure the last line of it is in the error.
pub fn run(
    config: &SandboxConfig,
    build_dir: &Path,
    command: &[String],
    env: &BTreeMap<String, String>,
    log: &Path,
) -> Result<(), BuildError> {
    if config.tmp_mb == 0 {
        // tmpfs reads `size=0` as no limit at all.
        return Err(BuildError::Sandbox("tmp_mb must be at least 1".into()));
    }
    let log_file = File::create(log).map_err(|e| BuildError::io(log, e))?;
    let log_err = log_file.try_clone().map_err(|e| BuildError::io(log, e))?;
    let mut cmd = match config.kind {
        SandboxKind::Bwrap => {
            let mut c = Command::new("bwrap");
            c.args(bwrap_args(config, build_dir, env)).args(command);
            c
        }
        SandboxKind::None => {
            let (prog, rest) = command
                .split_first()
                .ok_or_else(|| BuildError::Sandbox("empty command".into()))?;
            let mut c = Command::new(prog);
            c.args(rest).current_dir(build_dir).env_clear().envs(env);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0);
    let limit = mib(config.memory_mb);
    let group = match config.cgroup {
        CgroupMode::Required => Some(cgroup::BuildCgroup::create(cgroup::Limits {
            memory_bytes: limit,
            pids: config.pids_max,
        })?),
        CgroupMode::None => None,
    };
    let join = group.as_ref().map(|g| g.join_paths()).unwrap_or_default();
    // SAFETY: joining the cgroup (open/write/close) and setrlimit are
    // async-signal-safe and touch no memory shared with the parent; they
    // run in the forked child before exec.
    unsafe {
        cmd.pre_exec(move || {
            cgroup::join(&join)?;
            let rl = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| BuildError::Sandbox(format!("cannot start {:?}: {e}", cmd.get_program())))?;
    let deadline = Instant::now() + Duration::from_secs(config.timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // The child leads its own process group; kill all of it. Under
                // bwrap, --die-with-parent and the PID namespace take the rest.
                // SAFETY: plain syscall on a pid we spawned.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                // Dropping the group kills whatever else is left in it.
                drop(group);
                return Err(BuildError::BuildTimeout(config.timeout_secs));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(BuildError::Sandbox(format!("wait: {e}"))),
        }
    };
    // Nothing the build started outlives it (nor touches its outputs later).
    if let Some(g) = &group {
        g.kill_all();
        // A process killed for memory means the build did not run as
        // written, even when its exit status hides it.
        if g.oom_killed() {
            return Err(BuildError::BuildMemory(config.memory_mb));
        }
        if !status.success() && g.pids_limit_hit() {
            return Err(BuildError::BuildPids(config.pids_max));
        }
    }
    drop(group);
    if status.success() {
        return Ok(());
    }
    let last = last_line(log);
    Err(BuildError::BuildFailed(format!(
        "{status}; last output: {last}"
    )))
}

fn last_line(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("(none)")
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_isolate_network_env_and_mounts() {
        let env = base_env(0, BUILD_MOUNT);
        let config = SandboxConfig {
            tmp_mb: 3,
            ..SandboxConfig::default()
        };
        let a = bwrap_args(&config, Path::new("/x/build"), &env).join(" ");
        for needle in [
            "--unshare-all",
            "--unshare-user",
            "--cap-drop ALL",
            "--ro-bind /usr /usr",
            "--proc /proc",
            "--dev /dev",
            "--size 3145728 --tmpfs /tmp",
            "--bind /x/build /build",
            "--clearenv",
            "--setenv PATH",
        ] {
            assert!(a.contains(needle), "missing {needle} in {a}");
        }
        assert!(!a.contains("/dev/nsm"));
        assert!(a.ends_with("--"));
    }

    /// tmpfs reads `size=0` as unlimited, so a zero /tmp size is refused.
    #[test]
    fn a_zero_tmp_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = SandboxConfig {
            tmp_mb: 0,
            ..SandboxConfig::default()
        };
        let err = run(
            &config,
            dir.path(),
            &["true".to_string()],
            &BTreeMap::new(),
            &dir.path().join("log"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "sandbox");
        assert!(err.to_string().contains("tmp_mb"), "{err}");
    }

    #[test]
    fn hidden_paths_must_not_be_mounted() {
        let b = tempfile::tempdir().unwrap();
        assert!(check_hidden(b.path(), &[PathBuf::from("/nonexistent/ca")]).is_ok());
        let inside = b.path().join("ca");
        assert_eq!(
            check_hidden(b.path(), &[inside]).unwrap_err().code(),
            "sandbox"
        );
        assert!(check_hidden(b.path(), &[PathBuf::from("/usr/share/ca")]).is_err());
    }
}
