//! A PostgreSQL 15 instance of one test's own (`initdb` into a temporary
//! folder, trust auth, a free loopback port), so that a test may stop and
//! restart it without disturbing any other test. As root (initdb refuses
//! root) it runs as the `postgres` user through `setpriv`, in a folder that
//! user owns. `postgres` is started with `setpriv --pdeathsig KILL`: it
//! dies with the test thread that started it even if the test process is
//! killed; [`PrivatePg`]'s drop stops it and removes the folder. If the
//! binaries are missing the test fails: nothing here skips.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's postgresql-15 puts its binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PrivatePg {
    dir: PathBuf,
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    child: Option<Child>,
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `setpriv` arguments that run a command as the `postgres` user (root
/// only) and kill it when the starting thread dies.
fn as_postgres(cmd: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.arg("--pdeathsig").arg("KILL");
    if is_root() {
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    c.arg(format!("{PG_BIN}/{cmd}"));
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PrivatePg {
    /// initdb and start; returns once it accepts connections.
    pub fn start() -> PrivatePg {
        let dir = tempfile::Builder::new()
            .prefix("attestlog-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        if is_root() {
            let ok = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(ok.success(), "chown postgres {}", dir.display());
        }
        let out = as_postgres("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .expect("run initdb (postgresql-15)");
        assert!(out.status.success(), "initdb: {out:?}");
        let port = free_port();
        let mut pg = PrivatePg {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            port,
            child: None,
        };
        pg.resume();
        pg
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server on the existing data folder and waits until it
    /// accepts connections (at most 30 s).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("postgres.log")).expect("log file");
        let child = as_postgres("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=60",
                "-c",
                "shared_buffers=16MB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(format!("{PG_BIN}/pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it at once, as a crash would (`SIGQUIT`: immediate shutdown,
    /// no checkpoint; committed transactions are in the WAL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
