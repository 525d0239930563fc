//! `enclave-builder host`: the untrusted half. It prepares the job (clone
//! and source checks), starts a fresh enclave per job, relays the
//! enclave's source fetch and log submission, serves the webhook, and
//! writes what the enclave returns.

use super::*;

#[derive(Args)]
#[command(args_override_self = true)]
pub(crate) struct HostArgs {
    /// Listen for the enclave on this Unix socket.
    #[arg(long = "listen-unix", conflicts_with = "vsock_cid")]
    listen_unix: Option<PathBuf>,
    /// Listen for the enclave on AF_VSOCK at this CID (4294967295 = any).
    #[arg(long = "vsock-cid")]
    vsock_cid: Option<u32>,
    #[arg(long = "vsock-port", default_value_t = 5005)]
    vsock_port: u32,
    /// Log base URL the host POSTs the enclave's entries to.
    #[arg(long)]
    log: String,
    #[arg(long)]
    repo: Option<String>,
    #[arg(long)]
    commit: Option<String>,
    #[arg(long = "ref")]
    git_ref: Option<String>,
    /// Refused: the enclave builds only what the repository's
    /// attestlog-build.toml declares (kept so the refusal names itself).
    #[arg(long, hide = true)]
    cmd: Option<String>,
    /// Refused, as --cmd.
    #[arg(long = "output", hide = true)]
    outputs: Vec<String>,
    /// Build a commit that no branch or tag of the repository contains (it
    /// may live only in a fork); the statement records this opt-in.
    #[arg(long = "allow-unreferenced-commit")]
    allow_unreferenced_commit: bool,
    /// Tighter time limit to ask of the enclave, in seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Tighter memory limit to ask of the enclave, in MiB.
    #[arg(long)]
    memory: Option<u64>,
    /// Where artifacts and bundles are written (webhook builds: OUT/<commit>/).
    #[arg(long)]
    out: PathBuf,
    /// Serve a GitHub webhook (POST /webhook) on this address; every
    /// verified push/workflow_job event queues a build.
    #[arg(long = "webhook-listen", requires = "webhook_secret_file")]
    webhook_listen: Option<String>,
    /// File holding the webhook secret (HMAC-SHA256 key).
    #[arg(long = "webhook-secret-file")]
    webhook_secret_file: Option<PathBuf>,
    /// Start a fresh Nitro enclave from this image for every job
    /// (`nitro-cli run-enclave`, then `terminate-enclave`).
    #[arg(long, conflicts_with = "enclave_cmd")]
    eif: Option<PathBuf>,
    #[arg(long = "enclave-cpus", default_value_t = 2)]
    enclave_cpus: u32,
    /// Enclave memory in MiB.
    #[arg(long = "enclave-memory", default_value_t = 4096)]
    enclave_memory: u64,
    /// The enclave's CID (nitro-cli chooses one when absent).
    #[arg(long = "enclave-cid")]
    enclave_cid: Option<u32>,
    /// The nitro-cli executable.
    #[arg(long = "nitro-cli", default_value = "nitro-cli")]
    nitro_cli: PathBuf,
    /// Seconds to wait for a started enclave to connect.
    #[arg(long = "enclave-connect-timeout", default_value_t = 120)]
    enclave_connect_timeout: u64,
    /// Seconds a connected enclave may stay silent (the build runs in
    /// between, so keep it above the enclave's --timeout).
    #[arg(long = "enclave-idle-timeout", default_value_t = 3600)]
    enclave_idle_timeout: u64,
    /// Let the relay dial this exact HOST:PORT (repeatable), beyond its
    /// default of port 443 on public addresses; may name loopback or private
    /// hosts, never link-local or the metadata service.
    #[arg(long = "relay-allow", value_name = "HOST:PORT")]
    relay_allow: Vec<relay::AllowedTarget>,
    /// After `--`: run this command as the enclave half for every job, on
    /// this machine (development and tests). Without it or --eif, the host
    /// waits for an enclave started by someone else.
    #[arg(last = true, value_name = "ENCLAVE_CMD")]
    enclave_cmd: Vec<String>,
    #[command(flatten)]
    publish: super::publish::PublishArgs,
}

fn enclave_launcher(args: &HostArgs) -> Option<Box<dyn EnclaveLauncher>> {
    if let Some(eif) = &args.eif {
        return Some(Box::new(NitroCli {
            program: args.nitro_cli.clone(),
            eif: eif.clone(),
            cpu_count: args.enclave_cpus,
            memory_mib: args.enclave_memory,
            cid: args.enclave_cid,
        }));
    }
    if !args.enclave_cmd.is_empty() {
        return Some(Box::new(LocalCommand {
            argv: args.enclave_cmd.clone(),
        }));
    }
    None
}

