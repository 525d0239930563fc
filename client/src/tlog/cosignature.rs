//! Ed25519 witness cosignatures, c2sp.org/tlog-cosignature "cosignature/v1".
//!
//! - Key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4].
//! - Note signature bytes = key ID || timestamped_signature, where
//!   timestamped_signature = u64 big-endian POSIX seconds (at most 2^63-1) ||
//!   64-byte Ed25519 signature.
//! - Signed message = "cosignature/v1\ntime <seconds>\n" || whole checkpoint
//!   body (including extension lines and the final newline).
//!
//! `signed_note` only knows Ed25519 type 0x01, so the verifier here
//! implements its `Verifier` trait (the verifier sees the bytes after the key
//! ID) and the note rules (unknown ignored, known-but-bad rejects) come from
//! the crate. Key texts are parsed here: verifier keys are the spec's vkey
//! "name+hexid+base64(0x04||pub)"; the private key text follows Go's note
//! signer format with type 0x04: "PRIVATE+KEY+name+hexid+base64(0x04||seed)"
//! (a project convention; the spec defines no private key encoding).

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rand_core::OsRng;

use super::b64;
use super::checkpoint::Checkpoint;
use super::note::{is_valid_name, signature_line};
pub use super::CosignatureError;

/// Signature type byte of Ed25519 cosignature/v1.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Largest timestamp allowed by the spec.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut key = vec![ALG_COSIGNATURE_V1];
    key.extend_from_slice(public);
    signed_note::key_id(name, &key)
}

/// The exact bytes an Ed25519 cosigner signs.
fn signed_message(body: &[u8], timestamp: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    msg.extend_from_slice(body);
    msg
}

/// Parses "name+hexid+base64(0x04||key)" where `key` has 32 bytes: shared by
/// the verifier key (key = public key) and private key (key = seed) texts.
/// Splits on the first two '+' only, as base64 may contain '+'.
fn parse_key_parts(text: &str) -> Option<(&str, u32, [u8; 32])> {
    let mut parts = text.splitn(3, '+');
    let (name, id16, key64) = (parts.next()?, parts.next()?, parts.next()?);
    if id16.len() != 8 || !id16.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u32::from_str_radix(id16, 16).ok()?;
    let raw = b64().decode(key64).ok()?;
    if raw.first() != Some(&ALG_COSIGNATURE_V1) {
        return None;
    }
    let key: [u8; 32] = raw.get(1..)?.try_into().ok()?;
    Some((name, id, key))
}

/// Better error for a key text that failed `parse_key_parts`.
fn diagnose(text: &str, malformed: CosignatureError) -> CosignatureError {
    let alg = text
        .splitn(3, '+')
        .nth(2)
        .and_then(|k| b64().decode(k).ok())
        .and_then(|k| k.first().copied());
    match alg {
        Some(a) if a != ALG_COSIGNATURE_V1 => CosignatureError::UnsupportedKeyType(a),
        _ => malformed,
    }
}

/// A witness (cosigner) Ed25519 key.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignatureSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl CosignatureSigner {
    /// A fresh random key.
    pub fn generate(name: &str) -> Result<Self, CosignatureError> {
        Self::from_seed(name, SigningKey::generate(&mut OsRng).to_bytes())
    }

    /// The key with the given 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CosignatureError> {
        if !is_valid_name(name) {
            return Err(CosignatureError::InvalidKeyName);
        }
        let key = SigningKey::from_bytes(&seed);
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses "PRIVATE+KEY+name+hexid+base64(0x04||seed)".
    pub fn from_private_key_text(text: &str) -> Result<Self, CosignatureError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CosignatureError::MalformedSignerKey)?;
        let (name, id, seed) = parse_key_parts(rest)
            .ok_or_else(|| diagnose(rest, CosignatureError::MalformedSignerKey))?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(CosignatureError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// Secret key text.
    pub fn private_key_text(&self) -> String {
        let mut key = vec![ALG_COSIGNATURE_V1];
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            b64().encode(key)
        )
    }

    /// "name+hexid+base64(0x04||pub)".
    pub fn verifier_key_text(&self) -> String {
        self.verifier_key().to_text()
    }

    /// The verifier key for this cosigner.
    pub fn verifier_key(&self) -> CosignatureVerifierKey {
        CosignatureVerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cosigns a checkpoint body (the note text, not the signed note) at
    /// `timestamp` (POSIX seconds) and returns the note signature line
    /// "— name base64(keyID || timestamp || sig)\n" to append to the note.
    pub fn cosign(
        &self,
        checkpoint_body: &str,
        timestamp: u64,
    ) -> Result<String, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampOutOfRange(timestamp));
        }
        Checkpoint::parse_body(checkpoint_body).map_err(CosignatureError::InvalidCheckpoint)?;
        let sig = self
            .key
            .sign(&signed_message(checkpoint_body.as_bytes(), timestamp));
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(signature_line(&self.name, self.key_id, &bytes))
    }
}

/// A trusted witness verifier key (type 0x04).
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifierKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl std::fmt::Debug for CosignatureVerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignatureVerifierKey({})", self.to_text())
    }
}

impl CosignatureVerifierKey {
    /// Parses "name+hexid+base64(0x04||pub)"; the key ID must match.
    pub fn parse(text: &str) -> Result<Self, CosignatureError> {
        let (name, id, public) = parse_key_parts(text)
            .ok_or_else(|| diagnose(text, CosignatureError::MalformedVerifierKey))?;
        if !is_valid_name(name) {
            return Err(CosignatureError::InvalidKeyName);
        }
        if key_id(name, &public) != id {
            return Err(CosignatureError::KeyIdMismatch);
        }
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| CosignatureError::MalformedVerifierKey)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            key,
        })
    }

    /// Witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID (type 0x04).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Canonical verifier key text.
    pub fn to_text(&self) -> String {
        let mut key = vec![ALG_COSIGNATURE_V1];
        key.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, b64().encode(key))
    }
}

/// Timestamp of a cosignature's signature bytes (after the key ID).
pub(crate) fn timestamp_of(sig: &[u8]) -> Option<u64> {
    let ts: [u8; 8] = sig.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(ts))
}

impl signed_note::Verifier for CosignatureVerifierKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    /// `msg` is the checkpoint body; `sig` is timestamp || Ed25519 signature.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 8 + 64 {
            return false;
        }
        let (Some(ts), Some(raw)) = (timestamp_of(sig), sig.get(8..)) else {
            return false;
        };
        if ts > MAX_TIMESTAMP {
            return false;
        }
        let Ok(signature) = ed25519_dalek::Signature::from_slice(raw) else {
            return false;
        };
        self.key
            .verify(&signed_message(msg, ts), &signature)
            .is_ok()
    }
}
