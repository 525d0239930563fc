//! enclave-builder command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave_builder::measure::{self, BuilderConfig};
use enclave_builder::nsm::{NitroBackend, Nsm, SimulatedBackend};
use enclave_builder::pipeline::{self, BuildRequest, DEFAULT_BUILDER_ID};
use enclave_builder::sandbox::{SandboxConfig, SandboxKind};
use enclave_builder::source::SourceRequest;
use enclave_builder::{devca, BuildError};

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
    /// Address-space limit of the build in MiB (RLIMIT_AS).
    #[arg(long, default_value_t = 4096)]
    memory: u64,
    #[arg(long = "builder-id", default_value = DEFAULT_BUILDER_ID)]
    builder_id: String,
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
        }
    }
    fn builder(&self) -> BuilderConfig {
        BuilderConfig {
            builder_id: self.builder_id.clone(),
            log_url: self.log.clone(),
            log_key: self.log_key.trim().to_string(),
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
    /// Build command, run as /bin/sh -c CMD (overrides attestlog-build.toml).
    #[arg(long)]
    cmd: Option<String>,
    /// Output path relative to the repository (repeatable; overrides the file).
    #[arg(long = "output")]
    outputs: Vec<String>,
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

fn run_build(args: BuildArgs) -> Result<(), BuildError> {
    let sandbox = args.measured.sandbox();
    if sandbox.kind == SandboxKind::None {
        eprintln!("warning: --sandbox none: the build runs UNSANDBOXED with the builder's network, files and keys; never use it for builds others rely on");
    }
    let mut hidden = Vec::new();
    let nsm: Box<dyn Nsm> = match args.nsm {
        NsmKind::Simulated => {
            let dir = args.dev_ca.clone().ok_or_else(|| {
                BuildError::Attestation("--nsm simulated needs --dev-ca DIR".into())
            })?;
            let m = measure::measure(&sandbox, &args.measured.builder())?;
            hidden.push(dir.clone());
            Box::new(SimulatedBackend::load(&dir, measure::pcr_map(&m))?)
        }
        NsmKind::Nitro => {
            hidden.push(PathBuf::from("/dev/nsm"));
            Box::new(NitroBackend)
        }
    };
    let req = BuildRequest {
        source: SourceRequest {
            repo: args.repo,
            commit: args.commit,
            git_ref: args.git_ref,
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
    let m =
        measure::measure(&args.measured.sandbox(), &args.measured.builder()).context("measure")?;
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
