//! One fresh cgroup per build, bounding all of its processes together:
//! total memory (swap included, so it cannot be evaded by swapping) and
//! the number of processes.
//!
//! Contract: [`BuildCgroup::create`] makes the group under the builder's own
//! cgroup (so any limit above it still applies) in cgroup v2 when the
//! builder's cgroup can hand `memory` and `pids` to a child, else in the
//! cgroup v1 `memory` and `pids` hierarchies; no usable cgroup is
//! `cgroup_unavailable`. The build's first process joins it in the forked
//! child before exec ([`BuildCgroup::join_paths`] + [`join`]), so nothing it
//! starts escapes. Dropping the group kills everything still in it and
//! removes it.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::BuildError;

/// How many rounds [`BuildCgroup::kill_all`] reads the member list and
/// kills, for processes forked between a read and a kill (the pids limit
/// bounds how many can appear per round).
const KILL_ROUNDS: usize = 200;
/// Pause between kill rounds and between attempts to remove the group
/// (an exiting process leaves it only once the kernel has reaped it).
const KILL_PAUSE: Duration = Duration::from_millis(10);

/// Which cgroup interface a group lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What a build's cgroup bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u64,
}

/// One mounted cgroup hierarchy: its mount point, the path of the mount's
/// root inside the hierarchy, and the controllers (v1) it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    root: String,
    version: Version,
    controllers: Vec<String>,
}

/// The cgroup mounts listed in `/proc/self/mountinfo` text.
fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            let version = match fstype {
                "cgroup2" => Version::V2,
                "cgroup" => Version::V1,
                _ => return None,
            };
            Some(Mount {
                root: left.get(3)?.to_string(),
                point: PathBuf::from(unescape(left.get(4)?)),
                version,
                controllers: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The builder's own cgroup path for a v1 `controller`, or for v2 with
/// `None`, from `/proc/self/cgroup` text.
fn own_path(proc_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

/// The directory of the builder's own cgroup in `mount`.
fn own_dir(mount: &Mount, path: &str) -> PathBuf {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str()).unwrap_or(path)
    };
    mount.point.join(rel.trim_start_matches('/'))
}

fn unavailable(why: impl std::fmt::Display) -> BuildError {
    BuildError::CgroupUnavailable(why.to_string())
}

/// Writes a control file the kernel made; never creates one (a directory
/// that is not in a cgroup file system has none, and is no cgroup).
fn write(dir: &Path, file: &str, value: &str) -> Result<(), BuildError> {
    use std::io::Write;
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| unavailable(format!("{}: {e}", path.display())))
}

/// A build's cgroup: one directory (v2) or one per hierarchy (v1).
#[derive(Debug)]
pub struct BuildCgroup {
    pub version: Version,
    dirs: Vec<PathBuf>,
    /// The directory holding the memory controller's files.
    memory: PathBuf,
    /// The directory holding the pids controller's files.
    pids: PathBuf,
}

