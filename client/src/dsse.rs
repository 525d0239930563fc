//! DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1) for the
//! statement, so in-toto tooling can authenticate it without reading Nitro
//! documents.
//!
//! Contract (`spec/entry.md`, "The DSSE envelope", is normative):
//! - The enclave signs the exact statement bytes of the entry with a fresh
//!   Ed25519 key per build ([`StatementSigner`]), with payloadType
//!   [`PAYLOAD_TYPE`]. The key's public half is the attestation's
//!   `public_key`, as a DER SubjectPublicKeyInfo (44 bytes), so the Nitro
//!   document vouches for it; the private half never leaves the signer and
//!   is zeroized when it is dropped.
//! - A signature is Ed25519 (RFC 8032, checked strictly) over
//!   `PAE(payloadType, payload)`. The `keyid` is securesystemslib's default
//!   keyid of the key ([`keyid`]); it is an unauthenticated hint and never
//!   decides anything here.
//! - [`Envelope::parse`] takes attacker bytes: bounded in size, in signature
//!   count and in every field, it never panics. Unknown fields are ignored,
//!   as the DSSE envelope spec requires of consumers.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The payloadType of every envelope attestlog writes and accepts: an
/// in-toto Statement, as in-toto's own tools expect it.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The largest payload accepted: the entry framing limits a statement to a
/// 16-bit length, so no genuine payload is longer.
pub const MAX_PAYLOAD_SIZE: usize = u16::MAX as usize;

/// The largest envelope JSON [`Envelope::parse`] reads: the base64 of the
/// largest payload (87,380 bytes) plus signatures and room for ignored
/// fields. Anything larger is refused unread.
pub const MAX_ENVELOPE_SIZE: usize = 128 * 1024;

/// The most signatures an envelope may carry. attestlog writes one; DSSE
/// allows several (each is checked), but checking is bounded.
pub const MAX_SIGNATURES: usize = 8;

/// The longest `keyid` or `payloadType` accepted, in bytes. attestlog's are
/// 64 and 28 bytes; the bound only keeps attacker input small.
pub const MAX_FIELD_LEN: usize = 256;

/// The longest signature accepted, in bytes (Ed25519's is 64; a longer one
/// can only fail, so it is refused without being decoded further).
pub const MAX_SIGNATURE_LEN: usize = 512;

/// Why an envelope was refused. Each variant names one check.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("the envelope is malformed: {0}")]
    Malformed(String),
    #[error("payloadType is {0:?}, expected {PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error("the envelope's payload is not the entry's statement bytes")]
    PayloadMismatch,
    #[error("the attestation's public_key is not usable: {0}")]
    Key(String),
    #[error("no signature in the envelope verifies under the attested public_key")]
    Signature,
}

impl DsseError {
    /// A stable, machine-readable name for the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            DsseError::Malformed(_) => "dsse_malformed",
            DsseError::PayloadType(_) => "dsse_payload_type",
            DsseError::PayloadMismatch => "dsse_payload_mismatch",
            DsseError::Key(_) => "dsse_key",
            DsseError::Signature => "dsse_signature",
        }
    }
}

/// One DSSE signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Unauthenticated hint; empty when unset.
    pub keyid: String,
    pub sig: Vec<u8>,
}

/// A decoded DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub payload: Vec<u8>,
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// The JSON envelope as written (base64 fields). Unknown fields are ignored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvelopeJson {
    payload: String,
    payload_type: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SignatureJson {
    #[serde(default)]
    keyid: String,
    sig: String,
}

fn malformed(message: impl ToString) -> DsseError {
    DsseError::Malformed(message.to_string())
}

