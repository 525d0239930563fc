//! `attestlog bundle refresh`: move a bundle to the log's latest (cosigned)
//! checkpoint, proving the new checkpoint consistent with the old one.
//!
//! 1. The bundle's own proof must verify against the log key (any quorum:
//!    an old bundle may predate the witnesses).
//! 2. `GET <log>/checkpoint` must verify with the log key and the witness
//!    quorum given.
//! 3. The consistency proof from the bundle's size to the new size must
//!    verify between the two roots (a smaller new size, or a different root
//!    at the same size, is refused).
//! 4. The inclusion proof for the entry at the new size must verify; then
//!    the bundle file is replaced (written beside it, renamed).
//!
//! Proofs come from `GET <log>/v1/proof/*` or, with `--proofs tiles` or
//! when those answer 404 (`auto`), are computed from the log's C2SP hash
//! tiles, so any tlog-tiles log serving the bundle's entry works
//! (`attestlog::monitor::proofs`). Downloads are bounded and may be gzipped.
//!
//! `attestlog bundle dsse`: print a bundle's DSSE envelope, and write the
//! attested key as PEM, for in-toto and other DSSE tooling. It checks the
//! envelope against the entry's statement and the attestation's
//! `public_key` first, but not the Nitro chain: `attestlog verify` does.

use std::path::PathBuf;

use attestlog::bundle::{Bundle, MAX_BUNDLE_SIZE};
use attestlog::claim::Entry;
use attestlog::dsse::public_key_pem;
use attestlog::monitor::fetch::{HttpLog, MAX_CHECKPOINT};
use attestlog::monitor::proofs::{ProofMode, ProofSource, ProofSourceError};
use attestlog::nitro::AttestationDocument;
use attestlog::tlog::checkpoint::verify_checkpoint;
use attestlog::tlog::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use attestlog::tlog::proof::TlogProof;
use clap::Args;

use crate::display::display_safe;
use crate::{read_input, Failure};

#[derive(Args)]
pub struct BundleRefreshArgs {
    /// The bundle to upgrade in place.
    #[arg(long)]
    bundle: PathBuf,
    /// The log's base URL.
    #[arg(long, value_name = "URL")]
    log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    key: String,
    /// A witness's cosignature verifier key; repeat for each witness.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many witnesses must have cosigned the new checkpoint. Default:
    /// all that are given.
    #[arg(long)]
    quorum: Option<usize>,
    /// Where proofs come from: `api` (/v1/proof/*), `tiles` (computed from
    /// hash tiles), or `auto` (the API, then tiles if it answers 404).
    #[arg(long, value_name = "auto|api|tiles", default_value = "auto")]
    proofs: ProofMode,
}

fn fetch_failure(e: ProofSourceError) -> Failure {
    Failure::new(e.code(), e)
}

pub fn refresh(args: BundleRefreshArgs) -> Result<(), Failure> {
    let (log_key, witnesses, quorum) =
        crate::trusted_keys(&args.key, &args.witnesses, args.quorum)?;
    let bytes = read_input(&args.bundle, "bundle", MAX_BUNDLE_SIZE as u64)?;
    let bundle = Bundle::parse(&bytes).map_err(|e| Failure::new("bundle", e))?;
    let leaf = leaf_hash(&bundle.entry);
    let old = bundle
        .proof
        .verify(&leaf, &log_key, &[], 0)
        .map_err(|e| Failure::new("bundle", format!("{}: {e}", e.code())))?
        .checkpoint;

    let log = HttpLog::new(&args.log).map_err(|e| Failure::new(e.code(), e))?;
    let note = log
        .get("checkpoint", MAX_CHECKPOINT)
        .map_err(|e| Failure::new(e.code(), e))?;
    let note = String::from_utf8(note)
        .map_err(|_| Failure::new("checkpoint_utf8", "the log's checkpoint is not UTF-8"))?;
    let proofs = ProofSource::new(&log, args.proofs);
    let new = verify_checkpoint(&note, &log_key, &witnesses, quorum)
        .map_err(|e| Failure::new(e.code(), format!("the log's checkpoint: {e}")))?;
    let new_cp = &new.checkpoint;
    if new_cp.size < old.size {
        return Err(Failure::new(
            "consistency",
            format!(
                "the log's checkpoint (size {}) is older than the bundle's (size {})",
                new_cp.size, old.size
            ),
        ));
    }
    let consistency = proofs
        .consistency(old.size, new_cp.size)
        .map_err(fetch_failure)?;
    verify_consistency(
        old.size,
        new_cp.size,
        &old.root_hash,
        &new_cp.root_hash,
        &consistency,
    )
    .map_err(|e| {
        Failure::new(
            "consistency",
            format!(
                "the log's checkpoint (size {}) is not consistent with the bundle's (size {}): {e}",
                new_cp.size, old.size
            ),
        )
    })?;
    let index = bundle.proof.index;
    let inclusion = proofs
        .inclusion(index, new_cp.size)
        .map_err(fetch_failure)?;
    verify_inclusion(index, new_cp.size, &leaf, &inclusion, &new_cp.root_hash)
        .map_err(|e| Failure::new("inclusion", e))?;

    let refreshed = Bundle {
        entry: bundle.entry.clone(),
        proof: TlogProof {
            extra: bundle.proof.extra.clone(),
            index,
            hashes: inclusion,
            checkpoint: note,
        },
        dsse_envelope: bundle.dsse_envelope.clone(),
    };
    let tmp = args.bundle.with_extension("refresh.tmp");
    std::fs::write(&tmp, refreshed.to_json())
        .and_then(|()| std::fs::rename(&tmp, &args.bundle))
        .map_err(|e| Failure::new("write", format!("{}: {e}", args.bundle.display())))?;
    println!(
        "refreshed: entry {index} from size {} to size {}{}",
        old.size,
        new_cp.size,
        if new.cosigners.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = new.cosigners.iter().map(|(n, _)| n.as_str()).collect();
            format!(", cosigned by {}", display_safe(&names.join(", ")))
        }
    );
    Ok(())
}

#[derive(Args)]
pub struct BundleDsseArgs {
    /// The bundle (v2) whose DSSE envelope to print on standard output.
    #[arg(long)]
    bundle: PathBuf,
    /// Also write the attested public key (the attestation's `public_key`)
    /// here as PEM (SubjectPublicKeyInfo).
    #[arg(long, value_name = "FILE")]
    key_out: Option<PathBuf>,
}

pub fn dsse(args: BundleDsseArgs) -> Result<(), Failure> {
    let bytes = read_input(&args.bundle, "bundle", MAX_BUNDLE_SIZE as u64)?;
    let bundle = Bundle::parse(&bytes).map_err(|e| Failure::new("bundle", e))?;
    let envelope = bundle.dsse_envelope.as_ref().ok_or_else(|| {
        Failure::new(
            "dsse_missing",
            "the bundle carries no DSSE envelope (a v1 bundle)",
        )
    })?;
    let entry = Entry::decode(&bundle.entry).map_err(|e| Failure::new(e.code(), e))?;
    let document =
        AttestationDocument::parse(entry.attestation).map_err(|e| Failure::new(e.code(), e))?;
    envelope
        .check_statement(entry.statement)
        .and_then(|()| envelope.verify(document.public_key.as_deref()))
        .map_err(|e| Failure::new(e.code(), e))?;
    if let (Some(path), Some(der)) = (&args.key_out, &document.public_key) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, public_key_pem(der))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Failure::new("write", format!("{}: {e}", path.display())))?;
    }
    println!("{}", envelope.to_json());
    Ok(())
}
