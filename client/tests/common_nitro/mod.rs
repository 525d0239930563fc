//! Test helper: locates the shared data folder (outside the repo) for the nitro tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$ATTESTLOG_SHARED`, else `<CARGO_MANIFEST_DIR>/../../shared`; None (after printing the
/// skip line) when the folder is missing.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ATTESTLOG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: ../shared not found (set ATTESTLOG_SHARED)");
        None
    }
}

/// One document of nitro-samples/MANIFEST.json with its bytes.
pub struct Sample {
    pub file: String,
    pub bytes: Vec<u8>,
    pub meta: serde_json::Value,
}

impl Sample {
    pub fn valid(&self) -> bool {
        self.meta["expected"] == "valid"
    }
    pub fn u64(&self, key: &str) -> u64 {
        self.meta[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: {key}", self.file))
    }
    pub fn opt_len(&self, key: &str) -> Option<usize> {
        self.meta[key].as_u64().map(|n| n as usize)
    }
}

/// All samples of the manifest, or None when shared data is missing.
pub fn samples() -> Option<Vec<Sample>> {
    let dir = shared_dir()?.join("nitro-samples");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).expect("manifest"))
            .expect("manifest json");
    let docs = manifest["documents"].as_array().expect("documents");
    Some(
        docs.iter()
            .map(|m| {
                let file = m["file"].as_str().expect("file").to_string();
                let bytes = std::fs::read(dir.join(&file)).expect("sample file");
                Sample {
                    file,
                    bytes,
                    meta: m.clone(),
                }
            })
            .collect(),
    )
}
