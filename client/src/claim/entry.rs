//! The log entry: the statement bytes and the attestation document that
//! commits to them, in one self-contained, deterministic encoding.
//!
//! ```text
//! entry = "ATL" 0x01                       magic and version
//!         u16be(len(statement)) statement  canonical JSON (see statement.rs)
//!         u16be(len(attestation)) attestation   COSE_Sign1 bytes as the NSM returned them
//! ```
//! Nothing may follow, and the whole entry is at most 65,535 bytes, the
//! C2SP entry-bundle limit. `spec/entry.md` is the normative text.
//!
//! # Claim identity
//! The attestation accepts only the NSM's envelope encoding, but its ECDSA signature is
//! malleable: (r, n - s) verifies wherever (r, s) does, and real documents carry high-S
//! signatures, so low-S cannot be required. [`claim_id`] therefore names a claim by
//! everything except the signature, and is the same for every entry anyone can derive from
//! one attestation; the log deduplicates on it.

use sha2::{Digest, Sha256, Sha384};

use super::{ClaimError, Statement};
use crate::nitro::{AttestationDocument, CoseParts, NitroVerifier, VerifyTime};

/// Magic and version byte that open every v1 entry.
pub const ENTRY_MAGIC: [u8; 4] = *b"ATL\x01";
/// The C2SP tlog-tiles entry-bundle limit.
pub const MAX_ENTRY_SIZE: usize = crate::tlog::tiles::MAX_ENTRY_LEN;
/// Domain separation for the statement hash carried in `user_data`.
pub const USER_DATA_DOMAIN: &[u8] = b"attestlog.dev/statement/v1\0";
/// Domain separation for [`claim_id`].
pub const CLAIM_ID_DOMAIN: &[u8] = b"attestlog.dev/claim/v1\0";

/// The identity of a claim: SHA-256 over the domain tag and, each prefixed with its
/// length as a u64 big-endian, the statement bytes, the COSE protected header bytes and
/// the COSE payload bytes. Everything an entry says except the signature, so a second
/// signature of the same signed bytes (such as (r, n - s)) names the same claim.
pub fn claim_id(statement: &[u8], attestation: &CoseParts) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CLAIM_ID_DOMAIN);
    for part in [
        statement,
        &attestation.protected[..],
        &attestation.payload[..],
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The [`claim_id`] of entry bytes. Checks the entry framing and splits the attestation's
/// COSE_Sign1 in whatever encoding it has (tagged, any unprotected header, any CBOR
/// lengths: [`CoseParts::from_any_encoding`]), verifying nothing else, so an entry logged
/// before the encoding rules gets the same identity as its canonical form. Use it to find
/// duplicates, never to accept an entry ([`verify_entry`] does that).
pub fn entry_claim_id(bytes: &[u8]) -> Result<[u8; 32], ClaimError> {
    let entry = Entry::decode(bytes)?;
    let parts = CoseParts::from_any_encoding(entry.attestation)?;
    Ok(claim_id(entry.statement, &parts))
}

/// `user_data` for a statement: SHA-384 over the domain tag and the exact
/// statement bytes. 48 bytes, well under the NSM's 1,024-byte limit however
/// large the statement is.
pub fn statement_user_data(statement: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(USER_DATA_DOMAIN);
    h.update(statement);
    h.finalize().into()
}

/// A decoded entry. The parts borrow from the entry bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub statement: &'a [u8],
    pub attestation: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Splits entry bytes into their two parts, checking the framing only.
    pub fn decode(bytes: &'a [u8]) -> Result<Entry<'a>, ClaimError> {
        if bytes.len() > MAX_ENTRY_SIZE {
            return Err(ClaimError::EntryTooLarge(bytes.len()));
        }
        let rest = bytes
            .strip_prefix(&ENTRY_MAGIC[..])
            .ok_or(ClaimError::EntryMagic)?;
        let (statement, rest) = take_u16_prefixed(rest)?;
        let (attestation, rest) = take_u16_prefixed(rest)?;
        if !rest.is_empty() {
            return Err(ClaimError::EntryTrailingBytes(rest.len()));
        }
        if statement.is_empty() || attestation.is_empty() {
            return Err(ClaimError::EntryTruncated);
        }
        Ok(Entry {
            statement,
            attestation,
        })
    }

    /// Encodes the two parts, refusing anything over the size limit.
    pub fn encode(statement: &[u8], attestation: &[u8]) -> Result<Vec<u8>, ClaimError> {
        let total = ENTRY_MAGIC.len() + 4 + statement.len() + attestation.len();
        if total > MAX_ENTRY_SIZE {
            return Err(ClaimError::EntryTooLarge(total));
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&ENTRY_MAGIC);
        for part in [statement, attestation] {
            let len = u16::try_from(part.len()).map_err(|_| ClaimError::EntryTooLarge(total))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
        Ok(out)
    }
}

fn take_u16_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), ClaimError> {
    let (len, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or(ClaimError::EntryTruncated)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(ClaimError::EntryTruncated);
    }
    Ok(rest.split_at(len))
}

/// An entry whose every part checked out: the framing, the statement, the
/// attestation chain and signature, and the binding between them.
#[derive(Clone, Debug)]
pub struct VerifiedClaim {
    pub statement: Statement,
    pub document: AttestationDocument,
    /// The entry's [`claim_id`]: the same for every entry derived from one attestation.
    pub claim_id: [u8; 32],
}

/// Verifies everything an entry says about itself, offline: the statement is
/// well formed, the attestation verifies at its own timestamp under the
/// verifier's pinned roots, and its `user_data` commits to the statement.
///
/// This is what the log checks before it sequences an entry. It does not
/// apply a policy (endorsed PCRs, debug mode, repositories): see
/// [`crate::verify`].
pub fn verify_entry(bytes: &[u8], nitro: &NitroVerifier) -> Result<VerifiedClaim, ClaimError> {
    let entry = Entry::decode(bytes)?;
    let statement = Statement::parse(entry.statement)?;
    let document = nitro.verify(entry.attestation, VerifyTime::DocumentTimestamp)?;
    let expected = statement_user_data(entry.statement);
    if document.user_data.as_deref() != Some(&expected[..]) {
        return Err(ClaimError::UserDataMismatch);
    }
    let parts = CoseParts::from_nsm_bytes(entry.attestation)?;
    Ok(VerifiedClaim {
        statement,
        document,
        claim_id: claim_id(entry.statement, &parts),
    })
}
