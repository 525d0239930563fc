//! Shared test helpers: locating the shared data folder outside the repo.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The shared data folder: `$ATTESTLOG_SHARED`, or `../shared` beside the
/// repository. `None` (after printing why to stderr) if it is missing, so
/// tests can return early.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ATTESTLOG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    if dir.is_dir() {
        Some(dir)
    } else {
        // Written to stderr directly, not through eprintln!, so the test
        // harness does not capture it: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {} not found (set ATTESTLOG_SHARED)",
            dir.display()
        );
        None
    }
}

/// Parsed JSON of `vectors/<name>` in the shared folder, if present.
pub fn vectors(name: &str) -> Option<serde_json::Value> {
    let path = shared_dir()?.join("vectors").join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped: cannot read {}: {e} (set ATTESTLOG_SHARED)",
                path.display()
            );
            return None;
        }
    };
    Some(serde_json::from_str(&text).expect("vector file is valid JSON"))
}

/// A 32-byte hash from hex.
pub fn h(hex_str: &str) -> [u8; 32] {
    hex::decode(hex_str)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
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
