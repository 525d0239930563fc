//! C2SP signed-note (c2sp.org/signed-note) with Ed25519 keys (type 0x01).
//!
//! Built on `signed_note` 0.2, a faithful port of Go's `sumdb/note`, after
//! checking it against the spec: notes must be UTF-8 without control
//! characters other than newline; the text is split from the signatures at
//! the last blank line; signature lines are "— name base64(keyID||sig)";
//! names are non-empty without Unicode spaces or '+'; at most 100 signatures
//! (the spec requires accepting at least 16); signatures by unknown keys are
//! ignored, a known key whose signature fails rejects the note, and at least
//! one known signature must verify. A repeated signature by the same known key
//! is skipped after the first, as in Go. Its base64 decoder is canonical
//! (padding and trailing bits), so re-encoding a parsed note is byte-exact.
//!
//! What is written here: keeping the key material for the private key text,
//! enumerating signature lines (the crate's `Note` does not expose them), and
//! error mapping.

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use rand_core::OsRng;
use signed_note::{Note, Signature, StandardSigner, StandardVerifier, VerifierList};

use super::b64;
pub use super::NoteError;

/// Signature type byte of Ed25519 note signatures.
pub(crate) const ALG_ED25519: u8 = 0x01;
/// Largest number of signature lines accepted (Go's limit).
pub const MAX_SIGNATURES: usize = 100;

/// Key-name rule of the signed-note spec.
pub(crate) fn is_valid_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

/// An Ed25519 signed-note signer.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteSigner({}+{:08x})", self.name, self.key_id)
    }
}

impl signed_note::Signer for NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

impl NoteSigner {
    /// A fresh random key for `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        Self::from_seed(name, SigningKey::generate(&mut OsRng).to_bytes())
    }

    /// The key with the given 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidKeyName);
        }
        let key = SigningKey::from_bytes(&seed);
        let mut pubkey = vec![ALG_ED25519];
        pubkey.extend_from_slice(key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key_id: signed_note::key_id(name, &pubkey),
            key,
        })
    }

    /// Parses Go's "PRIVATE+KEY+name+hexid+base64(0x01||seed)"; the key ID
    /// must match the derived public key (checked by `signed_note`).
    pub fn from_private_key_text(text: &str) -> Result<Self, NoteError> {
        StandardSigner::new(text).map_err(|e| match e {
            signed_note::SignerError::Id => NoteError::KeyIdMismatch,
            _ => NoteError::MalformedSignerKey,
        })?;
        // Validated: PRIVATE, KEY, name, id, then base64 (which may hold '+').
        let mut parts = text.splitn(5, '+');
        let (Some(_), Some(_), Some(name), Some(_), Some(key64)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NoteError::MalformedSignerKey);
        };
        let key = b64()
            .decode(key64)
            .map_err(|_| NoteError::MalformedSignerKey)?;
        let seed: [u8; 32] = key
            .get(1..)
            .and_then(|s| s.try_into().ok())
            .ok_or(NoteError::MalformedSignerKey)?;
        Self::from_seed(name, seed)
    }

    /// Go's signer key text; secret.
    pub fn private_key_text(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            b64().encode(key)
        )
    }

    /// "name+hexid+base64(0x01||pub)".
    pub fn verifier_key_text(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.key.verifying_key())
    }

    /// The verifier key for this signer.
    pub fn verifier_key(&self) -> Result<NoteVerifierKey, NoteError> {
        NoteVerifierKey::parse(&self.verifier_key_text())
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Signs `text` (which must end in a newline) and returns the whole
    /// signed note: text, blank line, one signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        let mut note = Note::new(text.as_bytes(), &[]).map_err(|_| NoteError::InvalidText)?;
        note.add_sigs(&[self])
            .map_err(|_| NoteError::SigningFailed)?;
        String::from_utf8(note.to_bytes()).map_err(|_| NoteError::SigningFailed)
    }
}

/// A trusted Ed25519 note verifier key.
#[derive(Clone)]
pub struct NoteVerifierKey {
    inner: StandardVerifier,
    name: String,
    key_id: u32,
    key: Vec<u8>,
}

impl std::fmt::Debug for NoteVerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoteVerifierKey({})", self.to_text())
    }
}

impl PartialEq for NoteVerifierKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.key_id == other.key_id && self.key == other.key
    }
}
impl Eq for NoteVerifierKey {}

