//! Certificate checks: parsing P-384 certificates, chain signatures, basicConstraints,
//! pathLen, keyUsage and validity windows, following AWS's verification process.
//! CA certificates need a critical basicConstraints with cA = TRUE and a keyUsage with
//! keyCertSign; the leaf needs digitalSignature and must not be a CA.
//!
//! The CA part of a chain (cabundle) is checked by [`verify_ca_chain`] and the leaf by
//! [`verify_leaf`], both without any time check, so their results can be cached;
//! [`finish`] then always redoes the time checks and the COSE signature.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Reader, SliceReader};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::document::Envelope;
use super::error::NitroError;

const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// The parts of one certificate that the checks use.
pub(crate) struct ParsedCert {
    pub not_before: u64,
    pub not_after: u64,
    /// Uncompressed SEC1 P-384 point (97 bytes).
    pub public_key: Vec<u8>,
    pub subject: Name,
    pub issuer: Name,
    /// The DER of tbsCertificate exactly as received (what the issuer signed).
    pub tbs: Vec<u8>,
    /// DER ECDSA-Sig-Value.
    pub signature: Vec<u8>,
    /// The basicConstraints extension and whether it is marked critical.
    pub basic_constraints: Option<(bool, BasicConstraints)>,
    pub key_usage: Option<KeyUsage>,
}

/// Parses a certificate; `position` (0 = root) only labels errors.
pub(crate) fn parse_cert(der: &[u8], position: usize) -> Result<ParsedCert, NitroError> {
    let bad = |reason| NitroError::MalformedCertificate { position, reason };
    let cert = Certificate::from_der(der).map_err(|_| bad("not a DER X.509 certificate"))?;
    let tbs_raw = raw_tbs(der).ok_or_else(|| bad("cannot locate tbsCertificate"))?;
    let tbs = cert.tbs_certificate();
    let alg = cert.signature_algorithm();
    if alg.oid != ECDSA_WITH_SHA384 || alg.parameters.is_some() || tbs.signature() != alg {
        return Err(bad("signature algorithm is not ecdsa-with-SHA384"));
    }
    let spki = tbs.subject_public_key_info();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(bad("public key is not EC P-384"));
    }
    let public_key = spki
        .subject_public_key
        .as_bytes()
        .filter(|k| k.len() == 97 && k.first() == Some(&0x04))
        .ok_or_else(|| bad("public key is not an uncompressed P-384 point"))?
        .to_vec();
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or_else(|| bad("signature bit string has unused bits"))?
        .to_vec();
    let basic_constraints = tbs
        .get_extension::<BasicConstraints>()
        .map_err(|_| bad("bad basicConstraints extension"))?;
    let key_usage = tbs
        .get_extension::<KeyUsage>()
        .map_err(|_| bad("bad keyUsage extension"))?
        .map(|(_, ku)| ku);
    let validity = tbs.validity();
    Ok(ParsedCert {
        not_before: validity.not_before.to_unix_duration().as_secs(),
        not_after: validity.not_after.to_unix_duration().as_secs(),
        public_key,
        subject: tbs.subject().clone(),
        issuer: tbs.issuer().clone(),
        tbs: tbs_raw.to_vec(),
        signature,
        basic_constraints,
        key_usage,
    })
}

/// The first element of the outer SEQUENCE, as received (re-encoding could differ).
fn raw_tbs(der: &[u8]) -> Option<&[u8]> {
    let mut reader = SliceReader::new(der).ok()?;
    reader
        .sequence(|r| {
            let tbs = r.tlv_bytes()?;
            r.read_slice(r.remaining_len())?;
            Ok::<_, x509_cert::der::Error>(tbs)
        })
        .ok()
}

/// Checks that `cert` was signed (ECDSA P-384 / SHA-384) by the holder of `issuer_key`.
pub(crate) fn signed_by(cert: &ParsedCert, issuer_key: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, issuer_key)
        .verify(&cert.tbs, &cert.signature)
        .is_ok()
}

/// A CA chain (root .. leaf's issuer) whose signatures, names and constraints passed.
/// Holds everything needed to redo the time checks and check the leaf.
#[derive(Debug)]
pub(crate) struct ValidatedChain {
    /// (notBefore, notAfter) of every CA certificate, root first.
    pub windows: Vec<(u64, u64)>,
    /// Public key of the last CA (the leaf's issuer).
    pub issuer_key: Vec<u8>,
    /// Subject of the last CA.
    pub issuer_subject: Name,
}