/// Distinguishes the groups of concurrent builds in one process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl BuildCgroup {
    /// Creates the group and sets `limits` (see the module docs).
    pub fn create(limits: Limits) -> Result<Self, BuildError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| unavailable(format!("/proc/self/mountinfo: {e}")))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| unavailable(format!("/proc/self/cgroup: {e}")))?;
        let mounts = parse_mounts(&mountinfo);
        let name = format!(
            "attestlog-build-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let v2 = match Self::create_v2(&mounts, &own, &name, limits) {
            Ok(group) => return Ok(group),
            Err(e) => e,
        };
        Self::create_v1(&mounts, &own, &name, limits).map_err(|v1| {
            unavailable(format!(
                "cgroup v2: {}; cgroup v1: {}",
                inner(&v2),
                inner(&v1)
            ))
        })
    }

    fn create_v2(
        mounts: &[Mount],
        own: &str,
        name: &str,
        limits: Limits,
    ) -> Result<Self, BuildError> {
        let mount = mounts
            .iter()
            .find(|m| m.version == Version::V2)
            .ok_or_else(|| unavailable("not mounted"))?;
        let path =
            own_path(own, None).ok_or_else(|| unavailable("no entry in /proc/self/cgroup"))?;
        let parent = own_dir(mount, &path);
        let controllers = std::fs::read_to_string(parent.join("cgroup.controllers"))
            .map_err(|e| unavailable(format!("{}: {e}", parent.display())))?;
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if !(has("memory") && has("pids")) {
            return Err(unavailable(format!(
                "{} does not offer the memory and pids controllers",
                parent.display()
            )));
        }
        let subtree =
            std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        if !subtree.contains("memory") || !subtree.contains("pids") {
            write(&parent, "cgroup.subtree_control", "+memory +pids")?;
        }
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        let group = BuildCgroup {
            version: Version::V2,
            dirs: vec![dir.clone()],
            memory: dir.clone(),
            pids: dir.clone(),
        };
        write(&dir, "memory.max", &limits.memory_bytes.to_string())?;
        if dir.join("memory.swap.max").exists() {
            write(&dir, "memory.swap.max", "0")?;
        }
        write(&dir, "pids.max", &limits.pids.to_string())?;
        Ok(group)
    }

    fn create_v1(
        mounts: &[Mount],
        own: &str,
        name: &str,
        limits: Limits,
    ) -> Result<Self, BuildError> {
        let dir_for = |controller: &str| -> Result<PathBuf, BuildError> {
            let mount = mounts
                .iter()
                .find(|m| m.version == Version::V1 && m.controllers.iter().any(|c| c == controller))
                .ok_or_else(|| unavailable(format!("no {controller} hierarchy mounted")))?;
            let path = own_path(own, Some(controller)).ok_or_else(|| {
                unavailable(format!("no {controller} entry in /proc/self/cgroup"))
            })?;
            Ok(own_dir(mount, &path).join(name))
        };
        let (memory, pids) = (dir_for("memory")?, dir_for("pids")?);
        let mut group = BuildCgroup {
            version: Version::V1,
            dirs: Vec::new(),
            memory: memory.clone(),
            pids: pids.clone(),
        };
        for dir in [&memory, &pids] {
            if !group.dirs.contains(dir) {
                std::fs::create_dir(dir)
                    .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
                group.dirs.push(dir.clone());
            }
        }
        let bytes = limits.memory_bytes.to_string();
        write(&memory, "memory.limit_in_bytes", &bytes)?;
        // Memory plus swap, when swap is accounted: set after the memory
        // limit, which it may not undercut.
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            write(&memory, "memory.memsw.limit_in_bytes", &bytes)?;
        }
        write(&pids, "pids.max", &limits.pids.to_string())?;
        Ok(group)
    }

    /// The `cgroup.procs` files the build's first process writes itself
    /// into, prepared before the fork (see [`join`]).
    pub fn join_paths(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|d| {
                use std::os::unix::ffi::OsStrExt;
                CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok()
            })
            .collect()
    }

    /// The pids of the processes in the group.
    fn members(&self) -> Vec<i32> {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// Kills every process in the group (`cgroup.kill` where the kernel has
    /// it, else each member, repeatedly, until none is left).
    pub fn kill_all(&self) {
        if self.version == Version::V2 {
            let _ = std::fs::write(self.memory.join("cgroup.kill"), "1");
        }
        for _ in 0..KILL_ROUNDS {
            let members = self.members();
            if members.is_empty() {
                return;
            }
            for pid in members {
                // SAFETY: a plain syscall; the pid is a member of the group
                // this builder created for the build.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(KILL_PAUSE);
        }
    }

    fn counter(dir: &Path, file: &str, key: &str) -> u64 {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or(0)
    }

    /// Whether the kernel killed a member for exceeding the memory limit.
    pub fn oom_killed(&self) -> bool {
        match self.version {
            Version::V2 => Self::counter(&self.memory, "memory.events", "oom_kill") > 0,
            Version::V1 => {
                Self::counter(&self.memory, "memory.oom_control", "oom_kill") > 0
                    || Self::counter(&self.memory, "memory.oom_control", "under_oom") > 0
            }
        }
    }

    /// Whether a fork or clone was refused by the pids limit.
    pub fn pids_limit_hit(&self) -> bool {
        Self::counter(&self.pids, "pids.events", "max") > 0
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in self.dirs.iter().rev() {
            for _ in 0..KILL_ROUNDS {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(KILL_PAUSE);
            }
        }
    }
}

fn inner(e: &BuildError) -> String {
    match e {
        BuildError::CgroupUnavailable(why) => why.clone(),
        other => other.to_string(),
    }
}

/// In the forked child, before exec: moves the calling process into each
/// of `paths` (`cgroup.procs` files) by writing `0`, which names the
/// writer. Only async-signal-safe calls (open, write, close).
pub fn join(paths: &[CString]) -> std::io::Result<()> {
    for path in paths {
        // SAFETY: open/write/close on a NUL-terminated path prepared before
        // the fork; no allocation and no locks.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/pids rw,relatime shared:10 - cgroup cgroup rw,pids
32 24 0:28 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw
33 24 0:29 /docker/abc /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct
40 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
";

    #[test]
    fn finds_cgroup_mounts_and_own_paths() {
        let mounts = parse_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(mounts[0].controllers.contains(&"memory".to_string()));
        assert_eq!(mounts[2].version, Version::V2);
        assert_eq!(mounts[3].point, PathBuf::from("/sys/fs/cgroup/cpu x"));
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/x\n2:cpu,cpuacct:/docker/abc/y\n0::/user.slice\n";
        assert_eq!(
            own_path(own, Some("memory")).as_deref(),
            Some("/process_api/x")
        );
        assert_eq!(own_path(own, Some("pids")).as_deref(), Some("/"));
        assert_eq!(
            own_path(own, Some("cpuacct")).as_deref(),
            Some("/docker/abc/y")
        );
        assert_eq!(own_path(own, None).as_deref(), Some("/user.slice"));
        assert_eq!(own_path("4:memory:/m\n", None), None);
        assert_eq!(
            own_dir(&mounts[0], "/process_api/x"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x")
        );
        assert_eq!(
            own_dir(&mounts[1], "/"),
            PathBuf::from("/sys/fs/cgroup/pids")
        );
        // A mount of a subtree: the path is relative to the mount's root.
        assert_eq!(
            own_dir(&mounts[3], "/docker/abc/y"),
            PathBuf::from("/sys/fs/cgroup/cpu x/y")
        );
    }

    #[test]
    fn reads_event_counters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("pids.events"), "max 0\n").unwrap();
        assert_eq!(
            BuildCgroup::counter(dir.path(), "memory.oom_control", "oom_kill"),
            2
        );
        assert_eq!(BuildCgroup::counter(dir.path(), "pids.events", "max"), 0);
        assert_eq!(BuildCgroup::counter(dir.path(), "missing", "max"), 0);
    }

    /// On a machine with usable cgroups (this one: v1, as root): a group is
    /// made with the limits, a child joins it before exec, and dropping the
    /// group kills what is left and removes it.
    #[test]
    fn a_real_group_bounds_kills_and_goes_away() {
        let limits = Limits {
            memory_bytes: 64 << 20,
            pids: 8,
        };
        let group = match BuildCgroup::create(limits) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let paths = group.join_paths();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30 & wait"]);
        use std::os::unix::process::CommandExt;
        // SAFETY: join only calls open/write/close.
        unsafe {
            cmd.pre_exec(move || join(&paths));
        }
        let mut child = cmd.spawn().unwrap();
        let t = std::time::Instant::now();
        while group.members().len() < 3 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "children never joined"
            );
            std::thread::sleep(KILL_PAUSE);
        }
        assert!(group.members().contains(&(child.id() as i32)));
        let pids_max = std::fs::read_to_string(group.pids.join("pids.max")).unwrap();
        assert_eq!(pids_max.trim(), "8");
        let dirs = group.dirs.clone();
        drop(group);
        let status = child.wait().unwrap();
        assert!(!status.success());
        for d in dirs {
            assert!(!d.exists(), "{} not removed", d.display());
        }
    }
}
