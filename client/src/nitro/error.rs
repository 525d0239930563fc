//! Errors of the Nitro module: one variant per failed check, each with a stable code.
//!
//! The codes are part of the public contract (logs, CLI output and tests match on them),
//! so never rename one; add a new variant instead.

/// Why an attestation document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NitroError {
    /// The input is larger than [`crate::nitro::MAX_DOCUMENT_LEN`].
    #[error("document too large: {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The COSE_Sign1 envelope could not be decoded.
    #[error("malformed COSE_Sign1 envelope: {0}")]
    MalformedCose(String),
    /// The envelope carries CBOR tag 18: the NSM emits untagged COSE_Sign1 only, and the tag
    /// is not signed, so a tagged copy would be a second encoding of one attestation.
    #[error("tagged envelope: only the untagged COSE_Sign1 the NSM emits is accepted")]
    TaggedEnvelope,
    /// The unprotected header is not the empty map: it is not signed, so anything in it
    /// is unauthenticated and would make another encoding of the same attestation.
    #[error("unprotected header: must be the empty map")]
    UnprotectedHeader,
    /// The envelope is not in the NSM's encoding: a non-minimal or indefinite length, or
    /// the ES384 protected header in other bytes than a1 01 38 22.
    #[error("non-canonical encoding: the envelope is not byte-identical to the NSM's encoding")]
    NoncanonicalEncoding,
    /// The payload is larger than [`crate::nitro::MAX_PAYLOAD_LEN`].
    #[error("payload too large: {0} bytes exceeds the 16384-byte limit")]
    PayloadTooLarge(usize),
    /// The protected header is not exactly {1: -35} (ES384).
    #[error("unsupported algorithm: protected header must be {{1: -35}} (ES384)")]
    UnsupportedAlgorithm,
    /// The payload is not a CBOR map with text keys.
    #[error("malformed payload: {0}")]
    MalformedPayload(String),
    /// A mandatory payload field is absent.
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// A payload field has the wrong type, size or value.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The payload key.
        field: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// `cabundle[0]` is not one of the pinned roots.
    #[error("untrusted root: cabundle[0] is not a pinned root certificate")]
    UntrustedRoot,
    /// A certificate could not be parsed or uses a key/algorithm other than P-384/SHA-384.
    #[error("malformed certificate at chain position {position}: {reason}")]
    MalformedCertificate {
        /// 0 = root, cabundle.len() = leaf.
        position: usize,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A certificate's issuer name is not its predecessor's subject.
    #[error("issuer mismatch at chain position {0}: issuer is not the previous subject")]
    IssuerMismatch(usize),
    /// A certificate's signature does not verify under its predecessor's key.
    #[error("chain signature invalid at chain position {0}")]
    ChainSignature(usize),
    /// A certificate's notAfter is before the verification time.
    #[error("certificate expired at chain position {0}")]
    CertificateExpired(usize),
    /// A certificate's notBefore is after the verification time.
    #[error("certificate not yet valid at chain position {0}")]
    CertificateNotYetValid(usize),
    /// A CA lacks a critical basicConstraints with CA:true, or the leaf claims CA:true or
    /// carries a pathLenConstraint.
    #[error("basic constraints violated at chain position {0}")]
    BasicConstraints(usize),
    /// A CA's pathLenConstraint is smaller than the number of CAs below it.
    #[error("path length constraint violated at chain position {0}")]
    PathLen(usize),
    /// The leaf's keyUsage lacks digitalSignature, or a CA has no keyUsage or one without
    /// keyCertSign.
    #[error("key usage violated at chain position {0}")]
    KeyUsage(usize),
    /// The COSE ES384 signature does not verify under the leaf key.
    #[error("COSE signature invalid")]
    CoseSignature,
    /// A certificate given to [`crate::nitro::TrustRoots`] is not a self-signed P-384 root.
    #[error("invalid trust root: {0}")]
    InvalidRoot(&'static str),
}

impl NitroError {
    /// Stable snake_case code naming the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            NitroError::TooLarge(_) => "too_large",
            NitroError::MalformedCose(_) => "malformed_cose",
            NitroError::TaggedEnvelope => "tagged_envelope",
            NitroError::UnprotectedHeader => "unprotected_header",
            NitroError::NoncanonicalEncoding => "noncanonical_encoding",
            NitroError::PayloadTooLarge(_) => "payload_too_large",
            NitroError::UnsupportedAlgorithm => "unsupported_algorithm",
            NitroError::MalformedPayload(_) => "malformed_payload",
            NitroError::MissingField(_) => "missing_field",
            NitroError::InvalidField { .. } => "invalid_field",
            NitroError::UntrustedRoot => "untrusted_root",
            NitroError::MalformedCertificate { .. } => "malformed_certificate",
            NitroError::IssuerMismatch(_) => "issuer_mismatch",
            NitroError::ChainSignature(_) => "chain_signature",
            NitroError::CertificateExpired(_) => "certificate_expired",
            NitroError::CertificateNotYetValid(_) => "certificate_not_yet_valid",
            NitroError::BasicConstraints(_) => "basic_constraints",
            NitroError::PathLen(_) => "path_len",
            NitroError::KeyUsage(_) => "key_usage",
            NitroError::CoseSignature => "cose_signature",
            NitroError::InvalidRoot(_) => "invalid_root",
        }
    }
}
