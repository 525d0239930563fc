//! enclave-builder command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave_builder::hostsplit::{self, EnclaveSettings, HostJob};
use enclave_builder::launcher::{self, Deadlines, EnclaveLauncher, LocalCommand, NitroCli};
use enclave_builder::measure::{self, BuilderConfig, SourceMode};
use enclave_builder::nsm::{NitroBackend, Nsm, SimulatedBackend};
use enclave_builder::pipeline::{self, BuildRequest, DEFAULT_BUILDER_ID};
use enclave_builder::refs::RefSource;
use enclave_builder::sandbox::{self, CgroupMode, SandboxConfig, SandboxKind};
use enclave_builder::source::SourceRequest;
use enclave_builder::transport::{self, Endpoint, Job, VSOCK_PARENT_CID};
use enclave_builder::{devca, relay, webhook, BuildError};

mod host;
mod publish;

use host::{run_host, HostArgs};

#[derive(Parser)]
#[command(
    name = "enclave-builder",
    version,
    about = "Build a commit in a sandbox, attest it, log it and write bundles"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Clone, build in the sandbox, attest, log and write `<artifact>.attestlog.json`.
    Build(BuildArgs),
    /// Manage the simulated NSM's development CA.
    DevCa {
        #[command(subcommand)]
        command: DevCaCmd,
    },
    /// Print the PCR0-2 the simulated backend reports for these settings.
    Measure(MeasureArgs),
    /// Host half: clone and bundle the source, send the job to the enclave,
    /// relay its log submission, write the returned artifacts and bundles.
    Host(Box<HostArgs>),
    /// Enclave half: read one job from the host, build, attest, log through
    /// the host (verifying the answer with --log-key), send the result back.
    Enclave(EnclaveArgs),
    /// Publish an artifact and its bundle from --out again (GitHub release
    /// assets or an OCI registry), e.g. after a failed publish.
    Publish(publish::PublishCmdArgs),
}

#[derive(Args)]
#[command(args_override_self = true)]
struct EnclaveArgs {
    /// Connect to the host on this Unix socket.
    #[arg(long = "connect-unix", conflicts_with = "vsock_port")]
    connect_unix: Option<PathBuf>,
    /// Connect to the host on AF_VSOCK at this port.
    #[arg(long = "vsock-port")]
    vsock_port: Option<u32>,
    /// The host's CID (3 is the parent instance).
    #[arg(long = "vsock-cid", default_value_t = VSOCK_PARENT_CID)]
    vsock_cid: u32,
    #[arg(long, value_enum)]
    nsm: NsmKind,
    #[arg(long = "dev-ca")]
    dev_ca: Option<PathBuf>,
    #[command(flatten)]
    measured: Measured,
}