/// Decodes standard or URL-safe base64, padded or not (DSSE allows both
/// alphabets; RFC 4648 padding is optional here because the alphabets are
/// told apart by their characters, never by padding).
fn decode_base64(field: &str, text: &str, limit: usize) -> Result<Vec<u8>, DsseError> {
    if text.len() > limit.div_ceil(3) * 4 {
        return Err(malformed(format!("{field} is longer than {limit} bytes")));
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let alphabet = if text.contains(['-', '_']) {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    GeneralPurpose::new(alphabet, config)
        .decode(text.as_bytes())
        .map_err(|_| malformed(format!("{field} is not valid base64")))
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal without leading zeros.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// securesystemslib's default keyid of an Ed25519 key: the lowercase hex
/// SHA-256 of the canonical JSON
/// `{"keytype":"ed25519","keyval":{"public":"<hex>"},"scheme":"ed25519"}`.
/// in-toto and TUF compute the same, so their tools select the key by it.
pub fn keyid(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
        hex::encode(key.as_bytes())
    );
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Reads the attestation's `public_key`: exactly the DER
/// SubjectPublicKeyInfo of an Ed25519 key (RFC 8410), nothing else.
pub fn public_key_from_spki(der: &[u8]) -> Result<VerifyingKey, DsseError> {
    let key = VerifyingKey::from_public_key_der(der)
        .map_err(|e| DsseError::Key(format!("not an Ed25519 SubjectPublicKeyInfo: {e}")))?;
    // DER is unique, but insist: only the one encoding of the key is taken.
    if spki_der(&key)?.as_slice() != der {
        return Err(DsseError::Key("not the DER encoding of the key".into()));
    }
    Ok(key)
}

fn spki_der(key: &VerifyingKey) -> Result<Vec<u8>, DsseError> {
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| DsseError::Key(e.to_string()))
}

/// The SubjectPublicKeyInfo DER as PEM (`-----BEGIN PUBLIC KEY-----`), the
/// form pyca/cryptography, securesystemslib and in-toto load.
pub fn public_key_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

impl Envelope {
    /// Parses a JSON envelope from attacker bytes (see the module contract).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, DsseError> {
        if bytes.len() > MAX_ENVELOPE_SIZE {
            return Err(malformed(format!("larger than {MAX_ENVELOPE_SIZE} bytes")));
        }
        let json: EnvelopeJson = serde_json::from_slice(bytes).map_err(malformed)?;
        Envelope::from_json(json)
    }

    /// Decodes and bounds an already-parsed JSON envelope.
    pub(crate) fn from_json(json: EnvelopeJson) -> Result<Envelope, DsseError> {
        if json.payload_type.len() > MAX_FIELD_LEN {
            return Err(malformed("payloadType is too long"));
        }
        if json.signatures.is_empty() || json.signatures.len() > MAX_SIGNATURES {
            return Err(malformed(format!(
                "{} signatures; 1 to {MAX_SIGNATURES} are accepted",
                json.signatures.len()
            )));
        }
        let payload = decode_base64("payload", &json.payload, MAX_PAYLOAD_SIZE)?;
        let signatures = json
            .signatures
            .into_iter()
            .map(|s| {
                if s.keyid.len() > MAX_FIELD_LEN {
                    return Err(malformed("keyid is too long"));
                }
                Ok(Signature {
                    sig: decode_base64("sig", &s.sig, MAX_SIGNATURE_LEN)?,
                    keyid: s.keyid,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Envelope {
            payload,
            payload_type: json.payload_type,
            signatures,
        })
    }

    /// The JSON form: standard padded base64, fields in DSSE's order.
    pub(crate) fn to_json_struct(&self) -> EnvelopeJson {
        EnvelopeJson {
            payload: STANDARD.encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| SignatureJson {
                    keyid: s.keyid.clone(),
                    sig: STANDARD.encode(&s.sig),
                })
                .collect(),
        }
    }

    /// The envelope as compact JSON, as DSSE tools read it.
    pub fn to_json(&self) -> String {
        // Serializing plain strings cannot fail.
        serde_json::to_string(&self.to_json_struct()).unwrap_or_default()
    }

    /// The envelope carries `statement`: payloadType is [`PAYLOAD_TYPE`]
    /// (`dsse_payload_type`) and the payload is exactly the statement bytes
    /// (`dsse_payload_mismatch`).
    pub fn check_statement(&self, statement: &[u8]) -> Result<(), DsseError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(DsseError::PayloadType(self.payload_type.clone()));
        }
        if self.payload != statement {
            return Err(DsseError::PayloadMismatch);
        }
        Ok(())
    }

    /// Some signature verifies under `public_key_der`, the attestation's
    /// `public_key` (`dsse_key` when it is absent or not an Ed25519 key,
    /// `dsse_signature` when none verifies). Returns the key's keyid.
    pub fn verify(&self, public_key_der: Option<&[u8]>) -> Result<String, DsseError> {
        let der =
            public_key_der.ok_or_else(|| DsseError::Key("the attestation has none".into()))?;
        let key = public_key_from_spki(der)?;
        let message = pae(&self.payload_type, &self.payload);
        let verified = self.signatures.iter().any(|s| {
            ed25519_dalek::Signature::from_slice(&s.sig)
                .is_ok_and(|sig| key.verify_strict(&message, &sig).is_ok())
        });
        if !verified {
            return Err(DsseError::Signature);
        }
        Ok(keyid(&key))
    }
}

/// The enclave's per-build signing key. It is generated in memory, only its
/// public half is ever exported, and [`StatementSigner::sign_statement`]
/// consumes it, so one key signs exactly one statement and is zeroized
/// right after.
pub struct StatementSigner {
    key: SigningKey,
}

impl StatementSigner {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> StatementSigner {
        StatementSigner {
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// The public key as the attestation carries it: DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Result<Vec<u8>, DsseError> {
        spki_der(&self.key.verifying_key())
    }

    /// Signs `statement` as an in-toto DSSE envelope and drops the key.
    pub fn sign_statement(self, statement: &[u8]) -> Envelope {
        let signature = self.key.sign(&pae(PAYLOAD_TYPE, statement));
        Envelope {
            payload: statement.to_vec(),
            payload_type: PAYLOAD_TYPE.to_string(),
            signatures: vec![Signature {
                keyid: keyid(&self.key.verifying_key()),
                sig: signature.to_bytes().to_vec(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_protocol_text() {
        // protocol.md's worked example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn signed_statement_round_trips_and_verifies() {
        let signer = StatementSigner::generate();
        let der = signer.public_key_der().unwrap();
        assert_eq!(der.len(), 44);
        let env = signer.sign_statement(b"{\"a\":1}");
        let parsed = Envelope::parse(env.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, env);
        parsed.check_statement(b"{\"a\":1}").unwrap();
        let key = public_key_from_spki(&der).unwrap();
        assert_eq!(parsed.verify(Some(&der)).unwrap(), keyid(&key));
        assert_eq!(parsed.signatures[0].keyid, keyid(&key));
    }

    #[test]
    fn every_changed_part_fails_its_check() {
        let signer = StatementSigner::generate();
        let der = signer.public_key_der().unwrap();
        let env = signer.sign_statement(b"statement");
        let code = |e: Result<String, DsseError>| e.unwrap_err().code();

        let mut payload = env.clone();
        payload.payload[0] ^= 1;
        assert_eq!(
            payload.check_statement(b"statement").unwrap_err().code(),
            "dsse_payload_mismatch"
        );
        assert_eq!(code(payload.verify(Some(&der))), "dsse_signature");

        let mut ty = env.clone();
        ty.payload_type = "application/vnd.in-toto+JSON".into();
        assert_eq!(
            ty.check_statement(b"statement").unwrap_err().code(),
            "dsse_payload_type"
        );
        assert_eq!(code(ty.verify(Some(&der))), "dsse_signature");

        let mut sig = env.clone();
        sig.signatures[0].sig[10] ^= 1;
        assert_eq!(code(sig.verify(Some(&der))), "dsse_signature");

        // The keyid is a hint only: changing it changes nothing here.
        let mut hint = env.clone();
        hint.signatures[0].keyid = "other".into();
        assert!(hint.verify(Some(&der)).is_ok());

        let other = StatementSigner::generate().public_key_der().unwrap();
        assert_eq!(code(env.verify(Some(&other))), "dsse_signature");
        assert_eq!(code(env.verify(None)), "dsse_key");
        assert_eq!(code(env.verify(Some(&der[1..]))), "dsse_key");
        let mut long = der.clone();
        long.push(0);
        assert_eq!(code(env.verify(Some(&long))), "dsse_key");
    }
}
