//! `attestlog checkpoint verify`: a checkpoint's log signature and witness
//! cosignatures (Ed25519 0x04 or ML-DSA-44 0x06). The expected origin comes
//! from `--origin`, else the policy's `log_origin`, else it must be the name
//! of a given log key: tlog-checkpoint only says the key name SHOULD equal
//! the origin, so a log such as `go.sum database tree` signed by
//! `sum.golang.org` verifies when its origin is given.

use std::path::PathBuf;

use attestlog::policy::Policy;
use attestlog::tlog::checkpoint::{verify_checkpoint_for_origin, Checkpoint, VerifiedCheckpoint};
use attestlog::tlog::cosignature::CosignatureVerifierKey;
use attestlog::tlog::note::{NoteVerifierKey, SignedNote};
use base64::Engine;
use clap::Args;

use crate::{read_input, Failure};

#[derive(Args)]
pub struct CheckpointVerifyArgs {
    /// The signed checkpoint (a C2SP signed note).
    file: PathBuf,
    /// The log's verifier key (name+hexid+base64); repeat for several. Its
    /// name must be the checkpoint's origin unless --origin or the policy's
    /// log_origin names the origin.
    #[arg(long, value_name = "VKEY")]
    key: Vec<String>,
    /// The log's origin line, when it differs from the key name.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// A policy (TOML) whose log_keys, log_origin and [witnesses] are
    /// trusted, in addition to --key and --witness.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// A witness's cosignature verifier key; repeat for each witness.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many witnesses must have cosigned. Default: the policy's quorum
    /// plus every --witness given.
    #[arg(long)]
    quorum: Option<usize>,
    /// Print the verdict as one JSON object on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CheckpointVerifyArgs) -> Result<(), Failure> {
    let json = args.json;
    let verified = check(args).inspect_err(|f| {
        if json {
            let out = serde_json::json!({"valid": false, "code": f.check, "message": f.reason});
            println!("{}", crate::display::json_safe(&out));
        }
    })?;
    let cp = &verified.checkpoint;
    let root = base64::engine::general_purpose::STANDARD.encode(cp.root_hash);
    if json {
        let cosigners: Vec<_> = verified
            .cosigners
            .iter()
            .map(|(name, time)| serde_json::json!({"name": name, "time": time}))
            .collect();
        let out = serde_json::json!({
            "valid": true,
            "origin": cp.origin,
            "size": cp.size,
            "root_hash": root,
            "cosigners": cosigners,
        });
        println!("{}", crate::display::json_safe(&out));
        return Ok(());
    }
    println!(
        "valid: {} size {} root {root}",
        crate::display::display_safe(&cp.origin),
        cp.size,
    );
    for (name, time) in &verified.cosigners {
        println!(
            "cosigned by {} at {time}",
            crate::display::display_safe(name)
        );
    }
    Ok(())
}

fn check(args: CheckpointVerifyArgs) -> Result<VerifiedCheckpoint, Failure> {
    let policy = args
        .policy
        .as_ref()
        .map(|p| Policy::load(p).map_err(|e| Failure::new("policy", e)))
        .transpose()?;
    let mut log_keys = args
        .key
        .iter()
        .map(|k| NoteVerifierKey::parse(k).map_err(|e| Failure::new("key", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut witnesses = args
        .witnesses
        .iter()
        .map(|w| CosignatureVerifierKey::parse(w).map_err(|e| Failure::new("witness", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let default_quorum = witnesses.len() + policy.as_ref().map_or(0, |p| p.witness_quorum);
    if let Some(p) = &policy {
        log_keys.extend(p.log_keys.iter().cloned());
        witnesses.extend(p.witnesses.iter().cloned());
    }
    if log_keys.is_empty() {
        return Err(Failure::new(
            "key",
            "give the log key with --key or --policy",
        ));
    }
    let quorum = args.quorum.unwrap_or(default_quorum);
    if quorum > witnesses.len() {
        return Err(Failure::new(
            "quorum",
            format!(
                "{quorum} is more than the {} witnesses given",
                witnesses.len()
            ),
        ));
    }
    let bytes = read_input(&args.file, "input", 1 << 20)?;
    let text = String::from_utf8(bytes).map_err(|_| Failure::new("note", "not UTF-8"))?;
    let origin = match args
        .origin
        .clone()
        .or_else(|| policy.as_ref().and_then(|p| p.log_origin.clone()))
    {
        Some(origin) => origin,
        None => {
            // The origin selects the key(s) named after it.
            let origin = origin_from_key_names(&text, &log_keys);
            log_keys.retain(|k| k.name() == origin);
            origin
        }
    };
    verify_checkpoint_for_origin(&text, &origin, &log_keys, &witnesses, quorum)
        .map_err(|e| Failure::new(e.code(), e))
}

/// Without a configured origin, the checkpoint's origin must be one of the
/// keys' names: returns it when it is, else the first key's name (which then
/// fails as `origin_mismatch`).
fn origin_from_key_names(text: &str, keys: &[NoteVerifierKey]) -> String {
    let origin = SignedNote::parse(text)
        .ok()
        .and_then(|n| Checkpoint::parse_body(&n.text).ok())
        .map(|c| c.origin);
    match origin {
        Some(o) if keys.iter().any(|k| k.name() == o) => o,
        _ => keys
            .first()
            .map(|k| k.name().to_owned())
            .unwrap_or_default(),
    }
}
