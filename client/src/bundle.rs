//! The offline bundle: everything a user needs, in one file beside the
//! artifact, to check an attested build without talking to anyone.
//!
//! ```json
//! {
//!   "mediaType": "application/vnd.attestlog.bundle.v1+json",
//!   "entry": "<base64 entry bytes>",
//!   "tlogProof": "c2sp.org/tlog-proof@v1\nindex 7\n...\n\n<signed checkpoint>"
//! }
//! ```
//! `tlogProof` is a C2SP tlog-proof verbatim, so any tlog-proof tool can
//! check the inclusion half on its own. `spec/bundle.md` is normative.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::tlog::proof::TlogProof;

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.attestlog.bundle.v1+json";
/// The file name suffix a bundle takes beside its artifact.
pub const BUNDLE_SUFFIX: &str = ".attestlog.json";
/// Entry (64 KiB, base64) plus a proof and a checkpoint with many
/// cosignatures fit well within this; anything larger is refused unread.
pub const MAX_BUNDLE_SIZE: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub entry: Vec<u8>,
    pub proof: TlogProof,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BundleJson {
    media_type: String,
    entry: String,
    tlog_proof: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is larger than {MAX_BUNDLE_SIZE} bytes")]
    TooLarge,
    #[error("bundle is not valid JSON: {0}")]
    Json(String),
    #[error("bundle mediaType is {0:?}, expected {BUNDLE_MEDIA_TYPE}")]
    MediaType(String),
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
        if json.media_type != BUNDLE_MEDIA_TYPE {
            return Err(BundleError::MediaType(json.media_type));
        }
        let entry = base64::engine::general_purpose::STANDARD
            .decode(json.entry.as_bytes())
            .map_err(|_| BundleError::EntryBase64)?;
        let proof =
            TlogProof::parse(&json.tlog_proof).map_err(|e| BundleError::Proof(e.to_string()))?;
        Ok(Bundle { entry, proof })
    }

    /// The bundle as pretty JSON, ending in a newline.
    pub fn to_json(&self) -> String {
        let json = BundleJson {
            media_type: BUNDLE_MEDIA_TYPE.to_string(),
            entry: base64::engine::general_purpose::STANDARD.encode(&self.entry),
            tlog_proof: self.proof.to_text(),
        };
        // Serializing plain strings cannot fail.
        let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
        text.push('\n');
        text
    }
}
