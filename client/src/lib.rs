//! attestlog: offline verification of attested builds.
//!
//! This crate checks the claim "artifact A was built by enclave image
//! PCR0-2 from commit CT" without trusting any server: the AWS Nitro
//! attestation ([`nitro`]), the statement it commits to ([`claim`]) and the
//! enclave's [`dsse`] envelope over it, the user's [`policy`], and the
//! transparency log's proof and signed checkpoint ([`tlog`]), all carried in
//! one offline [`bundle`] and judged by [`verify`]. The log server and the enclave builder use the same code, so
//! what the log accepts is exactly what users verify.

pub mod bounded;
pub mod bundle;
pub mod claim;
#[cfg(feature = "oci")]
pub mod download;
pub mod dsse;
#[cfg(feature = "monitor")]
pub mod monitor;
pub mod nitro;
#[cfg(feature = "oci")]
pub mod oci;
pub mod policy;
pub mod tlog;
pub mod verify;
#[cfg(feature = "witness")]
pub mod witness;
