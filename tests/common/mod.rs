//! Helpers shared by the enclave-builder integration tests: a real
//! `attestlog-server` trusting a fresh dev CA, git repositories, and the
//! builder binary's one-line errors. Each test binary uses a subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use attestlog::bundle::Bundle;
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use sha2::{Digest, Sha256};

pub mod https;
pub mod webhook;

pub const ORIGIN: &str = "e2e.attestlog/log";

pub fn skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

/// A binary built into the same target directory as this test.
pub fn target_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?; // target/debug/deps -> target/debug
    let p = dir.join(name);
    p.is_file().then_some(p)
}

pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Checks the prerequisites; prints why and returns None when one is missing.
pub fn prerequisites() -> Option<PathBuf> {
    for tool in ["git", "bwrap", "cc"] {
        if !have(tool) {
            skip(&format!(
                "`{tool}` is not installed (scripts/test.sh installs it)"
            ));
            return None;
        }
    }
    if target_bin("enclave-builder").is_none() {
        skip("enclave-builder binary not built; run `cargo test --workspace` or `cargo build -p enclave-builder`");
        return None;
    }
    let server = target_bin("attestlog-server");
    if server.is_none() {
        skip("attestlog-server binary not built; run `cargo test --workspace` or `cargo build -p attestlog-server`");
    }
    server
}

/// The `enclave-builder` binary of this target directory (checked by
/// [`prerequisites`]; a missing one makes commands fail to spawn).
pub fn builder_bin() -> PathBuf {
    target_bin("enclave-builder").unwrap_or_else(|| PathBuf::from("enclave-builder-not-built"))
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub key: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_server(bin: &Path, data: &Path, root: &Path) -> Server {
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--origin",
            ORIGIN,
            "--trust-root",
        ])
        .arg(root)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start attestlog-server");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut url, mut key) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("server stdout");
        if let Some(k) = line.strip_prefix("verifier key: ") {
            key = k.to_string();
        }
        if let Some(u) = line.strip_prefix("listening on ") {
            url = u.to_string();
            break;
        }
    }
    assert!(!url.is_empty() && !key.is_empty(), "server did not start");
    std::thread::spawn(move || for _ in lines {});
    Server { child, url, key }
}

pub fn tree_size(url: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{url}/v1/log"))
        .and_then(|r| r.text())
        .expect("GET /v1/log");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["tree_size"].as_u64().expect("tree_size")
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `files` into the repository at `dir` (created if needed), commits, returns the commit.
pub fn commit(dir: &Path, files: &[(&str, &[u8])]) -> String {
    if !dir.join(".git").exists() {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "-q", "-b", "main"]);
    }
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "c"]);
    git(dir, &["rev-parse", "HEAD"])
}

pub const HELLO_C: &[u8] = b"#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n";
pub const BUILD_TOML: &[u8] = b"command = \"cc -O2 -o hello hello.c\"\noutputs = [\"hello\"]\n";

/// A dev CA, a server trusting it and a repository.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub server: Server,
    pub ca: PathBuf,
    pub repo: PathBuf,
}

