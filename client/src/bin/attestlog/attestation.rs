//! `attestlog attestation verify`.

use std::path::PathBuf;

use attestlog::nitro::{AttestationDocument, NitroVerifier, TrustRoots, VerifyTime};
use clap::Args;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::display::{display_safe, json_safe};
use crate::{read_input, Failure};

#[derive(Args)]
pub struct AttestationVerifyArgs {
    /// The attestation document (COSE_Sign1 CBOR bytes).
    file: PathBuf,
    /// Verification time: UNIX seconds or RFC 3339. Default: the document's
    /// own timestamp.
    #[arg(long, value_parser = parse_time)]
    at: Option<u64>,
    /// Also trust this root certificate (PEM). AWS's root is always trusted.
    #[arg(long = "root", value_name = "PEM")]
    roots: Vec<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// A `--at` value was rejected (clap prints the message after the value).
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("not UNIX seconds or RFC 3339: {0}")]
    Syntax(time::error::Parse),
    #[error("time is before 1970")]
    BeforeEpoch,
}

/// Parses `--at`: UNIX seconds, or an RFC 3339 time not before 1970.
pub fn parse_time(text: &str) -> Result<u64, TimeError> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(TimeError::Syntax)?;
    u64::try_from(t.unix_timestamp()).map_err(|_| TimeError::BeforeEpoch)
}

fn rfc3339(unix_ms: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "out of range".into())
}

fn opt_hex(v: &Option<Vec<u8>>) -> serde_json::Value {
    v.as_ref()
        .map_or(serde_json::Value::Null, |b| hex::encode(b).into())
}

fn describe(doc: &AttestationDocument) -> serde_json::Value {
    let pcrs: serde_json::Map<String, serde_json::Value> = doc
        .pcrs
        .iter()
        .map(|(i, v)| (i.to_string(), hex::encode(v).into()))
        .collect();
    json!({
        "module_id": doc.module_id,
        "timestamp_ms": doc.timestamp_ms,
        "timestamp": rfc3339(doc.timestamp_ms),
        "digest": doc.digest,
        "debug": doc.is_debug(),
        "pcrs": pcrs,
        "user_data": opt_hex(&doc.user_data),
        "nonce": opt_hex(&doc.nonce),
        "public_key": opt_hex(&doc.public_key),
    })
}

pub fn run(args: AttestationVerifyArgs) -> Result<(), Failure> {
    let bytes = read_input(&args.file, "input", 1 << 20)?;
    let mut roots = TrustRoots::aws();
    for path in &args.roots {
        let pem = read_input(path, "root", 1 << 20)?;
        let pem = String::from_utf8(pem).map_err(|_| Failure::new("root", "not a PEM file"))?;
        roots
            .add_pem(&pem)
            .map_err(|e| Failure::new("root", format!("{}: {e}", path.display())))?;
    }
    let at = args
        .at
        .map_or(VerifyTime::DocumentTimestamp, VerifyTime::UnixSeconds);
    let result = NitroVerifier::without_cache(roots).verify(&bytes, at);

    if args.json {
        let parsed = AttestationDocument::parse(&bytes).ok();
        let mut out = parsed.as_ref().map_or_else(|| json!({}), describe);
        if let Some(obj) = out.as_object_mut() {
            obj.insert("valid".into(), result.is_ok().into());
            obj.insert(
                "error".into(),
                result.as_ref().err().map_or(
                    serde_json::Value::Null,
                    |e| json!({"code": e.code(), "message": e.to_string()}),
                ),
            );
            obj.insert(
                "verified_at".into(),
                match (args.at, &parsed) {
                    (Some(s), _) => s.into(),
                    (None, Some(d)) => d.timestamp_unix().into(),
                    (None, None) => serde_json::Value::Null,
                },
            );
        }
        println!("{}", json_safe(&out));
        return result.map(|_| ()).map_err(|e| Failure::new(e.code(), e));
    }

    let doc = result.map_err(|e| Failure::new(e.code(), e))?;
    match args.at {
        Some(secs) => println!("valid: verified at {}", rfc3339(secs.saturating_mul(1000))),
        None => println!(
            "valid: verified at the document's own timestamp, {}",
            rfc3339(doc.timestamp_ms)
        ),
    }
    println!("module_id: {}", display_safe(&doc.module_id));
    println!(
        "timestamp: {} ({})",
        doc.timestamp_ms,
        rfc3339(doc.timestamp_ms)
    );
    println!("debug: {}", doc.is_debug());
    for (i, v) in &doc.pcrs {
        println!("pcr{i}: {}", hex::encode(v));
    }
    for (name, value) in [
        ("user_data", &doc.user_data),
        ("nonce", &doc.nonce),
        ("public_key", &doc.public_key),
    ] {
        match value {
            Some(v) => println!("{name}: {}", hex::encode(v)),
            None => println!("{name}: (none)"),
        }
    }
    Ok(())
}
