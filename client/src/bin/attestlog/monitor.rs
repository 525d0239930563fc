//! `attestlog monitor`: follow a log and report split views, bad entries and
//! builds of watched repositories (logic in `attestlog::monitor`).

use std::path::PathBuf;
use std::process::ExitCode;

use attestlog::monitor::proofs::ProofMode;
use attestlog::monitor::{Monitor, MonitorConfig, RoundOutcome};
use attestlog::nitro::{NitroVerifier, TrustRoots};
use attestlog::policy::Policy;
use attestlog::tlog::note::NoteVerifierKey;
use clap::Args;

use crate::display::json_safe;
use crate::{read_input, Failure};

/// `--once` exit code when a split view was found.
pub const EXIT_INCONSISTENT: u8 = 3;
/// `--once` exit code when a bad entry was found (and no split view).
pub const EXIT_BAD_ENTRY: u8 = 4;

#[derive(Args)]
pub struct MonitorArgs {
    /// The log's base URL.
    #[arg(long, value_name = "URL")]
    log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    key: String,
    /// Directory for the monitor's state and evidence.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Policy: witnesses and quorum for checkpoints, trust roots, endorsed
    /// measurements for `watched` reports.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Another Nitro root (PEM) to trust for entries, besides AWS's.
    #[arg(long = "root", value_name = "PEM")]
    roots: Vec<PathBuf>,
    /// Report entries built from this repository.
    #[arg(long = "watch-repo", value_name = "URI")]
    watch_repos: Vec<String>,
    /// Report entries with this PCR0 (hex).
    #[arg(long = "watch-pcr0", value_name = "HEX")]
    watch_pcr0: Vec<String>,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// One round, then exit: 0 clean, 3 split view, 4 bad entry.
    #[arg(long)]
    once: bool,
    /// Where consistency proofs come from: `api` (/v1/proof/*), `tiles`
    /// (computed from hash tiles: any C2SP tlog-tiles log), or `auto` (the
    /// API, then tiles if it answers 404).
    #[arg(long, value_name = "auto|api|tiles", default_value = "auto")]
    proofs: ProofMode,
}

pub fn run(args: MonitorArgs) -> Result<ExitCode, Failure> {
    let log_key = NoteVerifierKey::parse(&args.key).map_err(|e| Failure::new("key", e))?;
    let policy = args
        .policy
        .as_ref()
        .map(|p| Policy::load(p).map_err(|e| Failure::new(e.code(), e)))
        .transpose()?;
    let mut roots = policy
        .as_ref()
        .map_or_else(TrustRoots::aws, |p| p.trust_roots.clone());
    for path in &args.roots {
        let pem = read_input(path, "root", 1 << 20)?;
        let pem = String::from_utf8(pem).map_err(|_| Failure::new("root", "not UTF-8"))?;
        roots.add_pem(&pem).map_err(|e| Failure::new("root", e))?;
    }
    let watch_pcr0 = args
        .watch_pcr0
        .iter()
        .map(|h| hex::decode(h).map_err(|e| Failure::new("watch_pcr0", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let (witnesses, quorum) = policy
        .as_ref()
        .map_or((vec![], 0), |p| (p.witnesses.clone(), p.witness_quorum));
    let cfg = MonitorConfig {
        log_url: args.log.clone(),
        log_key,
        witnesses,
        quorum,
        state_dir: args.state.clone(),
        nitro: NitroVerifier::new(roots),
        policy,
        watch_repos: args.watch_repos.clone(),
        watch_pcr0,
        proofs: args.proofs,
    };
    // On a terminal, catching up shows a progress bar instead of `progress`
    // lines; findings are printed above it. Piped output is all JSON lines.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} checked {pos}/{len} entries {wide_bar} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut monitor = Monitor::new(cfg, |v| match &bar {
        Some(bar) if v["event"] == "progress" => {
            bar.set_length(v["tree_size"].as_u64().unwrap_or(0));
            bar.set_position(v["checked"].as_u64().unwrap_or(0));
        }
        Some(bar) => bar.println(json_safe(v)),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", json_safe(v));
            let _ = out.flush();
        }
    })
    .map_err(|e| Failure::new(e.code(), e))?;
    loop {
        let outcome: RoundOutcome = monitor.round().map_err(|e| Failure::new(e.code(), e))?;
        if args.once {
            return Ok(if outcome.inconsistent {
                ExitCode::from(EXIT_INCONSISTENT)
            } else if outcome.bad_entries > 0 {
                ExitCode::from(EXIT_BAD_ENTRY)
            } else {
                ExitCode::SUCCESS
            });
        }
        std::thread::sleep(std::time::Duration::from_secs(args.interval));
    }
}
