//! `attestlog verify (--bundle FILE | --log URL) --artifact FILE --policy FILE
//! [--commit CT] [--write-bundle PATH] [--json]`: the verdict on an artifact
//! from its offline bundle, or from the log itself (verify_log.rs), valid
//! when one of the artifact's entries satisfies the policy; each entry is
//! reported. `--url` and `--oci` (fetch, then the same checks) are in
//! `fetch_verify`.

use std::io::Read;
use std::path::{Path, PathBuf};

use attestlog::bundle::{Bundle, MAX_BUNDLE_SIZE};
use attestlog::claim::{is_full_commit_id, BuildDefinition, SourceRef, Statement};
use attestlog::monitor::write_atomic;
use attestlog::policy::Policy;
use attestlog::verify::{BundleVerifier, Verdict};
use clap::Args;
use sha2::{Digest, Sha256};

use crate::display::{display_safe as safe, json_safe};
use crate::verify_log::LogCandidates;
use crate::{read_input, Failure};
use serde_json::{json, Value};

#[derive(Args)]
pub struct VerifyArgs {
    /// The offline bundle (`<artifact>.attestlog.json`); or give --log.
    #[arg(long, required_unless_present_any = ["log", "url", "oci"], conflicts_with = "log")]
    bundle: Option<PathBuf>,
    /// No bundle file: find the artifact's entries in this log (base URL),
    /// fetch entry, proof and checkpoint, and verify each as a bundle.
    /// With --url: the log to verify from when no bundle sits beside the
    /// artifact.
    #[arg(long, value_name = "URL", conflicts_with = "oci")]
    log: Option<String>,
    /// The artifact about to be installed.
    #[arg(long, required_unless_present_any = ["url", "oci"])]
    artifact: Option<PathBuf>,
    /// The policy (TOML) naming trusted logs, witnesses and measurements.
    #[arg(long)]
    policy: PathBuf,
    /// Also require the statement to name this full commit id.
    #[arg(long)]
    commit: Option<String>,
    /// With --log: write the bundle of the first entry that verifies here.
    #[arg(long, value_name = "PATH", requires = "log")]
    write_bundle: Option<PathBuf>,
    /// Print the verdict as one JSON object on standard output.
    #[arg(long, conflicts_with = "remote")]
    json: bool,
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

/// One entry's verdict, as `--json` reports it.
fn verdict_json(v: &Verdict) -> Value {
    let s = &v.statement;
    let pcr = |i| v.document.pcr(i).map(hex::encode);
    json!({
        "index": v.index,
        "valid": true,
        "subject": {"name": v.subject.name, "sha256": hex::encode(v.subject.sha256)},
        "repository": s.source.uri,
        "commit": s.source.git_commit,
        "ref": ref_text(s),
        "build_definition": definition_text(s),
        "builder": s.builder_id,
        "measurement": v.measurement,
        "pcr0": pcr(0),
        "pcr1": pcr(1),
        "pcr2": pcr(2),
        "attested_at_ms": v.document.timestamp_ms,
        "origin": v.checkpoint.origin,
        "tree_size": v.checkpoint.size,
        "cosigners": v.cosigners,
        "dsse_keyid": v.dsse_keyid,
    })
}

fn refusal_json(index: Option<u64>, f: &Failure) -> Value {
    json!({"index": index, "valid": false, "code": f.check, "message": f.reason})
}

fn print_valid(verdict: &Verdict) {
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
}

pub fn run(args: VerifyArgs) -> Result<(), Failure> {
    if args.remote.is_given() {
        let verifier = verifier(&args.policy, args.commit.as_deref())?;
        return crate::fetch_verify::run(&verifier, args.remote, args.log.as_deref());
    }
    let Some(artifact) = &args.artifact else {
        return Err(Failure::new("usage", "give --artifact"));
    };
    let digest = sha256_file(artifact).inspect_err(|f| {
        if args.json {
            println!("{}", json_safe(&refusal_json(None, f)));
        }
    })?;
    let outcome = verify(&args, &digest);
    let (entries, written, failure) = match outcome {
        Ok((entries, written)) => {
            let failure = verdict(&entries).err();
            (entries, written, failure)
        }
        Err(f) => (Vec::new(), None, Some(f)),
    };
    if args.json {
        let list: Vec<Value> = entries
            .iter()
            .map(|(i, r)| match r {
                Ok(v) => verdict_json(v),
                Err(f) => refusal_json(*i, f),
            })
            .collect();
        let mut out = json!({
            "valid": failure.is_none(),
            "artifact_sha256": hex::encode(digest),
            "entries": list,
        });
        if let Some(f) = &failure {
            out["code"] = json!(f.check);
            out["message"] = json!(f.reason);
        }
        if let Some(path) = &written {
            out["bundle_written"] = json!(path.display().to_string());
        }
        println!("{}", json_safe(&out));
    } else {
        print_verdicts(&entries, entries.len() > 1 || args.log.is_some());
        if let Some(path) = &written {
            println!("bundle: {}", safe(&path.display().to_string()));
        }
    }
    failure.map_or(Ok(()), Err)
}

type Verdicts = Vec<(Option<u64>, Result<Verdict, Failure>)>;

/// Valid when one entry verified; otherwise [`first_refusal`].
fn verdict(entries: &Verdicts) -> Result<(), Failure> {
    match entries.iter().any(|(_, r)| r.is_ok()) {
        true => Ok(()),
        false => Err(first_refusal(entries)),
    }
}

/// The `valid:` lines of each verified entry and, with `several`, an
/// `entry N: refused:` line for each refused one.
fn print_verdicts(entries: &Verdicts, several: bool) {
    for (index, result) in entries {
        match (result, index) {
            (Ok(v), _) => print_valid(v),
            (Err(f), Some(i)) if several => println!(
                "entry {i}: refused: {}: {}",
                safe(&f.check),
                safe(&f.reason)
            ),
            _ => {}
        }
    }
}

/// The refusal to report when no entry verified: the lowest index's.
fn first_refusal(entries: &Verdicts) -> Failure {
    let n = entries.len();
    match entries
        .iter()
        .find_map(|(i, r)| r.as_ref().err().map(|f| (i, f)))
    {
        Some((Some(i), f)) if n > 1 => Failure::new(
            f.check.clone(),
            format!("none of the {n} entries verifies; entry {i}: {}", f.reason),
        ),
        Some((_, f)) => Failure::new(f.check.clone(), f.reason.clone()),
        None => Failure::new("internal", "no verdict"),
    }
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
/// prints the `valid:` lines (`--url`, `--oci`).
pub fn check(
    verifier: &BundleVerifier,
    bundle_bytes: &[u8],
    digest: &[u8; 32],
) -> Result<(), Failure> {
    let bundle = Bundle::parse(bundle_bytes).map_err(|e| Failure::new("bundle", e))?;
    let verdict = verifier
        .verify(&bundle, digest)
        .map_err(|e| Failure::new(e.code(), e))?;
    print_valid(&verdict);
    Ok(())
}

fn verify(args: &VerifyArgs, digest: &[u8; 32]) -> Result<(Verdicts, Option<PathBuf>), Failure> {
    let verifier = verifier(&args.policy, args.commit.as_deref())?;
    let check = |bundle: &Bundle| {
        verifier
            .verify(bundle, digest)
            .map_err(|e| Failure::new(e.code(), e))
    };
    if let Some(path) = &args.bundle {
        let bytes = read_input(path, "bundle", MAX_BUNDLE_SIZE as u64)?;
        let bundle = Bundle::parse(&bytes).map_err(|e| Failure::new("bundle", e))?;
        return Ok((vec![(Some(bundle.proof.index), check(&bundle))], None));
    }
    let url = args.log.as_deref().unwrap_or_default();
    from_log(&verifier, url, digest, args.write_bundle.as_deref())
}

/// Finds the artifact's entries in the log at `url` and verifies each as a
/// bundle; writes the first valid one's bundle to `write_bundle`.
fn from_log(
    verifier: &BundleVerifier,
    url: &str,
    digest: &[u8; 32],
    write_bundle: Option<&Path>,
) -> Result<(Verdicts, Option<PathBuf>), Failure> {
    let check = |bundle: &Bundle| {
        verifier
            .verify(bundle, digest)
            .map_err(|e| Failure::new(e.code(), e))
    };
    let candidates = LogCandidates::find(url, digest)?;
    let mut verdicts = Vec::new();
    let mut written = None;
    for &index in &candidates.indices {
        let result = candidates.bundle(index).and_then(|b| {
            let verdict = check(&b)?;
            if let (Some(path), None) = (write_bundle, &written) {
                write_atomic(path, b.to_json().as_bytes()).map_err(|e| {
                    Failure::new("write_bundle", format!("{}: {e}", path.display()))
                })?;
                written = Some(path.to_path_buf());
            }
            Ok(verdict)
        });
        verdicts.push((Some(index), result));
    }
    Ok((verdicts, written))
}

/// `verify --url --log`: the artifact at the URL had no bundle beside it;
/// verifies it from the log instead and prints each entry's verdict.
pub fn check_from_log(
    verifier: &BundleVerifier,
    log: &str,
    digest: &[u8; 32],
) -> Result<(), Failure> {
    let (entries, _) = from_log(verifier, log, digest, None)?;
    print_verdicts(&entries, true);
    verdict(&entries)
}