/// Checks cabundle (root first): names chain, each certificate is signed by its
/// predecessor, all are CAs, and pathLen constraints hold counting the CAs below each.
/// As AWS's process (attestation_process.md 3.2.3.2-3) states: basicConstraints "must
/// appear as a critical extension in all CA certificates" with cA = TRUE, and every CA's
/// key usage must have keyCertSign, so a CA without keyUsage is refused.
/// The caller has already checked that `cabundle[0]` is a pinned root. No time checks.
pub(crate) fn verify_ca_chain(cabundle: &[Vec<u8>]) -> Result<ValidatedChain, NitroError> {
    let certs = cabundle
        .iter()
        .enumerate()
        .map(|(i, der)| parse_cert(der, i))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, pair) in certs.windows(2).enumerate() {
        let (parent, child) = match pair {
            [p, c] => (p, c),
            _ => continue,
        };
        if child.issuer != parent.subject {
            return Err(NitroError::IssuerMismatch(i + 1));
        }
        if !signed_by(child, &parent.public_key) {
            return Err(NitroError::ChainSignature(i + 1));
        }
    }
    let count = certs.len();
    for (i, cert) in certs.iter().enumerate() {
        let bc = match &cert.basic_constraints {
            Some((true, bc)) if bc.ca => bc,
            _ => return Err(NitroError::BasicConstraints(i)),
        };
        // CA certificates below position i (the leaf is not a CA).
        let below = count.saturating_sub(i + 1);
        if let Some(limit) = bc.path_len_constraint {
            if usize::from(limit) < below {
                return Err(NitroError::PathLen(i));
            }
        }
        if !cert.key_usage.as_ref().is_some_and(|ku| ku.key_cert_sign()) {
            return Err(NitroError::KeyUsage(i));
        }
    }
    let last = certs.last().ok_or(NitroError::InvalidField {
        field: "cabundle",
        reason: "must hold 1..=16 certificates",
    })?;
    Ok(ValidatedChain {
        windows: certs.iter().map(|c| (c.not_before, c.not_after)).collect(),
        issuer_key: last.public_key.clone(),
        issuer_subject: last.subject.clone(),
    })
}

fn check_time(window: (u64, u64), at: u64, position: usize) -> Result<(), NitroError> {
    if at < window.0 {
        return Err(NitroError::CertificateNotYetValid(position));
    }
    if at > window.1 {
        return Err(NitroError::CertificateExpired(position));
    }
    Ok(())
}

/// A leaf whose name, signature by the chain's last CA, basicConstraints and keyUsage
/// passed. Holds what the per-verification checks need.
#[derive(Debug)]
pub(crate) struct ValidatedLeaf {
    pub window: (u64, u64),
    /// Uncompressed SEC1 P-384 point that signs the COSE envelope.
    pub public_key: Vec<u8>,
}

/// The leaf checks that do not depend on time: name chaining, the signature by the
/// chain's last CA, CA:false without a pathLenConstraint ("must be undefined since this
/// is a client certificate", attestation_process.md 3.2.3.3) and digitalSignature key usage.
pub(crate) fn verify_leaf(
    chain: &ValidatedChain,
    leaf_der: &[u8],
) -> Result<ValidatedLeaf, NitroError> {
    let position = chain.windows.len();
    let leaf = parse_cert(leaf_der, position)?;
    if leaf.issuer != chain.issuer_subject {
        return Err(NitroError::IssuerMismatch(position));
    }
    if !signed_by(&leaf, &chain.issuer_key) {
        return Err(NitroError::ChainSignature(position));
    }
    if leaf
        .basic_constraints
        .as_ref()
        .is_some_and(|(_, bc)| bc.ca || bc.path_len_constraint.is_some())
    {
        return Err(NitroError::BasicConstraints(position));
    }
    if !leaf
        .key_usage
        .as_ref()
        .is_some_and(|ku| ku.digital_signature())
    {
        return Err(NitroError::KeyUsage(position));
    }
    Ok(ValidatedLeaf {
        window: (leaf.not_before, leaf.not_after),
        public_key: leaf.public_key,
    })
}

/// The checks that are never cached: every certificate's validity at `at`, and the
/// COSE ES384 signature by the leaf's key over the envelope as received.
pub(crate) fn finish(
    chain: &ValidatedChain,
    leaf: &ValidatedLeaf,
    at: u64,
    envelope: &Envelope,
) -> Result<(), NitroError> {
    for (i, window) in chain.windows.iter().enumerate() {
        check_time(*window, at, i)?;
    }
    check_time(leaf.window, at, chain.windows.len())?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &leaf.public_key)
        .verify(&envelope.tbs, &envelope.signature)
        .map_err(|_| NitroError::CoseSignature)
}