pub(crate) fn run_host(args: HostArgs) -> Result<(), BuildError> {
    // The enclave refuses a host's build definition too; this only says so
    // before anything is cloned.
    if args.cmd.is_some() || !args.outputs.is_empty() {
        return Err(BuildError::HostBuildDefinition);
    }
    // Publish settings (token, names) are checked before anything is built
    // (webhook builds: with a stand-in tag; each tag push publishes under
    // its own tag, other builds are only logged).
    let webhook_publish = args.webhook_listen.is_some() && args.publish.requested();
    let targets = match args.webhook_listen {
        Some(_) if webhook_publish => args.publish.for_tag("startup-check")?,
        _ => args.publish.resolve(false)?,
    };
    let ep = match (&args.listen_unix, args.vsock_cid) {
        (Some(p), None) => Endpoint::Unix(p.clone()),
        (None, Some(cid)) => Endpoint::Vsock {
            cid,
            port: args.vsock_port,
        },
        _ => {
            return Err(BuildError::Transport(
                "give exactly one of --listen-unix PATH or --vsock-cid CID".into(),
            ))
        }
    };
    let host_job = |repo: String, commit: Option<String>, git_ref: Option<String>| HostJob {
        source: SourceRequest {
            repo,
            commit,
            git_ref,
            uri: None,
            net_config: Vec::new(),
        },
        allow_unreferenced: args.allow_unreferenced_commit,
        timeout_secs: args.timeout,
        memory_mb: args.memory,
    };
    let launcher = enclave_launcher(&args);
    let deadlines = Deadlines {
        connect: Duration::from_secs(args.enclave_connect_timeout),
        idle: Duration::from_secs(args.enclave_idle_timeout),
    };
    let listener = transport::listen(&ep).map_err(|e| BuildError::Transport(e.to_string()))?;
    // The enclave's own source fetch (`--source relay`) goes out through
    // this CONNECT relay, with TLS end to end.
    let relay_ep = relay::endpoint_for(&ep).map_err(|e| BuildError::Transport(e.to_string()))?;
    let relay_listener =
        transport::listen(&relay_ep).map_err(|e| BuildError::Transport(e.to_string()))?;
    let policy = std::sync::Arc::new(relay::RelayPolicy {
        allowed: args.relay_allow.clone(),
    });
    std::thread::spawn(move || relay::serve(relay_listener, policy));
    // One job, one enclave: started here when there is a launcher.
    let run = |job: Job, out: &Path| match &launcher {
        Some(l) => launcher::run_job(
            l.as_ref(),
            listener.as_ref(),
            deadlines,
            job,
            &args.log,
            out,
        ),
        None => {
            println!("waiting for the enclave on {ep:?}");
            let stream = listener
                .accept()
                .map_err(|e| BuildError::Transport(e.to_string()))?;
            hostsplit::serve_job(stream, job, &args.log, out, deadlines.idle)
        }
    };
    if let Some(addr) = &args.webhook_listen {
        let file = args.webhook_secret_file.clone().unwrap_or_default();
        let secret = std::fs::read(&file).map_err(|e| BuildError::Io {
            path: file.clone(),
            source: e,
        })?;
        let secret = webhook::Secret::from_file_bytes(secret)?;
        let tcp = std::net::TcpListener::bind(addr)
            .map_err(|e| BuildError::Transport(format!("webhook listen {addr}: {e}")))?;
        println!(
            "webhook on http://{}/webhook; enclave channel {ep:?}",
            tcp.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(webhook::QUEUE_CAPACITY);
        let intake = std::thread::spawn(move || webhook::serve(tcp, secret, tx));
        for queued in rx {
            let out = args.out.join(&queued.commit);
            let result = hostsplit::prepare_job(&host_job(
                queued.repo.clone(),
                Some(queued.commit.clone()),
                queued.git_ref.clone(),
            ))
            .and_then(|job| run(job, &out));
            match result {
                Ok(o) => {
                    println!(
                        "built {} {} -> log index {}",
                        queued.repo, o.commit, o.index
                    );
                    if let (true, Some(tag)) = (webhook_publish, queued.tag()) {
                        let published = args
                            .publish
                            .for_tag(tag)
                            .map_err(BuildError::Publish)
                            .and_then(|t| t.publish_all(&o.written));
                        match published {
                            Ok(()) => println!("published {} tag {tag}", queued.repo),
                            Err(e) => println!(
                                "publish of {} tag {tag} failed: {}: {e}",
                                queued.repo,
                                e.code()
                            ),
                        }
                    }
                }
                Err(e) => println!(
                    "build of {} {} failed: {}: {e}",
                    queued.repo,
                    queued.commit,
                    e.code()
                ),
            }
        }
        // The queue closes only when the webhook stopped.
        return match intake.join() {
            Ok(result) => result.map_err(BuildError::from),
            Err(_) => Err(BuildError::Transport("the webhook thread panicked".into())),
        };
    }
    let repo = args.repo.clone().ok_or_else(|| BuildError::MissingRepo {
        repo: String::new(),
        reason: "give --repo (or --webhook-listen)".into(),
    })?;
    let job = hostsplit::prepare_job(&host_job(repo, args.commit.clone(), args.git_ref.clone()))?;
    let outcome = run(job, &args.out)?;
    println!("commit: {}", outcome.commit);
    println!("log index: {}", outcome.index);
    for (a, b) in &outcome.written {
        println!("artifact: {}", a.display());
        println!("bundle: {}", b.display());
    }
    targets.publish_all(&outcome.written)
}
