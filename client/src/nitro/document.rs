//! Parsing of Nitro attestation documents: the COSE_Sign1 envelope (only the NSM's
//! encoding, see `envelope.rs`) and the CBOR payload, whose fields are held to the types
//! and limits of AWS's attestation_process.md (section 3.2.2).
//!
//! Parsing checks structure, types and sizes only; no cryptography happens here. The
//! bytes needed later for the signature check (the Sig_structure built from the protected
//! header and payload *as received*) are kept in [`Envelope`].

use std::collections::BTreeMap;

use ciborium::Value;

use super::envelope::CoseParts;
use super::error::NitroError;

/// Largest accepted document, in bytes: the largest log entry (2-byte length prefix).
/// Real documents are about 4-6 KB.
pub const MAX_DOCUMENT_LEN: usize = crate::tlog::tiles::MAX_ENTRY_LEN;
/// Largest accepted `public_key`, `user_data` or `nonce`: `user_data = bytes .size (0..1024)`
/// in the CDDL of aws-nitro-enclaves-nsm-api docs/attestation_process.md, section 2.2. Its
/// checklist (3.2.2.2) says 512 for `user_data` and `nonce`; the NSM accepts 1024, so do we.
pub const MAX_OPTIONAL_FIELD_LEN: usize = 1024;
/// Largest accepted DER certificate (`certificate` and each `cabundle` entry):
/// `cert = bytes .size (1..1024)` in attestation_process.md, sections 2.2 and 3.2.2.2.
pub const MAX_CERTIFICATE_LEN: usize = 1024;
/// Largest accepted cabundle (AWS uses 4); bounds the work an attacker can cause.
pub const MAX_CABUNDLE_LEN: usize = 16;
/// Largest number of PCRs: `$size in [1, 32]`, attestation_process.md section 3.2.2.2.
pub const MAX_PCRS: usize = 32;

/// A parsed (not necessarily verified) Nitro attestation document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Identifier of the enclave's NSM module.
    pub module_id: String,
    /// Digest used for the PCRs; always "SHA384" after parse.
    pub digest: String,
    /// Milliseconds since the Unix epoch, as claimed by the NSM.
    pub timestamp_ms: u64,
    /// Platform configuration registers, index 0..=31, each 32, 48 or 64 bytes.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// DER of the leaf (signing) certificate.
    pub certificate: Vec<u8>,
    /// DER certificates, root first, leaf's issuer last.
    pub cabundle: Vec<Vec<u8>>,
    /// Absent or null -> None; never empty (AWS requires 1..=1024 bytes).
    pub public_key: Option<Vec<u8>>,
    /// Absent or null -> None; an empty byte string -> Some(vec![]).
    pub user_data: Option<Vec<u8>>,
    /// Absent or null -> None; an empty byte string -> Some(vec![]).
    pub nonce: Option<Vec<u8>>,
}

/// What the COSE signature check needs, taken from the envelope exactly as received.
pub(crate) struct Envelope {
    /// CBOR ["Signature1", protected bytes as received, h'', payload bytes].
    pub tbs: Vec<u8>,
    /// Raw r || s.
    pub signature: Vec<u8>,
}

impl AttestationDocument {
    /// Parses an attestation document in the NSM's encoding (an untagged COSE_Sign1; see
    /// [`crate::nitro::CoseParts::from_nsm_bytes`]) and checks every field as AWS's
    /// process does. Checks structure and fields only; use [`crate::nitro::NitroVerifier`]
    /// to verify.
    pub fn parse(cose_bytes: &[u8]) -> Result<Self, NitroError> {
        parse_with_envelope(cose_bytes).map(|(doc, _)| doc)
    }

    /// True when PCR0, PCR1 and PCR2 are all present and all zero, which is how a
    /// debug-mode enclave (whose memory the host can read) reports itself.
    pub fn is_debug(&self) -> bool {
        (0u8..=2).all(|i| {
            self.pcr(i)
                .is_some_and(|v| !v.is_empty() && v.iter().all(|b| *b == 0))
        })
    }

    /// The value of PCR `index`, if present.
    pub fn pcr(&self, index: u8) -> Option<&[u8]> {
        self.pcrs.get(&index).map(Vec::as_slice)
    }

    /// The document's timestamp in whole seconds since the Unix epoch.
    pub fn timestamp_unix(&self) -> u64 {
        self.timestamp_ms / 1000
    }
}

/// Parses the document and keeps the signed bytes for verification.
pub(crate) fn parse_with_envelope(
    cose_bytes: &[u8],
) -> Result<(AttestationDocument, Envelope), NitroError> {
    let parts = CoseParts::from_nsm_bytes(cose_bytes)?;
    let doc = parse_payload(&parts.payload)?;
    // The protected header and payload exactly as received: the payload is signed as the
    // NSM encoded it, which is not canonical CBOR.
    let tbs = parts.to_be_signed()?;
    Ok((
        doc,
        Envelope {
            tbs,
            signature: parts.signature,
        },
    ))
}

