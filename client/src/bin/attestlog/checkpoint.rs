//! `attestlog checkpoint verify`.

use std::path::PathBuf;

use attestlog::tlog::checkpoint::verify_checkpoint;
use base64::Engine;
use clap::Args;

use crate::{read_input, Failure};

#[derive(Args)]
pub struct CheckpointVerifyArgs {
    /// The signed checkpoint (a C2SP signed note).
    file: PathBuf,
    /// The log's verifier key (name+hexid+base64). Its name must be the
    /// checkpoint's origin.
    #[arg(long, value_name = "VKEY")]
    key: String,
    /// A witness's cosignature verifier key; repeat for each witness.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many witnesses must have cosigned. Default: all that are given.
    #[arg(long)]
    quorum: Option<usize>,
}

pub fn run(args: CheckpointVerifyArgs) -> Result<(), Failure> {
    let (log_key, witnesses, quorum) =
        crate::trusted_keys(&args.key, &args.witnesses, args.quorum)?;
    let bytes = read_input(&args.file, "input", 1 << 20)?;
    let text = String::from_utf8(bytes).map_err(|_| Failure::new("note", "not UTF-8"))?;
    let verified = verify_checkpoint(&text, &log_key, &witnesses, quorum)
        .map_err(|e| Failure::new(e.code(), e))?;
    let cp = &verified.checkpoint;
    println!(
        "valid: {} size {} root {}",
        cp.origin,
        cp.size,
        base64::engine::general_purpose::STANDARD.encode(cp.root_hash)
    );
    for (name, time) in &verified.cosigners {
        println!("cosigned by {name} at {time}");
    }
    Ok(())
}
