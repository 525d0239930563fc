//! `write`: verified submissions per second and the time to a signed
//! checkpoint, with request bodies made before the clock starts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use attestlog::claim::{
    statement_user_data, Entry, SourceDependency, Statement, StatementParams, Subject,
};
use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use reqwest::header::{HeaderValue, CONTENT_TYPE};

use crate::{cpu_seconds, dir_bytes, fold_wal, metric, now_ms, percentile, ServerProcess};

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

/// `entries` distinct attested entries, made on every core.
fn make_entries(nsm: &Arc<SimulatedNsm>, entries: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let threads = attestlog_server::pool::cores() as u64;
    let made: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let nsm = Arc::clone(nsm);
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
    Ok(made.into_iter().flatten().collect())
}

pub async fn write_load(
    bin: &Path,
    dir: &Path,
    extra: &[String],
    entries: u64,
    concurrency: usize,
    frontends: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(frontends >= 1, "--frontends must be at least 1");
    let nsm = Arc::new(SimulatedNsm::generate(now_ms() / 1000 - 3600)?);
    let root = dir.join("root.pem");
    std::fs::write(&root, nsm.root_pem())?;
    eprintln!("generating {entries} attested entries...");
    // Bodies as `Bytes`: handing one to a request is a reference count, not
    // a copy, so the load generator's cost per request is HTTP alone.
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        make_entries(&nsm, entries)?
            .into_iter()
            .map(bytes::Bytes::from)
            .collect(),
    );
    let avg = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len().max(1);

    let mut args = vec![
        "--trust-root".to_string(),
        root.to_str().context("path")?.to_string(),
    ];
    args.extend_from_slice(extra);
    // One after the other: the first creates the key (and schema) the
    // others then load.
    let servers = (0..frontends)
        .map(|_| ServerProcess::start(bin, &dir.join("log"), &args))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Parsed once: a `Url` per request would be parsed again each time.
    let urls: Arc<Vec<reqwest::Url>> = Arc::new(
        servers
            .iter()
            .map(|s| reqwest::Url::parse(&format!("{}/v1/entries", s.url)))
            .collect::<Result<_, _>>()?,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before: f64 = servers.iter().map(ServerProcess::cpu_seconds).sum();
    let own_before = cpu_seconds("self");
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, bodies, urls) = (
                client.clone(),
                Arc::clone(&next),
                Arc::clone(&bodies),
                Arc::clone(&urls),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = bodies.get(i) else { break };
                    let url = &urls[i % urls.len()];
                    let sent = Instant::now();
                    let resp = client
                        .post(url.clone())
                        .header(
                            CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        )
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
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = servers.iter().map(ServerProcess::cpu_seconds).sum::<f64>() - cpu_before;
    let own_cpu = cpu_seconds("self") - own_before;
    latencies.sort_unstable();
    let n = latencies.len() as f64;
    let rate = n / elapsed;
    let (p50, p99) = (
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    let max = latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3;
    let (rss, peak) = servers
        .iter()
        .map(ServerProcess::rss_mb)
        .fold((0.0, 0.0), |(a, b), (r, p)| {
            (f64::max(a, r), f64::max(b, p))
        });
    println!(
        "write: {} entries (avg {avg} bytes) at concurrency {concurrency}, {frontends} \
         frontend(s), in {elapsed:.2}s",
        latencies.len()
    );
    println!("  submissions/s: {rate:.0}");
    println!("  time to signed checkpoint: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    println!("  server RSS: {rss:.0} MB (peak {peak:.0} MB; the largest frontend)");
    println!(
        "  CPU per submission: servers {:.0} µs, load generator {:.0} µs",
        server_cpu / n * 1e6,
        own_cpu / n * 1e6
    );
    metric("submissions_per_s", format!("{rate:.0}"));
    metric("submit_p50_ms", format!("{p50:.1}"));
    metric("submit_p99_ms", format!("{p99:.1}"));
    metric("write_rss_mb", format!("{rss:.0}"));
    metric(
        "server_cpu_us_per_submission",
        format!("{:.0}", server_cpu / n * 1e6),
    );
    metric(
        "loadgen_cpu_us_per_submission",
        format!("{:.0}", own_cpu / n * 1e6),
    );
    metric("entry_bytes", avg);
    drop(servers);
    if !extra.iter().any(|a| a == "--storage") {
        let log = dir.join("log");
        tokio::task::spawn_blocking(move || {
            fold_wal(&log.join("log.db"))?;
            let per_entry = dir_bytes(&log) as f64 / n.max(1.0);
            println!("  disk: {per_entry:.0} bytes per entry");
            metric("disk_bytes_per_entry", format!("{per_entry:.0}"));
            Ok::<_, anyhow::Error>(())
        })
        .await??;
    }
    Ok(())
}
