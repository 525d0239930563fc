//! `attestlog verify --bundle FILE --artifact FILE --policy FILE [--commit CT]`;
//! `--url` and `--oci` (fetch, then the same checks) are in `fetch_verify`.

use std::io::Read;
use std::path::{Path, PathBuf};

use attestlog::bundle::{Bundle, MAX_BUNDLE_SIZE};
use attestlog::claim::{is_full_commit_id, BuildDefinition, SourceRef, Statement};
use attestlog::policy::Policy;
use attestlog::verify::BundleVerifier;
use clap::Args;
use sha2::{Digest, Sha256};

use crate::display::display_safe as safe;
use crate::{read_input, Failure};

#[derive(Args)]
pub struct VerifyArgs {
    /// The offline bundle (`<artifact>.attestlog.json`).
    #[arg(long, required_unless_present_any = ["url", "oci"])]
    bundle: Option<PathBuf>,
    /// The artifact about to be installed.
    #[arg(long, required_unless_present_any = ["url", "oci"])]
    artifact: Option<PathBuf>,
    /// The policy (TOML) naming trusted logs, witnesses and measurements.
    #[arg(long)]
    policy: PathBuf,
    /// Also require the statement to name this full commit id.
    #[arg(long)]
    commit: Option<String>,
    #[command(flatten)]
    remote: crate::fetch_verify::RemoteArgs,
}

fn sha256_file(path: &Path) -> Result<[u8; 32], Failure> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Failure::new("artifact", format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| {
            Failure::new("artifact", format!("cannot read {}: {e}", path.display()))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// The `valid:` line's account of the ref that contains the commit.
fn ref_text(s: &Statement) -> String {
    match &s.source_ref {
        Some(SourceRef::Ref(name)) => format!("contained in {name}"),
        Some(SourceRef::Unreferenced) => "in no branch or tag of the repository".into(),
        None => "ref not recorded".into(),
    }
}

/// The `valid:` line's account of where the build definition came from.
fn definition_text(s: &Statement) -> String {
    match &s.build_definition {
        Some(BuildDefinition::Repository { path, sha256 }) => format!(
            "the repository's build definition {path} (sha256 {})",
            hex::encode(sha256)
        ),
        Some(BuildDefinition::Override) => "a command-line override of the build definition".into(),
        None => "an unrecorded build definition".into(),
    }
}

pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    let verifier = verifier(&args.policy, args.commit.as_deref())?;
    if args.remote.is_given() {
        return crate::fetch_verify::run(&verifier, args.remote);
    }
    let (Some(bundle), Some(artifact)) = (&args.bundle, &args.artifact) else {
        return Err(Failure::new("usage", "give --bundle and --artifact"));
    };
    let bundle_bytes = read_input(bundle, "bundle", MAX_BUNDLE_SIZE as u64)?;
    let digest = sha256_file(artifact)?;
    check(&verifier, &bundle_bytes, &digest)
}

/// The policy's verifier, pinned to `commit` when given.
pub fn verifier(policy: &Path, commit: Option<&str>) -> Result<BundleVerifier, Failure> {
    let policy = Policy::load(policy).map_err(|e| Failure::new("policy", e))?;
    let mut verifier = BundleVerifier::new(policy);
    if let Some(commit) = commit {
        if !is_full_commit_id(&commit.to_ascii_lowercase()) {
            return Err(Failure::new(
                "commit",
                format!("--commit {commit:?} is not a full 40- or 64-hex commit id"),
            ));
        }
        verifier = verifier.expect_commit(commit);
    }
    Ok(verifier)
}

/// Verifies `bundle_bytes` for the artifact whose SHA-256 is `digest` and
/// prints the `valid:` lines.
pub fn check(
    verifier: &BundleVerifier,
    bundle_bytes: &[u8],
    digest: &[u8; 32],
) -> Result<(), Failure> {
    let bundle = Bundle::parse(bundle_bytes).map_err(|e| Failure::new("bundle", e))?;
    let verdict = verifier
        .verify(&bundle, digest)
        .map_err(|e| Failure::new(e.code(), e))?;
    let s = &verdict.statement;
    println!(
        "valid: {} (sha256 {}) was built from {} at commit {} ({}) by {}",
        safe(&verdict.subject.name),
        hex::encode(verdict.subject.sha256),
        safe(&s.source.uri),
        safe(&s.source.git_commit),
        safe(&ref_text(s)),
        safe(&definition_text(s))
    );
    println!(
        "builder: {} in enclave image {:?} (pcr0 {})",
        safe(&s.builder_id),
        verdict.measurement,
        hex::encode(verdict.document.pcr(0).unwrap_or_default())
    );
    println!(
        "log: entry {} in {} at size {}{}",
        verdict.index,
        safe(&verdict.checkpoint.origin),
        verdict.checkpoint.size,
        if verdict.cosigners.is_empty() {
            String::new()
        } else {
            format!(", cosigned by {}", safe(&verdict.cosigners.join(", ")))
        }
    );
    Ok(())
}