impl World {
    pub fn new() -> Option<World> {
        let server_bin = prerequisites()?;
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        let out = Command::new(builder_bin())
            .args(["dev-ca", "init"])
            .arg(&ca)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--trust-root") && text.contains("extra_roots"),
            "{text}"
        );
        let server = start_server(&server_bin, &tmp.path().join("data"), &ca.join("root.pem"));
        let repo = tmp.path().join("repo");
        Some(World {
            tmp,
            server,
            ca,
            repo,
        })
    }

    pub fn measured_args(&self) -> Vec<String> {
        vec![
            "--log".into(),
            self.server.url.clone(),
            "--log-key".into(),
            self.server.key.clone(),
            "--timeout".into(),
            "60".into(),
            "--memory".into(),
            "4096".into(),
        ]
    }

    pub fn build(&self, commit: &str, out: &str, extra: &[&str]) -> Output {
        Command::new(builder_bin())
            .arg("build")
            .arg("--repo")
            .arg(&self.repo)
            .args(["--commit", commit, "--nsm", "simulated", "--dev-ca"])
            .arg(&self.ca)
            .arg("--out")
            .arg(self.tmp.path().join(out))
            .args(self.measured_args())
            .args(extra)
            .output()
            .unwrap()
    }

    /// What the enclave half adds to [`World::measured_args`]: it builds
    /// the host's git bundle, since the test repositories are local paths
    /// that the enclave's own (https-only) fetch would refuse.
    pub fn enclave_args(&self) -> Vec<String> {
        let mut args = self.measured_args();
        args.extend(["--source".into(), "host-bundle".into()]);
        args
    }

    /// `enclave-builder enclave` (host-bundle mode, simulated NSM) for a
    /// host listening on the Unix socket `sock`.
    pub fn enclave_argv(&self, sock: &Path) -> Vec<String> {
        let mut argv = vec![
            builder_bin().display().to_string(),
            "enclave".into(),
            "--connect-unix".into(),
            sock.display().to_string(),
            "--nsm".into(),
            "simulated".into(),
            "--dev-ca".into(),
            self.ca.display().to_string(),
        ];
        argv.extend(self.enclave_args());
        argv
    }

    /// [`World::enclave_argv`] as a command.
    pub fn enclave_command(&self, sock: &Path) -> Command {
        let argv = self.enclave_argv(sock);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// Starts the enclave half (stdout discarded, stderr kept for
    /// `wait_with_output`) against a Unix socket `<name>.sock` in this
    /// world's folder, and returns it with its accepted connection.
    pub fn connect_enclave(&self, name: &str) -> (Child, std::os::unix::net::UnixStream) {
        let sock = self.tmp.path().join(format!("{name}.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let enclave = self
            .enclave_command(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the enclave half");
        let (stream, _) = listener.accept().expect("the enclave connects");
        (enclave, stream)
    }

    /// `enclave-builder host` for `commit` of this world's repository,
    /// listening for the enclave on `sock` and writing to `out`.
    pub fn host_command(&self, sock: &Path, commit: &str, out: &Path) -> Command {
        let mut cmd = Command::new(builder_bin());
        cmd.arg("host")
            .arg("--listen-unix")
            .arg(sock)
            .args(["--log", &self.server.url, "--repo"])
            .arg(&self.repo)
            .args(["--commit", commit, "--out"])
            .arg(out);
        cmd
    }

    /// Runs the host and, once it listens, the enclave half as two processes
    /// over the Unix socket `<name>.sock`, writing to `<tmp>/<name>`; returns
    /// (host, enclave) output.
    pub fn split_build(&self, commit: &str, name: &str) -> (Output, Output) {
        self.split_build_with(commit, name, &[])
    }

    /// [`Self::split_build`] with `extra` arguments for the host.
    pub fn split_build_with(&self, commit: &str, name: &str, extra: &[&str]) -> (Output, Output) {
        let sock = self.tmp.path().join(format!("{name}.sock"));
        let host = self
            .host_command(&sock, commit, &self.tmp.path().join(name))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while !sock.exists() {
            assert!(t.elapsed().as_secs() < 60, "host never listened");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let enclave = self.enclave_command(&sock).output().unwrap();
        (host.wait_with_output().unwrap(), enclave)
    }

    /// Commits the demo C program and its attestlog-build.toml.
    pub fn commit_hello(&self) -> String {
        commit(
            &self.repo,
            &[("hello.c", HELLO_C), ("attestlog-build.toml", BUILD_TOML)],
        )
    }

    /// A host job for `commit` of this world's repository.
    pub fn host_job(&self, commit: &str) -> enclave_builder::hostsplit::HostJob {
        host_job_for(&self.repo, commit)
    }

    /// PCR0-2 of `enclave-builder build` with [`World::measured_args`].
    pub fn pcrs(&self) -> Vec<String> {
        self.pcrs_of(&self.measured_args())
    }

    /// PCR0-2 of the enclave half with [`World::enclave_args`].
    pub fn enclave_pcrs(&self) -> Vec<String> {
        self.pcrs_of(&self.enclave_args())
    }

    pub fn pcrs_of(&self, args: &[String]) -> Vec<String> {
        let out = Command::new(builder_bin())
            .arg("measure")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("PCR").map(|r| r[2..].to_string()))
            .collect()
    }

    pub fn policy(&self, name: &str, pcrs: &[String], log_key: &str, revoke: bool) -> PathBuf {
        let mut text = format!(
            "log_keys = [\"{log_key}\"]\n[trust]\naws_root = false\nextra_roots = [\"{}\"]\n\
             [[measurement]]\nname = \"e2e\"\npcr0 = \"{}\"\npcr1 = \"{}\"\npcr2 = \"{}\"\n",
            self.ca.join("root.pem").display(),
            pcrs[0],
            pcrs[1],
            pcrs[2]
        );
        if revoke {
            text.push_str(&format!(
                "[[revoked]]\npcr0 = \"{}\"\nreason = \"test\"\n",
                pcrs[0]
            ));
        }
        let path = self.tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn assert_fails_with(out: &Output, code: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure {code}, got success: {err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    assert!(
        line.starts_with(&format!("error: {code}: ")),
        "expected {code}, got: {line}"
    );
}

pub fn verify_code(policy: &Path, bundle: &Bundle, artifact: &[u8]) -> Result<String, String> {
    let policy = Policy::load(policy).expect("policy");
    let digest: [u8; 32] = Sha256::digest(artifact).into();
    BundleVerifier::new(policy)
        .verify(bundle, &digest)
        .map(|v| v.statement.source.git_commit)
        .map_err(|e| e.code().to_string())
}

/// A host job for `commit` of the repository at `repo`, as the host command
/// line would make it.
pub fn host_job_for(repo: &Path, commit: &str) -> enclave_builder::hostsplit::HostJob {
    enclave_builder::hostsplit::HostJob {
        source: enclave_builder::source::SourceRequest {
            repo: repo.to_string_lossy().to_string(),
            commit: Some(commit.to_string()),
            git_ref: None,
            uri: None,
            net_config: Vec::new(),
        },
        allow_unreferenced: false,
        timeout_secs: None,
        memory_mb: None,
    }
}
