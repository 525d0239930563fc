//! Witness cosignatures, c2sp.org/tlog-cosignature: Ed25519 "cosignature/v1"
//! (signature type 0x04) and ML-DSA-44 "subtree/v1" (signature type 0x06).
//!
//! Both:
//! - Key ID = `SHA-256(name || 0x0A || type || public key)[:4]`.
//! - Note signature bytes = key ID || timestamped_signature, where
//!   timestamped_signature = u64 big-endian POSIX seconds (at most 2^63-1) ||
//!   signature (64 bytes Ed25519, 2420 bytes ML-DSA-44).
//!
//! Ed25519 (0x04): the signed message is
//! `"cosignature/v1\ntime <seconds>\n"` || whole checkpoint body (including
//! extension lines and the final newline).
//!
//! ML-DSA-44 (0x06, FIPS 204 pure ML-DSA, empty context string, hedged
//! signing): the signed message is the `cosigned_message` structure
//! "subtree/v1\n\0" || u8 len || cosigner name || u64 timestamp || u8 len ||
//! origin || u64 start (0 for a checkpoint) || u64 end (the tree size) ||
//! 32-byte root hash. Extension lines are not covered. Names and origins must
//! be 1 to 255 bytes. A checkpoint cosignature with timestamp 0 is refused
//! (tlog-witness requires a non-zero timestamp, and the verifier counts a
//! cosignature as "this was the latest tree at that time"). Public keys are
//! exactly 1312 raw bytes (never DER).
//!
//! `signed_note` knows only Ed25519 type 0x01, so [`CosignatureVerifierKey`]
//! implements its `Verifier` trait (the verifier sees the checkpoint body and
//! the bytes after the key ID), and the note rules (unknown ignored,
//! known-but-bad rejects) come from the crate. Verifier keys are the spec's
//! vkeys "name+hexid+base64(type||key)". Private key texts follow Go's note
//! signer format with the cosignature type byte:
//! "PRIVATE+KEY+name+hexid+base64(type||32-byte seed)" (a project convention;
//! the spec defines no private key encoding). The ML-DSA-44 seed is FIPS
//! 204's ξ (ML-DSA.KeyGen_internal), so the same seed gives the same key in
//! any FIPS 204 implementation.

use std::sync::Arc;

use aws_lc_rs::signature::{
    KeyPair as _, PqdsaKeyPair, UnparsedPublicKey, ML_DSA_44, ML_DSA_44_SIGNING,
};
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rand_core::{OsRng, RngCore};

use super::b64;
use super::checkpoint::Checkpoint;
use super::note::{is_valid_name, signature_line};
pub use super::CosignatureError;

/// Signature type byte of Ed25519 cosignature/v1.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Signature type byte of ML-DSA-44 subtree/v1 cosignatures.
pub const ALG_MLDSA44: u8 = 0x06;

/// Largest timestamp allowed by the spec.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;
/// Length of an ML-DSA-44 public key (FIPS 204, table 2).
pub const MLDSA44_PUBLIC_KEY_LEN: usize = 1312;
/// Length of an ML-DSA-44 signature (FIPS 204, table 2).
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;
/// Length of an Ed25519 signature.
const ED25519_SIGNATURE_LEN: usize = 64;
/// Seed length of both key types (Ed25519 secret key, ML-DSA ξ).
const SEED_LEN: usize = 32;
/// Domain-separation label of the ML-DSA-44 `cosigned_message`.
const SUBTREE_LABEL: &[u8; 12] = b"subtree/v1\n\0";
/// The `opaque <1..2^8-1>` fields (cosigner name, origin) hold at most this
/// many bytes.
pub const MAX_MLDSA_FIELD: usize = 255;

/// Which cosignature algorithm a witness key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosignatureKind {
    /// Ed25519 cosignature/v1, type 0x04.
    Ed25519,
    /// ML-DSA-44 subtree/v1, type 0x06.
    MlDsa44,
}

impl CosignatureKind {
    /// The signature type byte.
    pub fn alg(self) -> u8 {
        match self {
            Self::Ed25519 => ALG_COSIGNATURE_V1,
            Self::MlDsa44 => ALG_MLDSA44,
        }
    }

