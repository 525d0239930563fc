//! Artifacts and bundles in OCI registries (OCI image-spec 1.1 and
//! distribution-spec 1.1), over a small client of the distribution API.
//!
//! Contract ([`spec/publish.md`](../../spec/publish.md) is normative):
//! - An artifact is an image manifest with `artifactType` [`ARTIFACT_TYPE`],
//!   the empty config ([`EMPTY_MEDIA_TYPE`], the 2 bytes `{}`) and exactly
//!   one layer, the artifact's bytes, titled with its file name.
//! - Its bundle is an image manifest whose `artifactType` and single layer's
//!   `mediaType` are the bundle's own `mediaType` (v1 or v2), with `subject`
//!   = the artifact's manifest. It is found through the referrers API, or,
//!   where the registry lacks it (404), through the tag-schema fallback: the
//!   image index tagged `sha256-<hex of the subject digest>`.
//! - Nothing the registry says is trusted: every manifest and blob fetched
//!   is checked against the digest it was asked for and capped in size
//!   ([`MAX_MANIFEST_SIZE`], the layer's own size, [`crate::download::MAX_ARTIFACT_SIZE`],
//!   [`crate::bundle::MAX_BUNDLE_SIZE`]), and every request has a deadline.
//!   The bundles found are only candidates; `attestlog verify` judges them.
//! - Registries on loopback hosts (`localhost`, `127.0.0.0/8`, `[::1]`) are
//!   spoken to over plain HTTP, all others over HTTPS. A registry's
//!   `Bearer` challenge is met with a token from its realm (`auth`):
//!   anonymous, or with [`Credentials`] where given (publishing).

mod auth;
mod pull;
mod push;
mod reference;
mod registry;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use auth::{parse_challenge, Challenge, Credentials};
pub use pull::{
    download_artifact, find_bundles, resolve_artifact, ArtifactManifest, BundleCandidate,
};
pub use push::{publish, Published, ReferrersPath};
pub use reference::{valid_tag, Reference};
pub use registry::Registry;

/// `artifactType` of an attestlog artifact's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.attestlog.artifact.v1";
/// The artifact layer's media type: the bytes as built.
pub const ARTIFACT_LAYER_TYPE: &str = "application/octet-stream";
/// OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type (the tag-schema fallback's referrers list).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The empty descriptor's media type (image-spec 1.1 "Guidance for an empty descriptor").
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty JSON object, the empty config's only content.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// Annotation naming a layer's file (image-spec annotations).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Largest manifest or index read or written (distribution-spec: registries
/// SHOULD accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;
/// Most bundle referrers of one artifact that are fetched and tried.
pub const MAX_BUNDLE_CANDIDATES: usize = 16;

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest (the fields attestlog reads and writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image index (referrers answers and the fallback tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The empty config descriptor.
pub fn empty_descriptor() -> Descriptor {
    Descriptor {
        media_type: EMPTY_MEDIA_TYPE.into(),
        digest: sha256_digest(EMPTY_CONFIG),
        size: EMPTY_CONFIG.len() as u64,
        artifact_type: None,
        annotations: None,
    }
}

/// True for `sha256:` and 64 lowercase hex digits, the only digests used.
pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// The tag-schema fallback tag for `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The two bundle media types, as `artifactType`s of bundle referrers.
pub fn is_bundle_type(t: &str) -> bool {
    t == crate::bundle::BUNDLE_MEDIA_TYPE || t == crate::bundle::BUNDLE_MEDIA_TYPE_V1
}

/// What went wrong talking to a registry, or with what it answered.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("reference {0:?}: {1}")]
    Reference(String, &'static str),
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url}: status {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{url}: answer larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: content digest is {got}, asked for {want}")]
    DigestMismatch {
        url: String,
        want: String,
        got: String,
    },
    #[error("{0}")]
    Manifest(String),
    #[error("tag {tag} already names {existing}, not this artifact's manifest {ours}; refusing to move it")]
    Conflict {
        tag: String,
        existing: String,
        ours: String,
    },
    #[error("{url}: refused (status {status}): not authorized")]
    Unauthorized { url: String, status: u16 },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("no attestlog bundle refers to {0}")]
    NoBundle(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl OciError {
    /// Stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Reference(..) => "oci_reference",
            Self::Transport { .. } => "oci_transport",
            Self::Status { .. } => "oci_status",
            Self::NotFound(_) => "oci_not_found",
            Self::TooLarge { .. } => "oci_too_large",
            Self::DigestMismatch { .. } => "oci_digest_mismatch",
            Self::Manifest(_) => "oci_manifest",
            Self::Conflict { .. } => "oci_conflict",
            Self::Unauthorized { .. } => "oci_unauthorized",
            Self::Credentials(_) => "oci_credentials",
            Self::NoBundle(_) => "oci_no_bundle",
            Self::Io { .. } => "io",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_descriptor_is_the_spec_one() {
        // image-spec 1.1 manifest.md, "Guidance for an empty descriptor".
        assert_eq!(
            empty_descriptor().digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn fallback_tag_and_digest_shape() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert!(is_sha256_digest(&d));
        assert_eq!(fallback_tag(&d), format!("sha256-{}", "ab".repeat(32)));
        assert!(!is_sha256_digest(&d.to_ascii_uppercase()));
        assert!(!is_sha256_digest("sha512:00"));
        assert!(!is_sha256_digest(&format!("sha256:{}", "ab".repeat(31))));
    }
}
