//! Trust roots and the verifier: AWS's verification process on top of parsing.
//!
//! Only pinned roots are trusted: `cabundle[0]` must be byte-equal to a root the caller
//! chose, never a root taken from the document itself.

use std::sync::Arc;

use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;

use super::cache::{chain_key, leaf_key, BoundedCache, DEFAULT_CHAIN_CACHE_CAPACITY};
use super::chain::{
    finish, parse_cert, signed_by, verify_ca_chain, verify_leaf, ValidatedChain, ValidatedLeaf,
};
use super::document::{parse_with_envelope, AttestationDocument};
use super::error::NitroError;

/// SHA-256 of the DER of the AWS Nitro Enclaves Root-G1 certificate, as published by AWS.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The pinned AWS root, committed as a trust anchor (see the test that checks its hash).
const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("aws-nitro-root-g1.pem");

/// A set of pinned root certificates (DER). Documents verify only if their `cabundle[0]`
/// is byte-equal to one of these.
#[derive(Clone, Debug, Default)]
pub struct TrustRoots {
    roots: Vec<Vec<u8>>,
}

impl TrustRoots {
    /// Only the embedded AWS Nitro Enclaves Root-G1.
    pub fn aws() -> Self {
        let mut roots = TrustRoots::empty();
        // The embedded PEM is a constant checked by a test; if it ever failed to load
        // the set stays empty and every document is rejected (fail closed).
        let _ = roots.add_pem(AWS_NITRO_ROOT_G1_PEM);
        roots
    }

    /// No roots: nothing verifies until roots are added.
    pub fn empty() -> Self {
        TrustRoots { roots: Vec::new() }
    }

    /// Adds a root; it must be a self-signed P-384 / ecdsa-with-SHA384 certificate.
    pub fn add_der(&mut self, der: Vec<u8>) -> Result<(), NitroError> {
        let cert = parse_cert(&der, 0)
            .map_err(|_| NitroError::InvalidRoot("not a P-384 / ecdsa-with-SHA384 certificate"))?;
        if cert.issuer != cert.subject || !signed_by(&cert, &cert.public_key) {
            return Err(NitroError::InvalidRoot("not self-signed"));
        }
        if !self.contains(&der) {
            self.roots.push(der);
        }
        Ok(())
    }

    /// Adds every CERTIFICATE block of `pem` (at least one); all-or-nothing.
    pub fn add_pem(&mut self, pem: &str) -> Result<(), NitroError> {
        let certs = Certificate::load_pem_chain(pem.as_bytes())
            .map_err(|_| NitroError::InvalidRoot("not PEM CERTIFICATE blocks"))?;
        if certs.is_empty() {
            return Err(NitroError::InvalidRoot("no CERTIFICATE block"));
        }
        let ders = certs
            .iter()
            .map(|c| c.to_der())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| NitroError::InvalidRoot("cannot re-encode certificate"))?;
        // Check all before adding any.
        let mut staged = self.clone();
        for der in ders {
            // Decoding is strict DER, so re-encoding gives back the received bytes.
            Certificate::from_der(&der)
                .map_err(|_| NitroError::InvalidRoot("not a DER certificate"))?;
            staged.add_der(der)?;
        }
        *self = staged;
        Ok(())
    }

    /// True if `der` is byte-equal to a pinned root.
    pub fn contains(&self, der: &[u8]) -> bool {
        self.roots.iter().any(|r| r.as_slice() == der)
    }

    /// The pinned roots' DER, in the order they were added.
    pub fn ders(&self) -> impl Iterator<Item = &[u8]> {
        self.roots.iter().map(Vec::as_slice)
    }

    /// Number of pinned roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// True when no root is pinned.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

/// The time at which every certificate must be valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyTime {
    /// The document's own timestamp: right for logged documents, whose leaf (valid ~3 h)
    /// has long expired; the log's inclusion proof is the evidence of when it was seen.
    DocumentTimestamp,
    /// A caller-chosen time, in seconds since the Unix epoch (e.g. now, for fresh documents).
    UnixSeconds(u64),
}

/// Verifies attestation documents against pinned roots. Send + Sync; share via Arc.
pub struct NitroVerifier {
    roots: TrustRoots,
    cache: Option<Caches>,
}

/// Verified cabundles, and verified leaves under them.
struct Caches {
    chains: BoundedCache<ValidatedChain>,
    leaves: BoundedCache<ValidatedLeaf>,
}

impl NitroVerifier {
    /// A verifier with a chain cache of [`DEFAULT_CHAIN_CACHE_CAPACITY`] cabundles.
    pub fn new(roots: TrustRoots) -> Self {
        NitroVerifier {
            roots,
            cache: Some(Caches {
                chains: BoundedCache::new(DEFAULT_CHAIN_CACHE_CAPACITY),
                leaves: BoundedCache::new(DEFAULT_CHAIN_CACHE_CAPACITY),
            }),
        }
    }

    /// A verifier that checks every certificate every time (benchmarks, differential tests).
    pub fn without_cache(roots: TrustRoots) -> Self {
        NitroVerifier { roots, cache: None }
    }

    /// The roots this verifier trusts.
    pub fn roots(&self) -> &TrustRoots {
        &self.roots
    }

    /// Number of verified cabundles currently cached (0 without a cache).
    pub fn cached_chains(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.chains.len())
    }

    /// Parses and verifies a document per AWS's process; returns it only if every check
    /// passed: pinned root, chain signatures, constraints, validity at `at`, COSE signature.
    pub fn verify(
        &self,
        cose_bytes: &[u8],
        at: VerifyTime,
    ) -> Result<AttestationDocument, NitroError> {
        let (doc, envelope) = parse_with_envelope(cose_bytes)?;
        let at = match at {
            VerifyTime::DocumentTimestamp => doc.timestamp_unix(),
            VerifyTime::UnixSeconds(s) => s,
        };
        let root = doc.cabundle.first().ok_or(NitroError::InvalidField {
            field: "cabundle",
            reason: "must hold 1..=16 certificates",
        })?;
        if !self.roots.contains(root) {
            return Err(NitroError::UntrustedRoot);
        }
        let (chain, leaf) = match &self.cache {
            None => {
                let chain = verify_ca_chain(&doc.cabundle)?;
                let leaf = verify_leaf(&chain, &doc.certificate)?;
                (Arc::new(chain), Arc::new(leaf))
            }
            Some(cache) => {
                let key = chain_key(&doc.cabundle);
                let chain = match cache.chains.get(&key) {
                    Some(chain) => chain,
                    None => {
                        let chain = Arc::new(verify_ca_chain(&doc.cabundle)?);
                        cache.chains.insert(key, Arc::clone(&chain));
                        chain
                    }
                };
                let key = leaf_key(&key, &doc.certificate);
                let leaf = match cache.leaves.get(&key) {
                    Some(leaf) => leaf,
                    None => {
                        let leaf = Arc::new(verify_leaf(&chain, &doc.certificate)?);
                        cache.leaves.insert(key, Arc::clone(&leaf));
                        leaf
                    }
                };
                (chain, leaf)
            }
        };
        finish(&chain, &leaf, at, &envelope)?;
        Ok(doc)
    }
}
