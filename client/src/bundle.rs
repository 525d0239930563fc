//! The offline bundle: everything a user needs, in one file beside the
//! artifact, to check an attested build without talking to anyone.
//!
//! ```json
//! {
//!   "mediaType": "application/vnd.attestlog.bundle.v2+json",
//!   "entry": "<base64 entry bytes>",
//!   "dsseEnvelope": {"payload": "<base64 statement>", "payloadType": "application/vnd.in-toto+json",
//!                    "signatures": [{"keyid": "<hex>", "sig": "<base64>"}]},
//!   "tlogProof": "c2sp.org/tlog-proof@v1\nindex 7\n...\n\n<signed checkpoint>"
//! }
//! ```
//! `tlogProof` is a C2SP tlog-proof verbatim, so any tlog-proof tool can
//! check the inclusion half on its own; `dsseEnvelope` is a DSSE envelope
//! verbatim, so any DSSE tool can check the statement under the attested
//! key. A v2 bundle must carry the envelope; a v1 bundle (no envelope) is
//! still read and written unchanged. `spec/bundle.md` is normative.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::dsse::{DsseError, Envelope, EnvelopeJson};
use crate::tlog::proof::TlogProof;

/// The current bundle version: with a DSSE envelope.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.attestlog.bundle.v2+json";
/// The first bundle version: no DSSE envelope. Still accepted.
pub const BUNDLE_MEDIA_TYPE_V1: &str = "application/vnd.attestlog.bundle.v1+json";
/// The file name suffix a bundle takes beside its artifact.
pub const BUNDLE_SUFFIX: &str = ".attestlog.json";
/// Entry (64 KiB, base64) plus a proof and a checkpoint with many
/// cosignatures fit well within this; anything larger is refused unread.
pub const MAX_BUNDLE_SIZE: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub entry: Vec<u8>,
    pub proof: TlogProof,
    /// The enclave's DSSE envelope over the statement (v2); `None` is a v1
    /// bundle.
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BundleJson {
    media_type: String,
    entry: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dsse_envelope: Option<EnvelopeJson>,
    tlog_proof: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is larger than {MAX_BUNDLE_SIZE} bytes")]
    TooLarge,
    #[error("bundle is not valid JSON: {0}")]
    Json(String),
    #[error("bundle mediaType is {0:?}, expected {BUNDLE_MEDIA_TYPE} or {BUNDLE_MEDIA_TYPE_V1}")]
    MediaType(String),
    #[error("a {BUNDLE_MEDIA_TYPE} bundle must carry dsseEnvelope")]
    EnvelopeMissing,
    #[error("a {BUNDLE_MEDIA_TYPE_V1} bundle carries no dsseEnvelope")]
    EnvelopeInV1,
    #[error("bundle dsseEnvelope: {0}")]
    Envelope(DsseError),
    #[error("bundle entry is not valid base64")]
    EntryBase64,
    #[error("bundle tlogProof: {0}")]
    Proof(String),
}

impl BundleError {
    pub fn code(&self) -> &'static str {
        "bad_bundle"
    }
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_SIZE {
            return Err(BundleError::TooLarge);
        }
        let json: BundleJson =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        let dsse_envelope = match (json.media_type.as_str(), json.dsse_envelope) {
            (BUNDLE_MEDIA_TYPE, Some(envelope)) => {
                Some(Envelope::from_json(envelope).map_err(BundleError::Envelope)?)
            }
            (BUNDLE_MEDIA_TYPE, None) => return Err(BundleError::EnvelopeMissing),
            (BUNDLE_MEDIA_TYPE_V1, None) => None,
            (BUNDLE_MEDIA_TYPE_V1, Some(_)) => return Err(BundleError::EnvelopeInV1),
            (other, _) => return Err(BundleError::MediaType(other.to_string())),
        };
        let entry = base64::engine::general_purpose::STANDARD
            .decode(json.entry.as_bytes())
            .map_err(|_| BundleError::EntryBase64)?;
        let proof =
            TlogProof::parse(&json.tlog_proof).map_err(|e| BundleError::Proof(e.to_string()))?;
        Ok(Bundle {
            entry,
            proof,
            dsse_envelope,
        })
    }

    /// The bundle as pretty JSON, ending in a newline: v2 with its
    /// envelope, v1 without one.
    pub fn to_json(&self) -> String {
        let media_type = match self.dsse_envelope {
            Some(_) => BUNDLE_MEDIA_TYPE,
            None => BUNDLE_MEDIA_TYPE_V1,
        };
        let json = BundleJson {
            media_type: media_type.to_string(),
            entry: base64::engine::general_purpose::STANDARD.encode(&self.entry),
            dsse_envelope: self.dsse_envelope.as_ref().map(Envelope::to_json_struct),
            tlog_proof: self.proof.to_text(),
        };
        // Serializing plain strings cannot fail.
        let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
        text.push('\n');
        text
    }
}
