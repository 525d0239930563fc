//! Load generator for attestlog-server. Starts real server processes on
//! loopback and drives them over HTTP; never targets another host.
//! `scripts/bench.sh` runs it, with `wrk` and nginx, as the benchmark.
//!
//!     attestlog-loadgen write [--entries N] [--concurrency C] [--frontends K]
//!     attestlog-loadgen read  [--entries N] [--concurrency C] [--seconds S]
//!     attestlog-loadgen fill  [--entries N] [--entry-bytes B] --dir DIR
//!     attestlog-loadgen p384  [--seconds S]
//!
//! `write` submits N distinct valid entries (simulated NSM, its root
//! trusted), all made before the clock starts and sent as they are, and
//! reports submissions/s, p50/p99 time to the signed checkpoint, the
//! server's RSS and the CPU time the servers and the load generator itself
//! spent. `read` fills a log with N entries straight through the storage
//! layer (valid attestations at 10M would take longer to make than to
//! serve), starts the server on it, and reports inclusion proofs/s,
//! consistency proofs/s and tiles/s, RSS and disk bytes per entry. `fill`
//! only fills (for `wrk`); `p384` is the one-thread P-384 verify rate, the
//! ceiling submissions are compared with.
//!
//! Every figure is also printed as one `bench: name=value` line for scripts.
//! `--server-arg` passes arguments to every server started (e.g.
//! `--server-arg=--storage --server-arg=postgres://...`); `fill --storage`
//! fills that PostgreSQL database instead of `DIR/log/log.db`.

mod ceiling;
mod read;
mod write;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// The server binary; default: attestlog-server beside this program.
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// Where to keep the log; default: a fresh temporary folder.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// One more argument for every server started (repeatable, in order).
    #[arg(long = "server-arg", global = true, allow_hyphen_values = true)]
    server_args: Vec<String>,
}

#[derive(Subcommand)]
enum Mode {
    Write {
        #[arg(long, default_value_t = 30_000)]
        entries: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Server processes sharing the log (only with a shared
        /// `--storage`); submissions go to them in turn.
        #[arg(long, default_value_t = 1)]
        frontends: usize,
    },
    Read {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Bytes per synthetic entry (a real entry is about 5.5 KB).
        #[arg(long, default_value_t = 512)]
        entry_bytes: usize,
    },
    Fill {
        #[arg(long, default_value_t = 100_000)]
        entries: u64,
        /// Bytes per synthetic entry (a real entry is about 5.1 KB).
        #[arg(long, default_value_t = 512)]
        entry_bytes: usize,
        /// Fill this PostgreSQL log (`postgres://...`) instead of SQLite;
        /// the signing key still goes to DIR/log/log.key.
        #[arg(long, requires = "objects")]
        storage: Option<String>,
        /// With --storage: the log's object store (`s3://BUCKET` with the
        /// AWS_* variables, or `file:///DIR`).
        #[arg(long, requires = "storage")]
        objects: Option<String>,
    },
    P384 {
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
}

/// Prints one figure for scripts, after the human-readable lines.
pub fn metric(name: &str, value: impl std::fmt::Display) {
    println!("bench: {name}={value}");
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// User plus system CPU seconds of a process (or `self`, `thread-self`) so
/// far (`/proc/PID/stat`, fields 14 and 15, in the kernel's fixed 100 Hz
/// USER_HZ).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / 100.0
}

/// Bytes of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Folds a SQLite log's write-ahead log into the database file and empties
/// it, so the files weigh what the log holds (the WAL of a killed server
/// stays behind, up to `wal_autocheckpoint` pages).
pub fn fold_wal(db: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    anyhow::ensure!(busy == 0, "{} is in use: cannot fold its WAL", db.display());
    Ok(())
}

pub struct ServerProcess {
    child: Child,
    pub url: String,
}

impl ServerProcess {
    pub fn start(bin: &Path, dir: &Path, extra: &[String]) -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--origin",
                "loadgen.attestlog/log",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        for line in lines.by_ref() {
            if let Some(u) = line?.strip_prefix("listening on ") {
                url = Some(u.to_string());
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let url = url.context("server did not start")?;
        Ok(ServerProcess { child, url })
    }

    /// Resident set size now and at its peak, in MB.
    pub fn rss_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.server_bin {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("attestlog-server"),
    };
    let temp;
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let extra = &args.server_args;
    match args.mode {
        Mode::Write {
            entries,
            concurrency,
            frontends,
        } => write::write_load(&bin, &dir, extra, entries, concurrency, frontends).await,
        Mode::Read {
            entries,
            concurrency,
            seconds,
            entry_bytes,
        } => {
            read::read_load(
                &bin,
                &dir,
                extra,
                entries,
                concurrency,
                seconds,
                entry_bytes,
            )
            .await
        }
        Mode::Fill {
            entries,
            entry_bytes,
            storage,
            objects,
        } => {
            let cluster = storage.zip(objects);
            tokio::task::spawn_blocking(move || {
                read::fill(&dir.join("log"), cluster, entries, entry_bytes)
            })
            .await?
        }
        Mode::P384 { seconds } => ceiling::p384(Duration::from_secs(seconds)),
    }
}
