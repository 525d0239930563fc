//! Finding an artifact and its bundles: the artifact manifest by tag or
//! digest, then the bundle referrers (referrers API, else the tag schema).
//! Every manifest and blob is checked against its digest; what the bundles
//! claim is left to the verifier.

use std::io::Write;

use super::*;
use crate::bundle::MAX_BUNDLE_SIZE;
use crate::download::MAX_ARTIFACT_SIZE;

/// The artifact's manifest, checked for shape.
pub struct ArtifactManifest {
    /// The manifest's digest (what bundles must name as `subject`).
    pub digest: String,
    /// The artifact's layer.
    pub layer: Descriptor,
    /// The layer's title annotation, if any.
    pub name: Option<String>,
}

/// A bundle found among the referrers, with the manifest it came in.
pub struct BundleCandidate {
    pub manifest: String,
    pub bytes: Vec<u8>,
}

/// Resolves `reference` to an attestlog artifact manifest.
pub fn resolve_artifact(
    registry: &Registry,
    reference: &Reference,
) -> Result<ArtifactManifest, OciError> {
    let r = reference.manifest_reference();
    let fetched = registry
        .get_manifest(r)?
        .ok_or_else(|| OciError::NotFound(format!("manifest {r}")))?;
    let m: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| OciError::Manifest(format!("{r} is not an OCI image manifest: {e}")))?;
    if m.schema_version != 2 || m.media_type.as_deref() != Some(MANIFEST_MEDIA_TYPE) {
        return Err(OciError::Manifest(format!(
            "{r} is not an OCI image manifest ({MANIFEST_MEDIA_TYPE})"
        )));
    }
    if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(OciError::Manifest(format!(
            "{r} has artifactType {:?}, not {ARTIFACT_TYPE}",
            m.artifact_type.unwrap_or_default()
        )));
    }
    let [layer] = <[Descriptor; 1]>::try_from(m.layers)
        .map_err(|l| OciError::Manifest(format!("{r} has {} layers, not one", l.len())))?;
    if layer.size > MAX_ARTIFACT_SIZE {
        return Err(OciError::TooLarge {
            url: format!("artifact layer of {r}"),
            limit: MAX_ARTIFACT_SIZE,
        });
    }
    let name = layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(TITLE_ANNOTATION))
        .cloned();
    Ok(ArtifactManifest {
        digest: fetched.digest,
        layer,
        name,
    })
}

/// Streams the artifact's bytes into `sink`, checked against the layer.
pub fn download_artifact(
    registry: &Registry,
    artifact: &ArtifactManifest,
    sink: &mut dyn Write,
) -> Result<(), OciError> {
    registry.get_blob(
        &artifact.layer.digest,
        artifact.layer.size,
        MAX_ARTIFACT_SIZE,
        sink,
    )
}

/// The bundles whose manifests name `subject`, from the referrers API or
/// else the tag schema, at most [`MAX_BUNDLE_CANDIDATES`]. A referrer
/// naming another subject, or with another shape, is an error: the
/// registry is not answering what was asked.
pub fn find_bundles(registry: &Registry, subject: &str) -> Result<Vec<BundleCandidate>, OciError> {
    let index_bytes = match registry.referrers(subject)? {
        Some(b) => b,
        None => match registry.get_manifest(&fallback_tag(subject))? {
            Some(f) => f.bytes,
            None => return Err(OciError::NoBundle(subject.to_string())),
        },
    };
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| {
        OciError::Manifest(format!("referrers of {subject}: not an image index: {e}"))
    })?;
    let mut out = Vec::new();
    for d in index
        .manifests
        .iter()
        .filter(|d| d.artifact_type.as_deref().is_some_and(is_bundle_type))
        .take(MAX_BUNDLE_CANDIDATES)
    {
        out.push(fetch_bundle(registry, subject, &d.digest)?);
    }
    if out.is_empty() {
        return Err(OciError::NoBundle(subject.to_string()));
    }
    Ok(out)
}

fn fetch_bundle(
    registry: &Registry,
    subject: &str,
    digest: &str,
) -> Result<BundleCandidate, OciError> {
    if !is_sha256_digest(digest) {
        return Err(OciError::Manifest(format!(
            "referrer digest {digest:?} is not sha256"
        )));
    }
    let fetched = registry
        .get_manifest(digest)?
        .ok_or_else(|| OciError::NotFound(format!("referrer manifest {digest}")))?;
    let m: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| OciError::Manifest(format!("referrer {digest}: {e}")))?;
    if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject) {
        return Err(OciError::Manifest(format!(
            "referrer {digest} does not name {subject} as its subject"
        )));
    }
    let layer = match m.layers.as_slice() {
        [l] if is_bundle_type(&l.media_type) => l,
        _ => {
            return Err(OciError::Manifest(format!(
                "referrer {digest} is not one attestlog bundle layer"
            )))
        }
    };
    let mut bytes = Vec::new();
    registry.get_blob(
        &layer.digest,
        layer.size,
        MAX_BUNDLE_SIZE as u64,
        &mut bytes,
    )?;
    Ok(BundleCandidate {
        manifest: digest.to_string(),
        bytes,
    })
}