    fn from_alg(alg: u8) -> Option<Self> {
        match alg {
            ALG_COSIGNATURE_V1 => Some(Self::Ed25519),
            ALG_MLDSA44 => Some(Self::MlDsa44),
            _ => None,
        }
    }

    /// Parses "ed25519" or "mldsa44" (the `--key-type` values).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ed25519" => Some(Self::Ed25519),
            "mldsa44" | "ml-dsa-44" => Some(Self::MlDsa44),
            _ => None,
        }
    }
}

fn key_id(name: &str, alg: u8, public: &[u8]) -> u32 {
    let mut key = vec![alg];
    key.extend_from_slice(public);
    signed_note::key_id(name, &key)
}

/// The exact bytes an Ed25519 cosigner signs.
fn ed25519_message(body: &[u8], timestamp: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    msg.extend_from_slice(body);
    msg
}

/// The ML-DSA-44 `cosigned_message` for a whole checkpoint (start 0); `None`
/// when the name or origin does not fit its 1..255-byte field.
fn mldsa_message(cosigner: &str, timestamp: u64, checkpoint: &Checkpoint) -> Option<Vec<u8>> {
    let opaque8 = |out: &mut Vec<u8>, field: &str| -> Option<()> {
        let len = u8::try_from(field.len()).ok().filter(|l| *l > 0)?;
        out.push(len);
        out.extend_from_slice(field.as_bytes());
        Some(())
    };
    let mut msg = Vec::with_capacity(12 + 2 * (1 + MAX_MLDSA_FIELD) + 3 * 8 + 32);
    msg.extend_from_slice(SUBTREE_LABEL);
    opaque8(&mut msg, cosigner)?;
    msg.extend_from_slice(&timestamp.to_be_bytes());
    opaque8(&mut msg, &checkpoint.origin)?;
    msg.extend_from_slice(&0u64.to_be_bytes());
    msg.extend_from_slice(&checkpoint.size.to_be_bytes());
    msg.extend_from_slice(&checkpoint.root_hash);
    Some(msg)
}

/// Parses "name+hexid+base64(type||key)" where type is 0x04 (32-byte key) or
/// 0x06 (`mldsa_len`-byte key): shared by verifier keys (key = public key,
/// 1312 bytes for ML-DSA) and private keys (key = 32-byte seed). Splits on
/// the first two '+' only, as base64 may contain '+'.
fn parse_key_parts(text: &str, mldsa_len: usize) -> Option<(&str, u32, CosignatureKind, Vec<u8>)> {
    let mut parts = text.splitn(3, '+');
    let (name, id16, key64) = (parts.next()?, parts.next()?, parts.next()?);
    if id16.len() != 8 || !id16.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let id = u32::from_str_radix(id16, 16).ok()?;
    let raw = b64().decode(key64).ok()?;
    let kind = CosignatureKind::from_alg(*raw.first()?)?;
    let key = raw.get(1..)?.to_vec();
    let want = match kind {
        CosignatureKind::Ed25519 => SEED_LEN,
        CosignatureKind::MlDsa44 => mldsa_len,
    };
    (key.len() == want).then_some((name, id, kind, key))
}

/// Better error for a key text that failed `parse_key_parts`.
fn diagnose(text: &str, malformed: CosignatureError) -> CosignatureError {
    let alg = text
        .splitn(3, '+')
        .nth(2)
        .and_then(|k| b64().decode(k).ok())
        .and_then(|k| k.first().copied());
    match alg {
        Some(a) if CosignatureKind::from_alg(a).is_none() => {
            CosignatureError::UnsupportedKeyType(a)
        }
        _ => malformed,
    }
}

/// Key names must satisfy signed-note, and for ML-DSA-44 fit the message's
/// one-byte length.
fn check_name(name: &str, kind: CosignatureKind) -> Result<(), CosignatureError> {
    if !is_valid_name(name) || (kind == CosignatureKind::MlDsa44 && name.len() > MAX_MLDSA_FIELD) {
        return Err(CosignatureError::InvalidKeyName);
    }
    Ok(())
}