fn parse_payload(payload: &[u8]) -> Result<AttestationDocument, NitroError> {
    let mut rest = payload;
    let value: Value = ciborium::from_reader(&mut rest)
        .map_err(|e| NitroError::MalformedPayload(format!("not CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(NitroError::MalformedPayload(
            "trailing bytes after the map".into(),
        ));
    }
    let Value::Map(entries) = value else {
        return Err(NitroError::MalformedPayload("payload is not a map".into()));
    };
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in entries {
        let Value::Text(key) = k else {
            return Err(NitroError::MalformedPayload("non-text key".into()));
        };
        if fields.insert(key, v).is_some() {
            return Err(NitroError::MalformedPayload("duplicate key".into()));
        }
    }
    let mut take = |name: &'static str| fields.remove(name);

    let module_id = match take("module_id").ok_or(NitroError::MissingField("module_id"))? {
        Value::Text(s) if !s.is_empty() => s,
        _ => return Err(invalid("module_id", "must be non-empty text")),
    };
    let digest = match take("digest").ok_or(NitroError::MissingField("digest"))? {
        Value::Text(s) if s == "SHA384" => s,
        _ => return Err(invalid("digest", "must be the text \"SHA384\"")),
    };
    let timestamp_ms = match take("timestamp").ok_or(NitroError::MissingField("timestamp"))? {
        Value::Integer(i) => {
            u64::try_from(i).map_err(|_| invalid("timestamp", "must be an unsigned integer"))?
        }
        _ => return Err(invalid("timestamp", "must be an unsigned integer")),
    };
    if timestamp_ms == 0 {
        return Err(invalid("timestamp", "must be greater than 0"));
    }
    let pcrs = parse_pcrs(take("pcrs").ok_or(NitroError::MissingField("pcrs"))?)?;
    let certificate = match take("certificate").ok_or(NitroError::MissingField("certificate"))? {
        Value::Bytes(b) if (1..=MAX_CERTIFICATE_LEN).contains(&b.len()) => b,
        _ => {
            return Err(invalid(
                "certificate",
                "must be a byte string of 1..=1024 bytes",
            ))
        }
    };
    let cabundle = parse_cabundle(take("cabundle").ok_or(NitroError::MissingField("cabundle"))?)?;
    let public_key = optional_bytes("public_key", take("public_key"))?;
    if public_key.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid("public_key", "must not be empty (1..=1024 bytes)"));
    }
    let user_data = optional_bytes("user_data", take("user_data"))?;
    let nonce = optional_bytes("nonce", take("nonce"))?;
    // Unknown keys are ignored: they are covered by the signature but carry no meaning here.
    Ok(AttestationDocument {
        module_id,
        digest,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
    })
}

fn invalid(field: &'static str, reason: &'static str) -> NitroError {
    NitroError::InvalidField { field, reason }
}

fn parse_pcrs(value: Value) -> Result<BTreeMap<u8, Vec<u8>>, NitroError> {
    let Value::Map(entries) = value else {
        return Err(invalid("pcrs", "must be a map"));
    };
    if entries.is_empty() || entries.len() > MAX_PCRS {
        return Err(invalid("pcrs", "must hold 1..=32 registers"));
    }
    let mut pcrs = BTreeMap::new();
    for (k, v) in entries {
        let index = match k {
            Value::Integer(i) => u8::try_from(i)
                .ok()
                .filter(|i| *i <= 31)
                .ok_or_else(|| invalid("pcrs", "index must be 0..=31"))?,
            _ => return Err(invalid("pcrs", "index must be an integer")),
        };
        let bytes = match v {
            Value::Bytes(b) if matches!(b.len(), 32 | 48 | 64) => b,
            _ => return Err(invalid("pcrs", "value must be 32, 48 or 64 bytes")),
        };
        if pcrs.insert(index, bytes).is_some() {
            return Err(invalid("pcrs", "duplicate index"));
        }
    }
    Ok(pcrs)
}

fn parse_cabundle(value: Value) -> Result<Vec<Vec<u8>>, NitroError> {
    let Value::Array(items) = value else {
        return Err(invalid("cabundle", "must be an array"));
    };
    if items.is_empty() || items.len() > MAX_CABUNDLE_LEN {
        return Err(invalid("cabundle", "must hold 1..=16 certificates"));
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::Bytes(b) if (1..=MAX_CERTIFICATE_LEN).contains(&b.len()) => Ok(b),
            _ => Err(invalid(
                "cabundle",
                "entries must be byte strings of 1..=1024 bytes",
            )),
        })
        .collect()
}

fn optional_bytes(
    field: &'static str,
    value: Option<Value>,
) -> Result<Option<Vec<u8>>, NitroError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) if b.len() <= MAX_OPTIONAL_FIELD_LEN => Ok(Some(b)),
        Some(Value::Bytes(_)) => Err(invalid(field, "longer than 1024 bytes")),
        Some(_) => Err(invalid(field, "must be a byte string or null")),
    }
}