impl NoteVerifierKey {
    /// Parses "name+hexid+base64(0x01||pub)", splitting on the first two '+'
    /// only (base64 may contain '+'); the key ID must match.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let inner = StandardVerifier::new(text).map_err(|e| match e {
            signed_note::VerifierError::Id => NoteError::KeyIdMismatch,
            signed_note::VerifierError::Alg => {
                let alg = text
                    .splitn(3, '+')
                    .nth(2)
                    .and_then(|k| b64().decode(k).ok())
                    .and_then(|k| k.first().copied())
                    .unwrap_or(0);
                NoteError::UnsupportedKeyType(alg)
            }
            signed_note::VerifierError::Format => NoteError::MalformedVerifierKey,
        })?;
        let key = text
            .splitn(3, '+')
            .nth(2)
            .and_then(|k| b64().decode(k).ok())
            .ok_or(NoteError::MalformedVerifierKey)?;
        Ok(Self {
            name: signed_note::Verifier::name(&inner).to_owned(),
            key_id: signed_note::Verifier::key_id(&inner),
            inner,
            key,
        })
    }

    /// Key name (for a log, usually its origin: tlog-checkpoint makes that a
    /// SHOULD, so a checkpoint's origin may differ).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Canonical text: lowercase hex ID, canonical base64.
    pub fn to_text(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            b64().encode(&self.key)
        )
    }

    pub(crate) fn boxed(&self) -> Box<dyn signed_note::Verifier> {
        Box::new(self.inner.clone())
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// Signature bytes after the 4-byte key ID.
    pub signature: Vec<u8>,
}

/// A syntactically valid signed note. `parse` keeps every signature line, in
/// order, including duplicates and unknown keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The note text, including its final newline.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parses without verifying anything.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        let parsed = parse_note(note)?;
        let text = String::from_utf8(parsed.text().to_vec()).map_err(|_| NoteError::Malformed)?;
        // note == text + "\n" + signature lines (see Note::from_bytes).
        let block = note.get(text.len() + 1..).ok_or(NoteError::Malformed)?;
        let block = block.strip_suffix('\n').ok_or(NoteError::Malformed)?;
        let signatures = block
            .split('\n')
            .map(|line| Signature::from_bytes(line.as_bytes()).map(|s| to_sig(&s)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| NoteError::Malformed)?;
        Ok(Self { text, signatures })
    }

    /// The signed-note encoding; byte-exact inverse of `parse`.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.text);
        for s in &self.signatures {
            out.push_str(&signature_line(&s.name, s.key_id, &s.signature));
        }
        out
    }
}

/// "— name base64(keyID || sig)\n".
pub(crate) fn signature_line(name: &str, key_id: u32, sig: &[u8]) -> String {
    let mut bytes = key_id.to_be_bytes().to_vec();
    bytes.extend_from_slice(sig);
    format!("\u{2014} {} {}\n", name, b64().encode(bytes))
}

fn to_sig(s: &Signature) -> NoteSignature {
    NoteSignature {
        name: s.name().to_owned(),
        key_id: s.id(),
        signature: s.signature().to_vec(),
    }
}

/// Parses with `signed_note`, first counting signature lines so that a note
/// with more than 100 gets a precise error.
pub(crate) fn parse_note(note: &str) -> Result<Note, NoteError> {
    if let Some((_, sigs)) = note.rsplit_once("\n\n") {
        let count = sigs.matches('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count });
        }
    }
    Note::from_bytes(note.as_bytes()).map_err(|_| NoteError::Malformed)
}

/// Runs `signed_note`'s verification over `verifiers` and maps its errors.
/// Returns the signatures that verified (first per key, note order).
pub(crate) fn verify_parsed(
    note: &Note,
    verifiers: Vec<Box<dyn signed_note::Verifier>>,
) -> Result<Vec<NoteSignature>, NoteError> {
    let list = VerifierList::new(verifiers);
    // The crate reports an ambiguous key only if a matching line appears;
    // report it the same way.
    match note.verify(&list) {
        Ok((verified, _unknown)) => Ok(verified.iter().map(to_sig).collect()),
        Err(signed_note::NoteError::InvalidSignature { name, id }) => {
            Err(NoteError::InvalidSignature { name, key_id: id })
        }
        Err(signed_note::NoteError::UnverifiedNote) => Err(NoteError::NoKnownSignature),
        Err(signed_note::NoteError::VerificationError(
            signed_note::VerificationError::AmbiguousKey { name, id },
        )) => Err(NoteError::AmbiguousKey { name, key_id: id }),
        Err(_) => Err(NoteError::Malformed),
    }
}

/// Verifies `note` against trusted `keys` with the signed-note rules (see the
/// module doc). The returned note's `signatures` holds only the signatures
/// that verified; use [`SignedNote::parse`] to see every line.
pub fn verify_note(note: &str, keys: &[NoteVerifierKey]) -> Result<SignedNote, NoteError> {
    let parsed = parse_note(note)?;
    let mut unique: Vec<&NoteVerifierKey> = Vec::new();
    for k in keys {
        if !unique.contains(&k) {
            unique.push(k);
        }
    }
    let verifiers = unique.iter().map(|k| k.boxed()).collect();
    let signatures = verify_parsed(&parsed, verifiers)?;
    let text = String::from_utf8(parsed.text().to_vec()).map_err(|_| NoteError::Malformed)?;
    Ok(SignedNote { text, signatures })
}
