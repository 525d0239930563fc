//! AWS Nitro Enclaves attestation documents: parsing, verification against pinned roots,
//! a chain cache, and (feature `sim-nsm`) a simulated NSM for tests and development.
//!
//! Verification follows AWS's documented process (see `shared/reference/nitro.md`):
//! exactly the NSM's envelope encoding (one encoding per attestation, see [`CoseParts`]),
//! field checks with AWS's limits, `cabundle[0]` pinned, chain root -> `cabundle[1..]` -> leaf with ECDSA
//! P-384 / SHA-384, validity at the chosen time, basicConstraints / pathLen / keyUsage,
//! then the COSE ES384 signature over the bytes as received. ECDSA is done with
//! aws-lc-rs, chosen over RustCrypto `p384` by measurement (NOTES-nitro.md).

mod cache;
mod chain;
mod document;
mod envelope;
mod error;
mod verifier;

#[cfg(feature = "sim-nsm")]
pub mod sim;

pub use cache::DEFAULT_CHAIN_CACHE_CAPACITY;
pub use document::{
    AttestationDocument, MAX_CABUNDLE_LEN, MAX_CERTIFICATE_LEN, MAX_DOCUMENT_LEN,
    MAX_OPTIONAL_FIELD_LEN, MAX_PCRS,
};
pub use envelope::{CoseParts, MAX_PAYLOAD_LEN, NSM_PROTECTED_HEADER, SIGNATURE_LEN};
pub use error::NitroError;
pub use verifier::{NitroVerifier, TrustRoots, VerifyTime, AWS_NITRO_ROOT_G1_SHA256};