#[derive(Subcommand)]
enum DevCaCmd {
    /// Create a dev CA (simulated NSM root and keys) in DIR.
    Init { dir: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
enum NsmKind {
    Simulated,
    Nitro,
}

#[derive(Clone, Copy, ValueEnum)]
enum SandboxArg {
    Bwrap,
    None,
}

/// Settings that are measured into the simulated PCRs.
#[derive(Args)]
struct Measured {
    /// Log base URL (http://host:port).
    #[arg(long)]
    log: String,
    /// The log's verifier key (C2SP vkey text); the answer is verified against it.
    #[arg(long = "log-key")]
    log_key: String,
    #[arg(long, value_enum, default_value = "bwrap")]
    sandbox: SandboxArg,
    /// Build time limit in seconds; the sandbox is killed when it is reached.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Memory limit in MiB: all of the build's processes together (cgroup,
    /// swap included) and each one's address space (RLIMIT_AS).
    #[arg(long, default_value_t = 4096)]
    memory: u64,
    /// The most processes (threads included) the build may run at once.
    #[arg(long = "pids", value_parser = clap::value_parser!(u64).range(1..), default_value_t = sandbox::DEFAULT_PIDS_MAX)]
    pids: u64,
    /// Size of the sandbox's /tmp (a tmpfs) in MiB.
    #[arg(long = "tmp-size", value_parser = clap::value_parser!(u64).range(1..), default_value_t = sandbox::DEFAULT_TMP_MB)]
    tmp_size: u64,
    /// Largest single output in MiB.
    #[arg(long = "output-limit", value_parser = clap::value_parser!(u64).range(1..), default_value_t = sandbox::DEFAULT_OUTPUT_MB)]
    output_limit: u64,
    /// Largest total of all outputs in MiB.
    #[arg(long = "outputs-total-limit", value_parser = clap::value_parser!(u64).range(1..), default_value_t = sandbox::DEFAULT_OUTPUTS_TOTAL_MB)]
    outputs_total_limit: u64,
    /// `required`: bound the whole build with a fresh cgroup and refuse to
    /// build without one; `none`: no whole-build memory or process limit.
    #[arg(long, value_enum, default_value = "required")]
    cgroup: CgroupArg,
    #[arg(long = "builder-id", default_value = DEFAULT_BUILDER_ID)]
    builder_id: String,
    /// Where the source comes from: `direct` (build), `relay` (the enclave
    /// fetches over the host's relay with TLS; the enclave's default) or
    /// `host-bundle` (the enclave builds what the host sends).
    #[arg(long, value_enum)]
    source: Option<SourceArg>,
    /// CA file the enclave checks the repository's TLS against (relay;
    /// default: the system's roots).
    #[arg(long = "tls-roots")]
    tls_roots: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CgroupArg {
    Required,
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceArg {
    Direct,
    Relay,
    HostBundle,
}

impl Measured {
    fn sandbox(&self) -> SandboxConfig {
        SandboxConfig {
            kind: match self.sandbox {
                SandboxArg::Bwrap => SandboxKind::Bwrap,
                SandboxArg::None => SandboxKind::None,
            },
            timeout_secs: self.timeout,
            memory_mb: self.memory,
            pids_max: self.pids,
            tmp_mb: self.tmp_size,
            output_mb: self.output_limit,
            outputs_total_mb: self.outputs_total_limit,
            cgroup: match self.cgroup {
                CgroupArg::Required => CgroupMode::Required,
                CgroupArg::None => CgroupMode::None,
            },
        }
    }
    /// The source mode, `default` when not given; `allowed` lists the
    /// modes the subcommand can run.
    fn source(&self, default: SourceArg, allowed: &[SourceArg]) -> Result<SourceMode, BuildError> {
        let arg = self.source.unwrap_or(default);
        if !allowed.contains(&arg) {
            return Err(BuildError::Config(
                "--source direct is for `build`; the enclave takes relay or host-bundle".into(),
            ));
        }
        if self.tls_roots.is_some() && arg != SourceArg::Relay {
            return Err(BuildError::Config(
                "--tls-roots applies only to --source relay".into(),
            ));
        }
        Ok(match arg {
            SourceArg::Direct => SourceMode::Direct,
            SourceArg::Relay => SourceMode::Relay {
                tls_roots: self.tls_roots.clone(),
            },
            SourceArg::HostBundle => SourceMode::HostBundle,
        })
    }

    fn builder(&self, source: SourceMode) -> BuilderConfig {
        BuilderConfig {
            builder_id: self.builder_id.clone(),
            log_url: self.log.clone(),
            log_key: self.log_key.trim().to_string(),
            source,
        }
    }
}

#[derive(Args)]
#[command(args_override_self = true)]
struct BuildArgs {
    /// Repository URL or local path.
    #[arg(long)]
    repo: String,
    /// Full 40- or 64-hex commit id (abbreviated or symbolic only with --ref).
    #[arg(long)]
    commit: Option<String>,
    /// Branch or tag to resolve; recorded with the commit.
    #[arg(long = "ref")]
    git_ref: Option<String>,
    /// Build command, run as /bin/sh -c CMD (overrides attestlog-build.toml;
    /// for development: the statement records the override).
    #[arg(long)]
    cmd: Option<String>,
    /// Output path relative to the repository (repeatable; overrides the file).
    /// Either override is recorded, and verifiers refuse it by default.
    #[arg(long = "output")]
    outputs: Vec<String>,
    /// Build a commit that no branch or tag of the repository contains (it
    /// may live only in a fork); the statement records this opt-in.
    #[arg(long = "allow-unreferenced-commit")]
    allow_unreferenced_commit: bool,
    #[arg(long, value_enum)]
    nsm: NsmKind,
    /// Dev CA directory (simulated backend).
    #[arg(long = "dev-ca")]
    dev_ca: Option<PathBuf>,
    /// Where artifacts and bundles are written.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    measured: Measured,
}

#[derive(Args)]
#[command(args_override_self = true)]
struct MeasureArgs {
    #[command(flatten)]
    measured: Measured,
}

type Backend = (Box<dyn Nsm>, Vec<PathBuf>, SandboxConfig);

fn backend(
    kind: NsmKind,
    dev_ca: Option<PathBuf>,
    measured: &Measured,
    source: SourceMode,
) -> Result<Backend, BuildError> {
    let sandbox = measured.sandbox();
    if sandbox.kind == SandboxKind::None {
        eprintln!("warning: --sandbox none: the build runs UNSANDBOXED with the builder's network, files and keys; never use it for builds others rely on");
    }
    if sandbox.cgroup == CgroupMode::None {
        eprintln!("warning: --cgroup none: the build's processes together are not bounded in memory or number");
    }
    let mut hidden = Vec::new();
    let nsm: Box<dyn Nsm> = match kind {
        NsmKind::Simulated => {
            let dir = dev_ca.ok_or_else(|| {
                BuildError::Attestation("--nsm simulated needs --dev-ca DIR".into())
            })?;
            let m = measure::measure(&sandbox, &measured.builder(source))?;
            hidden.push(dir.clone());
            Box::new(SimulatedBackend::load(&dir, measure::pcr_map(&m))?)
        }
        NsmKind::Nitro => {
            hidden.push(PathBuf::from("/dev/nsm"));
            Box::new(NitroBackend)
        }
    };
    Ok((nsm, hidden, sandbox))
}

fn run_enclave(args: EnclaveArgs) -> Result<(), BuildError> {
    let ep = match (&args.connect_unix, args.vsock_port) {
        (Some(p), None) => Endpoint::Unix(p.clone()),
        (None, Some(port)) => Endpoint::Vsock {
            cid: args.vsock_cid,
            port,
        },
        _ => {
            return Err(BuildError::Transport(
                "give exactly one of --connect-unix PATH or --vsock-port PORT".into(),
            ))
        }
    };
    let source = args
        .measured
        .source(SourceArg::Relay, &[SourceArg::Relay, SourceArg::HostBundle])?;
    let (nsm, hidden, sandbox) = backend(
        args.nsm,
        args.dev_ca.clone(),
        &args.measured,
        source.clone(),
    )?;
    let relay = relay::endpoint_for(&ep).map_err(|e| BuildError::Transport(e.to_string()))?;
    let settings = EnclaveSettings {
        source,
        relay,
        log_url: args.measured.log.clone(),
        log_key: args.measured.log_key.clone(),
        sandbox,
        builder_id: args.measured.builder_id.clone(),
        hidden,
    };
    let stream = transport::connect(&ep).map_err(|e| BuildError::Transport(e.to_string()))?;
    let outcome = hostsplit::run_enclave(stream, &settings, nsm.as_ref())?;
    println!("commit: {}", outcome.commit);
    println!("log index: {}", outcome.index);
    Ok(())
}

fn run_build(args: BuildArgs) -> Result<(), BuildError> {
    let source = args
        .measured
        .source(SourceArg::Direct, &[SourceArg::Direct])?;
    let (nsm, hidden, sandbox) = backend(args.nsm, args.dev_ca.clone(), &args.measured, source)?;
    let req = BuildRequest {
        source: SourceRequest {
            repo: args.repo,
            commit: args.commit,
            git_ref: args.git_ref,
            uri: None,
            net_config: Vec::new(),
        },
        refs: RefSource::Advertised {
            allow_unreferenced: args.allow_unreferenced_commit,
        },
        cmd: args.cmd,
        outputs: args.outputs,
        log_url: args.measured.log.clone(),
        log_key: args.measured.log_key.clone(),
        sandbox,
        out_dir: args.out,
        builder_id: args.measured.builder_id.clone(),
        hidden,
    };
    let outcome = pipeline::build(&req, nsm.as_ref())?;
    println!("commit: {}", outcome.commit);
    println!("log index: {}", outcome.index);
    for p in &outcome.published {
        println!(
            "artifact: {} sha256:{}",
            p.artifact.display(),
            hex::encode(p.sha256)
        );
        println!("bundle: {}", p.bundle.display());
    }
    let t = &outcome.timings;
    println!(
        "timings: clone {:.3}s build {:.3}s attest {:.3}s log {:.3}s",
        t.clone, t.build, t.attest, t.log
    );
    Ok(())
}

fn run_measure(args: MeasureArgs) -> anyhow::Result<()> {
    let source = args.measured.source(
        SourceArg::Direct,
        &[SourceArg::Direct, SourceArg::Relay, SourceArg::HostBundle],
    )?;
    let m = measure::measure(&args.measured.sandbox(), &args.measured.builder(source))
        .context("measure")?;
    for (i, p) in m.pcrs.iter().enumerate() {
        println!("PCR{i} {}", hex::encode(p));
    }
    println!(
        "\n# policy snippet\n[[measurement]]\nname = \"enclave-builder {} (simulated)\"",
        env!("CARGO_PKG_VERSION")
    );
    for (i, p) in m.pcrs.iter().enumerate() {
        println!("pcr{i} = \"{}\"", hex::encode(p));
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result: Result<(), (String, String)> = match cli.command {
        Cmd::Build(args) => run_build(args).map_err(|e| (e.code().to_string(), e.to_string())),
        Cmd::DevCa {
            command: DevCaCmd::Init { dir },
        } => devca::init(&dir)
            .map(|text| println!("{text}"))
            .map_err(|e| (e.code().to_string(), e.to_string())),
        Cmd::Host(args) => run_host(*args).map_err(|e| match e {
            BuildError::Enclave { code, message } => (code, message),
            e => (e.code().to_string(), e.to_string()),
        }),
        Cmd::Enclave(args) => run_enclave(args).map_err(|e| (e.code().to_string(), e.to_string())),
        Cmd::Publish(args) => {
            publish::run_publish(args).map_err(|e| (e.code().to_string(), e.to_string()))
        }
        Cmd::Measure(args) => run_measure(args).map_err(|e| ("measure".into(), format!("{e:#}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {code}: {msg}");
            ExitCode::FAILURE
        }
    }
}
