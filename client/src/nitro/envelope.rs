//! The COSE_Sign1 envelope of a Nitro attestation document, accepted in exactly one encoding.
//!
//! # Contract
//! The signature covers only the protected header bytes and the payload bytes (RFC 9052
//! section 4.4), not the envelope around them: a tag, the unprotected header and the CBOR
//! length encodings can all be changed without breaking it. So that one attestation has one
//! encoding (and one log entry), [`CoseParts::from_nsm_bytes`] accepts only what the NSM emits:
//!
//! ```text
//! 84                      definite array of 4, no tag 18
//!   44 a1 01 38 22        protected header {1: -35} (ES384), these exact bytes
//!   a0                    unprotected header: the empty map, nothing else
//!   59 xx xx <payload>    payload: one definite byte string, minimal length
//!   58 60 <r || s>        signature: 96 bytes, minimal length
//! ```
//! and nothing after it. It decodes the envelope, re-encodes its parts canonically and
//! requires byte equality, so every other length encoding (non-minimal, indefinite, chunked)
//! is refused with `noncanonical_encoding`. The payload itself is signed and kept as
//! received (real payloads are not canonical CBOR). [`CoseParts::from_any_encoding`] splits
//! any COSE_Sign1 encoding without these checks, for identifying copies already logged.

use ciborium::Value;

use super::document::MAX_DOCUMENT_LEN;
use super::error::NitroError;

/// Largest payload AWS's profile allows: `bstr .size (1..16384)` in
/// aws-nitro-enclaves-nsm-api docs/attestation_process.md, section 3.1.
pub const MAX_PAYLOAD_LEN: usize = 16_384;
/// An ES384 signature as COSE carries it (RFC 9053 section 2.1): raw r || s, 48 bytes each.
pub const SIGNATURE_LEN: usize = 96;
/// The protected header of every NSM document: the map {1: -35} (alg: ES384), canonical CBOR.
pub const NSM_PROTECTED_HEADER: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];
/// CBOR tag of a tagged COSE_Sign1 (RFC 9052 section 2). The NSM never emits it.
const COSE_SIGN1_TAG: u64 = 18;

/// The three byte strings of a COSE_Sign1 envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoseParts {
    /// The protected header's serialized bytes, as signed.
    pub protected: Vec<u8>,
    /// The payload bytes (the attestation document map), as signed.
    pub payload: Vec<u8>,
    /// The signature bytes (raw r || s for ES384).
    pub signature: Vec<u8>,
}

/// What decoding found besides the parts.
struct Decoded {
    parts: CoseParts,
    tagged: bool,
    unprotected: Value,
}

fn malformed(reason: impl Into<String>) -> NitroError {
    NitroError::MalformedCose(reason.into())
}

fn decode(bytes: &[u8]) -> Result<Decoded, NitroError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(NitroError::TooLarge(bytes.len()));
    }
    let mut rest = bytes;
    let value: Value =
        ciborium::from_reader(&mut rest).map_err(|e| malformed(format!("not CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} trailing bytes after the envelope",
            rest.len()
        )));
    }
    let (tagged, inner) = match value {
        Value::Tag(COSE_SIGN1_TAG, inner) => (true, *inner),
        Value::Tag(tag, _) => return Err(malformed(format!("unexpected CBOR tag {tag}"))),
        other => (false, other),
    };
    let Value::Array(items) = inner else {
        return Err(malformed("envelope is not an array"));
    };
    let [protected, unprotected, payload, signature] =
        <[Value; 4]>::try_from(items).map_err(|_| malformed("envelope is not 4 items"))?;
    let Value::Bytes(protected) = protected else {
        return Err(malformed("protected header is not a byte string"));
    };
    let payload = match payload {
        Value::Bytes(b) => b,
        Value::Null => return Err(malformed("payload is nil (detached)")),
        _ => return Err(malformed("payload is not a byte string")),
    };
    let Value::Bytes(signature) = signature else {
        return Err(malformed("signature is not a byte string"));
    };
    Ok(Decoded {
        parts: CoseParts {
            protected,
            payload,
            signature,
        },
        tagged,
        unprotected,
    })
}

/// Why a protected header other than the NSM's bytes is refused: the same header in
/// another encoding, or another header.
fn protected_header_error(protected: &[u8]) -> NitroError {
    let mut rest = protected;
    let es384 = Value::Map(vec![(
        Value::Integer(1.into()),
        Value::Integer((-35).into()),
    )]);
    match ciborium::from_reader::<Value, _>(&mut rest) {
        Ok(v) if rest.is_empty() && v == es384 => NitroError::NoncanonicalEncoding,
        _ => NitroError::UnsupportedAlgorithm,
    }
}

fn to_cbor(value: &Value) -> Result<Vec<u8>, NitroError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| malformed(format!("re-encoding: {e}")))?;
    Ok(out)
}

impl CoseParts {
    /// Splits a document in the NSM's encoding, refusing every other encoding of the same
    /// envelope (see the module documentation). Checks the envelope only, not the payload.
    pub fn from_nsm_bytes(bytes: &[u8]) -> Result<CoseParts, NitroError> {
        let decoded = decode(bytes)?;
        if decoded.tagged {
            return Err(NitroError::TaggedEnvelope);
        }
        match &decoded.unprotected {
            Value::Map(entries) if entries.is_empty() => {}
            Value::Map(_) => return Err(NitroError::UnprotectedHeader),
            _ => return Err(malformed("unprotected header is not a map")),
        }
        let parts = decoded.parts;
        if parts.protected != NSM_PROTECTED_HEADER {
            return Err(protected_header_error(&parts.protected));
        }
        if parts.signature.len() != SIGNATURE_LEN {
            return Err(malformed("signature must be 96 bytes (raw r || s)"));
        }
        if parts.payload.len() > MAX_PAYLOAD_LEN {
            return Err(NitroError::PayloadTooLarge(parts.payload.len()));
        }
        if parts.encode()? != bytes {
            return Err(NitroError::NoncanonicalEncoding);
        }
        Ok(parts)
    }

    /// Splits any COSE_Sign1 encoding (tagged or not, any unprotected header, any CBOR
    /// lengths) into its parts. Checks nothing else: for identifying a copy, never for
    /// accepting one.
    pub fn from_any_encoding(bytes: &[u8]) -> Result<CoseParts, NitroError> {
        decode(bytes).map(|d| d.parts)
    }

    /// The NSM's encoding of these parts: an untagged definite array, the empty
    /// unprotected map and minimal definite lengths.
    pub fn encode(&self) -> Result<Vec<u8>, NitroError> {
        to_cbor(&Value::Array(vec![
            Value::Bytes(self.protected.clone()),
            Value::Map(Vec::new()),
            Value::Bytes(self.payload.clone()),
            Value::Bytes(self.signature.clone()),
        ]))
    }

    /// The bytes the signature covers: CBOR ["Signature1", protected, h'', payload]
    /// (RFC 9052 section 4.4), from the protected header and payload as received.
    pub fn to_be_signed(&self) -> Result<Vec<u8>, NitroError> {
        to_cbor(&Value::Array(vec![
            Value::Text("Signature1".into()),
            Value::Bytes(self.protected.clone()),
            Value::Bytes(Vec::new()),
            Value::Bytes(self.payload.clone()),
        ]))
    }
}
