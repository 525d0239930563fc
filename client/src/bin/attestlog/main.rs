//! `attestlog`: verify attested builds offline.
//!
//! Every command exits 0 only when what it checked is valid. Any failure
//! prints one line, `error: <check>: <reason>`, and exits non-zero: 1 when a
//! check failed, 2 when the command line itself was wrong.

mod attestation;
mod bundle;
mod checkpoint;
mod display;
mod fetch_verify;
mod monitor;
mod verify;
mod verify_log;
mod witness;

use std::path::PathBuf;
use std::process::ExitCode;

use attestlog::tlog::cosignature::CosignatureVerifierKey;
use attestlog::tlog::note::NoteVerifierKey;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "attestlog", version, about = "Verify attested builds offline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nitro attestation documents.
    Attestation {
        #[command(subcommand)]
        command: AttestationCommand,
    },
    /// Signed checkpoints (C2SP tlog-checkpoint).
    Checkpoint {
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Offline bundles.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Verify an artifact against a policy, from its offline bundle or
    /// from the log.
    Verify(verify::VerifyArgs),
    /// Follow a log: consistency, tiles, every entry, watched builds.
    Monitor(monitor::MonitorArgs),
    /// A C2SP tlog-witness that cosigns checkpoints of trusted logs.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Serve POST /add-checkpoint (c2sp.org/tlog-witness).
    Serve(witness::WitnessServeArgs),
}

#[derive(Subcommand)]
enum BundleCommand {
    /// Upgrade a bundle to the log's latest (cosigned) checkpoint, proving
    /// it consistent with the bundle's.
    Refresh(bundle::BundleRefreshArgs),
    /// Print the bundle's DSSE envelope (and write the attested key as PEM)
    /// for in-toto tooling.
    Dsse(bundle::BundleDsseArgs),
}

#[derive(Subcommand)]
enum AttestationCommand {
    /// Verify a Nitro attestation document (COSE_Sign1 CBOR).
    Verify(attestation::AttestationVerifyArgs),
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// Verify a checkpoint's log signature and witness cosignatures.
    Verify(checkpoint::CheckpointVerifyArgs),
}

/// A failed check: the one line the user sees.
pub struct Failure {
    pub check: String,
    pub reason: String,
}

impl Failure {
    pub fn new(check: impl Into<String>, reason: impl ToString) -> Self {
        Failure {
            check: check.into(),
            reason: reason.to_string(),
        }
    }

    /// Prints `error: <check>: <reason>`, terminal-safe: reasons quote
    /// statements, documents and answers from the network.
    fn print(&self) {
        eprintln!(
            "error: {}: {}",
            display::display_safe(&self.check),
            display::display_safe(&self.reason)
        );
    }
}

/// The log key, witness keys and quorum named on the command line; the
/// quorum defaults to every witness given and may not exceed them.
pub fn trusted_keys(
    key: &str,
    witnesses: &[String],
    quorum: Option<usize>,
) -> Result<(NoteVerifierKey, Vec<CosignatureVerifierKey>, usize), Failure> {
    let log_key = NoteVerifierKey::parse(key).map_err(|e| Failure::new("key", e))?;
    let witnesses = witnesses
        .iter()
        .map(|w| CosignatureVerifierKey::parse(w).map_err(|e| Failure::new("witness", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        return Err(Failure::new(
            "quorum",
            format!(
                "{quorum} is more than the {} witnesses given",
                witnesses.len()
            ),
        ));
    }
    Ok((log_key, witnesses, quorum))
}

/// Reads a file named on the command line, or names the failure.
pub fn read_input(path: &PathBuf, what: &str, limit: u64) -> Result<Vec<u8>, Failure> {
    use attestlog::bounded::{read_bounded, BoundedReadError};
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::new(what, format!("cannot read {}: {e}", path.display())))?;
    read_bounded(file, limit).map_err(|e| match e {
        BoundedReadError::Io(e) => {
            Failure::new(what, format!("cannot read {}: {e}", path.display()))
        }
        too_large => Failure::new(what, format!("{} is {too_large}", path.display())),
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let line = rendered.lines().next().unwrap_or("error: bad command line");
            eprintln!("{}", display::display_safe(line));
            return ExitCode::from(2);
        }
    };
    if let Command::Monitor(args) = cli.command {
        return match monitor::run(args) {
            Ok(code) => code,
            Err(failure) => {
                failure.print();
                ExitCode::from(1)
            }
        };
    }
    let result = match cli.command {
        Command::Attestation {
            command: AttestationCommand::Verify(args),
        } => attestation::run(args),
        Command::Checkpoint {
            command: CheckpointCommand::Verify(args),
        } => checkpoint::run(args),
        Command::Bundle {
            command: BundleCommand::Refresh(args),
        } => bundle::refresh(args),
        Command::Bundle {
            command: BundleCommand::Dsse(args),
        } => bundle::dsse(args),
        Command::Verify(args) => verify::run(args),
        Command::Witness {
            command: WitnessCommand::Serve(args),
        } => witness::serve(args),
        Command::Monitor(_) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print();
            ExitCode::from(1)
        }
    }
}
