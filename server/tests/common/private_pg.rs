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
    /// More `-c` settings for every start.
    settings: Vec<String>,
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
        Self::start_with(|_| Vec::new())
    }

    /// initdb, then TLS only over TCP: `cert_pem` (the chain) and `key_pem`
    /// as the server's certificate, `hostssl` connections trusted and
    /// `hostnossl` ones rejected. Local (Unix socket) connections stay
    /// plain, for [`PrivatePg::psql`].
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PrivatePg {
        Self::start_with(|data| {
            for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
                let path = data.join(name);
                std::fs::write(&path, text).expect("write TLS file");
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .expect("chmod");
                chown_postgres(&path);
            }
            let hba = "local all all trust\n\
                       hostssl all all 127.0.0.1/32 trust\n\
                       hostnossl all all 127.0.0.1/32 reject\n";
            std::fs::write(data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
            [
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
            ]
            .map(String::from)
            .to_vec()
        })
    }

    /// initdb, `configure` the data folder (it returns more `-c` settings),
    /// start.
    fn start_with(configure: impl FnOnce(&Path) -> Vec<String>) -> PrivatePg {
        let dir = tempfile::Builder::new()
            .prefix("attestlog-pg-")
            .tempdir()
            .expect("tempdir")
            .keep();
        chown_postgres(&dir);
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
        let settings = configure(&dir.join("data"));
        let port = free_port();
        let mut pg = PrivatePg {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            port,
            child: None,
            settings,
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
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
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

    /// One SQL statement through `psql` on the Unix socket; its rows.
    pub fn psql(&self, sql: &str) -> Vec<String> {
        let out = Command::new(format!("{PG_BIN}/psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-At", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `chown postgres:postgres path` when running as root (the server runs as
/// `postgres` then, and PostgreSQL wants its key file to be its own).
fn chown_postgres(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(ok.success(), "chown postgres {}", path.display());
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
