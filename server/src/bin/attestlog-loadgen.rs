//! Load generator for attestlog-server. Starts a real server process on
//! loopback and drives it over HTTP; never targets another host.
//!
//!     attestlog-loadgen write [--entries N] [--concurrency C]
//!                             [--storage postgres://... --objects URL [--frontends F]]
//!     attestlog-loadgen read  [--entries N] [--concurrency C] [--seconds S]
//!
//! `write` submits N distinct valid entries (simulated NSM, its root trusted)
//! and reports submissions/s, p50/p99 time to the signed checkpoint and the
//! server's RSS; with `--storage`/`--objects` the servers run in cluster
//! mode, `--frontends` of them on the same storage. `read` fills a log with N entries straight through the
//! storage layer (valid attestations at 10M would take longer to make than
//! to serve), starts the server on it, and reports inclusion proofs/s,
//! consistency proofs/s and tiles/s, RSS and disk bytes per entry.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use attestlog::claim::{
    statement_user_data, Entry, SourceDependency, Statement, StatementParams, Subject,
};
use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use attestlog::tlog::note::NoteSigner;
use attestlog::tlog::tiles::{TileKind, TilePath};
use attestlog_server::storage::{LogStore, NewEntry};
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
}

#[derive(Subcommand)]
enum Mode {
    Write {
        #[arg(long, default_value_t = 30_000)]
        entries: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Cluster mode: the servers' --storage postgres://... (the
        /// database must be empty or hold this run's log).
        #[arg(long)]
        storage: Option<String>,
        /// Cluster mode: the servers' --objects (AWS_* taken from the
        /// environment).
        #[arg(long)]
        objects: Option<String>,
        /// Frontends to start on the same storage (cluster mode); the
        /// submitters are spread over them round-robin.
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
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    fn start(bin: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
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
    fn rss_mb(&self) -> (f64, f64) {
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
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn entry(nsm: &SimulatedNsm, n: u64) -> anyhow::Result<Vec<u8>> {
    let artifact = sha2_256(&n.to_be_bytes());
    let (_, statement) = Statement::build(&StatementParams {
        subjects: vec![Subject {
            name: format!("bin-{n}"),
            sha256: artifact,
        }],
        source: SourceDependency {
            uri: "git+https://example.com/loadgen.git".into(),
            git_commit: hex::encode(&artifact[..20]),
        },
        source_ref: attestlog::claim::SourceRef::Ref("refs/heads/main".into()),
        build_definition: attestlog::claim::BuildDefinition::Override,
        builder_id: "https://attestlog.dev/loadgen".into(),
        builder_version: env!("CARGO_PKG_VERSION").into(),
        command: vec!["make".into()],
        started_on: "2026-11-27T00:00:00Z".into(),
        finished_on: "2026-11-27T00:01:00Z".into(),
        internal_parameters: serde_json::json!({}),
        submodules: Vec::new(),
    })?;
    let pcrs = (0u8..16)
        .map(|i| (i, vec![if i < 3 { 7 } else { 0 }; 48]))
        .collect();
    let request = AttestationRequest {
        user_data: Some(statement_user_data(&statement).to_vec()),
        nonce: None,
        public_key: None,
    };
    let doc = nsm.attest(&request, &pcrs, now_ms())?;
    Ok(Entry::encode(&statement, &doc)?)
}

fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn write_load(
    bin: &Path,
    dir: &Path,
    entries: u64,
    concurrency: usize,
    cluster: Option<(String, String)>,
    frontends: usize,
) -> anyhow::Result<()> {
    let nsm = Arc::new(SimulatedNsm::generate(now_ms() / 1000 - 3600)?);
    let root = dir.join("root.pem");
    std::fs::write(&root, nsm.root_pem())?;
    eprintln!("generating {entries} attested entries...");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let made: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let nsm = Arc::clone(&nsm);
                s.spawn(move || {
                    (t..entries)
                        .step_by(threads as usize)
                        .map(|n| entry(&nsm, n))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("generator panicked"))?
            })
            .collect::<anyhow::Result<_>>()
    })?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(made.into_iter().flatten().collect());
    let avg = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len().max(1);

    let root_arg = root.to_str().context("path")?;
    let key = dir.join("log").join("log.key");
    let key_arg = key.to_str().context("path")?.to_string();
    let mut servers = Vec::new();
    for f in 0..frontends {
        let mut extra: Vec<&str> = vec!["--trust-root", root_arg];
        if let Some((storage, objects)) = &cluster {
            extra.extend(["--storage", storage, "--objects", objects]);
        }
        if f > 0 {
            // The first frontend created the key; the others share it.
            extra.extend(["--key-file", &key_arg]);
        }
        servers.push(ServerProcess::start(
            bin,
            &dir.join(format!(
                "log{}",
                if f == 0 { String::new() } else { f.to_string() }
            )),
            &extra,
        )?);
    }
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let (client, next, bodies, url) = (
                client.clone(),
                Arc::clone(&next),
                Arc::clone(&bodies),
                urls[t % urls.len()].clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = bodies.get(i) else { break };
                    let sent = Instant::now();
                    let resp = client
                        .post(format!("{url}/v1/entries"))
                        .header("content-type", "application/octet-stream")
                        .body(body.clone())
                        .send()
                        .await?;
                    if !resp.status().is_success() {
                        bail!(
                            "submission {i}: {} {}",
                            resp.status(),
                            resp.text().await.unwrap_or_default()
                        );
                    }
                    resp.bytes().await?;
                    latencies.push(sent.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let (rss, peak) = servers[0].rss_mb();
    println!(
        "write: {} entries (avg {avg} bytes) at concurrency {concurrency} over {frontends} \
         frontend(s) ({}) in {:.2}s",
        latencies.len(),
        if cluster.is_some() {
            "postgres+objects"
        } else {
            "sqlite"
        },
        elapsed.as_secs_f64()
    );
    println!(
        "  submissions/s: {:.0}",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  time to signed checkpoint: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  server RSS: {rss:.0} MB (peak {peak:.0} MB)");
    Ok(())
}

/// Fills a log directly through the storage layer, signing with the key the
/// server will load.
fn populate(dir: &Path, entries: u64, entry_bytes: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let signer = NoteSigner::generate("loadgen.attestlog/log")?;
    let key_path = dir.join("log.key");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)?;
        writeln!(f, "{}", signer.private_key_text())?;
    }
    let store = LogStore::open(&dir.join("log.db"))?;
    let started = Instant::now();
    let mut n = 0u64;
    let mut next_report = 1_000_000;
    while n < entries {
        let batch: Vec<NewEntry> = (n..(n + 4096).min(entries))
            .map(|i| {
                let mut bytes = vec![0u8; entry_bytes.max(8)];
                bytes[..8].copy_from_slice(&i.to_be_bytes());
                NewEntry::new(bytes, Vec::new())
            })
            .collect();
        n += batch.len() as u64;
        store.append_batch(&batch, &signer)?;
        if n >= next_report {
            next_report += 1_000_000;
            eprintln!(
                "  {n} entries ({:.0}/s)",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn read_load(
    bin: &Path,
    dir: &Path,
    entries: u64,
    concurrency: usize,
    seconds: u64,
    entry_bytes: usize,
) -> anyhow::Result<()> {
    let log = dir.join("log");
    if !log.join("log.db").exists() {
        eprintln!("populating {entries} entries of {entry_bytes} bytes...");
        populate(&log, entries, entry_bytes)?;
    }
    let disk = dir_bytes(&log);
    let server = ServerProcess::start(bin, &log, &[])?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let full_tiles = (entries / 256).max(1);
    println!("read: {entries} entries, concurrency {concurrency}, {seconds}s per kind");
    println!(
        "  disk: {:.1} bytes per entry ({} MB total, entries {entry_bytes} bytes each)",
        disk as f64 / entries as f64,
        disk / 1_000_000
    );
    for kind in ["inclusion", "consistency", "tile"] {
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let (client, done, url) = (client.clone(), Arc::clone(&done), server.url.clone());
                tokio::spawn(async move {
                    let mut x = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    while Instant::now() < deadline {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let path = match kind {
                            "inclusion" => format!(
                                "v1/proof/inclusion?index={}&tree_size={entries}",
                                x % entries
                            ),
                            "consistency" => format!(
                                "v1/proof/consistency?first={}&second={entries}",
                                1 + x % entries
                            ),
                            _ => TilePath {
                                kind: TileKind::Hashes { level: 0 },
                                index: x % full_tiles,
                                width: None,
                            }
                            .to_path(),
                        };
                        let resp = client.get(format!("{url}/{path}")).send().await?;
                        if !resp.status().is_success() {
                            bail!("{path}: {}", resp.status());
                        }
                        resp.bytes().await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, anyhow::Error>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        println!(
            "  {kind} requests/s: {:.0}",
            done.load(Ordering::Relaxed) as f64 / seconds as f64
        );
    }
    let (rss, peak) = server.rss_mb();
    println!("  server RSS: {rss:.0} MB (peak {peak:.0} MB)");
    Ok(())
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
    match args.mode {
        Mode::Write {
            entries,
            concurrency,
            storage,
            objects,
            frontends,
        } => {
            let cluster = match (storage, objects) {
                (Some(s), Some(o)) => Some((s, o)),
                (None, None) => None,
                _ => bail!("--storage and --objects go together"),
            };
            anyhow::ensure!(
                frontends == 1 || cluster.is_some(),
                "--frontends > 1 needs --storage and --objects"
            );
            write_load(&bin, &dir, entries, concurrency, cluster, frontends.max(1)).await
        }
        Mode::Read {
            entries,
            concurrency,
            seconds,
            entry_bytes,
        } => read_load(&bin, &dir, entries, concurrency, seconds, entry_bytes).await,
    }
}
