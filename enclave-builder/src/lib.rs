//! enclave-builder: builds a commit in a sandbox, attests the result with a
//! (real or simulated) Nitro Secure Module, logs the claim in attestlog and
//! writes an offline bundle beside each artifact.
//!
//! One job per module: [`source`] (git), [`config`] (attestlog-build.toml),
//! [`sandbox`] (bubblewrap and limits), [`measure`] (simulated PCRs),
//! [`nsm`] (attestation backends), [`submit`] (log submission and answer
//! verification), [`pipeline`] (the whole build), [`devca`] (dev CA helper),
//! [`transport`] (the framed host<->enclave channel over vsock or Unix
//! sockets), [`hostsplit`] (the host and enclave halves), [`launcher`]
//! (starting a fresh enclave per job: `nitro-cli` or a local process),
//! [`relay`] (the host's CONNECT relay for the enclave's own TLS fetch),
//! [`webhook`] (GitHub webhook intake with HMAC-SHA256 signatures),
//! [`refs`] (which advertised branch or tag contains the commit),
//! [`publish`] (GitHub release assets and OCI registries, host side).

pub mod config;
pub mod devca;
pub mod error;
pub mod hostsplit;
pub mod launcher;
pub mod measure;
pub mod nsm;
pub mod pipeline;
pub mod publish;
pub mod refs;
pub mod relay;
pub mod sandbox;
pub mod source;
pub mod submit;
pub mod transport;
pub mod webhook;

pub use error::BuildError;
