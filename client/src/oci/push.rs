//! Publishing an artifact and its bundle: the artifact manifest under the
//! tag, the bundle as a referrer of it. Idempotent: what is already there
//! with the same bytes is left alone; a tag naming other content is refused.

use std::collections::BTreeMap;
use std::path::Path;

use super::registry::BlobBody;
use super::*;
use crate::bundle::{Bundle, BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE_V1, BUNDLE_SUFFIX};

/// How the bundle was made findable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrersPath {
    /// The registry answered the manifest PUT with `OCI-Subject`.
    Api,
    /// The `sha256-<hex>` index tag (OCI 1.1 referrers tag schema).
    TagSchema,
}

/// What [`publish`] did.
#[derive(Clone, Debug)]
pub struct Published {
    /// `REGISTRY/REPO@sha256:...` of the artifact manifest.
    pub artifact: String,
    /// Digest of the bundle's manifest.
    pub bundle_manifest: String,
    pub referrers: ReferrersPath,
    /// Nothing was written: everything was already there.
    pub unchanged: bool,
}

/// Pushes `artifact` (a file) under `reference`'s tag and `bundle` (its
/// `.attestlog.json` bytes) as a referrer of it, authenticating with
/// `credentials` where the registry asks.
pub fn publish(
    reference: &Reference,
    artifact: &Path,
    bundle: &[u8],
    credentials: Option<&Credentials>,
) -> Result<Published, OciError> {
    let tag = reference
        .tag
        .as_deref()
        .filter(|_| reference.digest.is_none())
        .ok_or_else(|| {
            OciError::Reference(
                format!("{}/{}", reference.registry, reference.repository),
                "publishing needs REGISTRY/REPO:TAG, without a digest",
            )
        })?;
    let parsed = Bundle::parse(bundle).map_err(|e| OciError::Manifest(format!("bundle: {e}")))?;
    let bundle_type = if parsed.dsse_envelope.is_some() {
        BUNDLE_MEDIA_TYPE
    } else {
        BUNDLE_MEDIA_TYPE_V1
    };
    let registry = Registry::new(reference)?.with_credentials(credentials.cloned());
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let (artifact_digest, artifact_size) = hash_file(artifact)?;
    let artifact_manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: empty_descriptor(),
        layers: vec![layer(
            ARTIFACT_LAYER_TYPE,
            artifact_digest.clone(),
            artifact_size,
            &name,
        )],
        subject: None,
        annotations: None,
    };
    let artifact_bytes = to_json(&artifact_manifest)?;
    let artifact_manifest_digest = sha256_digest(&artifact_bytes);
    let mut unchanged = true;

    // The tag: ours already, someone else's (refused), or free.
    match registry.get_manifest(tag)? {
        Some(existing) if existing.digest == artifact_manifest_digest => {}
        Some(existing) => {
            return Err(OciError::Conflict {
                tag: tag.to_string(),
                existing: existing.digest,
                ours: artifact_manifest_digest,
            })
        }
        None => {
            unchanged = false;
            registry.push_blob(&empty_descriptor().digest, BlobBody::Bytes(EMPTY_CONFIG))?;
            registry.push_blob(&artifact_digest, BlobBody::File(artifact, artifact_size))?;
            registry.put_manifest(tag, MANIFEST_MEDIA_TYPE, &artifact_bytes)?;
        }
    }

    let subject = Descriptor {
        media_type: MANIFEST_MEDIA_TYPE.into(),
        digest: artifact_manifest_digest.clone(),
        size: artifact_bytes.len() as u64,
        artifact_type: None,
        annotations: None,
    };
    let bundle_manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: Some(bundle_type.into()),
        config: empty_descriptor(),
        layers: vec![layer(
            bundle_type,
            sha256_digest(bundle),
            bundle.len() as u64,
            &format!("{name}{BUNDLE_SUFFIX}"),
        )],
        subject: Some(subject),
        annotations: None,
    };
    let bundle_bytes = to_json(&bundle_manifest)?;
    let bundle_manifest_digest = sha256_digest(&bundle_bytes);
    let mut referrers = ReferrersPath::TagSchema;
    if registry.get_manifest(&bundle_manifest_digest)?.is_none() {
        unchanged = false;
        registry.push_blob(&empty_descriptor().digest, BlobBody::Bytes(EMPTY_CONFIG))?;
        registry.push_blob(&sha256_digest(bundle), BlobBody::Bytes(bundle))?;
        let subject_header =
            registry.put_manifest(&bundle_manifest_digest, MANIFEST_MEDIA_TYPE, &bundle_bytes)?;
        if subject_header.as_deref() == Some(artifact_manifest_digest.as_str()) {
            referrers = ReferrersPath::Api;
        }
    } else if registry.referrers(&artifact_manifest_digest)?.is_some() {
        referrers = ReferrersPath::Api;
    }
    if referrers == ReferrersPath::TagSchema {
        let descriptor = Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.into(),
            digest: bundle_manifest_digest.clone(),
            size: bundle_bytes.len() as u64,
            artifact_type: Some(bundle_type.into()),
            annotations: None,
        };
        unchanged &= !add_to_fallback_index(&registry, &artifact_manifest_digest, descriptor)?;
    }
    Ok(Published {
        artifact: format!(
            "{}/{}@{artifact_manifest_digest}",
            reference.registry, reference.repository
        ),
        bundle_manifest: bundle_manifest_digest,
        referrers,
        unchanged,
    })
}

/// Adds `descriptor` to the index tagged `sha256-<hex>` of `subject`
/// (creating it); returns whether it wrote anything.
fn add_to_fallback_index(
    registry: &Registry,
    subject: &str,
    descriptor: Descriptor,
) -> Result<bool, OciError> {
    let tag = fallback_tag(subject);
    let mut index = match registry.get_manifest(&tag)? {
        Some(f) => serde_json::from_slice::<Index>(&f.bytes)
            .ok()
            .filter(|i| i.schema_version == 2)
            .ok_or_else(|| {
                OciError::Manifest(format!(
                    "the referrers tag {tag} does not hold an image index"
                ))
            })?,
        None => Index {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.into()),
            manifests: Vec::new(),
        },
    };
    if index
        .manifests
        .iter()
        .any(|d| d.digest == descriptor.digest)
    {
        return Ok(false);
    }
    index.manifests.push(descriptor);
    let bytes = to_json(&index)?;
    registry.put_manifest(&tag, INDEX_MEDIA_TYPE, &bytes)?;
    Ok(true)
}

fn layer(media_type: &str, digest: String, size: u64, title: &str) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        artifact_type: None,
        annotations: Some(BTreeMap::from([(TITLE_ANNOTATION.into(), title.into())])),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, OciError> {
    serde_json::to_vec(value).map_err(|e| OciError::Manifest(e.to_string()))
}

/// `sha256:<hex>` and length of a file.
fn hash_file(path: &Path) -> Result<(String, u64), OciError> {
    let (sha256, size) = crate::download::sha256_file(path).map_err(|source| OciError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok((format!("sha256:{}", hex::encode(sha256)), size))
}