#[derive(Clone)]
enum Secret {
    Ed25519(SigningKey),
    MlDsa44 {
        seed: [u8; SEED_LEN],
        pair: Arc<PqdsaKeyPair>,
    },
}

/// A witness (cosigner) key, Ed25519 or ML-DSA-44.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    key_id: u32,
    secret: Secret,
}

impl std::fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignatureSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl CosignatureSigner {
    /// A fresh random Ed25519 key.
    pub fn generate(name: &str) -> Result<Self, CosignatureError> {
        Self::generate_kind(name, CosignatureKind::Ed25519)
    }

    /// A fresh random key of the given kind.
    pub fn generate_kind(name: &str, kind: CosignatureKind) -> Result<Self, CosignatureError> {
        let mut seed = [0u8; SEED_LEN];
        OsRng.fill_bytes(&mut seed);
        Self::from_seed_kind(name, kind, seed)
    }

    /// The Ed25519 key with the given 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CosignatureError> {
        Self::from_seed_kind(name, CosignatureKind::Ed25519, seed)
    }

    /// The key of `kind` with the given 32-byte seed (for ML-DSA-44, ξ).
    pub fn from_seed_kind(
        name: &str,
        kind: CosignatureKind,
        seed: [u8; 32],
    ) -> Result<Self, CosignatureError> {
        check_name(name, kind)?;
        let (secret, public) = match kind {
            CosignatureKind::Ed25519 => {
                let key = SigningKey::from_bytes(&seed);
                let public = key.verifying_key().as_bytes().to_vec();
                (Secret::Ed25519(key), public)
            }
            CosignatureKind::MlDsa44 => {
                let pair = PqdsaKeyPair::from_seed(&ML_DSA_44_SIGNING, &seed)
                    .map_err(|_| CosignatureError::MalformedSignerKey)?;
                let public = pair.public_key().as_ref().to_vec();
                (
                    Secret::MlDsa44 {
                        seed,
                        pair: Arc::new(pair),
                    },
                    public,
                )
            }
        };
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, kind.alg(), &public),
            secret,
        })
    }

    /// Parses "PRIVATE+KEY+name+hexid+base64(type||seed)", type 0x04 or 0x06.
    pub fn from_private_key_text(text: &str) -> Result<Self, CosignatureError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(CosignatureError::MalformedSignerKey)?;
        let (name, id, kind, seed) = parse_key_parts(rest, SEED_LEN)
            .ok_or_else(|| diagnose(rest, CosignatureError::MalformedSignerKey))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| CosignatureError::MalformedSignerKey)?;
        let signer = Self::from_seed_kind(name, kind, seed)?;
        if signer.key_id != id {
            return Err(CosignatureError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The key's algorithm.
    pub fn kind(&self) -> CosignatureKind {
        match self.secret {
            Secret::Ed25519(_) => CosignatureKind::Ed25519,
            Secret::MlDsa44 { .. } => CosignatureKind::MlDsa44,
        }
    }

    /// Secret key text.
    pub fn private_key_text(&self) -> String {
        let mut key = vec![self.kind().alg()];
        match &self.secret {
            Secret::Ed25519(k) => key.extend_from_slice(k.as_bytes()),
            Secret::MlDsa44 { seed, .. } => key.extend_from_slice(seed),
        }
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            b64().encode(key)
        )
    }

    /// "name+hexid+base64(type||pub)".
    pub fn verifier_key_text(&self) -> String {
        self.verifier_key().to_text()
    }

    /// The verifier key for this cosigner.
    pub fn verifier_key(&self) -> CosignatureVerifierKey {
        let public = match &self.secret {
            Secret::Ed25519(k) => Public::Ed25519(k.verifying_key()),
            Secret::MlDsa44 { pair, .. } => Public::MlDsa44(pair.public_key().as_ref().to_vec()),
        };
        CosignatureVerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            public,
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
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
        let checkpoint =
            Checkpoint::parse_body(checkpoint_body).map_err(CosignatureError::InvalidCheckpoint)?;
        let sig = match &self.secret {
            Secret::Ed25519(key) => key
                .sign(&ed25519_message(checkpoint_body.as_bytes(), timestamp))
                .to_bytes()
                .to_vec(),
            Secret::MlDsa44 { pair, .. } => {
                if timestamp == 0 {
                    return Err(CosignatureError::TimestampOutOfRange(timestamp));
                }
                let msg = mldsa_message(&self.name, timestamp, &checkpoint)
                    .ok_or(CosignatureError::OriginTooLong)?;
                let mut sig = vec![0u8; MLDSA44_SIGNATURE_LEN];
                pair.sign(&msg, &mut sig)
                    .map_err(|_| CosignatureError::SigningFailed)?;
                sig
            }
        };
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig);
        Ok(signature_line(&self.name, self.key_id, &bytes))
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Public {
    Ed25519(VerifyingKey),
    /// Exactly [`MLDSA44_PUBLIC_KEY_LEN`] raw bytes.
    MlDsa44(Vec<u8>),
}

/// A trusted witness verifier key (type 0x04 or 0x06).
#[derive(Clone, PartialEq, Eq)]
pub struct CosignatureVerifierKey {
    name: String,
    key_id: u32,
    public: Public,
}

impl std::fmt::Debug for CosignatureVerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CosignatureVerifierKey({}+{:08x})",
            self.name, self.key_id
        )
    }
}

