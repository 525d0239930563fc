//! Policy files (TOML) and required_refs patterns.
#![no_main]

use std::path::Path;

use attestlog::policy::{Policy, RefPattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pattern) = RefPattern::parse(text) {
        match &pattern {
            RefPattern::Exact(e) => assert_eq!(e, text),
            RefPattern::Prefix(p) => assert_eq!(format!("{p}*"), text),
        }
        assert!(pattern.matches(text.trim_end_matches('*')));
    }
    // trust.extra_roots names files to read: skip policies that list any
    // (such as /dev/zero), and give relative ones a folder that is not there.
    let reads_files = toml::from_str::<toml::Table>(text)
        .is_ok_and(|t| t.get("trust").and_then(|t| t.get("extra_roots")).is_some());
    if reads_files {
        return;
    }
    if let Ok(policy) = Policy::from_toml(text, Path::new("/nonexistent/attestlog-fuzz")) {
        assert!(!policy.log_keys.is_empty());
        assert!(policy.witness_quorum <= policy.witnesses.len());
    }
});