impl CosignatureVerifierKey {
    /// Parses "name+hexid+base64(type||pub)"; the key ID must match.
    pub fn parse(text: &str) -> Result<Self, CosignatureError> {
        let (name, id, kind, raw) = parse_key_parts(text, MLDSA44_PUBLIC_KEY_LEN)
            .ok_or_else(|| diagnose(text, CosignatureError::MalformedVerifierKey))?;
        check_name(name, kind)?;
        if key_id(name, kind.alg(), &raw) != id {
            return Err(CosignatureError::KeyIdMismatch);
        }
        let public = match kind {
            CosignatureKind::Ed25519 => {
                let bytes: [u8; 32] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| CosignatureError::MalformedVerifierKey)?;
                Public::Ed25519(
                    VerifyingKey::from_bytes(&bytes)
                        .map_err(|_| CosignatureError::MalformedVerifierKey)?,
                )
            }
            CosignatureKind::MlDsa44 => Public::MlDsa44(raw),
        };
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            public,
        })
    }

    /// Witness name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The key's algorithm.
    pub fn kind(&self) -> CosignatureKind {
        match self.public {
            Public::Ed25519(_) => CosignatureKind::Ed25519,
            Public::MlDsa44(_) => CosignatureKind::MlDsa44,
        }
    }

    /// Canonical verifier key text.
    pub fn to_text(&self) -> String {
        let mut key = vec![self.kind().alg()];
        match &self.public {
            Public::Ed25519(k) => key.extend_from_slice(k.as_bytes()),
            Public::MlDsa44(k) => key.extend_from_slice(k),
        }
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
    /// `msg` is the checkpoint body; `sig` is timestamp || signature.
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let (Some(ts), Some(raw)) = (timestamp_of(sig), sig.get(8..)) else {
            return false;
        };
        if ts > MAX_TIMESTAMP {
            return false;
        }
        match &self.public {
            Public::Ed25519(key) => {
                if raw.len() != ED25519_SIGNATURE_LEN {
                    return false;
                }
                let Ok(signature) = ed25519_dalek::Signature::from_slice(raw) else {
                    return false;
                };
                key.verify(&ed25519_message(msg, ts), &signature).is_ok()
            }
            Public::MlDsa44(key) => {
                if raw.len() != MLDSA44_SIGNATURE_LEN || ts == 0 {
                    return false;
                }
                let Some(checkpoint) = std::str::from_utf8(msg)
                    .ok()
                    .and_then(|t| Checkpoint::parse_body(t).ok())
                else {
                    return false;
                };
                let Some(message) = mldsa_message(&self.name, ts, &checkpoint) else {
                    return false;
                };
                UnparsedPublicKey::new(&ML_DSA_44, key)
                    .verify(&message, raw)
                    .is_ok()
            }
        }
    }
}
